import Foundation
import KVTensor

/// What a removal freed.
public struct RemoveReport: Sendable, Codable, Equatable {
    public var contexts: Int = 0
    public var chunks: Int = 0
    public var blobs: Int = 0
    public var bytes: Int = 0
}

extension ChunkStore {
    /// Resolves a context by full id, a unique id prefix of at least 6 hex digits, or its name.
    public func resolveContext(_ query: String) throws -> Hash32 {
        let matches: [Hash32] = try env.read { txn in
            var out: [Hash32] = []
            try txn.scan(contextDB) { key, value in
                let id = Hash32(bytes: key)!
                if id.hex == query || (query.count >= 6 && id.hex.hasPrefix(query.lowercased())) {
                    out.append(id)
                } else if let rec = try? ContextRecord(decoding: value), !rec.name.isEmpty, rec.name == query {
                    out.append(id)
                }
                return true
            }
            return out
        }
        guard !matches.isEmpty else { throw StoreError.notFound("no context \(query)") }
        guard matches.count == 1 else { throw StoreError.invalidInput("\(query) names \(matches.count) contexts; give more of the id") }
        return matches[0]
    }

    /// Removes a context: its chunks lose a reference and those no context uses any more go, with
    /// the blobs only they used.
    public func remove(context id: Hash32) throws -> RemoveReport {
        try writeRemovingBlobs { txn, trashed in
            guard let raw = try txn.get(contextDB, id.bytes) else { throw StoreError.notFound("no context \(id.hex)") }
            let context = try ContextRecord(decoding: raw)
            var report = RemoveReport(contexts: 1)
            for h in context.chain {
                try release(chunk: h, txn: txn, report: &report, trashed: &trashed)
            }
            try txn.delete(contextDB, id.bytes)
            return report
        }
    }

    /// A write transaction that may remove blob files. `body` moves them aside (`release(blob:)`);
    /// they are deleted once the transaction commits and put back if it fails, so files and index
    /// change together.
    func writeRemovingBlobs<T>(_ body: (LMDBTransaction, inout [(Hash32, String)]) throws -> T) throws -> T {
        var trashed: [(Hash32, String)] = []
        let result: T
        do {
            result = try env.write { txn in try body(txn, &trashed) }
        } catch {
            for (blob, path) in trashed { blobs.restore(blob, from: path) }
            throw error
        }
        for (_, path) in trashed { unlink(path) }
        return result
    }

    /// Drops one context reference from a chunk; at zero the chunk record goes and its blobs are
    /// released. Blob files are moved aside (`trashed`) and deleted by the caller after commit.
    func release(chunk h: Hash32, txn: LMDBTransaction, report: inout RemoveReport, trashed: inout [(Hash32, String)]) throws {
        guard let raw = try txn.get(chunkDB, h.bytes) else { return }
        var record = try ChunkRecord(decoding: raw)
        record.refs -= 1
        if record.refs > 0 {
            try txn.put(chunkDB, h.bytes, record.encoded())
            return
        }
        try txn.delete(chunkDB, h.bytes)
        try removePartial(record, hash: h, txn: txn)
        report.chunks += 1
        for level in record.levels {
            try release(blob: level.blob, txn: txn, report: &report, trashed: &trashed)
        }
    }

    func release(blob id: Hash32, txn: LMDBTransaction, report: inout RemoveReport, trashed: inout [(Hash32, String)]) throws {
        guard let raw = try txn.get(blobDB, id.bytes) else { return }
        var rec = try BlobRecord(decoding: raw)
        rec.refs -= 1
        if rec.refs > 0 {
            try txn.put(blobDB, id.bytes, rec.encoded())
            return
        }
        try txn.delete(blobDB, id.bytes)
        if let path = blobs.trash(id) { trashed.append((id, path)) }
        report.blobs += 1
        report.bytes += rec.bytes
    }
}

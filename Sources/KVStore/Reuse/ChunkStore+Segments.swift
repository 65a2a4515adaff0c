import CLMDB
import Foundation
import KVCodec
import KVTensor

/// What `putSegment` did.
public struct SegmentPutReport: Sendable, Codable, Equatable {
    public var segmentID: String
    public var tokens: Int
    public var start: Int
    public var pieces: Int
    public var blobsWritten: Int
    public var bytesWritten: Int
    public var storedBytes: Int
    public var alreadyStored: Bool
}

/// A segment to place: its tokens and, optionally, where (default: right after the previous one).
public struct SegmentRequest: Sendable, Equatable {
    public var tokens: [Int32]
    public var position: Int?
    public init(tokens: [Int32], position: Int? = nil) {
        self.tokens = tokens
        self.position = position
    }
}

/// One segment of an assembly.
public struct PlacedSegment: Sendable, Codable, Equatable {
    public var id: String
    public var tokens: Int
    /// Position the segment was encoded at, and the one it now has.
    public var storedStart: Int
    public var position: Int
    /// Rows of the assembled tensor holding this segment.
    public var rows: [Int]
    /// True when the KV equals what a full prefill would give (first segment, in its own context,
    /// at its own position); otherwise its tokens never attended to the segments before it.
    public var exact: Bool
    /// Rows the caller should recompute for CacheBlend-style repair (the segment's first tokens).
    public var recompute: [Int]
}

/// Several segments (after an optional shared prefix) as one KV tensor.
public struct SegmentAssembly: Sendable, Equatable {
    public var context: KVContext
    /// Position of every row of `context`.
    public var positions: [Int]
    public var prefixTokens: Int
    public var segments: [PlacedSegment]
}

extension ChunkStore {
    var segmentDB: MDB_dbi { env.database("segments") }

    /// Stores an independently encoded segment (its KV computed with its first token at `start`,
    /// after the shared `prefix` tokens when given). Keyed by content, so a second put of the same
    /// tokens in the same namespace and prefix is a no-op whatever its start.
    public func putSegment(_ context: KVContext, namespace: Namespace, start: Int, rope: RoPEConfig, prefix: [Int32] = [],
                           levels: [UInt8] = [CodecLevel.lossless]) throws -> SegmentPutReport {
        guard !context.tokens.isEmpty else { throw StoreError.invalidInput("segment holds no tokens") }
        guard namespace.adapter == nil else { throw StoreError.invalidInput("segments are stored for the base model only, not an adapter") }
        try NameRules.checkModelID(namespace.model)
        guard namespace.chunkTokens == chunkTokens else {
            throw StoreError.invalidInput("namespace uses \(namespace.chunkTokens)-token chunks, the store \(chunkTokens)")
        }
        guard namespace.shape == context.kv.shape, namespace.dtype == context.kv.dtype else {
            throw StoreError.invalidInput("namespace shape or dtype does not match the segment")
        }
        guard start >= 0, start + context.tokens.count <= KVTensor.maxTokens else {
            throw StoreError.invalidInput("segment start \(start) is outside 0...\(KVTensor.maxTokens - context.tokens.count)")
        }
        guard prefix.isEmpty || start >= prefix.count else {
            throw StoreError.invalidInput("segment start \(start) lies inside its \(prefix.count)-token shared prefix")
        }
        try rope.validate(headDim: context.kv.shape.headDim)
        let levels = Array(Set(levels)).sorted()
        guard !levels.isEmpty else { throw StoreError.invalidInput("no levels requested") }
        for l in levels { _ = try ChunkContainer.codec(forLevel: l) }

        let profile = levels.contains { $0 != CodecLevel.lossless } ? try codecProfile(for: context, model: namespace.model) : nil
        let key = SegmentKey.make(namespace: namespace, prefix: SegmentKey.prefixHash(prefix, namespace: namespace), tokens: context.tokens)
        if let raw = try env.read({ try $0.get(segmentDB, key.bytes) }) {
            let rec = try SegmentRecord(decoding: raw)
            return SegmentPutReport(segmentID: key.hex, tokens: rec.tokens, start: rec.start, pieces: rec.pieces.count,
                                    blobsWritten: 0, bytesWritten: 0, storedBytes: rec.storedBytes, alreadyStored: true)
        }
        let ranges = PrefixChain.chunkRanges(count: context.tokens.count, chunkTokens: chunkTokens)
        var pieces: [SegmentPiece] = []
        var encoded: [[UInt8]] = []
        var blobsWritten = 0, bytesWritten = 0
        for range in ranges {
            var piece = SegmentPiece(tokens: range.count, levels: [])
            for level in levels {
                let bytes = try ChunkContainer.encode(context.kv.slice(tokens: range), level: level, model: profile)
                let id = Hash32.sha256(bytes)
                if try blobs.write(bytes, id: id) { blobsWritten += 1; bytesWritten += bytes.count }
                piece.levels.append(LevelBlob(level: level, blob: id, bytes: bytes.count))
                encoded.append(bytes)
            }
            pieces.append(piece)
        }
        let now = clock()
        let record = SegmentRecord(namespace: namespace.root, prefix: SegmentKey.prefixHash(prefix, namespace: namespace),
                                   start: start, tokens: context.tokens.count, rope: rope, created: now, lastAccess: now, pieces: pieces)
        let stored: SegmentRecord = try env.write { txn in
            try checkShapeFamily(namespace, txn: txn)
            if let raw = try txn.get(segmentDB, key.bytes) { return try SegmentRecord(decoding: raw) }  // another put won
            var i = 0
            for piece in pieces {
                for blob in piece.levels {
                    let bytes = encoded[i]
                    try retain(blob, txn: txn) { bytes }
                    i += 1
                }
            }
            try txn.put(segmentDB, key.bytes, record.encoded())
            if try txn.get(namespaceDB, namespace.root.bytes) == nil {
                try txn.put(namespaceDB, namespace.root.bytes, Array(try JSONEncoder().encode(namespace)))
            }
            return record
        }
        return SegmentPutReport(segmentID: key.hex, tokens: stored.tokens, start: stored.start, pieces: stored.pieces.count,
                                blobsWritten: blobsWritten, bytesWritten: bytesWritten, storedBytes: stored.storedBytes,
                                alreadyStored: stored != record)
    }

    /// The stored segment of exactly these tokens (in `namespace`, after `prefix`), or nil.
    public func segment(_ tokens: [Int32], namespace: Namespace, prefix: [Int32] = []) throws -> (id: Hash32, record: SegmentRecord)? {
        let key = SegmentKey.make(namespace: namespace, prefix: SegmentKey.prefixHash(prefix, namespace: namespace), tokens: tokens)
        guard let raw = try env.read({ try $0.get(segmentDB, key.bytes) }) else { return nil }
        return (key, try SegmentRecord(decoding: raw))
    }

    /// The KV of one stored segment as encoded (at its stored start), best level unless `level`.
    public func segmentKV(_ record: SegmentRecord, namespace: Namespace, level: UInt8? = nil) throws -> KVTensor {
        var parts: [KVTensor] = []
        for (i, piece) in record.pieces.enumerated() {
            guard let blob = level.map({ l in piece.levels.first { $0.level == l } }) ?? piece.best else {
                throw StoreError.notFound("segment piece \(i) is not stored at level \(level ?? 0); stored: \(piece.levels.map(\.level))")
            }
            let tensor = try ChunkContainer.decode(try blobs.read(blob.blob))
            guard tensor.tokens == piece.tokens, tensor.shape == namespace.shape, tensor.dtype == namespace.dtype else {
                throw StoreError.corruptBlob("segment piece \(i) decodes to \(tensor.tokens) tokens of \(tensor.shape) \(tensor.dtype.rawValue)")
            }
            parts.append(tensor)
        }
        return try KVTensor.concatenate(parts)
    }

    /// Assembles `requests` after the shared `prefix` (which must be stored whole as a context
    /// prefix when given): each segment's keys are re-rotated from its stored start to its new
    /// position. Throws `notFound` naming the first segment that is not stored.
    public func assembleSegments(_ requests: [SegmentRequest], namespace: Namespace, prefix: [Int32] = [],
                                 level: UInt8? = nil, recomputeTokens: Int = 16) throws -> SegmentAssembly {
        guard !requests.isEmpty else { throw StoreError.invalidInput("no segments requested") }
        guard recomputeTokens >= 0 else { throw StoreError.invalidInput("recompute tokens \(recomputeTokens) is negative") }
        var parts: [KVTensor] = []
        var tokens: [Int32] = []
        var positions: [Int] = []
        if !prefix.isEmpty {
            guard let (ctx, match) = try get(prefix, namespace: namespace, level: level), match.tokens == prefix.count else {
                throw StoreError.notFound("shared prefix of \(prefix.count) tokens is not stored whole")
            }
            parts.append(ctx.kv)
            tokens += prefix
            positions += Array(0..<prefix.count)
        }
        var placed: [PlacedSegment] = []
        var next = prefix.count
        for (i, request) in requests.enumerated() {
            guard !request.tokens.isEmpty else { throw StoreError.invalidInput("segment \(i) holds no tokens") }
            guard let (id, record) = try segment(request.tokens, namespace: namespace, prefix: prefix) else {
                throw StoreError.notFound("segment \(i) (\(request.tokens.count) tokens) is not stored\(prefix.isEmpty ? "" : " after this prefix")")
            }
            let position = request.position ?? next
            guard position >= 0, position + record.tokens <= KVTensor.maxTokens else {
                throw StoreError.invalidInput("segment \(i) position \(position) is outside 0...\(KVTensor.maxTokens - record.tokens)")
            }
            let kv = try RoPE.shift(try segmentKV(record, namespace: namespace, level: level), delta: position - record.start, config: record.rope)
            let firstRow = tokens.count
            let exact = i == 0 && position == record.start && position == prefix.count
            let rows = Array(firstRow..<(firstRow + record.tokens))
            placed.append(PlacedSegment(id: id.hex, tokens: record.tokens, storedStart: record.start, position: position,
                                        rows: [rows.first!, rows.last! + 1], exact: exact,
                                        recompute: exact ? [] : Array(rows.prefix(recomputeTokens))))
            parts.append(kv)
            tokens += request.tokens
            positions += Array(position..<(position + record.tokens))
            next = position + record.tokens
        }
        let kv = try KVTensor.concatenate(parts)
        let context = try KVContext(kv: kv, tokens: tokens, metadata: ["model": namespace.model])
        return SegmentAssembly(context: context, positions: positions, prefixTokens: prefix.count, segments: placed)
    }

    /// Removes a stored segment and the blobs only it used.
    public func removeSegment(_ id: Hash32) throws -> RemoveReport {
        try writeRemovingBlobs { txn, trashed in
            guard let raw = try txn.get(segmentDB, id.bytes) else { throw StoreError.notFound("no segment \(id.hex)") }
            let record = try SegmentRecord(decoding: raw)
            var report = RemoveReport()
            for piece in record.pieces {
                for level in piece.levels { try release(blob: level.blob, txn: txn, report: &report, trashed: &trashed) }
            }
            try txn.delete(segmentDB, id.bytes)
            report.chunks = record.pieces.count
            return report
        }
    }

    /// Every stored segment, for listing.
    public func segments() throws -> [(id: Hash32, record: SegmentRecord)] {
        try env.read { txn in
            var out: [(Hash32, SegmentRecord)] = []
            try txn.scan(segmentDB) { key, value in
                out.append((Hash32(bytes: key)!, try SegmentRecord(decoding: value)))
                return true
            }
            return out
        }
    }
}

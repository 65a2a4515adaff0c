import Foundation
import KVCodec
import KVTensor

/// What a put did.
public struct PutReport: Sendable, Codable, Equatable {
    public var contextID: String
    public var tokens: Int
    public var chunks: Int
    /// Chunks that already had every requested level stored.
    public var deduplicatedChunks: Int
    public var blobsWritten: Int
    public var bytesWritten: Int
    /// Bytes of this context's stored encodings (shared ones included).
    public var storedBytes: Int
    /// `storedBytes` by compression level ("0", "2", …), so each level's ratio can be read off.
    public var storedBytesByLevel: [String: Int] = [:]
    /// Bytes of the context's KV as given.
    public var inputBytes: Int
    public var alreadyStored: Bool
    /// vLLM block hashes indexed for the context (put with vLLM indexing only).
    public var vllmBlocks: Int? = nil
}

extension ChunkStore {
    /// Stores `context` in `namespace` at `levels`. Blobs are written before the index transaction;
    /// the transaction then references them all at once, so a put killed at any point leaves either
    /// nothing indexed or the whole context indexed (plus, at worst, orphan blob files).
    /// With `adapter` (aLoRA), chunks ending at or before its invocation start go to the base
    /// namespace and the rest to the adapter's (see `ReuseChain`).
    public func put(_ context: KVContext, namespace: Namespace, adapter: AdapterSpan? = nil,
                    levels: [UInt8] = [CodecLevel.lossless],
                    name: String = "", threads: Int = 1, progress: ((Int, Int) -> Void)? = nil) throws -> PutReport {
        guard namespace.chunkTokens == chunkTokens else {
            throw StoreError.invalidInput("namespace uses \(namespace.chunkTokens)-token chunks, the store \(chunkTokens)")
        }
        return try put(encode(context, namespace: namespace, levels: levels, threads: threads), adapter: adapter, name: name, progress: progress)
    }

    /// `put` of a context already prepared (`encode`): its chunks are encoded with its profile.
    public func put(_ encoded: EncodedContext, adapter: AdapterSpan? = nil, name: String = "",
                    progress: ((Int, Int) -> Void)? = nil) throws -> PutReport {
        let context = encoded.context, namespace = encoded.namespace, levels = encoded.levels
        guard namespace.chunkTokens == chunkTokens else {
            throw StoreError.invalidInput("namespace uses \(namespace.chunkTokens)-token chunks, the store \(chunkTokens)")
        }
        if let a = adapter?.digest ?? namespace.adapter { try NameRules.check(a, "adapter digest", maxBytes: NameRules.maxModelBytes) }
        try NameRules.check(name, "context name", maxBytes: NameRules.maxContextNameBytes)

        let plan = ReuseChain.plan(tokens: context.tokens, namespace: namespace, adapter: adapter)
        let requestNamespace = adapter.map { ReuseChain.adapterNamespace(namespace, $0) } ?? namespace
        let root = requestNamespace.root
        let ranges = plan.map(\.range)
        let chain = plan.map(\.hash)
        let existing: [ChunkRecord?] = try env.read { txn in
            try checkShapeFamily(requestNamespace, txn: txn)
            return try chain.map { h in try txn.get(chunkDB, h.bytes).map(ChunkRecord.init(decoding:)) }
        }

        // Encode and write what is missing, outside any transaction: `encoded.threads` chunks at a
        // time, each job one chunk at one level (blob files are written atomically, so in any order).
        var written: [Int: [UInt8: LevelBlob]] = [:]
        var blobsWritten = 0, bytesWritten = 0, deduplicated = 0
        let missing = chain.indices.map { i in levels.filter { existing[i]?.blob(level: $0) == nil } }
        deduplicated = missing.filter(\.isEmpty).count
        for batch in stride(from: 0, to: chain.count, by: encoded.threads) {
            let jobs = (batch..<min(chain.count, batch + encoded.threads)).flatMap { i in missing[i].map { (i, $0) } }
            let results = try Parallel.map(jobs.count, threads: encoded.threads) { j -> (LevelBlob, Bool) in
                let (i, level) = jobs[j]
                let bytes = try encoded.encode(tokens: ranges[i], level: level)
                let id = Hash32.sha256(bytes)
                return (LevelBlob(level: level, blob: id, bytes: bytes.count), try blobs.write(bytes, id: id))
            }
            for ((i, level), (blob, new)) in zip(jobs, results) {
                if new { blobsWritten += 1; bytesWritten += blob.bytes }
                written[i, default: [:]][level] = blob
            }
            progress?(min(chain.count, batch + encoded.threads), chain.count)
        }

        let now = clock()
        let contextKey = chain.last!.bytes
        var storedBytes = 0
        var byLevel: [String: Int] = [:]
        let alreadyStored: Bool = try env.write { txn in
            try checkShapeFamily(requestNamespace, txn: txn)
            // A context GC cut short lists a prefix of its chain; this put completes it again.
            let stored = try txn.get(contextDB, contextKey).map(ContextRecord.init(decoding:))
            let listed = stored?.chain.count ?? 0
            for i in chain.indices {
                let parent = plan[i].parent
                var record: ChunkRecord
                var created = false
                if let raw = try txn.get(chunkDB, chain[i].bytes) {
                    record = try ChunkRecord(decoding: raw)
                } else {
                    record = ChunkRecord(parent: parent, position: i, tokens: ranges[i].count, created: now,
                                         lastAccess: now, refs: 0, levels: [])
                    created = true
                    if ranges[i].count < chunkTokens {
                        try txn.put(partialDB, Self.partialKey(parent: parent, tokens: ranges[i].count, chunk: chain[i]), chain[i].bytes)
                    }
                }
                for level in levels where record.blob(level: level) == nil {
                    // Another process may have removed what the pre-check saw; encode again then, once.
                    var reencoded: [UInt8]?
                    let encodeNow = { () throws -> [UInt8] in
                        if let bytes = reencoded { return bytes }
                        let bytes = try encoded.encode(tokens: ranges[i], level: level)
                        reencoded = bytes
                        return bytes
                    }
                    let blob = try written[i]?[level] ?? {
                        let bytes = try encodeNow()
                        return LevelBlob(level: level, blob: Hash32.sha256(bytes), bytes: bytes.count)
                    }()
                    try retain(blob, txn: txn, bytes: encodeNow)
                    record.levels.append(blob)
                }
                if i >= listed || created { record.refs += 1 }
                storedBytes += record.storedBytes
                for l in record.levels { byLevel[String(l.level), default: 0] += l.bytes }
                try txn.put(chunkDB, chain[i].bytes, record.encoded())
            }
            if listed < chain.count {
                let ctx = ContextRecord(namespace: root, tokens: context.tokens.count, created: stored?.created ?? now,
                                        name: name.isEmpty ? stored?.name ?? "" : name, chain: chain)
                try txn.put(contextDB, contextKey, ctx.encoded())
                for space in Set(adapter == nil ? [requestNamespace] : [requestNamespace, requestNamespace.base]) where try txn.get(namespaceDB, space.root.bytes) == nil {
                    try txn.put(namespaceDB, space.root.bytes, Array(try JSONEncoder().encode(space)))
                }
            }
            return listed == chain.count
        }
        return PutReport(contextID: chain.last!.hex, tokens: context.tokens.count, chunks: chain.count,
                         deduplicatedChunks: deduplicated, blobsWritten: blobsWritten, bytesWritten: bytesWritten,
                         storedBytes: storedBytes, storedBytesByLevel: byLevel, inputBytes: context.kv.bytes.count,
                         alreadyStored: alreadyStored)
    }

    /// Adds a reference to a blob inside a write transaction. A blob with no record may have lost its
    /// file to a concurrent removal since it was written; it is written again from `bytes`.
    func retain(_ blob: LevelBlob, txn: LMDBTransaction, bytes: () throws -> [UInt8]) throws {
        if let raw = try txn.get(blobDB, blob.blob.bytes) {
            var rec = try BlobRecord(decoding: raw)
            rec.refs += 1
            try txn.put(blobDB, blob.blob.bytes, rec.encoded())
        } else {
            if !blobs.exists(blob.blob) {
                let data = try bytes()
                guard Hash32.sha256(data) == blob.blob else { throw StoreError.corruptBlob("re-encoding gave different bytes") }
                try blobs.write(data, id: blob.blob)
            }
            try txn.put(blobDB, blob.blob.bytes, BlobRecord(bytes: blob.bytes, refs: 1).encoded())
        }
    }

    static func bigEndian(_ v: Int) -> [UInt8] { withUnsafeBytes(of: UInt32(v).bigEndian) { Array($0) } }

    /// Key of a partial (last, shorter) chunk in `partials`: parent ‖ token count ‖ the chunk's own
    /// hash. The hash is part of the key because different contexts may end mid-chunk under the same
    /// parent with the same length; each must stay reachable by its own tokens.
    static func partialKey(parent: Hash32, tokens: Int, chunk: Hash32) -> [UInt8] {
        parent.bytes + bigEndian(tokens) + chunk.bytes
    }

    /// Drops a partial chunk's entry, and the entry of the format before the chunk hash joined the key
    /// (parent ‖ count) when it names this chunk.
    func removePartial(_ record: ChunkRecord, hash: Hash32, txn: LMDBTransaction) throws {
        guard record.tokens < chunkTokens else { return }
        try txn.delete(partialDB, Self.partialKey(parent: record.parent, tokens: record.tokens, chunk: hash))
        let legacy = record.parent.bytes + Self.bigEndian(record.tokens)
        if try txn.get(partialDB, legacy) == hash.bytes { try txn.delete(partialDB, legacy) }
    }
}

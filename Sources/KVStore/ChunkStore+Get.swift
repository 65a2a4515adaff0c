import KVCodec
import KVTensor

/// One chunk of a matched prefix.
public struct MatchedChunk: Sendable, Equatable {
    public var hash: Hash32
    public var record: ChunkRecord
    /// Token range inside the query.
    public var range: Range<Int>
}

/// The longest stored prefix of a query.
public struct PrefixMatch: Sendable, Equatable {
    public var tokens: Int
    public var chunks: [MatchedChunk]
    public static let none = PrefixMatch(tokens: 0, chunks: [])

    /// The KV of the matched chunks in order, each chunk's bytes from `fetch` and checked against
    /// `namespace`. The match ends before the first chunk `fetch` has no bytes for; nil when that
    /// is the first. Both tiers assemble a `get` (and a read-through fill) this way.
    public func assemble(_ tokens: [Int32], namespace: Namespace, fetch: (MatchedChunk) throws -> [UInt8]?,
                  progress: ((Int, Int) -> Void)? = nil) throws -> (context: KVContext, match: PrefixMatch)? {
        var match = self
        var parts: [KVTensor] = []
        for (i, chunk) in match.chunks.enumerated() {
            guard let bytes = try fetch(chunk) else {
                match.chunks.removeSubrange(i...)
                match.tokens = chunk.range.lowerBound
                break
            }
            let tensor = try ChunkContainer.decode(bytes)
            guard tensor.tokens == chunk.range.count, tensor.shape == namespace.shape, tensor.dtype == namespace.dtype else {
                throw StoreError.corruptBlob("chunk \(chunk.record.position) decodes to \(tensor.tokens) tokens of \(tensor.shape) \(tensor.dtype.rawValue)")
            }
            parts.append(tensor)
            progress?(i + 1, match.chunks.count)
        }
        guard !parts.isEmpty else { return nil }
        let kv = try KVTensor.concatenate(parts)
        return (try KVContext(kv: kv, tokens: Array(tokens[0..<match.tokens]), metadata: ["model": namespace.model]), match)
    }
}

extension ChunkStore {
    /// Walks the query's prefix chain until the first miss. A last stored partial chunk matches a
    /// query that continues past it (`partials` lists them by parent hash). With `adapter` (aLoRA)
    /// the chain switches to the adapter's at the chunk holding its invocation start (`ReuseChain`);
    /// there a stored base partial chunk that ends at or before the invocation start also matches.
    public func lookup(_ tokens: [Int32], namespace: Namespace, adapter: AdapterSpan? = nil) throws -> PrefixMatch {
        let adapterRoot = adapter.map { ReuseChain.adapterNamespace(namespace, $0).root }
        return try env.read { txn in
            var parent = adapter == nil ? namespace.root : namespace.base.root
            var position = 0
            var bridged = false
            var chunks: [MatchedChunk] = []
            while position < tokens.count {
                let end = min(position + chunkTokens, tokens.count)
                var baseParent: Hash32?
                if let adapter, let adapterRoot, !bridged, end > adapter.invocationStart {
                    baseParent = parent
                    parent = ReuseChain.bridge(parent: parent, adapterRoot: adapterRoot, invocationStart: adapter.invocationStart)
                    bridged = true
                }
                let h = PrefixChain.next(parent, tokens: tokens[position..<end])
                if let raw = try txn.get(chunkDB, h.bytes) {
                    let record = try ChunkRecord(decoding: raw)
                    guard record.tokens == end - position else { break }
                    chunks.append(MatchedChunk(hash: h, record: record, range: position..<end))
                    parent = h
                    position = end
                    continue
                }
                var best = try bestPartial(txn, parent: parent, tokens: tokens, at: position, below: end - position)
                if best == nil, let baseParent, let adapter, adapter.invocationStart > position {
                    best = try bestPartial(txn, parent: baseParent, tokens: tokens, at: position, below: adapter.invocationStart - position + 1)
                }
                if let best { chunks.append(best) }
                break
            }
            return PrefixMatch(tokens: chunks.last?.range.upperBound ?? 0, chunks: chunks)
        }
    }

    /// The longest stored partial chunk under `parent` matching `tokens[position...]`, shorter than `limit`.
    func bestPartial(_ txn: LMDBTransaction, parent: Hash32, tokens: [Int32], at position: Int, below limit: Int) throws -> MatchedChunk? {
        var best: MatchedChunk?
        // Keys are parent ‖ count ‖ chunk hash (68 bytes); stores written before that have parent ‖ count.
        try txn.scan(partialDB, prefix: parent.bytes) { key, value in
            guard key.count == 68 || key.count == 36 else { return true }
            let n = key[32..<36].reduce(0) { $0 << 8 | Int($1) }
            guard n > 0, limit > n, n > (best?.range.count ?? 0) else { return true }
            let candidate = PrefixChain.next(parent, tokens: tokens[position..<(position + n)])
            if candidate.bytes == value, let raw = try txn.get(chunkDB, value) {
                best = MatchedChunk(hash: candidate, record: try ChunkRecord(decoding: raw), range: position..<(position + n))
            }
            return true
        }
        return best
    }

    /// The container bytes of one matched chunk at `level` (the best stored level when nil).
    /// Returns nil when the chunk was removed since the lookup (a clean miss), throws when the
    /// index still lists a blob that is missing or corrupt.
    public func chunkBytes(_ chunk: MatchedChunk, level: UInt8? = nil) throws -> [UInt8]? {
        guard let blob = level.map({ chunk.record.blob(level: $0) }) ?? chunk.record.best else {
            throw StoreError.notFound("chunk \(chunk.record.position) is not stored at level \(level ?? 0); stored: \(chunk.record.levels.map(\.level))")
        }
        return try readIndexedBlob(blob.blob, chunk: chunk.hash)
    }

    /// The KV of the longest stored prefix of `tokens`, or nil on a miss.
    public func get(_ tokens: [Int32], namespace: Namespace, adapter: AdapterSpan? = nil, level: UInt8? = nil,
                    progress: ((Int, Int) -> Void)? = nil) throws -> (context: KVContext, match: PrefixMatch)? {
        let match = try lookup(tokens, namespace: namespace, adapter: adapter)
        guard let got = try match.assemble(tokens, namespace: namespace, fetch: { try chunkBytes($0, level: level) }, progress: progress) else {
            return nil
        }
        recordAccess(got.match)
        return got
    }

    /// Refreshes last-access times of the matched chunks, at most once per `accessGranularity`
    /// seconds per chunk, in one small transaction. Best effort: a read never fails for it.
    public func recordAccess(_ match: PrefixMatch) {
        let now = clock()
        let stale = match.chunks.filter { now - $0.record.lastAccess >= accessGranularity }
        guard !stale.isEmpty, !collectionInProgress() else { return }   // never wait behind a GC pass
        try? env.write { txn in
            for chunk in stale {
                guard let raw = try txn.get(chunkDB, chunk.hash.bytes) else { continue }
                var record = try ChunkRecord(decoding: raw)
                record.lastAccess = now
                try txn.put(chunkDB, chunk.hash.bytes, record.encoded())
            }
        }
    }
}

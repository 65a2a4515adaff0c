import KVCodec
import KVTensor

/// Where a node's chunk records and container bytes live, behind the operations the server and
/// the CLI use: store a context's chunks (one encoding per (namespace, prefix hash, level)), list
/// namespaces, find the longest stored prefix of a chain of prefix hashes, and fetch one chunk's
/// bytes. Implementations: the embedded tier (`ChunkStore`: LMDB + blob files), the Redis Cluster
/// tier and the embedded tier as a cache in front of it (module KVCluster, docs/cluster.md).
///
/// Prefix hashes commit to the namespace root (`PrefixChain`), so every tier keeps tenants apart
/// the same way: a namespace is only ever reached through its own root.
public protocol ChunkTier: AnyObject, Sendable {
    var chunkTokens: Int { get }
    /// Stores every chunk of `encoded` not stored yet, at its levels (idempotent). The chunks'
    /// bytes come from `encoded` (made once, with the model's profile, by `ChunkStore.encode`),
    /// so every tier holds the same bytes for a chunk.
    func storeContext(_ encoded: EncodedContext, name: String) throws -> PutReport
    /// Namespaces with stored chunks (what `/v1/lookup` chooses among).
    func namespaces() throws -> [Namespace]
    /// The longest stored prefix of `tokens`: chunks up to the first miss.
    func longestPrefix(_ tokens: [Int32], namespace: Namespace) throws -> PrefixMatch
    /// A matched chunk's container bytes at `level`, checked; nil when it is gone since the lookup
    /// or not stored at that level.
    func streamBytes(_ chunk: MatchedChunk, level: UInt8) throws -> [UInt8]?
    /// Best-effort access bookkeeping after a read (LRU for the embedded tier's gc).
    func recordAccess(_ match: PrefixMatch)
    /// Prometheus text lines of the tier's own counters (appended to `/metrics`).
    var metricsText: String { get }
    /// A read-through fill for a stream of `match` (a prefix of `tokens` in `namespace`), or nil
    /// when the tier keeps no local copy or already holds the whole match. The stream hands it the
    /// level-0 bytes it sends and calls `finish()` at its end; the fill then runs off the response path.
    func streamFill(_ match: PrefixMatch, tokens: [Int32], namespace: Namespace) -> (any StreamFill)?
    /// The health of a remote tier behind this one (`/healthz`); nil when there is none.
    var health: TierHealth? { get }
    /// `getContext`, then whatever the tier keeps of the read (cache mode: a prefix read from the
    /// cluster is stored locally, read-through).
    func getContextFilling(_ tokens: [Int32], namespace: Namespace, level: UInt8?) throws -> (context: KVContext, match: PrefixMatch)?
    /// The node-local store in front of a remote tier (cache mode); nil for other tiers.
    var localCache: ChunkStore? { get }
}

/// Collects what a stream read so a caching tier can store the prefix locally afterwards.
public protocol StreamFill: Sendable {
    /// The level-0 container bytes of `chunk`, as just streamed.
    func offer(_ chunk: MatchedChunk, levelZero bytes: [UInt8])
    /// The stream ended (completely or not): queue the fill; never blocks.
    func finish()
}

extension ChunkTier {
    public var metricsText: String { "" }

    public func streamFill(_ match: PrefixMatch, tokens: [Int32], namespace: Namespace) -> (any StreamFill)? { nil }

    public var health: TierHealth? { nil }

    public func getContextFilling(_ tokens: [Int32], namespace: Namespace, level: UInt8?) throws -> (context: KVContext, match: PrefixMatch)? {
        try getContext(tokens, namespace: namespace, level: level)
    }

    public var localCache: ChunkStore? { nil }

    /// The bytes of `chunk` at `level`, or at its best stored level when nil.
    public func fetchBytes(_ chunk: MatchedChunk, level: UInt8? = nil) throws -> [UInt8]? {
        guard let l = level ?? chunk.record.best?.level else { return nil }
        return try streamBytes(chunk, level: l)
    }

    /// The KV of the longest stored prefix of `tokens` (as `ChunkStore.get`), or nil on a miss.
    public func getContext(_ tokens: [Int32], namespace: Namespace, level: UInt8? = nil) throws -> (context: KVContext, match: PrefixMatch)? {
        let match = try longestPrefix(tokens, namespace: namespace)
        guard let got = try match.assemble(tokens, namespace: namespace, fetch: { try fetchBytes($0, level: level) }) else { return nil }
        recordAccess(got.match)
        return got
    }
}

/// The embedded tier is the store itself.
extension ChunkStore: ChunkTier {
    public func storeContext(_ encoded: EncodedContext, name: String) throws -> PutReport {
        try put(encoded, name: name)
    }

    public func longestPrefix(_ tokens: [Int32], namespace: Namespace) throws -> PrefixMatch {
        try lookup(tokens, namespace: namespace, adapter: nil)
    }
}

extension LevelBlob {
    public init(level: UInt8, blob: Hash32, byteCount: Int) {
        self.init(level: level, blob: blob, bytes: byteCount)
    }
}

extension ChunkRecord {
    /// A record for a chunk held by another tier: no refcounts or access times (those are the
    /// embedded index's bookkeeping; the other tier's capacity policy replaces them).
    public init(tierChunk parent: Hash32, position: Int, tokens: Int, levels: [LevelBlob]) {
        self.init(parent: parent, position: position, tokens: tokens, created: 0, lastAccess: 0, refs: 0, levels: levels)
    }
}

extension MatchedChunk {
    public init(tierHash hash: Hash32, record: ChunkRecord, range: Range<Int>) {
        self.init(hash: hash, record: record, range: range)
    }
}

extension PrefixMatch {
    public init(chunks: [MatchedChunk]) {
        self.init(tokens: chunks.last?.range.upperBound ?? 0, chunks: chunks)
    }
}

extension ChunkTier {
    /// The plain namespaces (no adapter) of `salt` that a token-only query could mean: one model and
    /// dtype, possibly several shapes (stores written before a model id was bound to one shape may
    /// hold more than one; each is a separate chain, so the caller looks up in all of them).
    public func resolveNamespaces(model: String?, dtype: DType?, salt: String? = nil) throws -> [Namespace] {
        let candidates = try namespaces().filter {
            (model == nil || $0.model == model) && (dtype == nil || $0.dtype == dtype) && $0.adapter == nil
                && $0.salt == salt && $0.chunkTokens == chunkTokens
        }
        guard !candidates.isEmpty else {
            throw StoreError.notFound(model.map { "nothing stored for model \($0)" } ?? "the store is empty")
        }
        let families = Set(candidates.map { "\($0.model) \($0.dtype.rawValue)" })
        guard families.count == 1 else {
            throw StoreError.invalidInput("the store holds several models (\(families.sorted().joined(separator: ", "))); pass --model and --dtype")
        }
        return candidates.sorted { $0.root.hex < $1.root.hex }
    }

    /// The namespace among `spaces` holding the longest stored prefix of `tokens`, with its match.
    /// A namespace whose tier is unavailable is skipped when another gives a match (a cache
    /// node's local store, degraded); with no match at all the outage is thrown.
    public func longestPrefix(_ tokens: [Int32], in spaces: [Namespace]) throws -> (namespace: Namespace, match: PrefixMatch)? {
        var best: (namespace: Namespace, match: PrefixMatch)?
        var outage: TierUnavailable?
        for space in spaces {
            let m: PrefixMatch
            do { m = try longestPrefix(tokens, namespace: space) } catch let e as TierUnavailable {
                outage = outage ?? e
                continue
            }
            if m.tokens > (best?.match.tokens ?? 0) { best = (space, m) }
        }
        if best == nil, let outage { throw outage }
        return best
    }
}

extension PutReport {
    /// A report for a put into another tier.
    public init(tierContextID contextID: String, tokens: Int, chunks: Int, deduplicatedChunks: Int, blobsWritten: Int,
                bytesWritten: Int, storedBytes: Int, storedBytesByLevel: [String: Int], inputBytes: Int, alreadyStored: Bool) {
        self.init(contextID: contextID, tokens: tokens, chunks: chunks, deduplicatedChunks: deduplicatedChunks,
                  blobsWritten: blobsWritten, bytesWritten: bytesWritten, storedBytes: storedBytes,
                  storedBytesByLevel: storedBytesByLevel, inputBytes: inputBytes, alreadyStored: alreadyStored)
    }
}

import Dispatch
import Foundation
import KVCodec
import KVRESP
import KVStore
import KVTensor
import Synchronization

/// The embedded tier as a node-local cache in front of the cluster tier. Writes go to the local
/// store (the response waits for that only) and then to the cluster on a background queue that
/// copies the chunk bytes the local put wrote (each chunk is encoded once) and waits out cluster
/// outages (`ClusterWriteBehind`); during an outage the node serves what its local store holds;
/// lookups take the longer of the local and the cluster match; chunk bytes come from the local
/// blob files when present (blob ids are the containers' SHA-256 in both tiers) and from the
/// cluster otherwise. Read-through: a prefix read from the cluster is stored locally at level 0
/// (`getContextFilling`, and a stream's `streamFill` after it ends, off the response path), so the
/// next read of it is local.
public final class CachedChunkTier: ChunkTier, Sendable {
    public let local: ChunkStore
    public let remote: RedisChunkTier
    /// When false, `storeContext` waits for the cluster write (one-shot CLI runs).
    public let backgroundWrites: Bool
    /// Stream fills queued at once (each holds its stream's level-0 bytes); beyond this a fill is skipped.
    public let maxPendingFills: Int

    public struct Counters: Sendable, Equatable {
        public var clusterWritesQueued = 0
        public var clusterWritesWritten = 0
        /// Write attempts that met a cluster outage (the write waited and was tried again).
        public var clusterWriteRetries = 0
        public var clusterWritesFailed = 0
        public var clusterWritesDropped = 0
        /// Chunk encodings evicted from the local store before their cluster write ran.
        public var clusterChunksLost = 0
        /// Cluster writes waiting now.
        public var clusterWritesPending = 0
        public var localHits = 0
        public var clusterReads = 0
        public var readThroughFills = 0
        /// Stream fills not queued because `maxPendingFills` were queued already.
        public var readThroughFillsDropped = 0
        /// Stream fills that failed (a chunk vanished or failed its checks, or the local put failed).
        public var readThroughFillsFailed = 0
        /// Lookups answered from the local store alone because the cluster was unavailable.
        public var degradedLookups = 0
    }
    private let counters = Mutex(Counters())
    private let pendingFills = Mutex(0)
    private let writes: ClusterWriteBehind
    /// Fills have their own queue: a backlog of cluster writes does not delay them, nor they it.
    private let fillQueue = DispatchQueue(label: "kvstore.cache-fills")
    /// Entered by every queued cluster write and stream fill (`flush` waits for it).
    private let idle: DispatchGroup

    /// `maxPendingWriteTokens`: background cluster writes may wait (during an outage) for contexts
    /// of this many tokens in all (each holds its token ids); beyond it the oldest is dropped,
    /// logged and counted. `log`: operator-facing lines (outages, drops, failures).
    public init(local: ChunkStore, remote: RedisChunkTier, backgroundWrites: Bool = true, maxPendingWriteTokens: Int = 1 << 24,
                maxPendingFills: Int = 8, log: @escaping @Sendable (String) -> Void = CachedChunkTier.standardErrorLog) {
        self.local = local
        self.remote = remote
        self.backgroundWrites = backgroundWrites
        self.maxPendingFills = maxPendingFills
        let idle = DispatchGroup()
        self.idle = idle
        writes = ClusterWriteBehind(local: local, remote: remote, maxPendingTokens: maxPendingWriteTokens, idle: idle, log: log)
    }

    public static let standardErrorLog: @Sendable (String) -> Void = { line in
        FileHandle.standardError.write(Data("kvstore: \(line)\n".utf8))
    }

    public var chunkTokens: Int { local.chunkTokens }
    public var localCache: ChunkStore? { local }
    public var stats: Counters {
        var c = counters.withLock { $0 }
        let w = writes.counters
        c.clusterWritesQueued = w.queued; c.clusterWritesWritten = w.written; c.clusterWriteRetries = w.retries
        c.clusterWritesFailed = w.failed; c.clusterWritesDropped = w.dropped; c.clusterChunksLost = w.chunksLost
        c.clusterWritesPending = w.pending
        return c
    }

    /// The local put (encoding each chunk once, with the model's profile), then the cluster write
    /// of the same bytes, read back from the local blob files: queued (serve) or at once (CLI).
    public func storeContext(_ encoded: EncodedContext, name: String) throws -> PutReport {
        let report = try local.put(encoded, name: name)
        let ns = encoded.namespace, tokens = encoded.context.tokens
        guard backgroundWrites else {
            let lost = try writes.write(namespace: ns, tokens: tokens, levels: encoded.levels)
            if lost > 0 { throw StoreError.missingBlob("\(lost) chunk encodings vanished from the local store before their cluster write") }
            return report
        }
        writes.enqueue(namespace: ns, tokens: tokens, levels: encoded.levels, id: report.contextID)
        return report
    }

    /// Takes a place in a bounded background queue: false when `limit` jobs already wait there.
    private static func admit(_ count: borrowing Mutex<Int>, limit: Int) -> Bool {
        count.withLock { n in
            guard n < limit else { return false }
            n += 1
            return true
        }
    }

    /// Waits until every queued cluster write and stream fill has finished (tests, shutdown).
    public func flush() { idle.wait() }

    /// During a cluster outage: the local store's namespaces only (the outage when it has none).
    public func namespaces() throws -> [Namespace] {
        var seen = Set<Hash32>()
        let near = try local.namespaces()
        let far: [Namespace]
        do { far = try remote.namespaces() } catch let e as TierUnavailable {
            if near.isEmpty { throw e }
            far = []
        }
        return (near + far).filter { seen.insert($0.root).inserted }
    }

    /// During a cluster outage a local match is the answer (degraded: the cluster may hold more);
    /// with none, the outage is thrown (the server answers 503).
    public func longestPrefix(_ tokens: [Int32], namespace: Namespace) throws -> PrefixMatch {
        let near = try local.longestPrefix(tokens, namespace: namespace)
        if near.tokens == tokens.count { return near }
        let far: PrefixMatch
        do { far = try remote.longestPrefix(tokens, namespace: namespace) } catch is TierUnavailable where near.tokens > 0 {
            counters.withLock { $0.degradedLookups += 1 }
            return near
        }
        return far.tokens > near.tokens ? far : near
    }

    public var health: TierHealth? { TierHealth(tier: RedisCluster.tierName, outage: remote.cluster.outage?.cause, servesLocally: true) }

    public func streamBytes(_ chunk: MatchedChunk, level: UInt8) throws -> [UInt8]? {
        if let bytes = try? local.streamBytes(chunk, level: level) {
            counters.withLock { $0.localHits += 1 }
            return bytes
        }
        counters.withLock { $0.clusterReads += 1 }
        return try remote.streamBytes(chunk, level: level)
    }

    public func recordAccess(_ match: PrefixMatch) { local.recordAccess(match) }

    /// `ChunkTier.getContext`, then the read-through fill: a prefix read at level 0 that the local
    /// store did not hold whole is stored locally (lossless re-encoding gives the same bytes).
    public func getContextFilling(_ tokens: [Int32], namespace: Namespace, level: UInt8? = nil) throws -> (context: KVContext, match: PrefixMatch)? {
        guard let got = try getContext(tokens, namespace: namespace, level: level) else { return nil }
        let localTokens = (try? local.longestPrefix(tokens, namespace: namespace).tokens) ?? 0
        if localTokens < got.match.tokens, got.match.chunks.allSatisfy({ ($0.record.best?.level ?? 1) == 0 || level == 0 }) {
            if (try? storeLocally(got.context, namespace: namespace)) != nil { counters.withLock { $0.readThroughFills += 1 } }
        }
        return got
    }

    public func streamFill(_ match: PrefixMatch, tokens: [Int32], namespace: Namespace) -> (any StreamFill)? {
        let localTokens = (try? local.longestPrefix(tokens, namespace: namespace).tokens) ?? 0
        guard localTokens < match.tokens else { return nil }
        return ReadThroughFill(tier: self, match: match, tokens: tokens, namespace: namespace)
    }

    /// A stream's fill, on the fill queue: the match's level-0 chunks (as streamed, else read
    /// locally or from the cluster) stored locally. A chunk not available at level 0 ends the fill
    /// there (a shorter prefix is stored, if it is longer than what the local store holds).
    fileprivate func queueFill(_ fill: ReadThroughFill, streamed: [Hash32: [UInt8]]) {
        guard Self.admit(pendingFills, limit: maxPendingFills) else {
            counters.withLock { $0.readThroughFillsDropped += 1 }
            return
        }
        idle.enter()
        fillQueue.async { [self] in
            defer { pendingFills.withLock { $0 -= 1 }; idle.leave() }
            do {
                let got = try fill.match.assemble(fill.tokens, namespace: fill.namespace) { chunk in
                    guard chunk.record.blob(level: CodecLevel.lossless) != nil else { return nil }
                    if let bytes = streamed[chunk.hash] { return bytes }
                    return try (try? local.streamBytes(chunk, level: CodecLevel.lossless)) ?? remote.streamBytes(chunk, level: CodecLevel.lossless)
                }
                let localTokens = (try? local.longestPrefix(fill.tokens, namespace: fill.namespace).tokens) ?? 0
                guard let got, got.match.tokens > localTokens else { return }
                if try storeLocally(got.context, namespace: fill.namespace) { counters.withLock { $0.readThroughFills += 1 } }
            } catch {
                counters.withLock { $0.readThroughFillsFailed += 1 }
            }
        }
    }

    /// Stores a prefix read from the cluster in the local store at level 0; true when it added chunks.
    private func storeLocally(_ context: KVContext, namespace: Namespace) throws -> Bool {
        let report = try local.put(context, namespace: namespace, levels: [CodecLevel.lossless])
        return report.deduplicatedChunks < report.chunks
    }
}

/// What a stream sent at level 0, kept until it ends, then handed to the tier's fill queue.
final class ReadThroughFill: StreamFill {
    let tier: CachedChunkTier
    let match: PrefixMatch
    let tokens: [Int32]
    let namespace: Namespace
    private let streamed = Mutex<[Hash32: [UInt8]]?>([:])

    init(tier: CachedChunkTier, match: PrefixMatch, tokens: [Int32], namespace: Namespace) {
        self.tier = tier
        self.match = match
        self.tokens = tokens
        self.namespace = namespace
    }

    func offer(_ chunk: MatchedChunk, levelZero bytes: [UInt8]) {
        streamed.withLock { $0?[chunk.hash] = bytes }
    }

    func finish() {
        guard let streamed = streamed.withLock({ s in defer { s = nil }; return s }) else { return }   // once
        tier.queueFill(self, streamed: streamed)
    }
}

extension CachedChunkTier {
    public var metricsText: String {
        let c = stats
        return remote.metricsText + TierMetrics.render([
            ("kvstore_cluster_writes_queued_total", "Background cluster writes queued after local puts.", c.clusterWritesQueued),
            ("kvstore_cluster_writes_total", "Background cluster writes done (chunk bytes copied from the local store).", c.clusterWritesWritten),
            ("kvstore_cluster_write_retries_total", "Background cluster write attempts that met an outage (the write waited and was tried again).", c.clusterWriteRetries),
            ("kvstore_cluster_writes_failed_total", "Background cluster writes given up for an error other than an outage (logged; the local put stood).", c.clusterWritesFailed),
            ("kvstore_cluster_writes_dropped_total", "Background cluster writes dropped because too many waited (logged).", c.clusterWritesDropped),
            ("kvstore_cluster_chunks_lost_total", "Chunk encodings evicted locally before their cluster write ran (logged).", c.clusterChunksLost),
            ("kvstore_cache_local_reads_total", "Chunk reads served from the local cache.", c.localHits),
            ("kvstore_cache_cluster_reads_total", "Chunk reads served from the cluster.", c.clusterReads),
            ("kvstore_cache_fills_total", "Prefixes read from the cluster and stored locally (read-through).", c.readThroughFills),
            ("kvstore_cache_fills_dropped_total", "Stream fills skipped because too many were queued.", c.readThroughFillsDropped),
            ("kvstore_cache_fills_failed_total", "Stream fills that failed (chunk gone or corrupt, or the local put failed).", c.readThroughFillsFailed),
            ("kvstore_cache_degraded_lookups_total", "Lookups answered from the local store alone during a cluster outage.", c.degradedLookups),
        ]) + TierMetrics.gauge("kvstore_cluster_writes_pending", "Background cluster writes waiting (e.g. for an outage to end).", labels: "", c.clusterWritesPending)
    }
}

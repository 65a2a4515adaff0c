import Dispatch
import KVCodec
import KVRESP
import KVStore
import KVTensor
import Synchronization

/// The embedded tier as a node-local cache in front of the cluster tier. Writes go to the local
/// store (the response waits for that only) and then to the cluster on a background queue;
/// lookups take the longer of the local and the cluster match; chunk bytes come from the local
/// blob files when present (blob ids are the containers' SHA-256 in both tiers) and from the
/// cluster otherwise. Read-through: a prefix read from the cluster at level 0 is stored locally
/// (`getContext`), so the next read of it is local.
public final class CachedChunkTier: ChunkTier, Sendable {
    public let local: ChunkStore
    public let remote: RedisChunkTier
    /// When false, `storeContext` waits for the cluster write (one-shot CLI runs).
    public let backgroundWrites: Bool
    /// Background cluster writes queued at once; beyond this a write is skipped and counted.
    public let maxPendingWrites: Int

    public struct Counters: Sendable, Equatable {
        public var clusterWritesQueued = 0
        public var clusterWritesFailed = 0
        public var clusterWritesDropped = 0
        public var localHits = 0
        public var clusterReads = 0
        public var readThroughFills = 0
    }
    private let counters = Mutex(Counters())
    private let pending = Mutex(0)
    private let queue = DispatchQueue(label: "kvstore.cluster-writes")
    private let idle = DispatchGroup()

    public init(local: ChunkStore, remote: RedisChunkTier, backgroundWrites: Bool = true, maxPendingWrites: Int = 32) {
        self.local = local
        self.remote = remote
        self.backgroundWrites = backgroundWrites
        self.maxPendingWrites = maxPendingWrites
    }

    public var chunkTokens: Int { local.chunkTokens }
    public var stats: Counters { counters.withLock { $0 } }

    public func storeContext(_ context: KVContext, namespace: Namespace, levels: [UInt8], name: String) throws -> PutReport {
        let report = try local.put(context, namespace: namespace, levels: levels, name: name)
        guard backgroundWrites else {
            _ = try remote.storeContext(context, namespace: namespace, levels: levels, name: name)
            return report
        }
        let admitted = pending.withLock { n -> Bool in
            guard n < maxPendingWrites else { return false }
            n += 1
            return true
        }
        guard admitted else {
            counters.withLock { $0.clusterWritesDropped += 1 }
            return report
        }
        counters.withLock { $0.clusterWritesQueued += 1 }
        idle.enter()
        queue.async { [self] in
            defer { pending.withLock { $0 -= 1 }; idle.leave() }
            do { _ = try remote.storeContext(context, namespace: namespace, levels: levels, name: name) } catch {
                counters.withLock { $0.clusterWritesFailed += 1 }
            }
        }
        return report
    }

    /// Waits until every queued cluster write has finished (tests, shutdown).
    public func flush() { idle.wait() }

    public func namespaces() throws -> [Namespace] {
        var seen = Set<Hash32>()
        return try (local.namespaces() + remote.namespaces()).filter { seen.insert($0.root).inserted }
    }

    public func longestPrefix(_ tokens: [Int32], namespace: Namespace) throws -> PrefixMatch {
        let near = try local.longestPrefix(tokens, namespace: namespace)
        if near.tokens == tokens.count { return near }
        let far = try remote.longestPrefix(tokens, namespace: namespace)
        return far.tokens > near.tokens ? far : near
    }

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
            if (try? local.put(got.context, namespace: namespace, levels: [CodecLevel.lossless])) != nil {
                counters.withLock { $0.readThroughFills += 1 }
            }
        }
        return got
    }
}

extension CachedChunkTier {
    public var metricsText: String {
        let c = stats
        return remote.metricsText + TierMetrics.render([
            ("kvstore_cluster_writes_queued_total", "Background cluster writes queued after local puts.", c.clusterWritesQueued),
            ("kvstore_cluster_writes_failed_total", "Background cluster writes that failed (the local put stood).", c.clusterWritesFailed),
            ("kvstore_cluster_writes_dropped_total", "Cluster writes dropped because too many were queued.", c.clusterWritesDropped),
            ("kvstore_cache_local_reads_total", "Chunk reads served from the local cache.", c.localHits),
            ("kvstore_cache_cluster_reads_total", "Chunk reads served from the cluster.", c.clusterReads),
            ("kvstore_cache_fills_total", "Prefixes read from the cluster and stored locally (read-through).", c.readThroughFills),
        ])
    }
}

import ArgumentParser
import Foundation
import KVCluster
import KVStore

/// `--cluster` and friends, shared by serve, put and get (docs/cluster.md).
struct ClusterOptions: ParsableArguments {
    @Option(help: "Redis Cluster seed nodes: redis://[user:password@]HOST:PORT[,HOST:PORT...]. Chunks are then stored in and read from the cluster.")
    var cluster: String?

    @Option(help: "ACL user for the cluster (default: the URL's, else the default user).")
    var clusterUser: String?

    @Option(help: "Password for the cluster (default: the URL's, else $KVSTORE_CLUSTER_PASSWORD).")
    var clusterPassword: String?

    @Option(help: "cache: the local store is a read-through cache in front of the cluster (writes go to both); cluster: the cluster only.")
    var clusterMode: Mode = .cache

    @Option(help: "After each write, WAIT for this many replicas per master (0: do not wait).")
    var clusterWaitReplicas = 0

    @Option(help: "Per-command timeout in milliseconds (a failover retries for up to --cluster-retry-ms on top).")
    var clusterTimeoutMs = 5000

    @Option(help: "How long a call retries while nodes are down or the cluster fails over, in milliseconds, before it gives up (serve then answers 503 and fails fast until the cluster is whole again). Default: 2000 for serve, 20000 for one-shot commands.")
    var clusterRetryMs: Int?

    @Option(name: .customLong("cluster-ttl"), help: "Write cluster keys with this expiry in seconds (Redis 7+), pushed out by every put and read of them; with a volatile-lru/lfu policy only such keys are evicted and `kvstore pin --cluster` keeps a context (default: no expiry).")
    var clusterTTL: Int?

    enum Mode: String, ExpressibleByArgument, CaseIterable {
        case cache, cluster
    }

    /// The tier to use with `store`, or nil without --cluster. `background`: cluster writes in
    /// cache mode leave the response path (serve); a one-shot command waits for them.
    func tier(store: ChunkStore, background: Bool) throws -> (any ClusterBackedTier)? {
        guard let cluster else { return nil }
        let url: ClusterURL
        do { url = try ClusterURL(cluster) } catch { throw ValidationError("--cluster: \(error)") }
        let password = clusterPassword ?? url.password ?? ProcessInfo.processInfo.environment["KVSTORE_CLUSTER_PASSWORD"]
        let user = clusterUser ?? url.user
        if user != nil, password == nil { throw ValidationError("--cluster-user needs a password") }
        guard (0...16).contains(clusterWaitReplicas) else { throw ValidationError("--cluster-wait-replicas must be in 0...16") }
        guard clusterTimeoutMs > 0 else { throw ValidationError("--cluster-timeout-ms must be positive") }
        if let r = clusterRetryMs, !(0...600_000).contains(r) { throw ValidationError("--cluster-retry-ms must be in 0...600000") }
        if let ttl = clusterTTL, !(1...(10 * 365 * 86_400)).contains(ttl) { throw ValidationError("--cluster-ttl must be in 1...\(10 * 365 * 86_400) seconds") }
        var config = RedisCluster.Configuration(seeds: url.seeds, credentials: password.map { .init(user: user, password: $0) })
        config.commandTimeoutMs = Int64(clusterTimeoutMs)
        // A request's answer (503 included) must not wait out a long failover; a one-shot command may.
        config.retryWindow = .milliseconds(clusterRetryMs ?? (background ? 2000 : 20000))
        config.onOutage = { cause, detail in Self.log("cluster unavailable: \(cause); failing fast until it is whole again (\(detail))") }
        config.onRecovery = { lasted in Self.log("cluster available again after \(lasted)") }
        let remote = RedisChunkTier(cluster: try RedisCluster(config), chunkTokens: store.chunkTokens, waitReplicas: clusterWaitReplicas,
                                    ttlSeconds: clusterTTL)
        switch clusterMode {
        case .cluster: return remote
        case .cache: return CachedChunkTier(local: store, remote: remote, backgroundWrites: background)
        }
    }

    static func log(_ line: String) {
        FileHandle.standardError.write(Data("kvstore: \(line)\n".utf8))
    }
}

import KVStore

/// A tier whose chunks live in a Redis Cluster, itself or behind a local cache: what pins and the
/// startup policy check reach the cluster through.
public protocol ClusterBackedTier: ChunkTier {
    var clusterTier: RedisChunkTier { get }
}

extension RedisChunkTier: ClusterBackedTier {
    public var clusterTier: RedisChunkTier { self }
}

extension CachedChunkTier: ClusterBackedTier {
    public var clusterTier: RedisChunkTier { remote }
}

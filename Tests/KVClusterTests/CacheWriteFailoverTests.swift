import Foundation
import KVCluster
import KVStore
import KVTensor
import Testing
import TestSupport

/// Must-show (F5): cache-mode puts acknowledged while a master is killed (kill -9) all reach the
/// cluster: none is dropped from the background write queue, so another node reads every one.
@Suite(.serialized)
struct CacheWriteFailoverTests {
    @Test func everyAcknowledgedCachePutIsReadableFromAnotherNodeAfterAMasterIsKilled() throws {
        let cluster = try RedisClusterFixture(nodeTimeoutMs: 2000)
        defer { cluster.stop() }
        let dir = TestSupport.scratchDirectory("kvstore-cache-failover")
        defer { TestSupport.removeTree(dir) }
        let ns = Namespace(model: "synthetic", dtype: .f16, shape: SyntheticContexts.shape, chunkTokens: 16)
        // A retry window shorter than the failover, as `serve` has: writes meet an outage and wait
        // it out. WAIT 1 keeps what the victim acknowledged (its promoted replica then has no
        // replica of its own, hence the short WAIT timeout).
        var config = RedisCluster.Configuration(seeds: Array(cluster.addresses.prefix(2)))
        config.retryWindow = .seconds(1)
        let node = CachedChunkTier(local: try ChunkStore(root: dir + "/a", chunkTokens: 16),
                                   remote: RedisChunkTier(cluster: try RedisCluster(config), chunkTokens: 16, waitReplicas: 1, waitTimeoutMs: 100))
        // 120 contexts of 4 chunks: their keys land on every master, the killed one included.
        let contexts = try (0..<120).map { c in try SyntheticContexts.context((0..<64).map { Int32(c * 1000 + $0) }, chunkTokens: 16) }
        let firstKey = TierKeys.chunk(prefix: PrefixChain.hashes(root: ns.root, tokens: contexts[0].tokens, chunkTokens: 16)[0], level: 0)
        let victim = try #require(try cluster.masterPort(slot: HashSlot.slot(firstKey)))
        for (i, ctx) in contexts.enumerated() {
            if i == 30 { cluster.kill9(port: victim) }
            _ = try node.storeContext(ctx, namespace: ns, levels: [0], name: "")   // acknowledged: the local put stood
            if i >= 30 { Thread.sleep(forTimeInterval: 0.02) }   // puts go on through the failover
        }
        node.flush()
        let stats = node.stats
        print("cache failover: \(stats)")
        #expect(stats.clusterWritesDropped == 0 && stats.clusterWritesFailed == 0 && stats.clusterChunksLost == 0)
        #expect(stats.clusterWritesWritten == contexts.count)

        // Another node: its own client and an empty local store.
        let other = CachedChunkTier(local: try ChunkStore(root: dir + "/b", chunkTokens: 16), remote: try cluster.tier(chunkTokens: 16))
        var missing: [Int] = []
        for (i, ctx) in contexts.enumerated() {
            let got = try other.getContext(ctx.tokens, namespace: ns, level: 0)
            if got?.match.tokens != 64 { missing.append(i); continue }
            #expect(got?.context.kv == ctx.kv)
        }
        #expect(missing.isEmpty, "acknowledged puts the other node cannot read: \(missing)")
    }
}

import Foundation
import KVCluster
import KVStore
import KVTensor
import Testing
import TestSupport

/// The cache tier's stream fill (`CachedChunkTier.streamFill`) against a real cluster: chunks a
/// stream did not send at level 0 are fetched at level 0 for the fill; a prefix the cluster holds
/// only lossy is never stored as lossless.
@Suite(.serialized)
struct CacheFillTests {
    @Test func aFillCompletesWhatTheStreamDidNotSendAtLevelZeroAndNeverStoresLossyBytes() throws {
        let cluster = try RedisClusterFixture()
        defer { cluster.stop() }
        let dir = TestSupport.scratchDirectory("kvstore-fill")
        defer { TestSupport.removeTree(dir) }
        let cached = CachedChunkTier(local: try ChunkStore(root: dir + "/s", chunkTokens: 32), remote: try cluster.tier(chunkTokens: 32))
        let ctx = try TestSupport.realContext()
        let ns = Namespace(model: "m", dtype: ctx.kv.dtype, shape: ctx.kv.shape, chunkTokens: 32)
        _ = try cached.remote.storeContext(ctx, namespace: ns, levels: [0, 2], name: "")

        // A stream that sent chunk 0 at level 0 and the others lossy (or not at all).
        let query = ctx.tokens + [9, 9]
        let match = try cached.longestPrefix(query, namespace: ns)
        #expect(match.tokens == 96)
        let fill = try #require(cached.streamFill(match, tokens: query, namespace: ns))
        fill.offer(match.chunks[0], levelZero: try #require(try cached.streamBytes(match.chunks[0], level: 0)))
        fill.finish()
        fill.finish()                                   // a second finish queues nothing
        cached.flush()
        #expect(cached.stats.readThroughFills == 1)
        #expect(cached.stats.readThroughFillsFailed == 0)
        #expect(try cached.local.get(query, namespace: ns, level: 0)?.context.kv == ctx.kv)
        #expect(cached.streamFill(match, tokens: query, namespace: ns) == nil)   // held whole: nothing to fill

        // Stored in the cluster at level 2 only: no level-0 bytes exist, so nothing is filled.
        var lossy = ns
        lossy.salt = "lossy"
        _ = try cached.remote.storeContext(ctx, namespace: lossy, levels: [2], name: "")
        let lossyMatch = try cached.longestPrefix(ctx.tokens, namespace: lossy)
        #expect(lossyMatch.tokens == 96)
        try #require(cached.streamFill(lossyMatch, tokens: ctx.tokens, namespace: lossy)).finish()
        cached.flush()
        #expect(cached.stats.readThroughFills == 1)
        #expect(try cached.local.longestPrefix(ctx.tokens, namespace: lossy) == .none)
    }
}

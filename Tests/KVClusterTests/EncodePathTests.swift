import Foundation
import KVCluster
import KVCodec
import KVStore
import KVTensor
import Testing
import TestSupport

/// Issue 24: chunks are encoded in one place, with the model's profile, whatever tier stores them.
@Suite(.serialized)
struct EncodePathTests {
    /// A lossy chunk written through the cluster tier holds the same bytes as the same chunk put
    /// into an embedded store that has the model's profile (not the flat fallback profile).
    @Test func aLossyChunkPutThroughTheClusterIsByteIdenticalToTheEmbeddedStores() throws {
        let cluster = try RedisClusterFixture()
        defer { cluster.stop() }
        let dir = TestSupport.scratchDirectory("kvstore-encode")
        defer { TestSupport.removeTree(dir) }
        let ctx = try TestSupport.realContext()
        let profile = try CodecProfile.load(TestSupport.numpyProfile)
        let ns = Namespace(model: profile.model, dtype: ctx.kv.dtype, shape: ctx.kv.shape, chunkTokens: 32)

        let embedded = try ChunkStore(root: dir + "/e", chunkTokens: 32)
        try embedded.addProfile(profile)
        _ = try embedded.put(ctx, namespace: ns, levels: [2])
        let local = try #require(try embedded.lookup(ctx.tokens, namespace: ns, adapter: nil).chunks.first)
        let expected = try #require(try embedded.streamBytes(local, level: 2))

        // The cluster-mode node's store directory holds the model's profile (`kvstore profile add`).
        let nodeStore = try ChunkStore(root: dir + "/n", chunkTokens: 32)
        try nodeStore.addProfile(profile)
        let tier = try cluster.tier(chunkTokens: 32)
        _ = try tier.storeContext(try nodeStore.encode(ctx, namespace: ns, levels: [2]), name: "")
        let stored = try #require(try tier.fetch(prefix: local.hash, level: 2))
        #expect(stored == expected)
    }

    /// Cache mode encodes each chunk once: the cluster gets the bytes the local put wrote.
    @Test func cacheModeEncodesEachChunkOnceForBothTiers() throws {
        let cluster = try RedisClusterFixture()
        defer { cluster.stop() }
        let dir = TestSupport.scratchDirectory("kvstore-encode-once")
        defer { TestSupport.removeTree(dir) }
        let ctx = try TestSupport.realContext()
        let profile = try CodecProfile.load(TestSupport.numpyProfile)
        let ns = Namespace(model: profile.model, dtype: ctx.kv.dtype, shape: ctx.kv.shape, chunkTokens: 32)
        let store = try ChunkStore(root: dir + "/c", chunkTokens: 32)
        try store.addProfile(profile)
        let cached = CachedChunkTier(local: store, remote: try cluster.tier(chunkTokens: 32))

        let encoded = try store.encode(ctx, namespace: ns, levels: [0, 2])
        _ = try cached.storeContext(encoded, name: "")
        cached.flush()
        #expect(encoded.encodeCount == 3 * 2, "3 chunks at 2 levels, encoded once for both tiers")
        #expect(cached.stats.clusterWritesWritten == 1)
        let chunks = try store.lookup(ctx.tokens, namespace: ns, adapter: nil).chunks
        #expect(chunks.count == 3)
        for chunk in chunks {
            for level: UInt8 in [0, 2] {
                let near = try #require(try store.streamBytes(chunk, level: level))
                #expect(try cached.remote.fetch(prefix: chunk.hash, level: level) == near)
            }
        }
        // A second put of the same context encodes nothing: both tiers hold every chunk.
        let again = try store.encode(ctx, namespace: ns, levels: [0, 2])
        _ = try cached.storeContext(again, name: "")
        cached.flush()
        #expect(again.encodeCount == 0)
    }
}

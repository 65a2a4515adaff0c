import Foundation
import KVCluster
import KVCodec
import KVRESP
import KVStore
import KVTensor
import Testing
import TestSupport

/// The cluster tier against a real 6-node Redis Cluster (scripts/setup.sh installs redis-server).
@Suite(.serialized)
struct ClusterTierTests {
    @Test func storeLookupAndReadBackBitExactWithTenantsAndPartials() throws {
        let cluster = try RedisClusterFixture(password: "pw")
        defer { cluster.stop() }
        let tier = try cluster.tier(chunkTokens: 32)
        let ctx = try TestSupport.realContext()           // 96 real SmolLM2 tokens: 3 chunks
        let ns = Namespace(model: "m", dtype: ctx.kv.dtype, shape: ctx.kv.shape, chunkTokens: 32)
        let report = try tier.storeContext(ctx, namespace: ns, levels: [0, 2], name: "")
        #expect(report.chunks == 3 && report.blobsWritten == 6 && !report.alreadyStored)
        let again = try tier.storeContext(ctx, namespace: ns, levels: [0, 2], name: "")
        #expect(again.blobsWritten == 0 && again.alreadyStored)   // SET NX: idempotent

        let match = try tier.longestPrefix(ctx.tokens + [1, 2, 3], namespace: ns)
        #expect(match.tokens == 96)
        #expect(match.chunks.map { $0.record.levels.map(\.level) } == [[0, 2], [0, 2], [0, 2]])
        let got = try #require(try tier.getContext(ctx.tokens + [1, 2, 3], namespace: ns, level: 0))
        #expect(got.context.kv == ctx.kv)
        #expect(try tier.namespaces() == [ns])

        // Another tenant (salt) never sees it; a diverging query matches up to the divergence.
        var other = ns
        other.salt = "tenant-b"
        #expect(try tier.longestPrefix(ctx.tokens, namespace: other) == .none)
        var diverged = ctx.tokens
        diverged[40] &+= 1
        #expect(try tier.longestPrefix(diverged, namespace: ns).tokens == 32)

        // A 70-token context ends in a 6-token partial chunk; a longer query still finds it.
        let short = try KVContext(kv: ctx.kv.slice(tokens: 0..<70), tokens: Array(ctx.tokens[0..<70]))
        var salted = ns
        salted.salt = "s"
        _ = try tier.storeContext(short, namespace: salted, levels: [0], name: "")
        let partial = try tier.longestPrefix(ctx.tokens, namespace: salted)
        #expect(partial.tokens == 70)
        #expect(try tier.getContext(ctx.tokens, namespace: salted)?.context.kv == short.kv)

        // A value changed behind the tier's back is a miss (re-hash), never wrong bytes.
        let key = TierKeys.chunk(prefix: match.chunks[1].hash, level: 0)
        let value = try #require(try tier.cluster.call(RedisCluster.Command("GET", key: key)).bytes)
        var damaged = value
        damaged[damaged.count - 10] ^= 0x40
        try tier.cluster.call(RedisCluster.Command("SET", key: key, [damaged]))
        #expect(try tier.streamBytes(match.chunks[1], level: 0) == nil)
        #expect(tier.stats.corruptValues == 1)
        let cut = try #require(try tier.getContext(ctx.tokens, namespace: ns, level: 0))
        #expect(cut.match.tokens == 32)                        // stops at the damaged chunk
        #expect(cut.context.kv == ctx.kv.slice(tokens: 0..<32))
        try tier.cluster.call(RedisCluster.Command("SET", key: key, [value]))

        // ACL user and wrong credentials.
        for port in cluster.ports { try cluster.cli(port, ["ACL", "SETUSER", "app", "on", ">apppw", "~kvs:*", "+@all"]) }
        let asApp = try cluster.tier(chunkTokens: 32, user: "app", password: "apppw")
        #expect(try asApp.getContext(ctx.tokens, namespace: ns, level: 0)?.context.kv == ctx.kv)
        let wrong = try cluster.tier(chunkTokens: 32, password: "nope", retrySeconds: 1)
        #expect { _ = try wrong.longestPrefix(ctx.tokens, namespace: ns) } throws: { "\($0)".contains("WRONGPASS") }

        // Full cluster (maxmemory reached, noeviction): the write is skipped and counted, not failed.
        for port in cluster.masterPorts {
            try cluster.cli(port, ["CONFIG", "SET", "maxmemory-policy", "noeviction"])
            try cluster.cli(port, ["CONFIG", "SET", "maxmemory", "1"])
        }
        let fresh = try KVContext(kv: ctx.kv.slice(tokens: 0..<64), tokens: (0..<64).map { Int32($0 + 5000) })
        let skipped = try tier.storeContext(fresh, namespace: ns, levels: [0], name: "")
        #expect(skipped.blobsWritten == 0)
        #expect(tier.stats.writesSkippedFull == 2)
        #expect(try tier.longestPrefix(fresh.tokens, namespace: ns) == .none)
        #expect(tier.metricsText.contains("kvstore_cluster_writes_skipped_full_total 2"))
    }

    @Test func redirectsAreFollowedWhenASlotMoves() throws {
        let cluster = try RedisClusterFixture()
        defer { cluster.stop() }
        let tier = try cluster.tier(chunkTokens: 16)
        let tokens = (0..<64).map { Int32($0) }
        let ctx = try SyntheticContexts.context(tokens, chunkTokens: 16)
        let ns = Namespace(model: "synthetic", dtype: .f16, shape: SyntheticContexts.shape, chunkTokens: 16)
        _ = try tier.storeContext(ctx, namespace: ns, levels: [0], name: "")
        _ = try tier.longestPrefix(tokens, namespace: ns)      // the tier now holds a slot map

        // Move the first chunk's slot (with its key) to another master behind the client's back.
        let key = TierKeys.chunk(prefix: PrefixChain.hashes(root: ns.root, tokens: tokens, chunkTokens: 16)[0], level: 0)
        let slot = HashSlot.slot(key)
        let from = try #require(try cluster.masterPort(slot: slot))
        let to = try #require(cluster.masterPorts.first { $0 != from })
        func nodeID(_ port: Int) throws -> String { try cluster.cli(port, ["CLUSTER", "MYID"]).trimmingCharacters(in: .whitespacesAndNewlines) }
        let fromID = try nodeID(from), toID = try nodeID(to)
        try cluster.cli(to, ["CLUSTER", "SETSLOT", "\(slot)", "IMPORTING", fromID])
        try cluster.cli(from, ["CLUSTER", "SETSLOT", "\(slot)", "MIGRATING", toID])
        // Mid-migration: the key is still on the source; ASK only for keys already moved.
        try cluster.cli(from, ["MIGRATE", "127.0.0.1", "\(to)", "", "0", "5000", "KEYS", String(decoding: key, as: UTF8.self)])
        #expect(try tier.getContext(tokens, namespace: ns, level: 0)?.context.kv == ctx.kv)   // via ASK
        for port in cluster.masterPorts { try cluster.cli(port, ["CLUSTER", "SETSLOT", "\(slot)", "NODE", toID]) }
        #expect(try tier.getContext(tokens, namespace: ns, level: 0)?.context.kv == ctx.kv)   // via MOVED
        #expect(tier.cluster.counters.redirects >= 2)
        #expect(tier.cluster.slotMap?.node(slot: slot) == "127.0.0.1:\(to)")
    }

    /// `CLUSTER SHARDS` (Redis 7) and the `CLUSTER SLOTS` fallback give the same map on the real
    /// cluster; an ACL user refused SHARDS (as a Redis 6 server refuses the unknown subcommand)
    /// falls back to SLOTS by itself.
    @Test func shardsAndSlotsGiveTheSameMapAndARefusedShardsFallsBack() throws {
        let cluster = try RedisClusterFixture()
        defer { cluster.stop() }
        let shards = try cluster.tier(chunkTokens: 32)
        let slots = try cluster.tier(chunkTokens: 32)
        slots.cluster.mapSource = .slots
        let a = try shards.cluster.refreshMap(), b = try slots.cluster.refreshMap()
        #expect(shards.cluster.mapSource == .shards)
        #expect(a == b && a.coversAllSlots && a.nodes.count == 3)
        #expect(Set(a.nodes.compactMap { Int($0.split(separator: ":").last!) }) == Set(cluster.masterPorts))

        for port in cluster.ports {
            try cluster.cli(port, ["ACL", "SETUSER", "old", "on", ">pw", "~kvs:*", "+@all", "-cluster|shards"])
        }
        let old = try cluster.tier(chunkTokens: 32, user: "old", password: "pw")
        #expect(try old.cluster.refreshMap() == a)
        #expect(old.cluster.mapSource == .slots)
        let ctx = try SyntheticContexts.context((0..<64).map { Int32($0) }, chunkTokens: 32)
        let ns = Namespace(model: "synthetic", dtype: .f16, shape: SyntheticContexts.shape, chunkTokens: 32)
        _ = try old.storeContext(ctx, namespace: ns, levels: [0], name: "")
        #expect(try shards.getContext(ctx.tokens, namespace: ns, level: 0)?.context.kv == ctx.kv)
    }
}

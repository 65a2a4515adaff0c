import Foundation
import KVCluster
import KVRESP
import KVStore
import KVTensor
import Testing
import TestSupport

/// Pins in the cluster tier against a real cluster: with `--cluster-ttl` and a `volatile-lru`
/// policy, a pinned context survives eviction pressure while unpinned ones are evicted, and every
/// lookup still returns exact bytes or a shorter prefix.
@Suite(.serialized)
struct ClusterPinTests {
    @Test func aPinnedContextSurvivesVolatileLRUEvictionAndUnpinGivesItsKeysTheTTLBack() throws {
        let cluster = try RedisClusterFixture()
        defer { cluster.stop() }
        let headroom = try cluster.limitMemory(headroom: 2 << 20, policy: "volatile-lru")
        let base = try cluster.tier(chunkTokens: 32)
        let tier = RedisChunkTier(cluster: base.cluster, chunkTokens: 32, ttlSeconds: 3600)
        #expect(tier.policyWarnings() == [])
        #expect(base.policyWarnings().count == 3)          // volatile-* without a TTL: nothing would be evicted
        let ns = Namespace(model: "synthetic", dtype: .f16, shape: SyntheticContexts.shape, chunkTokens: 32)

        // Two pinned contexts sharing their first two chunks; the first ends in a partial chunk.
        let pinnedTokens = (0..<112).map { Int32(500_000 + $0) }
        let siblingTokens = Array(pinnedTokens[0..<64]) + (0..<64).map { Int32(600_000 + $0) }
        let pinned = try tier.storeContext(try SyntheticContexts.context(pinnedTokens, chunkTokens: 32), namespace: ns, levels: [0], name: "")
        let sibling = try tier.storeContext(try SyntheticContexts.context(siblingTokens, chunkTokens: 32), namespace: ns, levels: [0], name: "")
        let pinnedID = try #require(Hash32(hex: pinned.contextID)), siblingID = try #require(Hash32(hex: sibling.contextID))
        let chain = PrefixChain.hashes(root: ns.root, tokens: pinnedTokens, chunkTokens: 32)
        func ttl(_ key: [UInt8]) throws -> Int64 {
            guard case .integer(let n) = try tier.cluster.call(RedisCluster.Command("TTL", key: key)) else { return -3 }
            return n
        }
        #expect(try ttl(TierKeys.chunk(prefix: chain[0], level: 0)) > 3000)   // written with the expiry
        let report = try tier.pin(context: pinnedID)
        #expect(report.keysFound == 6 && report.keysChanged == 6)              // 4 chunks, partials set, chain record
        #expect(try tier.pin(context: siblingID).keysChanged == 3)            // its own 2 chunks and record
        #expect(try tier.pins() == [pinnedID, siblingID].sorted { $0.hex < $1.hex })
        #expect(try ttl(TierKeys.chunk(prefix: chain[3], level: 0)) == -1)
        #expect(throws: StoreError.self) { try tier.pin(context: Hash32.sha256([1])) }

        // 10x what fits of unpinned contexts, in families sharing a first chunk.
        let family = (0..<16).map { f in (0..<32).map { Int32(f * 100 + $0) } }
        var stored: [[Int32]] = []
        var count = Int.max
        var c = 0
        while c < count {
            let tokens = family[c % family.count] + (0..<96).map { Int32(1_000_000 + c * 96 + $0) }
            let r = try tier.storeContext(try SyntheticContexts.context(tokens, chunkTokens: 32), namespace: ns, levels: [0], name: "")
            if c == 0 { count = 10 * headroom / r.storedBytes }
            stored.append(tokens)
            c += 1
        }
        let evicted = try cluster.infoSum("evicted_keys")
        var full = 0, shorter = 0, none = 0
        for tokens in stored {
            guard let got = try tier.getContext(tokens, namespace: ns, level: 0) else { none += 1; continue }
            let expected = try SyntheticContexts.context(Array(tokens[0..<got.match.tokens]), chunkTokens: 32)
            #expect(got.context.kv == expected.kv, "prefix of \(got.match.tokens) tokens holds other bytes")
            if got.match.tokens == tokens.count { full += 1 } else { shorter += 1 }
        }
        print("pins under volatile-lru: \(count) contexts into ~\(headroom >> 20) MiB: \(evicted) keys evicted, \(tier.stats.writesSkippedFull) writes refused; unpinned lookups: \(full) whole, \(shorter) shorter, \(none) none")
        #expect(evicted > 0)
        #expect(shorter + none > 0)
        #expect(tier.stats.corruptValues == 0)
        // The pinned contexts are whole and exact, partial last chunk included.
        for tokens in [pinnedTokens, siblingTokens] {
            let got = try #require(try tier.getContext(tokens + [7], namespace: ns, level: 0))
            #expect(got.match.tokens == tokens.count)
            #expect(got.context.kv == (try SyntheticContexts.context(tokens, chunkTokens: 32)).kv)
        }

        // Unpin: the context's own keys expire again; the chunks the sibling (still pinned) shares do not.
        let unpinned = try tier.unpin(context: pinnedID)
        #expect(unpinned.keysChanged == 4)                                    // chunks 2 and 3, partials set, record
        #expect(try ttl(TierKeys.chunk(prefix: chain[3], level: 0)) > 3000)
        #expect(try ttl(TierKeys.chunk(prefix: chain[1], level: 0)) == -1)
        #expect(try tier.pins() == [siblingID])
        #expect(throws: StoreError.self) { try tier.unpin(context: pinnedID) }

        // Under allkeys-lru a pin protects nothing, and the tier says so.
        try cluster.cli(cluster.masterPorts[0], ["CONFIG", "SET", "maxmemory-policy", "allkeys-lru"])
        let warnings = tier.policyWarnings()
        #expect(warnings.count == 1 && warnings[0].contains("pins cannot be protected"))
    }
}

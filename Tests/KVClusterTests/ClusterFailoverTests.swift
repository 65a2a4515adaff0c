import Foundation
import KVCluster
import KVStore
import KVTensor
import Testing
import TestSupport

/// Must-show: failover and eviction on a real cluster. Assertions are on behaviour only; the
/// time to recover is printed, and bounded generously (a slow machine fails over slowly too).
@Suite(.serialized)
struct ClusterFailoverTests {
    @Test func killingTheMasterOfAStoredChunkLosesNoAcknowledgedWrite() throws {
        let cluster = try RedisClusterFixture(nodeTimeoutMs: 2000)
        defer { cluster.stop() }
        let tier = try cluster.tier(chunkTokens: 16, waitReplicas: 1, retrySeconds: 5)
        let ns = Namespace(model: "synthetic", dtype: .f16, shape: SyntheticContexts.shape, chunkTokens: 16)
        // 12 contexts of 4 chunks: their 48 keys land on every master.
        let contexts = try (0..<12).map { c in try SyntheticContexts.context((0..<64).map { Int32(c * 1000 + $0) }, chunkTokens: 16) }
        for ctx in contexts { _ = try tier.storeContext(ctx, namespace: ns, levels: [0], name: "") }
        #expect(tier.stats.writesUnderReplicated == 0, "every write was acknowledged by a replica (WAIT 1)")

        let firstKey = TierKeys.chunk(prefix: PrefixChain.hashes(root: ns.root, tokens: contexts[0].tokens, chunkTokens: 16)[0], level: 0)
        let victim = try #require(try cluster.masterPort(slot: HashSlot.slot(firstKey)))
        let killed = ContinuousClock.now
        cluster.kill9(port: victim)

        // Read until the promoted replica answers; every answer on the way is exact or absent.
        var recovered: Duration?
        var wrong = 0, misses = 0, failures = 0
        while ContinuousClock.now - killed < .seconds(60) {
            do {
                if let got = try tier.getContext(contexts[0].tokens, namespace: ns, level: 0) {
                    if got.context.kv != contexts[0].kv.slice(tokens: 0..<got.match.tokens) { wrong += 1 }
                    if got.match.tokens == 64 { recovered = ContinuousClock.now - killed; break }
                } else { misses += 1 }
            } catch { failures += 1 }
            Thread.sleep(forTimeInterval: 0.1)
        }
        print("failover: reads exact again after \(recovered.map { "\($0)" } ?? "never") (\(failures) failed attempts, \(misses) misses)")
        #expect(wrong == 0)
        #expect(recovered != nil)
        #expect(try cluster.masterPort(slot: HashSlot.slot(firstKey)) != victim)

        // Every write acknowledged before the kill is readable, bit for bit.
        for ctx in contexts {
            let got = try tier.getContext(ctx.tokens, namespace: ns, level: 0)
            #expect(got?.match.tokens == 64)
            #expect(got?.context.kv == ctx.kv)
        }
        // And the cluster takes writes again.
        let after = try SyntheticContexts.context((0..<64).map { Int32(99_000 + $0) }, chunkTokens: 16)
        #expect(try tier.storeContext(after, namespace: ns, levels: [0], name: "").blobsWritten == 4)
        #expect(try tier.getContext(after.tokens, namespace: ns, level: 0)?.context.kv == after.kv)
    }

    @Test func evictionGivesExactOrShorterPrefixesNeverWrongOnes() throws {
        let cluster = try RedisClusterFixture()
        defer { cluster.stop() }
        // Each master gets 2 MiB above what it uses empty, evicting least recently used keys.
        let headroom = try cluster.limitMemory(headroom: 2 << 20, policy: "allkeys-lru")
        let tier = try cluster.tier(chunkTokens: 32)
        let ns = Namespace(model: "synthetic", dtype: .f16, shape: SyntheticContexts.shape, chunkTokens: 32)
        // Contexts of 128 tokens (4 chunks of 32 KiB raw) in families sharing their first chunk,
        // so evictions hit the middle of chains too.
        let family = (0..<16).map { f in (0..<32).map { Int32(f * 100 + $0) } }
        var stored: [[Int32]] = []
        var count = Int.max
        var c = 0
        while c < count {
            let tokens = family[c % family.count] + (0..<96).map { Int32(1_000_000 + c * 96 + $0) }
            let report = try tier.storeContext(try SyntheticContexts.context(tokens, chunkTokens: 32), namespace: ns, levels: [0], name: "")
            if c == 0 { count = 10 * headroom / report.storedBytes }   // 10x what fits, from the measured size
            stored.append(tokens)
            c += 1
        }
        let evicted = try cluster.infoSum("evicted_keys")
        var full = 0, shorter = 0, none = 0
        for tokens in stored {
            guard let got = try tier.getContext(tokens, namespace: ns, level: 0) else { none += 1; continue }
            let expected = try SyntheticContexts.context(Array(tokens[0..<got.match.tokens]), chunkTokens: 32)
            #expect(got.context.kv == expected.kv, "prefix of \(got.match.tokens) tokens holds other bytes")
            #expect(got.context.tokens == Array(tokens[0..<got.match.tokens]))
            if got.match.tokens == tokens.count { full += 1 } else { shorter += 1 }
        }
        print("eviction: \(count) contexts into ~\(headroom >> 20) MiB: \(evicted) keys evicted, \(tier.stats.writesSkippedFull) writes refused; lookups: \(full) whole, \(shorter) shorter, \(none) none")
        #expect(evicted > 0)
        #expect(full > 0)               // the most recently stored contexts are whole
        #expect(shorter + none > 0)     // and most of the rest are not
        #expect(tier.stats.corruptValues == 0)
    }
}

import Foundation
import KVStore
import KVTensor
import Testing

/// aLoRA: chunks before the invocation point are the base model's, shared by base and adapters.
@Suite struct ALoRATests {
    // 100-token conversation; adapters are invoked at token 80 (chunks of 16: five base chunks).
    let tokens = (0..<100).map { Int32($0 * 3 + 1) }
    let n = 80

    @Test func twoAdaptersAndBaseShareBaseChunksOnly() throws {
        let store = try ReuseSupport.tempStore()
        let ns = ReuseSupport.namespace(store)
        let base = try ReuseSupport.context(tokens, seed: 10)
        // An adapter's KV equals the base model's before its invocation point, differs after.
        let a = try KVContext(kv: ReuseSupport.splice(base.kv, try ReuseSupport.kv(tokens: 100, seed: 11), at: n), tokens: tokens)
        let b = try KVContext(kv: ReuseSupport.splice(base.kv, try ReuseSupport.kv(tokens: 100, seed: 12), at: n), tokens: tokens)
        let spanA = try AdapterSpan(digest: ReuseSupport.digest("adapter A weights"), invocationStart: n)
        let spanB = try AdapterSpan(digest: ReuseSupport.digest("adapter B weights"), invocationStart: n)

        let rBase = try store.put(base, namespace: ns)
        let rA = try store.put(a, namespace: ns, adapter: spanA)
        let rB = try store.put(b, namespace: ns, adapter: spanB)
        #expect(rBase.deduplicatedChunks == 0)
        #expect(rA.deduplicatedChunks == 5 && rB.deduplicatedChunks == 5)
        // 7 chunks of the base context, plus 2 adapter chunks each: the base chunks exist once.
        #expect(try store.stats().chunks == 7 + 2 + 2)

        let mBase = try store.lookup(tokens, namespace: ns)
        let mA = try store.lookup(tokens, namespace: ns, adapter: spanA)
        let mB = try store.lookup(tokens, namespace: ns, adapter: spanB)
        #expect(mBase.tokens == 100 && mA.tokens == 100 && mB.tokens == 100)
        #expect(Array(mA.chunks.prefix(5).map(\.hash)) == Array(mBase.chunks.prefix(5).map(\.hash)))
        #expect(Array(mB.chunks.prefix(5).map(\.hash)) == Array(mBase.chunks.prefix(5).map(\.hash)))
        #expect(Set(mA.chunks.suffix(2).map(\.hash)).isDisjoint(with: mB.chunks.suffix(2).map(\.hash)))
        #expect(Set(mA.chunks.suffix(2).map(\.hash)).isDisjoint(with: mBase.chunks.map(\.hash)))

        // Each gets its own KV back: adapter rows are never served to another adapter or the base.
        #expect(try store.get(tokens, namespace: ns)?.context.kv == base.kv)
        #expect(try store.get(tokens, namespace: ns, adapter: spanA)?.context.kv == a.kv)
        #expect(try store.get(tokens, namespace: ns, adapter: spanB)?.context.kv == b.kv)

        // An adapter never stored (same name, new weights = new digest) hits only the base chunks.
        let reloaded = try AdapterSpan(digest: ReuseSupport.digest("adapter A weights, retrained"), invocationStart: n)
        let mC = try store.lookup(tokens, namespace: ns, adapter: reloaded)
        #expect(mC.tokens == n)
        #expect(try store.get(tokens, namespace: ns, adapter: reloaded)?.context.kv == base.kv.slice(tokens: 0..<n))
    }

    @Test func invocationPointIsPartOfTheAdapterChain() throws {
        let store = try ReuseSupport.tempStore()
        let ns = ReuseSupport.namespace(store)
        let spanA = try AdapterSpan(digest: ReuseSupport.digest("A"), invocationStart: n)
        _ = try store.put(try ReuseSupport.context(tokens, seed: 3), namespace: ns, adapter: spanA)
        // Invoked 8 tokens later, chunk [80, 96) holds different KV: only the base part matches.
        let later = try AdapterSpan(digest: ReuseSupport.digest("A"), invocationStart: 88)
        #expect(try store.lookup(tokens, namespace: ns, adapter: later).tokens == 80)
        // A base request sees the base chunks only.
        #expect(try store.lookup(tokens, namespace: ns).tokens == 80)
    }

    @Test func adapterChainCommitsToTheWholePrefix() throws {
        let ns = Namespace(model: "m", dtype: .f16, shape: ReuseSupport.shape, chunkTokens: 16)
        let span = try AdapterSpan(digest: ReuseSupport.digest("A"), invocationStart: n)
        var other = tokens
        other[3] += 1   // differs only in the base part
        let p1 = ReuseChain.plan(tokens: tokens, namespace: ns, adapter: span)
        let p2 = ReuseChain.plan(tokens: other, namespace: ns, adapter: span)
        #expect(p1.map(\.adapter) == [false, false, false, false, false, true, true])
        #expect(Set(p1.map(\.hash)).isDisjoint(with: p2.map(\.hash)))
        // Without an adapter the plan is the plain prefix chain.
        #expect(ReuseChain.plan(tokens: tokens, namespace: ns, adapter: nil).map(\.hash)
                == PrefixChain.hashes(root: ns.root, tokens: tokens, chunkTokens: 16))
        // The base part of an adapter plan is the base chain.
        #expect(Array(p1.prefix(5).map(\.hash)) == Array(PrefixChain.hashes(root: ns.root, tokens: tokens, chunkTokens: 16).prefix(5)))
        // Salted requests bridge from the salted base chain.
        var salted = ns
        salted.salt = "t"
        #expect(Set(ReuseChain.plan(tokens: tokens, namespace: salted, adapter: span).map(\.hash)).isDisjoint(with: p1.map(\.hash)))
    }

    @Test func invocationAtAChunkBoundaryAndAtZero() throws {
        let ns = Namespace(model: "m", dtype: .f16, shape: ReuseSupport.shape, chunkTokens: 16)
        let atBoundary = ReuseChain.plan(tokens: tokens, namespace: ns, adapter: try AdapterSpan(digest: ReuseSupport.digest("A"), invocationStart: 64))
        #expect(atBoundary.map(\.adapter) == [false, false, false, false, true, true, true])
        let atZero = ReuseChain.plan(tokens: tokens, namespace: ns, adapter: try AdapterSpan(digest: ReuseSupport.digest("A"), invocationStart: 0))
        #expect(atZero.allSatisfy { $0.adapter })
        let pastEnd = ReuseChain.plan(tokens: tokens, namespace: ns, adapter: try AdapterSpan(digest: ReuseSupport.digest("A"), invocationStart: 500))
        #expect(pastEnd.map(\.hash) == PrefixChain.hashes(root: ns.root, tokens: tokens, chunkTokens: 16))
    }

    @Test func basePartialChunkServesAnAdapterQueryUpToTheInvocation() throws {
        let store = try ReuseSupport.tempStore()
        let ns = ReuseSupport.namespace(store)
        let base = try ReuseSupport.context(Array(tokens.prefix(85)), seed: 4)
        _ = try store.put(base, namespace: ns)
        let span = try AdapterSpan(digest: ReuseSupport.digest("A"), invocationStart: 88)
        let got = try #require(try store.get(tokens, namespace: ns, adapter: span))
        #expect(got.match.tokens == 85)
        #expect(got.context.kv == base.kv)
        // ... but never past it: invoked at 82, the base partial [80, 85) is not the adapter's KV.
        let early = try AdapterSpan(digest: ReuseSupport.digest("A"), invocationStart: 82)
        #expect(try store.lookup(tokens, namespace: ns, adapter: early).tokens == 80)
    }

    @Test func removingAnAdapterContextKeepsSharedBaseChunks() throws {
        let store = try ReuseSupport.tempStore()
        let ns = ReuseSupport.namespace(store)
        let span = try AdapterSpan(digest: ReuseSupport.digest("A"), invocationStart: n)
        _ = try store.put(try ReuseSupport.context(tokens, seed: 5), namespace: ns, name: "base")
        let adapterCtx = try store.put(try ReuseSupport.context(tokens, seed: 6), namespace: ns, adapter: span, name: "a")
        let removed = try store.remove(context: #require(Hash32(hex: adapterCtx.contextID)))
        #expect(removed.chunks == 2)
        #expect(try store.lookup(tokens, namespace: ns).tokens == 100)
        #expect(try store.lookup(tokens, namespace: ns, adapter: span).tokens == 80)
    }

    @Test func badAdapterSpansAreRejected() throws {
        #expect(throws: StoreError.invalidInput("adapter digest must be 32 to 128 hex digits, got \"lora-x\"")) {
            try AdapterSpan(digest: "lora-x", invocationStart: 3)
        }
        #expect(throws: StoreError.invalidInput("invocation start -1 is negative")) {
            try AdapterSpan(digest: ReuseSupport.digest("A"), invocationStart: -1)
        }
        let missing = "/nonexistent/adapter.safetensors"
        #expect(throws: StoreError.self) { try AdapterSpan.digest(ofFile: missing) }
    }

    @Test func adapterFileDigestIsItsSHA256() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("adapter-\(UUID().uuidString).bin").path
        let bytes = ReuseSupport.values(3000, seed: 9).map { UInt8(truncatingIfNeeded: Int($0 * 1000)) }
        try FileIO.writeAtomically([bytes], to: path, sync: false)
        #expect(try AdapterSpan.digest(ofFile: path) == Hash32.sha256(bytes).hex)
    }
}

import KVStore
import KVTensor
import Testing

@Suite struct NamespaceIsolationTests {
    let shape = ReuseSupport.shape

    @Test func adapterNamedXNeverEqualsSaltX() {
        // vLLM once keyed a LoRA named "x" and a base request salted "x" alike; tagged fields cannot.
        let lora = Namespace(model: "m", dtype: .f16, shape: shape, chunkTokens: 16, adapter: "x")
        let salted = Namespace(model: "m", dtype: .f16, shape: shape, chunkTokens: 16, salt: "x")
        #expect(lora.encoded() != salted.encoded())
        #expect(lora.root != salted.root)
    }

    @Test func fieldBoundariesAreLengthPrefixed() {
        let a = Namespace(model: "a", dtype: .f16, shape: shape, chunkTokens: 16, adapter: "bc")
        let b = Namespace(model: "ab", dtype: .f16, shape: shape, chunkTokens: 16, adapter: "c")
        let c = Namespace(model: "m", dtype: .f16, shape: shape, chunkTokens: 16, adapter: "x", salt: "y")
        let d = Namespace(model: "m", dtype: .f16, shape: shape, chunkTokens: 16, adapter: "y", salt: "x")
        let e = Namespace(model: "m", dtype: .f16, shape: shape, chunkTokens: 16, salt: "")
        let f = Namespace(model: "m", dtype: .f16, shape: shape, chunkTokens: 16)
        let roots = [a, b, c, d, e, f].map(\.root)
        #expect(Set(roots).count == roots.count)
    }

    @Test func everyFieldSeparates() {
        let n = Namespace(model: "m", dtype: .f16, shape: shape, chunkTokens: 16)
        var variants: [Namespace] = []
        var v = n; v.model = "m2"; variants.append(v)
        v = n; v.dtype = .bf16; variants.append(v)
        v = n; v.shape = KVShape(layers: 3, kvHeads: 2, headDim: 8); variants.append(v)
        v = n; v.chunkTokens = 32; variants.append(v)
        v = n; v.adapter = "a"; variants.append(v)
        v = n; v.salt = "s"; variants.append(v)
        for variant in variants { #expect(variant.root != n.root, "\(variant)") }
    }

    @Test func saltsSeparateLookupsOfIdenticalTokens() throws {
        let store = try ReuseSupport.tempStore()
        let tokens = (0..<40).map(Int32.init)
        let ctx = try ReuseSupport.context(tokens, seed: 1)
        _ = try store.put(ctx, namespace: ReuseSupport.namespace(store, salt: "tenant-a"))
        #expect(try store.lookup(tokens, namespace: ReuseSupport.namespace(store, salt: "tenant-a")).tokens == 40)
        #expect(try store.lookup(tokens, namespace: ReuseSupport.namespace(store, salt: "tenant-b")).tokens == 0)
        #expect(try store.lookup(tokens, namespace: ReuseSupport.namespace(store)).tokens == 0)
        // and the other way round: a base put is not visible to a salted lookup
        _ = try store.put(try ReuseSupport.context(tokens, seed: 2), namespace: ReuseSupport.namespace(store))
        let fromB = try store.get(tokens, namespace: ReuseSupport.namespace(store, salt: "tenant-b"))
        #expect(fromB == nil)
        let fromA = try #require(try store.get(tokens, namespace: ReuseSupport.namespace(store, salt: "tenant-a")))
        #expect(fromA.context.kv == ctx.kv)
    }

    @Test func resolveNamespaceFindsOnlyTheSaltAsked() throws {
        let store = try ReuseSupport.tempStore()
        _ = try store.put(try ReuseSupport.context([1, 2, 3], seed: 1), namespace: ReuseSupport.namespace(store, salt: "a"))
        #expect(try store.resolveNamespaces(model: nil, dtype: nil, salt: "a").first?.salt == "a")
        #expect(throws: StoreError.self) { try store.resolveNamespaces(model: nil, dtype: nil, salt: "b") }
        #expect(throws: StoreError.self) { try store.resolveNamespaces(model: nil, dtype: nil) }
    }
}

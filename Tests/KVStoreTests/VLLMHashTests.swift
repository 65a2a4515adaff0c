import Foundation
import KVStore
import KVTensor
import Testing

/// Swift's vLLM sha256_cbor block hashes against vectors computed by tools/vllm_hash.py with cbor2.
@Suite struct VLLMHashTests {
    struct Vectors: Decodable {
        struct Case: Decodable {
            var name: String
            var seed: String
            var block_size: Int
            var tokens: [Int64]
            var salt: String?
            var lora_name: String?
            var none_hash: String
            var hashes: [String]
        }
        var cases: [Case]
    }

    static func vectors() throws -> Vectors {
        let path = ReuseSupport.repoRoot.appendingPathComponent("tools/tests/vllm_hash_vectors.json").path
        return try JSONDecoder().decode(Vectors.self, from: Data(FileIO.readAll(path)))
    }

    @Test func matchesCbor2Vectors() throws {
        let v = try Self.vectors()
        #expect(v.cases.count >= 8)
        for c in v.cases {
            let none = VLLMBlockHash.noneHash(seed: c.seed)
            #expect(none.hex == c.none_hash, "\(c.name)")
            let tokens = c.tokens.map { Int32(bitPattern: UInt32($0)) }
            let got = VLLMBlockHash.hashes(tokens: tokens, blockSize: c.block_size, noneHash: none, loraName: c.lora_name, salt: c.salt)
            #expect(got.map(\.hex) == c.hashes, "\(c.name)")
        }
    }

    @Test func canonicalCBORHeads() {
        #expect(CBORItem.unsigned(23).encoded() == [0x17])
        #expect(CBORItem.unsigned(24).encoded() == [0x18, 24])
        #expect(CBORItem.unsigned(500).encoded() == [0x19, 0x01, 0xF4])
        #expect(CBORItem.unsigned(65536).encoded() == [0x1A, 0, 1, 0, 0])
        #expect(CBORItem.unsigned(1 << 32).encoded() == [0x1B, 0, 0, 0, 1, 0, 0, 0, 0])
        #expect(CBORItem.array([.bytes([0, 0]), .array([.unsigned(1), .unsigned(500)]), .null]).encoded()
                == [0x83, 0x42, 0, 0, 0x82, 0x01, 0x19, 0x01, 0xF4, 0xF6])
        #expect(CBORItem.text("é").encoded() == [0x62, 0xC3, 0xA9])
    }

    @Test func storeIndexesChunksByVLLMHashes() throws {
        let store = try ReuseSupport.tempStore(chunkTokens: 32)
        let ns = ReuseSupport.namespace(store)
        let tokens = (0..<75).map { Int32($0 * 11 + 2) }
        let ctx = try ReuseSupport.context(tokens, seed: 21)
        _ = try store.put(ctx, namespace: ns)
        let hashing = VLLMHashing(seed: "0")
        #expect(try store.indexVLLM(tokens, namespace: ns, hashing: hashing) == 4)   // full 16-token blocks of 75
        let hashes = VLLMBlockHash.hashes(tokens: tokens, noneHash: VLLMBlockHash.noneHash(seed: "0"))
        let got = try #require(try store.getVLLM(hashes))
        #expect(got.blocks.count == 4)
        #expect(got.context.tokens == Array(tokens.prefix(64)))
        #expect(got.context.kv == ctx.kv.slice(tokens: 0..<64))
        // a run stops at the first unknown hash; a different seed or salt knows nothing
        let partial = try #require(try store.getVLLM(Array(hashes.prefix(2)) + [Hash32.sha256([1])] + [hashes[3]]))
        #expect(partial.blocks.count == 2)
        #expect(try store.getVLLM(VLLMBlockHash.hashes(tokens: tokens, noneHash: VLLMBlockHash.noneHash(seed: "1"))) == nil)
        #expect(try store.getVLLM(VLLMBlockHash.hashes(tokens: tokens, noneHash: VLLMBlockHash.noneHash(seed: "0"), salt: "t")) == nil)
        // removal makes the entries dangling, and they are then a miss, never stale KV
        _ = try store.remove(context: store.resolveContext(store.contexts()[0].id))
        #expect(try store.getVLLM(hashes) == nil)
        #expect(try store.pruneVLLM() == 4)
        #expect(try store.pruneVLLM() == 0)
    }

    @Test func blockSizeMustDivideTheChunkSize() throws {
        let store = try ReuseSupport.tempStore(chunkTokens: 24)
        #expect(throws: StoreError.invalidInput("vLLM block size 16 does not divide the store's 24-token chunks")) {
            try store.indexVLLM([1, 2, 3], namespace: ReuseSupport.namespace(store), hashing: VLLMHashing(seed: "0"))
        }
    }
}

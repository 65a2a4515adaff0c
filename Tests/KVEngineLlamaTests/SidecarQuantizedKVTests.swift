import Foundation
import KVEngineLlama
import KVSidecar
import KVStore
import KVTensor
import TestSupport
import Testing

/// llama-server with a quantized KV cache (`-ctk q8_0 -ctv q8_0`, flash attention on): the sidecar
/// stores the engine's rows as they are and restores them exactly.
@Suite(.serialized) struct SidecarQuantizedKVTests {
    @Test(arguments: ["q8_0", "q4_0"]) func aQuantizedKVCacheIsRestoredBitForBitAndContinuesAsTheColdRun(type: String) async throws {
        let server = try await LlamaServerProcess(slots: 1, flashAttention: true, extra: ["-ctk", type, "-ctv", type])
        defer { server.stop() }
        let storeDir = TestSupport.scratchDirectory("sidecar-store")
        defer { TestSupport.removeTree(storeDir) }
        let (_, a, b) = try await SidecarTests.prompts(server)
        let model = try GGUFModel(path: LlamaServerProcess.modelPath)

        // The cold run: b prefilled from nothing. Then llama.cpp's own slot after a, saved.
        try await SidecarTests.eraseSlots(server, 1)
        let cold = try await server.call("/completion", SidecarTests.greedy(b).merging(["id_slot": 0, "cache_prompt": true]) { $1 })["content"] as! String
        #expect(!cold.isEmpty)
        try await SidecarTests.eraseSlots(server, 1)
        _ = try await server.call("/completion", SidecarTests.greedy(a).merging(["id_slot": 0, "cache_prompt": true]) { $1 })
        _ = try await server.call("/slots/0?action=save", ["filename": "own.bin"])
        let own = try LlamaSlotFile.read(server.slotDirectory + "/own.bin", shape: model.kvShape)
        #expect(own.state.isQuantized && LlamaSequenceState.cacheTypeName(own.state.cacheType) == type.uppercased())
        #expect(own.encoded() == (try FileIO.readAll(server.slotDirectory + "/own.bin")))   // read and written back byte for byte

        // a through the sidecar: its whole chunks are stored, at level 0 only, under an id naming the type.
        try await SidecarTests.eraseSlots(server, 1)
        let store = try ChunkStore(root: storeDir, chunkTokens: 64)
        let first = try await Sidecar.start(engineURL: server.url, slotSavePath: server.slotDirectory, source: .embedded(store, levels: [0, 2]))
        let layout = try #require(first.layout)
        #expect(layout.isQuantized && !layout.vTransposed)
        _ = try await SidecarTests.complete(first, SidecarTests.greedy(a))
        try await SidecarTests.waitUntil("the store", first) { first.metrics.storedTokens >= 256 }
        let shape = try #require(layout.storageShape(model.kvShape))
        let ns = Namespace(model: model.kvIdentity(cacheType: layout.cacheType), dtype: .f16, shape: shape, chunkTokens: 64)
        #expect(ns.model.hasSuffix("+kv.\(type)"))
        let stored = try #require(try store.get(b.map(Int32.init), namespace: ns))
        #expect(stored.context.tokens.count == 256)
        #expect(stored.match.chunks.allSatisfy { $0.record.levels.map(\.level) == [0] })
        #expect(stored.context.kv == (try own.state.kv(positions: 0..<256)))
        // F16 KV of the same model is another namespace: nothing there.
        #expect(try store.get(b.map(Int32.init), namespace: Namespace(model: model.identity, dtype: .f16, shape: model.kvShape, chunkTokens: 64)) == nil)

        // b through a fresh sidecar: the prefix restored, the slot's bytes those saved, the answer the cold run's.
        try await SidecarTests.eraseSlots(server, 1)
        let second = try await Sidecar.start(engineURL: server.url, slotSavePath: server.slotDirectory, source: .embedded(store, levels: [0]))
        let warm = try await SidecarTests.complete(second, SidecarTests.greedy(b))
        #expect(warm.restored == 256)
        #expect(second.metrics.fallbacks.isEmpty, "\(second.metrics.fallbacks)")
        _ = try await server.call("/slots/0?action=save", ["filename": "restored.bin"])
        let restored = try LlamaSlotFile.read(server.slotDirectory + "/restored.bin", shape: model.kvShape)
        #expect(try restored.state.kv(positions: 0..<256) == own.state.kv(positions: 0..<256))
        #expect(warm.text == cold)
    }
}

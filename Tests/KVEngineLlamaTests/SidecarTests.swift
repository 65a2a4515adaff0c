import Foundation
import KVEngineLlama
import KVSidecar
import KVStore
import KVTensor
import TestSupport
import Testing

/// The sidecar in front of the real llama-server with SmolLM2 and an embedded store of 64-token chunks.
@Suite(.serialized) struct SidecarTests {
    /// 256 tokens of a real text (four whole chunks) and two follow-ups that differ from their first
    /// token (so llama.cpp's own cache reuses exactly the document in both).
    static func prompts(_ server: LlamaServerProcess) async throws -> (doc: [Int], a: [Int], b: [Int]) {
        let text = try String(contentsOfFile: TestSupport.repositoryRoot + "/tools/texts/emma_ch1.txt", encoding: .utf8)
        let tokens = try await server.call("/tokenize", ["content": text, "add_special": true])["tokens"] as! [Int]
        func tail(_ s: String) async throws -> [Int] { try await server.call("/tokenize", ["content": s])["tokens"] as! [Int] }
        let doc = Array(tokens.prefix(256))
        return (doc, doc + (try await tail("\n\nQuestion: Who is Emma's governess?\nAnswer:")),
                doc + (try await tail(" In one sentence, what is this chapter about?")))
    }

    static func greedy(_ prompt: [Int]) -> [String: Any] {
        ["prompt": prompt, "n_predict": 16, "temperature": 0, "top_k": 1, "seed": 1]
    }

    /// Sends `body` through the sidecar; returns the generated text and the tokens restored from the store.
    static func complete(_ sidecar: Sidecar, _ body: [String: Any], route: String = "/completion") async throws -> (text: String, restored: Int, raw: String) {
        let forwarded = try await sidecar.handle(route: route, body: Array(try JSONSerialization.data(withJSONObject: body)))
        var data = Data()
        for try await piece in forwarded.body { data.append(contentsOf: piece.readableBytesView) }
        let raw = String(decoding: data, as: UTF8.self)
        #expect(forwarded.status == 200, "\(raw)")
        let text = (try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["content"] as? String ?? ""
        return (text, forwarded.restoredTokens, raw)
    }

    static func waitUntil(_ what: String, _ sidecar: Sidecar, _ condition: () -> Bool) async throws {
        let deadline = Date().addingTimeInterval(300)
        while !condition() {
            guard sidecar.metrics.fallbacks.isEmpty else { throw LlamaServerProcess.Failure(description: "fallback while waiting for \(what): \(sidecar.metrics.fallbacks)") }
            guard Date() < deadline else { throw LlamaServerProcess.Failure(description: "timed out waiting for \(what)") }
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    static func eraseSlots(_ server: LlamaServerProcess, _ n: Int = 2) async throws {
        for s in 0..<n { _ = try await server.call("/slots/\(s)?action=erase", [:]) }
    }

    @Test func restoredPrefixGivesTheSameGreedyContinuationAsLlamaCppsOwnSlot() async throws {
        let server = try await LlamaServerProcess(slots: 2)
        defer { server.stop() }
        let storeDir = TestSupport.scratchDirectory("sidecar-store")
        defer { TestSupport.removeTree(storeDir) }
        let (_, a, b) = try await Self.prompts(server)

        // Reference: llama.cpp's own slot after prompt a, saved, restored, then prompt b.
        _ = try await server.call("/completion", Self.greedy(a).merging(["id_slot": 0, "cache_prompt": true]) { $1 })
        _ = try await server.call("/slots/0?action=save", ["filename": "own.bin"])
        try await Self.eraseSlots(server)
        _ = try await server.call("/slots/0?action=restore", ["filename": "own.bin"])
        let reference = try await server.call("/completion", Self.greedy(b).merging(["id_slot": 0, "cache_prompt": true]) { $1 })["content"] as! String
        try await Self.eraseSlots(server)

        // Through the sidecar: prompt a stores its whole chunks; a fresh sidecar restores them for b.
        let store = try ChunkStore(root: storeDir, chunkTokens: 64)
        let first = try await Sidecar.start(engineURL: server.url, slotSavePath: server.slotDirectory, source: .embedded(store, levels: [0]))
        let cold = try await Self.complete(first, Self.greedy(a))
        #expect(cold.restored == 0)
        try await Self.waitUntil("the store", first) { first.metrics.storedTokens >= 256 }
        #expect(first.metrics.fallbacks.isEmpty)

        // The stored KV is llama.cpp's own, bit for bit.
        let own = try LlamaSlotFile.read(server.slotDirectory + "/own.bin", shape: first.model!.kvShape)
        let ns = Namespace(model: first.model!.identity, dtype: .f16, shape: first.model!.kvShape, chunkTokens: 64)
        let stored = try #require(try store.get(b.map(Int32.init), namespace: ns))
        #expect(stored.context.tokens.count == 256)
        #expect(stored.context.kv == own.state.kv.slice(tokens: 0..<256))

        try await Self.eraseSlots(server)
        let second = try await Sidecar.start(engineURL: server.url, slotSavePath: server.slotDirectory, source: .embedded(store, levels: [0]))
        let warm = try await Self.complete(second, Self.greedy(b))
        #expect(warm.restored == 256)
        #expect(warm.text == reference)
        #expect(!reference.isEmpty)
        #expect(second.metrics.fallbacks.isEmpty)
        #expect(second.metrics.render().contains("kvstore_sidecar_step_seconds_count{step=\"restore\"} 1"))
    }

    @Test func aCorruptStoredChunkFallsBackToPrefill() async throws {
        let server = try await LlamaServerProcess(slots: 2)
        defer { server.stop() }
        let storeDir = TestSupport.scratchDirectory("sidecar-store")
        defer { TestSupport.removeTree(storeDir) }
        let (_, a, b) = try await Self.prompts(server)
        let store = try ChunkStore(root: storeDir, chunkTokens: 64)
        let sidecar = try await Sidecar.start(engineURL: server.url, slotSavePath: server.slotDirectory, source: .embedded(store, levels: [0]))
        _ = try await Self.complete(sidecar, Self.greedy(a))
        try await Self.waitUntil("the store", sidecar) { sidecar.metrics.storedTokens >= 256 }

        // Plain prefill of b, straight to llama-server.
        try await Self.eraseSlots(server)
        let plain = try await server.call("/completion", Self.greedy(b).merging(["id_slot": 1, "cache_prompt": true]) { $1 })["content"] as! String
        try await Self.eraseSlots(server)

        // Damage every stored blob in its middle.
        let blobs = try #require(FileManager.default.enumerator(atPath: storeDir + "/objects")).compactMap { $0 as? String }
            .map { storeDir + "/objects/" + $0 }.filter { (try? FileManager.default.attributesOfItem(atPath: $0)[.type] as? FileAttributeType) == .typeRegular }
        #expect(!blobs.isEmpty)
        for path in blobs {
            var bytes = try FileIO.readAll(path)
            for i in stride(from: bytes.count / 2, to: min(bytes.count, bytes.count / 2 + 64), by: 1) { bytes[i] ^= 0x5A }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
        }
        let fresh = try await Sidecar.start(engineURL: server.url, slotSavePath: server.slotDirectory, source: .embedded(store, levels: [0]))
        let answer = try await Self.complete(fresh, Self.greedy(b))
        #expect(answer.restored == 0)
        #expect(answer.text == plain)
        #expect(fresh.metrics.fallbacks["lookup"] == 1)
        #expect(fresh.metrics.render().contains("kvstore_sidecar_fallbacks_total{reason=\"lookup\"} 1"))
    }

    @Test func twoConcurrentRequestsSharingAPrefixBothRestoreIt() async throws {
        let server = try await LlamaServerProcess(slots: 2)
        defer { server.stop() }
        let storeDir = TestSupport.scratchDirectory("sidecar-store")
        defer { TestSupport.removeTree(storeDir) }
        let (doc, a, b) = try await Self.prompts(server)
        let store = try ChunkStore(root: storeDir, chunkTokens: 64)
        let loader = try await Sidecar.start(engineURL: server.url, slotSavePath: server.slotDirectory, source: .embedded(store, levels: [0]))
        _ = try await Self.complete(loader, Self.greedy(doc + [13]))
        try await Self.waitUntil("the store", loader) { loader.metrics.storedTokens >= 256 }

        // One at a time first, each from a clean engine, for the expected answers.
        let sidecar = try await Sidecar.start(engineURL: server.url, slotSavePath: server.slotDirectory, source: .embedded(store, levels: [0]))
        try await Self.eraseSlots(server)
        var expected: [String] = []
        for p in [a, b] {
            try await Self.eraseSlots(server)
            let fresh = try await Sidecar.start(engineURL: server.url, slotSavePath: server.slotDirectory, source: .embedded(store, levels: [0]))
            expected.append(try await Self.complete(fresh, Self.greedy(p)).text)
        }
        try await Self.eraseSlots(server)

        // Both at once (one streamed): each restores the shared prefix into its own slot.
        async let one = Self.complete(sidecar, Self.greedy(a))
        async let two = Self.complete(sidecar, Self.greedy(b).merging(["stream": true]) { $1 })
        let (r1, r2) = try await (one, two)
        #expect(r1.restored == 256 && r2.restored == 256)
        #expect(r1.text == expected[0])
        // The stream is passed through as server-sent events; its pieces join to the same text.
        let events = r2.raw.split(separator: "\n").filter { $0.hasPrefix("data: ") }
        let streamed = events.compactMap { line -> String? in
            let json = try? JSONSerialization.jsonObject(with: Data(line.dropFirst(6).utf8)) as? [String: Any]
            return json?["content"] as? String
        }.joined()
        #expect(events.count > 1)
        #expect(streamed == expected[1])
        #expect(sidecar.metrics.fallbacks.isEmpty)
    }
}

struct SavedSlotTests {
    @Test func aSavedSlotIsCheckedAgainstThePromptsWholeChunks() {
        let prompt: [Int32] = [1, 2, 3, 4, 5, 6, 7]
        #expect(Sidecar.savedPrefixProblem(saved: prompt + [9, 9], prompt: prompt, whole: 6) == nil)
        #expect(Sidecar.savedPrefixProblem(saved: [1, 2, 3, 4, 5, 6], prompt: prompt, whole: 6) == nil)
        #expect(Sidecar.savedPrefixProblem(saved: [1, 2, 3], prompt: prompt, whole: 6)
                == "the saved slot holds 3 tokens, fewer than the prompt's 6 in whole chunks (did the engine stop early?)")
        #expect(Sidecar.savedPrefixProblem(saved: [1, 2, 8, 4, 5, 6, 7], prompt: prompt, whole: 6)
                == "the saved slot differs from the prompt at token 2 of 6 (8, the prompt 3)")
    }
}

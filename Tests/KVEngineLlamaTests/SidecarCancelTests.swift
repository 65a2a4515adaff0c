import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import KVSidecar
import KVStore
import TestSupport
import Testing

/// A client that hangs up is passed on to llama-server: its task stops and its slot is freed.
@Suite(.serialized) struct SidecarCancelTests {
    static func slots(_ server: LlamaServerProcess) async throws -> [[String: Any]] {
        var req = URLRequest(url: URL(string: server.url + "/slots")!)
        req.timeoutInterval = 60
        let (data, _) = try await URLSession.shared.data(for: req)
        return try JSONSerialization.jsonObject(with: data) as? [[String: Any]] ?? []
    }

    @Test func clientsThatHangUpMidPrefillStopLlamaServersTasksAndFreeTheirSlots() async throws {
        // Small batches: llama-server checks for cancelled tasks between them.
        let server = try await LlamaServerProcess(slots: 2, context: 8192, extra: ["-b", "64", "-ub", "64"])
        defer { server.stop() }
        let storeDir = TestSupport.scratchDirectory("sidecar-store")
        defer { TestSupport.removeTree(storeDir) }
        let sidecar = try await Sidecar.start(engineURL: server.url, slotSavePath: server.slotDirectory,
                                              source: .embedded(try ChunkStore(root: storeDir, chunkTokens: 64), levels: [0]))
        let http = try await SidecarHTTP.start(sidecar)
        defer { http.stop() }

        // Two 2,000-token prompts that share nothing: one per slot, each many seconds of prefill.
        let text = try String(contentsOfFile: TestSupport.repositoryRoot + "/tools/texts/emma_ch1.txt", encoding: .utf8)
        let tokens = try await server.call("/tokenize", ["content": text])["tokens"] as! [Int]
        let length = 2000
        try #require(tokens.count >= length + 1000)
        let prompts = [Array(tokens[0..<length]), Array(tokens[1000..<(1000 + length)])]
        let clients = try prompts.map {
            try HangingUpClient(port: http.port, path: "/completion",
                                body: Array(try JSONSerialization.data(withJSONObject: ["prompt": $0, "n_predict": 80])))
        }
        // Both prompts are being prefilled: the clients hang up.
        try await waitUntil("both slots to start") { try await Self.slots(server).filter { $0["is_processing"] as? Bool == true }.count == 2 }
        for c in clients { c.hangUp() }

        // llama-server stops both tasks before their prompts are done: a finished prefill would
        // leave all 2,000 tokens (and the generated ones) in its slot. (Polled slowly: llama-server
        // checks a request's connection only after a second with no result for any task, and
        // every /slots answer is such a result.)
        try await waitUntil("llama-server's slots to go idle", every: .seconds(3)) {
            try await Self.slots(server).allSatisfy { $0["is_processing"] as? Bool == false }
        }
        let after = try await Self.slots(server)
        #expect(after.count == 2)
        for slot in after {
            let n = slot["n_prompt_tokens"] as? Int ?? -1
            #expect(n >= 0 && n < length, "slot \(slot["id"] ?? "?") holds \(n) tokens of a \(length)-token prompt")
        }
        try await waitUntil("the sidecar to count both hang-ups", limit: .seconds(60)) { sidecar.metrics.cancelled == 2 }
        #expect(sidecar.metrics.render().contains("kvstore_sidecar_cancelled_total 2"))

        // Both of the sidecar's slots are free again: two requests at once are both served.
        async let one = http.post("/completion", Array(#"{"prompt": "The capital of France is", "n_predict": 4}"#.utf8))
        async let two = http.post("/completion", Array(#"{"prompt": "One, two, three,", "n_predict": 4}"#.utf8))
        let (r1, r2) = try await (one, two)
        #expect(r1.status == 200 && r2.status == 200, "\(r1) \(r2)")
        #expect(sidecar.metrics.fallbacks.isEmpty, "\(sidecar.metrics.fallbacks)")
    }
}

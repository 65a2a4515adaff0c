import Foundation
import KVSidecar
import KVStore
import TestSupport
import Testing

/// A sidecar started before its llama-server (as a service manager would start both) waits for it,
/// says so on /healthz, and follows it through a restart.
@Suite(.serialized) struct SidecarEngineWaitTests {
    @Test func aSidecarStartedBeforeLlamaServerWaitsForItAndSurvivesItsRestart() async throws {
        let port = LlamaServerProcess.freePort()
        let slotDir = TestSupport.scratchDirectory("llama-slots")
        let storeDir = TestSupport.scratchDirectory("sidecar-store")
        defer { TestSupport.removeTree(storeDir); TestSupport.removeTree(slotDir) }
        let sidecar = try Sidecar(engineURL: "http://127.0.0.1:\(port)", slotSavePath: slotDir,
                                  source: .embedded(try ChunkStore(root: storeDir, chunkTokens: 64), levels: [0]))
        let supervisor = Task { await sidecar.superviseEngine(every: .milliseconds(200)) }
        defer { supervisor.cancel() }
        let http = try await SidecarHTTP.start(sidecar)
        defer { http.stop() }
        let request = Array(#"{"prompt": "The capital of France is", "n_predict": 4, "temperature": 0}"#.utf8)

        // No llama-server yet: not ready, and a request is told to come back (not a 502).
        let early = try await http.get("/healthz")
        #expect(early.status == 503 && early.body.contains("waiting for llama-server"), "\(early)")
        let refused = try await http.post("/completion", request)
        #expect(refused.status == 503 && refused.body.contains("not ready"), "\(refused)")
        #expect(sidecar.metrics.render().contains("kvstore_sidecar_engine_ready 0"))

        // llama-server starts (and loads its model) after the sidecar: the sidecar becomes ready.
        var server = try await LlamaServerProcess(slots: 1, port: port, slotDirectory: slotDir)
        defer { server.stop() }
        try await waitUntil("the sidecar to be ready") { try await http.get("/healthz").status == 200 }
        let first = try await http.post("/completion", request)
        #expect(first.status == 200, "\(first)")
        #expect(sidecar.metrics.render().contains("kvstore_sidecar_engine_ready 1"))

        // llama-server stops: the sidecar notices; it restarts: the sidecar probes it again and serves.
        server.stop()
        try await waitUntil("the sidecar to notice") { try await http.get("/healthz").status == 503 }
        server = try await LlamaServerProcess(slots: 1, port: port, slotDirectory: slotDir)
        try await waitUntil("the sidecar to be ready again") { try await http.get("/healthz").status == 200 }
        let again = try await http.post("/completion", request)
        #expect(again.status == 200, "\(again)")
        #expect(first.body.contains("content") && again.body.contains("content"))
        #expect(sidecar.metrics.fallbacks.isEmpty, "\(sidecar.metrics.fallbacks)")
    }
}

import Foundation
import KVSidecar
import KVStore
import TestSupport
import Testing

/// Requests the sidecar cannot read are the client's error: 400, said in the sidecar's own words.
@Suite(.serialized) struct SidecarRequestTests {
    /// Bodies that are not one JSON object, each with what makes it so.
    static let malformed: [(String, [UInt8])] = [
        ("empty", []),
        ("not JSON", Array("not json".utf8)),
        ("an array", Array("[]".utf8)),
        ("null", Array("null".utf8)),
        ("a string", Array(#""prompt""#.utf8)),
        ("a number", Array("42".utf8)),
        ("a boolean", Array("true".utf8)),
        ("invalid UTF-8", Array(#"{"prompt": ""#.utf8) + [0xFF, 0xFE, 0xC3] + Array(#""}"#.utf8)),
        ("UTF-16", Array(#"{"prompt":"Hi"}"#.utf16.flatMap { [UInt8($0 & 0xFF), UInt8($0 >> 8)] })),
        ("deep nesting", Array((#"{"prompt": "#.utf8) + Array(repeating: UInt8(ascii: "["), count: 100_000)
            + Array(repeating: UInt8(ascii: "]"), count: 100_000) + Array("}".utf8))),
        ("NaN", Array(#"{"prompt": "Hi", "temperature": NaN}"#.utf8)),
        ("Infinity", Array(#"{"prompt": "Hi", "temperature": Infinity}"#.utf8)),
        ("a number out of range", Array(#"{"prompt": "Hi", "temperature": 1e999}"#.utf8)),
        ("truncated", Array(#"{"prompt": "Hi""#.utf8)),
        ("trailing bytes", Array(#"{"prompt": "Hi"} {}"#.utf8)),
        ("single quotes", Array("{'prompt': 'Hi'}".utf8)),
        ("a trailing comma", Array(#"{"prompt": "Hi",}"#.utf8)),
    ]

    @Test func malformedBodiesAreAnswered400WithoutCallingLlamaServer() async throws {
        let server = try await LlamaServerProcess(slots: 1)
        let storeDir = TestSupport.scratchDirectory("sidecar-store")
        defer { TestSupport.removeTree(storeDir) }
        let sidecar = try await Sidecar.start(engineURL: server.url, slotSavePath: server.slotDirectory,
                                              source: .embedded(try ChunkStore(root: storeDir, chunkTokens: 64), levels: [0]))
        // With llama-server gone, any call to it would fail: a request that reached it would be 502.
        server.stop()
        let http = try await SidecarHTTP.start(sidecar)
        defer { http.stop() }
        #expect(Self.malformed.count == 17)
        for route in Sidecar.routes {
            for (what, body) in Self.malformed {
                let (status, text) = try await http.post(route, body)
                #expect(status == 400, "\(what) to \(route): \(status) \(text)")
                let error = (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])?["error"] as? [String: Any]
                let message = error?["message"] as? String ?? ""
                #expect(message.hasPrefix("bad request: the request body"), "\(what): \(text)")
                #expect(!message.contains("llama-server"), "\(what): \(text)")
                #expect(error?["type"] as? String == "invalid_request_error", "\(what): \(text)")
            }
        }
        #expect(sidecar.metrics.rejected == 17 * Sidecar.routes.count)
        #expect(sidecar.metrics.render().contains("kvstore_sidecar_step_seconds_count{step=\"tokenize\"} 0"))
        #expect(sidecar.metrics.fallbacks.isEmpty)

        // A well-formed request does go upstream, and llama-server's absence is reported as such
        // (502; then 503, the sidecar waiting for it). So does one with brackets and commas inside a
        // string: text, not nesting.
        let (status, text) = try await http.post("/completion", Array(#"{"prompt": "Hi", "n_predict": 1}"#.utf8))
        #expect(status == 502 && text.contains("llama-server"), "\(text)")
        let brackets = String(repeating: "[{,", count: 1000) + #"\",]"#
        let other = try await http.post("/completion", Array(#"{"prompt": "\#(brackets)", "n_predict": 1}"#.utf8))
        #expect(other.status == 503 && other.body.contains("llama-server"), "\(other)")
    }
}

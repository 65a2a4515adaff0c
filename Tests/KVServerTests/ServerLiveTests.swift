import Foundation
import Hummingbird
import HummingbirdTesting
import KVServer
import KVStore
import KVTensor
import KVFrames
import KVTransport
import Testing

/// The real server on a loopback socket, driven by the real client (`get --remote`'s).
struct ServerLiveTests {
    func withLiveServer(_ body: @Sendable (ServerFixture, StreamClient) async throws -> Void) async throws {
        let f = try ServerFixture { $0.port = 0 }
        defer { f.cleanup() }
        try await f.service.application().test(.live) { client in
            let endpoint = try RemoteEndpoint(url: "http://127.0.0.1:\(client.port!)")
            try await body(f, StreamClient(exchange: HTTPExchange(endpoint: endpoint)))
        }
    }

    @Test func uploadThenStreamOverASocketIsBitExact() async throws {
        try await withLiveServer { f, client in
            let ctx = try ServerFixture.context()
            let up = try await client.exchange.call(method: .POST, path: "/v1/contexts", contentType: "application/octet-stream",
                                                    body: try ServerFixture.contextBytes())
            #expect(up.status == 201, "\(String(decoding: up.body, as: UTF8.self))")
            // Level pinned: this checks the bytes over a socket; level choice is LevelControllerTests' job,
            // and a client starved by a loaded machine would make it depend on the machine's speed.
            let result = try #require(try await client.stream(StreamRequest(tokens: ctx.tokens + [7], sloMs: 10_000, level: 0)))
            #expect(result.header.matchedTokens == 96)
            #expect(result.chunks.map(\.choice) == [.level(0), .level(0), .level(0)])
            #expect(try result.contiguousKV() == ctx.kv)
            #expect(result.summary?.recomputeChunks == [])
            #expect(result.bytes > ctx.kv.bytes.count / 2)
        }
    }

    @Test func anImpossibleDeadlineSendsOnlyRecomputeFrames() async throws {
        try await withLiveServer { f, client in
            let ctx = try ServerFixture.context()
            _ = try f.service.store.put(ctx, namespace: f.service.store.namespace(for: ctx, model: "m"))
            let result = try #require(try await client.stream(StreamRequest(tokens: ctx.tokens, sloMs: 0.001)))
            #expect(result.chunks.map(\.choice) == [.recompute, .recompute, .recompute])
            #expect(result.recomputeRanges == [0..<32, 32..<64, 64..<96])
            #expect(try result.contiguousKV() == nil)
        }
    }

    @Test func aMissIsNilAndServerErrorsCarryTheirMessage() async throws {
        try await withLiveServer { f, client in
            let miss = try await client.stream(StreamRequest(tokens: [1, 2, 3]))
            #expect(miss == nil)
            await #expect(throws: TransportError.http(status: 400, message: "level 9 is not in 0...4")) {
                _ = try await client.stream(StreamRequest(tokens: [1, 2, 3], level: 9))
            }
        }
    }

    @Test func sixtyFourConcurrentStreamsAllSucceed() async throws {
        try await withLiveServer { f, client in
            let ctx = try ServerFixture.context()
            _ = try f.service.store.put(ctx, namespace: f.service.store.namespace(for: ctx, model: "m"))
            let outcomes = await withTaskGroup(of: String.self) { group in
                for _ in 0..<64 {
                    group.addTask {
                        do {
                            // Level pinned: this checks concurrency; level choice under a deadline is
                            // LevelControllerTests' job, and a starved in-process client makes
                            // delivered-bandwidth estimates (and so the choice) depend on the machine's load.
                            guard let r = try await client.stream(StreamRequest(tokens: ctx.tokens, sloMs: 60_000, level: 0)) else { return "miss" }
                            return try r.contiguousKV() == ctx.kv ? "ok" : "levels \(r.chunks.map(\.choice))"
                        } catch { return "\(error)" }
                    }
                }
                return await group.reduce(into: [String]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 != "ok" } == [])
        }
    }

    @Test func connectionFailureIsReported() async throws {
        // Port 1 on loopback: nothing listens there.
        let client = StreamClient(exchange: HTTPExchange(endpoint: try RemoteEndpoint(url: "http://127.0.0.1:1")))
        do {
            _ = try await client.stream(StreamRequest(tokens: [1]))
            Issue.record("connecting to a closed port succeeded")
        } catch {
            #expect("\(error)".hasPrefix("connection failed: POST /v1/stream?slo_ms=1000.0 to 127.0.0.1:1: "), "\(error)")
        }
    }

    @Test func remoteURLsAreParsed() throws {
        #expect(try RemoteEndpoint(url: "http://127.0.0.1:7070") == RemoteEndpoint(host: "127.0.0.1", port: 7070))
        #expect(try RemoteEndpoint(url: "http://[::1]:80/") == RemoteEndpoint(host: "::1", port: 80))
        #expect(throws: TransportError.invalidURL("https://x:1 (expected http://HOST:PORT)")) { try RemoteEndpoint(url: "https://x:1") }
        #expect(throws: TransportError.invalidURL("http://x:99999 has no valid port")) { try RemoteEndpoint(url: "http://x:99999") }
    }
}

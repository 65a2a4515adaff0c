import Foundation
import Hummingbird
import HummingbirdTesting
import KVServer
import KVStore
import KVTensor
import Testing

struct ServerSecurityTests {
    static let tokenA = "tenant-a-secret-0123456789"
    static let tokenB = "tenant-b-secret-9876543210"
    static let table = try! TokenTable(lines: "# test tokens\n\(tokenA) alice\n\(tokenB) bob\n")

    @Test func requestsWithoutAValidTokenAre401() async throws {
        let f = try ServerFixture(tokens: Self.table)
        defer { f.cleanup() }
        try await f.app.test(.router) { client in
            for token in [nil, "wrong-token-wrong-token"] as [String?] {
                try await client.execute(uri: "/v1/lookup", method: .post, headers: ServerFixture.bearer(token),
                                         body: ServerFixture.tokensJSON([1, 2, 3])) { r in
                    #expect(r.status == .unauthorized)
                    #expect(ServerFixture.errorMessage(r.body) == "missing or unknown bearer token")
                }
            }
            // /metrics counts every tenant: only --metrics-tokens may read it (none configured here).
            try await client.execute(uri: "/metrics", method: .get) { #expect($0.status == .forbidden) }
            try await client.execute(uri: "/metrics", method: .get, headers: ServerFixture.bearer(Self.tokenA)) { #expect($0.status == .forbidden) }
            try await client.execute(uri: "/healthz", method: .get) { #expect($0.status == .ok) }
        }
    }

    @Test func aTenantCannotSeeOrDetectAnotherTenantsContext() async throws {
        let f = try ServerFixture(tokens: Self.table)
        defer { f.cleanup() }
        let ctx = try ServerFixture.context()
        try await f.app.test(.router) { client in
            try await client.execute(uri: "/v1/contexts", method: .post,
                                     headers: [.authorization: "Bearer \(Self.tokenA)", .contentType: "application/octet-stream"],
                                     body: ByteBuffer(bytes: try ServerFixture.contextBytes())) { #expect($0.status == .created) }
            // Alice sees her context.
            try await client.execute(uri: "/v1/lookup", method: .post, headers: ServerFixture.bearer(Self.tokenA),
                                     body: ServerFixture.tokensJSON(ctx.tokens)) { r in
                let o = try JSONSerialization.jsonObject(with: Data(buffer: r.body)) as! [String: Any]
                #expect(o["matched_tokens"] as? Int == 96)
            }
            // Bob gets byte-for-byte the answer of a query nobody stored, for lookup and stream.
            let unstored = ctx.tokens.map { $0 + 1 }
            for route in ["/v1/lookup", "/v1/stream"] {
                var answers: [(HTTPResponse.Status, [UInt8])] = []
                for query in [ctx.tokens, unstored] {
                    try await client.execute(uri: route, method: .post, headers: ServerFixture.bearer(Self.tokenB),
                                             body: ServerFixture.tokensJSON(query)) { r in
                        answers.append((r.status, Array(buffer: r.body)))
                    }
                }
                #expect(answers[0].0 == answers[1].0 && answers[0].1 == answers[1].1, "\(route)")
                #expect(answers[0].0 == (route == "/v1/lookup" ? .ok : .notFound))
            }
            // Bob storing the same context does not share Alice's chunks: a separate namespace.
            try await client.execute(uri: "/v1/contexts", method: .post,
                                     headers: [.authorization: "Bearer \(Self.tokenB)", .contentType: "application/octet-stream"],
                                     body: ByteBuffer(bytes: try ServerFixture.contextBytes())) { r in
                let report = try JSONDecoder().decode(PutReport.self, from: Data(buffer: r.body))
                #expect(report.deduplicatedChunks == 0 && !report.alreadyStored)
            }
        }
        let salts = Set(try f.service.store.namespaces().map(\.salt))
        #expect(salts == ["tenant:alice", "tenant:bob"])
    }

    @Test func oversizeAndGarbageBodiesAre4xxWithAReason() async throws {
        let f = try ServerFixture { $0.maxUploadBytes = 1 << 20; $0.maxQueryBytes = 1 << 10 }
        defer { f.cleanup() }
        try await f.app.test(.router) { client in
            func check(_ uri: String, _ type: String, _ body: [UInt8], _ status: HTTPResponse.Status, _ message: String,
                       sourceLocation: SourceLocation = #_sourceLocation) async throws {
                try await client.execute(uri: uri, method: .post, headers: [.contentType: type], body: ByteBuffer(bytes: body)) { r in
                    #expect(r.status == status, sourceLocation: sourceLocation)
                    #expect(r.headers[.contentType] == "application/json", sourceLocation: sourceLocation)
                    #expect(ServerFixture.errorMessage(r.body) == message, sourceLocation: sourceLocation)
                }
            }
            let json = "application/json", bin = "application/octet-stream"
            let big = try ServerFixture.contextBytes()
            try await check("/v1/contexts", bin, big, .contentTooLarge, "request body of \(big.count) bytes is larger than the server accepts (1048576)")
            try await check("/v1/lookup", json, Array(repeating: 0x20, count: 2000), .contentTooLarge, "request body is larger than the server accepts")
            try await check("/v1/contexts", bin, Array("garbage".utf8), .badRequest,
                            "body is not a safetensors context: it ends after 7 bytes, inside its 8-byte header length")
            try await check("/v1/lookup", json, Array("{not json".utf8), .badRequest,
                            "body is not JSON {\"tokens\": [int32, ...], \"model\"?: string, \"dtype\"?: string}")
            try await check("/v1/lookup", json, Array("{\"tokens\": [1, 99999999999]}".utf8), .badRequest,
                            "body is not JSON {\"tokens\": [int32, ...], \"model\"?: string, \"dtype\"?: string}")
            try await check("/v1/lookup", json, Array("{\"tokens\": []}".utf8), .badRequest, "the token query is empty")
            try await check("/v1/lookup", json, Array("{\"tokens\": [5, -1]}".utf8), .badRequest, "token 1 is negative")
            try await check("/v1/lookup", json, Array("{\"tokens\": [5], \"dtype\": \"F8\"}".utf8), .badRequest, "unknown dtype F8 (F16, BF16, F32)")
            try await check("/v1/lookup", bin, [1, 2, 3], .badRequest, "binary token body of 3 bytes is not a whole number of int32 ids")
            try await check("/v1/lookup", "text/plain", [1], .unsupportedMediaType,
                            "token queries are application/json or application/octet-stream, not text/plain")
            try await check("/v1/stream?slo_ms=-5", json, Array("{\"tokens\": [5]}".utf8), .badRequest, "slo_ms -5 is not in (0, 600000]")
            try await check("/v1/stream?level=9", json, Array("{\"tokens\": [5]}".utf8), .badRequest, "level 9 is not in 0...4")
            try await check("/v1/stream?encoding=gzip", json, Array("{\"tokens\": [5]}".utf8), .badRequest, "encoding gzip is not stored, raw or zstd")
            let small = try FileIO.readAll(ServerFixture.fixturesDirectory + "/smollm2_ctx40_bf16.safetensors")
            try await check("/v1/contexts?levels=7", bin, small, .badRequest, "level 7 is not in 0...4")
            try await check("/v1/contexts", bin, Array(small.prefix(100)), .badRequest,
                            "body is not a safetensors context: it ends after 100 bytes, inside its 368-byte header")
            try await check("/v1/stream", json, Array("{\"tokens\": [5]}".utf8), .notFound, "no stored prefix for the query")
        }
    }

    @Test func unauthenticatedServersOnlyListenOnLoopback() throws {
        var c = ServerConfiguration()
        c.host = "0.0.0.0"
        #expect(throws: ServeError("refusing to listen on 0.0.0.0 without --auth-tokens (only loopback is allowed unauthenticated)")) {
            try c.validate()
        }
        c.tokens = Self.table
        try c.validate()
        c.tokens = nil
        for host in ["127.0.0.1", "localhost", "::1"] {
            c.host = host
            try c.validate()
        }
    }

    @Test func tokenFilesAreChecked() {
        #expect(throws: ServeError("t:2: expected `TOKEN TENANT`")) { try TokenTable(lines: "# x\nonlyonefield\n", source: "t") }
        #expect(throws: ServeError("t:1: token shorter than 16 characters")) { try TokenTable(lines: "short alice", source: "t") }
        #expect(throws: ServeError("t:2: token listed twice")) {
            try TokenTable(lines: "\(Self.tokenA) a\n\(Self.tokenA) b", source: "t")
        }
        #expect(throws: ServeError("t lists no tokens")) { try TokenTable(lines: "# nothing\n", source: "t") }
        #expect(Self.table.tenant(authorization: "Bearer \(Self.tokenB)")?.name == "bob")
        #expect(Self.table.tenant(authorization: Self.tokenB) == nil)
    }
}

import Foundation
import Hummingbird
import HummingbirdTesting
import KVServer
import KVStore
import Testing

/// The real server on a loopback socket, spoken to byte by byte (`RawHTTPConnection`): request
/// paths as sent, `Expect: 100-continue`, and clients that send a whole body before reading.
struct WireTests {
    static let tenantToken = ServerSecurityTests.tokenA
    static let operatorToken = "operator-secret-0123456789"

    func withLiveServer(_ configure: @escaping (inout ServerConfiguration) -> Void = { _ in },
                        _ body: @Sendable (ServerFixture, Int) async throws -> Void) async throws {
        let operators = try TokenTable(lines: "\(Self.operatorToken) ops\n")
        let f = try ServerFixture(tokens: ServerSecurityTests.table) { c in
            c.port = 0
            c.metricsTokens = operators
            configure(&c)
        }
        defer { f.cleanup() }
        try await f.service.application().test(.live) { client in try await body(f, client.port!) }
    }

    static func head(_ method: String, _ path: String, token: String?, length: Int? = nil, _ extra: [String] = []) -> String {
        var lines = ["\(method) \(path) HTTP/1.1", "Host: 127.0.0.1"]
        if let token { lines.append("Authorization: Bearer \(token)") }
        if let length { lines += ["Content-Type: application/octet-stream", "Content-Length: \(length)"] }
        return (lines + extra).joined(separator: "\r\n") + "\r\n\r\n"
    }

    static func exchange(_ port: Int, _ request: String) async throws -> RawHTTPConnection.Response {
        try await onThread {
            let c = try RawHTTPConnection(port: port)
            try c.send(request)
            return try c.readResponse()
        }
    }

    /// Issue 27 F1: the router matches `//metrics` and `/metrics/` to `/metrics`, while the token
    /// check compared the path string, so tenants read every tenant's metrics there. Any spelling
    /// but the canonical one is now refused before authentication and routing.
    @Test func nonCanonicalPathsAreRefusedWhateverTheToken() async throws {
        try await withLiveServer { _, port in
            let paths = ["//metrics", "///metrics", "/metrics/", "/./metrics", "/v1/../metrics", "/%6Detrics", "/metrics%2F",
                         "//healthz", "/healthz/", "//v1/lookup", "/v1//lookup"]
            for path in paths {
                for token in [nil, Self.tenantToken, Self.operatorToken] as [String?] {
                    let r = try await Self.exchange(port, Self.head("GET", path, token: token, ["Connection: close"]))
                    #expect(r.status == 400, "GET \(path) with \(token ?? "no token"): \(r.status)")
                    #expect(!String(decoding: r.body, as: UTF8.self).contains("kvstore_requests_total"), "GET \(path)")
                }
            }
            // The canonical paths keep their rules: metrics for operators only, health for anyone.
            for (path, token, status) in [("/metrics", Self.tenantToken, 403), ("/metrics", nil, 403), ("/metrics", Self.operatorToken, 200),
                                          ("/healthz", nil, 200), ("/metrics?x=1", Self.tenantToken, 403)] as [(String, String?, Int)] {
                let r = try await Self.exchange(port, Self.head("GET", path, token: token, ["Connection: close"]))
                #expect(r.status == status, "GET \(path) with \(token ?? "no token")")
            }
            // The operator's token is not a tenant's.
            let r = try await Self.exchange(port, Self.head("POST", "/v1/lookup", token: Self.operatorToken, length: 0, ["Connection: close"]))
            #expect(r.status == 401)
        }
    }

    /// Issue 27 F10: a request refused before its body was read (from its head, or after its first
    /// bytes) still answers a client that sends the whole body before reading: the server reads
    /// and discards the rest. Before, after `Connection: close` it stopped reading, and the client
    /// waited on a full TCP window until its own timeout (the send below would time out).
    @Test func aRefusedBodySentWholeBeforeReadingGetsItsStatus() async throws {
        try await withLiveServer { f, port in
            let size = 64 << 20
            let cases: [(String, String?, Int)] = [
                ("/v1/contexts", nil, 401),                        // refused by the token check
                ("/v1/contexts?levels=7", Self.tenantToken, 400),  // by the query
                ("/v1/contexts", Self.tenantToken, 400),           // by the first 8 bytes (a zero header length)
                ("/v1/lookup", Self.tenantToken, 413),             // by the query body limit, part-way
                ("/healthz", nil, 200),                            // a route that reads no body
            ]
            for (path, token, status) in cases {
                for close in [true, false] {
                    let method = path == "/healthz" ? "GET" : "POST"
                    let r = try await onThread {
                        let c = try RawHTTPConnection(port: port)
                        try c.send(Self.head(method, path, token: token, length: size, close ? ["Connection: close"] : []))
                        try c.send([UInt8](repeating: 0, count: size))
                        return try c.readResponse()
                    }
                    #expect(r.status == status, "\(method) \(path), connection close: \(close)")
                }
            }
            #expect(try f.service.store.namespaces().isEmpty)
        }
    }

    /// Past the drain bound (`maxUploadBytes`) the server resets the connection rather than read
    /// on: the client's send fails at once instead of hanging until its timeout.
    @Test func aRefusedBodyPastTheBoundIsReset() async throws {
        try await withLiveServer({ $0.maxUploadBytes = 1 << 20 }) { _, port in
            let outcome = try await onThread { () -> String in
                let c = try RawHTTPConnection(port: port)
                do {
                    try c.send(Self.head("POST", "/v1/contexts", token: Self.tenantToken, length: 256 << 20, ["Connection: close"]))
                    try c.send([UInt8](repeating: 0, count: 256 << 20))
                } catch {
                    return "\(error)"
                }
                return "sent all; status \((try? c.readResponse().status).map(String.init) ?? "none")"
            }
            #expect(!outcome.contains("timed out"), "\(outcome)")
            #expect(outcome.contains("reset") || outcome.contains("Broken pipe"), "\(outcome)")
        }
    }

    /// Issue 27 F12: `Expect: 100-continue` is answered: `100 Continue` once the upload is read,
    /// or the final status at once for a request refused from its head (before, neither came and
    /// curl waited a second before sending each upload over 1 MiB).
    @Test func expectContinueIsAnswered() async throws {
        try await withLiveServer { f, port in
            let context = try ServerFixture.contextBytes()
            let accepted = try await onThread { () -> [Int] in
                let c = try RawHTTPConnection(port: port)
                try c.send(Self.head("POST", "/v1/contexts", token: Self.tenantToken, length: context.count, ["Expect: 100-continue"]))
                let interim = try c.readHead().status
                try c.send(context)
                return [interim, try c.readResponse().status]
            }
            #expect(accepted == [100, 201])
            for (path, token, status) in [("/v1/contexts?levels=7", Self.tenantToken, 400), ("/v1/contexts", nil, 401),
                                          ("/v1/contexts", Self.tenantToken, 413)] as [(String, String?, Int)] {
                let length = status == 413 ? 1 << 40 : context.count
                let refused = try await onThread {
                    let c = try RawHTTPConnection(port: port)
                    try c.send(Self.head("POST", path, token: token, length: length, ["Expect: 100-continue"]))
                    return try c.readHead()
                }
                #expect(refused.status == status, "\(path)")
                #expect(refused.headers["connection"] == "close", "\(path)")
            }
            #expect(try f.service.store.namespaces().count == 1)
        }
    }
}

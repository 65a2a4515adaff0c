import Foundation
import KVSidecar
import KVTransport
import TestSupport

/// The sidecar's HTTP application on a free loopback port, for tests that go through its routes.
struct SidecarHTTP {
    let port: Int
    let task: Task<Void, Error>
    var url: String { "http://127.0.0.1:\(port)" }

    static func start(_ sidecar: Sidecar) async throws -> SidecarHTTP {
        let (ports, sink) = AsyncStream<Int>.makeStream()
        let task = Task { try await sidecar.application(host: "127.0.0.1", port: 0) { sink.yield($0) }.run() }
        for await port in ports { return SidecarHTTP(port: port, task: task) }
        throw LlamaServerProcess.Failure(description: "the sidecar did not start listening")
    }

    func stop() { task.cancel() }

    /// One request with `body` exactly as given: status and response body.
    func post(_ path: String, _ body: [UInt8]) async throws -> (status: Int, body: String) {
        var exchange = HTTPExchange(endpoint: RemoteEndpoint(host: "127.0.0.1", port: port))
        exchange.retryUnanswered = false
        let (status, out) = try await exchange.call(method: .POST, path: path, body: body)
        return (status, String(decoding: out, as: UTF8.self))
    }

    func get(_ path: String) async throws -> (status: Int, body: String) {
        let (status, out) = try await HTTPExchange(endpoint: RemoteEndpoint(host: "127.0.0.1", port: port)).call(method: .GET, path: path)
        return (status, String(decoding: out, as: UTF8.self))
    }
}

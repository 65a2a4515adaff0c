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
        let task = Task { try await sidecar.application(host: "127.0.0.1", port: 0) { _ = sink.yield($0) }.run() }
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

/// A client that sends one request on its own connection and hangs up without reading the answer.
struct HangingUpClient {
    let fd: Int32

    init(port: Int, path: String, body: [UInt8]) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(fd)
            throw LlamaServerProcess.Failure(description: "connect to port \(port) failed: errno \(errno)")
        }
        let head = "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1:\(port)\r\nContent-Type: application/json\r\nContent-Length: \(body.count)\r\n\r\n"
        let bytes = Array(head.utf8) + body
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else {
                close(fd)
                throw LlamaServerProcess.Failure(description: "send failed: errno \(errno)")
            }
            sent += n
        }
    }

    func hangUp() { close(fd) }
}

/// Polls `condition` until it holds; the limit only guards against a hang.
func waitUntil(_ what: String, limit: Duration = .seconds(600), every interval: Duration = .milliseconds(100),
               _ condition: () async throws -> Bool) async throws {
    let start = ContinuousClock.now
    while try await !condition() {
        guard ContinuousClock.now - start < limit else { throw LlamaServerProcess.Failure(description: "timed out waiting for \(what)") }
        try await Task.sleep(for: interval)
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

/// A blocking loopback TCP connection that sends bytes exactly as given and reads responses as
/// they arrive: for what a higher-level client would tidy up or wait for on its own (odd request
/// paths, `Expect` headers, a whole body sent before reading). Every send and receive gives up
/// after `timeout` seconds, a guard against a server that never answers, never a measurement.
final class RawHTTPConnection {
    struct Failure: Error, CustomStringConvertible { let description: String }
    struct Response { var status: Int; var headers: [String: String]; var body: [UInt8] }

    private let fd: Int32
    private var buffered: [UInt8] = []

    // Generous: a fresh-clone run with every suite in parallel once saw the in-process server silent for over 30 s.
    init(port: Int, timeout: Int = 300) throws {
        #if canImport(Darwin)
        fd = socket(AF_INET, SOCK_STREAM, 0)
        #else
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #endif
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        var tv = timeval(tv_sec: timeout, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let e = String(cString: strerror(errno))
            close(fd)
            throw Failure(description: "connect to port \(port): \(e)")
        }
    }

    deinit { close(fd) }

    /// Sends every byte, or throws (a send that blocks past the timeout included).
    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        try bytes.withUnsafeBytes { raw in
            while sent < raw.count {
                #if canImport(Darwin)
                let n = Darwin.send(fd, raw.baseAddress! + sent, raw.count - sent, 0)
                #else
                let n = Glibc.send(fd, raw.baseAddress! + sent, raw.count - sent, Int32(MSG_NOSIGNAL))
                #endif
                if n < 0 {
                    if errno == EINTR { continue }
                    let what = errno == EAGAIN || errno == EWOULDBLOCK ? "timed out (the server stopped reading)" : String(cString: strerror(errno))
                    throw Failure(description: "send after \(sent) of \(raw.count) bytes: \(what)")
                }
                sent += n
            }
        }
    }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    private func fill() throws {
        var piece = [UInt8](repeating: 0, count: 65536)
        let n = piece.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        if n < 0 {
            let what = errno == EAGAIN || errno == EWOULDBLOCK ? "timed out" : String(cString: strerror(errno))
            throw Failure(description: "receive: \(what) (have \(String(decoding: buffered, as: UTF8.self).debugDescription))")
        }
        if n == 0 { throw Failure(description: "connection closed (have \(String(decoding: buffered, as: UTF8.self).debugDescription))") }
        buffered += piece[0..<n]
    }

    /// The next response head (an interim `100 Continue` included): status and lower-cased headers.
    func readHead() throws -> (status: Int, headers: [String: String]) {
        let end = Array("\r\n\r\n".utf8)
        while true {
            if let r = buffered.firstRange(of: end) {
                let text = String(decoding: buffered[..<r.lowerBound], as: UTF8.self)
                buffered.removeSubrange(..<r.upperBound)
                let lines = text.components(separatedBy: "\r\n")
                let parts = lines[0].split(separator: " ")
                guard parts.count >= 2, lines[0].hasPrefix("HTTP/1."), let status = Int(parts[1]) else {
                    throw Failure(description: "not a status line: \(lines[0].debugDescription)")
                }
                var headers: [String: String] = [:]
                for line in lines.dropFirst() {
                    guard let colon = line.firstIndex(of: ":") else { continue }
                    headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                }
                return (status, headers)
            }
            try fill()
        }
    }

    /// The next final response, with its `Content-Length` body.
    func readResponse() throws -> Response {
        var head = try readHead()
        while (100..<200).contains(head.status) { head = try readHead() }
        let length = Int(head.headers["content-length"] ?? "0") ?? 0
        while buffered.count < length { try fill() }
        let body = Array(buffered[..<length])
        buffered.removeSubrange(..<length)
        return Response(status: head.status, headers: head.headers, body: body)
    }
}

/// Runs blocking socket work on its own thread, so it never holds one of the few threads of the
/// concurrency pool that the in-process server needs to answer it.
func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try work() }) }.start()
    }
}

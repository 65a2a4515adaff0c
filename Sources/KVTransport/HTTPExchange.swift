import KVFrames
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix

/// Where a `--remote` server is: `http://HOST:PORT` (plain HTTP/1.1; no TLS).
public struct RemoteEndpoint: Sendable, Equatable {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public init(url: String) throws {
        guard url.hasPrefix("http://") else { throw TransportError.invalidURL("\(url) (expected http://HOST:PORT)") }
        var rest = url.dropFirst(7)
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
            host = String(rest[rest.index(after: rest.startIndex)..<close])
            rest = rest[rest.index(after: close)...]
        } else if let colon = rest.lastIndex(of: ":") {
            host = String(rest[..<colon])
            rest = rest[colon...]
        } else {
            host = String(rest)
            rest = ""
        }
        if rest.isEmpty { port = 80 } else {
            guard rest.hasPrefix(":"), let p = Int(rest.dropFirst()), (1...65535).contains(p) else {
                throw TransportError.invalidURL("\(url) has no valid port")
            }
            port = p
        }
        guard !host.isEmpty else { throw TransportError.invalidURL("\(url) has no host") }
    }
}

/// One HTTP/1.1 request on its own connection, with the response body handed over piece by piece
/// as it arrives (so a stream can be decoded while it downloads).
public struct HTTPExchange: Sendable {
    public var endpoint: RemoteEndpoint
    public var bearerToken: String?

    public init(endpoint: RemoteEndpoint, bearerToken: String? = nil) {
        self.endpoint = endpoint
        self.bearerToken = bearerToken
    }

    /// Whether a request the server accepted but closed without answering (not one byte of a
    /// response arrived) is sent once more on a new connection. Right for kvstore's API, whose calls are all idempotent
    /// (lookups and streams read; uploads are content-addressed); not for an engine's completions.
    public var retryUnanswered = true

    /// A request that got no answer at all: the connection failed or closed before a response began.
    struct Unanswered: Error { let error: TransportError }

    /// Sends the request; `onHead` gets the status and content type, `onBody` each body piece.
    public func send(method: HTTPMethod, path: String, contentType: String, body: [UInt8],
                     onHead: (Int, String) throws -> Void, onBody: (ByteBuffer) async throws -> Void) async throws {
        do {
            try await attempt(method: method, path: path, contentType: contentType, body: body, onHead: onHead, onBody: onBody)
        } catch let first as Unanswered {
            guard retryUnanswered else { throw first.error }
            // Said on stderr so a server that drops connections stays visible behind the retry.
            FileHandle.standardError.write(Data("kvstore: \(first.error.description); sending it once more\n".utf8))
            try await Task.sleep(for: .milliseconds(100))
            do {
                try await attempt(method: method, path: path, contentType: contentType, body: body, onHead: onHead, onBody: onBody)
            } catch let again as Unanswered {
                throw again.error
            }
        }
    }

    private func attempt(method: HTTPMethod, path: String, contentType: String, body: [UInt8],
                         onHead: (Int, String) throws -> Void, onBody: (ByteBuffer) async throws -> Void) async throws {
        let channel: NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>
        do {
            channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .channelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
                .connectTimeout(.seconds(10))
                .connect(host: endpoint.host, port: endpoint.port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHTTPClientHandlers()
                        return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                    }
                }
        } catch {
            // Nothing listens there (or the host is unreachable): a retry would only wait longer.
            throw TransportError.connection("\(method) \(path) to \(endpoint.host):\(endpoint.port): \(error)")
        }
        try await channel.executeThenClose { inbound, outbound in
            var head = HTTPRequestHead(version: .http1_1, method: method, uri: path)
            head.headers.add(name: "Host", value: "\(endpoint.host):\(endpoint.port)")
            head.headers.add(name: "Content-Type", value: contentType)
            head.headers.add(name: "Content-Length", value: String(body.count))
            head.headers.add(name: "Connection", value: "close")
            if let bearerToken { head.headers.add(name: "Authorization", value: "Bearer \(bearerToken)") }
            // A server may answer before it has read the whole body (a refusal) and close; its answer
            // is then the result, not the failed write. Only when no answer follows is the write's error.
            var writeError: (any Error)?
            var phase = "head"
            do {
                try await outbound.write(.head(head))
                phase = "body"
                if !body.isEmpty { try await outbound.write(.body(.byteBuffer(ByteBuffer(bytes: body)))) }
                phase = "end"
                try await outbound.write(.end(nil))
            } catch { writeError = error }
            // What a bare NIO error ("I/O on closed channel") leaves out: which request, and how far it got.
            func failed(_ error: any Error, reading: Bool) -> TransportError {
                let stage = reading ? "while reading the response" : "while sending the request \(phase) (\(body.count) body bytes)"
                return .connection("\(method) \(path) to \(endpoint.host):\(endpoint.port): \(error) \(stage)")
            }
            var sawEnd = false
            var sawHead = false
            do {
                for try await part in inbound {
                    switch part {
                    case .head(let h):
                        sawHead = true
                        try onHead(Int(h.status.code), h.headers.first(name: "Content-Type") ?? "")
                    case .body(let b): try await onBody(b)
                    case .end:
                        sawEnd = true
                    }
                    if sawEnd { break }
                }
            } catch {
                if let writeError, !sawHead { throw Unanswered(error: failed(writeError, reading: false)) }
                guard error is ChannelError || error is IOError else { throw error }
                throw sawHead ? failed(error, reading: true) : Unanswered(error: failed(error, reading: true))
            }
            if let writeError, !sawHead { throw Unanswered(error: failed(writeError, reading: false)) }
            guard sawHead else {
                throw Unanswered(error: .connection("\(method) \(path) to \(endpoint.host):\(endpoint.port): the server closed the connection without answering"))
            }
            guard sawEnd else { throw TransportError.connection("the server closed the connection mid-response") }
        }
    }

    /// A whole small response: status and body bytes (bounded).
    public func call(method: HTTPMethod, path: String, contentType: String = "application/json", body: [UInt8] = [],
                     limit: Int = 64 << 20) async throws -> (status: Int, body: [UInt8]) {
        var status = 0
        var out: [UInt8] = []
        try await send(method: method, path: path, contentType: contentType, body: body,
                       onHead: { s, _ in status = s },
                       onBody: { b in
                           guard out.count + b.readableBytes <= limit else { throw TransportError.badFrame("response larger than \(limit) bytes") }
                           out.append(contentsOf: b.readableBytesView)
                       })
        return (status, out)
    }
}

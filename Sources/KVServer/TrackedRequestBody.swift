import Hummingbird
import NIOCore
import NIOHTTPTypes

/// One request's body as the handlers read it, and what the server owes the client for the part
/// they left unread:
/// - `Expect: 100-continue` is answered with `100 Continue` when a handler first reads the body,
///   so a request refused from its head (401, 413, a bad query) gets its final status instead and
///   the client never sends a body nobody wants (RFC 9110 §10.1.1);
/// - after a refusal, `drain` reads and discards what the client still sends (a lingering close),
///   so a client that sends its whole body before reading hears the status. Without it, after a
///   `Connection: close` request Hummingbird half-closes and stops reading, and such a client
///   waits on a full TCP window until its own timeout.
///
/// `@unchecked Sendable`: one task reads at a time, the handler and then `ErrorMiddleware` once
/// the handler has returned.
final class TrackedRequestBody: @unchecked Sendable {
    private var iterator: RequestBody.AsyncIterator
    private var owesContinue: Bool
    private let channel: (any Channel)?
    /// Whether the head announced a body (a `Content-Length` above 0, or chunked).
    let announced: Bool
    private(set) var ended = false
    private(set) var bytesRead = 0

    init(_ request: Request, channel: (any Channel)?) {
        iterator = request.body.makeAsyncIterator()
        owesContinue = request.headers[.expect]?.lowercased() == "100-continue"
        self.channel = channel
        announced = request.headers[.contentLength].map { $0 != "0" } ?? (request.headers[.transferEncoding] != nil)
    }

    /// The body to hand the handlers in place of the original.
    var requestBody: RequestBody { RequestBody(asyncSequence: Pieces(body: self)) }

    struct Pieces: AsyncSequence, Sendable {
        typealias Element = ByteBuffer
        let body: TrackedRequestBody
        struct AsyncIterator: AsyncIteratorProtocol {
            let body: TrackedRequestBody
            mutating func next() async throws -> ByteBuffer? { try await body.next() }
        }
        func makeAsyncIterator() -> AsyncIterator { AsyncIterator(body: body) }
    }

    func next() async throws -> ByteBuffer? {
        if owesContinue {
            owesContinue = false
            if !ended, let channel {
                try await channel.writeAndFlush(HTTPResponsePart.head(HTTPResponse(status: .continue)))
            }
        }
        return try await read()
    }

    private func read() async throws -> ByteBuffer? {
        guard !ended else { return nil }
        guard let piece = try await iterator.next() else {
            ended = true
            return nil
        }
        bytesRead += piece.readableBytes
        return piece
    }

    /// Whether a response leaves part of the body unread.
    var leftUnread: Bool { announced && !ended }

    /// Reads and discards the rest of the body, up to `limit` bytes in all (what the server would
    /// have read for a request it accepted); past that it resets the connection. Never answers
    /// `Expect`: a client refused from its head was not asked to send, and closes or sends anyway.
    /// Returns when the body has ended or the client has gone.
    func drain(limit: Int) async {
        do {
            while try await read() != nil {
                if bytesRead > limit {
                    channel?.close(promise: nil)
                    return
                }
            }
        } catch {
            // The client went away: nothing left to drain.
        }
    }
}

extension Response {
    /// This response, then a lingering read of what `body` left unread (see `TrackedRequestBody`).
    /// `Connection: close`, since the connection is not worth keeping once a request was refused
    /// part-way.
    func lingering(over body: TrackedRequestBody, limit: Int) -> Response {
        var response = self
        response.headers[.connection] = "close"
        let original = self.body
        response.body = ResponseBody(contentLength: original.contentLength) { writer in
            try await original.write(writer)
            await body.drain(limit: limit)
        }
        return response
    }
}

import Foundation
import Hummingbird
import KVCodec
import KVStore
import KVTensor
import KVFrames
import KVTransport
import NIOCore
import NIOHTTP1

/// An error answered as `{"error": "..."}` with a 4xx/5xx status.
public struct APIError: Error, Equatable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var message: String
    /// What the server's log gets beyond `message` (server paths, errno text); never sent.
    public var detail: String?
    /// The `Allow` header of a 405.
    public var allow: String?

    public init(_ status: HTTPResponse.Status, _ message: String, detail: String? = nil, allow: String? = nil) {
        self.status = status
        self.message = message
        self.detail = detail
        self.allow = allow
    }

    public var description: String { "\(status.code) \(message)" }

    static func badRequest(_ m: String) -> APIError { APIError(.badRequest, m) }

    /// Maps what the store, codec and Hummingbird throw to statuses: bad input is the client's
    /// fault (4xx), anything else the server's (500, with the reason, never a crash).
    static func from(_ error: any Error) -> APIError {
        switch error {
        case let e as APIError: return e
        case let e as HTTPParserError: return APIError(.badRequest, "malformed HTTP request: \(e)")
        case is NIOTooManyBytesError:
            return APIError(.contentTooLarge, "request body is larger than the server accepts")
        case let e as HTTPError where e.status == .contentTooLarge:
            return APIError(.contentTooLarge, "request body is larger than the server accepts")
        case let e as HTTPError: return APIError(e.status, e.body ?? e.status.reasonPhrase)
        case let e as StoreError:
            switch e {
            case .invalidInput, .config: return APIError(.badRequest, e.description)
            case .notFound: return APIError(.notFound, e.description)
            // Server-side failures: the detail (paths included) goes to the log, not the client.
            case .noSpace: return APIError(HTTPResponse.Status(code: 507), "the store is out of space", detail: e.description)
            default: return APIError(.internalServerError, "the store failed to serve the request", detail: e.description)
            }
        // A tier that cannot be reached (cluster outage): retry later; node addresses only in the log.
        case let e as TierUnavailable: return APIError(.serviceUnavailable, e.message, detail: e.description)
        case let e as TensorError: return APIError(.badRequest, "\(e)")
        case let e as CodecError: return APIError(.badRequest, "\(e)")
        case let e as TransportError: return APIError(.badRequest, "\(e)")
        default: return APIError(.internalServerError, "internal error", detail: "\(error)")
        }
    }

    func response() -> Response {
        let body = (try? JSONSerialization.data(withJSONObject: ["error": message], options: [.sortedKeys])) ?? Data()
        var headers: HTTPFields = [.contentType: "application/json"]
        if let allow { headers[.allow] = allow }
        return Response(status: status, headers: headers,
                        body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// Turns every thrown error into the JSON error response, and counts requests by route and status.
/// It hands the handlers the request body as a `TrackedRequestBody`, so `Expect: 100-continue` is
/// answered when they read, and a body they left unread is drained after the response.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = ServeContext
    let metrics: ServerMetrics
    /// Most bytes of a refused body read and discarded before the connection is reset.
    let drainLimit: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let route = ServerMetrics.routeLabel(request.uri.path)
        let body = TrackedRequestBody(request, channel: context.channel)
        var request = request
        request.body = body.requestBody
        var response: Response
        do { response = try await next(request, context) } catch {
            var e = APIError.from(error)
            if e.status == .notFound, let allowed = KVService.routeMethods[request.uri.path], request.method.rawValue != allowed {
                e = APIError(.methodNotAllowed, "\(request.uri.path) takes \(allowed)", allow: allowed)
            }
            if e.status.code >= 500 { context.logger.error("\(request.method) \(request.uri.path): \(e.detail ?? e.message)") }
            response = e.response()
        }
        if body.leftUnread { response = response.lingering(over: body, limit: drainLimit) }
        metrics.countRequest(route: route, status: response.status.code)
        return response
    }
}

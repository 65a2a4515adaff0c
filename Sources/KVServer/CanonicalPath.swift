import Hummingbird

/// Refuses (400) a request path in any spelling but the one the routes are written in: no empty,
/// `.` or `..` segments, no trailing slash, nothing percent-encoded, only unreserved characters.
/// The router alone would match `//metrics` or `/metrics/` to `/metrics`; refusing them before
/// authentication, routing, the 405 check and the metrics label means all of those judge one path.
struct CanonicalPathMiddleware: RouterMiddleware {
    typealias Context = ServeContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard Self.isCanonical(request.uri.path) else {
            // The path is not echoed: it is whatever the client sent.
            throw APIError.badRequest("the request path is not in canonical form (no empty, '.' or '..' segments, no trailing slash, no percent-encoding)")
        }
        return try await next(request, context)
    }

    static func isCanonical(_ path: String) -> Bool {
        guard path.first == "/" else { return false }
        if path == "/" { return true }
        return path.utf8.dropFirst().split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false).allSatisfy { segment in
            !segment.isEmpty && !segment.elementsEqual(".".utf8) && !segment.elementsEqual("..".utf8) && segment.allSatisfy(isUnreserved)
        }
    }

    /// RFC 3986 unreserved characters: the only ones a route's path uses.
    static func isUnreserved(_ c: UInt8) -> Bool {
        switch c {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            return true
        default:
            return c == UInt8(ascii: "-") || c == UInt8(ascii: ".") || c == UInt8(ascii: "_") || c == UInt8(ascii: "~")
        }
    }
}

import Hummingbird
import NIOCore

/// Per-request context: the tenant the bearer token resolved to.
public struct ServeContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var tenant: Tenant = .local
    /// The connection, for measuring delivered bytes while streaming.
    public let channel: (any Channel)?

    public init(source: Source) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// Rejects requests without a tenant's bearer token (401, same body whatever was wrong) and sets
/// the tenant. Added to the tenants' routes only (`KVService.addRoutes`), so which check applies
/// follows from the route matched, never from how the path was spelled.
struct TenantAuthMiddleware: RouterMiddleware {
    let tokens: TokenTable

    func handle(_ request: Request, context: ServeContext, next: (Request, ServeContext) async throws -> Response) async throws -> Response {
        guard let tenant = tokens.tenant(authorization: request.headers[.authorization]) else {
            throw APIError(.unauthorized, "missing or unknown bearer token")
        }
        var context = context
        context.tenant = tenant
        return try await next(request, context)
    }
}

/// The operators' routes (`/metrics`: it counts every tenant's traffic) answer only tokens from
/// --metrics-tokens; with none configured, nobody (403).
struct OperatorAuthMiddleware: RouterMiddleware {
    let metricsTokens: TokenTable?

    func handle(_ request: Request, context: ServeContext, next: (Request, ServeContext) async throws -> Response) async throws -> Response {
        guard let metricsTokens, metricsTokens.tenant(authorization: request.headers[.authorization]) != nil else {
            throw APIError(.forbidden, "metrics are for operators: use a token from --metrics-tokens")
        }
        return try await next(request, context)
    }
}

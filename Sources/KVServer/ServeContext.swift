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

/// Rejects requests without a valid bearer token (401, same body whatever was wrong) and sets the
/// tenant. `/healthz` stays open so orchestrators can probe without secrets.
struct AuthMiddleware: RouterMiddleware {
    let tokens: TokenTable
    /// Operators' tokens: the only ones `/metrics` answers (it counts every tenant's traffic).
    let metricsTokens: TokenTable?

    func handle(_ request: Request, context: ServeContext, next: (Request, ServeContext) async throws -> Response) async throws -> Response {
        if request.uri.path == "/healthz" { return try await next(request, context) }
        if request.uri.path == "/metrics" {
            guard let metricsTokens, metricsTokens.tenant(authorization: request.headers[.authorization]) != nil else {
                throw APIError(.forbidden, "metrics are for operators: use a token from --metrics-tokens")
            }
            return try await next(request, context)
        }
        guard let tenant = tokens.tenant(authorization: request.headers[.authorization]) else {
            throw APIError(.unauthorized, "missing or unknown bearer token")
        }
        var context = context
        context.tenant = tenant
        return try await next(request, context)
    }
}

import KVStore

/// What `kvstore serve` runs with.
public struct ServerConfiguration: Sendable {
    public var host = "127.0.0.1"
    public var port = 7070
    public var tokens: TokenTable?
    /// Upload bodies larger than this get 413.
    public var maxUploadBytes = 1 << 30
    /// Upload bytes all requests in progress may hold in memory together; past it an upload gets 503.
    public var maxUploadInflightBytes = 2 << 30
    /// Bearer tokens that may read `/metrics` when `tokens` is set (tenants' tokens may not: the
    /// figures cover every tenant). Without auth, `/metrics` is open like every route (loopback only).
    public var metricsTokens: TokenTable?
    /// Lookup and stream bodies (token lists) larger than this get 413.
    public var maxQueryBytes = 16 << 20
    /// Socket send buffer of each connection. Small, so "accepted by the connection" tracks what
    /// the link delivered, which is what the level controller needs to measure.
    public var sendBufferBytes = 128 << 10
    /// Stream writes are cut into pieces of this size; each is one bandwidth sample.
    public var writePieceBytes = 64 << 10
    /// Bandwidth assumed before a stream has measured anything, unless the request gives a hint
    /// or an earlier stream of the same tenant left an estimate.
    public var priorBitsPerSecond = 100e6
    /// How long a tenant's measured bandwidth serves as its next stream's prior (`TenantPriors`).
    public var priorLifetimeSeconds = 60.0
    /// Fraction of `slo_ms` kept in reserve: the controller plans to finish by (1 − this) × slo, to
    /// cover what the server cannot see (connection setup, the request's own transfer, TCP/IP
    /// header overhead on the link).
    public var deadlineSafety = 0.1
    /// Store size at which eviction should run (see `Routes.afterPut`); nil = unlimited.
    public var maxStoreBytes: Int?

    public init() {}

    /// Hosts that are only reachable from this machine.
    public static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host == "[::1]" || host.hasPrefix("127.")
    }

    /// Without bearer tokens the store is open to whoever connects, so only loopback is allowed.
    public func validate() throws {
        if tokens == nil, !Self.isLoopback(host) {
            throw ServeError("refusing to listen on \(host) without --auth-tokens (only loopback is allowed unauthenticated)")
        }
        guard (0...65535).contains(port) else { throw ServeError("port \(port) is outside 0...65535") }
    }
}

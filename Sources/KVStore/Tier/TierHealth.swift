/// A tier that cannot be reached now (e.g. a cluster outage). The server answers it with 503
/// naming the tier and the cause (`cause` is sent to the client, `detail` only logged).
public struct TierUnavailable: Error, Equatable, CustomStringConvertible {
    public var tier: String
    public var cause: String
    /// What the log gets beyond `cause` (node addresses, every attempt's problem).
    public var detail: String

    public init(tier: String, cause: String, detail: String? = nil) {
        self.tier = tier
        self.cause = cause
        self.detail = detail ?? cause
    }

    /// What a client is told (no node addresses).
    public var message: String { "the \(tier) tier is unavailable: \(cause)" }

    /// The message and the detail (logs, the CLI).
    public var description: String { detail == cause ? message : "\(message) (\(detail))" }
}

/// How a tier a node depends on is doing, for `/healthz` and the metrics.
public struct TierHealth: Sendable, Equatable {
    public var tier: String
    /// Nil while the tier answers; otherwise why it does not (as of the last call or probe).
    public var outage: String?
    /// During an outage the node still serves what its local store holds (cache mode): degraded,
    /// not down.
    public var servesLocally: Bool

    public init(tier: String, outage: String?, servesLocally: Bool) {
        self.tier = tier
        self.outage = outage
        self.servesLocally = servesLocally
    }
}

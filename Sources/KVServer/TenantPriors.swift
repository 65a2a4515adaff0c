import Synchronization

/// Each tenant's last measured bandwidth, the next stream's prior. Only measurements count: a stream
/// that sent nothing (everything recomputed) returns its own prior, and keeping that would hold a
/// tenant at a starved figure for good. A measurement serves for `lifetime` seconds, after which a
/// stream starts from the server's default again (a link measured long ago, or while the machine
/// was starved, says little now).
final class TenantPriors: Sendable {
    private struct Measured {
        var bytesPerSecond: Double
        var at: ContinuousClock.Instant
    }

    private let lifetime: Duration
    private let measured = Mutex<[String: Measured]>([:])

    init(lifetimeSeconds: Double) {
        lifetime = .milliseconds(Int64(min(max(0, lifetimeSeconds), 1e12) * 1000))  // 1e12 s: for ever, without overflow
    }

    /// The tenant's measured bandwidth (bytes/s) if it is recent enough, else nil.
    func prior(for tenant: String, now: ContinuousClock.Instant = .now) -> Double? {
        measured.withLock { m in
            guard let p = m[tenant] else { return nil }
            guard now - p.at <= lifetime else {
                m[tenant] = nil
                return nil
            }
            return p.bytesPerSecond
        }
    }

    /// Keeps a stream's final estimate; nil (nothing measured) leaves the tenant's entry as it was.
    func record(_ bytesPerSecond: Double?, for tenant: String, at now: ContinuousClock.Instant = .now) {
        guard let bytesPerSecond, bytesPerSecond > 0 else { return }
        measured.withLock { $0[tenant] = Measured(bytesPerSecond: bytesPerSecond, at: now) }
    }
}

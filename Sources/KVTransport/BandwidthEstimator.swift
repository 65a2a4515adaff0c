import KVFrames
import Foundation

/// Delivered throughput, smoothed over time so one burst does not fool it.
///
/// Each sample is the bytes the connection accepted and how long that took. Three guards keep
/// bursts out of the estimate:
/// - the first `warmupBytes` are not measured: they land in the empty socket send buffer at memory
///   speed, not link speed;
/// - samples are pooled until they span `minInterval` (a write into a free buffer takes
///   microseconds and says nothing about the link);
/// - pooled samples are folded into a time-weighted exponential average with time constant `tau`:
///   an interval of length dt moves the estimate by 1 - exp(-min(dt, tau)/tau), at most 63 %, so a
///   single long stall (a receiver that stopped reading for a while) cannot drag it to zero. The
///   first pooled sample is discarded (it carries the connection's start-up burst: a token
///   bucket's depth, an empty queue), and the second replaces the prior outright (a real
///   measurement beats a guess).
///
/// A receiver that stops reading (a starved client) is not a slow link: time during which the
/// peer's receive window held the sender back (`receiverLimited`, from the kernel's
/// `tcpi_rwnd_limited`) is left out of each sample, so such a stall neither drags the estimate
/// down nor turns a generous deadline into "recompute".
public struct BandwidthEstimator: Sendable, Equatable {
    public var tau: Double
    public var minInterval: Double
    /// Bytes per second; the prior until the first pooled sample.
    public private(set) var bytesPerSecond: Double
    public private(set) var samples = 0
    private var warmupLeft: Int
    private var pooledBytes = 0.0
    private var pooledSeconds = 0.0
    private var discarded = false

    public init(prior bytesPerSecond: Double, tau: Double = 0.03, minInterval: Double = 0.002, warmupBytes: Int = 0) {
        self.bytesPerSecond = bytesPerSecond
        self.tau = tau
        self.minInterval = minInterval
        self.warmupLeft = warmupBytes
    }

    public mutating func record(bytes: Int, seconds: Double, receiverLimited: Double = 0) {
        if warmupLeft > 0 {
            warmupLeft -= bytes
            return
        }
        pooledBytes += Double(bytes)
        pooledSeconds += max(0, seconds - max(0, receiverLimited))
        guard pooledSeconds >= minInterval else { return }
        let rate = pooledBytes / pooledSeconds
        if discarded {
            let alpha = samples == 0 ? 1 : 1 - exp(-min(pooledSeconds, tau) / tau)
            bytesPerSecond += alpha * (rate - bytesPerSecond)
            samples += 1
        }
        discarded = true
        pooledBytes = 0
        pooledSeconds = 0
    }

    public var bitsPerSecond: Double { bytesPerSecond * 8 }

    /// The estimate once a sample has been measured; nil while it is still the prior.
    public var measured: Double? { samples > 0 ? bytesPerSecond : nil }
}

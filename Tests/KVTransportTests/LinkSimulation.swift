import KVTransport

/// A link whose bandwidth changes over time: piecewise constant segments. Used to drive the
/// level controller deterministically in tests.
struct BandwidthTrace: Sendable, Equatable {
    /// (start second, bits per second); the first segment starts at 0, the last lasts forever.
    var segments: [(start: Double, bitsPerSecond: Double)]

    init(_ segments: [(start: Double, bitsPerSecond: Double)]) {
        precondition(!segments.isEmpty && segments[0].start == 0, "a trace starts at 0")
        self.segments = segments
    }

    static func steady(bitsPerSecond: Double) -> BandwidthTrace { BandwidthTrace([(0, bitsPerSecond)]) }

    func bitsPerSecond(at t: Double) -> Double {
        segments.last { $0.start <= t }!.bitsPerSecond
    }

    /// When `bytes` handed to the link at `start` have all been delivered.
    func finish(bytes: Int, from start: Double) -> Double {
        var t = start
        var left = Double(bytes) * 8
        var i = segments.lastIndex { $0.start <= t }!
        while left > 0 {
            let rate = segments[i].bitsPerSecond
            let end = i + 1 < segments.count ? segments[i + 1].start : .infinity
            let can = (end - t) * rate
            if can >= left { return t + left / rate }
            left -= can
            t = end
            i += 1
        }
        return t
    }

    static func == (a: BandwidthTrace, b: BandwidthTrace) -> Bool {
        a.segments.map(\.start) == b.segments.map(\.start) && a.segments.map(\.bitsPerSecond) == b.segments.map(\.bitsPerSecond)
    }
}

/// One chunk's fate in a simulated stream.
struct SimulatedChunk: Sendable, Equatable {
    var choice: LevelChoice
    var start: Double
    var finish: Double
    /// Bandwidth the estimator believed when choosing, bits per second.
    var estimate: Double
}

/// Streams chunks over a trace the way the server does: the controller chooses each chunk's level
/// from the estimator, the chunk is written in `writeSize` pieces, and each piece's delivery time
/// feeds the estimator. No send buffer: a piece is accepted when it is delivered.
func simulateStream(_ controller: LevelController, over trace: BandwidthTrace,
                           prior bitsPerSecond: Double, writeSize: Int = 64 << 10) -> [SimulatedChunk] {
    var estimator = BandwidthEstimator(prior: bitsPerSecond / 8)
    var t = 0.0
    var out: [SimulatedChunk] = []
    for i in controller.chunks.indices {
        let estimate = estimator.bitsPerSecond
        let choice = controller.choose(index: i, elapsed: t, bytesPerSecond: estimator.bytesPerSecond)
        let start = t
        var left = controller.bytes(of: choice, index: i)
        while left > 0 {
            let n = min(left, writeSize)
            let end = trace.finish(bytes: n, from: t)
            estimator.record(bytes: n, seconds: end - t)
            t = end
            left -= n
        }
        out.append(SimulatedChunk(choice: choice, start: start, finish: t, estimate: estimate))
    }
    return out
}

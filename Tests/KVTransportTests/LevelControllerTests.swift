import Testing
@testable import KVFrames
@testable import KVTransport

/// The controller driven by bandwidth traces through `simulateStream`: 16 chunks with stored
/// sizes in the proportions of SmolLM2 256-token chunks (lossless ≈ 4 MB, lossy levels smaller),
/// a 1 s deadline.
struct LevelControllerTests {
    static let sizes: [LevelSize] = [
        LevelSize(level: 0, bytes: 4_000_000), LevelSize(level: 1, bytes: 1_500_000), LevelSize(level: 2, bytes: 1_000_000),
        LevelSize(level: 3, bytes: 600_000), LevelSize(level: 4, bytes: 350_000),
    ]
    static let controller = LevelController(deadline: 1.0, chunks: Array(repeating: sizes, count: 16))
    static let mbps = 1e6, gbps = 1e9

    /// No data lands late, and text is chosen only where even the smallest level, sent at that
    /// moment over the true link, would have missed the deadline.
    func checkInvariants(_ run: [SimulatedChunk], trace: BandwidthTrace, file: String = #fileID, line: Int = #line) {
        let smallest = Self.sizes.map(\.bytes).min()!
        for (i, c) in run.enumerated() {
            if case .level = c.choice {
                #expect(c.finish <= Self.controller.deadline, "chunk \(i) at \(c.choice) lands at \(c.finish) s")
            } else {
                #expect(trace.finish(bytes: smallest, from: c.start) > Self.controller.deadline,
                        "chunk \(i) fell back to text although the smallest level fit")
            }
        }
    }

    func levels(_ run: [SimulatedChunk]) -> [LevelChoice] { run.map(\.choice) }

    @Test func steadyGigabitSendsLosslessOnceMeasured() {
        let trace = BandwidthTrace.steady(bitsPerSecond: Self.gbps)
        let run = simulateStream(Self.controller, over: trace, prior: 100 * Self.mbps)
        checkInvariants(run, trace: trace)
        // The 100 Mbps prior makes the first chunk cautious; after one measurement everything is lossless.
        #expect(run[0].choice != .level(0))
        #expect(levels(run).dropFirst().allSatisfy { $0 == .level(0) }, "\(levels(run))")
    }

    @Test func steady50MbpsSendsSmallLevelsAndMeetsTheDeadline() {
        let trace = BandwidthTrace.steady(bitsPerSecond: 50 * Self.mbps)
        let run = simulateStream(Self.controller, over: trace, prior: 50 * Self.mbps)
        checkInvariants(run, trace: trace)
        #expect(!levels(run).contains(.recompute), "\(levels(run))")
        #expect(levels(run).allSatisfy { $0 == .level(4) || $0 == .level(3) }, "\(levels(run))")
        #expect(run.last!.finish <= 1.0)
    }

    @Test func stepDownAndUpFollowsTheLink() {
        // 32 half-size chunks; 1 Gbps, then 50 Mbps from 0.1 s, then 500 Mbps from 0.5 s.
        let halves = Self.sizes.map { LevelSize(level: $0.level, bytes: $0.bytes / 2) }
        let controller = LevelController(deadline: 1.0, chunks: Array(repeating: halves, count: 32))
        let trace = BandwidthTrace([(0, Self.gbps), (0.1, 50 * Self.mbps), (0.5, 500 * Self.mbps)])
        let run = simulateStream(controller, over: trace, prior: Self.gbps)
        for (i, c) in run.enumerated() where c.choice != .recompute {
            #expect(c.finish <= 1.0, "chunk \(i) lands at \(c.finish) s")
        }
        #expect(!levels(run).contains(.recompute), "\(levels(run))")
        func level(_ c: SimulatedChunk) -> Int { if case .level(let l) = c.choice { Int(l) } else { 5 } }
        let fast = run.filter { $0.start < 0.1 }, slow = run.filter { $0.start >= 0.15 && $0.start < 0.5 }
        let recovered = run.filter { $0.start >= 0.55 }
        #expect(!fast.isEmpty && !slow.isEmpty && !recovered.isEmpty, "phases: \(run.map(\.start))")
        #expect(fast.allSatisfy { level($0) == 0 }, "\(levels(run))")
        #expect(slow.allSatisfy { level($0) >= 3 }, "\(levels(run))")
        #expect((recovered.map(level).min() ?? 5) < (slow.map(level).min() ?? 0), "\(levels(run))")
    }

    @Test func linkTooSlowForAnyLevelFallsBackToText() {
        let trace = BandwidthTrace.steady(bitsPerSecond: 1 * Self.mbps)
        let run = simulateStream(Self.controller, over: trace, prior: 1 * Self.mbps)
        checkInvariants(run, trace: trace)
        #expect(levels(run).allSatisfy { $0 == .recompute })
        #expect(run.last!.finish == 0)
    }

    @Test func slowLinkSendsWhatFitsThenText() {
        // 5 Mbps: one smallest-level chunk (0.56 s) fits, a second does not.
        let trace = BandwidthTrace.steady(bitsPerSecond: 5 * Self.mbps)
        let run = simulateStream(Self.controller, over: trace, prior: 5 * Self.mbps)
        checkInvariants(run, trace: trace)
        #expect(levels(run)[0] == .level(4))
        #expect(levels(run).dropFirst().allSatisfy { $0 == .recompute }, "\(levels(run))")
    }

    /// With the client's recompute cost known, a chunk that cannot make the deadline is sent late
    /// when receiving the rest beats prefilling it, and recomputed when it does not.
    @Test func aClientsRecomputeCostDecidesBetweenLateAndText() {
        // 5 Mbps = 625 kB/s: after chunk 0 the rest (15 x 350 kB) needs 8.4 s on the link.
        let tokens = Array(repeating: 256, count: 16)
        let trace = BandwidthTrace.steady(bitsPerSecond: 5 * Self.mbps)
        // Prefill at 16 ms a token (llama.cpp, one thread): 15 x 256 tokens take 61 s: send late.
        let slowEngine = LevelController(deadline: 1.0, chunks: Array(repeating: Self.sizes, count: 16),
                                         chunkTokens: tokens, recomputeSecondsPerToken: 0.016)
        let late = simulateStream(slowEngine, over: trace, prior: 5 * Self.mbps)
        #expect(levels(late).allSatisfy { $0 == .level(4) }, "\(levels(late))")
        #expect(late.last!.finish > 1.0)
        // Prefill at 0.5 ms a token (a fast GPU): 15 x 256 tokens take 1.9 s: text, as without a cost.
        let fastEngine = LevelController(deadline: 1.0, chunks: Array(repeating: Self.sizes, count: 16),
                                         chunkTokens: tokens, recomputeSecondsPerToken: 0.0005)
        let text = simulateStream(fastEngine, over: trace, prior: 5 * Self.mbps)
        #expect(levels(text) == levels(simulateStream(Self.controller, over: trace, prior: 5 * Self.mbps)), "\(levels(text))")
        #expect(levels(text).dropFirst().allSatisfy { $0 == .recompute })
    }

    @Test func pinnedLevelIsAlwaysSent() {
        var c = Self.controller
        c.pinned = 0
        #expect(c.choose(index: 3, elapsed: 5, bytesPerSecond: 1) == .level(0))
    }

    @Test func inFlightBytesCountAgainstTheBudget() {
        // 10 MB/s, 1 s, 16 chunks: 62.5 ms each → 625 kB fits level 3; with 5 MB still queued only text.
        let c = Self.controller
        #expect(c.choose(index: 0, elapsed: 0, bytesPerSecond: 10e6) == .level(3))
        #expect(c.choose(index: 0, elapsed: 0, bytesPerSecond: 10e6, inFlight: 9_800_000) == .recompute)
    }

    @Test func chunkWithNoStoredLevelIsRecomputed() {
        let c = LevelController(deadline: 1, chunks: [[]])
        #expect(c.choose(index: 0, elapsed: 0, bytesPerSecond: 1e9) == .recompute)
    }
}

struct BandwidthEstimatorTests {
    @Test func oneBurstDoesNotFoolIt() {
        var e = BandwidthEstimator(prior: 1e6)
        for _ in 0..<50 { e.record(bytes: 10_000, seconds: 0.001) }  // steady 10 MB/s
        let before = e.bytesPerSecond
        e.record(bytes: 1_000_000, seconds: 0.0001)  // a burst into a free buffer
        #expect(abs(e.bytesPerSecond - before) / before < 0.05, "\(before) → \(e.bytesPerSecond)")
        #expect(abs(before - 10e6) / 10e6 < 0.01)
    }

    @Test func oneStallDoesNotDragItToZero() {
        var e = BandwidthEstimator(prior: 1e6)
        for _ in 0..<50 { e.record(bytes: 10_000, seconds: 0.001) }
        e.record(bytes: 0, seconds: 2.0)  // the receiver stopped reading for 2 s
        #expect(e.bytesPerSecond > 0.3 * 10e6, "\(e.bytesPerSecond)")
    }

    /// A starved receiver: every sample carries 50 ms in which the peer's receive window was shut.
    /// Told apart from a slow link by `receiverLimited`, the estimate stays at the link's 10 MB/s and
    /// a generous deadline still gets lossless chunks; the same trace read as link time collapses it.
    @Test func aStarvedReceiverIsNotASlowLink() {
        var aware = BandwidthEstimator(prior: 1e7), blind = BandwidthEstimator(prior: 1e7)
        for _ in 0..<20 {
            aware.record(bytes: 10_000, seconds: 0.001)
            blind.record(bytes: 10_000, seconds: 0.001)
        }
        for _ in 0..<40 {  // 2 s of stalls, 40 times 10 kB delivered in 1 ms of link time
            aware.record(bytes: 10_000, seconds: 0.051, receiverLimited: 0.05)
            blind.record(bytes: 10_000, seconds: 0.051)
        }
        #expect(abs(aware.bytesPerSecond - 1e7) / 1e7 < 0.01, "\(aware.bytesPerSecond)")
        #expect(blind.bytesPerSecond < 3e5, "\(blind.bytesPerSecond)")

        let controller = LevelController(deadline: 10, chunks: Array(repeating: LevelControllerTests.sizes, count: 3))
        #expect(controller.choose(index: 1, elapsed: 2.1, bytesPerSecond: aware.bytesPerSecond) == .level(0))
        #expect(controller.choose(index: 1, elapsed: 2.1, bytesPerSecond: blind.bytesPerSecond) != .level(0))
    }

    @Test func warmupBytesAreNotMeasured() {
        var e = BandwidthEstimator(prior: 1e6, warmupBytes: 256 << 10)
        e.record(bytes: 256 << 10, seconds: 0.00001)
        #expect(e.samples == 0 && e.bytesPerSecond == 1e6)
        e.record(bytes: 500_000, seconds: 0.005)  // the start-up burst: discarded
        #expect(e.samples == 0 && e.bytesPerSecond == 1e6)
        e.record(bytes: 50_000, seconds: 0.005)
        #expect(e.samples == 1 && abs(e.bytesPerSecond - 1e7) < 1)
    }

    @Test func followsAStep() {
        var e = BandwidthEstimator(prior: 1e8)
        for _ in 0..<100 { e.record(bytes: 100_000, seconds: 0.001) }
        for _ in 0..<80 { e.record(bytes: 10_000, seconds: 0.005) }  // 400 ms at 2 MB/s
        #expect(abs(e.bytesPerSecond - 2e6) / 2e6 < 0.01)
    }
}

struct LinkSimulationTests {
    @Test func finishIntegratesAcrossSegments() {
        let trace = BandwidthTrace([(0, 8e6), (1, 16e6)])  // 1 MB/s then 2 MB/s
        #expect(trace.finish(bytes: 500_000, from: 0) == 0.5)
        #expect(abs(trace.finish(bytes: 2_000_000, from: 0.5) - 1.75) < 1e-12)
    }
}

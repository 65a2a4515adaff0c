import KVFrames
/// Size of one stored encoding of a chunk.
public struct LevelSize: Sendable, Equatable, Codable {
    public var level: UInt8
    public var bytes: Int
    public init(level: UInt8, bytes: Int) {
        self.level = level
        self.bytes = bytes
    }
}

/// What to send for one chunk.
public enum LevelChoice: Sendable, Equatable, CustomStringConvertible {
    case level(UInt8)
    /// Nothing stored can arrive before the deadline: the client prefills these tokens from text.
    case recompute

    public var description: String {
        switch self {
        case .level(let l): "L\(l)"
        case .recompute: "text"
        }
    }
}

/// Picks the level of each next chunk from the measured bandwidth and the time left (CacheGen's
/// rule): the highest-quality level whose transfer fits the per-chunk share of the remaining
/// time, `bytes × 8 / bandwidth ≤ remaining deadline / remaining chunks`.
///
/// When no level fits its share, the smallest level is still sent if it alone arrives before the
/// deadline (the later chunks then get less); otherwise the chunk is `recompute`, so no data is
/// ever sent that would land late. A client that says what recomputing costs it
/// (`recomputeSecondsPerToken`, its prefill time per token) changes that last step: a chunk that
/// cannot make the deadline is recomputed only when prefilling its tokens is expected to take
/// longer than its smallest encoding takes to arrive late. A pure value: the sender feeds it time
/// and bandwidth.
public struct LevelController: Sendable, Equatable {
    /// Seconds from the start of the stream to the last byte.
    public var deadline: Double
    /// Stored encodings of each chunk, in stream order.
    public var chunks: [[LevelSize]]
    /// A pinned level is always sent, deadline or not (for fixed-level baselines).
    public var pinned: UInt8?
    /// Tokens of each chunk and the client's prefill seconds per token, when it said so.
    public var chunkTokens: [Int]
    public var recomputeSecondsPerToken: Double?

    public init(deadline: Double, chunks: [[LevelSize]], pinned: UInt8? = nil,
                chunkTokens: [Int] = [], recomputeSecondsPerToken: Double? = nil) {
        self.deadline = deadline
        self.chunks = chunks.map { $0.sorted { $0.level < $1.level } }
        self.pinned = pinned
        self.chunkTokens = chunkTokens
        self.recomputeSecondsPerToken = chunkTokens.count == chunks.count ? recomputeSecondsPerToken : nil
    }

    /// The choice for chunk `index`, `elapsed` seconds into the stream, with the link delivering
    /// `bytesPerSecond` and `inFlight` bytes already accepted by the connection but maybe not yet
    /// delivered (they use up link time before this chunk's bytes).
    public func choose(index: Int, elapsed: Double, bytesPerSecond: Double, inFlight: Int = 0) -> LevelChoice {
        let levels = chunks[index]
        if let pinned { return .level(pinned) }
        guard bytesPerSecond > 0, let smallest = levels.min(by: { $0.bytes < $1.bytes }) else { return .recompute }
        let remaining = deadline - elapsed - Double(inFlight) / bytesPerSecond
        let share = remaining / Double(chunks.count - index)
        if let fit = levels.first(where: { Double($0.bytes) / bytesPerSecond <= share }) { return .level(fit.level) }
        let transfer = Double(smallest.bytes) / bytesPerSecond
        if transfer <= remaining { return .level(smallest.level) }
        // Late either way: whichever lets the client finish sooner. A restore needs a contiguous
        // prefix, so receiving means receiving the rest (smallest encodings) and recomputing means
        // prefilling the rest's tokens.
        if let perToken = recomputeSecondsPerToken {
            let rest = index..<chunks.count
            let restBytes = rest.reduce(0) { $0 + (chunks[$1].map(\.bytes).min() ?? 0) }
            let restTokens = rest.reduce(0) { $0 + chunkTokens[$1] }
            if Double(restBytes) / bytesPerSecond < Double(restTokens) * perToken { return .level(smallest.level) }
        }
        return .recompute
    }

    /// Bytes of a choice for chunk `index`.
    public func bytes(of choice: LevelChoice, index: Int) -> Int {
        guard case .level(let l) = choice else { return 0 }
        return chunks[index].first { $0.level == l }?.bytes ?? 0
    }
}

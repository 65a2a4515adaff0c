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
/// ever sent that would land late. A pure value: the sender feeds it time and bandwidth.
public struct LevelController: Sendable, Equatable {
    /// Seconds from the start of the stream to the last byte.
    public var deadline: Double
    /// Stored encodings of each chunk, in stream order.
    public var chunks: [[LevelSize]]
    /// A pinned level is always sent, deadline or not (for fixed-level baselines).
    public var pinned: UInt8?

    public init(deadline: Double, chunks: [[LevelSize]], pinned: UInt8? = nil) {
        self.deadline = deadline
        self.chunks = chunks.map { $0.sorted { $0.level < $1.level } }
        self.pinned = pinned
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
        if Double(smallest.bytes) / bytesPerSecond <= remaining { return .level(smallest.level) }
        return .recompute
    }

    /// Bytes of a choice for chunk `index`.
    public func bytes(of choice: LevelChoice, index: Int) -> Int {
        guard case .level(let l) = choice else { return 0 }
        return chunks[index].first { $0.level == l }?.bytes ?? 0
    }
}

import Synchronization

/// The engine's prefill time per token, for the remote store's choice between sending a chunk late
/// and telling the engine to recompute it. Learnt from the requests the engine prefilled (an
/// exponential average of time to first byte per uncached token, over requests whose first byte
/// follows the prefill closely: streamed, or at most a few generated tokens), unless the operator
/// fixed it. Unknown until the first such request: the store then keeps its deadline strictly.
public final class PrefillCost: Sendable {
    /// Requests with fewer uncached tokens say more about fixed overheads than about prefill.
    static let minTokens = 64
    private let state: Mutex<Double?>
    private let fixed: Bool

    public init(fixedSecondsPerToken: Double? = nil) {
        state = Mutex(fixedSecondsPerToken)
        fixed = fixedSecondsPerToken != nil
    }

    public var secondsPerToken: Double? { state.withLock { $0 } }

    func record(tokens: Int, seconds: Double) {
        guard !fixed, tokens >= Self.minTokens, seconds > 0 else { return }
        let sample = seconds / Double(tokens)
        state.withLock { $0 = $0.map { 0.7 * $0 + 0.3 * sample } ?? sample }
    }
}

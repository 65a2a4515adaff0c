import KVTensor

/// Which of a model's layers llama.cpp keeps in which KV cache. Most models have one cache of
/// every layer. A model with sliding-window attention layers gets two (`llama_kv_cache_iswa`): the
/// full-attention layers' cache, then the sliding-window layers' cache, which writes to a state
/// only the cells a next token can still see: the last `window` positions.
public struct LlamaCacheLayout: Sendable, Equatable {
    /// Per model layer, whether it attends through a sliding window. Empty: no such layers.
    public var slidingLayers: [Bool]
    /// The window in tokens (`<arch>.attention.sliding_window`); 0 without sliding layers.
    public var window: Int

    public static let single = LlamaCacheLayout(slidingLayers: [], window: 0)

    public init(slidingLayers: [Bool], window: Int) {
        self.slidingLayers = slidingLayers.contains(true) && window > 0 ? slidingLayers : []
        self.window = self.slidingLayers.isEmpty ? 0 : window
    }

    public var hasSlidingLayers: Bool { !slidingLayers.isEmpty }

    /// Model layer indices of each cache, in the order llama.cpp writes the caches.
    public func cacheLayers(layers: Int) -> [[Int]] {
        guard hasSlidingLayers else { return [Array(0..<layers)] }
        return [(0..<layers).filter { !slidingLayers[$0] }, (0..<layers).filter { slidingLayers[$0] }]
    }

    /// The first position a sliding layer still holds after positions 0..<count (llama.cpp's
    /// `is_masked_swa`, standard windows: a cell is masked once `pos_max - pos >= window`).
    public func windowStart(count: Int) -> Int { hasSlidingLayers ? max(0, count - window) : 0 }

    /// Checks the layout fits a model of `layers` layers and that each cache has a layer.
    public func validate(layers: Int) throws {
        guard hasSlidingLayers else { return }
        guard slidingLayers.count == layers else {
            throw LlamaStateError.mismatch("sliding-window pattern of \(slidingLayers.count) layers for a model of \(layers)")
        }
        guard slidingLayers.contains(false) else {
            throw LlamaStateError.unsupported("every layer uses a sliding window; such models are not supported")
        }
        guard window <= KVTensor.maxTokens else { throw LlamaStateError.malformed("sliding window of \(window) tokens") }
    }

    /// llama.cpp's default pattern for architectures whose GGUF states only the window
    /// (`load_swa_pattern(ml, n)` in its model files): every n-th layer attends fully. Only
    /// architectures with standard windows and checked here; others are refused, not guessed.
    public static func defaultPattern(architecture: String) -> Int? {
        ["gemma3": 6, "gemma2": 2, "cohere2": 4][architecture]
    }

    /// llama.cpp's `set_swa_pattern(n, dense_first: false)`: layer l slides unless l % n == n - 1.
    public static func pattern(_ n: Int, layers: Int) -> [Bool] {
        (0..<layers).map { n == 0 || $0 % n < n - 1 }
    }
}

/// The model-dependent dimensions of a KV tensor `[layers, 2, tokens, kvHeads, headDim]`.
public struct KVShape: Hashable, Sendable, Codable, CustomStringConvertible {
    public var layers: Int
    public var kvHeads: Int
    public var headDim: Int

    /// Largest dimension accepted from any file or request, so a hostile header cannot size an allocation.
    public static let maxDimension = 4096

    public init(layers: Int, kvHeads: Int, headDim: Int) {
        self.layers = layers
        self.kvHeads = kvHeads
        self.headDim = headDim
    }

    /// Elements of one token's K (or V) vector in one layer.
    public var rowElements: Int { kvHeads * headDim }
    /// Elements per token over all layers, keys and values.
    public var elementsPerToken: Int { layers * 2 * rowElements }

    public var description: String { "\(layers)x2x\(kvHeads)x\(headDim)" }

    public func validate() throws {
        for (name, v) in [("layers", layers), ("kv_heads", kvHeads), ("head_dim", headDim)] {
            guard v > 0, v <= Self.maxDimension else { throw TensorError.badShape("\(name) = \(v) is outside 1...\(Self.maxDimension)") }
        }
    }
}

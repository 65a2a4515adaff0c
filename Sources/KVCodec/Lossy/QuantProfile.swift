import KVTensor

/// What the lossy encoder does at one level. The decoder never sees a profile: every step size and
/// token scale it needs is in the chunk, so profiles can be retuned without a format change.
public struct QuantProfile: Sendable, Equatable {
    /// Base step as a fraction of the group's RMS channel standard deviation.
    public var alpha: Float
    /// Value tokens are quantised with step · (‖v_t‖ / median ‖v‖)^beta (KIVI: values per token).
    public var valueTokenBeta: Float
    /// Tokens whose value norm is below `salienceTau` · median in a layer are attention sinks
    /// (SmolLM2: token 0 and " the"-like tokens carry 3–50% of the attention); both their key and
    /// value get `salienceShift` half-octaves finer steps.
    public var salienceTau: Float
    public var salienceShift: Int
    /// Key channel c is quantised with step · (mean w / w_c)^(gamma/2), w from `KeyChannelProfile`
    /// (query energy); 0 gives every channel of a group the same step.
    public var keyChannelGamma: Float

    public init(alpha: Float, valueTokenBeta: Float = 0.5, salienceTau: Float = 0.4, salienceShift: Int = 6,
                keyChannelGamma: Float = 0.75) {
        self.alpha = alpha
        self.valueTokenBeta = valueTokenBeta
        self.salienceTau = salienceTau
        self.salienceShift = salienceShift
        self.keyChannelGamma = keyChannelGamma
    }

    /// The level → profile table (see schemas/codec-design.md for the measurements behind it).
    public static func forLevel(_ level: UInt8) throws -> QuantProfile {
        switch level {
        case 1: QuantProfile(alpha: 0.21)
        case 2: QuantProfile(alpha: 0.54)
        case 3: QuantProfile(alpha: 0.95)
        case 4: QuantProfile(alpha: 1.35)
        default: throw CodecError.unsupported("lossy level \(level), expected 1...4")
        }
    }
}

/// Per-(layer, K/V) step multipliers from measured sensitivity (KVTuner): the step of a group is
/// scaled by sqrt(median KL / KL of that group), KL measured on a calibration text with only that
/// group quantised. Shapes without a profile get 1 everywhere.
public enum SensitivityProfile {
    /// SmolLM2-135M (30 layers, 3 KV heads, head_dim 64), calibrated on northanger_abbey_ch1-2
    /// (not one of the evaluation texts). Index: layer * 2 + (0 keys, 1 values).
    static let smolLM2_135M: [Float] = [
        2.50, 1.61, 1.18, 0.58, 0.70, 1.04, 1.19, 1.55, 1.49, 1.50, 1.01, 1.69, 1.17, 1.78, 0.53, 0.97,
        0.78, 1.31, 0.97, 2.38, 1.75, 2.50, 1.04, 2.50, 1.11, 1.30, 0.53, 1.42, 0.67, 0.83, 0.67, 0.98,
        0.95, 1.53, 0.43, 0.64, 0.59, 0.42, 0.68, 0.95, 0.43, 0.57, 0.84, 0.99, 1.02, 1.10, 0.47, 0.47,
        0.61, 0.71, 1.37, 1.11, 0.66, 0.98, 1.09, 1.47, 1.05, 1.62, 0.70, 0.57,
    ]

    public static func weights(for shape: KVShape) -> [Float] {
        if shape == KVShape(layers: 30, kvHeads: 3, headDim: 64) { return smolLM2_135M }
        return [Float](repeating: 1, count: shape.layers * 2)
    }
}

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
    /// Key channel c is quantised with step · (mean w / w_c)^(gamma/2), w from the model's
    /// `CodecProfile` (query energy); 0 gives every channel of a group the same step.
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

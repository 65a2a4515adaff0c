/// Element types a KV tensor may be stored in. Raw values are the safetensors spellings.
public enum DType: String, Sendable, CaseIterable, Codable {
    case f16 = "F16"
    case bf16 = "BF16"
    case f32 = "F32"

    public var byteWidth: Int { self == .f32 ? 4 : 2 }

    /// Stable one-byte code used in the chunk container and the namespace.
    public var code: UInt8 {
        switch self {
        case .f16: 1
        case .bf16: 2
        case .f32: 3
        }
    }

    public init?(code: UInt8) {
        guard let d = DType.allCases.first(where: { $0.code == code }) else { return nil }
        self = d
    }
}

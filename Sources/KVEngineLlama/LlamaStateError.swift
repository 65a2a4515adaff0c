import KVTensor
/// Errors about llama.cpp state bytes, slot files and GGUF headers. Each reads as one line naming
/// what was found.
public enum LlamaStateError: Error, Equatable, CustomStringConvertible {
    case truncated(String)
    case unsupported(String)
    case malformed(String)
    case mismatch(String)
    case io(String)

    public var description: String {
        switch self {
        case .truncated(let s): "truncated llama.cpp state: \(s)"
        case .unsupported(let s): "unsupported llama.cpp state: \(s)"
        case .malformed(let s): "malformed llama.cpp state: \(s)"
        case .mismatch(let s): "llama.cpp state does not fit: \(s)"
        case .io(let s): "I/O error: \(s)"
        }
    }
}

/// ggml's type ids (ggml.h, `enum ggml_type`) for naming what a state holds when refusing it.
enum GGMLType {
    static let f32: Int32 = 0
    static let f16: Int32 = 1

    /// The float cache types, as tensor dtypes.
    static func dtype(_ t: Int32) -> DType? { t == f16 ? .f16 : t == f32 ? .f32 : nil }
    static func of(_ d: DType) -> Int32? { d == .f16 ? f16 : d == .f32 ? f32 : nil }

    /// Bytes per block of 32 values of the quantized cache types llama.cpp offers (`-ctk`/`-ctv`):
    /// Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL. Their rows are kept as they are, never decoded.
    static let quantizedBlockBytes: [Int32: Int] = [2: 18, 3: 20, 6: 22, 7: 24, 8: 34, 20: 18]

    static func isQuantized(_ t: Int32) -> Bool { quantizedBlockBytes[t] != nil }

    /// Bytes of a row of `elements` values of quantized type `t` (whole blocks only), else nil.
    static func quantizedRowBytes(_ t: Int32, elements: Int) -> Int? {
        guard let block = quantizedBlockBytes[t], elements > 0, elements % 32 == 0 else { return nil }
        return elements / 32 * block
    }

    static func name(_ t: Int32) -> String {
        let names: [Int32: String] = [0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1",
                                      10: "Q2_K", 11: "Q3_K", 12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K",
                                      20: "IQ4_NL", 30: "BF16"]
        return names[t] ?? "ggml type \(t)"
    }
}

/// Errors about tensor files and tensor shapes. Every case reads as a one-line message.
public enum TensorError: Error, Equatable, CustomStringConvertible {
    case io(String)
    case truncated(String)
    case badHeader(String)
    case missingTensor(String)
    case unknownDType(String)
    case badShape(String)
    case mismatch(String)
    case tooLarge(String)
    /// The file system is full or the file size limit was reached (ENOSPC, EDQUOT, EFBIG).
    case noSpace(String)

    public var description: String {
        switch self {
        case .io(let s): "I/O error: \(s)"
        case .truncated(let s): "truncated file: \(s)"
        case .badHeader(let s): "bad safetensors header: \(s)"
        case .missingTensor(let s): "missing tensor: \(s)"
        case .unknownDType(let s): "unknown dtype: \(s)"
        case .badShape(let s): "bad shape: \(s)"
        case .mismatch(let s): "mismatch: \(s)"
        case .tooLarge(let s): "too large: \(s)"
        case .noSpace(let s): "no space left: \(s)"
        }
    }

    /// The message without its category, for callers that wrap it in their own.
    public var detail: String {
        switch self {
        case .io(let s), .truncated(let s), .badHeader(let s), .missingTensor(let s),
             .unknownDType(let s), .badShape(let s), .mismatch(let s), .tooLarge(let s), .noSpace(let s): s
        }
    }
}

/// Errors from encoding or decoding a chunk. Each reads as one line.
public enum CodecError: Error, Equatable, CustomStringConvertible {
    case truncated(String)
    case corrupt(String)
    case unsupported(String)
    case limit(String)
    case compression(String)

    public var description: String {
        switch self {
        case .truncated(let s): "truncated chunk: \(s)"
        case .corrupt(let s): "corrupt chunk: \(s)"
        case .unsupported(let s): "unsupported: \(s)"
        case .limit(let s): "limit exceeded: \(s)"
        case .compression(let s): "compression failed: \(s)"
        }
    }
}

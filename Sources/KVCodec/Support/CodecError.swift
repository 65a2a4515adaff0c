/// Errors from encoding or decoding a chunk. Each reads as one line.
public enum CodecError: Error, Equatable, CustomStringConvertible {
    case truncated(String)
    case corrupt(String)
    case unsupported(String)
    case limit(String)
    case compression(String)
    /// The tensor holds NaN or infinity, which a lossy codec cannot quantise.
    case nonFinite

    public var description: String {
        switch self {
        case .truncated(let s): "truncated chunk: \(s)"
        case .corrupt(let s): "corrupt chunk: \(s)"
        case .unsupported(let s): "unsupported: \(s)"
        case .limit(let s): "limit exceeded: \(s)"
        case .compression(let s): "compression failed: \(s)"
        case .nonFinite: "non-finite values cannot be coded lossily"
        }
    }
}

/// Errors from the store. Each reads as one line naming the problem.
public enum StoreError: Error, Equatable, CustomStringConvertible {
    case notWritable(String)
    case config(String)
    case index(String)
    case missingBlob(String)
    case corruptBlob(String)
    case invalidInput(String)
    case notFound(String)
    case noSpace(String)

    public var description: String {
        switch self {
        case .notWritable(let s): "store not writable: \(s)"
        case .config(let s): "store configuration: \(s)"
        case .index(let s): "index error: \(s)"
        case .missingBlob(let s): "missing blob: \(s)"
        case .corruptBlob(let s): "corrupt blob: \(s)"
        case .invalidInput(let s): "invalid input: \(s)"
        case .notFound(let s): "not found: \(s)"
        case .noSpace(let s): "no space left: \(s)"
        }
    }
}

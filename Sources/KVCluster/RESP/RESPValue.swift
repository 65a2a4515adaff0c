/// One RESP2 value (https://redis.io/docs/latest/develop/reference/protocol-spec/). Bulk strings
/// are bytes: values are binary chunk containers, never text.
public enum RESPValue: Sendable, Equatable {
    case simple(String)
    case error(String)
    case integer(Int64)
    case bulk([UInt8])
    case array([RESPValue])
    /// `$-1` or `*-1`.
    case null

    public var bytes: [UInt8]? {
        switch self {
        case .bulk(let b): b
        case .simple(let s): Array(s.utf8)
        default: nil
        }
    }

    public var string: String? { bytes.map { String(decoding: $0, as: UTF8.self) } }

    public var errorMessage: String? {
        if case .error(let e) = self { return e }
        return nil
    }
}

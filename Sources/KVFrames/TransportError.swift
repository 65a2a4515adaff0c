/// Failures of the stream protocol and the remote client, each with a one-line reason.
public enum TransportError: Error, Equatable, CustomStringConvertible {
    case badFrame(String)
    case http(status: Int, message: String)
    case connection(String)
    case invalidURL(String)

    public var description: String {
        switch self {
        case .badFrame(let s): "bad stream: \(s)"
        case .http(let status, let message): "server answered \(status): \(message)"
        case .connection(let s): "connection failed: \(s)"
        case .invalidURL(let s): "invalid remote URL: \(s)"
        }
    }
}

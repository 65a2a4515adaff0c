import Foundation
import KVFrames
import KVTransport
import NIOCore
import NIOHTTP1

/// The llama-server endpoints the sidecar uses: its tokenizer and chat template (never another
/// tokenizer), slot save/restore, and the completion routes it forwards to.
public struct LlamaServerClient: Sendable {
    public let exchange: HTTPExchange

    public init(url: String) throws {
        exchange = HTTPExchange(endpoint: try RemoteEndpoint(url: url))
    }

    /// What the sidecar needs from `GET /props`.
    public struct Props: Sendable {
        public var modelPath: String
        public var totalSlots: Int
    }

    public func props() async throws -> Props {
        let o = try await json(.GET, "/props")
        guard let path = o["model_path"] as? String, let slots = o["total_slots"] as? Int, slots > 0 else {
            throw SidecarError.engine("GET /props lacks model_path or total_slots")
        }
        return Props(modelPath: path, totalSlots: slots)
    }

    /// The prompt's tokens exactly as llama-server tokenizes a completion prompt (special tokens added and parsed).
    public func tokenize(_ content: String) async throws -> [Int32] {
        let o = try await json(.POST, "/tokenize", ["content": content, "add_special": true, "parse_special": true])
        guard let ids = o["tokens"] as? [Int] else { throw SidecarError.engine("/tokenize returned no tokens") }
        return ids.map { Int32(truncatingIfNeeded: $0) }
    }

    /// The chat request's prompt text after the model's chat template (`POST /apply-template`).
    public func applyTemplate(_ body: [String: Any]) async throws -> String {
        let o = try await json(.POST, "/apply-template", body)
        guard let prompt = o["prompt"] as? String else { throw SidecarError.engine("/apply-template returned no prompt") }
        return prompt
    }

    /// `POST /slots/{id}?action=restore|save` with a file name inside llama-server's `--slot-save-path`.
    public func slotAction(_ action: String, slot: Int, filename: String) async throws -> [String: Any] {
        try await json(.POST, "/slots/\(slot)?action=\(action)", ["filename": filename])
    }

    /// A JSON call; a non-2xx status is an error carrying llama-server's message.
    public func json(_ method: HTTPMethod, _ path: String, _ body: [String: Any]? = nil) async throws -> [String: Any] {
        let data = try body.map { try JSONSerialization.data(withJSONObject: $0) } ?? Data()
        let (status, out) = try await exchange.call(method: method, path: path, body: Array(data))
        guard (200..<300).contains(status) else {
            throw SidecarError.engine("\(method) \(path): HTTP \(status) \(String(decoding: out.prefix(300), as: UTF8.self))")
        }
        guard let o = try? JSONSerialization.jsonObject(with: Data(out)) as? [String: Any] else {
            throw SidecarError.engine("\(method) \(path): response is not a JSON object")
        }
        return o
    }
}

/// Errors of the sidecar's own steps; none of them fails a request (it falls back to prefill),
/// except `.request`: a request the sidecar cannot read, answered 400 before llama-server is called.
public enum SidecarError: Error, CustomStringConvertible {
    case engine(String)
    case store(String)
    case config(String)
    case request(String)
    case notReady(String)

    public var description: String {
        switch self {
        case .engine(let s): "llama-server: \(s)"
        case .store(let s): "store: \(s)"
        case .config(let s): s
        case .request(let s): "bad request: \(s)"
        case .notReady(let s): "not ready, waiting for llama-server: \(s)"
        }
    }
}

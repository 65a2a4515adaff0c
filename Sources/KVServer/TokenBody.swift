import Foundation
import Hummingbird
import KVTensor

/// A token query from a request body: JSON `{"tokens": [...], "model": ..., "dtype": ...}`, or a
/// compact `application/octet-stream` body of little-endian int32 ids with `model` and `dtype`
/// in the query string.
struct TokenBody: Sendable {
    var tokens: [Int32]
    var model: String?
    var dtype: DType?

    static let maxTokens = KVTensor.maxTokens

    private struct JSONForm: Decodable {
        var tokens: [Int32]
        var model: String?
        var dtype: String?
    }

    static func parse(_ request: Request, body: ByteBuffer) throws -> TokenBody {
        let contentType = request.headers[.contentType] ?? "application/json"
        var result: TokenBody
        if contentType.hasPrefix("application/octet-stream") {
            guard body.readableBytes % 4 == 0 else {
                throw APIError.badRequest("binary token body of \(body.readableBytes) bytes is not a whole number of int32 ids")
            }
            var reader = body
            var tokens: [Int32] = []
            tokens.reserveCapacity(reader.readableBytes / 4)
            while let t = reader.readInteger(endianness: .little, as: Int32.self) { tokens.append(t) }
            let q = request.uri.queryParameters
            result = TokenBody(tokens: tokens, model: q["model"].map(String.init), dtype: try q["dtype"].map { try dtype(String($0)) })
        } else if contentType.hasPrefix("application/json") {
            let form: JSONForm
            do { form = try JSONDecoder().decode(JSONForm.self, from: Data(buffer: body)) } catch {
                throw APIError.badRequest("body is not JSON {\"tokens\": [int32, ...], \"model\"?: string, \"dtype\"?: string}")
            }
            result = TokenBody(tokens: form.tokens, model: form.model, dtype: try form.dtype.map(dtype))
        } else {
            throw APIError(.unsupportedMediaType, "token queries are application/json or application/octet-stream, not \(contentType)")
        }
        guard !result.tokens.isEmpty else { throw APIError.badRequest("the token query is empty") }
        guard result.tokens.count <= maxTokens else { throw APIError.badRequest("the token query holds \(result.tokens.count) tokens, at most \(maxTokens)") }
        if let bad = result.tokens.firstIndex(where: { $0 < 0 }) { throw APIError.badRequest("token \(bad) is negative") }
        return result
    }

    static func dtype(_ s: String) throws -> DType {
        guard let d = DType(rawValue: s.uppercased()) else { throw APIError.badRequest("unknown dtype \(s) (F16, BF16, F32)") }
        return d
    }
}

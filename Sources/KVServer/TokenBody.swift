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

        enum CodingKeys: String, CodingKey { case tokens, model, dtype }

        /// `model` and `dtype` may be left out, not sent as null (the spec types them as strings).
        init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            tokens = try c.decode([Int32].self, forKey: .tokens)
            model = c.contains(.model) ? try c.decode(String.self, forKey: .model) : nil
            dtype = c.contains(.dtype) ? try c.decode(String.self, forKey: .dtype) : nil
        }
    }

    static func parse(_ request: Request, body: ByteBuffer) throws -> TokenBody {
        let contentType = request.headers[.contentType] ?? "application/json"
        // The query string's model and dtype are checked whatever the body, so a bad one is never
        // silently ignored (they apply to binary bodies only).
        let q = request.uri.queryParameters
        let queryModel = q["model"].map(String.init), queryDType = try q["dtype"].map { try dtype(String($0)) }
        if let queryModel { try KVService.checkModelID(queryModel) }
        var result: TokenBody
        if contentType.hasPrefix("application/octet-stream") {
            guard body.readableBytes % 4 == 0 else {
                throw APIError.badRequest("binary token body of \(body.readableBytes) bytes is not a whole number of int32 ids")
            }
            var reader = body
            var tokens: [Int32] = []
            tokens.reserveCapacity(reader.readableBytes / 4)
            while let t = reader.readInteger(endianness: .little, as: Int32.self) { tokens.append(t) }
            result = TokenBody(tokens: tokens, model: queryModel, dtype: queryDType)
        } else if contentType.hasPrefix("application/json") {
            let form: JSONForm
            do { form = try JSONDecoder().decode(JSONForm.self, from: Data(buffer: body)) } catch {
                throw APIError.badRequest("body is not JSON {\"tokens\": [int32, ...], \"model\"?: string, \"dtype\"?: string}")
            }
            result = TokenBody(tokens: form.tokens, model: form.model, dtype: try form.dtype.map(dtype))
        } else {
            throw APIError(.unsupportedMediaType, "token queries are application/json or application/octet-stream, not \(contentType)")
        }
        if let model = result.model { try KVService.checkModelID(model) }
        guard !result.tokens.isEmpty else { throw APIError.badRequest("the token query is empty") }
        guard result.tokens.count <= maxTokens else { throw APIError.badRequest("the token query holds \(result.tokens.count) tokens, at most \(maxTokens)") }
        if let bad = result.tokens.firstIndex(where: { $0 < 0 }) { throw APIError.badRequest("token \(bad) is negative") }
        return result
    }

    static func dtype(_ s: String) throws -> DType {
        guard let d = DType(rawValue: s.uppercased()) else {
            throw APIError.badRequest("unknown dtype\(s.utf8.count <= 8 ? " " + s : "") (F16, BF16, F32)")
        }
        return d
    }
}

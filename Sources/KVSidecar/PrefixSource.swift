import Foundation
import KVCodec
import KVEngineLlama
import KVStore
import KVTensor
import KVFrames
import KVTransport

/// Where stored prefixes come from and new chunks go: the embedded store, or a remote
/// `kvstore serve` (streamed with a deadline, levels chosen per chunk by the server).
public enum PrefixSource: Sendable {
    case embedded(ChunkStore, levels: [UInt8])
    case remote(StreamClient, sloMs: Double, levels: [UInt8])

    /// What a fetch delivered: the KV of `tokens[0..<count]` (nil on a miss) and how.
    struct Fetched {
        var context: KVContext?
        var detail: String
    }

    /// The longest stored prefix of `tokens`, as an F16 context of `model`. A remote store is told
    /// the engine's prefill cost, when known, for its choice between late chunks and recompute.
    func fetch(_ tokens: [Int32], model: GGUFModel, recomputeSecondsPerToken: Double? = nil) async throws -> Fetched {
        switch self {
        case .embedded(let store, _):
            let ns = Namespace(model: model.identity, dtype: .f16, shape: model.kvShape, chunkTokens: store.chunkTokens)
            guard let (ctx, match) = try store.get(tokens, namespace: ns) else { return Fetched(context: nil, detail: "miss") }
            return Fetched(context: ctx, detail: "\(match.chunks.count) chunks")
        case .remote(let client, let sloMs, _):
            let request = StreamRequest(tokens: tokens, model: model.identity, dtype: DType.f16.rawValue, sloMs: sloMs,
                                        recomputeMsPerToken: recomputeSecondsPerToken.map { min(60_000, $0 * 1000) })
            guard let result = try await client.stream(request) else { return Fetched(context: nil, detail: "miss") }
            guard let kv = try result.contiguousKV() else { return Fetched(context: nil, detail: "all chunks to recompute") }
            guard kv.shape == model.kvShape, kv.dtype == .f16 else {
                throw SidecarError.store("remote KV is \(kv.shape) \(kv.dtype.rawValue), the model needs \(model.kvShape) F16")
            }
            let n = result.contiguousTokens
            let levels = result.chunks.prefix { $0.kv != nil }.map { "\($0.choice)" }
            return Fetched(context: try KVContext(kv: kv, tokens: Array(tokens[0..<n]), metadata: ["model": model.identity]),
                           detail: "\(levels.count) chunks, levels \(Set(levels).sorted().joined(separator: "/")), \(result.bytes) bytes")
        }
    }

    /// Stores `context` (whole chunks of a prompt, KV from the engine).
    func store(_ context: KVContext) async throws {
        switch self {
        case .embedded(let store, let levels):
            let ns = store.namespace(for: context, model: context.metadata["model"] ?? "")
            _ = try store.put(context, namespace: ns, levels: levels)
        case .remote(let client, _, let levels):
            let body = Safetensors.serialize(context).flatMap { $0 }
            let path = "/v1/contexts?levels=" + levels.map(String.init).joined(separator: ",")
            let (status, out) = try await client.exchange.call(method: .POST, path: path, contentType: "application/octet-stream", body: body)
            guard (200..<300).contains(status) else {
                throw SidecarError.store("upload: HTTP \(status) \(String(decoding: out.prefix(200), as: UTF8.self))")
            }
        }
    }

    /// Chunk size of the embedded store (prompts are stored in whole chunks); nil for a remote one.
    var chunkTokens: Int? {
        if case .embedded(let store, _) = self { return store.chunkTokens }
        return nil
    }
}

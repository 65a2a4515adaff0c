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

    /// A stored prefix found by `lookup`: the KV of `tokens`, still encoded (the embedded store's
    /// chunk containers) or already decoded (a remote stream decodes as it downloads).
    public struct Found: Sendable {
        public enum Parts: Sendable {
            case encoded([[UInt8]], tokens: [Int], namespace: Namespace)
            case decoded([KVTensor])
        }
        public var tokens: [Int32]
        public var parts: Parts
        public var detail: String
    }

    /// The KV of a stored prefix as the chunks' tensors in order (joined only in the slot file).
    public struct StoredPrefix: Sendable {
        public var tokens: [Int32]
        public var parts: [KVTensor]
    }

    /// The longest stored prefix of `tokens` (nil on a miss), in the engine's cache type (`layout`;
    /// a quantized cache's rows are filed under their own model id and storage shape). A remote
    /// store is told the engine's prefill cost, when known, for its choice between late chunks and recompute.
    public func lookup(_ tokens: [Int32], model: GGUFModel, layout: LlamaEngineLayout = LlamaEngineLayout(streamCount: 1, vTransposed: false),
                       recomputeSecondsPerToken: Double? = nil) async throws -> Found? {
        guard let shape = layout.storageShape(model.kvShape) else { throw SidecarError.config("no storage shape for \(layout)") }
        let modelID = model.kvIdentity(cacheType: layout.cacheType)
        switch self {
        case .embedded(let store, _):
            let ns = Namespace(model: modelID, dtype: layout.dtype, shape: shape, chunkTokens: store.chunkTokens)
            var match = try store.lookup(tokens, namespace: ns)
            // The chunks' stored bytes; the prefix ends before a chunk removed since the lookup.
            var blobs: [[UInt8]] = []
            for (i, chunk) in match.chunks.enumerated() {
                guard let bytes = try store.chunkBytes(chunk) else {
                    match.chunks.removeSubrange(i...)
                    match.tokens = chunk.range.lowerBound
                    break
                }
                blobs.append(bytes)
            }
            guard !blobs.isEmpty else { return nil }
            store.recordAccess(match)
            return Found(tokens: Array(tokens[0..<match.tokens]),
                         parts: .encoded(blobs, tokens: match.chunks.map(\.range.count), namespace: ns),
                         detail: "\(match.chunks.count) chunks")
        case .remote(let client, let sloMs, _):
            let request = StreamRequest(tokens: tokens, model: modelID, dtype: layout.dtype.rawValue, sloMs: sloMs,
                                        recomputeMsPerToken: recomputeSecondsPerToken.map { min(60_000, $0 * 1000) })
            guard let result = try await client.stream(request) else { return nil }
            let parts = result.chunks.prefix { $0.kv != nil }.compactMap(\.kv)
            guard !parts.isEmpty else { return nil }   // every chunk to recompute
            for kv in parts where kv.shape != shape || kv.dtype != layout.dtype {
                throw SidecarError.store("remote KV is \(kv.shape) \(kv.dtype.rawValue), the engine needs \(shape) \(layout.dtype.rawValue)")
            }
            let n = result.contiguousTokens
            guard n == parts.reduce(0, { $0 + $1.tokens }), n <= tokens.count else {
                throw SidecarError.store("remote chunks hold \(parts.reduce(0) { $0 + $1.tokens }) tokens for a prefix of \(n)")
            }
            let levels = result.chunks.prefix { $0.kv != nil }.map { "\($0.choice)" }
            return Found(tokens: Array(tokens[0..<n]), parts: .decoded(parts),
                         detail: "\(levels.count) chunks, levels \(Set(levels).sorted().joined(separator: "/")), \(result.bytes) bytes")
        }
    }

    /// The found prefix's tensors: encoded chunks are decoded in parallel on up to `threads`
    /// threads (they are independent), each checked against the namespace.
    public func decode(_ found: Found, threads: Int) async throws -> StoredPrefix {
        switch found.parts {
        case .decoded(let parts):
            return StoredPrefix(tokens: found.tokens, parts: parts)
        case .encoded(let blobs, let counts, let ns):
            let parts = try await Parallel.map(blobs.count, threads: threads) { i in
                let tensor = try ChunkContainer.decode(blobs[i])
                guard tensor.tokens == counts[i], tensor.shape == ns.shape, tensor.dtype == ns.dtype else {
                    throw StoreError.corruptBlob("chunk \(i) decodes to \(tensor.tokens) tokens of \(tensor.shape) \(tensor.dtype.rawValue)")
                }
                return tensor
            }
            return StoredPrefix(tokens: found.tokens, parts: parts)
        }
    }

    /// Stores `context` (whole chunks of a prompt, KV from the engine). Quantized rows are stored
    /// at level 0 only (lossless): a lossy level would treat their bytes as F16 values.
    func store(_ context: KVContext, quantized: Bool = false) async throws {
        switch self {
        case .embedded(let store, let configured):
            let levels = quantized ? [CodecLevel.lossless] : configured
            let ns = store.namespace(for: context, model: context.metadata["model"] ?? "")
            _ = try store.put(context, namespace: ns, levels: levels)
        case .remote(let client, _, let configured):
            let levels = quantized ? [CodecLevel.lossless] : configured
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


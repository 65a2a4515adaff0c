import Foundation
import KVTensor

/// A stored context as listed by `ls`.
public struct ContextInfo: Sendable, Codable, Equatable {
    public var id: String
    public var name: String
    public var model: String
    public var dtype: String
    public var tokens: Int
    public var chunks: Int
    public var storedBytes: Int
    public var created: Int
    /// The model has no calibrated codec profile in the store: its lossy levels run on the default.
    public var uncalibrated: Bool = false
}

/// Store totals, as shown by `stat`.
public struct StoreStats: Sendable, Codable, Equatable {
    public var path: String
    public var chunkTokens: Int
    public var contexts: Int
    public var chunks: Int
    public var blobs: Int
    public var blobBytes: Int
    public var indexBytes: Int
    public var namespaces: [Namespace]
    /// Stored models without a calibrated codec profile (their lossy levels run on the default).
    public var uncalibratedModels: [String] = []
}

extension ChunkStore {
    public func namespaces() throws -> [Namespace] {
        try env.read { txn in
            var out: [Namespace] = []
            try txn.scan(namespaceDB) { _, value in
                if let n = try? JSONDecoder().decode(Namespace.self, from: Data(value)) { out.append(n) }
                return true
            }
            return out
        }
    }

    public func contexts() throws -> [ContextInfo] {
        let spaces = Dictionary(try namespaces().map { ($0.root, $0) }, uniquingKeysWith: { a, _ in a })
        let uncalibrated = Set(uncalibratedModels(spaces.values.map(\.model)))
        return try env.read { txn in
            var out: [ContextInfo] = []
            try txn.scan(contextDB) { key, value in
                let rec = try ContextRecord(decoding: value)
                var bytes = 0
                for h in rec.chain {
                    if let raw = try txn.get(chunkDB, h.bytes) { bytes += try ChunkRecord(decoding: raw).storedBytes }
                }
                let ns = spaces[rec.namespace]
                out.append(ContextInfo(id: Hash32(bytes: key)!.hex, name: rec.name, model: ns?.model ?? "?",
                                       dtype: ns?.dtype.rawValue ?? "?", tokens: rec.tokens, chunks: rec.chain.count,
                                       storedBytes: bytes, created: rec.created, uncalibrated: ns.map { uncalibrated.contains($0.model) } ?? false))
                return true
            }
            return out.sorted { $0.created < $1.created }
        }
    }

    public func stats() throws -> StoreStats {
        let spaces = try namespaces()
        let uncalibrated = uncalibratedModels(spaces.map(\.model))
        return try env.read { txn in
            var blobBytes = 0
            try txn.scan(blobDB) { _, value in
                blobBytes += try BlobRecord(decoding: value).bytes
                return true
            }
            return StoreStats(path: root, chunkTokens: chunkTokens, contexts: try txn.count(contextDB),
                              chunks: try txn.count(chunkDB), blobs: try txn.count(blobDB), blobBytes: blobBytes,
                              indexBytes: env.usedBytes(), namespaces: spaces, uncalibratedModels: uncalibrated)
        }
    }

    /// The namespace among `spaces` holding the longest stored prefix of `tokens`, with its match.
    public func longestMatch(_ tokens: [Int32], in spaces: [Namespace], adapter: AdapterSpan? = nil) throws -> (namespace: Namespace, match: PrefixMatch)? {
        var best: (namespace: Namespace, match: PrefixMatch)?
        for space in spaces {
            let m = try lookup(tokens, namespace: space, adapter: adapter)
            if m.tokens > (best?.match.tokens ?? 0) { best = (space, m) }
        }
        return best
    }

    /// A model id names one shape: a tenant that stored `model` with one shape cannot add another
    /// (it would be a different model under the same name, and token-only queries could not tell
    /// them apart). Stores that already hold several shapes keep accepting those shapes.
    func checkShapeFamily(_ namespace: Namespace, txn: LMDBTransaction) throws {
        var shapes: Set<KVShape> = []
        try txn.scan(namespaceDB) { _, value in
            if let n = try? JSONDecoder().decode(Namespace.self, from: Data(value)),
               n.model == namespace.model, n.salt == namespace.salt { shapes.insert(n.shape) }
            return true
        }
        guard !shapes.isEmpty, !shapes.contains(namespace.shape) else { return }
        let s = namespace.shape, stored = shapes.first!
        throw StoreError.invalidInput("model \(namespace.model) is stored with shape [layers \(stored.layers), kv_heads \(stored.kvHeads), head_dim \(stored.headDim)]; this context has [layers \(s.layers), kv_heads \(s.kvHeads), head_dim \(s.headDim)]: a model id names one shape, so store it under another model id")
    }
}

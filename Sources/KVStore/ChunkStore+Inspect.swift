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

    /// The one base namespace (no adapter) of `salt` matching the given fields, for commands that
    /// take only tokens.
    public func resolveNamespace(model: String?, dtype: DType?, salt: String? = nil) throws -> Namespace {
        let candidates = try namespaces().filter {
            (model == nil || $0.model == model) && (dtype == nil || $0.dtype == dtype) && $0.adapter == nil && $0.salt == salt
        }
        guard let first = candidates.first else {
            throw StoreError.notFound(model.map { "nothing stored for model \($0)" } ?? "the store is empty")
        }
        guard candidates.count == 1 else {
            let names = candidates.map { "\($0.model) \($0.dtype.rawValue)" }.joined(separator: ", ")
            throw StoreError.invalidInput("the store holds several models (\(names)); pass --model and --dtype")
        }
        return first
    }
}

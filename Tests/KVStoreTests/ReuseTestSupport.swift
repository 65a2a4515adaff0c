import Foundation
import KVStore
import KVTensor
import TestSupport

/// Small synthetic stores and contexts for the reuse tests.
enum ReuseSupport {
    static let shape = KVShape(layers: 2, kvHeads: 2, headDim: 8)

    static func tempStore(chunkTokens: Int = 16) throws -> ChunkStore {
        try ChunkStore(root: TestSupport.scratchDirectory("reuse") + "/store", chunkTokens: chunkTokens)
    }

    /// Deterministic pseudo-random values from `seed` (splitmix64), in [-2, 2).
    static func values(_ count: Int, seed: UInt64) -> [Float] {
        var s = seed
        return (0..<count).map { _ in
            s &+= 0x9E37_79B9_7F4A_7C15
            var z = s
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            return Float(Double(z >> 11) / Double(1 << 53) * 4 - 2)
        }
    }

    static func kv(tokens: Int, seed: UInt64, dtype: DType = .f16, shape: KVShape = shape) throws -> KVTensor {
        try KVTensor(shape: shape, tokens: tokens, dtype: dtype, floats: values(shape.elementsPerToken * tokens, seed: seed))
    }

    static func context(_ tokens: [Int32], seed: UInt64, dtype: DType = .f16) throws -> KVContext {
        try KVContext(kv: kv(tokens: tokens.count, seed: seed, dtype: dtype), tokens: tokens, metadata: ["model": "test-model"])
    }

    /// `a`'s rows `0..<split` followed by `b`'s rows `split...`.
    static func splice(_ a: KVTensor, _ b: KVTensor, at split: Int) throws -> KVTensor {
        try KVTensor.concatenate([a.slice(tokens: 0..<split), b.slice(tokens: split..<b.tokens)])
    }

    static func namespace(_ store: ChunkStore, dtype: DType = .f16, salt: String? = nil) -> Namespace {
        Namespace(model: "test-model", dtype: dtype, shape: shape, chunkTokens: store.chunkTokens, salt: salt)
    }

    static func digest(_ name: String) -> String { Hash32.sha256(Array(name.utf8)).hex }

    static var repoRoot: URL { URL(fileURLWithPath: TestSupport.fixtures).deletingLastPathComponent().deletingLastPathComponent() }
}

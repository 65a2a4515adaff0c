import Foundation
import KVEngineLlama
import KVSidecar
import KVStore
import KVTensor
import TestSupport
import Testing

/// The restore path's fast steps (chunks decoded in parallel, the slot file built straight from
/// them) give exactly the bytes of the sequential path (decode, join, encode).
struct SlotImageTests {
    /// Smooth-ish F16/F32 values from a seeded generator (compressible like real KV, never NaN).
    static func kv(_ shape: KVShape, tokens: Int, dtype: DType, seed: UInt64) throws -> KVTensor {
        var state = seed
        let floats = (0..<(shape.elementsPerToken * tokens)).map { i -> Float in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000) / 1000 + sin(Float(i) / 50)
        }
        return try KVTensor(shape: shape, tokens: tokens, dtype: dtype, floats: floats)
    }

    static let layouts = [LlamaEngineLayout(streamCount: 1, vTransposed: true), LlamaEngineLayout(streamCount: 1, vTransposed: false),
                          LlamaEngineLayout(streamCount: 3, vTransposed: true)]

    @Test(arguments: [DType.f16, .f32]) func aSlotFileBuiltFromPartsEqualsTheJoinedContextsFile(dtype: DType) throws {
        let shape = KVShape(layers: 3, kvHeads: 2, headDim: 8)
        let parts = try [1, 64, 7, 33].enumerated().map { try Self.kv(shape, tokens: $0.element, dtype: dtype, seed: UInt64($0.offset + 1)) }
        let n = parts.reduce(0) { $0 + $1.tokens }
        let tokens = (0..<n).map { Int32($0 * 31 % 997) }
        let context = try KVContext(kv: try KVTensor.concatenate(parts), tokens: tokens)
        for base in Self.layouts {
            let layout = LlamaEngineLayout(streamCount: base.streamCount, vTransposed: base.vTransposed, dtype: dtype)
            let expected = try LlamaSlotFile(context: context, layout: layout).encoded()
            for threads in [1, 2, 5, 64] {
                #expect(try LlamaSlotFile.encoded(tokens: tokens, parts: parts, layout: layout, threads: threads) == expected, "\(layout) \(threads) threads")
            }
        }
        // Parts that do not fit are refused, never written.
        #expect(throws: LlamaStateError.self) { try LlamaSlotFile.encoded(tokens: Array(tokens.dropLast()), parts: parts, layout: Self.layouts[0]) }
        #expect(throws: LlamaStateError.self) { try LlamaSlotFile.encoded(tokens: [], parts: [], layout: Self.layouts[0]) }
    }

    @Test(arguments: [1, 2, 4]) func aPrefixDecodedInParallelEqualsTheStoresOwnGet(threads: Int) async throws {
        let model = try GGUFModel(path: LlamaServerProcess.modelPath)
        let storeDir = TestSupport.scratchDirectory("slot-image-store")
        defer { TestSupport.removeTree(storeDir) }
        let store = try ChunkStore(root: storeDir, chunkTokens: 64)
        let tokens = (0..<300).map { Int32($0 * 7 % 5000 + 1) }
        let context = try KVContext(kv: try Self.kv(model.kvShape, tokens: tokens.count, dtype: .f16, seed: 9), tokens: tokens,
                                    metadata: ["model": model.identity])
        let ns = Namespace(model: model.identity, dtype: .f16, shape: model.kvShape, chunkTokens: 64)
        _ = try store.put(context, namespace: ns, levels: [0, 2])

        let query = tokens + [5, 6]
        let source = PrefixSource.embedded(store, levels: [0])
        let found = try #require(try await source.lookup(query, model: model))
        let prefix = try await source.decode(found, threads: threads)
        let reference = try #require(try store.get(query, namespace: ns))
        #expect(prefix.parts.count > 1)
        #expect(prefix.tokens == reference.context.tokens)
        #expect(try KVTensor.concatenate(prefix.parts) == reference.context.kv)
        for layout in Self.layouts {
            #expect(try LlamaSlotFile.encoded(tokens: prefix.tokens, parts: prefix.parts, layout: layout, threads: threads)
                    == LlamaSlotFile(context: reference.context, layout: layout).encoded())
        }
    }
}

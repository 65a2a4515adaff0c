import KVEngineLlama
import KVTensor
import Testing

/// States of models with sliding-window layers (two KV caches) and F32 caches, built here; the
/// same against real Gemma 3 states of llama.cpp is in tools/tests/test_pypkg.py.
@Suite struct LlamaMemoryStateTests {
    static let shape = KVShape(layers: 6, kvHeads: 2, headDim: 8)
    /// Layers 2 and 5 attend fully, the others through a window of 4 tokens.
    static let layout = LlamaCacheLayout(slidingLayers: LlamaCacheLayout.pattern(3, layers: 6), window: 4)

    static func kv(tokens: Int, dtype: DType) throws -> KVTensor {
        let n = shape.elementsPerToken * tokens
        return try KVTensor(shape: shape, tokens: tokens, dtype: dtype, floats: (0..<n).map { Float($0 % 251) / 8 - 15 })
    }

    @Test func patternMatchesLlamaCpp() {
        // Gemma 3: every sixth layer attends fully (llama.cpp set_swa_pattern(6)).
        let gemma = LlamaCacheLayout.pattern(6, layers: 18)
        #expect((0..<18).filter { !gemma[$0] } == [5, 11, 17])
        #expect(Self.layout.cacheLayers(layers: 6) == [[2, 5], [0, 1, 3, 4]])
        #expect(Self.layout.windowStart(count: 10) == 6 && Self.layout.windowStart(count: 3) == 0)
        #expect(LlamaCacheLayout.single.cacheLayers(layers: 3) == [[0, 1, 2]])
    }

    @Test(arguments: [(DType.f16, true), (.f16, false), (.f32, true), (.f32, false)])
    func roundTripKeepsTheWindowOfSlidingLayers(dtype: DType, vTransposed: Bool) throws {
        let kv = try Self.kv(tokens: 10, dtype: dtype)
        let engine = LlamaEngineLayout(streamCount: 1, vTransposed: vTransposed, dtype: dtype)
        let state = try LlamaMemoryState(kv: kv, layout: Self.layout, engine: engine)
        #expect(state.sections.map(\.cellCount) == [10, 4])
        #expect(state.sections[1].positions == [6, 7, 8, 9])
        let bytes = state.memoryBytes()
        let back = try LlamaMemoryState(decodingMemory: bytes, shape: Self.shape, layout: Self.layout)
        #expect(back == state && back.memoryBytes() == bytes)
        #expect(back.engineLayout == engine)

        let (got, start) = try back.kv(count: 10)
        #expect(start == 6 && got.dtype == dtype)
        let row = Self.shape.rowElements * dtype.byteWidth
        for l in 0..<6 {
            for p in 0..<2 {
                let plane = (2 * l + p) * 10 * row
                let sliding = ![2, 5].contains(l)
                let from = sliding ? 6 : 0
                #expect(got.bytes[(plane + from * row)..<(plane + 10 * row)] == kv.bytes[(plane + from * row)..<(plane + 10 * row)])
                if sliding { #expect(got.bytes[plane..<(plane + from * row)].allSatisfy { $0 == 0 }) }
            }
        }
        // A shorter prefix: the sliding layers hold 6..<8 of it.
        #expect(try back.kv(count: 8).windowStart == 6)
    }

    @Test func oneCacheModelsReadAsBefore() throws {
        let kv = try Self.kv(tokens: 5, dtype: .f16)
        let single = try LlamaSequenceState(positions: (0..<5).map { $0 }, vTransposed: true, kv: kv)
        let state = try LlamaMemoryState(decodingMemory: single.memoryBytes(), shape: Self.shape, layout: .single)
        #expect(state.sections == [single])
        let (got, start) = try state.kv(count: 5)
        #expect(got == kv && start == 0)
    }

    /// Issue 27 F7: a state is 4 bytes per stream of the engine's layout, so a caller's stream count of
    /// 2^31 asked for 8 GB before failing. Counts no engine has are refused before anything is sized.
    @Test func impossibleStreamCountsAreRefusedFirst() throws {
        let kv = try Self.kv(tokens: 3, dtype: .f16)
        for count: UInt32 in [0, 4097, UInt32(Int32.max), .max] {
            #expect(throws: LlamaStateError.mismatch("layout stream count \(count) is outside 1...4096")) {
                _ = try LlamaMemoryState(kv: kv, layout: .single, engine: LlamaEngineLayout(streamCount: count, vTransposed: true))
            }
        }
        _ = try LlamaMemoryState(kv: kv, layout: .single, engine: LlamaEngineLayout(streamCount: 4096, vTransposed: true))
    }

    @Test func badStatesFailClearly() throws {
        let kv = try Self.kv(tokens: 10, dtype: .f16)
        let bytes = try LlamaMemoryState(kv: kv, layout: Self.layout, engine: LlamaEngineLayout(streamCount: 1, vTransposed: true)).memoryBytes()
        func message(_ b: [UInt8], layout: LlamaCacheLayout = Self.layout) -> String {
            do { _ = try LlamaMemoryState(decodingMemory: b, shape: Self.shape, layout: layout); return "no error" } catch { return "\(error)" }
        }
        #expect(message(Array(bytes.dropLast(3))).contains("needs"))
        #expect(message(bytes + [0, 0, 0, 0]).contains("4 bytes follow"))
        // Read as a one-cache model, the first section has 2 layers where the model has 6.
        #expect(message(bytes, layout: .single).contains("2 layers, the model 6"))
        // KV of a mismatched dtype is refused before any bytes are written.
        #expect(throws: LlamaStateError.self) {
            try LlamaMemoryState(kv: kv, layout: Self.layout, engine: LlamaEngineLayout(streamCount: 1, vTransposed: true, dtype: .f32))
        }
        #expect(throws: LlamaStateError.self) { try LlamaCacheLayout(slidingLayers: [true, true], window: 4).validate(layers: 2) }
    }
}

import Testing
@testable import KVCodec
import KVTensor
import TestSupport

/// Format version 5 (32 rANS states): the AVX2 kernels, the portable kernels and the 4-state
/// version 4 decoder must all give the same bits (the quantisation is the same; only the entropy
/// coding differs).
@Suite struct LossySIMDTests {
    static func payload(_ kv: KVTensor, level: UInt8, version: UInt8) throws -> [UInt8] {
        // SmolLM2's fixtures with its profile (RoPE undo, channel codes); other shapes flat.
        let smol = try Profiles.smolLM2()
        return try QuantizedRANSCodec(profile: QuantProfile.forLevel(level), model: kv.shape == smol.kvShape ? smol : nil,
                                      writeVersion: version).encode(kv, level: level)
    }

    static func decode(_ p: [UInt8], _ kv: KVTensor, level: UInt8, simd: Bool) throws -> KVTensor {
        let header = ChunkHeader(codec: .cacheGen, level: level, dtype: kv.dtype, shape: kv.shape, tokens: kv.tokens)
        return try p.withUnsafeBytes { try QuantizedRANSCodec().decode($0, header: header, simd: simd) }
    }

    @Test(arguments: [1, 3, 8, 17, 96])
    func simdPortableAndVersion4DecodeTheSameBits(tokens: Int) throws {
        let kv = try TestSupport.realContext().kv.slice(tokens: 0..<tokens)
        for level: UInt8 in 1...4 {
            let v5 = try Self.payload(kv, level: level, version: 5)
            let v4 = try Self.payload(kv, level: level, version: 4)
            #expect(v5[0] == 5 && v4[0] == 4)
            // Only the 28 extra final states (and the words' order) differ in size.
            #expect(abs(v5.count - v4.count) <= 4 * 28 + 64, "level \(level): \(v5.count) vs \(v4.count) bytes")
            let fast = try Self.decode(v5, kv, level: level, simd: true)
            let portable = try Self.decode(v5, kv, level: level, simd: false)
            let old = try Self.decode(v4, kv, level: level, simd: true)
            #expect(fast.bytes == portable.bytes, "T \(tokens) level \(level): SIMD and portable decoders differ")
            #expect(fast.bytes == old.bytes, "T \(tokens) level \(level): versions 4 and 5 decode differently")
        }
    }

    @Test func otherDTypesDecodeTheSameOnBothPaths() throws {
        for file in ["smollm2_ctx40_bf16.safetensors", "smollm2_ctx40_f32.safetensors"] {
            let kv = try Safetensors.readContext(TestSupport.fixture(file)).kv.slice(tokens: 0..<21)
            for level: UInt8 in [1, 4] {
                let p = try Self.payload(kv, level: level, version: 5)
                let a = try Self.decode(p, kv, level: level, simd: true)
                let b = try Self.decode(p, kv, level: level, simd: false)
                #expect(a.bytes == b.bytes, "\(file) level \(level)")
            }
        }
    }

    /// Rows of 5 and 12 channels (not multiples of the 8 SIMD lanes), constant channels.
    @Test func oddShapesDecodeTheSameOnBothPaths() throws {
        var rng = TestRNG(s: 7)
        for (dim, tokens, constant) in [(5, 1, false), (5, 3, false), (12, 17, true), (12, 41, false)] {
            let shape = KVShape(layers: 2, kvHeads: 2, headDim: dim)
            let floats = (0..<(shape.elementsPerToken * tokens)).map { _ in constant ? Float(0.25) : Float(rng.unit() * 4 - 2) }
            let kv = try KVTensor(shape: shape, tokens: tokens, dtype: .f16, floats: floats)
            for level: UInt8 in [1, 4] {
                let p = try Self.payload(kv, level: level, version: 5)
                let a = try Self.decode(p, kv, level: level, simd: true)
                let b = try Self.decode(p, kv, level: level, simd: false)
                let old = try Self.decode(Self.payload(kv, level: level, version: 4), kv, level: level, simd: true)
                #expect(a.bytes == b.bytes && a.bytes == old.bytes, "head_dim \(dim), \(tokens) tokens, level \(level)")
            }
        }
    }

    /// Damaged streams take the same path through both kernels: same error or same bytes.
    @Test func damagedStreamsBehaveTheSameOnBothPaths() throws {
        let kv = try TestSupport.realContext().kv.slice(tokens: 0..<40)
        let p = try Self.payload(kv, level: 3, version: 5)
        var rng = TestRNG(s: 99)
        var errors = 0
        for trial in 0..<200 {
            var bad = p
            if trial % 3 == 0 {
                bad.removeLast(1 + Int(rng.next() % 64)) // truncated: section lengths no longer add up
            }
            for _ in 0..<(1 + trial % 3) {
                // Mostly in the rANS stream at the end of the payload.
                let i = bad.count - 1 - Int(rng.next() % UInt64(min(bad.count - 1, 4000)))
                bad[i] ^= UInt8(1 + rng.next() % 255)
            }
            let a = Result { try Self.decode(bad, kv, level: 3, simd: true) }
            let b = Result { try Self.decode(bad, kv, level: 3, simd: false) }
            switch (a, b) {
            case (.success(let x), .success(let y)): #expect(x.bytes == y.bytes)
            case (.failure(let e), .failure(let f)):
                #expect(e is CodecError && f is CodecError)
                errors += 1
            default: Issue.record("trial \(trial): one path failed, the other did not")
            }
        }
        #expect(errors > 150, "most damage is detected (\(errors) of 200)")
    }
}

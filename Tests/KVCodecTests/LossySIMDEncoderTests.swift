import Testing
@testable import KVCodec
import KVTensor
import TestSupport
import CLossyKernels

/// The AVX2 encoder (F16C conversion, quantisation, 32-state rANS in CLossyKernels) must write the
/// same chunk bytes as the portable Swift encoder: the store is content-addressed, so every machine
/// has to produce the same payload for the same input.
@Suite struct LossySIMDEncoderTests {
    /// The chunk from the portable encoder, and from each SIMD one this CPU runs (AVX2, AVX-512).
    static func both(_ kv: KVTensor, level: UInt8, model: CodecProfile? = nil) throws -> (fast: [[UInt8]], portable: [UInt8]) {
        let codec = QuantizedRANSCodec(model: model)
        let fast = try EncoderISA.available.filter(\.simd).map { try codec.encode(kv, level: level, isa: $0) }
        return (fast, try codec.encode(kv, level: level, isa: .portable))
    }

    /// A deterministic odd-shaped tensor (rows not a multiple of the 8 SIMD lanes).
    static func oddTensor(dim: Int, tokens: Int) throws -> KVTensor {
        let shape = KVShape(layers: 2, kvHeads: 2, headDim: dim)
        let floats = (0..<(shape.elementsPerToken * tokens)).map { Float(($0 &* 37) % 101) / 25 - 2 }
        return try KVTensor(shape: shape, tokens: tokens, dtype: .f16, floats: floats)
    }

    @Test(arguments: [1, 3, 8, 17, 40, 96])
    func fastAndPortableEncodersWriteTheSameBytes(tokens: Int) throws {
        let kv = try TestSupport.realContext().kv.slice(tokens: 0..<tokens)
        for level: UInt8 in 1...4 {
            let (fast, portable) = try Self.both(kv, level: level, model: Profiles.smolLM2())
            #expect(fast.allSatisfy { $0 == portable }, "T \(tokens) level \(level): SIMD and portable encoders differ")
        }
    }

    @Test func otherDTypesEncodeTheSameOnBothPaths() throws {
        for file in ["smollm2_ctx40_bf16.safetensors", "smollm2_ctx40_f32.safetensors"] {
            for tokens in [1, 21, 40] {
                let kv = try Safetensors.readContext(TestSupport.fixture(file)).kv.slice(tokens: 0..<tokens)
                for level: UInt8 in 1...4 {
                    let (fast, portable) = try Self.both(kv, level: level, model: Profiles.smolLM2())
                    #expect(fast.allSatisfy { $0 == portable }, "\(file) T \(tokens) level \(level)")
                }
            }
        }
    }

    /// Rows of 5 and 12 channels, constant channels (mean stored as f16), values far out (escapes),
    /// one channel 40x wider than the rest (a model too wide for the AVX-512 register tables), and
    /// 600 tokens (bins with more than 419 counts: the model choice sums in float, not integers).
    @Test func oddShapesEncodeTheSameOnBothPaths() throws {
        var rng = TestRNG(s: 11)
        for (dim, tokens, kind) in [(5, 1, 0), (5, 3, 0), (12, 17, 1), (12, 41, 0), (5, 33, 2), (12, 64, 2), (12, 70, 3), (5, 600, 2)] {
            let shape = KVShape(layers: 2, kvHeads: 2, headDim: dim)
            let floats = (0..<(shape.elementsPerToken * tokens)).map { i -> Float in
                switch kind {
                case 1: return 0.25
                case 2: return i % 97 == 0 ? Float(rng.unit() * 2000 - 1000) : Float(rng.unit() * 0.02 - 0.01)
                case 3: return Float(rng.unit() * 4 - 2) * (i % (2 * dim) == 0 ? 40 : 1)
                default: return Float(rng.unit() * 4 - 2)
                }
            }
            let kv = try KVTensor(shape: shape, tokens: tokens, dtype: .f16, floats: floats)
            for level: UInt8 in 1...4 {
                let (fast, portable) = try Self.both(kv, level: level)
                #expect(fast.allSatisfy { $0 == portable }, "head_dim \(dim), \(tokens) tokens, kind \(kind), level \(level)")
                let header = ChunkHeader(codec: .cacheGen, level: level, dtype: kv.dtype, shape: kv.shape, tokens: kv.tokens)
                _ = try portable.withUnsafeBytes { try QuantizedRANSCodec().decode($0, header: header) }
            }
        }
    }

    /// The token-scale median (quickselect on the SIMD path) matches the sorted one.
    @Test func medianMatchesTheSortedOne() {
        var rng = TestRNG(s: 5)
        for n in [1, 2, 3, 7, 8, 33, 256] {
            let v = (0..<n).map { _ in Float(rng.next() % 9) * 0.5 } // many ties
            let sorted = v.sorted()
            for k in 0..<n {
                var w = v
                let got = w.withUnsafeMutableBufferPointer { clossy_kth_smallest($0.baseAddress!, n, k) }
                #expect(got == sorted[k], "n \(n) k \(k)")
            }
        }
    }

    /// f32 values near the top of the range overflow the row norms (an infinite norm ratio once
    /// looped forever in log2) and the channel statistics: a clear error on every path.
    @Test func hugeFiniteValuesAreRejectedOnEveryPath() throws {
        let shape = KVShape(layers: 2, kvHeads: 2, headDim: 12)
        // Groups of 9 tokens x 24 channels; in group 1 (layer 0's values) tokens 0, 3, 6 hold 3e38 in two channels.
        let floats = (0..<(shape.elementsPerToken * 9)).map { i -> Float in
            let (g, t, c) = (i / 216, i % 216 / 24, i % 24)
            return g == 1 && c < 2 && t % 3 == 0 ? 3e38 : Float(i % 7) - 3
        }
        let kv = try KVTensor(shape: shape, tokens: 9, dtype: .f32, floats: floats)
        for isa in EncoderISA.available {
            #expect(throws: CodecError.unsupported("values too large for lossy coding (a group's sum of squares overflows f32)")) {
                try QuantizedRANSCodec().encode(kv, level: 2, isa: isa)
            }
        }
    }

    @Test func nonFiniteInputIsRejectedOnBothPaths() throws {
        var kv = try TestSupport.realContext().kv.slice(tokens: 0..<9)
        var bytes = kv.bytes
        bytes[2 * 77] = 0x00; bytes[2 * 77 + 1] = 0x7E // NaN
        kv = try KVTensor(shape: kv.shape, tokens: kv.tokens, dtype: .f16, bytes: bytes)
        for isa in EncoderISA.available {
            #expect(throws: CodecError.self) { try QuantizedRANSCodec().encode(kv, level: 2, isa: isa) }
        }
    }

    /// XXH64 of payloads written by the encoder before the SIMD kernels (commit 6f1cb2c): both paths
    /// must keep writing exactly these bytes. SmolLM2's KV is encoded with its profile file
    /// (Tests/Fixtures/smollm2_numpy_profile.json, the tables that were Swift constants then); the odd
    /// shapes with the flat profile (what a shape without a table got then).
    static let pinned: [String: UInt64] = [
        "real T1 L1": 0xd33731f281762fae,
        "real T1 L2": 0xd33731f281762fae,
        "real T1 L3": 0xd33731f281762fae,
        "real T1 L4": 0xd33731f281762fae,
        "real T3 L1": 0x66a16be12c3e1b94,
        "real T3 L2": 0xfa3d666f8058a951,
        "real T3 L3": 0xe102df2c58fa14f8,
        "real T3 L4": 0x65e3bfb8cf807cf5,
        "real T8 L1": 0x16bb6806fab81bb0,
        "real T8 L2": 0x199eb83972e6dc0,
        "real T8 L3": 0xd3e05f171f9e5f65,
        "real T8 L4": 0x26abb13ca208d04a,
        "real T17 L1": 0x1accd185ef5a729c,
        "real T17 L2": 0xc26ebad6a3b1aa7d,
        "real T17 L3": 0x988486ccc3558594,
        "real T17 L4": 0x79b94714489b6658,
        "real T96 L1": 0xfb5a2128390c9bc8,
        "real T96 L2": 0xc122831f42b36c77,
        "real T96 L3": 0xbab563f112a71c7b,
        "real T96 L4": 0x89f59de33aa5388d,
        "smollm2_ctx40_bf16.safetensors L1": 0xd2f49dbba7d8dba6,
        "smollm2_ctx40_bf16.safetensors L4": 0xb348b7c1c170d8a,
        "smollm2_ctx40_f32.safetensors L1": 0xba1477a239475c42,
        "smollm2_ctx40_f32.safetensors L4": 0xed02d16b46d2d2e1,
        "odd 5 1 L1": 0x10032fe9f2c6ff99,
        "odd 5 1 L4": 0x10032fe9f2c6ff99,
        "odd 5 3 L1": 0x3ed7922fd99f5021,
        "odd 5 3 L4": 0x33874d6378069d26,
        "odd 12 17 L1": 0xcea8fbc3fe198cb0,
        "odd 12 17 L4": 0x7b3495dfc5e9ef56,
        "odd 12 41 L1": 0x64b02426050b3b06,
        "odd 12 41 L4": 0xcd0bdcb981386a05,
    ]

    static func pinnedCases() throws -> [(String, KVTensor, UInt8, CodecProfile?)] {
        var out: [(String, KVTensor, UInt8, CodecProfile?)] = []
        let real = try TestSupport.realContext().kv
        let smol = try Profiles.smolLM2()
        for t in [1, 3, 8, 17, 96] { for level: UInt8 in 1...4 { out.append(("real T\(t) L\(level)", real.slice(tokens: 0..<t), level, smol)) } }
        for file in ["smollm2_ctx40_bf16.safetensors", "smollm2_ctx40_f32.safetensors"] {
            let kv = try Safetensors.readContext(TestSupport.fixture(file)).kv.slice(tokens: 0..<21)
            for level: UInt8 in [1, 4] { out.append(("\(file) L\(level)", kv, level, smol)) }
        }
        for (dim, tokens) in [(5, 1), (5, 3), (12, 17), (12, 41)] {
            for level: UInt8 in [1, 4] { out.append(("odd \(dim) \(tokens) L\(level)", try oddTensor(dim: dim, tokens: tokens), level, nil)) }
        }
        return out
    }

    @Test func chunksEncodedBeforeTheSIMDEncoderKeepTheirBytes() throws {
        let cases = try Self.pinnedCases()
        #expect(cases.count == Self.pinned.count)
        for (name, kv, level, model) in cases {
            let (fast, portable) = try Self.both(kv, level: level, model: model)
            for f in fast { #expect(XXHash64.hash(f) == Self.pinned[name], "\(name): SIMD encoder") }
            #expect(XXHash64.hash(portable) == Self.pinned[name], "\(name): portable encoder")
        }
    }
}

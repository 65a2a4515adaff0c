import Testing
@testable import KVCodec
import KVTensor
#if canImport(Glibc)
import Glibc
#endif

@Suite struct InChunkRoPETests {
    @Test func seriesSinCosMatchLibm() {
        for i in 0...200 {
            let x = Double(i) / 100 - 1
            let (s, c) = InChunkRoPE.sinCos(x)
            #expect(abs(s - sin(x)) < 1e-15 && abs(c - cos(x)) < 1e-15, "x \(x)")
        }
    }

    @Test func laneTablesMatchLibmAndArePinned() {
        let T = 300
        let (cosL, sinL) = InChunkRoPE.flagOne(layers: 1).laneTables(theta: 100_000, tokens: T)
        for t in [0, 1, 7, 255, 299] {
            for i in 0..<32 {
                let w = pow(100_000.0, -Double(2 * i) / 64)
                let a = Double(t) * w
                #expect(abs(Double(cosL[t * 64 + 2 * i]) - cos(a)) < 1e-6, "t \(t) i \(i)")
                #expect(abs(Double(sinL[t * 64 + 2 * i + 1]) - sin(a)) < 1e-6, "t \(t) i \(i)")
                #expect(sinL[t * 64 + 2 * i] == -sinL[t * 64 + 2 * i + 1])
            }
        }
        // The decoder depends on these exact Floats: pin them.
        let bits = (cosL + sinL).flatMap { f in withUnsafeBytes(of: f.bitPattern.littleEndian) { Array($0) } }
        let h = XXHash64.hash(bits)
        #expect(h == Self.pinned, "fingerprint \(String(h, radix: 16))")
    }
    static let pinned: UInt64 = 0xbeab_4942_0ff5_3792

    @Test func keysOfOddTokenCountsRoundTripThroughTheRotation() throws {
        var rng = TestRNG(s: 21)
        for tokens in [2, 5, 7, 64] {
            let shape = KVShape(layers: 2, kvHeads: 2, headDim: 64)
            let floats = (0..<(shape.elementsPerToken * tokens)).map { _ in Float(rng.unit() * 4 - 2) }
            let kv = try KVTensor(shape: shape, tokens: tokens, dtype: .f16, floats: floats)
            let enc = try ChunkContainer.encode(kv, level: 1, model: Profiles.flatWithRoPE(shape))
            #expect(enc[ChunkHeader.size + 1] == QuantizedRANSCodec.flagRoPE, "flag 1, the short form of this rotation")
            #expect(try ChunkContainer.encode(kv, level: 1)[ChunkHeader.size + 1] == 0, "no RoPE in the profile, none undone")
            let out = try ChunkContainer.decode(enc)
            #expect(LossyCodecTests.relativeRMSE(kv, out) < 0.1, "\(tokens) tokens")
        }
    }

    @Test func unknownFlagsAndMisplacedRoPEFlagAreRejected() throws {
        var rng = TestRNG(s: 22)
        let shape = KVShape(layers: 1, kvHeads: 1, headDim: 64)
        let kv = try KVTensor(shape: shape, tokens: 8, dtype: .f16,
                              floats: (0..<(shape.elementsPerToken * 8)).map { _ in Float(rng.unit()) })
        var enc = try ChunkContainer.encode(kv, level: 2)
        enc[ChunkHeader.size + 1] = 3
        #expect(throws: CodecError.self) { try ChunkContainer.decode(HostileInputTests.reseal(enc)) }
        do { _ = try ChunkContainer.decode(HostileInputTests.reseal(enc)) } catch {
            #expect("\(error)".contains("lossy flags 3"), "\(error)")
        }
        // The RoPE flag on a chunk whose heads are not 64 wide.
        let other = KVShape(layers: 1, kvHeads: 2, headDim: 32)
        let kv2 = try KVTensor(shape: other, tokens: 8, dtype: .f16,
                               floats: (0..<(other.elementsPerToken * 8)).map { _ in Float(rng.unit()) })
        var enc2 = try ChunkContainer.encode(kv2, level: 2)
        #expect(enc2[ChunkHeader.size + 1] == 0)
        enc2[ChunkHeader.size + 1] = QuantizedRANSCodec.flagRoPE
        do {
            _ = try ChunkContainer.decode(HostileInputTests.reseal(enc2))
            Issue.record("accepted the RoPE flag on head_dim 32")
        } catch {
            #expect("\(error)".contains("RoPE flag 1 on head_dim 32"), "\(error)")
        }
    }
}

/// RoPE as data: any head_dim (a multiple of 8), θ, rotated dims, pair layout and a θ per layer,
/// stated by the profile and carried in the payload.
@Suite struct ProfileRoPETests {
    /// Keys k_t = R((p0 + t) ω) u of one vector u per (layer, head): what a model's RoPE makes of a
    /// position-independent key, in double precision. Values are noise.
    static func rotatedKeys(shape: KVShape, tokens T: Int, p0: Int, layerTheta: [Double], dim: Int, half: Bool,
                            seed: UInt64) throws -> (KVTensor, u: [Float]) {
        var rng = TestRNG(s: seed)
        let C = shape.rowElements, hd = shape.headDim
        let u = (0..<(shape.layers * C)).map { _ in Float(rng.unit() * 2 - 1) }
        var f = [Float](repeating: 0, count: shape.layers * 2 * T * C)
        for l in 0..<shape.layers {
            for t in 0..<T {
                let keys = (2 * l * T + t) * C, values = ((2 * l + 1) * T + t) * C
                for c in 0..<C { f[values + c] = Float(rng.unit() * 2 - 1) }
                for h in 0..<shape.kvHeads {
                    let base = h * hd
                    for c in 0..<hd { f[keys + base + c] = u[l * C + base + c] } // dims past `dim` are not rotated
                    for i in 0..<(dim / 2) {
                        let (a, b) = half ? (i, i + dim / 2) : (2 * i, 2 * i + 1)
                        let w = pow(layerTheta[l], -Double(2 * i) / Double(dim)) * Double(p0 + t)
                        let x = Double(u[l * C + base + a]), y = Double(u[l * C + base + b])
                        f[keys + base + a] = Float(x * cos(w) - y * sin(w))
                        f[keys + base + b] = Float(y * cos(w) + x * sin(w))
                    }
                }
            }
        }
        return (try KVTensor(shape: shape, tokens: T, dtype: .f16, floats: f), u)
    }

    static func profile(_ shape: KVShape, theta: Double, layerTheta: [Double]?, dim: Int, half: Bool) -> CodecProfile {
        var p = CodecProfile.flat(shape: shape)
        p.rope = .init(theta: theta, pairs: half ? "half" : "adjacent", dim: dim, layerTheta: layerTheta)
        return p
    }

    /// The un-rotation the encoder applies, against a direct computation: every row of a layer's
    /// keys comes back to R(p0 ω) u, the same for all in-chunk positions.
    @Test(arguments: [(128, 500_000.0, [500_000.0, 500_000.0], 128, false),
                      (128, 500_000.0, [500_000.0, 500_000.0], 96, true),
                      (256, 1_000_000.0, [10_000.0, 1_000_000.0], 256, true)])
    func unrotationMatchesADirectComputation(hd: Int, theta: Double, layerTheta: [Double], dim: Int, half: Bool) throws {
        let shape = KVShape(layers: 2, kvHeads: 2, headDim: hd)
        let T = 37, p0 = 1000, C = shape.rowElements
        let (kv, u) = try Self.rotatedKeys(shape: shape, tokens: T, p0: p0, layerTheta: layerTheta, dim: dim, half: half, seed: 5)
        let p = Self.profile(shape, theta: theta, layerTheta: layerTheta, dim: dim, half: half)
        let rope = try #require(p.inChunkRoPE)
        #expect(rope.thetas.count == Set(layerTheta).count)
        let f = kv.floats()
        let tables = rope.tables(tokens: T)
        for l in 0..<shape.layers {
            let keys = Array(f[(2 * l * T * C)..<((2 * l + 1) * T * C)])
            var coded = keys, out = [Float](repeating: 0, count: T * C)
            if half { keys.withUnsafeBufferPointer { k in coded.withUnsafeMutableBufferPointer { rope.toCoded(k.baseAddress!, into: $0.baseAddress!, T: T, C: C) } } }
            let tab = tables[Int(rope.layerTheta[l])]
            coded.withUnsafeBufferPointer { x in out.withUnsafeMutableBufferPointer { rope.unrotate(x.baseAddress!, into: $0.baseAddress!, T: T, C: C, cos: tab.cos, sin: tab.sin) } }
            // Direct: R(p0 ω) u in coded order.
            let src = rope.source
            var worst = 0.0
            for h in 0..<shape.kvHeads {
                for k in 0..<hd {
                    let c = src[k]
                    var want = Double(u[l * C + h * hd + c])
                    if c < dim {
                        let i = half ? c % (dim / 2) : c / 2
                        let (a, b) = half ? (i, i + dim / 2) : (2 * i, 2 * i + 1)
                        let w = pow(layerTheta[l], -Double(2 * i) / Double(dim)) * Double(p0)
                        let x = Double(u[l * C + h * hd + a]), y = Double(u[l * C + h * hd + b])
                        want = c == a ? x * cos(w) - y * sin(w) : y * cos(w) + x * sin(w)
                    }
                    for t in 0..<T { worst = max(worst, abs(Double(out[t * C + h * hd + k]) - want)) }
                }
            }
            // fp16 keys (2^-11 relative) and float tables: a few 1e-3 at most.
            #expect(worst < 4e-3, "layer \(l): \(worst)")
        }
    }

    /// Through the codec: the descriptor travels in the payload, the decoder needs no profile, the
    /// error stays what it is without the rotation, and the rotated keys cost fewer bytes.
    @Test(arguments: [(128, [500_000.0, 500_000.0], false), (128, [500_000.0, 500_000.0], true),
                      (256, [10_000.0, 1_000_000.0], true), (64, [10_000.0, 1_000_000.0], false)])
    func rotatedKeysRoundTripSmaller(hd: Int, layerTheta: [Double], half: Bool) throws {
        let shape = KVShape(layers: 2, kvHeads: 1, headDim: hd)
        let (kv, _) = try Self.rotatedKeys(shape: shape, tokens: 64, p0: 300, layerTheta: layerTheta, dim: hd, half: half, seed: 9)
        let p = Self.profile(shape, theta: layerTheta[0], layerTheta: layerTheta, dim: hd, half: half)
        for level: UInt8 in [1, 3] {
            let with = try ChunkContainer.encode(kv, level: level, model: p)
            let without = try ChunkContainer.encode(kv, level: level, model: CodecProfile.flat(shape: shape))
            #expect(with[ChunkHeader.size + 1] == QuantizedRANSCodec.flagRoPEDescriptor)
            let out = try ChunkContainer.decode(with)
            let e1 = LossyCodecTests.relativeRMSE(kv, out), e0 = LossyCodecTests.relativeRMSE(kv, try ChunkContainer.decode(without))
            #expect(e1 < 1.5 * e0 + 1e-3, "L\(level): error \(e1) with the rotation, \(e0) without")
            #expect(with.count < without.count * 9 / 10, "L\(level): \(with.count) bytes with, \(without.count) without")
            // Both decoders give the same bits.
            let hdr = try ChunkContainer.header(of: with.withUnsafeBytes { UnsafeRawBufferPointer($0) })
            let payload = Array(with[ChunkHeader.size...])
            let a = try payload.withUnsafeBytes { try QuantizedRANSCodec().decode($0, header: hdr, simd: true) }
            let b = try payload.withUnsafeBytes { try QuantizedRANSCodec().decode($0, header: hdr, simd: false) }
            #expect(a.bytes == b.bytes)
        }
    }

    /// Chunks written with flag 1 before the descriptor existed decode exactly as the descriptor of
    /// the same rotation does.
    @Test func flagOneIsTheShortFormOfItsDescriptor() throws {
        let shape = KVShape(layers: 2, kvHeads: 2, headDim: 64)
        let (kv, _) = try Self.rotatedKeys(shape: shape, tokens: 20, p0: 0, layerTheta: [100_000, 100_000], dim: 64, half: false, seed: 3)
        let short = try ChunkContainer.encode(kv, level: 2, model: Profiles.flatWithRoPE(shape))
        #expect(short[ChunkHeader.size + 1] == QuantizedRANSCodec.flagRoPE)
        // The same payload with the long form spliced in.
        var w = ByteWriter(capacity: 64)
        InChunkRoPE.flagOne(layers: 2).write(into: &w)
        var long = Array(short[0..<(ChunkHeader.size + QuantizedRANSCodec.prefixSize)]) + w.bytes
            + Array(short[(ChunkHeader.size + QuantizedRANSCodec.prefixSize)...])
        long[ChunkHeader.size + 1] = QuantizedRANSCodec.flagRoPEDescriptor
        let n = UInt64(long.count - ChunkHeader.size)
        withUnsafeBytes(of: n.littleEndian) { for i in 0..<8 { long[32 + i] = $0[i] } }
        #expect(try ChunkContainer.decode(HostileInputTests.reseal(long)).bytes == ChunkContainer.decode(short).bytes)
    }

    /// A damaged descriptor is refused, never decoded with a wrong rotation.
    @Test func damagedDescriptorsAreRefused() throws {
        let shape = KVShape(layers: 2, kvHeads: 1, headDim: 128)
        let (kv, _) = try Self.rotatedKeys(shape: shape, tokens: 16, p0: 0, layerTheta: [10_000, 1e6], dim: 128, half: true, seed: 4)
        let enc = try ChunkContainer.encode(kv, level: 2, model: Self.profile(shape, theta: 1e4, layerTheta: [10_000, 1e6], dim: 128, half: true))
        let d = ChunkHeader.size + QuantizedRANSCodec.prefixSize
        // pairs, reserved, rotary dims (odd, zero, past head_dim), base count, a base, a layer's index
        let damages: [(Int, UInt8)] = [(d, 7), (d + 1, 1), (d + 2, 127), (d + 2, 0), (d + 3, 1), (d + 4, 0), (d + 4, 9),
                                       (d + 5 + 7, 0xFF), (d + 5 + 16, 2)]
        for (at, value) in damages {
            var bad = enc
            bad[at] = value
            #expect(throws: CodecError.self, "byte \(at - d) of the descriptor = \(value)") { try ChunkContainer.decode(HostileInputTests.reseal(bad)) }
        }
    }

    /// Shapes the kernels cannot rotate keep their keys as stored.
    @Test func headDimsThatAreNotMultiplesOfEightAreNotRotated() throws {
        let shape = KVShape(layers: 1, kvHeads: 2, headDim: 12)
        var p = CodecProfile.flat(shape: shape)
        p.rope = .init(theta: 10_000, pairs: "adjacent", dim: 12)
        #expect(p.inChunkRoPE == nil)
    }
}

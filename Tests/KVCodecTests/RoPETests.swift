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
        let (cosL, sinL) = InChunkRoPE.laneTables(tokens: T)
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
            #expect(enc[ChunkHeader.size + 1] == QuantizedRANSCodec.flagRoPE)
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
            #expect("\(error)".contains("RoPE flag on head_dim 32"), "\(error)")
        }
    }
}

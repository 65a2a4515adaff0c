import Testing
@testable import KVCodec
import KVTensor
import TestSupport

/// Deterministic xorshift for test inputs.
struct TestRNG {
    var s: UInt64
    mutating func next() -> UInt64 { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return s }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

func entropyBits(_ symbols: [UInt8]) -> Double {
    var h = [Int](repeating: 0, count: 256)
    for s in symbols { h[Int(s)] += 1 }
    let n = Double(symbols.count)
    var bits = 0.0
    for c in h where c > 0 { let p = Double(c) / n; bits -= Double(c) * ParametricModels.log2Approx(p) }
    return bits
}

@Suite struct EntropyCoderTests {
    @Test func fastHalfMatchesReferenceConversion() {
        // Every half value round-trips, and floats across the whole range (including ties,
        // subnormals and overflow) round like the reference.
        for h in 0..<65536 {
            let bits = UInt16(h)
            if bits & 0x7C00 == 0x7C00 && bits & 0x03FF != 0 { continue } // NaN payloads differ on purpose
            let f = FastHalf.toFloatTable[h]
            #expect(FastHalf.halfBits(f) == bits, "half \(h)")
        }
        var rng = TestRNG(s: 42)
        for i in 0..<200_000 {
            let f: Float = i % 2 == 0
                ? Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))
                : Float((rng.unit() - 0.5) * 1e-3)
            if f.isNaN { continue }
            #expect(FastHalf.halfBits(f) == HalfConversion.halfBitsFromFloat(f), "float \(f)")
        }
    }

    @Test func fourLaneHalfConversionMatchesScalar() {
        var rng = TestRNG(s: 7)
        for i in 0..<100_000 {
            var v = SIMD4<Float>()
            for k in 0..<4 {
                // Alternate raw bit patterns (NaN, inf, overflow, subnormals) and small values.
                v[k] = (i + k) % 2 == 0 ? Float(bitPattern: UInt32(truncatingIfNeeded: rng.next()))
                                        : Float((rng.unit() - 0.5) * 1e-3)
            }
            let h = FastHalf.halfBits4(v)
            for k in 0..<4 { #expect(UInt16(truncatingIfNeeded: h[k]) == FastHalf.halfBits(v[k]), "float \(v[k])") }
        }
    }

    @Test func reciprocalEncodingEqualsDivision() {
        var rng = TestRNG(s: 11)
        for freq in UInt32(1)..<RANS.total {
            let cum = UInt32(rng.next() % UInt64(RANS.total - freq + 1))
            let sym = RANSEncSymbol(freq: freq, cum: cum)
            // States just below the renormalisation bound, the extremes and random values in range.
            var xs: [UInt32] = [RANS.lowerBound, RANS.lowerBound + 1, sym.xMax - 1, sym.xMax &- freq]
            for _ in 0..<8 { xs.append(RANS.lowerBound + UInt32(rng.next() % UInt64(sym.xMax - RANS.lowerBound))) }
            for x in xs where x >= RANS.lowerBound && x < sym.xMax {
                let expected = ((x / freq) << RANS.precisionBits) + x % freq + cum
                #expect(sym.apply(x) == expected, "freq \(freq) x \(x)")
            }
        }
    }

    @Test func decoderChannelOrderMatchesEncoder() {
        var rng = TestRNG(s: 9)
        for n in [1, 5, 192, 300] {
            let classes = (0..<n).map { _ in Int(rng.next() % UInt64(ParametricModels.classCount)) }
            let offsets = classes.map { $0 << RANS.precisionBits }
            var order = [Int](repeating: 0, count: n)
            offsets.withUnsafeBufferPointer { QuantizedRANSCodec.channelOrder(keys: $0, shift: Int(RANS.precisionBits), into: &order) }
            #expect(order == QuantizedRANSCodec.channelOrder(classes: classes))
            // The order's definition: by class, ties by channel index.
            #expect(order == (0..<n).sorted { classes[$0] != classes[$1] ? classes[$0] < classes[$1] : $0 < $1 })
        }
    }

    @Test(arguments: [0.05, 0.5, 3.0, 20.0])
    func rangeCoderIsWithinTwoPercentOfEmpiricalEntropy(sigma: Double) throws {
        // Laplace-distributed symbols, coded with a table normalised from their own histogram.
        var rng = TestRNG(s: 7 + UInt64(sigma * 100))
        var symbols = [UInt8](repeating: 0, count: 300_000)
        for i in symbols.indices {
            let u = rng.unit() - 0.5
            let v = -sigma / 1.414 * (u < 0 ? -1.0 : 1.0) * ParametricModels.log2Approx(1 - 2 * abs(u)) * 0.6931
            symbols[i] = UInt8(max(0, min(254, Int(v.rounded()) + 127)))
        }
        // The alphabet is the range of symbols that occur, as a codec would size it.
        let lo = Int(symbols.min()!), hi = Int(symbols.max()!)
        var hist = [Double](repeating: 0, count: hi - lo + 1)
        for s in symbols { hist[Int(s) - lo] += 1 }
        symbols = symbols.map { $0 - UInt8(lo) }
        let table = FrequencyTable(freqs: FrequencyTable.normalize(hist))
        let stream = RANS.encode(symbols, table: table)
        #expect(try RANS.decode(stream, count: symbols.count, table: table) == symbols)
        let h = entropyBits(symbols)
        let coded = Double(stream.count * 8)
        // Overhead allowed: 2% of the entropy plus 32 bytes (the 16-byte state flush and a few words).
        #expect(coded <= h * 1.02 + 256, "coded \(coded) bits, entropy \(h) bits")
    }

    @Test func rangeCoderRejectsDamagedStreams() throws {
        var rng = TestRNG(s: 99)
        let symbols = (0..<5000).map { _ in UInt8(rng.next() % 16) }
        let table = FrequencyTable(freqs: FrequencyTable.normalize([Double](repeating: 1, count: 16)))
        let stream = RANS.encode(symbols, table: table)
        for cut in stride(from: 0, to: stream.count, by: 37) {
            #expect(throws: CodecError.self) { _ = try RANS.decode(Array(stream[0..<cut]), count: symbols.count, table: table) }
        }
        #expect(throws: CodecError.self) { _ = try RANS.decode(stream + [0, 0], count: symbols.count, table: table) }
    }

    @Test func parametricTablesAreValidAndStable() {
        let t = ParametricModels.tables
        #expect(t.radius.count == ParametricModels.classCount)
        for cls in 0..<ParametricModels.classCount {
            let n = 2 * Int(t.radius[cls]) + 2
            var sum: UInt32 = 0
            for s in 0..<n { sum += t.freqCum[cls * 256 + s] & 0xFFFF }
            #expect(sum == RANS.total, "class \(cls)")
        }
        // The tables are part of the bitstream: a change to their derivation must be deliberate.
        var h: UInt64 = 0
        t.freqCum.withUnsafeBytes { h = XXHash64.hash($0) }
        #expect(h == ParametricModels.tablesFingerprint, "fingerprint \(String(h, radix: 16))")
    }
}

@Suite struct LossyCodecTests {
    static func relativeRMSE(_ a: KVTensor, _ b: KVTensor) -> Double {
        let x = a.floats(), y = b.floats()
        var e = 0.0, s = 0.0
        for i in x.indices { let d = Double(x[i] - y[i]); e += d * d; s += Double(x[i]) * Double(x[i]) }
        return (e / s).squareRoot()
    }

    @Test func levelsRoundTripWithGrowingErrorAndShrinkingSize() throws {
        let kv = try TestSupport.realContext().kv
        var lastErr = 0.0, lastSize = Int.max
        for level: UInt8 in 1...4 {
            let bytes = try ChunkContainer.encode(kv, level: level)
            let header = try bytes.withUnsafeBytes { try ChunkContainer.header(of: $0) }
            #expect(header.codec == .cacheGen && header.level == level)
            let out = try ChunkContainer.decode(bytes)
            #expect(out.shape == kv.shape && out.tokens == kv.tokens && out.dtype == kv.dtype)
            let err = Self.relativeRMSE(kv, out)
            #expect(err > lastErr && err < 0.5, "level \(level): relative RMSE \(err)")
            #expect(bytes.count < lastSize, "level \(level): \(bytes.count) bytes")
            #expect(bytes.count * 3 < kv.bytes.count, "level \(level) compresses at least 3x")
            lastErr = err
            lastSize = bytes.count
        }
    }

    @Test func encodingAndDecodingAreDeterministic() throws {
        let kv = try TestSupport.realContext().kv
        for level: UInt8 in 0...4 {
            let a = try ChunkContainer.encode(kv, level: level)
            let b = try ChunkContainer.encode(kv, level: level)
            #expect(a == b, "level \(level) encodes the same bytes twice")
            #expect(try ChunkContainer.decode(a) == ChunkContainer.decode(b))
        }
    }

    @Test func otherDTypesAndOddShapesRoundTrip() throws {
        for file in ["smollm2_ctx40_bf16.safetensors", "smollm2_ctx40_f32.safetensors"] {
            let kv = try Safetensors.readContext(TestSupport.fixture(file)).kv
            let out = try ChunkContainer.decode(ChunkContainer.encode(kv, level: 2))
            #expect(out.dtype == kv.dtype && Self.relativeRMSE(kv, out) < 0.2, "\(file)")
        }
        // 5 channels per row (not a multiple of the 4 rANS states), 1 and 3 tokens, constant data.
        var rng = TestRNG(s: 5)
        for (tokens, constant) in [(1, false), (3, false), (17, true)] {
            let shape = KVShape(layers: 2, kvHeads: 1, headDim: 5)
            let floats = (0..<(shape.elementsPerToken * tokens)).map { _ in constant ? Float(0.25) : Float(rng.unit() * 4 - 2) }
            let kv = try KVTensor(shape: shape, tokens: tokens, dtype: .f16, floats: floats)
            let out = try ChunkContainer.decode(ChunkContainer.encode(kv, level: 1))
            #expect(out.shape == shape && out.tokens == tokens)
            if constant { #expect(out == kv) } else { #expect(Self.relativeRMSE(kv, out) < 0.1, "\(tokens) tokens") }
        }
    }

    @Test func nonFiniteValuesFallBackToLossless() throws {
        let kv = try TestSupport.realContext().kv.slice(tokens: 0..<4)
        var f = kv.floats()
        f[3] = .nan
        f[10] = .infinity
        let bad = try KVTensor(shape: kv.shape, tokens: kv.tokens, dtype: .f16, floats: f)
        let bytes = try ChunkContainer.encode(bad, level: 3)
        let header = try bytes.withUnsafeBytes { try ChunkContainer.header(of: $0) }
        #expect(header.codec == .bytePlaneZstd && header.level == 3)
        #expect(try ChunkContainer.decode(bytes) == bad)
    }
}

@Suite struct HostileInputTests {
    /// Re-seals a chunk after its payload was altered, so the codec's own checks are what is tested.
    static func reseal(_ bytes: [UInt8]) -> [UInt8] {
        var b = bytes
        let prefix = Array(b[0..<40])
        let sum = XXHash64.hash(Array(b[ChunkHeader.size...]), seed: XXHash64.hash(prefix))
        withUnsafeBytes(of: sum.littleEndian) { for i in 0..<8 { b[40 + i] = $0[i] } }
        return b
    }

    @Test func truncationsAndHeaderFlipsOfLossyChunksAreErrors() throws {
        let kv = try TestSupport.realContext().kv.slice(tokens: 0..<16)
        for level: UInt8 in [1, 4] {
            let bytes = try ChunkContainer.encode(kv, level: level)
            for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 211)) {
                #expect(throws: CodecError.self) { try ChunkContainer.decode(Array(bytes[0..<cut])) }
            }
            for i in 0..<ChunkHeader.size {
                for bit in [0x01, 0x80] as [UInt8] {
                    var bad = bytes
                    bad[i] ^= bit
                    #expect(throws: CodecError.self, "header byte \(i)") { try ChunkContainer.decode(bad) }
                }
            }
        }
    }

    @Test func corruptedPayloadsWithValidChecksumsNeverCrash() throws {
        let kv = try TestSupport.realContext().kv.slice(tokens: 0..<8)
        let bytes = try ChunkContainer.encode(kv, level: 2)
        var rng = TestRNG(s: 1234)
        var errors = 0
        let trials = 1500
        for trial in 0..<trials {
            var bad = bytes
            if trial < 300 {
                // every byte of the payload prefix and the start of the side info
                bad[ChunkHeader.size + trial % min(300, bytes.count - ChunkHeader.size)] ^= UInt8(1 + trial / 97)
            } else {
                for _ in 0..<(1 + trial % 4) {
                    let i = ChunkHeader.size + Int(rng.next() % UInt64(bytes.count - ChunkHeader.size))
                    bad[i] ^= UInt8(1 + rng.next() % 255)
                }
            }
            do {
                let out = try ChunkContainer.decode(Self.reseal(bad))
                #expect(out.shape == kv.shape && out.tokens == kv.tokens)
            } catch is CodecError {
                errors += 1
            }
        }
        #expect(errors > trials / 2, "most corruptions are detected (\(errors) of \(trials))")
    }

    @Test func hostileHeaderDimensionsAreRejectedBeforeAllocating() throws {
        let kv = try TestSupport.realContext().kv.slice(tokens: 0..<2)
        let bytes = try ChunkContainer.encode(kv, level: 1)
        func with(layers: UInt32, heads: UInt32, dim: UInt32, tokens: UInt32) -> [UInt8] {
            var b = bytes
            for (offset, v) in [(12, layers), (16, heads), (20, dim), (24, tokens)] {
                withUnsafeBytes(of: v.littleEndian) { for i in 0..<4 { b[offset + i] = $0[i] } }
            }
            let prefix = Array(b[0..<40])
            let sum = XXHash64.hash(Array(b[ChunkHeader.size...]), seed: XXHash64.hash(prefix))
            withUnsafeBytes(of: sum.littleEndian) { for i in 0..<8 { b[40 + i] = $0[i] } }
            return b
        }
        #expect(throws: CodecError.self) { try ChunkContainer.decode(with(layers: 4096, heads: 4096, dim: 4096, tokens: 65536)) }
        #expect(throws: CodecError.self) { try ChunkContainer.decode(with(layers: 4096, heads: 64, dim: 128, tokens: 65536)) }
        #expect(throws: CodecError.self) { try ChunkContainer.decode(with(layers: 0xFFFF_FFFF, heads: 1, dim: 1, tokens: 1)) }
        // Plausible but wrong dimensions: the side-info size no longer matches.
        #expect(throws: CodecError.self) { try ChunkContainer.decode(with(layers: 30, heads: 3, dim: 64, tokens: 3)) }
    }
}

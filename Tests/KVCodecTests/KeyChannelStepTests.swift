import Testing
@testable import KVCodec
import KVTensor
import TestSupport

/// Per-key-channel steps (`CodecProfile.key_pair_energy`): derived from query energy, stored in the chunk,
/// applied by the decoder, and validated on the way in.
@Suite struct KeyChannelStepTests {
    static let smol = KVShape(layers: 30, kvHeads: 3, headDim: 64)

    @Test func stepCodesFollowQueryEnergy() throws {
        let profile = try Profiles.smolLM2()
        let energy = try #require(profile.key_pair_energy)
        let pairs = Self.smol.rowElements / 2
        var nonZero = 0
        for layer in 0..<Self.smol.layers {
            let codes = try #require(profile.keyChannelCodes(layer: layer, gamma: 0.75))
            #expect(codes.count == Self.smol.rowElements)
            for c in 0..<codes.count {
                #expect(abs(Int(codes[c])) <= CodecProfile.maxChannelCode)
                #expect(codes[c] == codes[c ^ 1], "both channels of a RoPE pair share a step")
                nonZero += codes[c] == 0 ? 0 : 1
            }
            // More query energy, never a coarser step.
            let e = energy[layer]
            for a in 0..<pairs { for b in 0..<pairs where e[a] > e[b] { #expect(codes[2 * a] <= codes[2 * b]) } }
        }
        #expect(nonZero > Self.smol.layers * Self.smol.rowElements / 4)
        #expect(profile.keyChannelCodes(layer: 0, gamma: 0) == nil)
        #expect(CodecProfile.flat(shape: Self.smol).keyChannelCodes(layer: 0, gamma: 0.75) == nil)
    }

    /// The chunk's lossy payload split into its sections (layout: schemas/codec-bitstream.md).
    struct Sections {
        var prefix: [UInt8], side: [UInt8], rest: [UInt8]
        init(_ chunk: [UInt8]) throws {
            let p = Array(chunk[ChunkHeader.size...])
            func u32(_ o: Int) -> Int { Int(p[o]) | Int(p[o + 1]) << 8 | Int(p[o + 2]) << 16 | Int(p[o + 3]) << 24 }
            prefix = Array(p[0..<20])
            side = try p.withUnsafeBytes { try Zstd.decompress(UnsafeRawBufferPointer(rebasing: $0[20..<(20 + u32(8))]), size: u32(4)) }
            rest = Array(p[(20 + u32(8))...])
        }
        func chunk(header: [UInt8]) throws -> [UInt8] {
            let z = try Zstd.compress(side, level: 3)
            var pre = prefix
            withUnsafeBytes(of: UInt32(z.count).littleEndian) { for i in 0..<4 { pre[8 + i] = $0[i] } }
            var h = header
            // payload length, u64 at offset 32 (schemas/chunk-container.md)
            withUnsafeBytes(of: UInt64(pre.count + z.count + rest.count).littleEndian) { for i in 0..<8 { h[32 + i] = $0[i] } }
            return HostileInputTests.reseal(h + pre + z + rest)
        }
    }

    @Test func keyGroupsCarryTheirCodesAndTheDecoderAppliesThem() throws {
        let kv = try TestSupport.realContext().kv
        #expect(kv.shape == Self.smol)
        let T = kv.tokens, C = kv.shape.rowElements, G = kv.shape.layers * 2
        let profile = try Profiles.smolLM2()
        let bytes = try ChunkContainer.encode(kv, level: 2, model: profile)
        let s = try Sections(bytes)
        let base = QuantizedRANSCodec.channelOffset(G: G, C: C, T: T)
        for g in 0..<G {
            let stored = (0..<C).map { Int8(bitPattern: s.side[base + g * C + $0]) }
            let expected = g % 2 == 0
                ? profile.keyChannelCodes(layer: g / 2, gamma: try QuantProfile.forLevel(2).keyChannelGamma)!
                : [Int8](repeating: 0, count: C)
            #expect(stored == expected, "group \(g)")
        }
        // Pairs coded with a 4x coarser step than others (codes ≥ +2 vs ≤ −2) must show it in their error.
        let exact = kv.floats(), out = try ChunkContainer.decode(bytes).floats()
        var coarse = (0.0, 0), fine = (0.0, 0)
        for g in stride(from: 0, to: G, by: 2) {
            for c in 0..<C {
                let code = Int8(bitPattern: s.side[base + g * C + c])
                guard abs(code) >= 2 else { continue }
                var e = 0.0
                for t in 0..<T { let i = (g * T + t) * C + c; e += Double((out[i] - exact[i]) * (out[i] - exact[i])) }
                if code > 0 { coarse.0 += e; coarse.1 += 1 } else { fine.0 += e; fine.1 += 1 }
            }
        }
        #expect(coarse.1 > 0 && fine.1 > 0)
        #expect(coarse.0 / Double(coarse.1) > 4 * fine.0 / Double(fine.1), "coarse \(coarse), fine \(fine)")
    }

    @Test func outOfRangeChannelCodesAreRejected() throws {
        let kv = try TestSupport.realContext().kv.slice(tokens: 0..<8)
        let bytes = try ChunkContainer.encode(kv, level: 3)
        var s = try Sections(bytes)
        let G = kv.shape.layers * 2, C = kv.shape.rowElements
        s.side[QuantizedRANSCodec.channelOffset(G: G, C: C, T: kv.tokens) + 5] = UInt8(bitPattern: 9)
        let bad = try s.chunk(header: Array(bytes[0..<ChunkHeader.size]))
        #expect(throws: CodecError.corrupt("channel step code 9 out of range")) { try ChunkContainer.decode(bad) }
        // The unmodified sections rebuild to a chunk that decodes.
        let good = try Sections(bytes).chunk(header: Array(bytes[0..<ChunkHeader.size]))
        #expect(try ChunkContainer.decode(good) == ChunkContainer.decode(bytes))
    }

    @Test func version3ChunksWithoutChannelCodesStillDecode() throws {
        let kv = try TestSupport.realContext().kv.slice(tokens: 0..<16)
        let G = kv.shape.layers * 2, C = kv.shape.rowElements
        // With gamma 0 every channel code is 0: the same reconstruction a version-3 chunk describes
        // (4 rANS states, as version 4 writes them).
        let codec = QuantizedRANSCodec(profile: QuantProfile(alpha: 0.5, keyChannelGamma: 0), writeVersion: 4)
        let v4 = try ChunkContainer.encode(kv, level: 2, codec: codec)
        var s = try Sections(v4)
        let base = QuantizedRANSCodec.channelOffset(G: G, C: C, T: kv.tokens)
        #expect(s.side[base...].allSatisfy { $0 == 0 })
        s.side.removeSubrange(base...)
        s.prefix[0] = 3
        withUnsafeBytes(of: UInt32(s.side.count).littleEndian) { for i in 0..<4 { s.prefix[4 + i] = $0[i] } }
        let v3 = try s.chunk(header: Array(v4[0..<ChunkHeader.size]))
        #expect(try ChunkContainer.decode(v3) == ChunkContainer.decode(v4))
        s.prefix[0] = 2
        #expect(throws: CodecError.unsupported("lossy format version 2")) { try ChunkContainer.decode(s.chunk(header: Array(v4[0..<ChunkHeader.size]))) }
    }
}

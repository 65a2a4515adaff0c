import Foundation
import KVStore
import KVTensor
import Testing

@Suite struct RoPETests {
    let headDim = 16

    /// RoPE applied directly at `position` to unrotated vectors, in float64 (the reference).
    func direct(_ raw: [Float], position: Int, config: RoPEConfig) -> [Float] {
        var out = raw
        let half = config.rotaryDim / 2
        for base in stride(from: 0, to: raw.count, by: headDim) {
            for i in 0..<half {
                let f = pow(config.theta, -2.0 * Double(i) / Double(config.rotaryDim))
                let a = Double(position) * f
                let (ia, ib) = config.pairs == .adjacent ? (base + 2 * i, base + 2 * i + 1) : (base + i, base + i + half)
                let x0 = Double(raw[ia]), x1 = Double(raw[ib])
                out[ia] = Float(x0 * cos(a) - x1 * sin(a))
                out[ib] = Float(x0 * sin(a) + x1 * cos(a))
            }
        }
        return out
    }

    func maxDiff(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max() ?? 0 }

    @Test(arguments: RoPEPairs.allCases)
    func shiftingMovesKeysToTheNewPosition(pairs: RoPEPairs) {
        let config = RoPEConfig(theta: 100_000, rotaryDim: headDim, pairs: pairs)
        let raw = ReuseSupport.values(headDim * 12, seed: 7)
        for (p, q) in [(0, 37), (5, 2000), (1500, 3), (4096, 4096 + 8191)] {
            var keys = direct(raw, position: p, config: config)
            RoPE.rotate(&keys, headDim: headDim, delta: q - p, config: config)
            #expect(maxDiff(keys, direct(raw, position: q, config: config)) < 1e-4, "p=\(p) q=\(q)")
        }
    }

    @Test(arguments: RoPEPairs.allCases)
    func rotationsCompose(pairs: RoPEPairs) {
        let config = RoPEConfig(theta: 10_000, rotaryDim: headDim, pairs: pairs)
        let x = ReuseSupport.values(headDim * 4, seed: 8)
        var ab = x
        RoPE.rotate(&ab, headDim: headDim, delta: 123, config: config)
        RoPE.rotate(&ab, headDim: headDim, delta: -500, config: config)
        var once = x
        RoPE.rotate(&once, headDim: headDim, delta: -377, config: config)
        #expect(maxDiff(ab, once) < 1e-4)
        var back = x
        RoPE.rotate(&back, headDim: headDim, delta: 999, config: config)
        #expect(maxDiff(back, x) > 0.01)   // it did move
        RoPE.rotate(&back, headDim: headDim, delta: -999, config: config)
        #expect(maxDiff(back, x) < 1e-5)
    }

    @Test func conventionsAgreeUnderTheirDimensionPermutation() {
        // split layout dim i <-> adjacent dim 2i, split dim i + d/2 <-> adjacent dim 2i + 1
        func toSplit(_ v: [Float]) -> [Float] {
            var out = v
            for base in stride(from: 0, to: v.count, by: headDim) {
                for i in 0..<headDim / 2 {
                    out[base + i] = v[base + 2 * i]
                    out[base + i + headDim / 2] = v[base + 2 * i + 1]
                }
            }
            return out
        }
        let x = ReuseSupport.values(headDim * 6, seed: 9)
        var adjacent = x
        RoPE.rotate(&adjacent, headDim: headDim, delta: 77, config: RoPEConfig(theta: 10_000, rotaryDim: headDim, pairs: .adjacent))
        var split = toSplit(x)
        RoPE.rotate(&split, headDim: headDim, delta: 77, config: RoPEConfig(theta: 10_000, rotaryDim: headDim, pairs: .split))
        #expect(split == toSplit(adjacent))
        var wrong = x
        RoPE.rotate(&wrong, headDim: headDim, delta: 77, config: RoPEConfig(theta: 10_000, rotaryDim: headDim, pairs: .split))
        #expect(maxDiff(wrong, adjacent) > 0.01)
    }

    @Test(arguments: RoPEPairs.allCases)
    func partialRotaryDimsLeaveTheRestAlone(pairs: RoPEPairs) {
        let config = RoPEConfig(theta: 10_000, rotaryDim: 8, pairs: pairs)
        let x = ReuseSupport.values(headDim * 3, seed: 10)
        var y = x
        RoPE.rotate(&y, headDim: headDim, delta: 41, config: config)
        for base in stride(from: 0, to: x.count, by: headDim) {
            #expect(Array(y[(base + 8)..<(base + 16)]) == Array(x[(base + 8)..<(base + 16)]))
            #expect(Array(y[base..<(base + 8)]) != Array(x[base..<(base + 8)]))
        }
        #expect(maxDiff(y, direct(direct(x, position: 0, config: config), position: 41, config: config)) < 1e-4)
    }

    @Test(arguments: [DType.f16, .bf16, .f32])
    func shiftRotatesKeysAndCopiesValues(dtype: DType) throws {
        let shape = KVShape(layers: 3, kvHeads: 2, headDim: headDim)
        let config = RoPEConfig(theta: 10_000, rotaryDim: headDim, pairs: .adjacent)
        let kv = try ReuseSupport.kv(tokens: 5, seed: 11, dtype: dtype, shape: shape)
        let moved = try RoPE.shift(kv, delta: 300, config: config)
        #expect(moved.dtype == dtype && moved.tokens == 5 && moved.shape == shape)
        let plane = 5 * shape.rowElements
        let a = kv.floats(), b = moved.floats()
        for layer in 0..<shape.layers {
            let keys = (2 * layer * plane)..<((2 * layer + 1) * plane)
            let values = ((2 * layer + 1) * plane)..<((2 * layer + 2) * plane)
            #expect(Array(b[values]) == Array(a[values]))
            var expected = Array(a[keys])
            RoPE.rotate(&expected, headDim: headDim, delta: 300, config: config)
            // the same rotation rounded to the dtype once (a [1, 2, n, 1, headDim] tensor holds 2n vectors)
            let rounded = try KVTensor(shape: KVShape(layers: 1, kvHeads: 1, headDim: headDim), tokens: expected.count / (2 * headDim),
                                       dtype: dtype, floats: expected).floats()
            #expect(Array(b[keys]) == rounded)
        }
        #expect(try RoPE.shift(kv, delta: 0, config: config) == kv)
    }

    @Test func badConfigsAreRejected() throws {
        let kv = try ReuseSupport.kv(tokens: 2, seed: 1)
        #expect(throws: StoreError.invalidInput("RoPE rotary dim 9 must be even and in 2...8 (the head dim)")) {
            try RoPE.shift(kv, delta: 1, config: RoPEConfig(theta: 10_000, rotaryDim: 9, pairs: .adjacent))
        }
        #expect(throws: StoreError.invalidInput("RoPE rotary dim 16 must be even and in 2...8 (the head dim)")) {
            try RoPE.shift(kv, delta: 1, config: RoPEConfig(theta: 10_000, rotaryDim: 16, pairs: .adjacent))
        }
        #expect(throws: StoreError.invalidInput("RoPE theta nan must be a finite number above 1")) {
            try RoPE.shift(kv, delta: 1, config: RoPEConfig(theta: .nan, rotaryDim: 8, pairs: .adjacent))
        }
    }
}

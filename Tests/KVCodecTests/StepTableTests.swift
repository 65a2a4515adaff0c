import Testing
@testable import KVCodec

/// The encoder's tabulated rounded logarithms must give exactly what the functions give.
@Suite struct StepTableTests {
    static func check(_ table: StepTable, _ f: (Float) -> Int, lo: Float, hi: Float, samples: Int) {
        // Both sides of every step.
        for b in table.bounds {
            #expect(table(b) == f(b), "at bound \(b)")
            #expect(table(b.nextDown) == f(b.nextDown), "below bound \(b)")
        }
        // Random floats in between, uniform over bit patterns (so over octaves).
        var rng = TestRNG(s: 3)
        for _ in 0..<samples {
            let x = Float(bitPattern: lo.bitPattern + UInt32(rng.next() % UInt64(hi.bitPattern - lo.bitPattern + 1)))
            #expect(table(x) == f(x), "at \(x)")
        }
        #expect(table(lo.nextDown) == f(lo) && table(hi.nextUp) == f(hi))
    }

    @Test func modelScaleOfSigma() {
        let t = ParametricModels.scaleOfSigma
        #expect(t.values.first == Int32(ParametricModels.roundedScale(1e-3)))
        #expect(t.values.count == t.bounds.count + 1 && t.bounds.count > 60)
        Self.check(t, ParametricModels.roundedScale, lo: 1e-3, hi: 256, samples: 20_000)
    }

    @Test(arguments: [Float(0.5), 0.3, -0.4])
    func tokenCodeOfNormRatio(beta: Float) {
        let t = QuantizedRANSCodec.tokenCodeTable(beta: beta)
        #expect(t.values.count == 15)
        Self.check(t, { QuantizedRANSCodec.tokenCode(ratio: $0, beta: beta) },
                   lo: .leastNonzeroMagnitude, hi: .greatestFiniteMagnitude, samples: 20_000)
        #expect(t(.infinity) == (beta > 0 ? 6 : -8))
    }

    @Test func noTokenCodesWithoutBeta() {
        let t = QuantizedRANSCodec.tokenCodeTable(beta: 0)
        #expect(t.bounds.isEmpty && [Float(1e-30), 0.5, 1, 7, 1e30].allSatisfy { t($0) == 0 })
    }
}

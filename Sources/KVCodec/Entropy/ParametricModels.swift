/// The fixed family of symbol distributions the lossy codec codes with. A chunk never ships a
/// histogram: each (layer, K/V, channel) stores one byte, the index of the model in this family that
/// codes its symbols best, and the tables follow from that index.
///
/// A model is a discretised zero-mean distribution over quantisation indices q ∈ [-R, R] plus one
/// escape symbol for |q| > R. Shapes: Gaussian, a 3:1 Gaussian/Laplace mixture and Laplace (measured
/// per-channel kurtosis of real K and V is 2.8–4.4, between the two). Scales: σ = 2^((k - 16) / 4)
/// quantisation steps, k = 0..<`scaleCount` (a quarter-octave grid costs < 0.5% against the exact σ).
///
/// The tables are built once per process with IEEE-754 +, -, *, / and a series exp (no libm), then
/// normalised with integer arithmetic, so every machine derives the same integers: this is part of
/// the bitstream definition (schemas/codec-bitstream.md).
public enum ParametricModels {
    public static let shapeCount = 3
    public static let scaleCount = 48
    public static let classCount = shapeCount * scaleCount
    public static let maxRadius = 126

    public struct Tables: Sendable {
        /// classCount * 4096: slot → symbol.
        public let slotToSymbol: [UInt8]
        /// classCount * 256: freq | cum << 16.
        public let freqCum: [UInt32]
        /// Radius R of each class: symbol s stands for q = s - R; symbol 2R+1 is the escape.
        public let radius: [Int32]
        /// classCount * 256: code length in bits of each symbol (for the encoder's model choice).
        public let cost: [Float]
    }

    public static let tables: Tables = build()
    /// XXH64 of `tables.freqCum`: pins the derivation (checked by the tests).
    public static let tablesFingerprint: UInt64 = 0x288a_3b69_b1c6_43a6

    @inline(__always) public static func classIndex(shape: Int, scale: Int) -> Int { shape * scaleCount + scale }

    /// exp(x) with IEEE basic operations only: x = n ln2 + r, |r| ≤ ln2/2, Taylor series of degree 16.
    static func detExp(_ x: Double) -> Double {
        if x < -700 { return 0 }
        let ln2 = 0.6931471805599453
        let n = (x / ln2).rounded(.toNearestOrEven)
        let r = x - n * ln2
        var term = 1.0, sum = 1.0
        for i in 1...16 {
            term = term * r / Double(i)
            sum += term
        }
        return Double(sign: .plus, exponent: Int(n), significand: sum)
    }

    public static func sigma(scale k: Int) -> Double { detExp(Double(k - 16) / 4 * 0.6931471805599453) }

    public static func radius(scale k: Int) -> Int {
        // Laplace tail P(|q| > R) = exp(-R √2 / σ) < 2^-14 needs R ≳ 6.9 σ.
        min(maxRadius, Int((7 * sigma(scale: k)).rounded(.up)) + 1)
    }

    static func weights(shape: Int, scale k: Int) -> [Double] {
        let s = sigma(scale: k)
        let r = radius(scale: k)
        var w = [Double](repeating: 0, count: 2 * r + 2)
        var tail = 0.0
        // Integrate each density over [q - 1/2, q + 1/2] with a 4-point midpoint rule: the narrow
        // models (σ < 1 step) would otherwise be badly approximated by the density at q.
        func density(_ v: Double) -> Double {
            let g = detExp(-0.5 * (v / s) * (v / s))
            // Laplace of the same variance, in units where the Gaussian's peak is 1: its peak is √π.
            let l = detExp(-(v < 0 ? -v : v) * 1.4142135623730951 / s) * 1.7724538509055159
            switch shape {
            case 0: return g
            case 1: return 0.75 * g + 0.25 * l
            default: return l
            }
        }
        for q in -(r + 40)...(r + 40) {
            var p = 0.0
            for j in 0..<4 { p += density(Double(q) + (Double(j) - 1.5) / 4) }
            if q < -r || q > r { tail += p } else { w[q + r] = p }
        }
        w[2 * r + 1] = tail
        return w
    }

    static func build() -> Tables {
        var s2s = [UInt8](repeating: 0, count: classCount * Int(RANS.total))
        var fc = [UInt32](repeating: 0, count: classCount * 256)
        var rad = [Int32](repeating: 0, count: classCount)
        var cost = [Float](repeating: 30, count: classCount * 256)
        for shape in 0..<shapeCount {
            for k in 0..<scaleCount {
                let c = classIndex(shape: shape, scale: k)
                let freqs = FrequencyTable.normalize(weights(shape: shape, scale: k))
                let t = FrequencyTable(freqs: freqs)
                rad[c] = Int32(radius(scale: k))
                for i in 0..<Int(RANS.total) { s2s[c * Int(RANS.total) + i] = t.slotToSymbol[i] }
                for s in 0..<t.count {
                    fc[c * 256 + s] = UInt32(t.freq[s]) | UInt32(t.cum[s]) << 16
                    cost[c * 256 + s] = Float(Double(RANS.precisionBits) - log2Approx(Double(t.freq[s])))
                }
            }
        }
        return Tables(slotToSymbol: s2s, freqCum: fc, radius: rad, cost: cost)
    }

    /// log2 for the encoder's cost estimates only (never affects what a decoder derives).
    static func log2Approx(_ x: Double) -> Double {
        var e = 0
        var m = x
        while m >= 2 { m /= 2; e += 1 }
        while m < 1 { m *= 2; e -= 1 }
        // log2(m) for m in [1, 2) via atanh series: ln m = 2 atanh((m-1)/(m+1))
        let y = (m - 1) / (m + 1), y2 = y * y
        var term = y, sum = 0.0
        for i in stride(from: 1, through: 31, by: 2) { sum += term / Double(i); term *= y2 }
        return Double(e) + 2 * sum / 0.6931471805599453
    }
}

/// Undoing RoPE inside a chunk. Keys are stored after RoPE: pair (2i, 2i+1) of every head is
/// rotated by pos · ω_i, ω_i = θ^(−2i/headDim). Rotating each key back by its in-chunk position t
/// leaves every token rotated by the same angle start · ω_i, so a channel's values share one
/// distribution again (tighter means and scales, fewer bits), and no absolute position is needed.
/// Rotations are orthogonal: the quantisation error keeps its size.
///
/// The decoder must rebuild the same Float tables on every machine, so sin and cos come from
/// IEEE-754 +, −, *, / only: ω_i from the deterministic exp, sin/cos(ω_i) from Taylor series
/// (|ω_i| ≤ 1), and the angle-addition recurrence for multiples, all in Double, rounded to Float once.
enum InChunkRoPE {
    /// SmolLM2's RoPE base; the codec applies the transform only to head_dim 64 (flag in the payload).
    static let theta = 100_000.0
    static let lnTheta = 11.512925464970229 // ln(100000)
    static let headDim = 64

    /// sin and cos of x for |x| ≤ 1 by Taylor series (terms below 2^-60 of the result).
    static func sinCos(_ x: Double) -> (sin: Double, cos: Double) {
        var s = 0.0, c = 0.0
        var term = 1.0 // x^n / n!
        for n in 0...24 {
            if n > 0 { term = term * x / Double(n) }
            switch n % 4 {
            case 0: c += term
            case 1: s += term
            case 2: c -= term
            default: s -= term
            }
        }
        return (s, c)
    }

    /// Lane tables for the decoder's 4-wide rotation, T rows of `headDim` Floats each:
    /// cosLanes[t][2i] = cosLanes[t][2i+1] = cos(t ω_i); sinLanes[t][2i] = −sin(t ω_i),
    /// sinLanes[t][2i+1] = +sin(t ω_i). Forward rotation of a pair (a, b):
    ///   a' = a · cos + b · (−sin),  b' = b · cos + a · sin.
    static func laneTables(tokens T: Int) -> (cos: [Float], sin: [Float]) {
        let half = headDim / 2
        var cosL = [Float](repeating: 0, count: T * headDim)
        var sinL = [Float](repeating: 0, count: T * headDim)
        for i in 0..<half {
            let w = ParametricModels.detExp(-(Double(2 * i) / Double(headDim)) * lnTheta)
            let (s1, c1) = sinCos(w)
            var c = 1.0, s = 0.0
            for t in 0..<T {
                cosL[t * headDim + 2 * i] = Float(c); cosL[t * headDim + 2 * i + 1] = Float(c)
                sinL[t * headDim + 2 * i] = -Float(s); sinL[t * headDim + 2 * i + 1] = Float(s)
                let cn = c * c1 - s * s1
                s = s * c1 + c * s1
                c = cn
            }
        }
        return (cosL, sinL)
    }

    /// Rotates every key of a group (T rows of C = heads · headDim) back by its in-chunk position.
    static func unrotate(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, T: Int, C: Int,
                         cos: [Float], sin: [Float]) {
        for t in 0..<T {
            for c in stride(from: 0, to: C, by: 2) {
                let d = t * headDim + c % headDim
                let a = x[t * C + c], b = x[t * C + c + 1]
                let co = cos[d], si = sin[d + 1]
                out[t * C + c] = a * co + b * si
                out[t * C + c + 1] = b * co - a * si
            }
        }
    }
}

/// Undoing RoPE inside a chunk. Keys are stored after RoPE: pair i of every head (channels (2i, 2i+1)
/// for the "adjacent" layout, (i, i + r/2) for "half") is rotated by pos · ω_i, ω_i = θ^(−2i/r) over
/// the r rotated dims. Rotating each key back by its in-chunk position t leaves every token rotated
/// by the same angle start · ω_i, so a channel's values share one distribution again (tighter means
/// and scales, fewer bits), and no absolute position is needed. Rotations are orthogonal: the
/// quantisation error keeps its size.
///
/// What the rotation is comes from the model's profile (θ per layer, rotated dims, pair layout) and
/// travels in the payload (schemas/codec-bitstream.md), so the decoder needs no profile. The "half"
/// layout is coded with each head's channels interleaved (i, i + r/2 → 2i, 2i+1), which makes every
/// pair adjacent for the kernels; the decoder puts them back.
///
/// The decoder must rebuild the same Float tables on every machine, so sin and cos come from
/// IEEE-754 +, −, *, / only: ln θ and ω_i from deterministic series, sin/cos(ω_i) from Taylor series
/// (|ω_i| ≤ 1), and the angle-addition recurrence for multiples, all in Double, rounded to Float once.
struct InChunkRoPE: Equatable, Sendable {
    enum Pairs: UInt8, Sendable { case adjacent = 0, half = 1 }

    var headDim: Int
    var rotaryDim: Int
    var pairs: Pairs
    /// The distinct bases, and per layer the index of its base.
    var thetas: [Double]
    var layerTheta: [UInt8]

    /// The rotation payload flag 1 names (format versions 3-5 before the descriptor existed): fixed
    /// by the bitstream, not by any model, so chunks written with it keep decoding.
    static func flagOne(layers: Int) -> InChunkRoPE {
        InChunkRoPE(headDim: 64, rotaryDim: 64, pairs: .adjacent, thetas: [100_000], layerTheta: [UInt8](repeating: 0, count: layers))
    }

    /// Channels a head must hold for the SIMD kernels (8 lanes per block stay in one head).
    static let headDimMultiple = 8

    /// Why a rotation cannot be used on a shape (nil: it can).
    static func problem(headDim: Int, rotaryDim: Int, thetas: [Double]) -> String? {
        if headDim % headDimMultiple != 0 { return "head_dim \(headDim) is not a multiple of \(headDimMultiple)" }
        if rotaryDim < 2 || rotaryDim % 2 != 0 || rotaryDim > headDim { return "rotary dims \(rotaryDim) for head_dim \(headDim)" }
        if thetas.isEmpty || thetas.count > 255 { return "\(thetas.count) RoPE bases" }
        if let bad = thetas.first(where: { !($0.isFinite && $0 > 1 && $0 < 1e30) }) { return "RoPE base \(bad)" }
        return nil
    }

    // MARK: payload descriptor

    /// u8 pairs, u8 0, u16 rotary dims, u8 base count n, n × f64 bases, layers × u8 base index.
    func write(into w: inout ByteWriter) {
        w.append(pairs.rawValue)
        w.append(UInt8(0))
        w.append(UInt16(rotaryDim))
        w.append(UInt8(thetas.count))
        for t in thetas { w.append(t.bitPattern) }
        w.append(layerTheta)
    }

    static func read(_ r: inout ByteReader, headDim: Int, layers: Int) throws -> InChunkRoPE {
        guard r.remaining >= 5 else { throw CodecError.truncated("RoPE descriptor") }
        let p: UInt8 = r.read()
        let reserved: UInt8 = r.read()
        guard let pairs = Pairs(rawValue: p), reserved == 0 else { throw CodecError.corrupt("RoPE pair layout \(p)") }
        let dim = Int(r.read() as UInt16)
        let n = Int(r.read() as UInt8)
        guard r.remaining >= 8 * n + layers else { throw CodecError.truncated("RoPE descriptor") }
        let thetas = (0..<n).map { _ in Double(bitPattern: r.read() as UInt64) }
        let index = (0..<layers).map { _ in r.read() as UInt8 }
        if let why = problem(headDim: headDim, rotaryDim: dim, thetas: thetas) { throw CodecError.corrupt("RoPE descriptor: \(why)") }
        guard index.allSatisfy({ Int($0) < n }) else { throw CodecError.corrupt("RoPE descriptor: base index out of range") }
        return InChunkRoPE(headDim: headDim, rotaryDim: dim, pairs: pairs, thetas: thetas, layerTheta: index)
    }

    // MARK: tables

    /// ln x for x > 0 from +, −, *, / only: x = m · 2^e with m in [1, 2), ln m = 2 atanh((m−1)/(m+1)).
    static func detLn(_ x: Double) -> Double {
        let e = Double(x.exponent)
        let m = x.significand
        let z = (m - 1) / (m + 1), z2 = z * z // z ≤ 1/3: 30 terms reach 2^-90
        var term = z, sum = 0.0
        for k in 0..<30 {
            sum += term / Double(2 * k + 1)
            term *= z2
        }
        return e * 0.6931471805599453 + 2 * sum
    }

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

    /// Lane tables of base `theta` for the 4-wide rotation, T rows of `headDim` Floats each, in the
    /// coded (adjacent) channel order: cos[t][2i] = cos[t][2i+1] = cos(t ω_i); sin[t][2i] = −sin(t ω_i),
    /// sin[t][2i+1] = +sin(t ω_i); lanes past the rotated dims are 1 and 0. Forward rotation of (a, b):
    ///   a' = a · cos + b · (−sin),  b' = b · cos + a · sin.
    func laneTables(theta: Double, tokens T: Int) -> (cos: [Float], sin: [Float]) {
        var cosL = [Float](repeating: 1, count: T * headDim)
        var sinL = [Float](repeating: 0, count: T * headDim)
        let lnTheta = Self.detLn(theta)
        for i in 0..<(rotaryDim / 2) {
            let w = ParametricModels.detExp(-(Double(2 * i) / Double(rotaryDim)) * lnTheta)
            let (s1, c1) = Self.sinCos(w)
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

    /// Tables for every distinct base, in `thetas` order.
    func tables(tokens T: Int) -> [(cos: [Float], sin: [Float])] {
        thetas.map { laneTables(theta: $0, tokens: T) }
    }

    // MARK: channel order

    /// Coded channel k of a head holds stored channel `source[k]` (identity for "adjacent").
    var source: [Int] {
        guard pairs == .half else { return Array(0..<headDim) }
        let h = rotaryDim / 2
        return (0..<headDim).map { k in k >= rotaryDim ? k : (k % 2 == 0 ? k / 2 : h + k / 2) }
    }

    /// Rows of T × C (C = heads · headDim) from stored to coded order.
    func toCoded(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, T: Int, C: Int) {
        let src = source
        for row in stride(from: 0, to: T * C, by: headDim) {
            for k in 0..<headDim { out[row + k] = x[row + src[k]] }
        }
    }

    /// Rows of T × C from coded to stored order, in place (`row`: headDim elements of scratch).
    func toStored<E>(_ x: UnsafeMutablePointer<E>, T: Int, C: Int, row: UnsafeMutablePointer<E>) {
        guard pairs == .half else { return }
        let src = source
        for base in stride(from: 0, to: T * C, by: headDim) {
            for k in 0..<headDim { row[src[k]] = x[base + k] }
            (x + base).update(from: row, count: headDim)
        }
    }

    /// Rotates every key of a group (T rows of C = heads · headDim, coded order) back by its
    /// in-chunk position, with the lane tables of the layer's base.
    func unrotate(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, T: Int, C: Int,
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

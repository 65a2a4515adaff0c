import KVTensor

/// Float16 <-> Float conversions for the codec's hot loops. Both are exact IEEE conversions
/// (round to nearest even), so they give the same bits as `HalfConversion` on every machine.
enum FastHalf {
    /// All 65536 half values widened to Float (256 KB, built once).
    static let toFloatTable: [Float] = (0..<65536).map { HalfConversion.floatFromHalfBits(UInt16($0)) }

    /// Float → half bits, round to nearest even (F. Giesen's float_to_half_fast3_rtne).
    /// NaN becomes the quiet NaN 0x7E00 with the input's sign.
    @inline(__always)
    static func halfBits(_ f: Float) -> UInt16 {
        var u = f.bitPattern
        let sign = u & 0x8000_0000
        u ^= sign
        let o: UInt32
        if u >= 0x4780_0000 { // ≥ 65536: overflow to inf (or NaN)
            o = u > 0x7F80_0000 ? 0x7E00 : 0x7C00
        } else if u < 0x3880_0000 { // below the smallest normal half: let the FPU round
            let magic = Float(bitPattern: 0x3F00_0000) // 0.5: 2^-1, aligns the half subnormal ulp
            let v = Float(bitPattern: u) + magic
            o = v.bitPattern &- magic.bitPattern
        } else {
            let mantOdd = (u >> 13) & 1
            var v = u &+ 0xC800_0FFF // rebias exponent (15 - 127) << 23 and add the rounding bias
            v = v &+ mantOdd
            o = v >> 13
        }
        return UInt16(truncatingIfNeeded: o | (sign >> 16))
    }

    /// `halfBits` on 4 lanes without branches (both paths computed, then selected).
    @inline(__always)
    static func halfBits4(_ f: SIMD4<Float>) -> SIMD4<UInt32> {
        var u = unsafeBitCast(f, to: SIMD4<UInt32>.self)
        let sign = u & 0x8000_0000
        u ^= sign
        let ui = unsafeBitCast(u, to: SIMD4<Int32>.self) // sign cleared: signed compares are exact
        let mantOdd = (u &>> 13) & 1
        var o = (u &+ 0xC800_0FFF &+ mantOdd) &>> 13
        let sub = unsafeBitCast(unsafeBitCast(u, to: SIMD4<Float>.self) + SIMD4<Float>(repeating: 0.5), to: SIMD4<UInt32>.self) &- 0x3F00_0000
        o.replace(with: sub, where: ui .< 0x3880_0000)
        o.replace(with: SIMD4(repeating: 0x7C00), where: ui .>= 0x4780_0000)
        o.replace(with: SIMD4(repeating: 0x7E00), where: ui .> 0x7F80_0000)
        return o | (sign &>> 16)
    }
}

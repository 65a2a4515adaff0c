/// A monotone integer function of a Float, tabulated by where its value changes. The encoder's
/// rounded logarithms (a channel's model scale, a token's step code) are looked up here instead of
/// running the log2 series per value: the bounds are found by bisection on the function itself,
/// so every input gets exactly the integer the function gives.
struct StepTable: Sendable {
    /// `values[i]` holds on [bounds[i - 1], bounds[i]); values[0] below bounds[0] (and for NaN).
    let bounds: [Float]
    let values: [Int32]

    /// `f` must be monotone (either way) on [lo, hi], 0 < lo < hi; inputs below lo get f(lo),
    /// above hi f(hi).
    init(from lo: Float, to hi: Float, _ f: (Float) -> Int) {
        precondition(lo > 0 && lo < hi && hi.isFinite)
        var bounds: [Float] = [], values = [Int32(f(lo))]
        // Positive floats order like their bit patterns: bisect on those.
        var start = lo.bitPattern
        let end = hi.bitPattern, last = f(hi)
        while Int(values.last!) != last {
            let v = Int(values.last!)
            var a = start, b = end // f(a) == v, f(b) != v
            while b - a > 1 {
                let m = a + (b - a) / 2
                if f(Float(bitPattern: m)) == v { a = m } else { b = m }
            }
            bounds.append(Float(bitPattern: b))
            values.append(Int32(f(Float(bitPattern: b))))
            start = b
        }
        self.bounds = bounds
        self.values = values
    }

    func callAsFunction(_ x: Float) -> Int {
        // The number of bounds ≤ x.
        var lo = 0, hi = bounds.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if bounds[mid] <= x { lo = mid + 1 } else { hi = mid }
        }
        return Int(values[lo])
    }
}

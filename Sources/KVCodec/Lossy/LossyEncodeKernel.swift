import CLossyKernels
import KVTensor

/// The encoder's kernels, by instruction set. Each writes the same bytes (tests compare them all);
/// `.portable` is the Swift code and runs anywhere.
enum EncoderISA: Int, Comparable, CaseIterable, Sendable {
    case portable, avx2, avx512
    static let best: EncoderISA = clossy_has_avx512() != 0 ? .avx512 : clossy_has_avx2() != 0 ? .avx2 : .portable
    /// The ones this CPU runs.
    static var available: [EncoderISA] { allCases.filter { $0 <= best } }
    var simd: Bool { self != .portable }
    static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
}

/// The lossy encoder's per-group work, flat: row-major Float statistics, quantisation with
/// magic-number rounding, a per-channel |q| histogram, a model choice among a few candidates near
/// the channel's measured scale, and division-free rANS.
enum LossyEncodeKernel {
    /// |q| histogram bins per channel; the last bin collects |q| ≥ histBins − 1.
    static let histBins = 128
    /// Quantisation indices are clamped to ±2^22 (the magic-number rounding is exact below 2^23;
    /// the decoder accepts escapes up to 2^24).
    static let maxIndex: Float = 4_194_304

    /// Scratch for one group, reused across groups.
    struct Workspace {
        let T: Int, C: Int
        var q: UnsafeMutablePointer<Int32>       // T * C, row-major
        var hist: UnsafeMutablePointer<UInt32>   // C * histBins
        var meanBits: UnsafeMutablePointer<UInt16>
        var means: UnsafeMutablePointer<Float>   // f16-rounded means
        var classes: UnsafeMutablePointer<Int>
        var rowScale: UnsafeMutablePointer<Float> // 2^(token code / 2) per row
        var colScale: UnsafeMutablePointer<Float> // 2^(channel code / 2) per channel
        var acc: UnsafeMutablePointer<Float>     // C accumulators
        var qCM: UnsafeMutablePointer<Int32>     // T * C, channel-major (the SIMD path's q)
        var rowInv: UnsafeMutablePointer<Float>  // 1 / (step · rowScale[t])
        var escFlags: UnsafeMutablePointer<UInt8> // C

        init(T: Int, C: Int) {
            self.T = T
            self.C = C
            q = .allocate(capacity: max(1, T * C))
            hist = .allocate(capacity: C * LossyEncodeKernel.histBins)
            meanBits = .allocate(capacity: C)
            means = .allocate(capacity: C)
            classes = .allocate(capacity: C)
            rowScale = .allocate(capacity: max(1, T))
            colScale = .allocate(capacity: C)
            colScale.initialize(repeating: 1, count: C)
            acc = .allocate(capacity: C)
            qCM = .allocate(capacity: max(1, T * C))
            rowInv = .allocate(capacity: max(1, T))
            escFlags = .allocate(capacity: max(1, C))
        }

        func deallocate() {
            q.deallocate(); hist.deallocate(); meanBits.deallocate(); means.deallocate()
            classes.deallocate(); rowScale.deallocate(); colScale.deallocate(); acc.deallocate()
            qCM.deallocate(); rowInv.deallocate(); escFlags.deallocate()
        }
    }

    /// The tensor as Float (f16 through the lookup table; the SIMD encoder converts each group
    /// with F16C instead, the same exact values); throws `nonFinite` on NaN or infinity.
    static func floats(of tensor: KVTensor) throws -> [Float] {
        guard tensor.dtype == .f16 else {
            let v = tensor.floats()
            for x in v where !x.isFinite { throw CodecError.nonFinite }
            return v
        }
        let n = tensor.elementCount
        var bad = false
        let out = [Float](unsafeUninitializedCapacity: n) { buf, count in
            tensor.bytes.withUnsafeBytes { raw in
                FastHalf.toFloatTable.withUnsafeBufferPointer { table in
                    var allExp: UInt16 = 0x7C00
                    for i in 0..<n {
                        let h = UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: 2 &* i, as: UInt16.self))
                        // A non-finite half has all exponent bits set.
                        if h & 0x7C00 == 0x7C00 { allExp = 0 }
                        buf[i] = table[Int(h)]
                    }
                    bad = allExp == 0
                }
            }
            count = n
        }
        if bad { throw CodecError.nonFinite }
        return out
    }

    /// Mean grid as a fraction of the step (a power of two, so step · meanGrid is exact).
    static let meanGrid: Float = 0.125

    /// Puts each channel mean on a grid of its step/8: mean = k · step · colScale/8 with k an i16 (stored in
    /// `meanBits`). k takes far fewer bits than an f16 mean; a grid as coarse as the step itself
    /// would shift the symbols off centre by up to half a step, which the symmetric models pay for
    /// at the large steps of level 4 (measured: −5% there, +1% at level 1).
    /// Returns false, and rounds the means to f16 instead, when some mean is more than 32767 grid
    /// points from 0 (e.g. a constant channel, whose step is the 1e-12 floor).
    static func snapMeans(step: Float, _ w: inout Workspace) -> Bool {
        @inline(__always) func grid(_ c: Int) -> Float { step * w.colScale[c] * meanGrid }
        var fits = true
        for c in 0..<w.C where !(abs(w.means[c] / grid(c)) <= 32767) { fits = false }
        for c in 0..<w.C {
            if fits {
                let ki = Int16((w.means[c] / grid(c)).rounded(.toNearestOrEven))
                w.meanBits[c] = UInt16(bitPattern: ki)
                w.means[c] = Float(ki) * grid(c)
            } else {
                let mh = FastHalf.halfBits(w.means[c])
                w.meanBits[c] = mh
                w.means[c] = FastHalf.toFloatTable[Int(mh)]
            }
        }
        return fits
    }

    /// Channel means (exact, stored in the workspace) and the group's RMS channel
    /// standard deviation (around the exact means; nil with `rms: false`). Row-major passes in Float.
    static func channelStats(_ x: UnsafePointer<Float>, _ w: inout Workspace, rms: Bool = true, simd: Bool = false) -> Float? {
        let T = w.T, C = w.C
        guard T > 0 else {
            for c in 0..<C { w.means[c] = 0 }
            return 0
        }
        let acc = w.acc
        columnSums(x, w, center: nil, simd: simd)
        let invT = 1 / Float(T)
        let exact = UnsafeMutablePointer<Float>.allocate(capacity: C)
        defer { exact.deallocate() }
        for c in 0..<C {
            let m = acc[c] * invT
            exact[c] = m
            w.means[c] = m // exact until `snapMeans` puts them on the step grid
        }
        guard rms else { return nil }
        columnSums(x, w, center: exact, simd: simd)
        var sumVar: Float = 0
        for c in 0..<C { sumVar += acc[c] * invT }
        return (sumVar / Float(C)).squareRoot()
    }

    /// w.acc[c] = Σ over t in order of x[t, c] (center nil) or of (x[t, c] − center[c])²; the AVX2
    /// kernel vectorises across channels only, so both paths give the same sums.
    private static func columnSums(_ x: UnsafePointer<Float>, _ w: Workspace, center: UnsafePointer<Float>?, simd: Bool) {
        let T = w.T, C = w.C, acc = w.acc
        if simd { return clossy_column_sums_avx2(x, T, C, center, acc) }
        acc.initialize(repeating: 0, count: C)
        for t in 0..<T {
            let row = x + t &* C
            if let center {
                for c in 0..<C { let d = row[c] - center[c]; acc[c] += d * d }
            } else {
                for c in 0..<C { acc[c] += row[c] }
            }
        }
    }

    /// q = round((x − mean) / (step · rowScale · colScale)), clamped; fills the |q| histograms.
    /// `simd` (AVX2) writes q channel-major to `qCM` instead of row-major to `q`.
    static func quantise(_ x: UnsafePointer<Float>, step: Float, _ w: inout Workspace, simd: Bool = false) {
        let T = w.T, C = w.C, hist = w.hist, means = w.means, qOut = w.q
        let invCol = w.acc // free scratch here
        for c in 0..<C { invCol[c] = 1 / w.colScale[c] }
        if simd {
            for t in 0..<T { w.rowInv[t] = 1 / (step * w.rowScale[t]) }
            clossy_quantise_avx2(x, T, C, means, w.rowInv, invCol, w.qCM, hist) // zeroes hist itself
            return
        }
        hist.initialize(repeating: 0, count: C * histBins)
        let magic: Float = 12_582_912 // 1.5 · 2^23: adding and subtracting it rounds to nearest even
        for t in 0..<T {
            let inv = 1 / (step * w.rowScale[t])
            let row = x + t &* C
            let qRow = qOut + t &* C
            for c in 0..<C {
                let v = min(max((row[c] - means[c]) * inv * invCol[c], -maxIndex), maxIndex)
                let r = (v + magic) - magic
                let qi = Int32(r)
                qRow[c] = qi
                let a = Int(min(qi.magnitude, UInt32(histBins - 1)))
                hist[c &* histBins &+ a] &+= 1
            }
        }
    }

    /// The model class with the least estimated code length: every shape at the quarter-octave
    /// scale nearest the channel's RMS index and its two neighbours, costed on the |q| histogram.
    static func bestClass(channel c: Int, _ w: Workspace) -> Int {
        let h = w.hist + c &* histBins
        var n: Float = 0, s2: Float = 0
        var nz = [(Int, Float)]()
        nz.reserveCapacity(16)
        for a in 0..<histBins where h[a] != 0 {
            let k = Float(h[a])
            let qa: Float = a == histBins - 1 ? 200 : Float(a)
            n += k
            s2 += k * qa * qa
            nz.append((a, k))
        }
        let sigma = n > 0 ? max(1e-3, (s2 / n).squareRoot()) : 1e-3
        let k0 = ParametricModels.scaleOfSigma(sigma) + 16
        let costs = ParametricModels.absCost
        var best = 0
        var bestCost = Float.infinity
        for shape in 0..<ParametricModels.shapeCount {
            for k in max(0, k0 - 2)...min(ParametricModels.scaleCount - 1, max(0, k0 + 2)) {
                let cls = ParametricModels.classIndex(shape: shape, scale: k)
                var cost: Float = 0
                for (a, cnt) in nz { cost += cnt * costs[cls &* histBins &+ a] }
                if cost < bestCost { bestCost = cost; best = cls }
            }
        }
        return best
    }

    /// `bestClass` for every channel in C (the AVX2 kernel sums 8 candidates' costs at once, each in
    /// the same order, and computes the same log2): the same classes.
    static func bestClassesSIMD(_ w: inout Workspace) {
        let scale = ParametricModels.scaleOfSigma
        ParametricModels.absCostT.withUnsafeBufferPointer { ct in
            scale.bounds.withUnsafeBufferPointer { sb in
                scale.values.withUnsafeBufferPointer { sv in
                    clossy_best_classes_avx2(w.hist, w.C, histBins, ct.baseAddress!, ParametricModels.absCostTStride,
                                             ParametricModels.shapeCount, ParametricModels.scaleCount,
                                             sb.baseAddress!, sv.baseAddress!, sb.count, w.classes)
                }
            }
        }
    }

    /// rANS-codes the group (channels in `order`, tokens in order; pushed in reverse) and returns
    /// its escape stream in decoding order. The SIMD kernels prefetch `ahead` (the next group's input)
    /// meanwhile.
    static func code(order: [Int], _ w: inout Workspace, encoder: inout RANSEncoder, isa: EncoderISA = .portable,
                     ahead: UnsafeRawBufferPointer? = nil) -> [UInt8] {
        if isa.simd { return codeSIMD(order: order, &w, encoder: &encoder, avx512: isa == .avx512, ahead: ahead) }
        let T = w.T, C = w.C, q = w.q
        var escaped: [Int32] = [] // in reverse decoding order
        let radius = ParametricModels.tables.radius
        ParametricModels.encodeSymbols.withUnsafeBufferPointer { symbols in
            // Token t uses state t mod ways (a power of two).
            let xs = encoder.states, mask = encoder.ways - 1
            var pos = encoder.pos
            let buf = encoder.buffer
            for k in stride(from: C - 1, through: 0, by: -1) {
                let c = order[k]
                let cls = w.classes[c]
                let rad = radius[cls]
                let tab = symbols.baseAddress! + (cls &* 256 &+ Int(rad))
                var t = T - 1
                while t >= 0 {
                    let qi = q[t &* C &+ c]
                    let s: RANSEncSymbol
                    if qi > rad || qi < -rad { escaped.append(qi); s = tab[Int(rad) &+ 1] } else { s = tab[Int(qi)] }
                    RANSEncoder.put(&xs[t & mask], s, buffer: buf, pos: &pos)
                    t &-= 1
                }
            }
            encoder.pos = pos
        }
        var esc: [UInt8] = []
        for v in escaped.reversed() { QuantizedRANSCodec.appendVarint(QuantizedRANSCodec.zigzag(v), to: &esc) }
        return esc
    }

    /// `code` for 32 states with the AVX2 or AVX-512 kernel, from the channel-major `qCM`: the same bytes.
    static func codeSIMD(order: [Int], _ w: inout Workspace, encoder: inout RANSEncoder, avx512: Bool,
                         ahead: UnsafeRawBufferPointer? = nil) -> [UInt8] {
        precondition(encoder.ways == 32)
        let T = w.T, C = w.C
        guard T > 0, C > 0 else { return [] }
        let radius = ParametricModels.tables.radius
        radius.withUnsafeBufferPointer { rad in
            ParametricModels.encodeSIMD.withUnsafeBufferPointer { sym in
                order.withUnsafeBufferPointer { ord in
                    let kernel = avx512 ? clossy_rans32_encode_avx512 : clossy_rans32_encode_avx2
                    encoder.pos = kernel(encoder.states, encoder.buffer, encoder.pos, w.qCM, T, C,
                                         ord.baseAddress!, w.classes, sym.baseAddress!, rad.baseAddress!, w.escFlags,
                                         ahead?.baseAddress, ahead?.count ?? 0)
                }
            }
        }
        // Escapes in decoding order: channels as decoded, tokens in order, written as varints by
        // the kernel (at most 4 bytes each: |q| <= 2^22) straight into the array.
        var flagged = 0
        for k in 0..<C where w.escFlags[k] != 0 { flagged &+= 1 }
        guard flagged > 0 else { return [] }
        return [UInt8](unsafeUninitializedCapacity: flagged * T * 4) { buf, count in
            var n = 0
            for k in 0..<C where w.escFlags[k] != 0 {
                let c = order[k]
                n += clossy_escape_varints_avx2(w.qCM + c &* T, T, radius[w.classes[c]], buf.baseAddress! + n)
            }
            count = n
        }
    }
}

extension ParametricModels {
    /// round(4 · log2 σ) for a channel's RMS index σ ∈ [1e-3, 200] (the model-choice histogram
    /// counts |q| ≥ 127 as 200), as a table.
    static let scaleOfSigma = StepTable(from: 1e-3, to: 256, roundedScale)
    static func roundedScale(_ sigma: Float) -> Int { Int((4 * Float(log2Approx(Double(sigma)))).rounded()) }

    /// `absCost` transposed to [bin][class], rows padded so 8 classes load from any scale.
    static let absCostTStride = classCount + 8
    static let absCostT: [Float] = {
        precondition(shapeCount <= 4)
        let bins = LossyEncodeKernel.histBins
        var out = [Float](repeating: 0, count: bins * absCostTStride)
        for cls in 0..<classCount { for a in 0..<bins { out[a * absCostTStride + cls] = absCost[cls * bins + a] } }
        return out
    }()

    /// `encodeSymbols` packed for the AVX2 encoder: freq | cum << 12 | shift << 24 | rlo << 32, where
    /// the reciprocal is 2^32 + rlo (see `RANSEncSymbol`).
    static let encodeSIMD: [UInt64] = encodeSymbols.map { s in
        precondition(s.rcp >> 32 == 1 && s.bias < 4096 && s.shift < 16)
        let info = (RANS.total - s.cmplFreq) | s.bias << 12 | s.shift << 24
        return UInt64(info) | (s.rcp & 0xFFFF_FFFF) << 32
    }

    /// classCount * 256 encode symbols (index: class * 256 + symbol).
    static let encodeSymbols: [RANSEncSymbol] = {
        let t = tables
        var out = [RANSEncSymbol](repeating: RANSEncSymbol(freq: 1, cum: 0), count: classCount * 256)
        for cls in 0..<classCount {
            for s in 0...(2 * Int(t.radius[cls]) + 1) {
                let e = t.freqCum[cls * 256 + s]
                out[cls * 256 + s] = RANSEncSymbol(freq: e & 0xFFFF, cum: e >> 16)
            }
        }
        return out
    }()

    /// classCount * 128: estimated bits to code |q| = a with a class (mean of ±a; escapes cost
    /// the escape symbol plus a varint estimate).
    static let absCost: [Float] = {
        let t = tables
        let bins = LossyEncodeKernel.histBins
        var out = [Float](repeating: 0, count: classCount * bins)
        for cls in 0..<classCount {
            let rad = Int(t.radius[cls])
            let esc = t.cost[cls * 256 + 2 * rad + 1]
            for a in 0..<bins {
                if a <= rad {
                    out[cls * bins + a] = (t.cost[cls * 256 + rad + a] + t.cost[cls * 256 + rad - a]) / 2
                } else {
                    out[cls * bins + a] = esc + (a >= bins - 1 ? 16 : 8)
                }
            }
        }
        return out
    }()
}

/// The lossy decoder's hot loop for format versions 3 and 4 (version 5: `LossyDecodeKernel32`):
/// one group (T token rows x C channels) of 4-way interleaved rANS,
/// dequantised and written straight to the output. Flat on purpose: raw pointers, no closures or
/// generics, one table load per symbol and branch-free renormalisation.
enum LossyDecodeKernel {
    /// Per class, 4096 slots → freq | (slot − cum) << 12 | (q + 128) << 24, where q is the
    /// quantisation index the slot decodes to and q + 128 = 0 marks the escape symbol
    /// (|q| ≤ 126 < 128, so no real symbol maps to 0). Derived from `ParametricModels.tables`
    /// (2.3 MB, built once). Every class has ≥ 4 symbols, so freq ≤ 4093 fits 12 bits.
    static let entries: [UInt32] = {
        let t = ParametricModels.tables
        let n = Int(RANS.total)
        var e = [UInt32](repeating: 0, count: ParametricModels.classCount * n)
        for cls in 0..<ParametricModels.classCount {
            let rad = Int(t.radius[cls])
            for slot in 0..<n {
                let sym = Int(t.slotToSymbol[cls * n + slot])
                let fc = t.freqCum[cls * 256 + sym]
                let freq = fc & 0xFFFF, cum = fc >> 16
                let qByte: UInt32 = sym == 2 * rad + 1 ? 0 : UInt32(sym - rad + 128)
                e[cls * n + slot] = freq | (UInt32(slot) - cum) << 12 | qByte << 24
            }
        }
        return e
    }()

    /// Decoder state carried from group to group.
    struct State {
        var x0: UInt32, x1: UInt32, x2: UInt32, x3: UInt32
        /// Words consumed; may pass `wordCount` on a damaged stream (reads are clamped), which the
        /// caller reports after the last group.
        var pos = 0
        var escPos = 0
        var badEscape = false
    }

    /// Everything one group needs. Channels are decoded in `order` (by model class, so a class's
    /// table stays in L1 across its channels), each channel's T tokens in a row; `classOffset[c]`
    /// = model class of channel c << 12, `rowStep[t]` = the step of token row t.
    struct Group {
        var T: Int, C: Int
        var order: UnsafePointer<Int>
        var classOffset: UnsafePointer<Int>
        var means: UnsafePointer<Float>
        var rowStep: UnsafePointer<Float>
        /// Per-channel step multiplier (key channels by query energy; 1 for values).
        var colScale: UnsafePointer<Float>
        /// T * C indices of scratch.
        var scratch: UnsafeMutablePointer<Int32>
        /// Keys rotated back by in-chunk position (`InChunkRoPE`): T rows of `ropeHeadDim` lane factors
        /// each; nil for values and chunks without the transform.
        var ropeCos: UnsafePointer<Float>?
        var ropeSin: UnsafePointer<Float>?
        var ropeHeadDim: Int
    }

    @inline(never)
    static func decodeHalf(_ g: Group, entries: UnsafePointer<UInt32>, words: UnsafePointer<UInt16>, wordCount: Int,
                           escapes: UnsafeRawBufferPointer, state: inout State, out: UnsafeMutablePointer<UInt16>) {
        run(g, entries: entries, words: words, wordCount: wordCount, escapes: escapes, state: &state,
            half: out, float: nil)
    }

    @inline(never)
    static func decodeFloat(_ g: Group, entries: UnsafePointer<UInt32>, words: UnsafePointer<UInt16>, wordCount: Int,
                            escapes: UnsafeRawBufferPointer, state: inout State, out: UnsafeMutablePointer<Float>) {
        run(g, entries: entries, words: words, wordCount: wordCount, escapes: escapes, state: &state,
            half: nil, float: out)
    }

    @inline(__always)
    static func run(_ g: Group, entries: UnsafePointer<UInt32>, words: UnsafePointer<UInt16>, wordCount: Int,
                    escapes: UnsafeRawBufferPointer, state: inout State,
                    half: UnsafeMutablePointer<UInt16>?, float: UnsafeMutablePointer<Float>?) {
        var x0 = state.x0, x1 = state.x1, x2 = state.x2, x3 = state.x3
        var pos = state.pos
        // `words` holds the stream's words followed by at least T + 40 zero words: one channel reads
        // at most T words, and decoding stops after any channel that read past the stream, so every
        // read stays in the buffer without a bounds check (a damaged stream is reported by the
        // caller from `pos != wordCount`).
        guard pos <= wordCount else { return }
        let T = g.T, C = g.C
        // The group's quantisation indices, channel-major ([c][t], written sequentially by the
        // serial rANS loop); then 4x4 tiles are transposed in registers, dequantised and converted
        // 4 lanes at a time and stored to 4 output rows.
        let qs = g.scratch
        do {
            @inline(__always) func word(_ p: Int) -> UInt32 { UInt32(UInt16(littleEndian: words[p])) }
            @inline(__always) func advance(_ x: UInt32, _ e: UInt32) -> UInt32 {
                (e & 0xFFF) &* (x &>> RANS.precisionBits) &+ ((e &>> 12) & 0xFFF)
            }
            @inline(__always) func renorm(_ x: inout UInt32, _ pos: inout Int) {
                let w = word(pos)
                let need = x < RANS.lowerBound
                x = need ? (x &<< 16) | w : x
                pos &+= need ? 1 : 0
            }
            // Escapes are resolved after each channel (q = −128 marks them), so the hot loop makes
            // no calls and keeps its states in registers.
            var minQByte: UInt32 = 255
            @inline(__always) func index(_ e: UInt32, _ t: Int, _ c: Int) {
                let qb = e &>> 24
                minQByte = min(minQByte, qb)
                qs[c &* T &+ t] = Int32(bitPattern: qb) &- 128
            }
            for k in 0..<C {
                let c = g.order[k]
                let tab = entries + g.classOffset[c]
                var t = 0
                while t &+ 4 <= T {
                    let e0 = tab[Int(x0 & (RANS.total - 1))]
                    let e1 = tab[Int(x1 & (RANS.total - 1))]
                    let e2 = tab[Int(x2 & (RANS.total - 1))]
                    let e3 = tab[Int(x3 & (RANS.total - 1))]
                    x0 = advance(x0, e0); x1 = advance(x1, e1)
                    x2 = advance(x2, e2); x3 = advance(x3, e3)
                    renorm(&x0, &pos); renorm(&x1, &pos)
                    renorm(&x2, &pos); renorm(&x3, &pos)
                    index(e0, t, c); index(e1, t &+ 1, c); index(e2, t &+ 2, c); index(e3, t &+ 3, c)
                    t &+= 4
                }
                // T not a multiple of 4: the tail continues with states 0, 1, 2 (token t uses state t & 3).
                if t < T { let e = tab[Int(x0 & 4095)]; x0 = advance(x0, e); renorm(&x0, &pos); index(e, t, c); t &+= 1 }
                if t < T { let e = tab[Int(x1 & 4095)]; x1 = advance(x1, e); renorm(&x1, &pos); index(e, t, c); t &+= 1 }
                if t < T { let e = tab[Int(x2 & 4095)]; x2 = advance(x2, e); renorm(&x2, &pos); index(e, t, c); t &+= 1 }
                if pos > wordCount { break }
                if minQByte == 0 {
                    resolveEscapes(qs + c &* T, count: T, escapes: escapes, escPos: &state.escPos, bad: &state.badEscape)
                    minQByte = 255
                }
            }
            if let rc = g.ropeCos, let rs = g.ropeSin {
                dequantiseGroup(qs, T: T, C: C, means: g.means, steps: g.rowStep, colScale: g.colScale, half: half, float: float, ropeCos: rc, ropeSin: rs, ropeHeadDim: g.ropeHeadDim)
            } else {
                dequantiseGroup(qs, T: T, C: C, means: g.means, steps: g.rowStep, colScale: g.colScale, half: half, float: float, ropeCos: nil, ropeSin: nil, ropeHeadDim: 0)
            }
        }
        state.x0 = x0; state.x1 = x1; state.x2 = x2; state.x3 = x3
        state.pos = pos
    }

    @inline(never)
    static func resolveEscapes(_ q: UnsafeMutablePointer<Int32>, count: Int, escapes: UnsafeRawBufferPointer, escPos: inout Int, bad: inout Bool) {
        for t in 0..<count where q[t] == -128 {
            q[t] = QuantizedRANSCodec.readEscape(escapes, &escPos, &bad)
        }
    }

    /// `dequantiseGroup` as a call (the portable path of format version 5); one entry per output
    /// type so each specialisation inlines its stores.
    @inline(never)
    static func dequantise(_ q: UnsafeMutablePointer<Int32>, _ g: Group, half: UnsafeMutablePointer<UInt16>) {
        if let rc = g.ropeCos, let rs = g.ropeSin {
            dequantiseGroup(q, T: g.T, C: g.C, means: g.means, steps: g.rowStep, colScale: g.colScale, half: half, float: nil, ropeCos: rc, ropeSin: rs, ropeHeadDim: g.ropeHeadDim)
        } else {
            dequantiseGroup(q, T: g.T, C: g.C, means: g.means, steps: g.rowStep, colScale: g.colScale, half: half, float: nil, ropeCos: nil, ropeSin: nil, ropeHeadDim: 0)
        }
    }

    @inline(never)
    static func dequantise(_ q: UnsafeMutablePointer<Int32>, _ g: Group, float: UnsafeMutablePointer<Float>) {
        if let rc = g.ropeCos, let rs = g.ropeSin {
            dequantiseGroup(q, T: g.T, C: g.C, means: g.means, steps: g.rowStep, colScale: g.colScale, half: nil, float: float, ropeCos: rc, ropeSin: rs, ropeHeadDim: g.ropeHeadDim)
        } else {
            dequantiseGroup(q, T: g.T, C: g.C, means: g.means, steps: g.rowStep, colScale: g.colScale, half: nil, float: float, ropeCos: nil, ropeSin: nil, ropeHeadDim: 0)
        }
    }

    /// out[t * C + c] = mean[c] + (q[c * T + t] * colScale[c]) * steps[t], as fp16 bits (the same bits as
    /// `FastHalf.halfBits`) or Float; with RoPE lane tables, each pair (a, b) of a row is then
    /// rotated forward by its in-chunk position: (a · cos + b · (−sin), b · cos + a · sin).
    @inline(__always)
    static func dequantiseGroup(_ q: UnsafeMutablePointer<Int32>, T: Int, C: Int, means: UnsafePointer<Float>,
                                steps: UnsafePointer<Float>, colScale: UnsafePointer<Float>, half: UnsafeMutablePointer<UInt16>?, float: UnsafeMutablePointer<Float>?,
                                ropeCos: UnsafePointer<Float>?, ropeSin: UnsafePointer<Float>?, ropeHeadDim hd: Int) {
        @inline(__always) func store(_ v: SIMD4<Float>, _ t: Int, _ c: Int) {
            var v = v
            if let ropeCos, let ropeSin {
                let k = t &* hd &+ c % hd
                let co = UnsafeRawPointer(ropeCos + k).loadUnaligned(as: SIMD4<Float>.self)
                let si = UnsafeRawPointer(ropeSin + k).loadUnaligned(as: SIMD4<Float>.self)
                let sw = SIMD4<Float>(v[1], v[0], v[3], v[2])
                v = v * co + sw * si
            }
            let i = t &* C &+ c
            if let half {
                UnsafeMutableRawPointer(half + i).storeBytes(of: SIMD4<UInt16>(truncatingIfNeeded: FastHalf.halfBits4(v)), as: SIMD4<UInt16>.self)
            } else {
                UnsafeMutableRawPointer(float! + i).storeBytes(of: v, as: SIMD4<Float>.self)
            }
        }
        @inline(__always) func value(_ t: Int, _ c: Int) -> Float { means[c] + (Float(q[c &* T &+ t]) * colScale[c]) * steps[t] }
        @inline(__always) func one(_ t: Int, _ c: Int) {
            let v = value(t, c)
            if let half { half[t &* C &+ c] = FastHalf.halfBits(v) } else { float![t &* C &+ c] = v }
        }
        var t = 0
        while t &+ 4 <= T {
            let s0 = SIMD4<Float>(repeating: steps[t]), s1 = SIMD4<Float>(repeating: steps[t &+ 1])
            let s2 = SIMD4<Float>(repeating: steps[t &+ 2]), s3 = SIMD4<Float>(repeating: steps[t &+ 3])
            var c = 0
            while c &+ 4 <= C {
                // a = channel c, tokens t...t+3, etc.
                let ai: Int = c &* T &+ t
                let aq: SIMD4<Int32> = UnsafeRawPointer(q + ai).loadUnaligned(as: SIMD4<Int32>.self)
                let a = SIMD4<Float>(aq)
                let bi: Int = (c &+ 1) &* T &+ t
                let bq: SIMD4<Int32> = UnsafeRawPointer(q + bi).loadUnaligned(as: SIMD4<Int32>.self)
                let b = SIMD4<Float>(bq)
                let di: Int = (c &+ 2) &* T &+ t
                let dq: SIMD4<Int32> = UnsafeRawPointer(q + di).loadUnaligned(as: SIMD4<Int32>.self)
                let d = SIMD4<Float>(dq)
                let ei: Int = (c &+ 3) &* T &+ t
                let eq: SIMD4<Int32> = UnsafeRawPointer(q + ei).loadUnaligned(as: SIMD4<Int32>.self)
                let e = SIMD4<Float>(eq)
                let m = UnsafeRawPointer(means + c).loadUnaligned(as: SIMD4<Float>.self)
                let cs = UnsafeRawPointer(colScale + c).loadUnaligned(as: SIMD4<Float>.self)
                let v0: SIMD4<Float> = SIMD4(a[0], b[0], d[0], e[0])
                store(m + (v0 * cs) * s0, t, c)
                let v1: SIMD4<Float> = SIMD4(a[1], b[1], d[1], e[1])
                store(m + (v1 * cs) * s1, t &+ 1, c)
                let v2: SIMD4<Float> = SIMD4(a[2], b[2], d[2], e[2])
                store(m + (v2 * cs) * s2, t &+ 2, c)
                let v3: SIMD4<Float> = SIMD4(a[3], b[3], d[3], e[3])
                store(m + (v3 * cs) * s3, t &+ 3, c)
                c &+= 4
            }
            while c < C {
                one(t, c); one(t &+ 1, c); one(t &+ 2, c); one(t &+ 3, c)
                c &+= 1
            }
            t &+= 4
        }
        while t < T {
            if ropeCos != nil {
                // Rotation needs whole pairs: C is a multiple of the head dim (itself a multiple of 8) here.
                var c = 0
                while c &+ 4 <= C {
                    let v = SIMD4<Float>(value(t, c), value(t, c &+ 1), value(t, c &+ 2), value(t, c &+ 3))
                    store(v, t, c)
                    c &+= 4
                }
            } else {
                for c in 0..<C { one(t, c) }
            }
            t &+= 1
        }
    }
}

import CLossyKernels

/// Format version 5's decoder: 32 interleaved rANS states (token t of a channel uses state t mod 32),
/// so 4 AVX2 vectors of 8 states decode independently; each step's renormalisation words are
/// handed to the lanes that need them, in lane order, by one mask and a shuffle table. The AVX2 +
/// F16C kernels (CLossyKernels) run when the CPU has them; otherwise a scalar C loop and
/// `LossyDecodeKernel.dequantise` decode the same stream to the same bits.
enum LossyDecodeKernel32 {
    static let ways = 32
    /// x86-64 CPUs with AVX2 and F16C (Intel Haswell and later, AMD Zen and later).
    static let cpuHasAVX2 = clossy_has_avx2() != 0

    struct State {
        /// The 32 states (caller-owned, `ways` values).
        var x: UnsafeMutablePointer<UInt32>
        /// Words consumed; may pass `wordCount` on a damaged stream (see `LossyDecodeKernel.run`).
        var pos = 0
        var escPos = 0
        var badEscape = false
    }

    /// Decodes one group into `half` or `float`. `escFlags` has room for C flags; `ropeCosT`/`ropeSinT`
    /// are the RoPE lane tables transposed to [lane][t] (the SIMD path's layout), used when `g.ropeCos` is set.
    static func decode(_ g: LossyDecodeKernel.Group, simd: Bool, entries: UnsafePointer<UInt32>,
                       words: UnsafePointer<UInt16>, wordCount: Int, escapes: UnsafeRawBufferPointer,
                       escFlags: UnsafeMutablePointer<UInt8>, ropeCosT: UnsafePointer<Float>?, ropeSinT: UnsafePointer<Float>?,
                       state: inout State, half: UnsafeMutablePointer<UInt16>?, float: UnsafeMutablePointer<Float>?) {
        // `words` is followed by at least T + 40 zero words: a channel reads at most T words past
        // a position ≤ wordCount, and the SIMD loads read 8 words ahead.
        guard state.pos <= wordCount else { return }
        let T = g.T, C = g.C
        escFlags.initialize(repeating: 0, count: C)
        if simd {
            state.pos = clossy_rans32_avx2(state.x, words, state.pos, wordCount, entries, g.order, g.classOffset, T, C, g.scratch, escFlags)
        } else {
            state.pos = clossy_rans32_scalar(state.x, words, state.pos, wordCount, entries, g.order, g.classOffset, T, C, g.scratch, escFlags)
        }
        // Escapes in decoding order: channels as decoded, tokens in order.
        for k in 0..<C where escFlags[k] != 0 {
            LossyDecodeKernel.resolveEscapes(g.scratch + g.order[k] * T, count: T, escapes: escapes,
                                             escPos: &state.escPos, bad: &state.badEscape)
        }
        if simd, let half {
            let rope = g.ropeCos != nil
            clossy_dequant_half_avx2(g.scratch, T, C, g.means, g.rowStep, g.colScale,
                                     rope ? ropeCosT : nil, rope ? ropeSinT : nil, g.ropeHeadDim, half)
        } else if let half {
            LossyDecodeKernel.dequantise(g.scratch, g, half: half)
        } else if let float {
            LossyDecodeKernel.dequantise(g.scratch, g, float: float)
        }
    }

    /// [t][lane] lane tables (`InChunkRoPE.laneTables`) as [lane][t].
    static func transposed(_ table: [Float], tokens T: Int, headDim hd: Int) -> [Float] {
        var out = [Float](repeating: 0, count: table.count)
        for t in 0..<T { for lane in 0..<hd { out[lane * T + t] = table[t * hd + lane] } }
        return out
    }
}

#include "CLossyKernels.h"

// The lossy encoder's statistics passes with AVX2, vectorised across independent sums only (channels
// for the column sums, tokens for the row norms), so every sum adds the same terms in the same
// order as the Swift `LossyEncodeKernel.channelStats` / `QuantizedRANSCodec.tokenScales` /
// `InChunkRoPE.unrotate` (compiled with -ffp-contract=off: no FMA).

float clossy_kth_smallest(float *v, ptrdiff_t n, ptrdiff_t k) {
    // Quickselect (Hoare partition); v is reordered. Values are finite.
    ptrdiff_t lo = 0, hi = n - 1;
    while (lo < hi) {
        float p = v[lo + (hi - lo) / 2];
        ptrdiff_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] < p) i++;
            while (p < v[j]) j--;
            if (i <= j) { float t = v[i]; v[i] = v[j]; v[j] = t; i++; j--; }
        }
        if (k <= j) hi = j;
        else if (k >= i) lo = i;
        else return v[k];
    }
    return v[k];
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <math.h>

#define TGT __attribute__((target("avx2")))

TGT void clossy_column_sums_avx2(const float *x, ptrdiff_t T, ptrdiff_t C, const float *center, float *acc) {
    ptrdiff_t c0 = 0;
    // 32 channels at a time: four independent add chains.
    for (; c0 + 32 <= C; c0 += 32) {
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
        if (center) {
            const __m256 m0 = _mm256_loadu_ps(center + c0), m1 = _mm256_loadu_ps(center + c0 + 8);
            const __m256 m2 = _mm256_loadu_ps(center + c0 + 16), m3 = _mm256_loadu_ps(center + c0 + 24);
            for (ptrdiff_t t = 0; t < T; t++) {
                const float *r = x + t * C + c0;
                __m256 d0 = _mm256_sub_ps(_mm256_loadu_ps(r), m0), d1 = _mm256_sub_ps(_mm256_loadu_ps(r + 8), m1);
                __m256 d2 = _mm256_sub_ps(_mm256_loadu_ps(r + 16), m2), d3 = _mm256_sub_ps(_mm256_loadu_ps(r + 24), m3);
                s0 = _mm256_add_ps(s0, _mm256_mul_ps(d0, d0)); s1 = _mm256_add_ps(s1, _mm256_mul_ps(d1, d1));
                s2 = _mm256_add_ps(s2, _mm256_mul_ps(d2, d2)); s3 = _mm256_add_ps(s3, _mm256_mul_ps(d3, d3));
            }
        } else {
            for (ptrdiff_t t = 0; t < T; t++) {
                const float *r = x + t * C + c0;
                s0 = _mm256_add_ps(s0, _mm256_loadu_ps(r)); s1 = _mm256_add_ps(s1, _mm256_loadu_ps(r + 8));
                s2 = _mm256_add_ps(s2, _mm256_loadu_ps(r + 16)); s3 = _mm256_add_ps(s3, _mm256_loadu_ps(r + 24));
            }
        }
        _mm256_storeu_ps(acc + c0, s0); _mm256_storeu_ps(acc + c0 + 8, s1);
        _mm256_storeu_ps(acc + c0 + 16, s2); _mm256_storeu_ps(acc + c0 + 24, s3);
    }
    for (; c0 + 8 <= C; c0 += 8) {
        __m256 s = _mm256_setzero_ps();
        if (center) {
            const __m256 m = _mm256_loadu_ps(center + c0);
            for (ptrdiff_t t = 0; t < T; t++) {
                __m256 d = _mm256_sub_ps(_mm256_loadu_ps(x + t * C + c0), m);
                s = _mm256_add_ps(s, _mm256_mul_ps(d, d));
            }
        } else {
            for (ptrdiff_t t = 0; t < T; t++) s = _mm256_add_ps(s, _mm256_loadu_ps(x + t * C + c0));
        }
        _mm256_storeu_ps(acc + c0, s);
    }
    for (; c0 < C; c0++) {
        float s = 0;
        for (ptrdiff_t t = 0; t < T; t++) {
            if (center) { float d = x[t * C + c0] - center[c0]; s += d * d; } else s += x[t * C + c0];
        }
        acc[c0] = s;
    }
}

#define BC_LANES 2
#define SQ(a) ((a) * (a))
#define SQ8(a) SQ(a), SQ(a + 1), SQ(a + 2), SQ(a + 3), SQ(a + 4), SQ(a + 5), SQ(a + 6), SQ(a + 7)
#define SQ64(a) SQ8(a), SQ8(a + 8), SQ8(a + 16), SQ8(a + 24), SQ8(a + 32), SQ8(a + 40), SQ8(a + 48), SQ8(a + 56)
/// a² for the histogram bins (up to 256).
static const uint32_t squares[256] = {SQ64(0), SQ64(64), SQ64(128), SQ64(192)};
#undef SQ64
#undef SQ8
#undef SQ
/// Two channels' costs of each candidate (shape s, scales k_lo[j] ... k_lo[j] + 7) into acc[j][s]:
/// Σ over bins in order of count · cost, over the non-empty 8-bin `blocks` of either channel.
/// A bin empty in a channel adds 0 · cost = +0 to its sum, which is >= +0: nothing changes, so a
/// block with most bins counted adds all 8 (no per-bin branch); a sparser one only its counted bins.
static inline __attribute__((always_inline)) TGT void pair_costs(const uint32_t *h0, const uint32_t *h1, uint32_t blocks,
                                                                 const float *cost_t, ptrdiff_t stride, ptrdiff_t scales,
                                                                 const ptrdiff_t *k_lo, ptrdiff_t ns, __m256 acc[BC_LANES][4]) {
    const __m256i zero = _mm256_setzero_si256();
    // Named accumulators (not an array indexed by the runtime shape count) stay in registers.
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00;
#define BC_ADD(acc, j, s) \
    if (ns > s) acc = _mm256_add_ps(acc, _mm256_mul_ps(k##j, _mm256_loadu_ps(row##j + s * scales)))
#define BC_BIN(i) do { \
        const __m256 k0 = _mm256_broadcast_ss(kf0 + (i)), k1 = _mm256_broadcast_ss(kf1 + (i)); \
        const float *row0 = cost_t + (a0 + (i)) * stride + k_lo[0], *row1 = cost_t + (a0 + (i)) * stride + k_lo[1]; \
        BC_ADD(a00, 0, 0); BC_ADD(a10, 1, 0); BC_ADD(a01, 0, 1); BC_ADD(a11, 1, 1); \
        BC_ADD(a02, 0, 2); BC_ADD(a12, 1, 2); BC_ADD(a03, 0, 3); BC_ADD(a13, 1, 3); \
    } while (0)
    for (uint32_t bl = blocks; bl; bl &= bl - 1) {
        ptrdiff_t a0 = 8 * __builtin_ctz(bl);
        float kf0[8], kf1[8];
        __m256i v0 = _mm256_loadu_si256((const __m256i *)(h0 + a0)), v1 = _mm256_loadu_si256((const __m256i *)(h1 + a0));
        _mm256_storeu_ps(kf0, _mm256_cvtepi32_ps(v0));
        _mm256_storeu_ps(kf1, _mm256_cvtepi32_ps(v1));
        unsigned nz = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(_mm256_or_si256(v0, v1), zero))) ^ 0xFFu;
        if (__builtin_popcount(nz) >= 5) {
            BC_BIN(0); BC_BIN(1); BC_BIN(2); BC_BIN(3); BC_BIN(4); BC_BIN(5); BC_BIN(6); BC_BIN(7);
        } else {
            for (; nz; nz &= nz - 1) BC_BIN(__builtin_ctz(nz));
        }
    }
#undef BC_BIN
#undef BC_ADD
    acc[0][0] = a00; acc[0][1] = a01; acc[0][2] = a02; acc[0][3] = a03;
    acc[1][0] = a10; acc[1][1] = a11; acc[1][2] = a12; acc[1][3] = a13;
}

/// Two channels at a time in lockstep, so six independent add chains hide the add latency. The
/// costs run over every bin where either channel has counts: a bin empty in one of them
/// adds 0 · cost = +0 to a sum that is >= +0, so each channel's sum is exactly its sum over its
/// non-empty bins in order (LossyEncodeKernel.bestClass).
TGT void clossy_best_classes_avx2(const uint32_t *hist, ptrdiff_t C, ptrdiff_t bins, const float *cost_t, ptrdiff_t stride,
                                  ptrdiff_t shapes, ptrdiff_t scales, const float *scale_bounds,
                                  const int32_t *scale_values, ptrdiff_t scale_count, ptrdiff_t *classes) {
    ptrdiff_t ns = shapes < 4 ? shapes : 4;
    const __m256i zero = _mm256_setzero_si256();
    static const uint32_t none[256];
    for (ptrdiff_t c0 = 0; c0 < C; c0 += BC_LANES) {
        const uint32_t *h[BC_LANES];
        uint32_t blocks = 0;
        ptrdiff_t k_lo[BC_LANES], k_hi[BC_LANES];
        for (ptrdiff_t j = 0; j < BC_LANES; j++) {
            // A missing second channel reads as all-empty and chooses nothing.
            h[j] = c0 + j < C ? hist + (c0 + j) * bins : none;
            k_lo[j] = 0; k_hi[j] = -1;
            if (c0 + j >= C) continue;
            // n = Σ h[a] and s2 = Σ h[a]·qa² (qa = a, 200 for the last bin). Their float sums in
            // order add integers; below 2^24 every partial sum is exact, so integer sums give the
            // same floats. With n <= 2^16 (a chunk's tokens) and qa² <= 255², no 32-bit lane sum
            // overflows; the last bin is summed with (bins − 1)² and corrected to 200² in 64 bits.
            __m256i vn = zero, vs = zero;
            for (ptrdiff_t a0 = 0; a0 < bins; a0 += 8) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(h[j] + a0));
                blocks |= (uint32_t)!_mm256_testz_si256(v, v) << (a0 / 8);
                vn = _mm256_add_epi32(vn, v);
                vs = _mm256_add_epi32(vs, _mm256_mullo_epi32(v, _mm256_loadu_si256((const __m256i *)(squares + a0))));
            }
            uint32_t ln[8], ls[8];
            _mm256_storeu_si256((__m256i *)ln, vn); _mm256_storeu_si256((__m256i *)ls, vs);
            uint64_t sn = 0, ss = 0;
            for (int l = 0; l < 8; l++) { sn += ln[l]; ss += ls[l]; }
            uint64_t last = h[j][bins - 1];
            ss = ss - last * squares[bins - 1] + last * 40000;
            float n = 0, s2 = 0;
            if (sn <= 65536 && sn < (1u << 24) && ss < (1u << 24)) {
                n = (float)sn; s2 = (float)ss;
            } else {
                for (ptrdiff_t a = 0; a < bins; a++) {
                    if (h[j][a] == 0) continue;
                    float k = (float)h[j][a], qa = a == bins - 1 ? 200.0f : (float)a;
                    n += k;
                    s2 += k * qa * qa;
                }
            }
            float sigma = 1e-3f;
            if (n > 0) { float r = sqrtf(s2 / n); sigma = r >= 1e-3f ? r : 1e-3f; }
            // The number of bounds <= sigma picks its value (StepTable.callAsFunction).
            ptrdiff_t lo = 0, hi = scale_count;
            while (lo < hi) {
                ptrdiff_t mid = (lo + hi) / 2;
                if (scale_bounds[mid] <= sigma) lo = mid + 1; else hi = mid;
            }
            ptrdiff_t k0 = (ptrdiff_t)scale_values[lo] + 16;
            k_lo[j] = k0 - 2 > 0 ? k0 - 2 : 0;
            k_hi[j] = k0 + 2 > 0 ? k0 + 2 : 0;
            if (k_hi[j] > scales - 1) k_hi[j] = scales - 1;
        }
        __m256 acc[BC_LANES][4];
        // The shape count as a constant (3 in the shipped models): the accumulators stay in registers.
        if (ns == 3) pair_costs(h[0], h[1], blocks, cost_t, stride, scales, k_lo, 3, acc);
        else pair_costs(h[0], h[1], blocks, cost_t, stride, scales, k_lo, ns, acc);
        for (ptrdiff_t j = 0; j < BC_LANES && c0 + j < C; j++) {
            float out[32];
            for (ptrdiff_t s = 0; s < ns; s++) _mm256_storeu_ps(out + 8 * s, acc[j][s]);
            ptrdiff_t best = 0;
            float best_cost = INFINITY;
            for (ptrdiff_t s = 0; s < ns; s++)
                for (ptrdiff_t k = k_lo[j]; k <= k_hi[j]; k++) {
                    float cost = out[s * 8 + (k - k_lo[j])];
                    if (cost < best_cost) { best_cost = cost; best = s * scales + k; }
                }
            classes[c0 + j] = best;
        }
    }
}

static inline TGT void transpose8(__m256 r[8]) {
    __m256 a0 = _mm256_unpacklo_ps(r[0], r[1]), a1 = _mm256_unpackhi_ps(r[0], r[1]);
    __m256 a2 = _mm256_unpacklo_ps(r[2], r[3]), a3 = _mm256_unpackhi_ps(r[2], r[3]);
    __m256 a4 = _mm256_unpacklo_ps(r[4], r[5]), a5 = _mm256_unpackhi_ps(r[4], r[5]);
    __m256 a6 = _mm256_unpacklo_ps(r[6], r[7]), a7 = _mm256_unpackhi_ps(r[6], r[7]);
    __m256 b0 = _mm256_shuffle_ps(a0, a2, 0x44), b1 = _mm256_shuffle_ps(a0, a2, 0xEE);
    __m256 b2 = _mm256_shuffle_ps(a1, a3, 0x44), b3 = _mm256_shuffle_ps(a1, a3, 0xEE);
    __m256 b4 = _mm256_shuffle_ps(a4, a6, 0x44), b5 = _mm256_shuffle_ps(a4, a6, 0xEE);
    __m256 b6 = _mm256_shuffle_ps(a5, a7, 0x44), b7 = _mm256_shuffle_ps(a5, a7, 0xEE);
    r[0] = _mm256_permute2f128_ps(b0, b4, 0x20); r[1] = _mm256_permute2f128_ps(b1, b5, 0x20);
    r[2] = _mm256_permute2f128_ps(b2, b6, 0x20); r[3] = _mm256_permute2f128_ps(b3, b7, 0x20);
    r[4] = _mm256_permute2f128_ps(b0, b4, 0x31); r[5] = _mm256_permute2f128_ps(b1, b5, 0x31);
    r[6] = _mm256_permute2f128_ps(b2, b6, 0x31); r[7] = _mm256_permute2f128_ps(b3, b7, 0x31);
}

TGT void clossy_row_sumsq_avx2(const float *x, ptrdiff_t T, ptrdiff_t C, float *out) {
    ptrdiff_t t0 = 0;
    for (; t0 + 8 <= T; t0 += 8) {
        // Lane j sums token t0 + j over c in order; 8x8 blocks are transposed to channel vectors.
        __m256 s = _mm256_setzero_ps();
        ptrdiff_t c0 = 0;
        for (; c0 + 8 <= C; c0 += 8) {
            __m256 r[8];
            for (int j = 0; j < 8; j++) r[j] = _mm256_loadu_ps(x + (t0 + j) * C + c0);
            transpose8(r);
            for (int j = 0; j < 8; j++) s = _mm256_add_ps(s, _mm256_mul_ps(r[j], r[j]));
        }
        float lane[8];
        _mm256_storeu_ps(lane, s);
        for (int j = 0; j < 8; j++) {
            float v = lane[j];
            for (ptrdiff_t c = c0; c < C; c++) { float e = x[(t0 + j) * C + c]; v += e * e; }
            out[t0 + j] = v;
        }
    }
    for (; t0 < T; t0++) {
        float v = 0;
        for (ptrdiff_t c = 0; c < C; c++) { float e = x[t0 * C + c]; v += e * e; }
        out[t0] = v;
    }
}

TGT void clossy_unrotate_avx2(const float *x, float *out, ptrdiff_t T, ptrdiff_t C, ptrdiff_t hd, const float *cos_l, const float *sin_l) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (ptrdiff_t t = 0; t < T; t++) {
        for (ptrdiff_t c0 = 0; c0 < C; c0 += 8) {
            ptrdiff_t d = t * hd + c0 % hd;
            // (a, b) -> (a·cos + b·sin, b·cos + a·(−sin)) with sin = −sin_l[even] = sin_l[odd].
            __m256 v = _mm256_loadu_ps(x + t * C + c0);
            __m256 sw = _mm256_permute_ps(v, 0xB1);
            __m256 s = _mm256_xor_ps(_mm256_loadu_ps(sin_l + d), sign);
            _mm256_storeu_ps(out + t * C + c0, _mm256_add_ps(_mm256_mul_ps(v, _mm256_loadu_ps(cos_l + d)), _mm256_mul_ps(sw, s)));
        }
    }
}

#else
void clossy_column_sums_avx2(const float *x, ptrdiff_t T, ptrdiff_t C, const float *center, float *acc) {
    (void)x; (void)T; (void)C; (void)center; (void)acc;
    __builtin_trap(); // callers check clossy_has_avx2() first
}
void clossy_best_classes_avx2(const uint32_t *hist, ptrdiff_t C, ptrdiff_t bins, const float *cost_t, ptrdiff_t stride,
                              ptrdiff_t shapes, ptrdiff_t scales, const float *scale_bounds,
                              const int32_t *scale_values, ptrdiff_t scale_count, ptrdiff_t *classes) {
    (void)hist; (void)C; (void)bins; (void)cost_t; (void)stride; (void)shapes; (void)scales; (void)classes;
    (void)scale_bounds; (void)scale_values; (void)scale_count;
    __builtin_trap();
}
void clossy_row_sumsq_avx2(const float *x, ptrdiff_t T, ptrdiff_t C, float *out) {
    (void)x; (void)T; (void)C; (void)out;
    __builtin_trap();
}
void clossy_unrotate_avx2(const float *x, float *out, ptrdiff_t T, ptrdiff_t C, ptrdiff_t hd, const float *cos_l, const float *sin_l) {
    (void)x; (void)out; (void)T; (void)C; (void)hd; (void)cos_l; (void)sin_l;
    __builtin_trap();
}
#endif

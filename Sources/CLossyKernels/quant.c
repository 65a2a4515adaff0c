#include "CLossyKernels.h"

// The lossy encoder's per-element passes with AVX2 + F16C; the same IEEE operations in the same
// order as the Swift `LossyEncodeKernel` (compiled with -ffp-contract=off: no FMA).

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <string.h>

#define TGT __attribute__((target("avx2,f16c")))
#define HIST_BINS 128
#define MAX_INDEX 4194304.0f
#define MAGIC 12582912.0f

TGT int clossy_half_to_float_avx2(const uint16_t *in, float *out, ptrdiff_t n) {
    const __m128i expo = _mm_set1_epi16(0x7C00);
    __m128i bad = _mm_setzero_si128();
    ptrdiff_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m128i h = _mm_loadu_si128((const __m128i *)(in + i));
        bad = _mm_or_si128(bad, _mm_cmpeq_epi16(_mm_and_si128(h, expo), expo));
        _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
    }
    int any = !_mm_testz_si128(bad, bad);
    for (; i < n; i++) {
        any |= (in[i] & 0x7C00) == 0x7C00;
        out[i] = _cvtsh_ss(in[i]);
    }
    return any;
}

/// One element the scalar way (block edges).
static inline int32_t quant1(float x, float mean, float inv, float inv_col) {
    float v = ((x - mean) * inv) * inv_col;
    v = -MAX_INDEX >= v ? -MAX_INDEX : v; // Swift max(v, -M) / min(·, M) on finite values
    v = MAX_INDEX < v ? MAX_INDEX : v;
    return (int32_t)((v + MAGIC) - MAGIC); // round to nearest even (|v| < 2^23)
}

static inline void count(uint32_t *hist, ptrdiff_t c, int32_t qi) {
    uint32_t a = qi < 0 ? 0u - (uint32_t)qi : (uint32_t)qi;
    hist[c * HIST_BINS + (a < HIST_BINS - 1 ? a : HIST_BINS - 1)] += 1;
}

/// One 8-token x 8-channel block: q stored channel-major, the histogram bins of its 64 values
/// to idx[j * idx_stride + lane] (token j, channel c0 + lane).
static inline TGT void quant_block8(const float *x, ptrdiff_t T, ptrdiff_t C, ptrdiff_t t0, ptrdiff_t c0,
                                    const float *means, const float *row_inv, const float *inv_col,
                                    int32_t *q, uint32_t *idx, ptrdiff_t idx_stride) {
    const __m256 lo = _mm256_set1_ps(-MAX_INDEX), hi = _mm256_set1_ps(MAX_INDEX), magic = _mm256_set1_ps(MAGIC);
    const __m256i top = _mm256_set1_epi32(HIST_BINS - 1);
    const __m256i step8 = _mm256_setr_epi32(0, HIST_BINS, 2 * HIST_BINS, 3 * HIST_BINS, 4 * HIST_BINS,
                                            5 * HIST_BINS, 6 * HIST_BINS, 7 * HIST_BINS);
    const __m256 mu = _mm256_loadu_ps(means + c0), ic = _mm256_loadu_ps(inv_col + c0);
    const __m256i hbase = _mm256_add_epi32(_mm256_set1_epi32((int)(c0 * HIST_BINS)), step8);
    __m256i r[8];
    for (int j = 0; j < 8; j++) {
        __m256 v = _mm256_mul_ps(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + (t0 + j) * C + c0), mu),
                                               _mm256_set1_ps(row_inv[t0 + j])), ic);
        v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
        r[j] = _mm256_cvttps_epi32(_mm256_sub_ps(_mm256_add_ps(v, magic), magic));
        _mm256_storeu_si256((__m256i *)(idx + j * idx_stride), _mm256_add_epi32(_mm256_min_epu32(_mm256_abs_epi32(r[j]), top), hbase));
    }
    // 8x8 transpose: row-major tokens -> channel-major q[c * T + t].
    __m256i a0 = _mm256_unpacklo_epi32(r[0], r[1]), a1 = _mm256_unpackhi_epi32(r[0], r[1]);
    __m256i a2 = _mm256_unpacklo_epi32(r[2], r[3]), a3 = _mm256_unpackhi_epi32(r[2], r[3]);
    __m256i a4 = _mm256_unpacklo_epi32(r[4], r[5]), a5 = _mm256_unpackhi_epi32(r[4], r[5]);
    __m256i a6 = _mm256_unpacklo_epi32(r[6], r[7]), a7 = _mm256_unpackhi_epi32(r[6], r[7]);
    __m256i b0 = _mm256_unpacklo_epi64(a0, a2), b1 = _mm256_unpackhi_epi64(a0, a2);
    __m256i b2 = _mm256_unpacklo_epi64(a1, a3), b3 = _mm256_unpackhi_epi64(a1, a3);
    __m256i b4 = _mm256_unpacklo_epi64(a4, a6), b5 = _mm256_unpackhi_epi64(a4, a6);
    __m256i b6 = _mm256_unpacklo_epi64(a5, a7), b7 = _mm256_unpackhi_epi64(a5, a7);
    int32_t *o = q + c0 * T + t0;
    _mm256_storeu_si256((__m256i *)(o + 0 * T), _mm256_permute2x128_si256(b0, b4, 0x20));
    _mm256_storeu_si256((__m256i *)(o + 1 * T), _mm256_permute2x128_si256(b1, b5, 0x20));
    _mm256_storeu_si256((__m256i *)(o + 2 * T), _mm256_permute2x128_si256(b2, b6, 0x20));
    _mm256_storeu_si256((__m256i *)(o + 3 * T), _mm256_permute2x128_si256(b3, b7, 0x20));
    _mm256_storeu_si256((__m256i *)(o + 4 * T), _mm256_permute2x128_si256(b0, b4, 0x31));
    _mm256_storeu_si256((__m256i *)(o + 5 * T), _mm256_permute2x128_si256(b1, b5, 0x31));
    _mm256_storeu_si256((__m256i *)(o + 6 * T), _mm256_permute2x128_si256(b2, b6, 0x31));
    _mm256_storeu_si256((__m256i *)(o + 7 * T), _mm256_permute2x128_si256(b3, b7, 0x31));
}

TGT void clossy_quantise_avx2(const float *x, ptrdiff_t T, ptrdiff_t C, const float *means, const float *row_inv,
                              const float *inv_col, int32_t *q, uint32_t *hist) {
    ptrdiff_t T8 = T & ~(ptrdiff_t)7, c0 = 0;
    uint32_t idx[128];
    // Channel blocks outermost: a block's histograms (16 x 512 bytes) stay in L1 while all its
    // tokens are counted; token-major order touched every channel's 512 bytes per 8 tokens, and
    // the C x 128 counters do not fit in L1. The counts are the same in any order.
    // The histograms are zeroed here, a block at a time, just before they are counted.
    for (; c0 + 16 <= C; c0 += 16) {
        memset(hist + c0 * HIST_BINS, 0, 16 * HIST_BINS * sizeof(uint32_t));
        for (ptrdiff_t t0 = 0; t0 < T8; t0 += 8) {
            // Two channel blocks, their bins counted interleaved: a channel's counter is bumped every
            // 16th increment, not every 8th (consecutive tokens often hit the same bin, and each bump
            // waits for the one before on the same counter).
            quant_block8(x, T, C, t0, c0, means, row_inv, inv_col, q, idx, 16);
            quant_block8(x, T, C, t0, c0 + 8, means, row_inv, inv_col, q, idx + 8, 16);
            // Histogram bins through memory: scalar loads are cheaper than lane extracts.
            __asm__ volatile("" ::: "memory");
            for (int l = 0; l < 128; l++) hist[idx[l]] += 1;
        }
    }
    memset(hist + c0 * HIST_BINS, 0, (size_t)(C - c0) * HIST_BINS * sizeof(uint32_t));
    for (; c0 + 8 <= C; c0 += 8) {
        for (ptrdiff_t t0 = 0; t0 < T8; t0 += 8) {
            quant_block8(x, T, C, t0, c0, means, row_inv, inv_col, q, idx, 8);
            __asm__ volatile("" ::: "memory");
            for (int l = 0; l < 64; l++) hist[idx[l]] += 1;
        }
    }
    for (; c0 < C; c0++)
        for (ptrdiff_t t = 0; t < T8; t++) {
            int32_t qi = quant1(x[t * C + c0], means[c0], row_inv[t], inv_col[c0]);
            q[c0 * T + t] = qi;
            count(hist, c0, qi);
        }
    for (ptrdiff_t t = T8; t < T; t++)
        for (ptrdiff_t c = 0; c < C; c++) {
            int32_t qi = quant1(x[t * C + c], means[c], row_inv[t], inv_col[c]);
            q[c * T + t] = qi;
            count(hist, c, qi);
        }
}

#else
int clossy_half_to_float_avx2(const uint16_t *in, float *out, ptrdiff_t n) {
    (void)in; (void)out; (void)n;
    __builtin_trap();
    return 1;
}
void clossy_quantise_avx2(const float *x, ptrdiff_t T, ptrdiff_t C, const float *means, const float *row_inv,
                          const float *inv_col, int32_t *q, uint32_t *hist) {
    (void)x; (void)T; (void)C; (void)means; (void)row_inv; (void)inv_col; (void)q; (void)hist;
    __builtin_trap(); // callers check clossy_has_avx2() first
}
#endif

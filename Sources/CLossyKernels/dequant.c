#include "CLossyKernels.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define TGT __attribute__((target("avx2,f16c")))

static inline TGT float value_at(const int32_t *q, ptrdiff_t T, const float *means, const float *steps,
                                 const float *cs, ptrdiff_t t, ptrdiff_t c) {
    return means[c] + ((float)q[c * T + t] * cs[c]) * steps[t];
}

/// One element the slow way (block edges): same operations, F16C scalar conversion.
static inline TGT void one(const int32_t *q, ptrdiff_t T, ptrdiff_t C, const float *means, const float *steps,
                           const float *cs, const float *rc, const float *rs, ptrdiff_t hd, uint16_t *out, ptrdiff_t t, ptrdiff_t c) {
    float v = value_at(q, T, means, steps, cs, t, c);
    if (rc) {
        ptrdiff_t lane = c % hd;
        float w = value_at(q, T, means, steps, cs, t, c ^ 1);
        v = v * rc[lane * T + t] + w * rs[lane * T + t];
    }
    out[t * C + c] = (uint16_t)_cvtss_sh(v, _MM_FROUND_TO_NEAREST_INT);
}

TGT void clossy_dequant_half_avx2(const int32_t *q, ptrdiff_t T, ptrdiff_t C, const float *means, const float *steps,
                                  const float *cs, const float *rc, const float *rs, ptrdiff_t hd, uint16_t *out) {
    ptrdiff_t t0 = 0;
    for (; t0 + 8 <= T; t0 += 8) {
        const __m256 st = _mm256_loadu_ps(steps + t0);
        ptrdiff_t c0 = 0;
        for (; c0 + 8 <= C; c0 += 8) {
            // Channel-major: one vector per channel over 8 tokens, so the arithmetic needs no
            // shuffles; the fp16 results are transposed 8x8 once at the end.
            __m256 v[8];
            for (int j = 0; j < 8; j++) {
                ptrdiff_t c = c0 + j;
                __m256 qf = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(q + c * T + t0)));
                v[j] = _mm256_add_ps(_mm256_set1_ps(means[c]),
                                     _mm256_mul_ps(_mm256_mul_ps(qf, _mm256_set1_ps(cs[c])), st));
            }
            if (rc) {
                ptrdiff_t lane = c0 % hd; // c0 and hd are multiples of 8: the block stays in one head
                for (int j = 0; j < 8; j += 2) {
                    const float *ca = rc + (lane + j) * T + t0, *sa = rs + (lane + j) * T + t0;
                    __m256 a = v[j], b = v[j + 1];
                    v[j] = _mm256_add_ps(_mm256_mul_ps(a, _mm256_loadu_ps(ca)), _mm256_mul_ps(b, _mm256_loadu_ps(sa)));
                    v[j + 1] = _mm256_add_ps(_mm256_mul_ps(b, _mm256_loadu_ps(ca + T)), _mm256_mul_ps(a, _mm256_loadu_ps(sa + T)));
                }
            }
            __m128i a0 = _mm256_cvtps_ph(v[0], _MM_FROUND_TO_NEAREST_INT), a1 = _mm256_cvtps_ph(v[1], _MM_FROUND_TO_NEAREST_INT);
            __m128i a2 = _mm256_cvtps_ph(v[2], _MM_FROUND_TO_NEAREST_INT), a3 = _mm256_cvtps_ph(v[3], _MM_FROUND_TO_NEAREST_INT);
            __m128i a4 = _mm256_cvtps_ph(v[4], _MM_FROUND_TO_NEAREST_INT), a5 = _mm256_cvtps_ph(v[5], _MM_FROUND_TO_NEAREST_INT);
            __m128i a6 = _mm256_cvtps_ph(v[6], _MM_FROUND_TO_NEAREST_INT), a7 = _mm256_cvtps_ph(v[7], _MM_FROUND_TO_NEAREST_INT);
            __m128i b0 = _mm_unpacklo_epi16(a0, a1), b1 = _mm_unpackhi_epi16(a0, a1);
            __m128i b2 = _mm_unpacklo_epi16(a2, a3), b3 = _mm_unpackhi_epi16(a2, a3);
            __m128i b4 = _mm_unpacklo_epi16(a4, a5), b5 = _mm_unpackhi_epi16(a4, a5);
            __m128i b6 = _mm_unpacklo_epi16(a6, a7), b7 = _mm_unpackhi_epi16(a6, a7);
            __m128i d0 = _mm_unpacklo_epi32(b0, b2), d1 = _mm_unpackhi_epi32(b0, b2);
            __m128i d2 = _mm_unpacklo_epi32(b1, b3), d3 = _mm_unpackhi_epi32(b1, b3);
            __m128i d4 = _mm_unpacklo_epi32(b4, b6), d5 = _mm_unpackhi_epi32(b4, b6);
            __m128i d6 = _mm_unpacklo_epi32(b5, b7), d7 = _mm_unpackhi_epi32(b5, b7);
            uint16_t *o = out + t0 * C + c0;
            _mm_storeu_si128((__m128i *)(o + 0 * C), _mm_unpacklo_epi64(d0, d4));
            _mm_storeu_si128((__m128i *)(o + 1 * C), _mm_unpackhi_epi64(d0, d4));
            _mm_storeu_si128((__m128i *)(o + 2 * C), _mm_unpacklo_epi64(d1, d5));
            _mm_storeu_si128((__m128i *)(o + 3 * C), _mm_unpackhi_epi64(d1, d5));
            _mm_storeu_si128((__m128i *)(o + 4 * C), _mm_unpacklo_epi64(d2, d6));
            _mm_storeu_si128((__m128i *)(o + 5 * C), _mm_unpackhi_epi64(d2, d6));
            _mm_storeu_si128((__m128i *)(o + 6 * C), _mm_unpacklo_epi64(d3, d7));
            _mm_storeu_si128((__m128i *)(o + 7 * C), _mm_unpackhi_epi64(d3, d7));
        }
        for (; c0 < C; c0++)
            for (ptrdiff_t t = t0; t < t0 + 8; t++) one(q, T, C, means, steps, cs, rc, rs, hd, out, t, c0);
    }
    for (; t0 < T; t0++)
        for (ptrdiff_t c = 0; c < C; c++) one(q, T, C, means, steps, cs, rc, rs, hd, out, t0, c);
}

#else
void clossy_dequant_half_avx2(const int32_t *q, ptrdiff_t T, ptrdiff_t C, const float *means, const float *steps,
                              const float *cs, const float *rc, const float *rs, ptrdiff_t hd, uint16_t *out) {
    (void)q; (void)T; (void)C; (void)means; (void)steps; (void)cs; (void)rc; (void)rs; (void)hd; (void)out;
    __builtin_trap(); // callers check clossy_has_avx2() first
}
#endif

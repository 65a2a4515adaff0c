#include "CLossyKernels.h"
#include <string.h>

// The lossy encoder's rANS over 32 states (format version 5): token t of a channel on state t mod 32,
// channels pushed last to first, tokens last to first, so the words land in the decoder's order.
// The portable encoder is the Swift `LossyEncodeKernel.code`; this kernel gives the same bytes.

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define TGT __attribute__((target("avx2,f16c,popcnt,bmi")))

/// For an 8-bit mask m with p bits set: lanes 8-p+j take the index of the j-th set bit, so the
/// words of the renormalising lanes end up, in lane order, in the top p of 8 words.
static const uint8_t compress_lut[256][8] = {
    {0,0,0,0,0,0,0,0},
    {0,0,0,0,0,0,0,0},
    {0,0,0,0,0,0,0,1},
    {0,0,0,0,0,0,0,1},
    {0,0,0,0,0,0,0,2},
    {0,0,0,0,0,0,0,2},
    {0,0,0,0,0,0,1,2},
    {0,0,0,0,0,0,1,2},
    {0,0,0,0,0,0,0,3},
    {0,0,0,0,0,0,0,3},
    {0,0,0,0,0,0,1,3},
    {0,0,0,0,0,0,1,3},
    {0,0,0,0,0,0,2,3},
    {0,0,0,0,0,0,2,3},
    {0,0,0,0,0,1,2,3},
    {0,0,0,0,0,1,2,3},
    {0,0,0,0,0,0,0,4},
    {0,0,0,0,0,0,0,4},
    {0,0,0,0,0,0,1,4},
    {0,0,0,0,0,0,1,4},
    {0,0,0,0,0,0,2,4},
    {0,0,0,0,0,0,2,4},
    {0,0,0,0,0,1,2,4},
    {0,0,0,0,0,1,2,4},
    {0,0,0,0,0,0,3,4},
    {0,0,0,0,0,0,3,4},
    {0,0,0,0,0,1,3,4},
    {0,0,0,0,0,1,3,4},
    {0,0,0,0,0,2,3,4},
    {0,0,0,0,0,2,3,4},
    {0,0,0,0,1,2,3,4},
    {0,0,0,0,1,2,3,4},
    {0,0,0,0,0,0,0,5},
    {0,0,0,0,0,0,0,5},
    {0,0,0,0,0,0,1,5},
    {0,0,0,0,0,0,1,5},
    {0,0,0,0,0,0,2,5},
    {0,0,0,0,0,0,2,5},
    {0,0,0,0,0,1,2,5},
    {0,0,0,0,0,1,2,5},
    {0,0,0,0,0,0,3,5},
    {0,0,0,0,0,0,3,5},
    {0,0,0,0,0,1,3,5},
    {0,0,0,0,0,1,3,5},
    {0,0,0,0,0,2,3,5},
    {0,0,0,0,0,2,3,5},
    {0,0,0,0,1,2,3,5},
    {0,0,0,0,1,2,3,5},
    {0,0,0,0,0,0,4,5},
    {0,0,0,0,0,0,4,5},
    {0,0,0,0,0,1,4,5},
    {0,0,0,0,0,1,4,5},
    {0,0,0,0,0,2,4,5},
    {0,0,0,0,0,2,4,5},
    {0,0,0,0,1,2,4,5},
    {0,0,0,0,1,2,4,5},
    {0,0,0,0,0,3,4,5},
    {0,0,0,0,0,3,4,5},
    {0,0,0,0,1,3,4,5},
    {0,0,0,0,1,3,4,5},
    {0,0,0,0,2,3,4,5},
    {0,0,0,0,2,3,4,5},
    {0,0,0,1,2,3,4,5},
    {0,0,0,1,2,3,4,5},
    {0,0,0,0,0,0,0,6},
    {0,0,0,0,0,0,0,6},
    {0,0,0,0,0,0,1,6},
    {0,0,0,0,0,0,1,6},
    {0,0,0,0,0,0,2,6},
    {0,0,0,0,0,0,2,6},
    {0,0,0,0,0,1,2,6},
    {0,0,0,0,0,1,2,6},
    {0,0,0,0,0,0,3,6},
    {0,0,0,0,0,0,3,6},
    {0,0,0,0,0,1,3,6},
    {0,0,0,0,0,1,3,6},
    {0,0,0,0,0,2,3,6},
    {0,0,0,0,0,2,3,6},
    {0,0,0,0,1,2,3,6},
    {0,0,0,0,1,2,3,6},
    {0,0,0,0,0,0,4,6},
    {0,0,0,0,0,0,4,6},
    {0,0,0,0,0,1,4,6},
    {0,0,0,0,0,1,4,6},
    {0,0,0,0,0,2,4,6},
    {0,0,0,0,0,2,4,6},
    {0,0,0,0,1,2,4,6},
    {0,0,0,0,1,2,4,6},
    {0,0,0,0,0,3,4,6},
    {0,0,0,0,0,3,4,6},
    {0,0,0,0,1,3,4,6},
    {0,0,0,0,1,3,4,6},
    {0,0,0,0,2,3,4,6},
    {0,0,0,0,2,3,4,6},
    {0,0,0,1,2,3,4,6},
    {0,0,0,1,2,3,4,6},
    {0,0,0,0,0,0,5,6},
    {0,0,0,0,0,0,5,6},
    {0,0,0,0,0,1,5,6},
    {0,0,0,0,0,1,5,6},
    {0,0,0,0,0,2,5,6},
    {0,0,0,0,0,2,5,6},
    {0,0,0,0,1,2,5,6},
    {0,0,0,0,1,2,5,6},
    {0,0,0,0,0,3,5,6},
    {0,0,0,0,0,3,5,6},
    {0,0,0,0,1,3,5,6},
    {0,0,0,0,1,3,5,6},
    {0,0,0,0,2,3,5,6},
    {0,0,0,0,2,3,5,6},
    {0,0,0,1,2,3,5,6},
    {0,0,0,1,2,3,5,6},
    {0,0,0,0,0,4,5,6},
    {0,0,0,0,0,4,5,6},
    {0,0,0,0,1,4,5,6},
    {0,0,0,0,1,4,5,6},
    {0,0,0,0,2,4,5,6},
    {0,0,0,0,2,4,5,6},
    {0,0,0,1,2,4,5,6},
    {0,0,0,1,2,4,5,6},
    {0,0,0,0,3,4,5,6},
    {0,0,0,0,3,4,5,6},
    {0,0,0,1,3,4,5,6},
    {0,0,0,1,3,4,5,6},
    {0,0,0,2,3,4,5,6},
    {0,0,0,2,3,4,5,6},
    {0,0,1,2,3,4,5,6},
    {0,0,1,2,3,4,5,6},
    {0,0,0,0,0,0,0,7},
    {0,0,0,0,0,0,0,7},
    {0,0,0,0,0,0,1,7},
    {0,0,0,0,0,0,1,7},
    {0,0,0,0,0,0,2,7},
    {0,0,0,0,0,0,2,7},
    {0,0,0,0,0,1,2,7},
    {0,0,0,0,0,1,2,7},
    {0,0,0,0,0,0,3,7},
    {0,0,0,0,0,0,3,7},
    {0,0,0,0,0,1,3,7},
    {0,0,0,0,0,1,3,7},
    {0,0,0,0,0,2,3,7},
    {0,0,0,0,0,2,3,7},
    {0,0,0,0,1,2,3,7},
    {0,0,0,0,1,2,3,7},
    {0,0,0,0,0,0,4,7},
    {0,0,0,0,0,0,4,7},
    {0,0,0,0,0,1,4,7},
    {0,0,0,0,0,1,4,7},
    {0,0,0,0,0,2,4,7},
    {0,0,0,0,0,2,4,7},
    {0,0,0,0,1,2,4,7},
    {0,0,0,0,1,2,4,7},
    {0,0,0,0,0,3,4,7},
    {0,0,0,0,0,3,4,7},
    {0,0,0,0,1,3,4,7},
    {0,0,0,0,1,3,4,7},
    {0,0,0,0,2,3,4,7},
    {0,0,0,0,2,3,4,7},
    {0,0,0,1,2,3,4,7},
    {0,0,0,1,2,3,4,7},
    {0,0,0,0,0,0,5,7},
    {0,0,0,0,0,0,5,7},
    {0,0,0,0,0,1,5,7},
    {0,0,0,0,0,1,5,7},
    {0,0,0,0,0,2,5,7},
    {0,0,0,0,0,2,5,7},
    {0,0,0,0,1,2,5,7},
    {0,0,0,0,1,2,5,7},
    {0,0,0,0,0,3,5,7},
    {0,0,0,0,0,3,5,7},
    {0,0,0,0,1,3,5,7},
    {0,0,0,0,1,3,5,7},
    {0,0,0,0,2,3,5,7},
    {0,0,0,0,2,3,5,7},
    {0,0,0,1,2,3,5,7},
    {0,0,0,1,2,3,5,7},
    {0,0,0,0,0,4,5,7},
    {0,0,0,0,0,4,5,7},
    {0,0,0,0,1,4,5,7},
    {0,0,0,0,1,4,5,7},
    {0,0,0,0,2,4,5,7},
    {0,0,0,0,2,4,5,7},
    {0,0,0,1,2,4,5,7},
    {0,0,0,1,2,4,5,7},
    {0,0,0,0,3,4,5,7},
    {0,0,0,0,3,4,5,7},
    {0,0,0,1,3,4,5,7},
    {0,0,0,1,3,4,5,7},
    {0,0,0,2,3,4,5,7},
    {0,0,0,2,3,4,5,7},
    {0,0,1,2,3,4,5,7},
    {0,0,1,2,3,4,5,7},
    {0,0,0,0,0,0,6,7},
    {0,0,0,0,0,0,6,7},
    {0,0,0,0,0,1,6,7},
    {0,0,0,0,0,1,6,7},
    {0,0,0,0,0,2,6,7},
    {0,0,0,0,0,2,6,7},
    {0,0,0,0,1,2,6,7},
    {0,0,0,0,1,2,6,7},
    {0,0,0,0,0,3,6,7},
    {0,0,0,0,0,3,6,7},
    {0,0,0,0,1,3,6,7},
    {0,0,0,0,1,3,6,7},
    {0,0,0,0,2,3,6,7},
    {0,0,0,0,2,3,6,7},
    {0,0,0,1,2,3,6,7},
    {0,0,0,1,2,3,6,7},
    {0,0,0,0,0,4,6,7},
    {0,0,0,0,0,4,6,7},
    {0,0,0,0,1,4,6,7},
    {0,0,0,0,1,4,6,7},
    {0,0,0,0,2,4,6,7},
    {0,0,0,0,2,4,6,7},
    {0,0,0,1,2,4,6,7},
    {0,0,0,1,2,4,6,7},
    {0,0,0,0,3,4,6,7},
    {0,0,0,0,3,4,6,7},
    {0,0,0,1,3,4,6,7},
    {0,0,0,1,3,4,6,7},
    {0,0,0,2,3,4,6,7},
    {0,0,0,2,3,4,6,7},
    {0,0,1,2,3,4,6,7},
    {0,0,1,2,3,4,6,7},
    {0,0,0,0,0,5,6,7},
    {0,0,0,0,0,5,6,7},
    {0,0,0,0,1,5,6,7},
    {0,0,0,0,1,5,6,7},
    {0,0,0,0,2,5,6,7},
    {0,0,0,0,2,5,6,7},
    {0,0,0,1,2,5,6,7},
    {0,0,0,1,2,5,6,7},
    {0,0,0,0,3,5,6,7},
    {0,0,0,0,3,5,6,7},
    {0,0,0,1,3,5,6,7},
    {0,0,0,1,3,5,6,7},
    {0,0,0,2,3,5,6,7},
    {0,0,0,2,3,5,6,7},
    {0,0,1,2,3,5,6,7},
    {0,0,1,2,3,5,6,7},
    {0,0,0,0,4,5,6,7},
    {0,0,0,0,4,5,6,7},
    {0,0,0,1,4,5,6,7},
    {0,0,0,1,4,5,6,7},
    {0,0,0,2,4,5,6,7},
    {0,0,0,2,4,5,6,7},
    {0,0,1,2,4,5,6,7},
    {0,0,1,2,4,5,6,7},
    {0,0,0,3,4,5,6,7},
    {0,0,0,3,4,5,6,7},
    {0,0,1,3,4,5,6,7},
    {0,0,1,3,4,5,6,7},
    {0,0,2,3,4,5,6,7},
    {0,0,2,3,4,5,6,7},
    {0,1,2,3,4,5,6,7},
    {0,1,2,3,4,5,6,7},
};

/// Pushes 8 symbols (one per lane; `live` lanes only) onto 8 states. Words of the lanes that
/// renormalise go just below `*pos`, in lane order (the decoder reads them in lane order).
static inline TGT __m256i enc8(__m256i x, __m256i qv, __m256i live, __m256i rad, __m256i escsym, __m256i base,
                               const uint64_t *sym, uint16_t *buf, ptrdiff_t *pos,
                               __m256i *escacc) {
    const __m256i m12 = _mm256_set1_epi32(0xFFF), one = _mm256_set1_epi32(1), z = _mm256_setzero_si256();
    // Symbol index: q + radius, or the escape symbol 2·radius + 1 when |q| > radius (unsigned min).
    __m256i idx = _mm256_min_epu32(_mm256_add_epi32(qv, rad), escsym);
    *escacc = _mm256_or_si256(*escacc, _mm256_and_si256(_mm256_cmpeq_epi32(idx, escsym), live));
    idx = _mm256_add_epi32(idx, base);
    // One 64-bit gather per 4 lanes: sym[i] = info | rlo << 32.
    __m256i g0 = _mm256_i32gather_epi64((const long long *)sym, _mm256_castsi256_si128(idx), 8);
    __m256i g1 = _mm256_i32gather_epi64((const long long *)sym, _mm256_extracti128_si256(idx, 1), 8);
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6), odd = _mm256_setr_epi32(1, 3, 5, 7, 1, 3, 5, 7);
    __m256i info = _mm256_blend_epi32(_mm256_permutevar8x32_epi32(g0, even), _mm256_permutevar8x32_epi32(g1, even), 0xF0);
    __m256i rlo = _mm256_blend_epi32(_mm256_permutevar8x32_epi32(g0, odd), _mm256_permutevar8x32_epi32(g1, odd), 0xF0);
    __m256i freq = _mm256_and_si256(info, m12);
    __m256i cum = _mm256_and_si256(_mm256_srli_epi32(info, 12), m12);
    __m256i sh = _mm256_srli_epi32(info, 24);
    // x >= freq << 20  <=>  x >> 20 > freq - 1
    __m256i need = _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_srli_epi32(x, 20), _mm256_sub_epi32(freq, one)), live);
    unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(need));
    __m256i sel = _mm256_permutevar8x32_epi32(x, _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)compress_lut[m])));
    sel = _mm256_and_si256(sel, _mm256_set1_epi32(0xFFFF));
    __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(sel, sel), 0x08);
    // Always stored (8 words below pos; the buffer keeps 8 spare words): only the top p are kept.
    _mm_storeu_si128((__m128i *)(buf + *pos - 8), _mm256_castsi256_si128(packed));
    *pos -= __builtin_popcount(m);
    __m256i xs = _mm256_blendv_epi8(x, _mm256_srli_epi32(x, 16), need);
    // q = floor(xs / freq) = (xs + mulhi(xs, rlo)) >> sh with rcp = 2^32 + rlo (RANSEncSymbol);
    // the 33-bit sum as mh + ((xs - mh) >> 1), then >> (sh - 1); freq 1 (sh 0, rlo 0) gives q = xs.
    __m256i pe = _mm256_mul_epu32(xs, rlo);
    __m256i po = _mm256_mul_epu32(_mm256_srli_epi64(xs, 32), _mm256_srli_epi64(rlo, 32));
    __m256i mh = _mm256_blend_epi32(_mm256_srli_epi64(pe, 32), po, 0xAA);
    __m256i t = _mm256_add_epi32(mh, _mm256_srli_epi32(_mm256_sub_epi32(xs, mh), 1));
    __m256i q = _mm256_srlv_epi32(t, _mm256_sub_epi32(sh, one));
    q = _mm256_add_epi32(q, _mm256_and_si256(xs, _mm256_cmpeq_epi32(sh, z)));
    __m256i nx = _mm256_add_epi32(_mm256_add_epi32(xs, cum),
                                  _mm256_mullo_epi32(q, _mm256_sub_epi32(_mm256_set1_epi32(4096), freq)));
    return _mm256_blendv_epi8(x, nx, live);
}

TGT ptrdiff_t clossy_rans32_encode_avx2(uint32_t *states, uint16_t *buf, ptrdiff_t pos, const int32_t *q,
                                        ptrdiff_t T, ptrdiff_t C, const ptrdiff_t *order, const ptrdiff_t *classes,
                                        const uint64_t *sym, const int32_t *radius,
                                        uint8_t *esc) {
    if (T <= 0) { memset(esc, 0, (size_t)C); return pos; }
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), all = _mm256_set1_epi32(-1);
    __m256i x[4];
    for (int i = 0; i < 4; i++) x[i] = _mm256_loadu_si256((const __m256i *)states + i);
    for (ptrdiff_t k = C - 1; k >= 0; k--) {
        ptrdiff_t c = order[k], cls = classes[c];
        int32_t r = radius[cls];
        const __m256i rad = _mm256_set1_epi32(r), escsym = _mm256_set1_epi32(2 * r + 1);
        const __m256i base = _mm256_set1_epi32((int)(cls * 256));
        const int32_t *qc = q + c * T;
        __m256i escacc = _mm256_setzero_si256();
        ptrdiff_t t0 = ((T - 1) / 32) * 32;
        if (T > 0 && T - t0 < 32) {
            // The last, partial step: lanes at or past T keep their state and write no word.
            __m256i rem = _mm256_set1_epi32((int)(T - t0));
            for (int i = 3; i >= 0; i--) {
                __m256i live = _mm256_cmpgt_epi32(rem, _mm256_add_epi32(lanes, _mm256_set1_epi32(8 * i)));
                __m256i qv = _mm256_maskload_epi32(qc + t0 + 8 * i, live);
                x[i] = enc8(x[i], qv, live, rad, escsym, base, sym, buf, &pos, &escacc);
            }
            t0 -= 32;
        }
        for (; t0 >= 0; t0 -= 32) {
            for (int i = 3; i >= 0; i--) {
                __m256i qv = _mm256_loadu_si256((const __m256i *)(qc + t0 + 8 * i));
                x[i] = enc8(x[i], qv, all, rad, escsym, base, sym, buf, &pos, &escacc);
            }
        }
        esc[k] = !_mm256_testz_si256(escacc, escacc);
    }
    for (int i = 0; i < 4; i++) _mm256_storeu_si256((__m256i *)states + i, x[i]);
    return pos;
}

#else
ptrdiff_t clossy_rans32_encode_avx2(uint32_t *states, uint16_t *buf, ptrdiff_t pos, const int32_t *q,
                                    ptrdiff_t T, ptrdiff_t C, const ptrdiff_t *order, const ptrdiff_t *classes,
                                    const uint64_t *sym, const int32_t *radius, uint8_t *esc) {
    (void)states; (void)buf; (void)q; (void)T; (void)C; (void)order; (void)classes;
    (void)sym; (void)radius; (void)esc;
    __builtin_trap(); // callers check clossy_has_avx2() first
    return pos;
}
#endif

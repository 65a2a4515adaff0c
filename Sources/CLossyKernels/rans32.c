#include "CLossyKernels.h"
#include <string.h>
#include <immintrin.h>

#define LOWER_BOUND 65536u

int clossy_has_avx2(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("f16c");
#else
    return 0;
#endif
}

int clossy_has_avx512(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    return clossy_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
    return 0;
#endif
}

ptrdiff_t clossy_rans32_scalar(uint32_t *states, const uint16_t *words, ptrdiff_t pos, ptrdiff_t word_count,
                               const uint32_t *entries, const ptrdiff_t *order, const ptrdiff_t *class_offset,
                               ptrdiff_t T, ptrdiff_t C, int32_t *scratch, uint8_t *esc) {
    if (pos > word_count) return pos;
    uint32_t x[CLOSSY_STATES];
    memcpy(x, states, sizeof x);
    for (ptrdiff_t k = 0; k < C; k++) {
        ptrdiff_t c = order[k];
        const uint32_t *tab = entries + class_offset[c];
        int32_t *q = scratch + c * T;
        int escaped = 0;
        // Branch-free renormalisation (a branch mispredicts on a large share of symbols); the
        // next word is read unconditionally from the zero-padded buffer.
        for (ptrdiff_t t = 0; t < T; t++) {
            uint32_t *s = &x[t & (CLOSSY_STATES - 1)];
            uint32_t e = tab[*s & 4095];
            uint32_t v = (e & 0xFFF) * (*s >> 12) + ((e >> 12) & 0xFFF);
            uint32_t need = v < LOWER_BOUND, w = words[pos];
            *s = (v << (16 * need)) | (w & (0u - need)); // arithmetic, so no compiler makes it a branch
            pos += need;
            uint32_t qb = e >> 24;
            escaped |= qb == 0;
            q[t] = (int32_t)qb - 128;
        }
        esc[k] = (uint8_t)escaped;
        if (pos > word_count) break;
    }
    memcpy(states, x, sizeof x);
    return pos;
}

#if defined(__x86_64__) || defined(__i386__)

/// For an 8-bit mask m: lane i takes word rank_m(i) (the set bits below i), so the words at pos...
/// land in the lanes that renormalise, in lane order.
static const uint8_t compact_lut[256][8] = {
    {0,0,0,0,0,0,0,0},
    {0,0,0,0,0,0,0,0},
    {0,0,0,0,0,0,0,0},
    {0,1,0,0,0,0,0,0},
    {0,0,0,0,0,0,0,0},
    {0,0,1,0,0,0,0,0},
    {0,0,1,0,0,0,0,0},
    {0,1,2,0,0,0,0,0},
    {0,0,0,0,0,0,0,0},
    {0,0,0,1,0,0,0,0},
    {0,0,0,1,0,0,0,0},
    {0,1,0,2,0,0,0,0},
    {0,0,0,1,0,0,0,0},
    {0,0,1,2,0,0,0,0},
    {0,0,1,2,0,0,0,0},
    {0,1,2,3,0,0,0,0},
    {0,0,0,0,0,0,0,0},
    {0,0,0,0,1,0,0,0},
    {0,0,0,0,1,0,0,0},
    {0,1,0,0,2,0,0,0},
    {0,0,0,0,1,0,0,0},
    {0,0,1,0,2,0,0,0},
    {0,0,1,0,2,0,0,0},
    {0,1,2,0,3,0,0,0},
    {0,0,0,0,1,0,0,0},
    {0,0,0,1,2,0,0,0},
    {0,0,0,1,2,0,0,0},
    {0,1,0,2,3,0,0,0},
    {0,0,0,1,2,0,0,0},
    {0,0,1,2,3,0,0,0},
    {0,0,1,2,3,0,0,0},
    {0,1,2,3,4,0,0,0},
    {0,0,0,0,0,0,0,0},
    {0,0,0,0,0,1,0,0},
    {0,0,0,0,0,1,0,0},
    {0,1,0,0,0,2,0,0},
    {0,0,0,0,0,1,0,0},
    {0,0,1,0,0,2,0,0},
    {0,0,1,0,0,2,0,0},
    {0,1,2,0,0,3,0,0},
    {0,0,0,0,0,1,0,0},
    {0,0,0,1,0,2,0,0},
    {0,0,0,1,0,2,0,0},
    {0,1,0,2,0,3,0,0},
    {0,0,0,1,0,2,0,0},
    {0,0,1,2,0,3,0,0},
    {0,0,1,2,0,3,0,0},
    {0,1,2,3,0,4,0,0},
    {0,0,0,0,0,1,0,0},
    {0,0,0,0,1,2,0,0},
    {0,0,0,0,1,2,0,0},
    {0,1,0,0,2,3,0,0},
    {0,0,0,0,1,2,0,0},
    {0,0,1,0,2,3,0,0},
    {0,0,1,0,2,3,0,0},
    {0,1,2,0,3,4,0,0},
    {0,0,0,0,1,2,0,0},
    {0,0,0,1,2,3,0,0},
    {0,0,0,1,2,3,0,0},
    {0,1,0,2,3,4,0,0},
    {0,0,0,1,2,3,0,0},
    {0,0,1,2,3,4,0,0},
    {0,0,1,2,3,4,0,0},
    {0,1,2,3,4,5,0,0},
    {0,0,0,0,0,0,0,0},
    {0,0,0,0,0,0,1,0},
    {0,0,0,0,0,0,1,0},
    {0,1,0,0,0,0,2,0},
    {0,0,0,0,0,0,1,0},
    {0,0,1,0,0,0,2,0},
    {0,0,1,0,0,0,2,0},
    {0,1,2,0,0,0,3,0},
    {0,0,0,0,0,0,1,0},
    {0,0,0,1,0,0,2,0},
    {0,0,0,1,0,0,2,0},
    {0,1,0,2,0,0,3,0},
    {0,0,0,1,0,0,2,0},
    {0,0,1,2,0,0,3,0},
    {0,0,1,2,0,0,3,0},
    {0,1,2,3,0,0,4,0},
    {0,0,0,0,0,0,1,0},
    {0,0,0,0,1,0,2,0},
    {0,0,0,0,1,0,2,0},
    {0,1,0,0,2,0,3,0},
    {0,0,0,0,1,0,2,0},
    {0,0,1,0,2,0,3,0},
    {0,0,1,0,2,0,3,0},
    {0,1,2,0,3,0,4,0},
    {0,0,0,0,1,0,2,0},
    {0,0,0,1,2,0,3,0},
    {0,0,0,1,2,0,3,0},
    {0,1,0,2,3,0,4,0},
    {0,0,0,1,2,0,3,0},
    {0,0,1,2,3,0,4,0},
    {0,0,1,2,3,0,4,0},
    {0,1,2,3,4,0,5,0},
    {0,0,0,0,0,0,1,0},
    {0,0,0,0,0,1,2,0},
    {0,0,0,0,0,1,2,0},
    {0,1,0,0,0,2,3,0},
    {0,0,0,0,0,1,2,0},
    {0,0,1,0,0,2,3,0},
    {0,0,1,0,0,2,3,0},
    {0,1,2,0,0,3,4,0},
    {0,0,0,0,0,1,2,0},
    {0,0,0,1,0,2,3,0},
    {0,0,0,1,0,2,3,0},
    {0,1,0,2,0,3,4,0},
    {0,0,0,1,0,2,3,0},
    {0,0,1,2,0,3,4,0},
    {0,0,1,2,0,3,4,0},
    {0,1,2,3,0,4,5,0},
    {0,0,0,0,0,1,2,0},
    {0,0,0,0,1,2,3,0},
    {0,0,0,0,1,2,3,0},
    {0,1,0,0,2,3,4,0},
    {0,0,0,0,1,2,3,0},
    {0,0,1,0,2,3,4,0},
    {0,0,1,0,2,3,4,0},
    {0,1,2,0,3,4,5,0},
    {0,0,0,0,1,2,3,0},
    {0,0,0,1,2,3,4,0},
    {0,0,0,1,2,3,4,0},
    {0,1,0,2,3,4,5,0},
    {0,0,0,1,2,3,4,0},
    {0,0,1,2,3,4,5,0},
    {0,0,1,2,3,4,5,0},
    {0,1,2,3,4,5,6,0},
    {0,0,0,0,0,0,0,0},
    {0,0,0,0,0,0,0,1},
    {0,0,0,0,0,0,0,1},
    {0,1,0,0,0,0,0,2},
    {0,0,0,0,0,0,0,1},
    {0,0,1,0,0,0,0,2},
    {0,0,1,0,0,0,0,2},
    {0,1,2,0,0,0,0,3},
    {0,0,0,0,0,0,0,1},
    {0,0,0,1,0,0,0,2},
    {0,0,0,1,0,0,0,2},
    {0,1,0,2,0,0,0,3},
    {0,0,0,1,0,0,0,2},
    {0,0,1,2,0,0,0,3},
    {0,0,1,2,0,0,0,3},
    {0,1,2,3,0,0,0,4},
    {0,0,0,0,0,0,0,1},
    {0,0,0,0,1,0,0,2},
    {0,0,0,0,1,0,0,2},
    {0,1,0,0,2,0,0,3},
    {0,0,0,0,1,0,0,2},
    {0,0,1,0,2,0,0,3},
    {0,0,1,0,2,0,0,3},
    {0,1,2,0,3,0,0,4},
    {0,0,0,0,1,0,0,2},
    {0,0,0,1,2,0,0,3},
    {0,0,0,1,2,0,0,3},
    {0,1,0,2,3,0,0,4},
    {0,0,0,1,2,0,0,3},
    {0,0,1,2,3,0,0,4},
    {0,0,1,2,3,0,0,4},
    {0,1,2,3,4,0,0,5},
    {0,0,0,0,0,0,0,1},
    {0,0,0,0,0,1,0,2},
    {0,0,0,0,0,1,0,2},
    {0,1,0,0,0,2,0,3},
    {0,0,0,0,0,1,0,2},
    {0,0,1,0,0,2,0,3},
    {0,0,1,0,0,2,0,3},
    {0,1,2,0,0,3,0,4},
    {0,0,0,0,0,1,0,2},
    {0,0,0,1,0,2,0,3},
    {0,0,0,1,0,2,0,3},
    {0,1,0,2,0,3,0,4},
    {0,0,0,1,0,2,0,3},
    {0,0,1,2,0,3,0,4},
    {0,0,1,2,0,3,0,4},
    {0,1,2,3,0,4,0,5},
    {0,0,0,0,0,1,0,2},
    {0,0,0,0,1,2,0,3},
    {0,0,0,0,1,2,0,3},
    {0,1,0,0,2,3,0,4},
    {0,0,0,0,1,2,0,3},
    {0,0,1,0,2,3,0,4},
    {0,0,1,0,2,3,0,4},
    {0,1,2,0,3,4,0,5},
    {0,0,0,0,1,2,0,3},
    {0,0,0,1,2,3,0,4},
    {0,0,0,1,2,3,0,4},
    {0,1,0,2,3,4,0,5},
    {0,0,0,1,2,3,0,4},
    {0,0,1,2,3,4,0,5},
    {0,0,1,2,3,4,0,5},
    {0,1,2,3,4,5,0,6},
    {0,0,0,0,0,0,0,1},
    {0,0,0,0,0,0,1,2},
    {0,0,0,0,0,0,1,2},
    {0,1,0,0,0,0,2,3},
    {0,0,0,0,0,0,1,2},
    {0,0,1,0,0,0,2,3},
    {0,0,1,0,0,0,2,3},
    {0,1,2,0,0,0,3,4},
    {0,0,0,0,0,0,1,2},
    {0,0,0,1,0,0,2,3},
    {0,0,0,1,0,0,2,3},
    {0,1,0,2,0,0,3,4},
    {0,0,0,1,0,0,2,3},
    {0,0,1,2,0,0,3,4},
    {0,0,1,2,0,0,3,4},
    {0,1,2,3,0,0,4,5},
    {0,0,0,0,0,0,1,2},
    {0,0,0,0,1,0,2,3},
    {0,0,0,0,1,0,2,3},
    {0,1,0,0,2,0,3,4},
    {0,0,0,0,1,0,2,3},
    {0,0,1,0,2,0,3,4},
    {0,0,1,0,2,0,3,4},
    {0,1,2,0,3,0,4,5},
    {0,0,0,0,1,0,2,3},
    {0,0,0,1,2,0,3,4},
    {0,0,0,1,2,0,3,4},
    {0,1,0,2,3,0,4,5},
    {0,0,0,1,2,0,3,4},
    {0,0,1,2,3,0,4,5},
    {0,0,1,2,3,0,4,5},
    {0,1,2,3,4,0,5,6},
    {0,0,0,0,0,0,1,2},
    {0,0,0,0,0,1,2,3},
    {0,0,0,0,0,1,2,3},
    {0,1,0,0,0,2,3,4},
    {0,0,0,0,0,1,2,3},
    {0,0,1,0,0,2,3,4},
    {0,0,1,0,0,2,3,4},
    {0,1,2,0,0,3,4,5},
    {0,0,0,0,0,1,2,3},
    {0,0,0,1,0,2,3,4},
    {0,0,0,1,0,2,3,4},
    {0,1,0,2,0,3,4,5},
    {0,0,0,1,0,2,3,4},
    {0,0,1,2,0,3,4,5},
    {0,0,1,2,0,3,4,5},
    {0,1,2,3,0,4,5,6},
    {0,0,0,0,0,1,2,3},
    {0,0,0,0,1,2,3,4},
    {0,0,0,0,1,2,3,4},
    {0,1,0,0,2,3,4,5},
    {0,0,0,0,1,2,3,4},
    {0,0,1,0,2,3,4,5},
    {0,0,1,0,2,3,4,5},
    {0,1,2,0,3,4,5,6},
    {0,0,0,0,1,2,3,4},
    {0,0,0,1,2,3,4,5},
    {0,0,0,1,2,3,4,5},
    {0,1,0,2,3,4,5,6},
    {0,0,0,1,2,3,4,5},
    {0,0,1,2,3,4,5,6},
    {0,0,1,2,3,4,5,6},
    {0,1,2,3,4,5,6,7},
};

#define TGT __attribute__((target("avx2,f16c,popcnt,bmi")))

/// One 8-lane step: decode, then renormalise from `p` (words of the lanes in `live`).
/// Returns the mask of lanes that took a word.
static inline TGT unsigned step8(__m256i *x, const uint32_t *tab, const uint16_t *words, ptrdiff_t p,
                                 __m256i live, __m256i *qout, __m256i *escacc) {
    const __m256i m12 = _mm256_set1_epi32(0xFFF);
    __m256i slot = _mm256_and_si256(*x, m12);
    __m256i e = _mm256_i32gather_epi32((const int *)tab, slot, 4);
    __m256i nx = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_and_si256(e, m12), _mm256_srli_epi32(*x, 12)),
                                  _mm256_and_si256(_mm256_srli_epi32(e, 12), m12));
    nx = _mm256_blendv_epi8(*x, nx, live);
    __m256i qb = _mm256_srli_epi32(e, 24);
    *escacc = _mm256_or_si256(*escacc, _mm256_and_si256(_mm256_cmpeq_epi32(qb, _mm256_setzero_si256()), live));
    *qout = _mm256_sub_epi32(qb, _mm256_set1_epi32(128));
    __m256i need = _mm256_and_si256(_mm256_cmpeq_epi32(_mm256_srli_epi32(nx, 16), _mm256_setzero_si256()), live);
    unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(need));
    __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(words + p)));
    __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)compact_lut[m]));
    w = _mm256_permutevar8x32_epi32(w, idx);
    *x = _mm256_blendv_epi8(nx, _mm256_or_si256(_mm256_slli_epi32(nx, 16), w), need);
    return m;
}

TGT ptrdiff_t clossy_rans32_avx2(uint32_t *states, const uint16_t *words, ptrdiff_t pos, ptrdiff_t word_count,
                                 const uint32_t *entries, const ptrdiff_t *order, const ptrdiff_t *class_offset,
                                 ptrdiff_t T, ptrdiff_t C, int32_t *scratch, uint8_t *esc) {
    if (pos > word_count) return pos;
    const __m256i m12 = _mm256_set1_epi32(0xFFF);
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i x0 = _mm256_loadu_si256((const __m256i *)states + 0);
    __m256i x1 = _mm256_loadu_si256((const __m256i *)states + 1);
    __m256i x2 = _mm256_loadu_si256((const __m256i *)states + 2);
    __m256i x3 = _mm256_loadu_si256((const __m256i *)states + 3);
    for (ptrdiff_t k = 0; k < C; k++) {
        ptrdiff_t c = order[k];
        const uint32_t *tab = entries + class_offset[c];
        int32_t *q = scratch + c * T;
        __m256i escacc = _mm256_setzero_si256();
        // The next channel's table, if it is another class: its 16 KB are fetched into L1 while
        // this channel decodes, a share per step (slots are near uniform, so a channel touches
        // most of its table's lines; from L2/L3 each gather would wait on them).
        const char *pf = NULL, *pfEnd = NULL;
        ptrdiff_t per = 0;
        if (k + 1 < C && class_offset[order[k + 1]] != class_offset[c] && T >= 32) {
            pf = (const char *)(entries + class_offset[order[k + 1]]);
            pfEnd = pf + 4096 * 4;
            per = (4096 * 4 / 64 + T / 32 - 1) / (T / 32);
        }
        ptrdiff_t t = 0;
        for (; t + 32 <= T; t += 32) {
            for (ptrdiff_t i = 0; i < per && pf < pfEnd; i++, pf += 64) _mm_prefetch(pf, _MM_HINT_T0);
            // The four vectors' word positions come from one 32-bit mask, so they do not wait on
            // each other: p_i = pos + popcount(mask bits of lanes before vector i).
            __m256i e0 = _mm256_i32gather_epi32((const int *)tab, _mm256_and_si256(x0, m12), 4);
            __m256i e1 = _mm256_i32gather_epi32((const int *)tab, _mm256_and_si256(x1, m12), 4);
            __m256i e2 = _mm256_i32gather_epi32((const int *)tab, _mm256_and_si256(x2, m12), 4);
            __m256i e3 = _mm256_i32gather_epi32((const int *)tab, _mm256_and_si256(x3, m12), 4);
#define ADV(x, e) x = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_and_si256(e, m12), _mm256_srli_epi32(x, 12)), \
                                       _mm256_and_si256(_mm256_srli_epi32(e, 12), m12))
            ADV(x0, e0); ADV(x1, e1); ADV(x2, e2); ADV(x3, e3);
#define NEED(x) _mm256_cmpeq_epi32(_mm256_srli_epi32(x, 16), _mm256_setzero_si256())
            __m256i n0 = NEED(x0), n1 = NEED(x1), n2 = NEED(x2), n3 = NEED(x3);
            unsigned m0 = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(n0));
            unsigned m1 = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(n1));
            unsigned m2 = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(n2));
            unsigned m3 = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(n3));
            ptrdiff_t p1 = pos + __builtin_popcount(m0);
            ptrdiff_t p2 = p1 + __builtin_popcount(m1);
            ptrdiff_t p3 = p2 + __builtin_popcount(m2);
#define RENORM(x, n, m, p) { \
                __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(words + (p)))); \
                w = _mm256_permutevar8x32_epi32(w, _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)compact_lut[m]))); \
                x = _mm256_blendv_epi8(x, _mm256_or_si256(_mm256_slli_epi32(x, 16), w), n); }
            RENORM(x0, n0, m0, pos); RENORM(x1, n1, m1, p1); RENORM(x2, n2, m2, p2); RENORM(x3, n3, m3, p3);
            pos = p3 + __builtin_popcount(m3);
            const __m256i b128 = _mm256_set1_epi32(128), z = _mm256_setzero_si256();
#define OUT(e, i) { __m256i qb = _mm256_srli_epi32(e, 24); \
                escacc = _mm256_or_si256(escacc, _mm256_cmpeq_epi32(qb, z)); \
                _mm256_storeu_si256((__m256i *)(q + t + 8 * (i)), _mm256_sub_epi32(qb, b128)); }
            OUT(e0, 0); OUT(e1, 1); OUT(e2, 2); OUT(e3, 3);
        }
        if (t < T) {
            // The last partial step: lanes past T keep their state and read no word.
            __m256i rem = _mm256_set1_epi32((int)(T - t));
            __m256i l0 = _mm256_cmpgt_epi32(rem, lanes);
            __m256i l1 = _mm256_cmpgt_epi32(rem, _mm256_add_epi32(lanes, _mm256_set1_epi32(8)));
            __m256i l2 = _mm256_cmpgt_epi32(rem, _mm256_add_epi32(lanes, _mm256_set1_epi32(16)));
            __m256i l3 = _mm256_cmpgt_epi32(rem, _mm256_add_epi32(lanes, _mm256_set1_epi32(24)));
            int32_t tmp[32];
            __m256i qv;
            pos += __builtin_popcount(step8(&x0, tab, words, pos, l0, &qv, &escacc));
            _mm256_storeu_si256((__m256i *)tmp, qv);
            pos += __builtin_popcount(step8(&x1, tab, words, pos, l1, &qv, &escacc));
            _mm256_storeu_si256((__m256i *)(tmp + 8), qv);
            pos += __builtin_popcount(step8(&x2, tab, words, pos, l2, &qv, &escacc));
            _mm256_storeu_si256((__m256i *)(tmp + 16), qv);
            pos += __builtin_popcount(step8(&x3, tab, words, pos, l3, &qv, &escacc));
            _mm256_storeu_si256((__m256i *)(tmp + 24), qv);
            memcpy(q + t, tmp, (size_t)(T - t) * sizeof(int32_t));
        }
        esc[k] = !_mm256_testz_si256(escacc, escacc);
        if (pos > word_count) break;
    }
    _mm256_storeu_si256((__m256i *)states + 0, x0);
    _mm256_storeu_si256((__m256i *)states + 1, x1);
    _mm256_storeu_si256((__m256i *)states + 2, x2);
    _mm256_storeu_si256((__m256i *)states + 3, x3);
    return pos;
}

#else
ptrdiff_t clossy_rans32_avx2(uint32_t *states, const uint16_t *words, ptrdiff_t pos, ptrdiff_t word_count,
                             const uint32_t *entries, const ptrdiff_t *order, const ptrdiff_t *class_offset,
                             ptrdiff_t T, ptrdiff_t C, int32_t *scratch, uint8_t *esc) {
    return clossy_rans32_scalar(states, words, pos, word_count, entries, order, class_offset, T, C, scratch, esc);
}
#endif

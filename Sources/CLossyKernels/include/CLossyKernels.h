#ifndef CLOSSY_KERNELS_H
#define CLOSSY_KERNELS_H
// Hot loops of the lossy decoder (format version 5): 32-state interleaved rANS and fp16
// dequantisation, as AVX2 + F16C kernels with portable scalar equivalents that give the same bits.
// Compiled with -ffp-contract=off: every product is rounded before its sum, as the bitstream requires.
#include <stdint.h>
#include <stddef.h>

#define CLOSSY_STATES 32

/// 1 when this CPU runs the AVX2 + F16C kernels (checked once per call; cheap).
int clossy_has_avx2(void);

/// One group of symbols: C channels (in `order`) of T tokens each; token t of a channel uses state
/// t mod 32, renormalisation words are read in symbol order. `entries` holds the per-class slot
/// tables (freq | (slot - cum) << 12 | qbyte << 24), `class_offset[c]` = class << 12. Writes
/// q = qbyte - 128 to scratch[c * T + t] (-128 marks an escape) and esc[k] = 1 when the k-th
/// decoded channel holds an escape. `words` must be followed by >= T + 16 readable words;
/// decoding stops after a channel that reads past `word_count`. Returns the new word position.
ptrdiff_t clossy_rans32_avx2(uint32_t *states, const uint16_t *words, ptrdiff_t pos, ptrdiff_t word_count,
                             const uint32_t *entries, const ptrdiff_t *order, const ptrdiff_t *class_offset,
                             ptrdiff_t T, ptrdiff_t C, int32_t *scratch, uint8_t *esc);
ptrdiff_t clossy_rans32_scalar(uint32_t *states, const uint16_t *words, ptrdiff_t pos, ptrdiff_t word_count,
                               const uint32_t *entries, const ptrdiff_t *order, const ptrdiff_t *class_offset,
                               ptrdiff_t T, ptrdiff_t C, int32_t *scratch, uint8_t *esc);

/// out[t * C + c] = half(mean[c] + ((float)q[c * T + t] * col_scale[c]) * steps[t]); with rope
/// tables (transposed: rope_cos_t[lane * T + t], lane = c mod 64; rope_sin_t likewise, −sin on
/// even lanes), each pair (a, b) is then rotated: a' = a * cos + b * sin_even, b' = b * cos + a * sin_odd.
/// Round to nearest even, same bits as the scalar float->half. Needs AVX2 + F16C.
void clossy_dequant_half_avx2(const int32_t *q, ptrdiff_t T, ptrdiff_t C, const float *means, const float *steps,
                              const float *col_scale, const float *rope_cos_t, const float *rope_sin_t,
                              uint16_t *out);

#endif

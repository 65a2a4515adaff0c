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
/// 1 when this CPU also runs the AVX-512 (F, BW, VL, DQ) kernels.
int clossy_has_avx512(void);

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
/// tables (transposed: rope_cos_t[lane * T + t], lane = c mod hd, hd a multiple of 8; rope_sin_t likewise, −sin on
/// even lanes), each pair (a, b) is then rotated: a' = a * cos + b * sin_even, b' = b * cos + a * sin_odd.
/// Round to nearest even, same bits as the scalar float->half. Needs AVX2 + F16C.
void clossy_dequant_half_avx2(const int32_t *q, ptrdiff_t T, ptrdiff_t C, const float *means, const float *steps,
                              const float *col_scale, const float *rope_cos_t, const float *rope_sin_t,
                              ptrdiff_t hd, uint16_t *out);

// Encoder (format version 5). Each needs AVX2 + F16C; the portable encoder is the Swift code.

/// out[i] = (float)in[i] for n halves; returns 1 when some half is NaN or infinite.
int clossy_half_to_float_avx2(const uint16_t *in, float *out, ptrdiff_t n);

/// q[c * T + t] = (int)round_even(clamp(((x[t * C + c] - means[c]) * row_inv[t]) * inv_col[c], ±2^22))
/// (channel-major) and hist[c * 128 + min(|q|, 127)] += 1 (hist zeroed first, here).
void clossy_quantise_avx2(const float *x, ptrdiff_t T, ptrdiff_t C, const float *means, const float *row_inv,
                          const float *inv_col, int32_t *q, uint32_t *hist);

/// acc[c] = sum over t in order of x[t * C + c] (center NULL) or of (x[t * C + c] - center[c])^2.
void clossy_column_sums_avx2(const float *x, ptrdiff_t T, ptrdiff_t C, const float *center, float *acc);
/// LossyEncodeKernel.bestClass for channels 0..<C (hist: C * bins, bins a multiple of 8 up to 256;
/// shapes <= 4); the scale nearest
/// σ is looked up in ParametricModels.scaleOfSigma (a StepTable: scale_count bounds, values).
void clossy_best_classes_avx2(const uint32_t *hist, ptrdiff_t C, ptrdiff_t bins, const float *cost_t, ptrdiff_t stride,
                              ptrdiff_t shapes, ptrdiff_t scales, const float *scale_bounds,
                              const int32_t *scale_values, ptrdiff_t scale_count, ptrdiff_t *classes);
/// The k-th smallest of n finite floats (v is reordered; portable C).
float clossy_kth_smallest(float *v, ptrdiff_t n, ptrdiff_t k);
/// out[t] = sum over c in order of x[t * C + c]^2.
void clossy_row_sumsq_avx2(const float *x, ptrdiff_t T, ptrdiff_t C, float *out);
/// InChunkRoPE.unrotate (hd a multiple of 8, C a multiple of hd; lane tables [t * hd + lane]).
void clossy_unrotate_avx2(const float *x, float *out, ptrdiff_t T, ptrdiff_t C, ptrdiff_t hd, const float *cos_l, const float *sin_l);

/// Pushes one group's symbols (channels order[C-1] ... order[0], tokens T-1 ... 0, token t on state
/// t mod 32) onto the 32 `states`, words written downwards from buf[pos] (buf must have >= 8 spare
/// words below the lowest word written); returns the new pos. q is channel-major; symbol table
/// per class (index class * 256 + q + radius, escape at 2 * radius + 1): sym = freq | cum << 12 |
/// shift << 24 | (low 32 bits of the reciprocal, RANSEncSymbol) << 32. esc[k] = 1 when channel
/// order[k] holds an escape. `ahead` (NULL: none) is prefetched into L2 over the C channels: the
/// caller's next input, so its cold read overlaps this compute-bound work.
ptrdiff_t clossy_rans32_encode_avx2(uint32_t *states, uint16_t *buf, ptrdiff_t pos, const int32_t *q,
                                    ptrdiff_t T, ptrdiff_t C, const ptrdiff_t *order, const ptrdiff_t *classes,
                                    const uint64_t *sym, const int32_t *radius, uint8_t *esc,
                                    const void *ahead, ptrdiff_t ahead_bytes);
/// The q[t] with |q[t]| > radius, in token order, as zigzag LEB128 varints
/// (QuantizedRANSCodec.appendVarint) into out (room for 4 bytes per token: |q| <= 2^22); returns
/// the bytes written.
ptrdiff_t clossy_escape_varints_avx2(const int32_t *q, ptrdiff_t T, int32_t radius, uint8_t *out);
/// The same with AVX-512 (tables of up to 128 symbols looked up in registers): the same bytes.
ptrdiff_t clossy_rans32_encode_avx512(uint32_t *states, uint16_t *buf, ptrdiff_t pos, const int32_t *q,
                                      ptrdiff_t T, ptrdiff_t C, const ptrdiff_t *order, const ptrdiff_t *classes,
                                      const uint64_t *sym, const int32_t *radius, uint8_t *esc,
                                      const void *ahead, ptrdiff_t ahead_bytes);

#endif

#include "CLossyKernels.h"
#include <string.h>

// The lossy encoder's rANS over 32 states (format version 5): token t of a channel on state t mod 32,
// channels pushed last to first, tokens last to first, so the words land in the decoder's order.
// The portable encoder is the Swift `LossyEncodeKernel.code`; this kernel gives the same bytes.

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

#define TGT __attribute__((target("avx2,f16c,popcnt,bmi")))

/// For an 8-bit mask m with p bits set: byte shuffle putting the j-th set lane's 16-bit word in
/// word 8-p+j, so the words of the renormalising lanes end up, in lane order, in the top p of 8.
static const uint8_t compress_lut[256][16] __attribute__((aligned(16))) = {
    {0,1,0,1,0,1,0,1,0,1,0,1,0,1,0,1},
    {0,1,0,1,0,1,0,1,0,1,0,1,0,1,0,1},
    {0,1,0,1,0,1,0,1,0,1,0,1,0,1,2,3},
    {0,1,0,1,0,1,0,1,0,1,0,1,0,1,2,3},
    {0,1,0,1,0,1,0,1,0,1,0,1,0,1,4,5},
    {0,1,0,1,0,1,0,1,0,1,0,1,0,1,4,5},
    {0,1,0,1,0,1,0,1,0,1,0,1,2,3,4,5},
    {0,1,0,1,0,1,0,1,0,1,0,1,2,3,4,5},
    {0,1,0,1,0,1,0,1,0,1,0,1,0,1,6,7},
    {0,1,0,1,0,1,0,1,0,1,0,1,0,1,6,7},
    {0,1,0,1,0,1,0,1,0,1,0,1,2,3,6,7},
    {0,1,0,1,0,1,0,1,0,1,0,1,2,3,6,7},
    {0,1,0,1,0,1,0,1,0,1,0,1,4,5,6,7},
    {0,1,0,1,0,1,0,1,0,1,0,1,4,5,6,7},
    {0,1,0,1,0,1,0,1,0,1,2,3,4,5,6,7},
    {0,1,0,1,0,1,0,1,0,1,2,3,4,5,6,7},
    {0,1,0,1,0,1,0,1,0,1,0,1,0,1,8,9},
    {0,1,0,1,0,1,0,1,0,1,0,1,0,1,8,9},
    {0,1,0,1,0,1,0,1,0,1,0,1,2,3,8,9},
    {0,1,0,1,0,1,0,1,0,1,0,1,2,3,8,9},
    {0,1,0,1,0,1,0,1,0,1,0,1,4,5,8,9},
    {0,1,0,1,0,1,0,1,0,1,0,1,4,5,8,9},
    {0,1,0,1,0,1,0,1,0,1,2,3,4,5,8,9},
    {0,1,0,1,0,1,0,1,0,1,2,3,4,5,8,9},
    {0,1,0,1,0,1,0,1,0,1,0,1,6,7,8,9},
    {0,1,0,1,0,1,0,1,0,1,0,1,6,7,8,9},
    {0,1,0,1,0,1,0,1,0,1,2,3,6,7,8,9},
    {0,1,0,1,0,1,0,1,0,1,2,3,6,7,8,9},
    {0,1,0,1,0,1,0,1,0,1,4,5,6,7,8,9},
    {0,1,0,1,0,1,0,1,0,1,4,5,6,7,8,9},
    {0,1,0,1,0,1,0,1,2,3,4,5,6,7,8,9},
    {0,1,0,1,0,1,0,1,2,3,4,5,6,7,8,9},
    {0,1,0,1,0,1,0,1,0,1,0,1,0,1,10,11},
    {0,1,0,1,0,1,0,1,0,1,0,1,0,1,10,11},
    {0,1,0,1,0,1,0,1,0,1,0,1,2,3,10,11},
    {0,1,0,1,0,1,0,1,0,1,0,1,2,3,10,11},
    {0,1,0,1,0,1,0,1,0,1,0,1,4,5,10,11},
    {0,1,0,1,0,1,0,1,0,1,0,1,4,5,10,11},
    {0,1,0,1,0,1,0,1,0,1,2,3,4,5,10,11},
    {0,1,0,1,0,1,0,1,0,1,2,3,4,5,10,11},
    {0,1,0,1,0,1,0,1,0,1,0,1,6,7,10,11},
    {0,1,0,1,0,1,0,1,0,1,0,1,6,7,10,11},
    {0,1,0,1,0,1,0,1,0,1,2,3,6,7,10,11},
    {0,1,0,1,0,1,0,1,0,1,2,3,6,7,10,11},
    {0,1,0,1,0,1,0,1,0,1,4,5,6,7,10,11},
    {0,1,0,1,0,1,0,1,0,1,4,5,6,7,10,11},
    {0,1,0,1,0,1,0,1,2,3,4,5,6,7,10,11},
    {0,1,0,1,0,1,0,1,2,3,4,5,6,7,10,11},
    {0,1,0,1,0,1,0,1,0,1,0,1,8,9,10,11},
    {0,1,0,1,0,1,0,1,0,1,0,1,8,9,10,11},
    {0,1,0,1,0,1,0,1,0,1,2,3,8,9,10,11},
    {0,1,0,1,0,1,0,1,0,1,2,3,8,9,10,11},
    {0,1,0,1,0,1,0,1,0,1,4,5,8,9,10,11},
    {0,1,0,1,0,1,0,1,0,1,4,5,8,9,10,11},
    {0,1,0,1,0,1,0,1,2,3,4,5,8,9,10,11},
    {0,1,0,1,0,1,0,1,2,3,4,5,8,9,10,11},
    {0,1,0,1,0,1,0,1,0,1,6,7,8,9,10,11},
    {0,1,0,1,0,1,0,1,0,1,6,7,8,9,10,11},
    {0,1,0,1,0,1,0,1,2,3,6,7,8,9,10,11},
    {0,1,0,1,0,1,0,1,2,3,6,7,8,9,10,11},
    {0,1,0,1,0,1,0,1,4,5,6,7,8,9,10,11},
    {0,1,0,1,0,1,0,1,4,5,6,7,8,9,10,11},
    {0,1,0,1,0,1,2,3,4,5,6,7,8,9,10,11},
    {0,1,0,1,0,1,2,3,4,5,6,7,8,9,10,11},
    {0,1,0,1,0,1,0,1,0,1,0,1,0,1,12,13},
    {0,1,0,1,0,1,0,1,0,1,0,1,0,1,12,13},
    {0,1,0,1,0,1,0,1,0,1,0,1,2,3,12,13},
    {0,1,0,1,0,1,0,1,0,1,0,1,2,3,12,13},
    {0,1,0,1,0,1,0,1,0,1,0,1,4,5,12,13},
    {0,1,0,1,0,1,0,1,0,1,0,1,4,5,12,13},
    {0,1,0,1,0,1,0,1,0,1,2,3,4,5,12,13},
    {0,1,0,1,0,1,0,1,0,1,2,3,4,5,12,13},
    {0,1,0,1,0,1,0,1,0,1,0,1,6,7,12,13},
    {0,1,0,1,0,1,0,1,0,1,0,1,6,7,12,13},
    {0,1,0,1,0,1,0,1,0,1,2,3,6,7,12,13},
    {0,1,0,1,0,1,0,1,0,1,2,3,6,7,12,13},
    {0,1,0,1,0,1,0,1,0,1,4,5,6,7,12,13},
    {0,1,0,1,0,1,0,1,0,1,4,5,6,7,12,13},
    {0,1,0,1,0,1,0,1,2,3,4,5,6,7,12,13},
    {0,1,0,1,0,1,0,1,2,3,4,5,6,7,12,13},
    {0,1,0,1,0,1,0,1,0,1,0,1,8,9,12,13},
    {0,1,0,1,0,1,0,1,0,1,0,1,8,9,12,13},
    {0,1,0,1,0,1,0,1,0,1,2,3,8,9,12,13},
    {0,1,0,1,0,1,0,1,0,1,2,3,8,9,12,13},
    {0,1,0,1,0,1,0,1,0,1,4,5,8,9,12,13},
    {0,1,0,1,0,1,0,1,0,1,4,5,8,9,12,13},
    {0,1,0,1,0,1,0,1,2,3,4,5,8,9,12,13},
    {0,1,0,1,0,1,0,1,2,3,4,5,8,9,12,13},
    {0,1,0,1,0,1,0,1,0,1,6,7,8,9,12,13},
    {0,1,0,1,0,1,0,1,0,1,6,7,8,9,12,13},
    {0,1,0,1,0,1,0,1,2,3,6,7,8,9,12,13},
    {0,1,0,1,0,1,0,1,2,3,6,7,8,9,12,13},
    {0,1,0,1,0,1,0,1,4,5,6,7,8,9,12,13},
    {0,1,0,1,0,1,0,1,4,5,6,7,8,9,12,13},
    {0,1,0,1,0,1,2,3,4,5,6,7,8,9,12,13},
    {0,1,0,1,0,1,2,3,4,5,6,7,8,9,12,13},
    {0,1,0,1,0,1,0,1,0,1,0,1,10,11,12,13},
    {0,1,0,1,0,1,0,1,0,1,0,1,10,11,12,13},
    {0,1,0,1,0,1,0,1,0,1,2,3,10,11,12,13},
    {0,1,0,1,0,1,0,1,0,1,2,3,10,11,12,13},
    {0,1,0,1,0,1,0,1,0,1,4,5,10,11,12,13},
    {0,1,0,1,0,1,0,1,0,1,4,5,10,11,12,13},
    {0,1,0,1,0,1,0,1,2,3,4,5,10,11,12,13},
    {0,1,0,1,0,1,0,1,2,3,4,5,10,11,12,13},
    {0,1,0,1,0,1,0,1,0,1,6,7,10,11,12,13},
    {0,1,0,1,0,1,0,1,0,1,6,7,10,11,12,13},
    {0,1,0,1,0,1,0,1,2,3,6,7,10,11,12,13},
    {0,1,0,1,0,1,0,1,2,3,6,7,10,11,12,13},
    {0,1,0,1,0,1,0,1,4,5,6,7,10,11,12,13},
    {0,1,0,1,0,1,0,1,4,5,6,7,10,11,12,13},
    {0,1,0,1,0,1,2,3,4,5,6,7,10,11,12,13},
    {0,1,0,1,0,1,2,3,4,5,6,7,10,11,12,13},
    {0,1,0,1,0,1,0,1,0,1,8,9,10,11,12,13},
    {0,1,0,1,0,1,0,1,0,1,8,9,10,11,12,13},
    {0,1,0,1,0,1,0,1,2,3,8,9,10,11,12,13},
    {0,1,0,1,0,1,0,1,2,3,8,9,10,11,12,13},
    {0,1,0,1,0,1,0,1,4,5,8,9,10,11,12,13},
    {0,1,0,1,0,1,0,1,4,5,8,9,10,11,12,13},
    {0,1,0,1,0,1,2,3,4,5,8,9,10,11,12,13},
    {0,1,0,1,0,1,2,3,4,5,8,9,10,11,12,13},
    {0,1,0,1,0,1,0,1,6,7,8,9,10,11,12,13},
    {0,1,0,1,0,1,0,1,6,7,8,9,10,11,12,13},
    {0,1,0,1,0,1,2,3,6,7,8,9,10,11,12,13},
    {0,1,0,1,0,1,2,3,6,7,8,9,10,11,12,13},
    {0,1,0,1,0,1,4,5,6,7,8,9,10,11,12,13},
    {0,1,0,1,0,1,4,5,6,7,8,9,10,11,12,13},
    {0,1,0,1,2,3,4,5,6,7,8,9,10,11,12,13},
    {0,1,0,1,2,3,4,5,6,7,8,9,10,11,12,13},
    {0,1,0,1,0,1,0,1,0,1,0,1,0,1,14,15},
    {0,1,0,1,0,1,0,1,0,1,0,1,0,1,14,15},
    {0,1,0,1,0,1,0,1,0,1,0,1,2,3,14,15},
    {0,1,0,1,0,1,0,1,0,1,0,1,2,3,14,15},
    {0,1,0,1,0,1,0,1,0,1,0,1,4,5,14,15},
    {0,1,0,1,0,1,0,1,0,1,0,1,4,5,14,15},
    {0,1,0,1,0,1,0,1,0,1,2,3,4,5,14,15},
    {0,1,0,1,0,1,0,1,0,1,2,3,4,5,14,15},
    {0,1,0,1,0,1,0,1,0,1,0,1,6,7,14,15},
    {0,1,0,1,0,1,0,1,0,1,0,1,6,7,14,15},
    {0,1,0,1,0,1,0,1,0,1,2,3,6,7,14,15},
    {0,1,0,1,0,1,0,1,0,1,2,3,6,7,14,15},
    {0,1,0,1,0,1,0,1,0,1,4,5,6,7,14,15},
    {0,1,0,1,0,1,0,1,0,1,4,5,6,7,14,15},
    {0,1,0,1,0,1,0,1,2,3,4,5,6,7,14,15},
    {0,1,0,1,0,1,0,1,2,3,4,5,6,7,14,15},
    {0,1,0,1,0,1,0,1,0,1,0,1,8,9,14,15},
    {0,1,0,1,0,1,0,1,0,1,0,1,8,9,14,15},
    {0,1,0,1,0,1,0,1,0,1,2,3,8,9,14,15},
    {0,1,0,1,0,1,0,1,0,1,2,3,8,9,14,15},
    {0,1,0,1,0,1,0,1,0,1,4,5,8,9,14,15},
    {0,1,0,1,0,1,0,1,0,1,4,5,8,9,14,15},
    {0,1,0,1,0,1,0,1,2,3,4,5,8,9,14,15},
    {0,1,0,1,0,1,0,1,2,3,4,5,8,9,14,15},
    {0,1,0,1,0,1,0,1,0,1,6,7,8,9,14,15},
    {0,1,0,1,0,1,0,1,0,1,6,7,8,9,14,15},
    {0,1,0,1,0,1,0,1,2,3,6,7,8,9,14,15},
    {0,1,0,1,0,1,0,1,2,3,6,7,8,9,14,15},
    {0,1,0,1,0,1,0,1,4,5,6,7,8,9,14,15},
    {0,1,0,1,0,1,0,1,4,5,6,7,8,9,14,15},
    {0,1,0,1,0,1,2,3,4,5,6,7,8,9,14,15},
    {0,1,0,1,0,1,2,3,4,5,6,7,8,9,14,15},
    {0,1,0,1,0,1,0,1,0,1,0,1,10,11,14,15},
    {0,1,0,1,0,1,0,1,0,1,0,1,10,11,14,15},
    {0,1,0,1,0,1,0,1,0,1,2,3,10,11,14,15},
    {0,1,0,1,0,1,0,1,0,1,2,3,10,11,14,15},
    {0,1,0,1,0,1,0,1,0,1,4,5,10,11,14,15},
    {0,1,0,1,0,1,0,1,0,1,4,5,10,11,14,15},
    {0,1,0,1,0,1,0,1,2,3,4,5,10,11,14,15},
    {0,1,0,1,0,1,0,1,2,3,4,5,10,11,14,15},
    {0,1,0,1,0,1,0,1,0,1,6,7,10,11,14,15},
    {0,1,0,1,0,1,0,1,0,1,6,7,10,11,14,15},
    {0,1,0,1,0,1,0,1,2,3,6,7,10,11,14,15},
    {0,1,0,1,0,1,0,1,2,3,6,7,10,11,14,15},
    {0,1,0,1,0,1,0,1,4,5,6,7,10,11,14,15},
    {0,1,0,1,0,1,0,1,4,5,6,7,10,11,14,15},
    {0,1,0,1,0,1,2,3,4,5,6,7,10,11,14,15},
    {0,1,0,1,0,1,2,3,4,5,6,7,10,11,14,15},
    {0,1,0,1,0,1,0,1,0,1,8,9,10,11,14,15},
    {0,1,0,1,0,1,0,1,0,1,8,9,10,11,14,15},
    {0,1,0,1,0,1,0,1,2,3,8,9,10,11,14,15},
    {0,1,0,1,0,1,0,1,2,3,8,9,10,11,14,15},
    {0,1,0,1,0,1,0,1,4,5,8,9,10,11,14,15},
    {0,1,0,1,0,1,0,1,4,5,8,9,10,11,14,15},
    {0,1,0,1,0,1,2,3,4,5,8,9,10,11,14,15},
    {0,1,0,1,0,1,2,3,4,5,8,9,10,11,14,15},
    {0,1,0,1,0,1,0,1,6,7,8,9,10,11,14,15},
    {0,1,0,1,0,1,0,1,6,7,8,9,10,11,14,15},
    {0,1,0,1,0,1,2,3,6,7,8,9,10,11,14,15},
    {0,1,0,1,0,1,2,3,6,7,8,9,10,11,14,15},
    {0,1,0,1,0,1,4,5,6,7,8,9,10,11,14,15},
    {0,1,0,1,0,1,4,5,6,7,8,9,10,11,14,15},
    {0,1,0,1,2,3,4,5,6,7,8,9,10,11,14,15},
    {0,1,0,1,2,3,4,5,6,7,8,9,10,11,14,15},
    {0,1,0,1,0,1,0,1,0,1,0,1,12,13,14,15},
    {0,1,0,1,0,1,0,1,0,1,0,1,12,13,14,15},
    {0,1,0,1,0,1,0,1,0,1,2,3,12,13,14,15},
    {0,1,0,1,0,1,0,1,0,1,2,3,12,13,14,15},
    {0,1,0,1,0,1,0,1,0,1,4,5,12,13,14,15},
    {0,1,0,1,0,1,0,1,0,1,4,5,12,13,14,15},
    {0,1,0,1,0,1,0,1,2,3,4,5,12,13,14,15},
    {0,1,0,1,0,1,0,1,2,3,4,5,12,13,14,15},
    {0,1,0,1,0,1,0,1,0,1,6,7,12,13,14,15},
    {0,1,0,1,0,1,0,1,0,1,6,7,12,13,14,15},
    {0,1,0,1,0,1,0,1,2,3,6,7,12,13,14,15},
    {0,1,0,1,0,1,0,1,2,3,6,7,12,13,14,15},
    {0,1,0,1,0,1,0,1,4,5,6,7,12,13,14,15},
    {0,1,0,1,0,1,0,1,4,5,6,7,12,13,14,15},
    {0,1,0,1,0,1,2,3,4,5,6,7,12,13,14,15},
    {0,1,0,1,0,1,2,3,4,5,6,7,12,13,14,15},
    {0,1,0,1,0,1,0,1,0,1,8,9,12,13,14,15},
    {0,1,0,1,0,1,0,1,0,1,8,9,12,13,14,15},
    {0,1,0,1,0,1,0,1,2,3,8,9,12,13,14,15},
    {0,1,0,1,0,1,0,1,2,3,8,9,12,13,14,15},
    {0,1,0,1,0,1,0,1,4,5,8,9,12,13,14,15},
    {0,1,0,1,0,1,0,1,4,5,8,9,12,13,14,15},
    {0,1,0,1,0,1,2,3,4,5,8,9,12,13,14,15},
    {0,1,0,1,0,1,2,3,4,5,8,9,12,13,14,15},
    {0,1,0,1,0,1,0,1,6,7,8,9,12,13,14,15},
    {0,1,0,1,0,1,0,1,6,7,8,9,12,13,14,15},
    {0,1,0,1,0,1,2,3,6,7,8,9,12,13,14,15},
    {0,1,0,1,0,1,2,3,6,7,8,9,12,13,14,15},
    {0,1,0,1,0,1,4,5,6,7,8,9,12,13,14,15},
    {0,1,0,1,0,1,4,5,6,7,8,9,12,13,14,15},
    {0,1,0,1,2,3,4,5,6,7,8,9,12,13,14,15},
    {0,1,0,1,2,3,4,5,6,7,8,9,12,13,14,15},
    {0,1,0,1,0,1,0,1,0,1,10,11,12,13,14,15},
    {0,1,0,1,0,1,0,1,0,1,10,11,12,13,14,15},
    {0,1,0,1,0,1,0,1,2,3,10,11,12,13,14,15},
    {0,1,0,1,0,1,0,1,2,3,10,11,12,13,14,15},
    {0,1,0,1,0,1,0,1,4,5,10,11,12,13,14,15},
    {0,1,0,1,0,1,0,1,4,5,10,11,12,13,14,15},
    {0,1,0,1,0,1,2,3,4,5,10,11,12,13,14,15},
    {0,1,0,1,0,1,2,3,4,5,10,11,12,13,14,15},
    {0,1,0,1,0,1,0,1,6,7,10,11,12,13,14,15},
    {0,1,0,1,0,1,0,1,6,7,10,11,12,13,14,15},
    {0,1,0,1,0,1,2,3,6,7,10,11,12,13,14,15},
    {0,1,0,1,0,1,2,3,6,7,10,11,12,13,14,15},
    {0,1,0,1,0,1,4,5,6,7,10,11,12,13,14,15},
    {0,1,0,1,0,1,4,5,6,7,10,11,12,13,14,15},
    {0,1,0,1,2,3,4,5,6,7,10,11,12,13,14,15},
    {0,1,0,1,2,3,4,5,6,7,10,11,12,13,14,15},
    {0,1,0,1,0,1,0,1,8,9,10,11,12,13,14,15},
    {0,1,0,1,0,1,0,1,8,9,10,11,12,13,14,15},
    {0,1,0,1,0,1,2,3,8,9,10,11,12,13,14,15},
    {0,1,0,1,0,1,2,3,8,9,10,11,12,13,14,15},
    {0,1,0,1,0,1,4,5,8,9,10,11,12,13,14,15},
    {0,1,0,1,0,1,4,5,8,9,10,11,12,13,14,15},
    {0,1,0,1,2,3,4,5,8,9,10,11,12,13,14,15},
    {0,1,0,1,2,3,4,5,8,9,10,11,12,13,14,15},
    {0,1,0,1,0,1,6,7,8,9,10,11,12,13,14,15},
    {0,1,0,1,0,1,6,7,8,9,10,11,12,13,14,15},
    {0,1,0,1,2,3,6,7,8,9,10,11,12,13,14,15},
    {0,1,0,1,2,3,6,7,8,9,10,11,12,13,14,15},
    {0,1,0,1,4,5,6,7,8,9,10,11,12,13,14,15},
    {0,1,0,1,4,5,6,7,8,9,10,11,12,13,14,15},
    {0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15},
    {0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15},
};

/// A class's info words (freq | cum << 12 | shift << 24, the low half of its packed symbols),
/// 8 per register, for in-register lookups of tables up to 32 entries (or a 32-entry window).
typedef struct { __m256i t[4]; } Table8;

/// Entries from .. from + 8 · regs of the class's packed symbols (the low 32 bits of each).
static inline __attribute__((always_inline)) TGT void load_table8(Table8 *tab, const uint64_t *csym, int regs) {
    const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for (int j = 0; j < regs; j++) {
        __m256i a = _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)(csym + 8 * j)), even);
        __m256i b = _mm256_permutevar8x32_epi32(_mm256_loadu_si256((const __m256i *)(csym + 8 * j + 4)), even);
        tab->t[j] = _mm256_permute2x128_si256(a, b, 0x20);
    }
}

/// tab[idx] for idx < 8 · regs (regs 1, 2 or 4, a constant after inlining): vpermd reads the low
/// 3 bits, bits 3 and 4 pick among the registers.
static inline __attribute__((always_inline)) TGT __m256i lookup8(const Table8 *tab, __m256i idx, int regs) {
    __m256i r = _mm256_permutevar8x32_epi32(tab->t[0], idx);
    if (regs >= 2) {
        __m256 b3 = _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28));
        r = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r),
                                                 _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(tab->t[1], idx)), b3));
        if (regs >= 4) {
            __m256 r23 = _mm256_blendv_ps(_mm256_castsi256_ps(_mm256_permutevar8x32_epi32(tab->t[2], idx)),
                                          _mm256_castsi256_ps(_mm256_permutevar8x32_epi32(tab->t[3], idx)), b3);
            r = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(r), r23, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 27))));
        }
    }
    return r;
}

/// Pushes 8 symbols (one per lane; `live` lanes only) onto 8 states. Words of the lanes that
/// renormalise go just below `*pos`, in lane order (the decoder reads them in lane order).
/// A symbol's info word comes from `tab` (entries 0 ..< 8 · regs, or with `windowed` the 32 around
/// q = 0), or, for a vector with a symbol outside it or when regs is 0, from one 32-bit
/// gather of the packed symbols' low halves. The reciprocal half is not needed: q = xs / freq is
/// found in float and corrected to the exact floor (see below). `small`: every freq of the class
/// is at most 2048 (a constant after inlining).
static inline __attribute__((always_inline)) TGT __m256i enc8(__m256i x, __m256i qv, __m256i live, __m256i rad, __m256i escsym,
                               const Table8 *tab, int regs, int windowed,
                               const uint64_t *csym, uint16_t *buf, ptrdiff_t *pos, __m256i *escacc, int small) {
    const __m256i m12 = _mm256_set1_epi32(0xFFF), one = _mm256_set1_epi32(1), z = _mm256_setzero_si256();
    // Symbol index: q + radius, or the escape symbol 2·radius + 1 when |q| > radius (unsigned min).
    // Dead lanes load q = 0 (index radius: no escape, inside any window).
    __m256i info;
    if (windowed) {
        // The window holds q = -15 ... 16 (radius >= 16 here: none of them escapes) at q + 15; a
        // vector with a q outside it (unsigned q + 15 >= 32) gathers. Only such a vector can
        // hold an escape, so only it needs the index and the escape check.
        __m256i local = _mm256_add_epi32(qv, _mm256_set1_epi32(15));
        if (_mm256_testz_si256(local, _mm256_set1_epi32(~31))) {
            info = lookup8(tab, local, 4);
        } else {
            __m256i idx = _mm256_min_epu32(_mm256_add_epi32(qv, rad), escsym);
            *escacc = _mm256_max_epu32(*escacc, idx);
            info = _mm256_i32gather_epi32((const int *)csym, idx, 8);
        }
    } else {
        __m256i idx = _mm256_min_epu32(_mm256_add_epi32(qv, rad), escsym);
        *escacc = _mm256_max_epu32(*escacc, idx); // reaches escsym iff some symbol escapes
        if (regs) info = lookup8(tab, idx, regs);
        else info = _mm256_i32gather_epi32((const int *)csym, idx, 8); // low halves: little-endian
    }
    __m256i freq = _mm256_and_si256(info, m12);
    __m256i cum = _mm256_and_si256(_mm256_srli_epi32(info, 12), m12);
    // x >= freq << 20  <=>  x >> 20 > freq - 1
    __m256i fm1 = _mm256_sub_epi32(freq, one);
    __m256i need = _mm256_and_si256(_mm256_cmpgt_epi32(_mm256_srli_epi32(x, 20), fm1), live);
    unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(need));
    // The low words of the 8 states, in lane order, then those of the set lanes moved to the top.
    const __m256i lo16 = _mm256_setr_epi8(0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1,
                                          0, 1, 4, 5, 8, 9, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1);
    __m128i words = _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_shuffle_epi8(x, lo16), 0x08));
    words = _mm_shuffle_epi8(words, _mm_load_si128((const __m128i *)compress_lut[m]));
    // Always stored (8 words below pos; the buffer keeps 8 spare words): only the top p are kept.
    _mm_storeu_si128((__m128i *)(buf + *pos - 8), words);
    *pos -= __builtin_popcount(m);
    __m256i xs = _mm256_blendv_epi8(x, _mm256_srli_epi32(x, 16), need);
    // q = floor(xs / freq) < 2^20 (xs < freq · 2^20): xs as float (hi · 2^16 + lo, one rounding)
    // over freq (exact) is within 1/8 of xs / freq, and the float subtraction of 1/2 adds at most
    // 1/16, so its truncation e is q or q − 1 (q >= 16: xs >= 2^16 or xs >= freq · 2^4). With the
    // remainder rem = xs − e·freq in [0, 2·freq), the new state xs + cum + q·(4096 − freq) is
    // e·4096 + rem + cum, plus 4096 − freq when rem >= freq (e = q − 1).
    // With freq <= 2048, xs < 2^31 and the signed conversion rounds it once to the same float
    // (six instructions fewer than the unsigned one).
    __m256 xf = small ? _mm256_cvtepi32_ps(xs)
                      : _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(xs, 16)), _mm256_set1_ps(65536.0f)),
                                      _mm256_cvtepi32_ps(_mm256_and_si256(xs, _mm256_set1_epi32(0xFFFF))));
    __m256i e = _mm256_cvttps_epi32(_mm256_sub_ps(_mm256_div_ps(xf, _mm256_cvtepi32_ps(freq)), _mm256_set1_ps(0.5f)));
    __m256i rem = _mm256_sub_epi32(xs, _mm256_mullo_epi32(e, freq));
    __m256i low = _mm256_cmpgt_epi32(rem, fm1); // rem >= freq
    __m256i nx = _mm256_add_epi32(_mm256_add_epi32(_mm256_slli_epi32(e, 12), rem),
                                  _mm256_add_epi32(cum, _mm256_and_si256(low, _mm256_sub_epi32(_mm256_set1_epi32(4096), freq))));
    return _mm256_blendv_epi8(x, nx, live);
}

/// One channel's T tokens on the four state vectors (named, so they stay in registers).
static inline __attribute__((always_inline)) TGT void channel8(__m256i x[4], const int32_t *qc, ptrdiff_t T, __m256i rad, __m256i escsym,
                                const Table8 *tab, int regs, int windowed, const uint64_t *csym,
                                uint16_t *buf, ptrdiff_t *pos, __m256i *escacc, int small) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), all = _mm256_set1_epi32(-1);
    __m256i x0 = x[0], x1 = x[1], x2 = x[2], x3 = x[3], ea = *escacc;
    ptrdiff_t p = *pos, t0 = ((T - 1) / 32) * 32;
#define ENC(xi, qv, live) xi = enc8(xi, qv, live, rad, escsym, tab, regs, windowed, csym, buf, &p, &ea, small)
    if (T - t0 < 32) {
        // The last, partial step: lanes at or past T keep their state and write no word.
        __m256i rem = _mm256_set1_epi32((int)(T - t0));
        __m256i l3 = _mm256_cmpgt_epi32(rem, _mm256_add_epi32(lanes, _mm256_set1_epi32(24)));
        __m256i l2 = _mm256_cmpgt_epi32(rem, _mm256_add_epi32(lanes, _mm256_set1_epi32(16)));
        __m256i l1 = _mm256_cmpgt_epi32(rem, _mm256_add_epi32(lanes, _mm256_set1_epi32(8)));
        __m256i l0 = _mm256_cmpgt_epi32(rem, lanes);
        ENC(x3, _mm256_maskload_epi32(qc + t0 + 24, l3), l3);
        ENC(x2, _mm256_maskload_epi32(qc + t0 + 16, l2), l2);
        ENC(x1, _mm256_maskload_epi32(qc + t0 + 8, l1), l1);
        ENC(x0, _mm256_maskload_epi32(qc + t0, l0), l0);
        t0 -= 32;
    }
    for (; t0 >= 0; t0 -= 32) {
        ENC(x3, _mm256_loadu_si256((const __m256i *)(qc + t0 + 24)), all);
        ENC(x2, _mm256_loadu_si256((const __m256i *)(qc + t0 + 16)), all);
        ENC(x1, _mm256_loadu_si256((const __m256i *)(qc + t0 + 8)), all);
        ENC(x0, _mm256_loadu_si256((const __m256i *)(qc + t0)), all);
    }
#undef ENC
    x[0] = x0; x[1] = x1; x[2] = x2; x[3] = x3;
    *pos = p;
    *escacc = ea;
}

/// The largest freq among the class's n packed symbols.
static inline TGT uint32_t max_freq(const uint64_t *csym, int n) {
    const __m256i m12 = _mm256_set1_epi32(0xFFF);
    __m256i mx = _mm256_setzero_si256();
    int i = 0;
    for (; i + 4 <= n; i += 4) mx = _mm256_max_epu32(mx, _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(csym + i)), m12));
    uint32_t lanes[8], m = 0;
    _mm256_storeu_si256((__m256i *)lanes, mx);
    for (int l = 0; l < 8; l += 2) m = lanes[l] > m ? lanes[l] : m; // even lanes: the low halves
    for (; i < n; i++) m = (uint32_t)(csym[i] & 0xFFF) > m ? (uint32_t)(csym[i] & 0xFFF) : m;
    return m;
}

/// Whether every freq of the class is at most 2048; channels come sorted by class, so the answer
/// for the last class (`*sym`) is kept in `*small`.
static inline TGT int small_class(const uint64_t *csym, int n, const uint64_t **sym, int *small) {
    if (csym != *sym) { *sym = csym; *small = max_freq(csym, n) <= 2048; }
    return *small;
}

/// Prefetches the next share of `ahead` (one channel's: ahead_bytes / C, whole lines) into L2, so
/// the caller's next group streams in from memory while this one codes (the encoder's first pass
/// over a group otherwise waits on DRAM). `*done` counts the bytes already requested.
static inline void prefetch_share(const void *ahead, ptrdiff_t ahead_bytes, ptrdiff_t C, ptrdiff_t *done) {
    if (!ahead) return;
    ptrdiff_t end = *done + ((ahead_bytes + C - 1) / C + 63) / 64 * 64;
    if (end > ahead_bytes) end = ahead_bytes;
    for (; *done < end; *done += 64) _mm_prefetch((const char *)ahead + *done, _MM_HINT_T1);
}

TGT ptrdiff_t clossy_rans32_encode_avx2(uint32_t *states, uint16_t *buf, ptrdiff_t pos, const int32_t *q,
                                        ptrdiff_t T, ptrdiff_t C, const ptrdiff_t *order, const ptrdiff_t *classes,
                                        const uint64_t *sym, const int32_t *radius,
                                        uint8_t *esc, const void *ahead, ptrdiff_t ahead_bytes) {
    if (T <= 0) { memset(esc, 0, (size_t)C); return pos; }
    __m256i x[4];
    for (int i = 0; i < 4; i++) x[i] = _mm256_loadu_si256((const __m256i *)states + i);
    Table8 tab;
    const __m256i z = _mm256_setzero_si256();
    ptrdiff_t fetched = 0;
    const uint64_t *small_sym = NULL;
    int small = 0;
    for (ptrdiff_t k = C - 1; k >= 0; k--) {
        prefetch_share(ahead, ahead_bytes, C, &fetched);
        ptrdiff_t c = order[k], cls = classes[c];
        int32_t r = radius[cls];
        const __m256i rad = _mm256_set1_epi32(r), escsym = _mm256_set1_epi32(2 * r + 1);
        const uint64_t *csym = sym + cls * 256;
        const int32_t *qc = q + c * T;
        __m256i escacc = z;
        int n = 2 * r + 2; // table entries, escape included
        if (n <= 8) {
            load_table8(&tab, csym, 1);
            channel8(x, qc, T, rad, escsym, &tab, 1, 0, csym, buf, &pos, &escacc, 0);
        } else if (n <= 16) {
            load_table8(&tab, csym, 2);
            channel8(x, qc, T, rad, escsym, &tab, 2, 0, csym, buf, &pos, &escacc, 0);
        } else if (n <= 32) {
            load_table8(&tab, csym, 4);
            if (small_class(csym, n, &small_sym, &small)) channel8(x, qc, T, rad, escsym, &tab, 4, 0, csym, buf, &pos, &escacc, 1);
            else channel8(x, qc, T, rad, escsym, &tab, 4, 0, csym, buf, &pos, &escacc, 0);
        } else {
            // Wider models: the 32 entries for q in -15...16 in registers; a vector with a symbol
            // beyond them gathers.
            load_table8(&tab, csym + (r - 15), 4);
            if (small_class(csym, n, &small_sym, &small)) channel8(x, qc, T, rad, escsym, &tab, 4, 1, csym, buf, &pos, &escacc, 1);
            else channel8(x, qc, T, rad, escsym, &tab, 4, 1, csym, buf, &pos, &escacc, 0);
        }
        esc[k] = _mm256_movemask_epi8(_mm256_cmpeq_epi32(escacc, escsym)) != 0;
    }
    for (int i = 0; i < 4; i++) _mm256_storeu_si256((__m256i *)states + i, x[i]);
    return pos;
}


static inline uint8_t *put_varint(uint8_t *o, int32_t v) {
    uint32_t u = ((uint32_t)v << 1) ^ (uint32_t)(v >> 31); // zigzag
    while (u >= 0x80) { *o++ = (uint8_t)(u & 0x7F) | 0x80; u >>= 7; }
    *o++ = (uint8_t)u;
    return o;
}

TGT ptrdiff_t clossy_escape_varints_avx2(const int32_t *q, ptrdiff_t T, int32_t radius, uint8_t *out) {
    const __m256i hi = _mm256_set1_epi32(radius), lo = _mm256_set1_epi32(-radius);
    uint8_t *o = out;
    ptrdiff_t t = 0;
    for (; t + 8 <= T; t += 8) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(q + t));
        __m256i out_of = _mm256_or_si256(_mm256_cmpgt_epi32(v, hi), _mm256_cmpgt_epi32(lo, v));
        for (unsigned m = (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(out_of)); m; m &= m - 1)
            o = put_varint(o, q[t + __builtin_ctz(m)]);
    }
    for (; t < T; t++) if (q[t] > radius || q[t] < -radius) o = put_varint(o, q[t]);
    return o - out;
}

// AVX-512 (16 lanes, two vectors for the 32 states). A symbol's entry is found with in-register
// permutes (vpermt2d over 32 entries) in its class's table, or in the 64 entries around q = 0 for
// wider tables, instead of gathers, which dominate the AVX2 kernel; the renormalisation words of
// a vector are compressed in lane order and stored below `pos`, as in the AVX2 kernel: the same bytes.
#define TGT512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,popcnt")))

/// One class's table as 32-bit info and reciprocal words, 32 entries per pair of registers.
typedef struct { __m512i info[4], rlo[4]; } Table512;

/// Entries 0..<n of the class's packed symbols split into `t` (n 32 or 64).
static inline TGT512 void load_table(Table512 *t, const uint64_t *sym, int n) {
    for (int j = 0; j < n / 16; j++) {
        __m512i a = _mm512_loadu_si512(sym + 16 * j), b = _mm512_loadu_si512(sym + 16 * j + 8);
        // Low and high 32-bit halves of 16 entries, in entry order.
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        t->info[j] = _mm512_permutex2var_epi32(a, even, b);
        t->rlo[j] = _mm512_permutex2var_epi32(a, odd, b);
    }
}

/// table[idx] for idx < 32 * pairs (pairs 1 or 2, a constant after inlining).
static inline TGT512 __m512i lookup(const __m512i *tab, __m512i idx, int pairs) {
    __m512i r = _mm512_permutex2var_epi32(tab[0], idx, tab[1]);
    if (pairs >= 2) {
        __m512i r1 = _mm512_permutex2var_epi32(tab[2], idx, tab[3]);
        r = _mm512_mask_blend_epi32(_mm512_test_epi32_mask(idx, _mm512_set1_epi32(32)), r, r1);
    }
    return r;
}

/// Pushes 16 symbols (`live` lanes) onto 16 states. The table in registers holds entries
/// wbase ..< wbase + 32 · pairs (wbase 0 unless `windowed`); a vector with a symbol outside it,
/// or any vector when pairs is 0, gathers from the class's packed symbols instead.
static inline TGT512 __m512i enc16(__m512i x, __m512i qv, __mmask16 live, __m512i rad, __m512i escsym,
                                   const Table512 *tab, int pairs, int windowed, __m512i wbase, const uint64_t *csym,
                                   uint16_t *buf, ptrdiff_t *pos, __mmask16 *escacc) {
    const __m512i m12 = _mm512_set1_epi32(0xFFF), one = _mm512_set1_epi32(1);
    __m512i idx = _mm512_min_epu32(_mm512_add_epi32(qv, rad), escsym);
    *escacc |= _mm512_mask_cmpeq_epi32_mask(live, idx, escsym);
    __m512i info, rlo, local = idx;
    int gather = !pairs;
    if (windowed) {
        local = _mm512_sub_epi32(idx, wbase);
        gather = _mm512_mask_cmpge_epu32_mask(live, local, _mm512_set1_epi32(32 * pairs)) != 0;
    }
    if (!gather) {
        info = lookup(tab->info, local, pairs);
        rlo = lookup(tab->rlo, local, pairs);
    } else {
        __m512i g0 = _mm512_i32gather_epi64(_mm512_castsi512_si256(idx), (const long long *)csym, 8);
        __m512i g1 = _mm512_i32gather_epi64(_mm512_extracti64x4_epi64(idx, 1), (const long long *)csym, 8);
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
        info = _mm512_permutex2var_epi32(g0, even, g1);
        rlo = _mm512_permutex2var_epi32(g0, odd, g1);
    }
    __m512i freq = _mm512_and_si512(info, m12);
    __m512i cum = _mm512_and_si512(_mm512_srli_epi32(info, 12), m12);
    __m512i sh = _mm512_srli_epi32(info, 24);
    __mmask16 need = _mm512_mask_cmpge_epu32_mask(live, x, _mm512_slli_epi32(freq, 20));
    unsigned p = (unsigned)__builtin_popcount(need);
    __m256i words = _mm512_cvtepi32_epi16(_mm512_maskz_compress_epi32(need, x));
    _mm256_mask_storeu_epi16(buf + *pos - p, (__mmask16)((1u << p) - 1), words);
    *pos -= p;
    __m512i xs = _mm512_mask_blend_epi32(need, x, _mm512_srli_epi32(x, 16));
    // q = floor(xs / freq) with the 33-bit reciprocal, as in enc8.
    __m512i pe = _mm512_mul_epu32(xs, rlo);
    __m512i po = _mm512_mul_epu32(_mm512_srli_epi64(xs, 32), _mm512_srli_epi64(rlo, 32));
    __m512i mh = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(pe, 32), po);
    __m512i t = _mm512_add_epi32(mh, _mm512_srli_epi32(_mm512_sub_epi32(xs, mh), 1));
    __m512i q = _mm512_srlv_epi32(t, _mm512_sub_epi32(sh, one));
    q = _mm512_mask_add_epi32(q, _mm512_cmpeq_epi32_mask(sh, _mm512_setzero_si512()), q, xs);
    __m512i nx = _mm512_add_epi32(_mm512_add_epi32(xs, cum),
                                  _mm512_mullo_epi32(q, _mm512_sub_epi32(_mm512_set1_epi32(4096), freq)));
    return _mm512_mask_blend_epi32(live, x, nx);
}

/// One channel's T tokens on the two state vectors, with its table in `pairs` register pairs.
static inline TGT512 void channel16(__m512i *x0, __m512i *x1, const int32_t *qc, ptrdiff_t T, __m512i rad,
                                    __m512i escsym, const Table512 *tab, int pairs, int windowed, __m512i wbase,
                                    const uint64_t *csym, uint16_t *buf, ptrdiff_t *pos, __mmask16 *escacc) {
    ptrdiff_t t0 = ((T - 1) / 32) * 32;
    if (T - t0 < 32) {
        ptrdiff_t rem = T - t0;
        __mmask16 live1 = rem >= 32 ? 0xFFFF : rem <= 16 ? 0 : (__mmask16)((1u << (rem - 16)) - 1);
        __mmask16 live0 = rem >= 16 ? 0xFFFF : (__mmask16)((1u << rem) - 1);
        *x1 = enc16(*x1, _mm512_maskz_loadu_epi32(live1, qc + t0 + 16), live1, rad, escsym, tab, pairs, windowed, wbase, csym, buf, pos, escacc);
        *x0 = enc16(*x0, _mm512_maskz_loadu_epi32(live0, qc + t0), live0, rad, escsym, tab, pairs, windowed, wbase, csym, buf, pos, escacc);
        t0 -= 32;
    }
    for (; t0 >= 0; t0 -= 32) {
        *x1 = enc16(*x1, _mm512_loadu_si512(qc + t0 + 16), 0xFFFF, rad, escsym, tab, pairs, windowed, wbase, csym, buf, pos, escacc);
        *x0 = enc16(*x0, _mm512_loadu_si512(qc + t0), 0xFFFF, rad, escsym, tab, pairs, windowed, wbase, csym, buf, pos, escacc);
    }
}

TGT512 ptrdiff_t clossy_rans32_encode_avx512(uint32_t *states, uint16_t *buf, ptrdiff_t pos, const int32_t *q,
                                             ptrdiff_t T, ptrdiff_t C, const ptrdiff_t *order, const ptrdiff_t *classes,
                                             const uint64_t *sym, const int32_t *radius, uint8_t *esc,
                                             const void *ahead, ptrdiff_t ahead_bytes) {
    if (T <= 0) { memset(esc, 0, (size_t)C); return pos; }
    __m512i x0 = _mm512_loadu_si512(states), x1 = _mm512_loadu_si512(states + 16);
    Table512 tab;
    ptrdiff_t fetched = 0;
    for (ptrdiff_t k = C - 1; k >= 0; k--) {
        prefetch_share(ahead, ahead_bytes, C, &fetched);
        ptrdiff_t c = order[k], cls = classes[c];
        int32_t r = radius[cls];
        const __m512i rad = _mm512_set1_epi32(r), escsym = _mm512_set1_epi32(2 * r + 1);
        const uint64_t *csym = sym + cls * 256;
        const int32_t *qc = q + c * T;
        __mmask16 escacc = 0;
        int n = 2 * r + 2; // table entries, escape included
        const __m512i z = _mm512_setzero_si512();
        if (n <= 32) {
            load_table(&tab, csym, 32);
            channel16(&x0, &x1, qc, T, rad, escsym, &tab, 1, 0, z, csym, buf, &pos, &escacc);
        } else if (n <= 64) {
            load_table(&tab, csym, 64);
            channel16(&x0, &x1, qc, T, rad, escsym, &tab, 2, 0, z, csym, buf, &pos, &escacc);
        } else {
            // Wider models: the 64 entries around q = 0 (|q| <= 31 with r >= 32), where nearly
            // every symbol falls; the rare vector with a symbol beyond them gathers.
            load_table(&tab, csym + (r - 31), 64);
            channel16(&x0, &x1, qc, T, rad, escsym, &tab, 2, 1, _mm512_set1_epi32(r - 31), csym, buf, &pos, &escacc);
        }
        esc[k] = escacc != 0;
    }
    _mm512_storeu_si512(states, x0);
    _mm512_storeu_si512(states + 16, x1);
    return pos;
}

#else
ptrdiff_t clossy_rans32_encode_avx2(uint32_t *states, uint16_t *buf, ptrdiff_t pos, const int32_t *q,
                                    ptrdiff_t T, ptrdiff_t C, const ptrdiff_t *order, const ptrdiff_t *classes,
                                    const uint64_t *sym, const int32_t *radius, uint8_t *esc,
                                    const void *ahead, ptrdiff_t ahead_bytes) {
    (void)states; (void)buf; (void)q; (void)T; (void)C; (void)order; (void)classes;
    (void)sym; (void)radius; (void)esc; (void)ahead; (void)ahead_bytes;
    __builtin_trap(); // callers check clossy_has_avx2() first
    return pos;
}
ptrdiff_t clossy_escape_varints_avx2(const int32_t *q, ptrdiff_t T, int32_t radius, uint8_t *out) {
    (void)q; (void)T; (void)radius; (void)out;
    __builtin_trap(); // callers check clossy_has_avx2() first
    return 0;
}
ptrdiff_t clossy_rans32_encode_avx512(uint32_t *states, uint16_t *buf, ptrdiff_t pos, const int32_t *q,
                                      ptrdiff_t T, ptrdiff_t C, const ptrdiff_t *order, const ptrdiff_t *classes,
                                      const uint64_t *sym, const int32_t *radius, uint8_t *esc,
                                      const void *ahead, ptrdiff_t ahead_bytes) {
    (void)states; (void)buf; (void)q; (void)T; (void)C; (void)order; (void)classes;
    (void)sym; (void)radius; (void)esc; (void)ahead; (void)ahead_bytes;
    __builtin_trap(); // callers check clossy_has_avx512() first
    return pos;
}
#endif

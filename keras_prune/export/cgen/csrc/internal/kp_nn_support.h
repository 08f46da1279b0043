/*
 * Internal to the kernels: TFLite's integer requantization and the DSP switch.
 */
#ifndef KP_NN_SUPPORT_H
#define KP_NN_SUPPORT_H

#include <stdint.h>

/* The Cortex-M4 DSP paths: on when the compiler targets an Armv7E-M core, off with
 * -DKP_NO_DSP (to measure or test the portable path on the same core). */
#if defined(__ARM_FEATURE_DSP) && !defined(KP_NO_DSP)
#define KP_ARM_DSP 1
#else
#define KP_ARM_DSP 0
#endif

#define KP_MAX(a, b) ((a) > (b) ? (a) : (b))
#define KP_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KP_CLAMP(x, lo, hi) KP_MIN(KP_MAX((x), (lo)), (hi))

/* Byte i of a packed 4-weight group word (sparse storage) as a signed weight, without an
 * implementation-defined cast. */
static inline int32_t kp_word_weight(uint32_t word, int32_t i)
{
    const int32_t b = (int32_t)((word >> (8 * i)) & 0xFFU);
    return b - ((b & 0x80) << 1);
}

/* gemmlowp's SaturatingRoundingDoublingHighMul: high half of 2ab, rounded half away
 * from zero; the one overflow case (INT32_MIN squared) saturates. */
static inline int32_t kp_doubling_high_mul(int32_t a, int32_t b)
{
    if (a == b && a == INT32_MIN) {
        return INT32_MAX;
    }
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? (1LL << 30) : (1 - (1LL << 30));
    const int64_t s = ab + nudge;
    /* C division truncates toward zero, as gemmlowp relies on */
    return (int32_t)(s / (1LL << 31));
}

/* gemmlowp's RoundingDivideByPOT: x / 2^exponent, rounded half away from zero. */
static inline int32_t kp_divide_by_pot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)((1U << exponent) - 1U);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLite's MultiplyByQuantizedMultiplier (the double-rounding form TFLM uses). */
static inline int32_t kp_requantize(int32_t acc, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return kp_divide_by_pot(kp_doubling_high_mul((int32_t)((uint32_t)acc << left), multiplier),
                            right);
}

/* One output channel's requantization, for the sparse kernels' DSP paths (kp_rq_short in
 * kp_acle.h). Most channels take the short form (fast != 0): no
 * left shift, a right shift e of 1-22, a positive multiplier and an accumulator that
 * provably doubles without overflow (|bias| < 2^29, and fewer than n = 8192 terms of at
 * most 2^16 each, such as kept groups of 4 * 128 * 128, keep it below 2^30). Then kp_rq_apply's rounding shift of the
 * high product h is (h + 2^(e-1) - (h < 0)) >> e, rounding half away from zero, and the
 * output offset rides in the same add as offset << e (a multiple of 2^e, so the shift
 * keeps it whole; |h| <= 2^30 and e <= 22 leave room for it): half is that addend. */
typedef struct {
    int32_t fast;
    int32_t multiplier;
    int32_t shift;
    int32_t e;
    int32_t half;
} kp_row_rq;

static inline kp_row_rq kp_row_rq_make(int32_t multiplier, int32_t shift, int32_t offset,
                                       int32_t bias, int32_t n)
{
    kp_row_rq r;
    r.multiplier = multiplier;
    r.shift = shift;
    r.e = -shift;
    r.fast = (uint32_t)(r.e - 1) < 22U && multiplier > 0 && n < 8192 &&
             (uint32_t)bias + (1U << 29) < (1U << 30);
    /* the shift counts masked to 0-31 keep this defined where it goes unused */
    r.half = (int32_t)((1U << ((r.e - 1) & 31)) + ((uint32_t)offset << (r.e & 31)));
    return r;
}

#endif /* KP_NN_SUPPORT_H */

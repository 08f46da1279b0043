/*
 * SOFTMAX int8 -> int8 (output scale 1/256, zero point -128): TFLM's reference int8
 * Softmax. exp() and 1/x are gemmlowp's fixed-point approximations, evaluated here step
 * by step in the same order and with the same roundings, so the result is bit-exact.
 *
 * Fixed-point formats: rescaled input differences are Q5.26, exp() results Q0.31, their
 * running sum Q12.19, the Newton-Raphson iterate of 1/x Q2.29.
 */
#include "internal/kp_nn_check.h"
#include "internal/kp_nn_support.h"

#define KP_SUM_INT_BITS 12

/* x * 2^e for e in [1, 30], saturating. gemmlowp saturates symmetrically, so -2^(31-e)
 * saturates too although its product would fit. */
static inline int32_t kp_sat_mul_pot(int32_t x, int32_t e)
{
    const int32_t limit = (int32_t)((1U << (31 - e)) - 1U);
    if (x > limit) {
        return INT32_MAX;
    }
    if (x < -limit) {
        return INT32_MIN;
    }
    return x * (1 << e);
}

/* exp(a) for a in [-1/4, 0): a fourth-order Taylor polynomial around -1/8. */
static int32_t kp_exp_on_quarter(int32_t a)
{
    const int32_t exp_minus_one_eighth = 1895147668;
    const int32_t one_third = 715827883;
    const int32_t x = a + (1 << 28);
    const int32_t x2 = kp_doubling_high_mul(x, x);
    const int32_t x3 = kp_doubling_high_mul(x2, x);
    const int32_t x4 = kp_doubling_high_mul(x2, x2);
    const int32_t x4_over_4 = kp_divide_by_pot(x4, 2);
    const int32_t poly =
        kp_divide_by_pot(kp_doubling_high_mul(x4_over_4 + x3, one_third) + x2, 1);
    return exp_minus_one_eighth + kp_doubling_high_mul(exp_minus_one_eighth, x + poly);
}

/* exp(a) for a <= 0 (Q5.26 in, Q0.31 out): the polynomial on a's offset within its
 * quarter, times exp(-2^k) for every bit k of the remaining whole quarters. */
static int32_t kp_exp_on_negative(int32_t a)
{
    /* exp(-1/4), exp(-1/2), exp(-1), exp(-2), exp(-4), exp(-8), exp(-16) in Q0.31 */
    static const int32_t exp_minus_pot[7] = {1672461947, 1302514674, 790015084, 290630308,
                                             39332535,   720401,     242};
    const int32_t quarter = 1 << 24;
    const int32_t offset = (a & (quarter - 1)) - quarter;
    const int32_t whole = offset - a;
    int32_t result = kp_exp_on_quarter(kp_sat_mul_pot(offset, 5));
    int32_t k;
    for (k = 0; k < 7; ++k) {
        if (whole & (1 << (24 + k))) {
            result = kp_doubling_high_mul(result, exp_minus_pot[k]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + a) for a in [0, 1): three Newton-Raphson steps from the 48/17 - 32/17 d
 * estimate, on d = (1 + a) / 2. */
static int32_t kp_one_over_one_plus_x(int32_t a)
{
    const int64_t s = (int64_t)a + INT32_MAX;
    const int32_t half_d = (int32_t)((s + (s >= 0 ? 1 : -1)) / 2);
    int32_t x = 1515870810 + kp_doubling_high_mul(half_d, -1010580540);
    int32_t i;
    for (i = 0; i < 3; ++i) {
        const int32_t one_minus_dx = (1 << 29) - kp_doubling_high_mul(half_d, x);
        x += kp_sat_mul_pot(kp_doubling_high_mul(x, one_minus_dx), 2);
    }
    return kp_sat_mul_pot(x, 1);
}

static inline int32_t kp_clz32(uint32_t x)
{
#if defined(__GNUC__)
    return (int32_t)__builtin_clz(x);
#else
    int32_t n = 0;
    while ((x & 0x80000000U) == 0U) {
        x <<= 1;
        ++n;
    }
    return n;
#endif
}

kp_status kp_softmax_s8(const kp_softmax_params *params, const int8_t *input, int32_t rows,
                        int32_t row_size, int8_t *output)
{
    int32_t r, c;
    if (params == 0 || input == 0 || output == 0 || rows < 1 || row_size < 1 ||
        params->input_left_shift < 0 || params->input_left_shift > 30 ||
        params->diff_min > 0 ||
        (int64_t)params->diff_min * ((int64_t)1 << params->input_left_shift) < INT32_MIN) {
        return KP_ERR_ARG;
    }
    for (r = 0; r < rows; ++r) {
        const int8_t *in = input + r * row_size;
        int8_t *out = output + r * row_size;
        int32_t max = -128, sum = 0, headroom, scale, exponent;
        for (c = 0; c < row_size; ++c) {
            max = KP_MAX(max, (int32_t)in[c]);
        }
        for (c = 0; c < row_size; ++c) {
            const int32_t diff = in[c] - max;
            if (diff >= params->diff_min) {
                const int32_t e = kp_exp_on_negative(kp_doubling_high_mul(
                    diff * (1 << params->input_left_shift), params->input_multiplier));
                sum += kp_divide_by_pot(e, KP_SUM_INT_BITS);
                /* From 2^28 on the output shift would pass 31, where TFLM stops with
                 * an error; each term is below 2^20, so sum itself cannot overflow. */
                if (sum >= (1 << 28)) {
                    return KP_ERR_ARG;
                }
            }
        }
        /* sum >= 2^19 (the maximum contributes exp(0)), so it has a leading one. */
        headroom = kp_clz32((uint32_t)sum);
        scale = kp_one_over_one_plus_x(
            (int32_t)(((uint32_t)sum << headroom) - 0x80000000U));
        exponent = KP_SUM_INT_BITS - headroom + 31 - 8;
        for (c = 0; c < row_size; ++c) {
            const int32_t diff = in[c] - max;
            int32_t v = -128;
            if (diff >= params->diff_min) {
                const int32_t e = kp_exp_on_negative(kp_doubling_high_mul(
                    diff * (1 << params->input_left_shift), params->input_multiplier));
                v = kp_divide_by_pot(kp_doubling_high_mul(scale, e), exponent) - 128;
                v = KP_CLAMP(v, -128, 127);
            }
            out[c] = (int8_t)v;
        }
    }
    return KP_OK;
}

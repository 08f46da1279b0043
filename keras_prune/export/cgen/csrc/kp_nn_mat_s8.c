/*
 * Portable inner products for FULLY_CONNECTED and CONV_2D (kp_nn_internal.h). The
 * Cortex-M4 build takes the SMLAD versions in kp_nn_mat_s8_dsp.c instead.
 */
#include "kp_nn_internal.h"

#if !KP_ARM_DSP

/* Requantize one accumulator to the clamped int8 output of channel r. */
static inline int8_t kp_nn_out(int32_t acc, const kp_quant_params *quant, int32_t r,
                               int32_t output_offset, kp_activation act)
{
    const int32_t i = quant->per_channel ? r : 0;
    int32_t v = kp_requantize(acc, quant->multiplier[i], quant->shift[i]) + output_offset;
    v = KP_CLAMP(v, act.min, act.max);
    return (int8_t)v;
}

void kp_nn_vec_mat_s8(const int8_t *x, const int8_t *w, int32_t k_len, int32_t rows,
                      const int32_t *eff_bias, const kp_quant_params *quant,
                      int32_t output_offset, kp_activation act, int8_t *out)
{
    int32_t r, k;
    for (r = 0; r < rows; ++r) {
        const int8_t *row = w + r * k_len;
        int32_t acc = eff_bias[r];
        for (k = 0; k < k_len; ++k) {
            acc += (int32_t)x[k] * (int32_t)row[k];
        }
        out[r] = kp_nn_out(acc, quant, r, output_offset, act);
    }
}

void kp_nn_mat_mult_s8_s16_2col(const int8_t *w, const int16_t *cols, int32_t k_len,
                                int32_t rows, const int32_t *eff_bias,
                                const kp_quant_params *quant, int32_t output_offset,
                                kp_activation act, int8_t *out0, int8_t *out1)
{
    const int16_t *col1 = cols + k_len;
    int32_t r, k;
    for (r = 0; r < rows; ++r) {
        const int8_t *row = w + r * k_len;
        int32_t acc0 = eff_bias[r];
        int32_t acc1 = acc0;
        for (k = 0; k < k_len; ++k) {
            const int32_t wk = row[k];
            acc0 += wk * cols[k];
            acc1 += wk * col1[k];
        }
        out0[r] = kp_nn_out(acc0, quant, r, output_offset, act);
        out1[r] = kp_nn_out(acc1, quant, r, output_offset, act);
    }
}

#else
/* Keeps the translation unit non-empty (ISO C) when the DSP versions are compiled. */
typedef int kp_nn_mat_s8_portable_unused;
#endif /* !KP_ARM_DSP */

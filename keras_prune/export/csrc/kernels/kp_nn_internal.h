/*
 * Internal to the kernels: the inner products FULLY_CONNECTED and CONV_2D share. Each has
 * a portable C99 version (kp_nn_mat_s8.c) and a Cortex-M4 DSP version (kp_nn_mat_s8_dsp.c);
 * KP_ARM_DSP compiles exactly one of them.
 */
#ifndef KP_NN_INTERNAL_H
#define KP_NN_INTERNAL_H

#include "kp_nn.h"
#include "kp_nn_support.h"

/* out[r] = clamp(requant(eff_bias[r] + sum_k x[k] * w[r * k_len + k]) + output_offset)
 * for r in [0, rows). */
void kp_nn_vec_mat_s8(const int8_t *x, const int8_t *w, int32_t k_len, int32_t rows,
                      const int32_t *eff_bias, const kp_quant_params *quant,
                      int32_t output_offset, kp_activation act, int8_t *out);

/* The same for two input columns at once, given as int16 (cols[0..k_len) is column 0,
 * cols[k_len..2 k_len) column 1), writing out0[r] and out1[r]. Each weight row is read
 * once for both columns. out1 may equal out0 when both columns are the same. */
void kp_nn_mat_mult_s8_s16_2col(const int8_t *w, const int16_t *cols, int32_t k_len,
                                int32_t rows, const int32_t *eff_bias,
                                const kp_quant_params *quant, int32_t output_offset,
                                kp_activation act, int8_t *out0, int8_t *out1);

#endif /* KP_NN_INTERNAL_H */

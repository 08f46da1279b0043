/*
 * Internal to the kernels: the inner products FULLY_CONNECTED and CONV_2D share, and the
 * input-stationary one of the zero-skipping FULLY_CONNECTED. Each has
 * a portable C99 version (kp_nn_mat_s8.c) and a Cortex-M4 DSP version (kp_nn_mat_s8_dsp.c);
 * KP_ARM_DSP compiles exactly one of them.
 */
#ifndef KP_NN_INTERNAL_H
#define KP_NN_INTERNAL_H

#include "kp_nn.h"
#include "kp_nn_activation.h"
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

/* One input row of kp_zero_skip_fully_connected_s8: acc (w->rows int32) is scratch.
 * Portable in kp_zero_skip_fc_s8.c, Cortex-M4 DSP in kp_zero_skip_fc_s8_dsp.c. */
void kp_nn_zero_skip_vec_s8(const int8_t *x, int32_t input_offset, const kp_input_groups *w,
                            const int32_t *bias, const kp_quant_params *quant,
                            int32_t output_offset, kp_activation act, int32_t *acc,
                            int8_t *out);

#endif /* KP_NN_INTERNAL_H */

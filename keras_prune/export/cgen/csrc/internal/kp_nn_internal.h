/*
 * Internal to the kernels: the inner products FULLY_CONNECTED and CONV_2D are built on
 * (kp_nn_vec_mat_s8.c, kp_nn_mat_mult_s8_s16_2col.c), the input-stationary one of the
 * zero-skipping FULLY_CONNECTED (kp_nn_zero_skip_vec_s8.c), and the output step the two
 * dense products share. Each product has a portable C99 path and a Cortex-M4 DSP path in
 * its file; KP_ARM_DSP compiles exactly one of them.
 */
#ifndef KP_NN_INTERNAL_H
#define KP_NN_INTERNAL_H

#include "kp_nn.h"
#include "kp_nn_activation.h"
#include "internal/kp_nn_support.h"

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

/* One input row of kp_zero_skip_fully_connected_s8: acc (w->rows int32) is scratch. */
void kp_nn_zero_skip_vec_s8(const int8_t *x, int32_t input_offset, const kp_input_groups *w,
                            const int32_t *bias, const kp_quant_params *quant,
                            int32_t output_offset, kp_activation act, int32_t *acc,
                            int8_t *out);

/* How kp_nn_vec_mat_s8 and kp_nn_mat_mult_s8_s16_2col turn an accumulator of row
 * (output channel) r into its clamped int8 output. */
#if KP_ARM_DSP

#include "internal/kp_acle.h"

/* What turns an accumulator into an output. Kept in memory, behind one pointer: the asm
 * loops need every register, so anything live across them is spilled anyway. */
typedef struct {
    const int32_t *multiplier;
    const int32_t *shift;
    int32_t step; /* 1 per channel, 0 per tensor */
    int32_t output_offset;
    kp_activation act;
} kp_out_ctx;

static inline kp_out_ctx kp_out_ctx_of(const kp_quant_params *quant, int32_t output_offset,
                                       kp_activation act)
{
    kp_out_ctx c;
    c.multiplier = quant->multiplier;
    c.shift = quant->shift;
    c.step = quant->per_channel ? 1 : 0;
    c.output_offset = output_offset;
    c.act = act;
    return c;
}

static inline kp_rq kp_rq_of(const kp_out_ctx *c, int32_t r)
{
    const int32_t i = r * c->step;
    return kp_rq_make(c->multiplier[i], c->shift[i]);
}

static inline int8_t kp_rq_out(int32_t acc, kp_rq q, const kp_out_ctx *c)
{
    return (int8_t)kp_clamp(kp_rq_apply(acc, q) + c->output_offset, c->act.min, c->act.max);
}

#else

/* Requantize one accumulator to the clamped int8 output of channel r. */
static inline int8_t kp_nn_out(int32_t acc, const kp_quant_params *quant, int32_t r,
                               int32_t output_offset, kp_activation act)
{
    const int32_t i = quant->per_channel ? r : 0;
    int32_t v = kp_requantize(acc, quant->multiplier[i], quant->shift[i]) + output_offset;
    v = KP_CLAMP(v, act.min, act.max);
    return (int8_t)v;
}

#endif /* KP_ARM_DSP */

#endif /* KP_NN_INTERNAL_H */

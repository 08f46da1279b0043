/*
 * FULLY_CONNECTED, int8, on SIMD-group sparse weights (kp_nn_sparse.h): portable C99.
 * Same arithmetic as kp_fully_connected_s8 on the dense pruned matrix: a removed group
 * adds 0 to the accumulator, and the effective bias already holds input_offset times the
 * row's full weight sum. The Cortex-M4 build takes kp_sparse_fc_s8_dsp.c instead.
 */
#include "kp_nn_sparse_check.h"
#include "kp_nn_support.h"

#if !KP_ARM_DSP

/* Byte i of a packed group word as a signed weight (no implementation-defined cast). */
static inline int32_t kp_group_weight(uint32_t word, int32_t i)
{
    const int32_t b = (int32_t)((word >> (8 * i)) & 0xFFU);
    return b - ((b & 0x80) << 1);
}

/* x[k0 .. k0 + 4) . the group's weights, stopping at in_len (the storage padding of a
 * short last group is never multiplied: the input ends there). */
static inline int32_t kp_group_dot(const int8_t *x, int32_t k0, int32_t in_len, int32_t word)
{
    int32_t acc = 0, i;
    for (i = 0; i < 4 && k0 + i < in_len; ++i) {
        acc += (int32_t)x[k0 + i] * kp_group_weight((uint32_t)word, i);
    }
    return acc;
}

kp_status kp_sparse_fully_connected_s8(const kp_fc_params *params,
                                       const kp_quant_params *quant, int32_t batches,
                                       int32_t in_len, int32_t out_len, const int8_t *input,
                                       const kp_sparse_groups *w, const int32_t *eff_bias,
                                       int8_t *output)
{
    int32_t b, r;
    if (!kp_sparse_fc_args_ok(params, quant, batches, in_len, out_len, input, w, eff_bias,
                              output)) {
        return KP_ERR_ARG;
    }
    for (b = 0; b < batches; ++b) {
        const int8_t *x = input + b * in_len;
        const int32_t *wp = w->words;
        const uint8_t *p8 = (const uint8_t *)w->index;
        const uint16_t *p16 = (const uint16_t *)w->index;
        for (r = 0; r < out_len; ++r) {
            int32_t n = w->counts[r];
            int32_t acc = eff_bias[r];
            int32_t g = 0;
            const int32_t i = quant->per_channel ? r : 0;
            int32_t v;
            if (w->index_kind == KP_SPARSE_RUNS8) {
                while (n > 0) {
                    int32_t run;
                    g += *p8++;
                    run = *p8++;
                    n -= run;
                    for (; run > 0; --run, ++g) {
                        acc += kp_group_dot(x, 4 * g, in_len, *wp++);
                    }
                }
            } else if (w->index_kind == KP_SPARSE_DELTA8) {
                for (; n > 0; --n, ++g) {
                    int32_t d = *p8++;
                    while (d == 255) {
                        g += 255;
                        d = *p8++;
                    }
                    g += d;
                    acc += kp_group_dot(x, 4 * g, in_len, *wp++);
                }
            } else { /* KP_SPARSE_ABS16 */
                for (; n > 0; --n) {
                    g = *p16++;
                    acc += kp_group_dot(x, 4 * g, in_len, *wp++);
                }
            }
            v = kp_requantize(acc, quant->multiplier[i], quant->shift[i]) +
                params->output_offset;
            output[b * out_len + r] =
                (int8_t)KP_CLAMP(v, params->activation.min, params->activation.max);
        }
    }
    return KP_OK;
}

#else
/* Keeps the translation unit non-empty (ISO C) when the DSP version is compiled. */
typedef int kp_sparse_fc_s8_portable_unused;
#endif /* !KP_ARM_DSP */

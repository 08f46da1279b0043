/*
 * FULLY_CONNECTED, int8, skipping the inputs an activation mask zeroed
 * (kp_nn_activation.h): input-stationary over groups of four inputs. The product is
 * kp_nn_zero_skip_vec_s8: portable C99 here, Cortex-M4 DSP in kp_zero_skip_fc_s8_dsp.c.
 */
#include <string.h>

#include "kp_nn_check.h"
#include "kp_nn_internal.h"

kp_status kp_zero_skip_fully_connected_s8(const kp_fc_params *params,
                                          const kp_quant_params *quant, int32_t batches,
                                          int32_t in_len, int32_t out_len,
                                          const int8_t *input, const kp_input_groups *w,
                                          const int32_t *bias, int8_t *output,
                                          int32_t *scratch)
{
    int32_t b;
    if (params == 0 || input == 0 || bias == 0 || output == 0 || scratch == 0 ||
        batches < 1 || in_len < 1 || out_len < 1 || w == 0 || w->rows != out_len ||
        w->k != in_len || w->starts == 0 || (w->row8 != 0 && out_len > 256) ||
        (w->starts[(in_len + 3) / 4] > 0 && w->words == 0) ||
        !kp_activation_ok(params->activation) || !kp_input_offset_ok(params->input_offset) ||
        !kp_output_offset_ok(params->output_offset) || !kp_quant_ok(quant, out_len)) {
        return KP_ERR_ARG;
    }
    for (b = 0; b < batches; ++b) {
        kp_nn_zero_skip_vec_s8(input + b * in_len, params->input_offset, w, bias, quant,
                               params->output_offset, params->activation, scratch,
                               output + b * out_len);
    }
    return KP_OK;
}

#if !KP_ARM_DSP

void kp_nn_zero_skip_vec_s8(const int8_t *x, int32_t input_offset, const kp_input_groups *w,
                            const int32_t *bias, const kp_quant_params *quant,
                            int32_t output_offset, kp_activation act, int32_t *acc,
                            int8_t *out)
{
    const int32_t rows = w->rows, k = w->k, groups = (k + 3) / 4;
    int32_t g, r;
    memcpy(acc, bias, (size_t)rows * sizeof *acc);
    for (g = 0; g < groups; ++g) {
        const int32_t first = w->starts[g], end = w->starts[g + 1];
        int32_t i;
        for (i = 0; i < 4 && 4 * g + i < k; ++i) {
            const int32_t v = x[4 * g + i] + input_offset;
            int32_t e;
            if (v == 0) {
                continue;
            }
            for (e = first; e < end; ++e) {
                const int32_t row = w->row8 ? w->row8[e] : w->row16 ? w->row16[e] : e - first;
                acc[row] += v * kp_word_weight((uint32_t)w->words[e], i);
            }
        }
    }
    for (r = 0; r < rows; ++r) {
        const int32_t c = quant->per_channel ? r : 0;
        const int32_t y = kp_requantize(acc[r], quant->multiplier[c], quant->shift[c]) +
                          output_offset;
        out[r] = (int8_t)KP_CLAMP(y, act.min, act.max);
    }
}

#endif /* !KP_ARM_DSP */

/*
 * FULLY_CONNECTED, int8, skipping the inputs an activation mask zeroed
 * (kp_nn_activation.h): input-stationary over groups of four inputs. The product is
 * kp_nn_zero_skip_vec_s8 (kp_nn_zero_skip_vec_s8.c), portable or Cortex-M4 DSP.
 */
#include "internal/kp_nn_check.h"
#include "internal/kp_nn_internal.h"

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

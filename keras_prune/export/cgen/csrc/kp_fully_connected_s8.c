/*
 * FULLY_CONNECTED, int8: TFLM's reference FullyConnected (per tensor) and
 * FullyConnectedPerChannel, one vector-matrix product per batch row.
 */
#include "internal/kp_nn_check.h"
#include "internal/kp_nn_internal.h"

kp_status kp_fully_connected_s8(const kp_fc_params *params, const kp_quant_params *quant,
                                int32_t batches, int32_t in_len, int32_t out_len,
                                const int8_t *input, const int8_t *filter,
                                const int32_t *eff_bias, int8_t *output)
{
    int32_t b;
    if (params == 0 || input == 0 || filter == 0 || eff_bias == 0 || output == 0 ||
        batches < 1 || in_len < 1 || out_len < 1 || !kp_activation_ok(params->activation) ||
        !kp_input_offset_ok(params->input_offset) ||
        !kp_output_offset_ok(params->output_offset) || !kp_quant_ok(quant, out_len)) {
        return KP_ERR_ARG;
    }
    for (b = 0; b < batches; ++b) {
        kp_nn_vec_mat_s8(input + b * in_len, filter, in_len, out_len,
                         eff_bias, quant, params->output_offset, params->activation,
                         output + b * out_len);
    }
    return KP_OK;
}

/*
 * FULLY_CONNECTED, int8, on SIMD-group sparse weights (kp_nn_sparse.h): one sparse
 * matrix-vector product per batch row. The product is kp_nn_sparse_vec_s8, portable or
 * Cortex-M4 DSP.
 */
#include "internal/kp_nn_sparse_internal.h"

kp_status kp_sparse_fully_connected_s8(const kp_fc_params *params,
                                       const kp_quant_params *quant, int32_t batches,
                                       int32_t in_len, int32_t out_len, const int8_t *input,
                                       const kp_sparse_groups *w, const int32_t *eff_bias,
                                       int8_t *output)
{
    int32_t b;
    if (!kp_sparse_fc_args_ok(params, quant, batches, in_len, out_len, input, w, eff_bias,
                              output)) {
        return KP_ERR_ARG;
    }
    for (b = 0; b < batches; ++b) {
        kp_nn_sparse_vec_s8(input + b * in_len, 0, w, eff_bias, quant, params->output_offset,
                            params->activation, output + b * out_len);
    }
    return KP_OK;
}

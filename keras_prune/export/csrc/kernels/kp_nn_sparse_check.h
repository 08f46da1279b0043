/*
 * Internal to the sparse kernels: the argument checks the portable and the DSP
 * kp_sparse_fully_connected_s8 share, so both reject exactly the same arguments.
 */
#ifndef KP_NN_SPARSE_CHECK_H
#define KP_NN_SPARSE_CHECK_H

#include "kp_nn_check.h"
#include "kp_nn_sparse.h"

static inline int kp_sparse_fc_args_ok(const kp_fc_params *params,
                                       const kp_quant_params *quant, int32_t batches,
                                       int32_t in_len, int32_t out_len, const int8_t *input,
                                       const kp_sparse_groups *w, const int32_t *eff_bias,
                                       const int8_t *output)
{
    return params != 0 && input != 0 && w != 0 && eff_bias != 0 && output != 0 &&
           batches >= 1 && in_len >= 1 && out_len >= 1 && w->rows == out_len &&
           w->k == in_len && w->counts != 0 && w->n_groups >= 0 &&
           (w->n_groups == 0 || (w->words != 0 && w->index != 0)) &&
           (w->index_kind == KP_SPARSE_RUNS8 || w->index_kind == KP_SPARSE_DELTA8 ||
            w->index_kind == KP_SPARSE_ABS16) &&
           kp_activation_ok(params->activation) &&
           kp_input_offset_ok(params->input_offset) &&
           kp_output_offset_ok(params->output_offset) && kp_quant_ok(quant, out_len);
}

#endif /* KP_NN_SPARSE_CHECK_H */

/*
 * keras-prune int8 kernels for activation sparsity (Integral Pruning): the masks that keep
 * only the winners of an activation map, and a FULLY_CONNECTED that skips the inputs a
 * mask zeroed.
 *
 * A zeroed activation holds the tensor's zero point (real 0). The masks write `fill` (that
 * zero point) in place of every loser; the zero-skipping layer adds an input's column of
 * weights only when the input differs from its zero point, so it computes
 * bias + sum (x + input_offset) * w over the non-zero inputs: the same int32 sum as
 * kp_fully_connected_s8, hence the same output bit for bit.
 */
#ifndef KP_NN_ACTIVATION_H
#define KP_NN_ACTIVATION_H

#include <stdint.h>

#include "kp_nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The threshold form of a mask, as TFLite runs it: GREATER_EQUAL of the activations
 * against a constant, then SELECT_V2 between them and a constant zero of the same
 * quantization. output[i] = input[i] >= min_kept ? input[i] : fill. min_kept is the
 * smallest int8 value TFLite's rescaled comparison keeps (int8_ops.threshold_min_kept;
 * 128 keeps none). output may equal input. */
kp_status kp_threshold_s8(const int8_t *input, int32_t size, int32_t min_kept, int32_t fill,
                          int8_t *output);

/* Bytes of scratch kp_topk_s8 needs: a uint16 count per int8 value. */
#define KP_TOPK_SCRATCH_BYTES 512

/* The dynamic form of a mask (the Keras ActivationMask on int8 values): keeps the k
 * largest of the size values (at most 65535) and writes fill elsewhere; among equal values
 * at the k-th place the earliest in memory win. output may equal input; scratch:
 * KP_TOPK_SCRATCH_BYTES, 2-byte aligned. */
kp_status kp_topk_s8(const int8_t *input, int32_t size, int32_t k, int32_t fill,
                     int8_t *output, uint16_t *scratch);

/* A FULLY_CONNECTED weight matrix (rows x k, TFLite's layout) stored by input groups, for
 * an input-stationary product: input group g (inputs 4g .. 4g + 3) lists, in entries
 * starts[g] .. starts[g + 1] - 1, every row that keeps a weight there, as one word of its
 * four weights (byte i = input 4g + i; the short last group is zero-padded) and the row's
 * number. row8 (rows <= 256) or row16 holds the row numbers; both 0 means every group
 * lists every row in order (dense weights). */
typedef struct {
    int32_t rows;
    int32_t k;
    const int32_t *starts;   /* [(k + 3) / 4 + 1], starts[0] == 0 */
    const int32_t *words;    /* [starts[(k + 3) / 4]] */
    const uint8_t *row8;
    const uint16_t *row16;
} kp_input_groups;

/* Bytes of scratch kp_zero_skip_fully_connected_s8 needs: an int32 accumulator per row. */
#define KP_ZERO_SKIP_SCRATCH_BYTES(out_len) (4 * (int32_t)(out_len))

/* FULLY_CONNECTED that visits only the input groups holding a value other than the input
 * zero point (-params->input_offset), each once for all the rows that keep it. bias is
 * the layer's own int32 bias (not the effective bias of kp_nn.h: skipped inputs must add
 * nothing). input: batches x in_len; output: batches x out_len; scratch:
 * KP_ZERO_SKIP_SCRATCH_BYTES(out_len), 4-byte aligned. The kernel trusts the encoding's
 * row numbers (the generator writes them). */
kp_status kp_zero_skip_fully_connected_s8(const kp_fc_params *params,
                                          const kp_quant_params *quant, int32_t batches,
                                          int32_t in_len, int32_t out_len,
                                          const int8_t *input, const kp_input_groups *w,
                                          const int32_t *bias, int8_t *output,
                                          int32_t *scratch);

#ifdef __cplusplus
}
#endif

#endif /* KP_NN_ACTIVATION_H */

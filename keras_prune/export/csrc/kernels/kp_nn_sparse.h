/*
 * keras-prune int8 kernels on SIMD-group sparse weights (Scalpel-style storage).
 *
 * A FULLY_CONNECTED weight matrix (out_len x in_len, TFLite's layout) pruned with
 * SIMDGroups(4) is stored as its kept 4-weight groups only: one 32-bit word per group
 * (byte i = weight 4g + i, int8; the last group of a row whose length is not a multiple
 * of 4 is zero-padded in storage), a count of kept groups per row, and an index stream
 * locating the groups (keras_prune/export/sparse_format.py, docs/sparse-format.md).
 *
 * The effective bias is the dense one (kp_nn.h): eff_bias[c] = bias[c] + input_offset *
 * sum of row c's weights, over all of them (removed ones are zero), so the result equals
 * kp_fully_connected_s8 on the dense pruned matrix bit for bit.
 */
#ifndef KP_NN_SPARSE_H
#define KP_NN_SPARSE_H

#include <stdint.h>

#include "kp_nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How the index stream locates each row's kept groups (g counts groups of 4 from the
 * row's start; every row restarts at g = 0):
 * RUNS8:  uint8 pairs (skip, run): g += skip, then run kept groups g, g+1, ...; a row's
 *         pairs end when their runs add up to its count ((255, 0) extends a skip);
 * DELTA8: one uint8 d per kept group: the group is g + d, then g = group + 1; d = 255 is
 *         an escape: g += 255 and read the next byte for the same group;
 * ABS16:  one uint16 per kept group: its index (index must then be 2-byte aligned). */
typedef enum {
    KP_SPARSE_RUNS8 = 0,
    KP_SPARSE_DELTA8 = 1,
    KP_SPARSE_ABS16 = 2
} kp_sparse_index_kind;

typedef struct {
    int32_t rows;            /* out_len */
    int32_t k;               /* in_len */
    int32_t index_kind;      /* kp_sparse_index_kind */
    int32_t n_groups;        /* kept groups in all rows (sum of counts) */
    const uint16_t *counts;  /* [rows] kept groups per row */
    const int32_t *words;    /* [n_groups] the kept groups' weights, row by row */
    const void *index;       /* the index stream (uint8, or uint16 for ABS16) */
} kp_sparse_groups;

/* input: batches x in_len; output: batches x out_len. The kernel trusts the encoding
 * (as the dense kernel trusts its filter's size): the generator writes it; an index
 * past the row's groups reads past the input. KP_ERR_ARG for shapes that disagree with
 * w's, an unknown index kind, or the dense kernel's parameter errors. */
kp_status kp_sparse_fully_connected_s8(const kp_fc_params *params,
                                       const kp_quant_params *quant, int32_t batches,
                                       int32_t in_len, int32_t out_len, const int8_t *input,
                                       const kp_sparse_groups *w, const int32_t *eff_bias,
                                       int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* KP_NN_SPARSE_H */

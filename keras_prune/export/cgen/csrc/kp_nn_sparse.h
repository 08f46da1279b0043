/*
 * keras-prune int8 kernels on SIMD-group sparse weights (Scalpel-style storage).
 *
 * A FULLY_CONNECTED or CONV_2D weight matrix (out x k, TFLite's layout) pruned with
 * SIMDGroups(4) is stored as its kept 4-weight groups only: one 32-bit word per group
 * (byte i = weight 4g + i, int8; the last group of a row whose length is not a multiple
 * of 4 is zero-padded in storage), a count of kept groups per row, and an index stream
 * locating the groups (keras_prune/export/sparse_format.py, docs/sparse-format.md).
 *
 * The effective bias is the dense one (kp_nn.h): eff_bias[c] = bias[c] + input_offset *
 * sum of row c's weights, over all of them (removed ones are zero), so the result equals
 * kp_fully_connected_s8 (kp_convolve_s8) on the dense pruned matrix bit for bit.
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

/* Output pixels kp_sparse_convolve_s8 gathers per pass (a multiple of 4). */
#define KP_SPARSE_CONV_PIXELS 16

/* Bytes of scratch kp_sparse_convolve_s8 needs: the windows of KP_SPARSE_CONV_PIXELS
 * pixels and one more, each rounded up to whole 4-byte groups, and 2 bytes per group of
 * one filter (one output channel's kept groups, decoded), rounded up to 4 bytes. */
#define KP_SPARSE_CONV_GROUPS_(filter_h, filter_w, in_c) \
    (((int32_t)(filter_h) * (int32_t)(filter_w) * (int32_t)(in_c) + 3) / 4)
#define KP_SPARSE_CONV_SCRATCH_BYTES(filter_h, filter_w, in_c)                      \
    (4 * (KP_SPARSE_CONV_PIXELS + 1) * KP_SPARSE_CONV_GROUPS_(filter_h, filter_w, in_c) + \
     4 * ((KP_SPARSE_CONV_GROUPS_(filter_h, filter_w, in_c) + 1) / 2))

/* CONV_2D with w holding the filter (TFLite's OHWI layout, out_c x (h * w * in_c)) as a
 * sparse matrix: w->rows = filter_dims->n, w->k = filter h * w * c. Same arithmetic as
 * kp_convolve_s8 on the dense pruned filter; scratch: KP_SPARSE_CONV_SCRATCH_BYTES,
 * 4-byte aligned. */
kp_status kp_sparse_convolve_s8(const kp_conv_params *params, const kp_quant_params *quant,
                                const kp_dims *input_dims, const int8_t *input,
                                const kp_dims *filter_dims, const kp_sparse_groups *w,
                                const int32_t *eff_bias, const kp_dims *output_dims,
                                int8_t *output, int8_t *scratch);

/* Bytes of scratch kp_sparse_depthwise_conv_s8 needs: 16 per tap of the filter. */
#define KP_SPARSE_DW_SCRATCH_BYTES(filter_h, filter_w) \
    (16 * (int32_t)(filter_h) * (int32_t)(filter_w))

/* DEPTHWISE_CONV_2D, depth multiplier 1, channels a multiple of 4, with w holding the
 * filter (TFLite's 1 x h x w x c) as SIMD groups of four channels at one tap: w->rows =
 * c / 4 channel quads, w->k = 4 * h * w, group t of row q = channels 4q..4q+3 at tap t
 * (ky * w + kx). Same arithmetic as kp_depthwise_conv_s8 on the dense pruned filter;
 * scratch: KP_SPARSE_DW_SCRATCH_BYTES, 4-byte aligned. KP_ERR_ARG for any other depth
 * multiplier or channel count, or the dense kernel's parameter errors. */
kp_status kp_sparse_depthwise_conv_s8(const kp_dw_conv_params *params,
                                      const kp_quant_params *quant, const kp_dims *input_dims,
                                      const int8_t *input, const kp_dims *filter_dims,
                                      const kp_sparse_groups *w, const int32_t *eff_bias,
                                      const kp_dims *output_dims, int8_t *output,
                                      int8_t *scratch);

/* Output pixels kp_sparse_convolve_rows_s8 aims to cover per block of output rows. */
#define KP_SPARSE_CONV_ROWS_BLOCK_PIXELS 32

/* Output rows per block: enough whole rows for KP_SPARSE_CONV_ROWS_BLOCK_PIXELS pixels. */
#define KP_SPARSE_CONV_ROWS_BLOCK(out_h, out_w)                                   \
    KP_SPARSE_ROWS_MIN_((int32_t)(out_h),                                              \
                   (KP_SPARSE_CONV_ROWS_BLOCK_PIXELS + (int32_t)(out_w) - 1) / (int32_t)(out_w))
#define KP_SPARSE_ROWS_MIN_(a, b) ((a) < (b) ? (a) : (b))

/* Input pixels a row of windows spans along x, and input rows a block of block_h output
 * rows reads. */
#define KP_SPARSE_CONV_ROWS_SPAN(filter_w, out_w, stride_w, dilation_w) \
    (((int32_t)(out_w) - 1) * (int32_t)(stride_w) + \
     ((int32_t)(filter_w) - 1) * (int32_t)(dilation_w) + 1)
#define KP_SPARSE_CONV_ROWS_IN(block_h, filter_h, stride_h, dilation_h) \
    (((int32_t)(block_h) - 1) * (int32_t)(stride_h) + \
     ((int32_t)(filter_h) - 1) * (int32_t)(dilation_h) + 1)

/* Bytes of scratch kp_sparse_convolve_rows_s8 needs: an int32 accumulator per output pixel of
 * a block, a uint16 offset per filter tap, the input rows a block reads (padding
 * included) and one word more, which the short last group of a filter may read (times a
 * zero weight). */
#define KP_SPARSE_CONV_ROWS_SCRATCH_BYTES(filter_h, filter_w, in_c, out_h, out_w, stride_h, \
                                     stride_w, dilation_h, dilation_w)                 \
    (4 * KP_SPARSE_CONV_ROWS_BLOCK(out_h, out_w) * (int32_t)(out_w) +                  \
     4 * (((int32_t)(filter_h) * (int32_t)(filter_w) * (int32_t)(in_c) + 1) / 2) + 4 + \
     ((KP_SPARSE_CONV_ROWS_IN(KP_SPARSE_CONV_ROWS_BLOCK(out_h, out_w), filter_h,       \
                              stride_h, dilation_h) *                                  \
           KP_SPARSE_CONV_ROWS_SPAN(filter_w, out_w, stride_w, dilation_w) * (int32_t)(in_c) + \
       3) & ~3))

/* The input rows of a block must fit in 64 KiB (they are addressed by uint16 offsets). */
#define KP_SPARSE_CONV_ROWS_MAX_BYTES 65532

/* CONV_2D as kp_sparse_convolve_s8 (same arguments and results), by blocks of output rows
 * (kp_sparse_convolve_rows_s8.c); scratch: KP_SPARSE_CONV_ROWS_SCRATCH_BYTES, 4-byte
 * aligned. KP_ERR_ARG also when a block's input rows exceed
 * KP_SPARSE_CONV_ROWS_MAX_BYTES. */
kp_status kp_sparse_convolve_rows_s8(const kp_conv_params *params,
                                     const kp_quant_params *quant, const kp_dims *input_dims,
                                     const int8_t *input, const kp_dims *filter_dims,
                                     const kp_sparse_groups *w, const int32_t *eff_bias,
                                     const kp_dims *output_dims, int8_t *output,
                                     int8_t *scratch);

#ifdef __cplusplus
}
#endif

#endif /* KP_NN_SPARSE_H */

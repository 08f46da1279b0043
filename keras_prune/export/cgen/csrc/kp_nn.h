/*
 * keras-prune int8 kernels: the public API the generated kp_model.c calls.
 *
 * The arithmetic is TFLite Micro's reference int8 arithmetic, bit for bit (see
 * keras_prune/export/int8_ops.py, the NumPy model every kernel is fuzzed against).
 * Tensors are NHWC, int8, contiguous. Weights are int8 with zero point 0 (symmetric).
 *
 * One difference from TFLM's calling convention, for speed: weighted kernels take an
 * *effective bias*, eff_bias[c] = bias[c] + input_offset * sum(weights of channel c),
 * precomputed by the generator (int8_ops.effective_bias). The kernels then accumulate
 * raw int8 products, and a padded input position reads as the input zero point
 * (-input_offset), whose product the effective bias cancels exactly.
 *
 * Every function exists as portable C99, in the .c file named after it. Hot inner loops
 * have a Cortex-M4 DSP version (SXTB16/SMLAD) beside the portable one in that file, under
 * #if KP_ARM_DSP (internal/kp_nn_support.h), which picks one at compile time.
 */
#ifndef KP_NN_H
#define KP_NN_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    KP_OK = 0,
    KP_ERR_ARG = -1 /* a parameter outside what the kernel supports */
} kp_status;

/* Batch n, height h, width w, channels c. Filters: n = output channels, c = input channels. */
typedef struct {
    int32_t n, h, w, c;
} kp_dims;

typedef struct {
    int32_t h, w;
} kp_tile;

typedef struct {
    int32_t min, max; /* clamp of the int8 output (fused RELU/RELU6 or [-128, 127]) */
} kp_activation;

/* Per-output-channel requantization: out = MultiplyByQuantizedMultiplier(acc, m[c], s[c]).
 * per_channel == 0: one multiplier/shift (index 0) for every channel. */
typedef struct {
    const int32_t *multiplier;
    const int32_t *shift;
    int32_t per_channel;
} kp_quant_params;

typedef struct {
    int32_t input_offset;  /* -input zero point */
    int32_t output_offset; /* output zero point */
    kp_tile stride;
    kp_tile padding;       /* top, left; bottom/right follow from the output dims */
    kp_tile dilation;
    kp_activation activation;
} kp_conv_params;

typedef struct {
    int32_t input_offset;
    int32_t output_offset;
    int32_t ch_mult;       /* depth multiplier: output channel = input channel * ch_mult + m */
    kp_tile stride;
    kp_tile padding;
    kp_tile dilation;
    kp_activation activation;
} kp_dw_conv_params;

typedef struct {
    int32_t input_offset;
    int32_t output_offset;
    kp_activation activation;
} kp_fc_params;

typedef struct {
    kp_tile stride;
    kp_tile padding;
    kp_activation activation;
} kp_pool_params;

/* MEAN over H and W of an NHWC tensor (keep_dims or not: same memory layout).
 * multiplier/shift are TFLM's s_in / s_out with the 1/(H*W) already folded in the way
 * TFLM's QuantizedMeanOrSum folds it (int8_ops.mean_params), so they depend on H*W. */
typedef struct {
    int32_t input_offset;
    int32_t output_offset;
    int32_t multiplier;
    int32_t shift;
} kp_mean_params;

/* ADD of two same-shape int8 tensors (TFLM's int8 Add, left shift 20). */
typedef struct {
    int32_t input1_offset, input1_multiplier, input1_shift;
    int32_t input2_offset, input2_multiplier, input2_shift;
    int32_t left_shift;
    int32_t output_offset, output_multiplier, output_shift;
    kp_activation activation;
} kp_add_params;

/* SOFTMAX int8 -> int8 (output scale 1/256, zero point -128), TFLM's fixed-point exp. */
typedef struct {
    int32_t input_multiplier;
    int32_t input_left_shift;
    int32_t diff_min;
} kp_softmax_params;

/* PAD of a 4-D NHWC tensor with a constant (the input zero point). */
typedef struct {
    int32_t before[4];
    int32_t after[4];
    int8_t pad_value;
} kp_pad_params;

/* Bytes of scratch kp_convolve_s8 needs: two im2col columns of int16. */
#define KP_CONV_SCRATCH_BYTES(filter_h, filter_w, in_c) \
    (4 * (int32_t)(filter_h) * (int32_t)(filter_w) * (int32_t)(in_c))

kp_status kp_convolve_s8(const kp_conv_params *params, const kp_quant_params *quant,
                         const kp_dims *input_dims, const int8_t *input,
                         const kp_dims *filter_dims, const int8_t *filter,
                         const int32_t *eff_bias, const kp_dims *output_dims, int8_t *output,
                         int16_t *scratch);

kp_status kp_depthwise_conv_s8(const kp_dw_conv_params *params, const kp_quant_params *quant,
                               const kp_dims *input_dims, const int8_t *input,
                               const kp_dims *filter_dims, /* n = 1, c = output channels */
                               const int8_t *filter, const int32_t *eff_bias,
                               const kp_dims *output_dims, int8_t *output);

/* input: batches x in_len; filter: out_len x in_len (TFLite's layout); output: batches x out_len */
kp_status kp_fully_connected_s8(const kp_fc_params *params, const kp_quant_params *quant,
                                int32_t batches, int32_t in_len, int32_t out_len,
                                const int8_t *input, const int8_t *filter,
                                const int32_t *eff_bias, int8_t *output);

kp_status kp_max_pool_s8(const kp_pool_params *params, const kp_dims *input_dims,
                         const int8_t *input, const kp_tile *filter,
                         const kp_dims *output_dims, int8_t *output);

kp_status kp_avg_pool_s8(const kp_pool_params *params, const kp_dims *input_dims,
                         const int8_t *input, const kp_tile *filter,
                         const kp_dims *output_dims, int8_t *output);

kp_status kp_mean_s8(const kp_mean_params *params, const kp_dims *input_dims,
                     const int8_t *input, int8_t *output);

kp_status kp_elementwise_add_s8(const kp_add_params *params, const int8_t *input1,
                                const int8_t *input2, int8_t *output, int32_t size);

kp_status kp_softmax_s8(const kp_softmax_params *params, const int8_t *input, int32_t rows,
                        int32_t row_size, int8_t *output);

kp_status kp_pad_s8(const kp_pad_params *params, const kp_dims *input_dims,
                    const int8_t *input, const kp_dims *output_dims, int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* KP_NN_H */

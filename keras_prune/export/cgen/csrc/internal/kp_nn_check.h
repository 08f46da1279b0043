/*
 * Internal to the kernels: the argument checks every kernel makes before touching memory.
 * Shared so that a kernel's portable and DSP paths reject exactly the same arguments.
 */
#ifndef KP_NN_CHECK_H
#define KP_NN_CHECK_H

#include "kp_nn.h"
#include "internal/kp_nn_support.h"

/* Every dimension of a tensor at least 1. */
static inline int kp_dims_ok(const kp_dims *d)
{
    return d != 0 && d->n > 0 && d->h > 0 && d->w > 0 && d->c > 0;
}

/* Strides and dilations start at 1; paddings at 0. */
static inline int kp_tile_ok(kp_tile t, int32_t least)
{
    return t.h >= least && t.w >= least;
}

/* A clamp that the int8 output can honour. */
static inline int kp_activation_ok(kp_activation a)
{
    return a.min >= -128 && a.min <= a.max && a.max <= 127;
}

/* -zero point of an int8 tensor, and a zero point. */
static inline int kp_input_offset_ok(int32_t offset)
{
    return offset >= -127 && offset <= 128;
}

static inline int kp_output_offset_ok(int32_t offset)
{
    return offset >= -128 && offset <= 127;
}

/* A requantization shift kp_requantize implements without overflowing a shift count:
 * TFLite multiplies by (1 << shift) in int, so 30 is its largest left shift, and a right
 * shift past 31 would clear every bit (QuantizeMultiplier flushes those to zero). */
static inline int kp_shift_ok(int32_t shift)
{
    return shift >= -31 && shift <= 30;
}

static inline int kp_quant_ok(const kp_quant_params *q, int32_t channels)
{
    int32_t i, n;
    if (q == 0 || q->multiplier == 0 || q->shift == 0 ||
        (q->per_channel != 0 && q->per_channel != 1)) {
        return 0;
    }
    n = q->per_channel ? channels : 1;
    for (i = 0; i < n; ++i) {
        if (!kp_shift_ok(q->shift[i])) {
            return 0;
        }
    }
    return 1;
}

/* MAX_POOL_2D and AVERAGE_POOL_2D: one image shape in, one out, same depth. */
static inline int kp_pool_args_ok(const kp_pool_params *params, const kp_dims *input_dims,
                                  const int8_t *input, const kp_tile *filter,
                                  const kp_dims *output_dims, const int8_t *output)
{
    return params != 0 && input != 0 && filter != 0 && output != 0 &&
           kp_dims_ok(input_dims) && kp_dims_ok(output_dims) &&
           input_dims->n == output_dims->n && input_dims->c == output_dims->c &&
           kp_tile_ok(*filter, 1) && kp_tile_ok(params->stride, 1) &&
           kp_tile_ok(params->padding, 0) && kp_activation_ok(params->activation);
}

/* Pooling window (oy, ox) clipped to the image: input rows [y_lo, y_hi) and columns
 * [x_lo, x_hi). Padding never takes part in a pooled value (TFLM's reference pools). */
typedef struct {
    int32_t y_lo, y_hi, x_lo, x_hi;
} kp_window;

static inline kp_window kp_pool_window(const kp_pool_params *params, const kp_dims *input_dims,
                                       const kp_tile *filter, int32_t oy, int32_t ox)
{
    const int32_t y0 = oy * params->stride.h - params->padding.h;
    const int32_t x0 = ox * params->stride.w - params->padding.w;
    kp_window win;
    win.y_lo = KP_MAX(y0, 0);
    win.y_hi = KP_MIN(y0 + filter->h, input_dims->h);
    win.x_lo = KP_MAX(x0, 0);
    win.x_hi = KP_MIN(x0 + filter->w, input_dims->w);
    return win;
}

/* ADD: TFLM quantizes every add multiplier below one (QuantizeMultiplierSmallerThanOneExp),
 * so only right shifts are valid; with a left shift up to 20, 255 << 20 still fits. */
static inline int kp_add_args_ok(const kp_add_params *params, const int8_t *input1,
                                 const int8_t *input2, const int8_t *output, int32_t size)
{
    return params != 0 && input1 != 0 && input2 != 0 && output != 0 && size >= 1 &&
           params->left_shift >= 0 && params->left_shift <= 20 &&
           kp_input_offset_ok(params->input1_offset) &&
           kp_input_offset_ok(params->input2_offset) &&
           kp_output_offset_ok(params->output_offset) &&
           params->input1_shift <= 0 && kp_shift_ok(params->input1_shift) &&
           params->input2_shift <= 0 && kp_shift_ok(params->input2_shift) &&
           params->output_shift <= 0 && kp_shift_ok(params->output_shift) &&
           kp_activation_ok(params->activation);
}

#endif /* KP_NN_CHECK_H */

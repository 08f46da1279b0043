/*
 * MAX_POOL_2D, int8: TFLM's reference MaxPool. The window is clipped to the image, so
 * padding never takes part in the maximum. Portable version; the Cortex-M4 build takes
 * kp_max_pool_s8_dsp.c instead.
 */
#include "kp_nn_check.h"
#include "kp_nn_support.h"

#if !KP_ARM_DSP

kp_status kp_max_pool_s8(const kp_pool_params *params, const kp_dims *input_dims,
                         const int8_t *input, const kp_tile *filter,
                         const kp_dims *output_dims, int8_t *output)
{
    int32_t b, oy, ox, c, y, x;
    if (!kp_pool_args_ok(params, input_dims, input, filter, output_dims, output)) {
        return KP_ERR_ARG;
    }
    const int32_t depth = input_dims->c;
    for (b = 0; b < output_dims->n; ++b) {
        const int8_t *image = input + b * input_dims->h * input_dims->w * depth;
        for (oy = 0; oy < output_dims->h; ++oy) {
            for (ox = 0; ox < output_dims->w; ++ox) {
                const kp_window win = kp_pool_window(params, input_dims, filter, oy, ox);
                int8_t *out = output + ((b * output_dims->h + oy) * output_dims->w + ox) * depth;
                for (c = 0; c < depth; ++c) {
                    /* An empty window leaves the lowest int8, as in TFLM. */
                    int32_t v = -128;
                    for (y = win.y_lo; y < win.y_hi; ++y) {
                        for (x = win.x_lo; x < win.x_hi; ++x) {
                            v = KP_MAX(v, (int32_t)image[(y * input_dims->w + x) * depth + c]);
                        }
                    }
                    out[c] = (int8_t)KP_CLAMP(v, params->activation.min,
                                              params->activation.max);
                }
            }
        }
    }
    return KP_OK;
}

#else
typedef int kp_max_pool_s8_portable_unused;
#endif /* !KP_ARM_DSP */

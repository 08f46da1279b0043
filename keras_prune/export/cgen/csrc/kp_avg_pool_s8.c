/*
 * AVERAGE_POOL_2D, int8: TFLM's reference AveragePool. The window is clipped to the
 * image and the sum is divided by the number of taps actually inside it, rounding half
 * away from zero.
 */
#include "internal/kp_nn_check.h"
#include "internal/kp_nn_support.h"

kp_status kp_avg_pool_s8(const kp_pool_params *params, const kp_dims *input_dims,
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
                const int32_t count = (win.y_hi - win.y_lo) * (win.x_hi - win.x_lo);
                int8_t *out = output + ((b * output_dims->h + oy) * output_dims->w + ox) * depth;
                /* A window wholly in the padding has no average: TFLM fails the op. */
                if (win.y_hi <= win.y_lo || win.x_hi <= win.x_lo) {
                    return KP_ERR_ARG;
                }
                for (c = 0; c < depth; ++c) {
                    int32_t sum = 0;
                    for (y = win.y_lo; y < win.y_hi; ++y) {
                        for (x = win.x_lo; x < win.x_hi; ++x) {
                            sum += image[(y * input_dims->w + x) * depth + c];
                        }
                    }
                    /* C division truncates; biasing by half the count first makes it
                     * round half away from zero, TFLM's rounding. */
                    sum = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
                    out[c] = (int8_t)KP_CLAMP(sum, params->activation.min,
                                              params->activation.max);
                }
            }
        }
    }
    return KP_OK;
}

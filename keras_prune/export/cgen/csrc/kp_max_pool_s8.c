/*
 * MAX_POOL_2D, int8: TFLM's reference MaxPool. The window is clipped to the image, so
 * padding never takes part in the maximum. Portable C99, and a Cortex-M4 (Armv7E-M DSP)
 * path with the same results, bit for bit (semantics in kp_nn.h).
 *
 * The DSP path:
 * Four channels at a time: one word per tap, a per-byte signed maximum with SSUB8 (which
 * sets a GE flag for each byte where the tap is not below the running maximum) and SEL
 * (which takes those bytes from the tap), then the activation clamp the same way, and one
 * store. The last channels % 4 take the portable loop.
 */
#include "internal/kp_nn_check.h"
#include "internal/kp_nn_support.h"

#if KP_ARM_DSP /* Cortex-M4 (Armv7E-M DSP) */

#include "internal/kp_acle.h"

/* Per signed byte: max(a, b) and min(a, b). */
static inline uint32_t kp_max_s8x4(uint32_t a, uint32_t b)
{
    return kp_select_ge_s8x4(a, b, a, b);
}

static inline uint32_t kp_min_s8x4(uint32_t a, uint32_t b)
{
    return kp_select_ge_s8x4(a, b, b, a);
}

kp_status kp_max_pool_s8(const kp_pool_params *params, const kp_dims *input_dims,
                         const int8_t *input, const kp_tile *filter,
                         const kp_dims *output_dims, int8_t *output)
{
    int32_t b, oy, ox, c, y, x;
    if (!kp_pool_args_ok(params, input_dims, input, filter, output_dims, output)) {
        return KP_ERR_ARG;
    }
    const int32_t depth = input_dims->c;
    const int32_t row = input_dims->w * depth;
    const int32_t act_min = params->activation.min;
    const int32_t act_max = params->activation.max;
    const uint32_t lo4 = kp_splat8(act_min);
    const uint32_t hi4 = kp_splat8(act_max);
    for (b = 0; b < output_dims->n; ++b) {
        const int8_t *image = input + b * input_dims->h * row;
        for (oy = 0; oy < output_dims->h; ++oy) {
            for (ox = 0; ox < output_dims->w; ++ox) {
                const kp_window win = kp_pool_window(params, input_dims, filter, oy, ox);
                int8_t *out = output + ((b * output_dims->h + oy) * output_dims->w + ox) * depth;
                for (c = 0; c + 4 <= depth; c += 4) {
                    /* An empty window leaves the lowest int8, as in TFLM. */
                    uint32_t m = 0x80808080U;
                    for (y = win.y_lo; y < win.y_hi; ++y) {
                        const int8_t *p = image + y * row + win.x_lo * depth + c;
                        for (x = win.x_lo; x < win.x_hi; ++x) {
                            m = kp_max_s8x4((uint32_t)kp_read_s8x4(p), m);
                            p += depth;
                        }
                    }
                    m = kp_max_s8x4(m, lo4);
                    m = kp_min_s8x4(m, hi4);
                    memcpy(out + c, &m, sizeof m);
                }
                for (; c < depth; ++c) {
                    int32_t v = -128;
                    for (y = win.y_lo; y < win.y_hi; ++y) {
                        for (x = win.x_lo; x < win.x_hi; ++x) {
                            v = KP_MAX(v, (int32_t)image[y * row + x * depth + c]);
                        }
                    }
                    out[c] = (int8_t)kp_clamp(v, act_min, act_max);
                }
            }
        }
    }
    return KP_OK;
}

#else /* portable C99 */

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

#endif /* KP_ARM_DSP */

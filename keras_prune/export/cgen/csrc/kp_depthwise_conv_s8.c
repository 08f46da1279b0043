/*
 * DEPTHWISE_CONV_2D, int8, per-channel requantization, depth multiplier and dilation:
 * TFLM's reference DepthwiseConvPerChannel. Portable version; the Cortex-M4 build takes
 * kp_depthwise_conv_s8_dsp.c instead.
 */
#include "kp_nn_check.h"
#include "kp_nn_internal.h"

#if !KP_ARM_DSP

kp_status kp_depthwise_conv_s8(const kp_dw_conv_params *params, const kp_quant_params *quant,
                               const kp_dims *input_dims, const int8_t *input,
                               const kp_dims *filter_dims, const int8_t *filter,
                               const int32_t *eff_bias, const kp_dims *output_dims,
                               int8_t *output)
{
    int32_t b, oy, ox, ic, m, ky, kx;

    if (params == 0 || input == 0 || filter == 0 || eff_bias == 0 || output == 0 ||
        !kp_dims_ok(input_dims) || !kp_dims_ok(filter_dims) || !kp_dims_ok(output_dims) ||
        params->ch_mult < 1 || filter_dims->n != 1 || input_dims->n != output_dims->n ||
        filter_dims->c != output_dims->c ||
        output_dims->c != input_dims->c * params->ch_mult ||
        !kp_tile_ok(params->stride, 1) || !kp_tile_ok(params->dilation, 1) ||
        !kp_tile_ok(params->padding, 0) || !kp_activation_ok(params->activation) ||
        !kp_input_offset_ok(params->input_offset) ||
        !kp_output_offset_ok(params->output_offset) || !kp_quant_ok(quant, output_dims->c)) {
        return KP_ERR_ARG;
    }

    const int32_t in_c = input_dims->c;
    const int32_t out_c = output_dims->c;
    const int32_t ch_mult = params->ch_mult;
    /* Outside the image a tap reads the input zero point; eff_bias holds the term that
     * cancels its product. */
    const int32_t pad_value = -params->input_offset;
    for (b = 0; b < output_dims->n; ++b) {
        const int8_t *image = input + b * input_dims->h * input_dims->w * in_c;
        for (oy = 0; oy < output_dims->h; ++oy) {
            const int32_t y0 = oy * params->stride.h - params->padding.h;
            for (ox = 0; ox < output_dims->w; ++ox) {
                const int32_t x0 = ox * params->stride.w - params->padding.w;
                int8_t *out = output + ((b * output_dims->h + oy) * output_dims->w + ox) * out_c;
                for (ic = 0; ic < in_c; ++ic) {
                    for (m = 0; m < ch_mult; ++m) {
                        const int32_t oc = ic * ch_mult + m;
                        const int32_t qi = quant->per_channel ? oc : 0;
                        int32_t acc = eff_bias[oc];
                        int32_t v;
                        for (ky = 0; ky < filter_dims->h; ++ky) {
                            const int32_t iy = y0 + ky * params->dilation.h;
                            const int row_inside = iy >= 0 && iy < input_dims->h;
                            for (kx = 0; kx < filter_dims->w; ++kx) {
                                const int32_t ix = x0 + kx * params->dilation.w;
                                const int32_t w = filter[(ky * filter_dims->w + kx) * out_c + oc];
                                const int32_t x = row_inside && ix >= 0 && ix < input_dims->w
                                                      ? image[(iy * input_dims->w + ix) * in_c + ic]
                                                      : pad_value;
                                acc += x * w;
                            }
                        }
                        v = kp_requantize(acc, quant->multiplier[qi], quant->shift[qi]) +
                            params->output_offset;
                        out[oc] = (int8_t)KP_CLAMP(v, params->activation.min,
                                                   params->activation.max);
                    }
                }
            }
        }
    }
    return KP_OK;
}

#else
typedef int kp_depthwise_conv_s8_portable_unused;
#endif /* !KP_ARM_DSP */

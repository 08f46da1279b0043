/*
 * CONV_2D, int8, per-channel requantization: TFLM's reference ConvPerChannel, computed as
 * im2col + matrix product. Two output pixels share each pass over the weights, which is
 * what makes the product cheap on a Cortex-M4 (each weight row is loaded once per pair).
 */
#include <string.h>

#include "internal/kp_nn_check.h"
#include "internal/kp_nn_internal.h"

/* One im2col column: the filter-sized window of output pixel (b, oy, ox), widened to
 * int16. Taps outside the image read as the input zero point, so that eff_bias cancels
 * their products exactly as TFLM's skipping them would. */
static void kp_im2col(const kp_conv_params *p, const kp_dims *in, const int8_t *input,
                      const kp_dims *f, int32_t b, int32_t oy, int32_t ox, int16_t *col)
{
    const int16_t pad_value = (int16_t)(-p->input_offset);
    const int8_t *image = input + b * in->h * in->w * in->c;
    const int32_t y0 = oy * p->stride.h - p->padding.h;
    const int32_t x0 = ox * p->stride.w - p->padding.w;
    int32_t ky, kx, c;
    for (ky = 0; ky < f->h; ++ky) {
        const int32_t iy = y0 + ky * p->dilation.h;
        for (kx = 0; kx < f->w; ++kx) {
            const int32_t ix = x0 + kx * p->dilation.w;
            if (iy < 0 || iy >= in->h || ix < 0 || ix >= in->w) {
                for (c = 0; c < in->c; ++c) {
                    col[c] = pad_value;
                }
            } else {
                const int8_t *src = image + (iy * in->w + ix) * in->c;
                for (c = 0; c < in->c; ++c) {
                    col[c] = src[c];
                }
            }
            col += in->c;
        }
    }
}

kp_status kp_convolve_s8(const kp_conv_params *params, const kp_quant_params *quant,
                         const kp_dims *input_dims, const int8_t *input,
                         const kp_dims *filter_dims, const int8_t *filter,
                         const int32_t *eff_bias, const kp_dims *output_dims, int8_t *output,
                         int16_t *scratch)
{
    int32_t k_len, pixels, pixel, pending;
    int8_t *pending_out = 0;

    if (params == 0 || input == 0 || filter == 0 || eff_bias == 0 || output == 0 ||
        scratch == 0 || !kp_dims_ok(input_dims) || !kp_dims_ok(filter_dims) ||
        !kp_dims_ok(output_dims) || input_dims->n != output_dims->n ||
        filter_dims->c != input_dims->c || filter_dims->n != output_dims->c ||
        !kp_tile_ok(params->stride, 1) || !kp_tile_ok(params->dilation, 1) ||
        !kp_tile_ok(params->padding, 0) || !kp_activation_ok(params->activation) ||
        !kp_input_offset_ok(params->input_offset) ||
        !kp_output_offset_ok(params->output_offset) || !kp_quant_ok(quant, output_dims->c)) {
        return KP_ERR_ARG;
    }

    k_len = filter_dims->h * filter_dims->w * filter_dims->c;
    pixels = output_dims->n * output_dims->h * output_dims->w;
    pending = 0;
    /* Pixels are paired in memory order, across rows and batches alike: the pair only
     * shares weights, never input. */
    for (pixel = 0; pixel < pixels; ++pixel) {
        const int32_t ox = pixel % output_dims->w;
        const int32_t oy = (pixel / output_dims->w) % output_dims->h;
        const int32_t b = pixel / (output_dims->w * output_dims->h);
        int8_t *out = output + pixel * output_dims->c;
        kp_im2col(params, input_dims, input, filter_dims, b, oy, ox,
                  scratch + pending * k_len);
        if (pending == 0) {
            pending_out = out;
            pending = 1;
        } else {
            kp_nn_mat_mult_s8_s16_2col(filter, scratch, k_len, output_dims->c, eff_bias,
                                       quant, params->output_offset, params->activation,
                                       pending_out, out);
            pending = 0;
        }
    }
    if (pending) {
        /* A lone last pixel: the pair primitive needs two columns, so give it the same
         * one twice and let both results land on the same output. */
        memcpy(scratch + k_len, scratch, (size_t)k_len * sizeof(int16_t));
        kp_nn_mat_mult_s8_s16_2col(filter, scratch, k_len, output_dims->c, eff_bias, quant,
                                   params->output_offset, params->activation, pending_out,
                                   pending_out);
    }
    return KP_OK;
}

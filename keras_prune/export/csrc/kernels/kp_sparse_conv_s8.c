/*
 * CONV_2D, int8, on SIMD-group sparse weights (kp_nn_sparse.h): each output pixel's
 * window is gathered into one int8 im2col column, then one sparse matrix-vector product
 * (kp_nn_sparse_vec_s8) gives all its output channels. With ~90% of the groups gone the
 * product is cheap, so the gather is kept cheap too: a window inside the image is copied
 * row by row (an NHWC row of the window is contiguous), only border windows go tap by tap.
 */
#include <string.h>

#include "kp_nn_sparse_internal.h"

/* Short copies inline: the window rows are a few bytes, too short for a memcpy call. */
static inline void kp_copy_s8(int8_t *dst, const int8_t *src, int32_t n)
{
    for (; n >= 4; n -= 4, dst += 4, src += 4) {
        uint32_t v;
        memcpy(&v, src, sizeof v);
        memcpy(dst, &v, sizeof v);
    }
    for (; n > 0; --n) {
        *dst++ = *src++;
    }
}

static void kp_im2col_s8(const kp_conv_params *p, const kp_dims *in, const int8_t *image,
                         const kp_dims *f, int32_t oy, int32_t ox, int8_t *col)
{
    const int8_t pad_value = (int8_t)(-p->input_offset);
    const int32_t y0 = oy * p->stride.h - p->padding.h;
    const int32_t x0 = ox * p->stride.w - p->padding.w;
    const int32_t span_h = (f->h - 1) * p->dilation.h + 1;
    const int32_t span_w = (f->w - 1) * p->dilation.w + 1;
    int32_t ky, kx;
    if (p->dilation.w == 1 && y0 >= 0 && x0 >= 0 && y0 + span_h <= in->h &&
        x0 + span_w <= in->w) {
        const int32_t row = f->w * in->c;
        for (ky = 0; ky < f->h; ++ky) {
            kp_copy_s8(col, image + ((y0 + ky * p->dilation.h) * in->w + x0) * in->c, row);
            col += row;
        }
        return;
    }
    for (ky = 0; ky < f->h; ++ky) {
        const int32_t iy = y0 + ky * p->dilation.h;
        for (kx = 0; kx < f->w; ++kx) {
            const int32_t ix = x0 + kx * p->dilation.w;
            if (iy < 0 || iy >= in->h || ix < 0 || ix >= in->w) {
                int32_t c;
                for (c = 0; c < in->c; ++c) {
                    col[c] = pad_value;
                }
            } else {
                kp_copy_s8(col, image + (iy * in->w + ix) * in->c, in->c);
            }
            col += in->c;
        }
    }
}

kp_status kp_sparse_convolve_s8(const kp_conv_params *params, const kp_quant_params *quant,
                                const kp_dims *input_dims, const int8_t *input,
                                const kp_dims *filter_dims, const kp_sparse_groups *w,
                                const int32_t *eff_bias, const kp_dims *output_dims,
                                int8_t *output, int8_t *scratch)
{
    int32_t k_len, b, oy, ox;
    if (params == 0 || input == 0 || eff_bias == 0 || output == 0 || scratch == 0 ||
        !kp_dims_ok(input_dims) || !kp_dims_ok(filter_dims) || !kp_dims_ok(output_dims) ||
        input_dims->n != output_dims->n || filter_dims->c != input_dims->c ||
        filter_dims->n != output_dims->c || !kp_tile_ok(params->stride, 1) ||
        !kp_tile_ok(params->dilation, 1) || !kp_tile_ok(params->padding, 0) ||
        !kp_activation_ok(params->activation) || !kp_input_offset_ok(params->input_offset) ||
        !kp_output_offset_ok(params->output_offset) || !kp_quant_ok(quant, output_dims->c)) {
        return KP_ERR_ARG;
    }
    k_len = filter_dims->h * filter_dims->w * filter_dims->c;
    if (!kp_sparse_groups_ok(w, filter_dims->n, k_len)) {
        return KP_ERR_ARG;
    }
    if (filter_dims->h == 1 && filter_dims->w == 1 && params->padding.h == 0 &&
        params->padding.w == 0) {
        /* A 1x1 window is one input pixel, its channels contiguous: no gather. */
        for (b = 0; b < output_dims->n; ++b) {
            const int8_t *image = input + b * input_dims->h * input_dims->w * input_dims->c;
            for (oy = 0; oy < output_dims->h; ++oy) {
                const int8_t *x = image + oy * params->stride.h * input_dims->w * k_len;
                for (ox = 0; ox < output_dims->w; ++ox) {
                    kp_nn_sparse_vec_s8(x + ox * params->stride.w * k_len, 0, w, eff_bias,
                                        quant, params->output_offset, params->activation,
                                        output);
                    output += output_dims->c;
                }
            }
        }
        return KP_OK;
    }
    /* The bytes past k_len up to the next group stay zero for every pixel. */
    memset(scratch + k_len, 0, (size_t)(KP_SPARSE_CONV_SCRATCH_BYTES(1, 1, k_len) - k_len));
    for (b = 0; b < output_dims->n; ++b) {
        const int8_t *image = input + b * input_dims->h * input_dims->w * input_dims->c;
        for (oy = 0; oy < output_dims->h; ++oy) {
            for (ox = 0; ox < output_dims->w; ++ox) {
                kp_im2col_s8(params, input_dims, image, filter_dims, oy, ox, scratch);
                kp_nn_sparse_vec_s8(scratch, 1, w, eff_bias, quant, params->output_offset,
                                    params->activation, output);
                output += output_dims->c;
            }
        }
    }
    return KP_OK;
}

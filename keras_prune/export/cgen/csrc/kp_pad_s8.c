/*
 * PAD of a 4-D NHWC int8 tensor with a constant: TFLM's PAD with no constant_values
 * input, which pads with the output zero point.
 */
#include <string.h>

#include "internal/kp_nn_check.h"

kp_status kp_pad_s8(const kp_pad_params *params, const kp_dims *input_dims,
                    const int8_t *input, const kp_dims *output_dims, int8_t *output)
{
    int32_t d, b, y, x;
    int32_t in_d[4], out_d[4];
    if (params == 0 || input == 0 || output == 0 || !kp_dims_ok(input_dims) ||
        !kp_dims_ok(output_dims)) {
        return KP_ERR_ARG;
    }
    in_d[0] = input_dims->n;
    in_d[1] = input_dims->h;
    in_d[2] = input_dims->w;
    in_d[3] = input_dims->c;
    out_d[0] = output_dims->n;
    out_d[1] = output_dims->h;
    out_d[2] = output_dims->w;
    out_d[3] = output_dims->c;
    for (d = 0; d < 4; ++d) {
        if (params->before[d] < 0 || params->after[d] < 0 ||
            (int64_t)in_d[d] + params->before[d] + params->after[d] != out_d[d]) {
            return KP_ERR_ARG;
        }
    }
    /* Output pixels (all channels of one position) are either all padding or
     * padding, one input pixel, padding. */
    const int32_t depth = out_d[3];
    const size_t before_c = (size_t)params->before[3];
    const size_t after_c = (size_t)params->after[3];
    const size_t in_c = (size_t)in_d[3];
    for (b = 0; b < out_d[0]; ++b) {
        const int32_t ib = b - params->before[0];
        for (y = 0; y < out_d[1]; ++y) {
            const int32_t iy = y - params->before[1];
            for (x = 0; x < out_d[2]; ++x) {
                const int32_t ix = x - params->before[2];
                int8_t *out = output + ((b * out_d[1] + y) * out_d[2] + x) * depth;
                if (ib < 0 || ib >= in_d[0] || iy < 0 || iy >= in_d[1] || ix < 0 ||
                    ix >= in_d[2]) {
                    memset(out, params->pad_value, (size_t)depth);
                } else {
                    const int8_t *in = input + ((ib * in_d[1] + iy) * in_d[2] + ix) * in_d[3];
                    memset(out, params->pad_value, before_c);
                    memcpy(out + before_c, in, in_c);
                    memset(out + before_c + in_c, params->pad_value, after_c);
                }
            }
        }
    }
    return KP_OK;
}

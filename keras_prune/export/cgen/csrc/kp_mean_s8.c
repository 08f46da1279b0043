/*
 * MEAN over height and width, int8: TFLM's reference QuantizedMeanOrSum, the path TFLM
 * takes for every int8 MEAN (keep_dims or not, equal or different quantization). The
 * division by the window size is folded into multiplier/shift beforehand, exactly as
 * TFLM folds it (int8_ops.mean_params), so here the mean is one requantization.
 */
#include "internal/kp_nn_check.h"
#include "internal/kp_nn_support.h"

kp_status kp_mean_s8(const kp_mean_params *params, const kp_dims *input_dims,
                     const int8_t *input, int8_t *output)
{
    int32_t b, c, i, count;
    if (params == 0 || input == 0 || output == 0 || !kp_dims_ok(input_dims) ||
        !kp_input_offset_ok(params->input_offset) ||
        !kp_output_offset_ok(params->output_offset) || !kp_shift_ok(params->shift) ||
        (int64_t)input_dims->h * input_dims->w > (1 << 23)) {
        return KP_ERR_ARG;
    }
    /* At most 2^23 taps, each within 2^8 of the zero point: the int32 sums cannot
     * overflow. */
    count = input_dims->h * input_dims->w;
    for (b = 0; b < input_dims->n; ++b) {
        const int8_t *in = input + b * count * input_dims->c;
        for (c = 0; c < input_dims->c; ++c) {
            int32_t sum = 0, v;
            for (i = 0; i < count; ++i) {
                sum += in[i * input_dims->c + c];
            }
            sum += params->input_offset * count;
            v = kp_requantize(sum, params->multiplier, params->shift) + params->output_offset;
            output[b * input_dims->c + c] = (int8_t)KP_CLAMP(v, -128, 127);
        }
    }
    return KP_OK;
}

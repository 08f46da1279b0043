/*
 * ADD of two same-shape int8 tensors: TFLM's reference int8 Add. Both inputs are scaled
 * to a common scale with 20 bits of headroom (left_shift), summed, then requantized.
 * Portable version; the Cortex-M4 build takes kp_elementwise_add_s8_dsp.c instead.
 */
#include "kp_nn_check.h"
#include "kp_nn_support.h"

#if !KP_ARM_DSP

kp_status kp_elementwise_add_s8(const kp_add_params *params, const int8_t *input1,
                                const int8_t *input2, int8_t *output, int32_t size)
{
    int32_t i;
    if (!kp_add_args_ok(params, input1, input2, output, size)) {
        return KP_ERR_ARG;
    }
    for (i = 0; i < size; ++i) {
        const int32_t a = (params->input1_offset + input1[i]) * (1 << params->left_shift);
        const int32_t b = (params->input2_offset + input2[i]) * (1 << params->left_shift);
        const int32_t sum =
            kp_requantize(a, params->input1_multiplier, params->input1_shift) +
            kp_requantize(b, params->input2_multiplier, params->input2_shift);
        int32_t v = kp_requantize(sum, params->output_multiplier, params->output_shift) +
                    params->output_offset;
        output[i] = (int8_t)KP_CLAMP(v, params->activation.min, params->activation.max);
    }
    return KP_OK;
}

#else
typedef int kp_elementwise_add_s8_portable_unused;
#endif /* !KP_ARM_DSP */

/*
 * The threshold form of an activation mask (kp_nn_activation.h), as TFLite runs it:
 * GREATER_EQUAL against a constant, then SELECT_V2. The Cortex-M4 (Armv7E-M DSP) path
 * takes four values per SSUB8/SEL.
 */
#include <string.h>

#include "kp_nn_activation.h"
#include "internal/kp_nn_support.h"

#if KP_ARM_DSP
#include "internal/kp_acle.h"

/* Four values at a time: each byte of x where x >= min_kept, else fill. */
static int32_t kp_threshold_words(const int8_t *input, int32_t size, int32_t min_kept,
                                  int32_t fill, int8_t *output)
{
    const uint32_t t4 = kp_splat8(min_kept), f4 = kp_splat8(fill);
    int32_t i;
    for (i = 0; i + 4 <= size; i += 4) {
        const uint32_t x = (uint32_t)kp_read_s8x4(input + i);
        const uint32_t r = kp_select_ge_s8x4(x, t4, x, f4);
        memcpy(output + i, &r, sizeof r);
    }
    return i;
}
#endif

kp_status kp_threshold_s8(const int8_t *input, int32_t size, int32_t min_kept, int32_t fill,
                          int8_t *output)
{
    int32_t i = 0;
    if (input == 0 || output == 0 || size < 1 || min_kept < -128 || min_kept > 128 ||
        fill < -128 || fill > 127) {
        return KP_ERR_ARG;
    }
#if KP_ARM_DSP
    if (min_kept <= 127) { /* 128 (keep none) has no int8 splat; the loop below does it */
        i = kp_threshold_words(input, size, min_kept, fill, output);
    }
#endif
    for (; i < size; ++i) {
        const int32_t v = input[i];
        output[i] = (int8_t)(v >= min_kept ? v : fill);
    }
    return KP_OK;
}

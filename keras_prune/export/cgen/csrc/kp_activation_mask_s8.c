/*
 * The activation masks of kp_nn_activation.h: the threshold form TFLite runs and the
 * top-k form the Keras layer computes. The threshold takes four values per SSUB8/SEL on
 * a Cortex-M4; the top-k (a count, then one pass) has no DSP version.
 */
#include <string.h>

#include "kp_nn_activation.h"
#include "kp_nn_support.h"

#if KP_ARM_DSP
#include "kp_acle.h"

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

kp_status kp_topk_s8(const int8_t *input, int32_t size, int32_t k, int32_t fill,
                     int8_t *output, uint16_t *scratch)
{
    int32_t i, v, above = 0, ties;
    if (input == 0 || output == 0 || scratch == 0 || size < 1 || size > 65535 || k < 1 ||
        fill < -128 || fill > 127) {
        return KP_ERR_ARG;
    }
    if (k >= size) {
        if (output != input) {
            memmove(output, input, (size_t)size);
        }
        return KP_OK;
    }
    memset(scratch, 0, KP_TOPK_SCRATCH_BYTES);
    for (i = 0; i < size; ++i) {
        ++scratch[input[i] + 128];
    }
    /* v: the k-th largest value; above: how many are larger; ties: how many equal to v
     * still win, the earliest ones. */
    for (v = 127; above + (int32_t)scratch[v + 128] < k; --v) {
        above += scratch[v + 128];
    }
    ties = k - above;
    for (i = 0; i < size; ++i) {
        const int32_t x = input[i];
        if (x > v) {
            output[i] = (int8_t)x;
        } else if (x == v && ties > 0) {
            output[i] = (int8_t)x;
            --ties;
        } else {
            output[i] = (int8_t)fill;
        }
    }
    return KP_OK;
}

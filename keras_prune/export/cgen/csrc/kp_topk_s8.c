/*
 * The top-k form of an activation mask (kp_nn_activation.h), as the Keras layer computes
 * it: a count of every int8 value, then one pass. Portable C99 only (no DSP path).
 */
#include <string.h>

#include "kp_nn_activation.h"

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

/*
 * The input-stationary product of kp_zero_skip_fully_connected_s8 (kp_nn_internal.h),
 * portable C99 and Cortex-M4 (Armv7E-M DSP), bit-exact with each other.
 *
 * The DSP path:
 * Each group of four inputs is read as one word and offset in two SXTAB16 (inputs 0 and
 * 2, 1 and 3, as int16 pairs); a group whose four values are all zero is skipped. Each
 * entry of a kept group then costs one weight word, two SXTB16 and two SMLAD into its
 * row's accumulator. A group with one non-zero input costs as much as one with four:
 * the word is loaded either way, so grouping the skip by four loses nothing per entry.
 */
#include <string.h>

#include "internal/kp_nn_internal.h"

#if KP_ARM_DSP /* Cortex-M4 (Armv7E-M DSP) */

#include "internal/kp_acle.h"

/* acc[row] += the entry's four weights . the group's offset inputs, for each entry of
 * one group; ROW(e) is the entry's row. */
#define KP_ZERO_SKIP_ENTRIES(ROW)                                                    \
    for (e = first; e < end; ++e) {                                                  \
        const int32_t word = w->words[e];                                            \
        int32_t *a = acc + (ROW);                                                    \
        *a = kp_smlad(kp_sxtb16(word), x02, kp_smlad(kp_sxtb16_ror8(word), x13, *a)); \
    }

void kp_nn_zero_skip_vec_s8(const int8_t *x, int32_t input_offset, const kp_input_groups *w,
                            const int32_t *bias, const kp_quant_params *quant,
                            int32_t output_offset, kp_activation act, int32_t *acc,
                            int8_t *out)
{
    const int32_t rows = w->rows, k = w->k, full = k / 4, groups = (k + 3) / 4;
    const int32_t off2 = kp_pack_lo_lo(input_offset, input_offset);
    int32_t g, r, e;
    memcpy(acc, bias, (size_t)rows * sizeof *acc);
    for (g = 0; g < groups; ++g) {
        const int32_t first = w->starts[g], end = w->starts[g + 1];
        int32_t x02, x13;
        if (g < full) {
            const int32_t xv = kp_read_s8x4(x + 4 * g);
            x02 = kp_sxtab16(off2, xv);
            x13 = kp_sxtab16_ror8(off2, xv);
        } else { /* the short last group: no read past k */
            int32_t v[4] = {0, 0, 0, 0}, i;
            for (i = 0; 4 * g + i < k; ++i) {
                v[i] = x[4 * g + i] + input_offset;
            }
            x02 = kp_pack_lo_lo(v[0], v[2]);
            x13 = kp_pack_lo_lo(v[1], v[3]);
        }
        if ((x02 | x13) == 0) {
            continue;
        }
        if (w->row8 != 0) {
            KP_ZERO_SKIP_ENTRIES(w->row8[e])
        } else if (w->row16 != 0) {
            KP_ZERO_SKIP_ENTRIES(w->row16[e])
        } else {
            KP_ZERO_SKIP_ENTRIES(e - first)
        }
    }
    {
        kp_rq q = kp_rq_make(quant->multiplier[0], quant->shift[0]);
        for (r = 0; r < rows; ++r) {
            if (quant->per_channel) {
                q = kp_rq_make(quant->multiplier[r], quant->shift[r]);
            }
            out[r] = (int8_t)kp_clamp(kp_rq_apply(acc[r], q) + output_offset, act.min,
                                      act.max);
        }
    }
}

#else /* portable C99 */

void kp_nn_zero_skip_vec_s8(const int8_t *x, int32_t input_offset, const kp_input_groups *w,
                            const int32_t *bias, const kp_quant_params *quant,
                            int32_t output_offset, kp_activation act, int32_t *acc,
                            int8_t *out)
{
    const int32_t rows = w->rows, k = w->k, groups = (k + 3) / 4;
    int32_t g, r;
    memcpy(acc, bias, (size_t)rows * sizeof *acc);
    for (g = 0; g < groups; ++g) {
        const int32_t first = w->starts[g], end = w->starts[g + 1];
        int32_t i;
        for (i = 0; i < 4 && 4 * g + i < k; ++i) {
            const int32_t v = x[4 * g + i] + input_offset;
            int32_t e;
            if (v == 0) {
                continue;
            }
            for (e = first; e < end; ++e) {
                const int32_t row = w->row8 ? w->row8[e] : w->row16 ? w->row16[e] : e - first;
                acc[row] += v * kp_word_weight((uint32_t)w->words[e], i);
            }
        }
    }
    for (r = 0; r < rows; ++r) {
        const int32_t c = quant->per_channel ? r : 0;
        const int32_t y = kp_requantize(acc[r], quant->multiplier[c], quant->shift[c]) +
                          output_offset;
        out[r] = (int8_t)KP_CLAMP(y, act.min, act.max);
    }
}

#endif /* KP_ARM_DSP */

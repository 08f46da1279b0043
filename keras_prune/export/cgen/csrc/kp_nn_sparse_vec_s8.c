/*
 * The sparse matrix-vector product of kp_nn_sparse_internal.h: portable C99. Same
 * arithmetic as the dense kernels on the dense pruned matrix: a removed group adds 0 to
 * the accumulator, and the effective bias already holds input_offset times the row's full
 * weight sum. The Cortex-M4 build takes kp_nn_sparse_vec_s8_dsp.c instead.
 */
#include "kp_nn_sparse_internal.h"
#include "kp_nn_support.h"

#if !KP_ARM_DSP

/* x[4g .. 4g + 4) . the group's weights, stopping at k (the storage padding of a short
 * last group is never multiplied: the input may end there). */
static inline int32_t kp_group_dot(const int8_t *x, int32_t g, int32_t k, int32_t word)
{
    int32_t acc = 0, i;
    for (i = 0; i < 4 && 4 * g + i < k; ++i) {
        acc += (int32_t)x[4 * g + i] * kp_word_weight((uint32_t)word, i);
    }
    return acc;
}

void kp_nn_sparse_vec_s8(const int8_t *x, int32_t padded, const kp_sparse_groups *w,
                         const int32_t *eff_bias, const kp_quant_params *quant,
                         int32_t output_offset, kp_activation act, int8_t *out)
{
    const int32_t *wp = w->words;
    const uint8_t *p8 = (const uint8_t *)w->index;
    const uint16_t *p16 = (const uint16_t *)w->index;
    int32_t r;
    (void)padded; /* the portable loop never reads past k */
    for (r = 0; r < w->rows; ++r) {
        int32_t n = w->counts[r];
        int32_t acc = eff_bias[r];
        int32_t g = 0;
        const int32_t i = quant->per_channel ? r : 0;
        int32_t v;
        if (w->index_kind == KP_SPARSE_RUNS8) {
            while (n > 0) {
                int32_t run;
                g += *p8++;
                run = *p8++;
                n -= run;
                for (; run > 0; --run, ++g) {
                    acc += kp_group_dot(x, g, w->k, *wp++);
                }
            }
        } else if (w->index_kind == KP_SPARSE_DELTA8) {
            for (; n > 0; --n, ++g) {
                int32_t d = *p8++;
                while (d == 255) {
                    g += 255;
                    d = *p8++;
                }
                g += d;
                acc += kp_group_dot(x, g, w->k, *wp++);
            }
        } else { /* KP_SPARSE_ABS16 */
            for (; n > 0; --n) {
                acc += kp_group_dot(x, *p16++, w->k, *wp++);
            }
        }
        v = kp_requantize(acc, quant->multiplier[i], quant->shift[i]) + output_offset;
        out[r] = (int8_t)KP_CLAMP(v, act.min, act.max);
    }
}

#else
/* Keeps the translation unit non-empty (ISO C) when the DSP version is compiled. */
typedef int kp_nn_sparse_vec_s8_portable_unused;
#endif /* !KP_ARM_DSP */

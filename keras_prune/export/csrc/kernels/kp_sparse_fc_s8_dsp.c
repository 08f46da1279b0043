/*
 * FULLY_CONNECTED, int8, on SIMD-group sparse weights (kp_nn_sparse.h): Cortex-M4 DSP.
 * Bit-exact with the portable kp_sparse_fc_s8.c.
 *
 * Each kept group is one weight word: SXTB16 splits it into its even and odd bytes as
 * int16 pairs, the four input bytes at the group's offset (one unaligned LDR) are split
 * the same way, and two SMLAD add the four products. The only group whose input may run
 * past in_len is the short last group of a row (in_len % 4 != 0); it can only be the
 * row's last kept group, so each row runs its kept groups but the last through the word
 * path and tests only the last one.
 */
#include "kp_nn_sparse_check.h"
#include "kp_nn_support.h"

#if KP_ARM_DSP

#include "kp_acle.h"

/* acc + x[0..4) . the group word's four weights. */
static inline int32_t kp_group_mac(int32_t acc, const int8_t *x4, int32_t word)
{
    const int32_t xv = kp_read_s8x4(x4);
    acc = kp_smlad(kp_sxtb16(word), kp_sxtb16(xv), acc);
    return kp_smlad(kp_sxtb16_ror8(word), kp_sxtb16_ror8(xv), acc);
}

/* The row's last group at x + 4 g: a short one (g == full, rest = in_len % 4 inputs
 * left) is summed byte by byte, reading no input past in_len. */
static inline int32_t kp_group_mac_last(int32_t acc, const int8_t *x, int32_t g,
                                        int32_t full, int32_t rest, int32_t word)
{
    if (rest != 0 && g == full) {
        const int8_t *x4 = x + 4 * g;
        int32_t i;
        for (i = 0; i < rest; ++i) {
            acc += (int32_t)x4[i] * (int32_t)(int8_t)((uint32_t)word >> (8 * i));
        }
        return acc;
    }
    return kp_group_mac(acc, x + 4 * g, word);
}

kp_status kp_sparse_fully_connected_s8(const kp_fc_params *params,
                                       const kp_quant_params *quant, int32_t batches,
                                       int32_t in_len, int32_t out_len, const int8_t *input,
                                       const kp_sparse_groups *w, const int32_t *eff_bias,
                                       int8_t *output)
{
    const int32_t full = in_len >> 2;
    const int32_t rest = in_len & 3;
    int32_t b, r;
    if (!kp_sparse_fc_args_ok(params, quant, batches, in_len, out_len, input, w, eff_bias,
                              output)) {
        return KP_ERR_ARG;
    }
    {
        /* Everything the loops read, in locals: the int8 output stores may alias any
         * memory, which would otherwise reload each of these per row. */
        const int32_t step = quant->per_channel ? 1 : 0;
        const int32_t kind = w->index_kind;
        const int32_t off = params->output_offset;
        const kp_activation act = params->activation;
        const uint16_t *counts = w->counts;
        const int32_t *words = w->words;
        const void *index = w->index;
        const int32_t *mult = quant->multiplier;
        const int32_t *shift = quant->shift;
        for (b = 0; b < batches; ++b) {
            const int8_t *x = input + b * in_len;
            const int32_t *wp = words;
            const uint8_t *p8 = (const uint8_t *)index;
            const uint16_t *p16 = (const uint16_t *)index;
            int8_t *out = output + b * out_len;
            for (r = 0; r < out_len; ++r) {
                int32_t n = counts[r];
                int32_t acc = eff_bias[r];
                if (n > 0) {
                    int32_t g;
                    if (kind == KP_SPARSE_RUNS8) {
                        g = 0;
                        for (;;) {
                            int32_t run;
                            const int8_t *xp;
                            g += *p8++;
                            run = *p8++;
                            n -= run;
                            if (n <= 0) {
                                --run; /* the row's last group is left for below */
                            }
                            xp = x + 4 * g;
                            g += run;
                            for (; run > 0; --run, xp += 4) {
                                acc = kp_group_mac(acc, xp, *wp++);
                            }
                            if (n <= 0) {
                                break;
                            }
                        }
                    } else if (kind == KP_SPARSE_DELTA8) {
                        const int8_t *xp = x; /* at the next group that may be kept */
                        uint32_t d;
                        for (; n > 1; --n) {
                            d = *p8++;
                            if (__builtin_expect(d == 255U, 0)) {
                                do {
                                    xp += 4 * 255;
                                    d = *p8++;
                                } while (d == 255U);
                            }
                            xp += 4 * d;
                            acc = kp_group_mac(acc, xp, *wp++);
                            xp += 4;
                        }
                        d = *p8++;
                        while (d == 255U) {
                            xp += 4 * 255;
                            d = *p8++;
                        }
                        g = (int32_t)((xp - x) >> 2) + (int32_t)d;
                    } else { /* KP_SPARSE_ABS16 */
                        for (; n > 1; --n) {
                            acc = kp_group_mac(acc, x + 4 * *p16++, *wp++);
                        }
                        g = *p16++;
                    }
                    acc = kp_group_mac_last(acc, x, g, full, rest, *wp++);
                }
                {
                    const int32_t i = r * step;
                    const kp_rq q = kp_rq_make(mult[i], shift[i]);
                    out[r] = (int8_t)kp_clamp(kp_rq_apply(acc, q) + off, act.min, act.max);
                }
            }
        }
    }
    return KP_OK;
}

#else
/* Keeps the translation unit non-empty (ISO C) when the portable version is compiled. */
typedef int kp_sparse_fc_s8_dsp_unused;
#endif /* KP_ARM_DSP */

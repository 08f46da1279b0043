/*
 * DEPTHWISE_CONV_2D, int8, depth multiplier 1, on SIMD-group sparse weights
 * (kp_nn_sparse.h): a group is four consecutive channels at one tap of the window, the
 * word the DSP depthwise kernel loads, so a removed group is a skipped load pair and four
 * skipped MACs.
 *
 * The filter is stored as a kp_sparse_groups matrix with one row per channel quad (c / 4)
 * and the taps along it: group t of row q holds channels 4q..4q+3 at tap t. Channel quads
 * are the outer loop, as in the dense kernel: a quad's kept taps are decoded once into
 * (input offset, weight word) pairs, its bias and requantization prepared once, and every
 * output pixel then walks only those taps. A window that crosses the border reads the
 * value -input_offset at its outside taps, which adds nothing once the effective bias has
 * its input_offset * w term (TFLM skips those taps).
 */
#include <string.h>

#include "internal/kp_nn_sparse_internal.h"
#include "internal/kp_nn_support.h"

#if KP_ARM_DSP
#include "internal/kp_acle.h"
#endif

/* One channel quad's kept taps: pairs[2 i] = the tap's input offset from the window's
 * first byte, pairs[2 i + 1] = its four weights; dy[i], dx[i] = the tap's input row and
 * column from the window's first (for the border's bounds checks, without a division). */
typedef struct {
    int32_t *pairs;
    int32_t *dy;
    int32_t *dx;
    int32_t n;
} kp_dw_taps;

/* The next channel quad's kept taps (the cursor's next row) into d. */
static void kp_dw_decode(kp_group_cursor *cur, const int32_t *words, int32_t n,
                         const kp_dims *in, const kp_dims *f, kp_tile dilation, kp_dw_taps *d)
{
    int32_t i;
    d->n = n;
    kp_cursor_row(cur);
    for (i = 0; i < n; ++i) {
        const int32_t t = kp_next_group(cur);
        d->dy[i] = (t / f->w) * dilation.h;
        d->dx[i] = (t % f->w) * dilation.w;
        d->pairs[2 * i] = (d->dy[i] * in->w + d->dx[i]) * in->c;
        d->pairs[2 * i + 1] = words[i];
    }
}

#if KP_ARM_DSP
/* a0..a3 += the n kept taps (pairs) over the window at x: per tap one input word and one
 * weight word, both split by SXTB16 into even and odd channels, four SMLAxy (depthwise has
 * no sum for SMLAD to pair). Uses the locals a0..a3, pairs, n, x, o, wv, we, xv, t. */
#define KP_DW_TAPS_ASM \
        __asm__ volatile("1:\n\t" \
                         "ldrd   %[o], %[wv], [%[pp]], #8\n\t" \
                         "ldr    %[xv], [%[x], %[o]]\n\t" \
                         "sxtb16 %[we], %[wv]\n\t" \
                         "sxtb16 %[wv], %[wv], ror #8\n\t" \
                         "sxtb16 %[t], %[xv]\n\t" \
                         "sxtb16 %[xv], %[xv], ror #8\n\t" \
                         "smlabb %[a0], %[t], %[we], %[a0]\n\t" \
                         "smlatt %[a2], %[t], %[we], %[a2]\n\t" \
                         "smlabb %[a1], %[xv], %[wv], %[a1]\n\t" \
                         "smlatt %[a3], %[xv], %[wv], %[a3]\n\t" \
                         "subs   %[n], %[n], #1\n\t" \
                         "bne    1b\n\t" \
                         : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), \
                           [pp] "+r"(pairs), [n] "+r"(n), [o] "=&r"(o), [wv] "=&r"(wv), \
                           [we] "=&r"(we), [xv] "=&r"(xv), [t] "=&r"(t) \
                         : [x] "r"(x) \
                         : "cc", "memory")

/* acc += the quad's kept taps over a window wholly inside the image (x: its first byte,
 * channel 4q). */
static inline void kp_dw_inside_taps(const int8_t *x, const int32_t *pairs, int32_t n,
                                     int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int32_t o, wv, we, xv, t;
    if (n > 0) {
        KP_DW_TAPS_ASM;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* One pixel whose window is inside the image, on a quad whose four channels all take the
 * short requantization: the taps, the requantization and the store with the
 * accumulators kept in registers (through acc they would go to the stack and back). */
static inline void kp_dw_pixel_short(const int8_t *x, const int32_t *pairs, int32_t n,
                                     const int32_t *bias, const kp_row_rq *rs, uint32_t lo4,
                                     uint32_t hi4, int8_t *out)
{
    int32_t a0 = bias[0], a1 = bias[1], a2 = bias[2], a3 = bias[3];
    int32_t o, wv, we, xv, t;
    uint32_t packed;
    if (n > 0) {
        KP_DW_TAPS_ASM;
    }
    packed = kp_clamp_pack4(kp_rq_short(a0, &rs[0]), kp_rq_short(a1, &rs[1]),
                            kp_rq_short(a2, &rs[2]), kp_rq_short(a3, &rs[3]), lo4, hi4);
    memcpy(out, &packed, 4);
}

static inline void kp_dw_mac(int32_t xv, int32_t wv, int32_t *acc)
{
    const int32_t xe = kp_sxtb16(xv), xo = kp_sxtb16_ror8(xv);
    const int32_t we = kp_sxtb16(wv), wo = kp_sxtb16_ror8(wv);
    acc[0] = kp_smlabb(xe, we, acc[0]);
    acc[2] = kp_smlatt(xe, we, acc[2]);
    acc[1] = kp_smlabb(xo, wo, acc[1]);
    acc[3] = kp_smlatt(xo, wo, acc[3]);
}
#else
static void kp_dw_mac(int32_t xv, int32_t wv, int32_t *acc)
{
    int32_t i;
    for (i = 0; i < 4; ++i) {
        acc[i] += kp_word_weight((uint32_t)xv, i) * kp_word_weight((uint32_t)wv, i);
    }
}

static void kp_dw_inside_taps(const int8_t *x, const int32_t *pairs, int32_t n, int32_t *acc)
{
    int32_t xv;
    for (; n > 0; --n, pairs += 2) {
        memcpy(&xv, x + pairs[0], 4);
        kp_dw_mac(xv, pairs[1], acc);
    }
}
#endif

kp_status kp_sparse_depthwise_conv_s8(const kp_dw_conv_params *params,
                                      const kp_quant_params *quant, const kp_dims *input_dims,
                                      const int8_t *input, const kp_dims *filter_dims,
                                      const kp_sparse_groups *w, const int32_t *eff_bias,
                                      const kp_dims *output_dims, int8_t *output,
                                      int8_t *scratch)
{
    kp_group_cursor cur;
    const int32_t *words;
    int32_t c, b, oy, ox, i, taps, quads, offset;
    uint32_t pad4;
    kp_dw_taps d;
    if (params == 0 || input == 0 || eff_bias == 0 || output == 0 || scratch == 0 ||
        !kp_dims_ok(input_dims) || !kp_dims_ok(filter_dims) || !kp_dims_ok(output_dims) ||
        params->ch_mult != 1 || filter_dims->n != 1 || input_dims->n != output_dims->n ||
        filter_dims->c != output_dims->c || output_dims->c != input_dims->c ||
        (input_dims->c & 3) != 0 || !kp_tile_ok(params->stride, 1) ||
        !kp_tile_ok(params->dilation, 1) || !kp_tile_ok(params->padding, 0) ||
        !kp_activation_ok(params->activation) || !kp_input_offset_ok(params->input_offset) ||
        !kp_output_offset_ok(params->output_offset) || !kp_quant_ok(quant, output_dims->c)) {
        return KP_ERR_ARG;
    }
    taps = filter_dims->h * filter_dims->w;
    quads = input_dims->c >> 2;
    if (!kp_sparse_groups_ok(w, quads, 4 * taps)) {
        return KP_ERR_ARG;
    }
    d.pairs = (int32_t *)(void *)scratch;
    d.dy = d.pairs + 2 * taps;
    d.dx = d.dy + taps;
    offset = params->output_offset;
    pad4 = 0x01010101U * (uint8_t)(-params->input_offset);
    kp_cursor_start(&cur, w);
    words = w->words;
    for (c = 0; c < input_dims->c; c += 4) {
        int32_t mult[4], shift[4];
#if KP_ARM_DSP
        kp_rq rq[4];
        kp_row_rq rs[4];
        int fast = 1;
        const uint32_t lo4 = kp_splat8(params->activation.min);
        const uint32_t hi4 = kp_splat8(params->activation.max);
#endif
        kp_dw_decode(&cur, words, w->counts[c >> 2], input_dims, filter_dims,
                     params->dilation, &d);
        words += d.n;
        for (i = 0; i < 4; ++i) {
            const int32_t qi = quant->per_channel ? c + i : 0;
            mult[i] = quant->multiplier[qi];
            shift[i] = quant->shift[qi];
#if KP_ARM_DSP
            rq[i] = kp_rq_make(mult[i], shift[i]);
            /* a channel's taps add at most taps * 2^14 to its bias */
            rs[i] = kp_row_rq_make(mult[i], shift[i], offset, eff_bias[c + i], taps);
            fast = fast && rs[i].fast;
#endif
        }
        for (b = 0; b < output_dims->n; ++b) {
            const int8_t *image = input + b * input_dims->h * input_dims->w * input_dims->c + c;
            int8_t *out = output + b * output_dims->h * output_dims->w * output_dims->c + c;
            for (oy = 0; oy < output_dims->h; ++oy) {
                const int32_t y0 = oy * params->stride.h - params->padding.h;
                const int rows_inside =
                    y0 >= 0 && y0 + (filter_dims->h - 1) * params->dilation.h < input_dims->h;
                for (ox = 0; ox < output_dims->w; ++ox, out += output_dims->c) {
                    const int32_t x0 = ox * params->stride.w - params->padding.w;
                    const int8_t *x = image + (y0 * input_dims->w + x0) * input_dims->c;
                    const int inside =
                        rows_inside && x0 >= 0 &&
                        x0 + (filter_dims->w - 1) * params->dilation.w < input_dims->w;
                    int32_t acc[4];
#if KP_ARM_DSP
                    if (inside && fast) {
                        kp_dw_pixel_short(x, d.pairs, d.n, eff_bias + c, rs, lo4, hi4, out);
                        continue;
                    }
#endif
                    memcpy(acc, eff_bias + c, sizeof acc);
                    if (inside) {
                        kp_dw_inside_taps(x, d.pairs, d.n, acc);
                    } else {
                        for (i = 0; i < d.n; ++i) {
                            const int32_t iy = y0 + d.dy[i];
                            const int32_t ix = x0 + d.dx[i];
                            int32_t xv = (int32_t)pad4;
                            if (iy >= 0 && iy < input_dims->h && ix >= 0 &&
                                ix < input_dims->w) {
                                memcpy(&xv, x + d.pairs[2 * i], 4);
                            }
                            kp_dw_mac(xv, d.pairs[2 * i + 1], acc);
                        }
                    }
#if KP_ARM_DSP
                    if (fast) { /* the short requantization, offset included */
                        const uint32_t packed = kp_clamp_pack4(
                            kp_rq_short(acc[0], &rs[0]), kp_rq_short(acc[1], &rs[1]),
                            kp_rq_short(acc[2], &rs[2]), kp_rq_short(acc[3], &rs[3]), lo4, hi4);
                        memcpy(out, &packed, 4);
                    } else {
                        const uint32_t packed = kp_clamp_pack4(
                            kp_rq_apply(acc[0], rq[0]) + offset,
                            kp_rq_apply(acc[1], rq[1]) + offset,
                            kp_rq_apply(acc[2], rq[2]) + offset,
                            kp_rq_apply(acc[3], rq[3]) + offset, lo4, hi4);
                        memcpy(out, &packed, 4);
                    }
#else
                    for (i = 0; i < 4; ++i) {
                        const int32_t v = kp_requantize(acc[i], mult[i], shift[i]) + offset;
                        out[i] = (int8_t)KP_CLAMP(v, params->activation.min,
                                                  params->activation.max);
                    }
#endif
                }
            }
        }
    }
    return KP_OK;
}

/*
 * CONV_2D, int8, on SIMD-group sparse weights (kp_nn_sparse.h), a block of output rows at
 * a time: the variant for convolutions over few input channels and few output channels
 * (LeNet-5's first layer), where kp_sparse_convolve_s8's per-pixel window gather and
 * per-quad requantization cost more than the few kept groups.
 *
 * For a block of output rows (about KP_SPARSE_CONV_ROWS_BLOCK_PIXELS pixels) it copies the
 * input rows their windows cover into scratch once, padding included as the input zero
 * point; then for each output channel it walks that channel's kept groups and adds each
 * group to every pixel of the block in one pass. A kept weight is decoded once per block,
 * an input byte copied about once per block, and nothing is paid per pixel but the
 * accumulator and its requantization. The cost model (cost_model.conv_rows_cycles) picks
 * this kernel or kp_sparse_convolve_s8 per layer.
 */
#include <string.h>

#include "internal/kp_nn_sparse_internal.h"
#include "internal/kp_nn_support.h"

#if KP_ARM_DSP
#include "internal/kp_acle.h"
#endif

/* Where a block's pixels read the copied rows: pixel (y, x) of the block starts at
 * y * row_step + x * step. */
typedef struct {
    int32_t h, w;     /* output rows and columns in the block */
    int32_t step;     /* bytes between horizontally adjacent windows */
    int32_t row_step; /* bytes between vertically adjacent windows */
} kp_block;

/* acc[0 .. b.h * b.w) += the group's four taps over the block: tap i reads src[off[i] +
 * the pixel's start] (a tap past k: weight 0, offset 0). */
static void kp_add_group_taps(int32_t *acc, kp_block b, const int8_t *src,
                              const int32_t *off, const int32_t *wt)
{
    const int32_t w0 = wt[0], w1 = wt[1], w2 = wt[2], w3 = wt[3];
    int32_t y, j;
    for (y = 0; y < b.h; ++y, src += b.row_step) {
        const int8_t *s0 = src + off[0], *s1 = src + off[1], *s2 = src + off[2];
        const int8_t *s3 = src + off[3];
        int32_t o = 0;
        for (j = 0; j < b.w; ++j, o += b.step) {
            *acc++ += w0 * s0[o] + w1 * s1[o] + w2 * s2[o] + w3 * s3[o];
        }
    }
}

#if KP_ARM_DSP
/* acc[0 .. b.h * b.w) += two 4-byte pieces over the block: piece i reads the word at s_i +
 * the pixel's start and multiplies it by word_i (SXTB16, two SMLAD); one accumulator load
 * and store for both. */
/* Not inlined: inside the block loop GCC spills the pass's registers (26 cycles per
 * pixel instead of 19). */
__attribute__((noinline)) static void kp_add_words2(int32_t *acc, kp_block b,
                                                    const int8_t *s0, const int8_t *s1,
                                                    int32_t word0, int32_t word1)
{
    const int32_t e0 = kp_sxtb16(word0), o0 = kp_sxtb16_ror8(word0);
    const int32_t e1 = kp_sxtb16(word1), o1 = kp_sxtb16_ror8(word1);
    const int32_t step = b.step;
    int32_t y, j;
    for (y = 0; y < b.h; ++y, s0 += b.row_step, s1 += b.row_step) {
        const int8_t *p0 = s0, *p1 = s1;
        for (j = 0; j < b.w; ++j, p0 += step, p1 += step) {
            const int32_t x0 = kp_read_s8x4(p0), x1 = kp_read_s8x4(p1);
            int32_t a = kp_smlad(e0, kp_sxtb16(x0), *acc);
            a = kp_smlad(o0, kp_sxtb16_ror8(x0), a);
            a = kp_smlad(e1, kp_sxtb16(x1), a);
            *acc++ = kp_smlad(o1, kp_sxtb16_ror8(x1), a);
        }
    }
}

/* Splits a group into at most two contiguous pieces of the copied rows: piece i is
 * (off[i], word[i]) with byte b of word[i] the weight of the byte at off[i] + b, the
 * other bytes' weights zeroed. Returns the number of pieces, or 0 when the taps need
 * more (a dilated filter). tab: the taps' offsets; len: the group's taps inside k. */
static inline int32_t kp_group_pieces(const uint16_t *tab, int32_t len, uint32_t word,
                                      int32_t *off, int32_t *wd)
{
    int32_t i = 1;
    uint32_t lo;
    off[0] = tab[0];
    wd[0] = (int32_t)word;
    if (tab[len - 1] == tab[0] + len - 1) {
        return 1;
    }
    while (tab[i] == tab[0] + i) {
        ++i;
    }
    if (tab[len - 1] != tab[i] + len - 1 - i) {
        return 0;
    }
    lo = (1U << (8 * i)) - 1U;
    wd[0] = (int32_t)(word & lo);
    off[1] = tab[i] - i;
    wd[1] = (int32_t)(word & ~lo);
    return 2;
}
#endif

/* out[j * stride] = the requantized, clamped acc[j], one channel's row of outputs. */
static void kp_out_channel(const int32_t *acc, int32_t n, int32_t multiplier, int32_t shift,
                           int32_t offset, kp_activation act, int8_t *out, int32_t stride)
{
    int32_t j;
#if KP_ARM_DSP
    const kp_rq q = kp_rq_make(multiplier, shift);
    for (j = 0; j < n; ++j, out += stride) {
        *out = (int8_t)kp_clamp(kp_rq_apply(acc[j], q) + offset, act.min, act.max);
    }
#else
    for (j = 0; j < n; ++j, out += stride) {
        const int32_t v = kp_requantize(acc[j], multiplier, shift) + offset;
        *out = (int8_t)KP_CLAMP(v, act.min, act.max);
    }
#endif
}

/* n input rows from iy0 on, each as span pixels from x = -padding.w on (outside the image:
 * the pad value), one after the other into rows. */
static void kp_copy_rows(const kp_conv_params *p, const kp_dims *in, const int8_t *image,
                         int32_t iy0, int32_t n, int32_t span, int8_t *rows)
{
    const int8_t pad = (int8_t)(-p->input_offset);
    const int32_t c = in->c, x0 = -p->padding.w;
    const int32_t lo = KP_CLAMP(-x0, 0, span);          /* pixels left of the image */
    const int32_t hi = KP_CLAMP(in->w - x0, lo, span);  /* end of the pixels inside it */
    int32_t i;
    for (i = 0; i < n; ++i, rows += span * c) {
        const int32_t iy = iy0 + i;
        if (iy < 0 || iy >= in->h) {
            memset(rows, pad, (size_t)(span * c));
            continue;
        }
        memset(rows, pad, (size_t)(lo * c));
        memcpy(rows + lo * c, image + (iy * in->w + x0 + lo) * c, (size_t)((hi - lo) * c));
        memset(rows + hi * c, pad, (size_t)((span - hi) * c));
    }
}

/* tab[t] = where tap t of the filter (t = (ky * kw + kx) * in_c + ch) reads, from the
 * start of a window in the copied rows; once per call, so that no group pays a division. */
static void kp_tap_table(const kp_dims *f, int32_t span, kp_tile dilation, uint16_t *tab)
{
    int32_t ky, kx, ch;
    for (ky = 0; ky < f->h; ++ky) {
        for (kx = 0; kx < f->w; ++kx) {
            const int32_t base = (ky * dilation.h * span + kx * dilation.w) * f->c;
            for (ch = 0; ch < f->c; ++ch) {
                *tab++ = (uint16_t)(base + ch);
            }
        }
    }
}

/* One block of output rows: every channel's kept groups over the copied rows. */
static void kp_sparse_conv_block(const kp_conv_params *p, const kp_quant_params *quant,
                                 const kp_sparse_groups *w, const uint16_t *tab,
                                 const int32_t *eff_bias, kp_block blk, const int8_t *rows,
                                 int32_t *acc, int8_t *out)
{
    const int32_t k = w->k, npx = blk.h * blk.w;
    const int32_t *wp = w->words;
    kp_group_cursor cur;
    int32_t r, j;
    kp_cursor_start(&cur, w);
    for (r = 0; r < w->rows; ++r) {
        const int32_t q = quant->per_channel ? r : 0;
        int32_t n = w->counts[r];
#if KP_ARM_DSP
        int32_t po = 0, pw = 0, pending = 0;
#endif
        for (j = 0; j < npx; ++j) {
            acc[j] = eff_bias[r];
        }
        kp_cursor_row(&cur);
        for (; n > 0; --n) {
            const int32_t t0 = 4 * kp_next_group(&cur);
            const int32_t len = KP_MIN(4, k - t0);
            const uint32_t word = (uint32_t)*wp++;
            int32_t off[4], wt[4], i;
#if KP_ARM_DSP
            /* Most groups are one contiguous word of the copied rows; pieces are paired
             * so that each pass over the block adds two. */
            const int32_t pieces = kp_group_pieces(tab + t0, len, word, off, wt);
            for (i = 0; i < pieces; ++i) {
                if (pending) {
                    kp_add_words2(acc, blk, rows + po, rows + off[i], pw, wt[i]);
                } else {
                    po = off[i];
                    pw = wt[i];
                }
                pending = !pending;
            }
            if (pieces > 0) {
                continue;
            }
#endif
            for (i = 0; i < 4; ++i) {
                off[i] = i < len ? tab[t0 + i] : 0;
                wt[i] = i < len ? kp_word_weight(word, i) : 0;
            }
            kp_add_group_taps(acc, blk, rows, off, wt);
        }
#if KP_ARM_DSP
        if (pending) {
            kp_add_words2(acc, blk, rows + po, rows + po, pw, 0);
        }
#endif
        kp_out_channel(acc, npx, quant->multiplier[q], quant->shift[q], p->output_offset,
                       p->activation, out + r, w->rows);
    }
}

kp_status kp_sparse_convolve_rows_s8(const kp_conv_params *params, const kp_quant_params *quant,
                                const kp_dims *input_dims, const int8_t *input,
                                const kp_dims *filter_dims, const kp_sparse_groups *w,
                                const int32_t *eff_bias, const kp_dims *output_dims,
                                int8_t *output, int8_t *scratch)
{
    int32_t k_len, span, block_h, in_rows, b, oy;
    if (params == 0 || input == 0 || eff_bias == 0 || output == 0 || scratch == 0 ||
        !kp_dims_ok(input_dims) || !kp_dims_ok(filter_dims) || !kp_dims_ok(output_dims) ||
        input_dims->n != output_dims->n || filter_dims->c != input_dims->c ||
        filter_dims->n != output_dims->c || !kp_tile_ok(params->stride, 1) ||
        !kp_tile_ok(params->dilation, 1) || !kp_tile_ok(params->padding, 0) ||
        !kp_activation_ok(params->activation) || !kp_input_offset_ok(params->input_offset) ||
        !kp_output_offset_ok(params->output_offset) || !kp_quant_ok(quant, output_dims->c)) {
        return KP_ERR_ARG;
    }
    k_len = filter_dims->h * filter_dims->w * filter_dims->c;
    if (!kp_sparse_groups_ok(w, filter_dims->n, k_len)) {
        return KP_ERR_ARG;
    }
    span = KP_SPARSE_CONV_ROWS_SPAN(filter_dims->w, output_dims->w, params->stride.w,
                               params->dilation.w);
    block_h = KP_SPARSE_CONV_ROWS_BLOCK(output_dims->h, output_dims->w);
    in_rows = KP_SPARSE_CONV_ROWS_IN(block_h, filter_dims->h, params->stride.h,
                                     params->dilation.h);
    if (in_rows * span * input_dims->c > KP_SPARSE_CONV_ROWS_MAX_BYTES) {
        return KP_ERR_ARG;
    }
    {
        int32_t *acc = (int32_t *)(void *)scratch;
        uint16_t *tab = (uint16_t *)(void *)(acc + block_h * output_dims->w);
        int8_t *rows = (int8_t *)(void *)(tab + ((k_len + 1) & ~1));
        kp_block blk;
        blk.w = output_dims->w;
        blk.step = params->stride.w * input_dims->c;
        blk.row_step = params->stride.h * span * input_dims->c;
        kp_tap_table(filter_dims, span, params->dilation, tab);
        for (b = 0; b < output_dims->n; ++b) {
            const int8_t *image = input + b * input_dims->h * input_dims->w * input_dims->c;
            for (oy = 0; oy < output_dims->h; oy += block_h) {
                blk.h = KP_MIN(block_h, output_dims->h - oy);
                kp_copy_rows(params, input_dims, image, oy * params->stride.h -
                             params->padding.h, KP_SPARSE_CONV_ROWS_IN(blk.h, filter_dims->h,
                             params->stride.h, params->dilation.h), span, rows);
                kp_sparse_conv_block(params, quant, w, tab, eff_bias, blk, rows, acc,
                                     output);
                output += blk.h * output_dims->w * output_dims->c;
            }
        }
    }
    return KP_OK;
}

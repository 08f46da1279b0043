/*
 * CONV_2D, int8, on SIMD-group sparse weights (kp_nn_sparse.h): output-stationary over
 * four pixels at a time.
 *
 * The kernel gathers the windows of KP_SPARSE_CONV_PIXELS output pixels (padding as the
 * input zero point's negation, so that it adds nothing) into scratch, interleaved by
 * word: group g of the quad's pixel j sits at quad + 16 g + 4 j. Then, per output channel,
 * it decodes that channel's kept-group indices once and walks them for every quad, four
 * accumulators held in registers: per kept group one weight word, one index and one
 * 16-byte run of inputs, where the earlier block kernel loaded and stored every pixel's
 * accumulator per pair of groups. A kept group costs about what a dense group costs, so
 * the cycles fall with the groups removed.
 *
 * The windows hold int8 values as they are (the input offset is in the effective bias),
 * which every filter shape, stride, dilation and channel count shares: a 1x1 convolution
 * gathers one pixel's channels, a first convolution over 1-3 channels its whole window.
 */
#include <string.h>

#include "internal/kp_nn_sparse_internal.h"
#include "internal/kp_nn_support.h"

#if KP_ARM_DSP
#include "internal/kp_acle.h"
#endif

/* Walks one row's kept groups in any index stream: kp_next_group gives the next kept
 * group's index g (in groups of 4 from the row's start). */
typedef struct {
    const uint8_t *p8;
    const uint16_t *p16;
    int32_t kind;
    int32_t g;   /* the next group that may be kept */
    int32_t run; /* RUNS8: kept groups left in the current run */
} kp_group_cursor;

static inline int32_t kp_next_group(kp_group_cursor *c)
{
    int32_t g;
    if (c->kind == KP_SPARSE_ABS16) {
        return *c->p16++;
    }
    if (c->kind == KP_SPARSE_DELTA8) {
        uint32_t d = *c->p8++;
        while (d == 255U) {
            c->g += 255;
            d = *c->p8++;
        }
        c->g += (int32_t)d;
    } else { /* KP_SPARSE_RUNS8; a (255, 0) pair only extends the skip */
        while (c->run == 0) {
            c->g += c->p8[0];
            c->run = c->p8[1];
            c->p8 += 2;
        }
        --c->run;
    }
    g = c->g;
    c->g = g + 1;
    return g;
}

/* The n kept groups of the cursor's next row into g, as ABS16 holds them: a row is then
 * read the same way from any index stream, the walk of the stream paid once per pass. */
static void kp_decode_row(kp_group_cursor *c, int32_t n, uint16_t *g)
{
    int32_t at = 0;
    if (c->kind == KP_SPARSE_DELTA8) {
        const uint8_t *p8 = c->p8;
        for (; n > 0; --n) {
            uint32_t d = *p8++;
            while (d == 255U) {
                at += 255;
                d = *p8++;
            }
            at += (int32_t)d;
            *g++ = (uint16_t)at++;
        }
        c->p8 = p8;
        return;
    }
    c->g = 0;
    c->run = 0;
    for (; n > 0; --n) {
        *g++ = (uint16_t)kp_next_group(c);
    }
    (void)at;
}

/* n words from src (consecutive) to dst, 16 bytes apart: one pixel's slot of a quad.
 * Four loads then four stores, which the Cortex-M4 pipelines. */
static inline void kp_copy_words(int8_t *dst, const int8_t *src, int32_t n)
{
    uint32_t v0, v1, v2, v3;
    for (; n >= 4; n -= 4, src += 16, dst += 64) {
        memcpy(&v0, src, 4);
        memcpy(&v1, src + 4, 4);
        memcpy(&v2, src + 8, 4);
        memcpy(&v3, src + 12, 4);
        memcpy(dst, &v0, 4);
        memcpy(dst + 16, &v1, 4);
        memcpy(dst + 32, &v2, 4);
        memcpy(dst + 48, &v3, 4);
    }
    for (; n > 0; --n, src += 4, dst += 16) {
        memcpy(dst, src, 4);
    }
}

static inline void kp_fill_words(int8_t *dst, uint32_t v, int32_t n)
{
    for (; n > 0; --n, dst += 16) {
        memcpy(dst, &v, 4);
    }
}

/* Output pixel (oy, ox)'s window, contiguous, into win (k bytes): per filter row one copy
 * where the row lies inside the image, else tap by tap with the pad value. */
static void kp_read_window(const kp_conv_params *p, const kp_dims *in, const kp_dims *f,
                      const int8_t *image, int32_t oy, int32_t ox, int8_t *win)
{
    const int8_t pad = (int8_t)(-p->input_offset);
    const int32_t c = in->c, span = f->w * c;
    const int32_t iy0 = oy * p->stride.h - p->padding.h;
    const int32_t ix0 = ox * p->stride.w - p->padding.w;
    const int row_inside = p->dilation.w == 1 && ix0 >= 0 && ix0 + f->w - 1 < in->w;
    int32_t ky, kx;
    for (ky = 0; ky < f->h; ++ky, win += span) {
        const int32_t iy = iy0 + ky * p->dilation.h;
        const int8_t *row = image + iy * in->w * c;
        if (iy < 0 || iy >= in->h) {
            memset(win, pad, (size_t)span);
        } else if (row_inside) {
            memcpy(win, row + ix0 * c, (size_t)span);
        } else {
            for (kx = 0; kx < f->w; ++kx) {
                const int32_t ix = ix0 + kx * p->dilation.w;
                if (ix < 0 || ix >= in->w) {
                    memset(win + kx * c, pad, (size_t)c);
                } else {
                    memcpy(win + kx * c, row + ix * c, (size_t)c);
                }
            }
        }
    }
}

/* The windows of npx output pixels from (oy, ox) on, pixel j into slot j % 4 of quad
 * j / 4 (quads 4 k4 bytes apart): byte t of a window at quad + 16 (t / 4) + 4 (j % 4) +
 * t % 4. Outside the image the value is -input_offset (which adds nothing); a window's
 * tail up to k4 is zero (its weights are zero); a short last quad's free slots repeat
 * its first pixel. A window wholly inside the image with whole-word taps is copied
 * row by row straight into its slot; any other goes through win (k4 bytes). */
static void kp_gather(const kp_conv_params *p, const kp_dims *in, const kp_dims *f,
                      int32_t out_w, const int8_t *image, int32_t oy, int32_t ox, int32_t npx,
                      int32_t k4, int8_t *cols, int8_t *win)
{
    const int32_t c = in->c, span = f->w * c, k = f->h * span;
    const int32_t row_step = p->dilation.h * in->w * c;
    const int32_t reach_h = (f->h - 1) * p->dilation.h, reach_w = f->w - 1;
    const int words = (c & 3) == 0 && p->dilation.w == 1;
    int32_t j, ky, t;
    memset(win + k, 0, (size_t)(k4 - k));
    for (j = 0; j < npx; ++j) {
        int8_t *slot = cols + (j >> 2) * 4 * k4 + 4 * (j & 3);
        const int32_t iy0 = oy * p->stride.h - p->padding.h;
        const int32_t ix0 = ox * p->stride.w - p->padding.w;
        if (words && iy0 >= 0 && iy0 + reach_h < in->h && ix0 >= 0 && ix0 + reach_w < in->w) {
            const int8_t *src = image + (iy0 * in->w + ix0) * c;
            for (ky = 0; ky < f->h; ++ky, src += row_step, slot += 4 * span) {
                kp_copy_words(slot, src, span >> 2);
            }
        } else {
            kp_read_window(p, in, f, image, oy, ox, win);
            kp_copy_words(slot, win, k4 >> 2);
        }
        if (++ox == out_w) {
            ox = 0;
            ++oy;
        }
    }
    for (; j & 3; ++j) {
        int8_t *quad = cols + (j >> 2) * 4 * k4;
        for (t = 0; t < k4; t += 4) {
            memcpy(quad + 4 * t + 4 * (j & 3), quad + 4 * t, 4);
        }
    }
}

#if KP_ARM_DSP
/* One kept group over the quad's four pixels: its index g and weight word, its inputs at
 * quad + 16 g; SXTB16 splits the weight word and each input word into even and odd
 * bytes, two SMLAD per pixel. */
#define KP_QUAD_GROUP                                   \
    "ldrh   %[o], [%[gp]], #2\n\t"                      \
    "ldr    %[wo], [%[wp]], #4\n\t"                     \
    "add    %[o], %[q], %[o], lsl #4\n\t"               \
    "ldr    %[x0], [%[o]]\n\t"                          \
    "ldr    %[x1], [%[o], #4]\n\t"                      \
    "sxtb16 %[we], %[wo]\n\t"                           \
    "sxtb16 %[wo], %[wo], ror #8\n\t"                   \
    KP_QUAD_TWO("a0", "a1")                             \
    "ldr    %[x0], [%[o], #8]\n\t"                      \
    "ldr    %[x1], [%[o], #12]\n\t"                     \
    KP_QUAD_TWO("a2", "a3")

#define KP_QUAD_TWO(a, b)                               \
    "sxtb16 %[t], %[x0]\n\t"                            \
    "smlad  %[" a "], %[we], %[t], %[" a "]\n\t"        \
    "sxtb16 %[x0], %[x0], ror #8\n\t"                   \
    "smlad  %[" a "], %[wo], %[x0], %[" a "]\n\t"       \
    "sxtb16 %[t], %[x1]\n\t"                            \
    "smlad  %[" b "], %[we], %[t], %[" b "]\n\t"        \
    "sxtb16 %[x1], %[x1], ror #8\n\t"                   \
    "smlad  %[" b "], %[wo], %[x1], %[" b "]\n\t"

#define KP_QUAD_OPERANDS                                                                 \
    : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [gp] "+r"(gp),         \
      [wp] "+r"(wp), [o] "=&r"(o), [wo] "=&r"(wo), [we] "=&r"(we), [x0] "=&r"(x0),      \
      [x1] "=&r"(x1), [t] "=&r"(t)

/* a0..a3 += the n groups (indices g, weights words) over the quad's four pixels; two
 * groups a turn. */
static inline void kp_quad_groups(const int8_t *quad, const uint16_t *g, const int32_t *words,
                                  int32_t n, int32_t *acc)
{
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    int32_t o, wo, we, x0, x1, t, pairs = n >> 1;
    const uint16_t *gp = g;
    const int32_t *wp = words;
    if (pairs > 0) {
        __asm__ volatile("1:\n\t" KP_QUAD_GROUP KP_QUAD_GROUP
                         "subs   %[n], %[n], #1\n\t"
                         "bne    1b\n\t"
                         KP_QUAD_OPERANDS, [n] "+r"(pairs)
                         : [q] "r"(quad)
                         : "cc", "memory");
    }
    if (n & 1) {
        __asm__ volatile(KP_QUAD_GROUP KP_QUAD_OPERANDS : [q] "r"(quad) : "memory");
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* One output channel over npx gathered pixels: out[j * stride], j < npx. The
 * accumulators of all quads first, then one tight loop over them: a channel without left
 * shift whose activation spans int8 (none, or a ReLU with its zero point at -128, as most
 * layers) clamps with one SSAT. */
static void kp_row_quads(const int8_t *cols, int32_t k4, int32_t npx, const uint16_t *g,
                         const int32_t *words, int32_t n, int32_t bias, kp_rq rq,
                         int32_t offset, kp_activation act, int8_t *out, int32_t stride)
{
    int32_t acc[KP_SPARSE_CONV_PIXELS];
    const int32_t *a = acc;
    int32_t q;
    for (q = 0; q < npx; q += 4, cols += 4 * k4) {
        acc[q] = acc[q + 1] = acc[q + 2] = acc[q + 3] = bias;
        kp_quad_groups(cols, g, words, n, acc + q);
    }
    if (rq.left == 0 && act.min == -128 && act.max == 127) {
        const int32_t half = rq.mask >> 1;
        for (; npx > 0; --npx, out += stride) {
            const int32_t v = *a++;
            int32_t twice, r;
            if (__builtin_add_overflow(v, v, &twice)) {
                r = kp_requantize(v, rq.multiplier, rq.shift);
            } else {
                const int32_t high = kp_smmulr(twice, rq.multiplier);
                const int32_t over = half + (int32_t)((uint32_t)high >> 31) - (high & rq.mask);
                r = (high >> rq.right) - (over >> 31);
            }
            *out = (int8_t)__ssat(r + offset, 8);
        }
        return;
    }
    for (; npx > 0; --npx, out += stride) {
        *out = (int8_t)kp_clamp(kp_rq_apply(*a++, rq) + offset, act.min, act.max);
    }
}
#else
static void kp_quad_groups(const int8_t *quad, const uint16_t *g, const int32_t *words,
                           int32_t n, int32_t *acc)
{
    int32_t i, j;
    for (; n > 0; --n) {
        const int8_t *x = quad + 16 * *g++;
        const uint32_t wv = (uint32_t)*words++;
        for (j = 0; j < 4; ++j, x += 4) {
            for (i = 0; i < 4; ++i) {
                acc[j] += kp_word_weight(wv, i) * x[i];
            }
        }
    }
}
#endif

/* npx pixels of one image, gathered as quads in cols (k4 bytes a window): every output
 * channel of each, into out (npx x rows). g: room for one row's kept-group indices. */
static void kp_sparse_conv_pass(const kp_conv_params *p, const kp_quant_params *quant,
                                const kp_sparse_groups *w, const int32_t *eff_bias,
                                const int8_t *cols, int32_t k4, int32_t npx, uint16_t *g,
                                int8_t *out)
{
    const int32_t rows = w->rows, offset = p->output_offset;
    const int32_t *wp = w->words;
    const uint16_t *gi = (const uint16_t *)w->index;
    const int decode = w->index_kind != KP_SPARSE_ABS16;
    kp_group_cursor cur;
#if !KP_ARM_DSP
    int32_t acc[4], q, j;
#endif
    int32_t r;
    cur.p8 = (const uint8_t *)w->index;
    cur.p16 = gi;
    cur.kind = w->index_kind;
    for (r = 0; r < rows; ++r, ++out) {
        const int32_t n = w->counts[r];
        const int32_t qi = quant->per_channel ? r : 0;
        const int32_t bias = eff_bias[r];
        const uint16_t *rg = gi;
#if KP_ARM_DSP
        const kp_rq rq = kp_rq_make(quant->multiplier[qi], quant->shift[qi]);
#else
        const int32_t mult = quant->multiplier[qi], shift = quant->shift[qi];
#endif
        if (decode) {
            kp_decode_row(&cur, n, g);
            rg = g;
        }
#if KP_ARM_DSP
        kp_row_quads(cols, k4, npx, rg, wp, n, bias, rq, offset, p->activation, out, rows);
#else
        for (q = 0; q < npx; q += 4) {
            acc[0] = acc[1] = acc[2] = acc[3] = bias;
            kp_quad_groups(cols + q * k4, rg, wp, n, acc);
            for (j = 0; j < KP_MIN(4, npx - q); ++j) {
                const int32_t v = kp_requantize(acc[j], mult, shift) + offset;
                out[(q + j) * rows] =
                    (int8_t)KP_CLAMP(v, p->activation.min, p->activation.max);
            }
        }
#endif
        wp += n;
        gi += n;
    }
}

kp_status kp_sparse_convolve_s8(const kp_conv_params *params, const kp_quant_params *quant,
                                const kp_dims *input_dims, const int8_t *input,
                                const kp_dims *filter_dims, const kp_sparse_groups *w,
                                const int32_t *eff_bias, const kp_dims *output_dims,
                                int8_t *output, int8_t *scratch)
{
    int32_t k_len, k4, b, px, pixels;
    uint16_t *g;
    int8_t *cols, *win;
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
    k4 = 4 * ((k_len + 3) >> 2);
    cols = scratch;
    win = cols + KP_SPARSE_CONV_PIXELS * k4;
    g = (uint16_t *)(void *)(win + k4);
    pixels = output_dims->h * output_dims->w;
    for (b = 0; b < output_dims->n; ++b) {
        const int8_t *image = input + b * input_dims->h * input_dims->w * input_dims->c;
        for (px = 0; px < pixels; px += KP_SPARSE_CONV_PIXELS) {
            const int32_t npx = KP_MIN(KP_SPARSE_CONV_PIXELS, pixels - px);
            kp_gather(params, input_dims, filter_dims, output_dims->w, image,
                      px / output_dims->w, px % output_dims->w, npx, k4, cols, win);
            kp_sparse_conv_pass(params, quant, w, eff_bias, cols, k4, npx, g,
                                output + px * output_dims->c);
        }
        output += pixels * output_dims->c;
    }
    return KP_OK;
}

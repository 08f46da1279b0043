/*
 * DEPTHWISE_CONV_2D, int8, per-channel requantization, depth multiplier and dilation:
 * TFLM's reference DepthwiseConvPerChannel. Portable C99, and a Cortex-M4 (Armv7E-M DSP)
 * path with the same results, bit for bit (semantics in kp_nn.h).
 *
 * The DSP path:
 * With a depth multiplier of 1 (the usual case) four channels go together: one word of
 * input and one of weights per tap, unpacked with SXTB16 into even and odd channels, and
 * four SMLAxy (one MAC each: depthwise has no sum over channels for SMLAD to pair). The
 * quads are the outer loop, so that their bias and requantization are prepared once.
 * A 3x3 window inside the image is one asm block; a window that crosses the border visits
 * only its inside taps, from a bias with the outside taps' zero-point products folded in.
 * Other depth multipliers, and the last channels % 4, take a scalar loop.
 */
#include "internal/kp_nn_check.h"
#include "internal/kp_nn_internal.h"

#if KP_ARM_DSP /* Cortex-M4 (Armv7E-M DSP) */

#include "internal/kp_acle.h"

/* The taps [lo, hi) of one axis that fall inside the image, for a window starting at
 * `start` (hi == lo when none does). */
static inline void kp_dw_inside(int32_t start, int32_t dilation, int32_t taps, int32_t size,
                                int32_t *lo, int32_t *hi)
{
    int32_t l = 0;
    int32_t h = taps;
    if (start < 0) {
        l = (-start + dilation - 1) / dilation;
    }
    if (start + (taps - 1) * dilation >= size) {
        h = size > start ? (size - start + dilation - 1) / dilation : 0;
    }
    l = KP_MIN(l, taps);
    *lo = l;
    *hi = KP_MAX(h, l);
}

typedef struct {
    const kp_dw_conv_params *p;
    const kp_quant_params *quant;
    int32_t in_h, in_w, in_c, out_c;
    int32_t f_h, f_w;
} kp_dw_shape;

static inline int8_t kp_dw_out(const kp_dw_shape *s, int32_t oc, int32_t acc)
{
    const int32_t i = s->quant->per_channel ? oc : 0;
    const int32_t v = kp_rq_apply(acc, kp_rq_make(s->quant->multiplier[i], s->quant->shift[i]));
    return (int8_t)kp_clamp(v + s->p->output_offset, s->p->activation.min,
                            s->p->activation.max);
}

/* One output channel at one pixel, any depth multiplier: the portable arithmetic. */
static int8_t kp_dw_scalar(const kp_dw_shape *s, const int8_t *image, const int8_t *filter,
                           const int32_t *eff_bias, int32_t y0, int32_t x0, int32_t oc)
{
    const int32_t ic = oc / s->p->ch_mult;
    const int32_t pad = -s->p->input_offset;
    int32_t acc = eff_bias[oc];
    int32_t ky, kx;
    for (ky = 0; ky < s->f_h; ++ky) {
        const int32_t iy = y0 + ky * s->p->dilation.h;
        const int row_inside = iy >= 0 && iy < s->in_h;
        for (kx = 0; kx < s->f_w; ++kx) {
            const int32_t ix = x0 + kx * s->p->dilation.w;
            const int32_t w = filter[(ky * s->f_w + kx) * s->out_c + oc];
            const int32_t x = row_inside && ix >= 0 && ix < s->in_w
                                  ? image[(iy * s->in_w + ix) * s->in_c + ic]
                                  : pad;
            acc += x * w;
        }
    }
    return kp_dw_out(s, oc, acc);
}

/* One tap of four channels: a[0..3] += (x[c..c+3] + input_offset) * w[c..c+3], the
 * input and its offset added in SXTAB16 (`off2` holds the offset in both halves). */
#define KP_DW_TAP(xv, wv)                             \
    do {                                              \
        const int32_t xe_ = kp_sxtab16(off2, xv);     \
        const int32_t xo_ = kp_sxtab16_ror8(off2, xv); \
        const int32_t we_ = kp_sxtb16(wv);            \
        const int32_t wo_ = kp_sxtb16_ror8(wv);       \
        a0 = kp_smlabb(xe_, we_, a0);                 \
        a2 = kp_smlatt(xe_, we_, a2);                 \
        a1 = kp_smlabb(xo_, wo_, a1);                 \
        a3 = kp_smlatt(xo_, wo_, a3);                 \
    } while (0)

/* Filter rows of two or three adjacent taps, four channels, in asm: the compiler cannot
 * keep the fourteen live values in registers. Inputs and weights are both `st` bytes
 * apart (depth multiplier 1 and no horizontal dilation, so in_c == out_c), which lets one
 * register address both. Even channels unpack to t0 (inputs) and t1 (weights), odd ones
 * in place; the input unpack also adds the input offset (o2) where the sum needs it. */
#define KP_DW_X(xv) "sxtb16 %[t0], %[" xv "]\n\t" "sxtb16 %[" xv "], %[" xv "], ror #8\n\t"
#define KP_DW_X_OFF(xv)                                         \
    "sxtab16 %[t0], %[o2], %[" xv "]\n\t"                       \
    "sxtab16 %[" xv "], %[o2], %[" xv "], ror #8\n\t"
#define KP_DW_MAC(xv, wv)                                       \
    "sxtb16 %[t1], %[" wv "]\n\t"                               \
    "sxtb16 %[" wv "], %[" wv "], ror #8\n\t"                   \
    "smlabb %[a0], %[t0], %[t1], %[a0]\n\t"                     \
    "smlatt %[a2], %[t0], %[t1], %[a2]\n\t"                     \
    "smlabb %[a1], %[" xv "], %[" wv "], %[a1]\n\t"             \
    "smlatt %[a3], %[" xv "], %[" wv "], %[a3]\n\t"

/* Two taps: loads back to back, one cycle each after the first. */
#define KP_DW_ROW2(X)                                           \
    "ldr    %[xa], [%[xr]]\n\t"                                 \
    "ldr    %[wa], [%[wr]]\n\t"                                 \
    "ldr    %[xb], [%[xr], %[st]]\n\t"                          \
    "ldr    %[wb], [%[wr], %[st]]\n\t"                          \
    X("xa") KP_DW_MAC("xa", "wa") X("xb") KP_DW_MAC("xb", "wb")

#define KP_DW_ROW3(X)                                           \
    KP_DW_ROW2(X)                                               \
    "ldr    %[xa], [%[xr], %[st], lsl #1]\n\t"                  \
    "ldr    %[wa], [%[wr], %[st], lsl #1]\n\t"                  \
    X("xa") KP_DW_MAC("xa", "wa")

/* The next filter row: inputs one image row (xs) on, weights three taps on. */
#define KP_DW_NEXT_ROW                                          \
    "add    %[xr], %[xr], %[xs]\n\t"                            \
    "add    %[wr], %[wr], %[st], lsl #1\n\t"                    \
    "add    %[wr], %[wr], %[st]\n\t"

#define KP_DW_ACC_OUT                                                                   \
    [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [xa] "=&r"(xa),          \
        [wa] "=&r"(wa), [xb] "=&r"(xb), [wb] "=&r"(wb), [t0] "=&r"(t0), [t1] "=&r"(t1)

typedef struct {
    int32_t a[4];
} kp_acc4;

/* What one channel quad c..c+3 needs at every pixel. */
typedef struct {
    const int8_t *w;   /* filter at tap (0, 0), channel c */
    int32_t bias[4];   /* eff_bias: the sum starts here when every tap is inside */
    int32_t base[4];   /* eff_bias - input_offset * sum(w): when only some taps are */
    int32_t off2;      /* input_offset in both halfwords */
    kp_rq rq[4];
} kp_dw_quad_ctx;

/* The quad's accumulators at a pixel whose 3x3 window is inside the image (and in_c ==
 * out_c, no horizontal dilation): eff_bias + x * w over the nine taps, one asm block.
 * `xc`: input at tap (0, 0), channel c; `x_row`: bytes between filter rows' inputs. */
static inline kp_acc4 kp_dw_quad_3x3(const kp_dw_quad_ctx *q, const int8_t *xc,
                                     int32_t out_c, int32_t x_row)
{
    const int8_t *wc = q->w;
    int32_t a0 = q->bias[0];
    int32_t a1 = q->bias[1];
    int32_t a2 = q->bias[2];
    int32_t a3 = q->bias[3];
    int32_t xa, wa, xb, wb, t0, t1;
    kp_acc4 r;
    __asm__ volatile(KP_DW_ROW3(KP_DW_X) KP_DW_NEXT_ROW KP_DW_ROW3(KP_DW_X) KP_DW_NEXT_ROW
                     KP_DW_ROW3(KP_DW_X)
                     : KP_DW_ACC_OUT, [xr] "+r"(xc), [wr] "+r"(wc)
                     : [st] "r"(out_c), [xs] "r"(x_row)
                     : "memory");
    r.a[0] = a0;
    r.a[1] = a1;
    r.a[2] = a2;
    r.a[3] = a3;
    return r;
}

/* The quad's accumulators at any other pixel, equal to the portable kernel's: the
 * zero-point products of the taps outside the image are folded into `base`, so that only
 * the inside taps [ky0, ky1) x [kx0, kx1) are visited, base + sum((x + input_offset) * w)
 * (the same int32 as eff_bias + sum(x * w) + sum_outside(zero_point * w)). `xc` is the
 * input at tap (ky0, kx0), channel c (unused when no tap is inside). */
static inline kp_acc4 kp_dw_quad(const kp_dw_shape *s, const kp_dw_quad_ctx *q,
                                 const int8_t *xc, int32_t ky0, int32_t ky1, int32_t kx0,
                                 int32_t kx1)
{
    const int32_t out_c = s->out_c;
    const int32_t f_w = s->f_w;
    const int32_t x_tap = s->p->dilation.w * s->in_c;
    const int32_t x_row = s->p->dilation.h * s->in_w * s->in_c;
    const int32_t width = kx1 - kx0;
    const int32_t off2 = q->off2;
    const int8_t *wc = q->w + (ky0 * f_w + kx0) * out_c;
    int32_t a0 = q->base[0];
    int32_t a1 = q->base[1];
    int32_t a2 = q->base[2];
    int32_t a3 = q->base[3];
    int32_t ky, kx;
    kp_acc4 r;

    for (ky = ky0; ky < ky1; ++ky) {
        if (x_tap == out_c && (width == 2 || width == 3)) {
            int32_t xa, wa, xb, wb, t0, t1;
            if (width == 3) {
                __asm__ volatile(KP_DW_ROW3(KP_DW_X_OFF)
                                 : KP_DW_ACC_OUT
                                 : [xr] "r"(xc), [wr] "r"(wc), [st] "r"(out_c), [o2] "r"(off2)
                                 : "memory");
            } else {
                __asm__ volatile(KP_DW_ROW2(KP_DW_X_OFF)
                                 : KP_DW_ACC_OUT
                                 : [xr] "r"(xc), [wr] "r"(wc), [st] "r"(out_c), [o2] "r"(off2)
                                 : "memory");
            }
        } else {
            const int8_t *xp = xc;
            const int8_t *wp = wc;
            for (kx = kx0; kx < kx1; ++kx) {
                const int32_t x_a = kp_read_s8x4(xp);
                const int32_t w_a = kp_read_s8x4(wp);
                KP_DW_TAP(x_a, w_a);
                xp += x_tap;
                wp += out_c;
            }
        }
        xc += x_row;
        wc += f_w * out_c;
    }
    r.a[0] = a0;
    r.a[1] = a1;
    r.a[2] = a2;
    r.a[3] = a3;
    return r;
}

static void kp_dw_quad_prepare(const kp_dw_shape *s, const int8_t *filter,
                               const int32_t *eff_bias, int32_t c, kp_dw_quad_ctx *q)
{
    const int32_t off = s->p->input_offset;
    int32_t i, t;
    q->w = filter + c;
    q->off2 = (int32_t)(((uint32_t)off & 0xFFFFU) | ((uint32_t)off << 16));
    for (i = 0; i < 4; ++i) {
        const int32_t qi = s->quant->per_channel ? c + i : 0;
        int32_t sum = 0;
        for (t = 0; t < s->f_h * s->f_w; ++t) {
            sum += filter[t * s->out_c + c + i];
        }
        q->bias[i] = eff_bias[c + i];
        /* in uint32: int32 wraparound, as the portable sum would give */
        q->base[i] = (int32_t)((uint32_t)eff_bias[c + i] - (uint32_t)off * (uint32_t)sum);
        q->rq[i] = kp_rq_make(s->quant->multiplier[qi], s->quant->shift[qi]);
    }
}

kp_status kp_depthwise_conv_s8(const kp_dw_conv_params *params, const kp_quant_params *quant,
                               const kp_dims *input_dims, const int8_t *input,
                               const kp_dims *filter_dims, const int8_t *filter,
                               const int32_t *eff_bias, const kp_dims *output_dims,
                               int8_t *output)
{
    int32_t b, oy, ox, c, quads, offset, x_row, ox_lo, ox_hi;
    int fast3;
    uint32_t lo4, hi4;
    kp_dw_shape s;

    /* The portable kernel's checks, so that both reject exactly the same arguments. */
    if (params == 0 || input == 0 || filter == 0 || eff_bias == 0 || output == 0 ||
        !kp_dims_ok(input_dims) || !kp_dims_ok(filter_dims) || !kp_dims_ok(output_dims) ||
        params->ch_mult < 1 || filter_dims->n != 1 || input_dims->n != output_dims->n ||
        filter_dims->c != output_dims->c ||
        output_dims->c != input_dims->c * params->ch_mult ||
        !kp_tile_ok(params->stride, 1) || !kp_tile_ok(params->dilation, 1) ||
        !kp_tile_ok(params->padding, 0) || !kp_activation_ok(params->activation) ||
        !kp_input_offset_ok(params->input_offset) ||
        !kp_output_offset_ok(params->output_offset) || !kp_quant_ok(quant, output_dims->c)) {
        return KP_ERR_ARG;
    }

    s.p = params;
    s.quant = quant;
    s.in_h = input_dims->h;
    s.in_w = input_dims->w;
    s.in_c = input_dims->c;
    s.out_c = output_dims->c;
    s.f_h = filter_dims->h;
    s.f_w = filter_dims->w;

    /* Channel quads outermost: what they need is prepared once for all pixels, which
     * matters when each output has only f_h * f_w MACs. */
    quads = params->ch_mult == 1 ? (s.in_c >> 2) << 2 : 0;
    offset = params->output_offset;
    lo4 = kp_splat8(params->activation.min);
    hi4 = kp_splat8(params->activation.max);
    /* 3x3 windows that lie inside the image take one asm block: outputs [ox_lo, ox_hi)
     * of rows whose window rows are all inside. */
    fast3 = s.f_h == 3 && s.f_w == 3 && params->dilation.w == 1 && params->ch_mult == 1;
    x_row = params->dilation.h * s.in_w * s.in_c;
    ox_lo = (params->padding.w + params->stride.w - 1) / params->stride.w;
    {
        const int32_t last = s.in_w - 1 - (s.f_w - 1) * params->dilation.w + params->padding.w;
        ox_hi = last < 0 ? 0 : KP_MIN(last / params->stride.w + 1, output_dims->w);
    }
    for (c = 0; c < quads; c += 4) {
        kp_dw_quad_ctx q;
        kp_dw_quad_prepare(&s, filter, eff_bias, c, &q);
        for (b = 0; b < output_dims->n; ++b) {
            const int8_t *image = input + b * s.in_h * s.in_w * s.in_c + c;
            for (oy = 0; oy < output_dims->h; ++oy) {
                const int32_t y0 = oy * params->stride.h - params->padding.h;
                int8_t *out = output + (b * output_dims->h + oy) * output_dims->w * s.out_c + c;
                int32_t ky0, ky1;
                kp_dw_inside(y0, params->dilation.h, s.f_h, s.in_h, &ky0, &ky1);
                const int row_fast = fast3 && ky0 == 0 && ky1 == 3;
                for (ox = 0; ox < output_dims->w; ++ox, out += s.out_c) {
                    const int32_t x0 = ox * params->stride.w - params->padding.w;
                    kp_acc4 acc;
                    uint32_t packed;
                    if (row_fast && ox >= ox_lo && ox < ox_hi) {
                        acc = kp_dw_quad_3x3(&q, image + (y0 * s.in_w + x0) * s.in_c, s.out_c,
                                             x_row);
                    } else {
                        const int8_t *xc = image;
                        int32_t kx0, kx1;
                        kp_dw_inside(x0, params->dilation.w, s.f_w, s.in_w, &kx0, &kx1);
                        if (ky1 > ky0 && kx1 > kx0) {
                            xc = image + ((y0 + ky0 * params->dilation.h) * s.in_w + x0
                                          + kx0 * params->dilation.w) * s.in_c;
                        }
                        acc = kp_dw_quad(&s, &q, xc, ky0, ky1, kx0, kx1);
                    }
                    packed = kp_clamp_pack4(kp_rq_apply(acc.a[0], q.rq[0]) + offset,
                                            kp_rq_apply(acc.a[1], q.rq[1]) + offset,
                                            kp_rq_apply(acc.a[2], q.rq[2]) + offset,
                                            kp_rq_apply(acc.a[3], q.rq[3]) + offset, lo4, hi4);
                    memcpy(out, &packed, sizeof packed);
                }
            }
        }
    }
    /* Depth multipliers above 1 and the last channels % 4: one channel at a time. */
    if (quads < s.out_c) {
        for (b = 0; b < output_dims->n; ++b) {
            const int8_t *image = input + b * s.in_h * s.in_w * s.in_c;
            for (oy = 0; oy < output_dims->h; ++oy) {
                const int32_t y0 = oy * params->stride.h - params->padding.h;
                for (ox = 0; ox < output_dims->w; ++ox) {
                    const int32_t x0 = ox * params->stride.w - params->padding.w;
                    int8_t *out = output + ((b * output_dims->h + oy) * output_dims->w + ox)
                                               * s.out_c;
                    for (c = quads; c < s.out_c; ++c) {
                        out[c] = kp_dw_scalar(&s, image, filter, eff_bias, y0, x0, c);
                    }
                }
            }
        }
    }
    return KP_OK;
}

#else /* portable C99 */

kp_status kp_depthwise_conv_s8(const kp_dw_conv_params *params, const kp_quant_params *quant,
                               const kp_dims *input_dims, const int8_t *input,
                               const kp_dims *filter_dims, const int8_t *filter,
                               const int32_t *eff_bias, const kp_dims *output_dims,
                               int8_t *output)
{
    int32_t b, oy, ox, ic, m, ky, kx;

    if (params == 0 || input == 0 || filter == 0 || eff_bias == 0 || output == 0 ||
        !kp_dims_ok(input_dims) || !kp_dims_ok(filter_dims) || !kp_dims_ok(output_dims) ||
        params->ch_mult < 1 || filter_dims->n != 1 || input_dims->n != output_dims->n ||
        filter_dims->c != output_dims->c ||
        output_dims->c != input_dims->c * params->ch_mult ||
        !kp_tile_ok(params->stride, 1) || !kp_tile_ok(params->dilation, 1) ||
        !kp_tile_ok(params->padding, 0) || !kp_activation_ok(params->activation) ||
        !kp_input_offset_ok(params->input_offset) ||
        !kp_output_offset_ok(params->output_offset) || !kp_quant_ok(quant, output_dims->c)) {
        return KP_ERR_ARG;
    }

    const int32_t in_c = input_dims->c;
    const int32_t out_c = output_dims->c;
    const int32_t ch_mult = params->ch_mult;
    /* Outside the image a tap reads the input zero point; eff_bias holds the term that
     * cancels its product. */
    const int32_t pad_value = -params->input_offset;
    for (b = 0; b < output_dims->n; ++b) {
        const int8_t *image = input + b * input_dims->h * input_dims->w * in_c;
        for (oy = 0; oy < output_dims->h; ++oy) {
            const int32_t y0 = oy * params->stride.h - params->padding.h;
            for (ox = 0; ox < output_dims->w; ++ox) {
                const int32_t x0 = ox * params->stride.w - params->padding.w;
                int8_t *out = output + ((b * output_dims->h + oy) * output_dims->w + ox) * out_c;
                for (ic = 0; ic < in_c; ++ic) {
                    for (m = 0; m < ch_mult; ++m) {
                        const int32_t oc = ic * ch_mult + m;
                        const int32_t qi = quant->per_channel ? oc : 0;
                        int32_t acc = eff_bias[oc];
                        int32_t v;
                        for (ky = 0; ky < filter_dims->h; ++ky) {
                            const int32_t iy = y0 + ky * params->dilation.h;
                            const int row_inside = iy >= 0 && iy < input_dims->h;
                            for (kx = 0; kx < filter_dims->w; ++kx) {
                                const int32_t ix = x0 + kx * params->dilation.w;
                                const int32_t w = filter[(ky * filter_dims->w + kx) * out_c + oc];
                                const int32_t x = row_inside && ix >= 0 && ix < input_dims->w
                                                      ? image[(iy * input_dims->w + ix) * in_c + ic]
                                                      : pad_value;
                                acc += x * w;
                            }
                        }
                        v = kp_requantize(acc, quant->multiplier[qi], quant->shift[qi]) +
                            params->output_offset;
                        out[oc] = (int8_t)KP_CLAMP(v, params->activation.min,
                                                   params->activation.max);
                    }
                }
            }
        }
    }
    return KP_OK;
}

#endif /* KP_ARM_DSP */

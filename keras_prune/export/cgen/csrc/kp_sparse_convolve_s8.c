/*
 * CONV_2D, int8, on SIMD-group sparse weights (kp_nn_sparse.h): output-stationary over
 * four pixels at a time.
 *
 * The kernel gathers the windows of KP_SPARSE_CONV_PIXELS output pixels (padding as the
 * input zero point's negation, so that it adds nothing) into scratch, interleaved by
 * word: group g of the quad's pixel j sits at quad + 16 g + 4 j. Then, per output channel,
 * it walks that channel's kept-group indices (decoded once per pass unless they are
 * ABS16) for every quad, four accumulators held in registers: per kept group one weight
 * word, one index and one 16-byte run of inputs. A kept group costs about what a dense
 * group costs, so the cycles fall with the groups removed.
 *
 * The windows hold int8 values as they are (the input offset is in the effective bias),
 * which every filter shape, stride, dilation and channel count shares: a 1x1 convolution
 * gathers one pixel's channels, a first convolution over 1-3 channels its whole window.
 * Where a window lies inside the image it is copied row by row with word loads and no
 * library call (memcpy's call and setup cost more than a 9-byte row); only border windows
 * go tap by tap.
 *
 * On the Cortex-M4 the per-channel, per-quad work beside the group loop (accumulators at
 * the bias, requantization, four byte stores, the loop counters) was as large as the
 * groups themselves at 70% sparsity. One asm routine (kp_pass_short) does it, with the
 * group loop, for every channel whose requantization takes the short form (kp_row_rq):
 * SMMLAR, a subtract and a shift per output, the output offset folded into the rounding
 * constant, then SSAT, and the activation's clamp over the pass's outputs four at a time
 * where it is narrower than int8. The C path takes the other channels (a left shift, say)
 * and a pass's short last quad, with kp_rq_apply's arithmetic; a channel without kept
 * groups is one constant, written once per image.
 */
#include <stddef.h>
#include <string.h>

#include "internal/kp_nn_sparse_internal.h"
#include "internal/kp_nn_support.h"

#if KP_ARM_DSP
#include "internal/kp_acle.h"
#endif

/* The n kept groups of the cursor's next row into g, as ABS16 holds them: a row is then
 * read the same way from any index stream, the walk of the stream paid once per pass. */
static void kp_decode_row(kp_group_cursor *c, int32_t n, uint16_t *g)
{
    kp_cursor_row(c);
    if (c->kind == KP_SPARSE_DELTA8) { /* kp_next_group's DELTA8 step without its switch */
        const uint8_t *p8 = c->p8;
        int32_t at = 0;
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
    for (; n > 0; --n) {
        *g++ = (uint16_t)kp_next_group(c);
    }
}

/* What the gather needs of the layer's geometry, worked out once per call: the per-pixel
 * loop then reads it from one pointer instead of recomputing it from the dims. */
typedef struct {
    int32_t c, fh, fw, span, k, k4; /* span: bytes of one filter row of a window */
    int32_t in_h, in_w, row_bytes;   /* row_bytes: one image row */
    int32_t sh, sw, dh, dw, pad_h, pad_w;
    int32_t row_step; /* bytes between the image rows of two filter rows */
    /* a window's top-left (iy0, ix0) lies inside when 0 <= iy0 < end_y and
     * 0 <= ix0 < end_x; end_x is 0 when its rows can't be copied whole (dilated columns) */
    int32_t end_y, end_x;
    int32_t out_w;
    int8_t pad;   /* -input_offset: adds nothing */
    uint32_t pad4; /* pad in every byte */
} kp_conv_geom;

/* n words from src (consecutive) to dst, 16 bytes apart: one pixel's slot of a quad. Four
 * loads then four stores, which the Cortex-M4 pipelines. Returns dst past the last. */
static inline int8_t *kp_copy_words(int8_t *dst, const int8_t *src, int32_t n)
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
        memcpy(&v0, src, 4);
        memcpy(dst, &v0, 4);
    }
    return dst;
}

/* rows x words: a window inside the image with whole-word taps, row after row (skip bytes
 * apart in src) into its slot. The DSP build keeps its counters and pointers in
 * registers (GCC's version of this loop spills them around the pixel loop it sits in):
 * per 4 words four pipelined loads, four stores, a count and a branch; then the row's
 * last 0-3 words under IT blocks, without a loop. */
static inline void kp_copy_rows(int8_t *dst, const int8_t *src, int32_t rows, int32_t words,
                                int32_t skip)
{
#if KP_ARM_DSP
    const int32_t chunks = words >> 2, rest = words & 3;
    int32_t i, v0, v1, v2, v3;
    __asm__ volatile("1:\n\t"
                     "adds   %[i], %[chunks], #0\n\t"
                     "beq    3f\n"
                     "2:\n\t"
                     "ldr    %[v0], [%[src]], #4\n\t"
                     "ldr    %[v1], [%[src]], #4\n\t"
                     "ldr    %[v2], [%[src]], #4\n\t"
                     "ldr    %[v3], [%[src]], #4\n\t"
                     "str    %[v0], [%[dst]], #16\n\t"
                     "str    %[v1], [%[dst]], #16\n\t"
                     "str    %[v2], [%[dst]], #16\n\t"
                     "str    %[v3], [%[dst]], #16\n\t"
                     "subs   %[i], %[i], #1\n\t"
                     "bne    2b\n"
                     "3:\n\t"
                     "lsls   %[i], %[rest], #31\n\t" /* C: 2 words more, N: 1 more */
                     "itt    cs\n\t"
                     "ldrcs  %[v0], [%[src]], #4\n\t"
                     "ldrcs  %[v1], [%[src]], #4\n\t"
                     "itt    cs\n\t"
                     "strcs  %[v0], [%[dst]], #16\n\t"
                     "strcs  %[v1], [%[dst]], #16\n\t"
                     "itt    mi\n\t"
                     "ldrmi  %[v0], [%[src]], #4\n\t"
                     "strmi  %[v0], [%[dst]], #16\n\t"
                     "add    %[src], %[src], %[skip]\n\t"
                     "subs   %[rows], %[rows], #1\n\t"
                     "bne    1b\n\t"
                     : [src] "+r"(src), [dst] "+r"(dst), [rows] "+r"(rows), [i] "=&r"(i),
                       [v0] "=&r"(v0), [v1] "=&r"(v1), [v2] "=&r"(v2), [v3] "=&r"(v3)
                     : [chunks] "r"(chunks), [rest] "r"(rest), [skip] "r"(skip)
                     : "cc", "memory");
#else
    for (; rows > 0; --rows, src += skip) {
        dst = kp_copy_words(dst, src, words);
        src += 4 * words;
    }
#endif
}

static inline int8_t *kp_fill_words(int8_t *dst, uint32_t v, int32_t n)
{
    for (; n > 0; --n, dst += 16) {
        memcpy(dst, &v, 4);
    }
    return dst;
}

/* n bytes from src to dst without a library call (a call costs more than a short copy):
 * whole words, then one last word that ends at byte n, overlapping the one before;
 * byte by byte below 4. Never touches a byte outside either range. */
static inline void kp_copy_bytes(int8_t *dst, const int8_t *src, int32_t n)
{
    uint32_t v;
    int32_t i;
    if (n < 4) {
        for (i = 0; i < n; ++i) {
            dst[i] = src[i];
        }
        return;
    }
    for (i = 0; i + 4 < n; i += 4) {
        memcpy(&v, src + i, 4);
        memcpy(dst + i, &v, 4);
    }
    memcpy(&v, src + n - 4, 4);
    memcpy(dst + n - 4, &v, 4);
}

static inline void kp_fill_bytes(int8_t *dst, int8_t v, uint32_t v4, int32_t n)
{
    int32_t i;
    if (n < 4) {
        for (i = 0; i < n; ++i) {
            dst[i] = v;
        }
        return;
    }
    for (i = 0; i + 4 < n; i += 4) {
        memcpy(dst + i, &v4, 4);
    }
    memcpy(dst + n - 4, &v4, 4);
}

/* rows short rows of span bytes (4 <= span <= 12: a first layer's 3 or 4 channels over 1-3
 * columns), step bytes apart in src, back to back into win: three word copies a row, at
 * 0, min(4, span - 4) and span - 4, which overlap where the row is shorter than 12 bytes
 * but never leave it. */
static inline void kp_copy_short_rows(int8_t *win, const int8_t *src, int32_t rows,
                                      int32_t span, int32_t step)
{
    const int32_t o1 = KP_MIN(4, span - 4), o2 = span - 4;
    uint32_t v0, v1, v2;
    do {
        memcpy(&v0, src, 4);
        memcpy(&v1, src + o1, 4);
        memcpy(&v2, src + o2, 4);
        memcpy(win, &v0, 4);
        memcpy(win + o1, &v1, 4);
        memcpy(win + o2, &v2, 4);
        src += step;
        win += span;
    } while (--rows > 0);
}

/* A window with whole-word taps (c % 4 == 0) that reaches past the image or has dilated
 * columns, into its slot: per filter row the pad where the row is outside the image,
 * else, with undilated columns, the pad for the taps left of the image, the taps inside
 * in one copy and the pad for those right of it; dilated columns tap by tap. */
static void kp_gather_taps(const kp_conv_geom *gm, const int8_t *image, int32_t iy0,
                           int32_t ix0, int8_t *slot)
{
    const int32_t cw = gm->c >> 2;
    const int32_t left = KP_MIN(KP_MAX(-ix0, 0), gm->fw);
    const int32_t right = KP_MIN(KP_MAX(ix0 + gm->fw - gm->in_w, 0), gm->fw - left);
    int32_t ky, kx;
    for (ky = 0; ky < gm->fh; ++ky) {
        const int32_t iy = iy0 + ky * gm->dh;
        const int8_t *row;
        if (iy < 0 || iy >= gm->in_h) {
            slot = kp_fill_words(slot, gm->pad4, gm->span >> 2);
            continue;
        }
        row = image + iy * gm->row_bytes;
        if (gm->dw == 1) {
            slot = kp_fill_words(slot, gm->pad4, left * cw);
            slot = kp_copy_words(slot, row + (ix0 + left) * gm->c,
                                 (gm->fw - left - right) * cw);
            slot = kp_fill_words(slot, gm->pad4, right * cw);
        } else {
            for (kx = 0; kx < gm->fw; ++kx) {
                const int32_t ix = ix0 + kx * gm->dw;
                if (ix < 0 || ix >= gm->in_w) {
                    slot = kp_fill_words(slot, gm->pad4, cw);
                } else {
                    slot = kp_copy_words(slot, row + ix * gm->c, cw);
                }
            }
        }
    }
}

/* A window of any channel count, contiguous, into win (its first k bytes): per filter row
 * one copy where the row lies inside the image, else tap by tap with the pad. */
static void kp_read_window(const kp_conv_geom *gm, const int8_t *image, int32_t iy0,
                           int32_t ix0, int8_t *win)
{
    const int32_t c = gm->c, span = gm->span;
    const int row_inside = ix0 >= 0 && ix0 < gm->end_x;
    int32_t ky, kx;
    for (ky = 0; ky < gm->fh; ++ky, win += span) {
        const int32_t iy = iy0 + ky * gm->dh;
        const int8_t *row;
        if (iy < 0 || iy >= gm->in_h) {
            kp_fill_bytes(win, gm->pad, gm->pad4, span);
            continue;
        }
        row = image + iy * gm->row_bytes;
        if (row_inside) {
            kp_copy_bytes(win, row + ix0 * c, span);
        } else {
            for (kx = 0; kx < gm->fw; ++kx) {
                const int32_t ix = ix0 + kx * gm->dw;
                if (ix < 0 || ix >= gm->in_w) {
                    kp_fill_bytes(win + kx * c, gm->pad, gm->pad4, c);
                } else {
                    kp_copy_bytes(win + kx * c, row + ix * c, c);
                }
            }
        }
    }
}

/* The windows of npx output pixels from (oy, ox) on, pixel j into slot j % 4 of quad
 * j / 4 (quads 4 k4 bytes apart): byte t of a window at quad + 16 (t / 4) + 4 (j % 4) +
 * t % 4. Outside the image the value is -input_offset (which adds nothing); a window's
 * tail up to k4 is zero (its weights are zero). Where npx > 4 is no multiple of 4, the
 * last quad holds the last four pixels instead (npx - 4.., overlapping the quad before),
 * so that every quad is a whole one (kp_last_quad, kp_quads_c); fewer than 4 pixels
 * repeat the first in the free slots. Whole-word taps go straight into the slot (row by
 * row where the window lies inside the image); any other window is built whole in win
 * (k4 bytes, its tail zeroed once here) and then spread. */
static void kp_gather(const kp_conv_geom *gm, const int8_t *image, int32_t oy, int32_t ox,
                      int32_t npx, int8_t *cols, int8_t *win)
{
    const int32_t k4 = gm->k4;
    int32_t iy0 = oy * gm->sh - gm->pad_h, ix0 = ox * gm->sw - gm->pad_w;
    int8_t *slot = cols;
    int32_t j, t;
    if ((gm->c & 3) == 0) {
        const int32_t row_words = gm->span >> 2, skip = gm->row_step - gm->span;
        const int32_t src_step = gm->sw * gm->c;
        j = 0;
        while (j < npx) {
            int32_t run = 0;
            if ((uint32_t)iy0 < (uint32_t)gm->end_y &&
                (uint32_t)ix0 < (uint32_t)gm->end_x) {
                /* the pixels from here whose windows stay inside, in this output row and
                 * pass: a loop with nothing else to test */
                run = KP_MIN((gm->end_x - 1 - ix0) / gm->sw + 1,
                             KP_MIN(npx - j, gm->out_w - ox));
            }
            if (run > 0) {
                const int8_t *src = image + iy0 * gm->row_bytes + ix0 * gm->c;
                ox += run;
                ix0 += run * gm->sw;
                do {
                    kp_copy_rows(slot, src, gm->fh, row_words, skip);
                    src += src_step;
                    slot += (j & 3) == 3 ? 4 * k4 - 12 : 4;
                    ++j;
                } while (--run > 0);
            } else {
                kp_gather_taps(gm, image, iy0, ix0, slot);
                slot += (j & 3) == 3 ? 4 * k4 - 12 : 4;
                ++j;
                ++ox;
                ix0 += gm->sw;
            }
            if (ox == gm->out_w) {
                ox = 0;
                ix0 = -gm->pad_w;
                iy0 += gm->sh;
            }
        }
    } else {
        const int short_rows = gm->span >= 4 && gm->span <= 12;
        for (t = gm->k; t < k4; ++t) {
            win[t] = 0;
        }
        for (j = 0; j < npx; ++j) {
            if (short_rows && (uint32_t)iy0 < (uint32_t)gm->end_y &&
                (uint32_t)ix0 < (uint32_t)gm->end_x) {
                kp_copy_short_rows(win, image + iy0 * gm->row_bytes + ix0 * gm->c, gm->fh,
                                   gm->span, gm->row_step);
            } else {
                kp_read_window(gm, image, iy0, ix0, win);
            }
            kp_copy_words(slot, win, k4 >> 2);
            slot += (j & 3) == 3 ? 4 * k4 - 12 : 4;
            ix0 += gm->sw;
            if (++ox == gm->out_w) {
                ox = 0;
                ix0 = -gm->pad_w;
                iy0 += gm->sh;
            }
        }
    }
    if ((npx & 3) != 0 && npx > 4) {
        /* the last quad becomes the pass's last four pixels: its r pixels move up to
         * slots 4 - r.., the quad before lends its last 4 - r */
        const int32_t r = npx & 3;
        int8_t *quad = cols + (npx >> 2) * 4 * k4;
        for (t = 0; t < 4 * k4; t += 16) {
            uint32_t v[3];
            int32_t i;
            memcpy(v, quad + t, 4 * (size_t)r);
            for (i = 0; i < 4 - r; ++i) {
                memcpy(quad + t + 4 * i, quad + t - 4 * k4 + 4 * (r + i), 4);
            }
            memcpy(quad + t + 4 * (4 - r), v, 4 * (size_t)r);
        }
    } else {
        /* fewer than 4: the free slots repeat the first pixel (their sums go unused) */
        for (; j & 3; ++j) {
            int8_t *quad = cols + (j >> 2) * 4 * k4;
            for (t = 0; t < k4; t += 4) {
                memcpy(quad + 4 * t + 4 * (j & 3), quad + 4 * t, 4);
            }
        }
    }
}

/* Checked once per call: bit 0, every output channel with kept groups takes the short
 * requantization; bit 1, some channel has none (its outputs are one constant, which
 * kp_fill_row writes; a wholly pruned channel's scale, and so its shift, is often far
 * out of the short form's range). */
#define KP_ALL_SHORT 1
#define KP_EMPTY_ROWS 2
static int kp_row_kinds(const kp_quant_params *quant, const kp_sparse_groups *w,
                        const int32_t *eff_bias)
{
    const int32_t step = quant->per_channel;
    const int32_t *mp = quant->multiplier, *sp = quant->shift;
    int32_t r, kinds = KP_ALL_SHORT;
    for (r = 0; r < w->rows; ++r, mp += step, sp += step) {
        if (w->counts[r] == 0) {
            kinds |= KP_EMPTY_ROWS;
        } else if (!kp_row_rq_make(*mp, *sp, 0, eff_bias[r], w->counts[r]).fast) {
            kinds &= ~KP_ALL_SHORT;
        }
    }
    return kinds;
}

#if KP_ARM_DSP
/* One kept group over the quad's four pixels, its inputs at o (quad + 16 g): its weight
 * word, SXTB16 splitting it and each input word into even and odd bytes, two SMLAD per
 * pixel. KP_QUAD_NEXT fetches the next group's index and address while the last two
 * pixels are summed: the load joins the input loads before it (one cycle, not two). */
#define KP_QUAD_GROUP(next)                             \
    "ldr    %[wo], [%[wp]], #4\n\t"                     \
    "ldr    %[x0], [%[o]]\n\t"                          \
    "ldr    %[x1], [%[o], #4]\n\t"                      \
    "sxtb16 %[we], %[wo]\n\t"                           \
    "sxtb16 %[wo], %[wo], ror #8\n\t"                   \
    KP_QUAD_TWO("a0", "a1")                             \
    "ldr    %[x0], [%[o], #8]\n\t"                      \
    "ldr    %[x1], [%[o], #12]\n\t"                     \
    next                                                \
    KP_QUAD_TWO("a2", "a3")

#define KP_QUAD_NEXT                                    \
    "ldrh   %[o], [%[gp]], #2\n\t"                      \
    "add    %[o], %[q], %[o], lsl #4\n\t"

#define KP_QUAD_TWO(a, b)                               \
    "sxtb16 %[t], %[x0]\n\t"                            \
    "smlad  %[" a "], %[we], %[t], %[" a "]\n\t"        \
    "sxtb16 %[x0], %[x0], ror #8\n\t"                   \
    "smlad  %[" a "], %[wo], %[x0], %[" a "]\n\t"       \
    "sxtb16 %[t], %[x1]\n\t"                            \
    "smlad  %[" b "], %[we], %[t], %[" b "]\n\t"        \
    "sxtb16 %[x1], %[x1], ror #8\n\t"                   \
    "smlad  %[" b "], %[wo], %[x1], %[" b "]\n\t"

/* a0..a3 += the n (>= 1) groups at gp (indices) and wp (weights) over the quad at q: the
 * first index fetched ahead, then the n - 1 groups that fetch their successor's, two a
 * turn (an odd count enters the first turn at its second group: LSRS leaves the low bit
 * in the carry flag, which the ADC without S keeps for the branch), then the last group,
 * which reads no index past the row's. Local labels 2-4. */
#define KP_QUAD_LOOP                                    \
    KP_QUAD_NEXT                                        \
    "subs   %[n], %[n], #1\n\t"                         \
    "beq    4f\n\t"                                     \
    "lsrs   %[n], %[n], #1\n\t"                         \
    "adc    %[n], %[n], #0\n\t"                         \
    "bcs    3f\n"                                       \
    "2:\n\t" KP_QUAD_GROUP(KP_QUAD_NEXT)                \
    "3:\n\t" KP_QUAD_GROUP(KP_QUAD_NEXT)                \
    "subs   %[n], %[n], #1\n\t"                         \
    "bne    2b\n"                                       \
    "4:\n\t" KP_QUAD_GROUP("")

/* What kp_pass_short reads and updates, by these offsets: the pass, then the channel in
 * progress. */
typedef struct {
    int32_t quad_bytes;         /* 0: 4 * k4 */
    int32_t quads;              /* 4: the pass's full quads */
    const uint16_t *g;          /* 8: the next channel's kept-group indices... */
    const int32_t *words;       /* 12: ...and weight words (both advanced past them) */
    const uint16_t *counts;     /* 16: the next channel's count, bias, multiplier, shift */
    const int32_t *bias;        /* 20 */
    const int32_t *multiplier;  /* 24 */
    const int32_t *shift;       /* 28 */
    int32_t step;               /* 32: 4 (bytes) with per-channel quantization, else 0 */
    int32_t offset;             /* 36: the output offset */
    int8_t *out;                /* 40: the next channel's first output */
    int32_t stride;             /* 44: output channels */
    int32_t rows;               /* 48: channels left to do */
    const int8_t *cols;         /* 52: the pass's first quad */
    int32_t n;                  /* 56: the channel in progress: its kept groups */
    int32_t b;                  /* 60: bias */
    int32_t m;                  /* 64: multiplier */
    int32_t half;               /* 68: kp_row_rq's */
    int32_t e;                  /* 72: right shift */
    int32_t left;               /* 76: quads left */
    int8_t *at;                 /* 80: the next quad's first output */
} kp_pass_job;

/* The asm reads the job by these offsets: a build where they differ fails here. */
#define KP_PASS_JOB_OK (offsetof(kp_pass_job, at) == 80 && sizeof(void *) == 4)
typedef char kp_pass_job_layout[KP_PASS_JOB_OK ? 1 : -1];

/* job->rows output channels over the pass's full quads, every channel with kept groups
 * taking the short requantization (kp_row_rq; one without is skipped): per channel its
 * constants into the job, then per quad its four accumulators at the bias, KP_QUAD_LOOP
 * over the kept groups, and the four outputs requantized (kp_rq_short) and stored. One
 * asm for all of it: the group loop needs all 14 registers, and C around it spilled and
 * reloaded every value the quad and channel loops keep, in a worse order than this,
 * where the job pointer alone goes to the stack while the groups run (in t's register)
 * and the rest is read back from the job. */
static void kp_pass_short(kp_pass_job *job)
{
    int32_t a0, a1, a2, a3, o, wo, we, x0, x1, n;
    const uint16_t *gp;
    const int32_t *wp;
    const int8_t *q;
    kp_pass_job *t = job;
    __asm__ volatile(
        "0:\n\t"                                  /* a channel */
        "ldr    %[x0], [%[t], #16]\n\t"
        "ldr    %[x1], [%[t], #20]\n\t"
        "ldr    %[we], [%[t], #24]\n\t"
        "ldr    %[wo], [%[t], #28]\n\t"
        "ldr    %[o], [%[t], #32]\n\t"
        "ldrh   %[n], [%[x0]], #2\n\t"
        "ldr    %[a0], [%[x1]], #4\n\t"
        "ldr    %[gp], [%[we]]\n\t"
        "ldr    %[wp], [%[wo]]\n\t"
        "str    %[x0], [%[t], #16]\n\t"
        "str    %[x1], [%[t], #20]\n\t"
        "add    %[we], %[we], %[o]\n\t"
        "add    %[wo], %[wo], %[o]\n\t"
        "str    %[we], [%[t], #24]\n\t"
        "str    %[wo], [%[t], #28]\n\t"
        "ldr    %[o], [%[t], #40]\n\t"
        "str    %[n], [%[t], #56]\n\t"
        "str    %[o], [%[t], #80]\n\t"
        "add    %[o], %[o], #1\n\t"
        "str    %[o], [%[t], #40]\n\t"
        "cmp    %[n], #0\n\t"                     /* no kept group: left to the C path */
        "beq    6f\n\t"
        "str    %[a0], [%[t], #60]\n\t"
        "str    %[gp], [%[t], #64]\n\t"
        "rsb    %[wp], %[wp], #0\n\t"             /* e */
        "ldr    %[o], [%[t], #36]\n\t"
        "sub    %[x0], %[wp], #1\n\t"
        "mov    %[x1], #1\n\t"
        "lsl    %[x1], %[x1], %[x0]\n\t"
        "lsl    %[o], %[o], %[wp]\n\t"
        "add    %[x1], %[x1], %[o]\n\t"           /* half */
        "str    %[wp], [%[t], #72]\n\t"
        "str    %[x1], [%[t], #68]\n\t"
        "ldr    %[x0], [%[t], #4]\n\t"
        "ldr    %[q], [%[t], #52]\n\t"
        "str    %[x0], [%[t], #76]\n"
        "1:\n\t"                                  /* a quad */
        "ldr    %[a0], [%[t], #60]\n\t"
        "ldr    %[gp], [%[t], #8]\n\t"
        "ldr    %[wp], [%[t], #12]\n\t"
        "ldr    %[n], [%[t], #56]\n\t"
        "str    %[t], [sp, #-8]!\n\t"
        "mov    %[a1], %[a0]\n\t"
        "mov    %[a2], %[a0]\n\t"
        "mov    %[a3], %[a0]\n\t"
        KP_QUAD_LOOP
        "ldr    %[t], [sp], #8\n\t"
        "ldr    %[gp], [%[t], #64]\n\t"
        "ldr    %[wp], [%[t], #68]\n\t"
        "ldr    %[n], [%[t], #72]\n\t"
        "ldr    %[o], [%[t], #80]\n\t"
        "ldr    %[we], [%[t], #44]\n\t"
        "lsl    %[a0], %[a0], #1\n\t"
        "lsl    %[a1], %[a1], #1\n\t"
        "lsl    %[a2], %[a2], #1\n\t"
        "lsl    %[a3], %[a3], #1\n\t"
        "smmlar %[x0], %[a0], %[gp], %[wp]\n\t"
        "smmlar %[x1], %[a1], %[gp], %[wp]\n\t"
        "sub    %[a0], %[x0], %[a0], lsr #31\n\t"
        "sub    %[a1], %[x1], %[a1], lsr #31\n\t"
        "smmlar %[x0], %[a2], %[gp], %[wp]\n\t"
        "smmlar %[x1], %[a3], %[gp], %[wp]\n\t"
        "sub    %[a2], %[x0], %[a2], lsr #31\n\t"
        "sub    %[a3], %[x1], %[a3], lsr #31\n\t"
        "asr    %[a0], %[a0], %[n]\n\t"
        "asr    %[a1], %[a1], %[n]\n\t"
        "asr    %[a2], %[a2], %[n]\n\t"
        "asr    %[a3], %[a3], %[n]\n\t"
        "ssat   %[a0], #8, %[a0]\n\t"
        "ssat   %[a1], #8, %[a1]\n\t"
        "ssat   %[a2], #8, %[a2]\n\t"
        "ssat   %[a3], #8, %[a3]\n\t"
        "ldr    %[x0], [%[t], #0]\n\t"
        "ldr    %[x1], [%[t], #76]\n\t"
        "strb   %[a0], [%[o]]\n\t"
        "strb   %[a1], [%[o], %[we]]\n\t"
        "add    %[o], %[o], %[we], lsl #1\n\t"
        "strb   %[a2], [%[o]]\n\t"
        "strb   %[a3], [%[o], %[we]]\n\t"
        "add    %[o], %[o], %[we], lsl #1\n\t"
        "str    %[o], [%[t], #80]\n\t"
        "add    %[q], %[q], %[x0]\n\t"
        "subs   %[x1], %[x1], #1\n\t"
        "str    %[x1], [%[t], #76]\n\t"
        "bne    1b\n\t"
        "ldr    %[x0], [%[t], #8]\n\t"            /* the channel's groups done */
        "ldr    %[x1], [%[t], #12]\n\t"
        "ldr    %[n], [%[t], #56]\n\t"
        "add    %[x0], %[x0], %[n], lsl #1\n\t"
        "add    %[x1], %[x1], %[n], lsl #2\n\t"
        "str    %[x0], [%[t], #8]\n\t"
        "str    %[x1], [%[t], #12]\n"
        "6:\n\t"
        "ldr    %[o], [%[t], #48]\n\t"
        "subs   %[o], %[o], #1\n\t"
        "str    %[o], [%[t], #48]\n\t"
        "bne    0b\n\t"
        : [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [gp] "=&r"(gp),
          [wp] "=&r"(wp), [n] "=&r"(n), [o] "=&r"(o), [wo] "=&r"(wo), [we] "=&r"(we),
          [x0] "=&r"(x0), [x1] "=&r"(x1), [t] "+r"(t), [q] "=&r"(q)
        :
        : "cc", "memory");
}

/* One output channel over npx gathered pixels in C (the quads kp_pass_short doesn't
 * take): out[j * stride], from <= j < npx. The accumulators of all quads first (a group
 * loop that needs every register), then one loop over them that keeps the
 * requantization's constants in registers. */
static void kp_row_quads(const int8_t *cols, int32_t k4, int32_t npx, const uint16_t *g,
                         const int32_t *words, int32_t n, int32_t bias, const kp_row_rq *r,
                         const kp_conv_params *p, int32_t from, int8_t *out, int32_t stride)
{
    int32_t acc[KP_SPARSE_CONV_PIXELS], j;
    for (j = 0; j < npx; j += 4, cols += 4 * k4) {
        int32_t a0 = bias, a1 = bias, a2 = bias, a3 = bias;
        if (n > 0) {
            const int8_t *q = cols;
            const uint16_t *gp = g;
            const int32_t *wp = words;
            int32_t turns = n, o, wo, we, x0, x1, t;
            /* one group a turn: the C path is for the few quads kp_pass_short leaves, and
             * KP_QUAD_LOOP's unrolled turns would double its code for them */
            __asm__ volatile("1:\n\t" KP_QUAD_NEXT KP_QUAD_GROUP("")
                             "subs   %[n], %[n], #1\n\t"
                             "bne    1b\n\t"
                             : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3),
                               [gp] "+r"(gp), [wp] "+r"(wp), [n] "+r"(turns), [o] "=&r"(o),
                               [wo] "=&r"(wo), [we] "=&r"(we), [x0] "=&r"(x0),
                               [x1] "=&r"(x1), [t] "=&r"(t)
                             : [q] "r"(q)
                             : "cc", "memory");
        }
        acc[j] = a0;
        acc[j + 1] = a1;
        acc[j + 2] = a2;
        acc[j + 3] = a3;
    }
    out += from * stride;
    if (r->fast) {
        const kp_row_rq rr = *r;
        for (j = from; j < npx; ++j, out += stride) {
            *out = (int8_t)kp_clamp(kp_rq_short(acc[j], &rr), p->activation.min,
                                    p->activation.max);
        }
    } else {
        const kp_rq rq = kp_rq_make(r->multiplier, r->shift);
        const int32_t offset = p->output_offset;
        const kp_activation act = p->activation;
        for (j = from; j < npx; ++j, out += stride) {
            *out = (int8_t)kp_clamp(kp_rq_apply(acc[j], rq) + offset, act.min, act.max);
        }
    }
}
#else
/* The portable path: the same accumulators in C, TFLite's requantization as written. */
static void kp_row_quads(const int8_t *cols, int32_t k4, int32_t npx, const uint16_t *g,
                         const int32_t *words, int32_t n, int32_t bias, const kp_row_rq *r,
                         const kp_conv_params *p, int32_t from, int8_t *out, int32_t stride)
{
    int32_t i, j, q;
    for (; npx > 0; npx -= 4, cols += 4 * k4, out += 4 * stride) {
        int32_t acc[4];
        acc[0] = acc[1] = acc[2] = acc[3] = bias;
        for (q = 0; q < n; ++q) {
            const int8_t *x = cols + 16 * g[q];
            const uint32_t wv = (uint32_t)words[q];
            for (j = 0; j < 4; ++j, x += 4) {
                for (i = 0; i < 4; ++i) {
                    acc[j] += kp_word_weight(wv, i) * x[i];
                }
            }
        }
        for (j = from; j < KP_MIN(4, npx); ++j) {
            const int32_t v =
                kp_requantize(acc[j], r->multiplier, r->shift) + p->output_offset;
            out[j * stride] = (int8_t)KP_CLAMP(v, p->activation.min, p->activation.max);
        }
        from = 0;
    }
}
#endif

#if KP_ARM_DSP
/* The activation's clamp over the n outputs at out that kp_pass_short wrote saturated to
 * int8 only: a per-byte max and min, four outputs a word, then the last 0-3 one by one. */
static void kp_clamp_block(int8_t *out, int32_t n, kp_activation act)
{
    const uint32_t lo4 = kp_splat8(act.min), hi4 = kp_splat8(act.max);
    uint32_t v;
    for (; n >= 4; n -= 4, out += 4) {
        memcpy(&v, out, 4);
        v = kp_select_ge_s8x4(v, lo4, v, lo4);
        v = kp_select_ge_s8x4(hi4, v, v, hi4);
        memcpy(out, &v, 4);
    }
    for (; n > 0; --n, ++out) {
        *out = (int8_t)kp_clamp(*out, act.min, act.max);
    }
}
#endif

/* A channel without kept groups over npx pixels: every output is its bias requantized.
 * Written once per image, after the passes, which skip such channels. */
static void kp_fill_row(const kp_conv_params *p, int32_t bias, int32_t multiplier,
                        int32_t shift, int8_t *out, int32_t npx, int32_t stride)
{
#if KP_ARM_DSP
    const int32_t v = kp_rq_apply(bias, kp_rq_make(multiplier, shift)) + p->output_offset;
#else
    const int32_t v = kp_requantize(bias, multiplier, shift) + p->output_offset;
#endif
    const int8_t c = (int8_t)KP_CLAMP(v, p->activation.min, p->activation.max);
    for (; npx >= 4; npx -= 4, out += 4 * stride) {
        out[0] = c;
        out[stride] = c;
        out[2 * stride] = c;
        out[3 * stride] = c;
    }
    for (; npx > 0; --npx, out += stride) {
        *out = c;
    }
}

#if KP_ARM_DSP
/* After kp_pass_short over a pass's whole quads, where its npx pixels are no multiple of
 * 4: the last quad (kp_gather's last four pixels) into the outputs of pixels npx - 4..,
 * some of them a second time, for the same rows as that call, which g.. rows give as it
 * found them. The job's quads and cols are kept. For all rows at once this costs less
 * than the C path row by row. */
static void kp_last_quad(kp_pass_job *job, int32_t npx, const uint16_t *g,
                         const int32_t *words, const uint16_t *counts, const int32_t *bias,
                         const int32_t *multiplier, const int32_t *shift, int8_t *out,
                         int32_t rows)
{
    const int32_t last = (npx >> 2) * job->quad_bytes;
    job->g = g;
    job->words = words;
    job->counts = counts;
    job->bias = bias;
    job->multiplier = multiplier;
    job->shift = shift;
    job->out = out + (npx - 4) * job->stride;
    job->rows = rows;
    job->cols += last;
    job->quads = 1;
    kp_pass_short(job);
    job->cols -= last;
    job->quads = npx >> 2;
}
#endif

/* kp_row_quads over a pass's npx pixels as kp_gather laid them out: for npx > 4 no
 * multiple of 4, the whole quads, then the last quad (pixels npx - 4..), of which only
 * the pixels the whole quads left are written. */
static void kp_quads_c(const int8_t *cols, int32_t k4, int32_t npx, const uint16_t *g,
                       const int32_t *words, int32_t n, int32_t bias, const kp_row_rq *r,
                       const kp_conv_params *p, int8_t *out, int32_t stride)
{
    if (npx <= 4 || (npx & 3) == 0) {
        kp_row_quads(cols, k4, npx, g, words, n, bias, r, p, 0, out, stride);
        return;
    }
    kp_row_quads(cols, k4, npx & ~3, g, words, n, bias, r, p, 0, out, stride);
    kp_row_quads(cols + (npx >> 2) * 4 * k4, k4, 4, g, words, n, bias, r, p, 4 - (npx & 3),
                 out + (npx - 4) * stride, stride);
}

/* npx pixels of one image, gathered as quads in cols (k4 bytes a window): every output
 * channel of each, into out (npx x rows). g: room for one row's kept-group indices;
 * kinds: kp_row_kinds. On the DSP, kp_pass_short does every channel with kept groups
 * and the short requantization (npx >= 4): all of them in one call where every such
 * channel has it and the index is ABS16 (read as it is), else channel by channel. The
 * C path does the other channels, and passes of fewer than 4 pixels. A channel without
 * kept groups is skipped (kp_fill_row writes it once per image). */
static void kp_sparse_conv_pass(const kp_conv_params *p, const kp_quant_params *quant,
                                const kp_sparse_groups *w, const int32_t *eff_bias,
                                int kinds, const int8_t *cols, int32_t k4, int32_t npx,
                                uint16_t *g, int8_t *out)
{
    const int32_t rows = w->rows, offset = p->output_offset, step = quant->per_channel;
    const int32_t *wp = w->words, *mp = quant->multiplier, *sp = quant->shift;
    const uint16_t *gi = (const uint16_t *)w->index;
    const int decode = w->index_kind != KP_SPARSE_ABS16;
    const int whole = (kinds & KP_ALL_SHORT) && !decode; /* one kp_pass_short call */
    int asm_pass = 0; /* the DSP path takes this pass */
    int32_t r;
    kp_group_cursor cur;
#if KP_ARM_DSP
    int clamp = 0; /* kp_pass_short wrote outputs, saturated to int8 only */
    kp_pass_job job;
    if (npx >= 4) {
        asm_pass = 1;
        job.quad_bytes = 4 * k4;
        job.quads = npx >> 2;
        job.step = 4 * step;
        job.offset = offset;
        job.stride = rows;
        job.cols = cols;
        if (whole) {
            job.g = gi;
            job.words = wp;
            job.counts = w->counts;
            job.bias = eff_bias;
            job.multiplier = mp;
            job.shift = sp;
            job.out = out;
            job.rows = rows;
            kp_pass_short(&job);
            if (npx & 3) {
                kp_last_quad(&job, npx, gi, wp, w->counts, eff_bias, mp, sp, out, rows);
            }
            clamp = 1;
        }
    }
#endif
    kp_cursor_start(&cur, w);
    for (r = 0; r < rows && !(asm_pass && whole); ++r, mp += step, sp += step) {
        const int32_t n = w->counts[r];
        kp_row_rq rq;
        const uint16_t *rg = gi;
        if (n == 0) {
            continue; /* kp_fill_row, once per image */
        }
        rq = kp_row_rq_make(*mp, *sp, offset, eff_bias[r], n);
        if (decode) {
            kp_decode_row(&cur, n, g);
            rg = g;
        }
#if KP_ARM_DSP
        if (asm_pass && rq.fast) {
            job.g = rg;
            job.words = wp;
            job.counts = w->counts + r;
            job.bias = eff_bias + r;
            job.multiplier = mp;
            job.shift = sp;
            job.out = out + r;
            job.rows = 1;
            kp_pass_short(&job);
            if (npx & 3) { /* the last quad's new pixels in C: less than kp_last_quad */
                kp_row_quads(cols + (npx >> 2) * 4 * k4, k4, 4, rg, wp, n, eff_bias[r], &rq,
                             p, 4 - (npx & 3), out + r + (npx - 4) * rows, rows);
            }
            clamp = 1;
        } else
#endif
        {
            kp_quads_c(cols, k4, npx, rg, wp, n, eff_bias[r], &rq, p, out + r, rows);
        }
        wp += n;
        gi += n;
    }
#if KP_ARM_DSP
    if (clamp && (p->activation.min != -128 || p->activation.max != 127)) {
        kp_clamp_block(out, npx * rows, p->activation);
    }
#endif
}

kp_status kp_sparse_convolve_s8(const kp_conv_params *params, const kp_quant_params *quant,
                                const kp_dims *input_dims, const int8_t *input,
                                const kp_dims *filter_dims, const kp_sparse_groups *w,
                                const int32_t *eff_bias, const kp_dims *output_dims,
                                int8_t *output, int8_t *scratch)
{
    int32_t k_len, b, px, pixels, r;
    int kinds;
    kp_conv_geom gm;
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
    gm.c = input_dims->c;
    gm.fh = filter_dims->h;
    gm.fw = filter_dims->w;
    gm.span = gm.fw * gm.c;
    gm.k = k_len;
    gm.k4 = 4 * ((k_len + 3) >> 2);
    gm.in_h = input_dims->h;
    gm.in_w = input_dims->w;
    gm.row_bytes = gm.in_w * gm.c;
    gm.sh = params->stride.h;
    gm.sw = params->stride.w;
    gm.dh = params->dilation.h;
    gm.dw = params->dilation.w;
    gm.pad_h = params->padding.h;
    gm.pad_w = params->padding.w;
    gm.row_step = gm.dh * gm.row_bytes;
    gm.end_y = KP_MAX(0, gm.in_h - (gm.fh - 1) * gm.dh);
    gm.end_x = gm.dw == 1 ? KP_MAX(0, gm.in_w - (gm.fw - 1)) : 0;
    gm.out_w = output_dims->w;
    gm.pad = (int8_t)(-params->input_offset);
    gm.pad4 = ((uint32_t)gm.pad & 0xFFU) * 0x01010101U;
    kinds = kp_row_kinds(quant, w, eff_bias);
    cols = scratch;
    win = cols + KP_SPARSE_CONV_PIXELS * gm.k4;
    g = (uint16_t *)(void *)(win + gm.k4);
    pixels = output_dims->h * output_dims->w;
    for (b = 0; b < output_dims->n; ++b) {
        const int8_t *image = input + b * gm.in_h * gm.row_bytes;
        for (px = 0; px < pixels; px += KP_SPARSE_CONV_PIXELS) {
            const int32_t npx = KP_MIN(KP_SPARSE_CONV_PIXELS, pixels - px);
            kp_gather(&gm, image, px / gm.out_w, px % gm.out_w, npx, cols, win);
            kp_sparse_conv_pass(params, quant, w, eff_bias, kinds, cols, gm.k4, npx, g,
                                output + px * output_dims->c);
        }
        for (r = 0; r < w->rows && (kinds & KP_EMPTY_ROWS); ++r) {
            if (w->counts[r] == 0) {
                const int32_t q = quant->per_channel ? r : 0;
                kp_fill_row(params, eff_bias[r], quant->multiplier[q], quant->shift[q],
                            output + r, pixels, w->rows);
            }
        }
        output += pixels * output_dims->c;
    }
    return KP_OK;
}

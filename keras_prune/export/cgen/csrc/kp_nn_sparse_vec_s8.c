/*
 * The sparse matrix-vector product of kp_nn_sparse_internal.h, portable C99 and Cortex-M4
 * (Armv7E-M DSP), bit-exact with each other. Same arithmetic as the dense kernels on the
 * dense pruned matrix: a removed group adds 0 to the accumulator, and the effective bias
 * already holds input_offset times the row's full weight sum.
 *
 * The DSP path:
 * Each kept group is one weight word: SXTB16 splits it into its even and odd bytes as
 * int16 pairs, the four input bytes at the group's offset (one LDR) are split the same
 * way, and two SMLAD add the four products. The ABS16 and DELTA8 streams (the latter when
 * a row has at most 255 groups, so it holds no escape byte) run in asm loops that take four
 * groups per pass: a group costs about 10 cycles, index decoding included. RUNS8 and
 * DELTA8 with escapes take a C loop.
 *
 * The only group whose input may run past k is the short last group of a row (k % 4 != 0)
 * when the input is not padded; it can only be the row's last kept group, so such rows
 * run their kept groups but the last through the word path and test only the last one.
 */
#include "internal/kp_nn_sparse_internal.h"
#include "internal/kp_nn_support.h"

#if KP_ARM_DSP /* Cortex-M4 (Armv7E-M DSP) */

#include "internal/kp_acle.h"

/* acc + x[0..4) . the group word's four weights. */
static inline int32_t kp_group_mac(int32_t acc, const int8_t *x4, int32_t word)
{
    const int32_t xv = kp_read_s8x4(x4);
    acc = kp_smlad(kp_sxtb16(word), kp_sxtb16(xv), acc);
    return kp_smlad(kp_sxtb16_ror8(word), kp_sxtb16_ror8(xv), acc);
}

/* The row's last group at x + 4 g: a short one (g == full, rest = k % 4 inputs left,
 * rest == 0 when the input is padded) is summed byte by byte, reading no input past k. */
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

/* acc += group (w0 word) . input word x0, then group w1 . x1 (t0, t1: temporaries). */
#define KP_SPARSE_MAC2                                \
    "sxtb16 %[t0], %[w0]\n\t"                         \
    "sxtb16 %[t1], %[x0]\n\t"                         \
    "smlad  %[acc], %[t0], %[t1], %[acc]\n\t"         \
    "sxtb16 %[t0], %[w0], ror #8\n\t"                 \
    "sxtb16 %[t1], %[x0], ror #8\n\t"                 \
    "smlad  %[acc], %[t0], %[t1], %[acc]\n\t"         \
    "sxtb16 %[t0], %[w1]\n\t"                         \
    "sxtb16 %[t1], %[x1]\n\t"                         \
    "smlad  %[acc], %[t0], %[t1], %[acc]\n\t"         \
    "sxtb16 %[t0], %[w1], ror #8\n\t"                 \
    "sxtb16 %[t1], %[x1], ror #8\n\t"                 \
    "smlad  %[acc], %[t0], %[t1], %[acc]\n\t"

#define KP_SPARSE_LOOP_END  \
    "subs   %[n], %[n], #1\n\t" \
    "bne    1b\n\t"

#define KP_SPARSE_MAC2_OPERANDS                                                     \
    : [acc] "+r"(acc), [p] "+r"(p), [wp] "+r"(wp), [n] "+r"(passes), [x0] "=&r"(x0), \
      [x1] "=&r"(x1), [w0] "=&r"(w0), [w1] "=&r"(w1), [t0] "=&r"(t0), [t1] "=&r"(t1)

/* The next two groups' weight words (w0, w1) and input words (x0, x1)
, their indices read from an ABS16 stream... */
#define KP_ABS16_LOAD2                               \
    "ldrh   %[x0], [%[p]], #2\n\t"                  \
    "ldrh   %[x1], [%[p]], #2\n\t"                  \
    "ldr    %[w0], [%[wp]], #4\n\t"                 \
    "ldr    %[w1], [%[wp]], #4\n\t"                 \
    "ldr    %[x0], [%[x], %[x0], lsl #2]\n\t"       \
    "ldr    %[x1], [%[x], %[x1], lsl #2]\n\t"

/* ...or from a DELTA8 stream without escapes, xp walking the input. */
#define KP_DELTA8_LOAD2                              \
    "ldrb   %[x0], [%[p]], #1\n\t"                  \
    "ldrb   %[x1], [%[p]], #1\n\t"                  \
    "ldr    %[w0], [%[wp]], #4\n\t"                 \
    "ldr    %[w1], [%[wp]], #4\n\t"                 \
    "add    %[xp], %[xp], %[x0], lsl #2\n\t"        \
    "ldr    %[x0], [%[xp]], #4\n\t"                 \
    "add    %[xp], %[xp], %[x1], lsl #2\n\t"        \
    "ldr    %[x1], [%[xp]], #4\n\t"

/* acc + the next n groups of an ABS16 stream over input x: four groups per pass, then a
 * pair and a single one. */
static inline int32_t kp_dot_abs16(int32_t acc, const int8_t *x, const uint16_t **pp,
                                   const int32_t **wpp, int32_t n)
{
    const uint16_t *p = *pp;
    const int32_t *wp = *wpp;
    int32_t passes = n >> 1;
    if (n & 1) {
        acc = kp_group_mac(acc, x + 4 * *p++, *wp++);
    }
    if (passes > 0) {
        int32_t x0, x1, w0, w1, t0, t1;
        if (passes & 1) {
            passes = 1;
            __asm__("1:\n\t" KP_ABS16_LOAD2 KP_SPARSE_MAC2 KP_SPARSE_LOOP_END
                    KP_SPARSE_MAC2_OPERANDS
                    : [x] "r"(x)
                    : "cc", "memory");
        }
        passes = n >> 2;
        if (passes > 0) {
            __asm__("1:\n\t" KP_ABS16_LOAD2 KP_SPARSE_MAC2 KP_ABS16_LOAD2 KP_SPARSE_MAC2
                    KP_SPARSE_LOOP_END
                    KP_SPARSE_MAC2_OPERANDS
                    : [x] "r"(x)
                    : "cc", "memory");
        }
    }
    *pp = p;
    *wpp = wp;
    return acc;
}

/* acc + the next n groups of a DELTA8 stream without escapes; *xpp is the input at the
 * next group that may be kept. */
static inline int32_t kp_dot_delta8(int32_t acc, const int8_t **xpp, const uint8_t **pp,
                                    const int32_t **wpp, int32_t n)
{
    const int8_t *xp = *xpp;
    const uint8_t *p = *pp;
    const int32_t *wp = *wpp;
    int32_t passes = n >> 1;
    if (n & 1) {
        xp += 4 * *p++;
        acc = kp_group_mac(acc, xp, *wp++);
        xp += 4;
    }
    if (passes > 0) {
        int32_t x0, x1, w0, w1, t0, t1;
        if (passes & 1) {
            passes = 1;
            __asm__("1:\n\t" KP_DELTA8_LOAD2 KP_SPARSE_MAC2 KP_SPARSE_LOOP_END
                    KP_SPARSE_MAC2_OPERANDS, [xp] "+r"(xp)
                    :
                    : "cc", "memory");
        }
        passes = n >> 2;
        if (passes > 0) {
            __asm__("1:\n\t" KP_DELTA8_LOAD2 KP_SPARSE_MAC2 KP_DELTA8_LOAD2 KP_SPARSE_MAC2
                    KP_SPARSE_LOOP_END
                    KP_SPARSE_MAC2_OPERANDS, [xp] "+r"(xp)
                    :
                    : "cc", "memory");
        }
    }
    *xpp = xp;
    *pp = p;
    *wpp = wp;
    return acc;
}

/* acc + the next n groups of any stream, in C: RUNS8, and DELTA8 with escapes. The last
 * group goes through kp_group_mac_last. */
static int32_t kp_dot_generic(int32_t acc, const int8_t *x, int32_t kind, const uint8_t **pp,
                              const int32_t **wpp, int32_t n, int32_t full, int32_t rest)
{
    const uint8_t *p8 = *pp;
    const int32_t *wp = *wpp;
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
    } else { /* KP_SPARSE_DELTA8 */
        const int8_t *xp = x;
        uint32_t d;
        for (; n > 1; --n) {
            d = *p8++;
            while (d == 255U) {
                xp += 4 * 255;
                d = *p8++;
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
    }
    acc = kp_group_mac_last(acc, x, g, full, rest, *wp++);
    *pp = p8;
    *wpp = wp;
    return acc;
}

/* What a row's output needs besides its accumulator. */
typedef struct {
    const int32_t *mult;
    const int32_t *shift;
    int32_t step; /* 1 per channel, 0 per tensor */
    int32_t offset;
    kp_activation act;
} kp_row_out;

/* Rows are done in chunks: first every accumulator of the chunk, then every output. Two
 * short loops keep their state in registers; one loop doing both spilled about half of
 * it, which cost more per row than a kept group does. */
#define KP_SPARSE_CHUNK 32

static void kp_rows_finish(const int32_t *acc, int32_t n, int32_t r0, const kp_row_out *o,
                           int8_t *out)
{
    const int32_t *mult = o->mult + r0 * o->step;
    const int32_t *shift = o->shift + r0 * o->step;
    const int32_t step = o->step, offset = o->offset, lo = o->act.min, hi = o->act.max;
    int32_t j;
    for (j = 0; j < n; ++j, mult += step, shift += step) {
        const kp_rq q = kp_rq_make(*mult, *shift);
        out[j] = (int8_t)kp_clamp(kp_rq_apply(acc[j], q) + offset, lo, hi);
    }
}

/* One function per stream kind, so that each keeps its pointers in registers. DOT adds
 * the n > 0 kept groups of a row to acc, advancing p and wp. */
#define KP_SPARSE_ROWS(NAME, INDEX_T, DOT)                                                \
    static void NAME(const int8_t *x, const kp_sparse_groups *w, int32_t rest,           \
                     const int32_t *eff_bias, const kp_row_out *o, int8_t *out)          \
    {                                                                                    \
        const int32_t full = w->k >> 2;                                                  \
        const int32_t tail = rest != 0;                                                  \
        const int32_t rows = w->rows;                                                    \
        const uint16_t *counts = w->counts;                                              \
        const int32_t *wp = w->words;                                                    \
        const INDEX_T *p = (const INDEX_T *)w->index;                                    \
        int32_t buf[KP_SPARSE_CHUNK];                                                    \
        int32_t r0, j;                                                                   \
        (void)tail;                                                                      \
        for (r0 = 0; r0 < rows; r0 += KP_SPARSE_CHUNK) {                                 \
            const int32_t m = KP_MIN(KP_SPARSE_CHUNK, rows - r0);                        \
            for (j = 0; j < m; ++j) {                                                    \
                const int32_t n = counts[r0 + j];                                        \
                int32_t acc = eff_bias[r0 + j];                                          \
                if (n > 0) {                                                             \
                    DOT                                                                  \
                }                                                                        \
                buf[j] = acc;                                                            \
            }                                                                            \
            kp_rows_finish(buf, m, r0, o, out + r0);                                     \
        }                                                                                \
    }

KP_SPARSE_ROWS(kp_rows_abs16, uint16_t,
               acc = kp_dot_abs16(acc, x, &p, &wp, n - tail);
               if (tail) {
                   const int32_t g = *p++;
                   acc = kp_group_mac_last(acc, x, g, full, rest, *wp++);
               })

KP_SPARSE_ROWS(kp_rows_delta8, uint8_t,
               const int8_t *xp = x;
               acc = kp_dot_delta8(acc, &xp, &p, &wp, n - tail);
               if (tail) {
                   const int32_t g = (int32_t)((xp - x) >> 2) + *p++;
                   acc = kp_group_mac_last(acc, x, g, full, rest, *wp++);
               })

KP_SPARSE_ROWS(kp_rows_generic, uint8_t,
               acc = kp_dot_generic(acc, x, w->index_kind, &p, &wp, n, full, rest);)

void kp_nn_sparse_vec_s8(const int8_t *x, int32_t padded, const kp_sparse_groups *w,
                         const int32_t *eff_bias, const kp_quant_params *quant,
                         int32_t output_offset, kp_activation act, int8_t *out)
{
    const int32_t rest = padded ? 0 : (w->k & 3);
    kp_row_out o;
    o.mult = quant->multiplier;
    o.shift = quant->shift;
    o.step = quant->per_channel ? 1 : 0;
    o.offset = output_offset;
    o.act = act;
    if (w->index_kind == KP_SPARSE_ABS16) {
        kp_rows_abs16(x, w, rest, eff_bias, &o, out);
    } else if (w->index_kind == KP_SPARSE_DELTA8 && ((w->k + 3) >> 2) <= 255) {
        kp_rows_delta8(x, w, rest, eff_bias, &o, out);
    } else {
        kp_rows_generic(x, w, rest, eff_bias, &o, out);
    }
}

#else /* portable C99 */

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

#endif /* KP_ARM_DSP */

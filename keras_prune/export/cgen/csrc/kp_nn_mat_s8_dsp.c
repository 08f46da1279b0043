/*
 * Cortex-M4 (Armv7E-M DSP) inner products for FULLY_CONNECTED and CONV_2D, bit-exact with
 * the portable ones in kp_nn_mat_s8.c (the semantics are in kp_nn_internal.h).
 *
 * Both unpack int8 words with SXTB16 into even and odd bytes as int16 pairs and multiply
 * pairs with SMLAD, two MACs per instruction. Integer sums wrap identically in any order,
 * so the accumulators equal the portable loop's exactly.
 */
#include "kp_nn_internal.h"

#if KP_ARM_DSP

#include "kp_acle.h"

/* What turns an accumulator into an output. Kept in memory, behind one pointer: the asm
 * loops need every register, so anything live across them is spilled anyway. */
typedef struct {
    const int32_t *multiplier;
    const int32_t *shift;
    int32_t step; /* 1 per channel, 0 per tensor */
    int32_t output_offset;
    kp_activation act;
} kp_out_ctx;

static inline kp_out_ctx kp_out_ctx_of(const kp_quant_params *quant, int32_t output_offset,
                                       kp_activation act)
{
    kp_out_ctx c;
    c.multiplier = quant->multiplier;
    c.shift = quant->shift;
    c.step = quant->per_channel ? 1 : 0;
    c.output_offset = output_offset;
    c.act = act;
    return c;
}

static inline kp_rq kp_rq_of(const kp_out_ctx *c, int32_t r)
{
    const int32_t i = r * c->step;
    return kp_rq_make(c->multiplier[i], c->shift[i]);
}

static inline int8_t kp_rq_out(int32_t acc, kp_rq q, const kp_out_ctx *c)
{
    return (int8_t)kp_clamp(kp_rq_apply(acc, q) + c->output_offset, c->act.min, c->act.max);
}

/* Four rows, one word (four k) of x: x is loaded and unpacked once for the four rows. Rows
 * 1 and 3 are read at [row 0 or 2 + k_len], which frees the registers that let the loads
 * run back to back (a load right after a load costs one cycle, not two). Fourteen
 * registers are live; the compiler cannot keep them without spilling, hence asm. */
#define KP_VM4_QUAD                                     \
    "ldr    %[xe], [%[xp]], #4\n\t"                     \
    "ldr    %[wb], [%[w0], %[kl]]\n\t"                  \
    "ldr    %[wa], [%[w0]], #4\n\t"                     \
    "sxtb16 %[xo], %[xe], ror #8\n\t"                   \
    "sxtb16 %[xe], %[xe]\n\t"                           \
    "sxtb16 %[t], %[wa]\n\t"                            \
    "sxtb16 %[wa], %[wa], ror #8\n\t"                   \
    "smlad  %[a0], %[t], %[xe], %[a0]\n\t"              \
    "smlad  %[a0], %[wa], %[xo], %[a0]\n\t"             \
    "sxtb16 %[t], %[wb]\n\t"                            \
    "sxtb16 %[wb], %[wb], ror #8\n\t"                   \
    "smlad  %[a1], %[t], %[xe], %[a1]\n\t"              \
    "smlad  %[a1], %[wb], %[xo], %[a1]\n\t"             \
    "ldr    %[wb], [%[w2], %[kl]]\n\t"                  \
    "ldr    %[wa], [%[w2]], #4\n\t"                     \
    "sxtb16 %[t], %[wa]\n\t"                            \
    "sxtb16 %[wa], %[wa], ror #8\n\t"                   \
    "smlad  %[a2], %[t], %[xe], %[a2]\n\t"              \
    "smlad  %[a2], %[wa], %[xo], %[a2]\n\t"             \
    "sxtb16 %[t], %[wb]\n\t"                            \
    "sxtb16 %[wb], %[wb], ror #8\n\t"                   \
    "smlad  %[a3], %[t], %[xe], %[a3]\n\t"              \
    "smlad  %[a3], %[wb], %[xo], %[a3]\n\t"

#define KP_VM4_OPERANDS                                                             \
    : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [xp] "+r"(xp),   \
      [w0] "+r"(w0), [w2] "+r"(w2), [xe] "=&r"(xe), [xo] "=&r"(xo), [wa] "=&r"(wa), \
      [wb] "=&r"(wb), [t] "=&r"(t)

void kp_nn_vec_mat_s8(const int8_t *x, const int8_t *w, int32_t k_len, int32_t rows,
                      const int32_t *eff_bias, const kp_quant_params *quant,
                      int32_t output_offset, kp_activation act, int8_t *out)
{
    const int32_t quads = k_len >> 2;
    const int32_t rest = k_len & 3;
    const kp_out_ctx oc = kp_out_ctx_of(quant, output_offset, act);
    const uint32_t lo4 = kp_splat8(act.min);
    const uint32_t hi4 = kp_splat8(act.max);
    int32_t r = 0;

    for (; r + 4 <= rows; r += 4) {
        const int8_t *w0 = w + r * k_len;
        const int8_t *w2 = w0 + 2 * k_len;
        const int8_t *xp = x;
        int32_t a0 = eff_bias[r];
        int32_t a1 = eff_bias[r + 1];
        int32_t a2 = eff_bias[r + 2];
        int32_t a3 = eff_bias[r + 3];
        int32_t xe, xo, wa, wb, t, k;
        int32_t n = quads >> 1;
        if (n > 0) {
            __asm__ volatile("1:\n\t" KP_VM4_QUAD KP_VM4_QUAD
                             "subs   %[n], %[n], #1\n\t"
                             "bne    1b\n\t"
                             KP_VM4_OPERANDS, [n] "+r"(n)
                             : [kl] "r"(k_len)
                             : "cc", "memory");
        }
        if (quads & 1) {
            __asm__ volatile(KP_VM4_QUAD
                             KP_VM4_OPERANDS
                             : [kl] "r"(k_len)
                             : "memory");
        }
        for (k = 0; k < rest; ++k) {
            const int32_t xk = xp[k];
            a0 += xk * w0[k];
            a1 += xk * w0[k_len + k];
            a2 += xk * w2[k];
            a3 += xk * w2[k_len + k];
        }
        {
            /* Four adjacent outputs: clamped and stored as one word. */
            const int32_t off = oc.output_offset;
            const uint32_t packed = kp_clamp_pack4(kp_rq_apply(a0, kp_rq_of(&oc, r)) + off,
                                                   kp_rq_apply(a1, kp_rq_of(&oc, r + 1)) + off,
                                                   kp_rq_apply(a2, kp_rq_of(&oc, r + 2)) + off,
                                                   kp_rq_apply(a3, kp_rq_of(&oc, r + 3)) + off,
                                                   lo4, hi4);
            memcpy(out + r, &packed, sizeof packed);
        }
    }
    /* The last rows % 4: two, then one, in C (few enough live values not to spill). */
    for (; r + 2 <= rows; r += 2) {
        const int8_t *w0 = w + r * k_len;
        const int8_t *w1 = w0 + k_len;
        const int8_t *xp = x;
        int32_t a0 = eff_bias[r];
        int32_t a1 = eff_bias[r + 1];
        int32_t n, k;
        for (n = quads; n > 0; --n) {
            const int32_t xv = kp_read_s8x4_ia(&xp);
            const int32_t xe = kp_sxtb16(xv);
            const int32_t xo = kp_sxtb16_ror8(xv);
            int32_t wv = kp_read_s8x4_ia(&w0);
            a0 = kp_smlad(kp_sxtb16(wv), xe, a0);
            a0 = kp_smlad(kp_sxtb16_ror8(wv), xo, a0);
            wv = kp_read_s8x4_ia(&w1);
            a1 = kp_smlad(kp_sxtb16(wv), xe, a1);
            a1 = kp_smlad(kp_sxtb16_ror8(wv), xo, a1);
        }
        for (k = 0; k < rest; ++k) {
            const int32_t xk = xp[k];
            a0 += xk * w0[k];
            a1 += xk * w1[k];
        }
        out[r] = kp_rq_out(a0, kp_rq_of(&oc, r), &oc);
        out[r + 1] = kp_rq_out(a1, kp_rq_of(&oc, r + 1), &oc);
    }
    if (r < rows) {
        const int8_t *w0 = w + r * k_len;
        const int8_t *xp = x;
        int32_t a0 = eff_bias[r];
        int32_t n, k;
        for (n = quads; n > 0; --n) {
            const int32_t xv = kp_read_s8x4_ia(&xp);
            const int32_t wv = kp_read_s8x4_ia(&w0);
            a0 = kp_smlad(kp_sxtb16(wv), kp_sxtb16(xv), a0);
            a0 = kp_smlad(kp_sxtb16_ror8(wv), kp_sxtb16_ror8(xv), a0);
        }
        for (k = 0; k < rest; ++k) {
            a0 += (int32_t)xp[k] * w0[k];
        }
        out[r] = kp_rq_out(a0, kp_rq_of(&oc, r), &oc);
    }
}

/* Two rows by two columns, one word (four k) of each. SXTB16 splits a weight word into
 * its even and odd bytes, so each column's two words are regrouped the same way
 * ([k0 k2], [k1 k3]) with two PKH, shared by both rows. Column 1 and row 1 are read at
 * [column 0 + 2 k_len] and [row 0 + k_len] from one k_len register, which keeps the
 * fourteen live values in registers. */
#define KP_MM22_QUAD                                    \
    "ldr    %[p1], [%[c0], %[kl], lsl #1]\n\t"          \
    "ldr    %[p0], [%[c0]], #4\n\t"                     \
    "ldr    %[q1], [%[c0], %[kl], lsl #1]\n\t"          \
    "ldr    %[q0], [%[c0]], #4\n\t"                     \
    "ldr    %[t], [%[w0], %[kl]]\n\t"                   \
    "pkhbt  %[e0], %[p0], %[q0], lsl #16\n\t"           \
    "pkhtb  %[q0], %[q0], %[p0], asr #16\n\t"           \
    "pkhbt  %[p0], %[p1], %[q1], lsl #16\n\t"           \
    "pkhtb  %[q1], %[q1], %[p1], asr #16\n\t"           \
    "sxtb16 %[p1], %[t]\n\t"                            \
    "sxtb16 %[t], %[t], ror #8\n\t"                     \
    "smlad  %[a10], %[p1], %[e0], %[a10]\n\t"           \
    "smlad  %[a10], %[t], %[q0], %[a10]\n\t"            \
    "smlad  %[a11], %[p1], %[p0], %[a11]\n\t"           \
    "smlad  %[a11], %[t], %[q1], %[a11]\n\t"            \
    "ldr    %[t], [%[w0]], #4\n\t"                      \
    "sxtb16 %[p1], %[t]\n\t"                            \
    "sxtb16 %[t], %[t], ror #8\n\t"                     \
    "smlad  %[a00], %[p1], %[e0], %[a00]\n\t"           \
    "smlad  %[a00], %[t], %[q0], %[a00]\n\t"            \
    "smlad  %[a01], %[p1], %[p0], %[a01]\n\t"           \
    "smlad  %[a01], %[t], %[q1], %[a01]\n\t"

#define KP_MM22_OPERANDS                                                                 \
    : [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11), [c0] "+r"(c0), \
      [w0] "+r"(w0), [p0] "=&r"(p0), [q0] "=&r"(q0), [p1] "=&r"(p1), [q1] "=&r"(q1),     \
      [e0] "=&r"(e0), [t] "=&r"(t)

void kp_nn_mat_mult_s8_s16_2col(const int8_t *w, const int16_t *cols, int32_t k_len,
                                int32_t rows, const int32_t *eff_bias,
                                const kp_quant_params *quant, int32_t output_offset,
                                kp_activation act, int8_t *out0, int8_t *out1)
{
    const int32_t quads = k_len >> 2;
    const int32_t rest = k_len & 3;
    const kp_out_ctx oc = kp_out_ctx_of(quant, output_offset, act);
    const uint32_t lo4 = kp_splat8(act.min);
    const uint32_t hi4 = kp_splat8(act.max);
    int32_t r = 0;

    for (; r + 2 <= rows; r += 2) {
        const int8_t *w0 = w + r * k_len;
        const int16_t *c0 = cols;
        int32_t a00 = eff_bias[r];
        int32_t a01 = a00;
        int32_t a10 = eff_bias[r + 1];
        int32_t a11 = a10;
        int32_t p0, q0, p1, q1, e0, t, k;
        int32_t n = quads >> 1;
        if (n > 0) {
            __asm__ volatile("1:\n\t" KP_MM22_QUAD KP_MM22_QUAD
                             "subs   %[n], %[n], #1\n\t"
                             "bne    1b\n\t"
                             KP_MM22_OPERANDS, [n] "+r"(n)
                             : [kl] "r"(k_len)
                             : "cc", "memory");
        }
        if (quads & 1) {
            __asm__ volatile(KP_MM22_QUAD
                             KP_MM22_OPERANDS
                             : [kl] "r"(k_len)
                             : "memory");
        }
        for (k = 0; k < rest; ++k) {
            const int32_t x0 = c0[k];
            const int32_t x1 = c0[k_len + k];
            const int32_t v0 = w0[k];
            const int32_t v1 = w0[k_len + k];
            a00 += v0 * x0;
            a01 += v0 * x1;
            a10 += v1 * x0;
            a11 += v1 * x1;
        }
        /* All four requantized first, then clamped and stored two by two (rows r and
         * r + 1 of a column are adjacent). out1 may equal out0 (a lone last pixel): both
         * columns then hold the same values. */
        {
            const kp_rq q0 = kp_rq_of(&oc, r);
            const kp_rq q1 = kp_rq_of(&oc, r + 1);
            const int32_t v00 = kp_rq_apply(a00, q0);
            const int32_t v01 = kp_rq_apply(a01, q0);
            const int32_t v10 = kp_rq_apply(a10, q1);
            const int32_t v11 = kp_rq_apply(a11, q1);
            const int32_t off = oc.output_offset;
            const uint32_t p0 = kp_clamp_pack2(v00 + off, v10 + off, lo4, hi4);
            const uint32_t p1 = kp_clamp_pack2(v01 + off, v11 + off, lo4, hi4);
            memcpy(out0 + r, &p0, 2); /* little-endian: the low two bytes */
            memcpy(out1 + r, &p1, 2);
        }
    }
    if (r < rows) {
        const int8_t *w0 = w + r * k_len;
        const int16_t *c0 = cols;
        const int16_t *c1 = cols + k_len;
        int32_t a00 = eff_bias[r];
        int32_t a01 = a00;
        int32_t n, k;
        for (n = quads; n > 0; --n) {
            const int32_t p0 = kp_read_s16x2_ia(&c0);
            const int32_t q0 = kp_read_s16x2_ia(&c0);
            const int32_t p1 = kp_read_s16x2_ia(&c1);
            const int32_t q1 = kp_read_s16x2_ia(&c1);
            const int32_t wv = kp_read_s8x4_ia(&w0);
            const int32_t we = kp_sxtb16(wv);
            const int32_t wo = kp_sxtb16_ror8(wv);
            a00 = kp_smlad(we, kp_pack_lo_lo(p0, q0), a00);
            a00 = kp_smlad(wo, kp_pack_hi_hi(p0, q0), a00);
            a01 = kp_smlad(we, kp_pack_lo_lo(p1, q1), a01);
            a01 = kp_smlad(wo, kp_pack_hi_hi(p1, q1), a01);
        }
        for (k = 0; k < rest; ++k) {
            const int32_t v0 = w0[k];
            a00 += v0 * c0[k];
            a01 += v0 * c1[k];
        }
        {
            const kp_rq q0r = kp_rq_of(&oc, r);
            out0[r] = kp_rq_out(a00, q0r, &oc);
            out1[r] = kp_rq_out(a01, q0r, &oc);
        }
    }
}

#else
/* Keeps the translation unit non-empty (ISO C) when the portable versions are compiled. */
typedef int kp_nn_mat_s8_dsp_unused;
#endif /* KP_ARM_DSP */

/*
 * The dense product CONV_2D is built on (kp_nn_internal.h): one weight matrix times two
 * im2col columns, portable C99 and Cortex-M4 (Armv7E-M DSP), bit-exact with each other.
 *
 * The DSP path unpacks int8 words with SXTB16 into even and odd bytes as int16 pairs and
 * multiplies pairs with SMLAD, two MACs per instruction. Integer sums wrap identically in
 * any order, so the accumulators equal the portable loop's exactly.
 */
#include "internal/kp_nn_internal.h"

#if KP_ARM_DSP /* Cortex-M4 (Armv7E-M DSP) */

#include "internal/kp_acle.h"

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

#else /* portable C99 */

void kp_nn_mat_mult_s8_s16_2col(const int8_t *w, const int16_t *cols, int32_t k_len,
                                int32_t rows, const int32_t *eff_bias,
                                const kp_quant_params *quant, int32_t output_offset,
                                kp_activation act, int8_t *out0, int8_t *out1)
{
    const int16_t *col1 = cols + k_len;
    int32_t r, k;
    for (r = 0; r < rows; ++r) {
        const int8_t *row = w + r * k_len;
        int32_t acc0 = eff_bias[r];
        int32_t acc1 = acc0;
        for (k = 0; k < k_len; ++k) {
            const int32_t wk = row[k];
            acc0 += wk * cols[k];
            acc1 += wk * col1[k];
        }
        out0[r] = kp_nn_out(acc0, quant, r, output_offset, act);
        out1[r] = kp_nn_out(acc1, quant, r, output_offset, act);
    }
}

#endif /* KP_ARM_DSP */

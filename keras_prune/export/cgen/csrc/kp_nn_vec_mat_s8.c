/*
 * The dense vector-matrix product FULLY_CONNECTED is built on (kp_nn_internal.h), portable
 * C99 and Cortex-M4 (Armv7E-M DSP), bit-exact with each other.
 *
 * The DSP path unpacks int8 words with SXTB16 into even and odd bytes as int16 pairs and
 * multiplies pairs with SMLAD, two MACs per instruction. Integer sums wrap identically in
 * any order, so the accumulators equal the portable loop's exactly.
 */
#include "internal/kp_nn_internal.h"

#if KP_ARM_DSP /* Cortex-M4 (Armv7E-M DSP) */

#include "internal/kp_acle.h"

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

#else /* portable C99 */

void kp_nn_vec_mat_s8(const int8_t *x, const int8_t *w, int32_t k_len, int32_t rows,
                      const int32_t *eff_bias, const kp_quant_params *quant,
                      int32_t output_offset, kp_activation act, int8_t *out)
{
    int32_t r, k;
    for (r = 0; r < rows; ++r) {
        const int8_t *row = w + r * k_len;
        int32_t acc = eff_bias[r];
        for (k = 0; k < k_len; ++k) {
            acc += (int32_t)x[k] * (int32_t)row[k];
        }
        out[r] = kp_nn_out(acc, quant, r, output_offset, act);
    }
}

#endif /* KP_ARM_DSP */

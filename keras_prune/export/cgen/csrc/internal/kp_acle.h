/*
 * Internal to the kernels' DSP paths (their #if KP_ARM_DSP blocks): the few Armv7E-M SIMD
 * operations they use, over GCC's and Clang's <arm_acle.h>, and the requantization and
 * output packing they share. Included only when KP_ARM_DSP (kp_nn_support.h) is 1.
 *
 * Why a shim: <arm_acle.h> has no rotate (GCC 12 lacks __ror), no SMMULR, PKHBT or
 * PKHTB, and compilers do not fold a rotate by 8 into SXTB16's operand, which costs an
 * extra instruction per unpacked word in the hottest loops; those are written in asm.
 *
 * The DSP kernels read words at any byte address (through memcpy here, with LDR in their
 * asm loops): Armv7-M allows unaligned single loads unless software sets CCR.UNALIGN_TRP,
 * which the reset value does not. A firmware that traps unaligned accesses must build
 * with -DKP_NO_DSP.
 */
#ifndef KP_ACLE_H
#define KP_ACLE_H

#include <arm_acle.h>
#include <stdint.h>
#include <string.h>

#include "internal/kp_nn_support.h"

/* Word reads through memcpy: legal C for any alignment and any aliasing, and one LDR on
 * Armv7E-M, which allows unaligned single loads (never LDRD/LDM: the compiler does not
 * merge reads whose alignment it cannot prove). */
static inline int32_t kp_read_s8x4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline int32_t kp_read_s8x4_ia(const int8_t **p)
{
    int32_t v;
    memcpy(&v, *p, sizeof v);
    *p += 4;
    return v;
}

static inline int32_t kp_read_s16x2_ia(const int16_t **p)
{
    int32_t v;
    memcpy(&v, *p, sizeof v);
    *p += 2;
    return v;
}

/* Bytes 0 and 2 of x, sign-extended into the two halfwords. */
static inline int32_t kp_sxtb16(int32_t x)
{
    return __sxtb16(x);
}

/* Bytes 1 and 3 of x, sign-extended into the two halfwords: SXTB16 with its operand
 * rotated by 8, one instruction. */
static inline int32_t kp_sxtb16_ror8(int32_t x)
{
    int32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}

/* The same with each byte added to the matching halfword of `add`. */
static inline int32_t kp_sxtab16(int32_t add, int32_t x)
{
    return __sxtab16(add, x);
}

static inline int32_t kp_sxtab16_ror8(int32_t add, int32_t x)
{
    int32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(add), "r"(x));
    return r;
}

/* acc + a.lo * b.lo + a.hi * b.hi (16-bit halves). */
static inline int32_t kp_smlad(int32_t a, int32_t b, int32_t acc)
{
    return __smlad(a, b, acc);
}

/* acc + a.lo * b.lo, and acc + a.hi * b.hi. */
static inline int32_t kp_smlabb(int32_t a, int32_t b, int32_t acc)
{
    return __smlabb(a, b, acc);
}

static inline int32_t kp_smlatt(int32_t a, int32_t b, int32_t acc)
{
    return __smlatt(a, b, acc);
}

/* Halfword packing; compilers emit PKHBT/PKHTB for these patterns. */
static inline int32_t kp_pack_lo_lo(int32_t lo, int32_t hi) /* [lo.lo, hi.lo] */
{
    return (int32_t)(((uint32_t)lo & 0xFFFFU) | ((uint32_t)hi << 16));
}

static inline int32_t kp_pack_hi_hi(int32_t lo, int32_t hi) /* [lo.hi, hi.hi] */
{
    return (int32_t)(((uint32_t)hi & 0xFFFF0000U) | ((uint32_t)lo >> 16));
}

/* (a * b + 2^31) >> 32: the rounded high word of a signed product. */
static inline int32_t kp_smmulr(int32_t a, int32_t b)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}

/* One output channel's requantization, prepared once for all its outputs. */
typedef struct {
    int32_t multiplier;
    int32_t left;  /* shift > 0: a left shift of the accumulator */
    int32_t right; /* shift <= 0: a rounding right shift of the product */
    int32_t mask;  /* 2^right - 1 */
    int32_t shift;
} kp_rq;

static inline kp_rq kp_rq_make(int32_t multiplier, int32_t shift)
{
    kp_rq q;
    q.multiplier = multiplier;
    q.shift = shift;
    q.left = shift > 0 ? shift : 0;
    q.right = q.left - shift; /* -shift when shift <= 0, else 0; no branch */
    q.mask = (int32_t)((1U << q.right) - 1U);
    return q;
}

/* kp_requantize, bit for bit, in about a third of the instructions:
 * - gemmlowp's doubled high product of a and b (nudge +-2^30, then a division truncating
 *   toward zero) equals floor((a*b + 2^30) / 2^31) for every a*b but INT32_MIN^2, and that
 *   is floor((2a*b + 2^31) / 2^32), one SMMULR, whenever 2a fits in int32, as the
 *   accumulators of int8 layers do unless a large left shift pushes them out: those take
 *   kp_requantize (so does INT32_MIN^2, whose a cannot double);
 * - the rounding right shift adds 1 when the remainder exceeds the threshold, read from
 *   the sign of (threshold - remainder) instead of a compare and branch. */
static inline int32_t kp_rq_apply(int32_t acc, kp_rq q)
{
    const int32_t a = (int32_t)((uint32_t)acc << q.left);
    int32_t twice;
    if (__builtin_add_overflow(a, a, &twice)) {
        return kp_requantize(acc, q.multiplier, q.shift);
    }
    {
        const int32_t high = kp_smmulr(twice, q.multiplier);
        const int32_t threshold = (q.mask >> 1) + (int32_t)((uint32_t)high >> 31);
        const int32_t over = threshold - (high & q.mask);
        return (high >> q.right) - (over >> 31);
    }
}

/* min(max(v, lo), hi) as two compare-and-moves (KP_CLAMP's nested conditionals become
 * branches). */
static inline int32_t kp_clamp(int32_t v, int32_t lo, int32_t hi)
{
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    return v;
}

/* Per signed byte: the byte of x where a >= b, else the byte of y. SSUB8 sets one GE flag
 * per byte (its signed difference, exact), SEL reads them: one asm, so nothing runs
 * between them. */
static inline uint32_t kp_select_ge_s8x4(uint32_t a, uint32_t b, uint32_t x, uint32_t y)
{
    uint32_t r, t;
    __asm__("ssub8  %[t], %[a], %[b]\n\t"
            "sel    %[r], %[x], %[y]"
            : [r] "=r"(r), [t] "=&r"(t)
            : [a] "r"(a), [b] "r"(b), [x] "r"(x), [y] "r"(y)
            : "cc");
    return r;
}

/* A byte replicated into the four bytes of a word. */
static inline uint32_t kp_splat8(int32_t v)
{
    return ((uint32_t)v & 0xFFU) * 0x01010101U;
}

/* Four int32 outputs (offset already added) clamped to [lo, hi] (a subrange of int8)
 * and packed into one word, byte i from v_i, for one store: SSAT to int8, three BFI, then
 * a per-byte max and min with SSUB8 + SEL. SSAT before the clamp changes nothing, as
 * [lo, hi] lies inside [-128, 127]. lo4 and hi4 hold lo and hi in every byte
 * (kp_splat8). One asm: SEL reads the GE flags that the SSUB8 before it sets. */
static inline uint32_t kp_clamp_pack4(int32_t v0, int32_t v1, int32_t v2, int32_t v3,
                                      uint32_t lo4, uint32_t hi4)
{
    uint32_t p, t;
    __asm__("ssat   %[p], #8, %[v0]\n\t"
            "ssat   %[v1], #8, %[v1]\n\t"
            "ssat   %[v2], #8, %[v2]\n\t"
            "ssat   %[v3], #8, %[v3]\n\t"
            "bfi    %[p], %[v1], #8, #8\n\t"
            "bfi    %[p], %[v2], #16, #8\n\t"
            "bfi    %[p], %[v3], #24, #8\n\t"
            "ssub8  %[t], %[p], %[lo]\n\t"
            "sel    %[p], %[p], %[lo]\n\t"
            "ssub8  %[t], %[hi], %[p]\n\t"
            "sel    %[p], %[p], %[hi]\n\t"
            : [p] "=&r"(p), [t] "=&r"(t), [v1] "+r"(v1), [v2] "+r"(v2), [v3] "+r"(v3)
            : [v0] "r"(v0), [lo] "r"(lo4), [hi] "r"(hi4)
            : "cc");
    return p;
}

/* The same for two outputs, in the low two bytes. */
static inline uint32_t kp_clamp_pack2(int32_t v0, int32_t v1, uint32_t lo4, uint32_t hi4)
{
    uint32_t p, t;
    __asm__("ssat   %[p], #8, %[v0]\n\t"
            "ssat   %[v1], #8, %[v1]\n\t"
            "bfi    %[p], %[v1], #8, #8\n\t"
            "ssub8  %[t], %[p], %[lo]\n\t"
            "sel    %[p], %[p], %[lo]\n\t"
            "ssub8  %[t], %[hi], %[p]\n\t"
            "sel    %[p], %[p], %[hi]\n\t"
            : [p] "=&r"(p), [t] "=&r"(t), [v1] "+r"(v1)
            : [v0] "r"(v0), [lo] "r"(lo4), [hi] "r"(hi4)
            : "cc");
    return p;
}

/* (acc * 2^32 + a * b + 2^31) >> 32: SMMULR with an accumulator, one instruction. */
static inline int32_t kp_smmlar(int32_t a, int32_t b, int32_t acc)
{
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(a), "r"(b), "r"(acc));
    return r;
}

/* The short requantization (kp_row_rq) of one accumulator, offset included, before the
 * int8 saturation: SMMLAR adds half to the rounded high product h. With a positive
 * multiplier, h < 0 only where acc < 0, and where acc < 0 but h == 0 the -1 changes
 * nothing (2^(e-1) is no multiple of 2^e): the sign is read from acc. */
static inline int32_t kp_rq_short(int32_t acc, const kp_row_rq *r)
{
    const int32_t twice = (int32_t)((uint32_t)acc << 1);
    const int32_t v = kp_smmlar(twice, r->multiplier, r->half);
    return (v - (int32_t)((uint32_t)twice >> 31)) >> r->e;
}

#endif /* KP_ACLE_H */

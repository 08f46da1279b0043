/*
 * ADD of two same-shape int8 tensors: TFLM's reference int8 Add. Both inputs are scaled
 * to a common scale with 20 bits of headroom (left_shift), summed, then requantized.
 * Portable C99, and a Cortex-M4 (Armv7E-M DSP) path with the same results, bit for bit
 * (semantics in kp_nn.h).
 *
 * The DSP path:
 * Four elements per iteration: one word of each input, its bytes widened and offset with
 * SXTAB16 (even and odd bytes), each lane moved to the top of a register (the left shift
 * of 20, times the 2 of the rounded multiply), and three requantizations per element with
 * the cheap form below; SSAT + SEL clamp and pack the four outputs for one store. The last
 * size % 4 elements, and left shifts other than TFLM's 20, take the same arithmetic one
 * element at a time.
 *
 * Why the cheap requantization is exact here. With left_shift <= 20 an input term
 * (offset + x) << left_shift has |a| <= 255 * 2^20 < 2^28; after its multiplier (|m| <= 2^31)
 * and rounding shift it stays within |a|, so the sum of the two has |s| < 2^29, and so does
 * the output's product. For such values:
 * - gemmlowp's doubled, rounded high product of a and m is SMMULR(2a, m) (see kp_rq_apply
 *   in kp_acle.h; 2a fits in int32 and is never INT32_MIN);
 * - the rounding right shift by e (half away from zero) is
 *   (2x + 2^e - [x < 0]) >> (e + 1): for e >= 1 this floor has the numerator of
 *   (x + 2^(e-1) - [x < 0]) >> e doubled plus one, an odd number that cannot cross a
 *   multiple of 2^(e+1); for e = 0 it gives x. Shifts past 30 are taken as 30: |x| < 2^29
 *   rounds to 0 either way, and 2|x| + 2^30 still fits in int32.
 */
#include "internal/kp_nn_check.h"
#include "internal/kp_nn_support.h"

#if KP_ARM_DSP /* Cortex-M4 (Armv7E-M DSP) */

#include "internal/kp_acle.h"

/* TFLM's add scales the inputs by this left shift; the word loop has it built in. */
#define KP_ADD_WORD_LEFT_SHIFT 20

/* One requantization (multiplier, shift <= 0), prepared once per call. */
typedef struct {
    int32_t multiplier;
    int32_t half;  /* 2^e, e = min(-shift, 30) */
    int32_t count; /* e + 1 */
} kp_add_rq;

static inline kp_add_rq kp_add_rq_make(int32_t multiplier, int32_t shift)
{
    kp_add_rq q;
    const int32_t e = KP_MIN(-shift, 30);
    q.multiplier = multiplier;
    q.half = (int32_t)(1U << e);
    q.count = e + 1;
    return q;
}

/* kp_requantize(acc, multiplier, shift) for shift <= 0 and |acc| < 2^29, given 2 * acc. */
static inline int32_t kp_add_rq_apply(int32_t twice_acc, kp_add_rq q)
{
    const int32_t x = kp_smmulr(twice_acc, q.multiplier);
    return (x + x + q.half + (x >> 31)) >> q.count;
}

typedef struct {
    kp_add_rq in1, in2, out;
    int32_t offset1, offset2, output_offset;
    int32_t act_min, act_max;
} kp_add_plan;

/* One output from its two inputs already offset and shifted to 2 * (x + offset) << left. */
static inline int32_t kp_add_one(const kp_add_plan *p, int32_t a1, int32_t a2)
{
    const int32_t sum = kp_add_rq_apply(a1, p->in1) + kp_add_rq_apply(a2, p->in2);
    return kp_add_rq_apply(sum + sum, p->out) + p->output_offset;
}

kp_status kp_elementwise_add_s8(const kp_add_params *params, const int8_t *input1,
                                const int8_t *input2, int8_t *output, int32_t size)
{
    kp_add_plan p;
    int32_t i = 0;
    int32_t twice_left;
    if (!kp_add_args_ok(params, input1, input2, output, size)) {
        return KP_ERR_ARG;
    }
    p.in1 = kp_add_rq_make(params->input1_multiplier, params->input1_shift);
    p.in2 = kp_add_rq_make(params->input2_multiplier, params->input2_shift);
    p.out = kp_add_rq_make(params->output_multiplier, params->output_shift);
    p.offset1 = params->input1_offset;
    p.offset2 = params->input2_offset;
    p.output_offset = params->output_offset;
    p.act_min = params->activation.min;
    p.act_max = params->activation.max;
    twice_left = (int32_t)(1U << (params->left_shift + 1));

    if (params->left_shift == KP_ADD_WORD_LEFT_SHIFT) {
        /* Both offsets in each halfword (SXTAB16 adds them to bytes 0/2 and 1/3). */
        const int32_t off1 = (int32_t)(((uint32_t)p.offset1 & 0xFFFFU) * 0x10001U);
        const int32_t off2 = (int32_t)(((uint32_t)p.offset2 & 0xFFFFU) * 0x10001U);
        const uint32_t lo4 = kp_splat8(p.act_min);
        const uint32_t hi4 = kp_splat8(p.act_max);
        const int8_t *x1 = input1;
        const int8_t *x2 = input2;
        int8_t *y = output;
        /* A halfword lane h (|h| <= 255) as 2 * h << 20: the low lane by one shift that
         * drops the high one, the high lane by an arithmetic shift down first. */
#define KP_LANE_LO(w) ((int32_t)((uint32_t)(w) << (KP_ADD_WORD_LEFT_SHIFT + 1)))
#define KP_LANE_HI(w) ((int32_t)((uint32_t)((w) >> 16) << (KP_ADD_WORD_LEFT_SHIFT + 1)))
        for (; i + 4 <= size; i += 4) {
            const int32_t w1 = kp_read_s8x4_ia(&x1);
            const int32_t w2 = kp_read_s8x4_ia(&x2);
            const int32_t e1 = kp_sxtab16(off1, w1); /* elements 0 and 2 */
            const int32_t o1 = kp_sxtab16_ror8(off1, w1); /* elements 1 and 3 */
            const int32_t e2 = kp_sxtab16(off2, w2);
            const int32_t o2 = kp_sxtab16_ror8(off2, w2);
            const int32_t v0 = kp_add_one(&p, KP_LANE_LO(e1), KP_LANE_LO(e2));
            const int32_t v1 = kp_add_one(&p, KP_LANE_LO(o1), KP_LANE_LO(o2));
            const int32_t v2 = kp_add_one(&p, KP_LANE_HI(e1), KP_LANE_HI(e2));
            const int32_t v3 = kp_add_one(&p, KP_LANE_HI(o1), KP_LANE_HI(o2));
            const uint32_t packed = kp_clamp_pack4(v0, v1, v2, v3, lo4, hi4);
            memcpy(y, &packed, sizeof packed);
            y += 4;
        }
#undef KP_LANE_LO
#undef KP_LANE_HI
    }
    for (; i < size; ++i) {
        const int32_t v = kp_add_one(&p, (p.offset1 + input1[i]) * twice_left,
                                     (p.offset2 + input2[i]) * twice_left);
        output[i] = (int8_t)kp_clamp(v, p.act_min, p.act_max);
    }
    return KP_OK;
}

#else /* portable C99 */

kp_status kp_elementwise_add_s8(const kp_add_params *params, const int8_t *input1,
                                const int8_t *input2, int8_t *output, int32_t size)
{
    int32_t i;
    if (!kp_add_args_ok(params, input1, input2, output, size)) {
        return KP_ERR_ARG;
    }
    for (i = 0; i < size; ++i) {
        const int32_t a = (params->input1_offset + input1[i]) * (1 << params->left_shift);
        const int32_t b = (params->input2_offset + input2[i]) * (1 << params->left_shift);
        const int32_t sum =
            kp_requantize(a, params->input1_multiplier, params->input1_shift) +
            kp_requantize(b, params->input2_multiplier, params->input2_shift);
        int32_t v = kp_requantize(sum, params->output_multiplier, params->output_shift) +
                    params->output_offset;
        output[i] = (int8_t)KP_CLAMP(v, params->activation.min, params->activation.max);
    }
    return KP_OK;
}

#endif /* KP_ARM_DSP */

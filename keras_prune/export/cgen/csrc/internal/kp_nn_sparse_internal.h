/*
 * Internal to the sparse kernels: the argument checks the FULLY_CONNECTED and CONV_2D
 * wrappers apply, and the one sparse matrix-vector product both are built on. The product
 * (kp_nn_sparse_vec_s8.c) has a portable C99 path and a Cortex-M4 DSP path; KP_ARM_DSP
 * compiles exactly one of them.
 */
#ifndef KP_NN_SPARSE_INTERNAL_H
#define KP_NN_SPARSE_INTERNAL_H

#include "internal/kp_nn_check.h"
#include "kp_nn_sparse.h"

static inline int kp_sparse_groups_ok(const kp_sparse_groups *w, int32_t rows, int32_t k)
{
    return w != 0 && w->rows == rows && w->k == k && w->counts != 0 && w->n_groups >= 0 &&
           (w->n_groups == 0 || (w->words != 0 && w->index != 0)) &&
           (w->index_kind == KP_SPARSE_RUNS8 || w->index_kind == KP_SPARSE_DELTA8 ||
            w->index_kind == KP_SPARSE_ABS16);
}

static inline int kp_sparse_fc_args_ok(const kp_fc_params *params,
                                       const kp_quant_params *quant, int32_t batches,
                                       int32_t in_len, int32_t out_len, const int8_t *input,
                                       const kp_sparse_groups *w, const int32_t *eff_bias,
                                       const int8_t *output)
{
    return params != 0 && input != 0 && eff_bias != 0 && output != 0 && batches >= 1 &&
           in_len >= 1 && out_len >= 1 && kp_sparse_groups_ok(w, out_len, in_len) &&
           kp_activation_ok(params->activation) &&
           kp_input_offset_ok(params->input_offset) &&
           kp_output_offset_ok(params->output_offset) && kp_quant_ok(quant, out_len);
}

/* out[r] = clamp(requant(eff_bias[r] + sum over row r's kept groups of x . group) +
 * output_offset) for every row of w. x holds w->k int8 values; when padded is non-zero
 * it is readable (and zero) up to the next multiple of 4, which lets the DSP version read
 * a short last group as a whole word. */
void kp_nn_sparse_vec_s8(const int8_t *x, int32_t padded, const kp_sparse_groups *w,
                         const int32_t *eff_bias, const kp_quant_params *quant,
                         int32_t output_offset, kp_activation act, int8_t *out);

/* The sparse convolutions' walk of an index stream, row by row (every row restarts at
 * g = 0, as kp_nn_sparse.h defines the streams). */
/* Walks one row's kept groups in any index stream: kp_next_group gives the next kept
 * group's index g (in groups of 4 from the row's start). */
typedef struct {
    const uint8_t *p8;
    const uint16_t *p16;
    int32_t kind;
    int32_t g;   /* the next group that may be kept */
    int32_t run; /* RUNS8: kept groups left in the current run */
} kp_group_cursor;

/* Starts the cursor on a stream (each row then starts with kp_cursor_row). */
static inline void kp_cursor_start(kp_group_cursor *c, const kp_sparse_groups *w)
{
    c->p8 = (const uint8_t *)w->index;
    c->p16 = (const uint16_t *)w->index;
    c->kind = w->index_kind;
    c->g = 0;
    c->run = 0;
}

static inline void kp_cursor_row(kp_group_cursor *c)
{
    c->g = 0;
    c->run = 0;
}

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

#endif /* KP_NN_SPARSE_INTERNAL_H */

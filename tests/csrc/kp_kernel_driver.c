/*
 * Test driver for the kernels: reads test cases on stdin, runs each through its kernel and
 * writes the status and output on stdout. tests/test_c_kernels.py builds it once with
 * ASan + UBSan and fuzzes every kernel through it against keras_prune.export.int8_ops.
 *
 * Every array is allocated at exactly the size the test sent, so a kernel that reads or
 * writes one element too far trips AddressSanitizer.
 *
 * Format, all integers int32 little-endian (the host's order):
 *   case   := op n_params param[n_params] n_arrays array[n_arrays] out_len
 *   array  := elem_size(1 or 4) count bytes[elem_size * count]
 * The params of an op are its kp_*_params struct fields in declaration order (nested
 * structs flattened), then the per-op extras listed at each case below. Reply per case:
 *   status(int32) out_len bytes of int8 output
 * op 0 runs the null-pointer checks and replies with the number of failures as status.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_nn.h"

enum { OP_CHECKS, OP_CONV, OP_DW_CONV, OP_FC, OP_MAX_POOL, OP_AVG_POOL, OP_MEAN, OP_ADD,
       OP_SOFTMAX, OP_PAD };

#define MAX_PARAMS 64
#define MAX_ARRAYS 8

typedef struct {
    int32_t op;
    int32_t n_params;
    int32_t p[MAX_PARAMS];
    int32_t n_arrays;
    void *array[MAX_ARRAYS];
    int32_t count[MAX_ARRAYS];
    int32_t out_len;
} test_case;

static void die(const char *why)
{
    fprintf(stderr, "kp_kernel_driver: %s\n", why);
    exit(2);
}

/* 0 at a clean end of input, 1 when a value was read. */
static int read_i32(int32_t *v, int eof_ok)
{
    size_t got = fread(v, sizeof *v, 1, stdin);
    if (got != 1) {
        if (eof_ok && feof(stdin)) {
            return 0;
        }
        die("truncated input");
    }
    return 1;
}

/* A heap block of exactly `bytes` (malloc(0) may be NULL: keep one byte then). */
static void *alloc_exact(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (p == NULL) {
        die("out of memory");
    }
    return p;
}

static int read_case(test_case *t)
{
    int32_t i;
    memset(t, 0, sizeof *t);
    if (!read_i32(&t->op, 1)) {
        return 0;
    }
    read_i32(&t->n_params, 0);
    if (t->n_params < 0 || t->n_params > MAX_PARAMS) {
        die("bad n_params");
    }
    for (i = 0; i < t->n_params; ++i) {
        read_i32(&t->p[i], 0);
    }
    read_i32(&t->n_arrays, 0);
    if (t->n_arrays < 0 || t->n_arrays > MAX_ARRAYS) {
        die("bad n_arrays");
    }
    for (i = 0; i < t->n_arrays; ++i) {
        int32_t size;
        read_i32(&size, 0);
        read_i32(&t->count[i], 0);
        if ((size != 1 && size != 4) || t->count[i] < 0) {
            die("bad array header");
        }
        t->array[i] = alloc_exact((size_t)size * (size_t)t->count[i]);
        if (t->count[i] &&
            fread(t->array[i], (size_t)size, (size_t)t->count[i], stdin) != (size_t)t->count[i]) {
            die("truncated array");
        }
    }
    read_i32(&t->out_len, 0);
    if (t->out_len < 0) {
        die("bad out_len");
    }
    return 1;
}

static void free_case(test_case *t)
{
    int32_t i;
    for (i = 0; i < t->n_arrays; ++i) {
        free(t->array[i]);
    }
}

static void need(const test_case *t, int32_t n_params, int32_t n_arrays)
{
    if (t->n_params != n_params || t->n_arrays != n_arrays) {
        die("wrong number of params or arrays for the op");
    }
}

static kp_dims dims_at(const int32_t *p)
{
    kp_dims d;
    d.n = p[0];
    d.h = p[1];
    d.w = p[2];
    d.c = p[3];
    return d;
}

static kp_tile tile_at(const int32_t *p)
{
    kp_tile t;
    t.h = p[0];
    t.w = p[1];
    return t;
}

static kp_activation act_at(const int32_t *p)
{
    kp_activation a;
    a.min = p[0];
    a.max = p[1];
    return a;
}

/* conv extras: per_channel, input dims, filter dims, output dims.
 * arrays: input, filter, eff_bias, multiplier, shift. */
static kp_status run_conv(const test_case *t, int8_t *out)
{
    kp_conv_params c;
    kp_quant_params q;
    kp_dims in, f, o;
    int16_t *scratch;
    kp_status s;
    need(t, 11 + 12, 5);
    c.input_offset = t->p[0];
    c.output_offset = t->p[1];
    c.stride = tile_at(t->p + 2);
    c.padding = tile_at(t->p + 4);
    c.dilation = tile_at(t->p + 6);
    c.activation = act_at(t->p + 8);
    q.per_channel = t->p[10];
    in = dims_at(t->p + 11);
    f = dims_at(t->p + 15);
    o = dims_at(t->p + 19);
    q.multiplier = (const int32_t *)t->array[3];
    q.shift = (const int32_t *)t->array[4];
    scratch = (int16_t *)alloc_exact((size_t)KP_CONV_SCRATCH_BYTES(f.h, f.w, f.c));
    s = kp_convolve_s8(&c, &q, &in, (const int8_t *)t->array[0], &f,
                       (const int8_t *)t->array[1], (const int32_t *)t->array[2], &o, out,
                       scratch);
    free(scratch);
    return s;
}

/* depthwise extras and arrays: as conv. */
static kp_status run_dw_conv(const test_case *t, int8_t *out)
{
    kp_dw_conv_params c;
    kp_quant_params q;
    kp_dims in, f, o;
    need(t, 12 + 12, 5);
    c.input_offset = t->p[0];
    c.output_offset = t->p[1];
    c.ch_mult = t->p[2];
    c.stride = tile_at(t->p + 3);
    c.padding = tile_at(t->p + 5);
    c.dilation = tile_at(t->p + 7);
    c.activation = act_at(t->p + 9);
    q.per_channel = t->p[11];
    in = dims_at(t->p + 12);
    f = dims_at(t->p + 16);
    o = dims_at(t->p + 20);
    q.multiplier = (const int32_t *)t->array[3];
    q.shift = (const int32_t *)t->array[4];
    return kp_depthwise_conv_s8(&c, &q, &in, (const int8_t *)t->array[0], &f,
                                (const int8_t *)t->array[1], (const int32_t *)t->array[2], &o,
                                out);
}

/* fc extras: per_channel, batches, in_len, out_len. arrays: as conv. */
static kp_status run_fc(const test_case *t, int8_t *out)
{
    kp_fc_params c;
    kp_quant_params q;
    need(t, 4 + 4, 5);
    c.input_offset = t->p[0];
    c.output_offset = t->p[1];
    c.activation = act_at(t->p + 2);
    q.per_channel = t->p[4];
    q.multiplier = (const int32_t *)t->array[3];
    q.shift = (const int32_t *)t->array[4];
    return kp_fully_connected_s8(&c, &q, t->p[5], t->p[6], t->p[7],
                                 (const int8_t *)t->array[0], (const int8_t *)t->array[1],
                                 (const int32_t *)t->array[2], out);
}

/* pool extras: filter (h, w), input dims, output dims. arrays: input. */
static kp_status run_pool(const test_case *t, int8_t *out)
{
    kp_pool_params c;
    kp_tile f;
    kp_dims in, o;
    need(t, 6 + 10, 1);
    c.stride = tile_at(t->p);
    c.padding = tile_at(t->p + 2);
    c.activation = act_at(t->p + 4);
    f = tile_at(t->p + 6);
    in = dims_at(t->p + 8);
    o = dims_at(t->p + 12);
    return (t->op == OP_MAX_POOL ? kp_max_pool_s8 : kp_avg_pool_s8)(
        &c, &in, (const int8_t *)t->array[0], &f, &o, out);
}

/* mean extras: input dims. arrays: input. */
static kp_status run_mean(const test_case *t, int8_t *out)
{
    kp_mean_params c;
    kp_dims in;
    need(t, 4 + 4, 1);
    c.input_offset = t->p[0];
    c.output_offset = t->p[1];
    c.multiplier = t->p[2];
    c.shift = t->p[3];
    in = dims_at(t->p + 4);
    return kp_mean_s8(&c, &in, (const int8_t *)t->array[0], out);
}

/* add extras: size. arrays: input1, input2. */
static kp_status run_add(const test_case *t, int8_t *out)
{
    kp_add_params c;
    need(t, 12 + 1, 2);
    c.input1_offset = t->p[0];
    c.input1_multiplier = t->p[1];
    c.input1_shift = t->p[2];
    c.input2_offset = t->p[3];
    c.input2_multiplier = t->p[4];
    c.input2_shift = t->p[5];
    c.left_shift = t->p[6];
    c.output_offset = t->p[7];
    c.output_multiplier = t->p[8];
    c.output_shift = t->p[9];
    c.activation = act_at(t->p + 10);
    return kp_elementwise_add_s8(&c, (const int8_t *)t->array[0], (const int8_t *)t->array[1],
                                 out, t->p[12]);
}

/* softmax extras: rows, row_size. arrays: input. */
static kp_status run_softmax(const test_case *t, int8_t *out)
{
    kp_softmax_params c;
    need(t, 3 + 2, 1);
    c.input_multiplier = t->p[0];
    c.input_left_shift = t->p[1];
    c.diff_min = t->p[2];
    return kp_softmax_s8(&c, (const int8_t *)t->array[0], t->p[3], t->p[4], out);
}

/* pad extras: input dims, output dims. arrays: input. */
static kp_status run_pad(const test_case *t, int8_t *out)
{
    kp_pad_params c;
    kp_dims in, o;
    int i;
    need(t, 9 + 8, 1);
    for (i = 0; i < 4; ++i) {
        c.before[i] = t->p[i];
        c.after[i] = t->p[4 + i];
    }
    c.pad_value = (int8_t)t->p[8];
    in = dims_at(t->p + 9);
    o = dims_at(t->p + 13);
    return kp_pad_s8(&c, &in, (const int8_t *)t->array[0], &o, out);
}

/* Every kernel given null pointers (with otherwise valid arguments) must refuse them. */
static int32_t null_checks(void)
{
    static const int8_t x8[64] = {0};
    static const int32_t x32[16] = {0};
    static int16_t scratch[64];
    static int8_t out[64];
    const kp_dims d = {1, 2, 2, 2}, f1 = {2, 1, 1, 2}, fdw = {1, 1, 1, 2};
    const kp_tile one = {1, 1}, zero = {0, 0};
    const kp_conv_params conv = {0, 0, {1, 1}, {0, 0}, {1, 1}, {-128, 127}};
    const kp_dw_conv_params dw = {0, 0, 1, {1, 1}, {0, 0}, {1, 1}, {-128, 127}};
    const kp_fc_params fc = {0, 0, {-128, 127}};
    const kp_pool_params pool = {{1, 1}, {0, 0}, {-128, 127}};
    const kp_mean_params mean = {0, 0, 1 << 30, 0};
    const kp_add_params add = {0, 1 << 30, -1, 0, 1 << 30, -1, 20, 0, 1 << 30, -20, {-128, 127}};
    const kp_softmax_params sm = {1 << 30, 20, -100};
    const kp_pad_params pad = {{0, 0, 0, 0}, {0, 0, 0, 0}, 0};
    const kp_quant_params q = {x32, x32, 0}, q_null = {0, x32, 0};
    int32_t failures = 0;

#define EXPECT_ARG(call)               \
    do {                               \
        if ((call) != KP_ERR_ARG) {    \
            fprintf(stderr, "accepted: %s\n", #call); \
            ++failures;                \
        }                              \
    } while (0)
#define EXPECT_OK(call)                \
    do {                               \
        if ((call) != KP_OK) {         \
            fprintf(stderr, "refused: %s\n", #call); \
            ++failures;                \
        }                              \
    } while (0)

    EXPECT_OK(kp_convolve_s8(&conv, &q, &d, x8, &f1, x8, x32, &d, out, scratch));
    EXPECT_ARG(kp_convolve_s8(0, &q, &d, x8, &f1, x8, x32, &d, out, scratch));
    EXPECT_ARG(kp_convolve_s8(&conv, 0, &d, x8, &f1, x8, x32, &d, out, scratch));
    EXPECT_ARG(kp_convolve_s8(&conv, &q_null, &d, x8, &f1, x8, x32, &d, out, scratch));
    EXPECT_ARG(kp_convolve_s8(&conv, &q, 0, x8, &f1, x8, x32, &d, out, scratch));
    EXPECT_ARG(kp_convolve_s8(&conv, &q, &d, 0, &f1, x8, x32, &d, out, scratch));
    EXPECT_ARG(kp_convolve_s8(&conv, &q, &d, x8, 0, x8, x32, &d, out, scratch));
    EXPECT_ARG(kp_convolve_s8(&conv, &q, &d, x8, &f1, 0, x32, &d, out, scratch));
    EXPECT_ARG(kp_convolve_s8(&conv, &q, &d, x8, &f1, x8, 0, &d, out, scratch));
    EXPECT_ARG(kp_convolve_s8(&conv, &q, &d, x8, &f1, x8, x32, 0, out, scratch));
    EXPECT_ARG(kp_convolve_s8(&conv, &q, &d, x8, &f1, x8, x32, &d, 0, scratch));
    EXPECT_ARG(kp_convolve_s8(&conv, &q, &d, x8, &f1, x8, x32, &d, out, 0));

    EXPECT_OK(kp_depthwise_conv_s8(&dw, &q, &d, x8, &fdw, x8, x32, &d, out));
    EXPECT_ARG(kp_depthwise_conv_s8(0, &q, &d, x8, &fdw, x8, x32, &d, out));
    EXPECT_ARG(kp_depthwise_conv_s8(&dw, 0, &d, x8, &fdw, x8, x32, &d, out));
    EXPECT_ARG(kp_depthwise_conv_s8(&dw, &q_null, &d, x8, &fdw, x8, x32, &d, out));
    EXPECT_ARG(kp_depthwise_conv_s8(&dw, &q, 0, x8, &fdw, x8, x32, &d, out));
    EXPECT_ARG(kp_depthwise_conv_s8(&dw, &q, &d, 0, &fdw, x8, x32, &d, out));
    EXPECT_ARG(kp_depthwise_conv_s8(&dw, &q, &d, x8, 0, x8, x32, &d, out));
    EXPECT_ARG(kp_depthwise_conv_s8(&dw, &q, &d, x8, &fdw, 0, x32, &d, out));
    EXPECT_ARG(kp_depthwise_conv_s8(&dw, &q, &d, x8, &fdw, x8, 0, &d, out));
    EXPECT_ARG(kp_depthwise_conv_s8(&dw, &q, &d, x8, &fdw, x8, x32, 0, out));
    EXPECT_ARG(kp_depthwise_conv_s8(&dw, &q, &d, x8, &fdw, x8, x32, &d, 0));

    EXPECT_OK(kp_fully_connected_s8(&fc, &q, 2, 4, 3, x8, x8, x32, out));
    EXPECT_ARG(kp_fully_connected_s8(0, &q, 2, 4, 3, x8, x8, x32, out));
    EXPECT_ARG(kp_fully_connected_s8(&fc, 0, 2, 4, 3, x8, x8, x32, out));
    EXPECT_ARG(kp_fully_connected_s8(&fc, &q_null, 2, 4, 3, x8, x8, x32, out));
    EXPECT_ARG(kp_fully_connected_s8(&fc, &q, 2, 4, 3, 0, x8, x32, out));
    EXPECT_ARG(kp_fully_connected_s8(&fc, &q, 2, 4, 3, x8, 0, x32, out));
    EXPECT_ARG(kp_fully_connected_s8(&fc, &q, 2, 4, 3, x8, x8, 0, out));
    EXPECT_ARG(kp_fully_connected_s8(&fc, &q, 2, 4, 3, x8, x8, x32, 0));

    EXPECT_OK(kp_max_pool_s8(&pool, &d, x8, &one, &d, out));
    EXPECT_OK(kp_avg_pool_s8(&pool, &d, x8, &one, &d, out));
    EXPECT_ARG(kp_max_pool_s8(0, &d, x8, &one, &d, out));
    EXPECT_ARG(kp_max_pool_s8(&pool, 0, x8, &one, &d, out));
    EXPECT_ARG(kp_max_pool_s8(&pool, &d, 0, &one, &d, out));
    EXPECT_ARG(kp_max_pool_s8(&pool, &d, x8, 0, &d, out));
    EXPECT_ARG(kp_max_pool_s8(&pool, &d, x8, &one, 0, out));
    EXPECT_ARG(kp_max_pool_s8(&pool, &d, x8, &one, &d, 0));
    EXPECT_ARG(kp_max_pool_s8(&pool, &d, x8, &zero, &d, out));
    EXPECT_ARG(kp_avg_pool_s8(0, &d, x8, &one, &d, out));
    EXPECT_ARG(kp_avg_pool_s8(&pool, 0, x8, &one, &d, out));
    EXPECT_ARG(kp_avg_pool_s8(&pool, &d, 0, &one, &d, out));
    EXPECT_ARG(kp_avg_pool_s8(&pool, &d, x8, 0, &d, out));
    EXPECT_ARG(kp_avg_pool_s8(&pool, &d, x8, &one, 0, out));
    EXPECT_ARG(kp_avg_pool_s8(&pool, &d, x8, &one, &d, 0));
    EXPECT_ARG(kp_avg_pool_s8(&pool, &d, x8, &zero, &d, out));

    EXPECT_OK(kp_mean_s8(&mean, &d, x8, out));
    EXPECT_ARG(kp_mean_s8(0, &d, x8, out));
    EXPECT_ARG(kp_mean_s8(&mean, 0, x8, out));
    EXPECT_ARG(kp_mean_s8(&mean, &d, 0, out));
    EXPECT_ARG(kp_mean_s8(&mean, &d, x8, 0));

    EXPECT_OK(kp_elementwise_add_s8(&add, x8, x8, out, 8));
    EXPECT_ARG(kp_elementwise_add_s8(0, x8, x8, out, 8));
    EXPECT_ARG(kp_elementwise_add_s8(&add, 0, x8, out, 8));
    EXPECT_ARG(kp_elementwise_add_s8(&add, x8, 0, out, 8));
    EXPECT_ARG(kp_elementwise_add_s8(&add, x8, x8, 0, 8));
    EXPECT_ARG(kp_elementwise_add_s8(&add, x8, x8, out, 0));

    EXPECT_OK(kp_softmax_s8(&sm, x8, 2, 4, out));
    EXPECT_ARG(kp_softmax_s8(0, x8, 2, 4, out));
    EXPECT_ARG(kp_softmax_s8(&sm, 0, 2, 4, out));
    EXPECT_ARG(kp_softmax_s8(&sm, x8, 2, 4, 0));
    EXPECT_ARG(kp_softmax_s8(&sm, x8, 0, 4, out));
    EXPECT_ARG(kp_softmax_s8(&sm, x8, 2, 0, out));

    EXPECT_OK(kp_pad_s8(&pad, &d, x8, &d, out));
    EXPECT_ARG(kp_pad_s8(0, &d, x8, &d, out));
    EXPECT_ARG(kp_pad_s8(&pad, 0, x8, &d, out));
    EXPECT_ARG(kp_pad_s8(&pad, &d, 0, &d, out));
    EXPECT_ARG(kp_pad_s8(&pad, &d, x8, 0, out));
    EXPECT_ARG(kp_pad_s8(&pad, &d, x8, &d, 0));
#undef EXPECT_ARG
#undef EXPECT_OK
    return failures;
}

int main(void)
{
    test_case t;
    while (read_case(&t)) {
        int8_t *out = (int8_t *)alloc_exact((size_t)t.out_len);
        int32_t status;
        int32_t i;
        /* A pattern, not zeros, so an output the kernel forgot to write shows up. */
        for (i = 0; i < t.out_len; ++i) {
            out[i] = (int8_t)((i * 37 + 11) & 0x7f);
        }
        switch (t.op) {
        case OP_CHECKS:
            status = null_checks();
            break;
        case OP_CONV:
            status = run_conv(&t, out);
            break;
        case OP_DW_CONV:
            status = run_dw_conv(&t, out);
            break;
        case OP_FC:
            status = run_fc(&t, out);
            break;
        case OP_MAX_POOL:
        case OP_AVG_POOL:
            status = run_pool(&t, out);
            break;
        case OP_MEAN:
            status = run_mean(&t, out);
            break;
        case OP_ADD:
            status = run_add(&t, out);
            break;
        case OP_SOFTMAX:
            status = run_softmax(&t, out);
            break;
        case OP_PAD:
            status = run_pad(&t, out);
            break;
        default:
            die("unknown op");
            return 2;
        }
        if (fwrite(&status, sizeof status, 1, stdout) != 1 ||
            fwrite(out, 1, (size_t)t.out_len, stdout) != (size_t)t.out_len) {
            die("write failed");
        }
        /* The test talks to one driver process case by case over pipes. */
        fflush(stdout);
        free(out);
        free_case(&t);
    }
    return 0;
}

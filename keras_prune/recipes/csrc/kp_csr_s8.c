/* A plain scalar CSR baseline for the Cortex-M4 variants table and benchmarks/m4_sparse_fc.py:
 * what an unstructured sparse model runs on without SIMD groups. Not part of the kernel
 * library that exports ship. */
#include "kp_nn.h"
#include "internal/kp_nn_support.h"

/* Plain CSR: row r's non-zero weights are vals[row_ptr[r] .. row_ptr[r + 1]), at input
 * positions cols[...]. eff_bias as in kp_nn.h. */
static void csr_rows(const int8_t *x, const int8_t *vals, const uint16_t *cols,
                     const uint32_t *row_ptr, int32_t rows, const int32_t *eff_bias,
                     const kp_quant_params *quant, int32_t output_offset, int32_t lo,
                     int32_t hi, int8_t *out)
{
    int32_t r;
    uint32_t j;
    for (r = 0; r < rows; ++r) {
        int32_t acc = eff_bias[r];
        const int32_t i = quant->per_channel ? r : 0;
        int32_t v;
        for (j = row_ptr[r]; j < row_ptr[r + 1]; ++j) {
            acc += (int32_t)x[cols[j]] * (int32_t)vals[j];
        }
        v = kp_requantize(acc, quant->multiplier[i], quant->shift[i]) + output_offset;
        out[r] = (int8_t)KP_CLAMP(v, lo, hi);
    }
}

void csr_fc_s8(const int8_t *x, const int8_t *vals, const uint16_t *cols,
               const uint32_t *row_ptr, int32_t rows, const int32_t *eff_bias,
               const kp_quant_params *quant, int32_t output_offset, int32_t lo, int32_t hi,
               int8_t *out)
{
    csr_rows(x, vals, cols, row_ptr, rows, eff_bias, quant, output_offset, lo, hi, out);
}

/* dims: h, w, c, kh, kw, pad_h, pad_w, out_h, out_w (stride and dilation 1); each
 * window is gathered into col (kh * kw * c bytes, padding as the input zero point). */
void csr_conv_s8(const int8_t *in, const int32_t *dims, int32_t input_offset,
                 const int8_t *vals, const uint16_t *cols, const uint32_t *row_ptr,
                 int32_t rows, const int32_t *eff_bias, const kp_quant_params *quant,
                 int32_t output_offset, int32_t lo, int32_t hi, int8_t *col, int8_t *out)
{
    const int32_t h = dims[0], w = dims[1], c = dims[2], kh = dims[3], kw = dims[4];
    int32_t oy, ox, ky, kx, ch;
    for (oy = 0; oy < dims[7]; ++oy) {
        for (ox = 0; ox < dims[8]; ++ox) {
            int8_t *p = col;
            for (ky = 0; ky < kh; ++ky) {
                const int32_t iy = oy - dims[5] + ky;
                for (kx = 0; kx < kw; ++kx) {
                    const int32_t ix = ox - dims[6] + kx;
                    const int inside = iy >= 0 && iy < h && ix >= 0 && ix < w;
                    for (ch = 0; ch < c; ++ch) {
                        *p++ = inside ? in[(iy * w + ix) * c + ch] : (int8_t)(-input_offset);
                    }
                }
            }
            csr_rows(col, vals, cols, row_ptr, rows, eff_bias, quant, output_offset, lo,
                     hi, out);
            out += rows;
        }
    }
}

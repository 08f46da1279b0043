/*
 * Test driver for kp_sparse_convolve_s8: reads cases on stdin, writes the status and
 * output of each on stdout. tests/test_sparse_conv.py builds it with ASan + UBSan and
 * fuzzes the kernel through it against keras_prune.export.int8.reference.conv2d.
 *
 * Every array is allocated at exactly the size sent, the scratch at exactly
 * KP_SPARSE_CONV_SCRATCH_BYTES, so a read or write past any of them trips
 * AddressSanitizer.
 *
 * Built with -DKP_DRIVER_ROWS (kp_sparse_conv_rows_driver.c) it drives
 * kp_sparse_convolve_rows_s8 instead, with KP_SPARSE_CONV_ROWS_SCRATCH_BYTES.
 *
 * Format, int32 little-endian: header[24] = n h w c  oc kh kw  oh ow  stride_h stride_w
 * pad_h pad_w dil_h dil_w  input_offset output_offset act_min act_max per_channel
 * index_kind n_groups index_bytes n_quant, then the bytes of input[n h w c] (int8),
 * counts[oc] (uint16), words[n_groups] (int32), index[index_bytes], eff_bias[oc],
 * multiplier[n_quant], shift[n_quant] (int32). Reply: status (int32), then n oh ow oc
 * int8.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_nn_sparse.h"

#ifndef KP_DRIVER_NAME
#define KP_DRIVER_NAME "kp_sparse_conv_driver"
#endif
#include "kp_driver_io.h"

int main(void)
{
    int32_t h[24];
    while (fread(h, sizeof h[0], 24, stdin) == 24) {
        const kp_dims in = {h[0], h[1], h[2], h[3]};
        const kp_dims f = {h[4], h[5], h[6], h[3]};
        const kp_dims out = {h[0], h[7], h[8], h[4]};
        const size_t in_bytes = (size_t)in.n * in.h * in.w * in.c;
        const size_t out_bytes = (size_t)out.n * out.h * out.w * out.c;
        kp_conv_params p;
        kp_quant_params quant;
        kp_sparse_groups w;
        int8_t *input, *output, *scratch;
        int32_t *eff_bias, *mult, *shift, *words, status;
        uint16_t *counts;
        void *index;
        int i;
        for (i = 0; i < 24; ++i) {
            if (h[i] < 0 && (i < 9 || i > 18)) {
                die("negative size");
            }
        }
        input = read_array(in_bytes);
        counts = read_array(2 * (size_t)f.n);
        words = read_array(4 * (size_t)h[21]);
        index = read_array((size_t)h[22]);
        eff_bias = read_array(4 * (size_t)f.n);
        mult = read_array(4 * (size_t)h[23]);
        shift = read_array(4 * (size_t)h[23]);
        output = malloc(out_bytes ? out_bytes : 1);
#ifdef KP_DRIVER_ROWS
        scratch = malloc((size_t)KP_SPARSE_CONV_ROWS_SCRATCH_BYTES(
            f.h, f.w, f.c, out.h, out.w, h[9], h[10], h[13], h[14]));
#else
        scratch = malloc((size_t)KP_SPARSE_CONV_SCRATCH_BYTES(f.h, f.w, f.c));
#endif
        if (output == NULL || scratch == NULL) {
            die("out of memory");
        }
        memset(output, 0, out_bytes);
        p.stride.h = h[9];
        p.stride.w = h[10];
        p.padding.h = h[11];
        p.padding.w = h[12];
        p.dilation.h = h[13];
        p.dilation.w = h[14];
        p.input_offset = h[15];
        p.output_offset = h[16];
        p.activation.min = h[17];
        p.activation.max = h[18];
        quant.multiplier = mult;
        quant.shift = shift;
        quant.per_channel = h[19];
        w.rows = f.n;
        w.k = f.h * f.w * f.c;
        w.index_kind = h[20];
        w.n_groups = h[21];
        w.counts = counts;
        w.words = words;
        w.index = index;
#ifdef KP_DRIVER_ROWS
        status = kp_sparse_convolve_rows_s8(&p, &quant, &in, input, &f, &w, eff_bias, &out,
                                            output, scratch);
#else
        status = kp_sparse_convolve_s8(&p, &quant, &in, input, &f, &w, eff_bias, &out, output,
                                       scratch);
#endif
        if (fwrite(&status, sizeof status, 1, stdout) != 1 ||
            fwrite(output, 1, out_bytes, stdout) != out_bytes) {
            die("short write");
        }
        fflush(stdout);
        free(input);
        free(counts);
        free(words);
        free(index);
        free(eff_bias);
        free(mult);
        free(shift);
        free(output);
        free(scratch);
    }
    return 0;
}

/*
 * Test driver for kp_sparse_depthwise_conv_s8 (depth multiplier 1): reads cases on stdin,
 * writes the status and output of each on stdout. tests/test_sparse_conv.py builds it
 * with ASan + UBSan and fuzzes the kernel through it against
 * keras_prune.export.int8.reference.depthwise_conv2d.
 *
 * Every array is allocated at exactly the size sent, the scratch at exactly
 * KP_SPARSE_DW_SCRATCH_BYTES, so a read or write past any of them trips
 * AddressSanitizer.
 *
 * Format: as kp_sparse_conv_driver.c, with oc = c and counts[c / 4] (one sparse row per
 * channel quad).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_nn_sparse.h"

#ifndef KP_DRIVER_NAME
#define KP_DRIVER_NAME "kp_sparse_dw_driver"
#endif
#include "kp_driver_io.h"

int main(void)
{
    int32_t h[24];
    while (fread(h, sizeof h[0], 24, stdin) == 24) {
        const kp_dims in = {h[0], h[1], h[2], h[3]};
        const kp_dims f = {1, h[5], h[6], h[4]};
        const kp_dims out = {h[0], h[7], h[8], h[4]};
        const size_t in_bytes = (size_t)in.n * in.h * in.w * in.c;
        const size_t out_bytes = (size_t)out.n * out.h * out.w * out.c;
        kp_dw_conv_params p;
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
        counts = read_array(2 * (size_t)(f.c / 4));
        words = read_array(4 * (size_t)h[21]);
        index = read_array((size_t)h[22]);
        eff_bias = read_array(4 * (size_t)f.c);
        mult = read_array(4 * (size_t)h[23]);
        shift = read_array(4 * (size_t)h[23]);
        output = malloc(out_bytes ? out_bytes : 1);
        scratch = malloc((size_t)KP_SPARSE_DW_SCRATCH_BYTES(f.h, f.w));
        if (output == NULL || scratch == NULL) {
            die("out of memory");
        }
        memset(output, 0, out_bytes);
        p.ch_mult = 1;
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
        w.rows = f.c / 4;
        w.k = 4 * f.h * f.w;
        w.index_kind = h[20];
        w.n_groups = h[21];
        w.counts = counts;
        w.words = words;
        w.index = index;
        status = kp_sparse_depthwise_conv_s8(&p, &quant, &in, input, &f, &w, eff_bias, &out,
                                             output, scratch);
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

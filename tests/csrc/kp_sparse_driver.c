/*
 * Test driver for kp_sparse_fully_connected_s8: reads cases on stdin, writes the status
 * and output of each on stdout. tests/test_sparse_fc.py builds it with ASan + UBSan and
 * fuzzes the kernel through it against keras_prune.export.int8_ops.
 *
 * Every array is allocated at exactly the size sent (an empty one is NULL), so a read
 * past the input's end (a short last group read as a whole word) trips AddressSanitizer.
 *
 * Format, int32 little-endian: header[12] = batches in_len out_len input_offset
 * output_offset act_min act_max per_channel index_kind n_groups index_bytes n_quant,
 * then the bytes of input[batches * in_len] (int8), counts[out_len] (uint16),
 * words[n_groups] (int32), index[index_bytes], eff_bias[out_len], multiplier[n_quant],
 * shift[n_quant] (int32). Reply: status (int32), then batches * out_len int8.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kp_nn_sparse.h"

#ifndef KP_DRIVER_NAME
#define KP_DRIVER_NAME "kp_sparse_driver"
#endif
#include "kp_driver_io.h"

int main(void)
{
    int32_t h[12];
    while (fread(h, sizeof h[0], 12, stdin) == 12) {
        const int32_t batches = h[0], in_len = h[1], out_len = h[2];
        const size_t out_bytes = (size_t)batches * (size_t)out_len;
        kp_fc_params params;
        kp_quant_params quant;
        kp_sparse_groups w;
        int8_t *input, *output;
        int32_t *eff_bias, *mult, *shift, status;
        uint16_t *counts;
        int32_t *words;
        void *index;
        if (batches < 0 || in_len < 0 || out_len < 0 || h[9] < 0 || h[10] < 0 || h[11] < 0) {
            die("negative size");
        }
        input = read_array((size_t)batches * (size_t)in_len);
        counts = read_array(2 * (size_t)out_len);
        words = read_array(4 * (size_t)h[9]);
        index = read_array((size_t)h[10]);
        eff_bias = read_array(4 * (size_t)out_len);
        mult = read_array(4 * (size_t)h[11]);
        shift = read_array(4 * (size_t)h[11]);
        output = malloc(out_bytes ? out_bytes : 1);
        if (output == NULL) {
            die("out of memory");
        }
        memset(output, 0, out_bytes);
        params.input_offset = h[3];
        params.output_offset = h[4];
        params.activation.min = h[5];
        params.activation.max = h[6];
        quant.multiplier = mult;
        quant.shift = shift;
        quant.per_channel = h[7];
        w.rows = out_len;
        w.k = in_len;
        w.index_kind = h[8];
        w.n_groups = h[9];
        w.counts = counts;
        w.words = words;
        w.index = index;
        status = kp_sparse_fully_connected_s8(&params, &quant, batches, in_len, out_len,
                                              input, &w, eff_bias, output);
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
    }
    return 0;
}

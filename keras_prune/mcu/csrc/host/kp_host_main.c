/*
 * Host runner for a generated model: reads N int8 inputs from stdin (N from argv[1]) and
 * writes the N int8 outputs to stdout, so Python can compare them with TFLite Micro's.
 */
#include <stdio.h>
#include <stdlib.h>

#include "kp_model.h"

int main(int argc, char **argv)
{
    static int8_t input[KP_MODEL_INPUT_SIZE];
    static int8_t output[KP_MODEL_OUTPUT_SIZE];
    const long count = argc > 1 ? strtol(argv[1], NULL, 10) : 1;
    long i;

    for (i = 0; i < count; ++i) {
        int status;
        if (fread(input, 1, sizeof input, stdin) != sizeof input) {
            fprintf(stderr, "input %ld: expected %d bytes on stdin\n", i, KP_MODEL_INPUT_SIZE);
            return 2;
        }
        status = kp_model_invoke(input, output);
        if (status != 0) {
            fprintf(stderr, "input %ld: kp_model_invoke returned %d\n", i, status);
            return 3;
        }
        if (fwrite(output, 1, sizeof output, stdout) != sizeof output) {
            return 4;
        }
    }
    return 0;
}

/*
 * Runs the generated model on every input of kp_test_data.c and prints each output as one
 * line "KP_OUT <index> <hex bytes>", then "KP_DONE count=<n> stack=<bytes>". m4.py parses
 * these and compares them with the host build bit for bit.
 */
#include <stdint.h>

#include "kp_fw.h"
#include "kp_model.h"
#include "kp_test_data.h"

#if KP_TEST_INPUT_SIZE != KP_MODEL_INPUT_SIZE
#error "kp_test_data.h was written for another input size than kp_model.h's"
#endif

/* Semihosting traps once per string, so output goes in chunks, not per byte. */
#define KP_FW_LINE_CHARS 256

static int8_t kp_fw_output[KP_MODEL_OUTPUT_SIZE];
static char kp_fw_line[KP_FW_LINE_CHARS + 1];

static char *kp_fw_flush_if_full(char *p, int room)
{
    if (p + room > kp_fw_line + KP_FW_LINE_CHARS) {
        *p = '\0';
        kp_fw_write(kp_fw_line);
        p = kp_fw_line;
    }
    return p;
}

int main(void)
{
    int32_t i;
    int32_t j;
    char *p;

    for (i = 0; i < KP_TEST_COUNT; ++i) {
        const int status = kp_model_invoke(kp_test_inputs[i], kp_fw_output);
        p = kp_fw_line;
        if (status != 0) {
            p = kp_fw_fmt_str(p, "KP_ERROR input=");
            p = kp_fw_fmt_dec(p, i);
            p = kp_fw_fmt_str(p, " status=");
            p = kp_fw_fmt_dec(p, status);
            p = kp_fw_fmt_str(p, "\n");
            *p = '\0';
            kp_fw_write(kp_fw_line);
            return KP_FW_EXIT_INVOKE_ERROR;
        }
        p = kp_fw_fmt_str(p, "KP_OUT ");
        p = kp_fw_fmt_dec(p, i);
        *p++ = ' ';
        for (j = 0; j < KP_MODEL_OUTPUT_SIZE; ++j) {
            p = kp_fw_flush_if_full(p, 2);
            p = kp_fw_fmt_hex(p, (uint8_t)kp_fw_output[j], 2);
        }
        p = kp_fw_flush_if_full(p, 1);
        *p++ = '\n';
        *p = '\0';
        kp_fw_write(kp_fw_line);
    }
    p = kp_fw_fmt_str(kp_fw_line, "KP_DONE count=");
    p = kp_fw_fmt_dec(p, KP_TEST_COUNT);
    p = kp_fw_fmt_str(p, " stack=");
    p = kp_fw_fmt_dec(p, (int32_t)kp_fw_stack_used());
    p = kp_fw_fmt_str(p, "\n");
    *p = '\0';
    kp_fw_write(kp_fw_line);
    return KP_FW_EXIT_OK;
}

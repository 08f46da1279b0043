#include "kp_fw.h"

#define SYS_WRITE0 0x04
#define SYS_EXIT 0x18
#define SYS_EXIT_EXTENDED 0x20
#define ADP_STOPPED_APPLICATION_EXIT 0x20026
#define ADP_STOPPED_RUNTIME_ERROR_UNKNOWN 0x20023

static int kp_fw_semihost_call(int op, const void *arg)
{
    /* On M-profile the semihosting trap is BKPT 0xAB (there is no SVC variant). */
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void kp_fw_write(const char *s)
{
    kp_fw_semihost_call(SYS_WRITE0, s);
}

void kp_fw_exit(int status)
{
    /* AArch32 SYS_EXIT says only "normal" or "error"; SYS_EXIT_EXTENDED (semihosting v2,
     * QEMU has it) carries the status itself, so the exit code tells failures apart. */
    const uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)status};
    kp_fw_semihost_call(SYS_EXIT_EXTENDED, block);
    kp_fw_semihost_call(SYS_EXIT, (const void *)(uintptr_t)(
        status == 0 ? ADP_STOPPED_APPLICATION_EXIT : ADP_STOPPED_RUNTIME_ERROR_UNKNOWN));
    for (;;) {
    }
}

char *kp_fw_fmt_hex(char *dst, uint32_t value, int digits)
{
    static const char hex[] = "0123456789abcdef";
    int i;
    for (i = digits - 1; i >= 0; --i) {
        dst[i] = hex[value & 0xfu];
        value >>= 4;
    }
    return dst + digits;
}

char *kp_fw_fmt_dec(char *dst, int32_t value)
{
    char tmp[11];
    int n = 0;
    /* Through uint32_t so that INT32_MIN negates without overflow. */
    uint32_t u = value < 0 ? 0u - (uint32_t)value : (uint32_t)value;
    if (value < 0) {
        *dst++ = '-';
    }
    do {
        tmp[n++] = (char)('0' + u % 10u);
        u /= 10u;
    } while (u != 0u);
    while (n > 0) {
        *dst++ = tmp[--n];
    }
    return dst;
}

char *kp_fw_fmt_str(char *dst, const char *s)
{
    while (*s != '\0') {
        *dst++ = *s++;
    }
    return dst;
}

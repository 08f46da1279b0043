/*
 * Test firmware for a generated model on QEMU's mps2-an386 (Cortex-M4). Its only I/O is
 * ARM semihosting: text goes to the host console, and the exit status becomes QEMU's exit
 * code, which is how a run reports pass or fail to Python (keras_prune/export/m4.py).
 */
#ifndef KP_FW_H
#define KP_FW_H

#include <stdint.h>

/* QEMU exit codes; m4.py names them in its errors. */
#define KP_FW_EXIT_OK 0
#define KP_FW_EXIT_INVOKE_ERROR 3
#define KP_FW_EXIT_FAULT 4

/* Writes a NUL-terminated string to the host console. */
void kp_fw_write(const char *s);

/* Ends the emulation with QEMU exiting `status`. */
void kp_fw_exit(int status) __attribute__((noreturn));

/* Formatting without printf, which would pull newlib's stdio and syscalls into the image.
 * Each writes at dst and returns the end (no NUL). */
char *kp_fw_fmt_hex(char *dst, uint32_t value, int digits);
char *kp_fw_fmt_dec(char *dst, int32_t value);
char *kp_fw_fmt_str(char *dst, const char *s);

/* Deepest stack use so far in bytes, from the pattern the reset handler painted. */
uint32_t kp_fw_stack_used(void);

#endif /* KP_FW_H */

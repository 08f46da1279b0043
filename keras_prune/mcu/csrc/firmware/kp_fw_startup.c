/*
 * Vector table and reset for mps2-an386: QEMU loads SP and PC from the table at 0x0. No
 * interrupts are enabled, so the table stops after the 16 system exceptions.
 */
#include <stdint.h>

#include "kp_fw.h"

#define KP_FW_STACK_PAINT 0xa5a5a5a5u

/* From kp_fw_mps2_an386.ld. */
extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[], _estack[];

int main(void);
void kp_fw_reset(void) __attribute__((naked, noreturn));
void kp_fw_start(void) __attribute__((noreturn, used));
void kp_fw_fault(void) __attribute__((naked, noreturn));
void kp_fw_fault_report(const uint32_t *frame, uint32_t ipsr) __attribute__((noreturn, used));

typedef void (*kp_fw_vector)(void);

__attribute__((section(".kp_vectors"), used))
const kp_fw_vector kp_fw_vectors[16] = {
    (kp_fw_vector)(uintptr_t)_estack, /* initial SP */
    kp_fw_reset,
    kp_fw_fault, /* NMI */
    kp_fw_fault, /* HardFault */
    kp_fw_fault, /* MemManage */
    kp_fw_fault, /* BusFault */
    kp_fw_fault, /* UsageFault */
    0, 0, 0, 0,
    kp_fw_fault, /* SVCall */
    kp_fw_fault, /* DebugMonitor */
    0,
    kp_fw_fault, /* PendSV */
    kp_fw_fault, /* SysTick */
};

void kp_fw_reset(void)
{
    /* The hardware already loaded SP from the table, but a debugger or loader that jumps to
     * the ELF entry does not. */
    __asm__ volatile("ldr r0, =_estack\n\t"
                     "mov sp, r0\n\t"
                     "b kp_fw_start\n\t");
}

void kp_fw_start(void)
{
    uint32_t *src = _sidata;
    uint32_t *dst = _sdata;
    uint32_t *sp;

    while (dst < _edata) {
        *dst++ = *src++;
    }
    for (dst = _sbss; dst < _ebss; ++dst) {
        *dst = 0u;
    }
    /* Paint the free RAM between .bss and the live stack, so kp_fw_stack_used() can find
     * the deepest word the model's kernels ever wrote. The margin keeps this frame safe. */
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    for (dst = _ebss; dst < sp - 16; ++dst) {
        *dst = KP_FW_STACK_PAINT;
    }
    kp_fw_exit(main());
}

uint32_t kp_fw_stack_used(void)
{
    const uint32_t *p = _ebss;
    while (p < _estack && *p == KP_FW_STACK_PAINT) {
        ++p;
    }
    return (uint32_t)((uintptr_t)_estack - (uintptr_t)p);
}

void kp_fw_fault(void)
{
    /* Hand the stacked exception frame (r0-r3, r12, lr, pc, xpsr) to C. */
    __asm__ volatile("tst lr, #4\n\t"
                     "ite eq\n\t"
                     "mrseq r0, msp\n\t"
                     "mrsne r0, psp\n\t"
                     "mrs r1, ipsr\n\t"
                     "b kp_fw_fault_report\n\t");
}

void kp_fw_fault_report(const uint32_t *frame, uint32_t ipsr)
{
    /* Configurable and HardFault status registers: which fault, and why. */
    const volatile uint32_t *cfsr = (const volatile uint32_t *)0xe000ed28u;
    const volatile uint32_t *hfsr = (const volatile uint32_t *)0xe000ed2cu;
    char line[128];
    char *p = line;

    p = kp_fw_fmt_str(p, "KP_FAULT exception=");
    p = kp_fw_fmt_dec(p, (int32_t)(ipsr & 0x1ffu));
    p = kp_fw_fmt_str(p, " pc=0x");
    p = kp_fw_fmt_hex(p, frame[6], 8);
    p = kp_fw_fmt_str(p, " lr=0x");
    p = kp_fw_fmt_hex(p, frame[5], 8);
    p = kp_fw_fmt_str(p, " cfsr=0x");
    p = kp_fw_fmt_hex(p, *cfsr, 8);
    p = kp_fw_fmt_str(p, " hfsr=0x");
    p = kp_fw_fmt_hex(p, *hfsr, 8);
    *p++ = '\n';
    *p = '\0';
    kp_fw_write(line);
    kp_fw_exit(KP_FW_EXIT_FAULT);
}

/* startup.c: vector table, reset handler, SysTick counter, semihosting calls and the three
 * memory functions the generated code needs, for a bare-metal Cortex-M7 (no C library). */
#include <stddef.h>
#include <stdint.h>
#include "mcu.h"

extern uint32_t __data_load, __data_start, __data_end, __bss_start, __bss_end, __stack_top;
int main(void);

/* ---------------------------------------------------------------- semihosting */
int semihost(int op, void *arg)
{
    register int r0 __asm__("r0") = op;
    register void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void semihost_exit(int ok)
{
    /* ADP_Stopped_ApplicationExit (QEMU exits 0) or ADP_Stopped_RunTimeErrorUnknown (exit 1) */
    semihost(0x18, (void *)(uintptr_t)(ok ? 0x20026u : 0x20023u));
    for (;;) { }
}

/* ---------------------------------------------------------------- SysTick */
#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)
#define ICSR_PENDSTSET (1u << 26)

static volatile uint32_t systick_wraps;

void SysTick_Handler(void) { systick_wraps++; }

void ticks_init(void)
{
    SYST_RVR = 0x00FFFFFFu;
    SYST_CVR = 0u;
    SYST_CSR = 7u; /* processor clock, interrupt on wrap, enabled */
    while (SYST_CVR == 0u) { } /* the first tick loads the reload value */
    SCB_ICSR = 1u << 25;       /* PENDSTCLR: no wrap has happened yet */
    systick_wraps = 0u;
}

uint64_t ticks(void)
{
    uint32_t w, v, pending;
    do {
        w = systick_wraps;
        v = SYST_CVR;
        pending = SCB_ICSR & ICSR_PENDSTSET;
    } while (w != systick_wraps);
    if (pending && v > 0x00800000u) w++; /* wrapped, handler not run yet */
    return (uint64_t)w * 0x01000000u + (0x00FFFFFFu - v);
}

/* ---------------------------------------------------------------- memory functions */
void *memcpy(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    while (n--) *d++ = *s++;
    return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
    uint8_t *d = dst;
    const uint8_t *s = src;
    if (d < s) {
        while (n--) *d++ = *s++;
    } else {
        while (n--) d[n] = s[n];
    }
    return dst;
}

void *memset(void *dst, int c, size_t n)
{
    uint8_t *d = dst;
    while (n--) *d++ = (uint8_t)c;
    return dst;
}

/* ---------------------------------------------------------------- vectors */
/* .data from flash, .bss zeroed, then main: its own function, so that with an FPU (-mfloat-abi=hard
 * or softfp) no floating-point instruction GCC may choose for the copies runs before the reset
 * handler has enabled the FPU (a Cortex-M7 resets with it off: any use is a fault). */
__attribute__((noinline)) static void run_main(void)
{
    uint32_t *src = &__data_load, *dst = &__data_start;
    while (dst < &__data_end) *dst++ = *src++;
    for (dst = &__bss_start; dst < &__bss_end; dst++) *dst = 0u;
    semihost_exit(main() == 0);
}

void Reset_Handler(void)
{
#if defined(__ARM_FP)
    /* CPACR: full access to coprocessors 10 and 11 (the FPU), then barriers so that the next
     * instruction sees it (ARMv7-M ARM B3.2.20) */
    *(volatile uint32_t *)0xE000ED88u |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    run_main();
}

static void Fault_Handler(void)
{
    static const char msg[] = "fault: hard fault or unexpected exception\n";
    semihost(0x04, (void *)msg);
    semihost_exit(0);
}

__attribute__((section(".vectors"), used))
static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&__stack_top, Reset_Handler,
    Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler, Fault_Handler,
    0, 0, 0, 0, Fault_Handler, Fault_Handler, 0, Fault_Handler, SysTick_Handler,
};

/* harness_mcu.c: run an exported model under QEMU (mps2-an500) on the images of in.bin, write the
 * outputs to out.bin and the measurements to stats.txt, all through semihosting (files relative to
 * QEMU's working directory). Images are read straight into the arena (model_input_buffer) and
 * outputs written from it, so the harness adds no I/O buffers.
 *
 * Measurements: SysTick ticks per inference and per step (model_profile_hook), a calibration loop
 * of a known instruction count (ticks -> instructions under -icount), and the peak stack by
 * painting the stack region before the first inference.
 *
 * The measurement's own cost (hook_ticks / hook_intervals). A step's ticks run from one hook's
 * SysTick read to the next hook's: they hold, besides model_run's loop and the step itself, the
 * end of the previous hook (the 64-bit sums, the return) and the start of the next (its call,
 * prologue and ticks() up to the counter read): a fixed cost per step, the same for every step
 * but the first (whose previous hook, model_profile_hook(-1), skips the sum). measure_hook times
 * that cost alone: 32 HOOK_LOOPS calls of the hook with nothing between them (32 per loop pass:
 * the loop's own two or three instructions add < 0.1 per interval), accumulated into step 0's
 * slot before the first image (then cleared). The ticks of consecutive intervals telescope (one
 * read ends an interval and starts the next), so their sum is exact to one tick over all
 * 32 HOOK_LOOPS intervals, not one tick per interval: hook_ticks * calib_insns / calib_ticks / hook_intervals is the per-step overhead to
 * 40 / 8000 of an instruction (tinyopt.deploy.mcu.McuRun.hook_insns_per_step). One SysTick tick
 * is about 40 instructions here (calib_insns / calib_ticks), so a single step's count is only
 * exact to a tick per image (summed over images, the errors tend to average out). */
#include <stdint.h>
#include "mcu.h"
#include "model.h"

#define SYS_OPEN 0x01
#define SYS_CLOSE 0x02
#define SYS_WRITE 0x05
#define SYS_READ 0x06
#define SYS_FLEN 0x0C
#define PAINT 0xA5A5A5A5u
#define CALIB_LOOPS 1000000u
#define HOOK_LOOPS 250u /* x 32 hook calls: the measurement's own cost (see above) */

extern uint32_t __stack_limit, __stack_top;

static uint64_t step_ticks[MODEL_N_STEPS]; /* measure_hook borrows slot 0 before the images */
static uint64_t last_tick;

/* noinline: measure_hook must call it as model_run does (a call, not an inlined copy) */
void __attribute__((noinline)) model_profile_hook(int step)
{
    uint64_t now = ticks();
    if (step >= 0) step_ticks[step] += now - last_tick;
    last_tick = now;
}

static int sh_open(const char *name, int mode)
{
    uint32_t len = 0;
    while (name[len]) len++;
    uint32_t args[3] = {(uint32_t)(uintptr_t)name, (uint32_t)mode, len};
    return semihost(SYS_OPEN, args);
}

static int sh_rw(int op, int fd, void *buf, uint32_t n)
{
    uint32_t args[3] = {(uint32_t)fd, (uint32_t)(uintptr_t)buf, n};
    return semihost(op, args); /* bytes NOT transferred */
}

static int sh_close(int fd)
{
    uint32_t args[1] = {(uint32_t)fd};
    return semihost(SYS_CLOSE, args);
}

/* A small text buffer for stats.txt (no printf). */
static char text[128];
static uint32_t put_str(uint32_t at, const char *s)
{
    while (*s && at < sizeof(text) - 1) text[at++] = *s++;
    return at;
}
static uint32_t put_u64(uint32_t at, uint64_t v)
{
    char digits[21];
    int n = 0;
    do { digits[n++] = (char)('0' + (int)(v % 10u)); v /= 10u; } while (v && n < 20);
    while (n && at < sizeof(text) - 1) text[at++] = digits[--n];
    return at;
}
static void line(int fd, const char *key, const char *key2, uint64_t value)
{
    uint32_t at = put_str(0, key);
    at = put_str(at, key2);
    at = put_str(at, " ");
    at = put_u64(at, value);
    at = put_str(at, "\n");
    sh_rw(SYS_WRITE, fd, text, at);
}

static void __attribute__((noinline)) paint_stack(void)
{
    uint32_t *p = &__stack_limit, *sp;
    __asm__ volatile("mov %0, sp" : "=r"(sp));
    while (p < sp - 32) *p++ = PAINT; /* leave this function's own frame alone */
}

static uint32_t peak_stack(void)
{
    uint32_t *p = &__stack_limit;
    while (p < &__stack_top && *p == PAINT) p++;
    return (uint32_t)((uintptr_t)&__stack_top - (uintptr_t)p);
}

static void __attribute__((noinline)) spin(uint32_t n)
{
    __asm__ volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
}

#define HOOK4 model_profile_hook(0); model_profile_hook(0); model_profile_hook(0);                \
    model_profile_hook(0);
#define HOOK32 HOOK4 HOOK4 HOOK4 HOOK4 HOOK4 HOOK4 HOOK4 HOOK4

/* Hook calls with nothing between them: 32 HOOK_LOOPS intervals summed into step_ticks[0]
 * (model_profile_hook(-1) starts the first, as before step 0), written to stats.txt (fd) and
 * cleared before the first image: no memory of its own, and main's frame as it was (the
 * measured RAM stays the model's). */
static void __attribute__((noinline)) measure_hook(int fd)
{
    uint32_t i;
    model_profile_hook(-1);
    for (i = 0; i < HOOK_LOOPS; i++) {
        HOOK32
    }
    line(fd, "hook_intervals", "", 32u * HOOK_LOOPS);
    line(fd, "hook_ticks", "", step_ticks[0]);
    step_ticks[0] = 0u;
}

int main(void)
{
    int fin, fout, fstat;
    uint32_t n, i, k, sp_at_call;
    uint64_t t0, calib;
    paint_stack();
    ticks_init();
    t0 = ticks();
    spin(CALIB_LOOPS);
    calib = ticks() - t0;
    fin = sh_open("in.bin", 1);    /* "rb" */
    fout = sh_open("out.bin", 5);  /* "wb" */
    fstat = sh_open("stats.txt", 4); /* "w" */
    if (fin < 0 || fout < 0 || fstat < 0) return 1;
    n = (uint32_t)semihost(SYS_FLEN, (uint32_t[1]){(uint32_t)fin}) / MODEL_IN_BYTES;
    __asm__ volatile("mov %0, sp" : "=r"(sp_at_call));
    line(fstat, "images", "", n);
    line(fstat, "calib_insns", "", 2u * CALIB_LOOPS);
    line(fstat, "calib_ticks", "", calib);
    measure_hook(fstat);
    for (i = 0; i < n; i++) {
        if (sh_rw(SYS_READ, fin, model_input_buffer(), MODEL_IN_BYTES) != 0) return 1;
        t0 = ticks();
        if (model_run(model_input_buffer(), model_output_buffer()) != 0) return 1;
        line(fstat, "image_ticks", "", ticks() - t0);
        if (sh_rw(SYS_WRITE, fout, model_output_buffer(), MODEL_OUT_BYTES) != 0) return 1;
    }
    for (k = 0; k < MODEL_N_STEPS; k++) line(fstat, "step_ticks ", model_step_names[k], step_ticks[k]);
    line(fstat, "stack_top_minus_sp_at_call", "", (uint32_t)(uintptr_t)&__stack_top - sp_at_call);
    line(fstat, "stack_peak", "", peak_stack());
    sh_close(fin);
    sh_close(fout);
    sh_close(fstat);
    return 0;
}

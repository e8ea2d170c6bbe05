/* two_models.c: a hand-written (not generated) firmware main that links two tinyopt-generated
 * libraries, `kws` and `ad` (tinyopt generate --name kws / --name ad), into one program and runs
 * both on the images of kws_in.bin and ad_in.bin, writing kws_out.bin and ad_out.bin.
 *
 * The same file builds for the host (stdio) and for the Cortex-M7 under QEMU (semihosting, with
 * tinyopt/deploy/c/mcu/startup.c). kws runs in place (input written at kws_input_buffer(), no
 * copy); ad runs on this file's own buffers (copied in and out), and on a caller-supplied arena
 * when the library is built with AD_ARENA_EXTERNAL. Used by tests/test_generate.py. */
#include <stdint.h>
#include "kws.h"
#include "ad.h"

#ifdef __arm__
#include "mcu.h"
typedef int file_t;
static file_t f_open(const char *name, int write)
{
    uint32_t len = 0;
    while (name[len]) len++;
    uint32_t args[3] = {(uint32_t)(uintptr_t)name, write ? 5u : 1u, len}; /* "wb" / "rb" */
    return semihost(0x01, args);
}
static int f_ok(file_t f) { return f >= 0; }
static int f_read(file_t f, void *buf, uint32_t n)
{
    uint32_t args[3] = {(uint32_t)f, (uint32_t)(uintptr_t)buf, n};
    return semihost(0x06, args) == 0; /* returns the bytes NOT read */
}
static int f_write(file_t f, const void *buf, uint32_t n)
{
    uint32_t args[3] = {(uint32_t)f, (uint32_t)(uintptr_t)buf, n};
    return semihost(0x05, args) == 0;
}
static uint32_t f_len(file_t f)
{
    uint32_t args[1] = {(uint32_t)f};
    return (uint32_t)semihost(0x0C, args);
}
static void f_close(file_t f)
{
    uint32_t args[1] = {(uint32_t)f};
    semihost(0x02, args);
}
#else
#include <stdio.h>
typedef FILE *file_t;
static file_t f_open(const char *name, int write) { return fopen(name, write ? "wb" : "rb"); }
static int f_ok(file_t f) { return f != NULL; }
static int f_read(file_t f, void *buf, uint32_t n) { return fread(buf, 1, n, f) == n; }
static int f_write(file_t f, const void *buf, uint32_t n) { return fwrite(buf, 1, n, f) == n; }
static uint32_t f_len(file_t f)
{
    long n;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    return n < 0 ? 0u : (uint32_t)n;
}
static void f_close(file_t f) { fclose(f); }
#endif

static uint8_t ad_in[AD_IN_BYTES];
static uint8_t ad_out[AD_OUT_BYTES];
#ifdef AD_ARENA_EXTERNAL
static uint8_t ad_arena_buf[AD_ARENA_BYTES + 1]; /* +1: an unaligned arena works too */
#endif

int main(void)
{
    file_t fin, fout;
    uint32_t n, i;
#ifdef AD_ARENA_EXTERNAL
    if (ad_run(ad_in, ad_out) != -2) return 10;            /* no arena yet: refused */
    if (ad_set_arena(ad_arena_buf + 1, AD_ARENA_BYTES - 1) != -1) return 11; /* too small */
    if (ad_set_arena(ad_arena_buf + 1, AD_ARENA_BYTES) != 0) return 12;
#endif
    /* kws: in place */
    fin = f_open("kws_in.bin", 0);
    fout = f_open("kws_out.bin", 1);
    if (!f_ok(fin) || !f_ok(fout)) return 1;
    n = f_len(fin) / KWS_IN_BYTES;
    for (i = 0; i < n; i++) {
        if (!f_read(fin, kws_input_buffer(), KWS_IN_BYTES)) return 2;
        if (kws_run(kws_input_buffer(), kws_output_buffer()) != 0) return 3;
        if (!f_write(fout, kws_output_buffer(), KWS_OUT_BYTES)) return 4;
    }
    f_close(fin);
    f_close(fout);
    /* ad: through this file's buffers */
    fin = f_open("ad_in.bin", 0);
    fout = f_open("ad_out.bin", 1);
    if (!f_ok(fin) || !f_ok(fout)) return 5;
    n = f_len(fin) / AD_IN_BYTES;
    for (i = 0; i < n; i++) {
        if (!f_read(fin, ad_in, AD_IN_BYTES)) return 6;
        if (ad_run(ad_in, ad_out) != 0) return 7;
        if (!f_write(fout, ad_out, AD_OUT_BYTES)) return 8;
    }
    f_close(fin);
    f_close(fout);
    return 0;
}

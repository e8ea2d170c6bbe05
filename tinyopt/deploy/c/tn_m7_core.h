/* tn_m7_core.h: what the Cortex-M7 kernels of tn_m7.h share (ARMv7E-M DSP extension): the
 * intrinsics, the lane order of packed weights, requantization and output stores.
 *
 * The kernels (tn_m7_gemm.h, tn_m7_dw.h):
 *
 * The code generator (tinyopt/deploy/kernels_m7/) writes one function per step that calls one
 * of the always-inline kernels below with the layer's shapes, bit widths and flags as literal
 * constants, so the compiler specialises every loop to the layer (TinyEngine style): constant
 * trip counts, unrolled inner loops, no run-time dispatch on bit widths. They compute exactly
 * what the portable kernels of tinyopt_nn.c compute (same accumulator modulo 2^32, same
 * requantization from tn_arith.h, same clamps), element by element.
 *
 * Arithmetic. An accumulator is bias + sum_k (w_k - z_w) * (x_k - z_x). The weights enter as
 * their unsigned codes w_k, two 16-bit lanes per register; the activations as x'_k = x_k - z_x
 * (int16, |x'| <= 255); SMLAD adds two products per instruction. The weight zero point is
 * taken out once per output: sum (w - z_w) x' = sum w x' - z_w * sum x' (exact modulo 2^32,
 * like the reference's uint32 accumulator).
 *
 * Lane order. A 32-bit word of packed weight codes holds N = 32 / b elements (b = weight bits,
 * LSB first). Masking it, shifted right by s * b, with the b-bit mask in both halfwords gives
 * the lane pair (e_s, e_{s + N/2}) in one or two instructions (UXTB16 for b = 8): the N/2 pairs
 * of a word need no reordering of the weights. The activation buffer (im2col) stores each group
 * of N activations in that same order: element r of a group at position
 * 2 * (r % (N/2)) + r / (N/2).
 *
 * Intrinsics. With __ARM_FEATURE_DSP (arm-none-eabi-gcc -mcpu=cortex-m7) the ACLE intrinsics of
 * <arm_acle.h>; elsewhere (the host build) portable C with the same results, so that the host
 * build runs, and tests, these very kernels.
 */
#ifndef TN_M7_CORE_H
#define TN_M7_CORE_H

#include <string.h>
#include "tn_arith.h"

/* TN_RESTRICT: a step's scratch (im2col rows, output values; a buffer of the arena of its own,
 * tinyopt.integer.steps.scratch_bytes) is reached through no other pointer, so stores to the
 * output need not reload it */
#if defined(__GNUC__)
#define TN_RESTRICT __restrict__
#elif defined(__STDC_VERSION__) && __STDC_VERSION__ >= 199901L
#define TN_RESTRICT restrict
#else
#define TN_RESTRICT
#endif
#if defined(__GNUC__)
#define TN_ALIGN4 __attribute__((aligned(4)))
/* -ffreestanding turns memcpy into a call; the builtin is one LDR / STR */
#define TN_MEMCPY __builtin_memcpy
#define TN_PRAGMA(x) _Pragma(#x)
/* TN_M7_ASM: the multi-register inline-assembly loops (tn_m7_fc, tn_m7_conv, tn_m7_subconv,
 * the 3x3 depthwise row kernel) need up to 14 free registers, r7 and constant operands: GCC at
 * -O1 or more without a frame pointer (tests/test_build_levels.py: -O1, -O3, -Os, -Oz, -Og; at
 * -Os / -Oz two loops take their C twins, __OPTIMIZE_SIZE__). -O1, -O2, -O3 and -Og define the
 * same macros, so a block must compile at all of them as it is: the fullest ones are one asm
 * statement per call whose sums are outputs only (no "+&r" sum carried from one asm statement
 * to the next: GCC's reloads of those inputs found no registers at some levels). A debug build
 * (-O0) takes their C twins, which compute the same bytes (the host build runs them); define
 * TN_M7_NO_ASM to take them in any build (one with -fno-omit-frame-pointer, or a level where
 * GCC cannot allocate a block's registers). */
#if defined(__ARM_FEATURE_DSP) && defined(__GNUC__) && defined(__OPTIMIZE__) \
    && !defined(TN_M7_NO_ASM)
#define TN_M7_ASM 1
#else
#define TN_M7_ASM 0
#endif

#if defined(__ARM_FEATURE_DSP)
#define TN_UNROLL TN_PRAGMA(GCC unroll 16)
#else /* the host build: same code, left to the compiler (fully unrolled it compiles slowly) */
#define TN_UNROLL
#endif
#else
#define TN_ALIGN4
#define TN_UNROLL
#define TN_MEMCPY memcpy
#endif

/* N words (or groups) of the same assembly G: N % 4 first (one statement of one, one of two),
 * then four per pass until END, the loop's end test and branch back to 1 (e.g. "cmp %[x],
 * %[end]\n\tbne 1b\n\t"); OPS the statements' operands, a macro named by the caller so that
 * its commas never split an argument (named in the macro that calls TN_RUN4, not passed
 * through a parameter: an argument is expanded before it is substituted). The block loops of
 * tn_m7_subfc and tn_m7_subconv. */
#define TN_RUN4(N, G, END, OPS)                                                                 \
    do {                                                                                        \
        if (N & 1u) __asm__ volatile(G OPS);                                                    \
        if (N & 2u) __asm__ volatile(G G OPS);                                                  \
        if (N >= 4u) __asm__ volatile("1:\n\t" G G G G END OPS);                                \
    } while (0)

/* The signed 16-bit lanes of a word. */
static inline int32_t tn_lo16(uint32_t x) { return (int32_t)(int16_t)(uint16_t)x; }
static inline int32_t tn_hi16(uint32_t x) { return (int32_t)(int16_t)(uint16_t)(x >> 16); }

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#define tn_uxtb16(x) ((uint32_t)__uxtb16(x))
#define tn_smlad(a, b, c) ((int32_t)__smlad((int32_t)(a), (int32_t)(b), (c)))
#define tn_smlabb(a, b, c) ((int32_t)__smlabb((int32_t)(a), (int32_t)(b), (c)))
#define tn_smlatt(a, b, c) ((int32_t)__smlatt((int32_t)(a), (int32_t)(b), (c)))
/* SMLALD: a 64-bit accumulator (a register pair) + the two lane products */
#define tn_smlald(a, b, c) ((int64_t)__smlald((int32_t)(a), (int32_t)(b), (c)))
#define tn_ssub16(a, b) ((uint32_t)__ssub16((int32_t)(a), (int32_t)(b)))
#define tn_sxtab16(a, b) ((uint32_t)__sxtab16((int32_t)(a), (b)))
#define tn_uxtab16(a, b) ((uint32_t)__uxtab16((a), (b)))
/* the rotated forms (one instruction; gcc does not fold a rotate into the intrinsics) */
static inline __attribute__((always_inline)) uint32_t tn_uxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm__("uxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
static inline __attribute__((always_inline)) uint32_t tn_sxtab16_ror8(uint32_t a, uint32_t x)
{
    uint32_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}
static inline __attribute__((always_inline)) uint32_t tn_uxtab16_ror8(uint32_t a, uint32_t x)
{
    uint32_t r;
    __asm__("uxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
    return r;
}
/* SMMLAR / SMMLA: acc + the high word of x * m, rounded (2^31 added to the product first) or
 * truncated (tn_m7_add.h) */
static inline __attribute__((always_inline)) int32_t tn_smmlar(int32_t x, int32_t m, int32_t acc)
{
    int32_t r;
    __asm__("smmlar %0, %1, %2, %3" : "=r"(r) : "r"(x), "r"(m), "r"(acc));
    return r;
}
static inline __attribute__((always_inline)) int32_t tn_smmla(int32_t x, int32_t m, int32_t acc)
{
    int32_t r;
    __asm__("smmla %0, %1, %2, %3" : "=r"(r) : "r"(x), "r"(m), "r"(acc));
    return r;
}
static inline __attribute__((always_inline)) int32_t tn_smmulr(int32_t x, int32_t m)
{
    int32_t r;
    __asm__("smmulr %0, %1, %2" : "=r"(r) : "r"(x), "r"(m));
    return r;
}
static inline __attribute__((always_inline)) int32_t tn_smmul(int32_t x, int32_t m)
{
    int32_t r;
    __asm__("smmul %0, %1, %2" : "=r"(r) : "r"(x), "r"(m));
    return r;
}
/* w with byte k replaced by the low byte of v (BFI) */
static inline __attribute__((always_inline)) uint32_t tn_bfi8(uint32_t w, uint32_t v, uint32_t k)
{
    if (k == 1u) __asm__("bfi %0, %1, #8, #8" : "+r"(w) : "r"(v));
    else if (k == 2u) __asm__("bfi %0, %1, #16, #8" : "+r"(w) : "r"(v));
    else if (k == 3u) __asm__("bfi %0, %1, #24, #8" : "+r"(w) : "r"(v));
    else __asm__("bfi %0, %1, #0, #8" : "+r"(w) : "r"(v));
    return w;
}
/* SXTAB / UXTAB: a + byte k of x, sign- / zero-extended, in one instruction (ROR #8k). k is a
 * constant after inlining: the dead branches fold away. */
static inline __attribute__((always_inline)) int32_t tn_xtab(int32_t a, uint32_t x, uint32_t k,
                                                             uint32_t is_signed)
{
    int32_t r;
    if (is_signed) {
        if (k == 0u) __asm__("sxtab %0, %1, %2" : "=r"(r) : "r"(a), "r"(x));
        else if (k == 1u) __asm__("sxtab %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
        else if (k == 2u) __asm__("sxtab %0, %1, %2, ror #16" : "=r"(r) : "r"(a), "r"(x));
        else __asm__("sxtab %0, %1, %2, ror #24" : "=r"(r) : "r"(a), "r"(x));
    } else {
        if (k == 0u) __asm__("uxtab %0, %1, %2" : "=r"(r) : "r"(a), "r"(x));
        else if (k == 1u) __asm__("uxtab %0, %1, %2, ror #8" : "=r"(r) : "r"(a), "r"(x));
        else if (k == 2u) __asm__("uxtab %0, %1, %2, ror #16" : "=r"(r) : "r"(a), "r"(x));
        else __asm__("uxtab %0, %1, %2, ror #24" : "=r"(r) : "r"(a), "r"(x));
    }
    return r;
}
/* Byte-lane max / min of four packed int8 (SSUB8 sets the GE flags SEL reads; one asm block so
 * that nothing comes between them) or uint8 (USUB8) codes. */
static inline __attribute__((always_inline)) uint32_t tn_max8(uint32_t x, uint32_t y,
                                                              uint32_t is_signed)
{
    uint32_t r;
    if (is_signed) __asm__("ssub8 %0, %1, %2\n\tsel %0, %1, %2" : "=&r"(r) : "r"(x), "r"(y) : "cc");
    else __asm__("usub8 %0, %1, %2\n\tsel %0, %1, %2" : "=&r"(r) : "r"(x), "r"(y) : "cc");
    return r;
}
static inline __attribute__((always_inline)) uint32_t tn_min8(uint32_t x, uint32_t y,
                                                              uint32_t is_signed)
{
    uint32_t r;
    if (is_signed) __asm__("ssub8 %0, %1, %2\n\tsel %0, %2, %1" : "=&r"(r) : "r"(x), "r"(y) : "cc");
    else __asm__("usub8 %0, %1, %2\n\tsel %0, %2, %1" : "=&r"(r) : "r"(x), "r"(y) : "cc");
    return r;
}
/* x saturated to the 8-bit signed or unsigned range (SSAT / USAT #8) */
#define tn_sat8(x, is_signed) ((is_signed) ? __ssat((x), 8) : (int32_t)__usat((x), 8))
#else
static inline int32_t tn_smmlar(int32_t x, int32_t m, int32_t acc)
{
    const int64_t h = ((int64_t)x * m + ((int64_t)1 << 31)) >> 32;
    return (int32_t)((uint32_t)acc + (uint32_t)(int32_t)h);
}
static inline int32_t tn_smmla(int32_t x, int32_t m, int32_t acc)
{
    return (int32_t)((uint32_t)acc + (uint32_t)(int32_t)(((int64_t)x * m) >> 32));
}
static inline int32_t tn_smmulr(int32_t x, int32_t m) { return tn_smmlar(x, m, 0); }
static inline int32_t tn_smmul(int32_t x, int32_t m) { return tn_smmla(x, m, 0); }
static inline uint32_t tn_bfi8(uint32_t w, uint32_t v, uint32_t k)
{
    return (w & ~(0xFFu << (8u * k))) | ((v & 0xFFu) << (8u * k));
}
static inline int32_t tn_xtab(int32_t a, uint32_t x, uint32_t k, uint32_t is_signed)
{
    const uint32_t byte = (x >> (8u * k)) & 0xFFu;
    return (int32_t)((uint32_t)a + (is_signed ? (uint32_t)(int32_t)(int8_t)byte : byte));
}
/* byte k of a word of packed 8-bit codes, as a number */
static inline int32_t tn_lane8(uint32_t x, uint32_t k, uint32_t is_signed)
{
    return tn_xtab(0, x, k, is_signed);
}
static inline uint32_t tn_max8(uint32_t x, uint32_t y, uint32_t is_signed)
{
    uint32_t r = 0;
    for (uint32_t k = 0; k < 4u; k++) {
        const int32_t u = tn_lane8(x, k, is_signed), v = tn_lane8(y, k, is_signed);
        r |= ((uint32_t)(u >= v ? u : v) & 0xFFu) << (8u * k);
    }
    return r;
}
static inline uint32_t tn_min8(uint32_t x, uint32_t y, uint32_t is_signed)
{
    uint32_t r = 0;
    for (uint32_t k = 0; k < 4u; k++) {
        const int32_t u = tn_lane8(x, k, is_signed), v = tn_lane8(y, k, is_signed);
        r |= ((uint32_t)(u >= v ? v : u) & 0xFFu) << (8u * k);
    }
    return r;
}
static inline int32_t tn_sat8(int32_t x, uint32_t is_signed)
{
    const int32_t lo = is_signed ? -128 : 0, hi = is_signed ? 127 : 255;
    return x < lo ? lo : (x > hi ? hi : x);
}
static inline uint32_t tn_uxtb16(uint32_t x) { return x & 0x00FF00FFu; }
static inline int32_t tn_smlad(uint32_t a, uint32_t b, int32_t c)
{
    return (int32_t)((uint32_t)c + (uint32_t)(tn_lo16(a) * tn_lo16(b))
                     + (uint32_t)(tn_hi16(a) * tn_hi16(b)));
}
static inline int64_t tn_smlald(uint32_t a, uint32_t b, int64_t c)
{
    return c + (int64_t)tn_lo16(a) * tn_lo16(b) + (int64_t)tn_hi16(a) * tn_hi16(b);
}
static inline int32_t tn_smlabb(uint32_t a, uint32_t b, int32_t c)
{
    return (int32_t)((uint32_t)c + (uint32_t)(tn_lo16(a) * tn_lo16(b)));
}
static inline int32_t tn_smlatt(uint32_t a, uint32_t b, int32_t c)
{
    return (int32_t)((uint32_t)c + (uint32_t)(tn_hi16(a) * tn_hi16(b)));
}
static inline uint32_t tn_lanes(uint32_t lo, uint32_t hi) { return (lo & 0xFFFFu) | (hi << 16); }
static inline uint32_t tn_ssub16(uint32_t a, uint32_t b)
{
    return tn_lanes((a & 0xFFFFu) - (b & 0xFFFFu), (a >> 16) - (b >> 16));
}
static inline uint32_t tn_sxtab16(uint32_t a, uint32_t b)
{
    return tn_lanes(a + (uint32_t)(int32_t)(int8_t)(uint8_t)b,
                    (a >> 16) + (uint32_t)(int32_t)(int8_t)(uint8_t)(b >> 16));
}
static inline uint32_t tn_uxtab16(uint32_t a, uint32_t b)
{
    return tn_lanes(a + (b & 0xFFu), (a >> 16) + ((b >> 16) & 0xFFu));
}
static inline uint32_t tn_uxtb16_ror8(uint32_t x) { return (x >> 8) & 0x00FF00FFu; }
static inline uint32_t tn_sxtab16_ror8(uint32_t a, uint32_t x) { return tn_sxtab16(a, x >> 8); }
static inline uint32_t tn_uxtab16_ror8(uint32_t a, uint32_t x) { return tn_uxtab16(a, x >> 8); }
#endif

/* An unaligned little-endian 32-bit load (one LDR on the Cortex-M7, which allows unaligned
 * word loads). */
TN_INLINE uint32_t tn_ld32(const void *p)
{
    uint32_t v;
    TN_MEMCPY(&v, p, 4);
    return v;
}

TN_INLINE uint32_t tn_ror(uint32_t x, uint32_t r) { return r ? (x >> r) | (x << (32u - r)) : x; }

/* The b-bit mask in both halfwords. On the Cortex-M7 it is hidden from the optimiser so that it
 * stays in a register: "and rd, rmask, rx, lsr #k" is then one instruction, where a literal
 * mask costs a separate shift. */
TN_INLINE uint32_t tn_lanemask(uint32_t b)
{
    uint32_t m = ((1u << (b & 7u)) - 1u) * 0x00010001u;
#if defined(__ARM_FEATURE_DSP)
    __asm__("" : "+r"(m));
#endif
    return m;
}

/* Lane pair s of a word of packed b-bit unsigned codes: (e_s, e_{s + N/2}), N = 32 / b. */
TN_INLINE uint32_t tn_pair(uint32_t u, uint32_t s, uint32_t b)
{
    if (b == 8u) return s ? tn_uxtb16_ror8(u) : tn_uxtb16(u);
    return (u >> (s * b)) & tn_lanemask(b);
}

/* Position of element r of a group of n = 32 / b in the activation buffer (see the lane order). */
TN_INLINE uint32_t tn_pos(uint32_t r, uint32_t b)
{
    const uint32_t half = 16u / b;
    return 2u * (r % half) + r / half;
}

/* x saturated to [0, 31] (USAT #5): a shift count of tn_m7_out's per-channel FAST 1 forms */
TN_INLINE uint32_t tn_usat5(int32_t x)
{
#if defined(__ARM_FEATURE_DSP)
    return (uint32_t)__usat(x, 5);
#else
    return (uint32_t)(x < 0 ? 0 : (x > 31 ? 31 : x));
#endif
}

/* Requantization in 32-bit arithmetic, identical to tn_requant_k (tn_arith.h) when the exporter
 * checked (kernels_m7.fast_requant) that m0 >= 0 for the TFLite flavours and n0 in [-31, 30]:
 * then every intermediate of tn_requant_k fits in 32 bits (|x * m0 + 2^30| >> 31 < 2^31) and a
 * shift by 32 or more never happens. */
TN_INLINE int32_t tn_m7_requant(int32_t phi, int32_t m0, int32_t n, uint32_t rounding)
{
    if (rounding == TN_TFL_DOUBLE) {
        const int32_t x = n > 0 ? tn_shl32(phi, (uint32_t)n) : phi;
        const int32_t h = (int32_t)(((int64_t)x * (int64_t)m0 + ((int64_t)1 << 30)) >> 31);
        if (n >= 0) return h;
        {
            const uint32_t right = (uint32_t)(-n), mask = (1u << right) - 1u;
            const uint32_t threshold = (mask >> 1) + (h < 0 ? 1u : 0u);
            return (h >> right) + (((uint32_t)h & mask) > threshold ? 1 : 0);
        }
    }
    if (rounding == TN_TFL_SINGLE) {
        const int32_t total = 31 - n;
        return (int32_t)(((int64_t)phi * (int64_t)m0 + ((int64_t)1 << (total - 1))) >> total);
    }
    { /* floor: high word of (phi << (n + 1)) * m0, then >> -(n + 1) */
        const int32_t t = n + 1 > 0 ? tn_shl32(phi, (uint32_t)(n + 1)) : phi;
        const int32_t h = (int32_t)(((int64_t)t * (int64_t)m0) >> 32);
        return n + 1 < 0 ? h >> (uint32_t)(-(n + 1)) : h;
    }
}

/* tn_m7_requant for a per-channel multiplier read at run time when n0 has both signs among the
 * channels (FAST 1: one channel of a trained layer with n0 >= 0 suffices; each n0 in [-31, 30],
 * checked at export). Floor: tn_m7_requant's form with its two branches on n0 replaced by a
 * saturation, left = max(n0 + 1, 0) <= 31, and a subtraction, right = left - (n0 + 1) =
 * max(-(n0 + 1), 0) <= 30 (one of them 0): LSL by a register wraps modulo 2^32 as tn_shl32 for
 * a shift below 32. Double rounding (m0 >= 0): x = acc << left, left = max(n0, 0) <= 30, h its
 * doubling high multiply, then the rounding divide by right = left - n0 = max(-n0, 0) <= 31;
 * right = 0 leaves h (mask 0: no increment). A uniform multiplier (a constant n0) keeps
 * tn_m7_requant, whose branches fold away. */
TN_INLINE int32_t tn_m7_requant_pc(int32_t acc, int32_t m0, int32_t n0, uint32_t rounding)
{
    if (rounding == TN_FLOOR) {
        const int32_t t = n0 + 1;
        const uint32_t left = tn_usat5(t);
        return tn_smmul((int32_t)((uint32_t)acc << left), m0) >> (left - (uint32_t)t);
    }
    if (rounding == TN_TFL_DOUBLE) {
        const uint32_t left = tn_usat5(n0);
        const int32_t x = (int32_t)((uint32_t)acc << left);
        const int32_t h = (int32_t)(((int64_t)x * (int64_t)m0 + ((int64_t)1 << 30)) >> 31);
        const uint32_t right = left - (uint32_t)n0, mask = (1u << right) - 1u;
        const uint32_t threshold = (mask >> 1) + ((uint32_t)h >> 31);
        return (h >> right) + (((uint32_t)h & mask) > threshold ? 1 : 0);
    }
    return tn_m7_requant(acc, m0, n0, rounding);
}

/* The requantized (or raw) and clamped output of an accumulator, as tn_value of tinyopt_nn.c.
 * FAST: tn_m7_requant applies (2: moreover every n0 < 0; 3: moreover every n0 >= -30 and every
 * accumulator of the layer is below 2^30 in magnitude, kernels_m7.acc_bound; 1 alone: n0 of
 * either sign, a branch-free form per channel for the floor and double roundings), and
 * [LOZ, HIZ] = [act_lo, act_hi] - zero point fit in int32.
 * M0 / N0: the layer's single multiplier (NM == 1), or ignored (per channel, read at c). */
TN_INLINE int32_t tn_m7_out(const tn_layer_t *l, int32_t acc, uint32_t c, uint32_t req,
                            uint32_t per_channel_m, uint32_t rounding, uint32_t FAST,
                            int32_t M0, int32_t N0, int32_t LOZ, int32_t HIZ, int32_t ZP)
{
    int64_t y;
    if (req && FAST) {
        const int32_t m0 = per_channel_m ? l->m0[c] : M0;
        const int32_t n0 = per_channel_m ? (int32_t)l->n0[c] : N0;
        int32_t r;
        if (FAST == 3u && rounding == TN_TFL_DOUBLE) {
            /* every n0 in [-30, -1] and |acc| < 2^30 (a bound checked at export): the doubling
             * high multiply is SMMULR of 2 acc (exact; m0 >= 0: never its saturating case), the
             * rounding divide by 2^-n0 (half away from zero) one add of half minus the sign and
             * one shift: |h| <= |acc| + 1, so h + 2^(-n0 - 1) - 1 stays in int32 */
            const int32_t h = tn_smmulr((int32_t)((uint32_t)acc << 1), m0);
            const uint32_t right = (uint32_t)(-n0);
            r = (h + (int32_t)(1u << (right - 1u)) + (h >> 31)) >> right;
        } else if (FAST == 2u && rounding == TN_TFL_DOUBLE) {
            /* every n0 < 0 (checked at export): no left shift; right shift by -n0 >= 1 */
            const int32_t h = (int32_t)(((int64_t)acc * (int64_t)m0 + ((int64_t)1 << 30)) >> 31);
            const uint32_t right = (uint32_t)(-n0), mask = (1u << right) - 1u;
            const uint32_t threshold = (mask >> 1) + ((uint32_t)h >> 31);
            r = (h >> right) + (((uint32_t)h & mask) > threshold ? 1 : 0);
        } else if (FAST == 2u && rounding == TN_FLOOR) {
            /* every n0 < 0 (checked at export): tn_m7_requant's floor form never shifts left,
             * its high word is SMMUL, its right shift -(n0 + 1) = ~n0 >= 0. The same arithmetic
             * without the branches on n0 that a per-channel multiplier (ICN: BN's gammas
             * differ) kept at run time: about six instructions per output fewer */
            r = tn_smmul(acc, m0) >> (uint32_t)~n0;
        } else if (FAST == 1u && per_channel_m) {
            r = tn_m7_requant_pc(acc, m0, n0, rounding);
        } else {
            r = tn_m7_requant(acc, m0, n0, rounding);
        }
        r = r < LOZ ? LOZ : (r > HIZ ? HIZ : r);
        return r + ZP;
    }
    if (!req) {
        y = acc;
    } else {
        const uint32_t k = per_channel_m ? c : 0u;
        y = tn_requant_k(acc, l->m0[k], l->n0[k], (uint8_t)rounding) + l->out.zero_point;
    }
    if (y < l->act_lo) y = l->act_lo;
    if (y > l->act_hi) y = l->act_hi;
    return (int32_t)y;
}

/* The requantization constants of a step, as one macro argument list. */
#define TN_RQ_ARGS uint32_t FAST, int32_t M0, int32_t N0, int32_t LOZ, int32_t HIZ, int32_t ZP
#define TN_RQ FAST, M0, N0, LOZ, HIZ, ZP

/* tn_m7_out for an 8-bit output. When the layer has one multiplier (per_channel_m = 0), FAST = 3
 * (TFLite double rounding, |acc| < 2^30), N0 in [-20, -1] and the clamp is the whole 8-bit range,
 * the zero point goes into the rounding constant and the clamp is one SSAT / USAT:
 * ((h + 2^(k-1) + [h < 0]) >> k) + ZP = (h + 2^(k-1) + ZP 2^k + [h < 0]) >> k (an arithmetic
 * shift is a floor division), and no add leaves int32 (|h| <= 2^30 + 1, |ZP 2^k| < 2^28): one
 * instruction less per output. Else tn_m7_out itself. */
TN_INLINE int32_t tn_m7_out8(const tn_layer_t *l, int32_t acc, uint32_t c, uint32_t req,
                             uint32_t per_channel_m, uint32_t rounding, TN_RQ_ARGS)
{
    if (req && FAST == 3u && rounding == TN_TFL_DOUBLE && !per_channel_m && N0 >= -20 && N0 <= -1
        && ((LOZ + ZP == -128 && HIZ + ZP == 127) || (LOZ + ZP == 0 && HIZ + ZP == 255))) {
        const int32_t h = tn_smmulr((int32_t)((uint32_t)acc << 1), M0);
        const uint32_t right = (uint32_t)(-N0);
        const int32_t cst = (int32_t)((1u << (right - 1u)) + ((uint32_t)ZP << right));
        return tn_sat8((h + cst + (h >> 31)) >> right, LOZ + ZP == -128);
    }
    return tn_m7_out(l, acc, c, req, per_channel_m, rounding, TN_RQ);
}

/* Write output element idx of a compute step: plain, or through the fused residual ADD (which
 * reads element idx of the other addend just before writing element idx, as tn_compute) in the
 * portable arithmetic: the gemm kernel's epilogue when kernels_m7.add_plan refuses the ADD
 * (else tn_m7_add_fused, tn_m7_add.h), and the depthwise kernels'. */
TN_INLINE void tn_m7_emit(const tn_layer_t *l, const uint8_t *other, uint8_t *out, uint32_t idx,
                          int32_t v, uint32_t fuse_add, uint32_t ob)
{
    if (fuse_add) {
        const int32_t dv = (int32_t)((uint32_t)v - (uint32_t)l->out.zero_point);
        const int32_t dw = (int32_t)((uint32_t)tn_get(other, idx, l->out.bits, l->out.is_signed)
                                     - (uint32_t)l->add_other_zp);
        v = tn_add1(l->add_m0, l->add_n0, l->add_rounding, l->left_shift,
                    l->add_slot ? dw : dv, l->add_slot ? dv : dw, l->add_out_zp, l->add_lo,
                    l->add_hi);
    }
    tn_set(out, idx, ob, (uint32_t)v);
}

/* Store n consecutive outputs v[0 .. n) as element idx .. idx + n of a packed OB-bit tensor.
 * Sub-byte outputs whose run starts and ends on byte boundaries are packed in registers and
 * written byte by byte (no read-modify-write); other widths go element by element. */
TN_INLINE void tn_m7_store(uint8_t *out, uint32_t idx, const int32_t *v, uint32_t n, uint32_t OB)
{
    if (OB < 8u && (idx * OB) % 8u == 0u && (n * OB) % 8u == 0u) {
        const uint32_t per = 8u / OB, mask = (1u << OB) - 1u;
        uint8_t *p = out + idx * OB / 8u;
        for (uint32_t j = 0; j < n / per; j++) {
            uint32_t byte = 0;
            TN_UNROLL
            for (uint32_t e = 0; e < per; e++)
                byte |= ((uint32_t)v[j * per + e] & mask) << (e * OB);
            p[j] = (uint8_t)byte;
        }
        return;
    }
    for (uint32_t j = 0; j < n; j++) tn_set(out, idx + j, OB, (uint32_t)v[j]);
}

/* A fused max pool's pooled pixel: its n maxima best[0 .. n) clamped to the layer's output range
 * (l->pool_lo .. pool_hi) and stored as elements idx .. idx + n of the OB-bit output (the pooled
 * gemm, tn_m7_sub's and tn_m7_subconv's pooled pixels). */
TN_INLINE void tn_m7_pool_out(const tn_layer_t *l, uint8_t *out, uint32_t idx, int32_t *best,
                              uint32_t n, uint32_t OB)
{
    for (uint32_t c = 0; c < n; c++) {
        int32_t y = best[c];
        if (y < l->pool_lo) y = l->pool_lo;
        if (y > l->pool_hi) y = l->pool_hi;
        best[c] = y;
    }
    tn_m7_store(out, idx, best, n, OB);
}

#endif

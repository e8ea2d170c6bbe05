/* tn_m7.h: kernels specialised per layer for the Cortex-M7 (ARMv7E-M DSP extension).
 *
 * The code generator (tinyopt/deploy/kernels_m7.py) writes one function per step that calls one
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
#ifndef TN_M7_H
#define TN_M7_H

#include <string.h>
#include "tn_arith.h"

#if defined(__GNUC__)
#define TN_ALIGN4 __attribute__((aligned(4)))
/* -ffreestanding turns memcpy into a call; the builtin is one LDR / STR */
#define TN_MEMCPY __builtin_memcpy
#define TN_PRAGMA(x) _Pragma(#x)
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

/* The signed 16-bit lanes of a word. */
static inline int32_t tn_lo16(uint32_t x) { return (int32_t)(int16_t)(uint16_t)x; }
static inline int32_t tn_hi16(uint32_t x) { return (int32_t)(int16_t)(uint16_t)(x >> 16); }

#if defined(__ARM_FEATURE_DSP)
#include <arm_acle.h>
#define tn_uxtb16(x) ((uint32_t)__uxtb16(x))
#define tn_smlad(a, b, c) ((int32_t)__smlad((int32_t)(a), (int32_t)(b), (c)))
#define tn_smlabb(a, b, c) ((int32_t)__smlabb((int32_t)(a), (int32_t)(b), (c)))
#define tn_smlatt(a, b, c) ((int32_t)__smlatt((int32_t)(a), (int32_t)(b), (c)))
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
#else
static inline uint32_t tn_uxtb16(uint32_t x) { return x & 0x00FF00FFu; }
static inline int32_t tn_smlad(uint32_t a, uint32_t b, int32_t c)
{
    return (int32_t)((uint32_t)c + (uint32_t)(tn_lo16(a) * tn_lo16(b))
                     + (uint32_t)(tn_hi16(a) * tn_hi16(b)));
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

/* The requantized (or raw) and clamped output of an accumulator, as tn_value of tinyopt_nn.c.
 * FAST: tn_m7_requant applies (2: moreover every n0 < 0), and [LOZ, HIZ] = [act_lo, act_hi] - zero point fit in int32.
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
        if (FAST == 2u && rounding == TN_TFL_DOUBLE) {
            /* every n0 < 0 (checked at export): no left shift; right shift by -n0 >= 1 */
            const int32_t h = (int32_t)(((int64_t)acc * (int64_t)m0 + ((int64_t)1 << 30)) >> 31);
            const uint32_t right = (uint32_t)(-n0), mask = (1u << right) - 1u;
            const uint32_t threshold = (mask >> 1) + ((uint32_t)h >> 31);
            r = (h >> right) + (((uint32_t)h & mask) > threshold ? 1 : 0);
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

/* Write output element idx of a compute step: plain, or through the fused residual ADD (which
 * reads element idx of the other addend just before writing element idx, as tn_compute). */
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

/* im2col of output pixel (oy, ox) of a convolution (dense: one pixel, the whole input): the
 * kk = kh * kw * c window values x - z_x (padded taps: 0 - z_x with pad_zero, else 0) as int16
 * in the lane order of b-bit weights, zero-filled up to kp (a multiple of 32 / b).
 * Returns sum x' (for the weight zero point). */
TN_INLINE int32_t tn_m7_im2col(const uint8_t *in, int16_t *buf, int32_t oy, int32_t ox,
                               int32_t H, int32_t W, uint32_t C, int32_t KH, int32_t KW,
                               int32_t SH, int32_t SW, int32_t PT, int32_t PL, uint32_t XB,
                               uint32_t XS, int32_t ZX, uint32_t PADZERO, uint32_t WB, uint32_t KP,
                               uint32_t INSIDE)
{
    const uint32_t n = 32u / WB;
    const int32_t y0 = oy * SH - PT, x0 = ox * SW - PL;
    const int32_t padv = PADZERO ? -ZX : 0;
    int32_t sum = 0;
    uint32_t k = 0;
    for (int32_t ky = 0; ky < KH; ky++) {
        const int32_t iy = y0 + ky;
        for (int32_t kx = 0; kx < KW; kx++) {
            const int32_t ix = x0 + kx;
            if (INSIDE || (iy >= 0 && iy < H && ix >= 0 && ix < W)) {
                const uint32_t base = ((uint32_t)iy * (uint32_t)W + (uint32_t)ix) * C;
                if (XB == 8u && n == 4u && (k & 3u) == 0u) {
                    /* 4 bytes at a time: SXTAB16 / UXTAB16 add the offset -z_x while they
                     * widen, in exactly the lane order of 8-bit weights */
                    const uint32_t off = ((uint32_t)(-ZX) & 0xFFFFu) * 0x00010001u;
                    uint32_t ci = 0;
                    for (; ci + 4u <= C; ci += 4u, k += 4u) {
                        const uint32_t v = tn_ld32(in + base + ci);
                        const uint32_t a = XS ? tn_sxtab16(off, v) : tn_uxtab16(off, v);
                        const uint32_t b = XS ? tn_sxtab16_ror8(off, v) : tn_uxtab16_ror8(off, v);
                        TN_MEMCPY(buf + k, &a, 4);
                        TN_MEMCPY(buf + k + 2u, &b, 4);
                        sum = tn_smlad(a, 0x00010001u, sum);
                        sum = tn_smlad(b, 0x00010001u, sum);
                    }
                    for (; ci < C; ci++, k++) {
                        const int32_t v = tn_get(in, base + ci, XB, XS) - ZX;
                        buf[(k & ~(n - 1u)) + tn_pos(k & (n - 1u), WB)] = (int16_t)v;
                        sum += v;
                    }
                } else if (XB == WB && XB < 8u && !XS && (k & (n - 1u)) == 0u
                           && (base * XB) % 8u == 0u) {
                    /* inputs packed like the weights: a word of n inputs unpacks with the
                     * weights' own lane pairs, already in buffer order */
                    const uint32_t zx2 = ((uint32_t)ZX & 0xFFFFu) * 0x00010001u;
                    uint32_t ci = 0;
                    (void)zx2;
                    for (; ci + n <= C; ci += n, k += n) {
                        const uint32_t v = tn_ld32(in + (base + ci) * XB / 8u);
                        TN_UNROLL
                        for (uint32_t s2 = 0; s2 < n / 2u; s2++) {
                            uint32_t p = tn_pair(v, s2, XB);
                            if (ZX != 0) p = tn_ssub16(p, zx2);
                            TN_MEMCPY(buf + k + 2u * s2, &p, 4);
                            sum = tn_smlad(p, 0x00010001u, sum);
                        }
                    }
                    for (; ci < C; ci++, k++) {
                        const int32_t v = tn_get(in, base + ci, XB, XS) - ZX;
                        buf[(k & ~(n - 1u)) + tn_pos(k & (n - 1u), WB)] = (int16_t)v;
                        sum += v;
                    }
                } else {
                    for (uint32_t ci = 0; ci < C; ci++, k++) {
                        const int32_t v = tn_get(in, base + ci, XB, XS) - ZX;
                        buf[(k & ~(n - 1u)) + tn_pos(k & (n - 1u), WB)] = (int16_t)v;
                        sum += v;
                    }
                }
            } else {
                for (uint32_t ci = 0; ci < C; ci++, k++)
                    buf[(k & ~(n - 1u)) + tn_pos(k & (n - 1u), WB)] = (int16_t)padv;
                sum += padv * (int32_t)C;
            }
        }
    }
    for (; k < KP; k++)
        buf[(k & ~(n - 1u)) + tn_pos(k & (n - 1u), WB)] = 0;
    return sum;
}

/* Accumulators of two output channels (rows w0, w1) at two pixels (buffers x0, x1), nw words of
 * b-bit weights: a[0] = (c, p0), a[1] = (c + 1, p0), a[2] = (c, p1), a[3] = (c + 1, p1). */
TN_INLINE void tn_m7_dot2x2(const uint8_t *w0, const uint8_t *w1, const int16_t *x0,
                            const int16_t *x1, uint32_t nw, uint32_t b, int32_t *a)
{
    const uint32_t half = 16u / b;
    int32_t a0 = a[0], a1 = a[1], a2 = a[2], a3 = a[3];
    for (uint32_t g = 0; g < nw; g++) {
        const uint32_t u0 = tn_ld32(w0 + 4u * g), u1 = tn_ld32(w1 + 4u * g);
        TN_UNROLL
        for (uint32_t s = 0; s < half; s++) {
            const uint32_t p0 = tn_pair(u0, s, b), p1 = tn_pair(u1, s, b);
            const uint32_t xa = tn_ld32(x0 + 2u * (g * half + s));
            const uint32_t xb = tn_ld32(x1 + 2u * (g * half + s));
            a0 = tn_smlad(p0, xa, a0);
            a1 = tn_smlad(p1, xa, a1);
            a2 = tn_smlad(p0, xb, a2);
            a3 = tn_smlad(p1, xb, a3);
        }
    }
    a[0] = a0; a[1] = a1; a[2] = a2; a[3] = a3;
}

/* One channel, one pixel (the odd channel or pixel left over). */
TN_INLINE int32_t tn_m7_dot1(const uint8_t *w0, const int16_t *x0, uint32_t nw, uint32_t b,
                             int32_t a0)
{
    const uint32_t half = 16u / b;
    for (uint32_t g = 0; g < nw; g++) {
        const uint32_t u0 = tn_ld32(w0 + 4u * g);
        TN_UNROLL
        for (uint32_t s = 0; s < half; s++)
            a0 = tn_smlad(tn_pair(u0, s, b), tn_ld32(x0 + 2u * (g * half + s)), a0);
    }
    return a0;
}

/* Two channels, one pixel (dense layers; the odd pixel of a convolution). */
TN_INLINE void tn_m7_dot2x1(const uint8_t *w0, const uint8_t *w1, const int16_t *x0,
                            uint32_t nw, uint32_t b, int32_t *a)
{
    const uint32_t half = 16u / b;
    int32_t a0 = a[0], a1 = a[1];
    for (uint32_t g = 0; g < nw; g++) {
        const uint32_t u0 = tn_ld32(w0 + 4u * g), u1 = tn_ld32(w1 + 4u * g);
        TN_UNROLL
        for (uint32_t s = 0; s < half; s++) {
            const uint32_t xa = tn_ld32(x0 + 2u * (g * half + s));
            a0 = tn_smlad(tn_pair(u0, s, b), xa, a0);
            a1 = tn_smlad(tn_pair(u1, s, b), xa, a1);
        }
    }
    a[0] = a0; a[1] = a1;
}

/* The outputs v[c] (requantized, clamped) of all CO channels at one or two pixels whose
 * im2col buffers are x0, x1 (sum0, sum1: their sums of x'). */
TN_INLINE void tn_m7_channels(const tn_layer_t *l, const int16_t *x0, const int16_t *x1,
                              int32_t sum0, int32_t sum1, uint32_t two, int32_t *v0, int32_t *v1,
                              uint32_t CO, uint32_t RB, uint32_t NW, uint32_t WB, uint32_t NWZP,
                              uint32_t HASZW, int32_t ZW, uint32_t REQ, uint32_t NM,
                              uint32_t ROUND, TN_RQ_ARGS)
{
    uint32_t c = 0;
    for (; c + 2u <= CO; c += 2u) {
        const uint8_t *w0 = l->w + c * RB, *w1 = w0 + RB;
        const int32_t z0 = HASZW ? (NWZP == 1u ? ZW : (int32_t)l->wzp[c]) : 0;
        const int32_t z1 = HASZW ? (NWZP == 1u ? ZW : (int32_t)l->wzp[c + 1u]) : 0;
        const int32_t b0 = l->bias[c], b1 = l->bias[c + 1u];
        int32_t a[4];
        a[0] = (int32_t)((uint32_t)b0 - (uint32_t)z0 * (uint32_t)sum0);
        a[1] = (int32_t)((uint32_t)b1 - (uint32_t)z1 * (uint32_t)sum0);
        if (two) {
            a[2] = (int32_t)((uint32_t)b0 - (uint32_t)z0 * (uint32_t)sum1);
            a[3] = (int32_t)((uint32_t)b1 - (uint32_t)z1 * (uint32_t)sum1);
            tn_m7_dot2x2(w0, w1, x0, x1, NW, WB, a);
            v1[c] = tn_m7_out(l, a[2], c, REQ, NM == 1u ? 0u : 1u, ROUND, TN_RQ);
            v1[c + 1u] = tn_m7_out(l, a[3], c + 1u, REQ, NM == 1u ? 0u : 1u, ROUND, TN_RQ);
        } else {
            tn_m7_dot2x1(w0, w1, x0, NW, WB, a);
        }
        v0[c] = tn_m7_out(l, a[0], c, REQ, NM == 1u ? 0u : 1u, ROUND, TN_RQ);
        v0[c + 1u] = tn_m7_out(l, a[1], c + 1u, REQ, NM == 1u ? 0u : 1u, ROUND, TN_RQ);
    }
    if (c < CO) {
        const uint8_t *w0 = l->w + c * RB;
        const int32_t z0 = HASZW ? (NWZP == 1u ? ZW : (int32_t)l->wzp[c]) : 0;
        const int32_t b0 = l->bias[c];
        v0[c] = tn_m7_out(l, tn_m7_dot1(w0, x0, NW, WB,
                                        (int32_t)((uint32_t)b0 - (uint32_t)z0 * (uint32_t)sum0)),
                          c, REQ, NM == 1u ? 0u : 1u, ROUND, TN_RQ);
        if (two)
            v1[c] = tn_m7_out(l, tn_m7_dot1(w0, x1, NW, WB,
                                            (int32_t)((uint32_t)b0
                                                      - (uint32_t)z0 * (uint32_t)sum1)),
                              c, REQ, NM == 1u ? 0u : 1u, ROUND, TN_RQ);
    }
}

/* Convolution, pointwise or dense layer (dense: H = W = KH = KW = 1, C = all input elements),
 * optionally fused with the max pool (MODE 1) or the residual ADD (MODE 2) after it.
 * buf: 2 * KP int16, 4-byte aligned; v: 2 * CO int32. Output order and the reads before each
 * write are those of tn_compute (the memory plan's sliding writes rely on them): outputs are
 * written pixel by pixel in row-major order, each after every read of its window (two pixels'
 * windows are read before the first of them is written: only earlier, never later reads). */
TN_INLINE void tn_m7_gemm(const tn_layer_t *l, const uint8_t *in, const uint8_t *other,
                          uint8_t *out, int16_t *buf, int32_t *v,
                          int32_t H, int32_t W, uint32_t C, int32_t OH, int32_t OW, uint32_t CO,
                          int32_t KH, int32_t KW, int32_t SH, int32_t SW, int32_t PT, int32_t PL,
                          uint32_t XB, uint32_t XS, int32_t ZX, uint32_t PADZERO, uint32_t WB,
                          uint32_t RB, uint32_t NWZP, uint32_t HASZW, int32_t ZW, uint32_t REQ,
                          uint32_t NM, uint32_t ROUND, uint32_t OB, uint32_t MODE,
                          int32_t PH, int32_t PW, int32_t PSH, int32_t PSW, int32_t PPT,
                          int32_t PPL, int32_t POH, int32_t POW, uint32_t INSIDE,
                          TN_RQ_ARGS)
{
    const uint32_t n = 32u / WB, nw = ((uint32_t)(KH * KW) * C + n - 1u) / n, kp = nw * n;
    int16_t *x0 = buf, *x1 = buf + kp;
    int32_t *v0 = v, *v1 = v + CO;
    if (MODE != 1u) {
        const uint32_t np = (uint32_t)(OH * OW);
        uint32_t p = 0;
        for (; p + 2u <= np; p += 2u) {
            const int32_t s0 = tn_m7_im2col(in, x0, (int32_t)(p / (uint32_t)OW),
                                            (int32_t)(p % (uint32_t)OW), H, W, C, KH, KW, SH,
                                            SW, PT, PL, XB, XS, ZX, PADZERO, WB, kp, INSIDE);
            const int32_t s1 = tn_m7_im2col(in, x1, (int32_t)((p + 1u) / (uint32_t)OW),
                                            (int32_t)((p + 1u) % (uint32_t)OW), H, W, C, KH, KW,
                                            SH, SW, PT, PL, XB, XS, ZX, PADZERO, WB, kp, INSIDE);
            tn_m7_channels(l, x0, x1, s0, s1, 1u, v0, v1, CO, RB, nw, WB, NWZP, HASZW, ZW, REQ, NM,
                           ROUND, TN_RQ);
            if (MODE == 2u) {
                for (uint32_t c = 0; c < CO; c++)
                    tn_m7_emit(l, other, out, p * CO + c, v0[c], 1u, OB);
                for (uint32_t c = 0; c < CO; c++)
                    tn_m7_emit(l, other, out, (p + 1u) * CO + c, v1[c], 1u, OB);
            } else {
                tn_m7_store(out, p * CO, v0, CO, OB);
                tn_m7_store(out, (p + 1u) * CO, v1, CO, OB);
            }
        }
        if (p < np) {
            const int32_t s0 = tn_m7_im2col(in, x0, (int32_t)(p / (uint32_t)OW),
                                            (int32_t)(p % (uint32_t)OW), H, W, C, KH, KW, SH,
                                            SW, PT, PL, XB, XS, ZX, PADZERO, WB, kp, INSIDE);
            tn_m7_channels(l, x0, x1, s0, 0, 0u, v0, v1, CO, RB, nw, WB, NWZP, HASZW, ZW, REQ, NM,
                           ROUND, TN_RQ);
            for (uint32_t c = 0; c < CO; c++)
                tn_m7_emit(l, other, out, p * CO + c, v0[c], MODE == 2u, OB);
        }
        return;
    }
    /* fused max pool: per pooled pixel, the max over its window's (in-bounds) layer outputs,
     * two window pixels at a time; v holds [best CO | pixel CO | pixel CO] */
    {
        int32_t *best = v, *va = v + CO, *vb = v + 2u * CO;
        uint32_t idx = 0;
        for (int32_t py = 0; py < POH; py++)
            for (int32_t px = 0; px < POW; px++) {
                int32_t pend = -1, pending_y = 0, pending_x = 0, s0 = 0;
                for (uint32_t c = 0; c < CO; c++) best[c] = INT32_MIN;
                for (int32_t dy = 0; dy < PH; dy++) {
                    const int32_t oy = py * PSH - PPT + dy;
                    if (oy < 0 || oy >= OH) continue;
                    for (int32_t dx = 0; dx < PW; dx++) {
                        const int32_t ox = px * PSW - PPL + dx;
                        if (ox < 0 || ox >= OW) continue;
                        if (pend < 0) {
                            pend = 1; pending_y = oy; pending_x = ox;
                            continue;
                        }
                        s0 = tn_m7_im2col(in, x0, pending_y, pending_x, H, W, C, KH, KW, SH,
                                          SW, PT, PL, XB, XS, ZX, PADZERO, WB, kp, INSIDE);
                        {
                            const int32_t s1 = tn_m7_im2col(in, x1, oy, ox, H, W, C, KH, KW, SH,
                                                            SW, PT, PL, XB, XS, ZX, PADZERO, WB,
                                                            kp, INSIDE);
                            tn_m7_channels(l, x0, x1, s0, s1, 1u, va, vb, CO, RB, nw, WB, NWZP,
                                           HASZW, ZW, REQ, NM, ROUND, TN_RQ);
                        }
                        for (uint32_t c = 0; c < CO; c++) {
                            const int32_t m = va[c] > vb[c] ? va[c] : vb[c];
                            if (m > best[c]) best[c] = m;
                        }
                        pend = -1;
                    }
                }
                if (pend >= 0) {
                    s0 = tn_m7_im2col(in, x0, pending_y, pending_x, H, W, C, KH, KW, SH, SW, PT,
                                      PL, XB, XS, ZX, PADZERO, WB, kp, INSIDE);
                    tn_m7_channels(l, x0, x1, s0, 0, 0u, va, vb, CO, RB, nw, WB, NWZP, HASZW,
                                   ZW, REQ, NM, ROUND, TN_RQ);
                    for (uint32_t c = 0; c < CO; c++)
                        if (va[c] > best[c]) best[c] = va[c];
                }
                for (uint32_t c = 0; c < CO; c++) {
                    int32_t y = best[c];
                    if (y < l->pool_lo) y = l->pool_lo;
                    if (y > l->pool_hi) y = l->pool_hi;
                    best[c] = y;
                }
                tn_m7_store(out, idx, best, CO, OB);
                idx += CO;
            }
    }
}

/* Depthwise layer (depth multiplier 1) with weights of b in {2, 4, 8} bits and C a multiple of
 * N = 32 / b (inputs of any width up to 8 bits; of the weights' width, a word at a time): N channels at a time, one word of inputs and one
 * word of weights per tap, two channels per lane pair (SMLABB / SMLATT); the weights enter as
 * w - z_w (SSUB16), the inputs as x - z_x. Sub-byte inputs are unsigned (CMix-NN). acc: N int32.
 * Outputs are written in tn_compute's order (pixel by pixel, channels in order), each group of
 * N after the reads of its windows. INTERIOR: the window lies inside the image (no checks). */
TN_INLINE void tn_m7_dw_group(const tn_layer_t *l, const uint8_t *in, int32_t *acc, uint32_t cg,
                              int32_t y0, int32_t x0, uint32_t INTERIOR, int32_t H, int32_t W,
                              uint32_t C, int32_t KH, int32_t KW, uint32_t B, uint32_t XB,
                              uint32_t XS, int32_t ZX, uint32_t PADZERO, uint32_t RB,
                              uint32_t NWZP, int32_t ZW, uint32_t ALLONES)
{
    /* the input word path: inputs packed like the weights (8-bit, or unsigned sub-byte); else
     * each input element is read on its own (XB bits) and paired in the weights' lane order */
    const uint32_t wordx = XB == B && (B == 8u || !XS);
    /* n channels per word in n / 2 lane pairs, taken in passes of at most 4 pairs (8
     * accumulators stay in registers; 2-bit words are read twice) */
    const uint32_t n = 32u / B, half = n / 2u, pairs = half < 4u ? half : 4u;
    const uint32_t zx2 = ((uint32_t)ZX & 0xFFFFu) * 0x00010001u;
    const uint32_t nzx2 = ((uint32_t)(-ZX) & 0xFFFFu) * 0x00010001u;
    const uint8_t *wg = l->w + cg * n * B / 8u;
    /* the pixel (y0, x0) of this channel group (may lie outside the image: only formed, read
     * at taps inside it) */
    const int32_t e0 = (y0 * W + x0) * (int32_t)C + (int32_t)(cg * n);
    const uint8_t *xg = in + (wordx ? e0 * (int32_t)B / 8 : 0);
    (void)zx2;
#if defined(__GNUC__)
#pragma GCC unroll 1
#endif
    for (uint32_t p = 0; p < half / pairs; p++) {
        uint32_t zw2[4];
        int32_t a[8];
        TN_UNROLL
        for (uint32_t j = 0; j < pairs; j++) {
            const uint32_t s = p * pairs + j;
            if (NWZP == 1u)
                zw2[j] = ((uint32_t)ZW & 0xFFFFu) * 0x00010001u;
            else
                zw2[j] = (uint32_t)l->wzp[cg * n + s] | ((uint32_t)l->wzp[cg * n + s + half] << 16);
            a[j] = l->bias[cg * n + s];
            a[j + pairs] = l->bias[cg * n + s + half];
        }
        TN_UNROLL
        for (int32_t ky = 0; ky < KH; ky++) {
            TN_UNROLL
            for (int32_t kx = 0; kx < KW; kx++) {
                const int inside = INTERIOR || (y0 + ky >= 0 && y0 + ky < H && x0 + kx >= 0
                                                && x0 + kx < W);
                uint32_t xu = 0, wu;
                if (!inside && (!PADZERO || ZX == 0))
                    continue; /* a padded tap holding the zero point (or 0 = z_x) adds nothing */
                wu = tn_ld32(wg + (uint32_t)(ky * KW + kx) * RB);
                if (inside && wordx)
                    xu = tn_ld32(xg + (ky * W + kx) * (int32_t)C * (int32_t)B / 8);
                TN_UNROLL
                for (uint32_t j = 0; j < pairs; j++) {
                    const uint32_t s = p * pairs + j;
                    uint32_t xp;
                    if (!inside) {
                        xp = nzx2; /* integer 0 padding: x' = -z_x */
                    } else if (!wordx) {
                        const uint32_t e = (uint32_t)(e0 + (ky * W + kx) * (int32_t)C);
                        const int32_t lo = tn_get(in, e + s, XB, XS) - ZX;
                        const int32_t hi = tn_get(in, e + s + half, XB, XS) - ZX;
                        xp = ((uint32_t)lo & 0xFFFFu) | ((uint32_t)hi << 16);
                    } else if (B == 8u) {
                        xp = s ? (XS ? tn_sxtab16_ror8(nzx2, xu) : tn_uxtab16_ror8(nzx2, xu))
                               : (XS ? tn_sxtab16(nzx2, xu) : tn_uxtab16(nzx2, xu));
                    } else {
                        xp = tn_pair(xu, s, B);
                        if (ZX != 0) xp = tn_ssub16(xp, zx2);
                    }
                    if (ALLONES) { /* weights all 1 with z_w = 0: a sum (TFLite's MEAN) */
                        a[j] = (int32_t)((uint32_t)a[j] + (uint32_t)tn_lo16(xp));
                        a[j + pairs] = (int32_t)((uint32_t)a[j + pairs] + (uint32_t)tn_hi16(xp));
                    } else {
                        const uint32_t wp = tn_ssub16(tn_pair(wu, s, B), zw2[j]);
                        a[j] = tn_smlabb(wp, xp, a[j]);
                        a[j + pairs] = tn_smlatt(wp, xp, a[j + pairs]);
                    }
                }
            }
        }
        TN_UNROLL
        for (uint32_t j = 0; j < pairs; j++) {
            acc[p * pairs + j] = a[j];
            acc[p * pairs + j + half] = a[j + pairs];
        }
    }
}

TN_INLINE void tn_m7_depthwise(const tn_layer_t *l, const uint8_t *in, const uint8_t *other,
                               uint8_t *out, int32_t H, int32_t W, uint32_t C, int32_t OH,
                               int32_t OW, int32_t KH, int32_t KW, int32_t SH, int32_t SW,
                               int32_t PT, int32_t PL, uint32_t B, uint32_t XB, uint32_t XS,
                               int32_t ZX, uint32_t PADZERO, uint32_t RB, uint32_t NWZP,
                               uint32_t REQ,
                               uint32_t NM, uint32_t ROUND, uint32_t OB, uint32_t FUSEADD,
                               int32_t ZW, uint32_t ALLONES, TN_RQ_ARGS)
{
    const uint32_t n = 32u / B;
    int32_t acc[16];
    uint32_t idx = 0;
    for (int32_t oy = 0; oy < OH; oy++) {
        const int32_t y0 = oy * SH - PT;
        const int rows_in = y0 >= 0 && y0 + KH <= H;
        for (int32_t ox = 0; ox < OW; ox++) {
            const int32_t x0 = ox * SW - PL;
            const int interior = rows_in && x0 >= 0 && x0 + KW <= W;
            for (uint32_t cg = 0; cg < C / n; cg++) {
                if (interior)
                    tn_m7_dw_group(l, in, acc, cg, y0, x0, 1u, H, W, C, KH, KW, B, XB, XS,
                                   ZX, PADZERO, RB, NWZP, ZW, ALLONES);
                else
                    tn_m7_dw_group(l, in, acc, cg, y0, x0, 0u, H, W, C, KH, KW, B, XB, XS,
                                   ZX, PADZERO, RB, NWZP, ZW, ALLONES);
                if (FUSEADD) {
                    for (uint32_t j = 0; j < n; j++, idx++)
                        tn_m7_emit(l, other, out, idx,
                                   tn_m7_out(l, acc[j], cg * n + j, REQ, NM == 1u ? 0u : 1u,
                                             ROUND, TN_RQ), 1u, OB);
                } else {
                    for (uint32_t j = 0; j < n; j++)
                        acc[j] = tn_m7_out(l, acc[j], cg * n + j, REQ, NM == 1u ? 0u : 1u,
                                           ROUND, TN_RQ);
                    tn_m7_store(out, idx, acc, n, OB);
                    idx += n;
                }
            }
        }
    }
}

/* Depthwise layers the SIMD kernel does not cover (input and weight widths differ, channels not
 * a multiple of the word, a depth multiplier): one channel at a time with constant shapes and
 * widths, every output of a pixel computed before any is written. v: C * DM int32. */
TN_INLINE void tn_m7_dw_scalar(const tn_layer_t *l, const uint8_t *in, const uint8_t *other,
                               uint8_t *out, int32_t *v, int32_t H, int32_t W, uint32_t C,
                               int32_t OH, int32_t OW, int32_t KH, int32_t KW, int32_t SH,
                               int32_t SW, int32_t PT, int32_t PL, uint32_t XB, uint32_t XS,
                               int32_t ZX, uint32_t WB, uint32_t PADZERO, uint32_t RB, uint32_t DM,
                               uint32_t NWZP, int32_t ZW, uint32_t REQ, uint32_t NM,
                               uint32_t ROUND, uint32_t OB, uint32_t FUSEADD, TN_RQ_ARGS)
{
    const uint32_t CO = C * DM;
    uint32_t idx = 0;
    for (int32_t oy = 0; oy < OH; oy++) {
        const int32_t y0 = oy * SH - PT;
        for (int32_t ox = 0; ox < OW; ox++) {
            const int32_t x0 = ox * SW - PL;
            const int interior = y0 >= 0 && y0 + KH <= H && x0 >= 0 && x0 + KW <= W;
            for (uint32_t c = 0; c < CO; c++) {
                const uint32_t ci = c / DM;
                const uint32_t zw = NWZP == 1u ? (uint32_t)ZW : (uint32_t)l->wzp[c];
                uint32_t acc = (uint32_t)l->bias[c];
                TN_UNROLL
                for (int32_t ky = 0; ky < KH; ky++) {
                    TN_UNROLL
                    for (int32_t kx = 0; kx < KW; kx++) {
                        const int32_t iy = y0 + ky, ix = x0 + kx;
                        uint32_t xv;
                        if (interior || (iy >= 0 && iy < H && ix >= 0 && ix < W))
                            xv = (uint32_t)tn_get(in, ((uint32_t)iy * (uint32_t)W + (uint32_t)ix)
                                                  * C + ci, XB, XS) - (uint32_t)ZX;
                        else if (PADZERO && ZX != 0)
                            xv = 0u - (uint32_t)ZX;
                        else
                            continue;
                        acc += ((uint32_t)tn_get(l->w + (uint32_t)(ky * KW + kx) * RB, c, WB, 0)
                                - zw) * xv;
                    }
                }
                v[c] = tn_m7_out(l, (int32_t)acc, c, REQ, NM == 1u ? 0u : 1u, ROUND, TN_RQ);
            }
            if (FUSEADD) {
                for (uint32_t c = 0; c < CO; c++, idx++) tn_m7_emit(l, other, out, idx, v[c], 1u, OB);
            } else {
                tn_m7_store(out, idx, v, CO, OB);
                idx += CO;
            }
        }
    }
}

/* Max or average pool of 1..8-bit inputs with constant shapes: tn_pool's arithmetic in 32 bits
 * (a window sum of at most 255 x 255 elements of |v| <= 255 fits) and a hardware divide; every
 * output of a pixel computed before any is written. v: C int32. */
TN_INLINE void tn_m7_pool(const tn_layer_t *l, const uint8_t *in, uint8_t *out, int32_t *v,
                          int32_t H, int32_t W, uint32_t C, int32_t OH, int32_t OW, int32_t KH,
                          int32_t KW, int32_t SH, int32_t SW, int32_t PT, int32_t PL, uint32_t B,
                          uint32_t S, uint32_t AVG, uint32_t HALFAWAY)
{
    uint32_t idx = 0;
    for (int32_t py = 0; py < OH; py++)
        for (int32_t px = 0; px < OW; px++) {
            const int32_t y0 = py * SH - PT, x0 = px * SW - PL;
            for (uint32_t c = 0; c < C; c++) {
                int32_t total = 0, best = INT32_MIN, count = 0, y;
                for (int32_t dy = 0; dy < KH; dy++) {
                    const int32_t iy = y0 + dy;
                    if (iy < 0 || iy >= H) continue;
                    for (int32_t dx = 0; dx < KW; dx++) {
                        const int32_t ix = x0 + dx;
                        int32_t e;
                        if (ix < 0 || ix >= W) continue;
                        e = tn_get(in, ((uint32_t)iy * (uint32_t)W + (uint32_t)ix) * C + c, B, S);
                        total += e;
                        count++;
                        if (e > best) best = e;
                    }
                }
                if (!AVG) {
                    y = best;
                } else if (count == 0) {
                    y = 0;
                } else if (!HALFAWAY) { /* floor division */
                    y = total >= 0 ? total / count : -((-total + count - 1) / count);
                } else { /* half away from zero */
                    y = total > 0 ? (total + count / 2) / count : -((-total + count / 2) / count);
                }
                if (y < l->pool_lo) y = l->pool_lo;
                if (y > l->pool_hi) y = l->pool_hi;
                v[c] = y;
            }
            tn_m7_store(out, idx, v, C, B);
            idx += C;
        }
}

#endif

/* tn_m7_gemm.h: the Cortex-M7 convolution / pointwise / dense kernel of any bit widths
 * (tn_m7_gemm: im2col into int16 lanes, two output channels x two pixels per SMLAD loop;
 * conventions in tn_m7_core.h), and, below it, the kernels of 8-bit dense layers (tn_m7_fc, no
 * scratch; tn_m7_fc16 for small ones, the weights as int16 lanes) and of 8-bit convolutions and
 * pointwise layers (tn_m7_conv), whose weights come in an order of their own (two rows per word,
 * SMLALD). */
#ifndef TN_M7_GEMM_H
#define TN_M7_GEMM_H

#include "tn_m7_core.h"
#include "tn_m7_add.h"

/* im2col of output pixel (oy, ox) of a convolution (dense: one pixel, the whole input): the
 * kk = kh * kw * c window values x - z_x (padded taps: 0 - z_x with pad_zero, else 0) as int16
 * in the lane order of b-bit weights, zero-filled up to kp (a multiple of 32 / b).
 * Returns sum x' (for the weight zero point). */
TN_INLINE int32_t tn_m7_im2col(const uint8_t *in, int16_t *TN_RESTRICT buf, int32_t oy,
                               int32_t ox, int32_t H, int32_t W, uint32_t C, int32_t KH, int32_t KW,
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
                              int32_t sum0, int32_t sum1, uint32_t two,
                              int32_t *TN_RESTRICT v0, int32_t *TN_RESTRICT v1,
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
 * optionally fused with the max pool (MODE 1) or the residual ADD (MODE 2) after it. The fused
 * ADD takes tn_m7_add's arithmetic (tn_m7_add_fused, over the outputs of a pixel pair) when
 * FADD, else the portable one of tn_m7_emit (TN_FADD_ARGS: tn_m7_add.h).
 * buf: 2 * KP int16 (KP for a single output pixel, MODE != 1), 4-byte aligned; v: CO int32 per
 * im2col row (3 * CO with MODE 1), 4-byte aligned: the step's scratch in the arena
 * (tinyopt.integer.steps.scratch_bytes). Output order and the reads before each
 * write are those of tn_compute (the memory plan's sliding writes rely on them): outputs are
 * written pixel by pixel in row-major order, each after every read of its window (two pixels'
 * windows are read before the first of them is written: only earlier, never later reads). */
TN_INLINE void tn_m7_gemm(const tn_layer_t *l, const uint8_t *in, const uint8_t *other,
                          uint8_t *out, int16_t *TN_RESTRICT buf, int32_t *TN_RESTRICT v,
                          int32_t H, int32_t W, uint32_t C, int32_t OH, int32_t OW, uint32_t CO,
                          int32_t KH, int32_t KW, int32_t SH, int32_t SW, int32_t PT, int32_t PL,
                          uint32_t XB, uint32_t XS, int32_t ZX, uint32_t PADZERO, uint32_t WB,
                          uint32_t RB, uint32_t NWZP, uint32_t HASZW, int32_t ZW, uint32_t REQ,
                          uint32_t NM, uint32_t ROUND, uint32_t OB, uint32_t MODE,
                          int32_t PH, int32_t PW, int32_t PSH, int32_t PSW, int32_t PPT,
                          int32_t PPL, int32_t POH, int32_t POW, uint32_t INSIDE,
                          TN_RQ_ARGS, TN_FADD_ARGS)
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
            if (MODE == 2u && FADD) {
                /* v0, v1 are consecutive: the 2 * CO outputs of the pair, in output order */
                tn_m7_add_fused(v0, other + p * CO, out + p * CO, 2u * CO, TN_FADD);
            } else if (MODE == 2u) {
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
            if (MODE == 2u && FADD)
                tn_m7_add_fused(v0, other + p * CO, out + p * CO, CO, TN_FADD);
            else
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
                tn_m7_pool_out(l, out, idx, best, CO, OB);
                idx += CO;
            }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Dense (fully connected) layers of 8-bit inputs and 8-bit weights: tn_m7_fc, no scratch.
 *
 * The input is read a word at a time and widened on the fly (SXTAB16 / UXTAB16 add the offset
 * -z_x as they widen: lanes (x'_0, x'_2) and (x'_1, x'_3)); each output is requantized and
 * stored as soon as its accumulator is complete (a dense layer never writes over its input: the
 * planner gives it neither in-place nor sliding writes).
 *
 * Two rows per weight word (packed at export by kernels_m7.fc_weights; the portable kernels'
 * row layout is untouched for every other step). Rows go in pairs (a, b); a word holds, for
 * inputs k and k + 2, the bytes [a_k, b_k ^ 0x80, a_{k+2}, b_{k+2} ^ 0x80]. Read as two int16
 * lanes, each lane is 256 (b - 128) + a, so one multiply-accumulate of the word and the input
 * lanes adds 256 (b - 128) x' + a x' for both inputs to R, and SMLAD of UXTB16(word) adds a x'
 * to S_a: one load, one UXTB16 and two multiply-accumulates per four MACs (a row widened on its
 * own takes five). Then sum (b - 128) x' = (R - S_a) / 256 exactly, with S_a exact in 32 bits
 * (K * 255 * max |x'| < 2^31, the planner's rule, tinyopt.integer.steps.fc_fits) and R either
 * - ACC32 = 1: a 32-bit SMLAD sum, R = S_a + 256 B modulo 2^32; when |B| < 2^23 for every
 *   input (B = sum (b - 128) x' of every pair, bounded at export from the weights themselves:
 *   kernels_m7.fc_acc32), 256 B fits in int32 and (int32)(R - S_a) >> 8 is B. Six accumulators
 *   for three pairs leave registers for blocks of six rows: per group of four inputs 24
 *   instructions for 24 MACs;
 * - ACC32 = 0: a 64-bit SMLALD sum (exact for any K the rule allows), blocks of four rows: per
 *   group 17 instructions for 16 MACs.
 * The weight zero points then enter once per output: sum (a - z_a) x' = S_a - z_a sum x' and
 * sum (b - z_b) x' = sum (b - 128) x' + (128 - z_b) sum x', modulo 2^32 like the reference's
 * accumulator.
 *
 * Layout of the N x K weight bytes (N K bytes, as many as the row layout): blocks of 2P rows
 * (P = 3 with ACC32, else 2; pairs rows c, c + 1, then c + 2, c + 3, ...): per group of four
 * inputs, pair 0's two words ([a_0, b'_0, a_2, b'_2], [a_1, b'_1, a_3, b'_3]) then pair 1's, ...;
 * after the K / 4 groups, the K % 4 tail codes of each pair, a's then b's (as they are). Then
 * the rows left over in blocks of the same form: two pairs (ACC32, if four or five rows are
 * left), one pair (if two or three); then the last row of an odd N, as it is.
 * --------------------------------------------------------------------------------------------- */

/* The a codes of a weight word: lanes (byte 0, byte 2) (ROR8: bytes 1, 3), unsigned codes
 * (UXTB16) or, with SGW (signed weights, kernels_m7.signed_weights), weights minus their zero
 * point as int8 (SXTB16). */
#if defined(__ARM_FEATURE_DSP)
static inline __attribute__((always_inline)) uint32_t tn_m7_wx(uint32_t u, uint32_t SGW)
{
    return SGW ? (uint32_t)__sxtb16((int32_t)u) : tn_uxtb16(u);
}
static inline __attribute__((always_inline)) uint32_t tn_m7_wx_ror8(uint32_t u, uint32_t SGW)
{
    uint32_t r;
    if (!SGW)
        return tn_uxtb16_ror8(u);
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(u));
    return r;
}
#else
static inline uint32_t tn_m7_wx(uint32_t u, uint32_t SGW)
{
    return SGW ? tn_sxtab16(0u, u) : tn_uxtb16(u);
}
static inline uint32_t tn_m7_wx_ror8(uint32_t u, uint32_t SGW)
{
    return SGW ? tn_sxtab16_ror8(0u, u) : tn_uxtb16_ror8(u);
}
#endif

#if TN_M7_ASM
/* The input word of a group, widened (XT: "s" for int8 inputs, "u" for uint8); LW: the first
 * pair's weight load, issued before the widening. */
#define TN_FC_X(XT, LW)                                                                         \
    "ldr %[v], [%[x]], #4\n\t" LW                                                               \
    XT "xtab16 %[xo], %[off], %[v], ror #8\n\t"                                                 \
    XT "xtab16 %[v], %[off], %[v]\n\t"
/* a pair's two weight words: LDRD (word-aligned weights) or two LDR */
#define TN_FC_LDD "ldrd %[u], %[u2], [%[w]], #8\n\t"
#define TN_FC_LD2 "ldr %[u], [%[w]], #4\n\tldr %[u2], [%[w]], #4\n\t"
/* one pair of one group: R += word . lanes (SMLALD into the pair R, Rh; SMLAD into R alone when
 * MAC is "smlad"), S_a += UXTB16(word) . lanes */
#define TN_FC_PAIR(MAC, R, A, WX)                                                               \
    MAC " %[" R "], %[u], %[v], %[" R "]\n\t"                                                   \
    WX "xtb16 %[u], %[u]\n\t"                                                                   \
    "smlad %[" A "], %[u], %[v], %[" A "]\n\t"                                                  \
    MAC " %[" R "], %[u2], %[xo], %[" R "]\n\t"                                                 \
    WX "xtb16 %[u2], %[u2]\n\t"                                                                 \
    "smlad %[" A "], %[u2], %[xo], %[" A "]\n\t"
/* SMLALD's operand order differs from SMLAD's (RdLo, RdHi, Rn, Rm) */
#define TN_FC_PAIR64(R, RH, A, WX)                                                              \
    "smlald %[" R "], %[" RH "], %[u], %[v]\n\t"                                                \
    WX "xtb16 %[u], %[u]\n\t"                                                                   \
    "smlad %[" A "], %[u], %[v], %[" A "]\n\t"                                                  \
    "smlald %[" R "], %[" RH "], %[u2], %[xo]\n\t"                                              \
    WX "xtb16 %[u2], %[u2]\n\t"                                                                 \
    "smlad %[" A "], %[u2], %[xo], %[" A "]\n\t"
/* a group of four inputs: three / two / one pairs, 32-bit R (ACC32); two / one pairs, 64-bit R
 * (WX: "u" for codes, "s" for signed weights) */
#define TN_FC_G3(XT, LW, WX)                                                                    \
    TN_FC_X(XT, LW) TN_FC_PAIR("smlad", "r0", "a0", WX) LW TN_FC_PAIR("smlad", "r1", "a1", WX)  \
    LW TN_FC_PAIR("smlad", "r2", "a2", WX)
#define TN_FC_G2_32(XT, LW, WX)                                                                 \
    TN_FC_X(XT, LW) TN_FC_PAIR("smlad", "r0", "a0", WX) LW TN_FC_PAIR("smlad", "r1", "a1", WX)
#define TN_FC_G1_32(XT, LW, WX) TN_FC_X(XT, LW) TN_FC_PAIR("smlad", "r0", "a0", WX)
#define TN_FC_G2(XT, LW, WX)                                                                    \
    TN_FC_X(XT, LW) TN_FC_PAIR64("r0", "r0h", "a0", WX) LW TN_FC_PAIR64("r1", "r1h", "a1", WX)
#define TN_FC_G1(XT, LW, WX) TN_FC_X(XT, LW) TN_FC_PAIR64("r0", "r0h", "a0", WX)
/* every output operand early-clobber ("+&r"): else gcc may give an input of equal value (the
 * offset, 0 when z_x = 0, and the accumulators' initial 0) one register */
#define TN_FC_OPS3                                                                              \
    : [x] "+&r"(x), [w] "+&r"(w), [v] "=&r"(v), [xo] "=&r"(xo), [u] "=&r"(u), [u2] "=&r"(u2),    \
      [a0] "+&r"(a0), [a1] "+&r"(a1), [a2] "+&r"(a2), [r0] "+&r"(r0), [r1] "+&r"(r1),           \
      [r2] "+&r"(r2)                                                                            \
    : [end] "r"(end), [off] "r"(off)                                                            \
    : "cc", "memory"
#define TN_FC_OPS2                                                                              \
    : [x] "+&r"(x), [w] "+&r"(w), [v] "=&r"(v), [xo] "=&r"(xo), [u] "=&r"(u), [u2] "=&r"(u2),    \
      [a0] "+&r"(a0), [a1] "+&r"(a1), [r0] "+&r"(r0), [r0h] "+&r"(r0h), [r1] "+&r"(r1),         \
      [r1h] "+&r"(r1h)                                                                          \
    : [end] "r"(end), [off] "r"(off)                                                            \
    : "cc", "memory"
/* NG groups: NG % 4 first, then four per iteration (OPS: TN_FC_OPS3 or TN_FC_OPS2, named
 * here so that their commas never split a macro argument) */
#define TN_FC_RUN(G, OPS)                                                                       \
    do {                                                                                        \
        if (NG & 1u) __asm__ volatile(G OPS);                                                   \
        if (NG & 2u) __asm__ volatile(G G OPS);                                                 \
        if (NG >= 4u)                                                                           \
            __asm__ volatile("1:\n\t" G G G G "cmp %[x], %[end]\n\tbne 1b\n\t" OPS);          \
    } while (0)
#define TN_FC_RUN_XW(GROUP, N, WX)                                                              \
    do {                                                                                        \
        if (aligned) {                                                                          \
            if (XS) TN_FC_RUN(GROUP("s", TN_FC_LDD, WX), TN_FC_OPS##N);                          \
            else TN_FC_RUN(GROUP("u", TN_FC_LDD, WX), TN_FC_OPS##N);                             \
        } else {                                                                                \
            if (XS) TN_FC_RUN(GROUP("s", TN_FC_LD2, WX), TN_FC_OPS##N);                          \
            else TN_FC_RUN(GROUP("u", TN_FC_LD2, WX), TN_FC_OPS##N);                             \
        }                                                                                       \
    } while (0)
#define TN_FC_RUN_XS(GROUP, N)                                                                  \
    do {                                                                                        \
        if (SGW) TN_FC_RUN_XW(GROUP, N, "s");                                                    \
        else TN_FC_RUN_XW(GROUP, N, "u");                                                       \
    } while (0)
#endif

/* S_a (sa) and sum (b - 128) x' (sb) of P row pairs (P in 1..3; 3 only with ACC32) over the
 * first K & ~3 inputs; returns w past their words. */
TN_INLINE const uint8_t *tn_m7_fc_block(const uint8_t *w, const uint8_t *x, uint32_t K,
                                        uint32_t P, uint32_t XS, int32_t ZX, uint32_t ACC32,
                                        uint32_t SGW, uint32_t *sa, uint32_t *sb)
{
    const uint32_t off = ((uint32_t)(-ZX) & 0xFFFFu) * 0x00010001u;
    const uint8_t *end = x + (K & ~3u);
#if TN_M7_ASM
    const uint32_t NG = K / 4u;
    /* every word of the block aligned: the layer's weights and K % 4 == 0 (no tails between) */
    const uint32_t aligned = (((uintptr_t)w | K) & 3u) == 0u;
    if (ACC32) { /* one pair too: its own loop, no C fallback */
        uint32_t a0 = 0, a1 = 0, a2 = 0, r0 = 0, r1 = 0, r2 = 0, v, xo, u, u2;
        if (P == 3u) TN_FC_RUN_XS(TN_FC_G3, 3);
        else if (P == 2u) TN_FC_RUN_XS(TN_FC_G2_32, 3);
        else TN_FC_RUN_XS(TN_FC_G1_32, 3);
        sa[0] = a0; sa[1] = a1; sa[2] = a2;
        sb[0] = (uint32_t)((int32_t)(r0 - a0) >> 8);
        sb[1] = (uint32_t)((int32_t)(r1 - a1) >> 8);
        sb[2] = (uint32_t)((int32_t)(r2 - a2) >> 8);
        return w;
    }
    if (!ACC32 && P <= 2u) {
        uint32_t a0 = 0, a1 = 0, r0 = 0, r0h = 0, r1 = 0, r1h = 0, v, xo, u, u2;
        if (P == 2u) TN_FC_RUN_XS(TN_FC_G2, 2);
        else TN_FC_RUN_XS(TN_FC_G1, 2);
        sa[0] = a0; sa[1] = a1;
        /* (R - S_a) is 256 sum (b - 128) x' exactly; the low 32 bits of the quotient are that
         * sum modulo 2^32 */
        sb[0] = (uint32_t)(uint64_t)(((int64_t)(((uint64_t)r0h << 32) | r0) - (int32_t)a0) >> 8);
        sb[1] = (uint32_t)(uint64_t)(((int64_t)(((uint64_t)r1h << 32) | r1) - (int32_t)a1) >> 8);
        return w;
    }
#endif
    {
        int32_t a[3] = {0, 0, 0};
        int64_t r[3] = {0, 0, 0};
        for (; x != end; x += 4) {
            const uint32_t v = tn_ld32(x);
            const uint32_t xe = XS ? tn_sxtab16(off, v) : tn_uxtab16(off, v);
            const uint32_t xo = XS ? tn_sxtab16_ror8(off, v) : tn_uxtab16_ror8(off, v);
            for (uint32_t p = 0; p < P; p++, w += 8) {
                const uint32_t u0 = tn_ld32(w), u1 = tn_ld32(w + 4);
                a[p] = tn_smlad(tn_m7_wx(u1, SGW), xo, tn_smlad(tn_m7_wx(u0, SGW), xe, a[p]));
                if (ACC32) /* the 32-bit sum modulo 2^32, as SMLAD keeps it */
                    r[p] = (int64_t)(uint32_t)tn_smlad(u1, xo, tn_smlad(u0, xe, (int32_t)r[p]));
                else
                    r[p] = tn_smlald(u1, xo, tn_smlald(u0, xe, r[p]));
            }
        }
        for (uint32_t p = 0; p < P; p++) {
            sa[p] = (uint32_t)a[p];
            sb[p] = ACC32 ? (uint32_t)((int32_t)((uint32_t)r[p] - (uint32_t)a[p]) >> 8)
                          : (uint32_t)(uint64_t)((r[p] - (int64_t)a[p]) >> 8);
        }
        return w;
    }
}

/* Input element k of an 8-bit tensor minus its zero point. */
TN_INLINE int32_t tn_m7_x8(const uint8_t *in, uint32_t k, uint32_t XS, int32_t ZX)
{
    return (XS ? (int32_t)(int8_t)in[k] : (int32_t)in[k]) - ZX;
}

/* Requantize (or not) output channel c and store it as element idx (out: no other pointer
 * reaches it, so the layer's tables need no reload after each store). */
TN_INLINE void tn_m7_put(const tn_layer_t *l, uint8_t *TN_RESTRICT out, uint32_t idx,
                         uint32_t c, uint32_t acc, uint32_t REQ, uint32_t NM, uint32_t ROUND,
                         uint32_t OB, TN_RQ_ARGS)
{
    if (OB == 8u) {
        out[idx] = (uint8_t)tn_m7_out8(l, (int32_t)acc, c, REQ, NM == 1u ? 0u : 1u, ROUND, TN_RQ);
        return;
    }
    const int32_t v = tn_m7_out(l, (int32_t)acc, c, REQ, NM == 1u ? 0u : 1u, ROUND, TN_RQ);
    if (OB == 8u)
        out[idx] = (uint8_t)v;
    else
        tn_set(out, idx, OB, (uint32_t)v);
}

/* Requantize (or not) an accumulator of output channel c whose multiplier m0c / n0c the caller
 * read (from tables it holds in registers: tn_m7_out's own reads go through l, which every
 * store to the output may have changed for all gcc knows). */
TN_INLINE int32_t tn_m7_req(const tn_layer_t *l, uint32_t acc, uint32_t c, int32_t m0c,
                            int32_t n0c, uint32_t REQ, uint32_t NM, uint32_t ROUND, TN_RQ_ARGS)
{
    if (REQ && FAST == 1u && NM != 1u) { /* n0c read at run time: no branch on its sign */
        const int32_t r = tn_m7_requant_pc((int32_t)acc, m0c, n0c, ROUND);
        return (r < LOZ ? LOZ : (r > HIZ ? HIZ : r)) + ZP;
    }
    if (REQ && FAST)
        return tn_m7_out(l, (int32_t)acc, c, 1u, 0u, ROUND, FAST, NM == 1u ? M0 : m0c,
                         NM == 1u ? N0 : n0c, LOZ, HIZ, ZP);
    return tn_m7_out(l, (int32_t)acc, c, REQ, NM == 1u ? 0u : 1u, ROUND, TN_RQ);
}

/* Store v as element idx of a packed OB-bit tensor. */
TN_INLINE void tn_m7_set(uint8_t *TN_RESTRICT out, uint32_t idx, int32_t v, uint32_t OB)
{
    if (OB == 8u)
        out[idx] = (uint8_t)v;
    else
        tn_set(out, idx, OB, (uint32_t)v);
}

/* Output c of a dense layer. */
TN_INLINE void tn_m7_fc_put(const tn_layer_t *l, uint8_t *TN_RESTRICT out, uint32_t c,
                            uint32_t acc, uint32_t REQ, uint32_t NM, uint32_t ROUND, uint32_t OB,
                            TN_RQ_ARGS)
{
    tn_m7_put(l, out, c, c, acc, REQ, NM, ROUND, OB, TN_RQ);
}

/* Outputs ca and ca + 1 of a row pair from sa = S_a and sb = sum (b - 128) x' over the first
 * K & ~3 inputs (SGW: sum (a - z_a) x' and sum (b - z_b) x'); wt: the pair's tail codes (K % 4
 * a's, then as many b's; SGW: the weights minus their zero points, int8). */
TN_INLINE void tn_m7_fc_pair_out(const tn_layer_t *l, const int32_t *bias, const uint8_t *wzp,
                                 const uint8_t *wt, const uint8_t *in,
                                 uint8_t *TN_RESTRICT out, uint32_t ca, uint32_t a, uint32_t b,
                                 int32_t sx, uint32_t K, uint32_t XS, int32_t ZX, uint32_t NWZP,
                                 int32_t ZW, uint32_t REQ, uint32_t NM, uint32_t ROUND,
                                 uint32_t OB, uint32_t SGW, TN_RQ_ARGS)
{
    const uint32_t k4 = K & ~3u, t = K & 3u;
    for (uint32_t j = 0; j < t; j++) {
        const int32_t xv = tn_m7_x8(in, k4 + j, XS, ZX);
        a += (uint32_t)((SGW ? (int32_t)(int8_t)wt[j] : (int32_t)wt[j]) * xv);
        b += (uint32_t)((SGW ? (int32_t)(int8_t)wt[t + j] : (int32_t)wt[t + j] - 128) * xv);
    }
    if (SGW) { /* the zero points are in the codes */
        tn_m7_fc_put(l, out, ca, (uint32_t)bias[ca] + a, REQ, NM, ROUND, OB, TN_RQ);
        tn_m7_fc_put(l, out, ca + 1u, (uint32_t)bias[ca + 1u] + b, REQ, NM, ROUND, OB, TN_RQ);
    } else {
        const int32_t za = NWZP == 1u ? ZW : (int32_t)wzp[ca];
        const int32_t zb = NWZP == 1u ? ZW : (int32_t)wzp[ca + 1u];
        tn_m7_fc_put(l, out, ca, (uint32_t)bias[ca] + a - (uint32_t)za * (uint32_t)sx,
                     REQ, NM, ROUND, OB, TN_RQ);
        tn_m7_fc_put(l, out, ca + 1u,
                     (uint32_t)bias[ca + 1u] + b + (uint32_t)(128 - zb) * (uint32_t)sx,
                     REQ, NM, ROUND, OB, TN_RQ);
    }
}

/* Outputs c .. c + 2P - 1 (P row pairs, weights at w); returns w past their bytes. */
TN_INLINE const uint8_t *tn_m7_fc_pairs(const tn_layer_t *l, const int32_t *bias,
                                        const uint8_t *wzp, const uint8_t *w,
                                        const uint8_t *in, uint8_t *TN_RESTRICT out, uint32_t c,
                                        uint32_t P, int32_t sx, uint32_t K, uint32_t XS,
                                        int32_t ZX, uint32_t NWZP, int32_t ZW, uint32_t REQ,
                                        uint32_t NM, uint32_t ROUND, uint32_t OB,
                                        uint32_t ACC32, uint32_t SGW, TN_RQ_ARGS)
{
    const uint32_t t = K & 3u;
    uint32_t sa[3], sb[3];
    w = tn_m7_fc_block(w, in, K, P, XS, ZX, ACC32, SGW, sa, sb);
    TN_UNROLL
    for (uint32_t p = 0; p < P; p++, w += 2u * t)
        tn_m7_fc_pair_out(l, bias, wzp, w, in, out, c + 2u * p, sa[p], sb[p], sx, K, XS, ZX,
                          NWZP, ZW, REQ, NM, ROUND, OB, SGW, TN_RQ);
    return w;
}

/* A dense layer K -> N of 8-bit inputs and weights (weights in tn_m7_fc's layout, above; ACC32:
 * kernels_m7.fc_acc32 bounded every pair's sum, blocks of three pairs; SGW: the weights stored
 * minus their zero points, kernels_m7.signed_weights: no sum x' at all). */
TN_INLINE void tn_m7_fc(const tn_layer_t *l, const uint8_t *in, uint8_t *TN_RESTRICT out,
                        uint32_t K, uint32_t N, uint32_t XS, int32_t ZX, uint32_t NWZP,
                        int32_t ZW, uint32_t REQ, uint32_t NM, uint32_t ROUND, uint32_t OB,
                        uint32_t ACC32, uint32_t SGW, TN_RQ_ARGS)
{
    const uint32_t off = ((uint32_t)(-ZX) & 0xFFFFu) * 0x00010001u, k4 = K & ~3u;
    const uint32_t P = ACC32 ? 3u : 2u; /* row pairs per block */
    /* the layer's tables, read once (the asm's memory clobber would reload them) */
    const uint8_t *w = l->w, *wzp = l->wzp;
    const int32_t *bias = l->bias;
    int32_t sx = 0; /* sum x', for the weight zero points */
    uint32_t c = 0, k;
    for (k = 0; !SGW && k < k4; k += 4u) {
        const uint32_t v = tn_ld32(in + k);
        sx = tn_smlad(XS ? tn_sxtab16(off, v) : tn_uxtab16(off, v), 0x00010001u, sx);
        sx = tn_smlad(XS ? tn_sxtab16_ror8(off, v) : tn_uxtab16_ror8(off, v), 0x00010001u, sx);
    }
    for (k = k4; !SGW && k < K; k++) sx += tn_m7_x8(in, k, XS, ZX);
    for (; c + 2u * P <= N; c += 2u * P)
        w = tn_m7_fc_pairs(l, bias, wzp, w, in, out, c, P, sx, K, XS, ZX, NWZP, ZW, REQ, NM,
                           ROUND, OB, ACC32, SGW, TN_RQ);
    if (P == 3u && N - c >= 4u) {
        w = tn_m7_fc_pairs(l, bias, wzp, w, in, out, c, 2u, sx, K, XS, ZX, NWZP, ZW, REQ, NM,
                           ROUND, OB, ACC32, SGW, TN_RQ);
        c += 4u;
    }
    if (N - c >= 2u) {
        w = tn_m7_fc_pairs(l, bias, wzp, w, in, out, c, 1u, sx, K, XS, ZX, NWZP, ZW, REQ, NM,
                           ROUND, OB, ACC32, SGW, TN_RQ);
        c += 2u;
    }
    if (c < N) { /* the last row of an odd N, as it is: each word widened twice */
        int32_t a = 0;
        for (k = 0; k < k4; k += 4u) {
            const uint32_t v = tn_ld32(in + k), u = tn_ld32(w + k);
            a = tn_smlad(tn_m7_wx(u, SGW), XS ? tn_sxtab16(off, v) : tn_uxtab16(off, v), a);
            a = tn_smlad(tn_m7_wx_ror8(u, SGW), XS ? tn_sxtab16_ror8(off, v)
                                                  : tn_uxtab16_ror8(off, v), a);
        }
        for (; k < K; k++)
            a += (SGW ? (int32_t)(int8_t)w[k] : (int32_t)w[k]) * tn_m7_x8(in, k, XS, ZX);
        {
            const int32_t z = SGW ? 0 : NWZP == 1u ? ZW : (int32_t)wzp[c];
            tn_m7_fc_put(l, out, c, (uint32_t)bias[c] + (uint32_t)a
                         - (uint32_t)z * (uint32_t)sx, REQ, NM, ROUND, OB, TN_RQ);
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Small dense layers (heads): tn_m7_fc16, the weights as int16 lanes, no scratch.
 *
 * tn_m7_fc's fixed costs (the sum x' pass, the S_a / R split, zero points and bias added per
 * output) and its 3.5 instructions per row and group weigh on the few rows of a classifier head.
 * For a layer of few weights (kernels_m7.fc16_fits: N K <= kernels_m7.FC16_MAX_WEIGHTS) the
 * export stores d = w - z_w of each row as int16 lanes instead (twice the weight bytes, counted
 * as layout bytes, Export.weight_pad_bytes), in blocks of R <= 7 rows (seven accumulators and
 * seven other registers: all fourteen). Per group of four inputs: one LDR of the input word, two
 * SXTB16 / UXTB16 (raw codes, no offset), then per row one LDRD of its lanes
 * [d_k, d_k+2], [d_k+1, d_k+3] and two SMLAD: 3 + 3 R instructions for 4 R MACs (R = 7, and
 * R <= 3 on a misaligned input). Blocks of fewer rows have registers left for LDM, which loads
 * more of the same weight words per instruction (the same layout): R = 4 .. 6 one LDM per four
 * (three) words; R <= 3 on a word-aligned input two groups per LDRD of the input, R <= 2 four
 * per LDM of it (VWW's 256 -> 2 head: 29 instructions per 32 MACs, 34 before; the forms and
 * their counts at TN_F16_L1 .. TN_F16_S6). The input zero point and the bias enter once, at
 * export: each block starts with its rows' constants C = bias - z_x sum_k d_k (int32, modulo
 * 2^32), the accumulators' initial values, so that acc = C + sum d x = bias + sum (w - z_w)
 * (x - z_x) modulo 2^32, the reference's accumulator. A block of R >= 4 rows is one asm
 * statement, which loads its constants itself (TN_F16_ONE: GCC allocates its fourteen
 * registers at every level).
 * DBL (the export's choice where tn_m7_out's FAST = 3 form applies: |acc| < 2^30) stores 2 d and
 * 2 C: the accumulator is then 2 acc, exactly the SMMULR operand of that form (one shift less
 * per output); any other form takes acc = 2 acc >> 1.
 *
 * Layout (kernels_m7.fc16_weights; little-endian): per block of R rows (blocks of seven, then the
 * N % 7 rows left), C of its R rows (int32), then per group of four inputs each row's two words
 * above (int16 lanes), then the K % 4 tail lanes of each row (int16) and zero padding to a
 * word: every block a whole number of words (LDRD and LDM need the array word-aligned: a
 * misaligned one takes the C loop, which computes the same).
 * --------------------------------------------------------------------------------------------- */
#if TN_M7_ASM
/* one group: the input word widened into v (x_k, x_k+2) and xo (x_k+1, x_k+3); then per row
 * (TN_F16_ROW) its two words and two SMLAD */
#define TN_F16_X(XT)                                                                            \
    "ldr %[v], [%[x]], #4\n\t"                                                                  \
    XT "xtb16 %[xo], %[v], ror #8\n\t"                                                          \
    XT "xtb16 %[v], %[v]\n\t"
#define TN_F16_ROW(A, V, XO)                                                                    \
    "ldrd %[u], %[u2], [%[w]], #8\n\t"                                                          \
    "smlad %[" A "], %[u], %[" V "], %[" A "]\n\t"                                              \
    "smlad %[" A "], %[u2], %[" XO "], %[" A "]\n\t"
#define TN_F16_R1(V, XO) TN_F16_ROW("a0", V, XO)
#define TN_F16_R2(V, XO) TN_F16_R1(V, XO) TN_F16_ROW("a1", V, XO)
#define TN_F16_R3(V, XO) TN_F16_R2(V, XO) TN_F16_ROW("a2", V, XO)
#define TN_F16_R4(V, XO) TN_F16_R3(V, XO) TN_F16_ROW("a3", V, XO)
#define TN_F16_R5(V, XO) TN_F16_R4(V, XO) TN_F16_ROW("a4", V, XO)
#define TN_F16_R6(V, XO) TN_F16_R5(V, XO) TN_F16_ROW("a5", V, XO)
#define TN_F16_R7(V, XO) TN_F16_R6(V, XO) TN_F16_ROW("a6", V, XO)
#define TN_F16_G(XT, R) TN_F16_X(XT) TN_F16_R##R("v", "xo")
/* operands: R accumulators (early-clobber, as TN_FC_OPS3) */
#define TN_F16_O0 [x] "+&r"(x), [w] "+&r"(w), [v] "=&r"(v), [xo] "=&r"(xo), [u] "=&r"(u),       \
    [u2] "=&r"(u2)
#define TN_F16_A1 , [a0] "+&r"(a0)
#define TN_F16_A2 TN_F16_A1, [a1] "+&r"(a1)
#define TN_F16_A3 TN_F16_A2, [a2] "+&r"(a2)
#define TN_F16_A4 TN_F16_A3, [a3] "+&r"(a3)
#define TN_F16_A5 TN_F16_A4, [a4] "+&r"(a4)
#define TN_F16_A6 TN_F16_A5, [a5] "+&r"(a5)
#define TN_F16_A7 TN_F16_A6, [a6] "+&r"(a6)
#define TN_F16_ASM(BODY, R, I)                                                                  \
    __asm__ volatile(BODY : TN_F16_O0 TN_F16_A##R : I : "cc", "memory")
#define TN_F16_LOOP "cmp %[x], %[end]\n\tbne 1b\n\t"
/* the asm's inputs (I): the loops' end (TN_F16_E); none (TN_F16_N) for the straight runs:
 * one register less for GCC to find */
#define TN_F16_E [end] "r"(end)
#define TN_F16_N
/* NG groups, one input word at a time: NG % 4 first, then four per pass (R <= 3 on a
 * misaligned input; R = 7 takes TN_F16_ONE_G7) */
#define TN_F16_RUN(XT, R)                                                                       \
    do {                                                                                        \
        if (NG & 1u) TN_F16_ASM(TN_F16_G(XT, R), R, TN_F16_N);                                  \
        if (NG & 2u) TN_F16_ASM(TN_F16_G(XT, R) TN_F16_G(XT, R), R, TN_F16_N);                  \
        if (NG >= 4u)                                                                           \
            TN_F16_ASM("1:\n\t" TN_F16_G(XT, R) TN_F16_G(XT, R) TN_F16_G(XT, R)                 \
                       TN_F16_G(XT, R) TN_F16_LOOP, R, TN_F16_E);                               \
    } while (0)
/* R <= 3 rows on a word-aligned input: two groups per LDRD of the input (TN_F16_X2) and the
 * rows' 4 R weight words of the two groups (the order of the layout: group, row) by LDM four
 * words at a time, R LDM instead of 2 R LDRD: 5 + 5 R instructions per 8 R MACs. LDM's
 * registers must ascend, so its four (q0 .. q3) are pinned (TN_F16_PIN, r8 .. r11); R
 * accumulators, x, w, end, four input registers and q0 .. q3: 11 + R <= 14. TN_F16_M: one row's
 * two SMLAD on the lanes of one group (V, XO) from two of q0 .. q3 */
#define TN_F16_X2(XT)                                                                           \
    "ldrd %[v], %[v2], [%[x]], #8\n\t"                                                          \
    XT "xtb16 %[xo], %[v], ror #8\n\t" XT "xtb16 %[v], %[v]\n\t"                                \
    XT "xtb16 %[xo2], %[v2], ror #8\n\t" XT "xtb16 %[v2], %[v2]\n\t"
#define TN_F16_LDM "ldm %[w]!, {%[q0], %[q1], %[q2], %[q3]}\n\t"
#define TN_F16_M(A, V, XO, QA, QB)                                                              \
    "smlad %[" A "], %[" QA "], %[" V "], %[" A "]\n\t"                                         \
    "smlad %[" A "], %[" QB "], %[" XO "], %[" A "]\n\t"
/* one LDM: [g, row 0] [g + 1, row 0] */
#define TN_F16_L1(XT)                                                                           \
    TN_F16_X2(XT) TN_F16_LDM TN_F16_M("a0", "v", "xo", "q0", "q1")                              \
    TN_F16_M("a0", "v2", "xo2", "q2", "q3")
/* two: [g, rows 0 1] [g + 1, rows 0 1] */
#define TN_F16_L2(XT)                                                                           \
    TN_F16_X2(XT) TN_F16_LDM TN_F16_M("a0", "v", "xo", "q0", "q1")                              \
    TN_F16_M("a1", "v", "xo", "q2", "q3")                                                       \
    TN_F16_LDM TN_F16_M("a0", "v2", "xo2", "q0", "q1") TN_F16_M("a1", "v2", "xo2", "q2", "q3")
/* three: [g, rows 0 1] [g, row 2; g + 1, row 0] [g + 1, rows 1 2] */
#define TN_F16_L3(XT)                                                                           \
    TN_F16_X2(XT) TN_F16_LDM TN_F16_M("a0", "v", "xo", "q0", "q1")                              \
    TN_F16_M("a1", "v", "xo", "q2", "q3")                                                       \
    TN_F16_LDM TN_F16_M("a2", "v", "xo", "q0", "q1") TN_F16_M("a0", "v2", "xo2", "q2", "q3")    \
    TN_F16_LDM TN_F16_M("a1", "v2", "xo2", "q0", "q1") TN_F16_M("a2", "v2", "xo2", "q2", "q3")
/* pinned: GCC keeps a local register variable in its register where it is an asm operand, the
 * only use made of these (write-only outputs); r7 stays GCC's to give (TN_M7_ASM: no frame
 * pointer) */
#define TN_F16_PIN                                                                              \
    register uint32_t q0 __asm__("r8"), q1 __asm__("r9"), q2 __asm__("r10"),                    \
        q3 __asm__("r11")
#define TN_F16_L0 [x] "+&r"(x), [w] "+&r"(w), [v] "=&r"(v), [xo] "=&r"(xo), [v2] "=&r"(v2),     \
    [xo2] "=&r"(xo2), [q0] "=&r"(q0), [q1] "=&r"(q1), [q2] "=&r"(q2), [q3] "=&r"(q3)
#define TN_F16_ASML(BODY, R, I)                                                                 \
    __asm__ volatile(BODY : TN_F16_L0 TN_F16_A##R : I : "cc", "memory")
/* NG groups: NG % 2 one at a time (TN_F16_G), then two, four (NG % 8) and eight per pass */
#define TN_F16_RUNL(XT, R)                                                                      \
    do {                                                                                        \
        TN_F16_PIN;                                                                             \
        if (NG & 1u) TN_F16_ASM(TN_F16_G(XT, R), R, TN_F16_N);                                  \
        if (NG & 2u) TN_F16_ASML(TN_F16_L##R(XT), R, TN_F16_N);                                 \
        if (NG & 4u) TN_F16_ASML(TN_F16_L##R(XT) TN_F16_L##R(XT), R, TN_F16_N);                 \
        if (NG >= 8u)                                                                           \
            TN_F16_ASML("1:\n\t" TN_F16_L##R(XT) TN_F16_L##R(XT) TN_F16_L##R(XT)                \
                        TN_F16_L##R(XT) TN_F16_LOOP, R, TN_F16_E);                              \
    } while (0)
/* R <= 2 rows on a word-aligned input: four groups per LDM of the input (p0 .. p3, pinned
 * too: TN_F16_PINX, r0 .. r3), each widened in place beside xo (xo2); the weights by LDM as
 * TN_F16_L1 / TN_F16_L2: 9 + 10 R instructions per 16 R MACs (VWW's head: 29 per 32). Registers:
 * eight pinned, R accumulators, xo, xo2 (R = 1), x, w, end: 14 */
#define TN_F16_LDX "ldm %[x]!, {%[p0], %[p1], %[p2], %[p3]}\n\t"
#define TN_F16_W(XT, P, XO)                                                                     \
    XT "xtb16 %[" XO "], %[" P "], ror #8\n\t" XT "xtb16 %[" P "], %[" P "]\n\t"
/* R = 1: groups P, P' with one LDM of weights ([g, row 0] [g + 1, row 0]) */
#define TN_F16_U1H(XT, P, P2)                                                                   \
    TN_F16_W(XT, P, "xo") TN_F16_W(XT, P2, "xo2") TN_F16_LDM                                    \
    TN_F16_M("a0", P, "xo", "q0", "q1") TN_F16_M("a0", P2, "xo2", "q2", "q3")
#define TN_F16_U1(XT) TN_F16_LDX TN_F16_U1H(XT, "p0", "p1") TN_F16_U1H(XT, "p2", "p3")
/* R = 2: group P with one LDM ([g, rows 0 1]) */
#define TN_F16_U2G(XT, P)                                                                       \
    TN_F16_W(XT, P, "xo") TN_F16_LDM                                                            \
    TN_F16_M("a0", P, "xo", "q0", "q1") TN_F16_M("a1", P, "xo", "q2", "q3")
#define TN_F16_U2(XT)                                                                           \
    TN_F16_LDX TN_F16_U2G(XT, "p0") TN_F16_U2G(XT, "p1") TN_F16_U2G(XT, "p2")                   \
    TN_F16_U2G(XT, "p3")
#define TN_F16_PINX                                                                             \
    register uint32_t p0 __asm__("r0"), p1 __asm__("r1"), p2 __asm__("r2"), p3 __asm__("r3")
#define TN_F16_X0 [x] "+&r"(x), [w] "+&r"(w), [p0] "=&r"(p0), [p1] "=&r"(p1), [p2] "=&r"(p2),   \
    [p3] "=&r"(p3), [xo] "=&r"(xo), [q0] "=&r"(q0), [q1] "=&r"(q1), [q2] "=&r"(q2),           \
    [q3] "=&r"(q3)
#define TN_F16_XQ1 , [xo2] "=&r"(xo2) /* R = 1's second widened group */
#define TN_F16_XQ2
#define TN_F16_ASMX(BODY, R, I)                                                                 \
    __asm__ volatile(BODY : TN_F16_X0 TN_F16_XQ##R TN_F16_A##R : I : "cc", "memory")
/* NG groups: NG % 2 one at a time, NG % 4 two (TN_F16_L1 / L2), then four (NG % 8) and eight
 * per pass (sixteen per pass: 8 instructions less on VWW's head, 232 bytes more) */
#define TN_F16_RUNX(XT, R)                                                                      \
    do {                                                                                        \
        TN_F16_PIN;                                                                             \
        TN_F16_PINX;                                                                            \
        if (NG & 1u) TN_F16_ASM(TN_F16_G(XT, R), R, TN_F16_N);                                  \
        if (NG & 2u) TN_F16_ASML(TN_F16_L##R(XT), R, TN_F16_N);                                 \
        if (NG & 4u) TN_F16_ASMX(TN_F16_U##R(XT), R, TN_F16_N);                                 \
        if (NG >= 8u)                                                                           \
            TN_F16_ASMX("1:\n\t" TN_F16_U##R(XT) TN_F16_U##R(XT) TN_F16_LOOP, R, TN_F16_E);     \
    } while (0)
/* With an FPU (-mfpu=fpv5-d16, hard or softfp ABI: GCC defines __ARM_FP) GCC found no
 * registers for TN_F16_RUNX's thirteen and fourteen (eight of them pinned, R = 2) in layers
 * of two rows with per-channel multipliers ('asm' operand has impossible constraints: a
 * 124 -> 2 dense layer at -Og, the kernel sweep's 700 -> 2 at every level; session 22,
 * tests/test_build_hard_float.py): with an FPU the word-aligned rows take TN_F16_RUN_XS, as an
 * input of any alignment does. Without one (our QEMU builds, -mfloat-abi=soft, where the
 * instruction counts are measured) the code is unchanged. */
#if defined(__ARM_FP)
#define TN_F16_FPU 1u
#else
#define TN_F16_FPU 0u
#endif
#define TN_F16_RUN_XSX(R)                                                                       \
    do {                                                                                        \
        if (XA && XS && !TN_F16_FPU) TN_F16_RUNX("s", R);                                        \
        else if (XA && !TN_F16_FPU) TN_F16_RUNX("u", R);                                         \
        else TN_F16_RUN_XS(R);                                                                   \
    } while (0)
/* R = 4 .. 6 rows: one group per LDR of the input (any alignment, as TN_F16_G) and the rows'
 * 2 R weight words by LDM: four at a time for R = 4, 5 (q0 .. q3; R = 5's last row by LDRD
 * into q0, q1), three for R = 6 (q0 .. q2): 13, 16, 19 instructions per 4 R MACs (3 + 2 R and
 * 2, 3, 4 loads of weights), against 3 + 3 R for TN_F16_G and 2.5 + 3 R for the two-group LDRD
 * form they replace (DS-CNN's 64 -> 12 head: 7 + 5 rows). Registers: R accumulators, x, w,
 * end, v, xo and four (three) pinned: 13, 14, 14; one asm per block (TN_F16_ONE_S, below).
 * TN_F16_S1: one SMLAD */
#define TN_F16_S1(A, Q, V) "smlad %[" A "], %[" Q "], %[" V "], %[" A "]\n\t"
#define TN_F16_LDM3 "ldm %[w]!, {%[q0], %[q1], %[q2]}\n\t"
/* [g, rows 0 1] [g, rows 2 3] */
#define TN_F16_S4(XT)                                                                           \
    TN_F16_X(XT) TN_F16_LDM TN_F16_M("a0", "v", "xo", "q0", "q1")                               \
    TN_F16_M("a1", "v", "xo", "q2", "q3")                                                       \
    TN_F16_LDM TN_F16_M("a2", "v", "xo", "q0", "q1") TN_F16_M("a3", "v", "xo", "q2", "q3")
/* ... then [g, row 4] */
#define TN_F16_S5(XT)                                                                           \
    TN_F16_S4(XT) "ldrd %[q0], %[q1], [%[w]], #8\n\t" TN_F16_M("a4", "v", "xo", "q0", "q1")
/* [g, row 0, row 1's first word] [its second, row 2] [row 3, row 4's first] [its second,
 * row 5] */
#define TN_F16_S6(XT)                                                                           \
    TN_F16_X(XT)                                                                                \
    TN_F16_LDM3 TN_F16_S1("a0", "q0", "v") TN_F16_S1("a0", "q1", "xo") TN_F16_S1("a1", "q2", "v") \
    TN_F16_LDM3 TN_F16_S1("a1", "q0", "xo") TN_F16_S1("a2", "q1", "v")                          \
    TN_F16_S1("a2", "q2", "xo")                                                                 \
    TN_F16_LDM3 TN_F16_S1("a3", "q0", "v") TN_F16_S1("a3", "q1", "xo") TN_F16_S1("a4", "q2", "v") \
    TN_F16_LDM3 TN_F16_S1("a4", "q0", "xo") TN_F16_S1("a5", "q1", "v")                          \
    TN_F16_S1("a5", "q2", "xo")
#define TN_F16_S0 [x] "+&r"(x), [w] "+&r"(w), [v] "=&r"(v), [xo] "=&r"(xo), [q0] "=&r"(q0),     \
    [q1] "=&r"(q1), [q2] "=&r"(q2)
#define TN_F16_SQ4 , [q3] "=&r"(q3)
#define TN_F16_SQ5 TN_F16_SQ4
#define TN_F16_SQ6
/* Blocks of R = 4 .. 7 rows: the whole block in one asm statement (TN_F16_ONE), which loads
 * the rows' constants C itself (TN_F16_C4 .. C7: LDRD pairs) into write-only accumulators, then
 * runs NG % 2, NG % 4 and the loop in turn. Fourteen registers either way, but no accumulator
 * is an input: GCC then finds them at every level; with one asm per part (the accumulators
 * "+&r" from one to the next, the constants loaded in C) it failed at -O1, -Os, -Oz or -Og
 * at some call sites ('asm' operand has impossible constraints; -O1 and -Og define no macro
 * that a level-specific form could test). Four instructions for seven constants, where GCC
 * loaded them with seven LDR. */
#define TN_F16_C4 "ldrd %[a0], %[a1], [%[w]], #8\n\tldrd %[a2], %[a3], [%[w]], #8\n\t"
#define TN_F16_C5 TN_F16_C4 "ldr %[a4], [%[w]], #4\n\t"
#define TN_F16_C6 TN_F16_C4 "ldrd %[a4], %[a5], [%[w]], #8\n\t"
#define TN_F16_C7 TN_F16_C6 "ldr %[a6], [%[w]], #4\n\t"
#define TN_F16_W4 , [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3)
#define TN_F16_W5 TN_F16_W4, [a4] "=&r"(a4)
#define TN_F16_W6 TN_F16_W5, [a5] "=&r"(a5)
#define TN_F16_W7 TN_F16_W6, [a6] "=&r"(a6)
/* the G form (R = 7) and the S forms (R = 4 .. 6) with write-only accumulators */
#define TN_F16_ASM1G(BODY, R, I)                                                                \
    __asm__ volatile(TN_F16_C##R BODY : TN_F16_O0 TN_F16_W##R : I : "cc", "memory")
#define TN_F16_ASM1S(BODY, R, I)                                                                \
    __asm__ volatile(TN_F16_C##R BODY : TN_F16_S0 TN_F16_SQ##R TN_F16_W##R : I : "cc", "memory")
/* NG > 0 groups of G1 (one group) in one asm: NG % 2, NG % 4, then four per pass */
#define TN_F16_ONE(ASM1, G1, R)                                                                 \
    do {                                                                                        \
        switch ((NG & 3u) | (NG >= 4u ? 4u : 0u)) {                                             \
        case 1u: ASM1(G1, R, TN_F16_N); break;                                                  \
        case 2u: ASM1(G1 G1, R, TN_F16_N); break;                                               \
        case 3u: ASM1(G1 G1 G1, R, TN_F16_N); break;                                            \
        case 4u: ASM1("1:\n\t" G1 G1 G1 G1 TN_F16_LOOP, R, TN_F16_E); break;                    \
        case 5u: ASM1(G1 "1:\n\t" G1 G1 G1 G1 TN_F16_LOOP, R, TN_F16_E); break;                 \
        case 6u: ASM1(G1 G1 "1:\n\t" G1 G1 G1 G1 TN_F16_LOOP, R, TN_F16_E); break;              \
        default: ASM1(G1 G1 G1 "1:\n\t" G1 G1 G1 G1 TN_F16_LOOP, R, TN_F16_E); break;          \
        }                                                                                       \
    } while (0)
#define TN_F16_ONE_S(R)                                                                         \
    do {                                                                                        \
        TN_F16_PIN;                                                                             \
        (void)q3; /* R = 6: LDM of three */                                                     \
        if (XS) TN_F16_ONE(TN_F16_ASM1S, TN_F16_S##R("s"), R);                                  \
        else TN_F16_ONE(TN_F16_ASM1S, TN_F16_S##R("u"), R);                                     \
    } while (0)
#define TN_F16_ONE_G7                                                                           \
    do {                                                                                        \
        if (XS) TN_F16_ONE(TN_F16_ASM1G, TN_F16_G("s", 7), 7);                                  \
        else TN_F16_ONE(TN_F16_ASM1G, TN_F16_G("u", 7), 7);                                     \
    } while (0)
#define TN_F16_RUN_XS(R)                                                                        \
    do {                                                                                        \
        if (XS) TN_F16_RUN("s", R);                                                              \
        else TN_F16_RUN("u", R);                                                                 \
    } while (0)
#define TN_F16_RUN_XSL(R)                                                                       \
    do {                                                                                        \
        if (XA && XS) TN_F16_RUNL("s", R);                                                       \
        else if (XA) TN_F16_RUNL("u", R);                                                        \
        else TN_F16_RUN_XS(R);                                                                   \
    } while (0)
#endif

/* Output c of tn_m7_fc16 from its accumulator (DBL: 2 acc). */
TN_INLINE void tn_m7_fc16_put(const tn_layer_t *l, uint8_t *TN_RESTRICT out, uint32_t c,
                              uint32_t acc, uint32_t DBL, uint32_t REQ, uint32_t NM,
                              uint32_t ROUND, uint32_t OB, TN_RQ_ARGS)
{
    if (DBL && REQ && FAST == 3u && ROUND == TN_TFL_DOUBLE && OB == 8u) {
        /* tn_m7_out8 / tn_m7_out's FAST = 3 forms, the accumulator already doubled */
        const int32_t m0 = NM == 1u ? M0 : l->m0[c];
        const int32_t n0 = NM == 1u ? N0 : (int32_t)l->n0[c];
        const int32_t h = tn_smmulr((int32_t)acc, m0);
        const uint32_t right = (uint32_t)(-n0);
        int32_t r;
        if (NM == 1u && N0 >= -20 && ((LOZ + ZP == -128 && HIZ + ZP == 127)
                                      || (LOZ + ZP == 0 && HIZ + ZP == 255))) {
            const int32_t cst = (int32_t)((1u << (right - 1u)) + ((uint32_t)ZP << right));
            out[c] = (uint8_t)tn_sat8((h + cst + (h >> 31)) >> right, LOZ + ZP == -128);
            return;
        }
        r = (h + (int32_t)(1u << (right - 1u)) + (h >> 31)) >> right;
        r = r < LOZ ? LOZ : (r > HIZ ? HIZ : r);
        out[c] = (uint8_t)(r + ZP);
        return;
    }
    if (DBL) /* 2 acc, |acc| < 2^30: the halving is exact */
        acc = (uint32_t)((int32_t)acc >> 1);
    tn_m7_put(l, out, c, c, acc, REQ, NM, ROUND, OB, TN_RQ);
}

/* Row r of a block (output c + r): its t = K % 4 tail lanes (the block's at wt, the inputs'
 * at tail) added to acc, then requantized and stored. */
TN_INLINE void tn_m7_fc16_end(const tn_layer_t *l, const uint8_t *wt, const uint8_t *in,
                              uint8_t *TN_RESTRICT out, uint32_t c, uint32_t r, uint32_t t,
                              uint32_t acc, uint32_t XS, uint32_t DBL, uint32_t REQ, uint32_t NM,
                              uint32_t ROUND, uint32_t OB, TN_RQ_ARGS)
{
    for (uint32_t j = 0; j < t; j++) {
        const uint8_t *p = wt + 2u * (r * t + j);
        const int32_t d = (int32_t)(int16_t)(uint16_t)(p[0] | (p[1] << 8));
        acc += (uint32_t)(d * tn_m7_x8(in, j, XS, 0));
    }
    tn_m7_fc16_put(l, out, c + r, acc, DBL, REQ, NM, ROUND, OB, TN_RQ);
}

/* Outputs c .. c + R - 1 (one block of R rows, 1 <= R <= 7, weights at w, word-aligned when
 * ALIGNED); returns w past the block. */
TN_INLINE const uint8_t *tn_m7_fc16_block(const tn_layer_t *l, const uint8_t *w,
                                          const uint8_t *in, uint8_t *TN_RESTRICT out,
                                          uint32_t c, uint32_t R, uint32_t K, uint32_t XS,
                                          uint32_t ALIGNED, uint32_t DBL, uint32_t REQ,
                                          uint32_t NM, uint32_t ROUND, uint32_t OB, TN_RQ_ARGS)
{
    const uint32_t NG = K / 4u, t = K & 3u, tails = (2u * R * t + 3u) & ~3u;
#if TN_M7_ASM
    if (ALIGNED) { /* the accumulators in registers throughout (no array: no stack) */
        const uint8_t *x = in, *end = in + 4u * NG;
        const uint32_t XA = ((uintptr_t)in & 3u) == 0u; /* the two-group form's LDRD */
        /* ONE: the block's single asm loads the constants (R >= 4, TN_F16_ONE) */
        const uint32_t ONE = R >= 4u && NG > 0u;
        uint32_t a0 = 0u, a1 = 0u, a2 = 0u, a3 = 0u, a4 = 0u, a5 = 0u, a6 = 0u, v, xo, u, u2, v2,
                 xo2;
        if (!ONE) {
            a0 = tn_ld32(w), a1 = R > 1u ? tn_ld32(w + 4) : 0u;
            a2 = R > 2u ? tn_ld32(w + 8) : 0u, a3 = R > 3u ? tn_ld32(w + 12) : 0u;
            a4 = R > 4u ? tn_ld32(w + 16) : 0u, a5 = R > 5u ? tn_ld32(w + 20) : 0u;
            a6 = R > 6u ? tn_ld32(w + 24) : 0u;
            w += 4u * R;
        }
        switch (R) {
        case 1u: TN_F16_RUN_XSX(1); break;
        case 2u: TN_F16_RUN_XSX(2); break;
        case 3u: TN_F16_RUN_XSL(3); break;
        case 4u: if (NG) TN_F16_ONE_S(4); break;
        case 5u: if (NG) TN_F16_ONE_S(5); break;
        case 6u: if (NG) TN_F16_ONE_S(6); break;
        default: if (NG) TN_F16_ONE_G7; break;
        }
        /* w and x end at the tails (of the weights, of the input) */
        tn_m7_fc16_end(l, w, x, out, c, 0u, t, a0, XS, DBL, REQ, NM, ROUND, OB, TN_RQ);
        if (R > 1u)
            tn_m7_fc16_end(l, w, x, out, c, 1u, t, a1, XS, DBL, REQ, NM, ROUND, OB, TN_RQ);
        if (R > 2u)
            tn_m7_fc16_end(l, w, x, out, c, 2u, t, a2, XS, DBL, REQ, NM, ROUND, OB, TN_RQ);
        if (R > 3u)
            tn_m7_fc16_end(l, w, x, out, c, 3u, t, a3, XS, DBL, REQ, NM, ROUND, OB, TN_RQ);
        if (R > 4u)
            tn_m7_fc16_end(l, w, x, out, c, 4u, t, a4, XS, DBL, REQ, NM, ROUND, OB, TN_RQ);
        if (R > 5u)
            tn_m7_fc16_end(l, w, x, out, c, 5u, t, a5, XS, DBL, REQ, NM, ROUND, OB, TN_RQ);
        if (R > 6u)
            tn_m7_fc16_end(l, w, x, out, c, 6u, t, a6, XS, DBL, REQ, NM, ROUND, OB, TN_RQ);
        return w + tails;
    }
#endif
    { /* the host build, and a misaligned weight array: the same sums in C, a row at a time
       * (one accumulator: no array on the stack) */
        const uint8_t *wg = w + 4u * R, *wt = wg + 8u * R * NG;
        uint32_t r, j;
        (void)ALIGNED;
        for (r = 0; r < R; r++) {
            uint32_t a = tn_ld32(w + 4u * r);
            for (j = 0; j < NG; j++) {
                const uint32_t v = tn_ld32(in + 4u * j);
                const uint8_t *wr = wg + 8u * (j * R + r);
                a = (uint32_t)tn_smlad(tn_ld32(wr), XS ? tn_sxtab16(0u, v) : tn_uxtb16(v),
                                       (int32_t)a);
                a = (uint32_t)tn_smlad(tn_ld32(wr + 4),
                                       XS ? tn_sxtab16_ror8(0u, v) : tn_uxtb16_ror8(v),
                                       (int32_t)a);
            }
            tn_m7_fc16_end(l, wt, in + 4u * NG, out, c, r, t, a, XS, DBL, REQ, NM, ROUND, OB,
                           TN_RQ);
        }
        return wt + tails;
    }
}

/* A small dense layer K -> N of 8-bit inputs and weights (weights in tn_m7_fc16's layout,
 * above; DBL: doubled lanes and constants). */
TN_INLINE void tn_m7_fc16(const tn_layer_t *l, const uint8_t *in, uint8_t *TN_RESTRICT out,
                          uint32_t K, uint32_t N, uint32_t XS, uint32_t DBL, uint32_t REQ,
                          uint32_t NM, uint32_t ROUND, uint32_t OB, TN_RQ_ARGS)
{
    const uint8_t *w = l->w; /* read once (the asm's memory clobber would reload it) */
    const uint32_t aligned = ((uintptr_t)w & 3u) == 0u, full = N / 7u, rest = N % 7u;
    uint32_t b;
    for (b = 0; b < full; b++)
        w = tn_m7_fc16_block(l, w, in, out, 7u * b, 7u, K, XS, aligned, DBL, REQ, NM, ROUND, OB,
                             TN_RQ);
    if (rest)
        tn_m7_fc16_block(l, w, in, out, 7u * full, rest, K, XS, aligned, DBL, REQ, NM, ROUND,
                         OB, TN_RQ);
}

/* ---------------------------------------------------------------------------------------------
 * Convolutions and pointwise layers of 8-bit inputs and 8-bit weights: tn_m7_conv. Two output
 * pixels x one pair of output channels per inner loop, 13 instructions per 16 MACs (the row-pair
 * arithmetic is tn_m7_fc's, above).
 *
 * Scratch (the step's, in the arena: tinyopt.integer.steps.scratch_parts): the two pixels'
 * windows as int16 lanes x' = x - z_x, interleaved word by word (word j of pixel P at word
 * 2 j + P), so that one LDRD loads the same two lanes of both pixels; then, with a fused ADD,
 * room for the pair's 2 CO int32 outputs (used only when FADD = 0: tn_m7_emit's portable
 * arithmetic after the pair; with FADD, tn_m7_cv_out adds each output to the other addend as
 * it is computed).
 *
 * Window order. A window is KH rows of KW * C input bytes (contiguous in the HWC input; with
 * dilation DH, DW the rows DH input rows apart and a row's KW taps of C bytes DW columns apart,
 * tn_m7_cv_window_d), each row padded to KWCP = KW * C rounded up to 4 lanes: KP = KH * KWCP
 * lanes. Where two pixels' rows overlap by whole groups (stride below KW) both windows are
 * gathered in one pass (tn_m7_cv_window2). A group of four lanes
 * (x_k, .., x_k+3) is stored as the words (x_k, x_k+2) and (x_k+1, x_k+3): what SXTAB16 /
 * UXTAB16 make of a loaded word, so a row inside the input is widened four bytes at a time with
 * the offset -z_x added on the way. The weights are exported in that order
 * (kernels_m7.conv_weights): each output row padded the same way with its weight zero point (a
 * padding lane adds (z_w - z_w) x' = 0 whatever it holds, as long as sum x' holds it too), then
 * rows in pairs a, b, per group the words [a_k, b_k ^ 0x80, a_k+2, b_k+2 ^ 0x80],
 * [a_k+1, b_k+1 ^ 0x80, a_k+3, b_k+3 ^ 0x80] (tn_m7_fc's words); the last row of an odd CO as it
 * is. Per group, pair and pixel pair: one LDRD of weights, two LDRD of lanes, four SMLALD, two
 * UXTB16 and four SMLAD; sum (b - 128) x' = (R - S_a) / 256 exactly (tn_m7_fc).
 *
 * QUAD (kernels_m7.conv_plan: every pair's sum bounded in 32 bits): the rows first in blocks of
 * two pairs, per group [pair 0 A, pair 1 A, pair 0 B, pair 1 B], both pairs at both pixels per
 * loop (tn_m7_cv_quad: 24 instructions per 32 MACs). QUAD = 2 (pointwise layers of at most 32
 * lanes with a table): int16 weights 2 (w - z_w) in blocks of four rows instead (tn_m7_cv_w16:
 * 22 instructions per 32 MACs, no sum of x', no R - S_a; with TAB 4 and a whole-range clamp the
 * layer's blocks at a pixel pair in one statement, tn_m7_cv_w16_run). TAB: every block's
 * weights followed by its
 * channels' requantization words (tn_m7_cv_tchan, tn_m7_cv_rq; in assembly for TAB 4 with SGW
 * and a whole-range clamp, tn_m7_cv_epi4: about six instructions per output).
 *
 * Output order and the reads before each write are those of tn_m7_gemm (both pixels' windows
 * read before either's outputs are written): the planner's sliding writes stay valid.
 * --------------------------------------------------------------------------------------------- */

/* Output element idx of tn_m7_conv, y its requantized, clamped code: stored (MODE 0), or with
 * the residual ADD fused (MODE 2): FADD, the ADD applied at once, out[idx] = ADD(y, other[idx])
 * with tn_m7_add's arithmetic (tn_m7_add_elem and its clamp; element idx of other read before
 * element idx of out is written, so out may lie exactly over other, the plan's in-place write);
 * else kept as int32 in v[vi] for tn_m7_emit's portable arithmetic after the pair. */
TN_INLINE void tn_m7_cv_out(uint8_t *TN_RESTRICT out, const uint8_t *other,
                            int32_t *TN_RESTRICT v, uint32_t MODE, uint32_t idx, uint32_t vi,
                            int32_t y, uint32_t OB, TN_FADD_ARGS)
{
    if (MODE != 2u) {
        tn_m7_set(out, idx, y, OB);
        return;
    }
    if (!FADD) {
        v[vi] = y;
        return;
    }
    const int32_t zv = SLOT ? AZB : AZA, zo = SLOT ? AZA : AZB;
    const int32_t dv = (int32_t)((uint32_t)y - (uint32_t)zv);
    /* LDRSB / LDRB and one SUB */
    const int32_t dw = (AXS ? (int32_t)((const int8_t *)other)[idx] : (int32_t)other[idx]) - zo;
    int32_t o = SLOT ? tn_m7_add_elem(dw, dv, AOS, TN_ST(A), TN_ST(B), TN_ST(Q))
                     : tn_m7_add_elem(dv, dw, AOS, TN_ST(A), TN_ST(B), TN_ST(Q));
    if (ALO > (AOS ? -128 : 0)) o = o < ALO ? ALO : o;
    if (AHI < (AOS ? 127 : 255)) o = o > AHI ? AHI : o;
    out[idx] = (uint8_t)o;
}

/* Channel c at pixels p and (TWO) p + 1: sums v0, v1 of w x' (w the stored codes), weight zero
 * point z (a b row: 128, its own added through k = 128 - z_b), the tables read once; each
 * output through tn_m7_cv_out (pixel p's int32 at v[c], p + 1's at v[CO + c]). */
TN_INLINE void tn_m7_cv_chan(const tn_layer_t *l, const int32_t *bias, const uint8_t *wzp,
                             const int32_t *m0p, const int8_t *n0p, uint8_t *TN_RESTRICT out,
                             const uint8_t *other, int32_t *TN_RESTRICT v, uint32_t MODE,
                             uint32_t p, uint32_t two, uint32_t c, uint32_t brow, uint32_t v0,
                             uint32_t v1, int32_t s0, int32_t s1, uint32_t CO, uint32_t NWZP,
                             int32_t ZW, uint32_t REQ, uint32_t NM, uint32_t ROUND, uint32_t OB,
                             uint32_t SGW, TN_RQ_ARGS, TN_FADD_ARGS)
{
    const int32_t z = NWZP == 1u ? ZW : (int32_t)wzp[c];
    /* sum (w - z) x' = v + k sum x' (SGW: v itself) */
    const uint32_t k = SGW ? 0u : brow ? (uint32_t)(128 - z) : (uint32_t)(-z);
    const uint32_t bc = (uint32_t)bias[c];
    const int32_t m0c = NM == 1u ? 0 : m0p[c], n0c = NM == 1u ? 0 : (int32_t)n0p[c];
    /* a clamp to the whole 8-bit range: one SSAT / USAT after adding the zero point (FAST >= 2:
     * every n0 < 0, so |requantized| < 2^30 and no add overflows); tn_m7_out's own clamp is
     * then to the int32 range, which the compiler drops */
    const uint32_t SAT = REQ && FAST >= 2u && ((LOZ + ZP == -128 && HIZ + ZP == 127)
                                               || (LOZ + ZP == 0 && HIZ + ZP == 255));
    const uint32_t SATS = LOZ + ZP == -128;
    if (SAT) {
        const int32_t lo = INT32_MIN, hi = INT32_MAX;
        const int32_t y0 = tn_sat8(tn_m7_req(l, bc + v0 + k * (uint32_t)s0, c, m0c, n0c, REQ, NM,
                                             ROUND, FAST, M0, N0, lo, hi, 0) + ZP, SATS);
        tn_m7_cv_out(out, other, v, MODE, p * CO + c, c, y0, OB, TN_FADD);
        if (two) {
            const int32_t y1 = tn_sat8(tn_m7_req(l, bc + v1 + k * (uint32_t)s1, c, m0c, n0c, REQ,
                                                 NM, ROUND, FAST, M0, N0, lo, hi, 0) + ZP, SATS);
            tn_m7_cv_out(out, other, v, MODE, (p + 1u) * CO + c, CO + c, y1, OB, TN_FADD);
        }
        return;
    }
    const int32_t y0 = tn_m7_req(l, bc + v0 + k * (uint32_t)s0, c, m0c, n0c, REQ, NM, ROUND, TN_RQ);
    tn_m7_cv_out(out, other, v, MODE, p * CO + c, c, y0, OB, TN_FADD);
    if (two) {
        const int32_t y1 = tn_m7_req(l, bc + v1 + k * (uint32_t)s1, c, m0c, n0c, REQ, NM, ROUND,
                                     TN_RQ);
        tn_m7_cv_out(out, other, v, MODE, (p + 1u) * CO + c, CO + c, y1, OB, TN_FADD);
    }
}

/* Widen the N bytes at src (one window row inside the input, or one tap) into the lanes of one
 * pixel from word d on (the pixel's words two apart), the last group completed with code 0;
 * returns sum + the lanes' sum. */
TN_INLINE int32_t tn_m7_cv_run(const uint8_t *src, uint32_t *TN_RESTRICT d, uint32_t N,
                               uint32_t XS, uint32_t off, int32_t sum)
{
    uint32_t i = 0;
    TN_UNROLL
    for (; i + 4u <= N; i += 4u, d += 4) {
        const uint32_t v = tn_ld32(src + i);
        const uint32_t a = XS ? tn_sxtab16(off, v) : tn_uxtab16(off, v);
        const uint32_t b = XS ? tn_sxtab16_ror8(off, v) : tn_uxtab16_ror8(off, v);
        d[0] = a;
        d[2] = b;
        sum = tn_smlad(a, 0x00010001u, sum);
        sum = tn_smlad(b, 0x00010001u, sum);
    }
    if (i < N) { /* the row's last 1-3 bytes (never a byte past them: the input may end there) */
        uint32_t v = src[i], a, b;
        if (i + 1u < N) v |= (uint32_t)src[i + 1u] << 8;
        if (i + 2u < N) v |= (uint32_t)src[i + 2u] << 16;
        a = XS ? tn_sxtab16(off, v) : tn_uxtab16(off, v);
        b = XS ? tn_sxtab16_ror8(off, v) : tn_uxtab16_ror8(off, v);
        d[0] = a;
        d[2] = b;
        sum = tn_smlad(a, 0x00010001u, sum);
        sum = tn_smlad(b, 0x00010001u, sum);
    }
    return sum;
}

/* The window of output pixel (oy, ox) as lanes of one pixel from word d on; returns sum x'.
 * Taps outside the input hold padv (0 - z_x with PADZERO: the code 0; else x' = 0). Dilation
 * DH, DW (integer.ops.compute): window row ky is input row oy SH - PT + ky DH, its tap kx input
 * column ox SW - PL + kx DW; with DW > 1 a row is KW runs of C bytes (the per-tap paths). */
TN_INLINE int32_t tn_m7_cv_window_d(const uint8_t *in, uint32_t *TN_RESTRICT d, int32_t oy,
                                    int32_t ox, int32_t H, int32_t W, uint32_t C, int32_t KH,
                                    int32_t KW, int32_t SH, int32_t SW, int32_t PT, int32_t PL,
                                    int32_t DH, int32_t DW, uint32_t XS, int32_t ZX,
                                    uint32_t PADZERO, uint32_t KWCP, uint32_t INSIDE)
{
    const uint32_t off = ((uint32_t)(-ZX) & 0xFFFFu) * 0x00010001u;
    const int32_t padv = PADZERO ? -ZX : 0;
    const uint32_t padw = ((uint32_t)padv & 0xFFFFu) * 0x00010001u;
    const uint32_t row = (uint32_t)KW * C;
    const int32_t y0 = oy * SH - PT, x0 = ox * SW - PL;
    int32_t sum = 0;
    for (int32_t ky = 0; ky < KH; ky++) {
        uint32_t *dr = d + (uint32_t)ky * KWCP; /* KWCP / 2 words of this pixel, two apart */
        const int32_t iy = y0 + ky * DH;
        if (!INSIDE && (iy < 0 || iy >= H)) {
            for (uint32_t j = 0; j < KWCP / 2u; j++) dr[2u * j] = padw;
            sum += padv * (int32_t)KWCP;
            continue;
        }
        if (DW == 1 && (INSIDE || (x0 >= 0 && x0 + KW <= W))) {
            sum = tn_m7_cv_run(in + ((uint32_t)iy * (uint32_t)W + (uint32_t)x0) * C, dr, row, XS,
                               off, sum);
            continue;
        }
        if (C % 4u == 0u) { /* a tap is C / 4 whole groups */
            for (int32_t kx = 0; kx < KW; kx++) {
                const int32_t ix = x0 + kx * DW;
                uint32_t *dt = dr + (uint32_t)kx * C;
                if (INSIDE || (ix >= 0 && ix < W)) {
                    sum = tn_m7_cv_run(in + ((uint32_t)iy * (uint32_t)W + (uint32_t)ix) * C, dt,
                                       C, XS, off, sum);
                } else {
                    for (uint32_t j = 0; j < C / 2u; j++) dt[2u * j] = padw;
                    sum += padv * (int32_t)C;
                }
            }
            continue;
        }
        /* taps straddle groups: lane by lane, each group's two words built in registers; the
         * row's padding lanes hold 0 */
        for (uint32_t g = 0; g < KWCP / 4u; g++) {
            int32_t e4[4];
            for (uint32_t r = 0; r < 4u; r++) {
                const uint32_t e = 4u * g + r;
                int32_t val = 0;
                if (e < row) {
                    const int32_t ix = x0 + (int32_t)(e / C) * DW;
                    val = (INSIDE || (ix >= 0 && ix < W))
                        ? tn_m7_x8(in, ((uint32_t)iy * (uint32_t)W + (uint32_t)ix) * C + e % C,
                                   XS, ZX)
                        : padv;
                }
                e4[r] = val;
                sum += val;
            }
            dr[4u * g] = ((uint32_t)e4[0] & 0xFFFFu) | ((uint32_t)e4[2] << 16);
            dr[4u * g + 2u] = ((uint32_t)e4[1] & 0xFFFFu) | ((uint32_t)e4[3] << 16);
        }
    }
    return sum;
}

/* Widen input word v into group slot d (a pixel's words two apart) and add its lanes to *sum. */
TN_INLINE void tn_m7_cv_word(uint32_t v, uint32_t *TN_RESTRICT d, uint32_t XS, uint32_t off,
                             int32_t *sum)
{
    const uint32_t a = XS ? tn_sxtab16(off, v) : tn_uxtab16(off, v);
    const uint32_t b = XS ? tn_sxtab16_ror8(off, v) : tn_uxtab16_ror8(off, v);
    d[0] = a;
    d[2] = b;
    *sum = tn_smlad(b, 0x00010001u, tn_smlad(a, 0x00010001u, *sum));
}

/* Both pixels' windows at once (pixels p, p + 1 of one output row, stride SW, undilated, window
 * rows of whole groups, KW C % 4 == 0, overlapping: SW < KW, by whole groups: SW C % 4 == 0):
 * row ky of pixel p + 1 starts SW C bytes after pixel p's, so each input word of the union of
 * the two rows is loaded and widened once and stored to the pixel (or both) whose row holds it.
 * Same lanes and sums as two tn_m7_cv_window_d calls; the rows' horizontal extent x0 .. x0 + SW
 * + KW - 1 must lie inside the input (the caller checks it), the vertical one may leave it
 * (padw rows). */
TN_INLINE void tn_m7_cv_window2(const uint8_t *in, uint32_t *TN_RESTRICT d, int32_t oy,
                                int32_t x0, int32_t H, int32_t W, uint32_t C, int32_t KH,
                                int32_t SH, int32_t SW, int32_t PT, int32_t DH,
                                uint32_t XS, int32_t ZX, uint32_t PADZERO, uint32_t KWCP,
                                uint32_t INSIDE, int32_t *s0, int32_t *s1)
{
    const uint32_t off = ((uint32_t)(-ZX) & 0xFFFFu) * 0x00010001u;
    const int32_t padv = PADZERO ? -ZX : 0;
    const uint32_t padw = ((uint32_t)padv & 0xFFFFu) * 0x00010001u;
    const uint32_t n = KWCP / 4u, lag = (uint32_t)SW * C / 4u; /* words per row; q's offset */
    const int32_t y0 = oy * SH - PT;
    int32_t a0 = 0, a1 = 0;
    for (int32_t ky = 0; ky < KH; ky++) {
        uint32_t *dr = d + (uint32_t)ky * KWCP; /* pixel p's group g at dr[4 g], q's at +1 */
        const int32_t iy = y0 + ky * DH;
        if (!INSIDE && (iy < 0 || iy >= H)) {
            for (uint32_t j = 0; j < KWCP; j++) dr[j] = padw;
            a0 += padv * (int32_t)KWCP;
            a1 += padv * (int32_t)KWCP;
            continue;
        }
        const uint8_t *src = in + ((uint32_t)iy * (uint32_t)W + (uint32_t)x0) * C;
        uint32_t j = 0;
        TN_UNROLL
        for (; j < lag; j++) /* pixel p's words alone */
            tn_m7_cv_word(tn_ld32(src + 4u * j), dr + 4u * j, XS, off, &a0);
        TN_UNROLL
        for (; j < n; j++) { /* p's group j is q's group j - lag */
            const uint32_t v = tn_ld32(src + 4u * j);
            tn_m7_cv_word(v, dr + 4u * j, XS, off, &a0);
            tn_m7_cv_word(v, dr + 4u * (j - lag) + 1u, XS, off, &a1);
        }
        TN_UNROLL
        for (; j < n + lag; j++) /* pixel q's words alone */
            tn_m7_cv_word(tn_ld32(src + 4u * j), dr + 4u * (j - lag) + 1u, XS, off, &a1);
    }
    *s0 = a0;
    *s1 = a1;
}

/* tn_m7_cv_window_d without dilation (tn_m7_sub.h's 8-bit-input windows). */
TN_INLINE int32_t tn_m7_cv_window(const uint8_t *in, uint32_t *TN_RESTRICT d, int32_t oy,
                                  int32_t ox, int32_t H, int32_t W, uint32_t C, int32_t KH,
                                  int32_t KW, int32_t SH, int32_t SW, int32_t PT, int32_t PL,
                                  uint32_t XS, int32_t ZX, uint32_t PADZERO, uint32_t KWCP,
                                  uint32_t INSIDE)
{
    return tn_m7_cv_window_d(in, d, oy, ox, H, W, C, KH, KW, SH, SW, PT, PL, 1, 1, XS, ZX,
                             PADZERO, KWCP, INSIDE);
}

#if TN_M7_ASM
/* One group of four lanes, one row pair, both pixels (x: the interleaved lanes, w: the pair's
 * words). */
#define TN_CV_GROUP(WX)                                                                         \
    "ldrd %[u0], %[u1], [%[w]], #8\n\t"                                                         \
    "ldrd %[xa], %[xb], [%[x]], #8\n\t"                                                         \
    "smlald %[r0l], %[r0h], %[u0], %[xa]\n\t"                                                   \
    "smlald %[r1l], %[r1h], %[u0], %[xb]\n\t"                                                   \
    WX "xtb16 %[u0], %[u0]\n\t"                                                                 \
    "smlad %[a0], %[u0], %[xa], %[a0]\n\t"                                                      \
    "smlad %[a1], %[u0], %[xb], %[a1]\n\t"                                                      \
    "ldrd %[xa], %[xb], [%[x]], #8\n\t"                                                         \
    "smlald %[r0l], %[r0h], %[u1], %[xa]\n\t"                                                   \
    "smlald %[r1l], %[r1h], %[u1], %[xb]\n\t"                                                   \
    WX "xtb16 %[u1], %[u1]\n\t"                                                                 \
    "smlad %[a0], %[u1], %[xa], %[a0]\n\t"                                                      \
    "smlad %[a1], %[u1], %[xb], %[a1]\n\t"
/* the same with weights not word-aligned (LDRD needs it): two LDR */
#define TN_CV_GROUP_U(WX)                                                                       \
    "ldr %[u0], [%[w]], #4\n\t"                                                                 \
    "ldr %[u1], [%[w]], #4\n\t"                                                                 \
    "ldrd %[xa], %[xb], [%[x]], #8\n\t"                                                         \
    "smlald %[r0l], %[r0h], %[u0], %[xa]\n\t"                                                   \
    "smlald %[r1l], %[r1h], %[u0], %[xb]\n\t"                                                   \
    WX "xtb16 %[u0], %[u0]\n\t"                                                                 \
    "smlad %[a0], %[u0], %[xa], %[a0]\n\t"                                                      \
    "smlad %[a1], %[u0], %[xb], %[a1]\n\t"                                                      \
    "ldrd %[xa], %[xb], [%[x]], #8\n\t"                                                         \
    "smlald %[r0l], %[r0h], %[u1], %[xa]\n\t"                                                   \
    "smlald %[r1l], %[r1h], %[u1], %[xb]\n\t"                                                   \
    WX "xtb16 %[u1], %[u1]\n\t"                                                                 \
    "smlad %[a0], %[u1], %[xa], %[a0]\n\t"                                                      \
    "smlad %[a1], %[u1], %[xb], %[a1]\n\t"
/* One asm statement per call (as TN_F16_ONE): the six sums zeroed inside it (TN_CV_ZERO) and
 * written only, NG % 2, NG % 4 and the loop in turn; the loop's end an input only where there
 * is a loop. With one asm per part and the sums "+&r" from one to the next, GCC found no
 * registers for them at -O3 and -Og at some call sites (a conv of 8-bit weights and a 4-bit
 * output in a mixed graph). Every output early-clobber: the asm reads x, w and end after
 * writing the others. */
#define TN_CV_ZERO                                                                              \
    "movs %[a0], #0\n\tmovs %[a1], #0\n\tmovs %[r0l], #0\n\tmovs %[r0h], #0\n\t"                \
    "movs %[r1l], #0\n\tmovs %[r1h], #0\n\t"
#define TN_CV_ASM(BODY, I)                                                                      \
    __asm__ volatile(TN_CV_ZERO BODY                                                            \
                     : [x] "+&r"(x), [w] "+&r"(w), [xa] "=&r"(xa), [xb] "=&r"(xb),              \
                       [u0] "=&r"(u0), [u1] "=&r"(u1), [a0] "=&r"(a0), [a1] "=&r"(a1),          \
                       [r0l] "=&r"(r0l), [r0h] "=&r"(r0h), [r1l] "=&r"(r1l), [r1h] "=&r"(r1h)   \
                     : I : "cc", "memory")
#define TN_CV_END [end] "r"(end)
#define TN_CV_LOOP(G) "1:\n\t" G G G G "cmp %[x], %[end]\n\tbne 1b\n\t"
#define TN_CV_BLOCKS(G)                                                                         \
    do {                                                                                        \
        switch ((NG & 3u) | (NG >= 4u ? 4u : 0u)) {                                             \
        case 0u: a0 = a1 = r0l = r0h = r1l = r1h = 0u; break; /* no group */                   \
        case 1u: TN_CV_ASM(G, ); break;                                                         \
        case 2u: TN_CV_ASM(G G, ); break;                                                       \
        case 3u: TN_CV_ASM(G G G, ); break;                                                     \
        case 4u: TN_CV_ASM(TN_CV_LOOP(G), TN_CV_END); break;                                    \
        case 5u: TN_CV_ASM(G TN_CV_LOOP(G), TN_CV_END); break;                                  \
        case 6u: TN_CV_ASM(G G TN_CV_LOOP(G), TN_CV_END); break;                                \
        default: TN_CV_ASM(G G G TN_CV_LOOP(G), TN_CV_END); break;                              \
        }                                                                                       \
    } while (0)
#endif

/* S_a and R (tn_m7_fc) of one row pair (weights at w) at both pixels of the interleaved lanes
 * buf, over KP lanes; returns w past the pair's 2 KP bytes. ALIGNED: the layer's weights are
 * word-aligned (LDRD). */
TN_INLINE const uint8_t *tn_m7_cv_pair(const uint8_t *w, const uint32_t *buf, uint32_t KP,
                                       uint32_t ALIGNED, uint32_t SGW, int32_t *sa, int64_t *r)
{
    const uint32_t NG = KP / 4u;
#if TN_M7_ASM
    const uint32_t *x = buf, *end = buf + KP; /* KP / 2 words per pixel */
    uint32_t a0 = 0, a1 = 0, r0l = 0, r0h = 0, r1l = 0, r1h = 0, xa, xb, u0, u1;
    if (ALIGNED && SGW)
        TN_CV_BLOCKS(TN_CV_GROUP("s"));
    else if (ALIGNED)
        TN_CV_BLOCKS(TN_CV_GROUP("u"));
    else if (SGW)
        TN_CV_BLOCKS(TN_CV_GROUP_U("s"));
    else
        TN_CV_BLOCKS(TN_CV_GROUP_U("u"));
    sa[0] = (int32_t)a0;
    sa[1] = (int32_t)a1;
    r[0] = (int64_t)(((uint64_t)r0h << 32) | r0l);
    r[1] = (int64_t)(((uint64_t)r1h << 32) | r1l);
    return w;
#else
    int32_t a0 = 0, a1 = 0;
    int64_t r0 = 0, r1 = 0;
    (void)ALIGNED;
    for (uint32_t g = 0; g < NG; g++, w += 8) {
        const uint32_t u0 = tn_ld32(w), u1 = tn_ld32(w + 4);
        const uint32_t *xg = buf + 4u * g; /* A of pixel 0, A of pixel 1, B of 0, B of 1 */
        r0 = tn_smlald(u1, xg[2], tn_smlald(u0, xg[0], r0));
        r1 = tn_smlald(u1, xg[3], tn_smlald(u0, xg[1], r1));
        a0 = tn_smlad(tn_m7_wx(u1, SGW), xg[2], tn_smlad(tn_m7_wx(u0, SGW), xg[0], a0));
        a1 = tn_smlad(tn_m7_wx(u1, SGW), xg[3], tn_smlad(tn_m7_wx(u0, SGW), xg[1], a1));
    }
    sa[0] = a0;
    sa[1] = a1;
    r[0] = r0;
    r[1] = r1;
    return w;
#endif
}

#if TN_M7_ASM
/* One group of four lanes, two row pairs (u0: pair 0's word, u1: pair 1's), both pixels, 32-bit
 * sums (QUAD): per half group one LDRD of lanes, the pairs' two words, four SMLAD on the words,
 * two UXTB16 and four SMLAD on the a codes: 24 instructions per 32 MACs. */
#define TN_CV_QHALF(LW, WX)                                                                       \
    "ldrd %[xa], %[xb], [%[x]], #8\n\t" LW                                                      \
    "smlad %[r00], %[u0], %[xa], %[r00]\n\t"                                                    \
    "smlad %[r01], %[u0], %[xb], %[r01]\n\t"                                                    \
    "smlad %[r10], %[u1], %[xa], %[r10]\n\t"                                                    \
    "smlad %[r11], %[u1], %[xb], %[r11]\n\t"                                                    \
    WX "xtb16 %[u0], %[u0]\n\t"                                                                 \
    WX "xtb16 %[u1], %[u1]\n\t"                                                                 \
    "smlad %[a00], %[u0], %[xa], %[a00]\n\t"                                                    \
    "smlad %[a01], %[u0], %[xb], %[a01]\n\t"                                                    \
    "smlad %[a10], %[u1], %[xa], %[a10]\n\t"                                                    \
    "smlad %[a11], %[u1], %[xb], %[a11]\n\t"
#define TN_CV_QLDD "ldrd %[u0], %[u1], [%[w]], #8\n\t"
#define TN_CV_QLD2 "ldr %[u0], [%[w]], #4\n\tldr %[u1], [%[w]], #4\n\t"
#define TN_CV_QGROUP(WX) TN_CV_QHALF(TN_CV_QLDD, WX) TN_CV_QHALF(TN_CV_QLDD, WX)
#define TN_CV_QGROUP_U(WX) TN_CV_QHALF(TN_CV_QLD2, WX) TN_CV_QHALF(TN_CV_QLD2, WX)
/* The whole call in one asm statement (as TN_F16_ONE): the first group starts the eight sums
 * with SMUAD (TN_CV_QGROUP0: no zeroing, no sum an input), then the NG - 1 others: NG - 1 & 3
 * first, then four straight below eight, else a loop of four. Fourteen register operands: the
 * loop's end is read from memory (into u0, free at that point). With one asm per part (the
 * sums "+&r" from one to the next) GCC found no registers for them at -O3 and -Og at some call
 * sites (a conv of 8-bit weights and a 4-bit output in a mixed graph). */
#define TN_CV_QASM(BODY, I)                                                                     \
    __asm__ volatile(BODY                                                                       \
                     : [x] "+&r"(x), [w] "+&r"(w), [xa] "=&r"(xa), [xb] "=&r"(xb),              \
                       [u0] "=&r"(u0), [u1] "=&r"(u1), [a00] "=&r"(a00), [a01] "=&r"(a01),      \
                       [a10] "=&r"(a10), [a11] "=&r"(a11), [r00] "=&r"(r00), [r01] "=&r"(r01),  \
                       [r10] "=&r"(r10), [r11] "=&r"(r11)                                       \
                     : I : "cc", "memory")
#define TN_CV_QEND [endm] "m"(endv)
#define TN_CV_QLOOP(G) "1:\n\t" G G G G "ldr %[u0], %[endm]\n\tcmp %[x], %[u0]\n\tbne 1b\n\t"
/* the first group: SMUAD starts the eight sums */
#define TN_CV_QHALF0(LW, WX)                                                                     \
    "ldrd %[xa], %[xb], [%[x]], #8\n\t" LW                                                      \
    "smuad %[r00], %[u0], %[xa]\n\t"                                                             \
    "smuad %[r01], %[u0], %[xb]\n\t"                                                             \
    "smuad %[r10], %[u1], %[xa]\n\t"                                                             \
    "smuad %[r11], %[u1], %[xb]\n\t"                                                             \
    WX "xtb16 %[u0], %[u0]\n\t"                                                                 \
    WX "xtb16 %[u1], %[u1]\n\t"                                                                 \
    "smuad %[a00], %[u0], %[xa]\n\t"                                                             \
    "smuad %[a01], %[u0], %[xb]\n\t"                                                             \
    "smuad %[a10], %[u1], %[xa]\n\t"                                                             \
    "smuad %[a11], %[u1], %[xb]\n\t"
#define TN_CV_QGROUP0(WX) TN_CV_QHALF0(TN_CV_QLDD, WX) TN_CV_QHALF(TN_CV_QLDD, WX)
#define TN_CV_QGROUP0_U(WX) TN_CV_QHALF0(TN_CV_QLD2, WX) TN_CV_QHALF(TN_CV_QLD2, WX)
/* G0: the first group, G: the others (NG >= 1: KP >= 4 lanes) */
#define TN_CV_QBLOCKS(G0, G)                                                                    \
    do {                                                                                        \
        const uint32_t m = NG - 1u;                                                             \
        switch ((m & 3u) | (m >= 8u ? 8u : (m >= 4u ? 4u : 0u))) {                              \
        case 0u: TN_CV_QASM(G0, ); break;                                                       \
        case 1u: TN_CV_QASM(G0 G, ); break;                                                     \
        case 2u: TN_CV_QASM(G0 G G, ); break;                                                   \
        case 3u: TN_CV_QASM(G0 G G G, ); break;                                                 \
        case 4u: TN_CV_QASM(G0 G G G G, ); break;                                               \
        case 5u: TN_CV_QASM(G0 G G G G G, ); break;                                             \
        case 6u: TN_CV_QASM(G0 G G G G G G, ); break;                                           \
        case 7u: TN_CV_QASM(G0 G G G G G G G, ); break;                                         \
        case 8u: TN_CV_QASM(G0 TN_CV_QLOOP(G), TN_CV_QEND); break;                              \
        case 9u: TN_CV_QASM(G0 G TN_CV_QLOOP(G), TN_CV_QEND); break;                            \
        case 10u: TN_CV_QASM(G0 G G TN_CV_QLOOP(G), TN_CV_QEND); break;                         \
        default: TN_CV_QASM(G0 G G G TN_CV_QLOOP(G), TN_CV_QEND); break;                        \
        }                                                                                       \
    } while (0)
/* the same with weights not word-aligned (rare; the smaller form): the NG - 1 others NG - 1 & 3
 * first, then a loop of four */
#define TN_CV_QBLOCKS_U(G0, G)                                                                  \
    do {                                                                                        \
        const uint32_t m = NG - 1u;                                                             \
        switch ((m & 3u) | (m >= 4u ? 4u : 0u)) {                                               \
        case 0u: TN_CV_QASM(G0, ); break;                                                       \
        case 1u: TN_CV_QASM(G0 G, ); break;                                                     \
        case 2u: TN_CV_QASM(G0 G G, ); break;                                                   \
        case 3u: TN_CV_QASM(G0 G G G, ); break;                                                 \
        case 4u: TN_CV_QASM(G0 TN_CV_QLOOP(G), TN_CV_QEND); break;                              \
        case 5u: TN_CV_QASM(G0 G TN_CV_QLOOP(G), TN_CV_QEND); break;                            \
        case 6u: TN_CV_QASM(G0 G G TN_CV_QLOOP(G), TN_CV_QEND); break;                          \
        default: TN_CV_QASM(G0 G G G TN_CV_QLOOP(G), TN_CV_QEND); break;                        \
        }                                                                                       \
    } while (0)
#endif

/* S_a (sa) and the 32-bit R (r) of two row pairs (weights at w, per group the words
 * [pair 0 A, pair 1 A, pair 0 B, pair 1 B]) at both pixels of the interleaved lanes buf, over
 * KP lanes: index 2 q + P for pair q, pixel P. R = S_a + 256 sum (b - 128) x' modulo 2^32: exact
 * when the export bounded every pair's sum (kernels_m7.conv_plan, QUAD). Returns w past the
 * block's 4 KP bytes. */
TN_INLINE const uint8_t *tn_m7_cv_quad(const uint8_t *w, const uint32_t *buf, uint32_t KP,
                                       uint32_t ALIGNED, uint32_t SGW, uint32_t *sa, uint32_t *r)
{
    const uint32_t NG = KP / 4u;
#if TN_M7_ASM
    /* the unaligned blocks (two LDR of weights for one LDRD): GCC could not allocate their 14
     * register operands at -Os / -Oz when they were four asm statements; -Os / -Oz still take
     * the C loop below for them (smaller) */
#if defined(__OPTIMIZE_SIZE__)
    if (ALIGNED)
#endif
    {
    const uint32_t *x = buf;
    const uint32_t *volatile endv = buf + KP; /* in memory: no register is left for it */
    uint32_t a00, a01, a10, a11, r00, r01, r10, r11; /* set by the first group */
    uint32_t xa, xb, u0, u1;
    if (ALIGNED && SGW)
        TN_CV_QBLOCKS(TN_CV_QGROUP0("s"), TN_CV_QGROUP("s"));
#if defined(__OPTIMIZE_SIZE__)
    else
        TN_CV_QBLOCKS(TN_CV_QGROUP0("u"), TN_CV_QGROUP("u"));
#else
    else if (ALIGNED)
        TN_CV_QBLOCKS(TN_CV_QGROUP0("u"), TN_CV_QGROUP("u"));
    else if (SGW)
        TN_CV_QBLOCKS_U(TN_CV_QGROUP0_U("s"), TN_CV_QGROUP_U("s"));
    else
        TN_CV_QBLOCKS_U(TN_CV_QGROUP0_U("u"), TN_CV_QGROUP_U("u"));
#endif
    sa[0] = a00; sa[1] = a01; sa[2] = a10; sa[3] = a11;
    r[0] = r00; r[1] = r01; r[2] = r10; r[3] = r11;
    return w;
    }
#endif
#if !TN_M7_ASM || defined(__OPTIMIZE_SIZE__)
    {
    int32_t a[4] = {0, 0, 0, 0}, rr[4] = {0, 0, 0, 0};
    (void)ALIGNED;
    for (uint32_t g = 0; g < NG; g++) {
        const uint32_t *xg = buf + 4u * g; /* A of pixel 0, A of pixel 1, B of 0, B of 1 */
        for (uint32_t h = 0; h < 2u; h++, w += 8) {
            for (uint32_t q = 0; q < 2u; q++) {
                const uint32_t u = tn_ld32(w + 4u * q);
                for (uint32_t P = 0; P < 2u; P++) {
                    rr[2u * q + P] = tn_smlad(u, xg[2u * h + P], rr[2u * q + P]);
                    a[2u * q + P] = tn_smlad(tn_m7_wx(u, SGW), xg[2u * h + P], a[2u * q + P]);
                }
            }
        }
    }
    for (uint32_t j = 0; j < 4u; j++) {
        sa[j] = (uint32_t)a[j];
        r[j] = (uint32_t)rr[j];
    }
    return w;
    }
#endif
}

/* The requantized, clamped code of an accumulator with the constants of a table (TAB,
 * kernels_m7.conv_plan): TFLite's double rounding (as tn_m7_out) on acc2 = acc << (ls + 1)
 * (exact: the export bounded |acc| 2^(ls + 1) below 2^31), the zero point in the rounding
 * constant rnd = [sh > 0] 2^(sh - 1) + ZP 2^sh (tn_m7_out8; sh = -n0 <= 20 keeps it in int32),
 * so h = SMMULR(acc2, m0) and y = (h + rnd - [h < 0 and sh > 0]) >> sh, clamped to
 * [LOZ + ZP, HIZ + ZP]. The sign term is dropped when LOZ >= 0 (the only case the export allows
 * sh = 0, n0 >= 0, in): for h < 0 both forms give y <= ZP <= LOZ + ZP, which the clamp maps to
 * the same code. */
TN_INLINE int32_t tn_m7_cv_rq(uint32_t acc2, int32_t m0, int32_t rnd, uint32_t sh, int32_t LOZ,
                              int32_t HIZ, int32_t ZP)
{
    const int32_t lo = LOZ + ZP, hi = HIZ + ZP;
    int32_t y;
    if (LOZ >= 0) { /* no sign term: h + rnd in one SMMLAR */
        y = tn_smmlar((int32_t)acc2, m0, rnd) >> sh;
    } else {
        const int32_t h = tn_smmulr((int32_t)acc2, m0);
        y = (h + rnd + (h >> 31)) >> sh;
    }
    if ((lo == -128 && hi == 127) || (lo == 0 && hi == 255))
        return tn_sat8(y, lo == -128);
    if (lo == -128 || lo == 0) /* the low clamp is the 8-bit range's: one SSAT / USAT */
        y = tn_sat8(y, lo == -128);
    else
        y = y < lo ? lo : y;
    return y > hi ? hi : y;
}

/* Channel c at pixels p and (TWO) p + 1 with TAB: d0, d1 its doubled sums 2 sum (w - z) x'
 * (modulo 2^32), t its constants (2 bias; with TAB >= 4 then m0, rnd, sh; with TAB = 5 then
 * ls, the left shift of a channel with n0 >= 0: acc2 = (2 bias + d) << ls; with one multiplier,
 * TAB = 1, the step's M0 / N0); each output through tn_m7_cv_out. */
TN_INLINE void tn_m7_cv_tchan(const uint8_t *t, uint8_t *TN_RESTRICT out, const uint8_t *other,
                              int32_t *TN_RESTRICT v, uint32_t MODE, uint32_t p, uint32_t two,
                              uint32_t c, uint32_t d0, uint32_t d1, uint32_t CO, uint32_t TAB,
                              uint32_t OB, TN_RQ_ARGS, TN_FADD_ARGS)
{
    /* word loads that may be unaligned (the weight array's alignment is the compiler's) */
    const uint32_t b2 = tn_ld32(t);
    const int32_t m0 = TAB == 1u ? M0 : (int32_t)tn_ld32(t + 4);
    const uint32_t sh = TAB == 1u ? (N0 < 0 ? (uint32_t)(-N0) : 0u) : tn_ld32(t + 12);
    const uint32_t ls = TAB == 1u ? (N0 > 0 ? (uint32_t)N0 : 0u) : TAB == 5u ? tn_ld32(t + 16) : 0u;
    const int32_t rnd = TAB == 1u ? (int32_t)((sh ? 1u << (sh - 1u) : 0u) + ((uint32_t)ZP << sh))
                                  : (int32_t)tn_ld32(t + 8);
    (void)FAST;
    tn_m7_cv_out(out, other, v, MODE, p * CO + c, c,
                 tn_m7_cv_rq((b2 + d0) << ls, m0, rnd, sh, LOZ, HIZ, ZP), OB, TN_FADD);
    if (two)
        tn_m7_cv_out(out, other, v, MODE, (p + 1u) * CO + c, CO + c,
                     tn_m7_cv_rq((b2 + d1) << ls, m0, rnd, sh, LOZ, HIZ, ZP), OB, TN_FADD);
}

#if TN_M7_ASM
/* tn_m7_cv_tchan of a row pair's two channels (a row c, b row c + 1) at both pixels for TAB = 4,
 * SGW and a clamp to the whole 8-bit range (SAT: "ssat" / "usat"): per channel two LDRD of its
 * table words (2 bias, m0; rnd, sh: t word-aligned), acc2 = 2 bias + d, h = SMMULR(acc2, m0),
 * y = (h + rnd [+ (h >> 31): RND = TN_CV_RQ_SIGN, LOZ < 0]) >> sh saturated (tn_m7_cv_rq),
 * stored at o0 (pixel p) and o1 (pixel p + 1), both advanced. a0, a1: S_a of the a row at the
 * two pixels; r0, r1: R of the pair (tn_m7_cv_quad). */
#define TN_CV_RQ_PLAIN(X) "smmlar %[" X "], %[" X "], %[t1], %[t0]\n\t"
#define TN_CV_RQ_SIGN(X)                                                                        \
    "smmulr %[" X "], %[" X "], %[t1]\n\t"                                                       \
    "add %[" X "], %[" X "], %[" X "], asr #31\n\t"                                               \
    "add %[" X "], %[" X "], %[t0]\n\t"
#define TN_CV_EPI_CHAN(SAT, RND, X0, X1, LSL)                                                   \
    "ldrd %[t0], %[t1], [%[t]], #8\n\t"                                                         \
    "add %[" X0 "], %[t0], %[" X0 "], " LSL "\n\t"                                              \
    "add %[" X1 "], %[t0], %[" X1 "], " LSL "\n\t"                                              \
    "ldrd %[t0], %[t2], [%[t]], #8\n\t"                                                         \
    RND(X0) RND(X1)                                                                             \
    "asr %[" X0 "], %[" X0 "], %[t2]\n\t"                                                       \
    "asr %[" X1 "], %[" X1 "], %[t2]\n\t"                                                       \
    SAT " %[" X0 "], #8, %[" X0 "]\n\t"                                                         \
    SAT " %[" X1 "], #8, %[" X1 "]\n\t"                                                         \
    "strb %[" X0 "], [%[o0]], #1\n\t"                                                           \
    "strb %[" X1 "], [%[o1]], #1\n\t"
/* (R - S_a) first (S_a is overwritten by the a row's output): the b row's 2 sum (b - 128) x' is
 * (R - S_a) >> 7 (QUAD's bound), the a row's 2 S_a */
#define TN_CV_EPI_PAIR(SAT, RND)                                                                \
    "sub %[r0], %[r0], %[a0]\n\t"                                                               \
    "sub %[r1], %[r1], %[a1]\n\t"                                                               \
    TN_CV_EPI_CHAN(SAT, RND, "a0", "a1", "lsl #1") TN_CV_EPI_CHAN(SAT, RND, "r0", "r1", "asr #7")
#define TN_CV_EPI_OPERANDS                                                                      \
    : [t] "+&r"(t), [o0] "+&r"(o0), [o1] "+&r"(o1), [a0] "+&r"(a0), [a1] "+&r"(a1),              \
      [r0] "+&r"(r0), [r1] "+&r"(r1), [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2)             \
    :                                                                                           \
    : "memory"

/* The four channels of a QUAD block (sums sa, r; table t, word-aligned) at pixels p, p + 1:
 * outputs at o (pixel p's channel c) and o + CO; SATS: int8 codes (else uint8); SIGN: the
 * rounding's sign term (LOZ < 0). Returns t past the block's table. */
TN_INLINE const uint8_t *tn_m7_cv_epi4(const uint8_t *t, uint8_t *o, uint32_t CO,
                                       const uint32_t *sa, const uint32_t *r, uint32_t SATS,
                                       uint32_t SIGN)
{
    uint8_t *o0 = o, *o1 = o + CO;
    TN_UNROLL
    for (uint32_t j = 0; j < 2u; j++) {
        uint32_t a0 = sa[2u * j], a1 = sa[2u * j + 1u], r0 = r[2u * j], r1 = r[2u * j + 1u];
        uint32_t t0, t1, t2;
        if (SATS && SIGN)
            __asm__ volatile(TN_CV_EPI_PAIR("ssat", TN_CV_RQ_SIGN) TN_CV_EPI_OPERANDS);
        else if (SATS)
            __asm__ volatile(TN_CV_EPI_PAIR("ssat", TN_CV_RQ_PLAIN) TN_CV_EPI_OPERANDS);
        else if (SIGN)
            __asm__ volatile(TN_CV_EPI_PAIR("usat", TN_CV_RQ_SIGN) TN_CV_EPI_OPERANDS);
        else
            __asm__ volatile(TN_CV_EPI_PAIR("usat", TN_CV_RQ_PLAIN) TN_CV_EPI_OPERANDS);
    }
    return t;
}
#endif

/* ---------------------------------------------------------------------------------------------
 * QUAD = 2 (kernels_m7.conv_plan: a pointwise layer of at most 32 lanes, CO % 4 == 0, TAB):
 * small K, where tn_m7_cv_quad's per-block costs (the UXTB16 of the a codes, the R - S_a of the
 * b rows, the loop's spills, the bias adds) weigh most. The weights are exported as int16 lanes
 * 2 (w - z_w) (doubled: the sum is acc2 = 2 sum (w - z_w) x' at once, |2 (w - z_w)| <= 510
 * fits int16; no sum of x' is needed for any zero point), in blocks of four rows, per group of
 * four lanes the words [A r0, A r1, A r2, A r3, B r0, B r1, B r2, B r3] (A: lanes k, k + 2 of
 * row r as (low, high) halves; B: lanes k + 1, k + 3; the lanes' own words). TAB 4: each block
 * is [2 bias of its four rows][weights][m0, rnd, sh of each row], the sums seeded with 2 bias
 * (tn_m7_cv_w16 with SEED) and three LDRD per two channels' constants; TAB 1 and 5: the
 * weights, then the block's table as tn_m7_cv_tchan reads it. Per half group: one LDRD of
 * lanes (both pixels, at a fixed offset from the buffer), two LDRD of weights, eight SMLAD: 11
 * instructions per 16 MACs (tn_m7_cv_quad: 12); the epilogue about 4.75 per output; with TAB
 * 4 and a clamp to the whole 8-bit range the layer's blocks at a pixel pair are one statement
 * (tn_m7_cv_w16_run, two blocks per iteration when CO % 8 == 0). Measured on VWW's 16 -> 32
 * layer (24 x 24): 1.09 instructions per MAC (tn_m7_cv_quad: 1.36); 32 -> 32: 0.91 (1.08).
 *
 * TAB 3 (kernels_m7._w16_scaled, conv_plan): one shift T for the whole layer. TFLite's double
 * rounding of a channel with the sign term dropped (LOZ >= 0, as tn_m7_cv_rq) is
 * floor((2^(ls+1) acc m0 + 2^31 + rnd 2^32) / 2^(32+sh)) (floors of floors); with T = max sh + 1
 * and d = T - sh >= 1 per channel, multiplying through by 2^d it is SMMLA(acc', m0, C) >> T
 * with acc' = 2^E acc (E = ls + 1 + d: the export scales the int16 weights to 2^E (w - z_w) and
 * the seeds to 2^E bias, checked below 2^15 and |acc| 2^E below 2^30) and C = 2^(d-1) + rnd 2^d.
 * The shift is then a constant, SSAT's / USAT's shifted operand: per output SMMLA, SAT, STRB
 * and half an LDRD of (m0, C) (tn_m7_cv_w16_run, TAB 4's SMMLAR, ASR, SAT, STRB and three
 * quarters of an LDRD), each block [2^E bias x 4][weights][m0, C x 4], four blocks per
 * iteration when CO % 16 == 0 (the loop's six instructions over 32 outputs). TAB 2: the same
 * with the sign term (LOZ < 0), C - K [acc' < 0] (K = 2^d, a third word: [acc < 0] may stand
 * for [h < 0] when every sh >= 1), for a fused ADD or narrowed outputs (conv_plan keeps TAB
 * 4's assembly for the rest): the C epilogue, or with the ADD's table the assembly (below). Stride-1 pointwise pixel pairs take their
 * lanes from tn_m7_cv_w16_lanes (STRD of both pixels' words). VWW's 16 -> 32 layer: 0.99
 * instructions per MAC (15.84 per output: 11 in the sums, 4.0 in the block's epilogue, seeds
 * and loop, 0.8 in the lanes and the pixel loop).
 * A residual ADD fused after a TAB 3 / 2 layer goes by its table where the other addend's
 * rescale is a plain shift (kernels_m7.w16_add_table: per own code y, its rescale minus the
 * other's zero point, shifted for the output stage): a pixel pair's codes saturated to their
 * type into the scratch (tn_m7_cv_w16_run, TAB 2's run with the sign term: AND, SUB, SMMLA
 * per output), then tn_m7_cv_addtab, seven instructions per output (LDRSB y, LDRSB other, LDR
 * entry, ADD lsl, SMMLAR, SSAT, STRB; eight with the output stage's sign fix-up) in place of
 * tn_m7_cv_out's tn_m7_add arithmetic (about 16 with gcc's moves and reloads). ResNet-8's
 * 16 -> 32 shortcut: 37.3 -> 26.3 instructions per output (11.4 sums and seeds, 6.1 TAB 2
 * epilogue and stores, 0.2 block loop, 7.5 ADD, 1.1 windows and pixel loop); 1 KB of flash
 * per table.
 * conv_plan's TAB bound (|bias| + sum |w - z_w| max |x'|, shifted left by ls + 1, below 2^31)
 * keeps every partial sum exact in int32. Flash: 2 bytes per weight (the layout bytes beyond
 * one count as weight_pad_bytes); scratch: the two pixels' lanes, as for QUAD 0 / 1.
 * --------------------------------------------------------------------------------------------- */

/* A code y (zero point included) clamped to [LOZ + ZP, HIZ + ZP], as tn_m7_cv_rq's end. */
TN_INLINE int32_t tn_m7_cv_clamp(int32_t y, int32_t LOZ, int32_t HIZ, int32_t ZP)
{
    const int32_t lo = LOZ + ZP, hi = HIZ + ZP;
    if ((lo == -128 && hi == 127) || (lo == 0 && hi == 255))
        return tn_sat8(y, lo == -128);
    if (lo == -128 || lo == 0)
        y = tn_sat8(y, lo == -128);
    else
        y = y < lo ? lo : y;
    return y > hi ? hi : y;
}

#if TN_M7_ASM
/* One half group of a QUAD = 2 block: lanes (t0, t1) of both pixels, rows 0-1 then 2-3 of the
 * weights in (t2, o) (LW: one LDRD, or two LDR where the weights are not word-aligned); the
 * first half starts the sums with SMUAD. */
#define TN_W16_LDD "ldrd %[t2], %[o], [%[w]], #8\n\t"
#define TN_W16_LD2 "ldr %[t2], [%[w]], #4\n\tldr %[o], [%[w]], #4\n\t"
#define TN_W16_H0(LW)                                                                           \
    "ldrd %[t0], %[t1], [%[x]]\n\t" LW                                                          \
    "smuad %[a00], %[t2], %[t0]\n\t"                                                            \
    "smuad %[a01], %[t2], %[t1]\n\t"                                                            \
    "smuad %[a10], %[o], %[t0]\n\t"                                                             \
    "smuad %[a11], %[o], %[t1]\n\t" LW                                                          \
    "smuad %[a20], %[t2], %[t0]\n\t"                                                            \
    "smuad %[a21], %[t2], %[t1]\n\t"                                                            \
    "smuad %[a30], %[o], %[t0]\n\t"                                                             \
    "smuad %[a31], %[o], %[t1]\n\t"
#define TN_W16_H(LW, OFF)                                                                       \
    "ldrd %[t0], %[t1], [%[x], #" OFF "]\n\t" LW                                                \
    "smlad %[a00], %[t2], %[t0], %[a00]\n\t"                                                    \
    "smlad %[a01], %[t2], %[t1], %[a01]\n\t"                                                    \
    "smlad %[a10], %[o], %[t0], %[a10]\n\t"                                                     \
    "smlad %[a11], %[o], %[t1], %[a11]\n\t" LW                                                  \
    "smlad %[a20], %[t2], %[t0], %[a20]\n\t"                                                    \
    "smlad %[a21], %[t2], %[t1], %[a21]\n\t"                                                    \
    "smlad %[a30], %[o], %[t0], %[a30]\n\t"                                                     \
    "smlad %[a31], %[o], %[t1], %[a31]\n\t"
/* the first half with the sums seeded from registers already holding the rows' 2 bias (a00,
 * a10, a20, a30: pixel 1's sum reads the seed before pixel 0's overwrites it) */
#define TN_W16_H0S(LW)                                                                          \
    "ldrd %[t0], %[t1], [%[x]]\n\t" LW                                                          \
    "smlad %[a01], %[t2], %[t1], %[a00]\n\t"                                                    \
    "smlad %[a00], %[t2], %[t0], %[a00]\n\t"                                                    \
    "smlad %[a11], %[o], %[t1], %[a10]\n\t"                                                     \
    "smlad %[a10], %[o], %[t0], %[a10]\n\t" LW                                                  \
    "smlad %[a21], %[t2], %[t1], %[a20]\n\t"                                                    \
    "smlad %[a20], %[t2], %[t0], %[a20]\n\t"                                                    \
    "smlad %[a31], %[o], %[t1], %[a30]\n\t"                                                     \
    "smlad %[a30], %[o], %[t0], %[a30]\n\t"
/* the 2 NG - 1 halves after the first of a block, NG = 1 .. 8 groups (KP <= 32 lanes); the
 * lanes at fixed offsets from x (x itself is not advanced) */
#define TN_W16_REST1(LW) TN_W16_H(LW, "8")
#define TN_W16_REST2(LW) TN_W16_H(LW, "8") TN_W16_H(LW, "16") TN_W16_H(LW, "24")
#define TN_W16_REST3(LW) TN_W16_H(LW, "8") TN_W16_H(LW, "16") TN_W16_H(LW, "24")                   \
    TN_W16_H(LW, "32") TN_W16_H(LW, "40")
#define TN_W16_REST4(LW) TN_W16_H(LW, "8") TN_W16_H(LW, "16") TN_W16_H(LW, "24")                   \
    TN_W16_H(LW, "32") TN_W16_H(LW, "40") TN_W16_H(LW, "48") TN_W16_H(LW, "56")
#define TN_W16_REST5(LW) TN_W16_H(LW, "8") TN_W16_H(LW, "16") TN_W16_H(LW, "24")                   \
    TN_W16_H(LW, "32") TN_W16_H(LW, "40") TN_W16_H(LW, "48") TN_W16_H(LW, "56")                    \
    TN_W16_H(LW, "64") TN_W16_H(LW, "72")
#define TN_W16_REST6(LW) TN_W16_H(LW, "8") TN_W16_H(LW, "16") TN_W16_H(LW, "24")                   \
    TN_W16_H(LW, "32") TN_W16_H(LW, "40") TN_W16_H(LW, "48") TN_W16_H(LW, "56")                    \
    TN_W16_H(LW, "64") TN_W16_H(LW, "72") TN_W16_H(LW, "80") TN_W16_H(LW, "88")
#define TN_W16_REST7(LW) TN_W16_H(LW, "8") TN_W16_H(LW, "16") TN_W16_H(LW, "24")                   \
    TN_W16_H(LW, "32") TN_W16_H(LW, "40") TN_W16_H(LW, "48") TN_W16_H(LW, "56")                    \
    TN_W16_H(LW, "64") TN_W16_H(LW, "72") TN_W16_H(LW, "80") TN_W16_H(LW, "88")                    \
    TN_W16_H(LW, "96") TN_W16_H(LW, "104")
#define TN_W16_REST8(LW) TN_W16_H(LW, "8") TN_W16_H(LW, "16") TN_W16_H(LW, "24")                   \
    TN_W16_H(LW, "32") TN_W16_H(LW, "40") TN_W16_H(LW, "48") TN_W16_H(LW, "56")                    \
    TN_W16_H(LW, "64") TN_W16_H(LW, "72") TN_W16_H(LW, "80") TN_W16_H(LW, "88")                    \
    TN_W16_H(LW, "96") TN_W16_H(LW, "104") TN_W16_H(LW, "112") TN_W16_H(LW, "120")
#define TN_W16_OPS                                                                              \
    [x] "+&r"(x), [w] "+&r"(w), [t0] "=&r"(t0), [t1] "=&r"(t1), [t2] "=&r"(t2), [o] "=&r"(o),     \
    [a00] "=&r"(s00), [a01] "=&r"(s01), [a10] "=&r"(s10), [a11] "=&r"(s11),                       \
    [a20] "=&r"(s20), [a21] "=&r"(s21), [a30] "=&r"(s30), [a31] "=&r"(s31)
#define TN_W16_PICK(BODY, OPS, ...)                                                             \
    do {                                                                                        \
        switch (NG) {                                                                           \
        case 1u: __asm__ volatile(BODY(TN_W16_REST1, __VA_ARGS__) OPS); break;                   \
        case 2u: __asm__ volatile(BODY(TN_W16_REST2, __VA_ARGS__) OPS); break;                   \
        case 3u: __asm__ volatile(BODY(TN_W16_REST3, __VA_ARGS__) OPS); break;                   \
        case 4u: __asm__ volatile(BODY(TN_W16_REST4, __VA_ARGS__) OPS); break;                   \
        case 5u: __asm__ volatile(BODY(TN_W16_REST5, __VA_ARGS__) OPS); break;                   \
        case 6u: __asm__ volatile(BODY(TN_W16_REST6, __VA_ARGS__) OPS); break;                   \
        case 7u: __asm__ volatile(BODY(TN_W16_REST7, __VA_ARGS__) OPS); break;                   \
        default: __asm__ volatile(BODY(TN_W16_REST8, __VA_ARGS__) OPS); break;                   \
        }                                                                                       \
    } while (0)
#define TN_W16_ONLY(REST, LW) TN_W16_H0(LW) REST(LW)
/* the same seeded with the four 2 bias words before the weights (LW: their alignment) */
#define TN_W16_SEEDD "ldrd %[a00], %[a10], [%[w]], #8\n\tldrd %[a20], %[a30], [%[w]], #8\n\t"
#define TN_W16_SEED2                                                                            \
    "ldr %[a00], [%[w]], #4\n\tldr %[a10], [%[w]], #4\n\t"                                       \
    "ldr %[a20], [%[w]], #4\n\tldr %[a30], [%[w]], #4\n\t"
#define TN_W16_SEEDED(REST, SL, LW) SL TN_W16_H0S(LW) REST(LW)
#define TN_W16_MAC_OPS : TN_W16_OPS : : "memory"
#endif

/* The eight sums acc2 of a QUAD = 2 block (weights at w, word-aligned if ALIGNED; lanes buf over
 * KP <= 32 lanes): a[2 r + P] for row r, pixel P; SEED: started from the four 2 bias words
 * before the weights (TAB 4's blocks), else from 0. Returns w past them and the block's 8 KP
 * weight bytes. */
TN_INLINE const uint8_t *tn_m7_cv_w16(const uint8_t *w, const uint32_t *buf, uint32_t KP,
                                      uint32_t ALIGNED, uint32_t SEED, uint32_t *TN_RESTRICT a)
{
    const uint32_t NG = KP / 4u;
#if TN_M7_ASM
    const uint32_t *x = buf;
    uint32_t t0, t1, t2, o, s00, s01, s10, s11, s20, s21, s30, s31;
    if (SEED && ALIGNED)
        TN_W16_PICK(TN_W16_SEEDED, TN_W16_MAC_OPS, TN_W16_SEEDD, TN_W16_LDD);
    else if (SEED)
        TN_W16_PICK(TN_W16_SEEDED, TN_W16_MAC_OPS, TN_W16_SEED2, TN_W16_LD2);
    else if (ALIGNED)
        TN_W16_PICK(TN_W16_ONLY, TN_W16_MAC_OPS, TN_W16_LDD);
    else
        TN_W16_PICK(TN_W16_ONLY, TN_W16_MAC_OPS, TN_W16_LD2);
    a[0] = s00; a[1] = s01; a[2] = s10; a[3] = s11;
    a[4] = s20; a[5] = s21; a[6] = s30; a[7] = s31;
    return w;
#else
    int32_t s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    (void)ALIGNED;
    if (SEED) {
        for (uint32_t r = 0; r < 4u; r++) s[2u * r] = s[2u * r + 1u] = (int32_t)tn_ld32(w + 4u * r);
        w += 16;
    }
    for (uint32_t g = 0; g < NG; g++) {
        const uint32_t *xg = buf + 4u * g; /* A of pixel 0, A of pixel 1, B of 0, B of 1 */
        for (uint32_t h = 0; h < 2u; h++, w += 16)
            for (uint32_t r = 0; r < 4u; r++)
                for (uint32_t P = 0; P < 2u; P++)
                    s[2u * r + P] = tn_smlad(tn_ld32(w + 4u * r), xg[2u * h + P], s[2u * r + P]);
    }
    for (uint32_t j = 0; j < 8u; j++) a[j] = (uint32_t)s[j];
    return w;
#endif
}

#if TN_M7_ASM
/* tn_m7_cv_epi4's arithmetic on two channels r, s = r + 1 of a QUAD = 2 block with TAB 4 (sums
 * seeded with 2 bias, no b row): X0, X1 channel r's at pixels p, p + 1, Y0, Y1 channel s's,
 * stored at o + r, o + CO + r (KR: that offset, an immediate), o + s, o + CO + s; the channels'
 * table words m0, rnd, sh in three LDRD. */
#define TN_W16_EPI_PAIR(SAT, RND, X0, X1, Y0, Y1, R, KR, S, KS)                                  \
    "ldrd %[t1], %[t0], [%[w]], #8\n\t" /* m0, rnd of r */                                      \
    RND(X0) RND(X1)                                                                             \
    "ldrd %[t2], %[t1], [%[w]], #8\n\t" /* sh of r, m0 of s */                                  \
    "asr %[" X0 "], %[" X0 "], %[t2]\n\t"                                                       \
    "asr %[" X1 "], %[" X1 "], %[t2]\n\t"                                                       \
    SAT " %[" X0 "], #8, %[" X0 "]\n\t"                                                         \
    SAT " %[" X1 "], #8, %[" X1 "]\n\t"                                                         \
    "strb %[" X0 "], [%[o], #" R "]\n\t"                                                        \
    "strb %[" X1 "], [%[o], %[" KR "]]\n\t"                                                     \
    "ldrd %[t0], %[t2], [%[w]], #8\n\t" /* rnd, sh of s */                                      \
    RND(Y0) RND(Y1)                                                                             \
    "asr %[" Y0 "], %[" Y0 "], %[t2]\n\t"                                                       \
    "asr %[" Y1 "], %[" Y1 "], %[t2]\n\t"                                                       \
    SAT " %[" Y0 "], #8, %[" Y0 "]\n\t"                                                         \
    SAT " %[" Y1 "], #8, %[" Y1 "]\n\t"                                                         \
    "strb %[" Y0 "], [%[o], #" S "]\n\t"                                                        \
    "strb %[" Y1 "], [%[o], %[" KS "]]\n\t"
/* Every block of the layer at one pixel pair: the four rows' 2 bias as the sums' seeds, the
 * sums, requantization, stores, and the loop, in one statement (the fourteen registers stay
 * its own; the output pointer and the weights' end in memory); TN_W16_RUN2: two blocks per
 * iteration (an even number of blocks). */
#define TN_W16_RUN(REST, SAT, RND)                                                              \
    "1:\n\t" TN_W16_SEEDED(REST, TN_W16_SEEDD, TN_W16_LDD)                                      \
    "ldr %[o], %[om]\n\t"                                                                       \
    TN_W16_EPI_PAIR(SAT, RND, "a00", "a01", "a10", "a11", "0", "k0", "1", "k1")                 \
    TN_W16_EPI_PAIR(SAT, RND, "a20", "a21", "a30", "a31", "2", "k2", "3", "k3")                 \
    "adds %[o], %[o], #4\n\t"                                                                   \
    "str %[o], %[om]\n\t"                                                                       \
    "ldr %[t0], %[em]\n\t"                                                                      \
    "cmp %[w], %[t0]\n\t"                                                                       \
    "bne 1b\n\t"
#define TN_W16_RUN2(REST, SAT, RND)                                                             \
    "1:\n\t" TN_W16_SEEDED(REST, TN_W16_SEEDD, TN_W16_LDD)                                      \
    "ldr %[o], %[om]\n\t"                                                                       \
    TN_W16_EPI_PAIR(SAT, RND, "a00", "a01", "a10", "a11", "0", "k0", "1", "k1")                 \
    TN_W16_EPI_PAIR(SAT, RND, "a20", "a21", "a30", "a31", "2", "k2", "3", "k3")                 \
    TN_W16_SEEDED(REST, TN_W16_SEEDD, TN_W16_LDD)                                               \
    "ldr %[o], %[om]\n\t"                                                                       \
    TN_W16_EPI_PAIR(SAT, RND, "a00", "a01", "a10", "a11", "4", "k4", "5", "k5")                 \
    TN_W16_EPI_PAIR(SAT, RND, "a20", "a21", "a30", "a31", "6", "k6", "7", "k7")                 \
    "adds %[o], %[o], #8\n\t"                                                                   \
    "str %[o], %[om]\n\t"                                                                       \
    "ldr %[t0], %[em]\n\t"                                                                      \
    "cmp %[w], %[t0]\n\t"                                                                       \
    "bne 1b\n\t"
/* TAB 3 (kernels_m7._w16_scaled): two channels r, s = r + 1 with their m0, C in two LDRD, each
 * output SMMLA(acc', m0, C) saturated with the layer's one shift (SSAT's shifted operand) */
#define TN_W16_EPI_PAIR3(SAT, X0, X1, Y0, Y1, R, S)                                              \
    "ldrd %[t1], %[t0], [%[w]], #8\n\t" /* m0, C of r */                                        \
    "smmla %[" X0 "], %[" X0 "], %[t1], %[t0]\n\t"                                              \
    "smmla %[" X1 "], %[" X1 "], %[t1], %[t0]\n\t"                                              \
    "ldrd %[t1], %[t0], [%[w]], #8\n\t" /* m0, C of s */                                        \
    SAT " %[" X0 "], #8, %[" X0 "], asr %[tsh]\n\t"                                              \
    SAT " %[" X1 "], #8, %[" X1 "], asr %[tsh]\n\t"                                              \
    "smmla %[" Y0 "], %[" Y0 "], %[t1], %[t0]\n\t"                                              \
    "smmla %[" Y1 "], %[" Y1 "], %[t1], %[t0]\n\t"                                              \
    "strb %[" X0 "], [%[o], #" R "]\n\t"                                                        \
    "strb %[" X1 "], [%[o], #(%c[k0] + " R ")]\n\t"                                              \
    SAT " %[" Y0 "], #8, %[" Y0 "], asr %[tsh]\n\t"                                              \
    SAT " %[" Y1 "], #8, %[" Y1 "], asr %[tsh]\n\t"                                              \
    "strb %[" Y0 "], [%[o], #" S "]\n\t"                                                        \
    "strb %[" Y1 "], [%[o], #(%c[k0] + " S ")]\n\t"
/* one block of four rows at the pixel pair: its sums, then TN_W16_EPI_PAIR3 and the stores at
 * outputs R0 .. R3 (of pixel p; pixel p + 1 CO later); TN_W16_LOOPK (below) closes the loop */
#define TN_W16_BLOCK3(REST, SAT, R0, R1, R2, R3)                                                \
    TN_W16_SEEDED(REST, TN_W16_SEEDD, TN_W16_LDD)                                               \
    "ldr %[o], %[om]\n\t"                                                                       \
    TN_W16_EPI_PAIR3(SAT, "a00", "a01", "a10", "a11", R0, R1)                                   \
    TN_W16_EPI_PAIR3(SAT, "a20", "a21", "a30", "a31", R2, R3)
#define TN_W16_RUN3(REST, SAT, RND)                                                             \
    "1:\n\t" TN_W16_BLOCK3(REST, SAT, "0", "1", "2", "3") TN_W16_LOOPK("4")
#define TN_W16_RUN3X2(REST, SAT, RND)                                                           \
    "1:\n\t" TN_W16_BLOCK3(REST, SAT, "0", "1", "2", "3")                                       \
    TN_W16_BLOCK3(REST, SAT, "4", "5", "6", "7") TN_W16_LOOPK("8")
/* four blocks per iteration (CO % 16 == 0): the loop's overhead over 32 outputs */
#define TN_W16_RUN3X4(REST, SAT, RND)                                                           \
    "1:\n\t" TN_W16_BLOCK3(REST, SAT, "0", "1", "2", "3")                                       \
    TN_W16_BLOCK3(REST, SAT, "4", "5", "6", "7") TN_W16_BLOCK3(REST, SAT, "8", "9", "10", "11") \
    TN_W16_BLOCK3(REST, SAT, "12", "13", "14", "15") TN_W16_LOOPK("16")
/* TAB 2 (the sign term, kernels_m7._w16_scaled's K): channel r's m0, C, K in an LDRD and an LDR,
 * each output SMMLA(acc', m0, C - (K & (acc' >> 31))) saturated with the layer's shift (o a
 * temporary here: the block's stores follow its four channels, TN_W16_ST4) */
#define TN_W16_EPI_K(SAT, X0, X1)                                                                \
    "ldrd %[t1], %[t0], [%[w]], #8\n\t" /* m0, C */                                             \
    "ldr %[t2], [%[w]], #4\n\t"         /* K */                                                 \
    "and %[o], %[t2], %[" X0 "], asr #31\n\t"                                                     \
    "sub %[o], %[t0], %[o]\n\t"                                                                 \
    "smmla %[" X0 "], %[" X0 "], %[t1], %[o]\n\t"                                                \
    "and %[o], %[t2], %[" X1 "], asr #31\n\t"                                                     \
    "sub %[o], %[t0], %[o]\n\t"                                                                 \
    "smmla %[" X1 "], %[" X1 "], %[t1], %[o]\n\t"                                                \
    SAT " %[" X0 "], #8, %[" X0 "], asr %[tsh]\n\t"                                              \
    SAT " %[" X1 "], #8, %[" X1 "], asr %[tsh]\n\t"
#define TN_W16_ST4(R0, R1, R2, R3)                                                              \
    "ldr %[o], %[om]\n\t"                                                                       \
    "strb %[a00], [%[o], #" R0 "]\n\t"                                                          \
    "strb %[a01], [%[o], #(%c[k0] + " R0 ")]\n\t"                                               \
    "strb %[a10], [%[o], #" R1 "]\n\t"                                                          \
    "strb %[a11], [%[o], #(%c[k0] + " R1 ")]\n\t"                                               \
    "strb %[a20], [%[o], #" R2 "]\n\t"                                                          \
    "strb %[a21], [%[o], #(%c[k0] + " R2 ")]\n\t"                                               \
    "strb %[a30], [%[o], #" R3 "]\n\t"                                                          \
    "strb %[a31], [%[o], #(%c[k0] + " R3 ")]\n\t"
#define TN_W16_BLOCKK(REST, SAT, R0, R1, R2, R3)                                                \
    TN_W16_SEEDED(REST, TN_W16_SEEDD, TN_W16_LDD)                                               \
    TN_W16_EPI_K(SAT, "a00", "a01") TN_W16_EPI_K(SAT, "a10", "a11")                             \
    TN_W16_EPI_K(SAT, "a20", "a21") TN_W16_EPI_K(SAT, "a30", "a31") TN_W16_ST4(R0, R1, R2, R3)
#define TN_W16_LOOPK(N)                                                                         \
    "adds %[o], %[o], #" N "\n\t"                                                               \
    "str %[o], %[om]\n\t"                                                                       \
    "ldr %[t0], %[em]\n\t"                                                                      \
    "cmp %[w], %[t0]\n\t"                                                                       \
    "bne 1b\n\t"
#define TN_W16_RUNK(REST, SAT, RND)                                                             \
    "1:\n\t" TN_W16_BLOCKK(REST, SAT, "0", "1", "2", "3") TN_W16_LOOPK("4")
#define TN_W16_RUNKX2(REST, SAT, RND)                                                           \
    "1:\n\t" TN_W16_BLOCKK(REST, SAT, "0", "1", "2", "3")                                       \
    TN_W16_BLOCKK(REST, SAT, "4", "5", "6", "7") TN_W16_LOOPK("8")
#define TN_W16_RUNKX4(REST, SAT, RND)                                                           \
    "1:\n\t" TN_W16_BLOCKK(REST, SAT, "0", "1", "2", "3")                                       \
    TN_W16_BLOCKK(REST, SAT, "4", "5", "6", "7") TN_W16_BLOCKK(REST, SAT, "8", "9", "10", "11") \
    TN_W16_BLOCKK(REST, SAT, "12", "13", "14", "15") TN_W16_LOOPK("16")
#define TN_W16_RUN_OPS                                                                          \
    : TN_W16_OPS, [om] "+m"(ov)                                                                 \
    : [em] "m"(wend), [k0] "i"(CO), [k1] "i"(CO + 1u), [k2] "i"(CO + 2u), [k3] "i"(CO + 3u),      \
      [k4] "i"(CO + 4u), [k5] "i"(CO + 5u), [k6] "i"(CO + 6u), [k7] "i"(CO + 7u),                 \
      [tsh] "i"(TSH ? TSH : 1u)                                                                 \
    : "cc", "memory"

/* All CO channels (CO % 4 == 0, CO + 15 < 4096) of a QUAD = 2, TAB = 4 layer (weights at w,
 * word-aligned, each block [2 bias x 4][int16 weights][m0, rnd, sh x 4]) at pixels p, p + 1
 * (lanes buf, KP <= 32), outputs at o (pixel p) and o + CO,
 * clamped to the whole 8-bit range (SATS: int8 codes, else uint8; SIGN: the rounding's sign term,
 * LOZ < 0): tn_m7_cv_rq's arithmetic, as tn_m7_cv_epi4. TSH > 0: a TAB 3 layer instead (blocks
 * [2^E bias x 4][weights][m0, C x 4], SMMLA and the saturation with the shift TSH; no sign
 * term), or with SIGN a TAB 2 layer ([m0, C, K x 4], the sign term C - K [acc' < 0]; only for
 * tn_m7_conv's fused-ADD table, whose outputs o0 are the scratch, saturated to the type). */
TN_INLINE void tn_m7_cv_w16_run(const uint8_t *w, const uint32_t *buf, uint32_t KP,
                                uint8_t *o0, uint32_t CO, uint32_t SATS, uint32_t SIGN,
                                uint32_t TSH)
{
    const uint32_t NG = KP / 4u;
    const uint32_t *x = buf;
    uint8_t *ov = o0;
    const uint8_t *wend = w + (CO / 4u) * (8u * KP + (TSH && !SIGN ? 48u : 64u));
    uint32_t t0, t1, t2, o, s00, s01, s10, s11, s20, s21, s30, s31; /* the asm's own */
    if (TSH && SIGN && CO % 16u == 0u && SATS) /* TAB 2 (the sign term) */
        TN_W16_PICK(TN_W16_RUNKX4, TN_W16_RUN_OPS, "ssat", TN_CV_RQ_PLAIN);
    else if (TSH && SIGN && CO % 16u == 0u)
        TN_W16_PICK(TN_W16_RUNKX4, TN_W16_RUN_OPS, "usat", TN_CV_RQ_PLAIN);
    else if (TSH && SIGN && CO % 8u == 0u && SATS)
        TN_W16_PICK(TN_W16_RUNKX2, TN_W16_RUN_OPS, "ssat", TN_CV_RQ_PLAIN);
    else if (TSH && SIGN && CO % 8u == 0u)
        TN_W16_PICK(TN_W16_RUNKX2, TN_W16_RUN_OPS, "usat", TN_CV_RQ_PLAIN);
    else if (TSH && SIGN && SATS)
        TN_W16_PICK(TN_W16_RUNK, TN_W16_RUN_OPS, "ssat", TN_CV_RQ_PLAIN);
    else if (TSH && SIGN)
        TN_W16_PICK(TN_W16_RUNK, TN_W16_RUN_OPS, "usat", TN_CV_RQ_PLAIN);
    else if (TSH && CO % 16u == 0u && SATS) /* TAB 3 (no sign term: LOZ >= 0) */
        TN_W16_PICK(TN_W16_RUN3X4, TN_W16_RUN_OPS, "ssat", TN_CV_RQ_PLAIN);
    else if (TSH && CO % 16u == 0u)
        TN_W16_PICK(TN_W16_RUN3X4, TN_W16_RUN_OPS, "usat", TN_CV_RQ_PLAIN);
    else if (TSH && CO % 8u == 0u && SATS)
        TN_W16_PICK(TN_W16_RUN3X2, TN_W16_RUN_OPS, "ssat", TN_CV_RQ_PLAIN);
    else if (TSH && CO % 8u == 0u)
        TN_W16_PICK(TN_W16_RUN3X2, TN_W16_RUN_OPS, "usat", TN_CV_RQ_PLAIN);
    else if (TSH && SATS)
        TN_W16_PICK(TN_W16_RUN3, TN_W16_RUN_OPS, "ssat", TN_CV_RQ_PLAIN);
    else if (TSH)
        TN_W16_PICK(TN_W16_RUN3, TN_W16_RUN_OPS, "usat", TN_CV_RQ_PLAIN);
    else if (CO % 8u == 0u && SATS && SIGN)
        TN_W16_PICK(TN_W16_RUN2, TN_W16_RUN_OPS, "ssat", TN_CV_RQ_SIGN);
    else if (CO % 8u == 0u && SATS)
        TN_W16_PICK(TN_W16_RUN2, TN_W16_RUN_OPS, "ssat", TN_CV_RQ_PLAIN);
    else if (CO % 8u == 0u && SIGN)
        TN_W16_PICK(TN_W16_RUN2, TN_W16_RUN_OPS, "usat", TN_CV_RQ_SIGN);
    else if (CO % 8u == 0u)
        TN_W16_PICK(TN_W16_RUN2, TN_W16_RUN_OPS, "usat", TN_CV_RQ_PLAIN);
    else if (SATS && SIGN)
        TN_W16_PICK(TN_W16_RUN, TN_W16_RUN_OPS, "ssat", TN_CV_RQ_SIGN);
    else if (SATS)
        TN_W16_PICK(TN_W16_RUN, TN_W16_RUN_OPS, "ssat", TN_CV_RQ_PLAIN);
    else if (SIGN)
        TN_W16_PICK(TN_W16_RUN, TN_W16_RUN_OPS, "usat", TN_CV_RQ_SIGN);
    else
        TN_W16_PICK(TN_W16_RUN, TN_W16_RUN_OPS, "usat", TN_CV_RQ_PLAIN);
}
#endif

/* The windows of output pixels p and q (q = p + 1 with TWO, else p) into buf (pixel p's words
 * at even, q's at odd indices), their sums of x' in *s0, *s1: both read before any output is
 * written, at once where they share a row of whole groups (tn_m7_cv_window2), else one by one. */
TN_INLINE void tn_m7_cv_windows(const uint8_t *in, uint32_t *TN_RESTRICT buf, uint32_t p,
                                uint32_t q, uint32_t TWO, int32_t H, int32_t W, uint32_t C,
                                int32_t OW, int32_t KH, int32_t KW, int32_t SH, int32_t SW,
                                int32_t PT, int32_t PL, int32_t DH, int32_t DW, uint32_t XS,
                                int32_t ZX, uint32_t PADZERO, uint32_t KWCP, uint32_t INSIDE,
                                int32_t *s0, int32_t *s1)
{
    const int32_t oy = (int32_t)(p / (uint32_t)OW), ox = (int32_t)(p % (uint32_t)OW);
    const int32_t x0 = ox * SW - PL;
    if (TWO && DW == 1 && (uint32_t)KW * C == KWCP && (uint32_t)SW * C % 4u == 0u && SW < KW
        && ox + 1 < OW
        && (INSIDE || (x0 >= 0 && x0 + SW + KW <= W))) {
        tn_m7_cv_window2(in, buf, oy, x0, H, W, C, KH, SH, SW, PT, DH, XS, ZX, PADZERO, KWCP,
                         INSIDE, s0, s1);
    } else {
        *s0 = tn_m7_cv_window_d(in, buf, oy, ox, H, W, C, KH, KW, SH, SW, PT, PL, DH, DW, XS, ZX,
                                PADZERO, KWCP, INSIDE);
        *s1 = tn_m7_cv_window_d(in, buf + 1, (int32_t)(q / (uint32_t)OW),
                                (int32_t)(q % (uint32_t)OW), H, W, C, KH, KW, SH, SW, PT, PL, DH,
                                DW, XS, ZX, PADZERO, KWCP, INSIDE);
    }
}

/* The lanes of two adjacent pointwise pixels (stride 1, no padding: C = KWCP input bytes each,
 * pixel p + 1's right after pixel p's at src) into buf: per group g the words A of p, A of
 * p + 1, B of p, B of p + 1, one STRD per pair of words (buf word-aligned; src read with LDR,
 * the activations' alignment is the planner's). The same lanes as tn_m7_cv_windows (no sum of
 * x': QUAD = 2 needs none). */
TN_INLINE void tn_m7_cv_w16_lanes(const uint8_t *src, uint32_t *TN_RESTRICT buf, uint32_t C,
                                  uint32_t XS, int32_t ZX)
{
    const uint32_t off = ((uint32_t)(-ZX) & 0xFFFFu) * 0x00010001u;
    TN_UNROLL
    for (uint32_t g = 0; g < C / 4u; g++) {
        const uint32_t u0 = tn_ld32(src + 4u * g), u1 = tn_ld32(src + C + 4u * g);
        const uint32_t a0 = XS ? tn_sxtab16(off, u0) : tn_uxtab16(off, u0);
        const uint32_t a1 = XS ? tn_sxtab16(off, u1) : tn_uxtab16(off, u1);
        const uint32_t b0 = XS ? tn_sxtab16_ror8(off, u0) : tn_uxtab16_ror8(off, u0);
        const uint32_t b1 = XS ? tn_sxtab16_ror8(off, u1) : tn_uxtab16_ror8(off, u1);
#if TN_M7_ASM
        /* g a constant once unrolled: immediate offsets from buf; a build that does not unroll
         * the loop (-Og) stores in C */
        if (__builtin_constant_p(g))
            __asm__("strd %[a0], %[a1], [%[d], %[o0]]\n\tstrd %[b0], %[b1], [%[d], %[o1]]"
                    :
                    : [a0] "r"(a0), [a1] "r"(a1), [b0] "r"(b0), [b1] "r"(b1), [d] "r"(buf),
                      [o0] "i"(16u * g), [o1] "i"(16u * g + 8u)
                    : "memory");
        else
#endif
        {
            buf[4u * g] = a0;
            buf[4u * g + 1u] = a1;
            buf[4u * g + 2u] = b0;
            buf[4u * g + 3u] = b1;
        }
    }
}

/* The fused residual ADD of N outputs by its table (kernels_m7.w16_add_table): y the layer's
 * codes (saturated to their 8-bit type, AXS: int8), other the other addend's, FT the table's
 * entry of code 0: out[i] = clamp(sat8(Q(FT[y[i]] + (other[i] << FSH)) >> QK), ALO, AHI), Q
 * tn_m7_add's output stage. other[i] is read before out[i] is written (out may lie exactly
 * over other, the plan's in-place write). */
TN_INLINE void tn_m7_cv_addtab(const uint8_t *TN_RESTRICT y, const uint8_t *other, uint8_t *out,
                               uint32_t N, const int32_t *FT, uint32_t FSH, uint32_t AXS,
                               uint32_t AOS, int32_t ALO, int32_t AHI, TN_ST_ARGS(Q))
{
    const int32_t type_lo = AOS ? -128 : 0, type_hi = AOS ? 127 : 255;
    (void)QS; /* in the table and FSH */
#if TN_M7_ASM
    /* the common case in assembly, four outputs per iteration (N % 4 == 0): an SMMLAR output
     * stage and a clamp to the whole 8-bit range; LDRSB / LDRB, LDR of the entry, ADD of the
     * other code shifted, (QF: QC - [x < 0], one ADD), SMMLAR, SSAT / USAT with QK, STRB:
     * seven instructions per output, eight with QF (gcc reloads QM, QC per output) */
    if (QR == 1u && ALO == type_lo && AHI == type_hi && N % 4u == 0u && FSH < 32u
        && QK >= 1u && QK < 32u) {
        const uint8_t *yp = y, *op = other, *end = y + N;
        uint8_t *dp = out;
        uint32_t t0, t1, t2, t3;
#define TN_FT_QC(A, B) "qc"
#define TN_FT_QCF(A, B) B
#define TN_FT_FIX(A, B) ""
#define TN_FT_FIXF(A, B) "add %[" B "], %[qc], %[" A "], asr #31\n\t"
/* two outputs interleaved (A, B: the first's registers; C, D: the second's), so that no
 * instruction waits on the load or multiply just before it; both others read before either
 * output is written */
#define TN_FT_TWO(LD, SAT, FIX, A, B, C, D)                                                     \
        LD " %[" A "], [%[yp]], #1\n\t"                                                           \
        LD " %[" C "], [%[yp]], #1\n\t"                                                           \
        LD " %[" B "], [%[op]], #1\n\t"                                                           \
        LD " %[" D "], [%[op]], #1\n\t"                                                           \
        "ldr %[" A "], [%[ft], %[" A "], lsl #2]\n\t"                                               \
        "ldr %[" C "], [%[ft], %[" C "], lsl #2]\n\t"                                               \
        "add %[" A "], %[" A "], %[" B "], lsl %[fsh]\n\t"                                          \
        "add %[" C "], %[" C "], %[" D "], lsl %[fsh]\n\t"                                          \
        TN_FT_FIX##FIX(A, B) TN_FT_FIX##FIX(C, D)                                               \
        "smmlar %[" A "], %[" A "], %[qm], %[" TN_FT_QC##FIX(A, B) "]\n\t"                         \
        "smmlar %[" C "], %[" C "], %[qm], %[" TN_FT_QC##FIX(C, D) "]\n\t"                         \
        SAT " %[" A "], #8, %[" A "], asr %[qk]\n\t"                                               \
        SAT " %[" C "], #8, %[" C "], asr %[qk]\n\t"                                               \
        "strb %[" A "], [%[dp]], #1\n\t"                                                          \
        "strb %[" C "], [%[dp]], #1\n\t"
#define TN_FT_LOOP(LD, SAT, FIX)                                                                \
        __asm__ volatile("1:\n\t" TN_FT_TWO(LD, SAT, FIX, "t0", "t1", "t2", "t3")                \
                         TN_FT_TWO(LD, SAT, FIX, "t0", "t1", "t2", "t3")                          \
                         "cmp %[yp], %[end]\n\tbne 1b\n\t"                                        \
                         : [yp] "+&r"(yp), [op] "+&r"(op), [dp] "+&r"(dp), [t0] "=&r"(t0),        \
                           [t1] "=&r"(t1), [t2] "=&r"(t2), [t3] "=&r"(t3)                         \
                         : [end] "r"(end), [ft] "r"(FT), [qm] "r"(QM), [qc] "r"(QC),             \
                           [fsh] "i"(FSH), [qk] "i"(QK)                                         \
                         : "cc", "memory")
        if (AXS && AOS && QF)
            TN_FT_LOOP("ldrsb", "ssat", F);
        else if (AXS && AOS)
            TN_FT_LOOP("ldrsb", "ssat", );
        else if (AXS && QF)
            TN_FT_LOOP("ldrsb", "usat", F);
        else if (AXS)
            TN_FT_LOOP("ldrsb", "usat", );
        else if (AOS && QF)
            TN_FT_LOOP("ldrb", "ssat", F);
        else if (AOS)
            TN_FT_LOOP("ldrb", "ssat", );
        else if (QF)
            TN_FT_LOOP("ldrb", "usat", F);
        else
            TN_FT_LOOP("ldrb", "usat", );
#undef TN_FT_LOOP
#undef TN_FT_TWO
#undef TN_FT_QC
#undef TN_FT_QCF
#undef TN_FT_FIX
#undef TN_FT_FIXF
        return;
    }
#endif
    for (uint32_t i = 0; i < N; i++) {
        const int32_t yi = AXS ? (int32_t)(int8_t)y[i] : (int32_t)y[i];
        const int32_t oi = AXS ? (int32_t)((const int8_t *)other)[i] : (int32_t)other[i];
        const int32_t x = (int32_t)((uint32_t)FT[yi] + ((uint32_t)oi << FSH));
        int32_t o = tn_sat8(tn_m7_stage(x, QM, QC, QR, QF) >> QK, AOS);
        if (ALO > type_lo) o = o < ALO ? ALO : o;
        if (AHI < type_hi) o = o > AHI ? AHI : o;
        out[i] = (uint8_t)o;
    }
}

/* Output pixels p and (TWO) p + 1 of tn_m7_conv (TWO = 0: pixel p alone, its window loaded
 * twice): TWO is a constant, so the pair loop keeps no test of it. */
TN_INLINE void tn_m7_cv_pixels(const tn_layer_t *l, const uint8_t *in, const uint8_t *other,
                               uint8_t *TN_RESTRICT out, uint32_t *TN_RESTRICT buf,
                               int32_t *TN_RESTRICT v, uint32_t p, uint32_t TWO, uint32_t aligned,
                               uint32_t MODE, int32_t H, int32_t W, uint32_t C, int32_t OW,
                               uint32_t CO, int32_t KH, int32_t KW, int32_t SH, int32_t SW,
                               int32_t PT, int32_t PL, int32_t DH, int32_t DW, uint32_t XS,
                               int32_t ZX, uint32_t PADZERO, uint32_t KWCP, uint32_t INSIDE,
                               uint32_t QUAD, uint32_t TAB, uint32_t TSH,
                               uint32_t SGW, uint32_t NWZP, int32_t ZW,
                               uint32_t REQ, uint32_t NM, uint32_t ROUND, uint32_t OB, TN_RQ_ARGS,
                               TN_FADD_ARGS, const int32_t *FT, uint32_t FSH)
{
    const uint32_t KP = (uint32_t)KH * KWCP, q = TWO ? p + 1u : p;
    /* a fused ADD by its table (TAB 3 / 2): the codes, saturated to their type, into the
     * scratch v as bytes, then tn_m7_cv_addtab */
    const uint32_t FTB = FT != 0 && QUAD == 2u && (TAB == 3u || TAB == 2u) && MODE == 2u;
    const uint8_t *wzp = l->wzp, *w = l->w;
    const int32_t *bias = l->bias, *m0p = l->m0;
    const int8_t *n0p = l->n0;
    uint32_t c = 0;
    int32_t s0, s1;
    tn_m7_cv_windows(in, buf, p, q, TWO, H, W, C, OW, KH, KW, SH, SW, PT, PL, DH, DW, XS, ZX,
                     PADZERO, KWCP, INSIDE, &s0, &s1);
    /* TAB: 2 k sum x' of an a row (k = -z) and a b row (k = 128 - z) with one weight zero
     * point (else per channel, below) */
    const uint32_t ka = SGW ? 0u : (uint32_t)(-ZW), kb = SGW ? 0u : (uint32_t)(128 - ZW);
    const uint32_t s02 = (uint32_t)s0 << 1, s12 = (uint32_t)s1 << 1;
    for (; QUAD == 2u && c + 4u <= CO; c += 4u) { /* int16 weights, TAB (conv_plan) */
        uint32_t a[8];
        if (TAB == 3u || TAB == 2u) {
            /* [2^E bias x 4][weights][m0, C (, K with TAB 2) x 4] (kernels_m7._w16_scaled):
             * SMMLA(acc', m0, C - K [acc' < 0]) >> TSH, clamped */
            const uint8_t *t = (w = tn_m7_cv_w16(w, buf, KP, aligned, 1u, a));
            const uint32_t sz = TAB == 2u ? 12u : 8u;
            w += 4u * sz;
            TN_UNROLL
            for (uint32_t r = 0; r < 4u; r++) {
                const int32_t m0 = (int32_t)tn_ld32(t + sz * r);
                const uint32_t cc = tn_ld32(t + sz * r + 4u);
                const uint32_t k = TAB == 2u ? tn_ld32(t + sz * r + 8u) : 0u;
                const int32_t a0 = (int32_t)a[2u * r], a1 = (int32_t)a[2u * r + 1u];
                const int32_t c0 = (int32_t)(cc - (k & (uint32_t)(a0 >> 31)));
                if (FTB) {
                    uint8_t *yv = (uint8_t *)(void *)v;
                    yv[c + r] = (uint8_t)tn_sat8(tn_smmla(a0, m0, c0) >> TSH, AXS);
                    if (TWO)
                        yv[CO + c + r] = (uint8_t)tn_sat8(
                            tn_smmla(a1, m0, (int32_t)(cc - (k & (uint32_t)(a1 >> 31)))) >> TSH,
                            AXS);
                    continue;
                }
                tn_m7_cv_out(out, other, v, MODE, p * CO + c + r, c + r,
                             tn_m7_cv_clamp(tn_smmla(a0, m0, c0) >> TSH, LOZ, HIZ, ZP), OB,
                             TN_FADD);
                if (TWO) {
                    const int32_t c1 = (int32_t)(cc - (k & (uint32_t)(a1 >> 31)));
                    tn_m7_cv_out(out, other, v, MODE, (p + 1u) * CO + c + r, CO + c + r,
                                 tn_m7_cv_clamp(tn_smmla(a1, m0, c1) >> TSH, LOZ, HIZ, ZP), OB,
                                 TN_FADD);
                }
            }
            continue;
        }
        if (TAB == 4u) { /* [2 bias x 4][weights][m0, rnd, sh x 4] (tn_m7_cv_w16_run's) */
            const uint8_t *t = (w = tn_m7_cv_w16(w, buf, KP, aligned, 1u, a));
            w += 48u;
            TN_UNROLL
            for (uint32_t r = 0; r < 4u; r++) {
                const uint32_t sh = tn_ld32(t + 12u * r + 8u);
                const int32_t m0 = (int32_t)tn_ld32(t + 12u * r);
                const int32_t rnd = (int32_t)tn_ld32(t + 12u * r + 4u);
                tn_m7_cv_out(out, other, v, MODE, p * CO + c + r, c + r,
                             tn_m7_cv_rq(a[2u * r], m0, rnd, sh, LOZ, HIZ, ZP), OB, TN_FADD);
                if (TWO)
                    tn_m7_cv_out(out, other, v, MODE, (p + 1u) * CO + c + r, CO + c + r,
                                 tn_m7_cv_rq(a[2u * r + 1u], m0, rnd, sh, LOZ, HIZ, ZP), OB,
                                 TN_FADD);
            }
            continue;
        }
        const uint8_t *t = (w = tn_m7_cv_w16(w, buf, KP, aligned, 0u, a));
        w += 16u * TAB;
        TN_UNROLL /* the sums stay in registers */
        for (uint32_t r = 0; r < 4u; r++)
            tn_m7_cv_tchan(t + 4u * r * TAB, out, other, v, MODE, p, TWO, c + r, a[2u * r],
                           a[2u * r + 1u], CO, TAB, OB, TN_RQ, TN_FADD);
    }
    for (; QUAD == 1u && c + 4u <= CO; c += 4u) {
        uint32_t sa[4], r[4];
        w = tn_m7_cv_quad(w, buf, KP, aligned, SGW, sa, r);
#if TN_M7_ASM
        /* the common case in assembly: per-channel tables, stored codes of the 8-bit range */
        if (TAB == 4u && SGW && MODE == 0u && OB == 8u && TWO
            && ((LOZ + ZP == -128 && HIZ + ZP == 127) || (LOZ + ZP == 0 && HIZ + ZP == 255))
            && aligned) {
            w = tn_m7_cv_epi4(w, out + p * CO + c, CO, sa, r, LOZ + ZP == -128, LOZ < 0);
            continue;
        }
#endif
        if (TAB) {
            const uint8_t *t = w;
            w += 16u * TAB;
            TN_UNROLL /* the sums stay in registers */
            for (uint32_t j = 0; j < 2u; j++) {
                const uint32_t za = NWZP == 1u || SGW ? ka : (uint32_t)(-(int32_t)wzp[c + 2u * j]);
                const uint32_t zb = NWZP == 1u || SGW
                                        ? kb : (uint32_t)(128 - (int32_t)wzp[c + 2u * j + 1u]);
                /* a: 2 S_a; b: 2 sum (b - 128) x' = (R - S_a) / 128 (exact: QUAD's bound) */
                tn_m7_cv_tchan(t + 8u * j * TAB, out, other, v, MODE, p, TWO, c + 2u * j,
                               (sa[2u * j] << 1) + za * s02, (sa[2u * j + 1u] << 1) + za * s12,
                               CO, TAB, OB, TN_RQ, TN_FADD);
                tn_m7_cv_tchan(t + 4u * (2u * j + 1u) * TAB, out, other, v, MODE, p, TWO,
                               c + 2u * j + 1u,
                               (uint32_t)((int32_t)(r[2u * j] - sa[2u * j]) >> 7) + zb * s02,
                               (uint32_t)((int32_t)(r[2u * j + 1u] - sa[2u * j + 1u]) >> 7)
                                   + zb * s12, CO, TAB, OB, TN_RQ, TN_FADD);
            }
            continue;
        }
        for (uint32_t j = 0; j < 2u; j++) {
            tn_m7_cv_chan(l, bias, wzp, m0p, n0p, out, other, v, MODE, p, TWO, c + 2u * j, 0u,
                          sa[2u * j], sa[2u * j + 1u], s0, s1, CO, NWZP, ZW, REQ, NM, ROUND, OB,
                          SGW, TN_RQ, TN_FADD);
            tn_m7_cv_chan(l, bias, wzp, m0p, n0p, out, other, v, MODE, p, TWO, c + 2u * j + 1u,
                          1u, (uint32_t)((int32_t)(r[2u * j] - sa[2u * j]) >> 8),
                          (uint32_t)((int32_t)(r[2u * j + 1u] - sa[2u * j + 1u]) >> 8), s0, s1,
                          CO, NWZP, ZW, REQ, NM, ROUND, OB, SGW, TN_RQ, TN_FADD);
        }
    }
    for (; c + 2u <= CO; c += 2u) {
        int32_t sa[2];
        int64_t r[2];
        w = tn_m7_cv_pair(w, buf, KP, aligned, SGW, sa, r);
        if (TAB) {
            const uint8_t *t = w;
            const uint32_t za = NWZP == 1u || SGW ? ka : (uint32_t)(-(int32_t)wzp[c]);
            const uint32_t zb = NWZP == 1u || SGW ? kb : (uint32_t)(128 - (int32_t)wzp[c + 1u]);
            w += 8u * TAB;
            tn_m7_cv_tchan(t, out, other, v, MODE, p, TWO, c, ((uint32_t)sa[0] << 1) + za * s02,
                           ((uint32_t)sa[1] << 1) + za * s12, CO, TAB, OB, TN_RQ, TN_FADD);
            /* (R - S_a) / 128: twice sum (b - 128) x', its low 32 bits */
            tn_m7_cv_tchan(t + 4u * TAB, out, other, v, MODE, p, TWO, c + 1u,
                           (uint32_t)(uint64_t)((r[0] - (int64_t)sa[0]) >> 7) + zb * s02,
                           (uint32_t)(uint64_t)((r[1] - (int64_t)sa[1]) >> 7) + zb * s12, CO, TAB,
                           OB, TN_RQ, TN_FADD);
            continue;
        }
        /* (R - S_a) is 256 sum (b - 128) x' exactly; the low 32 bits of R - S_a over 256:
         * that sum modulo 2^32 */
        tn_m7_cv_chan(l, bias, wzp, m0p, n0p, out, other, v, MODE, p, TWO, c, 0u,
                      (uint32_t)sa[0], (uint32_t)sa[1], s0, s1, CO, NWZP, ZW, REQ, NM, ROUND, OB,
                      SGW, TN_RQ, TN_FADD);
        tn_m7_cv_chan(l, bias, wzp, m0p, n0p, out, other, v, MODE, p, TWO, c + 1u, 1u,
                      (uint32_t)(uint64_t)((r[0] - (int64_t)sa[0]) >> 8),
                      (uint32_t)(uint64_t)((r[1] - (int64_t)sa[1]) >> 8), s0, s1, CO, NWZP, ZW,
                      REQ, NM, ROUND, OB, SGW, TN_RQ, TN_FADD);
    }
    if (c < CO) { /* the last row of an odd CO, as it is */
        int32_t a0 = 0, a1 = 0;
        for (uint32_t g = 0; g < KP / 4u; g++) {
            const uint32_t u = tn_ld32(w + 4u * g), ue = tn_m7_wx(u, SGW);
            const uint32_t uo = tn_m7_wx_ror8(u, SGW);
            const uint32_t *xg = buf + 4u * g;
            a0 = tn_smlad(uo, xg[2], tn_smlad(ue, xg[0], a0));
            a1 = tn_smlad(uo, xg[3], tn_smlad(ue, xg[1], a1));
        }
        if (TAB) {
            const uint32_t za = NWZP == 1u || SGW ? ka : (uint32_t)(-(int32_t)wzp[c]);
            tn_m7_cv_tchan(w + KP, out, other, v, MODE, p, TWO,
                           c, ((uint32_t)a0 << 1) + za * s02, ((uint32_t)a1 << 1) + za * s12, CO,
                           TAB, OB, TN_RQ, TN_FADD);
        } else {
            tn_m7_cv_chan(l, bias, wzp, m0p, n0p, out, other, v, MODE, p, TWO, c, 0u,
                          (uint32_t)a0, (uint32_t)a1, s0, s1, CO, NWZP, ZW, REQ, NM, ROUND, OB,
                          SGW, TN_RQ, TN_FADD);
        }
    }
    if (FTB)
        tn_m7_cv_addtab((const uint8_t *)(const void *)v, other + p * CO, out + p * CO,
                        (TWO ? 2u : 1u) * CO, FT, FSH, AXS, AOS, ALO, AHI, TN_ST(Q));
    if (MODE == 2u && !FADD) /* the fused ADD on the portable arithmetic, as tn_m7_gemm */
        for (uint32_t e = 0; e < (TWO ? 2u : 1u) * CO; e++)
            tn_m7_emit(l, other, out, p * CO + e, v[e], 1u, OB);
}

/* A convolution (or pointwise layer: KH = KW = 1) of 8-bit inputs and weights, weights in the
 * order above, optionally (MODE 2) with the residual ADD after it fused (other: its other
 * addend; FADD: tn_m7_add's arithmetic per output, tn_m7_cv_out, else tn_m7_emit's portable
 * arithmetic over v). QUAD: blocks of two row pairs first (tn_m7_cv_quad); TAB: each block's
 * weights followed by its channels' requantization constants (TAB words each, tn_m7_cv_tchan;
 * QUAD = 2's TAB 3 and 2: one shift TSH for the layer, kernels_m7.w16_shift, else 0).
 * FT, FSH: the fused ADD's table (its entry for code 0) and the other addend's shift
 * (kernels_m7.w16_add_table, tn_m7_cv_addtab), or 0, 0.
 * DH, DW: the dilation (tn_m7_cv_window_d; 1, 1 undilated).
 * buf: 2 KP words (KP = KH * KWCP), then, with MODE 2, v: 2 CO int32; the step's scratch,
 * 4-byte aligned. */
TN_INLINE void tn_m7_conv(const tn_layer_t *l, const uint8_t *in, const uint8_t *other,
                          uint8_t *TN_RESTRICT out, uint32_t *TN_RESTRICT buf,
                          int32_t *TN_RESTRICT v, uint32_t MODE, int32_t H, int32_t W,
                          uint32_t C, int32_t OH, int32_t OW, uint32_t CO, int32_t KH,
                          int32_t KW, int32_t SH, int32_t SW, int32_t PT, int32_t PL,
                          int32_t DH, int32_t DW, uint32_t XS, int32_t ZX, uint32_t PADZERO,
                          uint32_t KWCP, uint32_t INSIDE, uint32_t QUAD, uint32_t TAB, uint32_t TSH,
                          uint32_t SGW,
                          uint32_t NWZP, int32_t ZW, uint32_t REQ, uint32_t NM, uint32_t ROUND,
                          uint32_t OB, TN_RQ_ARGS, TN_FADD_ARGS, const int32_t *FT,
                          uint32_t FSH)
{
#ifdef TN_M7_CONV_FORMS /* the export's (kernels_m7.FORM_PARAMS; tn_arith.h TN_FORMS_ONLY) */
    TN_FORMS_ONLY(TN_M7_CONV_FORMS(MODE, QUAD, TAB, OB));
#endif
    const uint32_t np = (uint32_t)(OH * OW);
    const uint32_t aligned = ((uintptr_t)l->w & 3u) == 0u; /* LDRD of weights (else LDR) */
    uint32_t p = 0;
#if defined(__ARM_FEATURE_DSP)
    if (AF) __asm__("" : "+r"(AC)); /* as tn_m7_add: constants with a fix-up in registers */
    if (BF) __asm__("" : "+r"(BC));
    if (QF) __asm__("" : "+r"(QC));
#endif
#if TN_M7_ASM
    /* QUAD = 2 in one statement per pixel pair (tn_m7_cv_w16_run): TAB 4 or 3, stored codes of
     * the whole 8-bit range */
    if (QUAD == 2u && (TAB == 4u || TAB == 3u) && MODE == 0u && OB == 8u && CO + 15u < 4096u
        && aligned
        && ((LOZ + ZP == -128 && HIZ + ZP == 127) || (LOZ + ZP == 0 && HIZ + ZP == 255))) {
        const uint32_t KP = (uint32_t)KH * KWCP;
        /* stride-1 pointwise pixels side by side in the input: tn_m7_cv_w16_lanes */
        const uint32_t ADJ = KH == 1 && KW == 1 && SH == 1 && SW == 1 && PT == 0 && PL == 0
                             && C == KWCP && OH == H && OW == W;
        for (; p + 2u <= np; p += 2u) {
            int32_t s0, s1; /* unused: no sum of x' with int16 weights */
            if (ADJ)
                tn_m7_cv_w16_lanes(in + p * C, buf, C, XS, ZX);
            else
                tn_m7_cv_windows(in, buf, p, p + 1u, 1u, H, W, C, OW, KH, KW, SH, SW, PT, PL, DH,
                                 DW, XS, ZX, PADZERO, KWCP, INSIDE, &s0, &s1);
            tn_m7_cv_w16_run(l->w, buf, KP, out + p * CO, CO, LOZ + ZP == -128,
                             TAB == 4u && LOZ < 0, TAB == 3u ? TSH : 0u);
        }
    }
    /* QUAD = 2, TAB 3 / 2 with the fused ADD by its table (kernels_m7.w16_add_table): the
     * codes at a pixel pair saturated to their type into the scratch v (tn_m7_cv_w16_run),
     * then the ADD (tn_m7_cv_addtab) */
    if (QUAD == 2u && (TAB == 3u || TAB == 2u) && MODE == 2u && FT != 0 && OB == 8u
        && CO + 15u < 4096u && aligned) {
        const uint32_t KP = (uint32_t)KH * KWCP;
        for (; p + 2u <= np; p += 2u) {
            int32_t s0, s1; /* unused: no sum of x' with int16 weights */
            tn_m7_cv_windows(in, buf, p, p + 1u, 1u, H, W, C, OW, KH, KW, SH, SW, PT, PL, DH,
                             DW, XS, ZX, PADZERO, KWCP, INSIDE, &s0, &s1);
            tn_m7_cv_w16_run(l->w, buf, KP, (uint8_t *)(void *)v, CO, AXS, TAB == 2u, TSH);
            tn_m7_cv_addtab((const uint8_t *)(const void *)v, other + p * CO, out + p * CO,
                            2u * CO, FT, FSH, AXS, AOS, ALO, AHI, TN_ST(Q));
        }
        if (np % 2u == 0u) /* np a constant: no pair loop below compiled */
            return;
    }
#endif
    for (; p + 2u <= np; p += 2u)
        tn_m7_cv_pixels(l, in, other, out, buf, v, p, 1u, aligned, MODE, H, W, C, OW, CO, KH,
                        KW, SH, SW, PT, PL, DH, DW, XS, ZX, PADZERO, KWCP, INSIDE, QUAD, TAB, TSH, SGW,
                        NWZP, ZW,
                        REQ, NM, ROUND, OB, TN_RQ, TN_FADD, FT, FSH);
    if (p < np)
        tn_m7_cv_pixels(l, in, other, out, buf, v, p, 0u, aligned, MODE, H, W, C, OW, CO, KH,
                        KW, SH, SW, PT, PL, DH, DW, XS, ZX, PADZERO, KWCP, INSIDE, QUAD, TAB, TSH, SGW,
                        NWZP, ZW,
                        REQ, NM, ROUND, OB, TN_RQ, TN_FADD, FT, FSH);
}

#endif

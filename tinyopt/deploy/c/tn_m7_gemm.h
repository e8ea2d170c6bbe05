/* tn_m7_gemm.h: the Cortex-M7 convolution / pointwise / dense kernel (im2col into int16 lanes,
 * two output channels x two pixels per SMLAD loop; conventions in tn_m7_core.h). */
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

#endif

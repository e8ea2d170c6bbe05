/* tn_m7_dw.h: the Cortex-M7 depthwise kernels (SIMD over channel lane pairs, and a scalar one
 * with constant shapes) and the max / average pool (conventions in tn_m7_core.h). */
#ifndef TN_M7_DW_H
#define TN_M7_DW_H

#include "tn_m7_core.h"

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
                               uint8_t *out, int32_t *TN_RESTRICT v, int32_t H, int32_t W, uint32_t C,
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
TN_INLINE void tn_m7_pool(const tn_layer_t *l, const uint8_t *in, uint8_t *out,
                          int32_t *TN_RESTRICT v,
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

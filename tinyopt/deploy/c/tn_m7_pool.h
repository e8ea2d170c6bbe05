/* tn_m7_pool.h: the Cortex-M7 max / average pool step (a pool not fused into a compute step;
 * conventions in tn_m7_core.h). */
#ifndef TN_M7_POOL_H
#define TN_M7_POOL_H

#include "tn_m7_core.h"

/* The average of a window's element sum `total` over its `count` elements, in tn_pool's
 * rounding (floor, or half away from zero), clamped to [pool_lo, pool_hi]. */
TN_INLINE int32_t tn_m7_pool_avg(const tn_layer_t *l, int32_t total, int32_t count,
                                 uint32_t HALFAWAY)
{
    int32_t y;
    if (count == 0) {
        y = 0;
    } else if (!HALFAWAY) { /* floor division */
        y = total >= 0 ? total / count : -((-total + count - 1) / count);
    } else { /* half away from zero */
        y = total > 0 ? (total + count / 2) / count : -((-total + count / 2) / count);
    }
    if (y < l->pool_lo) y = l->pool_lo;
    if (y > l->pool_hi) y = l->pool_hi;
    return y;
}

/* Does tn_m7_pool take the word-wise average pool (tn_m7_avgpool_words) for these constants?
 * Sub-byte inputs (b = 1, 2, 4 bits), a pixel of whole words (C b a multiple of 32) and a
 * window whose sum of codes fits a 16-bit lane: KH KW (2^b - 1) <= 65535. */
#define TN_POOL_WORDS(C, KH, KW, B, AVG)                                                   \
    ((AVG) && (B) <= 8u && ((C) * (B)) % 32u == 0u                                          \
     && (uint32_t)((KH) * (KW)) * ((1u << (B)) - 1u) <= 65535u)

/* Average pool of b-bit inputs (b <= 8), a word of N = 32 / b channels at a time: a loaded word
 * masked at its P = 8 / b element offsets in every byte, (w >> s b) & m (m: the b-bit mask in
 * each byte; one AND with a shifted operand), gives four byte lanes, which UXTAB16 and its ROR #8
 * form add to two registers of 16-bit lanes: 3 P instructions and one load for N elements (the
 * element-wise tn_get: about 10 per element). A signed input's codes enter with their sign bit
 * flipped (EOR), c ^ 2^(b-1) = e + 2^(b-1) in [0, 2^b), and 2^(b-1) count comes off the sum.
 * A lane never wraps (TN_POOL_WORDS: the window's codes sum below 2^16); the sums, the rounding
 * divide and the clamp are tn_m7_pool's. Element r of the word is byte r / P at offset r % P,
 * so it is in accumulator 2 (r % P) + (r / P) % 2, halfword (r / P) / 2. */
TN_INLINE void tn_m7_avgpool_words(const tn_layer_t *l, const uint8_t *in, uint8_t *out,
                                   int32_t *TN_RESTRICT v,
                                   int32_t H, int32_t W, uint32_t C, int32_t OH, int32_t OW,
                                   int32_t KH, int32_t KW, int32_t SH, int32_t SW, int32_t PT,
                                   int32_t PL, uint32_t B, uint32_t S, uint32_t HALFAWAY)
{
    const uint32_t NW = C * B / 32u, N = 32u / B, P = 8u / B;
    const uint32_t bmask = ((1u << B) - 1u) * 0x01010101u;
    const uint32_t flip = S ? (1u << (B - 1u)) * (0xFFFFFFFFu / ((1u << B) - 1u)) : 0u;
    uint32_t idx = 0;
    for (int32_t py = 0; py < OH; py++)
        for (int32_t px = 0; px < OW; px++) {
            const int32_t y0 = py * SH - PT, x0 = px * SW - PL;
            /* the window's rows and columns inside the input (tn_pool skips the others) */
            const int32_t ya = y0 < 0 ? 0 : y0, yb = y0 + KH > H ? H : y0 + KH;
            const int32_t xa = x0 < 0 ? 0 : x0, xb = x0 + KW > W ? W : x0 + KW;
            const int32_t count = yb > ya && xb > xa ? (yb - ya) * (xb - xa) : 0;
            const int32_t off = S ? (int32_t)(1u << (B - 1u)) * count : 0;
            for (uint32_t g = 0; g < NW; g++) {
                uint32_t acc[16];
                TN_UNROLL
                for (uint32_t a = 0; a < 2u * P; a++) acc[a] = 0u;
                for (int32_t iy = ya; iy < yb; iy++) {
                    const uint8_t *p = in + (((uint32_t)iy * (uint32_t)W + (uint32_t)xa) * NW + g)
                                            * 4u;
                    for (int32_t ix = xa; ix < xb; ix++, p += 4u * NW) {
                        const uint32_t w = tn_ld32(p) ^ flip;
                        TN_UNROLL
                        for (uint32_t s = 0; s < P; s++) {
                            const uint32_t bytes = (w >> (s * B)) & bmask;
                            acc[2u * s] = tn_uxtab16(acc[2u * s], bytes);
                            acc[2u * s + 1u] = tn_uxtab16_ror8(acc[2u * s + 1u], bytes);
                        }
                    }
                }
                TN_UNROLL
                for (uint32_t r = 0; r < N; r++) {
                    const uint32_t k = r / P, a = acc[2u * (r % P) + (k & 1u)];
                    const int32_t sum = (int32_t)((k & 2u) ? a >> 16 : a & 0xFFFFu);
                    v[g * N + r] = tn_m7_pool_avg(l, sum - off, count, HALFAWAY);
                }
            }
            tn_m7_store(out, idx, v, C, B);
            idx += C;
        }
}

/* Max or average pool of 1..8-bit inputs with constant shapes: tn_pool's arithmetic in 32 bits
 * (a window sum of at most 255 x 255 elements of |v| <= 255 fits) and a hardware divide; every
 * output of a pixel computed before any is written. v: C int32. A sub-byte average pool a word
 * at a time when TN_POOL_WORDS holds (tn_m7_avgpool_words), else element by element. */
TN_INLINE void tn_m7_pool(const tn_layer_t *l, const uint8_t *in, uint8_t *out,
                          int32_t *TN_RESTRICT v,
                          int32_t H, int32_t W, uint32_t C, int32_t OH, int32_t OW, int32_t KH,
                          int32_t KW, int32_t SH, int32_t SW, int32_t PT, int32_t PL, uint32_t B,
                          uint32_t S, uint32_t AVG, uint32_t HALFAWAY)
{
    uint32_t idx = 0;
    if (TN_POOL_WORDS(C, KH, KW, B, AVG)) {
        tn_m7_avgpool_words(l, in, out, v, H, W, C, OH, OW, KH, KW, SH, SW, PT, PL, B, S,
                            HALFAWAY);
        return;
    }
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
                    if (y < l->pool_lo) y = l->pool_lo;
                    if (y > l->pool_hi) y = l->pool_hi;
                } else {
                    y = tn_m7_pool_avg(l, total, count, HALFAWAY);
                }
                v[c] = y;
            }
            tn_m7_store(out, idx, v, C, B);
            idx += C;
        }
}

#endif

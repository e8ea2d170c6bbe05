/* tn_m7_pool.h: the Cortex-M7 max / average pool step (a pool not fused into a compute step;
 * conventions in tn_m7_core.h). */
#ifndef TN_M7_POOL_H
#define TN_M7_POOL_H

#include "tn_m7_core.h"

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

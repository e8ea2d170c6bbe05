/* m7/tn_hard_swish.c: the Cortex-M7 twin of tn_hard_swish.c (TFLite Micro's kernels/cmsis_nn/
 * convention: the same file name beside the portable one): hard-swish as one table lookup per
 * element, four elements (one word) per iteration. tinyopt/integer/ops/hard_swish.py says the
 * arithmetic and which steps this file takes (m7_check); tests/test_m7_twins.py checks it against
 * the simulator, on the host and under QEMU.
 *
 * - TFLite's int8 form (table_bytes == 0): the output of each of the 256 input codes is computed
 *   once per call, with TFLite's int16 fixed-point arithmetic written out below (not shared with
 *   the portable kernel, nor generated from the Python), into the step's 256 bytes of arena
 *   scratch; then one byte lookup per element. The build costs about as much as 256 elements of
 *   the portable kernel, so m7_check leaves smaller tensors on it.
 * - The table form (the sub-byte path: l->table, entry c the output code of input code c): the
 *   same lookup on the given table; 8-bit codes a byte at a time, 2- and 4-bit codes unpacked
 *   and packed a word at a time (in and out of one width, m7_check).
 *
 * Memory: word i of the input is read before word i of the output is written, so the output
 * may lie exactly over the input (in place). */
#include "tinyopt_nn.h"
#include "tn_m7_core.h"

/* gemmlowp's SaturatingRoundingDoublingHighMul on int16: (a b + nudge) / 2^15 truncated toward
 * zero, the nudge 2^14 for a non-negative product, 1 - 2^14 otherwise. Its saturating case
 * (a = b = -2^15) cannot occur: b is a multiplier in [0, 32767] (hard_swish.check). */
TN_INLINE int32_t tn_m7_hs_srdhm(int32_t a, int32_t b)
{
    const int32_t ab = a * b;
    const int32_t num = ab + (ab >= 0 ? 16384 : 1 - 16384);
    return num >= 0 ? num >> 15 : -((-num) >> 15);
}

/* TFLite's SaturatingDoublingHighMul on int16: a b / 2^15 truncated toward zero (a, the
 * relu-ish value mapped to [0, 1], is >= 0: no saturating case). */
TN_INLINE int32_t tn_m7_hs_sdhm(int32_t a, int32_t b)
{
    const int32_t ab = a * b;
    return ab >= 0 ? ab >> 15 : -((-ab) >> 15);
}

/* x 2^s saturated to int16 (|x| <= 2^15, s in [0, 30]): in 32 bits, as any s >= 16 saturates
 * a non-zero x */
TN_INLINE int32_t tn_m7_hs_shl(int32_t x, int32_t s)
{
    if (x == 0) return 0;
    if (s >= 16) return x > 0 ? 32767 : -32768;
    const int32_t r = x * (1 << s); /* |r| <= 2^30 */
    return r > 32767 ? 32767 : (r < -32768 ? -32768 : r);
}

/* gemmlowp's RoundingDivideByPOT: x / 2^e rounded half away from zero (e >= 0). */
TN_INLINE int32_t tn_m7_hs_rdbpot(int32_t x, int32_t e)
{
    if (e == 0) return x;
    if (e > 24) e = 24; /* |x| <= 2^15: the same result as any larger e (0), no shift by 31 */
    const int32_t mask = (1 << e) - 1, rem = x & mask;
    return (x >> e) + (rem > (mask >> 1) + (x < 0) ? 1 : 0);
}

/* int16_t of a value (two's complement wrap-around). */
static int32_t tn_m7_hs_wrap16(int32_t x) { return (int32_t)(int16_t)(uint16_t)(uint32_t)x; }

/* TFLite's int8 HARD_SWISH of one input code x; RS: the sign of relu_exp (a constant in each of
 * the three table loops, so the relu-ish branches leave the loop). */
TN_INLINE int32_t tn_m7_hs_int8(int32_t x, int32_t z_in, int32_t z_out, int32_t relu_mult,
                                int32_t relu_exp, int32_t out_mult, int32_t out_exp, int32_t RS)
{
    const int32_t hires = tn_m7_hs_wrap16((x - z_in) * 128);
    const int32_t pre_out = tn_m7_hs_srdhm(hires, out_mult);
    int32_t r = hires;
    if (RS > 0) r = tn_m7_hs_shl(r, relu_exp - 1);
    r = tn_m7_hs_srdhm(r, relu_mult);
    if (RS > 0) r = tn_m7_hs_shl(r, 1);
    else if (RS < 0) r = tn_m7_hs_rdbpot(r, -relu_exp);
    r = (r + 32768) >> 1; /* [-1, 1] -> [0, 1] in Q0.15 */
    int32_t y = tn_m7_hs_rdbpot(tn_m7_hs_sdhm(r, pre_out), -out_exp);
    y = tn_m7_hs_wrap16(y + z_out); /* TFLite adds the zero point as an int16_t */
    return y > 127 ? 127 : (y < -128 ? -128 : y);
}

/* out[i] = t[in[i]] for n bytes, a word at a time. */
static void tn_m7_hs_lut8(const uint8_t *TN_RESTRICT t, const uint8_t *in, uint8_t *out,
                          uint32_t n)
{
    const uint32_t n4 = n & ~3u;
    uint32_t i = 0;
    for (; i < n4; i += 4u) {
        const uint32_t w = tn_ld32(in + i);
        const uint32_t r = (uint32_t)t[w & 0xFFu] | ((uint32_t)t[(w >> 8) & 0xFFu] << 8)
                           | ((uint32_t)t[(w >> 16) & 0xFFu] << 16) | ((uint32_t)t[w >> 24] << 24);
        TN_MEMCPY(out + i, &r, 4);
    }
    for (; i < n; i++) out[i] = t[in[i]];
}

/* The same for packed codes of B = 2 or 4 bits (in and out): 32 / B elements per word, the
 * elements past the last whole word one at a time. */
TN_INLINE void tn_m7_hs_lut_packed(const uint8_t *TN_RESTRICT t, const uint8_t *in,
                                   uint8_t *out, uint32_t n, uint32_t B)
{
    const uint32_t per = 32u / B, mask = (1u << B) - 1u, words = n / per;
    for (uint32_t k = 0; k < words; k++) {
        const uint32_t w = tn_ld32(in + 4u * k);
        uint32_t r = 0;
        TN_UNROLL
        for (uint32_t e = 0; e < per; e++) r |= (uint32_t)t[(w >> (e * B)) & mask] << (e * B);
        TN_MEMCPY(out + 4u * k, &r, 4);
    }
    for (uint32_t i = words * per; i < n; i++)
        tn_set(out, i, B, t[(uint32_t)tn_get(in, i, B, 0u)]);
}

void tn_m7_run_hard_swish(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out,
                          uint8_t *scratch)
{
    const uint32_t n = (uint32_t)l->in.h * l->in.w * l->in.c;
    if (l->table_bytes) { /* the table form: m7_check took equal widths of 2, 4 or 8 bits */
        if (l->in.bits == 8u) tn_m7_hs_lut8(l->table, in[0], out, n);
        else if (l->in.bits == 4u) tn_m7_hs_lut_packed(l->table, in[0], out, n, 4u);
        else tn_m7_hs_lut_packed(l->table, in[0], out, n, 2u);
        return;
    }
    /* the int8 form: the 256 outputs first (scratch[c]: the output of the input byte c); the
     * parameters read once (a store to the scratch could otherwise alias the descriptor) */
    const int32_t z_in = l->in.zero_point, z_out = l->out.zero_point;
    const int32_t relu_mult = l->m0[0], out_mult = l->m0[1];
    const int32_t relu_exp = l->n0[0], out_exp = l->n0[1];
    uint8_t *TN_RESTRICT table = scratch;
#define TN_HS_TABLE(RS)                                                                        \
    for (int32_t c = 0; c < 256; c++)                                                          \
        table[c] = (uint8_t)tn_m7_hs_int8((int32_t)(int8_t)(uint8_t)c, z_in, z_out, relu_mult, \
                                          relu_exp, out_mult, out_exp, RS)
    if (relu_exp > 0) TN_HS_TABLE(1);
    else if (relu_exp < 0) TN_HS_TABLE(-1);
    else TN_HS_TABLE(0);
#undef TN_HS_TABLE
    tn_m7_hs_lut8(table, in[0], out, n);
}

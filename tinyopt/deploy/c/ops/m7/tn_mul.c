/* m7/tn_mul.c: the Cortex-M7 twin of tn_mul.c (TFLite Micro's kernels/cmsis_nn/ convention: the
 * same file name beside the portable one), the element-wise product of two tensors of 8-bit codes,
 * element-wise or with in[1] broadcast per channel (squeeze-and-excite's gate), four elements per
 * iteration; and of packed 2- or 4-bit codes (inputs and output of one width), a word of each
 * input per iteration. tinyopt/integer/ops/mul.py says the arithmetic and chooses the constants (m7_plan);
 * tests/test_m7_twins.py checks this file against the simulator, on the host and under QEMU.
 *
 * Per element: d_a = a - z_a and d_b = b - z_b as 16-bit lanes (SXTAB16 adds the negated zero
 * point to two sign-extended bytes at once), Phi = d_a d_b (SMULBB / SMULTT), then
 *     t = SMMLA[R](Phi << S, m0, C - F [Phi < 0]),   y = SSAT8(t >> K), clamped to [LO, HI]
 * (R: SMMLAR's rounding; C holds the rounding constant and the output zero point << K); m7_plan
 * checks these constants on every product two 8-bit codes can make against the simulator's
 * requantization, and a step it refuses keeps tn_run_mul. Unsigned 8-bit codes are read as signed
 * ones with the top bit flipped (FLIP_IN, the zero points minus 128) and written back the same way
 * (FLIP_OUT), so one signed loop serves both; packed codes the other way round (unsigned loops).
 *
 * Descriptor: in / out as tn_run_mul's, outer = in[1]'s element count (the output's, or C),
 * m0[0] the multiplier, bias = the plan (P_* below). Memory: word i of both inputs is read before
 * word i of the output is written (inputs and output of one width), so the output may lie exactly
 * over either input (in place). */
#include "tinyopt_nn.h"
#include "tn_m7_core.h"

/* the plan's constants in l->bias (tinyopt.integer.ops.mul.M7_PLAN_FIELDS) */
enum { P_S, P_C, P_K, P_RND, P_FIX, P_LO, P_HI, P_ZA, P_ZB, P_FLIP_IN, P_FLIP_OUT };

#if defined(__ARM_FEATURE_DSP) /* SMULBB / SMULTT (arm_acle.h has only the accumulating forms) */
TN_INLINE int32_t tn_mul_bb(uint32_t a, uint32_t b)
{
    int32_t r;
    __asm__("smulbb %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
TN_INLINE int32_t tn_mul_tt(uint32_t a, uint32_t b)
{
    int32_t r;
    __asm__("smultt %0, %1, %2" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
#else
static inline int32_t tn_mul_bb(uint32_t a, uint32_t b) { return tn_lo16(a) * tn_lo16(b); }
static inline int32_t tn_mul_tt(uint32_t a, uint32_t b) { return tn_hi16(a) * tn_hi16(b); }
#endif

/* The requantized product, saturated to int8 (before the clamp to [LO, HI]). */
TN_INLINE int32_t tn_m7_mul_q(int32_t phi, uint32_t S, int32_t M, int32_t C, uint32_t K,
                              uint32_t RND, uint32_t FIX)
{
    const int32_t x = (int32_t)((uint32_t)phi << S);
    /* C - [x < 0]: one SUB with LSR #31 (the double rounding's half-away-from-zero) */
    const int32_t acc = FIX ? (int32_t)((uint32_t)C - ((uint32_t)x >> 31)) : C;
    const int32_t t = RND ? tn_smmlar(x, M, acc) : tn_smmla(x, M, acc);
    return tn_sat8(t >> K, 1u);
}

/* The same before the 8-bit saturation (the packed loops clamp to [LO, HI] alone). */
TN_INLINE int32_t tn_m7_mul_r(int32_t phi, uint32_t S, int32_t M, int32_t C, uint32_t K,
                              uint32_t RND, uint32_t FIX)
{
    const int32_t x = (int32_t)((uint32_t)phi << S);
    const int32_t acc = FIX ? (int32_t)((uint32_t)C - ((uint32_t)x >> 31)) : C;
    return (RND ? tn_smmlar(x, M, acc) : tn_smmla(x, M, acc)) >> K;
}

/* One element from the two bytes (codes as stored); the constants as arguments, held in
 * registers by the caller (a store to out may alias the descriptor, which would otherwise be
 * read again after every element) */
TN_INLINE uint8_t tn_m7_mul1(uint32_t a, uint32_t b, uint32_t flip, int32_t za, int32_t zb,
                             uint32_t S, int32_t M, int32_t C, uint32_t K, int32_t lo, int32_t hi,
                             uint32_t flip_out, uint32_t RND, uint32_t FIX)
{
    const int32_t da = (int32_t)(int8_t)(uint8_t)(a ^ flip) - za;
    const int32_t db = (int32_t)(int8_t)(uint8_t)(b ^ flip) - zb;
    int32_t y = tn_m7_mul_q(da * db, S, M, C, K, RND, FIX);
    y = y < lo ? lo : (y > hi ? hi : y);
    return (uint8_t)((uint32_t)y ^ flip_out);
}

/* Four elements from one word of each input. */
TN_INLINE uint32_t tn_m7_mul4(uint32_t wa, uint32_t wb, uint32_t nza, uint32_t nzb, uint32_t S,
                              int32_t M, int32_t C, uint32_t K, uint32_t lo4, uint32_t hi4,
                              uint32_t flip_out, uint32_t RND, uint32_t FIX)
{
    /* lanes (byte 0, byte 2) and (byte 1, byte 3), each minus its zero point */
    const uint32_t ae = tn_sxtab16(nza, wa), ao = tn_sxtab16_ror8(nza, wa);
    const uint32_t be = tn_sxtab16(nzb, wb), bo = tn_sxtab16_ror8(nzb, wb);
    const int32_t y0 = tn_m7_mul_q(tn_mul_bb(ae, be), S, M, C, K, RND, FIX);
    const int32_t y1 = tn_m7_mul_q(tn_mul_bb(ao, bo), S, M, C, K, RND, FIX);
    const int32_t y2 = tn_m7_mul_q(tn_mul_tt(ae, be), S, M, C, K, RND, FIX);
    const int32_t y3 = tn_m7_mul_q(tn_mul_tt(ao, bo), S, M, C, K, RND, FIX);
    uint32_t w = tn_bfi8(tn_bfi8(tn_bfi8((uint32_t)y0, (uint32_t)y1, 1u), (uint32_t)y2, 2u),
                         (uint32_t)y3, 3u);
    w = tn_min8(tn_max8(w, lo4, 1u), hi4, 1u);
    return w ^ flip_out;
}

/* The loops, specialised on the requantization's instruction (RND) and sign fix-up (FIX). */
TN_INLINE void tn_m7_mul_loop(const tn_layer_t *l, const uint8_t *a, const uint8_t *b,
                              uint8_t *out, uint32_t RND, uint32_t FIX)
{
    const int32_t *p = l->bias;
    const uint32_t n = (uint32_t)l->out.h * l->out.w * l->out.c, nb = l->outer;
    const uint32_t S = (uint32_t)p[P_S], K = (uint32_t)p[P_K];
    const int32_t M = l->m0[0], C = p[P_C];
    const uint32_t flip_in = (uint32_t)p[P_FLIP_IN], flip_out = (uint32_t)p[P_FLIP_OUT];
    const uint32_t nza = ((uint32_t)(-p[P_ZA]) & 0xFFFFu) * 0x10001u;
    const uint32_t nzb = ((uint32_t)(-p[P_ZB]) & 0xFFFFu) * 0x10001u;
    const uint32_t lo4 = ((uint32_t)p[P_LO] & 0xFFu) * 0x01010101u;
    const uint32_t hi4 = ((uint32_t)p[P_HI] & 0xFFu) * 0x01010101u;
    const int32_t za = p[P_ZA], zb = p[P_ZB], lo = p[P_LO], hi = p[P_HI];
    const uint32_t flip = flip_in & 0xFFu;
    if (nb == n) { /* element-wise */
        const uint32_t n4 = n & ~3u;
        uint32_t i = 0;
        for (; i < n4; i += 4u) {
            const uint32_t w = tn_m7_mul4(tn_ld32(a + i) ^ flip_in, tn_ld32(b + i) ^ flip_in, nza,
                                          nzb, S, M, C, K, lo4, hi4, flip_out, RND, FIX);
            TN_MEMCPY(out + i, &w, 4);
        }
        for (; i < n; i++) out[i] = tn_m7_mul1(a[i], b[i], flip, za, zb, S, M, C, K, lo, hi,
                                                  flip_out, RND, FIX);
    } else if ((nb & 3u) == 0u) { /* per channel, C a multiple of 4: words of the gate too */
        for (uint32_t i = 0; i < n; i += nb) {
            for (uint32_t j = 0; j < nb; j += 4u) {
                const uint32_t w = tn_m7_mul4(tn_ld32(a + i + j) ^ flip_in,
                                              tn_ld32(b + j) ^ flip_in, nza, nzb, S, M, C, K,
                                              lo4, hi4, flip_out, RND, FIX);
                TN_MEMCPY(out + i + j, &w, 4);
            }
        }
    } else { /* per channel, C not a multiple of 4: one element at a time */
        uint32_t j = 0;
        for (uint32_t i = 0; i < n; i++) {
            out[i] = tn_m7_mul1(a[i], b[j], flip, za, zb, S, M, C, K, lo, hi, flip_out, RND,
                                FIX);
            if (++j == nb) j = 0;
        }
    }
}

/* The packed codes of B = 2 or 4 bits (inputs and output), in the unsigned domain (a signed
 * code has its top bit flipped: FLIP_IN / FLIP_OUT, zero points plus 2^(B-1)): one word of
 * 32 / B elements of each input per iteration (a gate whose channels fill whole words too),
 * the rest one element at a time. */
TN_INLINE uint32_t tn_m7_mul_word(uint32_t wa, uint32_t wb, uint32_t B, int32_t za, int32_t zb,
                                  uint32_t S, int32_t M, int32_t C, uint32_t K, int32_t lo,
                                  int32_t hi, uint32_t RND, uint32_t FIX)
{
    const uint32_t mask = (1u << B) - 1u;
    uint32_t r = 0;
    TN_UNROLL
    for (uint32_t e = 0; e < 32u / B; e++) {
        const int32_t da = (int32_t)((wa >> (e * B)) & mask) - za;
        const int32_t db = (int32_t)((wb >> (e * B)) & mask) - zb;
        int32_t y = tn_m7_mul_r(da * db, S, M, C, K, RND, FIX);
        y = y < lo ? lo : (y > hi ? hi : y);
        r |= (uint32_t)y << (e * B);
    }
    return r;
}

TN_INLINE void tn_m7_mul_packed(const tn_layer_t *l, const uint8_t *a, const uint8_t *b,
                                uint8_t *out, uint32_t B, uint32_t RND, uint32_t FIX)
{
    const int32_t *p = l->bias;
    const uint32_t n = (uint32_t)l->out.h * l->out.w * l->out.c, nb = l->outer, per = 32u / B;
    const uint32_t S = (uint32_t)p[P_S], K = (uint32_t)p[P_K];
    const int32_t M = l->m0[0], C = p[P_C], za = p[P_ZA], zb = p[P_ZB], lo = p[P_LO], hi = p[P_HI];
    const uint32_t flip_in = (uint32_t)p[P_FLIP_IN], flip_out = (uint32_t)p[P_FLIP_OUT];
    const uint32_t mask = (1u << B) - 1u;
    uint32_t i = 0; /* the first element left to the one-at-a-time loop */
    if (nb == n || nb % per == 0u) { /* element-wise, or each pixel's gate starts a word */
        const uint32_t words = n / per, gw = nb == n ? words : nb / per;
        for (uint32_t k = 0, g = 0; k < words; k++) {
            const uint32_t w = tn_m7_mul_word(tn_ld32(a + 4u * k) ^ flip_in,
                                              tn_ld32(b + 4u * g) ^ flip_in, B, za, zb, S, M, C,
                                              K, lo, hi, RND, FIX) ^ flip_out;
            TN_MEMCPY(out + 4u * k, &w, 4);
            if (++g == gw) g = 0;
        }
        i = words * per; /* element-wise: the elements past the last whole word below */
    }
    for (uint32_t j = i % nb; i < n; i++) {
        const int32_t da = (int32_t)(((uint32_t)tn_get(a, i, B, 0u) ^ flip_in) & mask) - za;
        const int32_t db = (int32_t)(((uint32_t)tn_get(b, j, B, 0u) ^ flip_in) & mask) - zb;
        int32_t y = tn_m7_mul_r(da * db, S, M, C, K, RND, FIX);
        y = y < lo ? lo : (y > hi ? hi : y);
        tn_set(out, i, B, (uint32_t)y ^ flip_out);
        if (++j == nb) j = 0;
    }
}

void tn_m7_run_mul(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out, uint8_t *scratch)
{
    (void)scratch; /* none: m7_scratch is not set */
    /* mul.m7_plan: the sign fix only with SMMLAR (the double rounding) */
    const uint32_t rnd = (uint32_t)l->bias[P_RND], fix = (uint32_t)l->bias[P_FIX];
    const uint8_t *a = in[0], *b = in[1];
    if (l->in.bits == 8u) {
        if (fix) tn_m7_mul_loop(l, a, b, out, 1u, 1u);
        else if (rnd) tn_m7_mul_loop(l, a, b, out, 1u, 0u);
        else tn_m7_mul_loop(l, a, b, out, 0u, 0u);
    } else { /* packed codes: the floor rounding alone (mul.m7_plan, the sub-byte path's) */
        if (l->in.bits == 4u) tn_m7_mul_packed(l, a, b, out, 4u, 0u, 0u);
        else tn_m7_mul_packed(l, a, b, out, 2u, 0u, 0u);
    }
}

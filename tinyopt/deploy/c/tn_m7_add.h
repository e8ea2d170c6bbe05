/* tn_m7_add.h: the Cortex-M7 element-wise ADD of two 8-bit tensors (TFLite's int8 ADD, any of
 * the three rounding flavours), four elements per iteration (conventions in tn_m7_core.h).
 *
 * tn_add1 (tn_arith.h) computes, per element pair,
 *     out = clamp(R2(R0((a - z_a) << ls) + R1((b - z_b) << ls)) + z_out, lo, hi)
 * with three requantizations R_i (m0_i, n0_i). The code generator (kernels_m7.add_plan) writes
 * each R_i, on the values it can take, as one "stage" of three instructions:
 *     t = SMMLAR(x << S, M, C - fix)   (or SMMLA: no rounding constant),   R(x) = t >> K
 * where fix = [x < 0] when FIX (else 0). For the double rounding (gemmlowp), x << S is the
 * SaturatingRoundingDoublingHighMul's doubled operand (S = max(n0, 0) + 1: SMMLAR's
 * (2x m + 2^31) >> 32 is SRDHM's (x m + 2^30) >> 31, and its saturating case, x = m = INT32_MIN,
 * cannot occur with m >= 0), and RoundingDivideByPOT by K = -n0 is (h + 2^(K-1) - [h < 0]) >> K:
 * C = 2^(K-1). [x < 0] stands for [h < 0]: m >= 0 makes h <= 0 for x < 0 and h >= 0 otherwise,
 * and for h = 0 both give 0 (K >= 1). The single rounding (x m + 2^(30-n0)) >> (31-n0) is
 * SMMLAR with S = n0 + 1 (n0 >= -1), else SMMLA with C = 2^(-n0-2), K = -n0 - 1; the floor
 * flavour is SMMLA with C = 0. A stage that is exactly a shift (TFLite rescales the input of
 * the larger scale by 1/2: (x << 20) / 2) is x << S alone (R = 2). The output stage's C also
 * holds z_out << K (its shift then adds z_out exactly), and SSAT / USAT take the shift.
 * kernels_m7.add_plan chooses S, C, K and checks on every value the stage can see (all 256
 * codes of each input, every possible sum) that it equals tinyopt.integer.sim's
 * requantization and that no intermediate leaves int32; an ADD that fails stays on the
 * portable kernel.
 *
 * Memory: element i of both inputs is read before element i of the output is written (a word of
 * four at a time), so the output may lie exactly over either input, as tn_add.
 *
 * tn_m7_add_fused is the same ADD in the epilogue of a compute layer fused with it (tn_m7_gemm,
 * MODE 2): one addend is the layer's outputs (int32 codes, at most 8-bit), the other read from
 * memory; kernels_m7.add_plan checks its constants on all 256 codes of each input as above. */
#ifndef TN_M7_ADD_H
#define TN_M7_ADD_H

#include "tn_m7_core.h"

/* One requantization stage: the value before the final shift by K (see above). */
TN_INLINE int32_t tn_m7_stage(int32_t x, int32_t M, int32_t C, uint32_t RND, uint32_t FIX)
{
    if (RND == 2u) return x; /* a plain shift (kernels_m7._stage): x << S was all of it */
    if (FIX) {
#if defined(__ARM_FEATURE_DSP)
        /* x opaque: C - [x < 0] is then one ADD (C, x ASR #31), where gcc would otherwise
         * take the sign from x's source and add C (two instructions); tn_m7_add holds C in a
         * register */
        __asm__("" : "+r"(x));
#endif
        const int32_t acc = (int32_t)((uint32_t)C - ((uint32_t)x >> 31));
        return RND ? tn_smmlar(x, M, acc) : tn_smmla(x, M, acc);
    }
    if (C == 0) return RND ? tn_smmulr(x, M) : tn_smmul(x, M);
    return RND ? tn_smmlar(x, M, C) : tn_smmla(x, M, C);
}

/* The stage constants of one requantization, as one macro argument list. */
#define TN_ST_ARGS(p) uint32_t p##S, int32_t p##M, int32_t p##C, uint32_t p##K, \
                      uint32_t p##R, uint32_t p##F
#define TN_ST(p) p##S, p##M, p##C, p##K, p##R, p##F

/* Output element from the two addends' codes, before the clamp to [lo, hi]: saturated to the
 * 8-bit output range. da / db: the codes minus their zero points (SXTAB / UXTAB). */
TN_INLINE int32_t tn_m7_add_elem(int32_t da, int32_t db, uint32_t OS, TN_ST_ARGS(A),
                                 TN_ST_ARGS(B), TN_ST_ARGS(Q))
{
    const int32_t xa = (int32_t)((uint32_t)da << AS), xb = (int32_t)((uint32_t)db << BS);
    const int32_t s = (tn_m7_stage(xa, AM, AC, AR, AF) >> AK)
                      + (tn_m7_stage(xb, BM, BC, BR, BF) >> BK);
    const int32_t t = tn_m7_stage((int32_t)((uint32_t)s << QS), QM, QC, QR, QF);
    return tn_sat8(t >> QK, OS);
}

/* The ADD of N element pairs of 8-bit codes (XS: signed inputs; OS: signed output) with zero
 * points ZA / ZB, clamped to [LO, HI] (inside the output's 8-bit range). */
TN_INLINE void tn_m7_add(const uint8_t *a, const uint8_t *b, uint8_t *out, uint32_t N,
                         uint32_t XS, uint32_t OS, int32_t ZA, int32_t ZB, int32_t LO,
                         int32_t HI, TN_ST_ARGS(A), TN_ST_ARGS(B), TN_ST_ARGS(Q))
{
    const int32_t type_lo = OS ? -128 : 0, type_hi = OS ? 127 : 255;
    const uint32_t lo4 = ((uint32_t)LO & 0xFFu) * 0x01010101u;
    const uint32_t hi4 = ((uint32_t)HI & 0xFFu) * 0x01010101u;
    /* the stage constants C with a sign fix-up in registers (see tn_m7_stage), not literals */
#if defined(__ARM_FEATURE_DSP)
    if (AF) __asm__("" : "+r"(AC));
    if (BF) __asm__("" : "+r"(BC));
    if (QF) __asm__("" : "+r"(QC));
#endif
    const uint8_t *pa = a, *pb = b;
    uint8_t *po = out;
    const uint32_t n4 = N & ~3u;
    uint32_t i = n4;
    for (; pa != a + n4; pa += 4, pb += 4, po += 4) {
        const uint32_t wa = tn_ld32(pa), wb = tn_ld32(pb);
        uint32_t w = 0;
        TN_UNROLL
        for (uint32_t k = 0; k < 4u; k++) {
            const int32_t o = tn_m7_add_elem(tn_xtab(-ZA, wa, k, XS), tn_xtab(-ZB, wb, k, XS),
                                             OS, TN_ST(A), TN_ST(B), TN_ST(Q));
            w = k ? tn_bfi8(w, (uint32_t)o, k) : (uint32_t)o;
        }
        if (LO > type_lo) w = tn_max8(w, lo4, OS);
        if (HI < type_hi) w = tn_min8(w, hi4, OS);
        TN_MEMCPY(po, &w, 4);
    }
    for (; i < N; i++) {
        const int32_t da = (int32_t)((uint32_t)tn_get(a, i, 8u, XS) - (uint32_t)ZA);
        const int32_t db = (int32_t)((uint32_t)tn_get(b, i, 8u, XS) - (uint32_t)ZB);
        int32_t o = tn_m7_add_elem(da, db, OS, TN_ST(A), TN_ST(B), TN_ST(Q));
        o = o < LO ? LO : (o > HI ? HI : o);
        out[i] = (uint8_t)o;
    }
}

/* The constants of a residual ADD fused into a compute step (tn_m7_gemm's MODE 2), as one
 * macro argument list. FADD: 1 when kernels_m7.add_plan proved the constants exact (else all 0
 * and the kernel keeps tn_m7_emit's portable arithmetic); SLOT: which input of the ADD the
 * layer's outputs are; the rest as tn_m7_add's (AXS / AOS: its XS / OS, signedness of the
 * inputs and of the output). */
#define TN_FADD_ARGS uint32_t FADD, uint32_t SLOT, uint32_t AXS, uint32_t AOS, int32_t AZA, \
                     int32_t AZB, int32_t ALO, int32_t AHI, TN_ST_ARGS(A), TN_ST_ARGS(B), \
                     TN_ST_ARGS(Q)
#define TN_FADD FADD, SLOT, AXS, AOS, AZA, AZB, ALO, AHI, TN_ST(A), TN_ST(B), TN_ST(Q)

/* The fused residual ADD of N outputs of a compute layer: out[i] = ADD(v[i], other[i]), v the
 * layer's output codes (requantized and clamped, as int32), other the other addend's 8-bit
 * codes, v being input SLOT of the ADD: tn_m7_add's arithmetic, four elements per iteration.
 * Word i of other is read before word i of out is written, so out may lie exactly over other
 * (the memory plan's in-place write of a fused ADD). */
TN_INLINE void tn_m7_add_fused(const int32_t *v, const uint8_t *other, uint8_t *out, uint32_t N,
                               TN_FADD_ARGS)
{
    const int32_t type_lo = AOS ? -128 : 0, type_hi = AOS ? 127 : 255;
    const uint32_t lo4 = ((uint32_t)ALO & 0xFFu) * 0x01010101u;
    const uint32_t hi4 = ((uint32_t)AHI & 0xFFu) * 0x01010101u;
    /* the zero points of the layer's input of the ADD and of the other one */
    const int32_t zv = SLOT ? AZB : AZA, zo = SLOT ? AZA : AZB;
    (void)FADD;
#if defined(__ARM_FEATURE_DSP)
    if (AF) __asm__("" : "+r"(AC)); /* as tn_m7_add: constants with a fix-up in registers */
    if (BF) __asm__("" : "+r"(BC));
    if (QF) __asm__("" : "+r"(QC));
#endif
    /* the tail's bound written out: with N a constant and the first loop's exit not, gcc
     * otherwise reasons about a tail of up to 2^32 iterations and refuses to compile (-Werror,
     * aggressive-loop-optimizations) */
    const uint32_t n4 = N & ~3u;
    uint32_t i = 0;
    for (; i < n4; i += 4u) {
        const uint32_t wo = tn_ld32(other + i);
        uint32_t w = 0;
        TN_UNROLL
        for (uint32_t k = 0; k < 4u; k++) {
            const int32_t dv = (int32_t)((uint32_t)v[i + k] - (uint32_t)zv);
            const int32_t dw = tn_xtab(-zo, wo, k, AXS);
            const int32_t o = SLOT ? tn_m7_add_elem(dw, dv, AOS, TN_ST(A), TN_ST(B), TN_ST(Q))
                                   : tn_m7_add_elem(dv, dw, AOS, TN_ST(A), TN_ST(B), TN_ST(Q));
            w = k ? tn_bfi8(w, (uint32_t)o, k) : (uint32_t)o;
        }
        if (ALO > type_lo) w = tn_max8(w, lo4, AOS);
        if (AHI < type_hi) w = tn_min8(w, hi4, AOS);
        TN_MEMCPY(out + i, &w, 4);
    }
    for (i = n4; i < N; i++) {
        const int32_t dv = (int32_t)((uint32_t)v[i] - (uint32_t)zv);
        const int32_t dw = (int32_t)((uint32_t)tn_get(other, i, 8u, AXS) - (uint32_t)zo);
        int32_t o = SLOT ? tn_m7_add_elem(dw, dv, AOS, TN_ST(A), TN_ST(B), TN_ST(Q))
                         : tn_m7_add_elem(dv, dw, AOS, TN_ST(A), TN_ST(B), TN_ST(Q));
        o = o < ALO ? ALO : (o > AHI ? AHI : o);
        out[i] = (uint8_t)o;
    }
}

#endif

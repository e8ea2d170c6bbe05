/* tn_m7_subconv.h: sub-byte convolution and pointwise layers on tn_m7_conv's int16 lanes
 * (tn_m7_subconv; the sub-byte kernels: c/tn_m7_sub.h). */
#ifndef TN_M7_SUBCONV_H
#define TN_M7_SUBCONV_H

#include "tn_m7_core.h"
#include "tn_m7_add.h"
#include "tn_m7_gemm.h" /* tn_m7_conv's windows (8-bit inputs) and outputs */

/* ---------------------------------------------------------------------------------------------
 * tn_m7_subconv: convolutions and pointwise layers of 2 or 4-bit weights and 2, 4 or 8-bit
 * inputs (steps.sub_conv_fits), in tn_m7_conv's scratch (steps.sub_conv_scratch: two pixels'
 * windows as int16 lanes x' = x - z_x, interleaved word by word, 4 KP bytes; with a fused ADD
 * the pair's 2 CO int32 outputs after them), so never more scratch than the 8-bit kernel.
 *
 * Windows. A window row of KW C codes is stored as KWCP lanes, rounded up to a group of GX
 * lanes (steps.sub_lane_group): 4 for 8-bit inputs (tn_m7_cv_window itself); for sub-byte
 * ones 32 / XB (one word of codes, when KW C is a multiple of it) or else 4 (filled lane by
 * lane): lane pair j of a group holds elements (j, j + GX / 2) (what masking a word of codes
 * shifted by j XB bits gives), padding lanes 0. Unpacking a word costs about one instruction
 * per lane per pixel, shared by all CO output channels.
 *
 * Weights (kernels_m7.subconv_weights). Rows in blocks of four (the last block completed with
 * rows of code 0 whose outputs are never written), per block and per lane pair q of the window
 * (pixel order) the weights of the block's four rows at the pair's two elements i_q, j_q:
 * - 4-bit: one word per lane pair, nibble r = row r at i_q, nibble 4 + r = row r at j_q. An AND
 *   with an immediate (0x000F000F << 4 r) is the lane pair of row r, scaled by 16^r: row r's
 *   accumulator holds 16^r sum w x', shifted back at the end (exact: kernels_m7.subconv_raw
 *   bounds 16 |A_1| and 256 |A_2| below 2^31). With RAW = 2 row 3 is not masked at all: the
 *   word's lanes are w_0 + 16 w_1 + 256 w_2 + 4096 (w_3 - 8) (nibble 3 stored as w_3 ^ 8, the
 *   top nibble of a signed lane), so SMLAD of the raw word gives A_0 + 16 A_1 + 256 A_2 +
 *   4096 A_3' and A_3' = (that - the three others) / 4096, exact when |4096 A_3'| < 2^31
 *   (bounded at export); A_3 = A_3' + 8 sum x'. With RAW = 2 the word is masked in place
 *   (TN_SC_C4: the raw word, then BIC 0xF000F000, AND 0x00FF00FF, AND 0x000F000F: the
 *   cumulative sums of rows 0..3, 0..2, 0..1, 0, differences exact by the same bounds), so no
 *   temporary register: one LDRD of two weight words per two lane pairs, 12.5 instructions
 *   per 16 MACs (tn_m7_conv's QUAD: 12). RAW = 1: row 3 by a shift and an AND (14); RAW = 0:
 *   rows 1-3 so (16), no bound needed.
 * - 2-bit: one word per two lane pairs q, q + 1: crumb r = row r at i_q, 4 + r = row r at
 *   i_{q+1}, 8 + r = row r at j_q, 12 + r = row r at j_{q+1}; AND with 0x00030003 << 2 r for
 *   rows 0-2, row 3 unmasked (bytes 0 and 2 alone, UXTB16: w_0 + 4 w_1 + 16 w_2 + 64 w_3,
 *   A_3 = (S_3 - S_0 - S_1 - S_2) / 64), then pair q + 1 from the word's bytes 1 and 3 (UXTB16
 *   ROR 8): 27 instructions per 32 MACs (row sums scaled by up to 64, within int32 by
 *   steps.sub_conv_fits).
 * Every block's first unit starts its sums with SMUAD (no zeroing), then eight units per loop
 * (4-bit weights at RAW 2, word-aligned: sixteen, TN_SC_C4_L16). A lone last pixel (odd
 * pixel counts) of 4-bit weights at RAW 2 runs its four rows alone (tn_sc_block1) instead of
 * the pair kernel on a duplicate of it.
 * Outputs: on the floor rounding with one multiplier and the whole OB-bit clamp, SMMLA + one
 * SSAT / USAT with the shift (tn_sc_fq, tn_sc_code), about six instructions per output.
 * The weight zero points enter once per output as in tn_m7_conv (tn_m7_cv_chan).
 * Per-channel floor multipliers (ICN, trained models) with 4 or 2-bit outputs, one weight zero
 * point and 4-bit weights at RAW 2 or 2-bit weights: tn_sc_epi, the block's scaled sums to
 * packed codes in one assembly statement (~8 instructions per output, FAST 1 ~10; the C of
 * tn_sc_put4 took ~14, GCC reloading its pointers and sums around the block's fourteen
 * registers: ResNet-8 w4a4 3x3 convolutions 112 -> ~80 instructions per block of 8 outputs),
 * through entries of its own chosen at export (tn_m7_subconv_epi, tn_m7_sub_epi).
 * Tried: the same assembly with the bias, m0 and n0 pointers as register operands ("+r"):
 * GCC spilled and reloaded them around the sums' statement (27 instructions of glue per
 * block instead of ~11 with the state in memory, st), and its pair loop around grew (ResNet-8
 * step conv2d_1: -11 K instead of -46 K); a table of (bias << 8 | shift, m0) in the weights
 * (one LDRD per channel, no pointers) would save ~10 more per block but costs 8 bytes of flash
 * per channel (VWW w4a4: ~24 KB): not done.
 * Not done (session 18): the lone pixel's form for 2-bit weights (TN_SC_G2: no step of the
 * MLPerf w4a4 models has one), sixteen units per loop for 2-bit weights (their end test is
 * 3 instructions per 219, ~0.7 % to gain).
 * Session 20: 2-bit weights over inputs x' >= 0 take PK where the export bounds it
 * (kernels_m7.subconv_pack: two rows per int16 lane, w_a + 2^13 w_b, four sums instead of
 * eight, 23 instructions per 32 MACs instead of 27, the same weight bytes, so tn_m7_sub's pixel
 * pairs on shared lanes take it too: c/tn_m7_sub.h, TN_SUB_RF); tn_sc_epi takes 8-bit outputs
 * (one STR per pixel's four codes); 8-bit windows of a pixel pair at once
 * (tn_m7_cv_window2); sub-byte window rows of whole halfwords in groups of four lanes no
 * longer lane by lane. Bench rows
 * (--subbyte, x w8a8): VWW pointwise w2a2 1.100 -> 0.926, w4a8 1.031 -> 0.998; ResNet-8 conv
 * 3x3 w2a2 1.094 -> 0.991, w4a8 1.046 -> 1.016. Not done: PK's form for signed inputs (SBFX,
 * |A_a| < 2^12) and a lone pixel's; four 2-bit rows per lane pair (w_a + 2^13 w_b needs a
 * register mask and an ORR per pair: a layout with the rows already 13 bits apart would take
 * one AND, ~15 per 32 MACs, but changes the weight bytes tn_m7_sub shares, kernels_m7.sub
 * .sub_lane_layout).
 * Session 21: a lone last pixel of 2-bit weights (not PK) runs its four rows alone
 * (tn_sc_block1_2: 19 instructions per 16 MACs instead of the pair kernel's 27 on a duplicate):
 * KWS's w2a2 first layer (25 x 5 pixels) 409,232 -> 408,072 (x w8a8 1.0002 -> 0.9974).
 * Looked at, not done: ResNet-8's 4-bit 3x3 convolutions stay at 12.5 instructions per 16
 * MACs (w4a8 1.016 x w8a8): the loop needs three loads per two lane pairs (LDRD of two weight
 * words, two LDRD of lanes); one LDM of both lane pairs' four words would make it 12, but needs
 * two more registers than the fourteen (8 sums, 2 pointers, 2 weight words, 2 lanes); three
 * masks per weight word are the least for four distinct views of it (the raw word is one).
 *
 * Output order and the reads before each write are tn_m7_conv's (both pixels' windows read
 * before either's outputs are written): the planner's sliding writes stay valid.
 * --------------------------------------------------------------------------------------------- */

/* u + the sum of the four bytes of v (USADA8 against 0). */
TN_INLINE uint32_t tn_usada8(uint32_t v, uint32_t u)
{
#if defined(__ARM_FEATURE_DSP)
    uint32_t r;
    __asm__("usada8 %0, %1, %2, %3" : "=r"(r) : "r"(v), "r"(0u), "r"(u));
    return r;
#else
    return u + (v & 0xFFu) + ((v >> 8) & 0xFFu) + ((v >> 16) & 0xFFu) + (v >> 24);
#endif
}

/* Lane pair j of a word v of XB-bit codes (XB < 8): int16 lanes x' of elements (j, j + 16/XB). */
TN_INLINE uint32_t tn_sc_xpair(uint32_t v, uint32_t j, uint32_t XB, uint32_t XS, int32_t ZX)
{
    uint32_t p = (v >> (j * XB)) & tn_lanemask(XB);
    const int32_t sb = XS ? (int32_t)(1u << (XB - 1u)) : 0;
    if (XS) p ^= (uint32_t)sb * 0x00010001u; /* c ^ 2^(b-1) - 2^(b-1): the signed code */
    if (XS || ZX != 0) p = tn_ssub16(p, ((uint32_t)(sb + ZX) & 0xFFFFu) * 0x00010001u);
    return p;
}

/* Unpack R rows of n words of XB-bit codes (XB < 8), row r at src + r * stride bytes, into
 * the lane pairs of one pixel from word d on (two apart, the rows one after another); returns
 * sum + their x'. Unsigned 4-bit codes with z_x = 0 sum as E + (U - E) / 16 with U = sum of
 * the bytes (USADA8: even + 16 odd nibbles) and E the even nibbles (lane pairs 0 and 2 added
 * lane-wise: at most 30 R n < 2^16 per lane), three instructions per word instead of four.
 * R > 1 (a whole window inside the input, tn_sc_window) keeps U and E across the rows: one
 * pointer step per row instead of a row's bounds checks and sum, about 30 instructions per
 * row fewer (ResNet-8 w4a4 3x3 convolutions). */
TN_INLINE int32_t tn_sc_run(const uint8_t *src, uint32_t *TN_RESTRICT d, uint32_t n, uint32_t XB,
                            uint32_t XS, int32_t ZX, int32_t sum, uint32_t R, uint32_t stride)
{
    const uint32_t hp = 16u / XB;
    if (XB == 4u && !XS && ZX == 0 && R * n < 2048u) {
        uint32_t u = 0, e = 0;
#if TN_M7_ASM
        /* one statement per word, twelve instructions (unrolled C leaves gcc spilling the
         * words): the pairs 1-3 at d + 2, 4, 6, then pair 0 at d with d moved on */
        const uint32_t m = tn_lanemask(4u), zero = 0u;
        for (uint32_t r = 0; r < R; r++, src += stride - 4u * n)
        TN_UNROLL
        for (uint32_t g = 0; g < n; g++) {
            uint32_t v, t;
            __asm__ volatile("ldr %[v], [%[s]], #4\n\t"
                             "and %[t], %[m], %[v], lsr #4\n\t"
                             "str %[t], [%[d], #8]\n\t"
                             "and %[t], %[m], %[v], lsr #8\n\t"
                             "str %[t], [%[d], #16]\n\t"
                             "add %[e], %[e], %[t]\n\t"
                             "and %[t], %[m], %[v], lsr #12\n\t"
                             "str %[t], [%[d], #24]\n\t"
                             "and %[t], %[m], %[v]\n\t"
                             "str %[t], [%[d]], #32\n\t"
                             "add %[e], %[e], %[t]\n\t"
                             "usada8 %[u], %[v], %[z], %[u]\n\t"
                             : [s] "+&r"(src), [d] "+&r"(d), [v] "=&r"(v), [t] "=&r"(t),
                               [e] "+&r"(e), [u] "+&r"(u)
                             : [m] "r"(m), [z] "r"(zero)
                             : "memory");
        }
#else
        for (uint32_t r = 0; r < R; r++, src += stride)
        TN_UNROLL
        for (uint32_t g = 0; g < n; g++, d += 2u * hp) {
            const uint32_t v = tn_ld32(src + 4u * g);
            const uint32_t p0 = tn_sc_xpair(v, 0u, 4u, 0u, 0), p1 = tn_sc_xpair(v, 1u, 4u, 0u, 0);
            const uint32_t p2 = tn_sc_xpair(v, 2u, 4u, 0u, 0), p3 = tn_sc_xpair(v, 3u, 4u, 0u, 0);
            d[0] = p0; d[2] = p1; d[4] = p2; d[6] = p3;
            u = tn_usada8(v, u);
            e += p0;
            e += p2;
        }
#endif
        {
            const uint32_t even = (e & 0xFFFFu) + (e >> 16);
            return (int32_t)((uint32_t)sum + even + ((u - even) >> 4));
        }
    }
    for (uint32_t r = 0; r < R; r++, src += stride)
    TN_UNROLL
    for (uint32_t g = 0; g < n; g++, d += 2u * hp) {
        const uint32_t v = tn_ld32(src + 4u * g);
        TN_UNROLL
        for (uint32_t j = 0; j < hp; j++) {
            const uint32_t pr = tn_sc_xpair(v, j, XB, XS, ZX);
            d[2u * j] = pr;
            sum = tn_smlad(pr, 0x00010001u, sum);
        }
    }
    return sum;
}

#if TN_M7_ASM
/* one word of unsigned 4-bit codes (tn_sc_run's twelve instructions), its four lane pairs
 * stored at word D0 (pixel 0) or D1 (pixel 1), or (TN_SC_W01) at both */
#define TN_SC_W1(D)                                                                             \
    "ldr %[v], [%[s]], #4\n\t"                                                                  \
    "and %[t], %[m], %[v], lsr #4\n\tstr %[t], [%[" D "], #8]\n\t"                               \
    "and %[t], %[m], %[v], lsr #8\n\tstr %[t], [%[" D "], #16]\n\tadd %[e], %[e], %[t]\n\t"      \
    "and %[t], %[m], %[v], lsr #12\n\tstr %[t], [%[" D "], #24]\n\t"                             \
    "and %[t], %[m], %[v]\n\tstr %[t], [%[" D "]], #32\n\tadd %[e], %[e], %[t]\n\t"              \
    "usada8 %[u], %[v], %[z], %[u]\n\t"
#define TN_SC_W01                                                                               \
    "ldr %[v], [%[s]], #4\n\t"                                                                  \
    "and %[t], %[m], %[v], lsr #4\n\tstr %[t], [%[d0], #8]\n\tstr %[t], [%[d1], #8]\n\t"        \
    "and %[t], %[m], %[v], lsr #8\n\tstr %[t], [%[d0], #16]\n\tstr %[t], [%[d1], #16]\n\t"      \
    "add %[e], %[e], %[t]\n\t"                                                                  \
    "and %[t], %[m], %[v], lsr #12\n\tstr %[t], [%[d0], #24]\n\tstr %[t], [%[d1], #24]\n\t"     \
    "and %[t], %[m], %[v]\n\tstr %[t], [%[d0]], #32\n\tstr %[t], [%[d1]], #32\n\t"              \
    "add %[e], %[e], %[t]\n\tusada8 %[u], %[v], %[z], %[u]\n\t"
#define TN_SC_W(BODY, U, E)                                                                     \
    __asm__ volatile(BODY                                                                       \
                     : [s] "+&r"(src), [d0] "+&r"(d0), [d1] "+&r"(d1), [v] "=&r"(v),            \
                       [t] "=&r"(t), [e] "+&r"(E), [u] "+&r"(U)                                 \
                     : [m] "r"(m), [z] "r"(zero)                                                \
                     : "memory")
#endif

/* The windows of two horizontally adjacent output pixels (stride 1), both wholly inside the
 * input, of unsigned 4-bit codes with z_x = 0 and C % 8 == 0: each row of the pair is KW + 1
 * taps of C / 8 words at src (rows stride bytes apart); a word of taps 1 .. KW - 1 (in both
 * windows) is unpacked once and stored for both pixels (sixteen instructions for the two
 * instead of 24), tap 0's for pixel 0 alone, tap KW's for pixel 1 alone. Lanes as tn_sc_run
 * (pixel 0's at d, pixel 1's at d + 1, two apart); sums of x' in *s0, *s1, by tn_sc_run's
 * USADA8 form for each of the three parts (tap 0, the middle, tap KW): s0 = first + middle,
 * s1 = middle + last. */
TN_INLINE void tn_sc_run2(const uint8_t *src, uint32_t *TN_RESTRICT d, uint32_t C, uint32_t KW,
                          uint32_t KH, uint32_t stride, int32_t *s0, int32_t *s1)
{
    const uint32_t nt = C / 8u; /* words per tap */
    uint32_t ua = 0, ea = 0, ub = 0, eb = 0, uc = 0, ec = 0;
#if TN_M7_ASM
    const uint32_t m = tn_lanemask(4u), zero = 0u;
    uint32_t *d0 = d, *d1 = d + 1;
    for (uint32_t r = 0; r < KH; r++, src += stride - 4u * (KW + 1u) * nt) {
        uint32_t v, t;
        TN_UNROLL
        for (uint32_t g = 0; g < nt; g++) TN_SC_W(TN_SC_W1("d0"), ua, ea);
        for (uint32_t k = 1; k < KW; k++) /* a loop over the taps: code bytes */
            TN_UNROLL
            for (uint32_t g = 0; g < nt; g++) TN_SC_W(TN_SC_W01, ub, eb);
        TN_UNROLL
        for (uint32_t g = 0; g < nt; g++) TN_SC_W(TN_SC_W1("d1"), uc, ec);
    }
#else
    for (uint32_t r = 0; r < KH; r++, src += stride) {
        uint32_t *d0 = d + r * KW * C, *d1 = d0 + 1;
        for (uint32_t g = 0; g < (KW + 1u) * nt; g++) {
            const uint32_t v = tn_ld32(src + 4u * g);
            const uint32_t tap = g / nt;
            uint32_t *u = tap == 0u ? &ua : tap == KW ? &uc : &ub;
            uint32_t *e = tap == 0u ? &ea : tap == KW ? &ec : &eb;
            TN_UNROLL
            for (uint32_t j = 0; j < 4u; j++) {
                const uint32_t pr = tn_sc_xpair(v, j, 4u, 0u, 0);
                if (tap < KW) d0[8u * g + 2u * j] = pr;
                if (tap > 0u) d1[8u * (g - nt) + 2u * j] = pr;
                if (j == 0u || j == 2u) *e += pr;
            }
            *u = tn_usada8(v, *u);
        }
    }
#endif
    {
        /* E + (U - E) / 16 per part (tn_sc_run): the even nibbles' lanes folded */
        const uint32_t fa = (ea & 0xFFFFu) + (ea >> 16), fb = (eb & 0xFFFFu) + (eb >> 16);
        const uint32_t fc = (ec & 0xFFFFu) + (ec >> 16);
        const uint32_t sa = fa + ((ua - fa) >> 4), sb = fb + ((ub - fb) >> 4);
        const uint32_t sc = fc + ((uc - fc) >> 4);
        *s0 = (int32_t)(sa + sb);
        *s1 = (int32_t)(sb + sc);
    }
}

/* The window of output pixel (oy, ox) of XB-bit inputs (XB < 8) as lanes of one pixel from
 * word d on (the pixel's words two apart); returns sum x'. Taps outside the input hold padv
 * (0 - z_x with PADZERO: the code 0; else x' = 0), padding lanes 0. */
TN_INLINE int32_t tn_sc_window(const uint8_t *in, uint32_t *TN_RESTRICT d, int32_t oy, int32_t ox,
                               int32_t H, int32_t W, uint32_t C, int32_t KH, int32_t KW,
                               int32_t SH, int32_t SW, int32_t PT, int32_t PL, uint32_t XB,
                               uint32_t XS, int32_t ZX, uint32_t PADZERO, uint32_t G,
                               uint32_t KWCP)
{
    const uint32_t hp = G / 2u;
    const int32_t padv = PADZERO ? -ZX : 0;
    const uint32_t padw = ((uint32_t)padv & 0xFFFFu) * 0x00010001u;
    const int32_t y0 = oy * SH - PT, x0 = ox * SW - PL;
    int32_t sum = 0;
    if (G == 32u / XB && y0 >= 0 && y0 + KH <= H && x0 >= 0 && x0 + KW <= W)
        /* the whole window inside: its KH rows in one run (KWCP = KW C: whole words) */
        return tn_sc_run(in + ((uint32_t)y0 * (uint32_t)W + (uint32_t)x0) * C * XB / 8u, d,
                         KWCP / G, XB, XS, ZX, 0, (uint32_t)KH, (uint32_t)W * C * XB / 8u);
    for (int32_t ky = 0; ky < KH; ky++) {
        uint32_t *dr = d + (uint32_t)ky * KWCP;
        const int32_t iy = y0 + ky;
        const uint32_t rowin = iy >= 0 && iy < H;
        /* a row in bounds as one run only where taps are not whole words: with whole-word taps
         * a border window's rows go tap by tap below (one unrolled copy of the unpacking per
         * step, not two; windows wholly inside are whole runs above) */
        if (G == 32u / XB && C % G != 0u && rowin && x0 >= 0 && x0 + KW <= W) {
            sum = tn_sc_run(in + ((uint32_t)iy * (uint32_t)W + (uint32_t)x0) * C * XB / 8u, dr,
                            KWCP / G, XB, XS, ZX, sum, 1u, 0u);
            continue;
        }
        if (G == 32u / XB && C % G == 0u) { /* every tap is C / G whole words of codes */
            for (int32_t kx = 0; kx < KW; kx++) {
                const int32_t ix = x0 + kx;
                uint32_t *dt = dr + (uint32_t)kx * C;
                if (rowin && ix >= 0 && ix < W) {
                    const uint8_t *src = in + ((uint32_t)iy * (uint32_t)W + (uint32_t)ix) * C
                                                  * XB / 8u;
                    for (uint32_t g = 0; g < C / G; g++) {
                        const uint32_t v = tn_ld32(src + 4u * g);
                        TN_UNROLL
                        for (uint32_t j = 0; j < hp; j++) {
                            const uint32_t pr = tn_sc_xpair(v, j, XB, XS, ZX);
                            dt[2u * (g * hp + j)] = pr;
                            sum = tn_smlad(pr, 0x00010001u, sum);
                        }
                    }
                } else {
                    for (uint32_t j = 0; j < C / 2u; j++) dt[2u * j] = padw;
                    sum += padv * (int32_t)C;
                }
            }
            continue;
        }
        if (G == 4u && XB < 8u && (C * XB) % 16u == 0u && rowin && x0 >= 0 && x0 + KW <= W) {
            /* a row in bounds of whole halfwords of codes (C XB a multiple of 16: no padding
             * lanes, KWCP = KW C), 4 / XB groups of four lanes each: v holds the halfword and,
             * from bit 16, the halfword moved down by two codes, so that lane pair j of group g
             * (elements 4 g + j, 4 g + j + 2) is tn_sc_xpair's pair 4 g + j of v. About four
             * instructions per lane pair instead of the lane-by-lane loop's ~20 per lane (VWW's
             * w2a2 pointwise conv2d_1, C = 8). */
            const uint8_t *src = in + ((uint32_t)iy * (uint32_t)W + (uint32_t)x0) * C * XB / 8u;
            const uint32_t gph = 4u / XB; /* groups per halfword */
            for (uint32_t h = 0; h < (uint32_t)KW * C * XB / 16u; h++) {
                uint16_t hv;
                TN_MEMCPY(&hv, src + 2u * h, 2);
                {
                    const uint32_t v = (uint32_t)hv | ((uint32_t)hv >> (2u * XB)) << 16;
                    TN_UNROLL
                    for (uint32_t g = 0; g < gph; g++)
                        TN_UNROLL
                        for (uint32_t j = 0; j < 2u; j++) {
                            const uint32_t pr = tn_sc_xpair(v, 4u * g + j, XB, XS, ZX);
                            dr[2u * (2u * (h * gph + g) + j)] = pr;
                            sum = tn_smlad(pr, 0x00010001u, sum);
                        }
                }
            }
            continue;
        }
        for (uint32_t e = 0; e < KWCP; e++) { /* lane by lane */
            int32_t val = 0;
            if (e < (uint32_t)KW * C) {
                const int32_t ix = x0 + (int32_t)(e / C);
                val = (rowin && ix >= 0 && ix < W)
                    ? tn_get(in, ((uint32_t)iy * (uint32_t)W + (uint32_t)ix) * C + e % C, XB, XS)
                      - ZX
                    : padv;
            }
            {
                const uint32_t r = e % G, wi = 2u * ((e / G) * hp + r % hp);
                dr[wi] = r / hp ? (dr[wi] & 0xFFFFu) | ((uint32_t)val << 16)
                                : (dr[wi] & 0xFFFF0000u) | ((uint32_t)val & 0xFFFFu);
            }
            sum += val;
        }
    }
    return sum;
}

/* TN_SC_LDRD 0: word-aligned weights read by two LDR too, not LDRD (what unaligned ones take;
 * the tests build it so to run that loop) */
#ifndef TN_SC_LDRD
#define TN_SC_LDRD 1
#endif

#if TN_M7_ASM
/* row R's products at both pixels: a_R += T . xa, b_R += T . xb */
#define TN_SC_ACC(T, R)                                                                         \
    "smlad %[a" #R "], %[" T "], %[xa], %[a" #R "]\n\t"                                          \
    "smlad %[b" #R "], %[" T "], %[xb], %[b" #R "]\n\t"
#define TN_SC_LD4 "ldrd %[xa], %[xb], [%[x]], #8\n\tldr %[w], [%[wp]], #4\n\t"
/* one lane pair of 4-bit weights: RAW 1 (row 3 shifted), 0 (rows 1-3 shifted) */
#define TN_SC_G4R1                                                                              \
    TN_SC_LD4 "and %[t], %[w], #0x000F000F\n\t" TN_SC_ACC("t", 0)                                \
    "and %[t], %[w], #0x00F000F0\n\t" TN_SC_ACC("t", 1)                                          \
    "and %[t], %[w], #0x0F000F00\n\t" TN_SC_ACC("t", 2)                                          \
    "lsr %[w], %[w], #12\n\tand %[w], %[w], #0x000F000F\n\t" TN_SC_ACC("w", 3)
#define TN_SC_G4R0                                                                              \
    TN_SC_LD4 "and %[t], %[w], #0x000F000F\n\t" TN_SC_ACC("t", 0)                                \
    "lsr %[t], %[w], #4\n\tand %[t], %[t], #0x000F000F\n\t" TN_SC_ACC("t", 1)                    \
    "lsr %[t], %[w], #8\n\tand %[t], %[t], #0x000F000F\n\t" TN_SC_ACC("t", 2)                    \
    "lsr %[w], %[w], #12\n\tand %[w], %[w], #0x000F000F\n\t" TN_SC_ACC("w", 3)
/* two lane pairs of 2-bit weights: pair q (bytes 0, 2 of the word; row 3 the bytes alone,
 * UXTB16: w_0 + 4 w_1 + 16 w_2 + 64 w_3), then pair q + 1 (bytes 1, 3, moved down by UXTB16
 * ROR 8: row 3 the word itself) */
#define TN_SC_HALF2AG(ACC)                                                                      \
    "and %[t], %[w], #0x00030003\n\t" ACC("t", 0)                                               \
    "and %[t], %[w], #0x000C000C\n\t" ACC("t", 1)                                               \
    "and %[t], %[w], #0x00300030\n\t" ACC("t", 2)                                               \
    "uxtb16 %[t], %[w]\n\t" ACC("t", 3)
#define TN_SC_HALF2B                                                                            \
    "and %[t], %[w], #0x00030003\n\t" TN_SC_ACC("t", 0)                                          \
    "and %[t], %[w], #0x000C000C\n\t" TN_SC_ACC("t", 1)                                          \
    "and %[t], %[w], #0x00300030\n\t" TN_SC_ACC("t", 2) TN_SC_ACC("w", 3)
#define TN_SC_G2G(ACC)                                                                          \
    TN_SC_LD4 TN_SC_HALF2AG(ACC) "ldrd %[xa], %[xb], [%[x]], #8\n\t"                            \
    "uxtb16 %[w], %[w], ror #8\n\t" TN_SC_HALF2B
#define TN_SC_G2 TN_SC_G2G(TN_SC_ACC)
/* fourteen registers: the loop's end stays in memory (read into t once per four units) */
#define TN_SC_OPERANDS                                                                          \
    : [x] "+&r"(x), [wp] "+&r"(w), [xa] "=&r"(xa), [xb] "=&r"(xb), [w] "=&r"(u),               \
      [t] "=&r"(t), [a0] "+&r"(a0), [a1] "+&r"(a1), [a2] "+&r"(a2), [a3] "+&r"(a3),              \
      [b0] "+&r"(b0), [b1] "+&r"(b1), [b2] "+&r"(b2), [b3] "+&r"(b3)                             \
    : [end] "m"(end)                                                                            \
    : "cc", "memory"
/* the first unit of a block of 4-bit weights (TN_SC_C4_PARTS) starting the sums (SMUAD: no
 * zeroing of the accumulators). The sums are in/out operands given their values by the empty
 * TN_SC_SUMS_SET (no instruction): as write-only ("=&r") operands beside the in/out pointers,
 * with the loop end's "m" operand (which these first units do not read), GCC could not
 * allocate the fourteen registers at -O1 (4-bit weights) or -Os (2-bit, before
 * TN_SC_G2_BLOCKS became one statement). */
#define TN_SC_SUMS_SET                                                                          \
    __asm__("" : "=r"(a0), "=r"(a1), "=r"(a2), "=r"(a3), "=r"(b0), "=r"(b1), "=r"(b2), "=r"(b3))
/* NU >= 1 units of 2-bit weights in one asm statement (as tn_m7_gemm.h's TN_CV_QBLOCKS): the
 * first unit starts the eight sums (SMUAD of rows 0-3 at both pixels of its first lane pair
 * before any SMLAD reads one, so the sums are output-only), then (NU - 1) % 8 units straight,
 * then, from NU - 1 >= 8 on, a loop of eight (the end read into t once per eight; an input only
 * where there is a loop). The former form (TN_SC_SUMS_SET, the first unit, then one asm
 * statement per power of two with the sums "+&r" from one to the next) had impossible
 * constraints at -O1 in a w2a4 ResNet-8: GCC could not place the reloads between statements,
 * and -O1 defines the same macros as -O2, so only one statement fixes every level. */
#define TN_SC_G2_ASM(BODY, I)                                                                   \
    __asm__ volatile(BODY                                                                       \
                     : [x] "+&r"(x), [wp] "+&r"(w), [xa] "=&r"(xa), [xb] "=&r"(xb),             \
                       [w] "=&r"(u), [t] "=&r"(t), [a0] "=&r"(a0), [a1] "=&r"(a1),              \
                       [a2] "=&r"(a2), [a3] "=&r"(a3), [b0] "=&r"(b0), [b1] "=&r"(b1),          \
                       [b2] "=&r"(b2), [b3] "=&r"(b3)                                           \
                     : I : "cc", "memory")
#define TN_SC_G2_F TN_SC_G2G(TN_SC_ACCF)
#define TN_SC_G2_X2 TN_SC_G2 TN_SC_G2
#define TN_SC_G2_X4 TN_SC_G2_X2 TN_SC_G2_X2
#define TN_SC_G2_LOOP                                                                           \
    "1:\n\t" TN_SC_G2_X4 TN_SC_G2_X4 "ldr %[t], %[end]\n\tcmp %[x], %[t]\n\tbne 1b\n\t"
#define TN_SC_G2_ENDF() [end] "m"(end)
/* A block loop over NU >= 1 words (rest = NU - 1), each form one assembly statement
 * ASM(BODY, I), I its extra inputs: the first word by F (starting the sums), (NU - 1) % 8 more
 * by U straight (X2, X4: two and four U), then from NU - 1 >= 8 on a loop of eight (LOOP,
 * reading its end through the inputs END(): a function-like macro, so that the commas it
 * expands to reach ASM as one argument). TN_SC_G2_BLOCKS and TN_SC_PK_BLOCKS. */
#define TN_SC_UNROLL(ASM, F, U, X2, X4, LOOP, END)                                              \
    switch ((rest & 7u) | (rest >= 8u ? 8u : 0u)) {                                             \
    case 0u: ASM(F, ); break;                                                                   \
    case 1u: ASM(F U, ); break;                                                                 \
    case 2u: ASM(F X2, ); break;                                                                \
    case 3u: ASM(F U X2, ); break;                                                              \
    case 4u: ASM(F X4, ); break;                                                                \
    case 5u: ASM(F U X4, ); break;                                                              \
    case 6u: ASM(F X2 X4, ); break;                                                             \
    case 7u: ASM(F U X2 X4, ); break;                                                           \
    case 8u: ASM(F LOOP, END()); break;                                                         \
    case 9u: ASM(F U LOOP, END()); break;                                                       \
    case 10u: ASM(F X2 LOOP, END()); break;                                                     \
    case 11u: ASM(F U X2 LOOP, END()); break;                                                   \
    case 12u: ASM(F X4 LOOP, END()); break;                                                     \
    case 13u: ASM(F U X4 LOOP, END()); break;                                                   \
    case 14u: ASM(F X2 X4 LOOP, END()); break;                                                  \
    default: ASM(F U X2 X4 LOOP, END()); break;                                                 \
    }
#define TN_SC_G2_BLOCKS                                                                         \
    do {                                                                                        \
        const uint32_t rest = NU - 1u;                                                          \
        TN_SC_UNROLL(TN_SC_G2_ASM, TN_SC_G2_F, TN_SC_G2, TN_SC_G2_X2, TN_SC_G2_X4,              \
                     TN_SC_G2_LOOP, TN_SC_G2_ENDF)                                              \
    } while (0)
/* PK (2-bit weights, RAW 1: kernels_m7.subconv_pack): the same weight words, two rows of a lane
 * pair per int16 lane, w_a + 2^13 w_b (rows a, b = 0, 1 or 2, 3: AND with M = 0x00030003 and
 * M2 = 0x000C000C of the word moved down by 0, 4 (pair q) or 8, 12 (pair q + 1), ORR of the
 * second shifted up by 11), so one SMLAD takes two rows: P = A_a + 2^13 A_b, split at the end
 * (A_a = P & 0x1FFF, A_b = P >> 13: exact where every input and weight is >= 0 and A_a <
 * 2^13, P < 2^31, bounded at export). Per word (two lane pairs, four rows, two pixels: 32 MACs)
 * one LDR, two LDRD, twelve AND / ORR, eight SMLAD: 23 instructions (TN_SC_G2: 27, tn_m7_conv's
 * QUAD: 24). Four sums (pa, qa: rows 0-1, 2-3 at pixel a; pb, qb at b), two masks in registers. */
#define TN_SC_PKACC(P, T)                                                                       \
    "smlad %[" P "a], %[" T "], %[xa], %[" P "a]\n\t"                                           \
    "smlad %[" P "b], %[" T "], %[xb], %[" P "b]\n\t"
#define TN_SC_PKACCF(P, T)                                                                      \
    "smuad %[" P "a], %[" T "], %[xa]\n\t"                                                      \
    "smuad %[" P "b], %[" T "], %[xb]\n\t"
#define TN_SC_PKPAIR(SH)                                                                        \
    "and %[t], %[m], %[w]" SH "\n\tand %[u], %[m2], %[w]" SH "\n\t"                             \
    "orr %[t], %[t], %[u], lsl #11\n\t"
#define TN_SC_PKU(ACC)                                                                          \
    "ldr %[w], [%[wp]], #4\n\tldrd %[xa], %[xb], [%[x]], #8\n\t"                                 \
    TN_SC_PKPAIR("") ACC("p", "t") TN_SC_PKPAIR(", lsr #4") ACC("q", "t")                       \
    "ldrd %[xa], %[xb], [%[x]], #8\n\t"                                                          \
    TN_SC_PKPAIR(", lsr #8") TN_SC_PKACC("p", "t") TN_SC_PKPAIR(", lsr #12")                  \
    TN_SC_PKACC("q", "t")
#define TN_SC_PK_F TN_SC_PKU(TN_SC_PKACCF)
#define TN_SC_PK TN_SC_PKU(TN_SC_PKACC)
#define TN_SC_PK_X2 TN_SC_PK TN_SC_PK
#define TN_SC_PK_X4 TN_SC_PK_X2 TN_SC_PK_X2
#define TN_SC_PK_LOOP                                                                           \
    "1:\n\t" TN_SC_PK_X4 TN_SC_PK_X4 "ldr %[t], %[end]\n\tcmp %[x], %[t]\n\tbne 1b\n\t"
#define TN_SC_PK_ASM(BODY, I)                                                                   \
    __asm__ volatile(BODY                                                                       \
                     : [x] "+&r"(x), [wp] "+&r"(w), [xa] "=&r"(xa), [xb] "=&r"(xb),             \
                       [w] "=&r"(u), [t] "=&r"(t), [u] "=&r"(v2), [pa] "=&r"(a0),               \
                       [qa] "=&r"(a1), [pb] "=&r"(b0), [qb] "=&r"(b1)                           \
                     : [m] "r"(m), [m2] "r"(m2) I : "cc", "memory")
#define TN_SC_PK_ENDF() , [end] "m"(end)
/* NU >= 1 words as TN_SC_G2_BLOCKS: the first's pair q starting the sums (ACC: SMUAD, its
 * pair q + 1 SMLAD onto them), (NU - 1) % 8 straight, then
 * from NU - 1 >= 8 on a loop of eight */
#define TN_SC_PK_BLOCKS                                                                         \
    do {                                                                                        \
        const uint32_t rest = NU - 1u, m = tn_lanemask(2u), m2 = m << 2;                        \
        uint32_t v2;                                                                            \
        TN_SC_UNROLL(TN_SC_PK_ASM, TN_SC_PK_F, TN_SC_PK, TN_SC_PK_X2, TN_SC_PK_X4,              \
                     TN_SC_PK_LOOP, TN_SC_PK_ENDF)                                              \
        (void)v2;                                                                               \
    } while (0)
#define TN_SC_BLOCKS(G)                                                                         \
    TN_RUN4(NU, G, "ldr %[t], %[end]\n\tcmp %[x], %[t]\n\tbne 1b\n\t", TN_SC_OPERANDS)
/* RAW 1 and 0 with an FPU (TN_SC_LEAN13, default __ARM_FP): thirteen registers, no temporary,
 * one asm statement per block. With an FPU GCC found no registers for TN_SC_G4R1's and
 * TN_SC_G4R0's fourteen (RAW 1 where an ADD was fused into the step, the kernel sweep of
 * session 22: 47 -> 47 channels at -O2 / -O3 / -Os; RAW 0 in every step of a compile grid,
 * session 23: "'asm' operand has impossible constraints"); neither one statement of the
 * fourteen nor TN_RUN4's statements of the thirteen compiled, both together do. RAW 1: the
 * weight word masked in place as TN_SC_C4 does (BIC 0xF000F000, AND 0x00FF00FF, AND
 * 0x000F000F: the cumulative sums S_2, S_1, S_0) after row 3 from a first load of the same word
 * (shift and AND): 16 instructions per lane pair instead of 15; tn_sc_block then takes the
 * differences S_2 - S_1 = 256 A_2 and S_1 - S_0 = 16 A_1, equal modulo 2^32 to TN_SC_G4R1's
 * scaled sums, so everything after the loop is the same. RAW 0 (no scaled sum is bounded, so
 * no cumulative one): the word loaded again for rows 1-3, 20 instructions instead of 16. The
 * loop's end is read into w; the first lane pair starts the sums (SMUAD: output-only sums, as
 * TN_SC_G2_BLOCKS). Without an FPU (our QEMU builds, where the instruction counts are
 * measured) TN_SC_G4R1 / TN_SC_G4R0 are unchanged; the tests build these forms without one
 * too (-DTN_SC_LEAN13=1). */
#ifndef TN_SC_LEAN13
#if defined(__ARM_FP)
#define TN_SC_LEAN13 1
#else
#define TN_SC_LEAN13 0
#endif
#endif
#define TN_SC_G4R1LG(ACC)                                                                       \
    "ldrd %[xa], %[xb], [%[x]], #8\n\tldr %[w], [%[wp]]\n\t"                                    \
    "lsr %[w], %[w], #12\n\tand %[w], %[w], #0x000F000F\n\t" ACC("w", 3)                        \
    "ldr %[w], [%[wp]], #4\n\tbic %[w], %[w], #0xF000F000\n\t" ACC("w", 2)                      \
    "and %[w], %[w], #0x00FF00FF\n\t" ACC("w", 1)                                                \
    "and %[w], %[w], #0x000F000F\n\t" ACC("w", 0)
#define TN_SC_G4R0LG(ACC)                                                                       \
    "ldrd %[xa], %[xb], [%[x]], #8\n\tldr %[w], [%[wp]]\n\t"                                    \
    "and %[w], %[w], #0x000F000F\n\t" ACC("w", 0)                                                \
    "ldr %[w], [%[wp]]\n\tlsr %[w], %[w], #4\n\tand %[w], %[w], #0x000F000F\n\t" ACC("w", 1)    \
    "ldr %[w], [%[wp]]\n\tlsr %[w], %[w], #8\n\tand %[w], %[w], #0x000F000F\n\t" ACC("w", 2)    \
    "ldr %[w], [%[wp]], #4\n\tlsr %[w], %[w], #12\n\tand %[w], %[w], #0x000F000F\n\t"          \
    ACC("w", 3)
#define TN_SC_LEAN_ASM(BODY, I)                                                                 \
    __asm__ volatile(BODY                                                                       \
                     : [x] "+&r"(x), [wp] "+&r"(w), [xa] "=&r"(xa), [xb] "=&r"(xb),             \
                       [w] "=&r"(u), [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2),            \
                       [a3] "=&r"(a3), [b0] "=&r"(b0), [b1] "=&r"(b1), [b2] "=&r"(b2),          \
                       [b3] "=&r"(b3)                                                           \
                     : I : "cc", "memory")
/* NU >= 1 lane pairs of the lane pair G(ACC) as TN_SC_G2_BLOCKS (TN_SC_UNROLL: the first
 * starting the sums, NU - 1 mod 8 straight, a loop of eight) */
#define TN_SC_LEAN_BLOCKS(G)                                                                    \
    do {                                                                                        \
        const uint32_t rest = NU - 1u;                                                          \
        TN_SC_UNROLL(TN_SC_LEAN_ASM, G(TN_SC_ACCF), G(TN_SC_ACC), G(TN_SC_ACC) G(TN_SC_ACC),    \
                     G(TN_SC_ACC) G(TN_SC_ACC) G(TN_SC_ACC) G(TN_SC_ACC),                       \
                     "1:\n\t" G(TN_SC_ACC) G(TN_SC_ACC) G(TN_SC_ACC) G(TN_SC_ACC)               \
                     G(TN_SC_ACC) G(TN_SC_ACC) G(TN_SC_ACC) G(TN_SC_ACC)                        \
                     "ldr %[w], %[end]\n\tcmp %[x], %[w]\n\tbne 1b\n\t", TN_SC_G2_ENDF)         \
    } while (0)
/* RAW 2, the weight word masked in place (T: the register holding it): row 3's sum from the raw
 * word, then bits 0-11 of each lane (BIC 0xF000F000: w_0 + 16 w_1 + 256 w_2), bits 0-7 (w_0 +
 * 16 w_1), bits 0-3 (w_0): cumulative sums S_3, S_2, S_1, S_0, with A_r = (S_r - S_{r-1}) /
 * 16^r (tn_sc_block). No temporary: two weight words in registers, one LDRD for two lane
 * pairs (12.5 instructions per 16 MACs). The block's first lane pairs start the sums (SMUAD,
 * ACC F): no zeroing of the eight accumulators. */
#define TN_SC_ACCF(T, R)                                                                        \
    "smuad %[a" #R "], %[" T "], %[xa]\n\t"                                                      \
    "smuad %[b" #R "], %[" T "], %[xb]\n\t"
#define TN_SC_C4G(T, ACC)                                                                       \
    "ldrd %[xa], %[xb], [%[x]], #8\n\t" ACC(T, 3)                                                \
    "bic %[" T "], %[" T "], #0xF000F000\n\t" ACC(T, 2)                                          \
    "and %[" T "], %[" T "], #0x00FF00FF\n\t" ACC(T, 1)                                          \
    "and %[" T "], %[" T "], #0x000F000F\n\t" ACC(T, 0)
#define TN_SC_C4(T) TN_SC_C4G(T, TN_SC_ACC)
#define TN_SC_LD1 "ldr %[u], [%[wp]], #4\n\t"
#define TN_SC_LD2A "ldrd %[u], %[v], [%[wp]], #8\n\t"
#define TN_SC_LD2U "ldr %[u], [%[wp]], #4\n\tldr %[v], [%[wp]], #4\n\t"
#define TN_SC_C4_REGS                                                                           \
    [x] "+&r"(x), [wp] "+&r"(w), [xa] "=&r"(xa), [xb] "=&r"(xb), [u] "=&r"(u), [v] "=&r"(t)
#define TN_SC_C4_TAIL                                                                           \
    : [end] "m"(end)                                                                            \
    : "cc", "memory"
#define TN_SC_C4_OPERANDS                                                                       \
    : TN_SC_C4_REGS, [a0] "+&r"(a0), [a1] "+&r"(a1), [a2] "+&r"(a2), [a3] "+&r"(a3),            \
      [b0] "+&r"(b0), [b1] "+&r"(b1), [b2] "+&r"(b2), [b3] "+&r"(b3) TN_SC_C4_TAIL
#define TN_SC_C4_FIRST                                                                          \
    : TN_SC_C4_REGS, [a0] "+&r"(a0), [a1] "+&r"(a1), [a2] "+&r"(a2), [a3] "+&r"(a3),            \
      [b0] "+&r"(b0), [b1] "+&r"(b1), [b2] "+&r"(b2), [b3] "+&r"(b3)                             \
    :                                                                                           \
    : "cc", "memory"
/* NU lane pairs (NU >= 2, KP a multiple of 4): the first one or two starting the sums, then
 * two, four, then eight straight or, from sixteen on, sixteen per loop (TN_SC_C4_L16: the end
 * read into u once per sixteen; with eight per loop the test was 3 instructions per 100, about
 * 1.5 % of ResNet-8's w4a4 3x3 convolutions); LD2: the two words' load.
 * One asm statement per part, the sums "+&r" from one to the next: without an FPU GCC
 * allocates them at every level, and ResNet-8 w4a4 runs 19 K instructions fewer than with
 * TN_SC_C4_ONE's single statement (QEMU, soft float) */
#define TN_SC_C4_PARTS(LD2, BIG)                                                               \
    do {                                                                                        \
        const uint32_t rest = NU & 1u ? NU - 1u : NU - 2u;                                      \
        TN_SC_SUMS_SET;                                                                         \
        if (NU & 1u)                                                                            \
            __asm__ volatile(TN_SC_LD1 TN_SC_C4G("u", TN_SC_ACCF) TN_SC_C4_FIRST);              \
        else                                                                                    \
            __asm__ volatile(LD2 TN_SC_C4G("u", TN_SC_ACCF) TN_SC_C4("v") TN_SC_C4_FIRST);      \
        if (rest & 2u) __asm__ volatile(LD2 TN_SC_C4("u") TN_SC_C4("v") TN_SC_C4_OPERANDS);     \
        if (rest & 4u)                                                                          \
            __asm__ volatile(LD2 TN_SC_C4("u") TN_SC_C4("v") LD2 TN_SC_C4("u") TN_SC_C4("v")    \
                             TN_SC_C4_OPERANDS);                                                \
        switch (TN_SC_C4_TAILK(BIG)) {                                                          \
        case 1u: __asm__ volatile(TN_SC_C4_P8(LD2) TN_SC_C4_OPERANDS); break;                   \
        case 2u: __asm__ volatile(TN_SC_C4_L8(LD2) TN_SC_C4_OPERANDS); break;                   \
        case 3u: __asm__ volatile(TN_SC_C4_L16(LD2, "b 2f\n\t") TN_SC_C4_OPERANDS); break;      \
        case 4u: __asm__ volatile(TN_SC_C4_L16(LD2, "") TN_SC_C4_OPERANDS); break;              \
        default: break;                                                                         \
        }                                                                                       \
    } while (0)
/* NU lane pairs (NU >= 2, KP a multiple of 4) in one asm statement, as TN_SC_G2_BLOCKS: the
 * first one or two starting the sums (so the sums are output-only), then two, four, then
 * TN_SC_C4_PARTS' eight or sixteen per loop (the end an input only where there is a loop);
 * LD2: the two words' load. One statement per power of two with the sums "+&r" from
 * one to the next (the former form) had impossible constraints with an FPU
 * (-mfloat-abi=hard: ResNet-8 w4a4 at -O1, w4a8 at -Og): GCC could not place the reloads
 * between the statements. TN_SC_C4_ONE (default: with an FPU, __ARM_FP) selects it; the tests
 * build it without one too (QEMU). */
#ifndef TN_SC_C4_ONE
#if defined(__ARM_FP)
#define TN_SC_C4_ONE 1
#else
#define TN_SC_C4_ONE 0
#endif
#endif
#if TN_SC_C4_ONE
#define TN_SC_C4_BLOCKS TN_SC_C4_ONE_BLOCKS
#else
#define TN_SC_C4_BLOCKS TN_SC_C4_PARTS
#endif
#define TN_SC_C4_ASM(BODY, I)                                                                   \
    __asm__ volatile(BODY                                                                       \
                     : [x] "+&r"(x), [wp] "+&r"(w), [xa] "=&r"(xa), [xb] "=&r"(xb),             \
                       [u] "=&r"(u), [v] "=&r"(t), [a0] "=&r"(a0), [a1] "=&r"(a1),              \
                       [a2] "=&r"(a2), [a3] "=&r"(a3), [b0] "=&r"(b0), [b1] "=&r"(b1),          \
                       [b2] "=&r"(b2), [b3] "=&r"(b3)                                           \
                     : I : "cc", "memory")
#define TN_SC_C4_F1 TN_SC_LD1 TN_SC_C4G("u", TN_SC_ACCF)
#define TN_SC_C4_F2(LD2) LD2 TN_SC_C4G("u", TN_SC_ACCF) TN_SC_C4("v")
#define TN_SC_C4_P2(LD2) LD2 TN_SC_C4("u") TN_SC_C4("v")
#define TN_SC_C4_P4(LD2) TN_SC_C4_P2(LD2) TN_SC_C4_P2(LD2)
#define TN_SC_C4_P8(LD2) TN_SC_C4_P4(LD2) TN_SC_C4_P4(LD2)
/* the rest's last part (rest: the lane pairs after the first one or two): 0 none (rest < 8),
 * 1 eight straight (rest < 16), 2 eight per loop (BIG 0: unaligned weights, a fallback not
 * worth the flash of sixteen), 3 sixteen per loop entered at its second half (rest % 16 ==
 * 8), 4 sixteen per loop */
#define TN_SC_C4_TAILK(BIG)                                                                     \
    (rest < 8u ? 0u : rest < 16u ? 1u : !(BIG) ? 2u : rest & 8u ? 3u : 4u)
#define TN_SC_C4_L8(LD2)                                                                        \
    "1:\n\t" TN_SC_C4_P8(LD2) "ldr %[u], %[end]\n\tcmp %[x], %[u]\n\tbne 1b\n\t"
/* sixteen lane pairs per loop (the end read into u once per sixteen: 3 instructions per 200),
 * ENTRY "b 2f" for a first pass of eight (rest % 16 == 8) */
#define TN_SC_C4_L16(LD2, ENTRY)                                                                \
    ENTRY "1:\n\t" TN_SC_C4_P8(LD2) "2:\n\t" TN_SC_C4_P8(LD2)                                   \
    "ldr %[u], %[end]\n\tcmp %[x], %[u]\n\tbne 1b\n\t"
#define TN_SC_C4_END [end] "m"(end)
/* HEAD (the first one or two lane pairs, then two, four), then eight straight, or from sixteen
 * on TN_SC_C4_L16 */
#define TN_SC_C4_ONE_TAIL(HEAD, LD2, BIG)                                                       \
    do {                                                                                        \
        switch (TN_SC_C4_TAILK(BIG)) {                                                          \
        case 0u: TN_SC_C4_ASM(HEAD, ); break;                                                   \
        case 1u: TN_SC_C4_ASM(HEAD TN_SC_C4_P8(LD2), ); break;                                  \
        case 2u: TN_SC_C4_ASM(HEAD TN_SC_C4_L8(LD2), TN_SC_C4_END); break;                      \
        case 3u: TN_SC_C4_ASM(HEAD TN_SC_C4_L16(LD2, "b 2f\n\t"), TN_SC_C4_END); break;         \
        default: TN_SC_C4_ASM(HEAD TN_SC_C4_L16(LD2, ""), TN_SC_C4_END); break;                 \
        }                                                                                       \
    } while (0)
#define TN_SC_C4_ONE_BLOCKS(LD2, BIG)                                                          \
    do {                                                                                        \
        const uint32_t rest = NU & 1u ? NU - 1u : NU - 2u;                                      \
        switch ((NU & 1u) | (rest & 6u)) {                                                      \
        case 0u: TN_SC_C4_ONE_TAIL(TN_SC_C4_F2(LD2), LD2, BIG); break;                          \
        case 1u: TN_SC_C4_ONE_TAIL(TN_SC_C4_F1, LD2, BIG); break;                               \
        case 2u: TN_SC_C4_ONE_TAIL(TN_SC_C4_F2(LD2) TN_SC_C4_P2(LD2), LD2, BIG); break;         \
        case 3u: TN_SC_C4_ONE_TAIL(TN_SC_C4_F1 TN_SC_C4_P2(LD2), LD2, BIG); break;              \
        case 4u: TN_SC_C4_ONE_TAIL(TN_SC_C4_F2(LD2) TN_SC_C4_P4(LD2), LD2, BIG); break;         \
        case 5u: TN_SC_C4_ONE_TAIL(TN_SC_C4_F1 TN_SC_C4_P4(LD2), LD2, BIG); break;              \
        case 6u:                                                                                \
            TN_SC_C4_ONE_TAIL(TN_SC_C4_F2(LD2) TN_SC_C4_P2(LD2) TN_SC_C4_P4(LD2), LD2, BIG);    \
            break;                                                                              \
        default:                                                                                \
            TN_SC_C4_ONE_TAIL(TN_SC_C4_F1 TN_SC_C4_P2(LD2) TN_SC_C4_P4(LD2), LD2, BIG);         \
            break;                                                                              \
        }                                                                                       \
    } while (0)
#endif

/* The sums of one block of four rows (weights at w) at both pixels of the interleaved lanes
 * buf over KP lanes: acc[r] = sum_k w_r[k] x'_k at pixel 0, acc[4 + r] at pixel 1 (modulo
 * 2^32, row 3 with RAW = 2 as A_3' = sum (w_3 - 8) x'); returns w past the block. ALW: w is
 * word-aligned (LDRD of two weight words with RAW = 2; else two LDR). */
TN_INLINE const uint8_t *tn_sc_block(const uint8_t *w, const uint32_t *buf, uint32_t KP,
                                     uint32_t WB, uint32_t RAW, uint32_t ALW, uint32_t CUMOUT,
                                     int32_t *acc)
{
    /* units: lane pairs (4-bit weights) or two of them (2-bit), one weight word each */
    const uint32_t NU = WB == 4u ? KP / 2u : KP / 4u;
    /* RAW 2: the cumulative sums S_r of rows 0..r (TN_SC_C4) */
    const uint32_t CUM = WB == 4u && RAW == 2u;
    uint32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
#if TN_M7_ASM
    const uint32_t *x = buf, *end = buf + KP; /* KP / 2 words per pixel */
    uint32_t xa, xb, u, t;
    if (WB == 2u && RAW == 1u)
        TN_SC_PK_BLOCKS;
    else if (WB == 2u)
        TN_SC_G2_BLOCKS;
    else if (CUM && ALW)
        TN_SC_C4_BLOCKS(TN_SC_LD2A, 1u);
    else if (CUM)
        TN_SC_C4_BLOCKS(TN_SC_LD2U, 0u);
#if TN_SC_LEAN13
    else if (RAW == 1u) {
        TN_SC_LEAN_BLOCKS(TN_SC_G4R1LG);
        a2 -= a1; a1 -= a0; b2 -= b1; b1 -= b0; /* 256 A_2, 16 A_1 from the cumulative sums */
    } else
        TN_SC_LEAN_BLOCKS(TN_SC_G4R0LG);
#else
    else if (RAW == 1u)
        TN_SC_BLOCKS(TN_SC_G4R1);
    else
        TN_SC_BLOCKS(TN_SC_G4R0);
#endif
#else
    if (WB == 2u && RAW == 1u) { /* PK: rows 0-1 and 2-3 packed, TN_SC_PK_BLOCKS' sums */
        const uint32_t m = 0x00030003u, m2 = 0x000C000Cu;
        for (uint32_t g = 0; g < NU; g++, w += 4) {
            const uint32_t v = tn_ld32(w);
            for (uint32_t h = 0; h < 4u; h++) { /* pair q rows 0-1, 2-3, pair q + 1's */
                const uint32_t *xg = buf + 2u * (2u * g + h / 2u);
                const uint32_t s = v >> (4u * h), t = (s & m) | ((s & m2) << 11);
                if (h % 2u == 0u) {
                    a0 = (uint32_t)tn_smlad(t, xg[0], (int32_t)a0);
                    b0 = (uint32_t)tn_smlad(t, xg[1], (int32_t)b0);
                } else {
                    a1 = (uint32_t)tn_smlad(t, xg[0], (int32_t)a1);
                    b1 = (uint32_t)tn_smlad(t, xg[1], (int32_t)b1);
                }
            }
        }
    } else { /* the same masks and multiply-accumulates, modulo 2^32 */
        uint32_t a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
        const uint32_t halves = WB == 2u ? 2u : 1u;
        for (uint32_t g = 0; g < NU; g++, w += 4) {
            const uint32_t u = tn_ld32(w);
            for (uint32_t h = 0; h < halves; h++) {
                const uint32_t *xg = buf + 2u * (halves * g + h);
                const uint32_t v = WB == 4u ? u : h ? tn_uxtb16_ror8(u) : tn_uxtb16(u);
                for (uint32_t r = 0; r < 4u; r++) {
                    static const uint32_t cum[4] = {0x000F000Fu, 0x00FF00FFu, 0x0FFF0FFFu,
                                                    0xFFFFFFFFu};
                    uint32_t m;
                    if (WB == 2u) m = r == 3u ? v : v & (0x00030003u << (2u * r));
                    else if (CUM) m = v & cum[r];
                    else if (r == 0u || (r < 3u && RAW >= 1u)) m = v & (0x000F000Fu << (4u * r));
                    else m = (v >> (4u * r)) & 0x000F000Fu;
                    a[r] = (uint32_t)tn_smlad(m, xg[0], (int32_t)a[r]);
                    b[r] = (uint32_t)tn_smlad(m, xg[1], (int32_t)b[r]);
                }
            }
        }
        a0 = a[0]; a1 = a[1]; a2 = a[2]; a3 = a[3];
        b0 = b[0]; b1 = b[1]; b2 = b[2]; b3 = b[3];
    }
#endif
    (void)ALW;
    if (WB == 2u && RAW == 1u) { /* PK: A_a = P & 0x1FFF, A_b = P >> 13, whatever CUMOUT */
        acc[0] = (int32_t)(a0 & 0x1FFFu); acc[1] = (int32_t)(a0 >> 13);
        acc[2] = (int32_t)(a1 & 0x1FFFu); acc[3] = (int32_t)(a1 >> 13);
        acc[4] = (int32_t)(b0 & 0x1FFFu); acc[5] = (int32_t)(b0 >> 13);
        acc[6] = (int32_t)(b1 & 0x1FFFu); acc[7] = (int32_t)(b1 >> 13);
        return w;
    }
    if ((CUM || WB == 2u) && CUMOUT) { /* the scaled sums themselves (tn_sc_epi) */
        acc[0] = (int32_t)a0; acc[1] = (int32_t)a1; acc[2] = (int32_t)a2; acc[3] = (int32_t)a3;
        acc[4] = (int32_t)b0; acc[5] = (int32_t)b1; acc[6] = (int32_t)b2; acc[7] = (int32_t)b3;
        return w;
    }
    /* back to unscaled sums: the shifts are exact (the bounds above) */
    if (CUM) { /* S_r - S_{r-1} = 16^r A_r exactly, within int32 (kernels_m7.subconv_raw) */
        acc[0] = (int32_t)a0; acc[1] = (int32_t)(a1 - a0) >> 4;
        acc[2] = (int32_t)(a2 - a1) >> 8; acc[3] = (int32_t)(a3 - a2) >> 12;
        acc[4] = (int32_t)b0; acc[5] = (int32_t)(b1 - b0) >> 4;
        acc[6] = (int32_t)(b2 - b1) >> 8; acc[7] = (int32_t)(b3 - b2) >> 12;
        return w;
    }
    {
        const uint32_t sh1 = WB == 2u ? 2u : RAW >= 1u ? 4u : 0u;
        const uint32_t sh2 = WB == 2u ? 4u : RAW >= 1u ? 8u : 0u;
        acc[0] = (int32_t)a0; acc[1] = (int32_t)a1 >> sh1; acc[2] = (int32_t)a2 >> sh2;
        acc[4] = (int32_t)b0; acc[5] = (int32_t)b1 >> sh1; acc[6] = (int32_t)b2 >> sh2;
        if (WB == 2u) { /* row 3 unmasked: the others taken off */
            const uint32_t sh3 = 6u;
            acc[3] = (int32_t)(a3 - a0 - a1 - a2) >> sh3;
            acc[7] = (int32_t)(b3 - b0 - b1 - b2) >> sh3;
        } else {
            acc[3] = (int32_t)a3;
            acc[7] = (int32_t)b3;
        }
    }
    return w;
}

#if TN_M7_ASM
/* tn_sc_block1's lane pair: TN_SC_C4G at pixel 0 alone (its lanes 8 bytes apart) */
#define TN_SC_ACC1(T, R) "smlad %[a" #R "], %[" T "], %[xa], %[a" #R "]\n\t"
#define TN_SC_ACC1F(T, R) "smuad %[a" #R "], %[" T "], %[xa]\n\t"
#define TN_SC_C41G(T, ACC)                                                                      \
    "ldr %[xa], [%[x]], #8\n\t" ACC(T, 3)                                                       \
    "bic %[" T "], %[" T "], #0xF000F000\n\t" ACC(T, 2)                                          \
    "and %[" T "], %[" T "], #0x00FF00FF\n\t" ACC(T, 1)                                          \
    "and %[" T "], %[" T "], #0x000F000F\n\t" ACC(T, 0)
#define TN_SC_C41(T) TN_SC_C41G(T, TN_SC_ACC1)
#define TN_SC_C41P2(LD2) LD2 TN_SC_C41("u") TN_SC_C41("v")
#define TN_SC_B1_REGS [x] "+&r"(x), [wp] "+&r"(w), [xa] "=&r"(xa), [u] "=&r"(u), [v] "=&r"(t)
#define TN_SC_B1_OPERANDS                                                                       \
    : TN_SC_B1_REGS, [a0] "+&r"(a0), [a1] "+&r"(a1), [a2] "+&r"(a2), [a3] "+&r"(a3)             \
    : [end] "r"(end)                                                                            \
    : "cc", "memory"
#define TN_SC_B1_PARTS(LD2)                                                                     \
    do {                                                                                        \
        const uint32_t rest = NU - 1u;                                                          \
        __asm__ volatile(TN_SC_LD1 TN_SC_C41G("u", TN_SC_ACC1F)                                 \
                         : TN_SC_B1_REGS, [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2),       \
                           [a3] "=&r"(a3)                                                       \
                         :                                                                      \
                         : "cc", "memory");                                                     \
        if (rest & 1u) __asm__ volatile(TN_SC_LD1 TN_SC_C41("u") TN_SC_B1_OPERANDS);            \
        if (rest & 2u) __asm__ volatile(TN_SC_C41P2(LD2) TN_SC_B1_OPERANDS);                    \
        if (rest & 4u) __asm__ volatile(TN_SC_C41P2(LD2) TN_SC_C41P2(LD2) TN_SC_B1_OPERANDS);   \
        if (rest >= 8u)                                                                         \
            __asm__ volatile("1:\n\t" TN_SC_C41P2(LD2) TN_SC_C41P2(LD2) TN_SC_C41P2(LD2)         \
                             TN_SC_C41P2(LD2) "cmp %[x], %[end]\n\tbne 1b\n\t"                  \
                             TN_SC_B1_OPERANDS);                                                \
    } while (0)
/* tn_sc_block1_2's word (two lane pairs of 2-bit weights, TN_SC_G2's masks) at pixel 0 alone:
 * one LDR of weights, two LDR of lanes (8 bytes apart), eight masks, eight SMLAD: 19
 * instructions per 16 MACs where the pair kernel on a duplicate pixel took 27 */
#define TN_SC_G21G(ACC)                                                                         \
    "ldr %[u], [%[wp]], #4\n\tldr %[xa], [%[x]], #8\n\t"                                          \
    "and %[v], %[u], #0x00030003\n\t" ACC("v", 0)                                               \
    "and %[v], %[u], #0x000C000C\n\t" ACC("v", 1)                                               \
    "and %[v], %[u], #0x00300030\n\t" ACC("v", 2)                                               \
    "uxtb16 %[v], %[u]\n\t" ACC("v", 3)                                                         \
    "ldr %[xa], [%[x]], #8\n\tuxtb16 %[u], %[u], ror #8\n\t"                                     \
    "and %[v], %[u], #0x00030003\n\t" TN_SC_ACC1("v", 0)                                        \
    "and %[v], %[u], #0x000C000C\n\t" TN_SC_ACC1("v", 1)                                        \
    "and %[v], %[u], #0x00300030\n\t" TN_SC_ACC1("v", 2) TN_SC_ACC1("u", 3)
#define TN_SC_G21 TN_SC_G21G(TN_SC_ACC1)
/* NU >= 1 words: the first starting the sums (SMUAD), NU - 1 odd one straight, then two per
 * loop (the end in a register: ten operands) */
#define TN_SC_B1_G2                                                                             \
    do {                                                                                        \
        const uint32_t rest = NU - 1u;                                                          \
        __asm__ volatile(TN_SC_G21G(TN_SC_ACC1F)                                                \
                         : TN_SC_B1_REGS, [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2),       \
                           [a3] "=&r"(a3)                                                       \
                         :                                                                      \
                         : "cc", "memory");                                                     \
        if (rest & 1u) __asm__ volatile(TN_SC_G21 TN_SC_B1_OPERANDS);                            \
        if (rest >= 2u)                                                                         \
            __asm__ volatile("1:\n\t" TN_SC_G21 TN_SC_G21 "cmp %[x], %[end]\n\tbne 1b\n\t"        \
                             TN_SC_B1_OPERANDS);                                                \
    } while (0)
#endif

/* tn_sc_block at pixel 0 alone (a lone last pixel: the pair kernel ran on a duplicate of it,
 * twelve and a half instructions per lane pair where its four rows alone take eight and a
 * half), 4-bit weights at RAW 2 only: acc[0..3] as tn_sc_block's, acc[4..7] a copy of them
 * (so its callers' outputs of "pixel 1" repeat pixel 0's); pixel 1's lanes (buf + 1) are never
 * read. VWW's w4a4 pointwise conv2d_12 / conv2d_13 (3 x 3 pixels) run ~5 % fewer. */
TN_INLINE const uint8_t *tn_sc_block1(const uint8_t *w, const uint32_t *buf, uint32_t KP,
                                      uint32_t ALW, uint32_t CUMOUT, int32_t *acc)
{
    const uint32_t NU = KP / 2u; /* lane pairs, one weight word each */
    uint32_t a0, a1, a2, a3;
#if TN_M7_ASM
    const uint32_t *x = buf, *end = buf + KP; /* pixel 0's KP / 2 words, two apart */
    uint32_t xa, u, t;
    if (ALW) TN_SC_B1_PARTS(TN_SC_LD2A);
    else TN_SC_B1_PARTS(TN_SC_LD2U);
#else
    { /* tn_sc_block's masks (TN_SC_C4) at pixel 0, modulo 2^32 */
        static const uint32_t cum[4] = {0x000F000Fu, 0x00FF00FFu, 0x0FFF0FFFu, 0xFFFFFFFFu};
        uint32_t a[4] = {0, 0, 0, 0};
        (void)ALW;
        for (uint32_t g = 0; g < NU; g++, w += 4) {
            const uint32_t v = tn_ld32(w);
            for (uint32_t r = 0; r < 4u; r++)
                a[r] = (uint32_t)tn_smlad(v & cum[r], buf[2u * g], (int32_t)a[r]);
        }
        a0 = a[0]; a1 = a[1]; a2 = a[2]; a3 = a[3];
    }
#endif
    if (CUMOUT) { /* the scaled sums themselves (tn_sc_epi) */
        acc[0] = (int32_t)a0; acc[1] = (int32_t)a1; acc[2] = (int32_t)a2; acc[3] = (int32_t)a3;
    } else { /* tn_sc_block's S_r - S_{r-1} = 16^r A_r */
        acc[0] = (int32_t)a0; acc[1] = (int32_t)(a1 - a0) >> 4;
        acc[2] = (int32_t)(a2 - a1) >> 8; acc[3] = (int32_t)(a3 - a2) >> 12;
    }
    acc[4] = acc[0]; acc[5] = acc[1]; acc[6] = acc[2]; acc[7] = acc[3];
    return w;
}

/* tn_sc_block at pixel 0 alone for 2-bit weights (TN_SC_G2's masks and sums, not PK: RAW 0), as
 * tn_sc_block1 for 4-bit ones: acc[0..3] tn_sc_block's (CUMOUT: its scaled sums, row r by
 * 4^r, row 3 unmasked), acc[4..7] a copy; pixel 1's lanes never read. KWS's first layer at w2a2
 * (25 x 5 pixels: a lone last one) ran its pair kernel on a duplicate of it. */
TN_INLINE const uint8_t *tn_sc_block1_2(const uint8_t *w, const uint32_t *buf, uint32_t KP,
                                        uint32_t CUMOUT, int32_t *acc)
{
    const uint32_t NU = KP / 4u; /* words: two lane pairs each */
    uint32_t a0, a1, a2, a3;
#if TN_M7_ASM
    const uint32_t *x = buf, *end = buf + KP; /* pixel 0's KP / 2 words, two apart */
    uint32_t xa, u, t;
    TN_SC_B1_G2;
#else
    { /* tn_sc_block's 2-bit masks at pixel 0, modulo 2^32 */
        uint32_t a[4] = {0, 0, 0, 0};
        for (uint32_t g = 0; g < NU; g++, w += 4) {
            const uint32_t wd = tn_ld32(w);
            for (uint32_t h = 0; h < 2u; h++) {
                const uint32_t v = h ? tn_uxtb16_ror8(wd) : tn_uxtb16(wd);
                for (uint32_t r = 0; r < 4u; r++)
                    a[r] = (uint32_t)tn_smlad(r == 3u ? v : v & (0x00030003u << (2u * r)),
                                              buf[2u * (2u * g + h)], (int32_t)a[r]);
            }
        }
        a0 = a[0]; a1 = a[1]; a2 = a[2]; a3 = a[3];
    }
#endif
    if (CUMOUT) { /* the scaled sums themselves (tn_sc_epi) */
        acc[0] = (int32_t)a0; acc[1] = (int32_t)a1; acc[2] = (int32_t)a2; acc[3] = (int32_t)a3;
    } else { /* tn_sc_block's shifts back, row 3 the others taken off */
        acc[0] = (int32_t)a0; acc[1] = (int32_t)a1 >> 2; acc[2] = (int32_t)a2 >> 4;
        acc[3] = (int32_t)(a3 - a0 - a1 - a2) >> 6;
    }
    acc[4] = acc[0]; acc[5] = acc[1]; acc[6] = acc[2]; acc[7] = acc[3];
    return w;
}

/* The fused residual ADD of outputs idx .. idx + n - 1 through its table (kernels_m7
 * .subconv_add_table: every pair of an own code, OB bits, and another addend's code, OBO
 * bits, to the ADD's code, exact by construction): out[e] = tab[(v[e] << OBO) | other[e]],
 * element e of other read before element e of out is written (out may lie over other). */
TN_INLINE void tn_sc_addtab(const uint8_t *tab, const uint8_t *other, uint8_t *TN_RESTRICT out,
                            const int32_t *v, uint32_t idx, uint32_t n, uint32_t OB,
                            uint32_t OBO)
{
    const uint32_t mo = (1u << OB) - 1u, mw = (1u << OBO) - 1u;
    if (OB == OBO && OB < 8u && (idx * OB) % 8u == 0u && (n * OB) % 8u == 0u) {
        const uint32_t per = 8u / OB; /* whole bytes: one read and one write per byte */
        const uint8_t *src = other + idx * OB / 8u;
        uint8_t *dst = out + idx * OB / 8u;
        for (uint32_t j = 0; j < n / per; j++) {
            const uint32_t ob = src[j];
            uint32_t byte = 0;
            TN_UNROLL
            for (uint32_t e = 0; e < per; e++)
                byte |= (uint32_t)tab[(((uint32_t)v[j * per + e] & mo) << OBO)
                                      | ((ob >> (e * OB)) & mw)] << (e * OB);
            dst[j] = (uint8_t)byte;
        }
        return;
    }
    for (uint32_t e = 0; e < n; e++)
        tn_set(out, idx + e, OB,
               tab[(((uint32_t)v[e] & mo) << OBO) | ((uint32_t)tn_get(other, idx + e, OBO, 0u) & mw)]);
}

/* The fused residual ADD of outputs idx .. idx + n - 1 through its table (tn_sc_addtab) where
 * both addends are OB-bit codes (OB = 2 or 4) and the own codes are packed at own (tn_sc_epi,
 * MODE 2): byte by byte, out = tab[(own field << OB) | other field] per field, other's byte
 * read before out's is written. idx, n: multiples of 8 / OB. */
TN_INLINE void tn_sc_addtab8(const uint8_t *tab, const uint8_t *other, uint8_t *TN_RESTRICT out,
                             const uint8_t *own, uint32_t idx, uint32_t n, uint32_t OB)
{
    const uint32_t m = (1u << OB) - 1u, per = 8u / OB;
    const uint8_t *src = other + idx * OB / 8u;
    uint8_t *dst = out + idx * OB / 8u;
    for (uint32_t j = 0; j < n / per; j++) {
        const uint32_t a = own[j], b = src[j];
        uint32_t byte = 0;
        TN_UNROLL
        for (uint32_t e = 0; e < per; e++)
            byte |= (uint32_t)tab[(((a >> (e * OB)) & m) << OB) | ((b >> (e * OB)) & m)]
                    << (e * OB);
        dst[j] = (uint8_t)byte;
    }
}

/* v saturated to the OB-bit signed (OS) or unsigned range: SSAT / USAT #OB (OB a constant). */
#if defined(__ARM_FEATURE_DSP)
#define tn_sc_sat(v, OB, OS)                                                                   \
    ((OB) == 8u ? tn_sat8((v), (OS))                                                           \
     : (OB) == 4u ? ((OS) ? __ssat((v), 4) : (int32_t)__usat((v), 4))                          \
                  : ((OS) ? __ssat((v), 2) : (int32_t)__usat((v), 2)))
#else
static inline int32_t tn_sc_sat(int32_t v, uint32_t OB, uint32_t OS)
{
    const int32_t lo = OS ? -(1 << (OB - 1u)) : 0, hi = OS ? (1 << (OB - 1u)) - 1 : (1 << OB) - 1;
    return v < lo ? lo : (v > hi ? hi : v);
}
#endif

/* The floor requantization of an OB-bit output in three instructions (1: signed codes, 2:
 * unsigned; 0: no): a layer multiplier M0, shift N0 (NM == 1), floor rounding, N0 <= -1, the
 * clamp the whole OB-bit range. Then tn_m7_out's floor(floor(acc m0 / 2^32) / 2^K) + ZP,
 * K = -(N0 + 1), clamped, is SMMLA(acc, M0, ZP 2^K) >> K saturated to OB bits: adding ZP 2^K
 * to the high word is adding ZP 2^(K + 32) to the product (a floor division by a power of two
 * keeps whole multiples), and |floor(acc m0 / 2^32)| <= 2^30, |ZP 2^K| <= 2^29 keep the sum
 * in int32. */
TN_INLINE uint32_t tn_sc_fq(uint32_t REQ, uint32_t NM, uint32_t ROUND, uint32_t OB, TN_RQ_ARGS)
{
    const int32_t half = OB <= 8u ? 1 << (OB - 1u) : 0;
    (void)M0;
    if (!REQ || FAST < 2u || ROUND != TN_FLOOR || NM != 1u || N0 > -1 || N0 < -31
        || (ZP != 0 && (N0 < -21 || ZP < -512 || ZP > 512)) || (OB != 2u && OB != 4u && OB != 8u))
        return 0u;
    if (LOZ + ZP == -half && HIZ + ZP == half - 1) return 1u;
    if (LOZ + ZP == 0 && HIZ + ZP == 2 * half - 1) return 2u;
    return 0u;
}

/* The per-channel floor requantization of an OB-bit output without run-time branches (1: the
 * clamp is the whole signed OB-bit range, one SSAT; 2: unsigned, one USAT; 3: another clamp;
 * 0: no): one multiplier per channel (NM > 1), floor rounding, FAST >= 1 (n0 in [-31, 30]).
 * tn_m7_out's FAST 1 form (some n0 >= 0: ICN multipliers of a trained model, e.g. VWW's
 * conv2d_5 at w4a4) branches on each channel's shift: about eleven instructions per output more
 * than FAST 2 (tn_sc_code). */
TN_INLINE uint32_t tn_sc_pcq(uint32_t REQ, uint32_t NM, uint32_t ROUND, uint32_t OB, TN_RQ_ARGS)
{
    const int32_t half = OB <= 8u ? 1 << (OB - 1u) : 0;
    (void)M0; (void)N0;
    if (!REQ || !FAST || ROUND != TN_FLOOR || NM == 1u || (OB != 2u && OB != 4u && OB != 8u)
        || ZP < -(1 << 24) || ZP > (1 << 24))
        return 0u;
    if (LOZ + ZP == -half && HIZ + ZP == half - 1) return 1u;
    if (LOZ + ZP == 0 && HIZ + ZP == 2 * half - 1) return 2u;
    return 3u;
}

/* v clamped to [0, 31] (a shift count; USAT #5 on the Cortex-M7) */
TN_INLINE uint32_t tn_sc_u5(int32_t v)
{
#if defined(__ARM_FEATURE_DSP)
    return __usat(v, 5);
#else
    return v < 0 ? 0u : v > 31 ? 31u : (uint32_t)v;
#endif
}

/* Output code of channel c from its sum acc (of w x', w the stored codes), weight zero point z,
 * sum x' sx: tn_m7_req's code (tn_sc_fq's form where it applies; tn_sc_pcq's per channel). */
TN_INLINE int32_t tn_sc_code(const tn_layer_t *l, uint32_t b, int32_t acc, int32_t z, int32_t sx,
                             uint32_t c, const int32_t *m0p, const int8_t *n0p, uint32_t REQ,
                             uint32_t NM, uint32_t ROUND, uint32_t OB, TN_RQ_ARGS)
{
    const uint32_t phi = b + (uint32_t)acc - (uint32_t)z * (uint32_t)sx;
    const uint32_t FQ = tn_sc_fq(REQ, NM, ROUND, OB, TN_RQ);
    const uint32_t PQ = tn_sc_pcq(REQ, NM, ROUND, OB, TN_RQ);
    if (FQ) {
        const uint32_t k = (uint32_t)(-(N0 + 1));
        return tn_sc_sat(tn_smmla((int32_t)phi, M0, (int32_t)((uint32_t)ZP << k)) >> k, OB,
                         FQ == 1u);
    }
    if (PQ) {
        /* tn_m7_requant's floor: t = phi << max(n0 + 1, 0) (modulo 2^32), the high word of
         * t m0, >> max(-(n0 + 1), 0); both counts within [0, 31] (n0 in [-31, 30]: FAST), so
         * two USAT #5 replace the branches (FAST 2: every n0 < 0, no left shift, ~n0 >= 0).
         * |h| <= 2^30 and |ZP| <= 2^24 keep h + ZP in int32 */
        const int32_t n = (int32_t)n0p[c], m = m0p[c];
        const int32_t h = FAST >= 2u ? tn_smmul((int32_t)phi, m) >> (uint32_t)~n
                                     : tn_smmul((int32_t)(phi << tn_sc_u5(n + 1)), m)
                                           >> tn_sc_u5(~n);
        if (PQ < 3u) return tn_sc_sat(h + ZP, OB, PQ == 1u);
        return (h < LOZ ? LOZ : h > HIZ ? HIZ : h) + ZP;
    }
    return tn_m7_req(l, phi, c, NM == 1u ? 0 : m0p[c], NM == 1u ? 0 : (int32_t)n0p[c], REQ, NM,
                     ROUND, TN_RQ);
}

/* Outputs c .. c + 3 of one pixel (sums acc[0..3], sum x' sx) as OB = 4 or 2-bit codes at byte
 * `byte` of out: requantized and clamped as tn_m7_cv_chan (an 8-bit clamp never applies to
 * them; tn_sc_code), packed in a register, written by one STRH / STRB. */
TN_INLINE void tn_sc_put4(const tn_layer_t *l, const int32_t *bias, const uint8_t *wzp,
                          const int32_t *m0p, const int8_t *n0p, uint8_t *TN_RESTRICT out,
                          uint32_t byte, uint32_t c, const int32_t *acc, int32_t sx,
                          uint32_t NWZP, int32_t ZW, uint32_t REQ, uint32_t NM, uint32_t ROUND,
                          uint32_t OB, TN_RQ_ARGS)
{
    /* unsigned saturated codes need no mask */
    const uint32_t mask = tn_sc_fq(REQ, NM, ROUND, OB, TN_RQ) == 2u
                          || tn_sc_pcq(REQ, NM, ROUND, OB, TN_RQ) == 2u ? 0xFFFFFFFFu
                                                                         : (1u << OB) - 1u;
    uint32_t packed = 0;
    TN_UNROLL
    for (uint32_t r = 0; r < 4u; r++) {
        const int32_t z = NWZP == 1u ? ZW : (int32_t)wzp[c + r];
        const int32_t y = tn_sc_code(l, (uint32_t)bias[c + r], acc[r], z, sx, c + r, m0p, n0p,
                                     REQ, NM, ROUND, OB, TN_RQ);
        packed |= ((uint32_t)y & mask) << (r * OB);
    }
    if (OB == 4u) {
        const uint16_t h = (uint16_t)packed;
        TN_MEMCPY(out + byte, &h, 2);
    } else {
        out[byte] = (uint8_t)packed;
    }
}

/* Does tn_sc_epi take a block's outputs? 4-bit weights at RAW 2 (the cumulative sums) or 2-bit
 * weights (their scaled sums), outputs of 8, 4 or 2 bits stored (MODE 0) or, 4 or 2 bits (MODE
 * 2, TAB: a fused ADD by its table, both addends OB bits) kept packed for the table (8-bit
 * outputs: tn_m7_subconv_epi only; kernels_m7.sub.sub_epi keeps tn_m7_sub_epi off them, so
 * its test here never sees one), CO % 4 == 0, one weight
 * zero point, and tn_sc_pcq's per channel floor requantization (FAST >= 1: n0 in [-31, 30]),
 * |ZP| <= 255 (an immediate) and a clamp of the whole signed (SSAT) or unsigned (USAT) range. */
TN_INLINE uint32_t tn_sc_epi_fits(uint32_t WB, uint32_t RAW, uint32_t MODE, uint32_t TAB,
                                  uint32_t CO, uint32_t NWZP, uint32_t REQ, uint32_t NM,
                                  uint32_t ROUND, uint32_t OB, TN_RQ_ARGS)
{
    const uint32_t PQ = tn_sc_pcq(REQ, NM, ROUND, OB, TN_RQ);
    return TN_M7_ASM && ((WB == 4u && RAW == 2u) || WB == 2u)
           && (MODE == 0u || (MODE == 2u && TAB))
           && (OB == 4u || OB == 2u || (OB == 8u && MODE == 0u)) && CO % 4u == 0u
           && NWZP == 1u && FAST >= 1u
           && ZP >= -255 && ZP <= 255 && CO * OB / 8u <= 4095u && (PQ == 1u || PQ == 2u);
}

/* tn_sc_epi's saturation: 1 SSAT, 0 USAT. An unsigned clamp [0, 2^OB - 1] of h + ZP with
 * ZP = 2^(OB-1) is SSAT(h) + 2^(OB-1), whose OB low bits are SSAT(h) ^ 2^(OB-1) (and a signed
 * one with ZP = -2^(OB-1) USAT(h) ^ 2^(OB-1)): the other saturation and one EOR of the packed
 * codes (FLIP) instead of an add of ZP per output. */
TN_INLINE uint32_t tn_sc_epi_flip(uint32_t PQ, uint32_t OB, int32_t ZP)
{
    const int32_t half = 1 << (OB - 1u);
    return (PQ == 2u && ZP == half) || (PQ == 1u && ZP == -half);
}

#if TN_M7_ASM
/* tn_sc_epi's assembly. Its state lives in memory (st, nine words on the stack, their address
 * in a register: the block's sums hold eight of the fourteen registers, and GCC kept the
 * pointers in registers only to spill them around the block's loop): st[0..2] the bias, m0 and
 * n0 pointers at the block's first channel, st[3] the output pointer of pixel 0 (pixel 1's OFF
 * bytes after it), st[4], st[5] ka = -z_w s0, kb = -z_w s1 (rows 0-2), st[6], st[7] (K3: row
 * 3, whose weights held w_3 - 8) (8 - z_w) s0, (8 - z_w) s1, st[8] (FAST 1) the block's right
 * shifts; the pointers advanced past the block. The differences S_r - S_(r-1) = 16^r A_r
 * (exact: kernels_m7.subconv_raw) are shifted back inside the add of the pixel's k (with z_w = 8
 * row 3 has none: its shift goes into the bias's add), then per channel r its bias and m0 (one
 * LDR each for both pixels), SMMUL, ASR by ~n0 (u: the four channels' ~n0 bytes, one LDR and
 * MVN; ASR reads the low byte, LSR #8 moves to the next), + ZP (Z), SSAT / USAT (S) to W bits
 * and BFI of the code into a0 / b0 at bit P. */
#define TN_SC_EDIFF                                                                             \
    "sub %[a3], %[a3], %[a2]\n\tsub %[a2], %[a2], %[a1]\n\tsub %[a1], %[a1], %[a0]\n\t"          \
    "sub %[b3], %[b3], %[b2]\n\tsub %[b2], %[b2], %[b1]\n\tsub %[b1], %[b1], %[b0]\n\t"          \
    "ldr %[t], [%[st], #16]\n\tadd %[a0], %[a0], %[t]\n\t"                                      \
    "add %[a1], %[t], %[a1], asr #4\n\tadd %[a2], %[t], %[a2], asr #8\n\t"                       \
    "ldr %[t], [%[st], #20]\n\tadd %[b0], %[b0], %[t]\n\t"                                      \
    "add %[b1], %[t], %[b1], asr #4\n\tadd %[b2], %[t], %[b2], asr #8\n\t"
#define TN_SC_EK3                                                                               \
    "ldr %[t], [%[st], #24]\n\tadd %[a3], %[t], %[a3], asr #12\n\t"                            \
    "ldr %[t], [%[st], #28]\n\tadd %[b3], %[t], %[b3], asr #12\n\t"
/* 2-bit weights (tn_sc_block's TN_SC_G2 sums: row r scaled by 4^r, row 3 unmasked): A_3 =
 * (S_3 - S_0 - S_1 - S_2) / 64, the others shifted back inside the add of k, row 3's too */
#define TN_SC_EDIFF2                                                                            \
    "sub %[a3], %[a3], %[a0]\n\tsub %[a3], %[a3], %[a1]\n\tsub %[a3], %[a3], %[a2]\n\t"          \
    "sub %[b3], %[b3], %[b0]\n\tsub %[b3], %[b3], %[b1]\n\tsub %[b3], %[b3], %[b2]\n\t"          \
    "ldr %[t], [%[st], #16]\n\tadd %[a0], %[a0], %[t]\n\tadd %[a1], %[t], %[a1], asr #2\n\t"     \
    "add %[a2], %[t], %[a2], asr #4\n\tadd %[a3], %[t], %[a3], asr #6\n\t"                      \
    "ldr %[t], [%[st], #20]\n\tadd %[b0], %[b0], %[t]\n\tadd %[b1], %[t], %[b1], asr #2\n\t"     \
    "add %[b2], %[t], %[b2], asr #4\n\tadd %[b3], %[t], %[b3], asr #6\n\t"
/* PK (tn_sc_block's unscaled sums A_r): k added to each row */
#define TN_SC_EDIFF0                                                                            \
    "ldr %[t], [%[st], #16]\n\tadd %[a0], %[a0], %[t]\n\tadd %[a1], %[a1], %[t]\n\t"             \
    "add %[a2], %[a2], %[t]\n\tadd %[a3], %[a3], %[t]\n\t"                                       \
    "ldr %[t], [%[st], #20]\n\tadd %[b0], %[b0], %[t]\n\tadd %[b1], %[b1], %[t]\n\t"             \
    "add %[b2], %[b2], %[t]\n\tadd %[b3], %[b3], %[t]\n\t"
#define TN_SC_EB(R) "add %[a" #R "], %[a" #R "], %[t]\n\tadd %[b" #R "], %[b" #R "], %[t]\n\t"
#define TN_SC_EB3 "add %[a3], %[t], %[a3], asr #12\n\tadd %[b3], %[t], %[b3], asr #12\n\t"
#define TN_SC_EZ(R) "add %[a" #R "], %[a" #R "], %[zp]\n\tadd %[b" #R "], %[b" #R "], %[zp]\n\t"
/* F1 (FAST 1: some n0 >= 0): phi << L before the SMMUL, then ASR by S (L = max(n0 + 1, 0),
 * S = max(~n0, 0): tn_sc_code's two USAT #5), u the four channels' L bytes, their S bytes at
 * st[8] (one LDRB per channel); else ASR by u's low byte (~n0). */
#define TN_SC_EROW(R, B, Z, S, W, F1)                                                           \
    "ldr %[t], [%[pb]], #4\n\t" B                                                               \
    F1("lsl %[a" #R "], %[a" #R "], %[u]\n\tlsl %[b" #R "], %[b" #R "], %[u]\n\t", "")          \
    "ldr %[t], [%[pm]], #4\n\t"                                                                 \
    "smmul %[a" #R "], %[a" #R "], %[t]\n\tsmmul %[b" #R "], %[b" #R "], %[t]\n\t"              \
    F1("ldrb %[t], [%[st], #" #R " + 32]\n\tasr %[a" #R "], %[a" #R "], %[t]\n\t"               \
       "asr %[b" #R "], %[b" #R "], %[t]\n\t",                                                  \
       "asr %[a" #R "], %[a" #R "], %[u]\n\tasr %[b" #R "], %[b" #R "], %[u]\n\t") Z             \
    S " %[a" #R "], #" W ", %[a" #R "]\n\t" S " %[b" #R "], #" W ", %[b" #R "]\n\t"
#define TN_SC_EF1(A, B) A
#define TN_SC_EF2(A, B) B
#define TN_SC_EBFI(R, P, W)                                                                     \
    "bfi %[a0], %[a" #R "], #" P ", #" W "\n\tbfi %[b0], %[b" #R "], #" P ", #" W "\n\t"
/* the four channels' n0 bytes into u: ~n0 (FAST 2), or (FAST 1) L into u and S into st[8] by
 * SADD8 / SSUB8 (GE: the byte's result >= 0) and SEL against 0 */
#define TN_SC_EN2 "mvn %[u], %[u]\n\t"
#define TN_SC_EN1                                                                               \
    "mov %[pb], #0x01010101\n\tsadd8 %[pm], %[u], %[pb]\n\tmov %[t], #0\n\t"                  \
    "sel %[u], %[pm], %[t]\n\tssub8 %[pm], %[t], %[pm]\n\tsel %[pm], %[pm], %[t]\n\t"          \
    "str %[pm], [%[st], #32]\n\t"
/* D: the sums' differences and k (TN_SC_EDIFF with TN_SC_EK3 or "", TN_SC_EDIFF2); B3: row
 * 3's bias add (TN_SC_EB(3), or TN_SC_EB3 with its shift); Z: ZP added per output; X: FLIP's
 * EOR; S, W: saturation and output bits; P1-P3: rows 1-3's bit positions; ST, STEP: STRH /
 * STRB and the step to the block's next outputs; F1: FAST 1 */
#define TN_SC_EBODY(D, B3, Z, X, S, W, P1, P2, P3, ST, STEP, F1)                                 \
    D "ldr %[t], [%[st], #8]\n\tldr %[u], [%[t]], #4\n\tstr %[t], [%[st], #8]\n\t"             \
    F1(TN_SC_EN1, TN_SC_EN2) "ldrd %[pb], %[pm], [%[st]]\n\t"                                   \
    TN_SC_EROW(0, TN_SC_EB(0), Z(0), S, W, F1) "lsr %[u], %[u], #8\n\t"                         \
    TN_SC_EROW(1, TN_SC_EB(1), Z(1), S, W, F1) TN_SC_EBFI(1, P1, W) "lsr %[u], %[u], #8\n\t"    \
    TN_SC_EROW(2, TN_SC_EB(2), Z(2), S, W, F1) TN_SC_EBFI(2, P2, W) "lsr %[u], %[u], #8\n\t"    \
    TN_SC_EROW(3, B3, Z(3), S, W, F1) TN_SC_EBFI(3, P3, W) X                                    \
    "strd %[pb], %[pm], [%[st]]\n\tldr %[t], [%[st], #12]\n\t"                                  \
    ST " %[b0], [%[t], %[off]]\n\t" ST " %[a0], [%[t]], #" STEP "\n\tstr %[t], [%[st], #12]\n\t"
#define TN_SC_EASM(BODY)                                                                        \
    __asm__ volatile(BODY                                                                       \
                     : [a0] "+&r"(a0), [a1] "+&r"(a1), [a2] "+&r"(a2), [a3] "+&r"(a3),          \
                       [b0] "+&r"(b0), [b1] "+&r"(b1), [b2] "+&r"(b2), [b3] "+&r"(b3),          \
                       [pb] "=&r"(pb), [pm] "=&r"(pm), [t] "=&r"(t), [u] "=&r"(u)               \
                     : [st] "r"(st), [off] "n"(OFF), [zp] "n"(ZP)                               \
                     : "memory")
#define TN_SC_EZ0(R) ""
#define TN_SC_EX4 "eor %[a0], %[a0], #0x88888888\n\teor %[b0], %[b0], #0x88888888\n\t"
#define TN_SC_EX2 "eor %[a0], %[a0], #0xAAAAAAAA\n\teor %[b0], %[b0], #0xAAAAAAAA\n\t"
#define TN_SC_EX8 "eor %[a0], %[a0], #0x80808080\n\teor %[b0], %[b0], #0x80808080\n\t"
/* SGN: SSAT (else USAT); X: FLIP's EOR (tn_sc_epi_flip) or "". 8-bit codes: the four of a
 * pixel packed in a word, one STR (unaligned is fine on the Cortex-M7) */
#define TN_SC_EPICK(K3, B3, Z, X4, X2, X8, F1)                                                  \
    do {                                                                                        \
        if (OB == 8u && SGN)                                                                    \
            TN_SC_EASM(TN_SC_EBODY(K3, B3, Z, X8, "ssat", "8", "8", "16", "24", "str", "4",      \
                                   F1));                                                        \
        else if (OB == 8u)                                                                      \
            TN_SC_EASM(TN_SC_EBODY(K3, B3, Z, X8, "usat", "8", "8", "16", "24", "str", "4",      \
                                   F1));                                                        \
        else if (OB == 4u && SGN)                                                               \
            TN_SC_EASM(TN_SC_EBODY(K3, B3, Z, X4, "ssat", "4", "4", "8", "12", "strh", "2",      \
                                   F1));                                                        \
        else if (OB == 4u)                                                                      \
            TN_SC_EASM(TN_SC_EBODY(K3, B3, Z, X4, "usat", "4", "4", "8", "12", "strh", "2",      \
                                   F1));                                                        \
        else if (SGN)                                                                           \
            TN_SC_EASM(TN_SC_EBODY(K3, B3, Z, X2, "ssat", "2", "2", "4", "6", "strb", "1", F1)); \
        else                                                                                    \
            TN_SC_EASM(TN_SC_EBODY(K3, B3, Z, X2, "usat", "2", "2", "4", "6", "strb", "1", F1)); \
    } while (0)
/* ZP: added per output (Z), flipped (FL), or none */
#define TN_SC_EPICKZ(K3, B3, F1)                                                                \
    do {                                                                                        \
        if (FL) TN_SC_EPICK(K3, B3, TN_SC_EZ0, TN_SC_EX4, TN_SC_EX2, TN_SC_EX8, F1);            \
        else if (ZP) TN_SC_EPICK(K3, B3, TN_SC_EZ, "", "", "", F1);                             \
        else TN_SC_EPICK(K3, B3, TN_SC_EZ0, "", "", "", F1);                                    \
    } while (0)
#endif

/* The outputs of one block of four rows at both pixels (tn_sc_block's cumulative sums acc,
 * CUMOUT) where tn_sc_epi_fits: tn_sc_code's arithmetic, phi = b + A_r - z_w sum x' (modulo
 * 2^32), h = SMMUL(phi, m0) >> ~n0, + ZP, saturated to OB bits, the four codes of each pixel
 * packed and stored (one STRH or STRB each: pixel 0's at st[3], pixel 1's OFF bytes after).
 * st: the state words of the assembly above (K3: z_w != 8; WB2: 2-bit weights, 1 TN_SC_G2's
 * scaled sums, 2 PK's unscaled ones). About 9 instructions per output (tn_sc_put4's C: about
 * 14 with the block's sums reloaded around its registers). */
TN_INLINE void tn_sc_epi(const int32_t *acc, uint32_t *st, uint32_t WB2, uint32_t K3,
                         uint32_t SGN,
                         uint32_t FL, uint32_t F1, uint32_t OB, uint32_t OFF, int32_t ZP)
{
#if TN_M7_ASM
    uint32_t a0 = (uint32_t)acc[0], a1 = (uint32_t)acc[1], a2 = (uint32_t)acc[2];
    uint32_t a3 = (uint32_t)acc[3], b0 = (uint32_t)acc[4], b1 = (uint32_t)acc[5];
    uint32_t b2 = (uint32_t)acc[6], b3 = (uint32_t)acc[7], t, u, pb, pm;
    if (WB2 == 2u && F1) TN_SC_EPICKZ(TN_SC_EDIFF0, TN_SC_EB(3), TN_SC_EF1);
    else if (WB2 == 2u) TN_SC_EPICKZ(TN_SC_EDIFF0, TN_SC_EB(3), TN_SC_EF2);
    else if (WB2 && F1) TN_SC_EPICKZ(TN_SC_EDIFF2, TN_SC_EB(3), TN_SC_EF1);
    else if (WB2) TN_SC_EPICKZ(TN_SC_EDIFF2, TN_SC_EB(3), TN_SC_EF2);
    else if (K3 && F1) TN_SC_EPICKZ(TN_SC_EDIFF TN_SC_EK3, TN_SC_EB(3), TN_SC_EF1);
    else if (K3) TN_SC_EPICKZ(TN_SC_EDIFF TN_SC_EK3, TN_SC_EB(3), TN_SC_EF2);
    else if (F1) TN_SC_EPICKZ(TN_SC_EDIFF, TN_SC_EB3, TN_SC_EF1);
    else TN_SC_EPICKZ(TN_SC_EDIFF, TN_SC_EB3, TN_SC_EF2);
    (void)t; (void)u; (void)pb; (void)pm;
#else
    (void)acc; (void)st; (void)WB2; (void)K3; (void)SGN; (void)FL; (void)F1; (void)OB; (void)OFF;
    (void)ZP;
#endif
}

/* The windows of output pixels (oy0, ox0) and (oy1, ox1) as interleaved int16 lanes (buf: pixel
 * 0's words, buf + 1: pixel 1's), their sums of x' in *s0, *s1: tn_m7_conv's gather for 8-bit
 * inputs, tn_sc_window's unpacking for sub-byte ones (tn_sc_pixels and tn_sc_pool2 share it). */
TN_INLINE void tn_sc_windows(const uint8_t *in, uint32_t *TN_RESTRICT buf, int32_t oy0,
                             int32_t ox0, int32_t oy1, int32_t ox1, int32_t H, int32_t W,
                             uint32_t C, int32_t KH, int32_t KW, int32_t SH, int32_t SW,
                             int32_t PT, int32_t PL, uint32_t XB, uint32_t XS, int32_t ZX,
                             uint32_t PADZERO, uint32_t GX, uint32_t KWCP, uint32_t INSIDE,
                             int32_t *s0, int32_t *s1)
{
    if (XB == 8u && oy1 == oy0 && ox1 == ox0 + 1 && (uint32_t)KW * C == KWCP
        && (uint32_t)SW * C % 4u == 0u && SW < KW
        && (INSIDE || (ox0 * SW - PL >= 0 && ox0 * SW - PL + SW + KW <= W))) {
        /* overlapping rows of whole groups: each input word widened once for both pixels, as
         * tn_m7_conv's windows (tn_m7_cv_windows) */
        tn_m7_cv_window2(in, buf, oy0, ox0 * SW - PL, H, W, C, KH, SH, SW, PT, 1, XS, ZX,
                         PADZERO, KWCP, INSIDE, s0, s1);
    } else if (XB == 8u) {
        *s0 = tn_m7_cv_window(in, buf, oy0, ox0, H, W, C, KH, KW, SH, SW, PT, PL, XS, ZX,
                              PADZERO, KWCP, INSIDE);
        *s1 = tn_m7_cv_window(in, buf + 1, oy1, ox1, H, W, C, KH, KW, SH, SW, PT, PL, XS, ZX,
                              PADZERO, KWCP, INSIDE);
    } else if (XB == 4u && !XS && ZX == 0 && GX == 8u && C % 8u == 0u && C <= 64u && SW == 1
               && KW >= 2 && oy1 == oy0 && ox1 == ox0 + 1 && oy0 * SH - PT >= 0
               && oy0 * SH - PT + KH <= H && ox0 - PL >= 0 && ox0 + 1 - PL + KW <= W
               && (uint32_t)KH * (uint32_t)(KW + 1) * C < 8u * 2048u) {
        /* both windows inside, one column apart: their common taps unpacked once */
        tn_sc_run2(in + ((uint32_t)(oy0 * SH - PT) * (uint32_t)W + (uint32_t)(ox0 - PL)) * C
                            / 2u,
                   buf, C, (uint32_t)KW, (uint32_t)KH, (uint32_t)W * C / 2u, s0, s1);
    } else {
        *s0 = tn_sc_window(in, buf, oy0, ox0, H, W, C, KH, KW, SH, SW, PT, PL, XB, XS, ZX,
                           PADZERO, GX, KWCP);
        *s1 = tn_sc_window(in, buf + 1, oy1, ox1, H, W, C, KH, KW, SH, SW, PT, PL, XB, XS, ZX,
                           PADZERO, GX, KWCP);
    }
}

/* The window of output pixel (oy, ox) alone as pixel 0's lanes (buf, words two apart), its sum
 * of x' returned: tn_sc_windows' forms for one pixel. */
TN_INLINE int32_t tn_sc_window1(const uint8_t *in, uint32_t *TN_RESTRICT buf, int32_t oy,
                                int32_t ox, int32_t H, int32_t W, uint32_t C, int32_t KH,
                                int32_t KW, int32_t SH, int32_t SW, int32_t PT, int32_t PL,
                                uint32_t XB, uint32_t XS, int32_t ZX, uint32_t PADZERO,
                                uint32_t GX, uint32_t KWCP, uint32_t INSIDE)
{
    if (XB == 8u)
        return tn_m7_cv_window(in, buf, oy, ox, H, W, C, KH, KW, SH, SW, PT, PL, XS, ZX,
                               PADZERO, KWCP, INSIDE);
    return tn_sc_window(in, buf, oy, ox, H, W, C, KH, KW, SH, SW, PT, PL, XB, XS, ZX, PADZERO,
                        GX, KWCP);
}

/* tn_sc_pixels_e's blocks (its windows read, their sums s0, s1): each block's sums by
 * tn_sc_block (CUMOUT), its outputs by tn_sc_epi, its state in memory; MODE 2: the codes packed
 * into v for the ADD's table (tn_sc_addtab8). */
TN_INLINE void tn_sc_pixels_epi(const tn_layer_t *l, const uint8_t *other, uint8_t *TN_RESTRICT out,
                                const uint32_t *buf, int32_t *TN_RESTRICT v, uint32_t p,
                                uint32_t q, uint32_t TWO, uint32_t MODE, uint32_t CO,
                                uint32_t KP, uint32_t WB, uint32_t RAW, uint32_t ALW, int32_t ZW,
                                int32_t s0, int32_t s1, uint32_t REQ, uint32_t NM, uint32_t ROUND,
                                uint32_t OB, const uint8_t *ADDTAB, TN_RQ_ARGS)
{
    const uint8_t *w = l->w;
    const int32_t *bias = l->bias, *m0p = l->m0;
    const int8_t *n0p = l->n0;
    const uint32_t PQ = tn_sc_pcq(REQ, NM, ROUND, OB, TN_RQ);
    const uint32_t FL = tn_sc_epi_flip(PQ, OB, ZP);
    /* tn_sc_block1 (4-bit weights at RAW 2) or tn_sc_block1_2 (2-bit, not PK) */
    const uint32_t LONE = !TWO && ((WB == 4u && RAW == 2u) || (WB == 2u && RAW == 0u));
    uint8_t *const dst = MODE == 2u ? (uint8_t *)v : out + p * CO * OB / 8u;
    uint32_t st[9];
    st[0] = (uint32_t)(uintptr_t)bias; st[1] = (uint32_t)(uintptr_t)m0p;
    st[2] = (uint32_t)(uintptr_t)n0p; st[3] = (uint32_t)(uintptr_t)dst;
    st[4] = 0u - (uint32_t)ZW * (uint32_t)s0; st[5] = 0u - (uint32_t)ZW * (uint32_t)s1;
    st[6] = st[4] + 8u * (uint32_t)s0; st[7] = st[5] + 8u * (uint32_t)s1;
    for (uint32_t c = 0; c < CO; c += 4u) {
        int32_t acc[8];
        w = LONE ? (WB == 2u ? tn_sc_block1_2(w, buf, KP, 1u, acc)
                             : tn_sc_block1(w, buf, KP, ALW, 1u, acc))
                 : tn_sc_block(w, buf, KP, WB, RAW, ALW, 1u, acc);
        tn_sc_epi(acc, st, WB == 2u ? (RAW == 1u ? 2u : 1u) : 0u, WB == 4u && ZW != 8,
                  (PQ == 1u) != FL, FL, FAST < 2u, OB,
                  (q - p) * CO * OB / 8u, FL ? 0 : ZP);
    }
    if (MODE == 2u) /* the fused ADD of the packed codes: its table */
        tn_sc_addtab8(ADDTAB, other, out, dst, p * CO, (TWO ? 2u : 1u) * CO, OB);
}


/* tn_sc_pixels and tn_sc_pixels_e (its tn_sc_epi entry): both pixels' windows read into their
 * lanes before any output is written (a lone pixel's alone, LONE: its blocks read pixel 0's
 * lanes only), s0 / s1 their lane sums. A macro over the caller's parameters, so that both
 * compile to what they did written out. */
#define TN_SC_READ_WINDOWS()                                                                    \
    do {                                                                                        \
        if (LONE)                                                                               \
            s1 = s0 = tn_sc_window1(in, buf, oy0, ox0, H, W, C, KH, KW, SH, SW, PT, PL, XB, XS, \
                                    ZX, PADZERO, GX, KWCP, INSIDE);                             \
        else                                                                                    \
            tn_sc_windows(in, buf, oy0, ox0, oy1, ox1, H, W, C, KH, KW, SH, SW, PT, PL, XB, XS, \
                          ZX, PADZERO, GX, KWCP, INSIDE, &s0, &s1);                             \
    } while (0)

/* Output pixels p and (TWO) p + 1 of tn_m7_subconv (TWO = 0: pixel p alone, its window
 * unpacked twice). */
TN_INLINE void tn_sc_pixels(const tn_layer_t *l, const uint8_t *in, const uint8_t *other,
                            uint8_t *TN_RESTRICT out, uint32_t *TN_RESTRICT buf,
                            int32_t *TN_RESTRICT v, uint32_t p, uint32_t TWO, uint32_t MODE,
                            int32_t H, int32_t W, uint32_t C, int32_t OW, uint32_t CO,
                            int32_t KH, int32_t KW, int32_t SH, int32_t SW, int32_t PT,
                            int32_t PL, uint32_t XB, uint32_t XS, int32_t ZX, uint32_t PADZERO,
                            uint32_t GX, uint32_t KWCP, uint32_t INSIDE, uint32_t WB, uint32_t RAW,
                            uint32_t NWZP, int32_t ZW, uint32_t REQ, uint32_t NM, uint32_t ROUND,
                            uint32_t OB, const uint8_t *ADDTAB, uint32_t OBO, TN_RQ_ARGS,
                            TN_FADD_ARGS)
{
    const uint32_t KP = (uint32_t)KH * KWCP, q = TWO ? p + 1u : p;
    const uint8_t *wzp = l->wzp, *w = l->w;
    const int32_t *bias = l->bias, *m0p = l->m0;
    const int8_t *n0p = l->n0;
    const int32_t oy0 = (int32_t)(p / (uint32_t)OW), ox0 = (int32_t)(p % (uint32_t)OW);
    const int32_t oy1 = (int32_t)(q / (uint32_t)OW), ox1 = (int32_t)(q % (uint32_t)OW);
    const uint32_t ALW = TN_SC_LDRD && ((uintptr_t)w & 3u) == 0u; /* blocks: whole words */
    /* tn_sc_block1 (4-bit weights at RAW 2) or tn_sc_block1_2 (2-bit, not PK) */
    const uint32_t LONE = !TWO && ((WB == 4u && RAW == 2u) || (WB == 2u && RAW == 0u));
    int32_t s0, s1;
    TN_SC_READ_WINDOWS();
    for (uint32_t c = 0; c < CO; c += 4u) {
        int32_t acc[8];
        w = LONE ? (WB == 2u ? tn_sc_block1_2(w, buf, KP, 0u, acc)
                             : tn_sc_block1(w, buf, KP, ALW, 0u, acc))
                 : tn_sc_block(w, buf, KP, WB, RAW, ALW, 0u, acc);
        if (WB == 4u && RAW == 2u) { /* row 3 held w_3 - 8 */
            acc[3] = (int32_t)((uint32_t)acc[3] + 8u * (uint32_t)s0);
            acc[7] = (int32_t)((uint32_t)acc[7] + 8u * (uint32_t)s1);
        }
        if (MODE == 0u && (OB == 4u || OB == 2u) && CO % 4u == 0u) {
            /* the block's four outputs of a pixel packed in a register: one store */
            tn_sc_put4(l, bias, wzp, m0p, n0p, out, (p * CO + c) * OB / 8u, c, acc, s0, NWZP,
                       ZW, REQ, NM, ROUND, OB, TN_RQ);
            if (TWO)
                tn_sc_put4(l, bias, wzp, m0p, n0p, out, ((p + 1u) * CO + c) * OB / 8u, c,
                           acc + 4, s1, NWZP, ZW, REQ, NM, ROUND, OB, TN_RQ);
            continue;
        }
        if ((MODE == 0u && OB == 8u) || (MODE == 2u && ADDTAB && !FADD)) {
            /* 8-bit codes stored, or the fused ADD's table: tn_sc_code into v */
            TN_UNROLL
            for (uint32_t r = 0; r < 4u; r++)
                if (CO % 4u == 0u || c + r < CO) {
                    const int32_t z = NWZP == 1u ? ZW : (int32_t)wzp[c + r];
                    const uint32_t b = (uint32_t)bias[c + r];
                    const int32_t y0 = tn_sc_code(l, b, acc[r], z, s0, c + r, m0p, n0p, REQ, NM,
                                                  ROUND, OB, TN_RQ);
                    if (MODE == 0u) out[p * CO + c + r] = (uint8_t)y0;
                    else v[c + r] = y0;
                    if (TWO) {
                        const int32_t y1 = tn_sc_code(l, b, acc[4u + r], z, s1, c + r, m0p, n0p,
                                                      REQ, NM, ROUND, OB, TN_RQ);
                        if (MODE == 0u) out[(p + 1u) * CO + c + r] = (uint8_t)y1;
                        else v[CO + c + r] = y1;
                    }
                }
            continue;
        }
        TN_UNROLL
        for (uint32_t r = 0; r < 4u; r++)
            if (CO % 4u == 0u || c + r < CO)
                tn_m7_cv_chan(l, bias, wzp, m0p, n0p, out, other, v, MODE, p, TWO, c + r, 0u,
                              (uint32_t)acc[r], (uint32_t)acc[4u + r], s0, s1, CO, NWZP, ZW,
                              REQ, NM, ROUND, OB, 0u, TN_RQ, TN_FADD);
    }
    if (MODE == 2u && !FADD && ADDTAB) /* the fused ADD of sub-byte codes: its table */
        tn_sc_addtab(ADDTAB, other, out, v, p * CO, (TWO ? 2u : 1u) * CO, OB, OBO);
    else if (MODE == 2u && !FADD) /* the fused ADD on the portable arithmetic */
        for (uint32_t e = 0; e < (TWO ? 2u : 1u) * CO; e++)
            tn_m7_emit(l, other, out, p * CO + e, v[e], 1u, OB);
}

/* tn_sc_pixels where tn_sc_epi_fits: the windows, then tn_sc_pixels_epi (the same parameters;
 * tn_m7_subconv_epi's pairs). Its own entry, chosen at export (kernels_m7.subconv_epi): as a
 * branch inside tn_sc_pixels, never taken by a step of other widths, it changed GCC's code for
 * them all the same (ResNet-8 w4a8: +50 K instructions; the inline function is optimized on
 * its own before the step's constants reach it). */
TN_INLINE void tn_sc_pixels_e(const tn_layer_t *l, const uint8_t *in, const uint8_t *other,
                              uint8_t *TN_RESTRICT out, uint32_t *TN_RESTRICT buf,
                              int32_t *TN_RESTRICT v, uint32_t p, uint32_t TWO, uint32_t MODE,
                              int32_t H, int32_t W, uint32_t C, int32_t OW, uint32_t CO,
                              int32_t KH, int32_t KW, int32_t SH, int32_t SW, int32_t PT,
                              int32_t PL, uint32_t XB, uint32_t XS, int32_t ZX, uint32_t PADZERO,
                              uint32_t GX, uint32_t KWCP, uint32_t INSIDE, uint32_t WB,
                              uint32_t RAW, int32_t ZW, uint32_t REQ, uint32_t NM, uint32_t ROUND,
                              uint32_t OB, const uint8_t *ADDTAB, TN_RQ_ARGS)
{
    const uint32_t KP = (uint32_t)KH * KWCP, q = TWO ? p + 1u : p;
    const int32_t oy0 = (int32_t)(p / (uint32_t)OW), ox0 = (int32_t)(p % (uint32_t)OW);
    const int32_t oy1 = (int32_t)(q / (uint32_t)OW), ox1 = (int32_t)(q % (uint32_t)OW);
    const uint32_t ALW = TN_SC_LDRD && ((uintptr_t)l->w & 3u) == 0u; /* blocks: whole words */
    /* tn_sc_block1 (4-bit weights at RAW 2) or tn_sc_block1_2 (2-bit, not PK) */
    const uint32_t LONE = !TWO && ((WB == 4u && RAW == 2u) || (WB == 2u && RAW == 0u));
    int32_t s0, s1;
    TN_SC_READ_WINDOWS();
    tn_sc_pixels_epi(l, other, out, buf, v, p, q, TWO, MODE, CO, KP, WB, RAW, ALW, ZW, s0, s1,
                     REQ, NM, ROUND, OB, ADDTAB, TN_RQ);
}

/* Output pixels (oy0, ox0) and (TWO) (oy1, ox1) of tn_m7_subconv with a fused max pool: every
 * output channel requantized as tn_m7_sub's (tn_m7_out) and maxed into best[c]. */
TN_INLINE void tn_sc_pool2(const tn_layer_t *l, const uint8_t *in, uint32_t *TN_RESTRICT buf,
                           int32_t *TN_RESTRICT best, int32_t oy0, int32_t ox0, int32_t oy1,
                           int32_t ox1, uint32_t TWO, int32_t H, int32_t W, uint32_t C,
                           uint32_t CO, int32_t KH, int32_t KW, int32_t SH, int32_t SW,
                           int32_t PT, int32_t PL, uint32_t XB, uint32_t XS, int32_t ZX,
                           uint32_t PADZERO, uint32_t GX, uint32_t KWCP, uint32_t INSIDE,
                           uint32_t WB, uint32_t RAW, uint32_t NWZP, int32_t ZW, uint32_t REQ,
                           uint32_t NM, uint32_t ROUND, TN_RQ_ARGS)
{
    const uint32_t KP = (uint32_t)KH * KWCP;
    const uint8_t *wzp = l->wzp, *w = l->w;
    const int32_t *bias = l->bias;
    const uint32_t ALW = TN_SC_LDRD && ((uintptr_t)w & 3u) == 0u; /* blocks: whole words */
    int32_t s0, s1;
    if (!TWO) { oy1 = oy0; ox1 = ox0; } /* the lone pixel twice */
    tn_sc_windows(in, buf, oy0, ox0, oy1, ox1, H, W, C, KH, KW, SH, SW, PT, PL, XB, XS, ZX,
                  PADZERO, GX, KWCP, INSIDE, &s0, &s1);
    for (uint32_t c = 0; c < CO; c += 4u) {
        int32_t acc[8];
        w = tn_sc_block(w, buf, KP, WB, RAW, ALW, 0u, acc);
        if (WB == 4u && RAW == 2u) { /* row 3 held w_3 - 8 */
            acc[3] = (int32_t)((uint32_t)acc[3] + 8u * (uint32_t)s0);
            acc[7] = (int32_t)((uint32_t)acc[7] + 8u * (uint32_t)s1);
        }
        TN_UNROLL
        for (uint32_t r = 0; r < 4u; r++)
            if (CO % 4u == 0u || c + r < CO) {
                const int32_t z = NWZP == 1u ? ZW : (int32_t)wzp[c + r];
                const uint32_t b = (uint32_t)bias[c + r];
                int32_t y = tn_m7_out(l, (int32_t)(b + (uint32_t)acc[r]
                                                   - (uint32_t)z * (uint32_t)s0),
                                      c + r, REQ, NM == 1u ? 0u : 1u, ROUND, TN_RQ);
                if (y > best[c + r]) best[c + r] = y;
                if (TWO) {
                    y = tn_m7_out(l, (int32_t)(b + (uint32_t)acc[4u + r]
                                               - (uint32_t)z * (uint32_t)s1),
                                  c + r, REQ, NM == 1u ? 0u : 1u, ROUND, TN_RQ);
                    if (y > best[c + r]) best[c + r] = y;
                }
            }
    }
}

/* tn_m7_subconv with the max pool after it fused (MODE 1): per pooled pixel, the max over its
 * window's in-bounds layer outputs (two at a time, both windows read before the pooled
 * output is written, as tn_m7_sub), clamped to the pool's range and stored; best: CO int32. */
TN_INLINE void tn_sc_pooled(const tn_layer_t *l, const uint8_t *in, uint8_t *TN_RESTRICT out,
                            uint32_t *TN_RESTRICT buf, int32_t *TN_RESTRICT best, int32_t H,
                            int32_t W, uint32_t C, int32_t OH, int32_t OW, uint32_t CO,
                            int32_t KH, int32_t KW, int32_t SH, int32_t SW, int32_t PT,
                            int32_t PL, uint32_t XB, uint32_t XS, int32_t ZX, uint32_t PADZERO,
                            uint32_t GX, uint32_t KWCP, uint32_t INSIDE, uint32_t WB,
                            uint32_t RAW, uint32_t NWZP, int32_t ZW, uint32_t REQ, uint32_t NM,
                            uint32_t ROUND, uint32_t OB, int32_t PH, int32_t PW, int32_t PSH,
                            int32_t PSW, int32_t PPT, int32_t PPL, int32_t POH, int32_t POW,
                            TN_RQ_ARGS)
{
    uint32_t idx = 0;
    for (int32_t py = 0; py < POH; py++)
        for (int32_t px = 0; px < POW; px++) {
            int32_t pend = 0, qy = 0, qx = 0; /* a layer output waiting for its partner */
            for (uint32_t c = 0; c < CO; c++) best[c] = INT32_MIN;
            for (int32_t dy = 0; dy < PH; dy++) {
                const int32_t oy = py * PSH - PPT + dy;
                if (oy < 0 || oy >= OH) continue;
                for (int32_t dx = 0; dx < PW; dx++) {
                    const int32_t ox = px * PSW - PPL + dx;
                    if (ox < 0 || ox >= OW) continue;
                    if (!pend) { qy = oy; qx = ox; pend = 1; continue; }
                    tn_sc_pool2(l, in, buf, best, qy, qx, oy, ox, 1u, H, W, C, CO, KH, KW, SH,
                                SW, PT, PL, XB, XS, ZX, PADZERO, GX, KWCP, INSIDE, WB, RAW,
                                NWZP, ZW, REQ, NM, ROUND, TN_RQ);
                    pend = 0;
                }
            }
            if (pend)
                tn_sc_pool2(l, in, buf, best, qy, qx, qy, qx, 0u, H, W, C, CO, KH, KW, SH, SW,
                            PT, PL, XB, XS, ZX, PADZERO, GX, KWCP, INSIDE, WB, RAW, NWZP, ZW,
                            REQ, NM, ROUND, TN_RQ);
            tn_m7_pool_out(l, out, idx, best, CO, OB);
            idx += CO;
        }
}

/* A convolution or pointwise layer of WB = 2 / 4-bit weights and XB = 2 / 4 / 8-bit inputs
 * (weights in kernels_m7.subconv_weights' order; RAW: kernels_m7.subconv_raw), optionally
 * (MODE 2) with the residual ADD after it fused, as tn_m7_conv, or (ADDTAB, when both addends
 * have OB + OBO <= 8 bits) through the ADD's table, or (MODE 1) with the max pool after it
 * (PH x PW, strides PSH, PSW, padding PPT, PPL, POH x POW pooled pixels; tn_sc_pooled). buf:
 * 2 KP words (KP = KH * KWCP), then v: with MODE 2, 2 CO int32; with MODE 1, CO (the running
 * maxima); the step's scratch, 4-byte aligned. */
TN_INLINE void tn_m7_subconv(const tn_layer_t *l, const uint8_t *in, const uint8_t *other,
                             uint8_t *TN_RESTRICT out, uint32_t *TN_RESTRICT buf,
                             int32_t *TN_RESTRICT v, uint32_t MODE, int32_t H, int32_t W,
                             uint32_t C, int32_t OH, int32_t OW, uint32_t CO, int32_t KH,
                             int32_t KW, int32_t SH, int32_t SW, int32_t PT, int32_t PL,
                             uint32_t XB, uint32_t XS, int32_t ZX, uint32_t PADZERO,
                             uint32_t GX, uint32_t KWCP, uint32_t INSIDE, uint32_t WB,
                             uint32_t RAW,
                             uint32_t NWZP, int32_t ZW, uint32_t REQ, uint32_t NM,
                             uint32_t ROUND, uint32_t OB, const uint8_t *ADDTAB, uint32_t OBO,
                             int32_t PH, int32_t PW, int32_t PSH, int32_t PSW, int32_t PPT,
                             int32_t PPL, int32_t POH, int32_t POW, TN_RQ_ARGS, TN_FADD_ARGS)
{
    const uint32_t np = (uint32_t)(OH * OW);
    uint32_t p = 0;
    if (MODE == 1u) {
        tn_sc_pooled(l, in, out, buf, v, H, W, C, OH, OW, CO, KH, KW, SH, SW, PT, PL, XB, XS, ZX,
                     PADZERO, GX, KWCP, INSIDE, WB, RAW, NWZP, ZW, REQ, NM, ROUND, OB, PH, PW,
                     PSH, PSW, PPT, PPL, POH, POW, TN_RQ);
        return;
    }
#if defined(__ARM_FEATURE_DSP)
    if (AF) __asm__("" : "+r"(AC)); /* as tn_m7_add: constants with a fix-up in registers */
    if (BF) __asm__("" : "+r"(BC));
    if (QF) __asm__("" : "+r"(QC));
#endif
    for (; p + 2u <= np; p += 2u)
        tn_sc_pixels(l, in, other, out, buf, v, p, 1u, MODE, H, W, C, OW, CO, KH, KW, SH, SW,
                     PT, PL, XB, XS, ZX, PADZERO, GX, KWCP, INSIDE, WB, RAW, NWZP, ZW, REQ, NM,
                     ROUND, OB, ADDTAB, OBO, TN_RQ, TN_FADD);
    if (p < np)
        tn_sc_pixels(l, in, other, out, buf, v, p, 0u, MODE, H, W, C, OW, CO, KH, KW, SH, SW,
                     PT, PL, XB, XS, ZX, PADZERO, GX, KWCP, INSIDE, WB, RAW, NWZP, ZW, REQ, NM,
                     ROUND, OB, ADDTAB, OBO, TN_RQ, TN_FADD);
}


/* tn_m7_subconv for the steps kernels_m7.subconv_epi gives tn_sc_epi (the same parameters): its
 * pixel pairs by tn_sc_pixels_e; tn_m7_subconv itself where the C's own test (tn_sc_epi_fits)
 * disagrees. */
TN_INLINE void tn_m7_subconv_epi(const tn_layer_t *l, const uint8_t *in, const uint8_t *other,
                                 uint8_t *TN_RESTRICT out, uint32_t *TN_RESTRICT buf,
                                 int32_t *TN_RESTRICT v, uint32_t MODE, int32_t H, int32_t W,
                                 uint32_t C, int32_t OH, int32_t OW, uint32_t CO, int32_t KH,
                                 int32_t KW, int32_t SH, int32_t SW, int32_t PT, int32_t PL,
                                 uint32_t XB, uint32_t XS, int32_t ZX, uint32_t PADZERO,
                                 uint32_t GX, uint32_t KWCP, uint32_t INSIDE, uint32_t WB,
                                 uint32_t RAW, uint32_t NWZP, int32_t ZW, uint32_t REQ,
                                 uint32_t NM, uint32_t ROUND, uint32_t OB, const uint8_t *ADDTAB,
                                 uint32_t OBO, int32_t PH, int32_t PW, int32_t PSH, int32_t PSW,
                                 int32_t PPT, int32_t PPL, int32_t POH, int32_t POW, TN_RQ_ARGS,
                                 TN_FADD_ARGS)
{
    const uint32_t np = (uint32_t)(OH * OW);
    uint32_t p = 0;
    if (MODE == 1u || !tn_sc_epi_fits(WB, RAW, MODE, ADDTAB && !FADD && OBO == OB, CO, NWZP,
                                      REQ, NM, ROUND, OB, TN_RQ)) {
        tn_m7_subconv(l, in, other, out, buf, v, MODE, H, W, C, OH, OW, CO, KH, KW, SH, SW, PT,
                      PL, XB, XS, ZX, PADZERO, GX, KWCP, INSIDE, WB, RAW, NWZP, ZW, REQ, NM,
                      ROUND, OB, ADDTAB, OBO, PH, PW, PSH, PSW, PPT, PPL, POH, POW, TN_RQ,
                      TN_FADD);
        return;
    }
    for (; p + 2u <= np; p += 2u)
        tn_sc_pixels_e(l, in, other, out, buf, v, p, 1u, MODE, H, W, C, OW, CO, KH, KW, SH, SW,
                       PT, PL, XB, XS, ZX, PADZERO, GX, KWCP, INSIDE, WB, RAW, ZW, REQ, NM,
                       ROUND, OB, ADDTAB, TN_RQ);
    if (p < np)
        tn_sc_pixels_e(l, in, other, out, buf, v, p, 0u, MODE, H, W, C, OW, CO, KH, KW, SH, SW,
                       PT, PL, XB, XS, ZX, PADZERO, GX, KWCP, INSIDE, WB, RAW, ZW, REQ, NM,
                       ROUND, OB, ADDTAB, TN_RQ);
}

#endif

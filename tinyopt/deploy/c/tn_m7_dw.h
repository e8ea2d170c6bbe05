/* tn_m7_dw.h: the Cortex-M7 depthwise kernels (SIMD over channel lane pairs, and a scalar one
 * with constant shapes; conventions in tn_m7_core.h). The max / average pool: tn_m7_pool.h. */
#ifndef TN_M7_DW_H
#define TN_M7_DW_H

#include "tn_m7_core.h"


#if defined(__ARM_FEATURE_DSP)
#define tn_dw3_sxtb16(x) ((uint32_t)__sxtb16((int32_t)(x)))
#define tn_dw3_smlabt(a, b, c) ((int32_t)__smlabt((int32_t)(a), (int32_t)(b), (c)))
#define tn_dw3_smlatb(a, b, c) ((int32_t)__smlatb((int32_t)(a), (int32_t)(b), (c)))
static inline __attribute__((always_inline)) uint32_t tn_dw3_sxtb16_ror8(uint32_t x)
{
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(x));
    return r;
}
/* (lo of a, lo of b) and (hi of a, hi of b): PKHBT / PKHTB */
static inline __attribute__((always_inline)) uint32_t tn_dw3_pack_lo(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(r) : "r"(a), "r"(b));
    return r;
}
static inline __attribute__((always_inline)) uint32_t tn_dw3_pack_hi(uint32_t a, uint32_t b)
{
    uint32_t r;
    __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(r) : "r"(b), "r"(a));
    return r;
}
#else
static inline uint32_t tn_dw3_sxtb16(uint32_t x)
{
    return tn_lanes((uint32_t)(int32_t)(int8_t)(uint8_t)x,
                    (uint32_t)(int32_t)(int8_t)(uint8_t)(x >> 16));
}
static inline uint32_t tn_dw3_sxtb16_ror8(uint32_t x) { return tn_dw3_sxtb16(x >> 8); }
static inline int32_t tn_dw3_smlabt(uint32_t a, uint32_t b, int32_t c)
{
    return (int32_t)((uint32_t)c + (uint32_t)(tn_lo16(a) * tn_hi16(b)));
}
static inline int32_t tn_dw3_smlatb(uint32_t a, uint32_t b, int32_t c)
{
    return (int32_t)((uint32_t)c + (uint32_t)(tn_hi16(a) * tn_lo16(b)));
}
static inline uint32_t tn_dw3_pack_lo(uint32_t a, uint32_t b) { return tn_lanes(a, b); }
static inline uint32_t tn_dw3_pack_hi(uint32_t a, uint32_t b) { return tn_lanes(a >> 16, b >> 16); }
#endif

/* Pass p of tn_m7_dw_group (below): the lane pairs s of the pass (s = p pairs + j; w4a8:
 * s = p + 2 j) of its channel group into acc[s] and acc[s + N / 2]. */
TN_INLINE void tn_m7_dw_pass(const tn_layer_t *l, const uint8_t *in, int32_t *acc, uint32_t cg,
                             uint32_t p, int32_t y0, int32_t x0, uint32_t INTERIOR, int32_t H,
                             int32_t W, uint32_t C, int32_t KH, int32_t KW, uint32_t B,
                             uint32_t XB, uint32_t XS, int32_t ZX, uint32_t PADZERO, uint32_t RB,
                             uint32_t NWZP, int32_t ZW, uint32_t ALLONES)
{
    /* the input word path: inputs packed like the weights (8-bit, or unsigned sub-byte); else
     * each input element is read on its own (XB bits) and paired in the weights' lane order */
    const uint32_t wordx = XB == B && (B == 8u || !XS);
    /* n channels per word in n / 2 lane pairs, taken in passes of at most 4 pairs (8
     * accumulators stay in registers; 2-bit words are read twice) */
    const uint32_t n = 32u / B, half = n / 2u;
    /* w4a8 (below): two passes of 2 lane pairs, s = p, p + 2 (4 accumulators; with 8 and a
     * pass, GCC spilled) */
    const uint32_t wcross = XB == 8u && B == 4u && !ALLONES;
    const uint32_t pairs = wcross ? 2u : half < 4u ? half : 4u;
    const uint32_t zx2 = ((uint32_t)ZX & 0xFFFFu) * 0x00010001u;
    const uint32_t nzx2 = ((uint32_t)(-ZX) & 0xFFFFu) * 0x00010001u;
    const uint8_t *wg = l->w + cg * n * B / 8u;
    /* the pixel (y0, x0) of this channel group (may lie outside the image: only formed, read
     * at taps inside it) */
    const int32_t e0 = (y0 * W + x0) * (int32_t)C + (int32_t)(cg * n);
    /* 8-bit inputs beside 4-bit weights (w4a8): the group's 8 channels are two input words
     * per tap, widened by UXTAB16 / SXTAB16 (adding -z_x; pass 1 with ROR #8) into lanes
     * (e_c, e_c+2), c = p, p + 4, while the weights' pairs are (e_s, e_s+4): each MAC picks
     * its lanes (SMLABB, SMLATB, SMLABT, SMLATT), so no repacking: 13 instructions per tap
     * and pass (4 MACs), where reading each code on its own took about 24 per 8 MACs plus
     * spills (DS-CNN --subbyte w4a8 487 K a layer -> 410 K, w8a8 396 K). The weight pairs by
     * one AND of the word's nibbles p and UXTAB16 adding -z_w (below) instead of tn_pair and
     * SSUB16, and pass 1's shift folded into that AND: 11 per tap and pass, interior
     * (session 18: 410 K -> 385 K, 0.97x w8a8; VWW dw0-2 929 / 469 / 946 K -> 882 / 451 /
     * 902 K). Not done: the nibble order [w0, w4, w1, w5, w2, w6, w3, w7] would let a pass
     * read one input word (channels 4p .. 4p + 3), one load fewer per tap and pass, but the
     * lean kernel reads the row layout as exported (kernels_m7.step_c takes a Choice.weights
     * for the row kernel's). Tried: pairing the
     * words into the weights' order by PKHBT / PKHTB in one pass of 8 accumulators (GCC
     * spilled the nine taps' weights: 490 K -> 603 K, session 17); this form in one pass of 8
     * (511 K, spilled), in two passes without the barriers below (502 K: GCC shared the two
     * passes' loads), with a "memory" barrier per tap (454 K: addresses kept on the stack). */
    const uint8_t *xg = in + (wordx ? e0 * (int32_t)B / 8 : wcross ? e0 : 0);
    (void)zx2;
#if defined(__ARM_FEATURE_DSP)
    /* w4a8: the group's pointers opaque per pass, so that GCC does not share the loads of
     * both passes (all live at once: it spilled) */
    if (wcross) __asm__ volatile("" : "+r"(xg), "+r"(wg));
#endif
    uint32_t zw2[4], nzw2[4];
    int32_t a[8];
    /* w4a8's nibble mask; in pass 1 held in a register, so that the shift and the mask are
     * one AND with a shifted operand (an immediate cannot take one) */
    uint32_t m4 = 0x0F0F0F0Fu;
#if defined(__ARM_FEATURE_DSP)
    if (wcross && p) __asm__("" : "+r"(m4));
#endif
    TN_UNROLL
    for (uint32_t j = 0; j < pairs; j++) {
        const uint32_t s = wcross ? p + 2u * j : p * pairs + j;
        if (NWZP == 1u)
            zw2[j] = ((uint32_t)ZW & 0xFFFFu) * 0x00010001u;
        else
            zw2[j] = (uint32_t)l->wzp[cg * n + s] | ((uint32_t)l->wzp[cg * n + s + half] << 16);
        /* (-z_w, -z_w) of the pair, for w4a8's UXTAB16 (a constant for one zero point) */
        nzw2[j] = !wcross ? 0u
                  : NWZP == 1u ? ((uint32_t)(-ZW) & 0xFFFFu) * 0x00010001u
                               : tn_ssub16(0u, zw2[j]);
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
            if (inside && wcross) {
                /* pass p: lanes (c, c+2) of channels p, p+2 (x0) and p+4, p+6 (x1) */
                const uint8_t *xq = xg + (ky * W + kx) * (int32_t)C;
                uint32_t q0, q1, ul, uh, wa, wb;
#if defined(__ARM_FEATURE_DSP)
                /* a scheduling barrier: without it GCC hoists the nine taps' loads above
                 * each other's multiplies, then spills */
                __asm__ volatile("");
#endif
                q0 = tn_ld32(xq), q1 = tn_ld32(xq + 4);
                ul = p ? (XS ? tn_sxtab16_ror8(nzx2, q0) : tn_uxtab16_ror8(nzx2, q0))
                       : (XS ? tn_sxtab16(nzx2, q0) : tn_uxtab16(nzx2, q0));
                uh = p ? (XS ? tn_sxtab16_ror8(nzx2, q1) : tn_uxtab16_ror8(nzx2, q1))
                       : (XS ? tn_sxtab16(nzx2, q1) : tn_uxtab16(nzx2, q1));
                /* weight pairs s = p and p + 2: (e_s, e_s+4), (e_s+2, e_s+6) minus z_w. The
                 * codes of pass p are the nibbles p of the word's four bytes (e_p, e_p+2,
                 * e_p+4, e_p+6): one AND (pass 1: of the word LSR #4, m4) puts them in bytes, then
                 * UXTAB16 (ROR #8) extracts each pair and adds -z_w in the same instruction,
                 * where tn_pair and SSUB16 took 5 to 6 per pass */
                wu = (p ? wu >> 4 : wu) & m4;
                wa = tn_uxtab16(nzw2[0], wu);
                wb = tn_uxtab16_ror8(nzw2[1], wu);
                a[0] = tn_smlabb(wa, ul, a[0]);
                a[2] = tn_dw3_smlatb(wa, uh, a[2]);
                a[1] = tn_dw3_smlabt(wb, ul, a[1]);
                a[3] = tn_smlatt(wb, uh, a[3]);
                continue;
            }
            if (inside && wordx)
                xu = tn_ld32(xg + (ky * W + kx) * (int32_t)C * (int32_t)B / 8);
            TN_UNROLL
            for (uint32_t j = 0; j < pairs; j++) {
                const uint32_t s = wcross ? p + 2u * j : p * pairs + j;
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
        const uint32_t s = wcross ? p + 2u * j : p * pairs + j;
        acc[s] = a[j];
        acc[s + half] = a[j + pairs];
    }
}

/* Depthwise layer (depth multiplier 1) with weights of b in {2, 4, 8} bits and C a multiple of
 * N = 32 / b (inputs of any width up to 8 bits; of the weights' width, a word at a time; 8-bit
 * beside 4-bit weights, two words: tn_m7_dw_pass): N channels at a time, one word of inputs and one
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
    const uint32_t n = 32u / B, half = n / 2u;
    if (XB == 8u && B == 4u && !ALLONES) { /* w4a8: two passes, unrolled (p a constant) */
        tn_m7_dw_pass(l, in, acc, cg, 0u, y0, x0, INTERIOR, H, W, C, KH, KW, B, XB, XS, ZX,
                      PADZERO, RB, NWZP, ZW, ALLONES);
        tn_m7_dw_pass(l, in, acc, cg, 1u, y0, x0, INTERIOR, H, W, C, KH, KW, B, XB, XS, ZX,
                      PADZERO, RB, NWZP, ZW, ALLONES);
        return;
    }
#if defined(__GNUC__)
#pragma GCC unroll 1
#endif
    for (uint32_t p = 0; p < half / (half < 4u ? half : 4u); p++)
        tn_m7_dw_pass(l, in, acc, cg, p, y0, x0, INTERIOR, H, W, C, KH, KW, B, XB, XS, ZX,
                      PADZERO, RB, NWZP, ZW, ALLONES);
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

/* ------------------------------------------------------------------------------------------
 * 3x3 depthwise, 2/4/8-bit inputs, weights and outputs, stride 1 or 2: the row kernel
 * (tn_m7_dw3).
 *
 * Three input rows live in the step's scratch (kernels_m7.dw3_scratch_bytes), as int16
 * x' = x - z_x (padding included: 0 for zero-point padding, -z_x for integer-0 padding), one
 * plane per channel: rows[(c * 3 + slot) * WP + q], q = input column + PL, slot = (input row +
 * PT) % 3. An input row is widened once, when the first output row needing it starts (so each
 * input byte is read once, before any output byte of that row is written: the planner's
 * sliding write, integer.steps.write_delay, stays safe). Sub-byte inputs (XB = 2, 4) are
 * unpacked a word of codes of two pixels at a time (tn_dw3_build: PKHBT / PKHTB pair the two
 * pixels' halfwords, one AND of a shifted pair per two planes' columns), so the planes, and
 * all below, are the same at every input width.
 *
 * Stride 2 with 8-bit inputs (and 4+ outputs per row, TN_DW3_CHUNKS) stores the rows in
 * chunks of four columns instead (the chunk layout, CH; WP a multiple of 4, steps.dw3_width):
 * chunk (channel group cg = c / 4, column chunk q / 4, slot) is 32 bytes at
 * ((cg * WP / 4 + q / 4) * 3 + slot) * 32, holding per channel of the group (c % 4) its two
 * words (x_q, x_q+1), (x_q+2, x_q+3) (tn_dw3_at2).
 * Widening four pixels of four channels then fills a whole chunk (one STM, TN_DW3_QUADS: 25
 * instructions per 16 codes, about 2.7 per code in the planes), and two outputs read
 * LDRD (p0, p1) and LDR p2 of each slot at small immediate offsets (tn_dw3_row2).
 *
 * Per channel and output row the weights are six registers: A_r = (d_r0, d_r1) and
 * B_r = (d_r1, d_r2) (int16 lanes, d = w - z_w), two SXTB16 of the exported word
 * [d_r0, d_r1, d_r1, d_r2] (kernels_m7.dw3_weights). Two output pixels per step: with
 * p0 = (x_q, x_q+1), p1 = (x_q+2, x_q+3) (one LDRD of the int16 plane, q even), stride 1:
 *     out_ox   += SMLAD(p0, A) + SMLABT(p1, B)      x_q d0 + x_q+1 d1 + x_q+2 d2
 *     out_ox+1 += SMLAD(p1, B) + SMLATB(p0, A)      x_q+2 d1 + x_q+3 d2 + x_q+1 d0
 * stride 2 (p2 = (x_q+4, x_q+5)):
 *     out_ox += SMLAD(p0, A) + SMLABT(p1, B),  out_ox+1 += SMLAD(p1, A) + SMLABT(p2, B)
 * so that 18 MACs take 12 multiplies and 3 (stride 2: 6) loads.
 *
 * The weights d = w - z_w (any width, any zero point) are exported per channel as three words
 * [d_r0, d_r1, d_r1, d_r2] of int8 when every d fits (TFLite's symmetric weights, sub-byte
 * weights), else (WIDE: asymmetric 8-bit weights of the Keras path) as the six int16 pairs
 * A_r, B_r themselves (kernels_m7.dw3_weights).
 *
 * Requantization (DWQ = 1, kernels_m7.dw3_plan: TFLite's double rounding with every
 * n0 in [-30, -1], |acc| < 2^30, and the folded constant in range): with K = -n0,
 *     out = SSAT8((SMMLAR(acc << 1, m0, CC + [acc < 0]... ) >> K)
 * as tn_m7_out's FAST = 3 form: SMMLAR(2 acc, m0, t) = t + SRDHM(acc, m0) (m0 >= 0), the
 * rounding divide is (h + 2^(K-1) - [h < 0]) >> K ([h < 0] = [acc < 0], and for h = 0 both
 * give 0), and CC = 2^(K-1) + (z_out << K) adds the zero point before the shift (exact:
 * a multiple of 2^K); the export checks that CC + h stays in int32 for every accumulator the
 * layer can form. DWQ = 2 (the Keras path's floor flavour, every n0 <= -1): with
 * K = -(n0 + 1), out = SMMLA(acc, m0, CC) >> K, CC = z_out << K: SMMLA adds CC to the floor of
 * acc m0 / 2^32 (requant_floor's h, for n0 + 1 <= 0 no left shift), and the floor division
 * by 2^K of h + z_out 2^K is floor(h / 2^K) + z_out. DWQ = 3 (floor, some n0 >= 0): per
 * channel SL = max(n0 + 1, 0), K = max(-(n0 + 1), 0), out = SMMLA(acc << SL, m0, CC) >> K
 * (requant_floor's t = acc << n1; the export checks |acc| << SL < 2^31: no wrap), where
 * acc << SL is formed by weights and a bias exported shifted left by SL (the bias in the
 * blob's fourth word, CC = z_out 2^K formed from K: kernels_m7.dw3_plan), no shift per
 * output. Then the
 * saturation to the OB-bit type (SSAT / USAT) and the clamp to [LO, HI]. DWQ = 0: tn_m7_out. Sub-byte outputs (OB = 2, 4;
 * G = 8 / OB codes a byte): 4-bit codes into their byte in one row pass of the G channels
 * (tn_dw3_put: the first plain, the second a read-modify-write); 2-bit codes first as bytes
 * into the plane of slot S0, which no later output row reads, then four pixels of the G
 * channels ORed into their output bytes a word at a time (tn_dw3_row; GCC spills in a pass
 * holding four channels, measured on DS-CNN and VWW: issue 29).
 * ------------------------------------------------------------------------------------------ */


/* x's two int16 lanes doubled (SADD16) when DBL (|x| <= 510 in each lane). */
TN_INLINE uint32_t tn_dw3_dbl(uint32_t x, uint32_t DBL)
{
    if (!DBL) return x;
#if defined(__ARM_FEATURE_DSP)
    return (uint32_t)__sadd16((int16x2_t)x, (int16x2_t)x);
#else
    return ((x << 1) & 0xFFFFu) | (((x >> 16) << 17));
#endif
}

/* v saturated to the OB-bit signed or unsigned range (SSAT / USAT #OB; OB a constant) */
#if defined(__ARM_FEATURE_DSP)
#define tn_dw3_sat(v, OB, OS)                                                                  \
    ((OB) == 8u ? tn_sat8((v), (OS))                                                           \
     : (OB) == 4u ? ((OS) ? __ssat((v), 4) : (int32_t)__usat((v), 4))                          \
                  : ((OS) ? __ssat((v), 2) : (int32_t)__usat((v), 2)))
#else
static inline int32_t tn_dw3_sat(int32_t v, uint32_t OB, uint32_t OS)
{
    const int32_t lo = OS ? -(1 << (OB - 1u)) : 0, hi = OS ? (1 << (OB - 1u)) - 1 : (1 << OB) - 1;
    return v < lo ? lo : (v > hi ? hi : v);
}
#endif

/* One output code of the row kernel from its accumulator (see above). */
TN_INLINE int32_t tn_dw3_out(const tn_layer_t *l, int32_t acc, uint32_t c, int32_t m0, int32_t cc,
                             uint32_t k, uint32_t DWQ, uint32_t DBL, uint32_t OB,
                             uint32_t OS, int32_t LO, int32_t HI, uint32_t NM, uint32_t ROUND,
                             TN_RQ_ARGS)
{
    int32_t v;
    if (!DWQ) return tn_m7_out(l, acc, c, 1u, NM == 1u ? 0u : 1u, ROUND, TN_RQ);
    if (DWQ == 2u) /* floor: (SMMLA(acc, m0, z_out 2^K)) >> K */
        v = tn_smmla(acc, m0, cc);
    else if (DWQ == 3u) /* floor, n0 of both signs: SMMLA(acc << SL, m0, z_out 2^K) >> K,
                         * acc << SL formed by the shifted weights and bias */
        v = ZP == 0 ? tn_smmul(acc, m0) : tn_smmla(acc, m0, cc);
    else /* acc: the accumulator, or twice it (DBL); the sign fix-up from its sign (one ADD
          * with a shifted operand) */
        v = tn_smmlar(DBL ? acc : (int32_t)((uint32_t)acc << 1), m0,
                      (int32_t)((uint32_t)cc + (uint32_t)(acc >> 31)));
    v = tn_dw3_sat(v >> k, OB, OS);
    if (LO > (OS ? -(1 << (OB - 1u)) : 0)) v = v < LO ? LO : v;
    if (HI < (OS ? (1 << (OB - 1u)) - 1 : (1 << OB) - 1)) v = v > HI ? HI : v;
    return v;
}

/* Store output code v at o: a byte (OB = 8), or the code of a sub-byte output at bit SH of its
 * byte: the byte's first code is stored plain (the byte's other codes, of the next channels,
 * are ORed in after it within the same row pass), the others read-modify-write. v is within
 * the OB-bit type (tn_dw3_out), so only a signed code below the byte's top needs its bits
 * masked (an unsigned one has none above OB; the top code's sign bits fall off the byte). */
TN_INLINE void tn_dw3_put(uint8_t *o, int32_t v, uint32_t OB, uint32_t OS, uint32_t SH)
{
    const uint32_t u = OS && SH + OB < 8u ? (uint32_t)v & ((1u << OB) - 1u) : (uint32_t)v;
    if (OB == 8u || SH == 0u) {
        *o = (uint8_t)u;
    } else {
#if TN_M7_ASM
        /* one statement: GCC's scheduler would hoist the byte's load above the channel's
         * multiplies, one more live register per output, and spill (SH a constant once the
         * loops are unrolled; not at -Og: there the C statement) */
        if (__builtin_constant_p(SH)) {
            uint32_t t;
            __asm__("ldrb %0, %1\n\torr %0, %0, %2, lsl %3\n\tstrb %0, %1"
                    : "=&r"(t), "+m"(*o) : "r"(u), "i"(SH));
        } else
#endif
        {
            *o = (uint8_t)(*o | (u << SH));
        }
    }
}

/* Does the row kernel store its rows in chunks (see above): stride 2, 8-bit inputs, at least 4
 * outputs per row (below, the per-channel set-up outweighs the gain: the planes); the same
 * rule as steps.dw3_width's. */
#define TN_DW3_CHUNKS(SW, XB, OW) ((SW) == 2 && (XB) == 8u && (OW) >= 4)

/* The int16 index of channel c, slot s, column q in the stride-2 layout (see above; NQ = WP / 4
 * chunks of four columns). */
TN_INLINE uint32_t tn_dw3_at2(uint32_t c, uint32_t s, uint32_t q, uint32_t NQ)
{
    return (((((c >> 2) * NQ + (q >> 2)) * 3u + s) * 8u + (c & 3u) * 2u + ((q >> 1) & 1u)) << 1)
           + (q & 1u);
}

#if TN_M7_ASM && !defined(__OPTIMIZE_SIZE__)
#define TN_DW3_QUADS_ASM 1
#else
#define TN_DW3_QUADS_ASM 0
#endif
#if TN_DW3_QUADS_ASM
/* tn_dw3_build2's chunk loop in assembly: 25 instructions per chunk (four pixels of four
 * channels) where GCC's code took 30, the eight words of a chunk stored with one STM from
 * r1..r6, r8, r9 in their memory order (so the registers are named, r10 the temporary; the
 * extension EXT is SXTAB16 or UXTAB16, adding -z_x). It leaves GCC one spare register: not r7
 * (the Thumb frame pointer) nor r0 (with them -O1 and -O3 failed to allocate the operands);
 * -Os / -Oz still fail, so they take the C loop (TN_DW3_QUADS_ASM). */
#define TN_DW3_QUADS(EXT)                                                                      \
    __asm__ volatile(                                                                          \
        "1:\n\t"                                                                               \
        "ldr r1, [%[p]]\n\t"                                                                   \
        "ldr r3, [%[p], %[c1]]\n\t"                                                            \
        "ldr r2, [%[p], #(2 * %c[c1])]\n\t"                                                    \
        "ldr r4, [%[p], #(3 * %c[c1])]\n\t"                                                    \
        "addw %[p], %[p], #(4 * %c[c1])\n\t"                                                   \
        EXT " r5, %[n], r1\n\t"                                                                \
        EXT " r8, %[n], r3\n\t"                                                                \
        EXT " r10, %[n], r1, ror #8\n\t"                                                       \
        EXT " r3, %[n], r3, ror #8\n\t"                                                        \
        "pkhbt r1, r5, r8, lsl #16\n\t"                                                        \
        "pkhtb r5, r8, r5, asr #16\n\t"                                                        \
        "pkhtb r8, r3, r10, asr #16\n\t"                                                       \
        "pkhbt r3, r10, r3, lsl #16\n\t"                                                       \
        EXT " r6, %[n], r2\n\t"                                                                \
        EXT " r9, %[n], r4\n\t"                                                                \
        EXT " r10, %[n], r2, ror #8\n\t"                                                       \
        EXT " r4, %[n], r4, ror #8\n\t"                                                        \
        "pkhbt r2, r6, r9, lsl #16\n\t"                                                        \
        "pkhtb r6, r9, r6, asr #16\n\t"                                                        \
        "pkhtb r9, r4, r10, asr #16\n\t"                                                       \
        "pkhbt r4, r10, r4, lsl #16\n\t"                                                       \
        "stm %[d], {r1-r6, r8, r9}\n\t"                                                        \
        "add %[d], %[d], #96\n\t"                                                              \
        "cmp %[d], %[e]\n\t"                                                                   \
        "bne 1b\n\t"                                                                           \
        : [p] "+r"(p), [d] "+r"(d)                                                             \
        : [e] "r"(dend), [n] "r"(nzx2), [c1] "i"(C)                                            \
        : "r1", "r2", "r3", "r4", "r5", "r6", "r8", "r9", "r10", "memory", "cc")
#endif

/* Two 8-bit pixels j, j + 1 at an even column q = j + PL of the stride-2 layout: per group of
 * four channels two words, four (x_j, x_j+1) pairs (SXTAB16 / UXTAB16 adding -z_x, PKHBT /
 * PKHTB). */
TN_INLINE void tn_dw3_pair2(const uint8_t *src, uint32_t *TN_RESTRICT rw, int32_t j, uint32_t s,
                            uint32_t C, int32_t PL, uint32_t NQ, uint32_t XS, uint32_t nzx2)
{
    const uint32_t q = (uint32_t)(j + PL);
    const uint8_t *p = src + (uint32_t)j * C;
    uint32_t *e = rw + ((q >> 2) * 3u + s) * 8u + ((q >> 1) & 1u);
    for (uint32_t cg = 0; cg < C / 4u; cg++, p += 4, e += NQ * 24u) {
        const uint32_t x0 = tn_ld32(p), x1 = tn_ld32(p + C);
        const uint32_t s0 = XS ? tn_sxtab16(nzx2, x0) : tn_uxtab16(nzx2, x0);
        const uint32_t s1 = XS ? tn_sxtab16(nzx2, x1) : tn_uxtab16(nzx2, x1);
        const uint32_t t0 = XS ? tn_sxtab16_ror8(nzx2, x0) : tn_uxtab16_ror8(nzx2, x0);
        const uint32_t t1 = XS ? tn_sxtab16_ror8(nzx2, x1) : tn_uxtab16_ror8(nzx2, x1);
        e[0] = tn_dw3_pack_lo(s0, s1), e[2] = tn_dw3_pack_lo(t0, t1);
        e[4] = tn_dw3_pack_hi(s0, s1), e[6] = tn_dw3_pack_hi(t0, t1);
    }
}

/* tn_dw3_build for the chunk layout (see above; 8-bit inputs): four pixels at a time (a chunk
 * of four columns: per group of four channels eight words, the whole chunk), two at the ends,
 * the pixels left (an odd PL, an odd width) one code at a time. A padding row: every chunk of
 * the slot, a word at a time. */
TN_INLINE void tn_dw3_build2(const uint8_t *in, int16_t *TN_RESTRICT rows, int32_t i, uint32_t s,
                             int32_t H, int32_t W, uint32_t C, int32_t PL, uint32_t WP,
                             uint32_t XB, uint32_t XS, int32_t ZX, uint32_t PADZERO)
{
    const uint32_t NQ = WP / 4u, pb = C * XB / 8u;
    const uint8_t *src = in + (uint32_t)i * (uint32_t)W * pb;
    uint32_t *rw = (uint32_t *)(void *)rows;
    int32_t a = 0, b = 0; /* the pixels written a word at a time: [a, b) */
    if (i < 0 || i >= H) { /* a padding row */
        const uint32_t pad2 = ((uint32_t)(PADZERO ? -ZX : 0) & 0xFFFFu) * 0x00010001u;
        uint32_t *d = rw + s * 8u;
        for (uint32_t k = 0; k < C / 4u * NQ; k++, d += 24) {
            d[0] = pad2, d[1] = pad2, d[2] = pad2, d[3] = pad2;
            d[4] = pad2, d[5] = pad2, d[6] = pad2, d[7] = pad2;
        }
        return;
    }
    {
        const uint32_t nzx2 = ((uint32_t)(-ZX) & 0xFFFFu) * 0x00010001u;
        const int32_t a4 = (4 - (PL & 3)) & 3; /* the first pixel of a whole chunk */
        if (a4 <= W) {
            a = a4, b = a4 + ((W - a4) & ~3);
            for (uint32_t cg = 0; cg < C / 4u; cg++) {
                const uint8_t *p = src + (uint32_t)a * C + cg * 4u;
                uint32_t *d = rw + (((cg * NQ + (uint32_t)(a + PL) / 4u) * 3u + s) * 8u);
                const uint32_t *const dend = d + (uint32_t)(b - a) / 4u * 24u;
#if TN_DW3_QUADS_ASM
                if (d != dend && 4u * C <= 4095u) { /* see TN_DW3_QUADS */
                    if (XS)
                        TN_DW3_QUADS("sxtab16");
                    else
                        TN_DW3_QUADS("uxtab16");
                    continue;
                }
#endif
#if defined(__GNUC__)
#pragma GCC unroll 1
#endif
                for (; d != dend; p += 4u * C, d += 24) {
                    const uint32_t x0 = tn_ld32(p), x1 = tn_ld32(p + C);
                    const uint32_t x2 = tn_ld32(p + 2u * C), x3 = tn_ld32(p + 3u * C);
                    const uint32_t s0 = XS ? tn_sxtab16(nzx2, x0) : tn_uxtab16(nzx2, x0);
                    const uint32_t s1 = XS ? tn_sxtab16(nzx2, x1) : tn_uxtab16(nzx2, x1);
                    const uint32_t s2 = XS ? tn_sxtab16(nzx2, x2) : tn_uxtab16(nzx2, x2);
                    const uint32_t s3 = XS ? tn_sxtab16(nzx2, x3) : tn_uxtab16(nzx2, x3);
                    const uint32_t t0 = XS ? tn_sxtab16_ror8(nzx2, x0) : tn_uxtab16_ror8(nzx2, x0);
                    const uint32_t t1 = XS ? tn_sxtab16_ror8(nzx2, x1) : tn_uxtab16_ror8(nzx2, x1);
                    const uint32_t t2 = XS ? tn_sxtab16_ror8(nzx2, x2) : tn_uxtab16_ror8(nzx2, x2);
                    const uint32_t t3 = XS ? tn_sxtab16_ror8(nzx2, x3) : tn_uxtab16_ror8(nzx2, x3);
                    d[0] = tn_dw3_pack_lo(s0, s1), d[1] = tn_dw3_pack_lo(s2, s3);
                    d[2] = tn_dw3_pack_lo(t0, t1), d[3] = tn_dw3_pack_lo(t2, t3);
                    d[4] = tn_dw3_pack_hi(s0, s1), d[5] = tn_dw3_pack_hi(s2, s3);
                    d[6] = tn_dw3_pack_hi(t0, t1), d[7] = tn_dw3_pack_hi(t2, t3);
                }
            }
            if (a >= 2) { /* columns 2, 3 of the first chunk */
                a -= 2;
                tn_dw3_pair2(src, rw, a, s, C, PL, NQ, XS, nzx2);
            }
            if (W - b >= 2) { /* columns 0, 1 of the last chunk */
                tn_dw3_pair2(src, rw, b, s, C, PL, NQ, XS, nzx2);
                b += 2;
            }
        }
    }
    for (int32_t j = 0; j < W; j++) { /* the others ([0, a) and [b, W)) */
        const uint8_t *p = src + (uint32_t)j * pb;
        if (j == a && b > a) {
            j = b - 1;
            continue;
        }
        for (uint32_t c = 0; c < C; c++)
            rows[tn_dw3_at2(c, s, (uint32_t)(j + PL), NQ)] = (int16_t)(tn_get(p, c, XB, XS) - ZX);
    }
}

/* Does tn_dw3_build widen four sub-byte pixels at a time (PL even: the planes' words of a
 * pixel pair aligned for STRD; whole words of codes per pixel; STRD's post-index step of one
 * plane, 6 WP bytes, within 1020 and a constant)? */
#define TN_DW3_QUAD_FITS(PL, pb, WP)                                                           \
    (!((PL) & 1) && (pb) % 4u == 0u && 6u * (WP) <= 1020u && __builtin_constant_p(WP))

/* Sub-byte pixel j of the input row at src (ps bytes a pixel, pb of them widened: C XB / 8)
 * alone into its column of the planes at dst (tn_dw3_build): a halfword of G = 16 / XB
 * channels, one lane each. */
TN_INLINE void tn_dw3_lone(const uint8_t *src, int16_t *dst, int32_t j, uint32_t ps,
                           uint32_t pb, uint32_t WP, uint32_t XB, uint32_t XS, int32_t ZX)
{
    const uint32_t G = 16u / XB, mask = tn_lanemask(XB);
    const uint32_t sb2 = XS ? (1u << (XB - 1u)) * 0x00010001u : 0u;
    const uint32_t off2 = (((XS ? (1u << (XB - 1u)) : 0u) + (uint32_t)ZX) & 0xFFFFu) * 0x00010001u;
    const uint8_t *p = src + (uint32_t)j * ps;
    int16_t *e = dst + (uint32_t)j;
#if defined(__GNUC__)
#pragma GCC unroll 1
#endif
    for (uint32_t h = 0; h < pb; h += 2u, p += 2, e += 3u * G * WP) {
        uint16_t u0;
        TN_MEMCPY(&u0, p, 2);
        TN_UNROLL
        for (uint32_t g = 0; g < G; g++) {
            uint32_t t = ((uint32_t)u0 >> (g * XB)) & mask;
            if (XS) t ^= sb2;
            if (XS || ZX != 0) t = tn_ssub16(t, off2);
            e[3u * g * WP] = (int16_t)t;
        }
    }
}

/* Widen input row i (-PT <= i < H + PB) into slot s of the scratch planes (see above): its
 * columns PL .. PL + W - 1 (the padding columns hold the padding value from the start); C
 * channels from in on, of pixels of CS channels (C < CS: a block of the tail form, below). */
TN_INLINE void tn_dw3_build(const uint8_t *in, int16_t *TN_RESTRICT rows, int32_t i, uint32_t s,
                            int32_t H, int32_t W, uint32_t C, uint32_t CS, int32_t PL,
                            uint32_t WP, uint32_t XB, uint32_t XS, int32_t ZX, uint32_t PADZERO)
{
    const int16_t pad = (int16_t)(PADZERO ? -ZX : 0);
    const uint32_t nzx2 = ((uint32_t)(-ZX) & 0xFFFFu) * 0x00010001u;
    int16_t *dst = rows + s * WP + PL;
    if (i < 0 || i >= H) { /* a padding row */
        for (uint32_t c = 0; c < C; c++, dst += 3u * WP)
            for (int32_t q = 0; q < W; q++) dst[q] = pad;
        return;
    }
    if (XB == 8u) {
        const uint8_t *src = in + (uint32_t)i * (uint32_t)W * CS;
        int16_t *d = dst;
        for (int32_t j = 0; j + 2 <= W; j += 2, d += 2) {
            const uint8_t *p = src + (uint32_t)j * CS;
            int16_t *e = d;
            for (uint32_t cg = 0; cg < C; cg += 4u, p += 4, e += 12u * WP) {
                const uint32_t x0 = tn_ld32(p), x1 = tn_ld32(p + CS);
                const uint32_t s0 = XS ? tn_sxtab16(nzx2, x0) : tn_uxtab16(nzx2, x0);
                const uint32_t s1 = XS ? tn_sxtab16(nzx2, x1) : tn_uxtab16(nzx2, x1);
                const uint32_t t0 = XS ? tn_sxtab16_ror8(nzx2, x0) : tn_uxtab16_ror8(nzx2, x0);
                const uint32_t t1 = XS ? tn_sxtab16_ror8(nzx2, x1) : tn_uxtab16_ror8(nzx2, x1);
                const uint32_t v0 = tn_dw3_pack_lo(s0, s1), v2 = tn_dw3_pack_hi(s0, s1);
                const uint32_t v1 = tn_dw3_pack_lo(t0, t1), v3 = tn_dw3_pack_hi(t0, t1);
                TN_MEMCPY(e, &v0, 4);
                TN_MEMCPY(e + 3u * WP, &v1, 4);
                TN_MEMCPY(e + 6u * WP, &v2, 4);
                TN_MEMCPY(e + 9u * WP, &v3, 4);
            }
        }
    } else {
        /* sub-byte codes: a halfword of G = 16 / XB channels of pixel j beside the same
         * halfword of pixel j + 1 (C XB / 8 bytes per pixel, even: dw3_fits; a word of 2 G
         * channels at a time, a last halfword alone), then per channel one AND of the shifted
         * pair and, for a signed code or z_x != 0, one SSUB16 of (sign bit + z_x) after
         * flipping the sign bit (two's complement of XB bits) */
        const uint32_t pb = C * XB / 8u, ps = CS * XB / 8u, G = 16u / XB;
        const uint32_t mask = tn_lanemask(XB);
        const uint32_t sb2 = XS ? (1u << (XB - 1u)) * 0x00010001u : 0u;
        const uint32_t off2 = (((XS ? (1u << (XB - 1u)) : 0u) + (uint32_t)ZX) & 0xFFFFu)
                              * 0x00010001u;
        const uint8_t *src = in + (uint32_t)i * (uint32_t)W * ps;
        int16_t *d = dst;
        int32_t j = 0;
#if TN_M7_ASM
        if (TN_DW3_QUAD_FITS(PL, pb, WP)) {
            /* four pixels at a time: per channel the words of pixels (j, j + 1) and (j + 2,
             * j + 3), adjacent in its plane, by one STRD (word aligned: PL even) that steps on
             * to the next channel's plane: 35 instructions per 32 codes where two pixels at a
             * time took 23 per 16. Not for an odd PL (pixel 0 alone, then the quads): measured
             * on VWW w4a4, -0.1 % instructions for +700 B of code */
            for (; j + 4 <= W; j += 4, d += 4) {
                const uint8_t *p = src + (uint32_t)j * ps;
                int16_t *e = d;
#if defined(__GNUC__)
#pragma GCC unroll 1
#endif
                for (uint32_t h = 0; h < pb; h += 4u, p += 4) {
                    const uint32_t x0 = tn_ld32(p), x1 = tn_ld32(p + ps);
                    const uint32_t x2 = tn_ld32(p + 2u * ps), x3 = tn_ld32(p + 3u * ps);
                    const uint32_t v0 = tn_dw3_pack_lo(x0, x1), v1 = tn_dw3_pack_hi(x0, x1);
                    const uint32_t w0 = tn_dw3_pack_lo(x2, x3), w1 = tn_dw3_pack_hi(x2, x3);
                    TN_UNROLL
                    for (uint32_t g = 0; g < 2u * G; g++) {
                        const uint32_t a = g < G ? v0 : v1, b = g < G ? w0 : w1;
                        uint32_t t = (a >> (g % G * XB)) & mask, u = (b >> (g % G * XB)) & mask;
                        if (XS) t ^= sb2, u ^= sb2;
                        if (XS || ZX != 0) t = tn_ssub16(t, off2), u = tn_ssub16(u, off2);
                        __asm__ volatile("strd %1, %2, [%0], %3"
                                         : "+r"(e) : "r"(t), "r"(u), "i"(6u * WP) : "memory");
                    }
                }
            }
        }
#endif
        for (; j + 2 <= W; j += 2, d += 2) {
            const uint8_t *p = src + (uint32_t)j * ps;
            int16_t *e = d;
            uint32_t h = 0;
            /* a word of 2 G channels of pixel j beside the same word of pixel j + 1: the two
             * halfword pairs by PKHBT / PKHTB (two loads and two packs per 2 G channels where
             * halfword loads take four loads and two ORRs) */
#if defined(__GNUC__)
#pragma GCC unroll 1
#endif
            for (; h + 4u <= pb; h += 4u, p += 4, e += 6u * G * WP) {
                const uint32_t x0 = tn_ld32(p), x1 = tn_ld32(p + ps);
                const uint32_t v0 = tn_dw3_pack_lo(x0, x1), v1 = tn_dw3_pack_hi(x0, x1);
                TN_UNROLL
                for (uint32_t g = 0; g < G; g++) {
                    uint32_t t = (v0 >> (g * XB)) & mask, u = (v1 >> (g * XB)) & mask;
                    if (XS) t ^= sb2, u ^= sb2;
                    if (XS || ZX != 0) t = tn_ssub16(t, off2), u = tn_ssub16(u, off2);
                    TN_MEMCPY(e + 3u * g * WP, &t, 4);
                    TN_MEMCPY(e + 3u * (g + G) * WP, &u, 4);
                }
            }
            if (h < pb) { /* a last halfword (C XB % 32 == 16) */
                uint16_t u0, u1;
                uint32_t v;
                TN_MEMCPY(&u0, p, 2);
                TN_MEMCPY(&u1, p + ps, 2);
                v = (uint32_t)u0 | ((uint32_t)u1 << 16);
                TN_UNROLL
                for (uint32_t g = 0; g < G; g++) {
                    uint32_t t = (v >> (g * XB)) & mask;
                    if (XS) t ^= sb2;
                    if (XS || ZX != 0) t = tn_ssub16(t, off2);
                    TN_MEMCPY(e + 3u * g * WP, &t, 4);
                }
            }
        }
        if (j < W) /* the last pixel alone */
            tn_dw3_lone(src, dst, j, ps, pb, WP, XB, XS, ZX);
        return;
    }
    if (W & 1) {
        const uint8_t *p = in + ((uint32_t)i * (uint32_t)W + (uint32_t)(W - 1)) * (CS * XB / 8u);
        for (uint32_t c = 0; c < C; c++)
            dst[c * 3u * WP + (uint32_t)(W - 1)] = (int16_t)(tn_get(p, c, XB, XS) - ZX);
    }
}

#if TN_M7_ASM
/* tn_dw3_channel at stride 1 or 2 in assembly (TN_DW3_FITS1: compact weights, DWQ 2 / 3 with
 * z_out added after the shift (floor((h + z_out 2^K) / 2^K) = floor(h / 2^K) + z_out), no
 * clamp inside the type's range, 6+ outputs, immediates in range): two outputs
 * take 27 instructions at stride 1, 29 at stride 2 (+4 for a code above a byte's first: the
 * read-modify-write) where GCC's code took 34 to 39 (it spilled two of the 16 values the loop
 * holds), and the channel's set-up 10 where GCC's took about 35 (VWW w4a4, 6 x 6 x 128).
 * Fourteen registers hold the six weight registers A0 .. B2, m0, K, the plane pointer p (the
 * kernel rows at immediate offsets R0 .. R2, advanced SW words per two outputs), o, two
 * accumulators and two temporaries; an 8-byte block of stack the code reserves itself holds
 * the bias ([sp], one LDR per two outputs: the accumulators start from it) and the loop's end
 * ([sp, #4]). On entry A0, A1, A2 hold the
 * weight words of the kernel rows at R0, R1, R2, a0 the bias. */
/* kernel row R (A = (d0, d1), B = (d1, d2)) into both accumulators: stride 1 from
 * p0 = (x0, x1), p1 = (x2, x3): a0 += p0 . A + x2 d2, a1 += p1 . B + x1 d0; stride 2 (p2 =
 * (x4, x5) two words on): a0 += p0 . A + x2 d2, a1 += p1 . A + x4 d2. ACC1: a1's running sum
 * (a0 on the first row: both start from the bias) */
#define TN_DW3_CHAN1_MAC(R, A, B, ACC1)                                                        \
    "ldrd %[t0], %[t1], [%[p], #(" R " * 4)]\n\t"                                              \
    ".if %c[sw] == 1\n\t"                                                                      \
    "smlad %[a1], %[t1], %[" B "], %[" ACC1 "]\n\t"                                            \
    "smlad %[a0], %[t0], %[" A "], %[a0]\n\t"                                                  \
    "smlabt %[a0], %[t1], %[" B "], %[a0]\n\t"                                                 \
    "smlatb %[a1], %[t0], %[" A "], %[a1]\n\t"                                                 \
    ".else\n\t"                                                                                \
    "smlad %[a1], %[t1], %[" A "], %[" ACC1 "]\n\t"                                            \
    "smlad %[a0], %[t0], %[" A "], %[a0]\n\t"                                                  \
    "ldr %[t0], [%[p], #(" R " * 4 + 8)]\n\t"                                                  \
    "smlabt %[a0], %[t1], %[" B "], %[a0]\n\t"                                                 \
    "smlabt %[a1], %[t0], %[" B "], %[a1]\n\t"                                                 \
    ".endif\n\t"
#define TN_DW3_CHAN1_ONE(R, A, B)                                                              \
    "ldrd %[t0], %[t1], [%[p], #(" R " * 4)]\n\t"                                              \
    "smlad %[a0], %[t0], %[" A "], %[a0]\n\t"                                                  \
    "smlabt %[a0], %[t1], %[" B "], %[a0]\n\t"
/* the pair's three kernel rows (a0 from the bias, a1 from a0's start: TN_DW3_CHAN1_MAC) */
#define TN_DW3_CHAN1_MAC3                                                                      \
    TN_DW3_CHAN1_MAC("%c[r0]", "A0", "B0", "a0")                                               \
    TN_DW3_CHAN1_MAC("%c[r1]", "A1", "B1", "a1")                                               \
    TN_DW3_CHAN1_MAC("%c[r2]", "A2", "B2", "a1")
/* sub-byte codes (SH: the field's shift) merged with the byte's other fields, then the second
 * output's byte stored (the first's store differs: in place, or post-incremented in the loop) */
#define TN_DW3_CHAN1_MERGE2                                                                    \
    ".if %c[sh]\n\t"                                                                           \
    "ldrb %[t0], [%[o]]\n\t"                                                                   \
    "ldrb %[t1], [%[o], #%c[op]]\n\t"                                                          \
    "orr %[a0], %[t0], %[a0], lsl #%c[sh]\n\t"                                                 \
    "orr %[a1], %[t1], %[a1], lsl #%c[sh]\n\t"                                                 \
    ".endif\n\t"                                                                               \
    "strb %[a1], [%[o], #%c[op]]\n\t"
/* accumulator a times m0 (SMMUL), shifted by K (ASR), plus the output zero point: the
 * requantization both channel loops' assembly share before their saturation */
#define TN_DW3_SCALE(a)                                                                        \
    "smmul %[" a "], %[" a "], %[m0]\n\t"                                                      \
    "asr %[" a "], %[" a "], %[k]\n\t"                                                         \
    ".if %c[zp] > 0\n\t"                                                                       \
    "add %[" a "], %[" a "], #%c[zp]\n\t"                                                      \
    ".elseif %c[zp] < 0\n\t"                                                                   \
    "sub %[" a "], %[" a "], #-%c[zp]\n\t"                                                     \
    ".endif\n\t"
/* the code of accumulator a (after SMMUL, ASR, SAT) masked to OB bits when signed below the
 * byte's top (tn_dw3_put) */
#define TN_DW3_CHAN1_RQ(SAT, a)                                                                \
    TN_DW3_SCALE(a)                                                                            \
    SAT " %[" a "], #%c[ob], %[" a "]\n\t"                                                     \
    ".if %c[msk]\n\t"                                                                          \
    "and %[" a "], %[" a "], #((1 << %c[ob]) - 1)\n\t"                                         \
    ".endif\n\t"
/* the last output (column OW - 1) of an odd OW into a1 from the bias in a0 (OW < 4: before
 * the pair, so that no stack block keeps the bias; not for 2-bit outputs, whose codes go to
 * the bytes of the plane of kernel row 0 first, tn_dw3_row: the pair still reads the column
 * the last code's byte lands in) */
#define TN_DW3_CHAN1_ONE1(R, A, B, ACC)                                                        \
    "ldrd %[t0], %[t1], [%[p], #(" R " * 4 + %c[ow] / 2 * %c[sw] * 4)]\n\t"                   \
    "smlad %[a1], %[t0], %[" A "], %[" ACC "]\n\t"                                             \
    "smlabt %[a1], %[t1], %[" B "], %[a1]\n\t"
#define TN_DW3_CHAN1_ASM(SAT, LOAD)                                                            \
    LOAD                                                                                       \
    "sxtb16 %[B0], %[A0], ror #8\n\t"                                                          \
    "sxtb16 %[A0], %[A0]\n\t"                                                                  \
    "sxtb16 %[B1], %[A1], ror #8\n\t"                                                          \
    "sxtb16 %[A1], %[A1]\n\t"                                                                  \
    "sxtb16 %[B2], %[A2], ror #8\n\t"                                                          \
    "sxtb16 %[A2], %[A2]\n\t"                                                                  \
    ".if %c[ow] < 4\n\t"                                                                       \
    ".if %c[ow] & 1\n\t"                                                                       \
    TN_DW3_CHAN1_ONE1("%c[r0]", "A0", "B0", "a0")                                              \
    TN_DW3_CHAN1_ONE1("%c[r1]", "A1", "B1", "a1")                                              \
    TN_DW3_CHAN1_ONE1("%c[r2]", "A2", "B2", "a1")                                              \
    TN_DW3_CHAN1_RQ(SAT, "a1")                                                                 \
    ".if %c[sh]\n\t"                                                                           \
    "ldrb %[t0], [%[o], #(2 * %c[op])]\n\t"                                                    \
    "orr %[a1], %[t0], %[a1], lsl #%c[sh]\n\t"                                                 \
    ".endif\n\t"                                                                               \
    "strb %[a1], [%[o], #(2 * %c[op])]\n\t"                                                    \
    ".endif\n\t"                                                                               \
    TN_DW3_CHAN1_MAC3                                                                          \
    TN_DW3_CHAN1_RQ(SAT, "a0") TN_DW3_CHAN1_RQ(SAT, "a1")                                      \
    TN_DW3_CHAN1_MERGE2                                                                        \
    "strb %[a0], [%[o]]\n\t"                                                                   \
    ".else\n\t"                                                                                \
    "sub sp, sp, #8\n\t"                                                                       \
    "str %[a0], [sp]\n\t"                                                                      \
    "add %[t1], %[p], #(%c[ow] / 2 * %c[sw] * 4)\n\t"                                          \
    "str %[t1], [sp, #4]\n"                                                                     \
    "1:\n\t"                                                                                   \
    "ldr %[a0], [sp]\n\t"                                                                      \
    TN_DW3_CHAN1_MAC3                                                                          \
    "add %[p], %[p], #(%c[sw] * 4)\n\t"                                                        \
    TN_DW3_CHAN1_RQ(SAT, "a0") TN_DW3_CHAN1_RQ(SAT, "a1")                                      \
    TN_DW3_CHAN1_MERGE2                                                                        \
    ".if 2 * %c[op] <= 255\n\t"                                                                \
    "strb %[a0], [%[o]], #(2 * %c[op])\n\t"                                                    \
    ".else\n\t"                                                                                \
    "strb %[a0], [%[o]]\n\t"                                                                   \
    "add %[o], %[o], #(2 * %c[op])\n\t"                                                        \
    ".endif\n\t"                                                                               \
    "ldr %[t0], [sp, #4]\n\t"                                                                  \
    "cmp %[p], %[t0]\n\t"                                                                      \
    "bne 1b\n\t"                                                                               \
    ".if %c[ow] & 1\n\t"                                                                       \
    "ldr %[a0], [sp]\n\t"                                                                      \
    TN_DW3_CHAN1_ONE("%c[r0]", "A0", "B0")                                                     \
    TN_DW3_CHAN1_ONE("%c[r1]", "A1", "B1")                                                     \
    TN_DW3_CHAN1_ONE("%c[r2]", "A2", "B2")                                                     \
    TN_DW3_CHAN1_RQ(SAT, "a0")                                                                 \
    ".if %c[sh]\n\t"                                                                           \
    "ldrb %[t0], [%[o]]\n\t"                                                                   \
    "orr %[a0], %[t0], %[a0], lsl #%c[sh]\n\t"                                                 \
    ".endif\n\t"                                                                               \
    "strb %[a0], [%[o]]\n\t"                                                                   \
    ".endif\n\t"                                                                               \
    "add sp, sp, #8\n\t"                                                                       \
    ".endif\n\t"
/* LOAD: the weight words (and with DWQ 3 the bias) loaded here from t0, the channel's words
 * (the full form: kernel rows 0, 1, 2 at R0, R1, R2, two LDRD), else "" (loaded by the caller
 * into A0, A1, A2 and a0); CA, C0, CT: the constraints of A0 .. A2, a0, t0 to match */
#define TN_DW3_LOAD3 "ldrd %[A0], %[A1], [%[t0]]\n\tldrd %[A2], %[a0], [%[t0], #8]\n\t"
#define TN_DW3_LOAD2 "ldrd %[A0], %[A1], [%[t0]]\n\tldr %[A2], [%[t0], #8]\n\t"
#define TN_DW3_CHAN1(SAT, LOAD, CA, C0, CT)                                                    \
    __asm__ volatile(TN_DW3_CHAN1_ASM(SAT, LOAD)                                               \
                     : [A0] CA(A0), [B0] "=&r"(B0), [A1] CA(A1), [B1] "=&r"(B1),               \
                       [A2] CA(A2), [B2] "=&r"(B2), [p] "+&r"(pq), [o] "+&r"(o),               \
                       [a0] C0(a0), [a1] "=&r"(a1), [t0] CT(t0), [t1] "=&r"(t1)                \
                     : [m0] "r"(m0), [k] "r"(k), [r0] "i"(R0), [r1] "i"(R1), [r2] "i"(R2),     \
                       [op] "i"(OP), [sh] "i"(SH),                                             \
                       [ob] "i"(OB), [ow] "i"(OW), [sw] "i"(SW),                               \
                       [msk] "i"(OS && SH + OB < 8u ? 1u : 0u), [zp] "i"(ZP)                   \
                     : "memory", "cc")
/* Does tn_dw3_chan1 run this channel (see above; LDRD's offsets within 1020 bytes, STRB's
 * within 4095, every immediate a constant: not at -Og, whose loops over the codes of a byte
 * stay rolled)? At least 6 outputs per row, or 3 (no loop, no stack block; not 2-bit outputs:
 * TN_DW3_CHAN1_ONE1): with 4 or 5, GCC's code took fewer (measured: DS-CNN w4a4's 5 outputs
 * 224,876 vs 234,715 instructions a layer). */
#define TN_DW3_FITS1(SW, CH, WIDE, DWQ, ZP, OB, OS, LO, HI, R0, R1, R2, OP, SH, OW)           \
    (!(CH) && !(WIDE) && ((DWQ) == 2u || (DWQ) == 3u) && (ZP) >= -255 && (ZP) <= 255          \
     && (LO) == ((OS) ? -(1 << ((OB) - 1u)) : 0)                                                \
     && (HI) == ((OS) ? (1 << ((OB) - 1u)) - 1 : (1 << (OB)) - 1) && (R0) <= 253u             \
     && (R1) <= 253u && (R2) <= 253u && (OP) <= 2047u                                         \
     && ((OW) >= 6 || ((OW) == 3 && (OB) != 2u))                                              \
     && __builtin_constant_p((R0) + (R1) + (R2) + (OP) + (SH) + (OB) + (OS) + (OW) + (SW) + (ZP)))
#endif

/* One channel of one output row: OW outputs from its planes at p (word aligned), kernel row r
 * in the plane at word offset Rr (constants: one pointer, immediate offsets, LDRD pairs);
 * outputs at o, one pixel every OP bytes, the channel's code at bit SH of its byte. */
TN_INLINE void tn_dw3_channel(const tn_layer_t *l, const uint8_t *wp, const int32_t *bp,
                              const int32_t *mp, const int8_t *np, const uint32_t *p, uint8_t *o,
                              uint32_t c, uint32_t ci, uint32_t R0, uint32_t R1, uint32_t R2, uint32_t K0,
                              uint32_t K1, uint32_t K2, uint32_t OP, uint32_t SH, int32_t OW, int32_t SW, uint32_t CH, uint32_t WIDE,
                              uint32_t DWQ,
                              uint32_t OB, uint32_t OS, int32_t LO, int32_t HI, uint32_t NM,
                              uint32_t ROUND, TN_RQ_ARGS)
{
    /* WIDE: per channel the six int16 weight pairs themselves (28 bytes: asymmetric weights,
     * w - z_w beyond int8); else three words of int8 [d_r0, d_r1, d_r1, d_r2] (16 bytes) */
    const uint8_t *wb = wp + ci * (WIDE ? 28u : 16u); /* ci: the channel's index in wp */
    /* K0, K1, K2: the kernel rows of the planes at R0, R1, R2 (0, 1, 2 but in the tail form,
     * whose planes stay put while the rows rotate: the weights rotate instead, per channel,
     * where the loop's loads keep their immediate offsets) */
    const uint32_t WR = WIDE ? 8u : 4u; /* weight bytes per kernel row */
    /* DBL: with enough outputs per row, the weights and the bias are doubled once here (|2 d|
     * <= 510 fits the int16 lanes; |2 acc| < 2^31 for DWQ = 1) so that the accumulators are
     * 2 acc, which tn_dw3_out's SMMLAR takes without a shift per output */
    const uint32_t DBL = DWQ == 1u && OW >= 8;
    uint32_t A0, B0, A1, B1, A2, B2;
#if TN_M7_ASM
    if (TN_DW3_FITS1(SW, CH, WIDE, DWQ, ZP, OB, OS, LO, HI, R0, R1, R2, OP, SH, OW)) {
        /* K = max(-(n0 + 1), 0) (DWQ 2: every n0 <= -1) by one USAT */
        const uint32_t k = tn_usat5(~(NM == 1u ? N0 : (int32_t)np[c]));
        const int32_t m0 = NM == 1u ? M0 : mp[c];
        const uint32_t *pq = p;
        uint32_t a0, a1, t0 = (uint32_t)wb, t1;
        if (__builtin_constant_p(K0) && K0 == 0u && K1 == 1u && K2 == 2u) {
            /* the full form: the weights (and DWQ 3's bias) by two LDRD in the assembly */
            if (DWQ == 3u) {
                if (OS) TN_DW3_CHAN1("ssat", TN_DW3_LOAD3, "=&r", "=&r", "+&r");
                else TN_DW3_CHAN1("usat", TN_DW3_LOAD3, "=&r", "=&r", "+&r");
            } else {
                a0 = (uint32_t)bp[c];
                if (OS) TN_DW3_CHAN1("ssat", TN_DW3_LOAD2, "=&r", "+&r", "+&r");
                else TN_DW3_CHAN1("usat", TN_DW3_LOAD2, "=&r", "+&r", "+&r");
            }
        } else {
            /* the weight words of the planes' kernel rows (K0 .. K2 change per row in the
             * tail form) */
            a0 = DWQ == 3u ? tn_ld32(wb + 12u) : (uint32_t)bp[c];
            A0 = tn_ld32(wb + 4u * K0), A1 = tn_ld32(wb + 4u * K1), A2 = tn_ld32(wb + 4u * K2);
            if (OS) TN_DW3_CHAN1("ssat", "", "+&r", "+&r", "=&r");
            else TN_DW3_CHAN1("usat", "", "+&r", "+&r", "=&r");
        }
        (void)A0, (void)B0, (void)A1, (void)B1, (void)A2, (void)B2, (void)pq, (void)o;
        (void)a0, (void)a1, (void)t0, (void)t1;
        return;
    }
#endif
    if (WIDE) {
        A0 = tn_ld32(wb + K0 * WR), B0 = tn_ld32(wb + K0 * WR + 4u);
        A1 = tn_ld32(wb + K1 * WR), B1 = tn_ld32(wb + K1 * WR + 4u);
        A2 = tn_ld32(wb + K2 * WR), B2 = tn_ld32(wb + K2 * WR + 4u);
    } else {
        const uint32_t w0 = tn_ld32(wb + K0 * WR), w1 = tn_ld32(wb + K1 * WR);
        const uint32_t w2 = tn_ld32(wb + K2 * WR);
        A0 = tn_dw3_sxtb16(w0), B0 = tn_dw3_sxtb16_ror8(w0);
        A1 = tn_dw3_sxtb16(w1), B1 = tn_dw3_sxtb16_ror8(w1);
        A2 = tn_dw3_sxtb16(w2), B2 = tn_dw3_sxtb16_ror8(w2);
    }
    A0 = tn_dw3_dbl(A0, DBL), B0 = tn_dw3_dbl(B0, DBL), A1 = tn_dw3_dbl(A1, DBL);
    B1 = tn_dw3_dbl(B1, DBL), A2 = tn_dw3_dbl(A2, DBL), B2 = tn_dw3_dbl(B2, DBL);
    {
    /* DWQ = 3: the bias shifted left by SL in the blob's fourth word (the weights are too:
     * requant_floor's left shift n0 + 1 of the accumulator, n0 >= 0), CC = z_out 2^K formed
     * here */
    const int32_t bias = DWQ == 3u ? (int32_t)tn_ld32(wb + (WIDE ? 24u : 12u))
                                   : (int32_t)((uint32_t)bp[c] << DBL);
    const int32_t m0 = DWQ ? (NM == 1u ? M0 : mp[c]) : 0;
    const int32_t n0 = DWQ ? (NM == 1u ? N0 : (int32_t)np[c]) : 0;
    const uint32_t k = DWQ == 1u ? (uint32_t)(-n0) : DWQ == 2u ? (uint32_t)(-(n0 + 1))
                       : DWQ == 3u && n0 < -1 ? (uint32_t)(-(n0 + 1)) : 0u;
    const int32_t cc = DWQ == 3u ? (int32_t)((uint32_t)ZP << k)
                       : DWQ ? (int32_t)tn_ld32(wb + (WIDE ? 24u : 12u)) : 0;
    const uint32_t D01 = tn_dw3_pack_hi(B0, B1); /* (d_02, d_12): stride 2 */
    const uint32_t *pq = p;
    /* words per two outputs: SW column pairs of the plane, or a chunk (CH: stride 2, 8-bit
     * inputs); the word p2 = (x_q+4, x_q+5) two words on, or a chunk on */
    const uint32_t ST = CH ? 24u : (uint32_t)SW, P2 = CH ? 24u : 2u;
    const uint32_t *const end = p + (uint32_t)(OW / 2) * ST;
#if defined(__GNUC__)
#pragma GCC unroll 1
#endif
    for (; pq != end; pq += ST, o += 2u * OP) {
        int32_t a0, a1;
        if (SW == 1) {
            uint32_t p0 = pq[R0], p1 = pq[R0 + 1];
            a0 = tn_dw3_smlabt(p1, B0, tn_smlad(p0, A0, bias));
            a1 = tn_dw3_smlatb(p0, A0, tn_smlad(p1, B0, bias));
            p0 = pq[R1], p1 = pq[R1 + 1];
            a0 = tn_dw3_smlabt(p1, B1, tn_smlad(p0, A1, a0));
            a1 = tn_dw3_smlatb(p0, A1, tn_smlad(p1, B1, a1));
            p0 = pq[R2], p1 = pq[R2 + 1];
            a0 = tn_dw3_smlabt(p1, B2, tn_smlad(p0, A2, a0));
            a1 = tn_dw3_smlatb(p0, A2, tn_smlad(p1, B2, a1));
        } else { /* d_02 and d_12 share one register (D01: fewer live registers, no spill) */
            uint32_t p0 = pq[R0], p1 = pq[R0 + 1], p2 = pq[R0 + P2];
            a0 = tn_smlabb(p1, D01, tn_smlad(p0, A0, bias));
            a1 = tn_smlabb(p2, D01, tn_smlad(p1, A0, bias));
            p0 = pq[R1], p1 = pq[R1 + 1], p2 = pq[R1 + P2];
            a0 = tn_dw3_smlabt(p1, D01, tn_smlad(p0, A1, a0));
            a1 = tn_dw3_smlabt(p2, D01, tn_smlad(p1, A1, a1));
            p0 = pq[R2], p1 = pq[R2 + 1], p2 = pq[R2 + P2];
            a0 = tn_dw3_smlabt(p1, B2, tn_smlad(p0, A2, a0));
            a1 = tn_dw3_smlabt(p2, B2, tn_smlad(p1, A2, a1));
        }
        tn_dw3_put(o, tn_dw3_out(l, a0, c, m0, cc, k, DWQ, DBL, OB, OS, LO, HI, NM, ROUND,
                                 TN_RQ), OB, OS, SH);
        tn_dw3_put(o + OP, tn_dw3_out(l, a1, c, m0, cc, k, DWQ, DBL, OB, OS, LO, HI, NM,
                                      ROUND, TN_RQ), OB, OS, SH);
    }
    if (OW & 1) { /* the last output alone (its column (OW - 1) SW is even) */
        int32_t a0 = tn_dw3_smlabt(pq[R0 + 1], B0, tn_smlad(pq[R0], A0, bias));
        a0 = tn_dw3_smlabt(pq[R1 + 1], B1, tn_smlad(pq[R1], A1, a0));
        a0 = tn_dw3_smlabt(pq[R2 + 1], B2, tn_smlad(pq[R2], A2, a0));
        tn_dw3_put(o, tn_dw3_out(l, a0, c, m0, cc, k, DWQ, DBL, OB, OS, LO, HI, NM, ROUND,
                                 TN_RQ), OB, OS, SH);
    }
    }
}

#if TN_M7_ASM
/* One output row of the stride-2 layout in assembly, every channel (tn_dw3_row2): 8-bit
 * outputs, compact weights, per-channel m0 / n0, DWQ = 1 or 2, no clamp inside the type's
 * range (TN_DW3_FITS2). Two outputs take 32 instructions (DWQ = 1 doubled; +2 undoubled, -2
 * for DWQ = 2) where GCC's code took 39 (it spilled four registers): fourteen registers hold
 * the five weight registers A0, A1, A2, D = (d_02, d_12), B2, cc, the loop's end, its two
 * pointers p (the channel's words of slot S2; rows 0 and 1 at immediate byte offsets, advanced
 * 96 bytes, a chunk of three slots, by the last load's writeback) and o, two accumulators and
 * three temporaries. A 48-byte block of stack the code reserves itself holds the rest: [sp]
 * the bias twice and [sp, #8] m0 and K (one LDRD each per two outputs), [sp, #16] the ends of
 * the bias and m0 arrays, [sp, #24] of the n0 and weight arrays, indexed by the channel
 * counter c - C ([sp, #40], counting up to 0). After a channel p and o step back by what its
 * loop advanced them (constants) to the next channel's. The per-channel set-up is
 * tn_dw3_channel's: three words of int8 weights widened (SXTB16), doubled (SADD16) with the
 * bias when DBL. */
#define TN_DW3_ROW2_ASM(RQ, SAT, STORE)                                                        \
    "sub sp, sp, #48\n\t"                                                                      \
    "strd %[t0], %[t1], [sp, #16]\n\t"                                                         \
    "strd %[a0], %[a1], [sp, #24]\n"                                                           \
    "2:\n\t"                                                                                   \
    "ldrd %[t0], %[t1], [sp, #16]\n\t"                                                         \
    "ldr %[a0], [%[t0], %[t2], lsl #2]\n\t"                                                    \
    "ldr %[a1], [%[t1], %[t2], lsl #2]\n\t"                                                    \
    "ldrd %[t0], %[t1], [sp, #24]\n\t"                                                         \
    "ldrsb %[end], [%[t0], %[t2]]\n\t"                                                         \
    "add %[t1], %[t1], %[t2], lsl #4\n\t"                                                      \
    "str %[t2], [sp, #40]\n\t"                                                                 \
    "ldrd %[A0], %[A1], [%[t1]]\n\t"                                                           \
    "ldrd %[A2], %[cc], [%[t1], #8]\n\t"                                                       \
    "sxtb16 %[t1], %[A0], ror #8\n\t"                                                          \
    "sxtb16 %[A0], %[A0]\n\t"                                                                  \
    "sxtb16 %[t2], %[A1], ror #8\n\t"                                                          \
    "sxtb16 %[A1], %[A1]\n\t"                                                                  \
    "pkhtb %[D], %[t2], %[t1], asr #16\n\t"                                                    \
    "sxtb16 %[B2], %[A2], ror #8\n\t"                                                          \
    "sxtb16 %[A2], %[A2]\n\t"                                                                  \
    ".if %c[f] & 1\n\t"                                                                        \
    "sadd16 %[A0], %[A0], %[A0]\n\t"                                                           \
    "sadd16 %[A1], %[A1], %[A1]\n\t"                                                           \
    "sadd16 %[A2], %[A2], %[A2]\n\t"                                                           \
    "sadd16 %[D], %[D], %[D]\n\t"                                                              \
    "sadd16 %[B2], %[B2], %[B2]\n\t"                                                           \
    "lsl %[a0], %[a0], #1\n\t"                                                                 \
    ".endif\n\t"                                                                               \
    ".if (%c[f] & 2) != 0\n\t"                                                                 \
    "rsb %[end], %[end], #0\n\t"                                                               \
    ".else\n\t"                                                                                \
    "mvn %[end], %[end]\n\t"                                                                   \
    ".endif\n\t"                                                                               \
    "strd %[a0], %[a0], [sp]\n\t"                                                              \
    "strd %[a1], %[end], [sp, #8]\n\t"                                                         \
    ".if %c[n2]\n\t"                                                                           \
    "addw %[end], %[p], #(%c[n2] * 96)\n"                                                      \
    "1:\n\t"                                                                                   \
    "ldrd %[a0], %[a1], [sp]\n\t"                                                              \
    "ldrd %[t0], %[t1], [%[p], %[r0]]\n\t"                                                     \
    "smlad %[a0], %[t0], %[A0], %[a0]\n\t"                                                     \
    "smlabb %[a0], %[t1], %[D], %[a0]\n\t"                                                     \
    "smlad %[a1], %[t1], %[A0], %[a1]\n\t"                                                     \
    "ldr %[t0], [%[p], #(%c[r0] + 96)]\n\t"                                                    \
    "smlabb %[a1], %[t0], %[D], %[a1]\n\t"                                                     \
    "ldrd %[t0], %[t1], [%[p], %[r1]]\n\t"                                                     \
    "smlad %[a0], %[t0], %[A1], %[a0]\n\t"                                                     \
    "smlabt %[a0], %[t1], %[D], %[a0]\n\t"                                                     \
    "smlad %[a1], %[t1], %[A1], %[a1]\n\t"                                                     \
    "ldr %[t0], [%[p], #(%c[r1] + 96)]\n\t"                                                    \
    "smlabt %[a1], %[t0], %[D], %[a1]\n\t"                                                     \
    "ldrd %[t0], %[t1], [%[p]]\n\t"                                                            \
    "smlad %[a0], %[t0], %[A2], %[a0]\n\t"                                                     \
    "smlabt %[a0], %[t1], %[B2], %[a0]\n\t"                                                    \
    "smlad %[a1], %[t1], %[A2], %[a1]\n\t"                                                     \
    "ldr %[t0], [%[p], #96]!\n\t"                                                              \
    "smlabt %[a1], %[t0], %[B2], %[a1]\n\t"                                                    \
    "ldrd %[t0], %[t1], [sp, #8]\n\t"                                                          \
    RQ("a0") RQ("a1")                                                                          \
    "asr %[a0], %[a0], %[t1]\n\t"                                                              \
    "asr %[a1], %[a1], %[t1]\n\t"                                                              \
    SAT " %[a0], #8, %[a0]\n\t"                                                                \
    SAT " %[a1], #8, %[a1]\n\t"                                                                \
    "strb %[a1], [%[o], %[op]]\n\t"                                                            \
    STORE                                                                                      \
    "cmp %[p], %[end]\n\t"                                                                     \
    "bne 1b\n\t"                                                                               \
    ".endif\n\t"                                                                               \
    ".if %c[f] & 4\n\t"                                                                        \
    "ldr %[a0], [sp]\n\t"                                                                      \
    "ldrd %[t0], %[t1], [%[p], %[r0]]\n\t"                                                     \
    "smlad %[a0], %[t0], %[A0], %[a0]\n\t"                                                     \
    "smlabb %[a0], %[t1], %[D], %[a0]\n\t"                                                     \
    "ldrd %[t0], %[t1], [%[p], %[r1]]\n\t"                                                     \
    "smlad %[a0], %[t0], %[A1], %[a0]\n\t"                                                     \
    "smlabt %[a0], %[t1], %[D], %[a0]\n\t"                                                     \
    "ldrd %[t0], %[t1], [%[p]]\n\t"                                                            \
    "smlad %[a0], %[t0], %[A2], %[a0]\n\t"                                                     \
    "smlabt %[a0], %[t1], %[B2], %[a0]\n\t"                                                    \
    "ldrd %[t0], %[t1], [sp, #8]\n\t"                                                          \
    RQ("a0")                                                                                   \
    "asr %[a0], %[a0], %[t1]\n\t"                                                              \
    SAT " %[a0], #8, %[a0]\n\t"                                                                \
    "strb %[a0], [%[o]]\n\t"                                                                   \
    ".endif\n\t"                                                                               \
    ".if %c[n2]\n\t"                                                                           \
    "subw %[p], %[p], #(%c[n2] * 96 - 8)\n\t"                                                  \
    "subw %[o], %[o], #(%c[n2] * 2 * %c[op] - 1)\n\t"                                          \
    ".else\n\t"                                                                                \
    "add %[p], %[p], #8\n\t"                                                                   \
    "add %[o], %[o], #1\n\t"                                                                   \
    ".endif\n\t"                                                                               \
    "ldr %[t2], [sp, #40]\n\t"                                                                 \
    "add %[t0], %[t2], #1\n\t"                                                                 \
    "lsls %[t0], %[t0], #30\n\t"                                                               \
    "it eq\n\t"                                                                                \
    "addweq %[p], %[p], #(%c[nq] * 96 - 32)\n\t"                                               \
    "adds %[t2], %[t2], #1\n\t"                                                                \
    "bne 2b\n\t"                                                                               \
    "add sp, sp, #48\n\t"
/* DWQ = 1: the sign fix-up, the accumulator doubled here unless DBL, SMMLAR; DWQ = 2: SMMLA */
#define TN_DW3_RQ1D(a) "add %[t2], %[cc], %[" a "], asr #31\n\t"                               \
    "smmlar %[" a "], %[" a "], %[t0], %[t2]\n\t"
#define TN_DW3_RQ1(a) "add %[t2], %[cc], %[" a "], asr #31\n\t"                                \
    "lsl %[" a "], %[" a "], #1\n\t"                                                           \
    "smmlar %[" a "], %[" a "], %[t0], %[t2]\n\t"
#define TN_DW3_RQ2(a) "smmla %[" a "], %[" a "], %[t0], %[cc]\n\t"
#define TN_DW3_ST_POST "strb %[a0], [%[o]], #(2 * %c[op])\n\t"
#define TN_DW3_ST_ADDW "strb %[a0], [%[o]]\n\taddw %[o], %[o], #(2 * %c[op])\n\t"
#define TN_DW3_ROW2(RQ, SAT, STORE)                                                            \
    __asm__ volatile(TN_DW3_ROW2_ASM(RQ, SAT, STORE)                                           \
                     : [A0] "=&r"(A0), [A1] "=&r"(A1), [A2] "=&r"(A2), [D] "=&r"(D),           \
                       [B2] "=&r"(B2), [cc] "=&r"(cc), [end] "=&r"(end), [p] "+&r"(p),         \
                       [o] "+&r"(o), [a0] "+&r"(a0), [a1] "+&r"(a1), [t0] "+&r"(t0),           \
                       [t1] "+&r"(t1), [t2] "+&r"(t2)                                          \
                     : [r0] "i"(((int32_t)S0 - (int32_t)S2) * 32),                             \
                       [r1] "i"(((int32_t)S1 - (int32_t)S2) * 32), [op] "i"(C),                \
                       [n2] "i"((uint32_t)OW / 2u), [nq] "i"(WP / 4u),                         \
                       [f] "i"(DBL | (DWQ == 1u ? 2u : 0u) | ((uint32_t)OW & 1u) << 2)         \
                     : "memory", "cc")

/* Does tn_dw3_row2 run this row kernel (the assembly's immediates in range)? */
#define TN_DW3_FITS2(SW, C, OW, WP, WIDE, DWQ, OB, OS, LO, HI, NM)                             \
    ((SW) == 2 && (OB) == 8u && !(WIDE) && ((DWQ) == 1u || (DWQ) == 2u) && (NM) != 1u         \
     && (LO) == ((OS) ? -128 : 0) && (HI) == ((OS) ? 127 : 255) && 2u * (C) <= 4095u           \
     && (uint32_t)(OW) / 2u * 96u <= 4095u && (WP) / 4u * 96u <= 4095u + 32u                   \
     && (uint32_t)(OW) / 2u * 2u * (C) <= 4096u)

/* One output row (slots S0, S1, S2) of every channel: see above. */
TN_INLINE void tn_dw3_row2(const tn_layer_t *l, const int16_t *rows, uint8_t *out, uint32_t S0,
                           uint32_t S1, uint32_t S2, uint32_t C, int32_t OW, uint32_t WP,
                           uint32_t DWQ, uint32_t OS)
{
    const uint32_t DBL = DWQ == 1u && OW >= 8;
    uint32_t A0, A1, A2, D, B2, cc, end;
    const uint32_t *p = (const uint32_t *)(const void *)rows + S2 * 8u;
    uint8_t *o = out;
    /* the per-channel arrays from their ends, indexed by c - C (the loop counts up to 0) */
    uint32_t t0 = (uint32_t)(l->bias + C), t1 = (uint32_t)(l->m0 + C);
    uint32_t a0 = (uint32_t)(l->n0 + C), a1 = (uint32_t)(l->w + 16u * C), t2 = 0u - C;
    if (OS) {
        if (DWQ == 1u && DBL && 2u * C <= 255u) TN_DW3_ROW2(TN_DW3_RQ1D, "ssat", TN_DW3_ST_POST);
        else if (DWQ == 1u && DBL) TN_DW3_ROW2(TN_DW3_RQ1D, "ssat", TN_DW3_ST_ADDW);
        else if (DWQ == 1u && 2u * C <= 255u) TN_DW3_ROW2(TN_DW3_RQ1, "ssat", TN_DW3_ST_POST);
        else if (DWQ == 1u) TN_DW3_ROW2(TN_DW3_RQ1, "ssat", TN_DW3_ST_ADDW);
        else if (2u * C <= 255u) TN_DW3_ROW2(TN_DW3_RQ2, "ssat", TN_DW3_ST_POST);
        else TN_DW3_ROW2(TN_DW3_RQ2, "ssat", TN_DW3_ST_ADDW);
    } else {
        if (DWQ == 1u && DBL && 2u * C <= 255u) TN_DW3_ROW2(TN_DW3_RQ1D, "usat", TN_DW3_ST_POST);
        else if (DWQ == 1u && DBL) TN_DW3_ROW2(TN_DW3_RQ1D, "usat", TN_DW3_ST_ADDW);
        else if (DWQ == 1u && 2u * C <= 255u) TN_DW3_ROW2(TN_DW3_RQ1, "usat", TN_DW3_ST_POST);
        else if (DWQ == 1u) TN_DW3_ROW2(TN_DW3_RQ1, "usat", TN_DW3_ST_ADDW);
        else if (2u * C <= 255u) TN_DW3_ROW2(TN_DW3_RQ2, "usat", TN_DW3_ST_POST);
        else TN_DW3_ROW2(TN_DW3_RQ2, "usat", TN_DW3_ST_ADDW);
    }
    (void)A0, (void)A1, (void)A2, (void)D, (void)B2, (void)cc, (void)end, (void)p, (void)o;
    (void)a0, (void)a1, (void)t0, (void)t1, (void)t2;
}
#else
#define TN_DW3_FITS2(SW, C, OW, WP, WIDE, DWQ, OB, OS, LO, HI, NM) 0
#define tn_dw3_row2(l, rows, out, S0, S1, S2, C, OW, WP, DWQ, OS) ((void)0)
#endif

#if TN_M7_ASM
/* a kernel row's first two plane words X0, X1 (the row in slot 0, but the first, by the load
 * that steps p on to the next channel's planes) and its weights widened, A = (d0, d1),
 * B = (d1, d2) (both strides' rows) */
#define TN_DW3_R3_LOAD(R, W, FIRST)                                                            \
    ".if " R " == 0 && !(" FIRST ")\n\t"                                                       \
    "ldrd %[x0], %[x1], [%[p]], #%c[pb]\n\t"                                                   \
    ".else\n\t"                                                                                \
    "ldrd %[x0], %[x1], [%[p], #(" R ")]\n\t"                                                  \
    ".endif\n\t"                                                                               \
    "sxtb16 %[A], %[" W "]\n\t"                                                                \
    "sxtb16 %[B], %[" W "], ror #8\n\t"
/* One output row of three outputs at stride 1 or 2 in assembly, every channel (tn_dw3_row3):
 * the small maps' form (VWW's last two depthwise layers, 6 x 6 and 3 x 3 to 3 x 3 x 256).
 * tn_dw3_chan1 on such a row spent 19 instructions a channel outside its assembly (its 14
 * registers left GCC none: every pointer and index of the channel loop reloaded from the
 * stack), 66 a channel in all on VWW w4a4's 3 x 3 layer, where the int8 twin (constant
 * multiplier, int16 weight pairs, byte stores) took 56. Here the loop is in the assembly: per
 * channel and kernel row, stride 1, the plane's words X0 = (x0, x1), X1 = (x2, x3),
 * X2 = (x4, x5) into three accumulators by one SMLAD and one SMLAxy each (a0 = X0.A + x2 d2,
 * a1 = x1 d0 + X1.B, a2 = X1.A + x4 d2; A = (d0, d1), B = (d1, d2) widened from the row's
 * weight word, SXTB16; stride 2: TN_DW3_R3_ROW2), the weight words (and DWQ 3's bias) by two
 * LDRD with writeback, the plane pointer stepped by the load of the row in slot 0 (the last);
 * m0 and K per channel from pointers in a 16-byte block of stack the code reserves itself
 * ([sp] m0's and n0's, [sp, #8] the bias array's for DWQ 2, [sp, #12] the row's output end;
 * NM = 1: [sp] m0 and K themselves); G = 8 / OB channels an iteration, the first code of a
 * byte stored plain, the others read-modify-written (tn_dw3_put). About 55 instructions a
 * channel. Fourteen registers: p, w, o, three plane words, A, B, three accumulators and the
 * three weight words W0 (later m0), W1 (later K), W2. */
#define TN_DW3_R3_ROW1(R, W, FIRST)                                                            \
    "ldr %[x2], [%[p], #(" R " + 8)]\n\t"                                                      \
    TN_DW3_R3_LOAD(R, W, FIRST)                                                                \
    ".if " FIRST "\n\t"                                                                        \
    "smlad %[a0], %[x0], %[A], %[a2]\n\t"                                                      \
    "smlad %[a1], %[x1], %[B], %[a2]\n\t"                                                      \
    ".else\n\t"                                                                                \
    "smlad %[a0], %[x0], %[A], %[a0]\n\t"                                                      \
    "smlad %[a1], %[x1], %[B], %[a1]\n\t"                                                      \
    ".endif\n\t"                                                                               \
    "smlad %[a2], %[x1], %[A], %[a2]\n\t"                                                      \
    "smlabt %[a0], %[x1], %[B], %[a0]\n\t"                                                     \
    "smlatb %[a1], %[x0], %[A], %[a1]\n\t"                                                     \
    "smlabt %[a2], %[x2], %[B], %[a2]\n\t"
/* stride 2: X0 = (x0, x1), X1 = (x2, x3), then X2 = (x4, x5), X3 = (x6, x7) in the same two
 * registers: a0 = X0.A + x2 d2, a1 = X1.A + x4 d2, a2 = X2.A + x6 d2 */
#define TN_DW3_R3_ROW2(R, W, FIRST)                                                            \
    TN_DW3_R3_LOAD(R, W, FIRST)                                                                \
    ".if " FIRST "\n\t"                                                                        \
    "smlad %[a0], %[x0], %[A], %[a2]\n\t"                                                      \
    "smlad %[a1], %[x1], %[A], %[a2]\n\t"                                                      \
    ".else\n\t"                                                                                \
    "smlad %[a0], %[x0], %[A], %[a0]\n\t"                                                      \
    "smlad %[a1], %[x1], %[A], %[a1]\n\t"                                                      \
    ".endif\n\t"                                                                               \
    "smlabt %[a0], %[x1], %[B], %[a0]\n\t"                                                     \
    ".if " R " == 0 && !(" FIRST ")\n\t"                                                       \
    "ldrd %[x0], %[x1], [%[p], #(8 - %c[pb])]\n\t"                                             \
    ".else\n\t"                                                                                \
    "ldrd %[x0], %[x1], [%[p], #(" R " + 8)]\n\t"                                              \
    ".endif\n\t"                                                                               \
    "smlabt %[a1], %[x0], %[B], %[a1]\n\t"                                                     \
    "smlad %[a2], %[x0], %[A], %[a2]\n\t"                                                      \
    "smlabt %[a2], %[x1], %[B], %[a2]\n\t"
#define TN_DW3_R3_ROW(R, W, FIRST)                                                             \
    ".if (%c[f] & 128)\n\t"                                                                    \
    TN_DW3_R3_ROW2(R, W, FIRST)                                                                \
    ".else\n\t"                                                                                \
    TN_DW3_R3_ROW1(R, W, FIRST)                                                                \
    ".endif\n\t"
/* the three kernel rows, the one in slot 0 last (its load steps p on to the next channel's
 * planes; S0, S1, S2 rotate 0, 1, 2, so the ADD below is only a guard) */
#define TN_DW3_R3_ROWS                                                                         \
    ".if %c[r0] == 0\n\t"                                                                      \
    TN_DW3_R3_ROW("%c[r1]", "k", "1") TN_DW3_R3_ROW("%c[r2]", "t", "0")                        \
    TN_DW3_R3_ROW("%c[r0]", "m0", "0")                                                         \
    ".elseif %c[r1] == 0\n\t"                                                                  \
    TN_DW3_R3_ROW("%c[r0]", "m0", "1") TN_DW3_R3_ROW("%c[r2]", "t", "0")                       \
    TN_DW3_R3_ROW("%c[r1]", "k", "0")                                                          \
    ".else\n\t"                                                                                \
    TN_DW3_R3_ROW("%c[r0]", "m0", "1") TN_DW3_R3_ROW("%c[r1]", "k", "0")                       \
    TN_DW3_R3_ROW("%c[r2]", "t", "0")                                                          \
    ".if %c[r2] != 0\n\t"                                                                      \
    "add %[p], %[p], #%c[pb]\n\t"                                                              \
    ".endif\n\t"                                                                               \
    ".endif\n\t"
/* tn_dw3_chan1's requantization of accumulator a, a signed code masked to OB bits only below
 * the byte's top (SH + OB < 8: tn_dw3_put) */
#define TN_DW3_R3_RQ(SAT, a, SH)                                                               \
    TN_DW3_SCALE(a)                                                                            \
    SAT " %[" a "], #(%c[f] & 15), %[" a "]\n\t"                                               \
    ".if (%c[f] & 64) && " SH " + (%c[f] & 15) < 8\n\t"                                        \
    "and %[" a "], %[" a "], #((1 << (%c[f] & 15)) - 1)\n\t"                                   \
    ".endif\n\t"
/* one channel: weights and bias, the rows, m0 and K, the three codes; SH: the code's shift in
 * its byte (LAST: the byte's last code, whose store steps o on) */
#define TN_DW3_R3_CHAN(SAT, SH, LAST)                                                          \
    ".if (%c[f] & 16)\n\t"                                                                     \
    "ldrd %[t], %[a2], [%[w], #8]\n\t"                                                         \
    ".else\n\t"                                                                                \
    "ldr %[t], [%[w], #8]\n\t"                                                                 \
    "ldr %[x0], [sp, #8]\n\t"                                                                  \
    "ldr %[a2], [%[x0]], #4\n\t"                                                               \
    "str %[x0], [sp, #8]\n\t"                                                                  \
    ".endif\n\t"                                                                               \
    "ldrd %[m0], %[k], [%[w]], #16\n\t"                                                        \
    TN_DW3_R3_ROWS                                                                             \
    ".if (%c[f] & 32)\n\t"                                                                     \
    "ldrd %[m0], %[k], [sp]\n\t"                                                               \
    ".else\n\t"                                                                                \
    "ldrd %[x0], %[x1], [sp]\n\t"                                                              \
    "ldr %[m0], [%[x0]], #4\n\t"                                                               \
    "ldrsb %[k], [%[x1]], #1\n\t"                                                              \
    "strd %[x0], %[x1], [sp]\n\t"                                                              \
    "mvn %[k], %[k]\n\t"                                                                       \
    "usat %[k], #5, %[k]\n\t"                                                                  \
    ".endif\n\t"                                                                               \
    TN_DW3_R3_RQ(SAT, "a0", SH) TN_DW3_R3_RQ(SAT, "a1", SH) TN_DW3_R3_RQ(SAT, "a2", SH)        \
    ".if " SH "\n\t"                                                                           \
    "ldrb %[x0], [%[o]]\n\t"                                                                   \
    "ldrb %[x1], [%[o], #%c[op]]\n\t"                                                          \
    "ldrb %[x2], [%[o], #(2 * %c[op])]\n\t"                                                    \
    "orr %[a0], %[x0], %[a0], lsl #" SH "\n\t"                                                 \
    "orr %[a1], %[x1], %[a1], lsl #" SH "\n\t"                                                 \
    "orr %[a2], %[x2], %[a2], lsl #" SH "\n\t"                                                 \
    ".endif\n\t"                                                                               \
    "strb %[a1], [%[o], #%c[op]]\n\t"                                                          \
    "strb %[a2], [%[o], #(2 * %c[op])]\n\t"                                                    \
    ".if " LAST "\n\t"                                                                         \
    "strb %[a0], [%[o]], #1\n\t"                                                               \
    ".else\n\t"                                                                                \
    "strb %[a0], [%[o]]\n\t"                                                                   \
    ".endif\n\t"
#define TN_DW3_R3_ASM(SAT)                                                                     \
    "sub sp, sp, #16\n\t"                                                                      \
    "strd %[x0], %[x1], [sp]\n\t"                                                              \
    "strd %[a0], %[x2], [sp, #8]\n"                                                            \
    "1:\n\t"                                                                                   \
    ".if (%c[f] & 15) == 8\n\t"                                                                \
    TN_DW3_R3_CHAN(SAT, "0", "1")                                                              \
    ".elseif (%c[f] & 15) == 4\n\t"                                                            \
    TN_DW3_R3_CHAN(SAT, "0", "0")                                                              \
    TN_DW3_R3_CHAN(SAT, "4", "1")                                                              \
    ".else\n\t"                                                                                \
    TN_DW3_R3_CHAN(SAT, "0", "0")                                                              \
    TN_DW3_R3_CHAN(SAT, "2", "0")                                                              \
    TN_DW3_R3_CHAN(SAT, "4", "0")                                                              \
    TN_DW3_R3_CHAN(SAT, "6", "1")                                                              \
    ".endif\n\t"                                                                               \
    "ldr %[x0], [sp, #12]\n\t"                                                                 \
    "cmp %[o], %[x0]\n\t"                                                                      \
    "bne 1b\n\t"                                                                               \
    "add sp, sp, #16\n\t"
#define TN_DW3_R3(SAT)                                                                         \
    __asm__ volatile(TN_DW3_R3_ASM(SAT)                                                        \
                     : [p] "+&r"(p), [w] "+&r"(w), [o] "+&r"(o), [x0] "+&r"(x0),               \
                       [x1] "+&r"(x1), [x2] "+&r"(x2), [a0] "+&r"(a0), [a1] "=&r"(a1),         \
                       [a2] "=&r"(a2), [A] "=&r"(A), [B] "=&r"(B), [m0] "=&r"(m0),             \
                       [k] "=&r"(k), [t] "=&r"(t)                                              \
                     : [r0] "i"(S0 * WP * 2u), [r1] "i"(S1 * WP * 2u),                         \
                       [r2] "i"(S2 * WP * 2u), [pb] "i"(6u * WP), [op] "i"(OP),                \
                       [f] "i"(OB | (DWQ == 3u ? 16u : 0u) | (NM == 1u ? 32u : 0u)             \
                               | (OS && OB < 8u ? 64u : 0u) | (SW == 2 ? 128u : 0u)),          \
                       [zp] "i"(ZP)                                                            \
                     : "memory", "cc")

/* Does tn_dw3_row3 run this row (see above): stride 1 or 2, 3 outputs a row, the full form's slots
 * (ROT 0, every channel), compact weights, DWQ 2 / 3 with z_out added after the shift, no
 * clamp inside the type's range, immediates in range (the three slots' words within LDRD's
 * 1020 bytes, two pixels' bytes within STRB's 4095; not at -Og, whose constants are not known
 * to the assembler)? Any output width: 2-bit codes too (four a byte, three read-modify-written:
 * no spill here, unlike the C pass of four channels that made tn_dw3_row's 2-bit outputs go
 * through the planes). */
#define TN_DW3_FITS3(SW, OW, CH, WIDE, DWQ, ZP, OB, OS, LO, HI, WP, OP, S0, S1, S2)            \
    (((SW) == 1 || (SW) == 2) && (OW) == 3 && !(CH) && !(WIDE)                                 \
     && ((DWQ) == 2u || (DWQ) == 3u)                                                           \
     && (ZP) >= -255 && (ZP) <= 255                                                            \
     && (LO) == ((OS) ? -(1 << ((OB) - 1u)) : 0)                                                \
     && (HI) == ((OS) ? (1 << ((OB) - 1u)) - 1 : (1 << (OB)) - 1) && 6u * (WP) <= 1020u        \
     && 2u * (OP) <= 4095u                                                                      \
     && __builtin_constant_p((WP) + (OP) + (OB) + (OS) + (ZP) + (DWQ) + (S0) + (S1) + (S2)     \
                             + (SW)))

/* The channels of one output row of three outputs (slots S0, S1, S2; stride SW): see above. */
TN_INLINE void tn_dw3_row3(const tn_layer_t *l, const int16_t *rows, uint8_t *out, uint32_t S0,
                           uint32_t S1, uint32_t S2, uint32_t C, int32_t SW, uint32_t WP,
                           uint32_t DWQ, uint32_t OB, uint32_t OS, uint32_t NM, int32_t M0,
                           int32_t N0, int32_t ZP)
{
    const uint32_t OP = C * OB / 8u;
    const uint32_t *p = (const uint32_t *)(const void *)rows;
    const uint8_t *w = l->w;
    uint8_t *o = out;
    /* the block's words: m0's and n0's arrays (NM = 1: m0, K), the bias array, the end */
    uint32_t x0 = NM == 1u ? (uint32_t)M0 : (uint32_t)l->m0;
    uint32_t x1 = NM == 1u ? tn_usat5(~N0) : (uint32_t)l->n0;
    uint32_t a0 = (uint32_t)l->bias, x2 = (uint32_t)(out + OP);
    uint32_t a1, a2, A, B, m0, k, t;
    if (OS) TN_DW3_R3("ssat");
    else TN_DW3_R3("usat");
    (void)p, (void)w, (void)o, (void)x0, (void)x1, (void)x2, (void)a0, (void)a1, (void)a2;
    (void)A, (void)B, (void)m0, (void)k, (void)t;
}
#else
#define TN_DW3_FITS3(SW, OW, CH, WIDE, DWQ, ZP, OB, OS, LO, HI, WP, OP, S0, S1, S2) 0
#define tn_dw3_row3(l, rows, out, S0, S1, S2, C, SW, WP, DWQ, OB, OS, NM, M0, N0, ZP) ((void)0)
#endif

/* The channels of one output row, kernel rows in slots S0, S1, S2 (constants: the loop is
 * compiled once per rotation of the three slots; for a sub-byte output once per code of a
 * byte, G = 8 / OB channels per pass, so that each code's bit offset is a constant). */
TN_INLINE void tn_dw3_row(const tn_layer_t *l, int16_t *rows, uint8_t *o, uint32_t S0,
                          uint32_t S1, uint32_t S2, uint32_t ROT, uint32_t C0, uint32_t C, uint32_t CS,
                          int32_t OW, int32_t SW,
                          int32_t W, int32_t PL, uint32_t XB, uint32_t WP, uint32_t WIDE,
                          uint32_t DWQ,
                          uint32_t OB,
                          uint32_t OS, int32_t LO, int32_t HI, uint32_t NM, uint32_t ROUND,
                          TN_RQ_ARGS)
{
    const uint32_t *p = (const uint32_t *)(const void *)rows;
    const uint32_t wp = WP / 2u; /* words per plane (stride 1) */
    const uint32_t NQ = WP / 4u; /* chunks per slot and channel group (stride 2) */
    /* the per-channel arrays, read once per row (the weights from channel C0 on: the tail
     * form's block, below) */
    const uint8_t *w = l->w;
    const int32_t *bias = l->bias, *m0 = l->m0;
    const int8_t *n0 = l->n0;
    /* codes per byte; bytes per output pixel (of CS channels: the planes hold channels
     * C0 .. C0 + C - 1, o points at channel C0's byte) */
    const uint32_t G = 8u / OB, OP = CS * OB / 8u;
    const uint32_t CH = TN_DW3_CHUNKS(SW, XB, OW); /* the chunk layout (see above) */
    /* ROT (the tail form; 0 otherwise): slot S0 + ROT holds kernel row 0 (mod 3), so the
     * planes at S0, S1, S2 take the weights of rows K0, K1, K2 */
    const uint32_t K0 = (3u - ROT) % 3u, K1 = (4u - ROT) % 3u, K2 = (5u - ROT) % 3u;
    if (CH && C0 == 0u && C == CS
        && TN_DW3_FITS2(SW, C, OW, WP, WIDE, DWQ, OB, OS, LO, HI, NM)) { /* every channel */
        tn_dw3_row2(l, rows, o, S0, S1, S2, C, OW, WP, DWQ, OS);
        return;
    }
    if (!CH && ROT == 0u && C0 == 0u && C == CS
        && TN_DW3_FITS3(SW, OW, CH, WIDE, DWQ, ZP, OB, OS, LO, HI, WP, OP, S0, S1, S2)) {
        tn_dw3_row3(l, rows, o, S0, S1, S2, C, SW, WP, DWQ, OB, OS, NM, M0, N0, ZP);
        return;
    }
    if (G >= 4u && !CH && OW <= 2 * W) {
        /* 2-bit outputs on the planes: each channel's OW codes as bytes into its plane of
         * slot S0 (input row oy SH - PT, read by no later output row; its columns PL ..
         * PL + W - 1, 2 W bytes, so that the padding columns stay), one channel per iteration
         * as for 8-bit outputs; then the codes of the G = 4 channels of a byte ORed into the
         * output bytes, four pixels a word. Why: the four channels of a byte in one iteration
         * (three read-modify-writes per output byte) spill in GCC's code, 8 % more
         * instructions on DS-CNN's depthwise layers; for 4-bit outputs (G = 2) that pass is
         * the faster one (the packing costs more than the one read-modify-write it saves) */
        const uint32_t PB = 6u * WP; /* bytes from one channel's planes to the next's */
        uint8_t *b0 = (uint8_t *)(void *)(rows + (S0 + ROT) % 3u * WP) + 2u * (uint32_t)PL;
#if defined(__GNUC__)
#pragma GCC unroll 1
#endif
        for (uint32_t c = 0; c < C; c++, p += 3u * wp)
            tn_dw3_channel(l, w, bias, m0, n0, p, b0 + c * PB, C0 + c, c, S0 * wp, S1 * wp,
                           S2 * wp, K0, K1, K2, 1u, 0u, OW, SW, 0u, WIDE, DWQ, OB, OS, LO, HI, NM, ROUND,
                           TN_RQ);
#if defined(__GNUC__)
#pragma GCC unroll 1
#endif
        for (uint32_t c = 0; c < C; c += G, b0 += G * PB, o++) {
            const uint8_t *b = b0;
            uint8_t *d = o;
            int32_t ox = 0;
#if defined(__GNUC__)
#pragma GCC unroll 1
#endif
            for (; ox + 4 <= OW; ox += 4, b += 4, d += 4u * OP) {
                uint32_t v = tn_ld32(b);
                TN_UNROLL
                for (uint32_t g = 1; g < G; g++) v |= tn_ld32(b + g * PB) << (g * OB);
                d[0] = (uint8_t)v, d[OP] = (uint8_t)(v >> 8);
                d[2u * OP] = (uint8_t)(v >> 16), d[3u * OP] = (uint8_t)(v >> 24);
            }
            for (; ox < OW; ox++, b++, d += OP) {
                uint32_t v = b[0];
                TN_UNROLL
                for (uint32_t g = 1; g < G; g++) v |= (uint32_t)b[g * PB] << (g * OB);
                *d = (uint8_t)v;
            }
        }
        return;
    }
#if defined(__GNUC__)
#pragma GCC unroll 1
#endif
    for (uint32_t c = 0; c < C; c += G, p += CH ? 0u : 3u * G * wp) {
        /* channel c's words: its plane, or its words in its group's chunks (CH: G <= 4
         * channels of one group, two words apart) */
        const uint32_t *pc = CH ? p + (c >> 2) * NQ * 24u + (c & 3u) * 2u : p;
        TN_UNROLL
        for (uint32_t g = 0; g < G; g++)
            tn_dw3_channel(l, w, bias, m0, n0, CH ? pc + 2u * g : pc + 3u * g * wp,
                           o + c / G, C0 + c + g, c + g, CH ? S0 * 8u : S0 * wp,
                           CH ? S1 * 8u : S1 * wp, CH ? S2 * 8u : S2 * wp, K0, K1, K2, OP, g * OB, OW, SW,
                           CH, WIDE, DWQ, OB, OS, LO, HI, NM, ROUND, TN_RQ);
    }
}

/* Output rows 0 .. OY1 - 1 of channels C0 .. C0 + C - 1 (of CS) from three rolling input rows
 * of those channels in the planes at rows (3 C WP int16). */
TN_INLINE void tn_dw3_rows(const tn_layer_t *l, const uint8_t *in, uint8_t *out,
                           int16_t *TN_RESTRICT rows, uint32_t C0, uint32_t C, uint32_t CS,
                           int32_t OY1, int32_t H, int32_t W, int32_t OW, int32_t SH,
                           int32_t SW, int32_t PT, int32_t PL, uint32_t WP, uint32_t XB,
                           uint32_t XS, int32_t ZX, uint32_t PADZERO, uint32_t WIDE, uint32_t DWQ,
                           uint32_t OB, uint32_t OS, int32_t LO, int32_t HI, uint32_t NM,
                           uint32_t ROUND, TN_RQ_ARGS)
{
    int32_t next = -PT; /* the next input row to widen */
    const uint8_t *ib = in + C0 * XB / 8u; /* channel C0 of pixel 0 (a whole byte: dw3_fits) */
    {   /* the padding columns of every plane, once (rows only ever write columns PL..PL+W-1) */
        const int16_t pad = (int16_t)(PADZERO ? -ZX : 0);
        int16_t *d = rows;
        if (TN_DW3_CHUNKS(SW, XB, OW)) { /* those read (q <= 2 OW), 4 channels at once */
            for (uint32_t q = PL ? 0u : (uint32_t)W; q <= 2u * (uint32_t)OW;
                 q = q + 1u == (uint32_t)PL ? (uint32_t)(PL + W) : q + 1u) {
                for (uint32_t k = 0; k < 3u * C / 4u; k++) { /* (channel group, slot) */
                    int16_t *e = rows + tn_dw3_at2(k / 3u * 4u, k % 3u, q, WP / 4u);
                    e[0] = pad, e[4] = pad, e[8] = pad, e[12] = pad;
                }
            }
        } else {
            for (uint32_t c = 0; c < 3u * C; c++, d += WP) {
                for (int32_t q = 0; q < PL; q++) d[q] = pad;
                for (uint32_t q = (uint32_t)(PL + W); q < WP; q++) d[q] = pad;
            }
        }
    }
    for (int32_t oy = 0; oy < OY1; oy++) {
        const int32_t last = oy * SH - PT + 2;
        uint8_t *o = out + (uint32_t)oy * ((uint32_t)OW * (CS * OB / 8u)) + C0 * OB / 8u;
        for (; next <= last; next++) {
            if (TN_DW3_CHUNKS(SW, XB, OW))
                tn_dw3_build2(in, rows, next, (uint32_t)(next + PT) % 3u, H, W, C, PL, WP, XB,
                              XS, ZX, PADZERO);
            else
                tn_dw3_build(ib, rows, next, (uint32_t)(next + PT) % 3u, H, W, C, CS, PL, WP,
                             XB, XS, ZX, PADZERO);
        }
        /* one copy of the row's code for the three rotations of the slots: the planes stay
         * put and the weights rotate (tn_dw3_channel's K0 .. K2), flash over the constant
         * slots' three copies */
        tn_dw3_row(l, rows, o, 0u, 1u, 2u, (uint32_t)(oy * SH) % 3u, C0, C, CS, OW, SW, W, PL,
                   XB, WP, WIDE, DWQ, OB, OS, LO, HI, NM, ROUND, TN_RQ);
    }
}

/* The tail form's row-kernel weights of channels C0 .. C0 + CB - 1 into t (tn_dw3_channel's
 * format, CB (WIDE ? 7 : 4) words), from the lean kernel's codes at l->w (B bits, rows of RB
 * bytes per tap), and CC from n0 and the output zero point ZP (kernels_m7.dw3_plan's formulas,
 * which checked that CC fits int32: the unsigned shifts give its two's complement). Why:
 * exported, they cost 16 (28) bytes of flash per channel beside the lean kernel's 9 B / 8;
 * widened once per block they cost a few instructions per channel and CB words of stack. */
TN_INLINE void tn_dw3_widen(const tn_layer_t *l, uint32_t *t, uint32_t C0, uint32_t CB,
                            uint32_t B, uint32_t RB, uint32_t NWZP, int32_t ZW, uint32_t WIDE,
                            uint32_t DWQ, uint32_t NM, int32_t N0, int32_t ZP)
{
    const uint8_t *lw = l->w;
#if defined(__GNUC__)
#pragma GCC unroll 1
#endif
    for (uint32_t c = 0; c < CB; c++, t += WIDE ? 7u : 4u) {
        const uint32_t ch = C0 + c;
        const uint32_t zw = NWZP == 1u ? (uint32_t)ZW : (uint32_t)l->wzp[ch];
        const int32_t n0 = NM == 1u ? N0 : (int32_t)l->n0[ch];
        /* DWQ 3: the weights and the bias shifted left by SL = max(n0 + 1, 0) (dw3_plan checked
         * that they fit) */
        const uint32_t sl = DWQ == 3u && n0 >= 0 ? (uint32_t)(n0 + 1) : 0u;
#if defined(__GNUC__)
#pragma GCC unroll 1
#endif
        for (uint32_t r = 0; r < 3u; r++) {
            /* d = w - z_w of kernel row r's three taps */
            const uint32_t d0 = ((uint32_t)tn_get(lw + (3u * r) * RB, ch, B, 0u) - zw) << sl;
            const uint32_t d1 = ((uint32_t)tn_get(lw + (3u * r + 1u) * RB, ch, B, 0u) - zw) << sl;
            const uint32_t d2 = ((uint32_t)tn_get(lw + (3u * r + 2u) * RB, ch, B, 0u) - zw) << sl;
            if (WIDE) { /* (d0, d1), (d1, d2) as int16 pairs */
                t[2u * r] = (d0 & 0xFFFFu) | (d1 << 16);
                t[2u * r + 1u] = (d1 & 0xFFFFu) | (d2 << 16);
            } else { /* [d0, d1, d1, d2] as int8 */
                t[r] = (d0 & 0xFFu) | ((d1 & 0xFFu) * 0x00010100u) | (d2 << 24);
            }
        }
        {
            /* K of tn_dw3_channel: -n0 (DWQ 1), -(n0 + 1) (2), max(-(n0 + 1), 0) (3) */
            const uint32_t k = DWQ == 1u ? (uint32_t)(-n0)
                               : n0 < -1 ? (uint32_t)(-(n0 + 1)) : 0u;
            uint32_t cc = (uint32_t)ZP << k;
            /* DWQ 1 (TFLite double rounding) for completeness: the tail form runs "floor"
             * graphs only (steps._plan_roomy_kernels), so no test reaches it */
            if (DWQ == 1u) cc += 1u << (k - 1u);
            /* DWQ 3: the shifted bias in CC's place (tn_dw3_channel forms CC from K) */
            t[WIDE ? 6u : 3u] = DWQ == 3u ? (uint32_t)l->bias[ch] << sl : DWQ ? cc : 0u;
        }
    }
}

/* The row kernel (see above). rows: 3 * CB * WP int16, word aligned; WP even, at least
 * OW * SW + 4 and W + PL.
 *
 * CB = C, OYF = OH: the full form, the planes in the step's scratch. CB < C: the tail form
 * (kernels_m7.dw3_tail_offset), for a step whose plan leaves no free bytes for the planes of
 * every channel: the planes of a block of CB channels lie in the output's own tail, past output
 * row OYF's first byte. The blocks run one after the other over output rows 0 .. OYF - 1 (each
 * input row widened once per block, as in the full form), which never write there; the output
 * does not overlap the input (no sliding write below 8-bit inputs and outputs,
 * steps.write_delay), so a block's outputs may be written before a later block's inputs are
 * read. Then rows OYF .. OH - 1 run tn_m7_depthwise (the lean kernel, no scratch) over the
 * planes. Its weights (B, RB, NWZP, ZW: its weight arguments) are the only ones exported;
 * each block widens its channels' row-kernel weights from them onto the stack
 * (tn_dw3_widen). */
TN_INLINE void tn_m7_dw3(const tn_layer_t *l, const uint8_t *in, uint8_t *out,
                         int16_t *TN_RESTRICT rows, int32_t H, int32_t W, uint32_t C,
                         int32_t OH, int32_t OW, int32_t SH, int32_t SW, int32_t PT,
                         int32_t PL, uint32_t WP, uint32_t CB, int32_t OYF, uint32_t B,
                         uint32_t RB, uint32_t NWZP, int32_t ZW, uint32_t XB, uint32_t XS,
                         int32_t ZX, uint32_t PADZERO, uint32_t WIDE, uint32_t DWQ, uint32_t OB,
                         uint32_t OS, int32_t LO, int32_t HI, uint32_t NM, uint32_t ROUND,
                         TN_RQ_ARGS)
{
    if (CB != C) { /* the tail form */
        /* CB <= 8 channels (steps.dw3_block) of 7 words at most */
        uint32_t tw[8u * 7u];
        tn_layer_t blk = *l;
        blk.w = (const uint8_t *)(const void *)tw;
#if defined(__GNUC__)
#pragma GCC unroll 1
#endif
        for (uint32_t c0 = 0; c0 < C; c0 += CB) {
            tn_dw3_widen(l, tw, c0, CB, B, RB, NWZP, ZW, WIDE, DWQ, NM, N0, ZP);
            tn_dw3_rows(&blk, in, out, rows, c0, CB, C, OYF, H, W, OW, SH, SW, PT, PL, WP, XB,
                        XS, ZX, PADZERO, WIDE, DWQ, OB, OS, LO, HI, NM, ROUND, TN_RQ);
        }
        if (OYF < OH) {
            /* its rows OYF .. from a top padding moved up by OYF SH rows */
            tn_m7_depthwise(l, in, in, out + (uint32_t)OYF * (uint32_t)OW * (C * OB / 8u),
                            H, W, C, OH - OYF, OW, 3, 3, SH, SW, PT - OYF * SH, PL, B, XB, XS, ZX,
                            PADZERO, RB, NWZP, 1u, NM, ROUND, OB, 0u, ZW, 0u, TN_RQ);
        }
        return;
    }
    /* the full form (the loop of tn_dw3_rows, written out here: through that helper GCC
     * schedules the int8 stride-2 rows of VWW differently, +0.3 % instructions there; even the
     * padding block below alone as a shared inline helper cost VWW int8 +574 instructions and
     * +32 B of code, measured in session 16, so it stays written out too) */
    int32_t next = -PT; /* the next input row to widen */
    {   /* the padding columns of every plane, once (rows only ever write columns PL..PL+W-1) */
        const int16_t pad = (int16_t)(PADZERO ? -ZX : 0);
        int16_t *d = rows;
        if (TN_DW3_CHUNKS(SW, XB, OW)) { /* those read (q <= 2 OW), 4 channels at once */
            for (uint32_t q = PL ? 0u : (uint32_t)W; q <= 2u * (uint32_t)OW;
                 q = q + 1u == (uint32_t)PL ? (uint32_t)(PL + W) : q + 1u) {
                for (uint32_t k = 0; k < 3u * C / 4u; k++) { /* (channel group, slot) */
                    int16_t *e = rows + tn_dw3_at2(k / 3u * 4u, k % 3u, q, WP / 4u);
                    e[0] = pad, e[4] = pad, e[8] = pad, e[12] = pad;
                }
            }
        } else {
            for (uint32_t c = 0; c < 3u * C; c++, d += WP) {
                for (int32_t q = 0; q < PL; q++) d[q] = pad;
                for (uint32_t q = (uint32_t)(PL + W); q < WP; q++) d[q] = pad;
            }
        }
    }
    for (int32_t oy = 0; oy < OH; oy++) {
        const int32_t last = oy * SH - PT + 2;
        uint8_t *o = out + (uint32_t)oy * ((uint32_t)OW * (C * OB / 8u));
        for (; next <= last; next++) {
            if (TN_DW3_CHUNKS(SW, XB, OW))
                tn_dw3_build2(in, rows, next, (uint32_t)(next + PT) % 3u, H, W, C, PL, WP, XB,
                              XS, ZX, PADZERO);
            else if (next < 0 || next >= H) {
                /* a padding row: columns PL & ~1 .. (PL + W + 1) & ~1 of its planes (the
                 * padding columns hold the same value) a word at a time (WP even, the planes
                 * word aligned), half tn_dw3_build's halfword stores */
                const uint32_t pad2 = ((uint32_t)(PADZERO ? -ZX : 0) & 0xFFFFu) * 0x00010001u;
                uint32_t *d = (uint32_t *)(void *)(rows + (uint32_t)(next + PT) % 3u * WP)
                              + (uint32_t)PL / 2u;
                for (uint32_t c = 0; c < C; c++, d += 3u * WP / 2u)
                    for (uint32_t q = 0; q < (uint32_t)(PL % 2 + W + 1) / 2u; q++) d[q] = pad2;
            } else
                tn_dw3_build(in, rows, next, (uint32_t)(next + PT) % 3u, H, W, C, C, PL, WP,
                             XB, XS, ZX, PADZERO);
        }
        switch ((uint32_t)(oy * SH) % 3u) {
        case 0:
            tn_dw3_row(l, rows, o, 0u, 1u, 2u, 0u, 0u, C, C, OW, SW, W, PL, XB, WP, WIDE, DWQ, OB, OS,
                       LO, HI, NM, ROUND, TN_RQ);
            break;
        case 1:
            tn_dw3_row(l, rows, o, 1u, 2u, 0u, 0u, 0u, C, C, OW, SW, W, PL, XB, WP, WIDE, DWQ, OB, OS,
                       LO, HI, NM, ROUND, TN_RQ);
            break;
        default:
            tn_dw3_row(l, rows, o, 2u, 0u, 1u, 0u, 0u, C, C, OW, SW, W, PL, XB, WP, WIDE, DWQ, OB, OS,
                       LO, HI, NM, ROUND, TN_RQ);
            break;
        }
    }
    (void)rows;
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

#endif

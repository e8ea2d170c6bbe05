/* tn_m7_sub.h: the Cortex-M7 kernels of dense, pointwise and convolution layers with sub-byte
 * weights or inputs (conventions in tn_m7_core.h): tn_m7_subconv (conv / pointwise, 2 / 4-bit
 * weights, tn_m7_conv's lanes; below), tn_m7_subfc (dense, no scratch; at the end) and, where
 * neither fits, tn_m7_sub (here), chosen by tinyopt.integer.steps.sub_kernel so that lowering
 * bits never grows a step's scratch beyond the 8-bit kernel's.
 *
 * No int16 im2col and no int32 output rows: the dot products read the packed codes themselves.
 * A dense layer reads its input directly (no scratch); a pointwise layer reads each pixel's
 * codes directly when a pixel starts on a byte (C * XB % 8 == 0, no padding), else, like a
 * convolution, gathers the window's codes, packed as they are, into the step's scratch
 * (ceil(KH KW C XB / 8) bytes, less than the 2 x 2 KP bytes of the 8-bit gemm kernel's int16
 * rows); a fused max pool adds one int32 per output channel (the running max).
 *
 * Unit. G = 32 / min(XB, WB) consecutive inputs: G XB / 32 words of inputs, G WB / 32 words of
 * weights of a row. Unpacking an input word gives lane pairs in a fixed order (8-bit: UXTB16 /
 * SXTAB16 give (x0, x2) then (x1, x3); b-bit: mask and shift give (x_s, x_{s + 16/b})); the
 * exporter (kernels_m7.sub_weights) permutes each row's codes inside every unit so that weight
 * lane pair q (tn_pair of the weights' words, in order) holds the weights of input lane pair q:
 * one SMLAD per two MACs with no reordering at run time. The K % G tail codes of a row follow
 * its units, packed as they are (the row keeps its ceil(K WB / 8) bytes). R rows (4 when a
 * unit has at most 4 lane pairs, else 2) share each unpacked input unit.
 *
 * Arithmetic: acc = bias + sum w x' - z_w sum x' (x' = x - z_x as int16 lanes; w the unsigned
 * codes), modulo 2^32 like tn_compute; then tn_m7_out. Signed sub-byte codes c become
 * (c ^ 2^(b-1)) - 2^(b-1) - z_x lane-wise (EOR, SSUB16).
 *
 * Output order: pixel by pixel, channels in order, each output written after every read of its
 * window (a pixel's window is re-read for later channel blocks, never after a later pixel's
 * output is written): the planner's sliding writes (steps.write_delay) stay valid. */
#ifndef TN_M7_SUB_H
#define TN_M7_SUB_H

#include "tn_m7_core.h"
#include "tn_m7_add.h"
#include "tn_m7_gemm.h" /* tn_m7_subconv: tn_m7_conv's windows (8-bit inputs) and outputs */

/* Input lane pair q of a unit whose first input word is at u: int16 x' lanes. */
TN_INLINE uint32_t tn_sub_xpair(const uint8_t *u, uint32_t q, uint32_t XB, uint32_t XS,
                                int32_t ZX)
{
    const uint32_t px = 16u / XB; /* lane pairs per input word */
    const uint32_t v = tn_ld32(u + 4u * (q / px)), s = q % px;
    if (XB == 8u) {
        const uint32_t off = ((uint32_t)(-ZX) & 0xFFFFu) * 0x00010001u;
        if (XS) return s ? tn_sxtab16_ror8(off, v) : tn_sxtab16(off, v);
        return s ? tn_uxtab16_ror8(off, v) : tn_uxtab16(off, v);
    }
    {
        uint32_t p = (v >> (s * XB)) & tn_lanemask(XB);
        const int32_t sb = XS ? (int32_t)(1u << (XB - 1u)) : 0;
        if (XS) p ^= (uint32_t)sb * 0x00010001u;
        if (XS || ZX != 0) p = tn_ssub16(p, ((uint32_t)(sb + ZX) & 0xFFFFu) * 0x00010001u);
        return p;
    }
}

/* Weight lane pair q of a unit whose first weight word is at u (unsigned codes). */
TN_INLINE uint32_t tn_sub_wpair(const uint8_t *u, uint32_t q, uint32_t WB)
{
    const uint32_t pw = 16u / WB;
    return tn_pair(tn_ld32(u + 4u * (q / pw)), q % pw, WB);
}

/* sum x' over the K inputs at src (for the weight zero points). */
TN_INLINE int32_t tn_sub_sumx(const uint8_t *src, uint32_t K, uint32_t XB, uint32_t XS,
                              int32_t ZX, uint32_t WB)
{
    const uint32_t G = 32u / (XB < WB ? XB : WB), nu = K / G, ub = G * XB / 8u;
    int32_t s = 0;
    for (uint32_t u = 0; u < nu; u++) {
        TN_UNROLL
        for (uint32_t q = 0; q < G / 2u; q++)
            s = tn_smlad(tn_sub_xpair(src + u * ub, q, XB, XS, ZX), 0x00010001u, s);
    }
    for (uint32_t k = nu * G; k < K; k++)
        s = (int32_t)((uint32_t)s + (uint32_t)(tn_get(src, k, XB, XS) - ZX));
    return s;
}

/* acc[r] += sum_k w_r[k] x'_k for R rows (row r at w + r RB, in sub_weights' order). */
TN_INLINE void tn_sub_dot(const uint8_t *src, const uint8_t *w, uint32_t R, uint32_t RB,
                          uint32_t K, uint32_t XB, uint32_t XS, int32_t ZX, uint32_t WB,
                          int32_t *acc)
{
    const uint32_t G = 32u / (XB < WB ? XB : WB), nu = K / G, hp = G / 2u;
    const uint32_t ub = G * XB / 8u, wb = G * WB / 8u;
    int32_t a0 = acc[0], a1 = R > 1u ? acc[1] : 0, a2 = R > 2u ? acc[2] : 0,
            a3 = R > 3u ? acc[3] : 0;
    for (uint32_t u = 0; u < nu; u++) {
        const uint8_t *x = src + u * ub, *wu = w + u * wb;
        TN_UNROLL
        for (uint32_t q = 0; q < hp; q++) {
            const uint32_t xp = tn_sub_xpair(x, q, XB, XS, ZX);
            a0 = tn_smlad(tn_sub_wpair(wu, q, WB), xp, a0);
            if (R > 1u) a1 = tn_smlad(tn_sub_wpair(wu + RB, q, WB), xp, a1);
            if (R > 2u) a2 = tn_smlad(tn_sub_wpair(wu + 2u * RB, q, WB), xp, a2);
            if (R > 3u) a3 = tn_smlad(tn_sub_wpair(wu + 3u * RB, q, WB), xp, a3);
        }
    }
    for (uint32_t k = nu * G; k < K; k++) { /* the tail: codes as they are */
        const uint32_t xv = (uint32_t)(tn_get(src, k, XB, XS) - ZX), j = k - nu * G;
        const uint8_t *wt = w + nu * wb;
        a0 = (int32_t)((uint32_t)a0 + (uint32_t)tn_get(wt, j, WB, 0u) * xv);
        if (R > 1u) a1 = (int32_t)((uint32_t)a1 + (uint32_t)tn_get(wt + RB, j, WB, 0u) * xv);
        if (R > 2u) a2 = (int32_t)((uint32_t)a2 + (uint32_t)tn_get(wt + 2u * RB, j, WB, 0u) * xv);
        if (R > 3u) a3 = (int32_t)((uint32_t)a3 + (uint32_t)tn_get(wt + 3u * RB, j, WB, 0u) * xv);
    }
    acc[0] = a0;
    if (R > 1u) acc[1] = a1;
    if (R > 2u) acc[2] = a2;
    if (R > 3u) acc[3] = a3;
}

/* The window of output pixel (oy, ox), its codes packed as they are (XB bits), into buf;
 * padded taps hold the code of integer 0 (PADZERO) or of z_x (steps.sub_fits checked that
 * it is a code). */
TN_INLINE void tn_sub_gather(const uint8_t *in, uint8_t *TN_RESTRICT buf, int32_t oy,
                             int32_t ox, int32_t H, int32_t W, uint32_t C, int32_t KH,
                             int32_t KW, int32_t SH, int32_t SW, int32_t PT, int32_t PL,
                             uint32_t XB, int32_t ZX, uint32_t PADZERO)
{
    const uint32_t pad = PADZERO ? 0u : ((uint32_t)ZX & ((XB == 8u ? 0x100u : 1u << XB) - 1u));
    const int32_t y0 = oy * SH - PT, x0 = ox * SW - PL;
    const uint32_t bytewise = (C * XB) % 8u == 0u; /* every tap starts on a byte */
    uint32_t k = 0;
    for (int32_t ky = 0; ky < KH; ky++) {
        const int32_t iy = y0 + ky;
        for (int32_t kx = 0; kx < KW; kx++, k += C) {
            const int32_t ix = x0 + kx;
            const uint32_t inside = iy >= 0 && iy < H && ix >= 0 && ix < W;
            const uint32_t base = inside ? ((uint32_t)iy * (uint32_t)W + (uint32_t)ix) * C : 0u;
            if (bytewise && inside) {
                memcpy(buf + k * XB / 8u, in + base * XB / 8u, C * XB / 8u);
            } else if (bytewise) {
                uint32_t byte = pad;
                for (uint32_t e = XB; e < 8u; e += XB) byte |= pad << e;
                memset(buf + k * XB / 8u, (int)byte, C * XB / 8u);
            } else {
                for (uint32_t ci = 0; ci < C; ci++)
                    tn_set(buf, k + ci, XB, inside ? (uint32_t)tn_get(in, base + ci, XB, 0u) : pad);
            }
        }
    }
}

/* All CO outputs of one pixel whose K input codes are at src (sx: their sum x'), rows R at a
 * time: written as element idx0 + c (MODE 0), through the fused ADD (MODE 2), or maxed into
 * best[c] (MODE 1). */
TN_INLINE void tn_sub_pixel(const tn_layer_t *l, const uint8_t *src, int32_t sx,
                            const uint8_t *other, uint8_t *TN_RESTRICT out, uint32_t idx0,
                            int32_t *TN_RESTRICT best, uint32_t K, uint32_t CO, uint32_t XB,
                            uint32_t XS, int32_t ZX, uint32_t WB, uint32_t RB, uint32_t NWZP,
                            uint32_t HASZW, int32_t ZW, uint32_t REQ, uint32_t NM,
                            uint32_t ROUND, uint32_t OB, uint32_t MODE, TN_RQ_ARGS,
                            TN_FADD_ARGS)
{
    const uint32_t G = 32u / (XB < WB ? XB : WB), R = G <= 8u ? 4u : 2u;
    const uint8_t *w = l->w, *wzp = l->wzp;
    const int32_t *bias = l->bias;
    uint32_t c = 0;
    while (c < CO) {
        /* the rows left over two at a time (when R = 4), then one */
        const uint32_t r = CO - c >= R ? R : (R == 4u && CO - c >= 2u) ? 2u : 1u;
        int32_t acc[4], v[4];
        for (uint32_t j = 0; j < r; j++) {
            const int32_t z = HASZW ? (NWZP == 1u ? ZW : (int32_t)wzp[c + j]) : 0;
            acc[j] = (int32_t)((uint32_t)bias[c + j] - (uint32_t)z * (uint32_t)sx);
        }
        if (r == R)
            tn_sub_dot(src, w + c * RB, R, RB, K, XB, XS, ZX, WB, acc);
        else if (r == 2u)
            tn_sub_dot(src, w + c * RB, 2u, RB, K, XB, XS, ZX, WB, acc);
        else
            tn_sub_dot(src, w + c * RB, 1u, RB, K, XB, XS, ZX, WB, acc);
        for (uint32_t j = 0; j < r; j++)
            v[j] = tn_m7_out(l, acc[j], c + j, REQ, NM == 1u ? 0u : 1u, ROUND, TN_RQ);
        if (MODE == 1u) {
            for (uint32_t j = 0; j < r; j++)
                if (v[j] > best[c + j]) best[c + j] = v[j];
        } else if (MODE == 2u && FADD) {
            tn_m7_add_fused(v, other + idx0 + c, out + idx0 + c, r, TN_FADD);
        } else {
            for (uint32_t j = 0; j < r; j++)
                tn_m7_emit(l, other, out, idx0 + c + j, v[j], MODE == 2u, OB);
        }
        c += r;
    }
}

/* The codes of output pixel (oy, ox)'s window: the input itself (DIRECT: a dense layer, or a
 * pointwise one without padding whose pixels start on a byte), else gathered into buf and
 * completed to KU codes (a whole number of units: no scalar tail in tn_sub_dot). */
TN_INLINE const uint8_t *tn_sub_window(const uint8_t *in, uint8_t *TN_RESTRICT buf, int32_t oy,
                                       int32_t ox, int32_t H, int32_t W, uint32_t C, int32_t KH,
                                       int32_t KW, int32_t SH, int32_t SW, int32_t PT,
                                       int32_t PL, uint32_t XB, int32_t ZX, uint32_t PADZERO,
                                       uint32_t DIRECT, uint32_t KU)
{
    if (DIRECT)
        return in + ((uint32_t)(oy * SH) * (uint32_t)W + (uint32_t)(ox * SW)) * C * XB / 8u;
    tn_sub_gather(in, buf, oy, ox, H, W, C, KH, KW, SH, SW, PT, PL, XB, ZX, PADZERO);
    { /* KU > K: the last unit completed with the code of x' = 0 (z_x, a code: steps.sub_units) */
        const uint32_t K = (uint32_t)(KH * KW) * C;
        for (uint32_t k = K; k < KU; k++)
            tn_set(buf, k, XB, (uint32_t)ZX & (XB == 8u ? 0xFFu : (1u << XB) - 1u));
    }
    return buf;
}

/* A dense (H = W = KH = KW = 1, C = K), pointwise or convolution layer with sub-byte weights or
 * inputs (weights in kernels_m7.sub_weights' order), optionally fused with the max pool (MODE 1)
 * or the residual ADD (MODE 2) after it, as tn_m7_gemm. Scratch (the step's, 4-byte aligned):
 * best, CO int32 (MODE 1 only), then buf, the gathered window (DIRECT = 0 only). */
TN_INLINE void tn_m7_sub(const tn_layer_t *l, const uint8_t *in, const uint8_t *other,
                         uint8_t *TN_RESTRICT out, int32_t *TN_RESTRICT best,
                         uint8_t *TN_RESTRICT buf, int32_t H, int32_t W, uint32_t C, int32_t OH,
                         int32_t OW, uint32_t CO, int32_t KH, int32_t KW, int32_t SH, int32_t SW,
                         int32_t PT, int32_t PL, uint32_t XB, uint32_t XS, int32_t ZX,
                         uint32_t PADZERO, uint32_t WB, uint32_t RB, uint32_t NWZP,
                         uint32_t HASZW, int32_t ZW, uint32_t REQ, uint32_t NM, uint32_t ROUND,
                         uint32_t OB, uint32_t MODE, uint32_t DIRECT, uint32_t KU, int32_t PH,
                         int32_t PW,
                         int32_t PSH, int32_t PSW, int32_t PPT, int32_t PPL, int32_t POH,
                         int32_t POW, TN_RQ_ARGS, TN_FADD_ARGS)
{
    /* the window's codes as the dot products read them: KU (a whole number of units, the rows
     * of the weights padded alike: kernels_m7.sub_weights) when gathered and padded */
    const uint32_t K = DIRECT ? (uint32_t)(KH * KW) * C : KU;
    if (MODE != 1u) {
        for (int32_t oy = 0; oy < OH; oy++)
            for (int32_t ox = 0; ox < OW; ox++) {
                const uint8_t *src = tn_sub_window(in, buf, oy, ox, H, W, C, KH, KW, SH, SW, PT,
                                                   PL, XB, ZX, PADZERO, DIRECT, KU);
                const int32_t sx = HASZW ? tn_sub_sumx(src, K, XB, XS, ZX, WB) : 0;
                tn_sub_pixel(l, src, sx, other, out, (uint32_t)(oy * OW + ox) * CO, best, K, CO,
                             XB, XS, ZX, WB, RB, NWZP, HASZW, ZW, REQ, NM, ROUND, OB, MODE,
                             TN_RQ, TN_FADD);
            }
        return;
    }
    { /* fused max pool: per pooled pixel, the max over its window's in-bounds layer outputs */
        uint32_t idx = 0;
        for (int32_t py = 0; py < POH; py++)
            for (int32_t px = 0; px < POW; px++) {
                for (uint32_t c = 0; c < CO; c++) best[c] = INT32_MIN;
                for (int32_t dy = 0; dy < PH; dy++) {
                    const int32_t oy = py * PSH - PPT + dy;
                    if (oy < 0 || oy >= OH) continue;
                    for (int32_t dx = 0; dx < PW; dx++) {
                        const int32_t ox = px * PSW - PPL + dx;
                        const uint8_t *src;
                        int32_t sx;
                        if (ox < 0 || ox >= OW) continue;
                        src = tn_sub_window(in, buf, oy, ox, H, W, C, KH, KW, SH, SW, PT, PL, XB,
                                            ZX, PADZERO, DIRECT, KU);
                        sx = HASZW ? tn_sub_sumx(src, K, XB, XS, ZX, WB) : 0;
                        tn_sub_pixel(l, src, sx, other, out, 0u, best, K, CO, XB, XS, ZX, WB,
                                     RB, NWZP, HASZW, ZW, REQ, NM, ROUND, OB, 1u, TN_RQ, TN_FADD);
                    }
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
 *   (bounded at export); A_3 = A_3' + 8 sum x'. Per lane pair, four rows, two pixels (16 MACs):
 *   one LDRD of lanes, one LDR of weights, three AND, eight SMLAD: 13 instructions, as
 *   tn_m7_conv's 13 per 16 MACs. RAW = 1: row 3 by a shift and an AND (14); RAW = 0: rows 1-3
 *   so (16), no bound needed.
 * - 2-bit: one word per two lane pairs q, q + 1: crumb r = row r at i_q, 4 + r = row r at
 *   i_{q+1}, 8 + r = row r at j_q, 12 + r = row r at j_{q+1}; AND with 0x00030003 << 2 r for
 *   rows 0-2, row 3 unmasked (bytes 0 and 2 alone, UXTB16: w_0 + 4 w_1 + 16 w_2 + 64 w_3,
 *   A_3 = (S_3 - S_0 - S_1 - S_2) / 64), then pair q + 1 from the word's bytes 1 and 3 (UXTB16
 *   ROR 8): 27 instructions per 32 MACs (row sums scaled by up to 64, within int32 by
 *   steps.sub_conv_fits).
 * The weight zero points enter once per output as in tn_m7_conv (tn_m7_cv_chan).
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

/* Unpack n words of XB-bit codes (XB < 8) at src into the lane pairs of one pixel from word d
 * on (two apart); returns sum + their x'. Unsigned 4-bit codes with z_x = 0 sum as
 * E + (U - E) / 16 with U = sum of the bytes (USADA8: even + 16 odd nibbles) and E the even
 * nibbles (lane pairs 0 and 2 added lane-wise: at most 30 n < 2^16 per lane), three
 * instructions per word instead of four. */
TN_INLINE int32_t tn_sc_run(const uint8_t *src, uint32_t *TN_RESTRICT d, uint32_t n, uint32_t XB,
                            uint32_t XS, int32_t ZX, int32_t sum)
{
    const uint32_t hp = 16u / XB;
    if (XB == 4u && !XS && ZX == 0 && n < 2048u) {
        uint32_t u = 0, e = 0;
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
        {
            const uint32_t even = (e & 0xFFFFu) + (e >> 16);
            return (int32_t)((uint32_t)sum + even + ((u - even) >> 4));
        }
    }
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
    for (int32_t ky = 0; ky < KH; ky++) {
        uint32_t *dr = d + (uint32_t)ky * KWCP;
        const int32_t iy = y0 + ky;
        const uint32_t rowin = iy >= 0 && iy < H;
        if (G == 32u / XB && rowin && x0 >= 0 && x0 + KW <= W) { /* the row: KWCP / G words */
            sum = tn_sc_run(in + ((uint32_t)iy * (uint32_t)W + (uint32_t)x0) * C * XB / 8u, dr,
                            KWCP / G, XB, XS, ZX, sum);
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

#if TN_M7_ASM
/* row R's products at both pixels: a_R += T . xa, b_R += T . xb */
#define TN_SC_ACC(T, R)                                                                         \
    "smlad %[a" #R "], %[" T "], %[xa], %[a" #R "]\n\t"                                          \
    "smlad %[b" #R "], %[" T "], %[xb], %[b" #R "]\n\t"
#define TN_SC_LD4 "ldrd %[xa], %[xb], [%[x]], #8\n\tldr %[w], [%[wp]], #4\n\t"
/* one lane pair of 4-bit weights: RAW 2 (row 3 the raw word), 1 (row 3 shifted), 0 */
#define TN_SC_G4R2                                                                              \
    TN_SC_LD4 "and %[t], %[w], #0x000F000F\n\t" TN_SC_ACC("t", 0)                                \
    "and %[t], %[w], #0x00F000F0\n\t" TN_SC_ACC("t", 1)                                          \
    "and %[t], %[w], #0x0F000F00\n\t" TN_SC_ACC("t", 2) TN_SC_ACC("w", 3)
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
#define TN_SC_HALF2A                                                                            \
    "and %[t], %[w], #0x00030003\n\t" TN_SC_ACC("t", 0)                                          \
    "and %[t], %[w], #0x000C000C\n\t" TN_SC_ACC("t", 1)                                          \
    "and %[t], %[w], #0x00300030\n\t" TN_SC_ACC("t", 2)                                          \
    "uxtb16 %[t], %[w]\n\t" TN_SC_ACC("t", 3)
#define TN_SC_HALF2B                                                                            \
    "and %[t], %[w], #0x00030003\n\t" TN_SC_ACC("t", 0)                                          \
    "and %[t], %[w], #0x000C000C\n\t" TN_SC_ACC("t", 1)                                          \
    "and %[t], %[w], #0x00300030\n\t" TN_SC_ACC("t", 2) TN_SC_ACC("w", 3)
#define TN_SC_G2                                                                                \
    TN_SC_LD4 TN_SC_HALF2A "ldrd %[xa], %[xb], [%[x]], #8\n\tuxtb16 %[w], %[w], ror #8\n\t"      \
    TN_SC_HALF2B
/* fourteen registers: the loop's end stays in memory (read into t once per four units) */
#define TN_SC_OPERANDS                                                                          \
    : [x] "+&r"(x), [wp] "+&r"(w), [xa] "=&r"(xa), [xb] "=&r"(xb), [w] "=&r"(u),               \
      [t] "=&r"(t), [a0] "+&r"(a0), [a1] "+&r"(a1), [a2] "+&r"(a2), [a3] "+&r"(a3),              \
      [b0] "+&r"(b0), [b1] "+&r"(b1), [b2] "+&r"(b2), [b3] "+&r"(b3)                             \
    : [end] "m"(end)                                                                            \
    : "cc", "memory"
#define TN_SC_BLOCKS(G)                                                                         \
    do {                                                                                        \
        if (NU & 1u) __asm__ volatile(G TN_SC_OPERANDS);                                        \
        if (NU & 2u) __asm__ volatile(G G TN_SC_OPERANDS);                                      \
        if (NU >= 4u)                                                                           \
            __asm__ volatile("1:\n\t" G G G G "ldr %[t], %[end]\n\tcmp %[x], %[t]\n\t"           \
                             "bne 1b\n\t" TN_SC_OPERANDS);                                      \
    } while (0)
#endif

/* The sums of one block of four rows (weights at w) at both pixels of the interleaved lanes
 * buf over KP lanes: acc[r] = sum_k w_r[k] x'_k at pixel 0, acc[4 + r] at pixel 1 (modulo
 * 2^32, row 3 with RAW = 2 as A_3' = sum (w_3 - 8) x'); returns w past the block. */
TN_INLINE const uint8_t *tn_sc_block(const uint8_t *w, const uint32_t *buf, uint32_t KP,
                                     uint32_t WB, uint32_t RAW, int32_t *acc)
{
    /* units: lane pairs (4-bit weights) or two of them (2-bit), one weight word each */
    const uint32_t NU = WB == 4u ? KP / 2u : KP / 4u;
    uint32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0;
#if TN_M7_ASM
    const uint32_t *x = buf, *end = buf + KP; /* KP / 2 words per pixel */
    uint32_t xa, xb, u, t;
    if (WB == 2u)
        TN_SC_BLOCKS(TN_SC_G2);
    else if (RAW == 2u)
        TN_SC_BLOCKS(TN_SC_G4R2);
    else if (RAW == 1u)
        TN_SC_BLOCKS(TN_SC_G4R1);
    else
        TN_SC_BLOCKS(TN_SC_G4R0);
#else
    { /* the same masks and multiply-accumulates, modulo 2^32 */
        uint32_t a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
        const uint32_t halves = WB == 2u ? 2u : 1u;
        for (uint32_t g = 0; g < NU; g++, w += 4) {
            const uint32_t u = tn_ld32(w);
            for (uint32_t h = 0; h < halves; h++) {
                const uint32_t *xg = buf + 2u * (halves * g + h);
                const uint32_t v = WB == 4u ? u : h ? tn_uxtb16_ror8(u) : tn_uxtb16(u);
                for (uint32_t r = 0; r < 4u; r++) {
                    uint32_t m;
                    if (WB == 2u) m = r == 3u ? v : v & (0x00030003u << (2u * r));
                    else if (r == 3u && RAW == 2u) m = v;
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
    /* back to unscaled sums: the shifts are exact (the bounds above) */
    {
        const uint32_t sh1 = WB == 2u ? 2u : RAW >= 1u ? 4u : 0u;
        const uint32_t sh2 = WB == 2u ? 4u : RAW >= 1u ? 8u : 0u;
        acc[0] = (int32_t)a0; acc[1] = (int32_t)a1 >> sh1; acc[2] = (int32_t)a2 >> sh2;
        acc[4] = (int32_t)b0; acc[5] = (int32_t)b1 >> sh1; acc[6] = (int32_t)b2 >> sh2;
        if (WB == 2u || RAW == 2u) { /* row 3 unmasked: the others taken off */
            const uint32_t sh3 = WB == 2u ? 6u : 12u;
            acc[3] = (int32_t)(a3 - a0 - a1 - a2) >> sh3;
            acc[7] = (int32_t)(b3 - b0 - b1 - b2) >> sh3;
        } else {
            acc[3] = (int32_t)a3;
            acc[7] = (int32_t)b3;
        }
    }
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

/* Outputs c .. c + 3 of one pixel (sums acc[0..3], sum x' sx) as OB = 4 or 2-bit codes at byte
 * `byte` of out: requantized and clamped as tn_m7_cv_chan (an 8-bit clamp never applies to
 * them), packed in a register, written by one STRH / STRB. */
TN_INLINE void tn_sc_put4(const tn_layer_t *l, const int32_t *bias, const uint8_t *wzp,
                          const int32_t *m0p, const int8_t *n0p, uint8_t *TN_RESTRICT out,
                          uint32_t byte, uint32_t c, const int32_t *acc, int32_t sx,
                          uint32_t NWZP, int32_t ZW, uint32_t REQ, uint32_t NM, uint32_t ROUND,
                          uint32_t OB, TN_RQ_ARGS)
{
    uint32_t packed = 0;
    TN_UNROLL
    for (uint32_t r = 0; r < 4u; r++) {
        const int32_t z = NWZP == 1u ? ZW : (int32_t)wzp[c + r];
        const int32_t m0c = NM == 1u ? 0 : m0p[c + r], n0c = NM == 1u ? 0 : (int32_t)n0p[c + r];
        const int32_t y = tn_m7_req(l, (uint32_t)bias[c + r] + (uint32_t)acc[r]
                                    - (uint32_t)z * (uint32_t)sx, c + r, m0c, n0c, REQ, NM,
                                    ROUND, TN_RQ);
        packed |= ((uint32_t)y & ((1u << OB) - 1u)) << (r * OB);
    }
    if (OB == 4u) {
        const uint16_t h = (uint16_t)packed;
        TN_MEMCPY(out + byte, &h, 2);
    } else {
        out[byte] = (uint8_t)packed;
    }
}

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
    int32_t s0, s1;
    /* both pixels' windows read before any output is written */
    if (XB == 8u) {
        s0 = tn_m7_cv_window(in, buf, oy0, ox0, H, W, C, KH, KW, SH, SW, PT, PL, XS, ZX,
                             PADZERO, KWCP, INSIDE);
        s1 = tn_m7_cv_window(in, buf + 1, oy1, ox1, H, W, C, KH, KW, SH, SW, PT, PL, XS, ZX,
                             PADZERO, KWCP, INSIDE);
    } else {
        s0 = tn_sc_window(in, buf, oy0, ox0, H, W, C, KH, KW, SH, SW, PT, PL, XB, XS, ZX,
                          PADZERO, GX, KWCP);
        s1 = tn_sc_window(in, buf + 1, oy1, ox1, H, W, C, KH, KW, SH, SW, PT, PL, XB, XS, ZX,
                          PADZERO, GX, KWCP);
    }
    for (uint32_t c = 0; c < CO; c += 4u) {
        int32_t acc[8];
        w = tn_sc_block(w, buf, KP, WB, RAW, acc);
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
    int32_t s0, s1;
    if (!TWO) { oy1 = oy0; ox1 = ox0; } /* the lone pixel twice */
    if (XB == 8u) {
        s0 = tn_m7_cv_window(in, buf, oy0, ox0, H, W, C, KH, KW, SH, SW, PT, PL, XS, ZX,
                             PADZERO, KWCP, INSIDE);
        s1 = tn_m7_cv_window(in, buf + 1, oy1, ox1, H, W, C, KH, KW, SH, SW, PT, PL, XS, ZX,
                             PADZERO, KWCP, INSIDE);
    } else {
        s0 = tn_sc_window(in, buf, oy0, ox0, H, W, C, KH, KW, SH, SW, PT, PL, XB, XS, ZX,
                          PADZERO, GX, KWCP);
        s1 = tn_sc_window(in, buf + 1, oy1, ox1, H, W, C, KH, KW, SH, SW, PT, PL, XB, XS, ZX,
                          PADZERO, GX, KWCP);
    }
    for (uint32_t c = 0; c < CO; c += 4u) {
        int32_t acc[8];
        w = tn_sc_block(w, buf, KP, WB, RAW, acc);
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

/* ---------------------------------------------------------------------------------------------
 * tn_m7_subfc: dense layers of 2 or 4-bit weights and 2, 4 or 8-bit inputs (steps.sub_fc_fits),
 * no scratch: tn_m7_subconv's weight blocks (kernels_m7.subfc_weights: rows in blocks of four,
 * nibbles / crumbs per lane pair) against one pixel, the input itself unpacked a word at a time
 * in registers (8-bit: UXTAB16 / SXTAB16 as tn_m7_fc, lanes (x0, x2), (x1, x3); b-bit: lane
 * pair j = (v >> j b) & mask, one AND with a shifted register, (x_j, x_{j + 16/b}); signed codes
 * with their sign bit flipped, one EOR per word, and x' = that - (z_x + 2^(b-1)) by SSUB16 only
 * when nonzero). An input ending inside a word: its last word completed with z_x (x' = 0) in a
 * register.
 * Per lane pair and block of four rows, 4-bit weights: half an LDRD (one LDR when the weights
 * are off a word boundary), three AND (RAW 2; RAW 1: four, RAW 0: six) and four SMLAD for
 * 8 MACs, RAW 2 in chunks of KC input words where the whole input could overflow
 * (kernels_m7.subfc_plan); 2-bit weights, per two lane pairs: half an LDRD, two UXTB16 (one
 * lane pair's crumbs each: row 3 unmasked, w_0 + 4 w_1 + 16 w_2 + 64 w_3), six AND and eight
 * SMLAD for 16 MACs, A_3 = (S_3 - S_0 - S_1 - S_2) / 64 exactly (|64 A_3| < 2^31:
 * steps.sub_fc_fits' bound). Plus one AND (and SSUB16) per lane pair and one LDR per input
 * word (8-bit: LDR and two XTAB16 per two lane pairs), shared by the block's four rows: about
 * 1.09 (4-bit inputs), 1.13 (8-bit) and 1.16 (2-bit weights) instructions per MAC in the loop,
 * against tn_m7_fc's 1.0 (its two rows per weight byte pair cost one UXTB16 per two SMLAD;
 * four rows per 16-bit lane cost three AND per four SMLAD, and a dense layer uses each
 * weight word once: nothing shares the unpacking).
 * The last one or two rows of N (N % 4 = 1, 2) in a pair block (tn_sf_pair): 4-bit weights, a
 * word per two lane pairs, UXTB16 gives both rows (row 1 scaled by 16), one AND row 0.
 * sum x' (the weight zero points; RAW 2's A_3 = A_3' + 8 sum x') once per layer: USADA8 sums of
 * the codes.
 * --------------------------------------------------------------------------------------------- */

/* sum x' over the NG words of inputs at in and (TAIL) the last partial word tw (its missing
 * codes z_x): USADA8 sums of the codes, sign bits flipped for signed ones (c ^ 2^(b-1) =
 * x + 2^(b-1)), minus (z_x + 2^(b-1)) per code. */
TN_INLINE int32_t tn_sf_sumx(const uint8_t *in, uint32_t NG, uint32_t tw, uint32_t TAIL,
                             uint32_t XB, uint32_t XS, int32_t ZX)
{
    const uint32_t flip = !XS ? 0u : XB == 8u ? 0x80808080u : XB == 4u ? 0x88888888u : 0xAAAAAAAAu;
    const uint32_t m = XB == 8u ? 0xFFFFFFFFu : XB == 4u ? 0x0F0F0F0Fu : 0x03030303u;
    const int32_t d = (XS ? (int32_t)(1u << (XB - 1u)) : 0) + ZX;
    /* su: the bytes' sums; s[f]: the codes of field f of each byte (times 2^(f XB)); the field
     * of the top codes is su minus the others */
    uint32_t su = 0, s0 = 0, s1 = 0, s2 = 0, t;
    for (uint32_t g = 0; g < NG + TAIL; g++) {
        const uint32_t v = (g < NG ? tn_ld32(in + 4u * g) : tw) ^ flip;
        su = tn_usada8(v, su);
        if (XB == 4u) s0 = tn_usada8(v & m, s0);
        if (XB == 2u) {
            s0 = tn_usada8(v & m, s0);
            s1 = tn_usada8(v & (m << 2), s1);
            s2 = tn_usada8(v & (m << 4), s2);
        }
    }
    if (XB == 8u) t = su;
    else if (XB == 4u) t = s0 + ((su - s0) >> 4);
    else t = s0 + (s1 >> 2) + (s2 >> 4) + ((su - s0 - s1 - s2) >> 6);
    return (int32_t)(t - (NG + TAIL) * (32u / XB) * (uint32_t)d);
}

#if TN_M7_ASM
/* row R += T . P (the lane pair P) */
#define TN_SF_ACC(T, R, P) "smlad %[a" #R "], %[" T "], %[" P "], %[a" #R "]\n\t"
/* one lane pair P of 4-bit weights (the word U, loaded before): RAW 2, 1, 0 as tn_m7_subconv */
#define TN_SF_W4R2(P, U)                                                                        \
    "and %[t], %[" U "], #0x000F000F\n\t" TN_SF_ACC("t", 0, P)                                  \
    "and %[t], %[" U "], #0x00F000F0\n\t" TN_SF_ACC("t", 1, P)                                  \
    "and %[t], %[" U "], #0x0F000F00\n\t" TN_SF_ACC("t", 2, P) TN_SF_ACC(U, 3, P)
#define TN_SF_W4R1(P, U)                                                                        \
    "and %[t], %[" U "], #0x000F000F\n\t" TN_SF_ACC("t", 0, P)                                  \
    "and %[t], %[" U "], #0x00F000F0\n\t" TN_SF_ACC("t", 1, P)                                  \
    "and %[t], %[" U "], #0x0F000F00\n\t" TN_SF_ACC("t", 2, P)                                  \
    "lsr %[" U "], %[" U "], #12\n\tand %[" U "], %[" U "], #0x000F000F\n\t" TN_SF_ACC(U, 3, P)
#define TN_SF_W4R0(P, U)                                                                        \
    "and %[t], %[" U "], #0x000F000F\n\t" TN_SF_ACC("t", 0, P)                                  \
    "lsr %[t], %[" U "], #4\n\tand %[t], %[t], #0x000F000F\n\t" TN_SF_ACC("t", 1, P)            \
    "lsr %[t], %[" U "], #8\n\tand %[t], %[t], #0x000F000F\n\t" TN_SF_ACC("t", 2, P)            \
    "lsr %[" U "], %[" U "], #12\n\tand %[" U "], %[" U "], #0x000F000F\n\t" TN_SF_ACC(U, 3, P)
/* 2-bit weights, the word U: lane pair q (bytes 0 and 2 of U) and q + 1 (bytes 1, 3) */
#define TN_SF_W2A(P, U)                                                                         \
    "and %[t], %[" U "], #0x00030003\n\t" TN_SF_ACC("t", 0, P)                                  \
    "and %[t], %[" U "], #0x000C000C\n\t" TN_SF_ACC("t", 1, P)                                  \
    "and %[t], %[" U "], #0x00300030\n\t" TN_SF_ACC("t", 2, P)                                  \
    "uxtb16 %[t], %[" U "]\n\t" TN_SF_ACC("t", 3, P)
#define TN_SF_W2B(P, U)                                                                         \
    "uxtb16 %[" U "], %[" U "], ror #8\n\t"                                                     \
    "and %[t], %[" U "], #0x00030003\n\t" TN_SF_ACC("t", 0, P)                                  \
    "and %[t], %[" U "], #0x000C000C\n\t" TN_SF_ACC("t", 1, P)                                  \
    "and %[t], %[" U "], #0x00300030\n\t" TN_SF_ACC("t", 2, P) TN_SF_ACC(U, 3, P)
/* weight words: two at a time into u, u2 (LDRD, word-aligned weights) or one by one */
#define TN_SF_LDD "ldrd %[u], %[u2], [%[wp]], #8\n\t"
#define TN_SF_LD1 "ldr %[u], [%[wp]], #4\n\t"
#define TN_SF_LD2 "ldr %[u2], [%[wp]], #4\n\t"
/* one input word of 4-bit (X4) or 2-bit (X2) codes: its lane pairs, each after the loads of
 * its weights (LA: into u, and u2 with LDRD; LB: into u2 unless LDRD): W4, one word per pair
 * (u, u2 in turn); W2, one per two pairs */
#define TN_SF_X4_W4(FLIP, SUB, W, LA, LB)                                                       \
    TN_SF_LDV(FLIP) LA TN_SF_XP0(SUB) W("p", "u") LB TN_SF_XP(4, SUB) W("p", "u2")              \
    LA TN_SF_XP(8, SUB) W("p", "u") LB TN_SF_XP(12, SUB) W("p", "u2")
#define TN_SF_X4_W2(FLIP, SUB, LA, LB)                                                          \
    TN_SF_LDV(FLIP) LA TN_SF_XP0(SUB) TN_SF_W2A("p", "u") TN_SF_XP(4, SUB) TN_SF_W2B("p", "u")  \
    LB TN_SF_XP(8, SUB) TN_SF_W2A("p", "u2") TN_SF_XP(12, SUB) TN_SF_W2B("p", "u2")
#define TN_SF_X2_W4(FLIP, SUB, W, LA, LB)                                                       \
    TN_SF_LDV(FLIP) LA TN_SF_XP0(SUB) W("p", "u") LB TN_SF_XP(2, SUB) W("p", "u2")              \
    LA TN_SF_XP(4, SUB) W("p", "u") LB TN_SF_XP(6, SUB) W("p", "u2")                            \
    LA TN_SF_XP(8, SUB) W("p", "u") LB TN_SF_XP(10, SUB) W("p", "u2")                           \
    LA TN_SF_XP(12, SUB) W("p", "u") LB TN_SF_XP(14, SUB) W("p", "u2")
#define TN_SF_X2_W2(FLIP, SUB, LA, LB)                                                          \
    TN_SF_LDV(FLIP) LA TN_SF_XP0(SUB) TN_SF_W2A("p", "u") TN_SF_XP(2, SUB) TN_SF_W2B("p", "u")  \
    LB TN_SF_XP(4, SUB) TN_SF_W2A("p", "u2") TN_SF_XP(6, SUB) TN_SF_W2B("p", "u2")              \
    LA TN_SF_XP(8, SUB) TN_SF_W2A("p", "u") TN_SF_XP(10, SUB) TN_SF_W2B("p", "u")               \
    LB TN_SF_XP(12, SUB) TN_SF_W2A("p", "u2") TN_SF_XP(14, SUB) TN_SF_W2B("p", "u2")
/* sub-byte input lane pairs: j = 0 and j > 0 (shift S = j XB); SUB: x' = lanes - d */
#define TN_SF_SUB "ssub16 %[p], %[p], %[d]\n\t"
#define TN_SF_XP0(SUB) "and %[p], %[v], %[m]\n\t" SUB
#define TN_SF_XP(S, SUB) "and %[p], %[m], %[v], lsr #" #S "\n\t" SUB
#define TN_SF_LDV(FLIP) "ldr %[v], [%[x]], #4\n\t" FLIP
/* 8-bit inputs (XT "s" / "u"): lanes (x0, x2) in v, (x1, x3) in p; W4: two words (LA, LB),
 * W2: one (TN_SF_LD1) */
#define TN_SF_X8_W4(XT, W, LA, LB)                                                              \
    "ldr %[v], [%[x]], #4\n\t" LA XT "xtab16 %[p], %[d], %[v], ror #8\n\t"                      \
    XT "xtab16 %[v], %[d], %[v]\n\t" W("v", "u") LB W("p", "u2")
#define TN_SF_X8_W2(XT)                                                                         \
    "ldr %[v], [%[x]], #4\n\t" TN_SF_LD1 XT "xtab16 %[p], %[d], %[v], ror #8\n\t"               \
    XT "xtab16 %[v], %[d], %[v]\n\t" TN_SF_W2A("v", "u") TN_SF_W2B("p", "u")
#define TN_SF_OPERANDS                                                                          \
    : [x] "+&r"(x), [wp] "+&r"(w), [v] "=&r"(v), [p] "=&r"(p), [u] "=&r"(u), [u2] "=&r"(u2),    \
      [t] "=&r"(t), [a0] "+&r"(a0), [a1] "+&r"(a1), [a2] "+&r"(a2), [a3] "+&r"(a3)              \
    : [end] "r"(end), [m] "r"(m), [d] "r"(d)                                                    \
    : "cc", "memory"
/* n input words: n % 4 first, then four per iteration */
#define TN_SF_RUN(G)                                                                            \
    do {                                                                                        \
        if (n & 1u) __asm__ volatile(G TN_SF_OPERANDS);                                         \
        if (n & 2u) __asm__ volatile(G G TN_SF_OPERANDS);                                       \
        if (n >= 4u)                                                                            \
            __asm__ volatile("1:\n\t" G G G G "cmp %[x], %[end]\n\tbne 1b\n\t" TN_SF_OPERANDS);  \
    } while (0)
/* the weights' variants of one sub-byte input width (X: X4 / X2) */
#define TN_SF_RUN_W(X, FLIP, SUB, LA, LB)                                                       \
    do {                                                                                        \
        if (WB == 2u) TN_SF_RUN(X##_W2(FLIP, SUB, LA, LB));                                     \
        else if (RAW == 2u) TN_SF_RUN(X##_W4(FLIP, SUB, TN_SF_W4R2, LA, LB));                   \
        else if (RAW == 1u) TN_SF_RUN(X##_W4(FLIP, SUB, TN_SF_W4R1, LA, LB));                   \
        else TN_SF_RUN(X##_W4(FLIP, SUB, TN_SF_W4R0, LA, LB));                                  \
    } while (0)
#define TN_SF_RUN_L(X, FLIP, SUB)                                                               \
    do {                                                                                        \
        if (aligned) TN_SF_RUN_W(X, FLIP, SUB, TN_SF_LDD, "");                                  \
        else TN_SF_RUN_W(X, FLIP, SUB, TN_SF_LD1, TN_SF_LD2);                                   \
    } while (0)
#define TN_SF_RUN_X(X, FLIP)                                                                    \
    do {                                                                                        \
        if (dx) TN_SF_RUN_L(X, FLIP, TN_SF_SUB);                                                \
        else TN_SF_RUN_L(X, FLIP, "");                                                          \
    } while (0)
#define TN_SF_RUN_8W(XT, LA, LB)                                                                \
    do {                                                                                        \
        if (WB == 2u) TN_SF_RUN(TN_SF_X8_W2(XT));                                               \
        else if (RAW == 2u) TN_SF_RUN(TN_SF_X8_W4(XT, TN_SF_W4R2, LA, LB));                     \
        else if (RAW == 1u) TN_SF_RUN(TN_SF_X8_W4(XT, TN_SF_W4R1, LA, LB));                     \
        else TN_SF_RUN(TN_SF_X8_W4(XT, TN_SF_W4R0, LA, LB));                                    \
    } while (0)
#define TN_SF_RUN_8(XT)                                                                         \
    do {                                                                                        \
        if (aligned) TN_SF_RUN_8W(XT, TN_SF_LDD, "");                                           \
        else TN_SF_RUN_8W(XT, TN_SF_LD1, TN_SF_LD2);                                            \
    } while (0)
#endif

/* The sums of one block of four rows (weights at w, read on) over n input words at in, as the
 * loop keeps them (rows 1-3 scaled, RAW 2's row 3 raw), added unscaled to A[0..3] modulo 2^32
 * (without RAW 2's 8 sum x'); returns w past their words. */
TN_INLINE const uint8_t *tn_sf_run(const uint8_t *w, const uint8_t *in, uint32_t n,
                                   uint32_t XB, uint32_t XS, int32_t ZX, uint32_t WB,
                                   uint32_t RAW, int32_t *A)
{
    /* XB < 8: dx = the lanes' offset z_x + 2^(b-1) (signed), m = a lane pair's mask;
     * XB = 8: dx = -z_x, added in both lanes as UXTAB16 / SXTAB16 widen */
    const int32_t dx = XB == 8u ? -ZX : (XS ? (int32_t)(1u << (XB - 1u)) : 0) + ZX;
    const uint32_t d = ((uint32_t)dx & 0xFFFFu) * 0x00010001u;
    uint32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#if TN_M7_ASM
    const uint8_t *x = in, *end = in + 4u * n;
    const uint32_t m = XB == 8u ? 0u : tn_lanemask(XB);
#if defined(TN_SF_NO_LDRD) /* the tests' build of the one-by-one loads (any alignment) */
    const uint32_t aligned = 0u;
#else
    const uint32_t aligned = ((uintptr_t)w & 3u) == 0u; /* LDRD (every block whole words) */
#endif
    uint32_t v, p, u, u2, t;
    if (XB == 8u && XS) TN_SF_RUN_8("s");
    else if (XB == 8u) TN_SF_RUN_8("u");
    else if (XB == 4u && XS) TN_SF_RUN_X(TN_SF_X4, "eor %[v], %[v], #0x88888888\n\t");
    else if (XB == 4u) TN_SF_RUN_X(TN_SF_X4, "");
    else if (XS) TN_SF_RUN_X(TN_SF_X2, "eor %[v], %[v], #0xAAAAAAAA\n\t");
    else TN_SF_RUN_X(TN_SF_X2, "");
#else
    { /* the same lanes, masks and multiply-accumulates, modulo 2^32 */
        const uint32_t np = XB == 8u ? 2u : 16u / XB;
        const uint32_t flip = !XS || XB == 8u ? 0u : XB == 4u ? 0x88888888u : 0xAAAAAAAAu;
        uint32_t u = 0;
        for (uint32_t g = 0; g < n; g++) {
            const uint32_t v = tn_ld32(in + 4u * g) ^ flip;
            for (uint32_t j = 0; j < np; j++) {
                uint32_t xp, mk[4];
                if (XB == 8u)
                    xp = XS ? (j ? tn_sxtab16_ror8(d, v) : tn_sxtab16(d, v))
                            : (j ? tn_uxtab16_ror8(d, v) : tn_uxtab16(d, v));
                else {
                    xp = (v >> (j * XB)) & tn_lanemask(XB);
                    if (dx) xp = tn_ssub16(xp, d);
                }
                if (WB == 2u) {
                    uint32_t r;
                    if (j % 2u == 0u) { u = tn_ld32(w); w += 4; }
                    r = j % 2u ? tn_uxtb16_ror8(u) : tn_uxtb16(u);
                    mk[0] = r & 0x00030003u; mk[1] = r & 0x000C000Cu; mk[2] = r & 0x00300030u;
                    mk[3] = r;
                } else {
                    u = tn_ld32(w);
                    w += 4;
                    mk[0] = u & 0x000F000Fu;
                    mk[1] = RAW >= 1u ? u & 0x00F000F0u : (u >> 4) & 0x000F000Fu;
                    mk[2] = RAW >= 1u ? u & 0x0F000F00u : (u >> 8) & 0x000F000Fu;
                    mk[3] = RAW == 2u ? u : (u >> 12) & 0x000F000Fu;
                }
                a0 = (uint32_t)tn_smlad(mk[0], xp, (int32_t)a0);
                a1 = (uint32_t)tn_smlad(mk[1], xp, (int32_t)a1);
                a2 = (uint32_t)tn_smlad(mk[2], xp, (int32_t)a2);
                a3 = (uint32_t)tn_smlad(mk[3], xp, (int32_t)a3);
            }
        }
    }
#endif
    /* back to unscaled sums, exact (the bounds of steps.sub_fc_fits / kernels_m7.subfc_plan) */
    {
        uint32_t s0 = a0, s1, s2, s3;
        if (WB == 2u) {
            s1 = (uint32_t)((int32_t)a1 >> 2); s2 = (uint32_t)((int32_t)a2 >> 4);
            s3 = (uint32_t)((int32_t)(a3 - a0 - a1 - a2) >> 6);
        } else {
            s1 = RAW >= 1u ? (uint32_t)((int32_t)a1 >> 4) : a1;
            s2 = RAW >= 1u ? (uint32_t)((int32_t)a2 >> 8) : a2;
            s3 = RAW == 2u ? (uint32_t)((int32_t)(a3 - a0 - a1 - a2) >> 12) : a3;
        }
        A[0] = (int32_t)((uint32_t)A[0] + s0); A[1] = (int32_t)((uint32_t)A[1] + s1);
        A[2] = (int32_t)((uint32_t)A[2] + s2); A[3] = (int32_t)((uint32_t)A[3] + s3);
    }
    return w;
}

/* The sums A_r = sum_k w_r[k] x'_k of one block of four rows (weights at w, NG words of inputs
 * at in, in chunks of KC words: the loop's scaled sums stay exact within a chunk; then, TAIL,
 * the last word completed at tw; sx = sum x', for RAW 2's row 3), exact modulo 2^32; returns w
 * past the block. */
TN_INLINE const uint8_t *tn_sf_block(const uint8_t *w, const uint8_t *in, uint32_t NG,
                                     const uint32_t *tw, uint32_t TAIL, uint32_t KC,
                                     uint32_t XB, uint32_t XS, int32_t ZX, uint32_t WB,
                                     uint32_t RAW, int32_t sx, int32_t *A)
{
    A[0] = A[1] = A[2] = A[3] = 0;
    for (uint32_t g = 0; g < NG; g += KC)
        w = tn_sf_run(w, in + 4u * g, NG - g < KC ? NG - g : KC, XB, XS, ZX, WB, RAW, A);
    if (TAIL) /* the last word, completed (a chunk of its own) */
        w = tn_sf_run(w, (const uint8_t *)tw, 1u, XB, XS, ZX, WB, RAW, A);
    if (WB == 4u && RAW == 2u) /* row 3 held w_3 - 8 */
        A[3] = (int32_t)((uint32_t)A[3] + 8u * (uint32_t)sx);
    return w;
}

#if TN_M7_ASM
/* the pair block's lane pair P: 4-bit weights (E: the word's bytes 0, 2, loading it; O: bytes
 * 1, 3), 2-bit weights (Q0: loading the word; Q k: its nibbles k); row 1 unmasked (SC) */
#define TN_SP_MAC(P)                                                                            \
    "smlad %[b1], %[t], %[" P "], %[b1]\n\t"                                                    \
    "and %[t], %[t], %[lo]\n\t"                                                                 \
    "smlad %[b0], %[t], %[" P "], %[b0]\n\t"
#define TN_SP_E(P) "ldr %[u], [%[wp]], #4\n\tuxtb16 %[t], %[u]\n\t" TN_SP_MAC(P)
#define TN_SP_O(P) "uxtb16 %[t], %[u], ror #8\n\t" TN_SP_MAC(P)
#define TN_SP_Q0(P) "ldr %[u], [%[wp]], #4\n\tand %[t], %[u], #0x000F000F\n\t" TN_SP_MAC(P)
#define TN_SP_Q(K, P) "and %[t], %[m2], %[u], lsr #" #K "\n\t" TN_SP_MAC(P)
#define TN_SP_X4_W4(FLIP, SUB)                                                                  \
    TN_SF_LDV(FLIP) TN_SF_XP0(SUB) TN_SP_E("p") TN_SF_XP(4, SUB) TN_SP_O("p")                  \
    TN_SF_XP(8, SUB) TN_SP_E("p") TN_SF_XP(12, SUB) TN_SP_O("p")
#define TN_SP_X2_W4(FLIP, SUB)                                                                  \
    TN_SF_LDV(FLIP) TN_SF_XP0(SUB) TN_SP_E("p") TN_SF_XP(2, SUB) TN_SP_O("p")                  \
    TN_SF_XP(4, SUB) TN_SP_E("p") TN_SF_XP(6, SUB) TN_SP_O("p")                                \
    TN_SF_XP(8, SUB) TN_SP_E("p") TN_SF_XP(10, SUB) TN_SP_O("p")                               \
    TN_SF_XP(12, SUB) TN_SP_E("p") TN_SF_XP(14, SUB) TN_SP_O("p")
#define TN_SP_X4_W2(FLIP, SUB)                                                                  \
    TN_SF_LDV(FLIP) TN_SF_XP0(SUB) TN_SP_Q0("p") TN_SF_XP(4, SUB) TN_SP_Q(4, "p")              \
    TN_SF_XP(8, SUB) TN_SP_Q(8, "p") TN_SF_XP(12, SUB) TN_SP_Q(12, "p")
#define TN_SP_X2_W2(FLIP, SUB)                                                                  \
    TN_SF_LDV(FLIP) TN_SF_XP0(SUB) TN_SP_Q0("p") TN_SF_XP(2, SUB) TN_SP_Q(4, "p")              \
    TN_SF_XP(4, SUB) TN_SP_Q(8, "p") TN_SF_XP(6, SUB) TN_SP_Q(12, "p")                         \
    TN_SF_XP(8, SUB) TN_SP_Q0("p") TN_SF_XP(10, SUB) TN_SP_Q(4, "p")                           \
    TN_SF_XP(12, SUB) TN_SP_Q(8, "p") TN_SF_XP(14, SUB) TN_SP_Q(12, "p")
#define TN_SP_X8_W4(XT)                                                                         \
    "ldr %[v], [%[x]], #4\n\t" XT "xtab16 %[p], %[d], %[v], ror #8\n\t"                         \
    XT "xtab16 %[v], %[d], %[v]\n\t" TN_SP_E("v") TN_SP_O("p")
#define TN_SP_OPERANDS                                                                          \
    : [x] "+&r"(x), [wp] "+&r"(w), [v] "=&r"(v), [p] "=&r"(p), [u] "=&r"(u), [t] "=&r"(t),      \
      [b0] "+&r"(a0), [b1] "+&r"(a1)                                                            \
    : [end] "r"(end), [m] "r"(m), [d] "r"(d), [m2] "r"(0x000F000Fu),                            \
      [lo] "r"(WB == 4u ? 0x000F000Fu : 0x00030003u)                                            \
    : "cc", "memory"
#define TN_SP_RUN(G)                                                                            \
    do {                                                                                        \
        if (n & 1u) __asm__ volatile(G TN_SP_OPERANDS);                                         \
        if (n & 2u) __asm__ volatile(G G TN_SP_OPERANDS);                                       \
        if (n >= 4u)                                                                            \
            __asm__ volatile("1:\n\t" G G G G "cmp %[x], %[end]\n\tbne 1b\n\t" TN_SP_OPERANDS);  \
    } while (0)
#define TN_SP_RUN_X(X, FLIP)                                                                    \
    do {                                                                                        \
        if (dx && WB == 4u) TN_SP_RUN(X##_W4(FLIP, TN_SF_SUB));                                 \
        else if (WB == 4u) TN_SP_RUN(X##_W4(FLIP, ""));                                         \
        else if (dx) TN_SP_RUN(X##_W2(FLIP, TN_SF_SUB));                                        \
        else TN_SP_RUN(X##_W2(FLIP, ""));                                                       \
    } while (0)
#endif

/* The sums of the last two rows of an N with N % 4 = 1 or 2 (the pair block, weights at w;
 * kernels_m7.subfc_weights): per two lane pairs (q, q + 1) a word of 4-bit weights, bytes
 * (i_q, i_{q+1}, j_q, j_{q+1}), each row 0 | row 1 << 4; per four lane pairs a word of 2-bit
 * weights, nibble t of the low half (r0 | r1 << 2) at i_{q+t}, of the high half at j_{q+t}.
 * UXTB16 / a shift and AND give a lane pair of both rows, row 1 scaled (SC: exact within a
 * chunk of KC words, as the blocks' rows 1; SC = 0, 4-bit: row 1 shifted down); one AND row 0.
 * Adds to A[0..1] modulo 2^32; returns w past the block. */
TN_INLINE const uint8_t *tn_sf_pair(const uint8_t *w, const uint8_t *in, uint32_t NG,
                                    uint32_t tw, uint32_t TAIL, uint32_t KC, uint32_t XB,
                                    uint32_t XS, int32_t ZX, uint32_t WB, uint32_t SC,
                                    int32_t *A)
{
    const int32_t dx = XB == 8u ? -ZX : (XS ? (int32_t)(1u << (XB - 1u)) : 0) + ZX;
    const uint32_t d = ((uint32_t)dx & 0xFFFFu) * 0x00010001u;
    const uint32_t np = XB == 8u ? 2u : 16u / XB; /* lane pairs per input word */
    const uint32_t flip = !XS || XB == 8u ? 0u : XB == 4u ? 0x88888888u : 0xAAAAAAAAu;
    const uint32_t per = WB == 4u ? 2u : 4u; /* lane pairs per weight word */
    const uint32_t sh = WB == 4u ? 4u : 2u;
    uint32_t u = 0, q = 0;
    for (uint32_t g0 = 0; g0 < NG + TAIL; g0 += KC) {
        const uint32_t g1 = NG + TAIL - g0 < KC ? NG + TAIL : g0 + KC;
        uint32_t a0 = 0, a1 = 0, g = g0;
#if TN_M7_ASM
        /* the chunk's words of in (whole weight words per input word: 2-bit weights need
         * four lane pairs per word, not 8-bit inputs' two) */
        if ((SC || WB == 2u) && !(WB == 2u && XB == 8u) && g0 < NG) {
            const uint32_t n = (g1 < NG ? g1 : NG) - g0;
            const uint8_t *x = in + 4u * g0, *end = x + 4u * n;
            const uint32_t m = XB == 8u ? 0u : tn_lanemask(XB);
            uint32_t v, p, u, t;
            if (XB == 8u && XS) TN_SP_RUN(TN_SP_X8_W4("s"));
            else if (XB == 8u) TN_SP_RUN(TN_SP_X8_W4("u"));
            else if (XB == 4u && XS) TN_SP_RUN_X(TN_SP_X4, "eor %[v], %[v], #0x88888888\n\t");
            else if (XB == 4u) TN_SP_RUN_X(TN_SP_X4, "");
            else if (XS) TN_SP_RUN_X(TN_SP_X2, "eor %[v], %[v], #0xAAAAAAAA\n\t");
            else TN_SP_RUN_X(TN_SP_X2, "");
            g += n;
            q += n * np;
        }
#endif
        for (; g < g1; g++) {
            const uint32_t v = (g < NG ? tn_ld32(in + 4u * g) : tw) ^ flip;
            TN_UNROLL
            for (uint32_t j = 0; j < np; j++, q++) {
                uint32_t xp, r;
                if (XB == 8u)
                    xp = XS ? (j ? tn_sxtab16_ror8(d, v) : tn_sxtab16(d, v))
                            : (j ? tn_uxtab16_ror8(d, v) : tn_uxtab16(d, v));
                else {
                    xp = (v >> (j * XB)) & tn_lanemask(XB);
                    if (dx) xp = tn_ssub16(xp, d);
                }
                if (q % per == 0u) { u = tn_ld32(w); w += 4; }
                if (WB == 4u)
                    r = q % 2u ? tn_uxtb16_ror8(u) : tn_uxtb16(u);
                else
                    r = (u >> (4u * (q % 4u))) & 0x000F000Fu;
                a0 = (uint32_t)tn_smlad(r & (WB == 4u ? 0x000F000Fu : 0x00030003u), xp,
                                        (int32_t)a0);
                a1 = (uint32_t)tn_smlad(SC || WB == 2u ? r : (r >> 4) & 0x000F000Fu, xp,
                                        (int32_t)a1);
            }
        }
        A[0] = (int32_t)((uint32_t)A[0] + a0);
        A[1] = (int32_t)((uint32_t)A[1] + (SC || WB == 2u ? (uint32_t)((int32_t)(a1 - a0) >> sh)
                                                            : a1));
    }
    if (q % per) w += 4; /* a 2-bit block's last word, partly used */
    return w;
}

/* A dense layer K -> N of WB = 2 / 4-bit weights (kernels_m7.subfc_weights' order; RAW, KC:
 * kernels_m7.subfc_plan) and XB = 2 / 4 / 8-bit inputs, no scratch (a last partial word of
 * inputs completed with z_x in a register):
 * blocks of four rows, the last one or two rows of N in a pair block. HASZW: some weight zero
 * point is nonzero (sum x' needed). */
TN_INLINE void tn_m7_subfc(const tn_layer_t *l, const uint8_t *in, uint8_t *TN_RESTRICT out,
                           uint32_t K, uint32_t N, uint32_t XB, uint32_t XS, int32_t ZX,
                           uint32_t WB, uint32_t RAW, uint32_t KC, uint32_t NWZP, uint32_t HASZW,
                           int32_t ZW, uint32_t REQ, uint32_t NM, uint32_t ROUND, uint32_t OB,
                           TN_RQ_ARGS)
{
    /* the layer's tables, read once (the asm's memory clobber would reload them) */
    const uint8_t *w = l->w, *wzp = l->wzp;
    const int32_t *bias = l->bias, *m0p = l->m0;
    const int8_t *n0p = l->n0;
    const uint32_t G = 32u / XB, NG = K / G, TAIL = K % G != 0u; /* whole input words */
    const uint32_t NQ = N % 4u == 1u || N % 4u == 2u ? N & ~3u : N; /* rows in blocks of four */
    uint32_t tw = 0; /* the last word's codes, then z_x's (x' = 0; a code: steps.sub_fc_fits) */
    int32_t sx;
    for (uint32_t e = 0; TAIL && e < G; e++)
        tw |= (NG * G + e < K ? (uint32_t)tn_get(in, NG * G + e, XB, 0u)
                              : (uint32_t)ZX & (XB == 8u ? 0xFFu : (1u << XB) - 1u)) << (e * XB);
    sx = HASZW || (WB == 4u && RAW == 2u) ? tn_sf_sumx(in, NG, tw, TAIL, XB, XS, ZX) : 0;
    for (uint32_t c = 0; c < N; c += 4u) {
        int32_t A[4];
        if (c < NQ) {
            w = tn_sf_block(w, in, NG, &tw, TAIL, KC, XB, XS, ZX, WB, RAW, sx, A);
        } else { /* the pair block */
            A[0] = A[1] = A[2] = A[3] = 0;
            w = tn_sf_pair(w, in, NG, tw, TAIL, KC, XB, XS, ZX, WB, RAW >= 1u, A);
        }
        if ((OB == 4u || OB == 2u) && c + 4u <= N) { /* four outputs, one store */
            tn_sc_put4(l, bias, wzp, m0p, n0p, out, c * OB / 8u, c, A, HASZW ? sx : 0, NWZP,
                       ZW, REQ, NM, ROUND, OB, TN_RQ);
            continue;
        }
        TN_UNROLL
        for (uint32_t r = 0; r < 4u; r++)
            if (c + r < N) {
                const int32_t z = !HASZW ? 0 : NWZP == 1u ? ZW : (int32_t)wzp[c + r];
                tn_m7_fc_put(l, out, c + r, (uint32_t)bias[c + r] + (uint32_t)A[r]
                             - (uint32_t)z * (uint32_t)sx, REQ, NM, ROUND, OB, TN_RQ);
            }
    }
}

#endif

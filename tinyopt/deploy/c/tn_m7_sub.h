/* tn_m7_sub.h: the Cortex-M7 kernel of dense, pointwise and convolution layers with sub-byte
 * weights or inputs that neither tn_m7_subconv (c/tn_m7_subconv.h: conv / pointwise, 2 / 4-bit
 * weights on tn_m7_conv's lanes) nor tn_m7_subfc (c/tn_m7_subfc.h: dense, no scratch) takes:
 * tn_m7_sub (conventions in tn_m7_core.h), chosen by tinyopt.integer.steps.sub_kernel so that
 * lowering bits never grows a step's scratch beyond the 8-bit kernel's.
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
 * FC form (steps.sub_fc_window: conv2d / pointwise layers of 2 / 4-bit weights and 2 / 4 / 8-bit
 * inputs): the same windows, in place or gathered into the same scratch, each taken as the
 * input of a dense layer by tn_m7_subfc's blocks (tn_sf_pixel, c/tn_m7_subfc.h; weights in
 * kernels_m7.subfc_weights' order), four or eight rows per unpacked input word and the last
 * partial word in a register: about half tn_sub_dot's instructions per MAC, the same arena.
 * Pixel pairs of tn_m7_subconv inside the FC form, their lanes in bytes no one reads: TLO (the
 * output's tail), HP (the dead input's head), and, where the output slides over an 8-bit input,
 * tn_m7_sub_sl (just past each pair's own outputs, up to the pair whose lanes would reach the
 * unread input: kernels_m7.sub.sub_slide_lanes). Where the two weight layouts differ (a first
 * layer of three 8-bit channels: the pairs pad window rows of 9 codes to 12 lanes) the pairs read
 * their own weights, appended after the FC form's at byte WOFF (kernels_m7.sub.sub_pair_weights,
 * at most 512 bytes): VWW's 3x3 / 2 first layer (--subbyte, x w8a8) w4a4 1.003 -> 0.985, w2a2
 * 1.034 -> 0.984, the arena unchanged, 144 / 72 bytes of flash.
 *
 * Output order: pixel by pixel, channels in order, each output written after every read of its
 * window (a pixel's window is re-read for later channel blocks, never after a later pixel's
 * output is written): the planner's sliding writes (steps.write_delay) stay valid. */
#ifndef TN_M7_SUB_H
#define TN_M7_SUB_H

#include "tn_m7_core.h"
#include "tn_m7_add.h"
#include "tn_m7_subfc.h" /* tn_sf_pixel: the FC form */

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

/* n bytes from src to dst, a word at a time (unaligned LDR / STR: the Cortex-M7 allows them),
 * inline: a window row of a few bytes is not worth a call to the library's memcpy. */
TN_INLINE void tn_sub_copy(uint8_t *TN_RESTRICT dst, const uint8_t *src, uint32_t n)
{
    uint32_t i = 0;
    for (; i + 4u <= n; i += 4u) {
        const uint32_t v = tn_ld32(src + i);
        TN_MEMCPY(dst + i, &v, 4);
    }
    for (; i < n; i++) dst[i] = src[i];
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
        if (bytewise && iy >= 0 && iy < H && x0 >= 0 && x0 + KW <= W) {
            /* a window row inside the input: KW C contiguous codes, one copy */
            const uint32_t base = ((uint32_t)iy * (uint32_t)W + (uint32_t)x0) * C;
            tn_sub_copy(buf + k * XB / 8u, in + base * XB / 8u, (uint32_t)KW * C * XB / 8u);
            k += (uint32_t)KW * C;
            continue;
        }
        for (int32_t kx = 0; kx < KW; kx++, k += C) {
            const int32_t ix = x0 + kx;
            const uint32_t inside = iy >= 0 && iy < H && ix >= 0 && ix < W;
            const uint32_t base = inside ? ((uint32_t)iy * (uint32_t)W + (uint32_t)ix) * C : 0u;
            if (bytewise && inside) {
                tn_sub_copy(buf + k * XB / 8u, in + base * XB / 8u, C * XB / 8u);
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
        tn_sf_hand_on(l, v, r, other, out, idx0, best, c, OB, MODE, TN_FADD);
        c += r;
    }
}

/* The codes of output pixel (oy, ox)'s window: the input itself (DIRECT: a dense layer, or a
 * pointwise one without padding whose pixels start on a byte), else gathered into buf and
 * completed to KU codes (a whole number of units: no scalar tail in tn_sub_dot; the FC form:
 * at least a whole number of words, so that tn_sf_pixel builds no last word). */
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


/* The FC form's pixel p of tn_m7_sub and of its entries tn_m7_sub_epi / tn_m7_sub_sl: its window
 * gathered (tn_sub_window), then tn_sf_pixel's rows (MODE 0). A macro over the caller's
 * parameters (RF: the FC form's RAW, TN_SUB_RF), so that the three loops compile to what they
 * did written out. */
#define TN_SUB_FC_PIXEL(p)                                                                      \
    tn_sf_pixel(l, tn_sub_window(in, buf, (int32_t)((p) / (uint32_t)OW),                         \
                                 (int32_t)((p) % (uint32_t)OW), H, W, C, KH, KW, SH, SW, PT, PL, \
                                 XB, ZX, PADZERO, DIRECT, KG),                                   \
                other, out, (p) * CO, best, KF, CO, XB, XS, ZX, WB, RF, KC, OCT, NWZP, HASZW,   \
                ZW, REQ, NM, ROUND, OB, 0u, TN_RQ, TN_FADD)
/* RAW of the FC form's blocks (tn_sf_pixel): with 2-bit weights RAW is the pixel pairs' PK
 * (tn_m7_subconv's RAW 1 with 2-bit weights, kernels_m7.subconv_pack: the same weight bytes),
 * while kernels_m7.subfc_plan gives tn_m7_subfc's 2-bit blocks RAW 0. They ignore it today
 * (a build with RF = RAW gives the same outputs); RF keeps them on RAW 0 should that change. */
#define TN_SUB_RF (WB == 2u ? 0u : RAW)

/* The layer the pixel pairs of tn_m7_subconv read: l itself where they share the FC form's
 * weight bytes (kernels_m7.sub.sub_lane_layout, WOFF = 0), else a copy of it whose weights
 * are tn_m7_subconv's own, WOFF bytes after the FC form's (kernels_m7.sub.sub_pair_weights: a
 * first layer of three 8-bit channels, whose window rows of 9 codes the pairs pad to 12
 * lanes). A macro over the caller's l and WOFF: the copy only where WOFF != 0 (a constant). */
#define TN_SUB_PAIR_LAYER(lp)                                                                   \
    tn_layer_t lp##_copy;                                                                       \
    const tn_layer_t *lp = l;                                                                   \
    if (WOFF) {                                                                                 \
        lp##_copy = *l;                                                                         \
        lp##_copy.w = l->w + WOFF;                                                              \
        lp = &lp##_copy;                                                                        \
    }

/* A dense (H = W = KH = KW = 1, C = K), pointwise or convolution layer with sub-byte weights or
 * inputs (weights in kernels_m7.sub_weights' order), optionally fused with the max pool (MODE 1)
 * or the residual ADD (MODE 2) after it, as tn_m7_gemm. Scratch (the step's, 4-byte aligned):
 * best, CO int32 (MODE 1 only), then buf, the gathered window (DIRECT = 0 only). FC: each
 * window's K = KH KW C codes by tn_sf_pixel (RAW, KC, OCT: kernels_m7.subfc_plan / subfc_oct
 * of the layer as a dense one; with 2-bit weights RAW is the pairs' PK, TN_SUB_RF), else by
 * tn_sub_pixel. TLO (FC, MODE 0;
 * kernels_m7.sub.sub_tail_lanes): the pixel pairs whose outputs end before byte TLO of out first
 * run tn_m7_subconv's tn_sc_pixels (its weights are the same bytes:
 * kernels_m7.sub.sub_lane_layout; GX, KWCP, INSIDE as tn_m7_subconv's), their lanes at
 * out + TLO, bytes of pixels the FC form writes afterwards. HP (FC, MODE 0;
 * kernels_m7.sub.sub_head_lanes): from pixel HP on, the pairs run tn_sc_pixels again, their
 * lanes at the start of the input (the step is its last reader, and no window from pixel HP
 * on reads a byte of the lanes); the FC form takes the pixels between the two. */
TN_INLINE void tn_m7_sub(const tn_layer_t *l, const uint8_t *in, const uint8_t *other,
                         uint8_t *TN_RESTRICT out, int32_t *TN_RESTRICT best,
                         uint8_t *TN_RESTRICT buf, int32_t H, int32_t W, uint32_t C, int32_t OH,
                         int32_t OW, uint32_t CO, int32_t KH, int32_t KW, int32_t SH, int32_t SW,
                         int32_t PT, int32_t PL, uint32_t XB, uint32_t XS, int32_t ZX,
                         uint32_t PADZERO, uint32_t WB, uint32_t RB, uint32_t NWZP,
                         uint32_t HASZW, int32_t ZW, uint32_t REQ, uint32_t NM, uint32_t ROUND,
                         uint32_t OB, uint32_t MODE, uint32_t DIRECT, uint32_t KU, uint32_t FC,
                         uint32_t RAW, uint32_t KC, uint32_t OCT, uint32_t TLO, uint32_t HP,
                         uint32_t GX,
                         uint32_t KWCP, uint32_t INSIDE, uint32_t WOFF, int32_t PH,
                         int32_t PW,
                         int32_t PSH, int32_t PSW, int32_t PPT, int32_t PPL, int32_t POH,
                         int32_t POW, TN_RQ_ARGS, TN_FADD_ARGS)
{
    /* the window's codes as the dot products read them: KU (a whole number of units, the rows
     * of the weights padded alike: kernels_m7.sub_weights) when gathered and padded */
    const uint32_t K = DIRECT ? (uint32_t)(KH * KW) * C : KU;
    /* FC: the window's codes in place, or gathered and completed with z_x (x' = 0; a code where
     * needed: steps.sub_fc_window) to whole words (the gathered scratch, rounded up to a word,
     * holds them; the weights' rows are padded to whole words alike: kernels_m7.subfc_weights) */
    const uint32_t KF = DIRECT ? (uint32_t)(KH * KW) * C
                               : ((uint32_t)(KH * KW) * C * XB + 31u) / 32u * (32u / XB);
    const uint32_t KG = FC && KF > KU ? KF : KU; /* codes of a gathered window */
    const uint32_t RF = TN_SUB_RF;
#if defined(__ARM_FEATURE_DSP)
    /* the gathered window's address is a constant of the step (arena + offset): hidden, so that
     * GCC keeps it in a register instead of rebuilding it beside the FC blocks' fourteen
     * registers (-O2, hard float: "impossible constraints" on the blocks of eight) */
    if (FC) __asm__("" : "+r"(buf));
#endif
    if (MODE != 1u) {
        if (FC && (TLO || HP) && MODE == 0u) { /* lanes in the output's tail (sub_tail_lanes)
                                                 * and / or the input's head (sub_head_lanes) */
            /* its own loops: in one with the generic one GCC (-O2 / -O3, hard float) could not
             * allocate the FC blocks' fourteen registers */
            uint32_t *const tail = (uint32_t *)(void *)(out + TLO); /* 4-byte aligned:
                                                                     * sub_tail_lanes */
            uint32_t *const head = (uint32_t *)(void *)(uintptr_t)in; /* sub_head_lanes */
            const uint32_t np = (uint32_t)(OH * OW);
            const uint32_t p0 = TLO ? TLO / (CO * OB / 8u) & ~1u : 0u;
            const uint32_t p1 = HP == 0u ? np : HP > p0 ? HP : p0;
            TN_SUB_PAIR_LAYER(lp)
            /* in pixel order: tn_m7_subconv's pairs before p0 (lanes in the tail), the FC form
             * from p0 to p1 (over the tail lanes' bytes), then pairs again, their lanes over
             * the input's rows no later window reads (the step is that input's last reader:
             * its bytes are the step's to overwrite once the FC form has read them); a last
             * lone pixel by the FC form. One call of each (about 3 KB of code per step less
             * than a loop per part) */
            for (uint32_t p = 0; p < np;) {
                if (p + 2u <= np && (p < p0 || p >= p1)) {
                    tn_sc_pixels(lp, in, other, out, p < p0 ? tail : head, (int32_t *)0, p, 1u,
                                 0u, H, W, C, OW, CO, KH, KW, SH, SW, PT, PL, XB, XS, ZX,
                                 PADZERO, GX, KWCP, INSIDE, WB, RAW, NWZP, ZW, REQ, NM, ROUND,
                                 OB, (const uint8_t *)0, 0u, TN_RQ, TN_FADD);
                    p += 2u;
                } else {
                    TN_SUB_FC_PIXEL(p);
                    p++;
                }
            }
            return;
        }
        for (int32_t oy = 0; oy < OH; oy++)
            for (int32_t ox = 0; ox < OW; ox++) {
                const uint8_t *src = tn_sub_window(in, buf, oy, ox, H, W, C, KH, KW, SH, SW, PT,
                                                   PL, XB, ZX, PADZERO, DIRECT, KG);
                int32_t sx;
                if (FC) {
                    tn_sf_pixel(l, src, other, out, (uint32_t)(oy * OW + ox) * CO, best, KF, CO,
                                XB, XS, ZX, WB, RF, KC, OCT, NWZP, HASZW, ZW, REQ, NM, ROUND,
                                OB, MODE, TN_RQ, TN_FADD);
                    continue;
                }
                sx = HASZW ? tn_sub_sumx(src, K, XB, XS, ZX, WB) : 0;
                tn_sub_pixel(l, src, sx, other, out, (uint32_t)(oy * OW + ox) * CO, best, K, CO,
                             XB, XS, ZX, WB, RB, NWZP, HASZW, ZW, REQ, NM, ROUND, OB, MODE,
                             TN_RQ, TN_FADD);
            }
        return;
    }
    { /* fused max pool: per pooled pixel, the max over its window's in-bounds layer outputs */
        uint32_t idx = 0;
        /* a gathered window's codes K .. KG - 1 (z_x's) once per call, not per pixel: the gather
         * writes codes 0 .. K - 1 only, and nothing else writes buf during the step (seed_cnn's
         * first layer+pool, 9 codes of 16: seven byte stores a pixel) */
        const uint32_t KW0 = DIRECT ? KG : (uint32_t)(KH * KW) * C;
        for (uint32_t k = KW0; k < KG; k++)
            tn_set(buf, k, XB, (uint32_t)ZX & (XB == 8u ? 0xFFu : (1u << XB) - 1u));
        for (int32_t py = 0; py < POH; py++)
            for (int32_t px = 0; px < POW; px++) {
                TN_UNROLL /* CO a constant: GCC's loop reloaded its end and the constant */
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
                                            ZX, PADZERO, DIRECT, KW0);
                        if (FC) {
                            tn_sf_pixel(l, src, other, out, 0u, best, KF, CO, XB, XS, ZX, WB, RF,
                                        KC, OCT, NWZP, HASZW, ZW, REQ, NM, ROUND, OB, 1u, TN_RQ,
                                        TN_FADD);
                            continue;
                        }
                        sx = HASZW ? tn_sub_sumx(src, K, XB, XS, ZX, WB) : 0;
                        tn_sub_pixel(l, src, sx, other, out, 0u, best, K, CO, XB, XS, ZX, WB,
                                     RB, NWZP, HASZW, ZW, REQ, NM, ROUND, OB, 1u, TN_RQ, TN_FADD);
                    }
                }
                if (OB == 8u) { /* clamped and stored in one loop (tn_m7_store's own: 4 per
                                 * output more) */
                    const int32_t lo = l->pool_lo, hi = l->pool_hi;
                    for (uint32_t c = 0; c < CO; c++) {
                        int32_t y = best[c];
                        if (y < lo) y = lo;
                        if (y > hi) y = hi;
                        out[idx + c] = (uint8_t)y;
                    }
                } else {
                    tn_m7_pool_out(l, out, idx, best, CO, OB);
                }
                idx += CO;
            }
    }
}


/* tn_m7_sub for the FC-form steps with tn_m7_subconv's pairs (TLO / HP, MODE 0) where
 * kernels_m7.sub.sub_epi gives those pairs tn_sc_epi (the same parameters): the pairs by
 * tn_sc_pixels_e, the FC form's pixels as tn_m7_sub; tn_m7_sub itself where the C's test
 * (tn_sc_epi_fits) disagrees. An entry of its own, as tn_m7_subconv_epi: a never-taken branch
 * inside tn_m7_sub would change GCC's code for its other steps. */
TN_INLINE void tn_m7_sub_epi(const tn_layer_t *l, const uint8_t *in, const uint8_t *other,
                             uint8_t *TN_RESTRICT out, int32_t *TN_RESTRICT best,
                             uint8_t *TN_RESTRICT buf, int32_t H, int32_t W, uint32_t C,
                             int32_t OH, int32_t OW, uint32_t CO, int32_t KH, int32_t KW,
                             int32_t SH, int32_t SW, int32_t PT, int32_t PL, uint32_t XB,
                             uint32_t XS, int32_t ZX, uint32_t PADZERO, uint32_t WB, uint32_t RB,
                             uint32_t NWZP, uint32_t HASZW, int32_t ZW, uint32_t REQ, uint32_t NM,
                             uint32_t ROUND, uint32_t OB, uint32_t MODE, uint32_t DIRECT,
                             uint32_t KU, uint32_t FC, uint32_t RAW, uint32_t KC, uint32_t OCT,
                             uint32_t TLO, uint32_t HP, uint32_t GX, uint32_t KWCP,
                             uint32_t INSIDE, uint32_t WOFF, int32_t PH, int32_t PW, int32_t PSH,
                             int32_t PSW,
                             int32_t PPT, int32_t PPL, int32_t POH, int32_t POW, TN_RQ_ARGS,
                             TN_FADD_ARGS)
{
    const uint32_t KF = DIRECT ? (uint32_t)(KH * KW) * C
                               : ((uint32_t)(KH * KW) * C * XB + 31u) / 32u * (32u / XB);
    const uint32_t KG = KF > KU ? KF : KU; /* codes of a gathered window (FC) */
    const uint32_t RF = TN_SUB_RF;
    if (!(FC && (TLO || HP) && MODE == 0u)
        || !tn_sc_epi_fits(WB, RAW, 0u, 0u, CO, NWZP, REQ, NM, ROUND, OB, TN_RQ)) {
        tn_m7_sub(l, in, other, out, best, buf, H, W, C, OH, OW, CO, KH, KW, SH, SW, PT, PL, XB,
                  XS, ZX, PADZERO, WB, RB, NWZP, HASZW, ZW, REQ, NM, ROUND, OB, MODE, DIRECT, KU,
                  FC, RAW, KC, OCT, TLO, HP, GX, KWCP, INSIDE, WOFF, PH, PW, PSH, PSW, PPT, PPL,
                  POH, POW, TN_RQ, TN_FADD);
        return;
    }
#if defined(__ARM_FEATURE_DSP)
    __asm__("" : "+r"(buf)); /* as tn_m7_sub: the gathered window's address in a register */
#endif
    {
        uint32_t *const tail = (uint32_t *)(void *)(out + TLO); /* as tn_m7_sub */
        uint32_t *const head = (uint32_t *)(void *)(uintptr_t)in;
        const uint32_t np = (uint32_t)(OH * OW);
        const uint32_t p0 = TLO ? TLO / (CO * OB / 8u) & ~1u : 0u;
        const uint32_t p1 = HP == 0u ? np : HP > p0 ? HP : p0;
        TN_SUB_PAIR_LAYER(lp)
        for (uint32_t p = 0; p < np;) {
            if (p + 2u <= np && (p < p0 || p >= p1)) {
                tn_sc_pixels_e(lp, in, other, out, p < p0 ? tail : head, (int32_t *)0, p, 1u, 0u,
                               H, W, C, OW, CO, KH, KW, SH, SW, PT, PL, XB, XS, ZX, PADZERO, GX,
                               KWCP, INSIDE, WB, RAW, ZW, REQ, NM, ROUND, OB,
                               (const uint8_t *)0, TN_RQ);
                p += 2u;
            } else {
                TN_SUB_FC_PIXEL(p);
                p++;
            }
        }
    }
}

/* tn_m7_sub's FC form for a step whose output overlaps its 8-bit input (a sliding write: no
 * TLO / HP, kernels_m7.sub.sub_slide_lanes): the pixel pairs p < PSL (PSL even) run
 * tn_m7_subconv's tn_sc_pixels with their lanes (4 KP bytes) just past the pair's own
 * outputs, at out + (p + 2) CO OB / 8 rounded up to a word: bytes of outputs not yet written
 * that hold no input byte still to be read (the exporter checks, pair by pair, that the lanes
 * end before the first input byte the pair's windows read, and inside the output); the pixels
 * from PSL on by the FC form.
 * No scratch: VWW's 8 -> 16 channel w4a8 pointwise layer (48 x 48 pixels, its output sliding
 * over its input) ran the FC form alone, ~570 instructions per pixel against ~350 for int8.
 * An entry of its own, as tn_m7_sub_epi. */
TN_INLINE void tn_m7_sub_sl(const tn_layer_t *l, const uint8_t *in, const uint8_t *other,
                            uint8_t *TN_RESTRICT out, int32_t *TN_RESTRICT best,
                            uint8_t *TN_RESTRICT buf, int32_t H, int32_t W, uint32_t C,
                            int32_t OH, int32_t OW, uint32_t CO, int32_t KH, int32_t KW,
                            int32_t SH, int32_t SW, int32_t PT, int32_t PL, uint32_t XB,
                            uint32_t XS, int32_t ZX, uint32_t PADZERO, uint32_t WB, uint32_t RB,
                            uint32_t NWZP, uint32_t HASZW, int32_t ZW, uint32_t REQ, uint32_t NM,
                            uint32_t ROUND, uint32_t OB, uint32_t MODE, uint32_t DIRECT,
                            uint32_t KU, uint32_t FC, uint32_t RAW, uint32_t KC, uint32_t OCT,
                            uint32_t TLO, uint32_t HP, uint32_t GX, uint32_t KWCP,
                            uint32_t INSIDE, uint32_t WOFF, int32_t PH, int32_t PW, int32_t PSH,
                            int32_t PSW,
                            int32_t PPT, int32_t PPL, int32_t POH, int32_t POW, TN_RQ_ARGS,
                            TN_FADD_ARGS, uint32_t PSL)
{
    const uint32_t KF = DIRECT ? (uint32_t)(KH * KW) * C
                               : ((uint32_t)(KH * KW) * C * XB + 31u) / 32u * (32u / XB);
    const uint32_t KG = KF > KU ? KF : KU; /* codes of a gathered window (FC) */
    const uint32_t RF = TN_SUB_RF;
    const uint32_t np = (uint32_t)(OH * OW), PO = CO * OB / 8u;
    uint32_t p = 0;
    if (!(FC && MODE == 0u && !TLO && !HP) || PSL > np) {
        tn_m7_sub(l, in, other, out, best, buf, H, W, C, OH, OW, CO, KH, KW, SH, SW, PT, PL, XB,
                  XS, ZX, PADZERO, WB, RB, NWZP, HASZW, ZW, REQ, NM, ROUND, OB, MODE, DIRECT, KU,
                  FC, RAW, KC, OCT, TLO, HP, GX, KWCP, INSIDE, WOFF, PH, PW, PSH, PSW, PPT, PPL,
                  POH, POW, TN_RQ, TN_FADD);
        return;
    }
#if defined(__ARM_FEATURE_DSP)
    __asm__("" : "+r"(buf)); /* as tn_m7_sub: the gathered window's address in a register */
#endif
    /* its own loops, as tn_m7_sub's TLO / HP ones (WOFF is 0 here: kernels_m7.sub
     * .sub_slide_lanes asks for one weight array) */
    for (; p + 2u <= PSL; p += 2u)
        tn_sc_pixels(l, in, other, out,
                     (uint32_t *)(((uintptr_t)(out + (p + 2u) * PO) + 3u) & ~(uintptr_t)3u),
                     (int32_t *)0, p, 1u, 0u, H, W, C, OW, CO, KH, KW, SH, SW, PT, PL, XB, XS, ZX, PADZERO, GX,
                     KWCP, INSIDE, WB, RAW, NWZP, ZW, REQ, NM, ROUND, OB, (const uint8_t *)0, 0u,
                     TN_RQ, TN_FADD);
    for (; p < np; p++) {
        TN_SUB_FC_PIXEL(p);
    }
}

#endif

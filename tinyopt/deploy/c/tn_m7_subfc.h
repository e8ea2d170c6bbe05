/* tn_m7_subfc.h: sub-byte dense layers without scratch (tn_m7_subfc; small ones, tn_m7_subfc16,
 * below it; the sub-byte kernels: c/tn_m7_sub.h). */
#ifndef TN_M7_SUBFC_H
#define TN_M7_SUBFC_H

#include "tn_m7_subconv.h" /* its weight blocks, tn_usada8, tn_sc_put4 */

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
 * weight word once: nothing shares the unpacking). Four sums of a lane's four rows need four
 * SMLAD, three of them on an operand of their own (a mask, cumulative or not: RAW 2 is the
 * "nibble form" of tn_m7_fc's R - S_a), so 7.5 instructions per 8 MACs before the input's
 * unpacking whatever the order: below tn_m7_fc only with more flash (tn_m7_subfc16's int16
 * lanes, kept to small layers).
 * The last one or two rows of N (N % 4 = 1, 2) in a pair block (tn_sf_pair): 4-bit weights, a
 * word per two lane pairs, UXTB16 gives both rows (row 1 scaled by 16), one AND row 0.
 * sum x' (the weight zero points; RAW 2's A_3 = A_3' + 8 sum x') once per layer: USADA8 sums of
 * the codes (tn_sf_sumx, two words a pass in asm), or, where a pair block reads 8-bit inputs
 * or 4-bit ones without an offset, on that block's own loads (PF, tn_m7_subfc).
 * Where the instructions of the --subbyte dense rows still above w8a8 go (session 20):
 * seed_cnn's 2028 -> 10 logits, rows 0-7 a block of eight (4-bit inputs: 68 per 64 MACs) and a
 * pair block (23 per 16 MACs: UXTB16 / AND and two SMLAD per lane pair are its floor on this
 * layout), a last partial word (no LEAN, no UNP: its 4 KB would grow the arena); w4a4 24,560,
 * w4a8 24,920, w2a2 24,840 against w8a8's 23,440. AD's 640 -> 128 first layer (8-bit inputs,
 * RAW 2 in chunks of 64 words: not lean): the blocks' loop alone (33 per 32 MACs and the loop's
 * end) is tn_m7_fc's whole layer; below it needs fewer masks per lane than 3 per 4 rows.
 * Session 21: the rest of that layer was the chunks (RAW 2's 64 words: tn_so_block's sums to
 * and from memory in C, about sixty instructions a chunk) and tn_sf_out4 (about fourteen per
 * output): LP (tn_sl_pieces) runs those blocks lean, in pieces, folding only rows 3 and 7 at a
 * piece's end. --subbyte's AD first layer (K = 640, 8-bit inputs, z_x = 0): w4a8 91,998 ->
 * 89,478, w4a4 91,838 -> 89,438, w2a2 (2-bit weights) 94,318 -> 92,038 (w8a8 86,638): the
 * loop's 33.75 per 32 MACs (its end three per four words) is 86,400 of them, so 1.0x is out of
 * reach on this layout (the epilogue alone, nine per output, is 1,152). Then the 8-bit inputs'
 * LDRD loops eight words a pass (TN_SL_LOOP8, lean and LP): 88,558, 88,518, 91,118; AD's
 * 128 -> 128 layers at w4a8 19,040 -> 18,840 (w8a8 18,560); text +0.6 KB per loop form used.
 * Session 22: the lean / LP epilogues two rows a statement (TN_SL_RQ2, TN_SL_RQ12) and FAST 1
 * in asm (TN_SL_RQ1), tn_m7_subfc16's ONE8 (8-bit inputs, K = 8) and one STRH per eight 2-bit
 * codes: --subbyte's AD dense rows w4a8 118,360 -> 116,400, w2a2 116,920 -> 115,440 (w8a8
 * 115,440). Left of AD w4a8's excess: about ten instructions per block of eight on its
 * 128 -> 128 layers (18,700 against 18,560): the loop's end (three per eight words; sixteen a
 * pass would save six per block, +1 KB of text per form), TN_SL_PICK's TST / BNE / B (one
 * could go), GCC's spill of two sums around the pairs (three). seed_cnn's logits: the pair
 * block is the excess (rows 8, 9: 26 instructions per word of 4-bit inputs for 16 MACs, 13.5
 * per word of 8-bit ones for 8); int16 lanes for those two rows (LDRD and two SMLAD per lane
 * pair, no masks) would bring w4a4 and w4a8 under w8a8 for 6 KB more flash (seed, K = 2028),
 * but that layout is kernels_m7.subconv.subfc_weights' (not this round's files).
 * Session 23 (QEMU single-stepped, per-PC counts): seed_cnn's first layer+pool (tn_m7_sub's FC
 * form, MODE 1) spent about 220 of its ~660 instructions per pixel outside the dot products:
 * tn_sf_emit4's v[] and tn_sf_hand_on's second loop (18 per output), the window's z_x codes
 * rewritten per pixel, best's fill and the clamp / store loops. Now w2a8 448,231 -> 327,473,
 * w4a8 422,512 -> 318,914, w4a4 422,392 -> 330,233 (w8a8 444,791; text +64 .. +124 B). Tried:
 * tn_sub_copy's last 1 .. 3 bytes unrolled or as a halfword and a byte (seed w2a8 -15,000),
 * but VWW's first layer rose 3,500 either way. The dense rows: AD's first layer (8-bit inputs, LP)
 * is 85,120 of 88,459 in its loop at w4a8 (33.25 per 32 MACs: 6 masks per 8 rows, LDR and two
 * UXTB16 per word per block), 87,680 of 90,980 at w2a8 (7 masks per 8 rows), against w8a8's
 * 86,638 in all; AD's 128 -> 128 at w4a8 95 per block of eight outside the loop (epilogue 59,
 * I 4, DIFF 6, pointers and spills 20); seed's logits 68 + 25 per 4-bit input word (blocks of
 * eight and PF's pair block with the codes' sums). Left: UNP for 8-bit inputs (the lane pairs
 * (x0, x2), (x1, x3) unpacked once per layer: one LDRD per word per block instead of LDR and
 * two UXTB16, about -64 per block of eight on AD's 128 -> 128 layers) needs
 * kernels_m7.subconv.subfc_unpack and steps.sub_fc_unpack_size to admit XB = 8.
 * --------------------------------------------------------------------------------------------- */

/* The last, partial input word of K codes at in (K % (32 / XB) != 0): its codes, then z_x's in
 * the missing fields (x' = 0; z_x a code of the input's width: steps.sub_fc_fits /
 * sub_fc_window); 0 when the K codes fill whole words. */
TN_INLINE uint32_t tn_sf_tail_word(const uint8_t *in, uint32_t K, uint32_t XB, int32_t ZX)
{
    const uint32_t G = 32u / XB, NG = K / G;
    uint32_t tw = 0;
    for (uint32_t e = 0; K % G != 0u && e < G; e++)
        tw |= (NG * G + e < K ? (uint32_t)tn_get(in, NG * G + e, XB, 0u)
                              : (uint32_t)ZX & (XB == 8u ? 0xFFu : (1u << XB) - 1u)) << (e * XB);
    return tw;
}

/* One word v of codes (sign bits flipped already) into the sums su and s0 of tn_sf_sumx: 8-bit,
 * su the bytes' sum; 4-bit, su = sum of the bytes, s0 = of their low nibbles; 2-bit, the word's
 * crumbs first summed in pairs into nibbles ((v & 0x33..) + (v >> 2 & 0x33..), each <= 6),
 * then as 4-bit. The codes' sum is su (8-bit) or s0 + (su - s0) / 16. */
TN_INLINE void tn_sf_sumx1(uint32_t v, uint32_t XB, uint32_t *su, uint32_t *s0)
{
    if (XB == 2u) v = (v & 0x33333333u) + ((v >> 2) & 0x33333333u);
    *su = tn_usada8(v, *su);
    if (XB != 8u) *s0 = tn_usada8(v & 0x0F0F0F0Fu, *s0);
}

#if TN_M7_ASM
/* tn_sf_sumx's loop, two words a pass (v, v2; FLIP: their sign bits, or nothing); 2-bit
 * codes: both words' crumb pairs (nibbles <= 6) added, nibbles <= 12, then summed as 4-bit
 * ones. Per two words 2 LDR, the loop's end (two) and 8-bit: two USADA8; 4-bit: six;
 * 2-bit: ten, not GCC's nine a word from the C loop (the end reloaded from the stack). Every
 * in-out operand early-clobbered: GCC otherwise gave z (0) the register of su (also 0 before). */
#define TN_SX_LD "ldr %[v], [%[x]], #4\n\tldr %[v2], [%[x]], #4\n\t"
#define TN_SX_E(F) "eor %[v], %[v], #" F "\n\teor %[v2], %[v2], #" F "\n\t"
#define TN_SX_8 "usada8 %[su], %[v], %[z], %[su]\n\tusada8 %[su], %[v2], %[z], %[su]\n\t"
#define TN_SX_N                                                                                 \
    "usada8 %[su], %[v], %[z], %[su]\n\tand %[v], %[v], #0x0F0F0F0F\n\t"                       \
    "usada8 %[s0], %[v], %[z], %[s0]\n\t"
#define TN_SX_4 TN_SX_N "usada8 %[su], %[v2], %[z], %[su]\n\tand %[v2], %[v2], #0x0F0F0F0F\n\t" \
    "usada8 %[s0], %[v2], %[z], %[s0]\n\t"
#define TN_SX_2                                                                                 \
    "and %[t], %[v], #0x33333333\n\tand %[v], %[v], #0xCCCCCCCC\n\t"                           \
    "add %[v], %[t], %[v], lsr #2\n\tand %[t], %[v2], #0x33333333\n\t"                         \
    "and %[v2], %[v2], #0xCCCCCCCC\n\tadd %[v2], %[t], %[v2], lsr #2\n\t"                      \
    "add %[v], %[v], %[v2]\n\t" TN_SX_N
#define TN_SX_ASM(BODY)                                                                         \
    __asm__ volatile("1:\n\t" TN_SX_LD BODY "cmp %[x], %[e]\n\tbne 1b\n\t"                    \
                     : [x] "+&r"(x), [su] "+&r"(su), [s0] "+&r"(s0), [v] "=&r"(v),            \
                       [v2] "=&r"(v2), [t] "=&r"(t)                                            \
                     : [e] "r"(e), [z] "r"(0u)                                                  \
                     : "cc", "memory")
#endif

/* sum x' over the NG words of inputs at in and (TAIL) the last partial word tw (its missing
 * codes z_x): USADA8 sums of the codes, sign bits flipped for signed ones (c ^ 2^(b-1) =
 * x + 2^(b-1)), minus (z_x + 2^(b-1)) per code. */
TN_INLINE int32_t tn_sf_sumx(const uint8_t *in, uint32_t NG, uint32_t tw, uint32_t TAIL,
                             uint32_t XB, uint32_t XS, int32_t ZX)
{
    const uint32_t flip = !XS ? 0u : XB == 8u ? 0x80808080u : XB == 4u ? 0x88888888u : 0xAAAAAAAAu;
    const int32_t d = (XS ? (int32_t)(1u << (XB - 1u)) : 0) + ZX;
    uint32_t su = 0, s0 = 0, g = 0, t;
#if TN_M7_ASM
    if (NG > 8u) { /* pairs of words in asm, the odd one and the tail below (fewer words:
                    * GCC unrolls the C loop, a window of tn_sf_pixel; at 8 words, DS-CNN's 64
                    * 4-bit channels per pixel, the asm's loop cost 2,920 more per layer) */
        const uint8_t *x = in, *const e = in + 8u * (NG / 2u);
        uint32_t v, v2;
        if (XB == 8u && XS) TN_SX_ASM(TN_SX_E("0x80808080") TN_SX_8);
        else if (XB == 8u) TN_SX_ASM(TN_SX_8);
        else if (XB == 4u && XS) TN_SX_ASM(TN_SX_E("0x88888888") TN_SX_4);
        else if (XB == 4u) TN_SX_ASM(TN_SX_4);
        else if (XS) TN_SX_ASM(TN_SX_E("0xAAAAAAAA") TN_SX_2);
        else TN_SX_ASM(TN_SX_2);
        (void)t;
        g = NG & ~1u;
    }
#endif
    for (; g < NG + TAIL; g++)
        tn_sf_sumx1((g < NG ? tn_ld32(in + 4u * g) : tw) ^ flip, XB, &su, &s0);
    t = XB == 8u ? su : s0 + ((su - s0) >> 4);
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
    : [end] "m"(end), [m] "r"(m), [d] "r"(d)                                                    \
    : "cc", "memory"
/* n input words: n % 4 first, then four per iteration (the end read from memory into t, free
 * there: a register fewer, which GCC needs where tn_sf_pixel's loops surround the blocks) */
#define TN_SF_RUN(G)                                                                            \
    TN_RUN4(n, G, "ldr %[t], %[end]\n\tcmp %[x], %[t]\n\tbne 1b\n\t", TN_SF_OPERANDS)
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

/* ---------------------------------------------------------------------------------------------
 * Blocks of eight rows (OCT, kernels_m7.subfc_oct: inputs without an offset, dx = 0; OCT is
 * their chunk, in input words), so that every unpacked input lane pair feeds eight rows, not
 * four, and one LDRD brings a lane pair's weights of eight rows. No temporary: fourteen
 * registers hold eight sums, two weight words, the input word and lane pair and the two
 * pointers (the loop's end is read from the stack), so each weight word is masked in place,
 * cumulatively, C_r the sum over its rows 0 .. r, and A_r = (C_r - C_{r-1}) / scale_r.
 * 4-bit weights at RAW 2: two blocks of four rows, their words of each lane pair side by side
 * (kernels_m7.subfc_weights; the same bytes); C_3 = the word, C_2 = BIC 0xF000F000,
 * C_1 = AND 0x00FF00FF, C_0 = AND 0x000F000F, 16^r A_r = C_r - C_{r-1}: exact under RAW 2's
 * bounds (kernels_m7.subconv_raw / subfc_plan's chunks; the differences are exact modulo
 * 2^32). Per lane pair (16 MACs) one LDRD, six AND / BIC, eight SMLAD.
 * 2-bit weights: one word per lane pair holds its eight rows, lane = sum_r 4^r w_r (row 7
 * stored ^ 2: w_7 - 2 in the int16 lane's top, + 2 sum x'); seven cumulative masks (BIC
 * 0xC000C000, 0xF000F000, 0xFC00FC00, AND 0x00FF00FF, 0x003F003F, 0x000F000F, 0x00030003),
 * 4^r A_r = C_r - C_{r-1}, exact where every 4^r |A_r| and 16384 |A_7 - 2 sum x'| < 2^31
 * (bounded at export from the weights, else chunks short enough whatever the weights:
 * kernels_m7.subfc_oct). Per lane pair (16 MACs) half an LDRD, seven masks, eight SMLAD.
 * The input, per word: 8-bit, LDR and two UXTB16 / SXTB16 (two lane pairs); 4-bit, LDR (EOR)
 * and seven AND / LSR (four; no register for a mask); 2-bit, LDR (EOR) and fifteen (eight).
 * In the loop (before its end, three per two or four words), 4-bit weights: 1.03, 1.06 and
 * 1.06 instructions per MAC over 8, 4 and 2-bit inputs (blocks of four: 1.13, 1.09, 1.08);
 * 2-bit: 1.06, 1.09, 1.09 (blocks of four: 1.25, 1.19, 1.17).
 * Inputs with an offset keep the blocks of four (SSUB16 / XTAB16 need the offset in a
 * register: a fifteenth) unless tn_m7_subfc folds it into a constant per row (FOLD, at
 * tn_m7_subfc: 8-bit inputs, 4-bit weights, K >= 64; AD's first layer 94,598 -> 89,958);
 * 8-bit ones with 4-bit weights at RAW 2 run them two at a time
 * (TWIN, below: the offset read from the stack once per input word).
 * --------------------------------------------------------------------------------------------- */
#if TN_M7_ASM
/* one word U of four rows (R0 .. R3) against the lane pair P, cumulative masks */
#define TN_SO_W(U, P, R0, R1, R2, R3)                                                          \
    "smlad %[a" #R3 "], %[" U "], %[" P "], %[a" #R3 "]\n\t"                                    \
    "bic %[" U "], %[" U "], #0xF000F000\n\t"                                                   \
    "smlad %[a" #R2 "], %[" U "], %[" P "], %[a" #R2 "]\n\t"                                    \
    "and %[" U "], %[" U "], #0x00FF00FF\n\t"                                                   \
    "smlad %[a" #R1 "], %[" U "], %[" P "], %[a" #R1 "]\n\t"                                    \
    "and %[" U "], %[" U "], #0x000F000F\n\t"                                                   \
    "smlad %[a" #R0 "], %[" U "], %[" P "], %[a" #R0 "]\n\t"
/* a lane pair P's eight rows (LD: its two words into u, u2) */
#define TN_SO_Q(LD, P) LD TN_SO_W("u", P, 0, 1, 2, 3) TN_SO_W("u2", P, 4, 5, 6, 7)
#define TN_SO_LDD "ldrd %[u], %[u2], [%[wp]], #8\n\t"
/* 2-bit weights: the word U of a lane pair's eight rows against P, cumulative masks */
#define TN_SO_M(U, P, MK, OP, R) OP " %[" U "], %[" U "], #" MK "\n\t"                          \
    "smlad %[a" #R "], %[" U "], %[" P "], %[a" #R "]\n\t"
#define TN_SO_W2(U, P)                                                                          \
    "smlad %[a7], %[" U "], %[" P "], %[a7]\n\t" TN_SO_M(U, P, "0xC000C000", "bic", 6)          \
    TN_SO_M(U, P, "0xF000F000", "bic", 5) TN_SO_M(U, P, "0xFC00FC00", "bic", 4)                 \
    TN_SO_M(U, P, "0x00FF00FF", "and", 3) TN_SO_M(U, P, "0x003F003F", "and", 2)                 \
    TN_SO_M(U, P, "0x000F000F", "and", 1) TN_SO_M(U, P, "0x00030003", "and", 0)
/* lane pairs A (even: loading the two words, LD) and B (odd: LB, the second word) */
#define TN_SO_Q2A(LD, P) LD TN_SO_W2("u", P)
#define TN_SO_Q2B(LB, P) LB TN_SO_W2("u2", P)
#define TN_SO_LD1 "ldr %[u], [%[wp]], #4\n\t"
#define TN_SO_LB1 "ldr %[u2], [%[wp]], #4\n\t"
#define TN_SO_LD2 "ldr %[u], [%[wp]], #4\n\tldr %[u2], [%[wp]], #4\n\t"
/* lane pair j > 0 of a sub-byte input word v into p: masked in place, shifted down */
#define TN_SO_XP(MASK, S) "and %[p], %[v], #" MASK "\n\tlsr %[p], %[p], #" #S "\n\t"
/* one input word, its lane pairs in turn (QA, QB: the even and odd ones' weights, LD / LB
 * their loads): 8-bit (XT "u" / "s": lanes (x0, x2) in v, (x1, x3) in p) */
#define TN_SO_X8(XT, QA, QB, LD, LB)                                                            \
    "ldr %[v], [%[x]], #4\n\t" XT "xtb16 %[p], %[v], ror #8\n\t" XT "xtb16 %[v], %[v]\n\t"      \
    QA(LD, "v") QB(LB, "p")
#define TN_SO_X4(FLIP, QA, QB, LD, LB)                                                          \
    "ldr %[v], [%[x]], #4\n\t" FLIP "and %[p], %[v], #0x000F000F\n\t" QA(LD, "p")               \
    TN_SO_XP("0x00F000F0", 4) QB(LB, "p") TN_SO_XP("0x0F000F00", 8) QA(LD, "p")                 \
    TN_SO_XP("0xF000F000", 12) QB(LB, "p")
#define TN_SO_X2(FLIP, QA, QB, LD, LB)                                                          \
    "ldr %[v], [%[x]], #4\n\t" FLIP "and %[p], %[v], #0x00030003\n\t" QA(LD, "p")               \
    TN_SO_XP("0x000C000C", 2) QB(LB, "p") TN_SO_XP("0x00300030", 4) QA(LD, "p")                 \
    TN_SO_XP("0x00C000C0", 6) QB(LB, "p") TN_SO_XP("0x03000300", 8) QA(LD, "p")                 \
    TN_SO_XP("0x0C000C00", 10) QB(LB, "p") TN_SO_XP("0x30003000", 12) QA(LD, "p")               \
    TN_SO_XP("0xC000C000", 14) QB(LB, "p")
/* In-out operands "+r", not "+&r": the early clobber is redundant on them (an in-out operand's
 * register holds its own input, shared with no other) but made GCC's allocator fail with an FPU
 * (-mfpu=fpv5-d16, hard or softfp ABI: 'asm' operand has impossible constraints at -O2, -O3,
 * -Os); only the outputs written before the inputs are read (v, p, u, u2) keep the "&". */
#define TN_SO_OPERANDS                                                                          \
    : [x] "+r"(x), [wp] "+r"(w), [v] "=&r"(v), [p] "=&r"(p), [u] "=&r"(u), [u2] "=&r"(u2),      \
      [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [a4] "+r"(a4),                \
      [a5] "+r"(a5), [a6] "+r"(a6), [a7] "+r"(a7)                                               \
    : [e] "m"(end)                                                                              \
    : "cc", "memory"
#define TN_SO_END "ldr %[p], %[e]\n\tcmp %[x], %[p]\n\tbne 1b\n\t"
/* n input words: 8-bit, n % 4 first, then four per pass; sub-byte, n % 2, then two */
#define TN_SO_RUN4(G) TN_RUN4(n, G, TN_SO_END, TN_SO_OPERANDS)
#define TN_SO_RUN2(G)                                                                           \
    do {                                                                                        \
        if (n & 1u) __asm__ volatile(G TN_SO_OPERANDS);                                         \
        if (n >= 2u) __asm__ volatile("1:\n\t" G G TN_SO_END TN_SO_OPERANDS);                   \
    } while (0)
/* n input words in one asm statement, four per pass, entered at the pass's word 4 - n % 4 (the
 * first pass takes n % 4 words; n = 0: none): (end - x) = 4 n, << 29 puts n's bit 0 in N and
 * bit 1 in C. One statement, not one per remainder: with an FPU GCC found no registers
 * at -O2 / -O3 for statements carrying the sums from one to the next (TWIN's); and the words'
 * code four times, not seven (n % 4 first, then the loop) */
#define TN_SF_RUN4_ASM(G, OPERANDS)                                                             \
    __asm__ volatile("ldr %[p], %[e]\n\tsub %[p], %[p], %[x]\n\tlsls %[p], %[p], #29\n\t"       \
                     "bmi 7f\n\tbcs 3f\n\tb 5f\n\t7:\n\tbcs 2f\n\tb 4f\n\t"                     \
                     "5:\n\tldr %[p], %[e]\n\tcmp %[x], %[p]\n\tbeq 6f\n\t"                     \
                     "1:\n\t" G "2:\n\t" G "3:\n\t" G "4:\n\t" G                                \
                     "ldr %[p], %[e]\n\tcmp %[x], %[p]\n\tbne 1b\n\t6:\n\t" OPERANDS)
/* 4-bit inputs (64 MACs a word, where the loop's end, three instructions, showed) */
#define TN_SO_RUN4X(G) TN_SF_RUN4_ASM(G, TN_SO_OPERANDS)
#define TN_SO_RUN_LD(QA, QB, LD, LB)                                                            \
    do {                                                                                        \
        if (XB == 8u && XS) TN_SO_RUN4(TN_SO_X8("s", QA, QB, LD, LB));                          \
        else if (XB == 8u) TN_SO_RUN4(TN_SO_X8("u", QA, QB, LD, LB));                           \
        else if (XB == 4u && XS)                                                                \
            TN_SO_RUN4X(TN_SO_X4("eor %[v], %[v], #0x88888888\n\t", QA, QB, LD, LB));           \
        else if (XB == 4u) TN_SO_RUN4X(TN_SO_X4("", QA, QB, LD, LB));                           \
        else if (XS) TN_SO_RUN2(TN_SO_X2("eor %[v], %[v], #0xAAAAAAAA\n\t", QA, QB, LD, LB));  \
        else TN_SO_RUN2(TN_SO_X2("", QA, QB, LD, LB));                                          \
    } while (0)
#endif

/* The sums of one block of eight rows (weights at w, read on) over n input words at in (no
 * offset: dx = 0), as the loop keeps them (cumulative, scaled), added unscaled to A[0..7]
 * modulo 2^32 (without RAW 2's 8 sum x'); returns w past their words. W3 (4-bit weights, FOLD:
 * kernels_m7.subfc_fold_window): 4096 A_3 (A_7) known to lie in [-4096 W3, 2^32 - 4096 W3),
 * so C_3 - C_2 modulo 2^32 gives it even where |4096 A_3| >= 2^31 (raw 8-bit codes: a window
 * of 2^32 around a range off-centre, not 2^31 either side); 0: [-2^31, 2^31), an arithmetic
 * shift. */
TN_INLINE const uint8_t *tn_so_run(const uint8_t *w, const uint8_t *in, uint32_t n,
                                   uint32_t XB, uint32_t XS, uint32_t WB, uint32_t W3, int32_t *A)
{
    uint32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
#if TN_M7_ASM
    const uint8_t *x = in, *end = in + 4u * n;
#if defined(TN_SF_NO_LDRD) /* the tests' build of the one-by-one loads (any alignment) */
    const uint32_t aligned = 0u;
#else
    const uint32_t aligned = ((uintptr_t)w & 3u) == 0u;
#endif
    uint32_t v, p, u, u2;
    if (WB == 2u && aligned) TN_SO_RUN_LD(TN_SO_Q2A, TN_SO_Q2B, TN_SO_LDD, "");
    else if (WB == 2u) TN_SO_RUN_LD(TN_SO_Q2A, TN_SO_Q2B, TN_SO_LD1, TN_SO_LB1);
    else if (aligned) TN_SO_RUN_LD(TN_SO_Q, TN_SO_Q, TN_SO_LDD, TN_SO_LDD);
    else TN_SO_RUN_LD(TN_SO_Q, TN_SO_Q, TN_SO_LD2, TN_SO_LD2);
#else
    { /* the same lanes, cumulative masks and multiply-accumulates, modulo 2^32 */
        const uint32_t np = XB == 8u ? 2u : 16u / XB;
        const uint32_t flip = !XS || XB == 8u ? 0u : XB == 4u ? 0x88888888u : 0xAAAAAAAAu;
        uint32_t *acc[8] = {&a0, &a1, &a2, &a3, &a4, &a5, &a6, &a7};
        for (uint32_t g = 0; g < n; g++) {
            const uint32_t v = tn_ld32(in + 4u * g) ^ flip;
            for (uint32_t j = 0; j < np; j++) {
                const uint32_t x8 = XS ? (j ? tn_sxtab16_ror8(0u, v) : tn_sxtab16(0u, v))
                                       : (j ? tn_uxtab16_ror8(0u, v) : tn_uxtab16(0u, v));
                const uint32_t xp = XB == 8u ? x8 : (v >> (j * XB)) & tn_lanemask(XB);
                if (WB == 2u) { /* one word, eight rows */
                    const uint32_t u = tn_ld32(w);
                    w += 4;
                    for (uint32_t r = 0; r < 8u; r++) {
                        /* rows 0 .. r: the low 2 r + 2 bits of each lane; row 7, the word */
                        const uint32_t c = r == 7u ? u : u & ((4u << (2u * r)) - 1u) * 0x00010001u;
                        *acc[r] = (uint32_t)tn_smlad(c, xp, (int32_t)*acc[r]);
                    }
                    continue;
                }
                for (uint32_t h = 0; h < 2u; h++) {
                    const uint32_t u = tn_ld32(w);
                    const uint32_t c[4] = {u & 0x000F000Fu, u & 0x00FF00FFu, u & ~0xF000F000u, u};
                    w += 4;
                    for (uint32_t r = 0; r < 4u; r++)
                        *acc[4u * h + r] = (uint32_t)tn_smlad(c[r], xp, (int32_t)*acc[4u * h + r]);
                }
            }
        }
    }
#endif
    if (WB == 2u) { /* 4^r A_r = C_r - C_{r-1}, exact (kernels_m7.subfc_oct's bound) */
        const uint32_t c[8] = {a0, a1, a2, a3, a4, a5, a6, a7};
        A[0] = (int32_t)((uint32_t)A[0] + a0);
        TN_UNROLL
        for (uint32_t r = 1; r < 8u; r++)
            A[r] = (int32_t)((uint32_t)A[r] + (uint32_t)((int32_t)(c[r] - c[r - 1u]) >> (2u * r)));
        return w;
    }
    { /* back to unscaled sums: 16^r A_r = C_r - C_{r-1}, exact (the bounds of RAW 2) */
        /* W3: (4096 A_3 + 4096 W3) in [0, 2^32), a logical shift, then - W3 */
        const uint32_t s[8] = {a0, (uint32_t)((int32_t)(a1 - a0) >> 4),
                               (uint32_t)((int32_t)(a2 - a1) >> 8),
                               W3 ? ((a3 - a2 + (W3 << 12)) >> 12) - W3
                                  : (uint32_t)((int32_t)(a3 - a2) >> 12), a4,
                               (uint32_t)((int32_t)(a5 - a4) >> 4),
                               (uint32_t)((int32_t)(a6 - a5) >> 8),
                               W3 ? ((a7 - a6 + (W3 << 12)) >> 12) - W3
                                  : (uint32_t)((int32_t)(a7 - a6) >> 12)};
        TN_UNROLL
        for (uint32_t r = 0; r < 8u; r++)
            A[r] = (int32_t)((uint32_t)A[r] + s[r]);
    }
    return w;
}

/* The sums A_r of one block of eight rows (as tn_sf_block: chunks of KC words, then TAIL the
 * last word completed at tw; 4-bit weights, rows 3 and 7 held w - 8: + 8 sx; 2-bit, row 7
 * w - 2: + 2 sx), exact modulo 2^32; returns w past the block. */
TN_INLINE const uint8_t *tn_so_block(const uint8_t *w, const uint8_t *in, uint32_t NG,
                                     const uint32_t *tw, uint32_t TAIL, uint32_t KC,
                                     uint32_t XB, uint32_t XS, uint32_t WB, uint32_t W3,
                                     int32_t sx, int32_t *A)
{
    TN_UNROLL
    for (uint32_t r = 0; r < 8u; r++)
        A[r] = 0;
    for (uint32_t g = 0; g < NG; g += KC)
        w = tn_so_run(w, in + 4u * g, NG - g < KC ? NG - g : KC, XB, XS, WB, W3, A);
    if (TAIL)
        w = tn_so_run(w, (const uint8_t *)tw, 1u, XB, XS, WB, W3, A);
    if (WB == 4u)
        A[3] = (int32_t)((uint32_t)A[3] + 8u * (uint32_t)sx);
    A[7] = (int32_t)((uint32_t)A[7] + (WB == 4u ? 8u : 2u) * (uint32_t)sx);
    return w;
}

/* ---------------------------------------------------------------------------------------------
 * Two blocks of four rows at once (TWIN, tn_sf_twin_ok): 8-bit inputs with an offset (z_x != 0,
 * so not blocks of eight: kernels_m7.subfc_oct) and 4-bit weights at RAW 2, on the blocks of
 * four's own layout: block b's words at w, block b + 1's the same words BLK = 8 (NG + TAIL)
 * bytes on (one LDR with an immediate offset each, BLK - 4 < 4096). Each unpacked input lane
 * pair then feeds eight rows, as in the blocks of eight, whose cumulative in-place masks
 * (TN_SO_W, no temporary) leave a register for nothing else: the offset -z_x is read from the
 * stack once per input word (into u, free before the weights' LDRD) instead of living in a
 * register. Per input word (32 MACs): LDR, LDR of the offset, two UXTAB16 / SXTAB16, one LDRD
 * and two LDR, twelve masks and sixteen SMLAD, 35 instructions (blocks of four: 36) and the
 * loop's end, three per four words (blocks of four: as often per block, so twice per MAC):
 * 1.12 instructions per MAC in the loop, not 1.17 (AD's first layer, trained w4a4: 99,238 ->
 * 94,558 per inference).
 * The sums are RAW 2's (C_r - C_{r-1} = 16^r A_r exactly, as the blocks of eight: the same
 * bounds and chunks, kernels_m7.subfc_plan).
 * --------------------------------------------------------------------------------------------- */
#if TN_M7_ASM
/* one input word: lanes (x0, x2) in v, (x1, x3) in p, both + the offset (read into u) */
#define TN_TW_X8(XT)                                                                            \
    "ldr %[v], [%[x]], #4\n\tldr %[u], %[dm]\n\t"                                               \
    XT "xtab16 %[p], %[u], %[v], ror #8\n\t" XT "xtab16 %[v], %[u], %[v]\n\t"                   \
    "ldrd %[u], %[u2], [%[wp]], #8\n\t" TN_SO_W("u", "v", 0, 1, 2, 3) TN_SO_W("u2", "p", 0, 1, 2, 3) \
    "ldr %[u], [%[wp], %[b0]]\n\tldr %[u2], [%[wp], %[b1]]\n\t"                                 \
    TN_SO_W("u", "v", 4, 5, 6, 7) TN_SO_W("u2", "p", 4, 5, 6, 7)
#define TN_TW_OPERANDS                                                                          \
    : [x] "+r"(x), [wp] "+r"(w), [v] "=&r"(v), [p] "=&r"(p), [u] "=&r"(u), [u2] "=&r"(u2),      \
      [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [a4] "+r"(a4),                \
      [a5] "+r"(a5), [a6] "+r"(a6), [a7] "+r"(a7)                                               \
    : [e] "m"(end), [dm] "m"(d), [b0] "i"(BLK - 8u), [b1] "i"(BLK - 4u)                         \
    : "cc", "memory"
#endif

/* Can blocks of four rows run two at a time (TWIN, above)? 8-bit inputs, 4-bit weights at
 * RAW 2, word-aligned weights, the second block in reach of an LDR's offset. */
TN_INLINE uint32_t tn_sf_twin_ok(const uint8_t *w, uint32_t NG, uint32_t TAIL, uint32_t XB,
                                 uint32_t WB, uint32_t RAW)
{
#if defined(TN_SF_NO_LDRD) || defined(TN_SF_NO_TWIN) /* the tests' builds of blocks of four */
    (void)w; (void)NG; (void)TAIL; (void)XB; (void)WB; (void)RAW;
    return 0u;
#else
    /* the host build takes the same blocks (its C twin of the loop; any alignment) */
    return XB == 8u && WB == 4u && RAW == 2u && (!TN_M7_ASM || ((uintptr_t)w & 3u) == 0u)
           && 8u * (NG + TAIL) - 4u < 4096u;
#endif
}

#if TN_M7_ASM
#define TN_TW_RUN(G) TN_SF_RUN4_ASM(G, TN_TW_OPERANDS)
#endif

/* Back to unscaled sums from the cumulative ones of two blocks of four (4-bit weights:
 * 16^r A_r = C_r - C_{r-1}, exact under RAW 2's bounds), added to A[0..7] modulo 2^32. */
TN_INLINE void tn_so_unscale4(const uint32_t *c, int32_t *A)
{
    TN_UNROLL
    for (uint32_t h = 0; h < 8u; h += 4u) {
        A[h] = (int32_t)((uint32_t)A[h] + c[h]);
        A[h + 1u] = (int32_t)((uint32_t)A[h + 1u] + (uint32_t)((int32_t)(c[h + 1u] - c[h]) >> 4));
        A[h + 2u] = (int32_t)((uint32_t)A[h + 2u]
                              + (uint32_t)((int32_t)(c[h + 2u] - c[h + 1u]) >> 8));
        A[h + 3u] = (int32_t)((uint32_t)A[h + 3u]
                              + (uint32_t)((int32_t)(c[h + 3u] - c[h + 2u]) >> 12));
    }
}

/* The sums of two blocks of four rows (TWIN: block b's weights at w, read on; block b + 1's
 * BLK bytes on) over n 8-bit input words at in, lanes + dx, added unscaled to A[0..7] (without
 * RAW 2's 8 sum x'); returns w past block b's words. */
TN_INLINE const uint8_t *tn_tw_run(const uint8_t *w, const uint8_t *in, uint32_t n,
                                   uint32_t XS, int32_t dx, uint32_t BLK, int32_t *A)
{
    const uint32_t d = ((uint32_t)dx & 0xFFFFu) * 0x00010001u;
    uint32_t c[8];
#if TN_M7_ASM
    const uint8_t *x = in, *end = in + 4u * n;
    uint32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0, v, p, u, u2;
    if (XS) TN_TW_RUN(TN_TW_X8("s"));
    else TN_TW_RUN(TN_TW_X8("u"));
    c[0] = a0; c[1] = a1; c[2] = a2; c[3] = a3; c[4] = a4; c[5] = a5; c[6] = a6; c[7] = a7;
#else
    { /* the same lanes, cumulative masks and multiply-accumulates, modulo 2^32 */
        TN_UNROLL
        for (uint32_t r = 0; r < 8u; r++)
            c[r] = 0;
        for (uint32_t g = 0; g < n; g++, w += 8) {
            const uint32_t v = tn_ld32(in + 4u * g);
            for (uint32_t j = 0; j < 2u; j++) {
                const uint32_t xp = XS ? (j ? tn_sxtab16_ror8(d, v) : tn_sxtab16(d, v))
                                       : (j ? tn_uxtab16_ror8(d, v) : tn_uxtab16(d, v));
                for (uint32_t h = 0; h < 2u; h++) {
                    const uint32_t u = tn_ld32(w + 4u * j + BLK * h);
                    const uint32_t m[4] = {u & 0x000F000Fu, u & 0x00FF00FFu, u & ~0xF000F000u, u};
                    for (uint32_t r = 0; r < 4u; r++)
                        c[4u * h + r] = (uint32_t)tn_smlad(m[r], xp, (int32_t)c[4u * h + r]);
                }
            }
        }
    }
#endif
    tn_so_unscale4(c, A);
    return w;
}

/* The sums A_r of two blocks of four rows (TWIN; as tn_sf_block: chunks of KC words, then TAIL
 * the last word completed at tw; rows 3 and 7 held w - 8: + 8 sx), exact modulo 2^32; returns
 * w past both blocks. */
TN_INLINE const uint8_t *tn_tw_block(const uint8_t *w, const uint8_t *in, uint32_t NG,
                                     const uint32_t *tw, uint32_t TAIL, uint32_t KC, uint32_t XS,
                                     int32_t ZX, int32_t sx, int32_t *A)
{
    const uint32_t BLK = 8u * (NG + TAIL); /* bytes of a block of four (two words per input word) */
    TN_UNROLL
    for (uint32_t r = 0; r < 8u; r++)
        A[r] = 0;
    for (uint32_t g = 0; g < NG; g += KC)
        w = tn_tw_run(w, in + 4u * g, NG - g < KC ? NG - g : KC, XS, -ZX, BLK, A);
    if (TAIL)
        w = tn_tw_run(w, (const uint8_t *)tw, 1u, XS, -ZX, BLK, A);
    A[3] = (int32_t)((uint32_t)A[3] + 8u * (uint32_t)sx);
    A[7] = (int32_t)((uint32_t)A[7] + 8u * (uint32_t)sx);
    return w + BLK;
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
/* SX (tn_m7_subfc's PF): the word's codes summed on the way, USADA8 into su (signed: their
 * sign bits flipped into t first, free there); z: a zero register (m, 0 for 8-bit inputs) */
#define TN_SP_X8S_W4(XT, SUM)                                                                   \
    "ldr %[v], [%[x]], #4\n\t" SUM XT "xtab16 %[p], %[d], %[v], ror #8\n\t"                     \
    XT "xtab16 %[v], %[d], %[v]\n\t" TN_SP_E("v") TN_SP_O("p")
#define TN_SP_SU "usada8 %[su], %[v], %[m], %[su]\n\t"
#define TN_SP_SS "eor %[t], %[v], #0x80808080\n\tusada8 %[su], %[t], %[m], %[su]\n\t"
#define TN_SP_OPERANDS_S                                                                        \
    : [x] "+&r"(x), [wp] "+&r"(w), [v] "=&r"(v), [p] "=&r"(p), [u] "=&r"(u), [t] "=&r"(t),      \
      [b0] "+&r"(a0), [b1] "+&r"(a1), [su] "+&r"(su)                                            \
    : [end] "r"(end), [m] "r"(m), [d] "r"(d), [lo] "r"(0x000F000Fu)                             \
    : "cc", "memory"
#define TN_SP_RUN_S(G) TN_RUN4(n, G, "cmp %[x], %[end]\n\tbne 1b\n\t", TN_SP_OPERANDS_S)
/* SX over 4-bit inputs without an offset, 4-bit weights: the word's USADA8 sums (su: its
 * bytes, s0: their low nibbles, tn_sf_sumx's) before its lane pairs (t free there); the lane
 * mask m is the weights' row-0 mask too (both 0x000F000F): one register for both, so that
 * thirteen do (z: a zero register) */
#define TN_SP_MACM(P)                                                                           \
    "smlad %[b1], %[t], %[" P "], %[b1]\n\tand %[t], %[t], %[m]\n\t"                             \
    "smlad %[b0], %[t], %[" P "], %[b0]\n\t"
#define TN_SP_EM(P) "ldr %[u], [%[wp]], #4\n\tuxtb16 %[t], %[u]\n\t" TN_SP_MACM(P)
#define TN_SP_OM(P) "uxtb16 %[t], %[u], ror #8\n\t" TN_SP_MACM(P)
#define TN_SP_X4S_W4(FLIP)                                                                      \
    TN_SF_LDV(FLIP) "usada8 %[su], %[v], %[z], %[su]\n\tand %[t], %[v], #0x0F0F0F0F\n\t"        \
    "usada8 %[s0], %[t], %[z], %[s0]\n\t" TN_SF_XP0("") TN_SP_EM("p") TN_SF_XP(4, "")           \
    TN_SP_OM("p") TN_SF_XP(8, "") TN_SP_EM("p") TN_SF_XP(12, "") TN_SP_OM("p")
#define TN_SP_OPERANDS_S4                                                                       \
    : [x] "+&r"(x), [wp] "+&r"(w), [v] "=&r"(v), [p] "=&r"(p), [u] "=&r"(u), [t] "=&r"(t),      \
      [b0] "+&r"(a0), [b1] "+&r"(a1), [su] "+&r"(su), [s0] "+&r"(s0)                            \
    : [end] "r"(end), [m] "r"(m), [z] "r"(0u)                                                   \
    : "cc", "memory"
#define TN_SP_RUN_S4(G) TN_RUN4(n, G, "cmp %[x], %[end]\n\tbne 1b\n\t", TN_SP_OPERANDS_S4)
#define TN_SP_OPERANDS                                                                          \
    : [x] "+&r"(x), [wp] "+&r"(w), [v] "=&r"(v), [p] "=&r"(p), [u] "=&r"(u), [t] "=&r"(t),      \
      [b0] "+&r"(a0), [b1] "+&r"(a1)                                                            \
    : [end] "r"(end), [m] "r"(m), [d] "r"(d), [m2] "r"(0x000F000Fu),                            \
      [lo] "r"(WB == 4u ? 0x000F000Fu : 0x00030003u)                                            \
    : "cc", "memory"
#define TN_SP_RUN(G) TN_RUN4(n, G, "cmp %[x], %[end]\n\tbne 1b\n\t", TN_SP_OPERANDS)
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
 * Adds to A[0..1] modulo 2^32; SX (8-bit inputs, 4-bit ones): adds to sup[0] the USADA8 sum
 * of the input words' codes (sign bits flipped for signed ones; tn_sf_sumx's su), 4-bit, to
 * sup[1] that of their low nibbles (s0); returns w past the block. */
TN_INLINE const uint8_t *tn_sf_pair(const uint8_t *w, const uint8_t *in, uint32_t NG,
                                    uint32_t tw, uint32_t TAIL, uint32_t KC, uint32_t XB,
                                    uint32_t XS, int32_t ZX, uint32_t WB, uint32_t SC,
                                    int32_t *A, uint32_t SX, uint32_t *sup)
{
    uint32_t su = SX ? sup[0] : 0u, s0 = SX ? sup[1] : 0u;
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
            if (XB == 8u && SX && XS) TN_SP_RUN_S(TN_SP_X8S_W4("s", TN_SP_SS));
            else if (XB == 8u && SX) TN_SP_RUN_S(TN_SP_X8S_W4("u", TN_SP_SU));
            else if (XB == 8u && XS) TN_SP_RUN(TN_SP_X8_W4("s"));
            else if (XB == 8u) TN_SP_RUN(TN_SP_X8_W4("u"));
            else if (XB == 4u && SX && !dx && WB == 4u && XS)
                TN_SP_RUN_S4(TN_SP_X4S_W4("eor %[v], %[v], #0x88888888\n\t"));
            else if (XB == 4u && SX && !dx && WB == 4u) TN_SP_RUN_S4(TN_SP_X4S_W4(""));
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
            if (SX) { /* 4-bit codes flipped already (flip) */
                su = tn_usada8(XB == 8u && XS ? v ^ 0x80808080u : v, su);
                if (XB == 4u) s0 = tn_usada8(v & 0x0F0F0F0Fu, s0);
            }
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
    if (SX) { sup[0] = su; sup[1] = s0; }
    return w;
}

/* Store v at p (any alignment) as tn_set stores a 32-bit element: little-endian. */
TN_INLINE void tn_st32le(uint8_t *p, uint32_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    TN_MEMCPY(p, &v, 4); /* one STR on the Cortex-M7 (unaligned stores allowed) */
#else
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
#endif
}

/* Outputs c .. c + 3 (those below N) from their sums A[0..3] (sx: sum x', HASZW). */
TN_INLINE void tn_sf_out4(const tn_layer_t *l, const int32_t *bias, const uint8_t *wzp,
                          const int32_t *m0p, const int8_t *n0p, uint8_t *TN_RESTRICT out,
                          uint32_t c, uint32_t N, const int32_t *A, int32_t sx, uint32_t NWZP,
                          uint32_t HASZW, int32_t ZW, uint32_t REQ, uint32_t NM, uint32_t ROUND,
                          uint32_t OB, TN_RQ_ARGS)
{
    if ((OB == 4u || OB == 2u) && c + 4u <= N) { /* four outputs, one store */
        tn_sc_put4(l, bias, wzp, m0p, n0p, out, c * OB / 8u, c, A, HASZW ? sx : 0, NWZP, ZW, REQ,
                   NM, ROUND, OB, TN_RQ);
        return;
    }
    if (OB == 32u && !REQ) { /* raw int32 outputs (logits): tn_m7_out's clamp in 32 bits (its
                              * bounds are int32) and one store each, not its 64-bit compares,
                              * the bounds read per output and four byte stores */
        const int32_t lo = l->act_lo, hi = l->act_hi;
        TN_UNROLL
        for (uint32_t r = 0; r < 4u; r++)
            if (c + r < N) {
                const int32_t z = !HASZW ? 0 : NWZP == 1u ? ZW : (int32_t)wzp[c + r];
                int32_t v = (int32_t)((uint32_t)bias[c + r] + (uint32_t)A[r]
                                      - (uint32_t)z * (uint32_t)sx);
                v = v < lo ? lo : v;
                v = v > hi ? hi : v;
                tn_st32le(out + 4u * (c + r), (uint32_t)v);
            }
        return;
    }
    TN_UNROLL
    for (uint32_t r = 0; r < 4u; r++)
        if (c + r < N) {
            const int32_t z = !HASZW ? 0 : NWZP == 1u ? ZW : (int32_t)wzp[c + r];
            tn_m7_fc_put(l, out, c + r, (uint32_t)bias[c + r] + (uint32_t)A[r]
                         - (uint32_t)z * (uint32_t)sx, REQ, NM, ROUND, OB, TN_RQ);
        }
}

/* ---------------------------------------------------------------------------------------------
 * Lean blocks of eight (LEAN, kernels_m7.subfc_lean; tn_sl_block): the blocks of eight of 4-bit
 * weights at RAW 2 (or of 2-bit weights, below) over the whole input in one chunk of whole
 * words (no partial last word), one weight zero point z_w. Their sums start at
 * I_r = sum_{s <= r} 16^s c_s instead of 0 (c_s = -z_w sum x', + 8 sum x' for rows 3 and 7,
 * held w - 8), so that C_r - C_{r-1} = 16^r sum_k (w_rk - z_w) x'_k: each row's whole sum,
 * zero point included, exact where 16^r sum_k |w_rk - z_w| max |x'| < 2^31 for every row
 * (kernels_m7.subfc_lean, from the weights at export). Four LDRD start the sums (the blocks of
 * eight: eight MOV) and no output needs - z_w sum x' or + 8 sum x'. The loop is tn_so_run's,
 * its LDRD form and its two-LDR form (weights off a word boundary) in one statement picked by
 * TST of the pointer, without TN_SF_RUN4_ASM's entry where NG % 4 = 0; then, from the sums in
 * registers, the outputs: per-channel floor requantization to 4 / 2-bit codes (tn_sc_pcq's
 * saturating forms, FAST >= 2, z_out = 0): LDR bias, ADD (the scale's shift folded), LDR m0,
 * SMMUL, LDRSB n0, MVN, ASR, USAT / SSAT and BFI into one word per block, nine instructions per
 * output (tn_sf_out4's code, spilled around by GCC: 132 per block of eight on AD's dense_1),
 * then 7.5 (TN_SL_RQ2: two rows a statement, their biases, multipliers and n0 loaded together;
 * AD w4a8's 128 -> 128 layers 18,840 -> 18,700, w8a8 18,560);
 * FAST 1 (a channel with n0 >= 0: the accumulator shifted left by USAT5(n0 + 1) before SMMUL,
 * right by USAT5(~n0) after, TN_SL_RQ1), thirteen, twelve by pairs of rows without FOLD
 * (TN_SL_RQ12; AD w2a2 dense_8, 128 -> 128: 19,680 -> 19,120, its siblings at FAST 2 18,440,
 * w8a8 18,560); raw int32 outputs (logits; int32's clamp, word-aligned output): LDRD of two biases, two ADD,
 * STRD, two per output. Other requantizations: tn_sf_out4 on the sums.
 * With FOLD (8-bit codes x with an offset in the lanes): rows 1, 2 (5, 6) start at their c as
 * above (kernels_m7.subfc_lean bounds sum w x - z_w sum x'); rows 3 and 7 keep tn_so_run's
 * window (I_3 = I_2: C_3 - C_2 = 4096 A_3 over the codes), A_3 = ((C_3 - C_2 + 4096 W3) >> 12)
 * (logical) + Q in C, Q = c_3 - W3 (c_3 = -z_w sum x' + 8 sum x), and every row adds its F_r
 * (LDR, ADD in the epilogue). The layer's one multiplier (tn_sc_fq's form): LDR bias, ADD,
 * SMMLA with z_out 2^k, SSAT / USAT with ASR #k, BFI, five per output. 2-bit weights: the
 * blocks of eight's one word per lane pair (TN_SO_Q2A / Q2B), I_r = sum_{s <= r} 4^s c_s
 * (c_7 + 2 sum x', row 7 held w - 2), the differences 4^r (A_r + c_r) brought to 16^(r % 4)
 * by one shift each (tn_sl_rescale2) for the same epilogues. 2-bit inputs: two words per pass.
 * AD (trained, w4a4): 315,074 -> 301,554 instructions per
 * inference (dense 89,958 -> 89,118; dense_1 20,240 -> 19,360; dense_9 99,478 -> 91,878),
 * text -452 B.
 * UNP (LEAN 2, kernels_m7.subfc_unpack: 2 / 4-bit inputs, 2 K <= 256 bytes, three blocks or
 * more): the input unpacked once per layer onto the stack, a lane pair a word (tn_sl_unpack),
 * the blocks' loop two LDRD per word of 4-bit codes (four of 2-bit) instead of LDR, EOR and
 * seven AND / LSR (fifteen): 62 instructions per 64 MACs, not 68. AD (trained, w4a4): 299,914
 * -> 284,154 per inference (dense_1 .. 3, 6 .. 8: 19,320 -> 17,960, w8a8 18,560; dense_9
 * 91,878 -> 84,358), text -576 B, stack peak 268 -> 516 B (RAM 3,112 -> 3,360; w8a8 3,140).
 * Then the buffer moved off the stack into the step's arena scratch (XU, 36 + 2 K bytes,
 * tinyopt.integer.steps.sub_fc_unpack_size), planned on a Keras-path graph only where it keeps the
 * arena (steps.sub_fc_unpack_bytes, Step.roomy): AD w4a4 arena 2,624 B as before, stack peak
 * 268 B, RAM 3,112 <= w8a8's 3,140; dense_9 (its 640 int32 outputs are the arena's peak)
 * keeps the lean loop: 291,754 per inference (dense_9 91,878). Text +5.5 KB: the identical
 * step functions of dense_1 .. 3, 6 .. 8 (GCC's identical code folding) now differ by their
 * scratch's offset from out.
 * Tried: a buffer of the layer's size on the stack (a VLA: its frame pointer takes a register
 * the loop needs); the sums' start and the loop's end as memory operands beside a 256-byte
 * buffer in the frame ('asm' operand has impossible constraints at -Os, soft and hard float):
 * they are the buffer's head and an end mark instead (kept in the arena buffer).
 * Tried: the lean loop (LDRD only) beside the blocks of eight as the fallback for weights off a
 * word boundary: a second loop and epilogue per step (+350 B of text each) or, one epilogue
 * after the two paths merged, about eight instructions per block of moves and reloads (GCC);
 * one statement of the eight sums, the three pointers and two temporaries for the outputs
 * (thirteen registers): 'asm' operand has impossible constraints with an FPU at -O2 / -Os, so
 * four sums a statement; the raw outputs in C (LDR, ADD, STR: three per output).
 * --------------------------------------------------------------------------------------------- */

/* Can the blocks of eight run lean (above)? LEAN from export (the bound), the form's compile-time
 * conditions. */
TN_INLINE uint32_t tn_sl_ok(uint32_t LEAN, uint32_t OCT, uint32_t FOLD, uint32_t TAIL,
                            uint32_t NG, uint32_t XB, uint32_t WB, uint32_t RAW, uint32_t NWZP,
                            uint32_t HASZW)
{
    return LEAN && OCT >= NG && (!FOLD || (XB == 8u && WB == 4u)) && !TAIL && NG >= 1u
           && ((WB == 4u && RAW == 2u) || WB == 2u) && (NWZP == 1u || !HASZW);
}

/* The epilogue of a lean block: 1 per-channel floor to 2 / 4 / 8-bit codes in asm, 2 raw int32
 * outputs in asm (a run-time check of the clamp and the output's alignment left), 3 the layer's
 * floor multiplier to 2 / 4 / 8-bit codes in asm (tn_sc_fq's form), 0 tn_sf_out4. 8-bit codes:
 * rows 0 .. 3 packed into one word and stored, then rows 4 .. 7 (the 4 / 2-bit forms' BFI at
 * bytes; GCC's code of tn_sf_out4 spilled the sums around the requantization: about 120
 * instructions per block of eight on AD's 128 -> 128 layers at w4a8, against 77). */
TN_INLINE uint32_t tn_sl_form(uint32_t REQ, uint32_t NM, uint32_t ROUND, uint32_t OB, TN_RQ_ARGS)
{
    const uint32_t PQ = tn_sc_pcq(REQ, NM, ROUND, OB, TN_RQ);
    const uint32_t FQ = tn_sc_fq(REQ, NM, ROUND, OB, TN_RQ);
    if ((PQ == 1u || PQ == 2u) && ZP == 0 && (OB == 4u || OB == 2u || OB == 8u))
        return 1u; /* PQ: FAST >= 1 (FAST 1: TN_SL_RQ1) */
    if (!REQ && OB == 32u) return 2u;
    if ((FQ == 1u || FQ == 2u) && (OB == 4u || OB == 2u || OB == 8u)) return 3u;
    return 0u;
}

#if TN_M7_ASM
/* the sums' start (I[0 .. 3]: I_0, I_1 .. I_6, I_7) */
#define TN_SL_INIT                                                                              \
    "ldrd %[a0], %[a1], %[i01]\n\tldrd %[a2], %[a3], %[i23]\n\t"                                \
    "ldrd %[a4], %[a5], %[i45]\n\tldrd %[a6], %[a7], %[i67]\n\t"
/* C_r - C_{r-1} in place: 4-bit weights, from the top of each half (two blocks of four's
 * words); 2-bit, one chain of eight rows */
#define TN_SL_DIFF4                                                                             \
    "sub %[a3], %[a3], %[a2]\n\tsub %[a2], %[a2], %[a1]\n\tsub %[a1], %[a1], %[a0]\n\t"         \
    "sub %[a7], %[a7], %[a6]\n\tsub %[a6], %[a6], %[a5]\n\tsub %[a5], %[a5], %[a4]\n\t"
#define TN_SL_DIFF2                                                                             \
    "sub %[a7], %[a7], %[a6]\n\tsub %[a6], %[a6], %[a5]\n\tsub %[a5], %[a5], %[a4]\n\t"         \
    "sub %[a4], %[a4], %[a3]\n\t" TN_SL_DIFF4Q
#define TN_SL_DIFF4Q                                                                            \
    "sub %[a3], %[a3], %[a2]\n\tsub %[a2], %[a2], %[a1]\n\tsub %[a1], %[a1], %[a0]\n\t"
#define TN_SL_OPERANDS                                                                          \
    : [x] "+r"(x), [wp] "+r"(w), [v] "=&r"(v), [p] "=&r"(p), [u] "=&r"(u), [u2] "=&r"(u2),      \
      [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [a4] "=&r"(a4),           \
      [a5] "=&r"(a5), [a6] "=&r"(a6), [a7] "=&r"(a7)                                            \
    : [e] "m"(*endp), [i01] "m"(I[0]), [i23] "m"(I[1]), [i45] "m"(I[2]), [i67] "m"(I[3])        \
    : "cc", "memory"
/* n = NG words of one load form (G): four per pass (NG % 4 = 0), else TN_SF_RUN4_ASM's entry */
#define TN_SL_LOOP4(G) "1:\n\t" G G G G TN_SO_END
#define TN_SL_LOOPN(G)                                                                          \
    "ldr %[p], %[e]\n\tsub %[p], %[p], %[x]\n\tlsls %[p], %[p], #29\n\t"                        \
    "bmi 7f\n\tbcs 3f\n\tb 5f\n\t7:\n\tbcs 2f\n\tb 4f\n\t"                                      \
    "5:\n\tldr %[p], %[e]\n\tcmp %[x], %[p]\n\tbeq 6f\n\t"                                      \
    "1:\n\t" G "2:\n\t" G "3:\n\t" G "4:\n\t" G                                                 \
    "ldr %[p], %[e]\n\tcmp %[x], %[p]\n\tbne 1b\n\t6:\n\t"
/* the sums' start, then the loop of LDRD (GA, word-aligned weights: TST of the pointer) or of
 * two LDR (GB) in one statement (no sums carried between statements, no merge of two), then
 * the differences */
#if defined(TN_SF_NO_LDRD) /* the tests' build of the one-by-one loads: the same code, taken */
#define TN_SL_PICK "b 8f\n\t"
#else
#define TN_SL_PICK "tst %[wp], #3\n\tbne 8f\n\t"
#endif
/* 2-bit inputs (128 MACs a word): two words per pass (NG odd: the first pass enters at the
 * second) */
#define TN_SL_LOOP2(G) "1:\n\t" G G TN_SO_END
#define TN_SL_LOOP2N(G) "b 2f\n\t1:\n\t" G "2:\n\t" G TN_SO_END
#define TN_SL_BODY(L, GA, GB, D)                                                                \
    TN_SL_INIT TN_SL_PICK L(GA) "b 9f\n\t8:\n\t" L(GB) "9:\n\t" D
/* 8-bit inputs (32 MACs a word, the loop's end three per pass): the LDRD loop eight words a
 * pass (TN_SL_LOOP8, entered at word 8 - NG % 8 of the first: TN_SL_ENTRY8), the loop of two
 * LDR (weights off a word boundary, not met in the exports) four, its code not doubled.
 * Labels 21 .. 28 the words, 31 .. 33 the entry's own. AD's first layer (160 words, sixteen
 * blocks of eight) 960 instructions fewer, its 128 -> 128 layers at 8-bit inputs 192 */
#define TN_SL_ENTRY8(E)                                                                         \
    "ldr %[p], " E "\n\tsub %[p], %[p], %[x]\n\tlsls %[u], %[p], #28\n\tbcs 33f\n\t"            \
    "lsls %[u], %[p], #29\n\tbmi 31f\n\tbcs 27f\n\tb 21f\n\t31:\n\tbcs 26f\n\tb 28f\n\t"        \
    "33:\n\tlsls %[u], %[p], #29\n\tbmi 32f\n\tbcs 23f\n\tb 25f\n\t32:\n\tbcs 22f\n\tb 24f\n\t"
#define TN_SL_G8(G)                                                                             \
    "21:\n\t" G "22:\n\t" G "23:\n\t" G "24:\n\t" G "25:\n\t" G "26:\n\t" G "27:\n\t" G      \
    "28:\n\t" G
#define TN_SL_LOOP8(G) TN_SL_G8(G) "ldr %[p], %[e]\n\tcmp %[x], %[p]\n\tbne 21b\n\t"
#define TN_SL_LOOP8N(G) TN_SL_ENTRY8("%[e]") TN_SL_LOOP8(G)
#define TN_SL_BODY2(LA, LB, GA, GB, D)                                                          \
    TN_SL_INIT TN_SL_PICK LA(GA) "b 9f\n\t8:\n\t" LB(GB) "9:\n\t" D
#define TN_SL_RUN(GA, GB, D)                                                                    \
    do {                                                                                        \
        if (XB == 2u && NG % 2u == 0u)                                                          \
            __asm__ volatile(TN_SL_BODY(TN_SL_LOOP2, GA, GB, D) TN_SL_OPERANDS);                \
        else if (XB == 2u) __asm__ volatile(TN_SL_BODY(TN_SL_LOOP2N, GA, GB, D) TN_SL_OPERANDS); \
        else if (XB == 8u && NG % 8u == 0u)                                                     \
            __asm__ volatile(TN_SL_BODY2(TN_SL_LOOP8, TN_SL_LOOP4, GA, GB, D) TN_SL_OPERANDS);  \
        else if (XB == 8u && NG % 4u == 0u)                                                     \
            __asm__ volatile(TN_SL_BODY2(TN_SL_LOOP8N, TN_SL_LOOP4, GA, GB, D) TN_SL_OPERANDS); \
        else if (XB == 8u)                                                                      \
            __asm__ volatile(TN_SL_BODY2(TN_SL_LOOP8N, TN_SL_LOOPN, GA, GB, D) TN_SL_OPERANDS); \
        else if (NG % 4u == 0u)                                                                 \
            __asm__ volatile(TN_SL_BODY(TN_SL_LOOP4, GA, GB, D) TN_SL_OPERANDS);                \
        else __asm__ volatile(TN_SL_BODY(TN_SL_LOOPN, GA, GB, D) TN_SL_OPERANDS);               \
    } while (0)
/* UNP (tn_m7_subfc's LEAN 2): the input unpacked once per layer into a lane pair a word in the
 * step's arena scratch (tn_sl_unpack), so one input word is two LDRD (4-bit codes) or four
 * (2-bit) instead of LDR, EOR and seven AND / LSR (fifteen); the lane pairs alternate QA / QB as TN_SO_X4's */
#define TN_SU_L2(QA, QB, LD, LB) "ldrd %[v], %[p], [%[x]], #8\n\t" QA(LD, "v") QB(LB, "p")
#define TN_SU_X4(QA, QB, LD, LB) TN_SU_L2(QA, QB, LD, LB) TN_SU_L2(QA, QB, LD, LB)
#define TN_SU_X2(QA, QB, LD, LB) TN_SU_X4(QA, QB, LD, LB) TN_SU_X4(QA, QB, LD, LB)
/* the sums' start from the buffer's head (x then at the lane pairs), the loop's end at the word
 * after the lane pairs, 0xFFFFFFFF (no lane pair: its lanes are codes below 16): no memory
 * operands (with them and the 256-byte buffer in the frame GCC found no registers at -Os) */
#define TN_SU_INIT                                                                              \
    "ldrd %[a0], %[a1], [%[x]], #8\n\tldrd %[a2], %[a3], [%[x]], #8\n\t"                       \
    "ldrd %[a4], %[a5], [%[x]], #8\n\tldrd %[a6], %[a7], [%[x]], #8\n\t"
#define TN_SU_END "ldr %[p], [%[x]]\n\tcmn %[p], #1\n\tbne 1b\n\t"
/* n input words a pass (NPASS 4: 4-bit inputs, 2: 2-bit), entered at word NPASS - NG % NPASS
 * of the first pass (a constant label: NG is known) */
#define TN_SU_LOOP(G, ENTRY) ENTRY "1:\n\t" G "2:\n\t" G "3:\n\t" G "4:\n\t" G TN_SU_END
#define TN_SU_LOOP2(G, ENTRY) ENTRY "1:\n\t" G "2:\n\t" G TN_SU_END
#define TN_SU_BODY(L, GA, GB, D, ENTRY)                                                         \
    TN_SU_INIT TN_SL_PICK L(GA, ENTRY) "b 9f\n\t8:\n\t" L(GB, ENTRY) "9:\n\t" D
#define TN_SU_OPERANDS                                                                          \
    : [x] "+r"(x), [wp] "+r"(w), [v] "=&r"(v), [p] "=&r"(p), [u] "=&r"(u), [u2] "=&r"(u2),      \
      [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [a4] "=&r"(a4),           \
      [a5] "=&r"(a5), [a6] "=&r"(a6), [a7] "=&r"(a7)                                            \
    :                                                                                           \
    : "cc", "memory"
#define TN_SU_RUN(GA, GB, D)                                                                    \
    do {                                                                                        \
        if (XB == 2u && NG % 2u == 0u)                                                          \
            __asm__ volatile(TN_SU_BODY(TN_SU_LOOP2, GA, GB, D, "") TN_SU_OPERANDS);            \
        else if (XB == 2u)                                                                      \
            __asm__ volatile(TN_SU_BODY(TN_SU_LOOP2, GA, GB, D, "b 2f\n\t") TN_SU_OPERANDS);   \
        else if (NG % 4u == 0u)                                                                 \
            __asm__ volatile(TN_SU_BODY(TN_SU_LOOP, GA, GB, D, "") TN_SU_OPERANDS);             \
        else if (NG % 4u == 3u)                                                                 \
            __asm__ volatile(TN_SU_BODY(TN_SU_LOOP, GA, GB, D, "b 2f\n\t") TN_SU_OPERANDS);    \
        else if (NG % 4u == 2u)                                                                 \
            __asm__ volatile(TN_SU_BODY(TN_SU_LOOP, GA, GB, D, "b 3f\n\t") TN_SU_OPERANDS);    \
        else __asm__ volatile(TN_SU_BODY(TN_SU_LOOP, GA, GB, D, "b 4f\n\t") TN_SU_OPERANDS);   \
    } while (0)
/* one output row R of the per-channel floor (S: its scale's shift, "" row 0 / 4), packed by BFI
 * at bit B into a0 (row 0: the code itself) */
#define TN_SL_RQ(ADD, SAT, PUT)                                                                 \
    "ldr %[u], [%[b]], #4\n\t" ADD "ldr %[t], [%[m]], #4\n\tsmmul %[u], %[u], %[t]\n\t"        \
    "ldrsb %[t], [%[n]], #1\n\tmvn %[t], %[t]\n\tasr %[u], %[u], %[t]\n\t" SAT PUT
/* FAST 1 (some n0 >= 0; fixedpoint.requant_floor): t = phi << n1, n1 = USAT5(n0 + 1) (n0 <= 30:
 * n1 <= 31, the simulator's shift), SMMUL, then ASR by n2 = USAT5(~n0) (an ASR by 31 is the
 * simulator's >> 63 on the high word): thirteen instructions per output, tn_sf_out4's GCC code
 * about seventeen (AD w2a2 dense_8) */
#define TN_SL_RQ1(ADD, SAT, PUT)                                                                \
    "ldr %[u], [%[b]], #4\n\t" ADD "ldrsb %[t], [%[n]], #1\n\tadd %[t2], %[t], #1\n\t"        \
    "usat %[t2], #5, %[t2]\n\tlsl %[u], %[u], %[t2]\n\tldr %[t2], [%[m]], #4\n\t"                \
    "smmul %[u], %[u], %[t2]\n\tmvn %[t], %[t]\n\tusat %[t], #5, %[t]\n\t"                      \
    "asr %[u], %[u], %[t]\n\t" SAT PUT
#define TN_SL_T2() , [t2] "=&r"(t2)
#define TN_SL_ADD(R, S) "add %[u], %[u], %[a" #R "], asr #" #S "\n\t"
#define TN_SL_ADD0(R) "add %[u], %[u], %[a" #R "]\n\t"
#define TN_SL_BFI(B, OBS) "bfi %[a0], %[u], #" #B ", #" OBS "\n\t"
/* rows 0 .. 3 (SAT "usat" / "ssat", OBS the output width, B1 .. B3 rows' bit offsets) and
 * rows 4 .. 7 (B4 .. B7), two statements: one of all eight sums, thirteen registers, found
 * none with an FPU at -O2 / -Os ('asm' operand has impossible constraints) */
#define TN_SL_PQ4A(RQ, SAT, OBS, B1, B2, B3, FA, A3)                                            \
    RQ(TN_SL_ADD0(0) FA, SAT " %[a0], #" OBS ", %[u]\n\t", "")                                  \
    RQ(TN_SL_ADD(1, 4) FA, SAT " %[u], #" OBS ", %[u]\n\t", TN_SL_BFI(B1, OBS))                 \
    RQ(TN_SL_ADD(2, 8) FA, SAT " %[u], #" OBS ", %[u]\n\t", TN_SL_BFI(B2, OBS))                 \
    RQ(A3 FA, SAT " %[u], #" OBS ", %[u]\n\t", TN_SL_BFI(B3, OBS))
#define TN_SL_PQ4B(RQ, SAT, OBS, B4, B5, B6, B7, FA, A7)                                        \
    RQ(TN_SL_ADD0(4) FA, SAT " %[u], #" OBS ", %[u]\n\t", TN_SL_BFI(B4, OBS))                   \
    RQ(TN_SL_ADD(5, 4) FA, SAT " %[u], #" OBS ", %[u]\n\t", TN_SL_BFI(B5, OBS))                 \
    RQ(TN_SL_ADD(6, 8) FA, SAT " %[u], #" OBS ", %[u]\n\t", TN_SL_BFI(B6, OBS))                 \
    RQ(A7 FA, SAT " %[u], #" OBS ", %[u]\n\t", TN_SL_BFI(B7, OBS))
/* FOLD: each row's F_r (LDR from the pointer f) added; rows 3 and 7 brought to A_r in C */
#define TN_SL_FA "ldr %[t], [%[f]], #4\n\tadd %[u], %[u], %[t]\n\t"
#define TN_SL_FOP() , [f] "+r"(fp)
#define TN_SL_NOP()
#define TN_SL_PQ_ASM(RQ, T2, SAT, OBS, B1, B2, B3, B4, B5, B6, B7, FA, A3, A7, FOP)            \
    do {                                                                                        \
        __asm__ volatile(TN_SL_PQ4A(RQ, SAT, OBS, B1, B2, B3, FA, A3)                           \
                         : [a0] "+r"(a0), [b] "+r"(bp), [m] "+r"(mp), [n] "+r"(np),             \
                           [u] "=&r"(u), [t] "=&r"(t) FOP() T2()                                \
                         : [a1] "r"(a1), [a2] "r"(a2), [a3] "r"(a3));                           \
        TN_SL_MID;                                                                              \
        __asm__ volatile(TN_SL_PQ4B(RQ, SAT, OBS, B4, B5, B6, B7, FA, A7)                       \
                         : [a0] "+r"(a0), [b] "+r"(bp), [m] "+r"(mp), [n] "+r"(np),             \
                           [u] "=&r"(u), [t] "=&r"(t) FOP() T2()                                \
                         : [a4] "r"(a4), [a5] "r"(a5), [a6] "r"(a6), [a7] "r"(a7));             \
    } while (0)
/* between the two statements: 8-bit codes, rows 0 .. 3's word stored (rows 4 .. 7 then packed
 * into a0 from bit 0: B4 = 0) */
#define TN_SL_MID                                                                               \
    do {                                                                                        \
        if (OB == 8u) tn_st32le(out + c, a0);                                                   \
    } while (0)
/* the forms, plain (rows 3 and 7 scaled: asr #12) and FOLD; RQ / T2: FAST >= 2 (TN_SL_RQ) or
 * FAST 1 (TN_SL_RQ1, its second temporary) */
#define TN_SL_PQ_FORMS_R(RQ, T2, FA, A3, A7, FOP)                                               \
    do {                                                                                        \
        if (OB == 4u && PQ == 1u)                                                               \
            TN_SL_PQ_ASM(RQ, T2, "ssat", "4", 4, 8, 12, 16, 20, 24, 28, FA, A3, A7, FOP);       \
        else if (OB == 4u)                                                                      \
            TN_SL_PQ_ASM(RQ, T2, "usat", "4", 4, 8, 12, 16, 20, 24, 28, FA, A3, A7, FOP);       \
        else if (OB == 8u && PQ == 1u)                                                          \
            TN_SL_PQ_ASM(RQ, T2, "ssat", "8", 8, 16, 24, 0, 8, 16, 24, FA, A3, A7, FOP);        \
        else if (OB == 8u)                                                                      \
            TN_SL_PQ_ASM(RQ, T2, "usat", "8", 8, 16, 24, 0, 8, 16, 24, FA, A3, A7, FOP);        \
        else if (PQ == 1u)                                                                      \
            TN_SL_PQ_ASM(RQ, T2, "ssat", "2", 2, 4, 6, 8, 10, 12, 14, FA, A3, A7, FOP);         \
        else TN_SL_PQ_ASM(RQ, T2, "usat", "2", 2, 4, 6, 8, 10, 12, 14, FA, A3, A7, FOP);        \
    } while (0)
/* FAST >= 2, a pair of rows (A, B = A + 1) a step: both biases by one LDRD (u, t2), both
 * multipliers by another (t, t3), both n0 by one LDRSH: ~(n0_A + 256 n0_B) shifts row A (an
 * ASR by register reads its bottom byte) and, ASR #8, row B; fifteen instructions per two
 * outputs, not eighteen (ADDA / ADDB: the rows' sums added to u / t2, with FOLD's F_r; SA / SB
 * their saturations, PA / PB their BFI into a0) */
#define TN_SL_RQ2(ADDA, ADDB, SA, PA, SB, PB)                                                   \
    "ldrd %[u], %[t2], [%[b]], #8\n\t" ADDA ADDB "ldrd %[t], %[t3], [%[m]], #8\n\t"            \
    "smmul %[u], %[u], %[t]\n\tsmmul %[t2], %[t2], %[t3]\n\tldrsh %[t], [%[n]], #2\n\t"        \
    "mvn %[t], %[t]\n\tasr %[u], %[u], %[t]\n\tasr %[t], %[t], #8\n\t"                         \
    "asr %[t2], %[t2], %[t]\n\t" SA PA SB PB
#define TN_SL_ADDX(T, R, S) "add %[" T "], %[" T "], %[a" #R "], asr #" #S "\n\t"
#define TN_SL_ADDX0(T, R) "add %[" T "], %[" T "], %[a" #R "]\n\t"
#define TN_SL_SATX(SAT, OBS, D, S) SAT " %[" D "], #" OBS ", %[" S "]\n\t"
#define TN_SL_BFIX(S, B, OBS) "bfi %[a0], %[" S "], #" #B ", #" OBS "\n\t"
/* FOLD's F_r into t2 (row B) */
#define TN_SL_FA2 "ldr %[t], [%[f]], #4\n\tadd %[t2], %[t2], %[t]\n\t"
/* rows (R, R + 1) of a statement, R + 1 by ADDB (rows 3 and 7: the caller's A3T / A7T) */
#define TN_SL_PR(SAT, OBS, R, S, ADDB, BA, BB, FA, FA2)                                          \
    TN_SL_RQ2(TN_SL_ADDX("u", R, S) FA, ADDB FA2, TN_SL_SATX(SAT, OBS, "u", "u"),              \
              TN_SL_BFIX("u", BA, OBS), TN_SL_SATX(SAT, OBS, "t2", "t2"), TN_SL_BFIX("t2", BB, OBS))
#define TN_SL_PR0(SAT, OBS, R, ADDB, BA, BB, FA, FA2)                                            \
    TN_SL_RQ2(TN_SL_ADDX0("u", R) FA, ADDB FA2, TN_SL_SATX(SAT, OBS, "u", "u"),                \
              TN_SL_BFIX("u", BA, OBS), TN_SL_SATX(SAT, OBS, "t2", "t2"), TN_SL_BFIX("t2", BB, OBS))
/* one statement per pair of rows (eleven registers with FOLD's pointer: two statements of four
 * rows and the pairs' two more temporaries would need fourteen) */
#define TN_SL_PQ2_OUT(FOP)                                                                      \
    : [a0] "+r"(a0), [b] "+r"(bp), [m] "+r"(mp), [n] "+r"(np), [u] "=&r"(u), [t] "=&r"(t),      \
      [t2] "=&r"(t2), [t3] "=&r"(t3) FOP()
#define TN_SL_PQ2_STMT(G, RA, RB, FOP)                                                          \
    __asm__ volatile(G TN_SL_PQ2_OUT(FOP) : [a##RA] "r"(a##RA), [a##RB] "r"(a##RB))
#define TN_SL_PQ2_ASM(SAT, OBS, B1, B2, B3, B4, B5, B6, B7, FA, FA2, A3T, A7T, FOP)             \
    do {                                                                                        \
        __asm__ volatile(TN_SL_RQ2(TN_SL_ADDX0("u", 0) FA, TN_SL_ADDX("t2", 1, 4) FA2,          \
                                 TN_SL_SATX(SAT, OBS, "a0", "u"), "",                           \
                                 TN_SL_SATX(SAT, OBS, "t2", "t2"), TN_SL_BFIX("t2", B1, OBS))  \
                         TN_SL_PQ2_OUT(FOP) : [a1] "r"(a1));                                    \
        TN_SL_PQ2_STMT(TN_SL_PR(SAT, OBS, 2, 8, A3T, B2, B3, FA, FA2), 2, 3, FOP);              \
        TN_SL_MID;                                                                              \
        TN_SL_PQ2_STMT(TN_SL_PR0(SAT, OBS, 4, TN_SL_ADDX("t2", 5, 4), B4, B5, FA, FA2), 4, 5,   \
                       FOP);                                                                    \
        TN_SL_PQ2_STMT(TN_SL_PR(SAT, OBS, 6, 8, A7T, B6, B7, FA, FA2), 6, 7, FOP);              \
    } while (0)
#define TN_SL_PQ2_FORMS(FA, FA2, A3T, A7T, FOP)                                                 \
    do {                                                                                        \
        if (OB == 4u && PQ == 1u)                                                               \
            TN_SL_PQ2_ASM("ssat", "4", 4, 8, 12, 16, 20, 24, 28, FA, FA2, A3T, A7T, FOP);       \
        else if (OB == 4u)                                                                      \
            TN_SL_PQ2_ASM("usat", "4", 4, 8, 12, 16, 20, 24, 28, FA, FA2, A3T, A7T, FOP);       \
        else if (OB == 8u && PQ == 1u)                                                          \
            TN_SL_PQ2_ASM("ssat", "8", 8, 16, 24, 0, 8, 16, 24, FA, FA2, A3T, A7T, FOP);        \
        else if (OB == 8u)                                                                      \
            TN_SL_PQ2_ASM("usat", "8", 8, 16, 24, 0, 8, 16, 24, FA, FA2, A3T, A7T, FOP);        \
        else if (PQ == 1u)                                                                      \
            TN_SL_PQ2_ASM("ssat", "2", 2, 4, 6, 8, 10, 12, 14, FA, FA2, A3T, A7T, FOP);         \
        else TN_SL_PQ2_ASM("usat", "2", 2, 4, 6, 8, 10, 12, 14, FA, FA2, A3T, A7T, FOP);        \
    } while (0)
/* FAST 1, a pair of rows (no FOLD: its pointer would make thirteen registers): TN_SL_RQ1's
 * shifts row by row, the biases and the multipliers by one LDRD each (t4, t5); twelve
 * instructions per output, not thirteen */
#define TN_SL_RQ12(ADDA, ADDB, SA, PA, SB, PB)                                                  \
    "ldrd %[u], %[t2], [%[b]], #8\n\t" ADDA ADDB "ldrsb %[t], [%[n]], #1\n\t"                  \
    "add %[t3], %[t], #1\n\tusat %[t3], #5, %[t3]\n\tlsl %[u], %[u], %[t3]\n\t"                 \
    "mvn %[t], %[t]\n\tusat %[t], #5, %[t]\n\tldrsb %[t3], [%[n]], #1\n\t"                     \
    "add %[t4], %[t3], #1\n\tusat %[t4], #5, %[t4]\n\tlsl %[t2], %[t2], %[t4]\n\t"              \
    "mvn %[t3], %[t3]\n\tusat %[t3], #5, %[t3]\n\tldrd %[t4], %[t5], [%[m]], #8\n\t"            \
    "smmul %[u], %[u], %[t4]\n\tsmmul %[t2], %[t2], %[t5]\n\tasr %[u], %[u], %[t]\n\t"         \
    "asr %[t2], %[t2], %[t3]\n\t" SA PA SB PB
#define TN_SL_PQ12_OUT                                                                          \
    : [a0] "+r"(a0), [b] "+r"(bp), [m] "+r"(mp), [n] "+r"(np), [u] "=&r"(u), [t] "=&r"(t),      \
      [t2] "=&r"(t2), [t3] "=&r"(t3), [t4] "=&r"(t4), [t5] "=&r"(t5)
#define TN_SL_PQ12_STMT(G, RA, RB)                                                              \
    __asm__ volatile(G TN_SL_PQ12_OUT : [a##RA] "r"(a##RA), [a##RB] "r"(a##RB))
#define TN_SL_PQ12_ASM(SAT, OBS, B1, B2, B3, B4, B5, B6, B7, A3T, A7T)                          \
    do {                                                                                        \
        __asm__ volatile(TN_SL_RQ12(TN_SL_ADDX0("u", 0), TN_SL_ADDX("t2", 1, 4),                \
                                    TN_SL_SATX(SAT, OBS, "a0", "u"), "",                        \
                                    TN_SL_SATX(SAT, OBS, "t2", "t2"), TN_SL_BFIX("t2", B1, OBS))\
                         TN_SL_PQ12_OUT : [a1] "r"(a1));                                        \
        TN_SL_PQ12_STMT(TN_SL_RQ12(TN_SL_ADDX("u", 2, 8), A3T, TN_SL_SATX(SAT, OBS, "u", "u"),  \
                                   TN_SL_BFIX("u", B2, OBS), TN_SL_SATX(SAT, OBS, "t2", "t2"),  \
                                   TN_SL_BFIX("t2", B3, OBS)), 2, 3);                           \
        TN_SL_MID;                                                                              \
        TN_SL_PQ12_STMT(TN_SL_RQ12(TN_SL_ADDX0("u", 4), TN_SL_ADDX("t2", 5, 4),                 \
                                   TN_SL_SATX(SAT, OBS, "u", "u"), TN_SL_BFIX("u", B4, OBS),    \
                                   TN_SL_SATX(SAT, OBS, "t2", "t2"), TN_SL_BFIX("t2", B5, OBS)),\
                        4, 5);                                                                  \
        TN_SL_PQ12_STMT(TN_SL_RQ12(TN_SL_ADDX("u", 6, 8), A7T, TN_SL_SATX(SAT, OBS, "u", "u"),  \
                                   TN_SL_BFIX("u", B6, OBS), TN_SL_SATX(SAT, OBS, "t2", "t2"),  \
                                   TN_SL_BFIX("t2", B7, OBS)), 6, 7);                           \
    } while (0)
#define TN_SL_PQ12_FORMS(A3T, A7T)                                                              \
    do {                                                                                        \
        if (OB == 4u && PQ == 1u)                                                               \
            TN_SL_PQ12_ASM("ssat", "4", 4, 8, 12, 16, 20, 24, 28, A3T, A7T);                    \
        else if (OB == 4u) TN_SL_PQ12_ASM("usat", "4", 4, 8, 12, 16, 20, 24, 28, A3T, A7T);     \
        else if (OB == 8u && PQ == 1u)                                                          \
            TN_SL_PQ12_ASM("ssat", "8", 8, 16, 24, 0, 8, 16, 24, A3T, A7T);                     \
        else if (OB == 8u) TN_SL_PQ12_ASM("usat", "8", 8, 16, 24, 0, 8, 16, 24, A3T, A7T);      \
        else if (PQ == 1u) TN_SL_PQ12_ASM("ssat", "2", 2, 4, 6, 8, 10, 12, 14, A3T, A7T);       \
        else TN_SL_PQ12_ASM("usat", "2", 2, 4, 6, 8, 10, 12, 14, A3T, A7T);                     \
    } while (0)
/* FA / A3 / A7 (into u) for FAST 1 with FOLD; FA2 / A3T / A7T (into t2) for the pairs */
#define TN_SL_PQ_FORMS(FA, A3, A7, FOP, FA2, A3T, A7T)                                          \
    do {                                                                                        \
        if (FAST >= 2u) TN_SL_PQ2_FORMS(FA, FA2, A3T, A7T, FOP);                                \
        else if (!FOLD) TN_SL_PQ12_FORMS(A3T, A7T);                                             \
        else TN_SL_PQ_FORMS_R(TN_SL_RQ1, TN_SL_T2, FA, A3, A7, FOP);                            \
    } while (0)
/* tn_sc_fq's form (the layer's M0, floor, k = -(N0 + 1)): SMMLA of the sum with M0 and
 * z_out 2^k, SSAT / USAT with ASR #k (SH; "" for k = 0), BFI: five instructions per output */
#define TN_SL_FQ(ADD, SAT, PUT)                                                                 \
    "ldr %[u], [%[b]], #4\n\t" ADD "smmla %[u], %[u], %[mz], %[zk]\n\t" SAT PUT
#define TN_SL_FQ4A(SAT, OBS, SH, B1, B2, B3, FA, A3)                                            \
    TN_SL_FQ(TN_SL_ADD0(0) FA, SAT " %[a0], #" OBS ", %[u]" SH "\n\t", "")                      \
    TN_SL_FQ(TN_SL_ADD(1, 4) FA, SAT " %[u], #" OBS ", %[u]" SH "\n\t", TN_SL_BFI(B1, OBS))     \
    TN_SL_FQ(TN_SL_ADD(2, 8) FA, SAT " %[u], #" OBS ", %[u]" SH "\n\t", TN_SL_BFI(B2, OBS))     \
    TN_SL_FQ(A3 FA, SAT " %[u], #" OBS ", %[u]" SH "\n\t", TN_SL_BFI(B3, OBS))
#define TN_SL_FQ4B(SAT, OBS, SH, B4, B5, B6, B7, FA, A7)                                        \
    TN_SL_FQ(TN_SL_ADD0(4) FA, SAT " %[u], #" OBS ", %[u]" SH "\n\t", TN_SL_BFI(B4, OBS))       \
    TN_SL_FQ(TN_SL_ADD(5, 4) FA, SAT " %[u], #" OBS ", %[u]" SH "\n\t", TN_SL_BFI(B5, OBS))     \
    TN_SL_FQ(TN_SL_ADD(6, 8) FA, SAT " %[u], #" OBS ", %[u]" SH "\n\t", TN_SL_BFI(B6, OBS))     \
    TN_SL_FQ(A7 FA, SAT " %[u], #" OBS ", %[u]" SH "\n\t", TN_SL_BFI(B7, OBS))
#define TN_SL_FQ_ASM(SAT, OBS, SH, B1, B2, B3, B4, B5, B6, B7, FA, A3, A7, FOP)                 \
    do {                                                                                        \
        __asm__ volatile(TN_SL_FQ4A(SAT, OBS, SH, B1, B2, B3, FA, A3)                           \
                         : [a0] "+r"(a0), [b] "+r"(bp), [u] "=&r"(u), [t] "=&r"(t) FOP()        \
                         : [a1] "r"(a1), [a2] "r"(a2), [a3] "r"(a3), [mz] "r"(M0),              \
                           [zk] "r"(zk), [k] "i"(k));                                           \
        TN_SL_MID;                                                                              \
        __asm__ volatile(TN_SL_FQ4B(SAT, OBS, SH, B4, B5, B6, B7, FA, A7)                       \
                         : [a0] "+r"(a0), [b] "+r"(bp), [u] "=&r"(u), [t] "=&r"(t) FOP()        \
                         : [a4] "r"(a4), [a5] "r"(a5), [a6] "r"(a6), [a7] "r"(a7),              \
                           [mz] "r"(M0), [zk] "r"(zk), [k] "i"(k));                             \
    } while (0)
#define TN_SL_FQ_SH(SAT, OBS, B1, B2, B3, B4, B5, B6, B7, FA, A3, A7, FOP)                      \
    do {                                                                                        \
        if (k) TN_SL_FQ_ASM(SAT, OBS, ", asr %[k]", B1, B2, B3, B4, B5, B6, B7, FA, A3, A7, FOP); \
        else TN_SL_FQ_ASM(SAT, OBS, "", B1, B2, B3, B4, B5, B6, B7, FA, A3, A7, FOP);           \
    } while (0)
#define TN_SL_FQ_FORMS(FA, A3, A7, FOP)                                                         \
    do {                                                                                        \
        if (OB == 4u && FQ == 1u)                                                               \
            TN_SL_FQ_SH("ssat", "4", 4, 8, 12, 16, 20, 24, 28, FA, A3, A7, FOP);                \
        else if (OB == 4u) TN_SL_FQ_SH("usat", "4", 4, 8, 12, 16, 20, 24, 28, FA, A3, A7, FOP);  \
        else if (OB == 8u && FQ == 1u)                                                          \
            TN_SL_FQ_SH("ssat", "8", 8, 16, 24, 0, 8, 16, 24, FA, A3, A7, FOP);                 \
        else if (OB == 8u) TN_SL_FQ_SH("usat", "8", 8, 16, 24, 0, 8, 16, 24, FA, A3, A7, FOP);  \
        else if (FQ == 1u) TN_SL_FQ_SH("ssat", "2", 2, 4, 6, 8, 10, 12, 14, FA, A3, A7, FOP);   \
        else TN_SL_FQ_SH("usat", "2", 2, 4, 6, 8, 10, 12, 14, FA, A3, A7, FOP);                 \
    } while (0)
/* raw int32 outputs of four rows (sums S0 .. S3): LDRD of two biases, two ADD, STRD (four
 * sums a statement, as the rows above) */
#define TN_SL_RAW_ASM(S0, S1, S2, S3)                                                           \
    __asm__ volatile("ldrd %[u], %[t], [%[b]], #8\n\tadd %[u], %[u], %[s0]\n\t"                 \
                     "add %[t], %[t], %[s1], asr #4\n\tstrd %[u], %[t], [%[o]], #8\n\t"          \
                     "ldrd %[u], %[t], [%[b]], #8\n\tadd %[u], %[u], %[s2], asr #8\n\t"          \
                     "add %[t], %[t], %[s3], asr #12\n\tstrd %[u], %[t], [%[o]], #8\n\t"         \
                     : [b] "+r"(bp), [o] "+r"(o), [u] "=&r"(u), [t] "=&r"(t)                   \
                     : [s0] "r"(S0), [s1] "r"(S1), [s2] "r"(S2), [s3] "r"(S3)                   \
                     : "memory")
#endif

#if TN_M7_ASM
/* LP (tn_sl_pieces): the lean loop over the whole input in pieces of at most OCT words (the
 * chunks of RAW 2 / of 2-bit rows 7), in one statement. Only the top rows' scaled sums (4-bit:
 * rows 3 and 7, 4096 A; 2-bit: row 7, 16384 A) would leave int32 past a chunk: at each piece's
 * end their differences C_3 - C_2 (C_7 - C_6), exact within the piece, are added unscaled to
 * m37 (memory, started at c_3 / c_7) and C_3 (C_7) restarts at C_2 (C_6); the other rows run
 * over the whole input (the bound of tn_sl_pieces). The first piece takes NG % 4 (the entry of
 * TN_SL_LOOPN, without its empty case: PF >= 1), the others P words, a multiple of 4; the
 * current piece's end in memory (e, then e + st until ef). Per piece about fifteen
 * instructions, where tn_so_block's chunks cost about sixty (sums from and to memory in C). */
#define TN_LP_FOLD4                                                                             \
    "sub %[p], %[a3], %[a2]\n\tsub %[u], %[a7], %[a6]\n\tldrd %[v], %[u2], %[m37]\n\t"         \
    "add %[v], %[v], %[p], asr #12\n\tadd %[u2], %[u2], %[u], asr #12\n\t"                      \
    "strd %[v], %[u2], %[m37]\n\tmov %[a3], %[a2]\n\tmov %[a7], %[a6]\n\t"
#define TN_LP_FOLD2                                                                             \
    "sub %[u], %[a7], %[a6]\n\tldrd %[v], %[u2], %[m37]\n\tadd %[u2], %[u2], %[u], asr #14\n\t" \
    "strd %[v], %[u2], %[m37]\n\tmov %[a7], %[a6]\n\t"
#define TN_LP_NEXT(L)                                                                           \
    "ldr %[p], %[e]\n\tldr %[u], %[ef]\n\tcmp %[p], %[u]\n\tbeq 6f\n\t"                         \
    "ldr %[u], %[st]\n\tadd %[p], %[p], %[u]\n\tstr %[p], %[e]\n\tb " L "\n\t6:\n\t"
#define TN_LP_LOOP(G, FOLDR)                                                                    \
    "ldr %[p], %[e]\n\tsub %[p], %[p], %[x]\n\tlsls %[p], %[p], #29\n\t"                        \
    "bmi 7f\n\tbcs 3f\n\tb 1f\n\t7:\n\tbcs 2f\n\tb 4f\n\t"                                      \
    "1:\n\t" G "2:\n\t" G "3:\n\t" G "4:\n\t" G                                                 \
    "ldr %[p], %[e]\n\tcmp %[x], %[p]\n\tbne 1b\n\t" FOLDR TN_LP_NEXT("1b")
/* the LDRD loop eight words a pass (TN_SL_LOOP8's; pieces of a multiple of 8 words) */
#define TN_LP_LOOP8(G, FOLDR) TN_SL_ENTRY8("%[e]") TN_SL_LOOP8(G) FOLDR TN_LP_NEXT("21b")
/* the differences of the rows not folded (4-bit: 1, 2, 5, 6; 2-bit: 1 .. 6) */
#define TN_LP_DIFF4                                                                             \
    "sub %[a2], %[a2], %[a1]\n\tsub %[a1], %[a1], %[a0]\n\t"                                    \
    "sub %[a6], %[a6], %[a5]\n\tsub %[a5], %[a5], %[a4]\n\t"
#define TN_LP_DIFF2                                                                             \
    "sub %[a6], %[a6], %[a5]\n\tsub %[a5], %[a5], %[a4]\n\tsub %[a4], %[a4], %[a3]\n\t"         \
    TN_SL_DIFF4Q
#define TN_LP_OPERANDS                                                                          \
    : [x] "+r"(x), [wp] "+r"(w), [v] "=&r"(v), [p] "=&r"(p), [u] "=&r"(u), [u2] "=&r"(u2),      \
      [a0] "=&r"(a0), [a1] "=&r"(a1), [a2] "=&r"(a2), [a3] "=&r"(a3), [a4] "=&r"(a4),           \
      [a5] "=&r"(a5), [a6] "=&r"(a6), [a7] "=&r"(a7), [e] "+m"(ec), [m37] "+m"(m37)             \
    : [ef] "m"(ef), [st] "m"(st), [i01] "m"(I[0]), [i23] "m"(I[1]), [i45] "m"(I[2]),            \
      [i67] "m"(I[3])                                                                           \
    : "cc", "memory"
#define TN_LP_RUN(GA, GB, F, D)                                                                 \
    __asm__ volatile(TN_SL_INIT TN_SL_PICK TN_LP_LOOP8(GA, F) "b 9f\n\t8:\n\t" TN_LP_LOOP(GB, F) \
                     "9:\n\t" D TN_LP_OPERANDS)
#endif

/* Can the blocks of eight run lean in pieces (LP, above) where LEAN's one chunk does not apply?
 * 8-bit inputs without an offset in chunks of OCT >= 4 words (OCT < NG; no FOLD, no partial
 * word), 4-bit weights at RAW 2 or 2-bit ones, one weight zero point, the asm epilogues (FORM
 * 1, 3), and every row but the folded ones exact over the whole input from the lean start
 * whatever the weights: 16^r |A_r + c_r| <= 16^r 15 * 255 K < 2^31 for r <= 2 (4-bit:
 * K <= 2193), 4^r 3 * 255 K < 2^31 for r <= 6 (2-bit, rows 3 .. 6 then brought to 4096 by
 * tn_sl_rescale2's shifts: K <= 685; AD's first layer, K = 640). */
TN_INLINE uint32_t tn_sl_pieces(uint32_t OCT, uint32_t FOLD, uint32_t TAIL, uint32_t NG,
                                uint32_t K, uint32_t XB, uint32_t WB, uint32_t RAW, uint32_t NWZP,
                                uint32_t HASZW, uint32_t FORM)
{
#if defined(TN_SF_NO_PIECES) /* the tests' build of tn_so_block's chunks */
    (void)OCT; (void)FOLD; (void)TAIL; (void)NG; (void)K; (void)XB; (void)WB; (void)RAW;
    (void)NWZP; (void)HASZW; (void)FORM;
    return 0u;
#else
    return OCT >= 8u && OCT < NG && !FOLD && !TAIL && XB == 8u && (NWZP == 1u || !HASZW)
           && (FORM == 1u || FORM == 3u)
           && ((WB == 4u && RAW == 2u && (uint64_t)K * (256u * 15u * 255u) < 0x80000000u)
               || (WB == 2u && (uint64_t)K * (4096u * 3u * 255u) < 0x80000000u));
#endif
}

/* 2-bit weights: the sums 4^r (A_r + c_r) of rows 1 .. 7 brought to the 4-bit weights'
 * scales 16^(r % 4), which the epilogues take (rows 1 .. 3 << 2 r, rows 4 .. 7 >> 8 - 2 (r - 4);
 * exact: kernels_m7.subfc_lean bounds each row by the larger of the two scales). */
TN_INLINE void tn_sl_rescale2(uint32_t *a1, uint32_t *a2, uint32_t *a3, uint32_t *a4,
                              uint32_t *a5, uint32_t *a6, uint32_t *a7)
{
    *a1 <<= 2; *a2 <<= 4; *a3 <<= 6;
    *a4 = (uint32_t)((int32_t)*a4 >> 8); *a5 = (uint32_t)((int32_t)*a5 >> 6);
    *a6 = (uint32_t)((int32_t)*a6 >> 4); *a7 = (uint32_t)((int32_t)*a7 >> 2);
}

/* One lean block of eight rows c .. c + 7 (weights at w, NG words of inputs at in; UNP: in holds
 * the sums' start I as 8 words, then the inputs' lane pairs, tn_sl_unpack; I: the sums' start,
 * above), its outputs written (FORM:
 * tn_sl_form; *bpp, *mpp, *npp: the bias, m0 and n0 of row c, advanced past the block; RAWOK:
 * FORM 2's clamp is int32's and out word-aligned; LP: in pieces, tn_sl_pieces, the first of PF
 * words, then of PP, rows 3 and 7 (2-bit: 7) started at M37's words, c_3 and c_7, and I_3 = I_2,
 * I_7 = I_6); returns w past the block. */
TN_INLINE const uint8_t *tn_sl_block(const tn_layer_t *l, const uint8_t *w, const uint8_t *in,
                                     uint8_t *TN_RESTRICT out, uint32_t c, uint32_t N,
                                     uint32_t NG, uint32_t XB, uint32_t XS, uint32_t WB,
                                     const uint64_t *I,
                                     uint32_t FOLD, uint32_t Z, uint32_t Q, const int32_t **fpp,
                                     const uint8_t *const *endp, const int32_t **bpp, const int32_t **mpp,
                                     const int8_t **npp, uint32_t UNP, uint32_t LP, uint32_t PF,
                                     uint32_t PP, uint64_t M37, uint32_t FORM, uint32_t RAWOK,
                                     uint32_t REQ, uint32_t NM, uint32_t ROUND, uint32_t OB,
                                     TN_RQ_ARGS)
{
    uint32_t a0, a1, a2, a3, a4, a5, a6, a7;
#if TN_M7_ASM
    {
        const uint8_t *x = in;
        uint32_t v, p, u, u2;
#define TN_SL_E4 "eor %[v], %[v], #0x88888888\n\t"
#define TN_SL_E2 "eor %[v], %[v], #0xAAAAAAAA\n\t"
        if (LP) { /* 8-bit inputs in pieces (the loop's end and the folded rows in memory) */
            const uint8_t *ec = in + 4u * PF, *const ef = in + 4u * NG;
            const uint32_t st = 4u * PP;
            uint64_t m37 = M37;
            if (WB == 2u && XS)
                TN_LP_RUN(TN_SO_X8("s", TN_SO_Q2A, TN_SO_Q2B, TN_SO_LDD, ""),
                          TN_SO_X8("s", TN_SO_Q2A, TN_SO_Q2B, TN_SO_LD1, TN_SO_LB1), TN_LP_FOLD2,
                          TN_LP_DIFF2);
            else if (WB == 2u)
                TN_LP_RUN(TN_SO_X8("u", TN_SO_Q2A, TN_SO_Q2B, TN_SO_LDD, ""),
                          TN_SO_X8("u", TN_SO_Q2A, TN_SO_Q2B, TN_SO_LD1, TN_SO_LB1), TN_LP_FOLD2,
                          TN_LP_DIFF2);
            else if (XS)
                TN_LP_RUN(TN_SO_X8("s", TN_SO_Q, TN_SO_Q, TN_SO_LDD, TN_SO_LDD),
                          TN_SO_X8("s", TN_SO_Q, TN_SO_Q, TN_SO_LD2, TN_SO_LD2), TN_LP_FOLD4,
                          TN_LP_DIFF4);
            else
                TN_LP_RUN(TN_SO_X8("u", TN_SO_Q, TN_SO_Q, TN_SO_LDD, TN_SO_LDD),
                          TN_SO_X8("u", TN_SO_Q, TN_SO_Q, TN_SO_LD2, TN_SO_LD2), TN_LP_FOLD4,
                          TN_LP_DIFF4);
            if (WB == 4u) a3 = (uint32_t)m37; /* rows 3 and 7 whole, unscaled */
            a7 = (uint32_t)(m37 >> 32);
        } else if (UNP && WB == 2u && XB == 4u) /* the unpacked lane pairs (TN_SU_X4) */
            TN_SU_RUN(TN_SU_X4(TN_SO_Q2A, TN_SO_Q2B, TN_SO_LDD, ""),
                      TN_SU_X4(TN_SO_Q2A, TN_SO_Q2B, TN_SO_LD1, TN_SO_LB1), TN_SL_DIFF2);
        else if (UNP && WB == 2u)
            TN_SU_RUN(TN_SU_X2(TN_SO_Q2A, TN_SO_Q2B, TN_SO_LDD, ""),
                      TN_SU_X2(TN_SO_Q2A, TN_SO_Q2B, TN_SO_LD1, TN_SO_LB1), TN_SL_DIFF2);
        else if (UNP && XB == 4u)
            TN_SU_RUN(TN_SU_X4(TN_SO_Q, TN_SO_Q, TN_SO_LDD, TN_SO_LDD),
                      TN_SU_X4(TN_SO_Q, TN_SO_Q, TN_SO_LD2, TN_SO_LD2), TN_SL_DIFF4);
        else if (UNP)
            TN_SU_RUN(TN_SU_X2(TN_SO_Q, TN_SO_Q, TN_SO_LDD, TN_SO_LDD),
                      TN_SU_X2(TN_SO_Q, TN_SO_Q, TN_SO_LD2, TN_SO_LD2), TN_SL_DIFF4);
        else if (WB == 2u) { /* one word of eight rows per lane pair: LDRD of two lane pairs' */
            if (XB == 8u && XS)
                TN_SL_RUN(TN_SO_X8("s", TN_SO_Q2A, TN_SO_Q2B, TN_SO_LDD, ""),
                          TN_SO_X8("s", TN_SO_Q2A, TN_SO_Q2B, TN_SO_LD1, TN_SO_LB1), TN_SL_DIFF2);
            else if (XB == 8u)
                TN_SL_RUN(TN_SO_X8("u", TN_SO_Q2A, TN_SO_Q2B, TN_SO_LDD, ""),
                          TN_SO_X8("u", TN_SO_Q2A, TN_SO_Q2B, TN_SO_LD1, TN_SO_LB1), TN_SL_DIFF2);
            else if (XB == 4u && XS)
                TN_SL_RUN(TN_SO_X4(TN_SL_E4, TN_SO_Q2A, TN_SO_Q2B, TN_SO_LDD, ""),
                          TN_SO_X4(TN_SL_E4, TN_SO_Q2A, TN_SO_Q2B, TN_SO_LD1, TN_SO_LB1),
                          TN_SL_DIFF2);
            else if (XB == 4u)
                TN_SL_RUN(TN_SO_X4("", TN_SO_Q2A, TN_SO_Q2B, TN_SO_LDD, ""),
                          TN_SO_X4("", TN_SO_Q2A, TN_SO_Q2B, TN_SO_LD1, TN_SO_LB1), TN_SL_DIFF2);
            else if (XS)
                TN_SL_RUN(TN_SO_X2(TN_SL_E2, TN_SO_Q2A, TN_SO_Q2B, TN_SO_LDD, ""),
                          TN_SO_X2(TN_SL_E2, TN_SO_Q2A, TN_SO_Q2B, TN_SO_LD1, TN_SO_LB1),
                          TN_SL_DIFF2);
            else
                TN_SL_RUN(TN_SO_X2("", TN_SO_Q2A, TN_SO_Q2B, TN_SO_LDD, ""),
                          TN_SO_X2("", TN_SO_Q2A, TN_SO_Q2B, TN_SO_LD1, TN_SO_LB1), TN_SL_DIFF2);
        } else if (XB == 8u && XS) {
            TN_SL_RUN(TN_SO_X8("s", TN_SO_Q, TN_SO_Q, TN_SO_LDD, TN_SO_LDD),
                      TN_SO_X8("s", TN_SO_Q, TN_SO_Q, TN_SO_LD2, TN_SO_LD2), TN_SL_DIFF4);
        } else if (XB == 8u) {
            TN_SL_RUN(TN_SO_X8("u", TN_SO_Q, TN_SO_Q, TN_SO_LDD, TN_SO_LDD),
                      TN_SO_X8("u", TN_SO_Q, TN_SO_Q, TN_SO_LD2, TN_SO_LD2), TN_SL_DIFF4);
        } else if (XB == 4u && XS) {
            TN_SL_RUN(TN_SO_X4(TN_SL_E4, TN_SO_Q, TN_SO_Q, TN_SO_LDD, TN_SO_LDD),
                      TN_SO_X4(TN_SL_E4, TN_SO_Q, TN_SO_Q, TN_SO_LD2, TN_SO_LD2), TN_SL_DIFF4);
        } else if (XB == 4u) {
            TN_SL_RUN(TN_SO_X4("", TN_SO_Q, TN_SO_Q, TN_SO_LDD, TN_SO_LDD),
                      TN_SO_X4("", TN_SO_Q, TN_SO_Q, TN_SO_LD2, TN_SO_LD2), TN_SL_DIFF4);
        } else if (XS) {
            TN_SL_RUN(TN_SO_X2(TN_SL_E2, TN_SO_Q, TN_SO_Q, TN_SO_LDD, TN_SO_LDD),
                      TN_SO_X2(TN_SL_E2, TN_SO_Q, TN_SO_Q, TN_SO_LD2, TN_SO_LD2), TN_SL_DIFF4);
        } else {
            TN_SL_RUN(TN_SO_X2("", TN_SO_Q, TN_SO_Q, TN_SO_LDD, TN_SO_LDD),
                      TN_SO_X2("", TN_SO_Q, TN_SO_Q, TN_SO_LD2, TN_SO_LD2), TN_SL_DIFF4);
        }
#undef TN_SL_E4
#undef TN_SL_E2
    }
    if (WB == 2u) { /* 4^r (A_r + c_r) to the 4-bit weights' scales 16^(r % 4) (the bound's) */
        const uint32_t s7 = a7;
        tn_sl_rescale2(&a1, &a2, &a3, &a4, &a5, &a6, &a7);
        if (LP) a7 = s7; /* row 7 whole, unscaled (m37) */
    }
    if (FOLD) { /* rows 3 and 7: A_r from the window (tn_so_run's W3), plus Q */
        a3 = ((a3 + Z) >> 12) + Q;
        a7 = ((a7 + Z) >> 12) + Q;
    }
    (void)I;
    if (FORM == 1u || FORM == 3u) { /* floor to 4 / 2 / 8-bit codes: a word, halfword, 2 words */
        const uint32_t PQ = tn_sc_pcq(REQ, NM, ROUND, OB, TN_RQ);
        const uint32_t FQ = tn_sc_fq(REQ, NM, ROUND, OB, TN_RQ);
        const uint32_t k = FORM == 3u ? (uint32_t)(-(N0 + 1)) : 0u;
        const int32_t zk = FORM == 3u ? (int32_t)((uint32_t)ZP << k) : 0;
        const int32_t *bp = *bpp, *mp = *mpp;
        const int8_t *np = *npp;
        uint32_t u, t, t2, t3, t4, t5;
        (void)zk; (void)t2; (void)t3; (void)t4; (void)t5;
        if (FORM == 3u && FOLD) {
            const int32_t *fp = *fpp;
            TN_SL_FQ_FORMS(TN_SL_FA, TN_SL_ADD0(3), TN_SL_ADD0(7), TN_SL_FOP);
            *fpp = fp;
        } else if (FORM == 3u && LP && WB == 4u) { /* LP: rows 3 and 7 unscaled */
            TN_SL_FQ_FORMS("", TN_SL_ADD0(3), TN_SL_ADD0(7), TN_SL_NOP);
        } else if (FORM == 3u && LP) { /* 2-bit: row 7 unscaled */
            TN_SL_FQ_FORMS("", TN_SL_ADD(3, 12), TN_SL_ADD0(7), TN_SL_NOP);
        } else if (LP && WB == 4u) {
            TN_SL_PQ_FORMS("", TN_SL_ADD0(3), TN_SL_ADD0(7), TN_SL_NOP, "", TN_SL_ADDX0("t2", 3),
                           TN_SL_ADDX0("t2", 7));
        } else if (LP) {
            TN_SL_PQ_FORMS("", TN_SL_ADD(3, 12), TN_SL_ADD0(7), TN_SL_NOP, "",
                           TN_SL_ADDX("t2", 3, 12), TN_SL_ADDX0("t2", 7));
        } else if (FORM == 3u) {
            TN_SL_FQ_FORMS("", TN_SL_ADD(3, 12), TN_SL_ADD(7, 12), TN_SL_NOP);
        } else if (FOLD) {
            const int32_t *fp = *fpp;
            TN_SL_PQ_FORMS(TN_SL_FA, TN_SL_ADD0(3), TN_SL_ADD0(7), TN_SL_FOP, TN_SL_FA2,
                           TN_SL_ADDX0("t2", 3), TN_SL_ADDX0("t2", 7));
            *fpp = fp;
        } else {
            TN_SL_PQ_FORMS("", TN_SL_ADD(3, 12), TN_SL_ADD(7, 12), TN_SL_NOP, "",
                           TN_SL_ADDX("t2", 3, 12), TN_SL_ADDX("t2", 7, 12));
        }
        if (OB == 4u) {
            tn_st32le(out + c / 2u, a0);
        } else if (OB == 8u) { /* rows 4 .. 7 (rows 0 .. 3: TN_SL_MID) */
            tn_st32le(out + c + 4u, a0);
        } else {
            const uint16_t h = (uint16_t)a0;
            TN_MEMCPY(out + c / 4u, &h, 2);
        }
        *bpp = bp; *mpp = mp; *npp = np;
        return w;
    }
    if (FORM == 2u && RAWOK && !FOLD) { /* raw int32 outputs: the sums plus the biases */
        const int32_t *bp = *bpp;
        uint8_t *o = out + 4u * c;
        uint32_t u, t;
        TN_SL_RAW_ASM(a0, a1, a2, a3);
        TN_SL_RAW_ASM(a4, a5, a6, a7);
        *bpp = bp;
        return w;
    }
#else
    (void)RAWOK; (void)endp;
    { /* the same sums in C: tn_so_run's lanes and cumulative masks from I, then C_r - C_{r-1}
       * (LP: rows 3 and 7, 2-bit 7, folded into m at each piece's end, as the asm) */
        const uint32_t flip = !XS || XB == 8u ? 0u : XB == 4u ? 0x88888888u : 0xAAAAAAAAu;
        const uint32_t nlp = XB == 8u ? 2u : 16u / XB;
        uint32_t s[8], m[2] = {(uint32_t)M37, (uint32_t)(M37 >> 32)}, pe = PF;
        TN_UNROLL
        for (uint32_t h = 0; h < 4u; h++) {
            s[2u * h] = (uint32_t)I[h]; s[2u * h + 1u] = (uint32_t)(I[h] >> 32);
        }
        for (uint32_t g = 0; g < NG; g++) {
            const uint32_t v = UNP ? 0u : tn_ld32(in + 4u * g) ^ flip;
            for (uint32_t j = 0; j < nlp; j++) {
                const uint32_t x8 = XS ? (j ? tn_sxtab16_ror8(0u, v) : tn_sxtab16(0u, v))
                                       : (j ? tn_uxtab16_ror8(0u, v) : tn_uxtab16(0u, v));
                /* UNP: in holds the sums' start, then the lane pairs (tn_sl_unpack) */
                const uint32_t xp = UNP ? tn_ld32(in + 32u + 4u * (nlp * g + j))
                                    : XB == 8u ? x8 : (v >> (j * XB)) & tn_lanemask(XB);
                if (WB == 2u) { /* one word, eight rows: the low 2 r + 2 bits of each lane */
                    const uint32_t u = tn_ld32(w);
                    w += 4;
                    for (uint32_t r = 0; r < 8u; r++) {
                        const uint32_t c = r == 7u ? u : u & ((4u << (2u * r)) - 1u) * 0x00010001u;
                        s[r] = (uint32_t)tn_smlad(c, xp, (int32_t)s[r]);
                    }
                    continue;
                }
                for (uint32_t h = 0; h < 8u; h += 4u, w += 4) {
                    const uint32_t u = tn_ld32(w);
                    const uint32_t mk[4] = {u & 0x000F000Fu, u & 0x00FF00FFu, u & ~0xF000F000u, u};
                    for (uint32_t r = 0; r < 4u; r++)
                        s[h + r] = (uint32_t)tn_smlad(mk[r], xp, (int32_t)s[h + r]);
                }
            }
            if (LP && g + 1u == pe) { /* a piece's end: the top rows' differences, unscaled */
                if (WB == 4u) {
                    m[0] += (uint32_t)((int32_t)(s[3] - s[2]) >> 12);
                    s[3] = s[2];
                }
                m[1] += (uint32_t)((int32_t)(s[7] - s[6]) >> (WB == 4u ? 12u : 14u));
                s[7] = s[6];
                pe += PP;
            }
        }
        a0 = s[0]; a1 = s[1] - s[0]; a2 = s[2] - s[1]; a3 = s[3] - s[2];
        a4 = WB == 2u ? s[4] - s[3] : s[4]; a5 = s[5] - s[4]; a6 = s[6] - s[5]; a7 = s[7] - s[6];
        if (WB == 2u)
            tn_sl_rescale2(&a1, &a2, &a3, &a4, &a5, &a6, &a7);
        if (LP && WB == 4u) a3 = m[0];
        if (LP) a7 = m[1];
    }
    if (FOLD) {
        a3 = ((a3 + Z) >> 12) + Q;
        a7 = ((a7 + Z) >> 12) + Q;
    }
#endif
    { /* tn_sf_out4 on the unscaled sums (zero point and row 3's 8 sum x' in them already) */
        /* FOLD: rows 3 and 7 unscaled already; LP: row 7, and row 3 of 4-bit weights */
        const uint32_t s3 = FOLD || (LP && WB == 4u) ? 0u : 12u, s7 = FOLD || LP ? 0u : 12u;
        int32_t A[8] = {(int32_t)a0, (int32_t)a1 >> 4, (int32_t)a2 >> 8, (int32_t)a3 >> s3,
                        (int32_t)a4, (int32_t)a5 >> 4, (int32_t)a6 >> 8, (int32_t)a7 >> s7};
        (void)FORM; (void)bpp; (void)mpp; (void)npp;
        if (FOLD) {
            TN_UNROLL
            for (uint32_t r = 0; r < 8u; r++)
                A[r] = (int32_t)((uint32_t)A[r] + (uint32_t)(*fpp)[r]);
            *fpp += 8;
        }
        tn_sf_out4(l, l->bias, l->wzp, l->m0, l->n0, out, c, N, A, 0, 1u, 0u, 0, REQ, NM, ROUND,
                   OB, TN_RQ);
        tn_sf_out4(l, l->bias, l->wzp, l->m0, l->n0, out, c + 4u, N, A + 4, 0, 1u, 0u, 0, REQ,
                   NM, ROUND, OB, TN_RQ);
    }
    return w;
}

/* UNP of a lean layer (LEAN 2, kernels_m7.subfc_unpack): 2 / 4-bit inputs (no FOLD), else 0
 * (the plain lean loop: the same sums). */
TN_INLINE uint32_t tn_sl_unp(uint32_t LEAN, uint32_t LN, uint32_t XB, uint32_t FOLD)
{
    return LEAN == 2u && LN && (XB == 4u || XB == 2u) && !FOLD;
}

/* The NG words of 2 / 4-bit codes at in as lane pairs, a word each (16 / XB per input word, the
 * order tn_so_run unpacks them in: pair j = (v >> j XB) & the lane mask, signed codes' sign bits
 * flipped), into xu: once per layer, for every block of eight (UNP). */
TN_INLINE void tn_sl_unpack(const uint8_t *in, uint32_t NG, uint32_t XB, uint32_t XS,
                            uint32_t *xu)
{
    const uint32_t flip = !XS ? 0u : XB == 4u ? 0x88888888u : 0xAAAAAAAAu;
    const uint32_t m = tn_lanemask(XB), np = 16u / XB;
    for (uint32_t g = 0; g < NG; g++) {
        const uint32_t v = tn_ld32(in + 4u * g) ^ flip;
        TN_UNROLL
        for (uint32_t j = 0; j < np; j++)
            xu[np * g + j] = (v >> (j * XB)) & m;
    }
}

/* A dense layer K -> N of WB = 2 / 4-bit weights (kernels_m7.subfc_weights' order; RAW, KC:
 * kernels_m7.subfc_plan) and XB = 2 / 4 / 8-bit inputs, no scratch but UNP's (a last partial
 * word of inputs completed with z_x in a register; XU: LEAN 2's unpacked input in the step's
 * arena scratch, tinyopt.integer.steps.sub_fc_unpack_size, else a null pointer):
 * blocks of eight rows where OCT (kernels_m7.subfc_oct: the first N & ~7, in chunks of OCT
 * input words), then of four, the
 * last one or two rows of N in a pair block. HASZW: some weight zero point is nonzero (sum x'
 * needed).
 * FOLD (8-bit inputs with an offset, z_x != 0, 4-bit weights at RAW 2: kernels_m7.subfc_oct
 * with fold): the blocks of eight run on the codes x themselves, not x' = x - z_x (no offset
 * register: the blocks of eight's fourteen are all taken), and
 * sum_k w_k x'_k = sum_k w_k x_k - z_x sum_k w_k, the last term a constant per row stored at
 * export before the blocks (kernels_m7.subfc_weights: int32 F_r = -z_x sum_k w_k over the row's
 * lanes, a last partial word's completing codes z_x included), added modulo 2^32; their
 * rows 3 and 7 (held w - 8) take + 8 sum x instead of + 8 sum x', and OCT's chunks keep the
 * RAW 2 bounds over the codes (kernels_m7.subfc_oct), A_3 and A_7 taken in the window
 * [-4096 FOLD, 2^32 - 4096 FOLD) (tn_so_run's W3; kernels_m7.subfc_fold_window: the whole
 * input where the weights' range fits it, else chunks and FOLD = 2^19, [-2^31, 2^31)). One LDR
 * and ADD per row instead of the offset in every lane. */
TN_INLINE void tn_m7_subfc(const tn_layer_t *l, const uint8_t *in, uint8_t *TN_RESTRICT out,
                           uint32_t K, uint32_t N, uint32_t XB, uint32_t XS, int32_t ZX,
                           uint32_t WB, uint32_t RAW, uint32_t KC, uint32_t OCT, uint32_t FOLD,
                           uint32_t LEAN, uint32_t NWZP,
                           uint32_t HASZW, int32_t ZW, uint32_t REQ, uint32_t NM, uint32_t ROUND,
                           uint32_t OB, TN_RQ_ARGS, uint32_t *TN_RESTRICT XU)
{
    /* the layer's tables, read once (the asm's memory clobber would reload them) */
    const uint8_t *w = l->w, *wzp = l->wzp;
    const int32_t *bias = l->bias, *m0p = l->m0;
    const int8_t *n0p = l->n0;
    const uint32_t G = 32u / XB, NG = K / G, TAIL = K % G != 0u; /* whole input words */
    const uint32_t NQ = N % 4u == 1u || N % 4u == 2u ? N & ~3u : N; /* rows in blocks of four */
    const uint32_t NO = OCT ? N & ~7u : 0u; /* rows in blocks of eight (before those of four) */
    uint32_t tw = tn_sf_tail_word(in, K, XB, ZX); /* the last word: codes, then z_x's */
    const uint32_t SXN = HASZW || (WB == 4u && RAW == 2u) || OCT; /* sum x' needed */
    /* PF: 8-bit inputs (4-bit ones without an offset, under 4-bit weights) with a pair block
     * (N % 4 = 1, 2) and sum x' needed: the pair block
     * first (its weights after the blocks: the FOLD constants, then NQ / 4 blocks of four's
     * bytes, blocks of eight the size of two), summing the codes on the way (one USADA8 per
     * input word it loads anyway, not tn_sf_sumx's own pass: LDR, USADA8 and the loop's end);
     * its outputs after the blocks, as before. seed_cnn's 2028 -> 10 logits at w4a8: 25,879 ->
     * 24,920 instructions (w8a8: 23,440) */
    const int32_t xd = (XS ? (int32_t)(1u << (XB - 1u)) : 0) + ZX; /* the codes' offset */
    const uint32_t PF = (XB == 8u || (XB == 4u && WB == 4u && xd == 0)) && NQ < N && SXN;
    int32_t AP[4] = {0, 0, 0, 0};
    uint32_t ps[2] = {0, 0};
    if (PF)
        (void)tn_sf_pair(w + (FOLD ? 4u * NO : 0u) + NQ / 4u * (NG + TAIL) * G * WB / 2u, in, NG,
                         tw, TAIL, KC, XB, XS, ZX, WB, RAW >= 1u, AP, 1u, ps);
    const int32_t sx = PF ? (int32_t)((XB == 8u ? ps[0] : ps[1] + ((ps[0] - ps[1]) >> 4))
                                      - (NG + TAIL) * G * (uint32_t)xd)
                          : SXN ? tn_sf_sumx(in, NG, tw, TAIL, XB, XS, ZX) : 0;
    /* FOLD: the rows' constants F_r first, then the blocks; sum x = sum x' + z_x per lane */
    const int32_t *fold = (const int32_t *)(const void *)w;
    const int32_t sxo = FOLD ? (int32_t)((uint32_t)sx + (NG + TAIL) * G * (uint32_t)ZX) : sx;
    const uint32_t LN = tn_sl_ok(LEAN, OCT, FOLD, TAIL, NG, XB, WB, RAW, NWZP, HASZW); /* LEAN */
    /* LP: the lean blocks in pieces of OCT words (tn_sl_pieces), where LEAN's one chunk fails */
    const uint32_t LP = !LN && tn_sl_pieces(OCT, FOLD, TAIL, NG, K, XB, WB, RAW, NWZP, HASZW,
                                            tn_sl_form(REQ, NM, ROUND, OB, TN_RQ));
    if (FOLD) w += 4u * NO;
    if (LN || LP) {
        /* the sums' start: c = -z_w sum x' (row 3: + 8 sum x'), I_r = sum_{s <= r} 16^s c_s */
        /* FOLD: rows 3 and 7 keep tn_so_run's window (I_3 = I_2), their constants added after:
         * Q = c_3 - W3, c_3 = -z_w sum x' + 8 sum x (the codes) */
        /* 2-bit weights: I_r = sum_{s <= r} 4^s c_s, c_7 = -z_w sum x' + 2 sum x' (row 7 ^ 2) */
        const uint32_t k = HASZW ? 0u - (uint32_t)ZW * (uint32_t)sx : 0u;
        /* LP: rows 3 and 7 (2-bit: 7) as FOLD's, I_3 = I_2, their c_r in M37 (added per piece) */
        const uint64_t I4[2] = {(uint64_t)k | (uint64_t)(17u * k) << 32,
                                (uint64_t)(273u * k)
                                    | (uint64_t)(FOLD || LP ? 273u * k
                                                            : 4369u * k + 32768u * (uint32_t)sx)
                                          << 32};
        const uint64_t I[4] = {
            WB == 2u ? (uint64_t)k | (uint64_t)(5u * k) << 32 : I4[0],
            WB == 2u ? (uint64_t)(21u * k) | (uint64_t)(85u * k) << 32 : I4[1],
            WB == 2u ? (uint64_t)(341u * k) | (uint64_t)(1365u * k) << 32 : I4[0],
            WB == 2u ? (uint64_t)(5461u * k)
                           | (uint64_t)(LP ? 5461u * k : 21845u * k + 32768u * (uint32_t)sx) << 32
                     : I4[1]};
        const uint32_t c37 = k + (WB == 4u ? 8u : 2u) * (uint32_t)sx; /* c_3 = c_7 (held w - 8 / 2) */
        const uint64_t M37 = (uint64_t)c37 | (uint64_t)c37 << 32;
        const uint32_t PP = LP ? OCT & ~7u : 8u, PF = NG - PP * ((NG - 1u) / PP); /* LP pieces */
        const uint32_t Z = FOLD << 12, Q = k + 8u * (uint32_t)sxo - FOLD;
        const int32_t *fp = fold;
        const uint32_t FORM = tn_sl_form(REQ, NM, ROUND, OB, TN_RQ);
        const uint32_t RAWOK = FORM == 2u && l->act_lo == INT32_MIN && l->act_hi == INT32_MAX
                               && ((uintptr_t)out & 3u) == 0u;
        const int32_t *bp = bias, *mp = m0p;
        const int8_t *np = n0p;
#define TN_SL_BLOCKS(SRC, U)                                                                    \
    for (uint32_t c = 0; c < NO; c += 8u)                                                       \
        w = tn_sl_block(l, w, SRC, out, c, N, NG, XB, XS, WB, I, FOLD, Z, Q, &fp, &end, &bp,    \
                        &mp, &np, U, LP, PF, PP, M37, FORM, RAWOK, REQ, NM, ROUND, OB, TN_RQ)
        if (tn_sl_unp(LEAN, LN, XB, FOLD)) {
            /* UNP: the input's lane pairs in the step's arena scratch XU (planned by the
             * memory plan, tinyopt.integer.steps.sub_fc_unpack_size: 9 + K / 2 words, not the stack),
             * read by every block instead of the input itself: the sums' start I, the lane
             * pairs, the end mark (TN_SU_END) */
            uint32_t *xu = XU;
            const uint8_t *end = (const uint8_t *)(xu + 8) + 4u * (16u / XB) * NG;
            TN_UNROLL
            for (uint32_t h = 0; h < 4u; h++) {
                xu[2u * h] = (uint32_t)I[h];
                xu[2u * h + 1u] = (uint32_t)(I[h] >> 32);
            }
            tn_sl_unpack(in, NG, XB, XS, xu + 8);
            xu[8u + (16u / XB) * NG] = 0xFFFFFFFFu;
            TN_SL_BLOCKS((const uint8_t *)xu, 1u);
        } else {
            const uint8_t *end = in + 4u * NG; /* the loop's end, read from memory (once stored) */
            TN_SL_BLOCKS(in, 0u);
        }
#undef TN_SL_BLOCKS
    }
    for (uint32_t c = 0; c < (LN || LP ? 0u : NO); c += 8u) { /* OCT: blocks of eight rows */
        int32_t A[8];
        w = tn_so_block(w, in, NG, &tw, TAIL, OCT, XB, XS, WB, FOLD, sxo, A);
        if (FOLD) {
            TN_UNROLL
            for (uint32_t r = 0; r < 8u; r++)
                A[r] = (int32_t)((uint32_t)A[r] + (uint32_t)fold[c + r]);
        }
        tn_sf_out4(l, bias, wzp, m0p, n0p, out, c, N, A, sx, NWZP, HASZW, ZW, REQ, NM, ROUND, OB,
                   TN_RQ);
        tn_sf_out4(l, bias, wzp, m0p, n0p, out, c + 4u, N, A + 4, sx, NWZP, HASZW, ZW, REQ, NM,
                   ROUND, OB, TN_RQ);
    }
    const uint32_t NT = tn_sf_twin_ok(w, NG, TAIL, XB, WB, RAW) ? NO + (NQ - NO) / 8u * 8u : NO;
    for (uint32_t c = NO; c < NT; c += 8u) { /* TWIN: two blocks of four at a time */
        int32_t A[8];
        w = tn_tw_block(w, in, NG, &tw, TAIL, KC, XS, ZX, sx, A);
        tn_sf_out4(l, bias, wzp, m0p, n0p, out, c, N, A, sx, NWZP, HASZW, ZW, REQ, NM, ROUND, OB,
                   TN_RQ);
        tn_sf_out4(l, bias, wzp, m0p, n0p, out, c + 4u, N, A + 4, sx, NWZP, HASZW, ZW, REQ, NM,
                   ROUND, OB, TN_RQ);
    }
    for (uint32_t c = NT; c < N; c += 4u) {
        int32_t A[4];
        if (c < NQ) {
            w = tn_sf_block(w, in, NG, &tw, TAIL, KC, XB, XS, ZX, WB, RAW, sx, A);
        } else if (PF) { /* the pair block, run first */
            A[0] = AP[0]; A[1] = AP[1]; A[2] = A[3] = 0;
        } else { /* the pair block */
            A[0] = A[1] = A[2] = A[3] = 0;
            w = tn_sf_pair(w, in, NG, tw, TAIL, KC, XB, XS, ZX, WB, RAW >= 1u, A, 0u, 0);
        }
        tn_sf_out4(l, bias, wzp, m0p, n0p, out, c, N, A, sx, NWZP, HASZW, ZW, REQ, NM, ROUND, OB,
                   TN_RQ);
    }
}

/* ---------------------------------------------------------------------------------------------
 * tn_sf_pixel: one output pixel of a convolution or pointwise layer in tn_m7_sub's FC form
 * (c/tn_m7_sub.h; steps.sub_fc_window). The pixel's window of K = KH KW C codes (read in place
 * or gathered by tn_m7_sub, packed as they are) is the input of a dense layer K -> N, run by
 * tn_m7_subfc's blocks of eight / four rows and pair block (kernels_m7.sub_weights: the weights
 * of that dense layer in kernels_m7.subfc_weights' order; RAW, KC, OCT of it), the last partial
 * word completed with z_x in a register. No scratch of its own: the lean plan's tn_m7_sub
 * keeps its arena, at tn_m7_subfc's cost per MAC instead of tn_sub_dot's (one row pair per
 * unpacked weight word, a scalar tail). Outputs as tn_sub_pixel's: element idx0 + c (MODE 0;
 * four packed outputs per store when every pixel starts on a byte, N OB % 8 = 0), through the
 * fused ADD (MODE 2) or maxed into best[c] (MODE 1).
 * --------------------------------------------------------------------------------------------- */

/* Outputs c .. c + r - 1 of a pixel (values v, requantized and clamped) handed on by MODE: stored
 * (0), maxed into best[c] (1, a fused max pool) or through the ADD (2: the fused ADD's own
 * arithmetic where the step has it, else tn_m7_emit's per output). tn_m7_sub's own dot
 * products (c/tn_m7_sub.h) hand theirs on here too. */
TN_INLINE void tn_sf_hand_on(const tn_layer_t *l, const int32_t *v, uint32_t r,
                             const uint8_t *other, uint8_t *TN_RESTRICT out, uint32_t idx0,
                             int32_t *TN_RESTRICT best, uint32_t c, uint32_t OB, uint32_t MODE,
                             TN_FADD_ARGS)
{
    if (MODE == 1u) {
        for (uint32_t j = 0; j < r; j++)
            if (v[j] > best[c + j]) best[c + j] = v[j];
    } else if (MODE == 2u && FADD) {
        tn_m7_add_fused(v, other + idx0 + c, out + idx0 + c, r, TN_FADD);
    } else {
        for (uint32_t j = 0; j < r; j++)
            tn_m7_emit(l, other, out, idx0 + c + j, v[j], MODE == 2u, OB);
    }
}

/* Outputs c .. c + 3 (those below N) of a pixel from their sums A[0..3], handed on by MODE. */
TN_INLINE void tn_sf_emit4(const tn_layer_t *l, const int32_t *bias, const uint8_t *wzp,
                           const int32_t *m0p, const int8_t *n0p, const uint8_t *other,
                           uint8_t *TN_RESTRICT out, uint32_t idx0, int32_t *TN_RESTRICT best,
                           uint32_t c, uint32_t N, const int32_t *A, int32_t sx, uint32_t NWZP,
                           uint32_t HASZW, int32_t ZW, uint32_t REQ, uint32_t NM, uint32_t ROUND,
                           uint32_t OB, uint32_t MODE, TN_RQ_ARGS, TN_FADD_ARGS)
{
    const uint32_t r = N - c < 4u ? N - c : 4u;
    int32_t v[4];
    if (MODE == 0u && (N * OB) % 8u == 0u) { /* the pixel's outputs start on a byte */
        tn_sf_out4(l, bias, wzp, m0p, n0p, out + idx0 * OB / 8u, c, N, A, sx, NWZP, HASZW, ZW,
                   REQ, NM, ROUND, OB, TN_RQ);
        return;
    }
    if (MODE == 1u) { /* the fused max pool: each output maxed into best as soon as computed.
                       * Through v[] and tn_sf_hand_on GCC kept two loops per four rows (v
                       * stored, reloaded, its own loop's end): seed_cnn's first layer+pool
                       * (tn_m7_sub's FC form, 676 pixels of 12 outputs) about eight
                       * instructions per output more */
        const uint32_t R4 = N % 4u == 0u ? 4u : r; /* a constant where N % 4 = 0: unrolled */
        TN_UNROLL
        for (uint32_t j = 0; j < R4; j++) {
            const int32_t z = !HASZW ? 0 : NWZP == 1u ? ZW : (int32_t)wzp[c + j];
            const int32_t acc = (int32_t)((uint32_t)bias[c + j] + (uint32_t)A[j]
                                          - (uint32_t)z * (uint32_t)sx);
            const int32_t y = tn_m7_out(l, acc, c + j, REQ, NM == 1u ? 0u : 1u, ROUND, TN_RQ);
            if (y > best[c + j]) best[c + j] = y;
        }
        return;
    }
    for (uint32_t j = 0; j < r; j++) {
        const int32_t z = !HASZW ? 0 : NWZP == 1u ? ZW : (int32_t)wzp[c + j];
        const int32_t acc = (int32_t)((uint32_t)bias[c + j] + (uint32_t)A[j]
                                      - (uint32_t)z * (uint32_t)sx);
        v[j] = tn_m7_out(l, acc, c + j, REQ, NM == 1u ? 0u : 1u, ROUND, TN_RQ);
    }
    tn_sf_hand_on(l, v, r, other, out, idx0, best, c, OB, MODE, TN_FADD);
}

/* All N outputs of one pixel whose K codes are at src (see above). */
TN_INLINE void tn_sf_pixel(const tn_layer_t *l, const uint8_t *src, const uint8_t *other,
                           uint8_t *TN_RESTRICT out, uint32_t idx0, int32_t *TN_RESTRICT best,
                           uint32_t K, uint32_t N, uint32_t XB, uint32_t XS, int32_t ZX,
                           uint32_t WB, uint32_t RAW, uint32_t KC, uint32_t OCT, uint32_t NWZP,
                           uint32_t HASZW, int32_t ZW, uint32_t REQ, uint32_t NM, uint32_t ROUND,
                           uint32_t OB, uint32_t MODE, TN_RQ_ARGS, TN_FADD_ARGS)
{
    /* the layer's tables, read once (the asm's memory clobber would reload them) */
    const uint8_t *w = l->w, *wzp = l->wzp;
    const int32_t *bias = l->bias, *m0p = l->m0;
    const int8_t *n0p = l->n0;
    const uint32_t G = 32u / XB, NG = K / G, TAIL = K % G != 0u; /* whole input words */
    const uint32_t NQ = N % 4u == 1u || N % 4u == 2u ? N & ~3u : N; /* rows in blocks of four */
    const uint32_t NO = OCT ? N & ~7u : 0u; /* rows in blocks of eight (before those of four) */
    uint32_t tw = tn_sf_tail_word(src, K, XB, ZX); /* the last word: codes, then z_x's */
    const int32_t sx = HASZW || (WB == 4u && RAW == 2u) || OCT ? tn_sf_sumx(src, NG, tw, TAIL, XB, XS, ZX) : 0;
    for (uint32_t c = 0; c < NO; c += 8u) { /* OCT: blocks of eight rows */
        int32_t A[8];
        w = tn_so_block(w, src, NG, &tw, TAIL, OCT, XB, XS, WB, 0u, sx, A);
        tn_sf_emit4(l, bias, wzp, m0p, n0p, other, out, idx0, best, c, N, A, sx, NWZP, HASZW,
                    ZW, REQ, NM, ROUND, OB, MODE, TN_RQ, TN_FADD);
        tn_sf_emit4(l, bias, wzp, m0p, n0p, other, out, idx0, best, c + 4u, N, A + 4, sx, NWZP,
                    HASZW, ZW, REQ, NM, ROUND, OB, MODE, TN_RQ, TN_FADD);
    }
    for (uint32_t c = NO; c < N; c += 4u) {
        int32_t A[4];
        if (c < NQ) {
            w = tn_sf_block(w, src, NG, &tw, TAIL, KC, XB, XS, ZX, WB, RAW, sx, A);
        } else { /* the pair block */
            A[0] = A[1] = A[2] = A[3] = 0;
            w = tn_sf_pair(w, src, NG, tw, TAIL, KC, XB, XS, ZX, WB, RAW >= 1u, A, 0u, 0);
        }
        tn_sf_emit4(l, bias, wzp, m0p, n0p, other, out, idx0, best, c, N, A, sx, NWZP, HASZW, ZW,
                    REQ, NM, ROUND, OB, MODE, TN_RQ, TN_FADD);
    }
}

/* ---------------------------------------------------------------------------------------------
 * tn_m7_subfc16: small dense layers of 2 / 4-bit weights (kernels_m7.subfc16_scale: N K <=
 * kernels_m7.FC16_MAX_WEIGHTS and the bound below) as tn_m7_fc16 takes 8-bit ones: each row's
 * d = w - z_w stored as int16 lanes (kernels_m7.subfc16_weights; the bytes beyond the packed
 * weights counted as layout bytes), the input zero point and the bias folded at export into
 * each row's initial accumulator. A dense layer uses each weight once, so tn_m7_subfc's
 * unpacking of the weights (three AND per four SMLAD) is a cost per MAC; here the weights need
 * none and the unpacking of the input is shared by a block of R rows.
 * 8-bit inputs: tn_m7_fc16 itself, S = 1, or S = 2 (DBL: its doubled lanes and constants, for a
 * layer that names TFLite double rounding; tn_m7_fc16_put halves 2 acc where the FAST = 3 form
 * does not apply).
 * 2 / 4-bit inputs: per input word, one LDR (and one EOR flipping signed codes' sign bits:
 * u = x + 2^(b-1)), then pairs of lane pairs masked in place with immediates, no shift: 4-bit
 * (v & 0x000F000F, v & 0x00F000F0) = (x_0, x_4), 16 (x_1, x_5), then v >>= 8 and the same
 * masks give (x_2, x_6), 16 (x_3, x_7); 2-bit, four masks 0x00030003 .. 0x00C000C0 per byte
 * pair ((x_j, x_{j+8}) scaled by 4^(j % 4)). Each lane's weight is stored times S / its scale
 * (S = 16 for 4-bit inputs, 64 for 2-bit), so every row sums T = S (C + sum d u) = S acc;
 * per pair of lane pairs and row, one LDRD and two SMLAD: 6 + 6 R instructions per word of
 * 4-bit inputs (8 R MACs), 10 + 12 R per word of 2-bit ones (16 R MACs; R = 2, 4: one LDM per
 * two rows, 6 + 5 R and 10 + 10 R, TN_S16_R2 / R4), R <= 6 rows per block
 * (six accumulators and eight other registers). acc = T >> log2 S (2 acc = T >> (log2 S - 1)
 * for tn_m7_out's FAST = 3 form) is exact when |S acc| < 2^31 for every input the layer can
 * receive: bounded at export from the weights themselves, S (|bias| + sum_k |d_k| max |x'|)
 * (kernels_m7.subfc16_scale; where it fails, the layer takes tn_m7_subfc).
 * Blocks of RB = 6 or 4 rows (the call's RB, kernels_m7.subfc16.subfc16_block_rows: whichever
 * costs fewer instructions, four rows loading two at a time by LDM; 4 for 2-bit outputs), then
 * one block of the N % RB rows left; 4 / 2-bit outputs packed in a register and stored bytewise
 * (a block of whole bytes; else the rows left one at a time). w4a4 DS-CNN's 64 -> 12 head, three
 * blocks of four: 781 -> 757 instructions (w8a8: 803); AD's 128 -> 8 dense_4, two of four:
 * 1,007 -> 955 (w8a8: 998).
 * Layout (little-endian): per block of R rows, the rows' C (int32, S C, C = bias - o sum_k d_k,
 * o the lanes' offset: z_x, plus 2^(b-1) for signed sub-byte inputs; modulo 2^32), then per
 * input word (the last one, when K XB is not a multiple of 32, completed with d = 0 lanes) and
 * per pair of lane pairs (2j, 2j + 1) each row's two words [(S/s) d_i, (S/s) d_i']. A last word
 * of at most 16 / b codes (HALF) takes v | v << 8: lane pairs (x_j, x_{j+8/b}), j < 8 / b, in
 * the first half of the masks only (its words: those pairs of lane pairs alone).
 * PCS (the call's PCS = R > 0, 2 / 4-bit inputs: kernels_m7.subfc16.subfc16_pcs_exponents /
 * subfc16_pcs_shift; 4 / 2-bit outputs, and 8-bit ones where the layer names no rounding but
 * floor): row c's lanes and C stored times 2^e_c / s instead of S / s, e_c = n0_c + 1 + R, so
 * T_c = 2^e_c acc and the floor requantization of every channel is SMMUL(T_c, m0_c) >> R
 * (tn_s16_pcs_code: four instructions per output where tn_m7_requant_pc took ten and
 * T >> log2 S one more); other roundings take acc = T_c >> e_c (n0_c read at run time) into
 * tn_m7_req. R is the largest at most 10 that keeps every row's 2^e_c max |d| < 2^15 (4 / 2-bit
 * outputs: 10 or the S form): any R gives the same instructions, one immediate shift.
 * Over one input word (K XB = 32) and N % 8 = 0 the rows of 4 / 2-bit outputs are laid out
 * one after the other, eight a block, the last row first (tn_s16_one: the word's lanes masked
 * once, one ORR per output packs). AD w4a4 dense_5 (8 -> 128, n0 of both signs): 3,320 ->
 * 1,680 instructions (w8a8: 1,680). Tried: the blocks of six with the PCS epilogue alone
 * (2,200: six C loads, spills and three STRB per block).
 * 8-bit outputs (the w4a4 classifier heads of ResNet-8, DS-CNN and VWW: 4-bit inputs,
 * 64 -> 10, 64 -> 12, 256 -> 2; one multiplier, n0 = 1, -1, 1: R = 9, 10, 9) keep the blocks of
 * six, each code stored by its STRB as soon as computed (tn_s16_row; nothing to pack, so
 * tn_s16_one's rows buy nothing, and its ORR packing would be wrong); their exactness is the
 * 4 / 2-bit one's, the clamp [LOZ, HIZ] + ZP within the byte's code range. Against the S form
 * (T >> 4, then tn_m7_fc16_put's requantization): ResNet-8 725 -> 650, DS-CNN 864 -> 781, VWW
 * 627 -> 611 instructions (w8a8: 688, 803, 524; executed instructions of the step's function,
 * QEMU single-stepped; VWW's two rows share each word's unpacking only twice).
 * --------------------------------------------------------------------------------------------- */
#if TN_M7_ASM
#define TN_S16_ROW(A)                                                                           \
    "ldrd %[u], %[u2], [%[w]], #8\n\t"                                                          \
    "smlad %[" A "], %[u], %[p0], %[" A "]\n\t"                                                 \
    "smlad %[" A "], %[u2], %[p1], %[" A "]\n\t"
#define TN_S16_R1 TN_S16_ROW("a0")
/* two rows: their four words by one LDM (the layout's order: row 0's two, row 1's two) into
 * q0 .. q3, pinned to r8 .. r11 (TN_S16_PIN: LDM's registers must ascend), where two LDRD took
 * two instructions: 5 per pair of lane pairs, not 6 (16 instructions per word of 4-bit inputs,
 * not 18). w4a4 VWW's 256 -> 2 head: 611 -> 548 instructions, AD's dense_4 (128 -> 8: six rows
 * and two) 1,040 -> 1,007 (w8a8: 524, 998; executed instructions of the step's function, QEMU
 * single-stepped). Registers: a0, a1, x, w, end, v, p0, p1 and the four pinned */
#define TN_S16_R2                                                                               \
    "ldm %[w]!, {%[q0], %[q1], %[q2], %[q3]}\n\t"                                               \
    "smlad %[a0], %[q0], %[p0], %[a0]\n\tsmlad %[a0], %[q1], %[p1], %[a0]\n\t"                  \
    "smlad %[a1], %[q2], %[p0], %[a1]\n\tsmlad %[a1], %[q3], %[p1], %[a1]\n\t"
#define TN_S16_R3 TN_S16_R1 TN_S16_ROW("a1") TN_S16_ROW("a2")
/* four rows: two LDM (rows 0 1, rows 2 3), 10 instructions per pair of lane pairs, not 12; the
 * loop's end read from memory (TN_S16_END_M, one instruction per four words) so that thirteen
 * registers do: a0 .. a3, x, w, v, p0, p1 and the four pinned. w4a4 ResNet-8's head (64 -> 10:
 * six rows and four) 650 -> 623 instructions (w8a8: 688) */
#define TN_S16_R4                                                                               \
    TN_S16_R2 "ldm %[w]!, {%[q0], %[q1], %[q2], %[q3]}\n\t"                                     \
    "smlad %[a2], %[q0], %[p0], %[a2]\n\tsmlad %[a2], %[q1], %[p1], %[a2]\n\t"                  \
    "smlad %[a3], %[q2], %[p0], %[a3]\n\tsmlad %[a3], %[q3], %[p1], %[a3]\n\t"
#define TN_S16_R5 TN_S16_R3 TN_S16_ROW("a3") TN_S16_ROW("a4")
#define TN_S16_R6 TN_S16_R5 TN_S16_ROW("a5")
/* a pair of lane pairs (masks M0, M1 of v), then R rows */
#define TN_S16_H(M0, M1, R)                                                                     \
    "and %[p0], %[v], #" M0 "\n\tand %[p1], %[v], #" M1 "\n\t" TN_S16_R##R
#define TN_S16_G4(FLIP, R)                                                                      \
    "ldr %[v], [%[x]], #4\n\t" FLIP TN_S16_H("0x000F000F", "0x00F000F0", R)                     \
    "lsr %[v], %[v], #8\n\t" TN_S16_H("0x000F000F", "0x00F000F0", R)
#define TN_S16_G2(FLIP, R)                                                                      \
    "ldr %[v], [%[x]], #4\n\t" FLIP TN_S16_H("0x00030003", "0x000C000C", R)                     \
    TN_S16_H("0x00300030", "0x00C000C0", R) "lsr %[v], %[v], #8\n\t"                            \
    TN_S16_H("0x00030003", "0x000C000C", R) TN_S16_H("0x00300030", "0x00C000C0", R)
#define TN_S16_A1 , [a0] "+&r"(a0)
#define TN_S16_A2 TN_S16_A1, [a1] "+&r"(a1)
#define TN_S16_A3 TN_S16_A2, [a2] "+&r"(a2)
#define TN_S16_A4 TN_S16_A3, [a3] "+&r"(a3)
#define TN_S16_A5 TN_S16_A4, [a4] "+&r"(a4)
#define TN_S16_A6 TN_S16_A5, [a5] "+&r"(a5)
#if defined(__ARM_FP) || defined(TN_S16_END_MEM) /* the tests build it soft too */
/* With an FPU (-mfpu=fpv5-d16, hard or softfp ABI: GCC defines __ARM_FP) GCC found no
 * registers for the blocks of six rows at -O2 ('asm' operand has impossible constraints): the
 * loop's end is read from memory there (into v, free at the end of a pass: one instruction more
 * per four words), one register fewer; without an FPU (our QEMU builds, -mfloat-abi=soft) it
 * stays in a register. */
#define TN_S16_END_OP [end] "m"(end)
#define TN_S16_END "ldr %[v], %[end]\n\tcmp %[x], %[v]\n\tbne 1b\n\t"
#else
#define TN_S16_END_OP [end] "r"(end)
#define TN_S16_END "cmp %[x], %[end]\n\tbne 1b\n\t"
#endif
/* the loop's end per block size: in memory for four rows (TN_S16_R4) */
#define TN_S16_END_M "ldr %[v], %[end]\n\tcmp %[x], %[v]\n\tbne 1b\n\t"
#define TN_S16_EOP1 TN_S16_END_OP
#define TN_S16_EOP2 TN_S16_END_OP
#define TN_S16_EOP3 TN_S16_END_OP
#define TN_S16_EOP4 [end] "m"(end)
#define TN_S16_EOP5 TN_S16_END_OP
#define TN_S16_EOP6 TN_S16_END_OP
#define TN_S16_E1 TN_S16_END
#define TN_S16_E2 TN_S16_END
#define TN_S16_E3 TN_S16_END
#define TN_S16_E4 TN_S16_END_M
#define TN_S16_E5 TN_S16_END
#define TN_S16_E6 TN_S16_END
/* every output early-clobber (as TN_FC_OPS3) */
#define TN_S16_ASM(BODY, R)                                                                     \
    __asm__ volatile(BODY : [x] "+&r"(x), [w] "+&r"(w), [v] "=&r"(v), [p0] "=&r"(p0),           \
                     [p1] "=&r"(p1) TN_S16_U##R TN_S16_A##R                                     \
                     : TN_S16_EOP##R : "cc", "memory")
/* the weights' registers: u, u2 (LDRD), or for two rows q0 .. q3 (TN_S16_R2's LDM) */
#define TN_S16_U1 , [u] "=&r"(u), [u2] "=&r"(u2)
#define TN_S16_U2 , [q0] "=&r"(q0), [q1] "=&r"(q1), [q2] "=&r"(q2), [q3] "=&r"(q3)
#define TN_S16_U3 TN_S16_U1
#define TN_S16_U4 TN_S16_U2
#define TN_S16_U5 TN_S16_U1
#define TN_S16_U6 TN_S16_U1
/* pinned (as TN_F16_PIN, c/tn_m7_gemm.h): GCC keeps a local register variable in its register
 * where it is an asm operand, their only use */
#define TN_S16_PIN                                                                              \
    register uint32_t q0 __asm__("r8"), q1 __asm__("r9"), q2 __asm__("r10"), q3 __asm__("r11")
/* n input words (G: one word's code), n % 4 first, then four per pass */
#define TN_S16_RUN(G, R)                                                                        \
    do {                                                                                        \
        if (n & 1u) TN_S16_ASM(G, R);                                                           \
        if (n & 2u) TN_S16_ASM(G G, R);                                                         \
        if (n >= 4u) TN_S16_ASM("1:\n\t" G G G G TN_S16_E##R, R);                               \
    } while (0)
/* a last word holding at most half a word of codes (HALF): v | v << 8 puts codes 16 / b / 2 ..
 * of its low half in the high lane, one pass of the masks covers them; then the sign bits
 * flipped (FLIP), not before: the word's high half is zeros, which FLIP would turn into codes
 * ORed over byte 2, the high lane (signed inputs were wrong there until session 21) */
#define TN_S16_T4(FLIP, R)                                                                      \
    "ldr %[v], [%[x]], #4\n\torr %[v], %[v], %[v], lsl #8\n\t" FLIP                                 \
    TN_S16_H("0x000F000F", "0x00F000F0", R)
#define TN_S16_T2(FLIP, R)                                                                      \
    "ldr %[v], [%[x]], #4\n\torr %[v], %[v], %[v], lsl #8\n\t" FLIP                                 \
    TN_S16_H("0x00030003", "0x000C000C", R) TN_S16_H("0x00300030", "0x00C000C0", R)
/* the input width's and sign's variant (G4 / G2: whole words, T4 / T2: a half last word) */
#define TN_S16_RUN_X(R, G4, G2)                                                                 \
    do {                                                                                        \
        if (XB == 4u && XS) TN_S16_RUN(G4("eor %[v], %[v], #0x88888888\n\t", R), R);          \
        else if (XB == 4u) TN_S16_RUN(G4("", R), R);                                            \
        else if (XS) TN_S16_RUN(G2("eor %[v], %[v], #0xAAAAAAAA\n\t", R), R);                 \
        else TN_S16_RUN(G2("", R), R);                                                          \
    } while (0)
/* Two rows over four input words a pass, the words by one LDM too (i0 .. i3, pinned to r0 .. r3,
 * each unpacked in place; as tn_m7_fc16's TN_F16_RUNX): three LDR fewer per pass, less the LDR
 * of the loop's end, read from memory into p0 (registers: the eight pinned, a0, a1, x, w, p0,
 * p1). w4a4 VWW's 256 -> 2 head: 548 -> 535 instructions (w8a8: 524) */
#define TN_S16_PINX                                                                             \
    register uint32_t i0 __asm__("r0"), i1 __asm__("r1"), i2 __asm__("r2"), i3 __asm__("r3")
#define TN_S16_Q4(P)                                                                            \
    "and %[p0], %[" P "], #0x000F000F\n\tand %[p1], %[" P "], #0x00F000F0\n\t" TN_S16_R2        \
    "lsr %[" P "], %[" P "], #8\n\t"                                                            \
    "and %[p0], %[" P "], #0x000F000F\n\tand %[p1], %[" P "], #0x00F000F0\n\t" TN_S16_R2
#define TN_S16_Q2(P)                                                                            \
    "and %[p0], %[" P "], #0x00030003\n\tand %[p1], %[" P "], #0x000C000C\n\t" TN_S16_R2        \
    "and %[p0], %[" P "], #0x00300030\n\tand %[p1], %[" P "], #0x00C000C0\n\t" TN_S16_R2        \
    "lsr %[" P "], %[" P "], #8\n\t"                                                            \
    "and %[p0], %[" P "], #0x00030003\n\tand %[p1], %[" P "], #0x000C000C\n\t" TN_S16_R2        \
    "and %[p0], %[" P "], #0x00300030\n\tand %[p1], %[" P "], #0x00C000C0\n\t" TN_S16_R2
/* one word P: its sign bits flipped (F: the EOR's immediate, or none), then Q4 / Q2 */
#define TN_S16_QF(Q, P, F) F(P) Q(P)
#define TN_S16_NOF(P) ""
#define TN_S16_F4(P) "eor %[" P "], %[" P "], #0x88888888\n\t"
#define TN_S16_F2(P) "eor %[" P "], %[" P "], #0xAAAAAAAA\n\t"
#define TN_S16_X4PASS(Q, F)                                                                     \
    __asm__ volatile("1:\n\tldm %[x]!, {%[i0], %[i1], %[i2], %[i3]}\n\t"                        \
                     TN_S16_QF(Q, "i0", F) TN_S16_QF(Q, "i1", F) TN_S16_QF(Q, "i2", F)          \
                     TN_S16_QF(Q, "i3", F) "ldr %[p0], %[end]\n\tcmp %[x], %[p0]\n\tbne 1b\n\t" \
                     : [x] "+&r"(x), [w] "+&r"(w), [i0] "=&r"(i0), [i1] "=&r"(i1),              \
                       [i2] "=&r"(i2), [i3] "=&r"(i3), [p0] "=&r"(p0), [p1] "=&r"(p1)           \
                       TN_S16_U2 TN_S16_A2                                                      \
                     : [end] "m"(end) : "cc", "memory")
/* R = 2: n % 4 words as any R, then four per pass by TN_S16_X4PASS where the input is
 * word-aligned (XA: LDM of an address not a multiple of 4 is a UsageFault on a Cortex-M7, a
 * hard fault without its handler; the memory plan puts tensors at any byte offset), else every
 * word by LDR as any R (TN_S16_RUN's four a pass: the form before X4PASS, 548 on VWW's head) */
#define TN_S16_RUN2(G4, G2)                                                                     \
    do {                                                                                        \
        const uint32_t n4 = n;                                                                  \
        TN_S16_PINX;                                                                            \
        if (XA) n &= 3u;                                                                        \
        TN_S16_RUN_X(2, G4, G2);                                                                \
        if (XA && n4 >= 4u) {                                                                   \
            if (XB == 4u && XS) TN_S16_X4PASS(TN_S16_Q4, TN_S16_F4);                            \
            else if (XB == 4u) TN_S16_X4PASS(TN_S16_Q4, TN_S16_NOF);                            \
            else if (XS) TN_S16_X4PASS(TN_S16_Q2, TN_S16_F2);                                   \
            else TN_S16_X4PASS(TN_S16_Q2, TN_S16_NOF);                                          \
        }                                                                                       \
    } while (0)
#define TN_S16_SWITCH(G4, G2)                                                                   \
    do {                                                                                        \
        switch (R) {                                                                            \
        case 1u: TN_S16_RUN_X(1, G4, G2); break;                                                \
        case 2u: { TN_S16_PIN; TN_S16_RUN2(G4, G2); } break;                                    \
        case 3u: TN_S16_RUN_X(3, G4, G2); break;                                                \
        case 4u: { TN_S16_PIN; TN_S16_RUN_X(4, G4, G2); } break;                                \
        case 5u: TN_S16_RUN_X(5, G4, G2); break;                                                \
        default: TN_S16_RUN_X(6, G4, G2); break;                                                \
        }                                                                                       \
    } while (0)
#endif

/* Output c from a row's sum T = S acc (SH = log2 S): F3, tn_m7_out's FAST = 3 form (2 acc);
 * else acc. */
TN_INLINE void tn_s16_put(const tn_layer_t *l, uint8_t *TN_RESTRICT out, uint32_t c, uint32_t T,
                          uint32_t SH, uint32_t F3, uint32_t REQ, uint32_t NM, uint32_t ROUND,
                          uint32_t OB, TN_RQ_ARGS)
{
    tn_m7_fc16_put(l, out, c, (uint32_t)((int32_t)T >> (SH - F3)), F3, REQ, NM, ROUND, OB,
                   TN_RQ);
}

/* The requantized code of output c from T = S acc (4 / 2-bit outputs). */
TN_INLINE uint32_t tn_s16_code(const tn_layer_t *l, uint32_t c, uint32_t T, uint32_t SH,
                               uint32_t REQ, uint32_t NM, uint32_t ROUND, uint32_t OB,
                               TN_RQ_ARGS)
{
    const int32_t m0c = NM == 1u ? 0 : l->m0[c], n0c = NM == 1u ? 0 : (int32_t)l->n0[c];
    return (uint32_t)tn_m7_req(l, (uint32_t)((int32_t)T >> SH), c, m0c, n0c, REQ, NM, ROUND,
                               TN_RQ) & ((1u << OB) - 1u);
}

/* PCS, the floor rounding with tn_m7_requant's exactness (FAST): the code of output c from
 * T = 2^e_c acc, e_c = n0_c + 1 + R (R: the call's PCS, kernels_m7.subfc16.subfc16_pcs_shift;
 * an immediate after inlining). The simulator's floor(t m0 / 2^32) >> n2, t = acc << n1
 * (fixedpoint.requant_floor; t never wraps: |T| < 2^31 at export), is floor(acc m0 2^(n0 + 1)
 * / 2^32) = floor(T m0 / 2^(32 + R)) for n0 of either sign: SMMLA of T and m0 plus ZP 2^R
 * (floor(T m0 / 2^32) + ZP 2^R; |T m0| / 2^32 < 2^30 and |ZP| 2^R < 2^18: no overflow), an
 * arithmetic shift by R (floor(floor(y) / 2^R) = floor(y / 2^R), ZP 2^R / 2^R = ZP exactly),
 * then the clamp [LOZ, HIZ] + ZP: one USAT / SSAT with ASR #R where it is the whole code range.
 * Four instructions per output with the multiplier's load, against tn_m7_requant_pc's ten and
 * the T >> log2 S before it. */
TN_INLINE uint32_t tn_s16_pcs_code(const tn_layer_t *l, uint32_t c, uint32_t T, uint32_t NM,
                                   uint32_t R, uint32_t OB, TN_RQ_ARGS)
{
    const int32_t m0 = NM == 1u ? M0 : l->m0[c], lo = LOZ + ZP, hi = HIZ + ZP;
    const int32_t v = (ZP ? tn_smmla((int32_t)T, m0, (int32_t)((uint32_t)ZP << R))
                          : tn_smmul((int32_t)T, m0)) >> R;
    (void)FAST; (void)N0;
    return (uint32_t)(v < lo ? lo : (v > hi ? hi : v)) & ((1u << OB) - 1u);
}

/* Row r of a block (output c + r) from its sum T: PACK (4 / 2-bit outputs, the block whole
 * bytes of them), its code ORed into *packed; else requantized and stored. PCS: T = 2^e_c acc
 * (kernels_m7.subfc16_pcs_exponents), tn_s16_pcs_code where the layer rounds by floor with
 * FAST, else acc = T >> e_c (e_c from n0_c at run time) into the forms below. */
TN_INLINE void tn_s16_row(const tn_layer_t *l, uint8_t *TN_RESTRICT out, uint32_t c, uint32_t r,
                          uint32_t T, uint32_t SH, uint32_t F3, uint32_t PCS, uint32_t PACK,
                          uint32_t *packed, uint32_t REQ, uint32_t NM, uint32_t ROUND,
                          uint32_t OB, TN_RQ_ARGS)
{
    if (PCS && PACK && REQ && FAST && ROUND == TN_FLOOR) {
        *packed |= tn_s16_pcs_code(l, c + r, T, NM, PCS, OB, TN_RQ) << (r * OB);
        return;
    }
    if (PCS && OB == 8u && REQ && FAST && ROUND == TN_FLOOR) { /* 8-bit codes: a STRB each */
        out[c + r] = (uint8_t)tn_s16_pcs_code(l, c + r, T, NM, PCS, OB, TN_RQ);
        return;
    }
    if (PCS && REQ) { /* acc itself (SH = 0), so not tn_m7_out's FAST = 3 form (2 acc) */
        T = (uint32_t)((int32_t)T >> ((int32_t)l->n0[NM == 1u ? 0u : c + r] + 1
                                      + (int32_t)PCS));
        SH = 0u;
        F3 = 0u;
    }
    if (PACK)
        *packed |= tn_s16_code(l, c + r, T, SH, REQ, NM, ROUND, OB, TN_RQ) << (r * OB);
    else
        tn_s16_put(l, out, c + r, T, SH, F3, REQ, NM, ROUND, OB, TN_RQ);
}

/* PACK: the block's R packed codes (outputs c ..) stored bytewise. */
TN_INLINE void tn_s16_store(uint8_t *TN_RESTRICT out, uint32_t c, uint32_t R, uint32_t packed,
                            uint32_t PACK, uint32_t OB)
{
    if (!PACK)
        return;
    TN_UNROLL
    for (uint32_t b = 0; b < R * OB / 8u; b++)
        out[c * OB / 8u + b] = (uint8_t)(packed >> (8u * b));
}

/* Outputs c .. c + R - 1 (one block of R <= 6 rows, weights at w, word-aligned when ALIGNED)
 * over NG whole input words at in (word-aligned when XA: TN_S16_RUN2's LDM) and (TAIL) the
 * last word tw; returns w past the block. */
TN_INLINE const uint8_t *tn_s16_block(const tn_layer_t *l, const uint8_t *w, const uint8_t *in,
                                      uint8_t *TN_RESTRICT out, uint32_t c, uint32_t R,
                                      uint32_t NG, uint32_t TAIL, uint32_t HALF, uint32_t tw,
                                      uint32_t XB, uint32_t XS, uint32_t XA,
                                      uint32_t ALIGNED, uint32_t F3, uint32_t PCS,
                                      uint32_t PACK, uint32_t REQ, uint32_t NM, uint32_t ROUND,
                                      uint32_t OB, TN_RQ_ARGS)
{
    const uint32_t H = 8u / XB, SH = 8u - XB; /* pairs of lane pairs per word; log2 S */
    uint32_t packed = 0;
#if TN_M7_ASM
    if (ALIGNED) { /* the accumulators in registers throughout */
        const uint8_t *x = in, *end = in + 4u * NG;
        uint32_t a0 = tn_ld32(w), a1 = R > 1u ? tn_ld32(w + 4) : 0u,
                 a2 = R > 2u ? tn_ld32(w + 8) : 0u, a3 = R > 3u ? tn_ld32(w + 12) : 0u,
                 a4 = R > 4u ? tn_ld32(w + 16) : 0u, a5 = R > 5u ? tn_ld32(w + 20) : 0u, v, p0,
                 p1, u, u2, n = NG;
        w += 4u * R;
        TN_S16_SWITCH(TN_S16_G4, TN_S16_G2);
        if (TAIL) { /* the last word, completed in a register (one group more) */
            x = (const uint8_t *)&tw;
            n = 1u;
            if (HALF) TN_S16_SWITCH(TN_S16_T4, TN_S16_T2);
            else TN_S16_SWITCH(TN_S16_G4, TN_S16_G2);
        }
        /* no array of the sums: the step's frame stays small */
        tn_s16_row(l, out, c, 0u, a0, SH, F3, PCS, PACK, &packed, REQ, NM, ROUND, OB, TN_RQ);
        if (R > 1u)
            tn_s16_row(l, out, c, 1u, a1, SH, F3, PCS, PACK, &packed, REQ, NM, ROUND, OB,
                       TN_RQ);
        if (R > 2u)
            tn_s16_row(l, out, c, 2u, a2, SH, F3, PCS, PACK, &packed, REQ, NM, ROUND, OB,
                       TN_RQ);
        if (R > 3u)
            tn_s16_row(l, out, c, 3u, a3, SH, F3, PCS, PACK, &packed, REQ, NM, ROUND, OB,
                       TN_RQ);
        if (R > 4u)
            tn_s16_row(l, out, c, 4u, a4, SH, F3, PCS, PACK, &packed, REQ, NM, ROUND, OB,
                       TN_RQ);
        if (R > 5u)
            tn_s16_row(l, out, c, 5u, a5, SH, F3, PCS, PACK, &packed, REQ, NM, ROUND, OB,
                       TN_RQ);
        tn_s16_store(out, c, R, packed, PACK, OB);
        return w;
    }
#endif
    { /* the host build, and a misaligned weight array: the same sums in C, a row at a time */
        const uint8_t *wg = w + 4u * R;
        const uint32_t flip = !XS ? 0u : XB == 4u ? 0x88888888u : 0xAAAAAAAAu;
        (void)ALIGNED; (void)XA;
        for (uint32_t r = 0; r < R; r++) {
            uint32_t a = tn_ld32(w + 4u * r);
            for (uint32_t g = 0; g < NG + TAIL; g++) {
                const uint32_t half = g == NG && HALF;
                const uint32_t v0 = g < NG ? tn_ld32(in + 4u * g) : tw;
                const uint32_t v = (half ? v0 | (v0 << 8) : v0) ^ flip; /* then flipped (T4) */
                for (uint32_t h = 0; h < (half ? H / 2u : H); h++) {
                    const uint8_t *wr = wg + 8u * ((g * H + h) * R + r);
                    uint32_t p0, p1;
                    if (XB == 4u) {
                        p0 = (v >> (8u * h)) & 0x000F000Fu;
                        p1 = (v >> (8u * h)) & 0x00F000F0u;
                    } else {
                        const uint32_t vh = v >> (8u * (h / 2u));
                        p0 = vh & (h % 2u ? 0x00300030u : 0x00030003u);
                        p1 = vh & (h % 2u ? 0x00C000C0u : 0x000C000Cu);
                    }
                    a = (uint32_t)tn_smlad(tn_ld32(wr), p0, (int32_t)a);
                    a = (uint32_t)tn_smlad(tn_ld32(wr + 4), p1, (int32_t)a);
                }
            }
            tn_s16_row(l, out, c, r, a, SH, F3, PCS, PACK, &packed, REQ, NM, ROUND, OB, TN_RQ);
        }
        tn_s16_store(out, c, R, packed, PACK, OB);
        return wg + 8u * R * (H * NG + (TAIL ? (HALF ? H / 2u : H) : 0u));
    }
}

/* PCS over one input word (K XB = 32, or 2-bit codes K = 8, HALF; N % 8 = 0;
 * kernels_m7.subfc16_weights: rows of their own, C then the row's lanes): the word's 2 H lane
 * pairs (HALF: H = 2, the halfword's) masked once for the layer (v, its
 * sign bits flipped), then a row at a time, eight rows a block (one word or halfword of packed
 * codes): one LDR, H LDRD and 2 H SMLAD per row (4-bit inputs: 7 for 8 MACs), then
 * tn_s16_row's four (tn_s16_pcs_code). Against the blocks of six (tn_s16_block): no unpacking
 * per block, no accumulators held across rows (six LDR of C and their spills), one store per
 * eight outputs. The assembly reads only the weights (constant: no "memory" clobber, so the
 * multipliers' pointer stays in a register).
 * ONE8 (the call's RB = 8 with 8-bit inputs, kernels_m7.subfc16.subfc16_one8: K = 8, N % 8 = 0,
 * 2 / 4 / 8-bit outputs): the same rows over two words of 8-bit codes, lane pairs (x_0, x_2),
 * (x_1, x_3), (x_4, x_6), (x_5, x_7) by UXTB16 / SXTB16 once for the layer (C holds
 * - z_x sum d), e_c = n0_c + 1 + TN_S16_ONE8_R; 8-bit codes stored a STRB each as computed
 * (nothing to pack). AD w4a8 dense_5 (8 -> 128): 2,680 -> 1,600 instructions (w8a8: 1,640;
 * tn_m7_fc16's blocks of seven re-read the input per block and spent about eleven per output
 * on the requantization, GCC's reloads of the tables' pointers included), text -240 B, the
 * same 2,560 bytes of weights. */
/* ONE8's R (kernels_m7.subfc16.SUBFC16_PCS_R: the call carries no R for 8-bit inputs) */
#define TN_S16_ONE8_R 10u
#if TN_M7_ASM
#define TN_S16_ONE_P(P0, P1)                                                                    \
    "ldrd %[u], %[u2], [%[w]], #8\n\t"                                                          \
    "smlad %[a], %[u], %[" P0 "], %[a]\n\tsmlad %[a], %[u2], %[" P1 "], %[a]\n\t"
#define TN_S16_ONE_ASM(FIRST, A, Q0, Q1, Q2, Q3)                                                \
    __asm__ volatile(FIRST TN_S16_ONE_P("q0", "q1") TN_S16_ONE_P("q2", "q3")                   \
                     : [a] A(a), [w] "+&r"(wp), [u] "=&r"(u), [u2] "=&r"(u2)                    \
                     : [q0] "r"(Q0), [q1] "r"(Q1), [q2] "r"(Q2), [q3] "r"(Q3) : "cc")
#endif
/* (packed << OB) | code as one ORR with a shifted register (GCC otherwise ORs first, then
 * shifts: one instruction more per output) */
TN_INLINE uint32_t tn_s16_shin(uint32_t packed, uint32_t code, uint32_t OB)
{
#if TN_M7_ASM
    uint32_t r;
    if (OB == 4u) __asm__("orr %0, %1, %2, lsl #4" : "=r"(r) : "r"(code), "r"(packed));
    else __asm__("orr %0, %1, %2, lsl #2" : "=r"(r) : "r"(code), "r"(packed));
    return r;
#else
    return (packed << OB) | code;
#endif
}

TN_INLINE void tn_s16_one(const tn_layer_t *l, const uint8_t *w, uint32_t v, uint32_t v2,
                          uint8_t *TN_RESTRICT out, uint32_t N, uint32_t XB, uint32_t XS,
                          uint32_t HALF, uint32_t ALIGNED, uint32_t R, uint32_t REQ, uint32_t NM,
                          uint32_t ROUND, uint32_t OB, TN_RQ_ARGS)
{
    /* pairs of lane pairs; HALF (2-bit codes, K = 8: v = the halfword | itself << 8, then
     * flipped) the first two, as TN_S16_T2; 8-bit codes (ONE8): one per word, v then v2 */
    const uint32_t H = XB == 8u ? 2u : HALF ? 4u / XB : 8u / XB;
    uint32_t q[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    TN_UNROLL
    for (uint32_t h = 0; h < H; h++) {
        if (XB == 8u) { /* lanes (x_0, x_2), (x_1, x_3) of word h */
            const uint32_t vh = h ? v2 : v;
            q[2u * h] = XS ? tn_sxtab16(0u, vh) : tn_uxtb16(vh);
            q[2u * h + 1u] = XS ? tn_sxtab16_ror8(0u, vh) : tn_uxtb16_ror8(vh);
        } else if (XB == 4u) {
            q[2u * h] = (v >> (8u * h)) & 0x000F000Fu;
            q[2u * h + 1u] = (v >> (8u * h)) & 0x00F000F0u;
        } else {
            const uint32_t vh = v >> (8u * (h / 2u));
            q[2u * h] = vh & (h % 2u ? 0x00300030u : 0x00030003u);
            q[2u * h + 1u] = vh & (h % 2u ? 0x00C000C0u : 0x000C000Cu);
        }
    }
    (void)ALIGNED;
    for (uint32_t c = 0; c < N; c += 8u) {
        uint32_t packed = 0;
        TN_UNROLL
        for (uint32_t r = 0; r < 8u; r++) { /* output c + 7 - r: the last row first */
            const uint32_t o = c + 7u - r;
            uint32_t a, code;
#if TN_M7_ASM
            if (ALIGNED) {
                const uint8_t *wp = w;
                uint32_t u, u2;
                TN_S16_ONE_ASM("ldr %[a], [%[w]], #4\n\t", "=&r", q[0], q[1], q[2], q[3]);
                if (XB == 2u && !HALF) TN_S16_ONE_ASM("", "+&r", q[4], q[5], q[6], q[7]);
                w = wp;
            } else
#endif
            {
                a = tn_ld32(w);
                for (uint32_t h = 0; h < H; h++) {
                    a = (uint32_t)tn_smlad(tn_ld32(w + 4u + 8u * h), q[2u * h], (int32_t)a);
                    a = (uint32_t)tn_smlad(tn_ld32(w + 8u + 8u * h), q[2u * h + 1u], (int32_t)a);
                }
                w += 4u + 8u * H;
            }
            if (REQ && FAST && ROUND == TN_FLOOR)
                code = tn_s16_pcs_code(l, o, a, NM, R, OB, TN_RQ);
            else if (OB == 8u) { /* acc = T >> e_c into tn_m7_fc16_put (tn_s16_row's) */
                tn_s16_put(l, out, o, (uint32_t)((int32_t)a >> ((int32_t)l->n0[NM == 1u ? 0u : o]
                                                                + 1 + (int32_t)R)),
                           0u, 0u, REQ, NM, ROUND, OB, TN_RQ);
                continue;
            } else /* acc = T >> e_c into tn_m7_req's forms */
                code = tn_s16_code(l, o, (uint32_t)((int32_t)a >> ((int32_t)l->n0[NM == 1u ? 0u : o]
                                                                  + 1 + (int32_t)R)),
                                   0u, REQ, NM, ROUND, OB, TN_RQ);
            if (OB == 8u) out[o] = (uint8_t)code; /* a STRB each: nothing to pack */
            else packed = tn_s16_shin(packed, code, OB);
        }
        if (OB == 4u) tn_st32le(out + c / 2u, packed);
        else if (OB == 2u) { /* one STRH (any alignment), not two STRB and a shift */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            const uint16_t h = (uint16_t)packed;
            TN_MEMCPY(out + c / 4u, &h, 2);
#else
            tn_s16_store(out, c, 8u, packed, 1u, OB);
#endif
        }
    }
}

/* A small dense layer K -> N of 2 / 4-bit weights (kernels_m7.subfc16_weights' layout, above)
 * and XB = 2 / 4 / 8-bit inputs (DBL: 8-bit inputs, S = 2; PCS: 2 / 4-bit inputs, the PCS
 * form's shift R, 0 for the S form; RB: 2 / 4-bit inputs' rows per block, 4 or 6,
 * kernels_m7.subfc16.subfc16_block_rows; 8-bit inputs: 8 names ONE8, else unused; XA: in is
 * word-aligned, its arena offset a multiple of 4 in a word-aligned arena, kernels_m7.subconv
 * ._subfc_call; 0 keeps every input word's load an LDR, any alignment: tn_s16_block's blocks
 * of two rows load four words by one LDM where XA, an address not a multiple of 4 a hard
 * fault on a Cortex-M7; 8-bit inputs: unused, tn_m7_fc16 tests the pointer itself). */
TN_INLINE void tn_m7_subfc16(const tn_layer_t *l, const uint8_t *in, uint8_t *TN_RESTRICT out,
                             uint32_t K, uint32_t N, uint32_t XB, uint32_t XS, uint32_t DBL,
                             uint32_t PCS, uint32_t RB, uint32_t XA, uint32_t REQ, uint32_t NM,
                             uint32_t ROUND, uint32_t OB, TN_RQ_ARGS)
{
    if (XB == 8u && RB == 8u) { /* ONE8: rows of their own over two words (K = 8) */
        tn_s16_one(l, l->w, tn_ld32(in), tn_ld32(in + 4), out, N, XB, XS, 0u,
                   ((uintptr_t)l->w & 3u) == 0u, TN_S16_ONE8_R, REQ, NM, ROUND, OB, TN_RQ);
        return;
    }
    if (XB == 8u) { /* tn_m7_fc16 (DBL: S = 2, its doubled lanes) */
        tn_m7_fc16(l, in, out, K, N, XS, DBL, REQ, NM, ROUND, OB, TN_RQ);
        return;
    }
    /* PCS over one word: rows of eight (packed codes only; 8-bit ones keep the blocks); 2-bit
     * codes over half a word too (K = 8, HALF: the halfword read as two bytes; AD's w2a2
     * dense_5, 8 -> 128: 2,480 -> 1,600 instructions, w8a8 1,640) */
    if (PCS && (K * XB == 32u || (XB == 2u && K == 8u)) && N % 8u == 0u && OB != 8u) {
        const uint32_t flip = !XS ? 0u : XB == 4u ? 0x88888888u : 0xAAAAAAAAu;
        const uint32_t hw = K * XB == 16u ? (uint32_t)in[0] | (uint32_t)in[1] << 8 : 0u;
        tn_s16_one(l, l->w, (K * XB == 16u ? hw | hw << 8 : tn_ld32(in)) ^ flip, 0u, out, N, XB,
                   XS, K * XB == 16u, ((uintptr_t)l->w & 3u) == 0u, PCS, REQ, NM, ROUND, OB,
                   TN_RQ);
        return;
    }
    {
        const uint8_t *w = l->w; /* read once (the asm's memory clobber would reload it) */
        const uint32_t G = 32u / XB, NG = K / G, TAIL = K % G != 0u;
        const uint32_t HALF = TAIL && K % G <= G / 2u; /* a last word of at most half its codes */
        const uint32_t full = N / RB, rest = N % RB;
        const uint32_t aligned = ((uintptr_t)w & 3u) == 0u;
        const uint32_t F3 = REQ && FAST == 3u && ROUND == TN_TFL_DOUBLE && OB == 8u;
        const uint32_t PACK = OB == 4u || OB == 2u;
        uint32_t tw = 0, b;
        /* the last word's bytes (its codes beyond K meet d = 0 lanes) */
        for (b = 0; TAIL && 4u * NG + b < (K * XB + 7u) / 8u; b++)
            tw |= (uint32_t)in[4u * NG + b] << (8u * b);
        for (b = 0; b < full; b++)
            w = tn_s16_block(l, w, in, out, RB * b, RB, NG, TAIL, HALF, tw, XB, XS, XA, aligned,
                             F3, PCS, PACK, REQ, NM, ROUND, OB, TN_RQ);
        if (rest) /* packed too where its codes fill whole bytes (N = 128, R = 6: 2 rows) */
            tn_s16_block(l, w, in, out, RB * full, rest, NG, TAIL, HALF, tw, XB, XS, XA, aligned,
                         F3, PCS, PACK && (rest * OB) % 8u == 0u, REQ, NM, ROUND, OB, TN_RQ);
    }
}

#endif

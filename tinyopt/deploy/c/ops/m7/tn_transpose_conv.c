/* tn_transpose_conv.c (Cortex-M7 twin, c/ops/m7/): TFLite's TRANSPOSE_CONV on 8-bit input,
 * weights and output (tinyopt/integer/ops/transpose_conv.py says the arithmetic and which steps
 * this kernel takes, m7_check; tests/test_m7_transpose_conv.py checks it against the simulator).
 *
 * Phases. Output (oy, ox) gathers tap (ky, kx) from input (iy, ix) when iy SH - PT + ky = oy: with
 * by = (oy + PT) / SH and py = (oy + PT) % SH, exactly the taps ky = py + j SH (j = 0, 1, ..)
 * below KH, from input rows iy = by - j (and likewise for x). So output rows of one phase py
 * (columns of one phase px) are an ordinary small convolution over the input: a window of
 * ny(py) x nx(px) input pixels ending at (by, bx), ny(p) = ceil((KH - p) / SH) (0 when p >= KH:
 * the output is bias alone). The windows of all SH SW phases of one base (by, bx) are parts of
 * the window of phase (0, 0), JM x IM pixels (JM = ny(0), IM = nx(0)): that grid is widened once
 * per base and every phase reads its taps (j < ny, i < nx) from it.
 *
 * Lanes. A grid tap holds the C input channels of one pixel as x' = x - z_x in int16 lanes,
 * padded with zeros to G groups of four lanes; a group (x0 .. x3) is stored as the words
 * (x0, x2), (x1, x3): what SXTAB16 / UXTAB16 (with the offset -z_x added while widening, as
 * tn_m7_gemm.h's im2col) make of a loaded word, so the unsigned weight codes of a word w0 .. w3
 * pair with them through UXTB16 (w0, w2) and UXTB16 ROR 8 (w1, w3) with no reordering. Two bases
 * (bx, bx + 1) are widened together, their words interleaved per group (P0A P0B P1A P1B), so one
 * weight word feeds two pixels and one lane word two channels: per group of four lanes, two
 * channels x two pixels = 16 MACs in 8 SMLAD. Invalid taps (outside the input) hold zero lanes.
 * The weight zero point: sum (w - z_w) x' = sum w x' - z_w sum x' (sum x' per tap and pixel
 * kept while widening; modulo 2^32 as the reference's int32 sums).
 *
 * Weights (transpose_conv.m7_weights, the descriptor's w when this twin runs the step): phase by
 * phase (py outer, px inner), the phase's taps (j outer, i inner) x G groups of 4 codes per
 * output channel, pad lanes 0; channels in pairs (c, c + 1) whose groups are interleaved word by
 * word ([c: 4 codes][c + 1: 4 codes] per group), an odd last channel alone.
 *
 * Scratch (the step's, in the arena, word-aligned): JM IM G 16 bytes of lanes, then 2 JM IM int32
 * sums, then 3 CO int32 requantization constants (transpose_conv.m7_scratch_bytes).
 *
 * Requantization per output as tn_requant_k (tn_arith.h) computes it, in 32-bit arithmetic where
 * that is exact: TFLite's double rounding with every n0 in [-20, -1] as SMMULR of 2 acc and an
 * add-and-shift rounding divide (z_out folded in) when |acc| < 2^30 (checked per output, else
 * tn_requant_k); floor with every n0 in [-32, -1] as SMMUL and a shift; anything else through
 * tn_requant_k. Then + z_out and the clamp [act_lo, act_hi] (one SSAT / USAT when that is the
 * whole 8-bit range). Not in place; outputs are written phase by phase. */
#include "tinyopt_nn.h"
#include "tn_m7_core.h"

/* the phase kernel is a function of its own: inlined into the base loop, it would share its
 * registers with everything around it */
#if defined(__GNUC__)
#define TN_TC_NOINLINE __attribute__((noinline))
#else
#define TN_TC_NOINLINE
#endif

/* Taps of phase p of a kernel of k taps at stride s: ceil((k - p) / s), 0 when p >= k. */
static uint32_t tn_tc_taps(uint32_t k, uint32_t s, uint32_t p)
{
    return p < k ? (k - p + s - 1u) / s : 0u;
}

/* Widen the C channels of input pixel (iy, ix) into grid tap words dst (pixel P's two words of
 * every group at dst[4 g], dst[4 g + 1]); zero lanes when the pixel is outside the input.
 * Returns sum x'. XS: a signed input (a constant after inlining). */
TN_INLINE int32_t tn_tc_widen(const uint8_t *x, uint32_t *TN_RESTRICT dst, int32_t iy,
                              int32_t ix, int32_t H, int32_t W, uint32_t C, int32_t ZX,
                              uint32_t XS)
{
    const uint32_t G = (C + 3u) / 4u;
    if (iy < 0 || iy >= H || ix < 0 || ix >= W) {
        for (uint32_t g = 0; g < G; g++) {
            dst[4u * g] = 0u;
            dst[4u * g + 1u] = 0u;
        }
        return 0;
    }
    const uint8_t *src = x + ((uint32_t)iy * (uint32_t)W + (uint32_t)ix) * C;
    const uint32_t off = ((uint32_t)(-ZX) & 0xFFFFu) * 0x00010001u;
    int32_t sum = 0;
    uint32_t g = 0;
    for (; 4u * g + 4u <= C; g++) {
        const uint32_t v = tn_ld32(src + 4u * g);
        const uint32_t a = XS ? tn_sxtab16(off, v) : tn_uxtab16(off, v);
        const uint32_t b = XS ? tn_sxtab16_ror8(off, v) : tn_uxtab16_ror8(off, v);
        dst[4u * g] = a;
        dst[4u * g + 1u] = b;
        sum = tn_smlad(a, 0x00010001u, sum);
        sum = tn_smlad(b, 0x00010001u, sum);
    }
    if (g < G) { /* the last C % 4 channels, zero lanes after them (byte reads: no load past
                  * the pixel) */
        int32_t e[4] = {0, 0, 0, 0};
        for (uint32_t r = 0; 4u * g + r < C; r++) {
            const uint32_t b = src[4u * g + r];
            e[r] = (XS ? (int32_t)(int8_t)b : (int32_t)b) - ZX;
            sum += e[r];
        }
        dst[4u * g] = ((uint32_t)e[0] & 0xFFFFu) | ((uint32_t)e[2] << 16);
        dst[4u * g + 1u] = ((uint32_t)e[1] & 0xFFFFu) | ((uint32_t)e[3] << 16);
    }
    return sum;
}

/* How the outputs are requantized (the layer's multipliers scanned once): 1 TFLite double
 * rounding, every n0 in [-20, -1] and |z_out| <= 255 (SMMULR when |acc| < 2^30, z_out folded
 * into the rounding constant); 2 floor, every n0 in [-32, -1] (SMMUL); 0 tn_requant_k. The
 * clamp (tn_tc_clamp): 1 the whole int8 range (SSAT), 2 the whole uint8 range (USAT), 0 another. */
static uint32_t tn_tc_mode(const tn_layer_t *l)
{
    const uint32_t dbl = l->rounding == TN_TFL_DOUBLE, flr = l->rounding == TN_FLOOR;
    const int32_t zp = l->out.zero_point;
    if ((!dbl && !flr) || zp > 255 || zp < -255) return 0u; /* z_out 2^20 within 2^28 */
    for (uint32_t k = 0; k < l->n_m; k++) {
        const int32_t n0 = l->n0[k];
        if (n0 > -1 || n0 < (dbl ? -20 : -32)) return 0u;
    }
    return dbl ? 1u : 2u;
}

static uint32_t tn_tc_clamp(const tn_layer_t *l)
{
    return (l->act_lo == -128 && l->act_hi == 127) ? 1u
           : (l->act_lo == 0 && l->act_hi == 255) ? 2u : 0u;
}

/* What every output of a step shares, read once per call (stores to the uint8_t output may
 * alias the descriptor for the compiler, which would reload its fields after every output):
 * bias, weight zero points (per channel when per_z), the requantization (mode, clamp) and its
 * per-channel constants kt (3 CO int32 of the scratch: m0, then mode 1: 2^(r-1) + z_out 2^r and
 * r = -n0; mode 2: 0 and -(n0 + 1)). */
typedef struct {
    const int32_t *bias, *m0;
    const int8_t *n0;
    const uint8_t *wzp;
    const int32_t *kt;
    uint32_t per_z, per_m, rounding, mode, clamp;
    int32_t zp, lo, hi;
} tn_tc_rq_t;

/* The per-channel constants of the fast modes into q->kt. */
static void tn_tc_constants(const tn_tc_rq_t *q, int32_t *kt, uint32_t CO)
{
    for (uint32_t c = 0; c < CO; c++) {
        const uint32_t k = q->per_m ? c : 0u;
        const int32_t n0 = q->n0[k];
        kt[3u * c] = q->m0[k];
        if (q->mode == 1u) { /* |z_out 2^r| <= 2^28 for r <= 20: no overflow below */
            const uint32_t r = (uint32_t)(-n0);
            kt[3u * c + 1u] = (int32_t)((1u << (r - 1u)) + ((uint32_t)q->zp << r));
            kt[3u * c + 2u] = (int32_t)r;
        } else {
            kt[3u * c + 1u] = 0;
            kt[3u * c + 2u] = -(n0 + 1);
        }
    }
}

/* The code of output channel c from its accumulator acc (bias and weight zero point included),
 * kc = q->kt + 3 c. MODE, CLAMP: q->mode and q->clamp (constants after inlining; MODE 0 takes
 * any layer). */
TN_INLINE uint8_t tn_tc_out(const tn_tc_rq_t *q, int32_t acc, const int32_t *kc, uint32_t c,
                            uint32_t MODE, uint32_t CLAMP)
{
    int32_t y;
    if (MODE == 1u && (uint32_t)acc + 0x40000000u < 0x80000000u) {
        /* 2 acc fits: SMMULR(2 acc, m0) = (acc m0 + 2^30) >> 31, TFLite's doubling high
         * multiply; the rounding divide by 2^r (half away from zero) is one add of the half
         * minus the sign and one shift, z_out 2^r added with the half (|h| <= 2^30 + 1,
         * half + |z_out 2^r| <= 2^19 + 2^28: no overflow) */
        const int32_t h = tn_smmulr((int32_t)((uint32_t)acc << 1), kc[0]);
        y = (h + kc[1] + (h >> 31)) >> kc[2];
    } else if (MODE == 2u) {
        /* floor: n0 <= -1, so no left shift; the high word of acc m0, >> -(n0 + 1) */
        y = (tn_smmul(acc, kc[0]) >> kc[2]) + q->zp;
    } else { /* tn_requant_k (mode 1: |acc| >= 2^30) */
        const uint32_t k = q->per_m ? c : 0u;
        return (uint8_t)tn_clamp(tn_requant_k(acc, q->m0[k], q->n0[k], (uint8_t)q->rounding)
                                 + q->zp, q->lo, q->hi);
    }
    if (CLAMP == 1u) return (uint8_t)tn_sat8(y, 1u);
    if (CLAMP == 2u) return (uint8_t)tn_sat8(y, 0u);
    return (uint8_t)(y < q->lo ? q->lo : (y > q->hi ? q->hi : y));
}

/* The accumulators of two channels (interleaved weight words wp) at two pixels (grid words xp,
 * P0A P0B P1A P1B per group): ny tap rows of run groups each, jw grid words from one row's start
 * to the next's; v0[0], v0[1] (channels c, c + 1 at pixel 0), v1[0], v1[1] (pixel 1) hold the
 * starting values and get the sums. */
TN_INLINE void tn_tc_dot22(const uint8_t *wp, const uint32_t *xp, uint32_t ny, uint32_t run,
                           uint32_t jw, int32_t *TN_RESTRICT v0, int32_t *TN_RESTRICT v1)
{
    int32_t a0 = v0[0], a1 = v0[1], a2 = v1[0], a3 = v1[1];
    for (uint32_t j = 0; j < ny; j++) {
        const uint32_t *x = xp + j * jw, *xe = x + 4u * run;
#if TN_M7_ASM
        /* the same loop with post-indexed loads (LDRD of a pixel's two words, the weight
         * pointer stepped by the first LDR): 18 instructions per group of 16 MACs, 13
         * registers (the compiler's own loop takes 22) */
        if (run) {
            uint32_t u, t, xa, xb, ya, yb;
            __asm__ volatile(
                "1:\n\t"
                "ldr %[u], [%[w]], #8\n\t"
                "ldrd %[xa], %[xb], [%[x]], #16\n\t"
                "ldrd %[ya], %[yb], [%[x], #-8]\n\t"
                "uxtb16 %[t], %[u]\n\t"
                "uxtb16 %[u], %[u], ror #8\n\t"
                "smlad %[a0], %[t], %[xa], %[a0]\n\t"
                "smlad %[a2], %[t], %[ya], %[a2]\n\t"
                "smlad %[a0], %[u], %[xb], %[a0]\n\t"
                "smlad %[a2], %[u], %[yb], %[a2]\n\t"
                "ldr %[u], [%[w], #-4]\n\t"
                "uxtb16 %[t], %[u]\n\t"
                "uxtb16 %[u], %[u], ror #8\n\t"
                "smlad %[a1], %[t], %[xa], %[a1]\n\t"
                "smlad %[a3], %[t], %[ya], %[a3]\n\t"
                "smlad %[a1], %[u], %[xb], %[a1]\n\t"
                "smlad %[a3], %[u], %[yb], %[a3]\n\t"
                "cmp %[x], %[xe]\n\t"
                "bne 1b"
                : [a0] "+r"(a0), [a1] "+r"(a1), [a2] "+r"(a2), [a3] "+r"(a3), [w] "+r"(wp),
                  [x] "+r"(x), [u] "=&r"(u), [t] "=&r"(t), [xa] "=&r"(xa), [xb] "=&r"(xb),
                  [ya] "=&r"(ya), [yb] "=&r"(yb)
                : [xe] "r"(xe)
                : "cc", "memory");
        }
        continue;
#endif
        while (x != xe) {
            const uint32_t u0 = tn_ld32(wp), u1 = tn_ld32(wp + 4);
            const uint32_t xa = x[0], xb = x[1], ya = x[2], yb = x[3];
            const uint32_t p0 = tn_uxtb16(u0), q0 = tn_uxtb16_ror8(u0);
            const uint32_t p1 = tn_uxtb16(u1), q1 = tn_uxtb16_ror8(u1);
            wp += 8;
            x += 4;
            a0 = tn_smlad(p0, xa, a0);
            a0 = tn_smlad(q0, xb, a0);
            a1 = tn_smlad(p1, xa, a1);
            a1 = tn_smlad(q1, xb, a1);
            a2 = tn_smlad(p0, ya, a2);
            a2 = tn_smlad(q0, yb, a2);
            a3 = tn_smlad(p1, ya, a3);
            a3 = tn_smlad(q1, yb, a3);
        }
    }
    v0[0] = a0; v0[1] = a1; v1[0] = a2; v1[1] = a3;
}

/* Two channels, one pixel (its words at x[0], x[1] of each group): v0[0], v0[1]. */
TN_INLINE void tn_tc_dot21(const uint8_t *wp, const uint32_t *xp, uint32_t ny, uint32_t run,
                           uint32_t jw, int32_t *TN_RESTRICT v0)
{
    int32_t a0 = v0[0], a1 = v0[1];
    for (uint32_t j = 0; j < ny; j++) {
        const uint32_t *x = xp + j * jw, *xe = x + 4u * run;
        while (x != xe) {
            const uint32_t u0 = tn_ld32(wp), u1 = tn_ld32(wp + 4);
            const uint32_t xa = x[0], xb = x[1];
            wp += 8;
            x += 4;
            a0 = tn_smlad(tn_uxtb16(u0), xa, a0);
            a0 = tn_smlad(tn_uxtb16_ror8(u0), xb, a0);
            a1 = tn_smlad(tn_uxtb16(u1), xa, a1);
            a1 = tn_smlad(tn_uxtb16_ror8(u1), xb, a1);
        }
    }
    v0[0] = a0; v0[1] = a1;
}

/* One channel (plain weight words): v0[0], and v1[0] at the second pixel when two. */
TN_INLINE void tn_tc_dot1(const uint8_t *wp, const uint32_t *xp, uint32_t ny, uint32_t run,
                          uint32_t jw, int32_t *TN_RESTRICT v0, int32_t *TN_RESTRICT v1,
                          uint32_t two)
{
    int32_t a0 = v0[0], a1 = v1[0];
    for (uint32_t j = 0; j < ny; j++) {
        const uint32_t *x = xp + j * jw;
        for (uint32_t g = 0; g < run; g++, wp += 4, x += 4) {
            const uint32_t u0 = tn_ld32(wp);
            const uint32_t p0 = tn_uxtb16(u0), q0 = tn_uxtb16_ror8(u0);
            a0 = tn_smlad(p0, x[0], a0);
            a0 = tn_smlad(q0, x[1], a0);
            if (two) {
                a1 = tn_smlad(p0, x[2], a1);
                a1 = tn_smlad(q0, x[3], a1);
            }
        }
    }
    v0[0] = a0; v1[0] = a1;
}

/* The CO outputs of one phase (ny x nx taps, weights wb) at pixel 0 (o0, when v0) and pixel 1
 * (o1, when v1) of a base pair; s0, s1: their sums x' over the phase's taps. Each pair of
 * channels is requantized and written as soon as its sums are. MODE, CLAMP: tn_tc_out's. */
TN_INLINE void tn_tc_phase(const tn_tc_rq_t *q, uint32_t CO, const uint8_t *wb,
                           const uint32_t *lanes, uint32_t ny, uint32_t nx, uint32_t IM,
                           uint32_t G, uint8_t *o0, uint8_t *o1, uint32_t v0, uint32_t v1,
                           int32_t s0, int32_t s1, uint32_t MODE, uint32_t CLAMP)
{
    const uint32_t row = ny * nx * G * 4u, jw = IM * G * 4u; /* jw: grid words per tap row */
    /* a phase with every tap of a grid row reads its rows as one run */
    const uint32_t run = nx == IM ? ny * nx * G : nx * G, rows = nx == IM ? 1u : ny;
    /* a lone pixel 1 reads its own words: the grid seen two words on */
    const uint32_t *xl = (!v0 && v1) ? lanes + 2 : lanes;
    const uint32_t sa = (uint32_t)(v0 ? s0 : s1), sb = (uint32_t)s1;
    uint8_t *oa = v0 ? o0 : o1;
    const uint8_t *wzp = q->wzp;
    const int32_t *bias = q->bias, *kt = q->kt;
    const uint32_t pz = q->per_z;
    uint32_t c = 0;
    if (v0 && v1) {
        for (; c + 2u <= CO; c += 2u) {
            const uint32_t z0 = wzp[pz ? c : 0u], z1 = wzp[pz ? c + 1u : 0u];
            const uint32_t b0 = (uint32_t)bias[c], b1 = (uint32_t)bias[c + 1u];
            /* starting values: bias - z_w sum x' (modulo 2^32) */
            int32_t a[2] = {(int32_t)(b0 - z0 * sa), (int32_t)(b1 - z1 * sa)};
            int32_t b[2] = {(int32_t)(b0 - z0 * sb), (int32_t)(b1 - z1 * sb)};
            tn_tc_dot22(wb + c * row, xl, rows, run, jw, a, b);
            o0[c] = tn_tc_out(q, a[0], kt + 3u * c, c, MODE, CLAMP);
            o0[c + 1u] = tn_tc_out(q, a[1], kt + 3u * c + 3u, c + 1u, MODE, CLAMP);
            o1[c] = tn_tc_out(q, b[0], kt + 3u * c, c, MODE, CLAMP);
            o1[c + 1u] = tn_tc_out(q, b[1], kt + 3u * c + 3u, c + 1u, MODE, CLAMP);
        }
    } else {
        for (; c + 2u <= CO; c += 2u) {
            const uint32_t z0 = wzp[pz ? c : 0u], z1 = wzp[pz ? c + 1u : 0u];
            int32_t a[2] = {(int32_t)((uint32_t)bias[c] - z0 * sa),
                            (int32_t)((uint32_t)bias[c + 1u] - z1 * sa)};
            tn_tc_dot21(wb + c * row, xl, rows, run, jw, a);
            oa[c] = tn_tc_out(q, a[0], kt + 3u * c, c, MODE, CLAMP);
            oa[c + 1u] = tn_tc_out(q, a[1], kt + 3u * c + 3u, c + 1u, MODE, CLAMP);
        }
    }
    if (c < CO) {
        const uint32_t z0 = wzp[pz ? c : 0u], b0 = (uint32_t)bias[c];
        int32_t a = (int32_t)(b0 - z0 * sa), b = (int32_t)(b0 - z0 * sb);
        tn_tc_dot1(wb + c * row, xl, rows, run, jw, &a, &b, v0 && v1);
        oa[c] = tn_tc_out(q, a, kt + 3u * c, c, MODE, CLAMP);
        if (v0 && v1) o1[c] = tn_tc_out(q, b, kt + 3u * c, c, MODE, CLAMP);
    }
}

/* tn_tc_phase for the layer's requantization: a copy for each common (mode, clamp) (TFLite's
 * int8 without and with an activation clamp, the Keras path's uint8 likewise), the general
 * copy (tn_requant_k, any clamp) for the rest. */
static TN_TC_NOINLINE void tn_tc_phase_any(const tn_tc_rq_t *q, uint32_t CO, const uint8_t *wb,
                                           const uint32_t *lanes, uint32_t ny, uint32_t nx,
                                           uint32_t IM, uint32_t G, uint8_t *o0, uint8_t *o1,
                                           uint32_t v0, uint32_t v1, int32_t s0, int32_t s1)
{
    const uint32_t mode = q->mode, clamp = q->clamp;
    if (mode == 1u && clamp == 1u)
        tn_tc_phase(q, CO, wb, lanes, ny, nx, IM, G, o0, o1, v0, v1, s0, s1, 1u, 1u);
    else if (mode == 1u && clamp == 0u)
        tn_tc_phase(q, CO, wb, lanes, ny, nx, IM, G, o0, o1, v0, v1, s0, s1, 1u, 0u);
    else if (mode == 2u && clamp == 2u)
        tn_tc_phase(q, CO, wb, lanes, ny, nx, IM, G, o0, o1, v0, v1, s0, s1, 2u, 2u);
    else if (mode == 2u && clamp == 0u)
        tn_tc_phase(q, CO, wb, lanes, ny, nx, IM, G, o0, o1, v0, v1, s0, s1, 2u, 0u);
    else
        tn_tc_phase(q, CO, wb, lanes, ny, nx, IM, G, o0, o1, v0, v1, s0, s1, 0u, 0u);
}

/* Widen the JM x IM grid of base (by, bx) as pixel P (words at lanes + 2 P), sums at sums. */
static void tn_tc_grid(const tn_layer_t *l, const uint8_t *x, uint32_t *lanes, int32_t *sums,
                       int32_t by, int32_t bx, uint32_t P, uint32_t JM, uint32_t IM, uint32_t G)
{
    const int32_t H = l->in.h, W = l->in.w, ZX = l->in.zero_point;
    const uint32_t C = l->in.c;
    for (uint32_t j = 0; j < JM; j++) {
        for (uint32_t i = 0; i < IM; i++) {
            const uint32_t t = j * IM + i;
            uint32_t *dst = lanes + t * G * 4u + 2u * P;
            sums[t] = l->in.is_signed
                ? tn_tc_widen(x, dst, by - (int32_t)j, bx - (int32_t)i, H, W, C, ZX, 1u)
                : tn_tc_widen(x, dst, by - (int32_t)j, bx - (int32_t)i, H, W, C, ZX, 0u);
        }
    }
}

void tn_m7_run_transpose_conv(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out,
                              uint8_t *scratch)
{
    const int32_t OH = l->out.h, OW = l->out.w, PT = l->pad_t, PL = l->pad_l;
    const uint32_t CO = l->out.c, KH = l->k_h, KW = l->k_w;
    const int32_t SH = l->stride_h, SW = l->stride_w;
    const uint32_t G = (l->in.c + 3u) / 4u;
    const uint32_t JM = tn_tc_taps(KH, (uint32_t)SH, 0u), IM = tn_tc_taps(KW, (uint32_t)SW, 0u);
    const uint32_t NT = JM * IM;
    uint32_t *lanes = (uint32_t *)(void *)scratch;                /* NT G 4 words */
    int32_t *sums = (int32_t *)(void *)(scratch + NT * G * 16u);  /* [2][NT] */
    int32_t *kt = sums + 2u * NT;                                 /* 3 CO constants */
    const tn_tc_rq_t q = {l->bias, l->m0, l->n0, l->wzp, kt, l->n_wzp != 1u, l->n_m != 1u,
                          l->rounding, tn_tc_mode(l), tn_tc_clamp(l), l->out.zero_point,
                          l->act_lo, l->act_hi};
    tn_tc_constants(&q, kt, CO);
    /* the bases any output reads: oy + PT = by SH + py */
    const int32_t by0 = PT / SH, by1 = (OH - 1 + PT) / SH;
    const int32_t bx0 = PL / SW, bx1 = (OW - 1 + PL) / SW;
    for (int32_t by = by0; by <= by1; by++) {
        for (int32_t bx = bx0; bx <= bx1; bx += 2) {
            const uint32_t has1 = bx + 1 <= bx1;
            tn_tc_grid(l, in[0], lanes, sums, by, bx, 0u, JM, IM, G);
            if (has1) tn_tc_grid(l, in[0], lanes, sums + NT, by, bx + 1, 1u, JM, IM, G);
            const uint8_t *wb = l->w;
            for (int32_t py = 0; py < SH; py++) {
                const uint32_t ny = tn_tc_taps(KH, (uint32_t)SH, (uint32_t)py);
                const int32_t oy = by * SH + py - PT;
                for (int32_t px = 0; px < SW; px++) {
                    const uint32_t nx = tn_tc_taps(KW, (uint32_t)SW, (uint32_t)px);
                    const uint8_t *phase = wb;
                    wb += CO * ny * nx * G * 4u;
                    const int32_t ox0 = bx * SW + px - PL, ox1 = ox0 + SW;
                    const uint32_t v0 = ox0 >= 0 && ox0 < OW;
                    const uint32_t v1 = has1 && ox1 >= 0 && ox1 < OW;
                    if (oy < 0 || oy >= OH || (!v0 && !v1)) continue;
                    int32_t s0 = 0, s1 = 0;
                    for (uint32_t j = 0; j < ny; j++) {
                        for (uint32_t i = 0; i < nx; i++) {
                            s0 += sums[j * IM + i];
                            if (has1) s1 += sums[NT + j * IM + i];
                        }
                    }
                    uint8_t *row = out + (uint32_t)oy * (uint32_t)OW * CO;
                    tn_tc_phase_any(&q, CO, phase, lanes, ny, nx, IM, G,
                                    v0 ? row + (uint32_t)ox0 * CO : row,
                                    v1 ? row + (uint32_t)ox1 * CO : row, v0, v1, s0, s1);
                }
            }
        }
    }
}

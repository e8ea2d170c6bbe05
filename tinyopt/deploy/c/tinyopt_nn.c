/* tinyopt_nn.c: integer-only reference kernels (see tinyopt_nn.h for the conventions).
 *
 * One generic kernel per layer kind, parameterised by bit widths at run time: correctness and
 * bit-exactness with tinyopt.integer.sim first, then small code. Not SIMD-optimised (CMix-NN's SMLAD
 * GEMMs would be several times faster); instruction counts measured with this file are therefore
 * an upper bound for an optimised kernel library.
 */
#include "tinyopt_nn.h"

#include "tn_arith.h"

uint32_t tn_bytes(uint32_t n, uint32_t bits) { return (n * bits + 7u) >> 3; }

int64_t tn_requant(int32_t phi, int32_t m0, int8_t n0, uint8_t rounding)
{
    return tn_requant_k(phi, m0, n0, rounding);
}

/* Dot products sum_k (w[wi + k] - zw) * (x[xi + k] - zx) modulo 2^32. tn_dot_k is forced
 * inline so that tn_dot's calls with constant bit widths compile into specialised loops (plain
 * byte loads for 8 bits, shift-and-mask for 4/2/1); other widths take the generic loop. */

TN_INLINE uint32_t tn_dot_k(const uint8_t *w, uint32_t wi, uint32_t wb, uint32_t zw,
                            const uint8_t *x, uint32_t xi, uint32_t xb, uint32_t xs, uint32_t zx,
                            uint32_t n)
{
    uint32_t acc = 0;
    for (uint32_t k = 0; k < n; k++)
        acc += ((uint32_t)tn_get(w, wi + k, wb, 0) - zw) * ((uint32_t)tn_get(x, xi + k, xb, xs) - zx);
    return acc;
}

static uint32_t tn_dot(const uint8_t *w, uint32_t wi, uint32_t wb, uint32_t zw,
                       const uint8_t *x, uint32_t xi, uint32_t xb, uint32_t xs, uint32_t zx,
                       uint32_t n)
{
#define TN_DOT_W(XB, XS)                                                        \
    switch (wb) {                                                               \
    case 8u: return tn_dot_k(w, wi, 8u, zw, x, xi, XB, XS, zx, n);              \
    case 4u: return tn_dot_k(w, wi, 4u, zw, x, xi, XB, XS, zx, n);              \
    case 2u: return tn_dot_k(w, wi, 2u, zw, x, xi, XB, XS, zx, n);              \
    default: return tn_dot_k(w, wi, 1u, zw, x, xi, XB, XS, zx, n);              \
    }
    if (xb == 8u && xs) { TN_DOT_W(8u, 1u) }
    if (xb == 8u && !xs) { TN_DOT_W(8u, 0u) }
    if (xb == 4u && !xs) { TN_DOT_W(4u, 0u) }
    if (xb == 2u && !xs) { TN_DOT_W(2u, 0u) }
#undef TN_DOT_W
    return tn_dot_k(w, wi, wb, zw, x, xi, xb, xs, zx, n);
}

/* The depthwise accumulator (without bias) of channel c at the output pixel whose window starts
 * at (y0, x0); taps kx in [kx_lo, kx_hi) of a row are inside the image. Specialised like tn_dot. */
TN_INLINE uint32_t tn_dw_k(const tn_layer_t *l, const uint8_t *in, int32_t y0, int32_t x0,
                           int32_t kx_lo, int32_t kx_hi, uint32_t c, uint32_t wb, uint32_t zw,
                           uint32_t xb, uint32_t xs, uint32_t zx)
{
    const int32_t H = l->in.h, W = l->in.w, KW = l->k_w;
    const uint32_t C = l->in.c, rb = l->w_row_bytes, ci = c / l->depth_multiplier;
    uint32_t acc = 0;
    for (int32_t ky = 0; ky < (int32_t)l->k_h; ky++) {
        const int32_t iy = y0 + ky;
        const uint8_t *wr = l->w + rb * (uint32_t)(ky * KW);
        const int row_inside = iy >= 0 && iy < H && kx_lo < kx_hi;
        if (l->pad_zero && (!row_inside || kx_lo > 0 || kx_hi < KW)) { /* padded taps: integer 0 */
            for (int32_t kx = 0; kx < KW; kx++)
                if (!row_inside || kx < kx_lo || kx >= kx_hi)
                    acc += ((uint32_t)tn_get(wr + rb * (uint32_t)kx, c, wb, 0) - zw) * (0u - zx);
        } /* else padded taps hold the zero point and contribute 0 */
        if (!row_inside) continue;
        uint32_t xi = ((uint32_t)iy * (uint32_t)W + (uint32_t)(x0 + kx_lo)) * C + ci;
        for (int32_t kx = kx_lo; kx < kx_hi; kx++, xi += C)
            acc += ((uint32_t)tn_get(wr + rb * (uint32_t)kx, c, wb, 0) - zw)
                   * ((uint32_t)tn_get(in, xi, xb, xs) - zx);
    }
    return acc;
}

static uint32_t tn_dw(const tn_layer_t *l, const uint8_t *in, int32_t y0, int32_t x0,
                      int32_t kx_lo, int32_t kx_hi, uint32_t c, uint32_t wb, uint32_t zw,
                      uint32_t xb, uint32_t xs, uint32_t zx)
{
#define TN_DW_W(XB, XS)                                                                    \
    switch (wb) {                                                                          \
    case 8u: return tn_dw_k(l, in, y0, x0, kx_lo, kx_hi, c, 8u, zw, XB, XS, zx);           \
    case 4u: return tn_dw_k(l, in, y0, x0, kx_lo, kx_hi, c, 4u, zw, XB, XS, zx);           \
    case 2u: return tn_dw_k(l, in, y0, x0, kx_lo, kx_hi, c, 2u, zw, XB, XS, zx);           \
    default: return tn_dw_k(l, in, y0, x0, kx_lo, kx_hi, c, 1u, zw, XB, XS, zx);           \
    }
    if (xb == 8u && xs) { TN_DW_W(8u, 1u) }
    if (xb == 8u && !xs) { TN_DW_W(8u, 0u) }
    if (xb == 4u && !xs) { TN_DW_W(4u, 0u) }
    if (xb == 2u && !xs) { TN_DW_W(2u, 0u) }
#undef TN_DW_W
    return tn_dw_k(l, in, y0, x0, kx_lo, kx_hi, c, wb, zw, xb, xs, zx);
}

/* The accumulator (without bias) of channel c of a dilated convolution or depthwise layer
 * (dil_h or dil_w > 1) whose window starts at (y0, x0): tap (ky, kx) reads input pixel
 * (y0 + ky dil_h, x0 + kx dil_w); one tap at a time, as tinyopt.integer.ops.compute does. */
static uint32_t tn_acc_dilated(const tn_layer_t *l, const uint8_t *in, int32_t y0, int32_t x0,
                               uint32_t c, uint32_t wb, uint32_t zw, uint32_t xb, uint32_t xs,
                               uint32_t zx)
{
    const int32_t H = l->in.h, W = l->in.w, KW = l->k_w;
    const int32_t DH = l->dil_h > 1u ? l->dil_h : 1, DW = l->dil_w > 1u ? l->dil_w : 1;
    const uint32_t C = l->in.c, rb = l->w_row_bytes;
    const int depthwise = l->kind == TN_DEPTHWISE;
    const uint32_t ci = depthwise ? c / l->depth_multiplier : 0u;
    const uint8_t *wc = l->w + rb * c; /* TN_CONV: weight row c = [ky][kx][ci] */
    uint32_t acc = 0;
    for (int32_t ky = 0; ky < (int32_t)l->k_h; ky++) {
        const int32_t iy = y0 + ky * DH;
        for (int32_t kx = 0; kx < KW; kx++) {
            const int32_t ix = x0 + kx * DW;
            const int inside = iy >= 0 && iy < H && ix >= 0 && ix < W;
            const uint32_t tap = (uint32_t)(ky * KW + kx);
            if (!inside && !l->pad_zero) continue; /* a padded tap holds z_x: contributes 0 */
            const uint32_t xi = inside ? ((uint32_t)iy * (uint32_t)W + (uint32_t)ix) * C : 0u;
            if (depthwise) { /* weight row per tap, [ky][kx][c] */
                const uint32_t wv = (uint32_t)tn_get(l->w + rb * tap, c, wb, 0) - zw;
                acc += wv * (inside ? (uint32_t)tn_get(in, xi + ci, xb, xs) - zx : 0u - zx);
            } else if (inside) {
                acc += tn_dot(wc, tap * C, wb, zw, in, xi, xb, xs, zx, C);
            } else { /* pad_zero: the padded inputs hold integer 0 */
                for (uint32_t k = 0; k < C; k++)
                    acc += ((uint32_t)tn_get(wc, tap * C + k, wb, 0) - zw) * (0u - zx);
            }
        }
    }
    return acc;
}

/* The accumulator (bias included, int32 wrap-around) of output (oy, ox, c) of a compute layer. */
static int32_t tn_acc(const tn_layer_t *l, const uint8_t *in, int32_t oy, int32_t ox, uint32_t c)
{
    const uint32_t ib = l->in.bits, is = l->in.is_signed, wb = l->w_bits;
    const uint32_t zx = (uint32_t)l->in.zero_point;
    const uint32_t zw = (uint32_t)l->wzp[l->n_wzp == 1u ? 0u : c];
    uint32_t acc = (uint32_t)l->bias[c];
    if (l->kind == TN_DENSE) {
        const uint32_t n = (uint32_t)l->in.h * l->in.w * l->in.c;
        acc += tn_dot(l->w + (uint32_t)l->w_row_bytes * c, 0u, wb, zw, in, 0u, ib, is, zx, n);
        return (int32_t)acc;
    }
    const int32_t H = l->in.h, W = l->in.w, KW = l->k_w;
    const uint32_t C = l->in.c;
    const int32_t y0 = oy * l->stride_h - l->pad_t, x0 = ox * l->stride_w - l->pad_l;
    /* the taps of a kernel row that fall inside the image: kx in [kx_lo, kx_hi) */
    const int32_t kx_lo = x0 < 0 ? -x0 : 0;
    const int32_t kx_hi = x0 + KW > W ? W - x0 : KW;
    if (l->dil_h > 1u || l->dil_w > 1u)
        return (int32_t)(acc + tn_acc_dilated(l, in, y0, x0, c, wb, zw, ib, is, zx));
    if (l->kind == TN_DEPTHWISE)
        return (int32_t)(acc + tn_dw(l, in, y0, x0, kx_lo, kx_hi, c, wb, zw, ib, is, zx));
    for (int32_t ky = 0; ky < (int32_t)l->k_h; ky++) {
        const int32_t iy = y0 + ky;
        const int row_inside = iy >= 0 && iy < H && kx_lo < kx_hi;
        /* TN_CONV, weight row c = [ky][kx][ci]: the inside taps of a row are contiguous in
         * both the weights and the input, so they form one dot product */
        const uint8_t *wr = l->w + (uint32_t)l->w_row_bytes * c;
        if (row_inside)
            acc += tn_dot(wr, (uint32_t)(ky * KW + kx_lo) * C, wb, zw,
                          in, ((uint32_t)iy * (uint32_t)W + (uint32_t)(x0 + kx_lo)) * C, ib, is,
                          zx, (uint32_t)(kx_hi - kx_lo) * C);
        if (l->pad_zero && (!row_inside || kx_lo > 0 || kx_hi < KW)) {
            for (int32_t kx = 0; kx < KW; kx++) {
                if (row_inside && kx >= kx_lo && kx < kx_hi) continue;
                for (uint32_t k = 0; k < C; k++)
                    acc += ((uint32_t)tn_get(wr, (uint32_t)(ky * KW + kx) * C + k, wb, 0) - zw)
                           * (0u - zx);
            }
        }
    }
    return (int32_t)acc;
}

/* Requantized (or raw) and clamped output value of a compute layer. */
static int32_t tn_value(const tn_layer_t *l, const uint8_t *in, int32_t oy, int32_t ox, uint32_t c)
{
    const int32_t phi = tn_acc(l, in, oy, ox, c);
    int64_t y;
    if (!l->requantize) {
        y = phi;
    } else {
        const uint32_t k = l->n_m == 1u ? 0u : c;
        y = tn_requant_k(phi, l->m0[k], l->n0[k], l->rounding) + l->out.zero_point;
    }
    if (y < l->act_lo) y = l->act_lo;
    if (y > l->act_hi) y = l->act_hi;
    return (int32_t)y;
}

/* The memory plan relies on the order of tn_compute (unfused) and tn_pool: output elements are
 * written one by one in row-major (y, x, c) order, each after every read of its window, so the
 * output may start a few rows below the input and overwrite it as it goes
 * (tinyopt/deploy/steps.py, write_delay). Keep that order, or update write_delay. */
static void tn_compute(const tn_layer_t *l, const uint8_t *in, const uint8_t *other, uint8_t *out)
{
    const uint32_t C = l->out.c, ob = l->fuse_add ? l->add_out_bits : l->out.bits;
    uint32_t idx = 0;
    if (!l->fuse_pool) {
        for (int32_t oy = 0; oy < (int32_t)l->out.h; oy++)
            for (int32_t ox = 0; ox < (int32_t)l->out.w; ox++)
                for (uint32_t c = 0; c < C; c++) {
                    int32_t v = tn_value(l, in, oy, ox, c);
                    if (l->fuse_add) { /* the residual ADD, element by element */
                        const int32_t dv = (int32_t)((uint32_t)v - (uint32_t)l->out.zero_point);
                        const int32_t dw = (int32_t)((uint32_t)tn_get(other, idx, l->out.bits,
                                                                      l->out.is_signed)
                                                     - (uint32_t)l->add_other_zp);
                        v = tn_add1(l->add_m0, l->add_n0, l->add_rounding, l->left_shift,
                                    l->add_slot ? dw : dv, l->add_slot ? dv : dw, l->add_out_zp,
                                    l->add_lo, l->add_hi);
                    }
                    tn_set(out, idx++, ob, (uint32_t)v);
                }
        return;
    }
    /* Fused max pool: max over the in-bounds window of the layer's (clamped) outputs, then the
     * pool's clamp. The layer's full output is never stored. */
    for (int32_t py = 0; py < (int32_t)l->pool_out_h; py++)
        for (int32_t px = 0; px < (int32_t)l->pool_out_w; px++)
            for (uint32_t c = 0; c < C; c++) {
                int32_t best = INT32_MIN;
                for (int32_t dy = 0; dy < (int32_t)l->pool_h; dy++) {
                    const int32_t oy = py * l->pool_sh - l->pool_pt + dy;
                    if (oy < 0 || oy >= (int32_t)l->out.h) continue;
                    for (int32_t dx = 0; dx < (int32_t)l->pool_w; dx++) {
                        const int32_t ox = px * l->pool_sw - l->pool_pl + dx;
                        if (ox < 0 || ox >= (int32_t)l->out.w) continue;
                        const int32_t v = tn_value(l, in, oy, ox, c);
                        if (v > best) best = v;
                    }
                }
                if (best < l->pool_lo) best = l->pool_lo;
                if (best > l->pool_hi) best = l->pool_hi;
                tn_set(out, idx++, ob, (uint32_t)best);
            }
}

static void tn_pool(const tn_layer_t *l, const uint8_t *in, uint8_t *out)
{
    const uint32_t C = l->in.c, b = l->in.bits, s = l->in.is_signed;
    const int32_t H = l->in.h, W = l->in.w;
    uint32_t idx = 0;
    for (int32_t py = 0; py < (int32_t)l->pool_out_h; py++)
        for (int32_t px = 0; px < (int32_t)l->pool_out_w; px++)
            for (uint32_t c = 0; c < C; c++) {
                int64_t total = 0, best = INT64_MIN, count = 0, y;
                for (int32_t dy = 0; dy < (int32_t)l->pool_h; dy++) {
                    const int32_t iy = py * l->pool_sh - l->pool_pt + dy;
                    if (iy < 0 || iy >= H) continue;
                    for (int32_t dx = 0; dx < (int32_t)l->pool_w; dx++) {
                        const int32_t ix = px * l->pool_sw - l->pool_pl + dx;
                        if (ix < 0 || ix >= W) continue;
                        const int64_t v = tn_get(in, ((uint32_t)iy * (uint32_t)W + (uint32_t)ix) * C + c, b, s);
                        total += v;
                        count++;
                        if (v > best) best = v;
                    }
                }
                if (l->kind == TN_MAXPOOL) {
                    y = best;
                } else if (count == 0) {
                    y = 0; /* unreachable for SAME/VALID windows; the exporter rejects it */
                } else if (!l->avg_half_away) { /* floor division */
                    y = total >= 0 ? total / count : -((-total + count - 1) / count);
                } else { /* TFLite, CMSIS-NN: half away from zero */
                    const int64_t half = count / 2;
                    y = total > 0 ? (total + half) / count : -((-total + half) / count);
                }
                if (y < l->pool_lo) y = l->pool_lo;
                if (y > l->pool_hi) y = l->pool_hi;
                tn_set(out, idx++, b, (uint32_t)y);
            }
}

/* ------------------------------------------------------------------ DAG nodes
 * Element-wise kernels (add, quantize, softmax) read element i before they write element i, at
 * the same bit width, so the memory plan may let them write over an input (tn_run). */

static void tn_add(const tn_layer_t *l, const uint8_t *a, const uint8_t *b, uint8_t *out)
{
    const uint32_t n = (uint32_t)l->out.h * l->out.w * l->out.c;
    const uint32_t ib = l->in.bits, is = l->in.is_signed, ob = l->out.bits, s = l->left_shift;
    for (uint32_t i = 0; i < n; i++) {
        const int32_t da = (int32_t)((uint32_t)tn_get(a, i, ib, is) - (uint32_t)l->in.zero_point);
        const int32_t db = (int32_t)((uint32_t)tn_get(b, i, ib, is) - (uint32_t)l->in2_zero_point);
        tn_set(out, i, ob, (uint32_t)tn_add1(l->m0, l->n0, l->rounding, s, da, db,
                                             l->out.zero_point, l->act_lo, l->act_hi));
    }
}

static void tn_quantize(const tn_layer_t *l, const uint8_t *in, uint8_t *out)
{
    const uint32_t n = (uint32_t)l->out.h * l->out.w * l->out.c;
    for (uint32_t i = 0; i < n; i++) {
        const int32_t x = (int32_t)((uint32_t)tn_get(in, i, l->in.bits, l->in.is_signed)
                                    - (uint32_t)l->in.zero_point);
        const int64_t y = tn_requant_k(x, l->m0[0], l->n0[0], l->rounding) + l->out.zero_point;
        tn_set(out, i, l->out.bits, (uint32_t)tn_clamp(y, l->act_lo, l->act_hi));
    }
}

static void tn_pad(const tn_layer_t *l, const uint8_t *in, uint8_t *out)
{
    const int32_t H = l->in.h, W = l->in.w;
    const uint32_t C = l->in.c, b = l->in.bits, s = l->in.is_signed;
    const uint32_t zp = (uint32_t)l->out.zero_point;
    uint32_t idx = 0;
    for (int32_t oy = 0; oy < (int32_t)l->out.h; oy++) {
        const int32_t iy = oy - l->pad_t;
        for (int32_t ox = 0; ox < (int32_t)l->out.w; ox++) {
            const int32_t ix = ox - l->pad_l;
            const int inside = iy >= 0 && iy < H && ix >= 0 && ix < W;
            const uint32_t at = inside ? ((uint32_t)iy * (uint32_t)W + (uint32_t)ix) * C : 0u;
            for (uint32_t c = 0; c < C; c++)
                tn_set(out, idx++, b, inside ? (uint32_t)tn_get(in, at + c, b, s) : zp);
        }
    }
}

static void tn_concat(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out)
{
    const uint32_t b = l->out.bits, s = l->out.is_signed;
    uint32_t idx = 0;
    for (uint32_t o = 0; o < l->outer; o++)
        for (uint32_t k = 0; k < l->n_in; k++) {
            const uint32_t m = l->inner[k];
            for (uint32_t j = 0; j < m; j++)
                tn_set(out, idx++, b, (uint32_t)tn_get(in[k], o * m + j, b, s));
        }
}

/* gemmlowp fixed point on int32 values (tinyopt.integer.sim, "gemmlowp fixed point"): each
 * function follows the simulator's int64 formulation and wraps to 32 bits where it does. */
static inline int32_t tn_wrap(int64_t x) { return (int32_t)(uint32_t)(uint64_t)x; }

static inline int32_t tn_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

static inline int64_t tn_rdbpot(int64_t x, int32_t e) /* x / 2^e, half away from zero */
{
    const int64_t mask = ((int64_t)1 << e) - 1;
    const int64_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + ((x & mask) > threshold ? 1 : 0);
}

static inline int32_t tn_sat_shl(int32_t x, int32_t e)
{
    const int32_t threshold = (int32_t)(((int64_t)1 << (31 - e)) - 1);
    if (x > threshold) return INT32_MAX;
    if (x < -threshold) return INT32_MIN;
    return (int32_t)((int64_t)x * ((int64_t)1 << e));
}

/* exp(a) for a <= 0 in Q5.26, as Q0.31 (gemmlowp's exp_on_negative_values) */
static int32_t tn_exp_neg(int32_t a)
{
    static const int32_t mult[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535,
                                    720401, 242};
    const int32_t quarter = (int32_t)1 << 24;
    const int32_t a_mod = (int32_t)((uint32_t)a & (uint32_t)(quarter - 1)) - quarter;
    const int32_t x = tn_wrap((int64_t)a_mod * 32 + ((int64_t)1 << 28));
    const int32_t x2 = tn_srdhm(x, x), x3 = tn_srdhm(x2, x), x4 = tn_srdhm(x2, x2);
    const int32_t x4_over_4 = (int32_t)tn_rdbpot(x4, 2);
    const int32_t poly = (int32_t)tn_rdbpot(
        tn_wrap((int64_t)tn_srdhm(tn_wrap((int64_t)x4_over_4 + x3), 715827883) + x2), 1);
    const int32_t c = 1895147668; /* exp(-1/8) in Q0.31 */
    int32_t result = tn_wrap((int64_t)c + tn_srdhm(c, tn_wrap((int64_t)x + poly)));
    const uint32_t remainder = (uint32_t)tn_wrap((int64_t)a_mod - a);
    for (int32_t k = 0; k < 7; k++)
        if (remainder & (1u << (24 + k))) result = tn_srdhm(result, mult[k]);
    return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + a) for a in [0, 1), Q0.31 in and out (Newton-Raphson, gemmlowp) */
static int32_t tn_one_over_one_plus_x(int32_t a)
{
    const int64_t s = (int64_t)a + INT32_MAX;
    const int32_t half = (int32_t)(s >= 0 ? (s + 1) / 2 : -((1 - s) / 2));
    int32_t x = tn_wrap((int64_t)1515870810 + tn_srdhm(half, -1010580540));
    for (int k = 0; k < 3; k++) {
        const int32_t one_minus = tn_wrap(((int64_t)1 << 29) - tn_srdhm(half, x));
        x = tn_wrap((int64_t)x + tn_sat_shl(tn_srdhm(x, one_minus), 2));
    }
    return tn_sat_shl(x, 1);
}

/* The input difference (x - max) scaled to Q5.26 by the input-beta multiplier. */
static inline int32_t tn_softmax_scaled(const tn_layer_t *l, int32_t diff)
{
    const int32_t shift = l->n0[0];
    if (l->rounding == TN_TFL_SINGLE) {
        const int32_t total = 31 - shift;
        return (int32_t)(((int64_t)diff * l->m0[0] + ((int64_t)1 << (total - 1))) >> total);
    }
    return tn_srdhm(tn_shl32(diff, (uint32_t)shift), l->m0[0]);
}

static void tn_softmax(const tn_layer_t *l, const uint8_t *in, uint8_t *out)
{
    const uint32_t C = l->in.c, rows = (uint32_t)l->in.h * l->in.w;
    const uint32_t ib = l->in.bits, is = l->in.is_signed, ob = l->out.bits;
    for (uint32_t r = 0; r < rows; r++) {
        const uint32_t base = r * C;
        int32_t mx = INT32_MIN;
        for (uint32_t i = 0; i < C; i++) {
            const int32_t v = tn_get(in, base + i, ib, is);
            if (v > mx) mx = v;
        }
        uint32_t sum_u = 0; /* Q12.19, wrapping like the int32 reference sum */
        for (uint32_t i = 0; i < C; i++) {
            const int32_t diff = tn_get(in, base + i, ib, is) - mx;
            if (diff >= l->diff_min)
                sum_u += (uint32_t)tn_rdbpot(tn_exp_neg(tn_softmax_scaled(l, diff)), 12);
        }
        const int32_t sum = (int32_t)sum_u;
        uint64_t mag = sum < 0 ? (uint64_t)(-(int64_t)sum) : (uint64_t)sum;
        int32_t bit_length = 0;
        while (mag) { bit_length++; mag >>= 1; }
        const int32_t headroom_plus_one = 32 - bit_length;
        const int32_t shifted_minus_one = tn_wrap((int64_t)sum * ((int64_t)1 << headroom_plus_one)
                                                  - ((int64_t)1 << 31));
        const int32_t scale = tn_one_over_one_plus_x(shifted_minus_one);
        const int32_t exponent = (12 - headroom_plus_one) + 31 - 8;
        for (uint32_t i = 0; i < C; i++) { /* reads element i, then writes it: in-place safe */
            const int32_t diff = tn_get(in, base + i, ib, is) - mx;
            int64_t y = -128;
            if (diff >= l->diff_min) {
                const int32_t e = tn_exp_neg(tn_softmax_scaled(l, diff));
                y = tn_rdbpot(tn_srdhm(scale, e), exponent) - 128;
                y = y < -128 ? -128 : (y > 127 ? 127 : y);
            }
            tn_set(out, base + i, ob, (uint32_t)tn_clamp(y, l->act_lo, l->act_hi));
        }
    }
}

/* One entry point per kernel, so that a generated model.c calling them directly links only the
 * kernels its steps use (-ffunction-sections, --gc-sections); tn_run dispatches on l->kind. */
void tn_run_compute(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out)
{
    tn_compute(l, in[0], l->fuse_add ? in[1] : in[0], out);
}
void tn_run_pool(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out) { tn_pool(l, in[0], out); }
void tn_run_add(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out) { tn_add(l, in[0], in[1], out); }
void tn_run_concat(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out) { tn_concat(l, in, out); }
void tn_run_pad(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out) { tn_pad(l, in[0], out); }
void tn_run_quantize(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out) { tn_quantize(l, in[0], out); }
void tn_run_softmax(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out) { tn_softmax(l, in[0], out); }

void tn_run(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out)
{
    switch (l->kind) {
    case TN_MAXPOOL:
    case TN_AVGPOOL: tn_run_pool(l, in, out); break;
    case TN_ADD: tn_run_add(l, in, out); break;
    case TN_CONCAT: tn_run_concat(l, in, out); break;
    case TN_PAD: tn_run_pad(l, in, out); break;
    case TN_QUANTIZE: tn_run_quantize(l, in, out); break;
    case TN_SOFTMAX: tn_run_softmax(l, in, out); break;
    default: tn_run_compute(l, in, out); break;
    }
}

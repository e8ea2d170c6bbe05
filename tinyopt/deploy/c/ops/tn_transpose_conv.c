/* tn_transpose_conv.c: a transposed convolution on packed codes, TFLite's int8 TRANSPOSE_CONV and
 * the sub-byte path's 2/4/8-bit tensors and weights (tinyopt/integer/ops/transpose_conv.py says
 * the arithmetic; tests/test_op_transpose_conv.py and tests/test_op_subbyte_transpose_conv.py
 * check this kernel against it). TFLite scatters each input pixel into the output; here each
 * output (oy, ox, oc) gathers the same products: tap (ky, kx) reads input (iy, ix) with
 * iy sh - pad_t + ky = oy (and likewise for x), so the int32 sum (wrap-around, as the
 * reference's int32 scratch) is the same without a scratch buffer. Then bias[oc], (m0, n0) (per
 * layer or per channel) in the step's rounding, z_out, [act_lo, act_hi]. Weights: rows
 * [c_out][ky][kx][c_in] of w_bits-bit unsigned codes, each row from a byte boundary
 * (w_row_bytes), zero point wzp (1 or c_out entries). Not in place. */
#include "tinyopt_nn.h"
#include "tn_arith.h"

/* The accumulator (without bias, modulo 2^32) of output (oy, ox, oc). INT8 selects the int8
 * loads (8-bit weights, int8 input) at compile time; otherwise packed element reads. */
TN_INLINE uint32_t tn_tc_acc(const tn_layer_t *l, const uint8_t *x, int32_t oy, int32_t ox,
                             uint32_t oc, int int8)
{
    const int32_t H = l->in.h, W = l->in.w, KH = l->k_h, KW = l->k_w;
    const int32_t SH = l->stride_h, SW = l->stride_w;
    const uint32_t C = l->in.c, xb = l->in.bits, xs = l->in.is_signed, wb = l->w_bits;
    const uint32_t zx = (uint32_t)l->in.zero_point;
    const uint32_t zw = l->wzp[l->n_wzp == 1u ? 0u : oc];
    const uint8_t *wr = l->w + (uint32_t)l->w_row_bytes * oc;
    uint32_t acc = 0; /* modulo 2^32, as the reference's int32 sums */
    for (int32_t ky = 0; ky < KH; ky++) {
        const int32_t ty = oy + l->pad_t - ky; /* = iy * SH */
        if (ty < 0 || ty % SH != 0 || ty / SH >= H) continue;
        for (int32_t kx = 0; kx < KW; kx++) {
            const int32_t tx = ox + l->pad_l - kx;
            if (tx < 0 || tx % SW != 0 || tx / SW >= W) continue;
            const uint32_t xi = ((uint32_t)(ty / SH) * (uint32_t)W + (uint32_t)(tx / SW)) * C;
            const uint32_t wi = (uint32_t)(ky * KW + kx) * C;
            if (int8) {
                const int8_t *xp = (const int8_t *)x + xi;
                const uint8_t *wp = wr + wi;
                for (uint32_t k = 0; k < C; k++)
                    acc += ((uint32_t)wp[k] - zw) * ((uint32_t)(int32_t)xp[k] - zx);
            } else {
                for (uint32_t k = 0; k < C; k++)
                    acc += ((uint32_t)tn_get(wr, wi + k, wb, 0u) - zw)
                           * ((uint32_t)tn_get(x, xi + k, xb, xs) - zx);
            }
        }
    }
    return acc;
}

void tn_run_transpose_conv(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out)
{
    const uint32_t CO = l->out.c, ob = l->out.bits;
    const int int8 = l->in.bits == 8u && l->in.is_signed && l->w_bits == 8u;
    uint32_t o = 0;
    for (int32_t oy = 0; oy < (int32_t)l->out.h; oy++) {
        for (int32_t ox = 0; ox < (int32_t)l->out.w; ox++) {
            for (uint32_t oc = 0; oc < CO; oc++, o++) {
                uint32_t acc = int8 ? tn_tc_acc(l, in[0], oy, ox, oc, 1)
                                    : tn_tc_acc(l, in[0], oy, ox, oc, 0);
                acc += (uint32_t)l->bias[oc];
                const uint32_t m = l->n_m == 1u ? 0u : oc;
                const int64_t y = tn_requant_k((int32_t)acc, l->m0[m], l->n0[m], l->rounding)
                                  + l->out.zero_point;
                tn_set(out, o, ob, (uint32_t)tn_clamp(y, l->act_lo, l->act_hi));
            }
        }
    }
}

/* tn_mul.c: the element-wise product of two tensors of packed codes, TFLite's int8 MUL and the
 * sub-byte path's 2/4/8-bit mul (tinyopt/integer/ops/mul.py says the arithmetic;
 * tests/test_op_mul.py and tests/test_op_subbyte_mul.py check this kernel against it):
 * (a - z_a)(b - z_b) in int32, requantized by (m0[0], n0[0]) in the step's rounding, plus z_out,
 * clamped to [act_lo, act_hi]. in[0] has the output's size; in[1] holds `outer` elements: the
 * output's size, or C (one value per channel, broadcast over H and W of the HWC output: element i
 * reads in[1][i % C]). in2_zero_point is in[1]'s zero point, w_bits its bits (a mul has no
 * weights), its signedness in[0]'s.
 *
 * In place: the planner may put the output over an input of the same byte size, at the same
 * address (element i is read before it is written). With packed codes of different widths that is
 * not enough: a wider output element could overwrite input elements not yet read. So the generic
 * loop walks forward when the output is no wider than the input it overwrites (a write to element i
 * stays below that input's element i + 1) and backward otherwise (it stays above element i - 1). */
#include "tinyopt_nn.h"
#include "tn_arith.h"

/* The product of element i of in[0] and element j of in[1], requantized and clamped. */
TN_INLINE int32_t tn_mul1(const tn_layer_t *l, int32_t a, int32_t b, int32_t zb)
{
    const int32_t prod = (a - l->in.zero_point) * (b - zb); /* |.| <= 255^2 */
    const int64_t y = tn_requant_k(prod, l->m0[0], l->n0[0], l->rounding) + l->out.zero_point;
    return tn_clamp(y, l->act_lo, l->act_hi);
}

void tn_run_mul(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out)
{
    const uint32_t n = (uint32_t)l->out.h * l->out.w * l->out.c;
    const uint32_t nb = l->outer;
    const uint32_t ab = l->in.bits, bb = l->w_bits, ob = l->out.bits;
    const uint32_t s = l->in.is_signed;
    const int32_t zb = l->in2_zero_point;
    if (ab == 8u && bb == 8u && ob == 8u && s) { /* int8 (TFLite): plain byte loads */
        const int8_t *a = (const int8_t *)in[0], *b = (const int8_t *)in[1];
        uint32_t j = 0; /* i % nb, without a division per element */
        for (uint32_t i = 0; i < n; ++i) {
            out[i] = (uint8_t)(int8_t)tn_mul1(l, a[i], b[j], zb);
            if (++j == nb) j = 0;
        }
        return;
    }
    /* the width of the input the output overwrites (none: any order is right) */
    const uint32_t under = out == in[0] ? ab : (out == in[1] ? bb : ob);
    if (ob <= under) {
        uint32_t j = 0;
        for (uint32_t i = 0; i < n; ++i) {
            const int32_t v = tn_mul1(l, tn_get(in[0], i, ab, s), tn_get(in[1], j, bb, s), zb);
            tn_set(out, i, ob, (uint32_t)v);
            if (++j == nb) j = 0;
        }
    } else if (n) {
        uint32_t j = (n - 1u) % nb;
        for (uint32_t i = n; i-- > 0;) {
            const int32_t v = tn_mul1(l, tn_get(in[0], i, ab, s), tn_get(in[1], j, bb, s), zb);
            tn_set(out, i, ob, (uint32_t)v);
            j = j ? j - 1u : nb - 1u;
        }
    }
}

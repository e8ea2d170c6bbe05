/* tn_mul.c: TFLite's int8 MUL (tinyopt/integer/ops/mul.py says the arithmetic;
 * tests/test_op_mul.py checks this kernel against it): (a - z_a)(b - z_b) in int32, requantized
 * by (m0[0], n0[0]) in the step's rounding, plus z_out, clamped to [act_lo, act_hi]. in[0] has
 * the output's size; in[1] holds `outer` elements: the output's size, or C (one value per
 * channel, broadcast over H and W of the HWC output: element i reads in[1][i % C]).
 * in2_zero_point is in[1]'s zero point. May run in place over an input of the output's size
 * (element i is read before it is written). */
#include "tinyopt_nn.h"
#include "tn_arith.h"

void tn_run_mul(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out)
{
    const uint32_t n = (uint32_t)l->out.h * l->out.w * l->out.c;
    const uint32_t nb = l->outer;
    const int8_t *a = (const int8_t *)in[0], *b = (const int8_t *)in[1];
    const int32_t za = l->in.zero_point, zb = l->in2_zero_point;
    uint32_t j = 0; /* i % nb, without a division per element */
    for (uint32_t i = 0; i < n; ++i) {
        const int32_t prod = ((int32_t)a[i] - za) * ((int32_t)b[j] - zb); /* |.| <= 255^2 */
        const int64_t y = tn_requant_k(prod, l->m0[0], l->n0[0], l->rounding) + l->out.zero_point;
        out[i] = (uint8_t)(int8_t)tn_clamp(y, l->act_lo, l->act_hi);
        if (++j == nb) j = 0;
    }
}

/* tn_mul_const.c: TFLite's int8 MUL by a constant (tinyopt/integer/ops/mul_const.py says the
 * arithmetic; tests/test_op_mul_const.py checks this kernel against it): (x - z_x)(c - z_c) in
 * int32, requantized by (m0[0], n0[0]) in the step's rounding, plus z_out, clamped to
 * [act_lo, act_hi]. The constant's int8 codes are l->table (`outer` of them: 1, or one per
 * channel of the HWC output: element i reads table[i % outer]); in2_zero_point is z_c. May run
 * in place (element i is read before it is written). */
#include "tinyopt_nn.h"
#include "tn_arith.h"

void tn_run_mul_const(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out)
{
    const uint32_t n = (uint32_t)l->out.h * l->out.w * l->out.c;
    const uint32_t nb = l->outer;
    const int8_t *a = (const int8_t *)in[0], *b = (const int8_t *)l->table;
    const int32_t za = l->in.zero_point, zb = l->in2_zero_point;
    uint32_t j = 0; /* i % nb, without a division per element */
    for (uint32_t i = 0; i < n; ++i) {
        const int32_t prod = ((int32_t)a[i] - za) * ((int32_t)b[j] - zb); /* |.| <= 255^2 */
        const int64_t y = tn_requant_k(prod, l->m0[0], l->n0[0], l->rounding) + l->out.zero_point;
        out[i] = (uint8_t)(int8_t)tn_clamp(y, l->act_lo, l->act_hi);
        if (++j == nb) j = 0;
    }
}

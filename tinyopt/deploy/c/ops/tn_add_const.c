/* tn_add_const.c: TFLite's int8 ADD of a constant (tinyopt/integer/ops/add_const.py says the
 * arithmetic; tests/test_op_mul_const.py checks this kernel against it): tn_add1 (the reference
 * ADD of one pair: both operands minus their zero points, shifted left by left_shift, rescaled
 * by (m0[0], n0[0]) and (m0[1], n0[1]), the sum by (m0[2], n0[2]), plus z_out, clamped) with
 * the tensor first. The constant's int8 codes are l->table (`outer` of them: 1, or one per
 * channel of the HWC output: element i reads table[i % outer]); in2_zero_point is its zero
 * point. May run in place (element i is read before it is written). */
#include "tinyopt_nn.h"
#include "tn_arith.h"

void tn_run_add_const(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out)
{
    const uint32_t n = (uint32_t)l->out.h * l->out.w * l->out.c;
    const uint32_t nb = l->outer;
    const int8_t *a = (const int8_t *)in[0], *b = (const int8_t *)l->table;
    const int32_t za = l->in.zero_point, zb = l->in2_zero_point;
    uint32_t j = 0; /* i % nb, without a division per element */
    for (uint32_t i = 0; i < n; ++i) {
        const int32_t y = tn_add1(l->m0, l->n0, l->rounding, l->left_shift, (int32_t)a[i] - za,
                                  (int32_t)b[j] - zb, l->out.zero_point, l->act_lo, l->act_hi);
        out[i] = (uint8_t)(int8_t)y;
        if (++j == nb) j = 0;
    }
}

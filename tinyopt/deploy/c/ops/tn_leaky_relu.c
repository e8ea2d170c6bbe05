/* tn_leaky_relu.c: TFLite's LEAKY_RELU on tensors of at most 8 bits (tinyopt/integer/ops/
 * leaky_relu.py): x - z_in requantized by (m0[0], n0[0]) when >= 0, by (m0[1], n0[1]) (alpha)
 * when negative, plus z_out, clamped. May run in place (element i read before it is written). */
#include "tinyopt_nn.h"
#include "tn_arith.h"

void tn_run_leaky_relu(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out)
{
    const uint32_t n = (uint32_t)l->in.h * l->in.w * l->in.c;
    for (uint32_t i = 0; i < n; ++i) {
        const int32_t x = (int32_t)((uint32_t)tn_get(in[0], i, l->in.bits, l->in.is_signed)
                                    - (uint32_t)l->in.zero_point);
        const int k = x >= 0 ? 0 : 1;
        const int64_t y = tn_requant_k(x, l->m0[k], l->n0[k], l->rounding) + l->out.zero_point;
        tn_set(out, i, l->out.bits, (uint32_t)tn_clamp(y, l->act_lo, l->act_hi));
    }
}

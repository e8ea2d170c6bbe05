/* tn_hard_sigmoid.c: the hard sigmoid (MobileNetV3's relu6(x + 3) / 6, or Keras'
 * clip(0.2 x + 0.5, 0, 1)), as the sub-byte Keras path lowers it: a lookup table
 * (tinyopt/integer/ops/hard_sigmoid.py builds it; tests/test_op_hard_sigmoid.py checks this
 * kernel against the simulator). out = table[code]: the input code read packed at the input's
 * width (1 to 8 bits, unsigned stored codes), the table entry written packed at the output's
 * width (the fixed grid [0, 1], zero point 0). The table holds 2^in.bits entries (the graph's
 * validation checks it). May run in place (element i is read before it is written, and writing
 * it changes no other element's bits). No floating point. */
#include "tinyopt_nn.h"
#include "tn_arith.h"

void tn_run_hard_sigmoid(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out)
{
    const uint32_t n = (uint32_t)l->in.h * l->in.w * l->in.c;
    const uint8_t *x = in[0];
    for (uint32_t i = 0; i < n; ++i)
        tn_set(out, i, l->out.bits, l->table[(uint32_t)tn_get(x, i, l->in.bits, 0)]);
}

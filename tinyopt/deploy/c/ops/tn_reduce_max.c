/* tn_reduce_max.c: TFLite's REDUCE_MAX over every axis but the channels, on int8 tensors of one
 * quantization (tinyopt/integer/ops/reduce_max.py; tests/test_op_reduce_max.py checks this
 * kernel against it): out[c] = max over the in.h * in.w positions of in[p * C + c]. Not in
 * place (the output is smaller, written while the input is read). */
#include "tinyopt_nn.h"

void tn_run_reduce_max(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out)
{
    const uint32_t c = l->in.c, positions = (uint32_t)l->in.h * l->in.w;
    const int8_t *x = (const int8_t *)in[0];
    int8_t *y = (int8_t *)out;
    for (uint32_t k = 0; k < c; ++k) y[k] = x[k];
    for (uint32_t p = 1; p < positions; ++p) {
        const int8_t *row = x + p * c;
        for (uint32_t k = 0; k < c; ++k)
            if (row[k] > y[k]) y[k] = row[k];
    }
}

/* tn_resize_nearest.c: TFLite's RESIZE_NEAREST_NEIGHBOR on (H, W, C) tensors of 2-, 4- or 8-bit
 * packed codes (tinyopt/integer/ops/resize_nearest.py; tests/test_op_resize_nearest.py and
 * tests/test_op_subbyte_resize.py check this kernel against it). The source indices were computed
 * at import (TFLite's float32 rule) and are in `table`: out.h source rows, then out.w source
 * columns, uint16 little-endian. Output pixel (i, j) is a copy of input pixel (rows[i], cols[j]):
 * the codes move unchanged (one quantization in and out), byte by byte at 8 bits, element by
 * element (tn_get / tn_set, the raw unsigned bits) below. Not in place. */
#include "tinyopt_nn.h"
#include "tn_arith.h"

static uint32_t tn_rn_index(const uint8_t *table, uint32_t k)
{
    return (uint32_t)table[2u * k] | ((uint32_t)table[2u * k + 1u] << 8);
}

void tn_run_resize_nearest(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out)
{
    const uint32_t c = l->out.c, in_row = (uint32_t)l->in.w * c, bits = l->in.bits;
    if (bits == 8u) {
        for (uint32_t i = 0; i < l->out.h; ++i) {
            const uint8_t *src_row = in[0] + tn_rn_index(l->table, i) * in_row;
            for (uint32_t j = 0; j < l->out.w; ++j) {
                const uint8_t *src = src_row + tn_rn_index(l->table, l->out.h + j) * c;
                for (uint32_t k = 0; k < c; ++k) *out++ = src[k];
            }
        }
        return;
    }
    uint32_t o = 0; /* the output element */
    for (uint32_t i = 0; i < l->out.h; ++i) {
        const uint32_t row = tn_rn_index(l->table, i) * in_row;
        for (uint32_t j = 0; j < l->out.w; ++j) {
            const uint32_t src = row + tn_rn_index(l->table, l->out.h + j) * c;
            for (uint32_t k = 0; k < c; ++k, ++o)
                tn_set(out, o, bits, (uint32_t)tn_get(in[0], src + k, bits, 0u));
        }
    }
}

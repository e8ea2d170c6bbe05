/* tn_hard_swish.c: TFLite's int8 HARD_SWISH, x * relu6(x + 3) / 6, in int16 fixed point
 * (tinyopt/integer/ops/hard_swish.py says the arithmetic; tests/test_op_hard_swish.py checks
 * this kernel against it). Descriptor fields: in / out zero points, m0 = {relu-ish multiplier,
 * output multiplier} (Q0.15), n0 = {relu-ish exponent, output exponent <= 0}. May run in place
 * (element i is read before it is written). */
#include "tinyopt_nn.h"
#include "tn_arith.h"

/* gemmlowp's SaturatingRoundingDoublingHighMul on int16 (C division truncates toward zero). */
static int16_t tn_hs_srdhm(int16_t a, int16_t b)
{
    if (a == INT16_MIN && b == INT16_MIN) return INT16_MAX;
    const int32_t ab = (int32_t)a * (int32_t)b;
    const int32_t nudge = ab >= 0 ? (1 << 14) : (1 - (1 << 14));
    return (int16_t)((ab + nudge) / (1 << 15));
}

/* TFLite's SaturatingDoublingHighMul: the same without the nudge. */
static int16_t tn_hs_sdhm(int16_t a, int16_t b)
{
    if (a == INT16_MIN && b == INT16_MIN) return INT16_MAX;
    return (int16_t)(((int32_t)a * (int32_t)b) / (1 << 15));
}

static int16_t tn_hs_sat_shl(int16_t x, int amount) /* amount in [0, 30] */
{
    const int64_t r = (int64_t)x * ((int64_t)1 << amount);
    return (int16_t)(r > INT16_MAX ? INT16_MAX : r < INT16_MIN ? INT16_MIN : r);
}

/* gemmlowp's RoundingDivideByPOT: half away from zero. */
static int16_t tn_hs_rdbpot(int16_t x, int e)
{
    if (e >= 16) return 0; /* |x| < 2^15: rounds to 0 for either sign (and no shift overflow) */
    const int32_t mask = (1 << e) - 1;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (int16_t)((x >> e) + (((int32_t)x & mask) > threshold ? 1 : 0));
}

void tn_run_hard_swish(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out)
{
    const uint32_t n = (uint32_t)l->in.h * l->in.w * l->in.c;
    if (l->table_bytes) { /* the sub-byte path's lookup-table form: packed codes, <= 8 bits */
        for (uint32_t i = 0; i < n; ++i)
            tn_set(out, i, l->out.bits, l->table[(uint32_t)tn_get(in[0], i, l->in.bits, 0)]);
        return;
    }
    const int16_t relu_mult = (int16_t)l->m0[0], out_mult = (int16_t)l->m0[1];
    const int relu_exp = l->n0[0], out_exp = l->n0[1];
    const int8_t *x = (const int8_t *)in[0];
    for (uint32_t i = 0; i < n; ++i) {
        const int16_t hires = (int16_t)(((int32_t)x[i] - l->in.zero_point) * (1 << 7));
        const int16_t pre_out = tn_hs_srdhm(hires, out_mult);
        int16_t reluish = hires;
        if (relu_exp > 0) reluish = tn_hs_sat_shl(reluish, relu_exp - 1);
        reluish = tn_hs_srdhm(reluish, relu_mult);
        if (relu_exp > 0) reluish = tn_hs_sat_shl(reluish, 1);
        if (relu_exp < 0) reluish = tn_hs_rdbpot(reluish, -relu_exp);
        reluish = (int16_t)(((int32_t)reluish + (1 << 15)) >> 1);
        int16_t y = tn_hs_rdbpot(tn_hs_sdhm(reluish, pre_out), -out_exp);
        y = (int16_t)(uint16_t)((uint16_t)y + (uint16_t)l->out.zero_point); /* int16 wrap */
        out[i] = (uint8_t)(int8_t)(y > 127 ? 127 : y < -128 ? -128 : y);
    }
}

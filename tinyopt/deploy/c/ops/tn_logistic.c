/* tn_logistic.c: TFLite's int8 LOGISTIC (sigmoid), output scale 1/256 and zero point -128
 * (tinyopt/integer/ops/logistic.py says the arithmetic; tests/test_op_logistic.py checks this
 * kernel against it). Two forms, as the two runtimes compute it:
 *   a table (LiteRT, and the sub-byte Keras path at any width <= 8): out = table[code], codes
 *   read and written packed at the tensors' widths (8 bits: the int8 byte, LiteRT's index);
 *   otherwise (TFLite Micro): gemmlowp fixed point, m0[0] / n0[0] the input multiplier and left
 *   shift to Q4.27, inputs at or beyond the radius floor(15 2^27 / 2^n0) saturate.
 * May run in place (element i is read before it is written). No floating point. */
#include "tinyopt_nn.h"
#include "tn_arith.h"

/* gemmlowp's SaturatingRoundingDoublingHighMul: round(a b / 2^31), ties up (the nudge and the
 * truncating division of gemmlowp give the floor of (a b + 2^30) / 2^31 for both signs). */
static int32_t tn_lg_srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) return INT32_MAX;
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

/* gemmlowp's RoundingDivideByPOT: x / 2^e rounded half away from zero. */
static int32_t tn_lg_rdbpot(int32_t x, int e)
{
    const int32_t mask = (int32_t)(((int64_t)1 << e) - 1);
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> e) + ((x & mask) > threshold ? 1 : 0);
}

/* int32 addition that wraps like a 32-bit register (gemmlowp's raw adds). */
static int32_t tn_lg_add(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

/* gemmlowp's exp_on_negative_values for Q4.27 inputs a <= 0, as Q0.31. */
static int32_t tn_lg_exp_q4(int32_t a)
{
    static const int32_t mult[6] = {1672461947, 1302514674, 790015084, 290630308, 39332535,
                                    720401}; /* exp(-2^k), k = -2 .. 3, in Q0.31 */
    const int32_t quarter = 1 << 25;          /* 1/4 in Q4.27 */
    if (a == 0) return INT32_MAX;
    const int32_t a_mod = (a & (quarter - 1)) - quarter; /* in [-1/4, 0) */
    const int32_t x = tn_lg_add(a_mod * 16, 1 << 28);    /* Rescale<0> (exact), + 1/8 */
    const int32_t x2 = tn_lg_srdhm(x, x), x3 = tn_lg_srdhm(x2, x), x4 = tn_lg_srdhm(x2, x2);
    const int32_t poly = tn_lg_rdbpot(
        tn_lg_add(tn_lg_srdhm(tn_lg_add(tn_lg_rdbpot(x4, 2), x3), 715827883), x2), 1);
    const int32_t c = 1895147668; /* exp(-1/8) in Q0.31 */
    int32_t result = tn_lg_add(c, tn_lg_srdhm(c, tn_lg_add(x, poly)));
    const uint32_t remainder = (uint32_t)a_mod - (uint32_t)a;
    for (int k = 0; k < 6; ++k)
        if (remainder & (1u << (27 - 2 + k))) result = tn_lg_srdhm(result, mult[k]);
    return result;
}

/* gemmlowp's one_over_one_plus_x_for_x_in_0_1 (Q0.31 in and out, Newton-Raphson in Q2.29). */
static int32_t tn_lg_one_over_one_plus_x(int32_t a)
{
    const int64_t sum = (int64_t)a + INT32_MAX;
    const int32_t half = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2); /* RoundingHalfSum */
    int32_t x = tn_lg_add(1515870810, tn_lg_srdhm(half, -1010580540)); /* 48/17 - 32/17 d */
    for (int i = 0; i < 3; ++i) {
        const int32_t one_minus = (int32_t)((uint32_t)(1 << 29) - (uint32_t)tn_lg_srdhm(half, x));
        const int32_t t = tn_lg_srdhm(x, one_minus); /* Rescale<2>: saturating x 4 */
        const int32_t t4 = t > (INT32_MAX >> 2) ? INT32_MAX : t < -(INT32_MAX >> 2) ? INT32_MIN : t * 4;
        x = tn_lg_add(x, t4);
    }
    return x > (INT32_MAX >> 1) ? INT32_MAX : x < -(INT32_MAX >> 1) ? INT32_MIN : x * 2;
}

/* TFLM's reference_integer_ops::Logistic of one element, d = x - z_in. */
static int8_t tn_lg_fixed(int32_t d, int32_t mult, int shift, int32_t radius)
{
    if (d <= -radius) return -128;
    if (d >= radius) return 127;
    /* MultiplyByQuantizedMultiplier with a left shift: |d| 2^shift < 15 2^27 fits int32 */
    const int32_t q4 = tn_lg_srdhm((int32_t)((uint32_t)d << shift), mult);
    int32_t r;
    if (q4 == 0) {
        r = 1 << 30; /* exactly 1/2 */
    } else {
        const int32_t pos = tn_lg_one_over_one_plus_x(tn_lg_exp_q4(q4 > 0 ? -q4 : q4));
        r = q4 > 0 ? pos : INT32_MAX - pos;
    }
    int32_t y = tn_lg_rdbpot(r, 23) - 128;
    return (int8_t)(y > 127 ? 127 : y < -128 ? -128 : y);
}

void tn_run_logistic(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out)
{
    const uint32_t n = (uint32_t)l->in.h * l->in.w * l->in.c;
    const uint8_t *x = in[0];
    if (l->table_bytes) { /* packed codes of any width <= 8 (8 bits: one byte each) */
        for (uint32_t i = 0; i < n; ++i)
            tn_set(out, i, l->out.bits, l->table[(uint32_t)tn_get(x, i, l->in.bits, 0)]);
        return;
    }
    const int shift = l->n0[0];
    const int32_t radius = (int32_t)(((int64_t)15 << 27) >> shift);
    for (uint32_t i = 0; i < n; ++i)
        out[i] = (uint8_t)tn_lg_fixed((int32_t)(int8_t)x[i] - l->in.zero_point, l->m0[0], shift,
                                      radius);
}

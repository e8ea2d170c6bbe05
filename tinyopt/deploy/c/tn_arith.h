/* tn_arith.h: the element-level arithmetic shared by the portable kernels (tinyopt_nn.c) and the
 * Cortex-M7 specialised kernels (tn_m7.h): packed element access, the three requantization
 * flavours, TFLite's int8 ADD of one element pair. One home per primitive: both kernel sets
 * call these, so they round identically (see tinyopt_nn.h for the conventions).
 */
#ifndef TN_ARITH_H
#define TN_ARITH_H

#include <stdint.h>
#include "tinyopt_nn.h"

/* Every step inlines its kernel, specialised to the step's constants: the Cortex-M7 kernels
 * rely on it for their speed. A host build may define TN_INLINE as plain "static inline"
 * (tinyopt.deploy.mcu.HOST_CFLAGS does): the same C arithmetic, about three times less CPU to
 * compile, the compiler choosing what to inline. Without optimisation (-O0, a debug build) the
 * kernels are not forced inline either: nothing folds the step's constants there, and a forced-
 * inline VWW step outgrew the Thumb-2 branch range. */
#ifndef TN_INLINE
#if defined(__GNUC__) && defined(__OPTIMIZE__)
#define TN_INLINE static inline __attribute__((always_inline))
#define TN_INLINE_FORCED 1
#else
#define TN_INLINE static inline
#endif
#endif

/* TN_FORMS_ONLY(ok), a kernel's first statement: ok says the step's form parameters are among
 * those its unit declared (TN_M7_<KERNEL>_FORMS, written by the export before tn_m7.h). GCC
 * optimises a forced-inline kernel's body once on its own, every form included, before copying
 * it into each step; on the path past this check it drops the undeclared forms first, so each
 * copy is smaller (VWW's model.c: 4.2 -> 2.9 s of GCC, the same object code). A step outside the
 * declared forms is a build error (the call below is left in it), never another path. Only where
 * the kernels are forced inline: a body compiled standing alone keeps every form. */
#if defined(TN_INLINE_FORCED) && defined(__has_attribute)
#if __has_attribute(error) && __has_attribute(noreturn)
extern void tn_undeclared_form(void) __attribute__((noreturn, error(
    "a step passes a kernel form its unit did not declare (TN_M7_*_FORMS before tn_m7.h): "
    "regenerate the C with tinyopt.deploy.codegen.export_c; for several models in one unit, "
    "define each TN_M7_*_FORMS(...) as 1 (or their union) before the first")));
#define TN_FORMS_ONLY(ok) do { if (!(ok)) tn_undeclared_form(); } while (0)
#endif
#endif
#ifndef TN_FORMS_ONLY
#define TN_FORMS_ONLY(ok) ((void)0)
#endif

/* Element i of a packed tensor, as an int32 value (sign-extended when is_signed). */
TN_INLINE int32_t tn_get(const uint8_t *p, uint32_t i, uint32_t bits, uint32_t is_signed)
{
    uint32_t v;
    if (bits == 8u) {
        v = p[i];
    } else if (bits < 8u) {
        uint32_t bit = i * bits;
        v = ((uint32_t)p[bit >> 3] >> (bit & 7u)) & ((1u << bits) - 1u);
    } else if (bits == 16u) {
        v = (uint32_t)p[2u * i] | ((uint32_t)p[2u * i + 1u] << 8);
    } else {
        const uint8_t *q = p + 4u * i;
        v = (uint32_t)q[0] | ((uint32_t)q[1] << 8) | ((uint32_t)q[2] << 16) | ((uint32_t)q[3] << 24);
    }
    if (is_signed && bits < 32u) {
        uint32_t m = 1u << (bits - 1u);
        v = (v ^ m) - m; /* sign extension, modulo 2^32 */
    }
    return (int32_t)v;
}

/* Store the low `bits` bits of v as element i (read-modify-write for sub-byte widths). */
TN_INLINE void tn_set(uint8_t *p, uint32_t i, uint32_t bits, uint32_t v)
{
    if (bits == 8u) {
        p[i] = (uint8_t)v;
    } else if (bits < 8u) {
        uint32_t bit = i * bits, mask = ((1u << bits) - 1u) << (bit & 7u);
        uint8_t *b = p + (bit >> 3);
        *b = (uint8_t)((*b & ~mask) | ((v << (bit & 7u)) & mask));
    } else if (bits == 16u) {
        p[2u * i] = (uint8_t)v;
        p[2u * i + 1u] = (uint8_t)(v >> 8);
    } else {
        uint8_t *q = p + 4u * i;
        q[0] = (uint8_t)v; q[1] = (uint8_t)(v >> 8); q[2] = (uint8_t)(v >> 16); q[3] = (uint8_t)(v >> 24);
    }
}

/* x << s in a 32-bit register (0 <= s <= 32): the bits that stay, as int32. */
static inline int32_t tn_shl32(int32_t x, uint32_t s)
{
    return (int32_t)(uint32_t)((uint64_t)(uint32_t)x << s);
}

TN_INLINE int64_t tn_requant_k(int32_t phi, int32_t m0, int8_t n0, uint8_t rounding)
{
    int32_t n = (int32_t)n0;
    if (rounding == TN_FLOOR) {
        /* CMix-NN (docs/integer.md#kernel-arithmetic-step-by-step): n_zero = -(n0 + 1); t = phi << n1 (int32); high word of t * m0;
         * arithmetic shift right by n2: floor(phi * m0 / 2^(31 - n0)) without overflow. */
        uint32_t n1 = (uint32_t)(n + 1 > 32 ? 32 : (n + 1 < 0 ? 0 : n + 1));
        int32_t n2 = -(n + 1) > 63 ? 63 : (-(n + 1) < 0 ? 0 : -(n + 1));
        int32_t t = tn_shl32(phi, n1);
        int64_t h = ((int64_t)t * (int64_t)m0) >> 32;
        return h >> n2;
    }
    if (rounding == TN_TFL_SINGLE) {
        /* (phi * m0 + 2^(30 - n0)) >> (31 - n0); the exporter checked n0 in [-31, 30]. */
        int32_t total = 31 - n;
        return ((int64_t)phi * (int64_t)m0 + ((int64_t)1 << (total - 1))) >> total;
    }
    {
        /* gemmlowp: x = phi << max(n0, 0) (int32); h = floor((x * m0 + 2^30) / 2^31);
         * rounding divide by 2^max(-n0, 0), half away from zero. */
        uint32_t left = (uint32_t)(n > 32 ? 32 : (n < 0 ? 0 : n));
        int32_t right = -n > 62 ? 62 : (-n < 0 ? 0 : -n);
        int32_t x = tn_shl32(phi, left);
        int64_t h = ((int64_t)x * (int64_t)m0 + ((int64_t)1 << 30)) >> 31;
        int64_t mask = ((int64_t)1 << right) - 1;
        int64_t threshold = (mask >> 1) + (h < 0 ? 1 : 0);
        return (h >> right) + ((h & mask) > threshold ? 1 : 0);
    }
}

/* TFLite's int8 ADD of one element pair: da, db are the inputs minus their zero points. */
TN_INLINE int32_t tn_add1(const int32_t *m0, const int8_t *n0, uint8_t rounding, uint32_t shift,
                          int32_t da, int32_t db, int32_t z_out, int32_t lo, int32_t hi)
{
    /* (x - z) << left_shift in a 32-bit register, as the reference kernel */
    const int32_t xa = tn_shl32(da, shift), xb = tn_shl32(db, shift);
    const int64_t sum = tn_requant_k(xa, m0[0], n0[0], rounding)
                        + tn_requant_k(xb, m0[1], n0[1], rounding);
    int64_t y = tn_requant_k((int32_t)sum, m0[2], n0[2], rounding) + z_out;
    if (y < lo) y = lo;
    if (y > hi) y = hi;
    return (int32_t)y;
}

static inline int32_t tn_clamp(int64_t y, int32_t lo, int32_t hi)
{
    return (int32_t)(y < lo ? lo : (y > hi ? hi : y));
}

#endif

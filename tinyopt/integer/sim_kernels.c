/* Host kernels of the simulator's fast engine (tinyopt/integer/sim_fast.py), compiled once with
 * the host C compiler and loaded with ctypes. They compute exactly what the numpy reference
 * engine (tinyopt/integer/sim.py) computes, in the same integer arithmetic:
 *
 * - accumulators: Phi = sum (x_u - zc) * w over the taps, where x_u = x + s is the input code
 *   moved to [0, 255] (s = 128 for signed 8-bit inputs) and zc = z_x + s. The kernels compute
 *   sum x_u * w in int32 (exact: the Python side checks |sum| < 2^31 statically) and the
 *   constant - zc * sum w is folded into the int64 bias by the caller.
 * - requantization (requant_row): the three flavours of sim.py in int64, used only where the
 *   caller has proven statically that no int32 overflow can occur (then the reference engine's
 *   wrap / check steps are the identity).
 *
 * Signed left shifts go through uint64_t (a left shift of a negative int64_t is undefined in C);
 * right shifts of negative values are arithmetic in GCC and Clang (floor), as numpy's. */
#include <stdint.h>
#include <string.h>

#if defined(__AVX512F__) && defined(__AVX512VNNI__)
#include <immintrin.h>
#define TO_VNNI 1
#endif

int to_has_vnni(void) {
#ifdef TO_VNNI
    return 1;
#else
    return 0;
#endif
}

/* The low 64 bits of a product (the product itself: no operand pair here overflows int64).
 * Written on uint64_t so that GCC does not turn "product >> shift" into a 128-bit high-part
 * multiply, which it cannot vectorize. */
static inline int64_t mul64(int64_t a, int64_t b) { return (int64_t)((uint64_t)a * (uint64_t)b); }

/* One element of each flavour (x = Phi + bias, int64; no overflow by the caller's proof). */
static inline int64_t rq_floor(int64_t x, int64_t m, int64_t n1, int64_t n2) {
    int64_t t = (int64_t)((uint64_t)x << n1);
    return (mul64(t, m) >> 32) >> n2;
}
static inline int64_t rq_single(int64_t x, int64_t m, int64_t total, int64_t round) {
    return (mul64(x, m) + round) >> total;  /* round = 2^(total - 1) */
}
static inline int64_t rq_double(int64_t x, int64_t m, int64_t left, int64_t right, int64_t mask,
                                int64_t half) {
    /* the reference's (h >> right) + ((h & mask) > (mask >> 1) + (h < 0)) with mask =
     * 2^right - 1 and half = mask >> 1, written without booleans so that it vectorizes: h >> 63
     * is -1 for h < 0, and (t - r) >> 63 is -1 when r > t (both far inside int64) */
    x = (int64_t)((uint64_t)x << left);
    int64_t h = (mul64(x, m) + ((int64_t)1 << 30)) >> 31;
    int64_t threshold = half - (h >> 63);
    return (h >> right) - ((threshold - (h & mask)) >> 63);
}
static inline int32_t clamp(int64_t y, int64_t lo, int64_t hi) {
    /* two selects (cmov / vpmaxsq, vpminsq), no branch: ReLU clamps half the values at random */
    y = y < lo ? lo : y;
    y = y > hi ? hi : y;
    return (int32_t)y;
}

/* Flavours: 0 raw int32 (no requantization), 1 floor, 2 tflite_single, 3 tflite_double.
 * rq holds 6 rows of c int64: bias, multiplier, a, b, d, e where (a, b) = (n1, n2) for floor;
 * (b, d) = (31 - shift, 2^(30 - shift)) for tflite_single; (a, b, d, e) = (left, right,
 * 2^right - 1, (2^right - 1) >> 1) for tflite_double. The powers of two come precomputed: a
 * variable shift of a constant keeps GCC from vectorizing. One loop per flavour, so that each
 * vectorizes over the channels. */
static inline void requant_row(const int32_t *acc, int32_t *out, int64_t n, const int64_t *rq,
                               int64_t c, int64_t c0, int64_t flavour, int64_t zp, int64_t lo,
                               int64_t hi) {
    const int64_t *bias = rq + c0, *mult = rq + c + c0, *a = rq + 2 * c + c0,
                  *b = rq + 3 * c + c0, *d = rq + 4 * c + c0, *e = rq + 5 * c + c0;
    int64_t i;
    if (flavour == 1) {
        for (i = 0; i < n; i++)
            out[i] = clamp(rq_floor(acc[i] + bias[i], mult[i], a[i], b[i]) + zp, lo, hi);
    } else if (flavour == 2) {
        for (i = 0; i < n; i++)
            out[i] = clamp(rq_single(acc[i] + bias[i], mult[i], b[i], d[i]) + zp, lo, hi);
    } else if (flavour == 3) {
        for (i = 0; i < n; i++)
            out[i] = clamp(rq_double(acc[i] + bias[i], mult[i], a[i], b[i], d[i], e[i]) + zp,
                           lo, hi);
    } else {
        for (i = 0; i < n; i++) out[i] = clamp(acc[i] + bias[i], lo, hi);
    }
}

/* The same with one (multiplier, a, b) for every element and no bias: int64 in, int64 out. */
static void requant_same(const int64_t *x, int64_t *out, int64_t n, const int64_t *rq,
                         int64_t flavour) {
    int64_t m = rq[1], a = rq[2], b = rq[3], d = rq[4], e = rq[5], i;
    if (flavour == 1) {
        for (i = 0; i < n; i++) out[i] = rq_floor(x[i], m, a, b);
    } else if (flavour == 2) {
        for (i = 0; i < n; i++) out[i] = rq_single(x[i], m, b, d);
    } else {
        for (i = 0; i < n; i++) out[i] = rq_double(x[i], m, a, b, d, e);
    }
}

/* int32 codes [n][h][w][c] -> uint8 (code + add) into a zero-point-padded [n][hp][wp][c4]
 * buffer (channels c..c4 and the border hold padval). */
void to_pack_u8(const int32_t *x, int64_t n, int64_t h, int64_t w, int64_t c, int64_t hp,
                int64_t wp, int64_t c4, int64_t top, int64_t left, int64_t add, int64_t padval,
                uint8_t *out) {
    memset(out, (int)padval, (size_t)(n * hp * wp * c4));
    for (int64_t i = 0; i < n; i++)
        for (int64_t y = 0; y < h; y++)
            for (int64_t xx = 0; xx < w; xx++) {
                const int32_t *src = x + ((i * h + y) * w + xx) * c;
                uint8_t *dst = out + ((i * hp + y + top) * wp + xx + left) * c4;
                for (int64_t ch = 0; ch < c; ch++) dst[ch] = (uint8_t)(src[ch] + add);
            }
}

/* im2col of a padded uint8 buffer: one row of k4 bytes per output pixel, taps in (ky, kx, c)
 * order, zero beyond kh * kw * c (those weights are zero). */
void to_im2col_u8(const uint8_t *x, int64_t n, int64_t oh, int64_t ow, int64_t sh, int64_t sw,
                  int64_t hp, int64_t wp, int64_t c, int64_t kh, int64_t kw, int64_t k4,
                  uint8_t *cols) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                uint8_t *row = cols + ((i * oh + oy) * ow + ox) * k4;
                int64_t k = 0;
                for (int64_t ky = 0; ky < kh; ky++)
                    for (int64_t kx = 0; kx < kw; kx++) {
                        /* a plain loop: c is small here (not a multiple of 4), a memcpy call
                         * per tap would cost more than the copy */
                        const uint8_t *src = x + ((i * hp + oy * sh + ky) * wp + ox * sw + kx) * c;
                        for (int64_t ch = 0; ch < c; ch++) row[k + ch] = src[ch];
                        k += c;
                    }
                for (; k < k4; k++) row[k] = 0;
            }
}

/* Walks the output pixels in order and gives each one's window origin in the input buffer,
 * without the integer divisions (tens of cycles each) that q -> (image, row, column) costs. */
typedef struct { int64_t i, oy, ox, oh, ow, sh, sw, hp, wp, c4; } cursor_t;

static inline int64_t cursor_base(const cursor_t *k) {
    return ((k->i * k->hp + k->oy * k->sh) * k->wp + k->ox * k->sw) * k->c4;
}
static inline void cursor_next(cursor_t *k) {
    if (++k->ox == k->ow) {
        k->ox = 0;
        if (++k->oy == k->oh) { k->oy = 0; k->i++; }
    }
}

/* Depthwise (channel multiplier already expanded): x uint8 [n][hp][wp][c], w int32 [taps][c],
 * toff[t] = offset of tap t from a pixel's window origin. acc: scratch of c int32. */
void to_depthwise(const uint8_t *x, int64_t n, int64_t oh, int64_t ow, int64_t sh, int64_t sw,
                  int64_t hp, int64_t wp, int64_t c, const int64_t *toff, int64_t taps,
                  const int32_t *w, const int64_t *rq, int64_t flavour, int64_t zp, int64_t lo,
                  int64_t hi, int32_t *acc, int32_t *out) {
    int64_t npix = n * oh * ow;
    cursor_t cur = {0, 0, 0, oh, ow, sh, sw, hp, wp, c};
    for (int64_t q = 0; q < npix; q++, cursor_next(&cur)) {
        const uint8_t *base = x + cursor_base(&cur);
        for (int64_t ch = 0; ch < c; ch++) acc[ch] = 0;
        for (int64_t t = 0; t < taps; t++) {
            const uint8_t *xt = base + toff[t];
            const int32_t *wt = w + t * c;
            for (int64_t ch = 0; ch < c; ch++) acc[ch] += (int32_t)xt[ch] * wt[ch];
        }
        requant_row(acc, out + q * c, c, rq, c, 0, flavour, zp, lo, hi);
    }
}

/* Depthwise with horizontal stride 1, one output row at a time: the taps of a row are
 * contiguous spans of ow * c bytes, so the products vectorize however few the channels are.
 * wrep: the weights tiled along the row, [taps][ow * c]; rq: requant_row's table tiled the same
 * way (6 rows of ow * c); acc: scratch of ow * c int32. */
void to_depthwise_rows(const uint8_t *x, int64_t n, int64_t oh, int64_t ow, int64_t sh,
                       int64_t hp, int64_t wp, int64_t c, int64_t kh, int64_t kw,
                       const int32_t *wrep, const int64_t *rq, int64_t flavour, int64_t zp,
                       int64_t lo, int64_t hi, int32_t *acc, int32_t *out) {
    int64_t len = ow * c;
    for (int64_t i = 0; i < n; i++)
        for (int64_t oy = 0; oy < oh; oy++) {
            for (int64_t j = 0; j < len; j++) acc[j] = 0;
            for (int64_t ky = 0; ky < kh; ky++)
                for (int64_t kx = 0; kx < kw; kx++) {
                    const uint8_t *src = x + ((i * hp + oy * sh + ky) * wp + kx) * c;
                    const int32_t *wt = wrep + (ky * kw + kx) * len;
                    for (int64_t j = 0; j < len; j++) acc[j] += (int32_t)src[j] * wt[j];
                }
            requant_row(acc, out + (i * oh + oy) * len, len, rq, len, 0, flavour, zp, lo, hi);
        }
}

#ifdef TO_VNNI
/* P pixels x T tiles of 16 output channels: acc[p][t] += 4-byte input groups (broadcast) times
 * the packed weights [g][cpad][4] (vpdpbusd: unsigned x signed bytes, int32 sums, no
 * saturation). Inlined with constant T so that the accumulators live in registers. */
#define P 4
static inline __attribute__((always_inline)) void vnni_block(
    int T, const uint8_t *x, const int64_t *base, const int64_t *off4, int64_t g4,
    const int8_t *w, int64_t cpad, int64_t c0, int32_t *tmp) {
    __m512i acc[P][4];
    for (int p = 0; p < P; p++)
        for (int t = 0; t < T; t++) acc[p][t] = _mm512_setzero_si512();
    for (int64_t g = 0; g < g4; g++) {
        const int8_t *wg = w + (g * cpad + c0) * 4;
        __m512i xb[P];
        for (int p = 0; p < P; p++) {
            int32_t v;
            memcpy(&v, x + base[p] + off4[g], 4);
            xb[p] = _mm512_set1_epi32(v);
        }
        for (int t = 0; t < T; t++) {
            __m512i wv = _mm512_loadu_si512((const void *)(wg + t * 64));
            for (int p = 0; p < P; p++) acc[p][t] = _mm512_dpbusd_epi32(acc[p][t], xb[p], wv);
        }
    }
    for (int p = 0; p < P; p++)
        for (int t = 0; t < T; t++) _mm512_storeu_si512((void *)(tmp + p * 64 + t * 16), acc[p][t]);
}

/* Convolution / dense: x uint8 [n][hp][wp][c4]; K = 4 * g4 bytes per output pixel at offsets
 * off4[g] .. off4[g] + 3 from the pixel's window origin; w int8 [g4][cpad][4]; out int32
 * [n * oh * ow][cout] codes (requantized and clamped). */
void to_conv_vnni(const uint8_t *x, int64_t n, int64_t oh, int64_t ow, int64_t sh, int64_t sw,
                  int64_t hp, int64_t wp, int64_t c4, const int64_t *off4, int64_t g4,
                  const int8_t *w, int64_t cpad, int64_t cout, const int64_t *rq,
                  int64_t flavour, int64_t zp, int64_t lo, int64_t hi, int32_t *out) {
    int64_t npix = n * oh * ow;
    int32_t tmp[P * 64];
    cursor_t cur = {0, 0, 0, oh, ow, sh, sw, hp, wp, c4};
    for (int64_t q0 = 0; q0 < npix; q0 += P) {
        int64_t base[P];
        for (int p = 0; p < P; p++) {  /* past the end: repeat the last pixel (not written) */
            base[p] = q0 + p < npix ? cursor_base(&cur) : base[p - 1];
            if (q0 + p < npix) cursor_next(&cur);
        }
        for (int64_t c0 = 0; c0 < cpad; c0 += 64) {
            int64_t tiles = (cpad - c0) / 16;
            switch (tiles >= 4 ? 4 : tiles) {
            case 1: vnni_block(1, x, base, off4, g4, w, cpad, c0, tmp); break;
            case 2: vnni_block(2, x, base, off4, g4, w, cpad, c0, tmp); break;
            case 3: vnni_block(3, x, base, off4, g4, w, cpad, c0, tmp); break;
            default: vnni_block(4, x, base, off4, g4, w, cpad, c0, tmp); break;
            }
            int64_t nc = cout - c0 < 64 ? cout - c0 : 64;
            for (int p = 0; p < P && q0 + p < npix; p++)
                requant_row(tmp + p * 64, out + (q0 + p) * cout + c0, nc, rq, cout, c0,
                            flavour, zp, lo, hi);
        }
    }
}
#endif

/* TFLite int8 ADD: a = (x0 - z0) << ls and b = (x1 - z1) << ls requantized with rq[0:6] and
 * rq[6:12] (one column of requant_row's table; the bias unused), their sum with rq[12:18],
 * plus zp, clamped. */
void to_add(const int32_t *x0, const int32_t *x1, int64_t count, int64_t z0, int64_t z1,
            int64_t ls, const int64_t *rq, int64_t flavour, int64_t zp, int64_t lo, int64_t hi,
            int32_t *out) {
    int64_t a[256], b[256], ra[256], rb[256];
    for (int64_t i0 = 0; i0 < count; i0 += 256) {
        int64_t m = count - i0 < 256 ? count - i0 : 256, i;
        for (i = 0; i < m; i++) {
            a[i] = (int64_t)((uint64_t)((int64_t)x0[i0 + i] - z0) << ls);
            b[i] = (int64_t)((uint64_t)((int64_t)x1[i0 + i] - z1) << ls);
        }
        requant_same(a, ra, m, rq, flavour);
        requant_same(b, rb, m, rq + 6, flavour);
        for (i = 0; i < m; i++) a[i] = ra[i] + rb[i];
        requant_same(a, ra, m, rq + 12, flavour);
        for (i = 0; i < m; i++) out[i0 + i] = clamp(ra[i] + zp, lo, hi);
    }
}

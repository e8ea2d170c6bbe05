/* tinyopt_nn.h: integer-only reference kernels for an exported tinyopt IntegerGraph.
 *
 * Portable C99, no malloc, no floating point. Every kernel computes exactly what tinyopt.integer.sim
 * computes (Python: tinyopt/sim.py), element by element:
 *   phi = bias[c] + sum (w - z_w[c]) * (x - z_x)     (int32, wrap-around like a 32-bit register)
 *   y   = requant(phi, m0[c], n0[c]) + z_out, clamped to [act_lo, act_hi]
 * with three requantization flavours: TN_FLOOR (CMix-NN, no rounding), TN_TFL_SINGLE and
 * TN_TFL_DOUBLE (TFLite single / double rounding).
 *
 * Tensors are HWC, flattened, and packed element by element LSB-first at their bit width
 * (1, 2, 4 or 8 bits: element j in byte j*bits/8 at bit (j*bits)%8; 16 or 32 bits: little-endian
 * bytes). A signed tensor holds two's-complement codes (int8 is simply the int8 byte).
 * Weights: one byte-aligned packed row per output channel (conv/pointwise [ky][kx][c_in],
 * dense [c_in]) or per tap (depthwise, [c] per (ky, kx)).
 *
 * Implementation-defined behaviour relied upon (true for gcc and clang on every target we
 * build for): uint32 -> int32 conversion is modulo 2^32, and >> of a negative signed integer is
 * an arithmetic shift. Signed overflow (undefined) is avoided by accumulating in uint32.
 */
#ifndef TINYOPT_NN_H
#define TINYOPT_NN_H

#include <stdint.h>

enum { TN_CONV = 0, TN_DEPTHWISE = 1, TN_DENSE = 2, TN_MAXPOOL = 3, TN_AVGPOOL = 4,
       TN_ADD = 5, TN_CONCAT = 6, TN_PAD = 7, TN_QUANTIZE = 8, TN_SOFTMAX = 9,
       /* an op with a kernel file of its own (tinyopt/deploy/c/ops/): the generated code calls
        * its entry point directly; tn_run does not dispatch it */
       TN_OP = 255 };
enum { TN_FLOOR = 0, TN_TFL_SINGLE = 1, TN_TFL_DOUBLE = 2 };

/* A tensor's geometry and number format. */
typedef struct {
    uint16_t h, w, c;
    uint8_t bits;       /* 1, 2, 4, 8, 16 or 32 */
    uint8_t is_signed;  /* two's-complement codes */
    int32_t zero_point;
} tn_tensor_t;

/* One step of the network: a compute layer (optionally fused with the max pool after it), a
 * stand-alone pool, or a DAG node (add, concat, pad, quantize, softmax). Field meanings follow
 * tinyopt.IntegerLayer. */
typedef struct {
    uint8_t kind;         /* TN_CONV (also pointwise), TN_DEPTHWISE, TN_DENSE, TN_*POOL */
    uint8_t rounding;     /* TN_FLOOR, TN_TFL_SINGLE, TN_TFL_DOUBLE */
    uint8_t requantize;   /* 0: output the raw int32 accumulator (logits) */
    uint8_t pad_zero;     /* 1: a padded input holds integer 0 (CMix-NN depthwise); 0: z_x */
    tn_tensor_t in, out;  /* out: the compute layer's own output (before a fused pool) */
    uint8_t k_h, k_w, stride_h, stride_w, pad_t, pad_l, depth_multiplier, w_bits;
    uint8_t dil_h, dil_w;  /* dilation between taps (0 or 1: none), TN_CONV / TN_DEPTHWISE */
    uint16_t w_row_bytes;  /* bytes per packed weight row */
    uint16_t n_wzp, n_m;   /* 1 (per layer) or C (per channel) */
    int32_t act_lo, act_hi;
    const uint8_t *w;
    const uint8_t *wzp;    /* weight zero points (unsigned codes, 0..255) */
    const int32_t *bias;
    const int32_t *m0;
    const int8_t *n0;
    /* the fused max pool (fuse_pool = 1) or the stand-alone pool's own window */
    uint8_t fuse_pool, pool_h, pool_w, pool_sh, pool_sw, pool_pt, pool_pl;
    uint16_t pool_out_h, pool_out_w;
    int32_t pool_lo, pool_hi;
    uint8_t avg_half_away; /* average pool division: 0 floor, 1 round half away from zero */
    /* DAG nodes. TN_ADD: out = requant(requant(a') + requant(b')) with x' = (x - z) << left_shift
     * and the three (m0, n0) pairs; TN_QUANTIZE: requant(x - z_in) by (m0[0], n0[0]); TN_SOFTMAX:
     * TFLite's int8 softmax over c, (m0[0], n0[0]) the input-beta multiplier and left shift;
     * TN_PAD: pad_t / pad_l, the padded pixels hold out.zero_point; TN_CONCAT: for each of the
     * `outer` outer indices, inner[k] elements of input k in turn. */
    uint8_t left_shift;
    int32_t in2_zero_point; /* TN_ADD: zero point of the second input */
    int32_t diff_min;       /* TN_SOFTMAX */
    uint16_t n_in;          /* TN_CONCAT: number of inputs */
    uint32_t outer;         /* TN_CONCAT */
    const uint32_t *inner;  /* TN_CONCAT */
    /* A compute step with fuse_add = 1 feeds its (clamped) output v into an ADD with in[1]:
     * v is the ADD's input number add_slot (0 or 1), in[1] the other; the step writes the ADD's
     * output (add_out_bits, add_out_zp, clamp [add_lo, add_hi]), element i of in[1] read just
     * before element i of the output is written (so the output may overwrite in[1]). The ADD's
     * multipliers are add_m0 / add_n0, its shift left_shift, its rounding add_rounding. */
    uint8_t fuse_add, add_slot, add_rounding, add_out_bits;
    int32_t add_other_zp, add_out_zp, add_lo, add_hi;
    const int32_t *add_m0;
    const int8_t *add_n0;
    /* ops with their own kernel file (tinyopt/deploy/c/ops/): constant bytes whose meaning the
     * op defines (a lookup table, ...), from IntegerLayer.table */
    const uint8_t *table;
    uint16_t table_bytes;
} tn_layer_t;

/* Bytes of a packed tensor of n elements at `bits`. */
uint32_t tn_bytes(uint32_t n, uint32_t bits);

/* Run one step: read in[0] (packed as l->in; TN_ADD, TN_CONCAT and fused adds read in[1], ...),
 * write `out`
 * (packed as the step's output). TN_ADD, TN_QUANTIZE (equal in and out bits) and TN_SOFTMAX may
 * run in place (out == in[0], or in[1] for TN_ADD): they read element i before writing it. */
void tn_run(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out);

/* tn_run's per-kind entry points (same arguments): calling them directly links only the kernels
 * a model uses. */
typedef void (*tn_kernel_fn)(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out);
void tn_run_compute(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out);
void tn_run_pool(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out);
void tn_run_add(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out);
void tn_run_concat(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out);
void tn_run_pad(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out);
void tn_run_quantize(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out);
void tn_run_softmax(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out);

/* The requantization flavours, exposed for unit tests: int32 accumulator -> value before the
 * output zero point and clamp. */
int64_t tn_requant(int32_t phi, int32_t m0, int8_t n0, uint8_t rounding);

#endif

"""A bit-exact integer simulator for :class:`tinyopt.integer.graph.IntegerGraph`, and its LiteRT
entry.

- :func:`run` computes, for a batch of integer inputs, exactly what the integer-only kernels
  compute: accumulators Phi = bias + sum (W - Z_w)(X - Z_x) (exact; int32 wrap-around emulated on
  request), then the requantization flavour (``layer.rounding``, default ``graph.rounding``),
  zero point and clamp. Flavours: ``"floor"`` (:func:`requant_floor`, CMix-NN,
  docs/integer.md#kernel-arithmetic-step-by-step),
  ``"tflite_double"`` (:func:`requant_tflite_double`, gemmlowp's rounding doubling high multiply
  then rounding divide by a power of two) and ``"tflite_single"``
  (:func:`requant_tflite_single`, the single-rounding ``MultiplyByQuantizedMultiplier``).
- :func:`run_tflite` runs a full-int8 ``.tflite`` through
  :func:`tinyopt.integer.from_litert.graph_from_tflite` (flavour "litert": LiteRT's reference
  kernels; "tflm": TensorFlow Lite Micro / CMSIS-NN). The graph is a DAG: nodes run in a
  topological order, one handler per node kind (:data:`HANDLERS`), including TFLite's int8 ADD,
  QUANTIZE and the fixed-point SOFTMAX (:func:`softmax_int8`, gemmlowp arithmetic).

Two engines, the same bits. ``run(..., engine="reference")`` is this module's numpy, the
readable definition of the arithmetic (and what generated C is checked against). The default
``engine="fast"`` runs every convolution, depthwise, dense and ADD node that it can prove exact
through the C kernels of :mod:`tinyopt.integer.sim_fast` (compiled once with the host compiler):
numpy cannot fuse the int64 requantization's dozen passes, and BLAS runs the skinny products of
these networks far below peak, while one C pass per layer (AVX-512 VNNI byte products, then the
flavour's int64 requantization vectorized over channels) is about ten times faster and makes the
simulator at least as fast as LiteRT's builtin kernels on the MLPerf Tiny models
(benchmarks/bench_sim_mlperf.py). Every other node, every node without the static no-overflow
proof (so ``wrap32`` and OverflowError are untouched), and every node when no C compiler works
runs on the reference engine. tests/test_sim_fast.py checks both engines bit for bit.

Exactness of the matrix products. Convolutions and dense layers are im2col + matmul. A float
matmul is used only where it is provably exact: every term |w - z_w| * |x - z_x| is an integer
<= wmax * xmax, so every partial sum, in any order and with or without FMA, is an integer of
magnitude <= K * wmax * xmax (K = fan-in). If that bound is below 2^24 (float32) or 2^53
(float64), every intermediate value is exactly representable, hence the float result is the exact
integer. The bound is computed per layer from the bits, the zero points and the fan-in
(:func:`exact_float_dtype`); above 2^53 the product is done in int64 (exact, slower).

Max-pool fusion (speed, exact). Every flavour's requantization is monotone non-decreasing in Phi
when m0 >= 0 and nothing overflows, and so are the bias add and the clamp; therefore
maxpool(requant(Phi)) = requant(maxpool(Phi)). Without ``trace`` and ``wrap32``, a compute layer
followed by a max pool is evaluated in that order when all its m0 >= 0 and int32 overflow is
excluded (statically from the bounds, or by checking every accumulator before pooling).
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer import sim_fast
from tinyopt.integer.arith import quantize_real
from tinyopt.integer.from_litert import graph_from_tflite
from tinyopt.integer.graph import COMPUTE_KINDS, IntegerGraph, IntegerLayer

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


# --------------------------------------------------------------------------------------------
# Requantization: each takes int64 accumulators (channels last) and per-channel or scalar
# (m0, n0) with M ~= m0 * 2^(n0 - 31); returns int64 before zero point and clamp.
# --------------------------------------------------------------------------------------------

def wrap32(x: np.ndarray) -> np.ndarray:
    """Two's-complement int32 wrap-around of int64 values (what a 32-bit register keeps)."""
    return ((np.asarray(x, np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def _check32(x: np.ndarray, what: str, layer: str) -> None:
    if x.size and (x.min() < INT32_MIN or x.max() > INT32_MAX):
        raise OverflowError(
            f"layer {layer!r}: {what} reaches [{x.min()}, {x.max()}], outside int32; the "
            "device's 32-bit arithmetic would wrap. Pass wrap32=True to emulate the "
            "wrap-around, or fix the layer's scales")


def _acc32(acc, wrap: bool, layer: str, checked: bool = False) -> np.ndarray:
    acc = np.asarray(acc, np.int64)
    if wrap:
        return wrap32(acc)
    if not checked:
        _check32(acc, "the accumulator", layer)
    return acc


def _shift_left(x, n, wrap: bool, checked: bool, layer: str, what: str) -> np.ndarray:
    """``x << n`` kept in int32 as the kernels do: wrapped (``wrap``) or checked to fit."""
    if not np.any(n > 0):
        return x
    x = x << n
    if wrap:
        return wrap32(x)
    if not checked:
        _check32(x, what, layer)
    return x


def requant_floor(acc, m0, n0, wrap: bool = False, layer: str = "?",
                  checked: bool = False) -> np.ndarray:
    """CMix-NN requantization (docs/integer.md#floor-requantization), without zero point and clamp.

    With n_zero = -(n0 + 1): n1 = max(-n_zero, 0), n2 = max(n_zero, 0); t = Phi << n1 (int32),
    h = high word of the 64-bit product t * m0 (floor of t * m0 / 2^32), result h >> n2 (floor).
    Without overflow this is floor(Phi * m0 / 2^(31 - n0)).

    Arguments:
        acc: accumulators Phi (integers), channels on the last axis.
        m0, n0: int32 multipliers (Q1.31) and int8 exponents, per channel or scalar.
        wrap: emulate int32 wrap-around of Phi and of Phi << n1 instead of raising.
        layer: name for error messages.
        checked: the caller has proven that Phi and Phi << n1 fit int32 (skips the check).

    Returns:
        int64 array, same shape as ``acc``.

    Raises:
        OverflowError: ``wrap`` is False and Phi or Phi << n1 leaves int32.
    """
    n0 = np.asarray(n0, np.int64)
    n1 = np.clip(n0 + 1, 0, 32)  # a shift by >= 32 leaves nothing of an int32
    n2 = np.clip(-(n0 + 1), 0, 63)  # >> 63 of an int64 already gives 0 or -1 (the floor)
    t = _acc32(acc, wrap, layer, checked)
    t = _shift_left(t, n1, wrap, checked, layer, "the accumulator shifted left by n1")
    return ((t * np.asarray(m0, np.int64)) >> 32) >> n2


def requant_tflite_single(acc, multiplier, shift, wrap: bool = False, layer: str = "?",
                   checked: bool = False) -> np.ndarray:
    """TFLite's single-rounding ``MultiplyByQuantizedMultiplier`` (``TFLITE_SINGLE_ROUNDING``):
    (Phi * multiplier + 2^(30 - shift)) >> (31 - shift), i.e. Phi * M rounded half up, in int64.

    Arguments, Returns and Raises: as :func:`requant_floor` (``shift`` is TFLite's exponent, n0);
    also ValueError for a negative multiplier or a shift outside [-31, 30].
    """
    shift = np.asarray(shift, np.int64)
    mult = np.asarray(multiplier, np.int64)
    if np.any(mult < 0) or np.any(shift < -31) or np.any(shift > 30):
        raise ValueError(f"layer {layer!r}: TFLite needs multipliers >= 0 and shifts in "
                         f"[-31, 30]")
    total = 31 - shift
    x = _acc32(acc, wrap, layer, checked)
    return (x * mult + (np.int64(1) << (total - 1))) >> total


def requant_tflite_double(acc, multiplier, shift, wrap: bool = False, layer: str = "?",
                          checked: bool = False) -> np.ndarray:
    """gemmlowp / TFLite double rounding: x = Phi * 2^max(shift, 0) (int32), then
    SaturatingRoundingDoublingHighMul(x, multiplier) = floor((x * multiplier + 2^30) / 2^31)
    (gemmlowp's nudge-and-truncate equals this floor for both signs), then RoundingDivideByPOT by
    max(-shift, 0) (round half away from zero).

    Arguments, Returns and Raises: as :func:`requant_tflite_single`.
    """
    shift = np.asarray(shift, np.int64)
    mult = np.asarray(multiplier, np.int64)
    if np.any(mult < 0):
        raise ValueError(f"layer {layer!r}: TFLite multipliers are non-negative")
    left = np.clip(shift, 0, 32)
    right = np.clip(-shift, 0, 62)
    x = _acc32(acc, wrap, layer, checked)
    x = _shift_left(x, left, wrap, checked, layer, "the accumulator shifted left")
    # The only saturating case of SRDHM is x = multiplier = INT32_MIN, impossible for mult >= 0.
    h = (x * mult + (1 << 30)) >> 31
    mask = (np.int64(1) << right) - 1
    threshold = (mask >> 1) + (h < 0)
    return (h >> right) + ((h & mask) > threshold)


REQUANT = {"floor": requant_floor, "tflite_single": requant_tflite_single,
           "tflite_double": requant_tflite_double}


def max_left_shift(rounding: str, n0) -> int:
    """The largest left shift the flavour applies to Phi before its int32 product."""
    n0 = np.asarray(n0, np.int64)
    if rounding == "floor":
        return int(np.clip(n0 + 1, 0, 32).max())
    if rounding == "tflite_double":
        return int(np.clip(n0, 0, 32).max())
    return 0


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------

def _value_range(bits: int, signed: bool) -> tuple[int, int]:
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def exact_float_dtype(fan_in: int, wmax: int, xmax: int):
    """float32 / float64 if a matmul with these integer bounds is provably exact in it (see the
    module docstring), else None (use int64)."""
    bound = int(fan_in) * int(wmax) * int(xmax)
    if bound < (1 << 24):
        return np.float32
    if bound < (1 << 53):
        return np.float64
    return None


def _centered_weights(layer: IntegerLayer) -> np.ndarray:
    """Weights minus their zero point(s), int64, in the layer's logical layout."""
    w = layer.unpacked_weights().astype(np.int64)
    zw = np.asarray(layer.weight_zero_point, np.int64)
    if layer.kind == "depthwise":  # [ky][kx][c]: channels last
        return w - zw
    return w - zw.reshape((-1,) + (1,) * (w.ndim - 1))  # c_out first


def _pad(xs: np.ndarray, layer: IntegerLayer) -> np.ndarray:
    """Pad centered inputs X - Z_x: with 0 (= padding with the zero point) or with -Z_x (=
    padding the raw integers with 0, CMix-NN's depthwise)."""
    top, bottom, left, right = layer.padding
    if not (top or bottom or left or right):
        return xs
    value = 0 if layer.pad_mode == "zero_point" else -layer.in_zero_point
    return np.pad(xs, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _taps(xp: np.ndarray, kh: int, kw: int, sh: int, sw: int, oh: int, ow: int):
    """The kh * kw strided views xp[:, ky + sh*i, kx + sw*j, :] (i < oh, j < ow), tap order."""
    return [xp[:, ky:ky + (oh - 1) * sh + 1:sh, kx:kx + (ow - 1) * sw + 1:sw]
            for ky in range(kh) for kx in range(kw)]


class _Prepared:
    """Per-layer constants computed once per run: centered weights in the matmul dtype, and the
    static accumulator bound that may prove int32 overflow impossible."""

    def __init__(self, layer: IntegerLayer, rounding: str):
        self.layer = layer
        self.rounding = rounding = layer.rounding or rounding
        self.monotone = False
        self.zero_points = [layer.in_zero_point]
        if layer.kind not in COMPUTE_KINDS:
            return
        w = _centered_weights(layer)
        lo, hi = _value_range(layer.in_bits, layer.in_signed)
        z = layer.in_zero_point
        xmax = max(abs(lo - z), abs(hi - z), abs(z))  # |x - z_x| for any input or padding
        wmax = int(np.abs(w).max(initial=0))
        self.bias = np.asarray(layer.bias, np.int64)
        if layer.kind == "depthwise":
            fan_in = w.shape[0] * w.shape[1]
            self.dtype = np.int32 if fan_in * wmax * xmax < (1 << 31) else np.int64
            self.w = w.astype(self.dtype)  # [kh, kw, c_out]
        else:
            if layer.kind == "dense":
                mat = w  # [c_out, c_in]
            else:  # [c_out, kh, kw, c_in] -> rows in im2col's (ky, kx, c) order
                mat = w.reshape(w.shape[0], -1)
            fan_in = mat.shape[1]
            self.dtype = exact_float_dtype(fan_in, wmax, xmax) or np.int64
            self.w = np.ascontiguousarray(mat.T.astype(self.dtype))
        bound = fan_in * wmax * xmax + int(np.abs(self.bias).max(initial=0))
        shift = max_left_shift(rounding, layer.n0) if layer.requantize else 0
        self.safe32 = (bound << shift) <= INT32_MAX  # overflow impossible: no data check needed
        self.monotone = layer.requantize and bool(np.all(np.asarray(layer.m0) >= 0))


def _compute(p: _Prepared, x: np.ndarray) -> np.ndarray:
    """Exact accumulators WITHOUT bias, in the layer's matmul dtype (integer-valued)."""
    layer = p.layer
    xs = x.astype(p.dtype) - p.dtype(layer.in_zero_point)
    n = len(x)
    if layer.kind == "dense":  # rows of c_in features (one row unless TFLite keep_num_dims)
        return (xs.reshape(-1, p.w.shape[0]) @ p.w).reshape((n,) + tuple(layer.out_shape))
    oh, ow, c_out = layer.out_shape
    sh, sw = layer.stride
    xp = _pad(xs, layer)
    if layer.kind == "depthwise":
        kh, kw, _ = p.w.shape
        if layer.depth_multiplier > 1:
            xp = np.repeat(xp, layer.depth_multiplier, axis=-1)
        acc = np.zeros((n, oh, ow, c_out), p.dtype)
        for ky in range(kh):
            for kx in range(kw):
                acc += xp[:, ky:ky + (oh - 1) * sh + 1:sh, kx:kx + (ow - 1) * sw + 1:sw] \
                    * p.w[ky, kx]
        return acc
    kh, kw = layer.weight_shape[1:3]
    c_in = xp.shape[-1]
    cols = np.empty((n, oh, ow, kh * kw * c_in), p.dtype)
    for t, tap in enumerate(_taps(xp, kh, kw, sh, sw, oh, ow)):  # im2col, one tap at a time
        cols[..., t * c_in:(t + 1) * c_in] = tap
    return (cols.reshape(n * oh * ow, -1) @ p.w).reshape(n, oh, ow, c_out)


def _pool_windows(layer: IntegerLayer, x: np.ndarray, fill, op=np.maximum) -> np.ndarray:
    """``op``-reduction (max or sum) over each pooling window, padding filled with ``fill``."""
    oh, ow, _ = layer.out_shape
    top, bottom, left, right = layer.padding
    if top or bottom or left or right:
        x = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)
    taps = _taps(x, *layer.pool_size, *layer.stride, oh, ow)
    out = taps[0].copy()
    for tap in taps[1:]:
        op(out, tap, out=out)
    return out


def _pool(layer: IntegerLayer, x: np.ndarray, rounding: str) -> np.ndarray:
    """Max / average pool over in-bounds window elements (padding never counts), then clamp.
    Average division: ``layer.avg_rounding``, by default floor for the "floor" flavour and half
    away from zero for the TFLite flavours (TFLite AVERAGE_POOL_2D / CMSIS-NN)."""
    if layer.kind == "maxpool":
        out = _pool_windows(layer, x, np.iinfo(x.dtype).min)
    else:
        total = _pool_windows(layer, x.astype(np.int64), 0, np.add)
        ones = np.ones((1,) + x.shape[1:3] + (1,), np.int64)
        count = _pool_windows(layer, ones, 0, np.add)  # in-bounds elements per window
        mode = layer.avg_rounding or ("floor" if rounding == "floor" else "half_away")
        if mode == "floor":
            out = total // count
        else:  # C: acc > 0 ? (acc + count/2) / count : (acc - count/2) / count, truncating
            half = count // 2
            out = np.where(total > 0, (total + half) // count, -((-total + half) // count))
    lo, hi = layer.out_range
    return np.clip(out, lo, hi).astype(np.int32)


def _finish(p: _Prepared, acc: np.ndarray, wrap: bool) -> np.ndarray:
    """Bias, requantization (or raw int32 logits), zero point and clamp -> int32 codes."""
    layer = p.layer
    acc = acc.astype(np.int64) + p.bias
    lo, hi = layer.out_range
    if not layer.requantize:
        y = _acc32(acc, wrap, layer.name, p.safe32)
    else:
        y = REQUANT[p.rounding](acc, layer.m0, layer.n0, wrap, layer.name, p.safe32)
        y += layer.out_zero_point
    return np.clip(y, lo, hi).astype(np.int32)


# --------------------------------------------------------------------------------------------
# gemmlowp fixed point (int32 raw values held in int64 arrays), for TFLite's int8 SOFTMAX
# (docs/integer.md#softmax). Every function reproduces the int32 arithmetic of the reference
# kernel exactly, vectorised.
# --------------------------------------------------------------------------------------------

def srdhm(a, b) -> np.ndarray:
    """SaturatingRoundingDoublingHighMul of int32 values: round((a * b) / 2^31), ties up
    (equal to gemmlowp's nudge-and-truncate for both signs); INT32_MIN * INT32_MIN saturates."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    out = (a * b + (1 << 30)) >> 31
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, out)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT: x / 2^exponent rounded half away from zero."""
    x = np.asarray(x, np.int64)
    mask = (np.int64(1) << np.asarray(exponent, np.int64)) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + ((x & mask) > threshold)


def saturating_left_shift(x, exponent: int) -> np.ndarray:
    """gemmlowp's SaturatingRoundingMultiplyByPOT for a positive exponent on int32 values."""
    x = np.asarray(x, np.int64)
    threshold = (1 << (31 - exponent)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN,
                                                       x << exponent))


def _wrap_add(a, b) -> np.ndarray:
    return wrap32(np.asarray(a, np.int64) + np.asarray(b, np.int64))


def exp_on_negative_values_q5_26(a) -> np.ndarray:
    """gemmlowp's exp_on_negative_values for Q5.26 inputs (a <= 0): exp(a) as Q0.31 raw values."""
    a = np.asarray(a, np.int64)
    quarter = 1 << 24  # 1/4 in Q5.26
    a_mod = (a & (quarter - 1)) - quarter
    x = _wrap_add(a_mod << 5, 1 << 28)  # Rescale<0> (exact here), then + 1/8
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(_wrap_add(srdhm(_wrap_add(x4_over_4, x3), 715827883), x2), 1)
    const = 1895147668  # exp(-1/8) in Q0.31
    result = _wrap_add(const, srdhm(const, _wrap_add(x, poly)))
    remainder = wrap32(a_mod - a)
    for exponent, mult in ((-2, 1672461947), (-1, 1302514674), (0, 790015084),
                           (1, 290630308), (2, 39332535), (3, 720401), (4, 242)):
        bit = (remainder & (1 << (26 + exponent))) != 0
        result = np.where(bit, srdhm(result, mult), result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_q0_31(a) -> np.ndarray:
    """gemmlowp's one_over_one_plus_x_for_x_in_0_1 (Q0.31 in, Q0.31 out; Newton-Raphson)."""
    a = np.asarray(a, np.int64)
    s = a + INT32_MAX
    half = np.where(s >= 0, (s + 1) // 2, -((-(s - 1)) // 2))  # (s + sign) / 2, truncating
    x = _wrap_add(1515870810, srdhm(half, -1010580540))  # 48/17 - 32/17 d, in Q2.29
    for _ in range(3):
        one_minus = wrap32((1 << 29) - srdhm(half, x))
        x = _wrap_add(x, saturating_left_shift(srdhm(x, one_minus), 2))
    return saturating_left_shift(x, 1)


def softmax_int8(x, multiplier: int, left_shift: int, diff_min: int, rounding: str) -> np.ndarray:
    """TFLite's reference int8 softmax over the last axis (output scale 1/256, zero point -128).

    Arguments:
        x: int8 codes (any integer dtype), the softmax runs over the last axis.
        multiplier, left_shift: the input-beta multiplier (Q5.26 rescaling of input differences).
        diff_min: differences below this give the lowest code.
        rounding: "tflite_double" (gemmlowp high multiply, TFLite's default build and TFLM) or
            "tflite_single" (``TFLITE_SINGLE_ROUNDING`` builds) for that rescaling.

    Returns:
        int32 codes in [-128, 127], same shape as ``x``.
    """
    x = np.asarray(x, np.int64)
    diff = x - x.max(axis=-1, keepdims=True)
    valid = diff >= diff_min
    if rounding == "tflite_single":
        total = 31 - left_shift
        scaled = (diff * multiplier + (np.int64(1) << (total - 1))) >> total
    else:
        scaled = srdhm(wrap32(diff << left_shift), multiplier)
    exps = exp_on_negative_values_q5_26(np.where(valid, scaled, 0))
    sum_of_exps = wrap32(np.where(valid, rounding_divide_by_pot(exps, 12), 0).sum(
        axis=-1, keepdims=True))  # Q12.19
    _, bit_length = np.frexp(sum_of_exps.astype(np.float64))  # exact below 2^53
    headroom_plus_one = 32 - bit_length.astype(np.int64)
    num_bits_over_unit = 12 - headroom_plus_one
    shifted_minus_one = wrap32((sum_of_exps << headroom_plus_one) - (1 << 31))
    shifted_scale = one_over_one_plus_x_q0_31(shifted_minus_one)
    exponent = num_bits_over_unit + 31 - 8
    out = rounding_divide_by_pot(srdhm(shifted_scale, exps), exponent) - 128
    return np.where(valid, np.clip(out, -128, 127), -128).astype(np.int32)


# --------------------------------------------------------------------------------------------
# One handler per node kind: (prepared node, input arrays, wrap32) -> output codes (int32)
# --------------------------------------------------------------------------------------------

def _run_compute(p: _Prepared, xs: list, wrap: bool) -> np.ndarray:
    return _finish(p, _compute(p, xs[0]), wrap)


def _run_pool(p: _Prepared, xs: list, wrap: bool) -> np.ndarray:
    return _pool(p.layer, xs[0], p.rounding)


def _run_reshape(p: _Prepared, xs: list, wrap: bool) -> np.ndarray:
    return xs[0].reshape((len(xs[0]),) + tuple(p.layer.out_shape))


def _run_pad(p: _Prepared, xs: list, wrap: bool) -> np.ndarray:
    top, bottom, left, right = p.layer.padding
    return np.pad(xs[0], ((0, 0), (top, bottom), (left, right), (0, 0)),
                  constant_values=p.layer.out_zero_point)


def _run_concat(p: _Prepared, xs: list, wrap: bool) -> np.ndarray:
    rank = len(p.layer.in_shape)
    return np.concatenate(xs, axis=1 + p.layer.axis % rank)


def _requant(p: _Prepared, acc, k: int, wrap: bool) -> np.ndarray:
    layer = p.layer
    return REQUANT[p.rounding](acc, layer.m0[k], layer.n0[k], wrap, layer.name)


def _run_add(p: _Prepared, xs: list, wrap: bool) -> np.ndarray:
    """TFLite int8 ADD: each input minus its zero point, shifted left by ``left_shift``, rescaled
    (m0[0], n0[0]) / (m0[1], n0[1]); the sum rescaled by (m0[2], n0[2]), zero point, clamp."""
    layer = p.layer
    a = (xs[0].astype(np.int64) - layer.in_zero_point) << layer.left_shift
    b = (xs[1].astype(np.int64) - p.zero_points[1]) << layer.left_shift
    total = _requant(p, a, 0, wrap) + _requant(p, b, 1, wrap)
    y = _requant(p, total, 2, wrap) + layer.out_zero_point
    return np.clip(y, *layer.out_range).astype(np.int32)


def _run_quantize(p: _Prepared, xs: list, wrap: bool) -> np.ndarray:
    """TFLite QUANTIZE between integer tensors: (x - z_in) requantized, plus z_out, clamp."""
    layer = p.layer
    y = _requant(p, xs[0].astype(np.int64) - layer.in_zero_point, 0, wrap) + layer.out_zero_point
    return np.clip(y, *layer.out_range).astype(np.int32)


def _run_softmax(p: _Prepared, xs: list, wrap: bool) -> np.ndarray:
    layer = p.layer
    y = softmax_int8(xs[0], int(layer.m0[0]), int(layer.n0[0]), int(layer.diff_min), p.rounding)
    return np.clip(y, *layer.out_range).astype(np.int32)


HANDLERS = {"conv2d": _run_compute, "pointwise": _run_compute, "depthwise": _run_compute,
            "dense": _run_compute, "maxpool": _run_pool, "avgpool": _run_pool,
            "flatten": _run_reshape, "reshape": _run_reshape, "pad": _run_pad,
            "concat": _run_concat, "add": _run_add, "quantize": _run_quantize,
            "softmax": _run_softmax}


def _plan(graph: IntegerGraph) -> list[tuple]:
    """Execution plan: per node in topological order (prepared node, input names, output name,
    tensors to free afterwards, fused max pool index or None)."""
    wiring = graph.wiring()
    order = graph.order()
    consumers = graph.consumers()
    outputs = set(graph.output_names())
    prepared = {}
    for i in order:
        layer = graph.layers[i]
        p = _Prepared(layer, graph.rounding)
        p.zero_points = [graph.tensor(t).zero_point for t in wiring[i][0]]
        prepared[i] = p
    last_use = {}
    for step, i in enumerate(order):
        for t in wiring[i][0]:
            last_use[t] = step
    plan = []
    for step, i in enumerate(order):
        ins, outs = wiring[i]
        free = [t for t in set(ins) if last_use[t] == step and t not in outputs]
        plan.append((prepared[i], ins, outs[0], free, i))
    # max-pool fusion candidates: a compute node whose only reader is a max pool
    fuse = {}
    for i in order:
        p = prepared[i]
        out = wiring[i][1][0]
        readers = consumers.get(out, [])
        if (p.layer.kind in COMPUTE_KINDS and p.monotone and out not in outputs
                and len(readers) == 1 and graph.layers[readers[0]].kind == "maxpool"):
            fuse[i] = readers[0]
    return plan, fuse


def _forward(graph_plan, x: np.ndarray, input_name: str, output_names: list, wrap: bool,
             trace: dict | None) -> list:
    """One chunk through the graph; fills ``trace`` (node name -> list of chunks) when given."""
    plan, fuse = graph_plan
    values = {input_name: x}
    skip = set()
    for p, ins, out, free, i in plan:
        if i in skip:
            continue
        layer = p.layer
        xs = [values[t] for t in ins]
        if trace is None and not wrap and i in fuse:
            pool_index = fuse[i]
            pool_p, pool_out = next((q, o) for q, _, o, _, j in plan if j == pool_index)
            acc = _compute(p, xs[0])
            if not p.safe32:  # every accumulator must be checked before pooling
                _finish(p, acc, wrap)
            pooled = _pool_windows(pool_p.layer, acc, -np.inf if acc.dtype.kind == "f"
                                   else np.iinfo(acc.dtype).min)
            values[pool_out] = np.clip(_finish(p, pooled, wrap), *pool_p.layer.out_range)
            skip.add(pool_index)
        else:
            values[out] = HANDLERS[layer.kind](p, xs, wrap)
            if trace is not None:
                trace[layer.name].append(values[out])
        for t in free:
            values.pop(t, None)
    return [values[t] for t in output_names]


ENGINES = ("fast", "reference")


def run(graph: IntegerGraph, x: np.ndarray, trace: bool = False, wrap32: bool = False,
        batch_size: int = 256, *, engine: str = "fast", _fast_cache: dict | None = None):
    """Run an IntegerGraph on a batch of integer inputs, bit-exactly, node by node in a
    topological order (one handler per node kind, :data:`HANDLERS`).

    Arguments:
        graph: the graph (validated first).
        x: integer array [N, *graph.input_shape] of input codes in the input's bit range.
        trace: also return every node's integer output.
        wrap32: emulate int32 wrap-around of the accumulators (default: raise OverflowError
            where the 32-bit device arithmetic would wrap).
        batch_size: images per internal chunk (small chunks keep intermediates in cache).
        engine: "fast" (default: the C kernels of :mod:`tinyopt.integer.sim_fast` on every node
            they provably compute exactly, this module's numpy elsewhere and when no C compiler
            works) or "reference" (this module's numpy only: the readable definition, and what
            generated C is checked against). Both give the same bits and raise the same errors.

    Returns:
        int32 array [N, *output shape] of the graph's output (a list of arrays, one per output,
        when the graph has several); with ``trace``, a dict node name -> int32 output of that
        node (in execution order; the last entry is the last node's output).

    Raises:
        TypeError, ValueError: bad input dtype, shape or range; an invalid graph; an unknown
            engine.
        OverflowError: int32 overflow with ``wrap32=False``.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: choose one of {ENGINES}")
    graph.validate()
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"inputs must be integer codes, got {x.dtype}; quantize them first "
                        "(e.g. tinyopt.measure.quantize_input for a TFLite graph)")
    if x.shape[1:] != tuple(graph.input_shape):
        raise ValueError(f"inputs have shape {x.shape[1:]} per image, the graph expects "
                         f"{tuple(graph.input_shape)}")
    lo, hi = _value_range(graph.input_bits, graph.input_signed)
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"input codes span [{x.min()}, {x.max()}], outside the "
                         f"{graph.input_bits}-bit range [{lo}, {hi}]")
    if batch_size < 1 or len(x) == 0:
        raise ValueError(f"need at least one image and batch_size >= 1, got {len(x)} images "
                         f"and batch_size {batch_size}")
    if _fast_cache is not None and engine in _fast_cache:  # run_tflite's parsed model
        graph_plan, fast = _fast_cache[engine]
    else:
        graph_plan = _plan(graph)
        fast = sim_fast.prepare(graph_plan) if engine == "fast" else None
        if _fast_cache is not None:
            _fast_cache[engine] = graph_plan, fast
    names = graph.output_names()
    chunks = {graph.layers[i].name: [] for i in graph.order()} if trace else None
    outputs = []
    for start in range(0, len(x), batch_size):
        chunk = x[start:start + batch_size]
        if fast:
            outputs.append(sim_fast.forward(graph_plan, chunk, graph.input_name, names, wrap32,
                                            chunks, HANDLERS, fast))
        else:
            outputs.append(_forward(graph_plan, chunk, graph.input_name, names, wrap32, chunks))
    if trace:
        return {k: np.concatenate(v) for k, v in chunks.items()}
    result = [np.concatenate([chunk[k] for chunk in outputs]) for k in range(len(names))]
    return result[0] if len(result) == 1 else result


def _tflite_input_codes(graph: IntegerGraph, x) -> np.ndarray:
    """``x`` as the int8 input codes of a LiteRT model: int8 arrays are codes; float arrays are
    real values, quantized with the input tensor's scale and zero point after a check that they
    are on that tensor's scale. Anything else is ambiguous (are uint8 values pixels or codes?)
    and refused, so a forgotten preprocessing step cannot pass as codes."""
    x = np.asarray(x)
    s, zp = float(graph.input_scale), int(graph.input_zero_point)
    lo, hi = (-128 - zp) * s, (127 - zp) * s  # the real range the int8 input can represent
    if np.issubdtype(x.dtype, np.floating):
        finite = np.isfinite(x)
        if not finite.all():
            raise ValueError(f"run_tflite: x holds {int((~finite).sum())} NaN/Inf values; every "
                             "input must be finite")
        if x.size:
            vmin, vmax = float(x.min()), float(x.max())
            span = hi - lo
            if vmax > hi + span / 2 or vmin < lo - span / 2:
                hint = ("pixel-scale values (0..255)? Scale them as the model was trained (e.g. "
                        "tinyopt.data.preprocess). " if vmax > 64 and hi < 64 else "")
                raise ValueError(
                    f"run_tflite: x spans [{vmin:g}, {vmax:g}] but the model's int8 input "
                    f"represents [{lo:g}, {hi:g}] (scale {s:g}, zero point {zp}); {hint}Pass real "
                    "values on the model's input scale, or int8 codes as an np.int8 array")
        return quantize_real(x, s, zp, np.int8)
    if x.dtype != np.int8:
        raw = " (raw pixels? tinyopt.data.load returns uint8)" if x.dtype == np.uint8 else ""
        raise TypeError(
            f"run_tflite: x has dtype {x.dtype}{raw}; pass real values as a float array (they "
            f"are quantized with the input's scale {s:g} and zero point {zp}, e.g. "
            "tinyopt.data.preprocess output) or int8 input codes as an np.int8 array "
            "(x.astype(np.int8) if they already are codes)")
    return x


_PARSED: dict = {}  # (flatbuffer, flavour) -> (graph, prepared engines), a few recent models
_PARSED_MAX = 8


def _parsed(tflite_bytes: bytes, flavour: str):
    """The graph of a flatbuffer (parsed once per process; the key is the bytes themselves, so
    a different model never hits) and the engines' prepared plans, kept private to run_tflite
    (nothing outside can mutate the cached graph)."""
    key = (bytes(tflite_bytes), flavour)
    if key not in _PARSED:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = graph_from_tflite(tflite_bytes, flavour=flavour), {}
    return _PARSED[key]


def run_tflite(tflite_bytes: bytes, x: np.ndarray, trace: bool = False, wrap32: bool = False,
               batch_size: int = 256, *, flavour: str = "litert", engine: str = "fast"):
    """Run a full-int8 LiteRT model with the simulator.

    Arguments:
        tflite_bytes: the flatbuffer.
        x: int8 input codes (an ``np.int8`` array), or model-ready float images (quantized
            with the input tensor's own scale and zero point, as
            :func:`tinyopt.measure.quantize_input`; refused when they lie far outside the range
            that input represents, e.g. 0..255 pixels into a [0, 1] model).
        trace, wrap32, batch_size: as :func:`run`.
        flavour: "litert" (LiteRT's reference kernels, BUILTIN_REF) or "tflm" (TensorFlow Lite
            Micro with CMSIS-NN); see :func:`tinyopt.integer.from_litert.graph_from_tflite`.
        engine: as :func:`run`.

    Returns:
        int8 output codes [N, ...] (with ``trace``: a dict node name -> int8 output).

    Raises:
        TypeError: ``x`` neither float nor int8 (e.g. raw uint8 pixels).
        ValueError: as :func:`graph_from_tflite`, or inputs that do not fit the model (shape,
            NaN/Inf, values on the wrong scale).
    """
    graph, prepared = _parsed(tflite_bytes, flavour)
    x = _tflite_input_codes(graph, x)
    out = run(graph, x, trace=trace, wrap32=wrap32, batch_size=batch_size, engine=engine,
              _fast_cache=prepared)
    if trace:
        return {k: v.astype(np.int8) for k, v in out.items()}
    if isinstance(out, list):
        return [o.astype(np.int8) for o in out]
    return out.astype(np.int8)

"""A bit-exact integer simulator for :class:`tinyopt.intgraph.IntegerGraph`, and its LiteRT entry.

- :func:`run` computes, for a batch of integer inputs, exactly what the integer-only kernels
  compute: accumulators Phi = bias + sum (W - Z_w)(X - Z_x) (exact; int32 wrap-around emulated on
  request), then the requantization flavour (``layer.rounding``, default ``graph.rounding``),
  zero point and clamp. Flavours: ``"floor"`` (:func:`requant_floor`, CMix-NN,
  docs/integer.md#kernel-arithmetic-step-by-step),
  ``"tflite_double"`` (:func:`requant_tflite_double`, gemmlowp's rounding doubling high multiply
  then rounding divide by a power of two) and ``"tflite_single"``
  (:func:`requant_tflite_single`, the single-rounding ``MultiplyByQuantizedMultiplier``).
- :func:`graph_from_tflite` (in :mod:`tinyopt.litert_graph`, re-exported) reads a full-int8
  ``.tflite`` flatbuffer (weights, scales, zero points, options from the model itself) into an
  IntegerGraph; :func:`run_tflite` runs it. One core, several requantization flavours.
  Measured against ai_edge_litert 2.3's reference kernels (tests/test_sim.py): CONV_2D and
  DEPTHWISE_CONV_2D round twice ("tflite_double"), FULLY_CONNECTED (per-channel and per-tensor
  int8) rounds once ("tflite_single"); the reader sets that. Supported ops: CONV_2D,
  DEPTHWISE_CONV_2D, FULLY_CONNECTED, MAX_POOL_2D, AVERAGE_POOL_2D, RESHAPE and MEAN over H and W
  (Keras' GlobalAveragePooling2D, read as a depthwise H x W convolution with all-one weights and
  TFLite's refolded multiplier, double rounding as measured); any other op (e.g. SOFTMAX) is
  refused with its name.

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

from tinyopt.integer.arith import quantize_real
from tinyopt.integer.from_litert import graph_from_tflite
from tinyopt.integer.graph import IntegerGraph, IntegerLayer

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
        if layer.kind not in ("conv2d", "pointwise", "depthwise", "dense"):
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
    if layer.kind == "dense":
        return xs.reshape(n, -1) @ p.w
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


def _forward(prepared: list[_Prepared], x: np.ndarray, wrap: bool,
             trace: dict | None) -> np.ndarray:
    """One chunk through the graph; fills ``trace`` (name -> list of chunks) when given."""
    i = 0
    while i < len(prepared):
        p = prepared[i]
        layer = p.layer
        if layer.kind in ("flatten", "reshape"):
            x = x.reshape((len(x),) + tuple(layer.out_shape))
        elif layer.kind in ("maxpool", "avgpool"):
            x = _pool(layer, x, p.rounding)
        elif layer.kind == "softmax":
            raise NotImplementedError(f"layer {layer.name!r}: int8 SOFTMAX is not simulated; "
                                      "drop the softmax (argmax of the logits is the same)")
        else:
            acc = _compute(p, x)
            nxt = prepared[i + 1].layer if i + 1 < len(prepared) else None
            if (trace is None and not wrap and p.monotone and nxt is not None
                    and nxt.kind == "maxpool"):
                if not p.safe32:  # every accumulator must be checked before pooling
                    _finish(p, acc, wrap)
                pooled = _pool_windows(nxt, acc, -np.inf if acc.dtype.kind == "f"
                                       else np.iinfo(acc.dtype).min)
                x = np.clip(_finish(p, pooled, wrap), *nxt.out_range)  # pool's clamp
                i += 2
                continue
            x = _finish(p, acc, wrap)
        if trace is not None:
            trace[layer.name].append(x)
        i += 1
    return x


def run(graph: IntegerGraph, x: np.ndarray, trace: bool = False, wrap32: bool = False,
        batch_size: int = 256):
    """Run an IntegerGraph on a batch of integer inputs, bit-exactly.

    Arguments:
        graph: the graph (validated first).
        x: integer array [N, *graph.input_shape] of input codes in the input's bit range.
        trace: also return every layer's integer output.
        wrap32: emulate int32 wrap-around of the accumulators (default: raise OverflowError
            where the 32-bit device arithmetic would wrap).
        batch_size: images per internal chunk (small chunks keep intermediates in cache).

    Returns:
        int32 array [N, *last layer out_shape]; with ``trace``, a dict layer name -> int32 output
        of that layer (in graph order; the last entry is the final output).

    Raises:
        TypeError, ValueError: bad input dtype, shape or range; an invalid graph.
        OverflowError: int32 overflow with ``wrap32=False``.
    """
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
    prepared = [_Prepared(layer, graph.rounding) for layer in graph.layers]
    chunks = {layer.name: [] for layer in graph.layers} if trace else None
    outputs = []
    for start in range(0, len(x), batch_size):
        outputs.append(_forward(prepared, x[start:start + batch_size], wrap32, chunks))
    if trace:
        return {k: np.concatenate(v) for k, v in chunks.items()}
    return np.concatenate(outputs)


def run_tflite(tflite_bytes: bytes, x: np.ndarray, trace: bool = False, wrap32: bool = False,
               batch_size: int = 256):
    """Run a full-int8 LiteRT model with the simulator (TFLite's requantization).

    Arguments:
        tflite_bytes: the flatbuffer.
        x: int8 input codes, or model-ready float images (quantized with the input tensor's own
            scale and zero point, as :func:`tinyopt.measure.quantize_input`).
        trace, wrap32, batch_size: as :func:`run`.

    Returns:
        int8 output codes [N, ...] (with ``trace``: a dict layer name -> int8 output).

    Raises:
        ValueError: as :func:`graph_from_tflite`, or inputs that do not fit the model.
    """
    graph = graph_from_tflite(tflite_bytes)
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.floating):
        x = quantize_real(x, graph.input_scale, graph.input_zero_point, np.int8)
    out = run(graph, x, trace=trace, wrap32=wrap32, batch_size=batch_size)
    if trace:
        return {k: v.astype(np.int8) for k, v in out.items()}
    return out.astype(np.int8)

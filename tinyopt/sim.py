"""A bit-exact integer simulator for :class:`tinyopt.icn.IntegerGraph`, and a LiteRT front end.

- :func:`run` computes, for a batch of integer inputs, exactly what the integer-only kernels
  compute: accumulators Phi = bias + sum (W - Z_w)(X - Z_x) (exact; int32 wrap-around emulated on
  request), then the requantization flavour (``layer.rounding``, default ``graph.rounding``),
  zero point and clamp. Flavours: ``"floor"`` (:func:`requant_floor`, CMix-NN, spec §5.3),
  ``"tflite_double"`` (:func:`requant_tflite_double`, gemmlowp's rounding doubling high multiply
  then rounding divide by a power of two) and ``"tflite_single"``
  (:func:`requant_tflite_single`, the single-rounding ``MultiplyByQuantizedMultiplier``).
- :func:`graph_from_tflite` reads a full-int8 ``.tflite`` flatbuffer (weights, scales, zero
  points, options from the model itself) into an IntegerGraph; :func:`run_tflite` runs it. One
  core, several requantization flavours. Measured against ai_edge_litert 2.3's reference kernels
  (tests/test_sim.py): CONV_2D and DEPTHWISE_CONV_2D round twice ("tflite_double"),
  FULLY_CONNECTED (per-channel and per-tensor int8) rounds once ("tflite_single"); the reader
  sets that. Supported ops: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, MAX_POOL_2D,
  AVERAGE_POOL_2D, RESHAPE and MEAN over H and W (Keras' GlobalAveragePooling2D, read as a
  depthwise H x W convolution with all-one weights and TFLite's refolded multiplier, double
  rounding as measured); any other op (e.g. SOFTMAX) is refused with its name.

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

from tinyopt.icn import IntegerGraph, IntegerLayer

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


def requant_floor(acc, m0, n0, wrap: bool = False, layer: str = "?",
                  checked: bool = False) -> np.ndarray:
    """CMix-NN requantization (spec §5.3 step 4), without zero point and clamp.

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
    if np.any(n1 > 0):
        t = t << n1
        if wrap:
            t = wrap32(t)
        elif not checked:
            _check32(t, "the accumulator shifted left by n1", layer)
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
    if np.any(left > 0):
        x = x << left
        if wrap:
            x = wrap32(x)
        elif not checked:
            _check32(x, "the accumulator shifted left", layer)
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


def tflite_quantize_multiplier(real) -> tuple[np.ndarray, np.ndarray]:
    """TFLite's ``QuantizeMultiplier``: real = q * 2^(shift - 31), q in [2^30, 2^31), q rounded
    half away from zero; q = 2^31 renormalised; shift < -31 gives (0, 0)."""
    real = np.atleast_1d(np.asarray(real, np.float64))
    mant, exp = np.frexp(real)
    q = np.sign(mant) * np.floor(np.abs(mant) * 2.0 ** 31 + 0.5)
    over = np.abs(q) == 2.0 ** 31
    q = np.where(over, q / 2, q)
    exp = np.where(over, exp + 1, exp)
    tiny = exp < -31
    q, exp = np.where(tiny, 0, q), np.where(tiny, 0, exp)
    return q.astype(np.int32), exp.astype(np.int8)


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


# --------------------------------------------------------------------------------------------
# LiteRT front end: full-int8 .tflite -> IntegerGraph (TFLite rounding flavours)
# --------------------------------------------------------------------------------------------

TFLITE_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "MAX_POOL_2D",
              "AVERAGE_POOL_2D", "RESHAPE", "MEAN")


def _schema():
    from ai_edge_litert import schema_py_generated as schema
    return schema


def _op_names(schema) -> dict[int, str]:
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}


class _TFLiteModel:
    """Tensors, buffers and operators of subgraph 0 of a flatbuffer, read with LiteRT's schema."""

    def __init__(self, tflite_bytes: bytes):
        schema = _schema()
        self.schema, self.raw = schema, bytes(tflite_bytes)
        if self.raw[4:8] != b"TFL3":  # the flatbuffer file identifier of every .tflite
            raise ValueError("not a .tflite flatbuffer (no TFL3 identifier); pass the bytes of "
                             "a converted LiteRT model")
        try:
            self.model = schema.ModelT.InitFromPackedBuf(bytearray(self.raw), 0)
        except Exception as exc:  # the flatbuffers reader raises assorted types on garbage
            raise ValueError(f"not a readable .tflite flatbuffer ({type(exc).__name__}: "
                             f"{exc})") from exc
        if not self.model.subgraphs or len(self.model.subgraphs) != 1:
            raise ValueError(f"expected one subgraph, found "
                             f"{len(self.model.subgraphs or [])}")
        self.sub = self.model.subgraphs[0]
        names = _op_names(schema)
        self.op_names = []
        for code in self.model.operatorCodes:
            builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
            self.op_names.append(names.get(builtin, f"builtin#{builtin}")
                                 if builtin != schema.BuiltinOperator.CUSTOM
                                 else f"CUSTOM:{code.customCode}")

    def tensor(self, i: int):
        return self.sub.tensors[i]

    def name(self, i: int) -> str:
        n = self.tensor(i).name
        return n.decode() if isinstance(n, bytes) else str(n)

    def data(self, i: int) -> np.ndarray:
        """A constant tensor's values, in its own dtype and shape."""
        t = self.tensor(i)
        buf = self.model.buffers[t.buffer]
        if buf.data is not None and len(buf.data):
            raw = np.asarray(buf.data, np.uint8).tobytes()
        elif buf.offset and buf.size:
            raw = self.raw[buf.offset:buf.offset + buf.size]
        else:
            raise ValueError(f"tensor {self.name(i)!r} has no constant data")
        dtypes = {self.schema.TensorType.INT8: np.int8, self.schema.TensorType.INT32: np.int32,
                  self.schema.TensorType.UINT8: np.uint8, self.schema.TensorType.INT64: np.int64,
                  self.schema.TensorType.FLOAT32: np.float32}
        if t.type not in dtypes:
            raise ValueError(f"tensor {self.name(i)!r} has unsupported type {t.type}")
        return np.frombuffer(raw, dtypes[t.type]).reshape(list(t.shape))

    def quant(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(scales float32, zero points int64) of tensor i; raises if it is not quantized."""
        q = self.tensor(i).quantization
        if q is None or q.scale is None or len(q.scale) == 0:
            raise ValueError(f"tensor {self.name(i)!r} is not quantized; run_tflite needs a "
                             "full-integer model (TFLITE_BUILTINS_INT8, int8 input/output)")
        return (np.asarray(q.scale, np.float32),
                np.asarray(q.zeroPoint if q.zeroPoint is not None else [0], np.int64))

    def check_int8(self, i: int, role: str, op: str) -> None:
        if self.tensor(i).type != self.schema.TensorType.INT8:
            raise ValueError(f"{op}: {role} tensor {self.name(i)!r} is not int8 (type "
                             f"{self.tensor(i).type}); only full-int8 models are supported")


def _act_range(activation: int, scale: float, zero: int, schema) -> tuple[int, int]:
    """TFLite's CalculateActivationRangeQuantized for int8 (float32 f / scale, round half away)."""
    def q(f):
        v = np.float32(f) / np.float32(scale)
        return int(zero + np.sign(v) * np.floor(np.abs(v) + np.float32(0.5)))
    A = schema.ActivationFunctionType
    lo, hi = -128, 127
    if activation == A.NONE:
        return lo, hi
    if activation == A.RELU:
        return max(lo, q(0.0)), hi
    if activation == A.RELU6:
        return max(lo, q(0.0)), min(hi, q(6.0))
    if activation == A.RELU_N1_TO_1:
        return max(lo, q(-1.0)), min(hi, q(1.0))
    raise ValueError(f"fused activation {activation} is not supported (only NONE, RELU, RELU6, "
                     "RELU_N1_TO_1)")


def _same_padding(size: int, k: int, stride: int, out: int) -> tuple[int, int]:
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def _spatial(opts, size_hw, k_hw, schema) -> tuple[tuple, tuple]:
    """(out (H, W), padding (top, bottom, left, right)) for TFLite SAME / VALID."""
    sh, sw = int(opts.strideH), int(opts.strideW)
    (h, w), (kh, kw) = size_hw, k_hw
    if opts.padding == schema.Padding.SAME:
        oh, ow = -(-h // sh), -(-w // sw)
        return (oh, ow), _same_padding(h, kh, sh, oh) + _same_padding(w, kw, sw, ow)
    return ((h - kh) // sh + 1, (w - kw) // sw + 1), (0, 0, 0, 0)


def graph_from_tflite(tflite_bytes: bytes) -> IntegerGraph:
    """Read a full-int8 LiteRT flatbuffer into an IntegerGraph with TFLite's rounding
    (``"tflite_double"`` for the graph, ``"tflite_single"`` for FULLY_CONNECTED layers: what the
    ai_edge_litert 2.3 reference kernels compute, see the module docstring).

    Weights, biases, scales, zero points, strides, paddings and fused activations are read from
    the model; multipliers are computed as TFLite's kernels compute them at Prepare time
    (per-channel: double(s_in) * double(s_w[c]) / double(s_out); FULLY_CONNECTED per tensor:
    double(float32(s_in * s_w)) / double(s_out)). int8 weights w are stored as unsigned codes
    w + 128 with zero point z_w + 128, so W - Z_w is unchanged.

    Raises:
        ValueError: an op outside ``TFLITE_OPS`` (named), a non-int8 or non-chain graph, dilation.
    """
    m = _TFLiteModel(tflite_bytes)
    schema, sub = m.schema, m.sub
    if len(sub.inputs) != 1 or len(sub.outputs) != 1:
        raise ValueError("only single-input, single-output models are supported")
    unsupported = sorted({m.op_names[op.opcodeIndex] for op in sub.operators}
                         - set(TFLITE_OPS))
    if unsupported:
        raise ValueError(f"unsupported TFLite op(s) {unsupported}; run_tflite supports "
                         f"{list(TFLITE_OPS)}")
    current = int(sub.inputs[0])
    m.check_int8(current, "input", "model")
    s_in, z_in = m.quant(current)
    in_shape = tuple(int(d) for d in m.tensor(current).shape[1:])
    graph = IntegerGraph(layers=[], input_shape=in_shape, input_bits=8, input_signed=True,
                         input_zero_point=int(z_in[0]), input_scale=float(s_in[0]),
                         rounding="tflite_double", name="tflite", meta={"source": "tflite"})
    shape, zero, scale = in_shape, int(z_in[0]), float(s_in[0])
    for k, op in enumerate(sub.operators):
        kind = m.op_names[op.opcodeIndex]
        inputs = [int(i) for i in op.inputs]
        out = int(op.outputs[0])
        if inputs[0] != current:
            raise ValueError(f"op {k} ({kind}) does not read the previous op's output; only "
                             "chains of ops are supported")
        m.check_int8(out, "output", kind)
        s_out, z_out = m.quant(out)
        out_shape = tuple(int(d) for d in m.tensor(out).shape[1:])
        layer = IntegerLayer(kind="", name=m.name(out), in_shape=shape, out_shape=out_shape,
                             in_bits=8, in_signed=True, in_zero_point=zero, in_scale=scale,
                             out_bits=8, out_signed=True, out_zero_point=int(z_out[0]),
                             out_scale=float(s_out[0]))
        opts = op.builtinOptions
        if kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            w = m.data(inputs[1]).astype(np.int64)
            s_w, z_w = m.quant(inputs[1])
            bias = (m.data(inputs[2]).astype(np.int64)
                    if len(inputs) > 2 and inputs[2] >= 0 else None)
            if kind == "FULLY_CONNECTED":
                layer.kind = "dense"
                layer.rounding = "tflite_single"
                codes = w  # [c_out, c_in]
                c_out = w.shape[0]
                if len(s_w) == 1:
                    real = np.float64(np.float32(scale) * s_w[0]) / np.float64(s_out[0])
                else:
                    real = np.float64(scale) * s_w.astype(np.float64) / np.float64(s_out[0])
                layer.out_shape = (c_out,) if not opts.keepNumDims else out_shape
            else:
                if int(opts.dilationHFactor) != 1 or int(opts.dilationWFactor) != 1:
                    raise ValueError(f"op {k} ({kind}): dilated convolutions are not supported")
                if kind == "CONV_2D":
                    codes = w  # [c_out, kh, kw, c_in]: the IntegerGraph layout already
                    kh, kw = w.shape[1:3]
                    layer.kind = "pointwise" if kh == kw == 1 else "conv2d"
                else:
                    codes = w[0]  # [1, kh, kw, c_out] -> [kh, kw, c_out]
                    kh, kw = codes.shape[:2]
                    layer.kind = "depthwise"
                    layer.depth_multiplier = int(opts.depthMultiplier) or 1
                c_out = out_shape[-1]
                (oh, ow), layer.padding = _spatial(opts, shape[:2], (kh, kw), schema)
                if (oh, ow) != out_shape[:2]:
                    raise ValueError(f"op {k} ({kind}): computed output {(oh, ow)} but the "
                                     f"model says {out_shape[:2]}")
                layer.stride = (int(opts.strideH), int(opts.strideW))
                real = np.float64(scale) * s_w.astype(np.float64) / np.float64(s_out[0])
            layer.set_weights(codes + 128, 8)
            layer.weight_zero_point = (z_w + 128).astype(np.int32)
            layer.weight_scale = s_w.astype(np.float64)
            layer.bias = (bias if bias is not None else np.zeros(c_out, np.int64)).astype(np.int32)
            layer.m0, layer.n0 = tflite_quantize_multiplier(real)
            layer.pad_mode = "zero_point"
            layer.act_min, layer.act_max = _act_range(opts.fusedActivationFunction,
                                                      s_out[0], int(z_out[0]), schema)
        elif kind in ("MAX_POOL_2D", "AVERAGE_POOL_2D"):
            if int(z_out[0]) != zero or not np.isclose(s_out[0], scale, rtol=0, atol=0):
                raise ValueError(f"op {k} ({kind}): input and output quantization differ")
            layer.kind = "maxpool" if kind == "MAX_POOL_2D" else "avgpool"
            layer.pool_size = (int(opts.filterHeight), int(opts.filterWidth))
            layer.stride = (int(opts.strideH), int(opts.strideW))
            (oh, ow), layer.padding = _spatial(opts, shape[:2], layer.pool_size, schema)
            if (oh, ow) != out_shape[:2]:
                raise ValueError(f"op {k} ({kind}): computed output {(oh, ow)} but the model "
                                 f"says {out_shape[:2]}")
            layer.act_min, layer.act_max = _act_range(opts.fusedActivationFunction,
                                                      s_out[0], int(z_out[0]), schema)
        elif kind == "MEAN":  # Keras GlobalAveragePooling2D
            axis = sorted(int(a) % 4 for a in m.data(inputs[1]).reshape(-1))
            if len(shape) != 3 or axis != [1, 2]:
                raise ValueError(f"op {k} (MEAN): only the mean over H and W is supported "
                                 f"(got axis {axis} of a {len(shape) + 1}-D tensor)")
            # TFLite's reference_ops::QuantizedMeanOrSum: Phi = sum(x - z_in) over H*W, then
            # MultiplyByQuantizedMultiplier with QuantizeMultiplier(s_in / s_out) whose
            # multiplier is refolded by 1/n: s = min(floor(log2 n), 32, 31 + shift),
            # q' = (q << s) // n, shift' = shift - s. That is a depthwise H x W convolution
            # with all-one weights, zero bias and the refolded per-layer multiplier.
            h, w, c = shape
            n = h * w
            q, e = tflite_quantize_multiplier(np.float64(scale) / np.float64(s_out[0]))
            q, e = int(q[0]), int(e[0])
            sh = min(n.bit_length() - 1, 32, 31 + e)
            layer.kind, layer.depth_multiplier = "depthwise", 1
            layer.set_weights(np.ones((h, w, c), np.uint8), 8)
            layer.weight_zero_point = np.zeros(1, np.int32)
            layer.bias = np.zeros(c, np.int32)
            layer.m0 = np.array([(q << sh) // n], np.int32)
            layer.n0 = np.array([e - sh], np.int8)
            layer.out_shape = (1, 1, c)
            layer.rounding = "tflite_double"  # measured: 0 mismatches, single rounding has some
            layer.extra = {"tflite_op": "MEAN", "keep_dims": bool(opts.keepDims)}
        else:  # RESHAPE
            if int(z_out[0]) != zero or s_out[0] != np.float32(scale):
                raise ValueError(f"op {k} ({kind}): input and output quantization differ")
            if int(np.prod(out_shape)) != int(np.prod(shape)):
                raise ValueError(f"op {k} (RESHAPE): {shape} -> {out_shape} changes the size")
            layer.kind = "flatten" if len(out_shape) == 1 else "reshape"
        graph.layers.append(layer)
        current, shape, zero, scale = out, tuple(layer.out_shape), int(z_out[0]), float(s_out[0])
    if current != int(sub.outputs[0]):
        raise ValueError("the last op does not produce the model output")
    graph.validate()
    return graph


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
        from tinyopt.measure import quantize_input
        detail = {"dtype": np.int8, "quantization": (graph.input_scale, graph.input_zero_point),
                  "name": "input"}
        x = quantize_input(x, detail)
    out = run(graph, x, trace=trace, wrap32=wrap32, batch_size=batch_size)
    if trace:
        return {k: v.astype(np.int8) for k, v in out.items()}
    return out.astype(np.int8)

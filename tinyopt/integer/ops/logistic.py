"""``logistic``: the sigmoid 1 / (1 + exp(-x)) on int8 tensors (TFLite's LOGISTIC: Keras
``Activation("sigmoid")``, and EfficientNet's swish x * sigmoid(x) as LOGISTIC + MUL).

The output is always scale 1/256, zero point -128 (both runtimes require it). The two runtimes
compute it differently, so the node has two forms and the importer builds the one of its flavour:

- ``"litert"``: LiteRT's reference kernel looks each input code up in a 256-entry table built at
  Prepare in float32 (dequantize, ``1.0f / (1.0f + std::exp(-value))``, times 1/s_out, rounded
  half away from zero, plus z_out, clamped). The node holds that table in ``table`` (256 bytes,
  entry ``(uint8) x`` is the int8 output code of input code x).
- ``"tflm"``: TFLite Micro runs ``reference_integer_ops::Logistic`` in fixed point: x - z_in
  outside (-radius, radius) saturates to -128 / 127; inside, it is brought to Q4.27 by the
  input multiplier (``m0[0]``, ``n0[0]``: frexp of s_in 2^27, a positive left shift; gemmlowp
  double rounding), gemmlowp's ``logistic`` gives Q0.31, a rounding shift by 23 and -128 the
  code. radius = floor(15 2^27 / 2^n0) (TFLM's CalculateInputRadius, recomputed from n0).

Both forms hold ``m0`` / ``n0`` (the table form ignores them). C: ``tn_run_logistic``
(``tinyopt/deploy/c/ops/tn_logistic.c``, table lookup on packed codes when the node has a table,
else the fixed point; may run in place).

Sub-byte Keras path (:data:`KERAS`): ``Activation("sigmoid")`` (also ``keras.activations.sigmoid``
as an Activation, and the TF op ``tf.math.sigmoid``) is one element-wise block; its output range
is fixed, (0, 1): unsigned codes, scale 1/2^Q, zero point 0 (at 8 bits TFLite's 1/256, its int8
codes plus 128). It lowers to the table form at every width, 8 bits included: a
``2^in_bits``-entry table (:func:`~tinyopt.integer.ops.registry.lookup_table`) computed from the
input grid in float32 as the fake-quant layer computes, so the node is the fake-quant layer
(one byte read per element; TFLite's fixed point would need two QUANTIZE moves around it, and
agree only within 1 LSB). The table form reads and writes packed codes of 1 to 8 bits.
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.fixedpoint import (INT32_MAX, one_over_one_plus_x_q0_31,
                                        requant_tflite_double, rounding_divide_by_pot, srdhm,
                                        wrap32)
from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops.registry import (KerasPattern, OpKind, TFLiteOp, grid_fields,
                                          lookup_table, register, table_lookup)

INPUT_INTEGER_BITS = 4  # TFLM's kInputIntegerBits for int8: the input in Q4.27
OUT_SCALE, OUT_ZERO_POINT = 1.0 / 256.0, -128


def check(layer: IntegerLayer, where: str) -> None:
    """int8 in and out of the same shape, output zero point -128; a 256-byte table, or an input
    left shift in [0, 31] with a positive multiplier. The sub-byte path's table form: unsigned
    packed codes of at most 8 bits in and out, 2^in_bits entries, output zero point 0."""
    if tuple(layer.in_shape) != tuple(layer.out_shape):
        raise ValueError(f"{where}: out_shape {tuple(layer.out_shape)} differs from in_shape "
                         f"{tuple(layer.in_shape)}")
    if layer.table is not None and not layer.out_signed:  # the sub-byte path's table
        n = np.asarray(layer.table).shape
        if layer.in_signed or max(layer.in_bits, layer.out_bits) > 8 \
                or n != (1 << min(layer.in_bits, 16),) or layer.out_zero_point != 0:
            raise ValueError(f"{where}: a logistic table maps unsigned tensors of at most 8 bits "
                             f"(output zero point 0) and holds 2^in_bits entries, got "
                             f"{layer.in_bits}-bit in, {layer.out_bits}-bit out, zero point "
                             f"{layer.out_zero_point}, table shape {n}")
        return
    if (layer.in_bits, layer.out_bits, layer.in_signed, layer.out_signed) != (8, 8, True, True):
        raise ValueError(f"{where}: logistic runs on int8 tensors (8-bit signed in and out), "
                         f"got {layer.in_bits}-bit in, {layer.out_bits}-bit out")
    if layer.out_zero_point != OUT_ZERO_POINT:
        raise ValueError(f"{where}: out_zero_point must be -128 (output scale 1/256), got "
                         f"{layer.out_zero_point}")
    if layer.table is not None and np.asarray(layer.table).shape != (256,):
        raise ValueError(f"{where}: table must hold 256 bytes (one output code per int8 input "
                         f"code), got shape {np.asarray(layer.table).shape}")
    if not 0 < int(layer.m0[0]) <= INT32_MAX or not 0 <= int(layer.n0[0]) <= 31:
        raise ValueError(f"{where}: m0 must be a positive int32 multiplier and n0 a left shift "
                         f"in [0, 31], got m0 {int(layer.m0[0])}, n0 {int(layer.n0[0])}")


# --------------------------------------------------------------------------------------------
# LiteRT: the float32 table
# --------------------------------------------------------------------------------------------

def _expf(x: np.ndarray) -> np.ndarray:
    """float32 exp rounded from float64 (exp in float64 is within 1 ulp of the real value there,
    so this is the correctly rounded expf except within 2^-29 ulp of a float32 tie: what
    glibc's expf returns; numpy's own float32 exp differs from it by an ulp on many inputs).
    Over 15000 quantizations the tables from either agree with libm's expf's: the 1/256 rounding
    absorbs the ulp, but this one is the closer to what std::exp computes."""
    with np.errstate(over="ignore"):  # exp overflows to inf, as expf: sigmoid 0
        return np.exp(np.asarray(x, np.float32).astype(np.float64)).astype(np.float32)


def litert_table(in_scale: float, in_zero_point: int, out_scale: float,
                 out_zero_point: int) -> np.ndarray:
    """LiteRT's int8 LOGISTIC lookup table (LUTPopulate in float32, module docstring).

    Returns:
        uint8 [256]: entry ``(uint8) x`` is the output code (as a byte) of input code x.
    """
    codes = np.arange(-128, 128, dtype=np.int32)
    f32 = np.float32
    inverse = f32(1) / f32(out_scale)
    value = f32(in_scale) * (codes - np.int32(in_zero_point)).astype(np.float32)
    y = f32(1) / (f32(1) + _expf(-value))
    scaled = y * inverse
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + f32(0.5))  # std::round: half away
    q = (rounded + f32(out_zero_point)).astype(np.int64)  # static_cast<int32_t>: truncation
    table = np.empty(256, np.uint8)
    table[codes.astype(np.uint8)] = np.clip(q, -128, 127).astype(np.int8).view(np.uint8)
    return table


# --------------------------------------------------------------------------------------------
# TFLite Micro: gemmlowp fixed point
# --------------------------------------------------------------------------------------------

def _exp_on_negative_values(a, integer_bits: int) -> np.ndarray:
    """gemmlowp's exp_on_negative_values for Q(integer_bits).(31 - integer_bits) raw values
    a <= 0 (integer_bits <= 5: no clamp below -32), as Q0.31 raw values."""
    a = np.asarray(a, np.int64)
    frac = 31 - integer_bits
    quarter = 1 << (frac - 2)
    a_mod = (a & (quarter - 1)) - quarter  # in [-1/4, 0)
    x = wrap32((a_mod << integer_bits) + (1 << 28))  # Rescale<0> (exact here), then + 1/8
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    poly = rounding_divide_by_pot(
        wrap32(srdhm(wrap32(rounding_divide_by_pot(x4, 2) + x3), 715827883) + x2), 1)
    const = 1895147668  # exp(-1/8) in Q0.31
    result = wrap32(const + srdhm(const, wrap32(x + poly)))
    remainder = wrap32(a_mod - a)
    for exponent, mult in ((-2, 1672461947), (-1, 1302514674), (0, 790015084),
                           (1, 290630308), (2, 39332535), (3, 720401), (4, 242)):
        if integer_bits > exponent:
            bit = (remainder & (1 << (frac + exponent))) != 0
            result = np.where(bit, srdhm(result, mult), result)
    return np.where(a == 0, INT32_MAX, result)


def gemmlowp_logistic(a, integer_bits: int) -> np.ndarray:
    """gemmlowp's logistic of Q(integer_bits) raw int32 values, as Q0.31 raw values:
    1 / (1 + exp(-|a|)) for a > 0, one minus it for a < 0, exactly 1/2 at 0."""
    a = np.asarray(a, np.int64)
    positive = a > 0
    abs_a = np.where(positive, a, -a)
    r_pos = one_over_one_plus_x_q0_31(_exp_on_negative_values(-abs_a, integer_bits))
    r_neg = INT32_MAX - r_pos  # ResultF::One() is the raw maximum in Q0.31
    return np.where(a == 0, 1 << 30, np.where(positive, r_pos, r_neg))


def tflm_params(in_scale: float) -> tuple[int, int, int]:
    """TFLM's Prepare for int8 LOGISTIC: (input multiplier, input left shift, input radius)
    from frexp(double(s_in) 2^27).

    Raises:
        ValueError: a scale whose shift leaves [0, 31] or whose multiplier rounds to 2^31
            (TFLM's int32 cast would overflow), naming the scale.
    """
    q, shift = np.frexp(np.float64(np.float32(in_scale)) * float(1 << (31 - INPUT_INTEGER_BITS)))
    mult = int(np.floor(q * float(1 << 31) + 0.5))  # TfLiteRound: half away (q > 0)
    shift = int(shift)
    if not 0 <= shift <= 31 or mult > INT32_MAX:
        raise ValueError(f"input scale {in_scale}: TFLite Micro's LOGISTIC multiplier "
                         f"({mult}, shift {shift}) is out of its int32 range; such scales "
                         "(below 2^-28 or near 16 and above) are not supported")
    return mult, shift, radius(shift)


def radius(shift: int) -> int:
    """TFLM's CalculateInputRadius(4, shift, 31): floor(15 2^27 / 2^shift)."""
    return ((1 << INPUT_INTEGER_BITS) - 1) * (1 << (31 - INPUT_INTEGER_BITS)) >> int(shift)


def logistic_int8_fixed(x, in_zero_point: int, multiplier: int, shift: int) -> np.ndarray:
    """TFLM's ``reference_integer_ops::Logistic`` (module docstring), vectorised.

    Returns:
        int32 codes in [-128, 127], the shape of ``x``.
    """
    d = np.asarray(x, np.int64) - in_zero_point
    r = radius(shift)
    inside = np.abs(d) < r
    q4 = requant_tflite_double(np.where(inside, d, 0), multiplier, shift)
    y = rounding_divide_by_pot(gemmlowp_logistic(q4, INPUT_INTEGER_BITS), 31 - 8) + OUT_ZERO_POINT
    y = np.where(inside, np.clip(y, -128, 127), np.where(d > 0, 127, -128))
    return y.astype(np.int32)


def simulate(p, xs: list, wrap: bool) -> np.ndarray:
    layer = p.layer
    if layer.table is not None and not layer.out_signed:  # the sub-byte path's table
        return table_lookup(layer.table, xs[0], layer.in_bits)
    if layer.table is not None:
        table = np.asarray(layer.table, np.uint8).view(np.int8).astype(np.int32)
        return table[np.asarray(xs[0], np.int64) & 0xFF]
    return logistic_int8_fixed(xs[0], layer.in_zero_point, int(layer.m0[0]), int(layer.n0[0]))


def _import_logistic(ctx, op, op_name: str) -> list[IntegerLayer]:
    """LOGISTIC: the table (flavour "litert") or the fixed-point multiplier ("tflm")."""
    x, out = int(op.inputs[0]), int(op.outputs[0])
    layer = ctx.node("logistic", op_name, [x], out)
    ctx.same_shape(layer, op_name)
    if (layer.out_zero_point != OUT_ZERO_POINT
            or np.float32(layer.out_scale) != np.float32(OUT_SCALE)):
        raise ValueError(f"LOGISTIC writing {layer.name!r}: int8 logistic needs output scale "
                         f"1/256 and zero point -128, got {layer.out_scale}, "
                         f"{layer.out_zero_point} (LiteRT refuses other output quantizations)")
    try:
        mult, shift, _ = tflm_params(layer.in_scale)
    except ValueError as exc:
        raise ValueError(f"LOGISTIC writing {layer.name!r}: {exc}") from None
    layer.m0 = np.array([mult], np.int32)
    layer.n0 = np.array([shift], np.int8)
    if ctx.flavour == "litert":
        layer.table = litert_table(layer.in_scale, layer.in_zero_point, layer.out_scale,
                                   layer.out_zero_point)
    return [layer]


# --------------------------------------------------------------- the sub-byte Keras path

def _keras_match(layer, only_reader) -> list[str] | None:
    kind = type(layer).__name__
    if kind == "Activation" and getattr(layer.activation, "__name__", "") == "sigmoid":
        return [layer.name]
    if kind == "TFOpLambda" and getattr(layer, "symbol", "") in ("math.sigmoid", "nn.sigmoid",
                                                                  "sigmoid"):
        return [layer.name]
    return None


def _keras_float(xp, x, config: dict):
    if xp is np:  # exp overflows to inf below about -88: sigmoid 0, as in TensorFlow
        with np.errstate(over="ignore"):
            return np.float32(1.0) / (np.float32(1.0) + np.exp(-x))
    return 1.0 / (1.0 + xp.exp(-x))


def _keras_lower(name: str, in_q: dict, out_q: dict, config: dict) -> list[dict]:
    """The table form at every width (module docstring); the multiplier is unused."""
    return [{"kind": "logistic", "name": name, **grid_fields("in", in_q),
             **grid_fields("out", out_q), "m0": np.array([1 << 30], np.int32),
             "n0": np.zeros(1, np.int8), "table": lookup_table(KERAS, in_q, out_q, config)}]


KERAS = KerasPattern(match=_keras_match, float_fn=_keras_float, lower=_keras_lower,
                     signed=False, out_range=(0.0, 1.0), layer_activations=("sigmoid",))

register(OpKind("logistic", "sigmoid 1 / (1 + exp(-x)) (TFLite int8 LOGISTIC)",
                n_multipliers=1, check=check, simulate=simulate,
                tflite={"LOGISTIC": TFLiteOp(_import_logistic)},
                inplace_inputs=(0,), c_function="tn_run_logistic", c_source="tn_logistic.c",
                keras=KERAS))

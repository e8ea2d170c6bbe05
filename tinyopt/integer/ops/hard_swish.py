"""``hard_swish``: x * relu6(x + 3) / 6 on int8 tensors, TFLite's HARD_SWISH (MobileNetV3).

The integer form is TFLite's reference kernel (the same in LiteRT BUILTIN_REF and TFLite Micro),
all in int16 fixed point: the input minus its zero point is put on a "high-resolution" scale
(x 2^7); one multiplier brings it to the output scale (before the output shift), another to
the "relu-ish" scale where real 3.0 is 2^15 (saturating left shifts when its exponent is
positive, a rounding right shift when negative); that value, mapped from [-1, 1] to [0, 1], is
multiplied with the first by a *truncating* doubling high multiply (TFLite's choice: it cancels
the rounding bias of the others), then the output exponent's rounding shift, the zero point
(int16 wrap-around, as the C++ ``int16_t`` sum) and the int8 clamp.

IR fields: ``m0`` = [relu-ish multiplier, output multiplier] as int16 fixed point (Q0.15) held
in int32, ``n0`` = [relu-ish exponent, output exponent]. TFLite: HARD_SWISH. C:
``tn_run_hard_swish`` (``tinyopt/deploy/c/ops/tn_hard_swish.c``, may run in place).

A second form, a lookup table (``table``: 2^in_bits bytes, entry c the stored output code of the
stored input code c), runs hard-swish on packed tensors of any width up to 8 bits; the sub-byte
Keras path builds it (:data:`KERAS`). The multipliers are then unused (zeros).

Sub-byte Keras path (:data:`KERAS`): Keras' MobileNetV3 form
``Multiply()([x, ReLU(6.)(x + 3.) * (1. / 6.)])`` (the TF-op layers ``__operators__.add`` and
``math.multiply`` / ``__operators__.mul``) is one element-wise block, its output quantized signed
(a learned clip, round to nearest). Lowered: with 8-bit input and output on signed grids (stored
as unsigned codes with zero point 128) the int8 kernel above between two exact QUANTIZE nodes
(``<name>_int8``: codes - 128, ``<name>_hswish``: TFLite's arithmetic, ``<name>``: + 128; all in
place), within 1 LSB of the fake-quant layer; otherwise the table, computed in float32 from the
input grid exactly as the fake-quant layer computes, so it is bit-exact with it.

Cortex-M7 twin (``tinyopt/deploy/c/ops/m7/tn_hard_swish.c``, ``tn_m7_run_hard_swish``): one
table lookup per element, a word (four 8-bit codes, eight 4-bit, sixteen 2-bit) per iteration.
The int8 form's table (256 bytes of arena scratch, :func:`m7_scratch`) is computed by the twin
at each call from the arithmetic above, written again in C, so :func:`m7_check` leaves tensors
of fewer than :data:`M7_MIN_ELEMENTS` elements, where building it costs more than it saves, on
the portable kernel; the table form needs in and out of one width of 2, 4 or 8 bits.
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.arith import m0_n0, tflite_quantize_multiplier
from tinyopt.integer.fixedpoint import rounding_divide_by_pot
from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops.registry import (KerasPattern, OpKind, TFLiteOp, grid_fields,
                                          lookup_table, register, table_lookup)

INT16_MIN, INT16_MAX = -(1 << 15), (1 << 15) - 1


def check(layer: IntegerLayer, where: str) -> None:
    """int8 in and out, of the same shape; multipliers in Q0.15, output exponent <= 0. The
    table form: at most 8 bits in and out, 2^in_bits entries."""
    if tuple(layer.in_shape) != tuple(layer.out_shape):
        raise ValueError(f"{where}: out_shape {tuple(layer.out_shape)} differs from in_shape "
                         f"{tuple(layer.in_shape)}")
    if layer.table is not None:
        n = np.asarray(layer.table).shape
        if max(layer.in_bits, layer.out_bits) > 8 or n != (1 << layer.in_bits,):
            raise ValueError(f"{where}: a hard_swish table maps tensors of at most 8 bits and "
                             f"holds 2^in_bits = {1 << min(layer.in_bits, 16)} entries, got "
                             f"{layer.in_bits}-bit in, {layer.out_bits}-bit out, table shape {n}")
        return
    if (layer.in_bits, layer.out_bits, layer.in_signed, layer.out_signed) != (8, 8, True, True):
        raise ValueError(f"{where}: hard_swish runs on int8 tensors (8-bit signed in and out), "
                         f"got {layer.in_bits}-bit in, {layer.out_bits}-bit out")
    if tuple(layer.in_shape) != tuple(layer.out_shape):
        raise ValueError(f"{where}: out_shape {tuple(layer.out_shape)} differs from in_shape "
                         f"{tuple(layer.in_shape)}")
    m0, n0 = np.asarray(layer.m0, np.int64), np.asarray(layer.n0, np.int64)
    if m0.min() < 0 or m0.max() > INT16_MAX:
        raise ValueError(f"{where}: m0 holds int16 fixed-point multipliers in [0, 32767], got "
                         f"{m0.tolist()}")
    if not (-31 <= int(n0[1]) <= 0 and -31 <= int(n0[0]) <= 31):
        raise ValueError(f"{where}: n0 = [relu-ish exponent in [-31, 31], output exponent in "
                         f"[-31, 0]] (TFLite's QuantizeMultiplier range), got {n0.tolist()}")


def int16_multiplier(real: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier then DownScaleInt32ToInt16Multiplier: (Q0.15 multiplier,
    exponent) of a positive real."""
    q, e = tflite_quantize_multiplier(np.float64(real))
    q32 = int(q[0])
    q16 = INT16_MAX if q32 >= (1 << 31) - 1 - (1 << 15) else (q32 + (1 << 15)) >> 16
    return q16, int(e[0])


def _srdhm16(a, b) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul on int16: (a b + nudge) / 2^15, truncating
    toward zero, the nudge 2^14 or 1 - 2^14 by the product's sign."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = a * b
    num = ab + np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    out = np.sign(num) * (np.abs(num) >> 15)  # C integer division truncates toward zero
    return np.where((a == INT16_MIN) & (b == INT16_MIN), INT16_MAX, out)


def _sdhm16(a, b) -> np.ndarray:
    """TFLite's SaturatingDoublingHighMul on int16: a b / 2^15 truncated toward zero."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    ab = a * b
    out = np.sign(ab) * (np.abs(ab) >> 15)
    return np.where((a == INT16_MIN) & (b == INT16_MIN), INT16_MAX, out)


def _sat_shl16(x, amount: int) -> np.ndarray:
    return np.clip(np.asarray(x, np.int64) * (1 << amount), INT16_MIN, INT16_MAX)


def hard_swish_int8(x, in_zero_point: int, out_zero_point: int, relu_mult: int, relu_exp: int,
                    out_mult: int, out_exp: int) -> np.ndarray:
    """TFLite's reference int8 HARD_SWISH (module docstring), vectorised.

    Returns:
        int32 codes in [-128, 127], the shape of ``x``.
    """
    hires = (np.asarray(x, np.int64) - in_zero_point) * (1 << 7)
    pre_out = _srdhm16(hires, out_mult)
    reluish = hires
    if relu_exp > 0:
        reluish = _sat_shl16(reluish, relu_exp - 1)
    reluish = _srdhm16(reluish, relu_mult)
    if relu_exp > 0:
        reluish = _sat_shl16(reluish, 1)
    if relu_exp < 0:
        reluish = rounding_divide_by_pot(reluish, -relu_exp)
    reluish = (reluish + (1 << 15)) >> 1
    out = rounding_divide_by_pot(_sdhm16(reluish, pre_out), -out_exp) + out_zero_point
    out = ((out - INT16_MIN) & 0xFFFF) + INT16_MIN  # the int16_t sum wraps
    return np.clip(out, -128, 127).astype(np.int32)


def simulate(p, xs: list, wrap: bool) -> np.ndarray:
    layer = p.layer
    if layer.table is not None:
        return table_lookup(layer.table, xs[0], layer.in_bits)
    return hard_swish_int8(xs[0], layer.in_zero_point, layer.out_zero_point,
                           int(layer.m0[0]), int(layer.n0[0]), int(layer.m0[1]),
                           int(layer.n0[1]))


def _import_hard_swish(ctx, op, op_name: str) -> list[IntegerLayer]:
    """HARD_SWISH: the multipliers as TFLite's Prepare computes them, in float32."""
    x, out = int(op.inputs[0]), int(op.outputs[0])
    layer = ctx.node("hard_swish", op_name, [x], out)
    ctx.same_shape(layer, op_name)
    hires = np.float32(1.0 / 128.0) * np.float32(layer.in_scale)
    relu_mult, relu_exp = int16_multiplier(hires / np.float32(3.0 / 32768.0))
    out_mult, out_exp = int16_multiplier(hires / np.float32(layer.out_scale))
    if out_exp > 0:
        raise ValueError(f"HARD_SWISH writing {layer.name!r}: the output scale is below "
                         "1/128 of the input scale; TFLite refuses such scales too")
    layer.m0 = np.array([relu_mult, out_mult], np.int32)
    layer.n0 = np.array([relu_exp, out_exp], np.int8)
    return [layer]


# ------------------------------------------------------------------- the Cortex-M7 twin

# the int8 form's smallest tensor on the twin. Measured under QEMU (-icount): building the
# 256-entry table takes about 17,400 instructions, the lookups then 4 per element, the portable
# kernel 84.5 per element, so the twin wins from about 220 elements; a margin above that
M7_MIN_ELEMENTS = 256


def m7_check(step) -> str:
    """"" when the twin runs ``step``, else why the portable kernel keeps it: an int8 tensor of
    fewer than :data:`M7_MIN_ELEMENTS` elements, or whose input zero point leaves int8; a sub-byte
    graph's step where the table's scratch would grow the arena (``Step.roomy`` False); a table
    whose in and out widths differ or are not 2, 4 or 8 bits, or whose entries do not fit the
    output's width."""
    layer = step.layer
    if layer.table is not None:
        bits = (int(layer.in_bits), int(layer.out_bits))
        if bits[0] != bits[1] or bits[0] not in (2, 4, 8):
            return (f"the M7 hard_swish looks up tables of equal in and out widths of 2, 4 or 8 "
                    f"bits, this one maps {bits[0]}-bit to {bits[1]}-bit codes")
        table = np.asarray(layer.table, np.int64) & 0xFF  # the bytes C reads (table_lookup too)
        if table.max() >= (1 << bits[1]):
            return f"table entries outside the {bits[1]}-bit output codes"
        return ""
    n = int(np.prod(layer.in_shape))
    if n < M7_MIN_ELEMENTS:
        return (f"{n} elements: building the M7 kernel's 256-entry table costs more than it "
                f"saves below {M7_MIN_ELEMENTS}")
    if not -128 <= int(layer.in_zero_point) <= 127:
        return f"input zero point {layer.in_zero_point} is not an int8 code"
    if not getattr(step, "roomy", True):
        return "its 256-byte table would grow the arena (sub-byte graph: scratch where free)"
    return ""


def m7_scratch(step) -> int:
    """The int8 form's table (256 bytes); the table form needs none."""
    return 256 if step.layer.table is None else 0


# --------------------------------------------------------------- the sub-byte Keras path

def _inbound_names(layer) -> list[str]:
    nodes = getattr(layer, "_inbound_nodes", [])
    if len(nodes) != 1:
        return []
    inbound = nodes[0].inbound_layers
    inbound = inbound if isinstance(inbound, (list, tuple)) else [inbound]
    return [src.name for src in inbound]


def _constant(layer):
    """The constant operand of a TF-op layer ``x <op> c`` (None when there is none)."""
    nodes = getattr(layer, "_inbound_nodes", [])
    if len(nodes) != 1:
        return None
    kwargs = nodes[0].call_kwargs
    args = list(nodes[0].call_args) + ([kwargs["y"]] if "y" in kwargs else [])
    consts = [a for a in args if isinstance(a, (int, float)) and not isinstance(a, bool)]
    return float(consts[0]) if len(consts) == 1 and len(_inbound_names(layer)) == 1 else None


def _is_op(layer, symbols) -> bool:
    return type(layer).__name__ == "TFOpLambda" and getattr(layer, "symbol", "") in symbols


def _keras_match(layer, only_reader) -> list[str] | None:
    """x + 3 -> ReLU(6) -> * (1/6) -> Multiply with x (MobileNetV3's hard_swish), every
    intermediate tensor read only by the next layer."""
    if not _is_op(layer, ("__operators__.add", "math.add")) or _constant(layer) != 3.0:
        return None
    x = _inbound_names(layer)
    relu = only_reader(layer.name)
    if relu is None or type(relu).__name__ != "ReLU" or relu.max_value is None \
            or float(relu.max_value) != 6.0 or float(relu.negative_slope) != 0.0 \
            or float(relu.threshold) != 0.0:
        return None
    scale = only_reader(relu.name)
    if scale is None or not _is_op(scale, ("math.multiply", "__operators__.mul")) \
            or _constant(scale) is None or abs(_constant(scale) - 1.0 / 6.0) > 1e-7:
        return None
    mul = only_reader(scale.name)
    if mul is None or type(mul).__name__ != "Multiply" \
            or sorted(_inbound_names(mul)) != sorted(x + [scale.name]):
        return None
    return [layer.name, relu.name, scale.name, mul.name]


def _keras_float(xp, x, config: dict):
    return x * (xp.minimum(xp.maximum(x + 3.0, 0.0), 6.0) * (1.0 / 6.0))


def _keras_lower(name: str, in_q: dict, out_q: dict, config: dict) -> list[dict]:
    """The int8 kernel between two exact QUANTIZE nodes, or the table (module docstring)."""
    signed8 = all(int(q["bits"]) == 8 and int(q["zero_point"]) == 128
                  and not q.get("signed", False) for q in (in_q, out_q))
    if not signed8:
        return [{"kind": "hard_swish", "name": name, **grid_fields("in", in_q),
                 **grid_fields("out", out_q), "m0": np.zeros(2, np.int32),
                 "n0": np.zeros(2, np.int8), "table": lookup_table(KERAS, in_q, out_q, config)}]
    int8_in = {"bits": 8, "scale": in_q["scale"], "zero_point": 0, "signed": True}
    int8_out = {"bits": 8, "scale": out_q["scale"], "zero_point": 0, "signed": True}
    hires = np.float32(1.0 / 128.0) * np.float32(in_q["scale"])
    relu_mult, relu_exp = int16_multiplier(hires / np.float32(3.0 / 32768.0))
    out_mult, out_exp = int16_multiplier(hires / np.float32(out_q["scale"]))
    if out_exp > 0:
        raise ValueError(f"layer {name!r}: hard-swish output scale {out_q['scale']:g} is below "
                         f"1/128 of its input scale {in_q['scale']:g}, which TFLite's int8 "
                         "HARD_SWISH cannot run; widen the clip of its output or narrow the "
                         "input's")
    one_m0, one_n0 = m0_n0(np.array([1.0]))
    return [{"kind": "quantize", "name": f"{name}_int8", **grid_fields("in", in_q),
             **grid_fields("out", int8_in), "m0": one_m0, "n0": one_n0},
            {"kind": "hard_swish", "name": f"{name}_hswish", **grid_fields("in", int8_in),
             **grid_fields("out", int8_out), "m0": np.array([relu_mult, out_mult], np.int32),
             "n0": np.array([relu_exp, out_exp], np.int8)},
            {"kind": "quantize", "name": name, **grid_fields("in", int8_out),
             **grid_fields("out", out_q), "m0": one_m0, "n0": one_n0}]


KERAS = KerasPattern(match=_keras_match, float_fn=_keras_float, lower=_keras_lower,
                     signed=True)

register(OpKind("hard_swish", "x * relu6(x + 3) / 6 (TFLite int8 HARD_SWISH)", n_multipliers=2,
                check=check, simulate=simulate,
                tflite={"HARD_SWISH": TFLiteOp(_import_hard_swish)},
                inplace_inputs=(0,), c_function="tn_run_hard_swish",
                c_source="tn_hard_swish.c", keras=KERAS,
                m7_source="tn_hard_swish.c", m7_function="tn_m7_run_hard_swish",
                m7_check=m7_check, m7_scratch=m7_scratch))

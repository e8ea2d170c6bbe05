"""``mul``: the element-wise product of two int8 tensors, TFLite's int8 MUL (EfficientNet's swish
x * sigmoid(x), squeeze-and-excite's per-channel gate).

Integer form (TFLite's reference kernel, the same in LiteRT BUILTIN_REF and TFLite Micro): both
inputs minus their zero points, multiplied in int32, requantized by one multiplier
s_1 s_2 / s_out (``m0[0]`` / ``n0[0]``, computed in double as both Prepares do, then
QuantizeMultiplier; MultiplyByQuantizedMultiplier rounds twice), plus the output zero point,
clamped to the fused activation's range.

Shapes: input 0 has the output's shape; input 1 has it too, or holds one value per channel
((1, 1, C), (1, C) or (C,)) broadcast over every other axis (TFLite's BroadcastMul4DSlow for the
squeeze-and-excite case); a constant operand makes a ``mul_const`` node instead. The importer
puts the full-size operand first (the product and the multiplier are symmetric, so the swap
changes no bit). The C descriptor gets the second
input's zero point (``in2_zero_point``) and element count (``outer``) from the deployed step's
input records (:func:`c_fields`). C: ``tn_run_mul``
(``tinyopt/deploy/c/ops/tn_mul.c``, may run in place over either input of the output's size).
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.arith import tflite_quantize_multiplier
from tinyopt.integer.fixedpoint import REQUANT
from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops import mul_const
from tinyopt.integer.ops._checks import int8_same_shape
from tinyopt.integer.ops.registry import OpKind, TFLiteOp, register


def check(layer: IntegerLayer, where: str) -> None:
    """int8 in and out, the output of input 0's shape, a non-negative multiplier."""
    int8_same_shape(layer, where, " (input 0 must be the full-size operand)")
    if int(layer.m0[0]) < 0:
        raise ValueError(f"{where}: m0 must be >= 0 (a product of scales), got {int(layer.m0[0])}")


def broadcast_ok(shape: tuple, out_shape: tuple) -> bool:
    """``shape`` equals ``out_shape`` or holds one value per channel of it ((1, .., 1, C))."""
    shape, out_shape = tuple(shape), tuple(out_shape)
    if shape == out_shape:
        return True
    return (len(shape) <= len(out_shape) and len(shape) >= 1 and shape[-1] == out_shape[-1]
            and all(d == 1 for d in shape[:-1]))


def check_inputs(layer: IntegerLayer, where: str, inputs: list) -> None:
    """Two int8 inputs: input 0 of the output's shape, input 1 of it or one value per
    channel."""
    a, b = inputs
    for t in (a, b):
        if (t.bits, t.signed) != (8, True):
            raise ValueError(f"{where}: input {t.name!r} is {t.bits}-bit "
                             f"{'signed' if t.signed else 'unsigned'}; mul reads int8 tensors")
    if not broadcast_ok(b.shape, layer.out_shape):
        raise ValueError(f"{where}: input {b.name!r} has shape {b.shape}; mul takes the "
                         f"output's shape {tuple(layer.out_shape)} or one value per channel "
                         f"(1, .., 1, {layer.out_shape[-1]}), no other broadcasting")


def mul_int8(a, b, za: int, zb: int, multiplier: int, shift: int, rounding: str,
             out_zero_point: int, lo: int, hi: int, wrap: bool = False,
             name: str = "?") -> np.ndarray:
    """TFLite's reference int8 MUL (module docstring); ``b`` broadcasts as numpy does.

    Returns:
        int32 codes in [lo, hi].
    """
    prod = (np.asarray(a, np.int64) - za) * (np.asarray(b, np.int64) - zb)
    y = REQUANT[rounding](prod, multiplier, shift, wrap, name) + out_zero_point
    return np.clip(y, lo, hi).astype(np.int32)


def simulate(p, xs: list, wrap: bool) -> np.ndarray:
    layer = p.layer
    a, b = xs
    b = np.asarray(b).reshape((len(b),) + (1,) * (a.ndim - 2) + (a.shape[-1],)) \
        if b.shape[1:] != a.shape[1:] else b  # (N, C) -> (N, 1, .., C): broadcast per channel
    return mul_int8(a, b, layer.in_zero_point, p.zero_points[1], int(layer.m0[0]),
                    int(layer.n0[0]), p.rounding, layer.out_zero_point, *layer.out_range, wrap,
                    layer.name)


def macs(layer: IntegerLayer) -> int:
    """One multiplication per output element."""
    return int(np.prod(layer.out_shape))


def c_fields(step, arrays) -> dict:
    """The descriptor fields beyond the common ones, from the deployed step
    (:class:`tinyopt.integer.steps.Step`): input 1's zero point (``in2_zero_point``) and
    element count (``outer``: the output's size, or C when it is broadcast per channel)."""
    b = step.in_specs[1]
    return {"in2_zero_point": int(b.zero_point), "outer": int(np.prod(b.shape))}


def _import_mul(ctx, op, op_name: str) -> list[IntegerLayer]:
    """MUL of two int8 tensors: same shape, or one of them one value per channel; a MUL with a
    constant operand is a ``mul_const`` node (:mod:`tinyopt.integer.ops.mul_const`)."""
    a, b, out = int(op.inputs[0]), int(op.inputs[1]), int(op.outputs[0])
    const = mul_const.constant_operand(ctx, op, op_name, ctx.m.name(out))
    if const is not None:
        return mul_const.build(ctx, op, op_name, *const)
    sa, sb = ctx.spec(a, op_name), ctx.spec(b, op_name)
    dst = ctx.spec(out, op_name)
    if sa.shape != dst.shape and sb.shape == dst.shape:
        a, b, sa, sb = b, a, sb, sa  # the full-size operand first (the product is symmetric)
    if sa.shape != dst.shape or not broadcast_ok(sb.shape, dst.shape):
        raise ValueError(f"MUL writing {dst.name!r}: inputs {sa.name!r} {sa.shape} and "
                         f"{sb.name!r} {sb.shape} -> {dst.shape}; supported: equal shapes, or "
                         "one input with one value per channel (1, .., 1, C)")
    layer = ctx.node("mul", op_name, [a, b], out)
    real = mul_const.product_multiplier(ctx.flavour, sa.scale, sb.scale, dst.scale)
    layer.m0, layer.n0 = tflite_quantize_multiplier(real)
    layer.rounding = ctx.rounding(op_name)
    layer.act_min, layer.act_max = ctx.act_range(op.builtinOptions, out)
    return [layer]


register(OpKind("mul", "element-wise product, per-channel broadcast (TFLite int8 MUL)",
                n_inputs=2, n_multipliers=1, check=check, check_inputs=check_inputs,
                simulate=simulate,
                tflite={"MUL": TFLiteOp(_import_mul, {"litert": "tflite_double",
                                                      "tflm": "tflite_double"})},
                inplace_inputs=(0, 1), c_function="tn_run_mul", c_source="tn_mul.c",
                c_fields=c_fields, macs=macs))

"""``mul_const``: an int8 tensor times a constant, TFLite's int8 MUL with one constant operand
(Keras ``Rescaling`` / ``Normalization``, MobileNetV3's hard-sigmoid ``* (1/6)``).

A kind of its own (not ``mul``): a node's input count is fixed per kind, and the constant is no
tensor of the graph but bytes of the node. Integer form: TFLite's reference MUL (LiteRT
BUILTIN_REF and TFLite Micro, broadcasting the constant as BroadcastMul does):
(x - z_x)(c - z_c) in int32, requantized by one multiplier s_x s_c / s_out (``m0[0]`` /
``n0[0]``, double, QuantizeMultiplier, the double rounding), plus z_out, clamped to the fused
activation's range.

Fields: ``table`` holds the constant's int8 codes as bytes (one value, or one per channel of the
output), ``weight_zero_point[0]`` its zero point. The importer is ``mul``'s MUL builder, which
hands a MUL with a constant operand to :func:`build`. C: ``tn_run_mul_const``
(``tinyopt/deploy/c/ops/tn_mul_const.c``, in place over its input).
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.arith import tflite_quantize_multiplier
from tinyopt.integer.fixedpoint import REQUANT
from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops._checks import int8_same_shape
from tinyopt.integer.ops.registry import OpKind, register


def constant_codes(layer: IntegerLayer) -> np.ndarray:
    """The constant's int8 codes (int64), one value or one per output channel."""
    return np.asarray(layer.table, np.uint8).view(np.int8).astype(np.int64)


def check(layer: IntegerLayer, where: str) -> None:
    """int8 in and out of one shape; a constant of 1 or C codes with one zero point."""
    int8_same_shape(layer, where)
    c = int(layer.out_shape[-1]) if len(layer.out_shape) else 1
    if layer.table is None or np.asarray(layer.table).ndim != 1 \
            or len(layer.table) not in (1, c):
        raise ValueError(f"{where}: table must hold the constant's int8 codes, 1 or {c} (one "
                         f"per channel) bytes, got "
                         f"{None if layer.table is None else np.asarray(layer.table).shape}")
    zc = layer.weight_zero_point
    if zc is None or np.asarray(zc).shape != (1,) or not -128 <= int(zc[0]) <= 127:
        raise ValueError(f"{where}: weight_zero_point must hold the constant's zero point (one "
                         f"int8 value), got {zc}")


def check_mul(layer: IntegerLayer, where: str) -> None:
    check(layer, where)
    if int(layer.m0[0]) < 0:
        raise ValueError(f"{where}: m0 must be >= 0 (a product of scales), got {int(layer.m0[0])}")


def simulate(p, xs: list, wrap: bool) -> np.ndarray:
    """TFLite's int8 MUL (as ``mul.mul_int8``, written here: ``mul`` imports this module)."""
    layer = p.layer
    prod = (np.asarray(xs[0], np.int64) - layer.in_zero_point) \
        * (constant_codes(layer) - int(layer.weight_zero_point[0]))
    y = REQUANT[p.rounding](prod, int(layer.m0[0]), int(layer.n0[0]), wrap, layer.name)
    return np.clip(y + layer.out_zero_point, *layer.out_range).astype(np.int32)


def macs(layer: IntegerLayer) -> int:
    """One multiplication per output element."""
    return int(np.prod(layer.out_shape))


def c_fields(step, emit) -> dict:
    """The constant's zero point (``in2_zero_point``) and code count (``outer``: 1 or C)."""
    layer = step.layer
    return {"in2_zero_point": int(layer.weight_zero_point[0]), "outer": len(layer.table)}


def constant_operand(ctx, op, op_name: str, out_name: str):
    """(activation input index, constant input index) of a binary op, or None when neither
    input is a constant; ValueError when both are, or when the constant is not an int8 tensor
    of one scale holding 1 or C values (C: the output's channels)."""
    ins = [int(op.inputs[0]), int(op.inputs[1])]
    const = [i for i in ins if is_constant(ctx.m, i)]
    if not const:
        return None
    if len(const) == 2:
        raise ValueError(f"{op_name} writing {out_name!r}: both inputs are constants; fold them "
                         "before converting")
    k = const[0]
    x = ins[1 - ins.index(k)]
    ctx.m.check_int8(k, "constant", op_name)
    scales, _ = ctx.m.quant(k)
    dst = ctx.spec(int(op.outputs[0]), op_name)
    c = int(dst.shape[-1]) if dst.shape else 1
    shape = [int(d) for d in ctx.m.tensor(k).shape]
    n = int(np.prod(shape)) if shape else 1
    if len(scales) != 1 or n not in (1, c) or (n > 1 and shape[-1] != c):
        raise ValueError(f"{op_name} writing {out_name!r}: constant {ctx.m.name(k)!r} has shape "
                         f"{shape} and {len(scales)} scale(s); supported: one value or one per "
                         f"channel ({c}) with one scale")
    return x, k


def is_constant(m, i: int) -> bool:
    """Tensor i holds data in the flatbuffer (a weight or constant, not an activation)."""
    buf = m.model.buffers[m.tensor(i).buffer]
    return bool((buf.data is not None and len(buf.data)) or (buf.offset and buf.size))


def set_constant(ctx, layer: IntegerLayer, k: int) -> tuple[float, int]:
    """Store constant tensor k's codes and zero point in ``layer``; returns (scale, zero point)."""
    scales, zps = ctx.m.quant(k)
    layer.table = ctx.m.data(k).reshape(-1).astype(np.int8).view(np.uint8).copy()
    layer.weight_zero_point = np.array([int(zps[0])], np.int32)
    layer.extra["constant"] = ctx.m.name(k)[:200]
    return float(scales[0]), int(zps[0])


def product_multiplier(flavour: str, s1, s2, s_out) -> np.float64:
    """MUL's real multiplier s1 s2 / s_out as each runtime's Prepare computes it: LiteRT in
    float32 (``input1->params.scale * input2->params.scale / output->params.scale``, then
    widened), TFLite Micro in double. The two differ in the last bits for some scales, and so
    does the rounding of a product near a tie (seen on EfficientNetB0's squeeze-excite MUL)."""
    if flavour == "litert":
        f = np.float32
        return np.float64(f(f(f(s1) * f(s2)) / f(s_out)))
    return (np.float64(np.float32(s1)) * np.float64(np.float32(s2))
            / np.float64(np.float32(s_out)))


def build(ctx, op, op_name: str, x: int, k: int) -> list[IntegerLayer]:
    """MUL of activation tensor x by constant tensor k (the product is symmetric, so the
    operand order does not matter)."""
    out = int(op.outputs[0])
    layer = ctx.node("mul_const", op_name, [x], out)
    ctx.same_shape(layer, op_name)
    s_c, _ = set_constant(ctx, layer, k)
    real = product_multiplier(ctx.flavour, layer.in_scale, s_c, layer.out_scale)
    layer.m0, layer.n0 = tflite_quantize_multiplier(real)
    layer.rounding = ctx.rounding(op_name)
    layer.act_min, layer.act_max = ctx.act_range(op.builtinOptions, out)
    return [layer]


register(OpKind("mul_const", "product with a constant, per tensor or per channel (TFLite int8 "
                "MUL)", n_inputs=1, n_multipliers=1, check=check_mul, simulate=simulate,
                inplace_inputs=(0,), c_function="tn_run_mul_const", c_source="tn_mul_const.c",
                c_fields=c_fields, macs=macs))

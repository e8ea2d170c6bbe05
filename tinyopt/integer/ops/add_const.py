"""``add_const``: an int8 tensor plus a constant, TFLite's int8 ADD with one constant operand
(Keras ``Rescaling``'s offset, ``Normalization``'s mean).

A kind of its own (not ``add``): a node's input count is fixed per kind, and the constant is no
tensor of the graph but bytes of the node. Integer form: TFLite's reference ADD (LiteRT
BUILTIN_REF and TFLite Micro, broadcasting the constant as BroadcastAdd does), exactly
:mod:`tinyopt.integer.ops.add`'s: both operands minus their zero points, shifted left by
``left_shift`` (20), rescaled by (m0[0], n0[0]) (the tensor) and (m0[1], n0[1]) (the constant),
the sum rescaled by (m0[2], n0[2]), plus z_out, clamped. The importer keeps TFLite's operand
order in the multipliers' meaning: m0[0] / n0[0] always belong to the tensor (the sum is
symmetric, so a constant first operand changes no bit).

Fields: ``table`` holds the constant's int8 codes as bytes (one value, or one per channel of the
output), ``weight_zero_point[0]`` its zero point. The importer is ``add``'s ADD builder, which
hands an ADD with a constant operand to :func:`build`. C: ``tn_run_add_const``
(``tinyopt/deploy/c/ops/tn_add_const.c``, in place over its input).
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.arith import tflite_quantize_multiplier
from tinyopt.integer.fixedpoint import REQUANT, check_multipliers
from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops import mul_const
from tinyopt.integer.ops.registry import OpKind, register


def check(layer: IntegerLayer, where: str) -> None:
    """As ``mul_const`` (int8, one shape, 1 or C constant codes), and left_shift in [0, 24]."""
    mul_const.check(layer, where)
    if not 0 <= int(layer.left_shift) <= 24:
        raise ValueError(f"{where}: left_shift must be in [0, 24], got {layer.left_shift}")


def check_c(layer: IntegerLayer, flavour: str, where: str) -> None:
    """TFLite multipliers in range."""
    check_multipliers(layer, flavour, where)


def simulate(p, xs: list, wrap: bool) -> np.ndarray:
    layer = p.layer
    rq = REQUANT[p.rounding]
    a = (xs[0].astype(np.int64) - layer.in_zero_point) << layer.left_shift
    b = (mul_const.constant_codes(layer) - int(layer.weight_zero_point[0])) << layer.left_shift
    total = (rq(a, layer.m0[0], layer.n0[0], wrap, layer.name)
             + rq(b, layer.m0[1], layer.n0[1], wrap, layer.name))
    y = rq(total, layer.m0[2], layer.n0[2], wrap, layer.name) + layer.out_zero_point
    return np.clip(y, *layer.out_range).astype(np.int32)


def c_fields(step, emit) -> dict:
    """The left shift, the constant's zero point (``in2_zero_point``) and its code count
    (``outer``: 1 or C)."""
    layer = step.layer
    return {"left_shift": int(layer.left_shift),
            "in2_zero_point": int(layer.weight_zero_point[0]), "outer": len(layer.table)}


def build(ctx, op, op_name: str, x: int, k: int) -> list[IntegerLayer]:
    """ADD of activation tensor x and constant tensor k, with the reference kernel's rescaling
    (:func:`tinyopt.integer.ops.add._import_add`)."""
    out = int(op.outputs[0])
    layer = ctx.node("add_const", op_name, [x], out)
    ctx.same_shape(layer, op_name)
    s_c, _ = mul_const.set_constant(ctx, layer, k)
    layer.left_shift = 20
    s_x, s_out = np.float64(np.float32(layer.in_scale)), np.float64(np.float32(layer.out_scale))
    s_c = np.float64(np.float32(s_c))
    twice_max = 2 * max(s_x, s_c)
    reals = [s_x / twice_max, s_c / twice_max,
             twice_max / ((1 << layer.left_shift) * s_out)]
    q, e = tflite_quantize_multiplier(np.array(reals))
    if np.any(e > 0):
        raise ValueError(f"ADD writing {layer.name!r}: a rescaling multiplier is >= 1 ({reals}); "
                         "TFLite refuses such scales too")
    layer.m0, layer.n0 = q, e
    layer.rounding = ctx.rounding(op_name)
    layer.act_min, layer.act_max = ctx.act_range(op.builtinOptions, out)
    return [layer]


register(OpKind("add_const", "sum with a constant, per tensor or per channel (TFLite int8 ADD)",
                n_inputs=1, n_multipliers=3, check=check, simulate=simulate,
                inplace_inputs=(0,), c_function="tn_run_add_const", c_source="tn_add_const.c",
                check_c=check_c, c_fields=c_fields))

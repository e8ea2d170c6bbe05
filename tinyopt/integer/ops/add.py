"""``add``: TFLite's int8 ADD of two tensors of the same shape. Both inputs minus their zero
point, shifted left by ``left_shift``, rescaled by (m0[0], n0[0]) / (m0[1], n0[1]); the sum
rescaled by (m0[2], n0[2]), plus the output zero point, clamped (fused activation). TFLite: ADD
(an ADD with a constant operand is an ``add_const`` node, :mod:`tinyopt.integer.ops.add_const`).
C: ``tn_run_add`` (may run in place over either input); the Cortex-M7 kernel and the ADD fused
into the producing convolution, :mod:`tinyopt.deploy.kernels_m7`.
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.arith import tflite_quantize_multiplier
from tinyopt.integer.fixedpoint import REQUANT
from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops import add_const, mul_const
from tinyopt.integer.ops._checks import byte_kernel
from tinyopt.integer.ops.registry import OpKind, TFLiteOp, register


def check(layer: IntegerLayer, where: str) -> None:
    if not 0 <= int(layer.left_shift) <= 24:
        raise ValueError(f"{where}: left_shift must be in [0, 24], got {layer.left_shift}")


def check_inputs(layer: IntegerLayer, where: str, inputs: list) -> None:
    """Two inputs of the same shape and bits (no broadcasting), out_shape theirs."""
    src, b = inputs
    if b.shape != src.shape or b.bits != src.bits or b.signed != src.signed:
        raise ValueError(f"{where}: inputs {src.name!r} {src.shape} and {b.name!r} "
                         f"{b.shape} must have the same shape and bits (no broadcasting)")
    if tuple(layer.out_shape) != src.shape:
        raise ValueError(f"{where}: field out_shape {tuple(layer.out_shape)} differs "
                         f"from the inputs' {src.shape}")


def simulate(p, xs: list, wrap: bool) -> np.ndarray:
    layer = p.layer
    rq = REQUANT[p.rounding]
    a = (xs[0].astype(np.int64) - layer.in_zero_point) << layer.left_shift
    b = (xs[1].astype(np.int64) - p.zero_points[1]) << layer.left_shift
    total = (rq(a, layer.m0[0], layer.n0[0], wrap, layer.name)
             + rq(b, layer.m0[1], layer.n0[1], wrap, layer.name))
    y = rq(total, layer.m0[2], layer.n0[2], wrap, layer.name) + layer.out_zero_point
    return np.clip(y, *layer.out_range).astype(np.int32)


def _import_add(ctx, op, op_name: str) -> list[IntegerLayer]:
    """ADD of two int8 tensors of the same shape, with the reference kernel's input rescaling:
    left_shift 20, multipliers s_i / (2 max(s_1, s_2)) per input and
    2 max(s_1, s_2) / (2^20 s_out) for the sum (QuantizeMultiplierSmallerThanOneExp)."""
    a, b = int(op.inputs[0]), int(op.inputs[1])
    out = int(op.outputs[0])
    const = mul_const.constant_operand(ctx, op, op_name, ctx.m.name(out))
    if const is not None:  # a constant operand: an add_const node (ops/add_const.py)
        return add_const.build(ctx, op, op_name, *const)
    layer = ctx.node("add", op_name, [a, b], out)
    ctx.same_shape(layer, op_name)
    ta, tb, to = (ctx.tensors[n] for n in (*layer.inputs, layer.outputs[0]))
    if ta.shape != tb.shape:
        raise ValueError(f"ADD writing {to.name!r}: inputs {ta.name!r} {ta.shape} and {tb.name!r}"
                         f" {tb.shape} differ; broadcasting is not supported")
    layer.left_shift = 20
    twice_max = 2 * max(np.float64(np.float32(ta.scale)), np.float64(np.float32(tb.scale)))
    reals = [np.float64(np.float32(ta.scale)) / twice_max,
             np.float64(np.float32(tb.scale)) / twice_max,
             twice_max / ((1 << layer.left_shift) * np.float64(np.float32(to.scale)))]
    q, e = tflite_quantize_multiplier(np.array(reals))
    if np.any(e > 0):
        raise ValueError(f"ADD writing {to.name!r}: a rescaling multiplier is >= 1 ({reals}); "
                         "TFLite refuses such scales too")
    layer.m0, layer.n0 = q, e
    layer.rounding = ctx.rounding(op_name)
    layer.act_min, layer.act_max = ctx.act_range(op.builtinOptions, out)
    return [layer]


def c_fields(step, emit) -> dict:
    """The descriptor's ADD fields: the inputs' left shift and the second input's zero point."""
    return {"left_shift": int(step.layer.left_shift),
            "in2_zero_point": int(step.in_specs[1].zero_point)}


register(OpKind("add", "element-wise add (TFLite int8 ADD)", n_inputs=2, n_multipliers=3,
                check=check, check_inputs=check_inputs, simulate=simulate,
                tflite={"ADD": TFLiteOp(_import_add, {"litert": "tflite_double",
                                                      "tflm": "tflite_double"})},
                inplace_inputs=(0, 1), c_function="tn_run_add", check_c=byte_kernel,
                c_fields=c_fields))

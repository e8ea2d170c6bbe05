"""``softmax``: TFLite's int8 fixed-point softmax over the last axis (output scale 1/256, zero
point -128): ``m0`` / ``n0`` the input-beta multiplier and left shift, ``diff_min`` the cut-off
(:func:`tinyopt.integer.fixedpoint.softmax_int8`, gemmlowp arithmetic). TFLite: SOFTMAX (the
same kernel in LiteRT BUILTIN_REF, TFLM and CMSIS-NN). C: ``tn_run_softmax`` (may run in place).
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.arith import tflite_quantize_multiplier
from tinyopt.integer.fixedpoint import softmax_int8
from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops._checks import byte_kernel
from tinyopt.integer.ops.registry import OpKind, TFLiteOp, register


def check(layer: IntegerLayer, where: str) -> None:
    if int(layer.diff_min) > 0:
        raise ValueError(f"{where}: diff_min must be <= 0, got {layer.diff_min}")


def check_c(layer: IntegerLayer, flavour: str, where: str) -> None:
    """The C kernel's bytes and multipliers, and an input left shift in [0, 31]."""
    byte_kernel(layer, flavour, where)
    if not 0 <= int(layer.n0[0]) <= 31:
        raise ValueError(f"{where}: the softmax input left shift n0 must be in [0, 31], got "
                         f"{int(layer.n0[0])}")


def simulate(p, xs: list, wrap: bool) -> np.ndarray:
    layer = p.layer
    y = softmax_int8(xs[0], int(layer.m0[0]), int(layer.n0[0]), int(layer.diff_min), p.rounding)
    return np.clip(y, *layer.out_range).astype(np.int32)


def _import_softmax(ctx, op, op_name: str) -> list[IntegerLayer]:
    """int8 SOFTMAX over the last axis (output scale 1/256, zero point -128), TFLite's reference
    fixed-point kernel (the same in LiteRT BUILTIN_REF, TFLM and CMSIS-NN's arm_softmax_s8):
    PreprocessSoftmaxScaling(beta, s_in, 5 integer bits) and CalculateInputRadius."""
    x, out = int(op.inputs[0]), int(op.outputs[0])
    layer = ctx.node("softmax", op_name, [x], out)
    ctx.same_shape(layer, op_name)
    if layer.out_zero_point != -128 or np.float32(layer.out_scale) != np.float32(1 / 256):
        raise ValueError(f"SOFTMAX writing {layer.name!r}: int8 softmax needs output scale "
                         f"1/256 and zero point -128, got {layer.out_scale}, "
                         f"{layer.out_zero_point}")
    beta = float(np.float32(op.builtinOptions.beta))
    max_real = float((1 << 31) - 1)  # (1 << 30) - 1 in TFLITE_SINGLE_ROUNDING builds
    real = min(beta * float(np.float32(layer.in_scale)) * float(1 << 26), max_real)
    q, e = tflite_quantize_multiplier(real)
    layer.m0, layer.n0 = q, e
    layer.diff_min = -int(np.floor(31.0 * (1 << 26) / float(1 << int(e[0]))))
    layer.rounding = ctx.rounding(op_name)
    return [layer]


def c_fields(step, emit) -> dict:
    return {"diff_min": int(step.layer.diff_min)}


register(OpKind("softmax", "int8 softmax over the last axis (TFLite SOFTMAX)", n_multipliers=1,
                check=check, simulate=simulate,
                tflite={"SOFTMAX": TFLiteOp(_import_softmax, {"litert": "tflite_double",
                                                              "tflm": "tflite_double"})},
                inplace_inputs=(0,), c_function="tn_run_softmax", check_c=check_c,
                c_fields=c_fields))

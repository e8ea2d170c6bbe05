"""``quantize``: TFLite's QUANTIZE between integer tensors: (x - z_in) requantized by one
multiplier, plus z_out, clamped. C: ``tn_run_quantize`` (may run in place).
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.arith import tflite_quantize_multiplier
from tinyopt.integer.fixedpoint import REQUANT
from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops._checks import byte_kernel
from tinyopt.integer.ops.registry import OpKind, TFLiteOp, register


def simulate(p, xs: list, wrap: bool) -> np.ndarray:
    layer = p.layer
    y = REQUANT[p.rounding](xs[0].astype(np.int64) - layer.in_zero_point, layer.m0[0],
                            layer.n0[0], wrap, layer.name) + layer.out_zero_point
    return np.clip(y, *layer.out_range).astype(np.int32)


def _import_quantize(ctx, op, op_name: str) -> list[IntegerLayer]:
    """QUANTIZE between int8 tensors: (x - z_in) * QuantizeMultiplier(s_in / s_out) + z_out."""
    x, out = int(op.inputs[0]), int(op.outputs[0])
    layer = ctx.node("quantize", op_name, [x], out)
    ctx.same_shape(layer, op_name)
    real = np.float64(np.float32(layer.in_scale)) / np.float64(np.float32(layer.out_scale))
    layer.m0, layer.n0 = tflite_quantize_multiplier(real)
    layer.rounding = ctx.rounding(op_name)
    return [layer]


register(OpKind("quantize", "requantization between integer tensors (TFLite QUANTIZE)",
                n_multipliers=1, simulate=simulate,
                tflite={"QUANTIZE": TFLiteOp(_import_quantize, {"litert": "tflite_double",
                                                                "tflm": "tflite_double"})},
                inplace_inputs=(0,), c_function="tn_run_quantize", check_c=byte_kernel))

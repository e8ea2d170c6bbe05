"""TFLite's int8 RELU / RELU6 / RELU_N1_TO_1 as separate operators (a ``Conv2DTranspose(...,
activation="relu")`` converts to TRANSPOSE_CONV then RELU): (x - z_in) requantized by s_in /
s_out, plus z_out, clamped to the activation's range on the output grid. That is the
``quantize`` kind's arithmetic with a narrower clamp (``act_min`` / ``act_max``), so this module
only imports: no kind, simulation or kernel of its own.
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.arith import tflite_quantize_multiplier
from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops.registry import TFLiteOp, add_tflite

# the real range each operator clamps to
RANGES = {"RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}


def _import_relu(ctx, op, op_name: str) -> list[IntegerLayer]:
    """RELU, RELU6, RELU_N1_TO_1: TFLite's ReluPrepare computes the multiplier from the float32
    quotient of the scales and the clamp as z_out + round(bound / s_out) (TFLM the same)."""
    x, out = int(op.inputs[0]), int(op.outputs[0])
    layer = ctx.node("quantize", op_name, [x], out)
    ctx.same_shape(layer, op_name)
    real = np.float64(np.float32(layer.in_scale) / np.float32(layer.out_scale))
    layer.m0, layer.n0 = tflite_quantize_multiplier(real)
    layer.rounding = ctx.rounding(op_name)
    lo, hi = RANGES[op_name]

    def code(bound):
        v = np.float32(bound) / np.float32(layer.out_scale)
        return int(layer.out_zero_point + np.sign(v) * np.floor(np.abs(v) + np.float32(0.5)))
    layer.act_min = max(-128, code(lo))
    layer.act_max = 127 if hi is None else min(127, code(hi))
    return [layer]


# RELU reads like QUANTIZE: it is imported into the quantize kind (one kind, one kernel)
_ROUNDING = {"litert": "tflite_double", "tflm": "tflite_double"}
for _name in RANGES:
    add_tflite("quantize", _name, TFLiteOp(_import_relu, _ROUNDING))

"""``leaky_relu``: x for x >= 0, alpha x below, on int8 tensors (TFLite's LEAKY_RELU).

Integer form (TFLite's reference kernel, the same in TFLite Micro): the input minus its zero
point, requantized by the identity multiplier s_in / s_out when it is >= 0 and by the alpha
multiplier alpha s_in / s_out when it is negative (``m0`` / ``n0`` = [identity, alpha]), plus
the output zero point, clamped. Both multipliers are computed in float32, as TFLite's Prepare
does, then TFLite's QuantizeMultiplier. C: ``tn_run_leaky_relu`` (may run in place).

Sub-byte Keras path (:data:`KERAS`): a ``LeakyReLU`` layer, or an ``Activation`` whose function is
``tf.nn.leaky_relu`` (alpha 0.2), read as one element-wise block; its output is quantized signed
(a learned clip, round to nearest). It lowers to this same node at every width (the kernel reads
and writes packed tensors of 1 to 8 bits with their zero points), with TFLite's arithmetic: the
multipliers in float32, double rounding, so at 8 bits it is the int8 import's kernel; it agrees
with the fake-quant layer within 1 LSB (Q31 multipliers, ties rounded away from zero).
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.arith import tflite_quantize_multiplier
from tinyopt.integer.fixedpoint import REQUANT
from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops._checks import byte_kernel
from tinyopt.integer.ops.registry import KerasPattern, OpKind, TFLiteOp, grid_fields, register

KERAS_ALPHA = 0.2  # tf.nn.leaky_relu's default, for Activation(tf.nn.leaky_relu)


def check(layer: IntegerLayer, where: str) -> None:
    if tuple(layer.in_shape) != tuple(layer.out_shape) or max(layer.in_bits, layer.out_bits) > 8:
        raise ValueError(f"{where}: leaky_relu maps a tensor of at most 8 bits to one of the "
                         f"same shape, got {tuple(layer.in_shape)} {layer.in_bits}-bit -> "
                         f"{tuple(layer.out_shape)} {layer.out_bits}-bit")
    if np.asarray(layer.m0).min() < 0:
        raise ValueError(f"{where}: m0 must be >= 0 (alpha >= 0)")


def simulate(p, xs: list, wrap: bool) -> np.ndarray:
    layer = p.layer
    rq = REQUANT[p.rounding]
    x = xs[0].astype(np.int64) - layer.in_zero_point
    y = np.where(x >= 0, rq(x, layer.m0[0], layer.n0[0], wrap, layer.name),
                 rq(x, layer.m0[1], layer.n0[1], wrap, layer.name))
    return np.clip(y + layer.out_zero_point, *layer.out_range).astype(np.int32)


def multipliers(in_scale: float, out_scale: float, alpha: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """(m0, n0) of [identity, alpha] as TFLite's Prepare computes them (float32 reals, then
    QuantizeMultiplier)."""
    s_in, s_out, alpha = np.float32(in_scale), np.float32(out_scale), np.float32(alpha)
    reals = np.array([s_in / s_out, s_in * alpha / s_out], np.float32).astype(np.float64)
    return tflite_quantize_multiplier(reals)


def _import_leaky_relu(ctx, op, op_name: str) -> list[IntegerLayer]:
    x, out = int(op.inputs[0]), int(op.outputs[0])
    layer = ctx.node("leaky_relu", op_name, [x], out)
    ctx.same_shape(layer, op_name)
    alpha = np.float32(op.builtinOptions.alpha)
    if not alpha >= 0:
        raise ValueError(f"LEAKY_RELU writing {layer.name!r}: alpha {alpha} < 0 is not "
                         "supported")
    layer.m0, layer.n0 = multipliers(layer.in_scale, layer.out_scale, alpha)
    layer.rounding = ctx.rounding(op_name)
    return [layer]


# --------------------------------------------------------------- the sub-byte Keras path

def _keras_match(layer, only_reader) -> list[str] | None:
    kind = type(layer).__name__
    if kind == "LeakyReLU":
        return [layer.name]
    if kind == "Activation" and getattr(layer.activation, "__name__", "") == "leaky_relu":
        return [layer.name]
    return None


def _keras_config(layer) -> dict:
    alpha = getattr(layer, "alpha", None)
    return {"alpha": float(KERAS_ALPHA if alpha is None else alpha)}


def _keras_float(xp, x, config: dict):
    return xp.where(x >= 0.0, x, x * float(config["alpha"]))


def _keras_lower(name: str, in_q: dict, out_q: dict, config: dict) -> list[dict]:
    """One ``leaky_relu`` node (module docstring)."""
    alpha = float(config["alpha"])
    if not alpha >= 0:
        raise ValueError(f"layer {name!r}: LeakyReLU alpha {alpha} < 0 has no integer kernel; "
                         "use alpha >= 0")
    m0, n0 = multipliers(in_q["scale"], out_q["scale"], alpha)
    return [{"kind": "leaky_relu", "name": name, **grid_fields("in", in_q),
             **grid_fields("out", out_q), "m0": m0, "n0": n0, "rounding": "tflite_double"}]


KERAS = KerasPattern(match=_keras_match, config=_keras_config, float_fn=_keras_float,
                     lower=_keras_lower, signed=True)

register(OpKind("leaky_relu", "x if x >= 0 else alpha x (TFLite LEAKY_RELU)", n_multipliers=2,
                check=check, simulate=simulate,
                tflite={"LEAKY_RELU": TFLiteOp(_import_leaky_relu, {"litert": "tflite_double",
                                                                    "tflm": "tflite_double"})},
                inplace_inputs=(0,), c_function="tn_run_leaky_relu", check_c=byte_kernel,
                c_source="tn_leaky_relu.c", keras=KERAS))

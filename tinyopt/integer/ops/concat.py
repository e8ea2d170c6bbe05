"""``concat``: concatenation along ``axis`` of inputs quantized alike (the codes are copied).
TFLite: CONCATENATION. C: ``tn_run_concat``.
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops.registry import OpKind, TFLiteOp, register
from tinyopt.integer.tflite_ctx import same_quant


def check_inputs(layer: IntegerLayer, where: str, inputs: list) -> None:
    """Every input matches the first outside ``axis`` and is quantized like it; out_shape is
    the concatenation."""
    src = inputs[0]
    rank = len(src.shape)
    ax = layer.axis % rank if rank else 0
    total = 0
    for t in inputs:
        if len(t.shape) != rank or any(t.shape[d] != src.shape[d]
                                       for d in range(rank) if d != ax):
            raise ValueError(f"{where}: input {t.name!r} {t.shape} does not match "
                             f"{src.name!r} {src.shape} outside axis {layer.axis}")
        if (t.bits, t.signed, t.zero_point) != (src.bits, src.signed, src.zero_point):
            raise ValueError(f"{where}: input {t.name!r} is quantized differently "
                             f"from {src.name!r}; concat copies codes, so all its "
                             "inputs need the output's bits and zero point")
        total += t.shape[ax]
    want = src.shape[:ax] + (total,) + src.shape[ax + 1:]
    if tuple(layer.out_shape) != want:
        raise ValueError(f"{where}: field out_shape {tuple(layer.out_shape)} is not "
                         f"the concatenation {want}")


def simulate(p, xs: list, wrap: bool) -> np.ndarray:
    rank = len(p.layer.in_shape)
    return np.concatenate(xs, axis=1 + p.layer.axis % rank)


def _import_concat(ctx, op, op_name: str) -> list[IntegerLayer]:
    """CONCATENATION: int8 inputs must share the output's scale and zero point (the converter
    ensures it; TFLite's int8 kernel requires it), so the codes are copied."""
    ins = [int(i) for i in op.inputs]
    out = int(op.outputs[0])
    for i in ins:
        same_quant(ctx, op_name, i, out)
    layer = ctx.node("concat", op_name, ins, out)
    opts = op.builtinOptions
    if opts.fusedActivationFunction != ctx.schema.ActivationFunctionType.NONE:
        raise ValueError(f"CONCATENATION writing {layer.name!r}: a fused activation is not "
                         "supported")
    rank = len(layer.in_shape) + 1
    axis = int(opts.axis) % rank
    if axis == 0:
        raise ValueError(f"CONCATENATION writing {layer.name!r}: concatenation along the batch "
                         "axis is not supported")
    layer.axis = axis - 1
    return [layer]


def c_fields(step, emit) -> dict:
    """For each of ``outer`` outer indices, ``inner[k]`` elements of input k in turn."""
    layer = step.layer
    ax = layer.axis % len(layer.out_shape)
    outer = int(np.prod(layer.out_shape[:ax], dtype=np.int64))
    inner = [int(np.prod(t.shape[ax:], dtype=np.int64)) for t in step.in_specs]
    return {"n_in": len(inner), "outer": outer,
            "inner": emit("uint32_t", np.asarray(inner, np.uint32), "inner")}


register(OpKind("concat", "concatenation along an axis", n_inputs=None, same_quantization=True,
                check_inputs=check_inputs, simulate=simulate,
                tflite={"CONCATENATION": TFLiteOp(_import_concat)}, c_function="tn_run_concat",
                c_fields=c_fields))

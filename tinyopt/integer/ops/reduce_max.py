"""``reduce_max``: the maximum over every axis but the last (channels), TFLite's REDUCE_MAX as
Keras' GlobalMaxPooling2D (over H and W of (H, W, C)) and GlobalMaxPooling1D (over T of (T, C))
emit it, with or without keep_dims (output (1, 1, C) / (1, C), or (C,)).

No arithmetic beyond the max: the node keeps its input's quantization. LiteRT's reference
kernel copies the maximum code whatever the output's quantization, TFLite Micro refuses a
different one; the importer refuses it too (the converter emits equal quantization), so the
codes mean the same real values in and out. C: ``tn_run_reduce_max``
(``tinyopt/deploy/c/ops/tn_reduce_max.c``).
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops.registry import OpKind, TFLiteOp, register
from tinyopt.integer.tflite_ctx import same_quant


def check(layer: IntegerLayer, where: str) -> None:
    """int8, the same quantization in and out; out_shape is (C,) or ones then C."""
    if (layer.in_bits, layer.in_signed) != (8, True):
        raise ValueError(f"{where}: reduce_max runs on int8 tensors, got {layer.in_bits}-bit "
                         f"{'signed' if layer.in_signed else 'unsigned'}")
    in_shape, out_shape = tuple(layer.in_shape), tuple(layer.out_shape)
    c = in_shape[-1] if in_shape else None
    if (len(in_shape) < 2 or out_shape[-1:] != (c,) or len(out_shape) > len(in_shape)
            or any(d != 1 for d in out_shape[:-1])):
        raise ValueError(f"{where}: reduce_max takes the maximum over every axis but the last: "
                         f"in_shape {in_shape} (at least 2 axes) gives out_shape (C,) or "
                         f"(1, .., 1, C) with C = {c}, got {out_shape}")


def simulate(p, xs: list, wrap: bool) -> np.ndarray:
    layer = p.layer
    x = np.asarray(xs[0])
    y = x.reshape(len(x), -1, x.shape[-1]).max(axis=1)
    return np.clip(y, *layer.out_range).astype(np.int32).reshape((len(x), *layer.out_shape))


def _import_reduce_max(ctx, op, op_name: str) -> list[IntegerLayer]:
    """REDUCE_MAX over every axis between the batch and the channels (keep_dims either way)."""
    x, out = int(op.inputs[0]), int(op.outputs[0])
    same_quant(ctx, op_name, x, out)
    layer = ctx.node("reduce_max", op_name, [x], out)
    rank = len(layer.in_shape) + 1  # with the batch
    try:
        axes = ctx.m.data(int(op.inputs[1])).reshape(-1)
    except ValueError:
        raise ValueError(f"REDUCE_MAX writing {layer.name!r}: the axis tensor "
                         f"{ctx.m.name(int(op.inputs[1]))!r} is not a constant") from None
    if np.any(axes < -rank) or np.any(axes >= rank):
        raise ValueError(f"REDUCE_MAX writing {layer.name!r}: axis {axes.tolist()} is out of "
                         f"range for a rank-{rank} tensor")
    axes = sorted({int(a) % rank for a in axes})
    if axes != list(range(1, rank - 1)):
        raise ValueError(f"REDUCE_MAX writing {layer.name!r}: option axis {axes} of "
                         f"{(1, *layer.in_shape)}; only the maximum over every axis between the "
                         f"batch and the channels ({list(range(1, rank - 1))}: Keras' "
                         "GlobalMaxPooling1D / 2D) is supported")
    return [layer]


register(OpKind("reduce_max", "maximum over every axis but the channels (TFLite REDUCE_MAX)",
                same_quantization=True, check=check, simulate=simulate,
                tflite={"REDUCE_MAX": TFLiteOp(_import_reduce_max)},
                c_function="tn_run_reduce_max", c_source="tn_reduce_max.c"))

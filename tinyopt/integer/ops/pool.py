"""Pools: ``maxpool`` and ``avgpool`` over in-bounds window elements (padding never counts).

Average division: ``layer.avg_rounding``, by default floor for the "floor" flavour (CMix-NN)
and round half away from zero for the TFLite flavours (AVERAGE_POOL_2D, CMSIS-NN). A pool
keeps its input's quantization. TFLite: MAX_POOL_2D, AVERAGE_POOL_2D. C: ``tn_run_pool``.
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops._windows import pad_hw, taps
from tinyopt.integer.ops.registry import OpKind, TFLiteOp, register
from tinyopt.integer.tflite_ctx import same_quant, spatial

AVG_ROUNDINGS = ("floor", "half_away")


def check(layer: IntegerLayer, where: str) -> None:
    """A pool keeps the input's bits and zero point; a known average rounding."""
    if layer.in_zero_point != layer.out_zero_point or layer.in_bits != layer.out_bits:
        raise ValueError(f"{where}: pools keep the input's quantization")
    if layer.avg_rounding is not None and layer.avg_rounding not in AVG_ROUNDINGS:
        raise ValueError(f"{where}: avg_rounding must be None or one of {AVG_ROUNDINGS}")


def pool_windows(layer: IntegerLayer, x: np.ndarray, fill, op=np.maximum) -> np.ndarray:
    """``op``-reduction (max or sum) over each pooling window, padding filled with ``fill``."""
    oh, ow, _ = layer.out_shape
    views = taps(pad_hw(x, layer.padding, fill), *layer.pool_size, *layer.stride, oh, ow)
    out = views[0].copy()
    for tap in views[1:]:
        op(out, tap, out=out)
    return out


def pool(layer: IntegerLayer, x: np.ndarray, rounding: str) -> np.ndarray:
    """Max / average pool over in-bounds window elements (padding never counts), then clamp.
    Average division: ``layer.avg_rounding``, by default floor for the "floor" flavour and half
    away from zero for the TFLite flavours (TFLite AVERAGE_POOL_2D / CMSIS-NN)."""
    if layer.kind == "maxpool":
        out = pool_windows(layer, x, np.iinfo(x.dtype).min)
    else:
        total = pool_windows(layer, x.astype(np.int64), 0, np.add)
        ones = np.ones((1,) + x.shape[1:3] + (1,), np.int64)
        count = pool_windows(layer, ones, 0, np.add)  # in-bounds elements per window
        mode = layer.avg_rounding or ("floor" if rounding == "floor" else "half_away")
        if mode == "floor":
            out = total // count
        else:  # C: acc > 0 ? (acc + count/2) / count : (acc - count/2) / count, truncating
            half = count // 2
            out = np.where(total > 0, (total + half) // count, -((-total + half) // count))
    lo, hi = layer.out_range
    return np.clip(out, lo, hi).astype(np.int32)


def simulate(p, xs: list, wrap: bool) -> np.ndarray:
    return pool(p.layer, xs[0], p.rounding)


def _import_pool(ctx, op, op_name: str) -> list[IntegerLayer]:
    """MAX_POOL_2D / AVERAGE_POOL_2D (average: round half away from zero, TFLite and CMSIS-NN)."""
    out = int(op.outputs[0])
    x = int(op.inputs[0])
    same_quant(ctx, op_name, x, out)
    layer = ctx.node("maxpool" if op_name == "MAX_POOL_2D" else "avgpool", op_name, [x], out)
    opts = op.builtinOptions
    layer.pool_size = (int(opts.filterHeight), int(opts.filterWidth))
    layer.stride = (int(opts.strideH), int(opts.strideW))
    (oh, ow), layer.padding = spatial(opts, layer.in_shape[:2], layer.pool_size, ctx.schema)
    if (oh, ow) != tuple(layer.out_shape[:2]):
        raise ValueError(f"{op_name} writing {layer.name!r}: computed output {(oh, ow)} but the "
                         f"model says {layer.out_shape[:2]}")
    if layer.kind == "avgpool":
        layer.avg_rounding = "half_away"
    layer.act_min, layer.act_max = ctx.act_range(opts, out)
    return [layer]


_POOL = dict(check=check, simulate=simulate, c_function="tn_run_pool")
register(OpKind("maxpool", "max pool", tflite={"MAX_POOL_2D": TFLiteOp(_import_pool)}, **_POOL),
         OpKind("avgpool", "average pool", tflite={"AVERAGE_POOL_2D": TFLiteOp(_import_pool)},
                **_POOL))

"""Up-sampling blocks: ``UpSampling2D(size, interpolation="nearest")`` (the U-Net's fixed
up-sampling), integer factors per axis (Keras' ``size`` is integers).

No fake-quant layer of its own: nearest-neighbour up-sampling copies values, so a value on its
input's grid is on that grid after it, and the Keras layer is copied into the fake-quant model
with its output on its input's grid (as MaxPooling2D and ZeroPadding2D): a new quantizer there
could only move codes that are already exact. Integer: one ``resize_nearest`` node
(:mod:`tinyopt.integer.ops.resize_nearest`, which requires the input's quantization on the
output) with the source indices of :func:`~tinyopt.integer.ops.resize_nearest.table_for` (for an
integer factor f, row i copies row floor(i / f): Keras' repeat). It writes a new tensor (the C
kernel is not in place), so the memory model counts its input and output at once.

Refused by name: ``interpolation="bilinear"`` (or any other: it computes new values, which no
integer kernel here does), ``data_format="channels_first"``.
"""

from __future__ import annotations

from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops.resize_nearest import table_for
from tinyopt.mixed.handlers.base import (Handler, copy_build, copy_params, one_block, refuse,
                                         register)


def _read(layer, srcs, r):
    if type(layer) is not r.keras.layers.UpSampling2D:
        return None
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise refuse(layer, f"data_format={layer.data_format!r}; only channels_last")
    mode = str(getattr(layer, "interpolation", "nearest"))
    if mode != "nearest":
        raise refuse(layer, f"interpolation={mode!r}: only 'nearest' is supported (it copies "
                            "codes, exact on any grid; bilinear interpolation computes new "
                            "values, which no integer kernel here does); use "
                            "UpSampling2D(interpolation='nearest') or a Conv2DTranspose")
    return one_block(layer, srcs, "upsample", config={"size": [int(s) for s in layer.size]})


def _params(layer, entry: dict, g_in: list) -> dict:
    return copy_params("upsample", layer, entry, g_in)


def upsample_nodes(common: dict, shape: tuple, out: tuple) -> list[IntegerLayer]:
    """One ``resize_nearest`` node from (H, W, C) ``shape`` to ``out`` on its input's grid
    (``common``: name, in_shape, wiring and the in / out grid fields, equal)."""
    return [IntegerLayer(kind="resize_nearest", out_shape=tuple(out),
                         table=table_for(shape[:2], out[:2]), **common)]


register(Handler("upsample", ("upsample",), 75, read=_read, build=copy_build,
                 layers=("UpSampling2D",), params=_params, entry_types=("upsample",),
                 lower=lambda e, ctx: upsample_nodes(ctx.common, ctx.srcs[0][1], ctx.keras_out),
                 plan=lambda b, ctx: upsample_nodes(ctx.common, ctx.srcs[0][1], ctx.out),
                 supported="UpSampling2D (interpolation 'nearest')"))

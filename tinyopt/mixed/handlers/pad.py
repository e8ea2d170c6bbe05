"""Padding blocks: ZeroPadding2D, copied into the fake-quant model (it pads with the zero
point: real 0, on its input's grid); integer: a ``pad`` node (:mod:`tinyopt.integer.ops.pad`).
"""

from __future__ import annotations

from tinyopt.integer.graph import IntegerLayer
from tinyopt.mixed.handlers.base import Handler, copy_build, copy_params, one_block, register


def _read(layer, srcs, r):
    if type(layer) is not r.keras.layers.ZeroPadding2D:
        return None
    (top, bottom), (left, right) = layer.padding
    return one_block(layer, srcs, "pad",
                     config={"padding": [int(top), int(bottom), int(left), int(right)]})


def _params(layer, entry: dict, g_in: list) -> dict:
    return copy_params("pad", layer, entry, g_in)


def pad_nodes(pad: tuple, common: dict, out: tuple) -> list[IntegerLayer]:
    """One pad node, (top, bottom, left, right)."""
    return [IntegerLayer(kind="pad", out_shape=out, padding=tuple(int(p) for p in pad),
                         **common)]


def _lower(e: dict, ctx) -> list[IntegerLayer]:
    (top, bottom), (left, right) = e["config"]["padding"]
    return pad_nodes((top, bottom, left, right), ctx.common, ctx.keras_out)


register(Handler("pad", ("pad",), 80, read=_read, build=copy_build,
                 layers=("ZeroPadding2D",), params=_params, entry_types=("pad",), lower=_lower,
                 plan=lambda b, ctx: pad_nodes(b.config["padding"], ctx.common, ctx.out),
                 supported="ZeroPadding2D"))

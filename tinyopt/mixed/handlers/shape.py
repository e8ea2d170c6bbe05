"""Shape blocks: ``flatten`` (Flatten), ``reshape`` (Reshape) and ``dropout`` (Dropout, and a
linear ``Activation``: identity at inference). Copied into the fake-quant model (a linear
Activation is dropped); in the integer graph flatten and reshape are aliases of their input's
bytes (:mod:`tinyopt.integer.ops.reshape`), dropout is no node at all.
"""

from __future__ import annotations

from tinyopt.integer.graph import IntegerLayer
from tinyopt.mixed.handlers.base import (Block, Handler, copy_build, copy_params, one_block,
                                         register, relu_of)


def _read(layer, srcs, r):
    t = type(layer)
    if relu_of(layer, r.keras) == "linear" or t is r.keras.layers.Dropout:
        return one_block(layer, srcs, "dropout")
    if t in (r.keras.layers.Flatten, r.keras.layers.Reshape):
        return one_block(layer, srcs, t.__name__.lower(), config=layer.get_config())
    return None


def _build(b: Block, ctx):
    if b.op == "dropout" and b.layer.__class__.__name__ != "Dropout":
        return ctx.xs[0], ctx.g_in[0]  # a linear Activation: identity
    return copy_build(b, ctx)


def _params(layer, entry: dict, g_in: list) -> dict:
    return copy_params(type(layer).__name__.lower(), layer, entry, g_in)


def _node(kind: str, ctx, out: tuple) -> list[IntegerLayer] | None:
    """flatten / reshape: one alias node; dropout: None (the walk aliases the tensor)."""
    return None if kind == "dropout" else [IntegerLayer(kind=kind, out_shape=out, **ctx.common)]


register(Handler("shape", ("flatten", "reshape", "dropout"), 60, read=_read, build=_build,
                 layers=("Flatten", "Reshape", "Dropout"), params=_params,
                 entry_types=("flatten", "reshape", "dropout"),
                 lower=lambda e, ctx: _node(e["type"], ctx, ctx.keras_out),
                 plan=lambda b, ctx: _node(b.op, ctx, ctx.out),
                 supported="Flatten, Reshape, Dropout, a linear Activation"))

"""Pooling blocks: ``maxpool`` (MaxPooling2D, copied into the fake-quant model: it keeps its
input's grid), ``avgpool`` (AveragePooling2D, VALID) and ``gap`` (GlobalAveragePooling2D,
``keepdims`` too: its (1, 1, C) output), both :class:`~tinyopt.mixed.layers.QuantAvgPool`
(floor(sum / count) on the input grid, as the integer kernel). Integer: ``maxpool`` /
``avgpool`` nodes (:mod:`tinyopt.integer.ops.pool`); a global average pool without keepdims is
an H x W ``avgpool`` (the Keras name) then a ``flatten`` named ``<name>_flatten``.
"""

from __future__ import annotations

from tinyopt.integer.graph import IntegerLayer
from tinyopt.mixed.handlers.base import (Block, Handler, copy_build, copy_params, fake_quant,
                                         one_block, padding, refuse, register)


def _read(layer, srcs, r):
    t, L = type(layer), r.keras.layers
    if t is L.MaxPooling2D:
        return one_block(layer, srcs, "maxpool",
                         config={"pool_size": list(layer.pool_size),
                                 "strides": list(layer.strides), "padding": layer.padding})
    if t is L.AveragePooling2D:
        if layer.padding != "valid":
            raise refuse(layer, "AveragePooling2D must use VALID padding")
        return one_block(layer, srcs, "avgpool", config={"pool_size": list(layer.pool_size),
                                                         "strides": list(layer.strides)})
    if t in (L.GlobalAveragePooling2D, L.GlobalAveragePooling1D):
        if layer.data_format != "channels_last":
            raise refuse(layer, f"data_format={layer.data_format!r}; use channels_last")
        # keepdims=True (squeeze-excite): the pooled (1, 1, C) / (1, C) tensor itself
        return one_block(layer, srcs, "gap", config={"keepdims": bool(layer.keepdims)})
    return None


def _build(b: Block, ctx):
    if b.op == "maxpool":
        return copy_build(b, ctx)
    QuantAvgPool = fake_quant("QuantAvgPool")
    pool = b.op == "avgpool"
    src = ctx.g_in[0]
    q = QuantAvgPool(src[1], b.config["pool_size"] if pool else None,
                     b.config["strides"] if pool else None, input_scale_from=src[0],
                     signed=src[2], keepdims=bool(b.config.get("keepdims")), name=b.name)
    q.input_scale = ctx.owners[src[0]].output_scale
    return q(ctx.xs[0]), src


def _params(layer, entry: dict, g_in: list) -> dict:
    if type(layer).__name__ == "MaxPooling2D":
        return copy_params("maxpool", layer, entry, g_in)
    return {"type": "avgpool", **entry, "pool_size": layer.pool_size,
            "keepdims": bool(getattr(layer, "keepdims", False)), "strides": layer.strides,
            "scale": g_in[0]["scale"], "bits": g_in[0]["bits"], "grid": g_in[0]}


def maxpool_nodes(cfg: dict, common: dict, shape: tuple, out: tuple) -> list[IntegerLayer]:
    """A max pool of Keras config ``cfg`` (``pool_size``, ``strides``, ``padding``)."""
    size = tuple(int(k) for k in cfg["pool_size"])
    cfg = {**cfg, "strides": cfg.get("strides") or size}
    return [IntegerLayer(kind="maxpool", out_shape=out, pool_size=size,
                         stride=tuple(int(s) for s in cfg["strides"]),
                         padding=padding(cfg, shape, out, size), **common)]


def avgpool_nodes(pool_size, strides, keepdims: bool, common: dict, shape: tuple,
                  out: tuple) -> list[IntegerLayer]:
    """An average pool (``pool_size`` None: global over H x W, then a flatten unless
    ``keepdims``; a (T, C) input, GlobalAveragePooling1D, runs on (1, T, C) between two
    reshapes), floor(sum / count)."""
    if pool_size is None and len(shape) == 2:
        name, wide, pooled = common["name"], (1,) + tuple(shape), (1, 1, shape[-1])
        return [IntegerLayer(kind="reshape", out_shape=wide,
                             **{**common, "name": f"{name}_in", "outputs": (f"{name}_in",)}),
                IntegerLayer(kind="avgpool", out_shape=pooled, pool_size=wide[:2],
                             stride=wide[:2], avg_rounding="floor",
                             **{**common, "in_shape": wide, "inputs": (f"{name}_in",)}),
                IntegerLayer(kind="reshape", out_shape=out,
                             **{**common, "name": f"{name}_out", "in_shape": pooled,
                                "inputs": (name,), "outputs": (f"{name}_out",)})]
    if pool_size is not None:
        size = tuple(int(k) for k in pool_size)
        stride = tuple(int(s) for s in (strides or size))
        return [IntegerLayer(kind="avgpool", out_shape=out, pool_size=size, stride=stride,
                             avg_rounding="floor", **common)]
    size = tuple(shape[:2])
    if keepdims:  # the (1, 1, C) pool alone
        return [IntegerLayer(kind="avgpool", out_shape=out, pool_size=size, stride=size,
                             avg_rounding="floor", **common)]
    # an H x W avgpool (keeping the Keras name, for the comparison with the fake-quant model),
    # then a flatten as Keras' [N, C]
    name, pooled = common["name"], (1, 1, shape[-1])
    return [IntegerLayer(kind="avgpool", out_shape=pooled, pool_size=size, stride=size,
                         avg_rounding="floor", **common),
            IntegerLayer(kind="flatten", out_shape=out,
                         **{**common, "name": f"{name}_flatten", "in_shape": pooled,
                            "inputs": (name,), "outputs": (f"{name}_flatten",)})]


def _lower(e: dict, ctx) -> list[IntegerLayer]:
    shape = ctx.srcs[0][1]
    if e["type"] == "maxpool":
        return maxpool_nodes(e["config"], ctx.common, shape, ctx.keras_out)
    return avgpool_nodes(e["pool_size"], e["strides"], bool(e.get("keepdims")), ctx.common,
                         shape, ctx.keras_out)


def _plan(b: Block, ctx) -> list[IntegerLayer]:
    shape = ctx.srcs[0][1]
    if b.op == "maxpool":
        return maxpool_nodes(b.config, ctx.common, shape, ctx.out)
    if b.op == "avgpool":
        return avgpool_nodes(b.config["pool_size"], b.config.get("strides"), False, ctx.common,
                             shape, ctx.out)
    return avgpool_nodes(None, None, bool(b.config.get("keepdims")), ctx.common, shape, ctx.out)


register(Handler("pool", ("maxpool", "avgpool", "gap"), 70, read=_read, build=_build,
                 layers=("QuantAvgPool", "MaxPooling2D"), params=_params,
                 entry_types=("maxpool", "avgpool"), lower=_lower, plan=_plan,
                 supported="MaxPooling2D, AveragePooling2D (valid), GlobalAveragePooling2D / 1D"))

"""The softmax head: ``Activation("softmax")``, ``Softmax`` over the last axis, or a compute
layer's ``activation="softmax"`` (split off by the compute handler); it must produce the model
output. Fake quant: :class:`~tinyopt.mixed.graph_layers.QuantSoftmax` on 8-bit signed logits
(or dropped: ``softmax="logits"``). Integer: the 8-bit logits moved to int8 (an exact QUANTIZE
by 1, their zero point 128 removed), then TFLite's fixed-point int8 SOFTMAX
(:mod:`tinyopt.integer.ops.softmax`; beta 1, output scale 1/256, zero point -128).
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.arith import tflite_quantize_multiplier
from tinyopt.integer.graph import IntegerLayer
from tinyopt.mixed.handlers.base import (Block, Grid, Handler, fake_quant, grid_fields, grid_of,
                                         plan_fields, quantize_node, refuse, register, relu_of,
                                         requant_node, unit_multipliers)

OUTPUT = (1 / 256, -128, 8, True)  # TFLite's int8 softmax output grid: scale, zero point, ...


def _read(layer, srcs, r):
    if relu_of(layer, r.keras) != "softmax":
        return None
    if layer.name != r.output_layer:
        raise refuse(layer, "a softmax that is not the model output")
    if getattr(layer, "axis", -1) not in (-1, len(layer.output_shape) - 1):
        raise refuse(layer, "a softmax over another axis than the last")
    return [Block(layer.name, "softmax", layer, srcs, members=[layer.name])]


def build(b: Block, ctx):
    return fake_quant("QuantSoftmax")(name=b.name)(ctx.xs[0]), None


def params(layer, entry: dict, g_in: list) -> dict:
    return {"type": "softmax", **entry, "input_grid": g_in[0], "grid": grid_of(*OUTPUT)}


def _node(name: str, src: str, shape: tuple, fields: dict, m0, n0, **more) -> IntegerLayer:
    return IntegerLayer(kind="softmax", name=name, in_shape=shape, out_shape=shape,
                        inputs=(src,), outputs=(name,), m0=m0, n0=n0, rounding="tflite_double",
                        **fields, **more)


def lower(e: dict, ctx) -> list[IntegerLayer]:
    """The int8 head with TFLite's double rounding, as in every TFLite kernel."""
    src, shape, _ = ctx.srcs[0]
    g = e["input_grid"]
    if g is None or int(g["bits"]) != 8:
        raise ValueError(f"softmax {e['name']!r} needs 8-bit logits, got {g}")
    int8 = {"scale": g["scale"], "zero_point": 0, "bits": 8, "signed": True}
    head = []
    if int(g["zero_point"]) != 0:
        head.append(requant_node(f"{e['name']}_int8", src, shape, g, int8))
        src = head[-1].name
    real = min(float(g["scale"]) * float(1 << 26), float((1 << 31) - 1))
    q, n = tflite_quantize_multiplier(real)
    layer = _node(e["name"], src, shape, {**grid_fields("in", int8),
                                          **grid_fields("out", e["grid"])}, q, n,
                  diff_min=-int(np.floor(31.0 * (1 << 26) / float(1 << int(n[0])))))
    layer.out_signed = True
    return head + [layer]


def plan(b: Block, ctx) -> list[IntegerLayer]:
    """A QUANTIZE to int8 when the 8-bit logits have a zero point (always: the signed
    quantizer's 128), then the softmax."""
    src, shape = ctx.srcs[0]
    gin, grids = ctx.gin, ctx.grids
    int8, out = Grid(8, 0, True, None), Grid(8, -128, True, None)
    head = []
    if gin.zero_point != 0:
        head.append(quantize_node(f"{b.name}_int8", src, shape, plan_fields("in", gin),
                                  plan_fields("out", int8), *unit_multipliers(1)))
        grids[f"{b.name}_int8"] = int8
        src = head[-1].name
    layer = _node(b.name, src, shape, {**plan_fields("in", int8), **plan_fields("out", out)},
                  np.full(1, 1 << 30, np.int32), np.zeros(1, np.int8))
    grids[b.name] = out
    return head + [layer]


register(Handler("softmax", ("softmax",), 50, read=_read, build=build, layers=("QuantSoftmax",),
                 params=params, entry_types=("softmax",), lower=lower, plan=plan,
                 supported="a softmax head (the model output)"))

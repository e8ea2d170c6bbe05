"""Add blocks: an ``Add`` layer or the TF op ``x + y`` / ``tf.add`` of two tensors of one shape,
with a following ReLU. Fake quant: :class:`~tinyopt.mixed.graph_layers.QuantAdd` (the output has
the larger of its addends' bits; signed without a ReLU). Integer: TFLite's ADD with floor
requantization (:mod:`tinyopt.integer.ops.add`).
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.graph import IntegerLayer
from tinyopt.mixed.handlers.base import (Block, Handler, fake_quant, grid_fields, grid_of,
                                         multiplier, pact, plan_fields, refuse, register, take_relu,
                                         unit_multipliers)

# TFOpLambda symbols that are an add in disguise
OP_ADD = ("__operators__.add", "math.add")
LEFT_SHIFT = 20  # both addends are shifted left by this before rescaling (TFLite's int8 ADD)


def is_add(layer, keras) -> bool:
    return type(layer) is keras.layers.Add or (type(layer).__name__ == "TFOpLambda"
                                               and getattr(layer, "symbol", "") in OP_ADD)


def _read(layer, srcs, r):
    if not is_add(layer, r.keras):
        return None
    if len(srcs) != 2:
        raise refuse(layer, f"an add of {len(srcs)} tensors (two are supported; chain "
                            "two-input adds)")
    block = Block(layer.name, "add", layer, srcs, members=[layer.name])
    take_relu(block, r)
    return [block]


def build(b: Block, ctx):
    QuantAdd = fake_quant("QuantAdd")
    bits = max(g[1] for g in ctx.g_in)
    q = QuantAdd(bits, b.activation or "signed", ",".join(g[0] for g in ctx.g_in),
                 ctx.alpha_decay, name=b.name)
    q.input_scale = [ctx.owners[g[0]].output_scale for g in ctx.g_in]
    y = q(ctx.xs)
    q.alpha.assign(ctx.alpha)
    ctx.owners[b.name] = q
    return y, (b.name, bits, q.activation == "signed")


def params(layer, entry: dict, g_in: list) -> dict:
    signed = layer.activation == "signed"
    s = float(layer.output_scale().numpy())
    entry = {"type": "add", **entry, "input_grids": g_in,
             "grid": grid_of(s, 2 ** (layer.bits - 1) if signed else 0, layer.bits, signed)}
    entry["output"] = entry["grid"]
    return entry


def _node(name: str, inputs: tuple, shape: tuple, fields: dict, m0, n0) -> IntegerLayer:
    return IntegerLayer(kind="add", name=name, in_shape=shape, out_shape=shape, inputs=inputs,
                        outputs=(name,), left_shift=LEFT_SHIFT, m0=m0, n0=n0, **fields)


def lower(e: dict, ctx) -> list[IntegerLayer]:
    """QuantAdd -> TFLite-style ADD with floor requantization: each addend minus its zero point,
    shifted left by 20, rescaled by S_i / (2 max S); the sum by 2 max S / (2^20 S_out)."""
    ga, gb = e["input_grids"]
    go = e["grid"]
    twice_max = 2 * max(ga["scale"], gb["scale"])
    reals = np.array([ga["scale"] / twice_max, gb["scale"] / twice_max,
                      twice_max / ((1 << LEFT_SHIFT) * go["scale"])])
    m0, n0 = multiplier(reals, f"add {e['name']!r}")
    return [_node(e["name"], tuple(s[0] for s in ctx.srcs), ctx.keras_out,
                  {**grid_fields("in", ga), **grid_fields("out", go)}, m0, n0)]


def plan(b: Block, ctx) -> list[IntegerLayer]:
    names = tuple(s for s, _ in ctx.srcs)
    bits = max(ctx.grids[s].bits for s in names)
    go = pact(bits, b.activation is None, ("derived", names))
    new = [_node(b.name, names, tuple(int(d) for d in b.out_shape),
                 {**plan_fields("in", ctx.gin), **plan_fields("out", go)},
                 *unit_multipliers(3))]
    ctx.grids[b.name] = go
    return new


register(Handler("add", ("add",), 30, read=_read, build=build, layers=("QuantAdd",),
                 params=params, entry_types=("add",), lower=lower, plan=plan,
                 supported="Add / x + y (two tensors, optionally followed by ReLU/ReLU6)"))

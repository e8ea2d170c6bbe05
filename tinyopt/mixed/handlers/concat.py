"""Concatenation blocks: ``Concatenate`` or ``tf.concat`` on the channel axis, with a following
ReLU. Fake quant: :class:`~tinyopt.mixed.graph_layers.QuantConcat` (the output has the larger
of its inputs' bits; all inputs signed or all unsigned). Integer: a ``quantize`` node
``<concat>_<i>`` per input on another grid, then ``concat`` (:mod:`tinyopt.integer.ops.concat`);
planned from the bits alone, every input is requantized (an upper bound: only the calibration
knows which grids differ).
"""

from __future__ import annotations

from tinyopt.integer.graph import IntegerLayer
from tinyopt.mixed.handlers.base import (Block, Handler, fake_quant, grid_fields, grid_of, pact,
                                         plan_fields, quantize_node, refuse, register, requant_node,
                                         take_relu, unit_multipliers)

OP_CONCAT = ("concat",)  # TFOpLambda symbols that are a concatenation in disguise


def is_concat(layer, keras) -> bool:
    return type(layer) is keras.layers.Concatenate or (
        type(layer).__name__ == "TFOpLambda" and getattr(layer, "symbol", "") in OP_CONCAT)


def _read(layer, srcs, r):
    if not is_concat(layer, r.keras):
        return None
    rank = len(layer.output_shape)
    axis = layer.axis if type(layer) is r.keras.layers.Concatenate else \
        layer._inbound_nodes[0].call_kwargs.get("axis", 0)
    if axis not in (-1, rank - 1):
        raise refuse(layer, f"concatenation along axis {axis}; only the channel (last) axis is "
                            "supported")
    block = Block(layer.name, "concat", layer, srcs, members=[layer.name])
    take_relu(block, r)
    return [block]


def build(b: Block, ctx):
    QuantConcat = fake_quant("QuantConcat")
    signed = {g[2] for g in ctx.g_in}
    bits = max(g[1] for g in ctx.g_in)
    if len(signed) != 1:
        raise ValueError(f"concatenation {b.name!r} joins signed (linear) and unsigned (ReLU) "
                         "tensors; put a ReLU on, or remove it from, every input")
    if b.activation is not None and signed == {True}:
        raise ValueError(f"concatenation {b.name!r} of linear tensors followed by a ReLU is not "
                         "supported; move the ReLU before it")
    q = QuantConcat(bits, [g[1] for g in ctx.g_in], signed.pop(),
                    ",".join(g[0] for g in ctx.g_in), name=b.name)
    q.input_scale = [ctx.owners[g[0]].output_scale for g in ctx.g_in]
    y = q(ctx.xs)
    ctx.owners[b.name] = q
    return y, (b.name, bits, q.signed)


def params(layer, entry: dict, g_in: list) -> dict:
    s = float(layer.output_scale().numpy())
    entry = {"type": "concat", **entry, "input_grids": g_in,
             "grid": grid_of(s, 2 ** (layer.bits - 1) if layer.signed else 0, layer.bits,
                             layer.signed)}
    entry["output"] = entry["grid"]
    return entry


def _node(name: str, inputs: list, shape: tuple, out: tuple, fields: dict) -> IntegerLayer:
    return IntegerLayer(kind="concat", name=name, in_shape=shape, out_shape=out,
                        inputs=tuple(inputs), outputs=(name,), axis=-1, **fields)


def lower(e: dict, ctx) -> list[IntegerLayer]:
    lname, go, new, names = e["name"], e["grid"], [], []
    for i, (t, sh, gi) in enumerate(ctx.srcs):
        if (gi["scale"], gi["zero_point"], gi["bits"]) != (go["scale"], go["zero_point"],
                                                           go["bits"]):
            new.append(requant_node(f"{lname}_{i}", t, sh, gi, go))
            t = new[-1].name
        names.append(t)
    new.append(_node(lname, names, ctx.srcs[0][1], ctx.keras_out,
                     {**grid_fields("in", go), **grid_fields("out", go)}))
    return new


def plan(b: Block, ctx) -> list[IntegerLayer]:
    grids = ctx.grids
    names = tuple(s for s, _ in ctx.srcs)
    bits = max(grids[s].bits for s in names)
    signed = grids[names[0]].zero_point != 0
    go = pact(bits, signed, ("derived", names))
    new, moved = [], []
    for i, (t, sh) in enumerate(ctx.srcs):  # an upper bound (module docstring)
        q = f"{b.name}_{i}"
        new.append(quantize_node(q, t, sh, plan_fields("in", grids[t]), plan_fields("out", go),
                                 *unit_multipliers(1)))
        grids[q] = go
        moved.append(q)
    new.append(_node(b.name, moved, ctx.srcs[0][1], tuple(int(d) for d in b.out_shape),
                     {**plan_fields("in", go), **plan_fields("out", go)}))
    grids[b.name] = go
    return new


register(Handler("concat", ("concat",), 40, read=_read, build=build, layers=("QuantConcat",),
                 params=params, entry_types=("concat",), lower=lower, plan=plan,
                 supported="Concatenate / tf.concat (channel axis, optionally followed by "
                           "ReLU/ReLU6)"))

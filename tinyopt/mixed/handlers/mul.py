"""Mul blocks: the element-wise product of two tensors, a Keras ``Multiply`` or the TF op
``x * y`` / ``tf.math.multiply`` of two tensors (squeeze-and-excite: the features times a
per-channel gate). One operand has the output's shape, the other the same shape or one value per
channel ((1, .., 1, C) or (C,), broadcast); the full-size operand becomes the block's first
input. A multiply by a constant is not a mul block: the registry's patterns take the ones they
know (hard-sigmoid's ``* (1/6)``), the rest is refused.

Fake quant: :class:`~tinyopt.mixed.graph_layers.QuantMul` (output bits the larger of the
operands'; signed unless both operands are non-negative; a learned clip). Integer: one ``mul``
node (:mod:`tinyopt.integer.ops.mul`, floor requantization) with the multiplier of
S_a S_b / S_out, which the fake-quant layer uses too (bit-exact). The output's bits are derived
from both operands (``("derived", (a, b))``), so the policy search lowers a mul's output through
the layers that set its operands' bits; the broadcast operand stays alive until the mul reads it
(an input of the step, as any other).
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops.mul import broadcast_ok
from tinyopt.mixed.handlers.base import (Block, Handler, fake_quant, grid_fields, multiplier,
                                         pact, plan_fields, refuse, register, stored,
                                         unit_multipliers)

# TFOpLambda symbols that are a multiply in disguise
OP_MUL = ("math.multiply", "__operators__.mul")


def is_mul(layer, keras) -> bool:
    return type(layer) is keras.layers.Multiply or (type(layer).__name__ == "TFOpLambda"
                                                    and getattr(layer, "symbol", "") in OP_MUL)


def _input_shapes(layer) -> list[tuple]:
    """Per-image shapes of the tensors a layer reads (its one call)."""
    return [tuple(int(d) if d is not None else None for d in t.shape[1:])
            for t in layer._inbound_nodes[0].keras_inputs]


def _read(layer, srcs, r):
    if not is_mul(layer, r.keras):
        return None
    if len(srcs) != 2:
        why = ("a multiply by a constant is supported only inside a pattern of the op "
               "registry (hard-sigmoid's x * (1/6)); fold other constants into the layer "
               "before it" if len(srcs) == 1 else
               f"a product of {len(srcs)} tensors (two are supported; chain two-input "
               "multiplies)")
        raise refuse(layer, why)
    out = r.shape(layer)
    shapes = _input_shapes(layer)
    if len(shapes) != 2:
        raise refuse(layer, "a multiply whose two operands are not two tensor inputs of the "
                            "layer")
    order = [0, 1] if shapes[0] == out else [1, 0]
    full, other = shapes[order[0]], shapes[order[1]]
    if full != out or not broadcast_ok(other, out):
        raise refuse(layer, f"a product of tensors of shapes {shapes[0]} and {shapes[1]} -> "
                            f"{out}: one operand must have the output's shape, the other the "
                            f"same shape or one value per channel (1, .., 1, {out[-1]}) "
                            "(squeeze-and-excite); no other broadcasting")
    return [Block(layer.name, "mul", layer, [srcs[i] for i in order], members=[layer.name],
                  config={"broadcast": other != out})]


def build(b: Block, ctx):
    QuantMul = fake_quant("QuantMul")
    bits = max(g[1] for g in ctx.g_in)
    signed = any(g[2] for g in ctx.g_in)  # an unsigned (PACT, fixed-range) grid is >= 0
    q = QuantMul(bits, signed, ",".join(g[0] for g in ctx.g_in), ctx.alpha_decay, name=b.name)
    q.input_scale = [ctx.owners[g[0]].output_scale for g in ctx.g_in]
    y = q(ctx.xs)
    q.alpha.assign(ctx.alpha)
    ctx.owners[b.name] = q
    return y, (b.name, bits, signed)


def params(layer, entry: dict, g_in: list) -> dict:
    entry = {"type": "mul", **entry, "input_grids": g_in, "grid": layer.grid()}
    entry["output"] = entry["grid"]
    return entry


def mul_node(name: str, inputs: tuple, in_shape: tuple, out_shape: tuple, fields: dict, m0,
             n0) -> IntegerLayer:
    """The ``mul`` node (``inputs``: the full-size operand first; ``fields``: its in_* fields
    and the output's out_* fields)."""
    return IntegerLayer(kind="mul", name=name, in_shape=tuple(in_shape),
                        out_shape=tuple(out_shape), inputs=tuple(inputs), outputs=(name,),
                        m0=m0, n0=n0, **fields)


def lower(e: dict, ctx) -> list[IntegerLayer]:
    """QuantMul -> ``mul``: (q_a - z_a)(q_b - z_b) requantized by m0_n0(S_a S_b / S_out) with
    floor (the product of scales in float64, in QuantMul's order: the same multiplier)."""
    ga, gb = (stored(g) for g in e["input_grids"])
    go = stored(e["grid"])
    real = np.array([(ga["scale"] * gb["scale"]) / go["scale"]])
    m0, n0 = multiplier(real, f"mul {e['name']!r}")
    (a, shape, _), (b, _, _) = ctx.srcs
    return [mul_node(e["name"], (a, b), shape, ctx.keras_out,
                     {**grid_fields("in", ga), **grid_fields("out", go)}, m0, n0)]


def plan(b: Block, ctx) -> list[IntegerLayer]:
    names = tuple(s for s, _ in ctx.srcs)
    bits = max(ctx.grids[s].bits for s in names)
    # signed grids are stored with zero point 2^(Q-1), unsigned ones (PACT, a fixed range) 0
    signed = any(ctx.grids[s].zero_point != 0 for s in names)
    go = pact(bits, signed, ("derived", names))
    new = [mul_node(b.name, names, ctx.srcs[0][1], tuple(int(d) for d in b.out_shape),
                    {**plan_fields("in", ctx.gin), **plan_fields("out", go)},
                    *unit_multipliers(1))]
    ctx.grids[b.name] = go
    return new


register(Handler("mul", ("mul",), 35, read=_read, build=build, layers=("QuantMul",),
                 params=params, entry_types=("mul",), lower=lower, plan=plan,
                 supported="Multiply / x * y (two tensors: the same shape, or one value per "
                           "channel broadcast, as squeeze-and-excite)"))

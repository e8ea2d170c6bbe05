"""Activation blocks: the bridge to the op registry's element-wise ops. A layer no handler
before this one reads is offered to every registered op whose module sets ``OpKind.keras`` (a
:class:`~tinyopt.integer.ops.registry.KerasPattern`: LeakyReLU, MobileNetV3's hard-swish,
sigmoid, ...); the op's name is the block's ``kind``, its settings the block's ``config``. It
stays its own block (never fused into the compute layer before it: that layer's output is
quantized signed, the activation requantizes it).

Fake quant: one generic :class:`~tinyopt.mixed.graph_layers.QuantActivation` (the op's float
function, then its own output quantizer at its input's bits). Integer: the nodes of the op's
``KerasPattern.lower`` at the stored grids (:func:`activation_layers`), for ``lower`` at the
calibrated scales and for ``plan`` at unit scales (the pattern chooses its form from bits and
zero points only), so the memory model plans exactly the deployed nodes.

A ReLU that no compute, BN, add or concatenation block took is refused here too.
"""

from __future__ import annotations

from tinyopt.integer import ops
from tinyopt.integer.graph import IntegerLayer
from tinyopt.mixed.handlers.base import (Block, Grid, Handler, fake_quant, pact, refuse, register,
                                         relu_of, stored)


def activation_layers(kind: str, name: str, src: str, shape: tuple, in_q: dict, out_q: dict,
                      config: dict) -> list[IntegerLayer]:
    """The integer nodes of a registry op (``KerasPattern.lower`` of op ``kind``) at the stored
    grids ``in_q`` / ``out_q``, wired one after the other from tensor ``src``; every node keeps
    the shape ``shape``. Shared by ``lower`` and ``plan`` (the same structure).

    Raises:
        ValueError: the op cannot run at these quantizations (named by the op's module).
    """
    pattern = ops.get(kind).keras
    if pattern is None:
        raise ValueError(f"layer {name!r}: op kind {kind!r} has no Keras pattern to lower")
    new = []
    for fields_ in pattern.lower(name, in_q, out_q, dict(config)):
        layer = IntegerLayer(in_shape=tuple(shape), out_shape=tuple(shape), inputs=(src,),
                             outputs=(fields_["name"],), **fields_)
        new.append(layer)
        src = layer.outputs[0]
    if new[-1].name != name:
        raise ValueError(f"op kind {kind!r}: its Keras lowering must end in a node named "
                         f"{name!r}, got {new[-1].name!r}")
    return new


def _read(layer, srcs, r):
    found = ops.registry.match_keras(layer, r.only_reader)
    if found is None:
        return None
    op, members = found
    config = op.keras.config(layer) if op.keras.config is not None else {}
    return [Block(members[-1], "activation", layer, srcs, kind=op.name, members=members,
                  config=dict(config))]


def build(b: Block, ctx):
    QuantActivation = fake_quant("QuantActivation")
    src = ctx.g_in[0]
    q = QuantActivation(b.kind, src[1], b.config, src[0], ctx.alpha_decay, name=b.name)
    q.input_scale = ctx.owners[src[0]].output_scale
    y = q(ctx.xs[0])
    if q.learned:
        q.alpha.assign(ctx.alpha)
    ctx.owners[b.name] = q
    return y, (b.name, q.bits, q.signed)


def params(layer, entry: dict, g_in: list) -> dict:
    entry = {"type": "element_wise", **entry, "kind": layer.kind,
             "config": dict(layer.op_settings), "input_grid": g_in[0], "grid": layer.grid()}
    entry["output"] = entry["grid"]
    return entry


def lower(e: dict, ctx) -> list[IntegerLayer]:
    src, shape, _ = ctx.srcs[0]
    return activation_layers(e["kind"], e["name"], src, shape, stored(e["input_grid"]),
                             stored(e["grid"]), e["config"])


def plan(b: Block, ctx) -> list[IntegerLayer]:
    """The op's nodes at its input's bits (output: the op's own grid, signed with zero point
    2^(Q-1), or a fixed range's zero point 0), unit scales."""
    src, shape = ctx.srcs[0]
    gin, grids = ctx.gin, ctx.grids
    pattern = ops.get(b.kind).keras
    signed = bool(pattern.signed) and pattern.out_range is None
    go = pact(gin.bits, signed, ("derived", (src,)))
    in_q = {"bits": gin.bits, "scale": 1.0, "zero_point": gin.zero_point, "signed": gin.signed}
    out_q = {"bits": go.bits, "scale": 1.0, "zero_point": go.zero_point, "signed": False}
    new = activation_layers(b.kind, b.name, src, shape, in_q, out_q, b.config)
    for layer in new:
        grids[layer.outputs[0]] = Grid(layer.out_bits, layer.out_zero_point, layer.out_signed,
                                       ("derived", (src,)))
    return new


def _registry_text() -> str:
    names = sorted(k for k, op in ops.REGISTRY.items() if op.keras is not None)
    return (f"the element-wise ops of the op registry ({', '.join(names)}: "
            "tinyopt.mixed.dag.registry_activations()), each its own layer")


def _refuse_relu(layer, srcs, r):
    if relu_of(layer, r.keras) in ("relu", "relu6"):
        raise refuse(layer, "a ReLU that does not directly follow a compute layer, a "
                            "BatchNormalization, an Add or a Concatenate read by nothing else")
    return None


register(Handler("activation", ("activation",), 20, read=_read, build=build,
                 layers=("QuantActivation",), params=params, entry_types=("element_wise",),
                 lower=lower, plan=plan,
                 supported=_registry_text()))
register(Handler("relu", (), 25, read=_refuse_relu,
                 supported="Activation/ReLU (relu, relu6) right after a compute layer, a "
                           "BatchNormalization, an Add or a Concatenate"))

"""Transposed-convolution blocks: a ``Conv2DTranspose`` (with or without bias, integer strides,
'same' or 'valid', the U-Net's learned up-sampling) with the BatchNormalization and the ReLU /
ReLU6 that follow it (``Activation`` / ``ReLU`` layers or the layer's own activation) when
nothing else reads the tensors between, as a compute block. Its own registry activation
(``KerasPattern.layer_activations``: sigmoid, swish, ...) is read as the linear layer then a
``<layer>_<activation>`` activation block
(:func:`tinyopt.mixed.handlers.compute.split_activations`).

A policy layer (weight and act bits, PL / PC, FB / ICN), fake-quantized by
:class:`~tinyopt.mixed.transpose_layers.QuantTransposeConv` (QuantCompute's weight quantizers,
bias grid, BN folding and PACT output; the transposed op) named as the layer: a PACT output
after a ReLU, the signed quantizer for a linear layer read by others, 8-bit signed logits before
a softmax head. Integer: one ``transpose_conv`` node (:mod:`tinyopt.integer.ops.transpose_conv`):
weight codes [kh, kw, c_out, c_in] -> rows [c_out][ky][kx][c_in] (``kernel.transpose(2, 0, 1,
3)``, no flip), packed at the weight bits; int32 bias codes; (m0, n0) per layer (PL, FB or no
BN) or per output channel (PC, or a BN kept for ICN: M_c = g_c S_x S_w,c / S_y); the geometry of
:func:`~tinyopt.integer.ops.transpose_conv.keras_geometry`; CMix-NN's floor requantization.

Refused by name (in the block reader, so the memory model, the policy search, PTQ and QAT
refuse what the lowering would): ``dilation_rate`` other than 1, ``output_padding``,
``data_format="channels_first"``, a softmax or an unlisted activation inside the layer, and a
linear Conv2DTranspose whose output is the network output (int32 logits: the ``transpose_conv``
kernel writes 2/4/8-bit codes only; end the network with an activation or a 1 x 1 Conv2D).
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.arith import bn_gain, packed_bytes
from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops.transpose_conv import keras_geometry
from tinyopt.mixed.handlers import compute
from tinyopt.mixed.handlers.base import (Block, Handler, fake_quant, grid_fields,
                                         multiplier, pact, plan_fields, refuse, register,
                                         take_relu)

KIND = "transpose_conv"
_PASS = ("Flatten", "Reshape", "Dropout")  # layers a tensor reaches the output through


def transpose_config(layer) -> dict:
    """The op config of a Conv2DTranspose (``kernel_size``, ``strides``, ``padding``,
    ``filters``).

    Raises:
        ValueError: dilation, output_padding or channels_first (the layer named).
    """
    if tuple(int(d) for d in layer.dilation_rate) != (1, 1):
        raise refuse(layer, f"dilation_rate={tuple(layer.dilation_rate)}; the transpose_conv "
                            "kernel is undilated, use dilation_rate=1")
    if layer.output_padding is not None:
        raise refuse(layer, f"output_padding={layer.output_padding}; only None (Keras' default "
                            "output size: 'same' H s, 'valid' H s + max(k - s, 0))")
    if layer.data_format != "channels_last":
        raise refuse(layer, f"data_format={layer.data_format!r}; only channels_last")
    return {"kernel_size": [int(k) for k in layer.kernel_size],
            "strides": [int(s) for s in layer.strides], "padding": str(layer.padding).lower(),
            "filters": int(layer.filters)}


def _reaches_output(name: str, r) -> bool:
    """Layer ``name``'s output is the model output, or reaches it through flatten / reshape /
    dropout layers only (each the only reader of the one before)."""
    while name != r.output_layer:
        nxt = r.only_reader(name)
        if nxt is None or type(nxt).__name__ not in _PASS:
            return False
        name = nxt.name
    return True


def _read(layer, srcs, r):
    if type(layer) is not r.keras.layers.Conv2DTranspose:
        return None
    cfg = transpose_config(layer)
    block = Block(layer.name, KIND, layer, srcs, kind=KIND, op_config=cfg, members=[layer.name])
    name = getattr(layer.activation, "__name__", str(layer.activation))
    split = compute.split_activations()
    if name in split:  # the linear layer, then the registry op's own block
        block.out_shape = r.shape(layer)
        return [block, Block(f"{layer.name}_{name}", "activation", layer, [block.name],
                             kind=split[name], members=[], out_shape=r.shape(layer))]
    if name not in ("linear", "relu", "relu6"):
        raise refuse(layer, f"activation {name!r} inside the layer (a Conv2DTranspose takes "
                            f"linear, relu, relu6, {', '.join(sorted(split))}); put it in its "
                            "own layer")
    block.activation = None if name == "linear" else name
    nxt = r.only_reader(layer.name)
    if block.activation is None and nxt is not None \
            and type(nxt) is r.keras.layers.BatchNormalization:
        block.bn = nxt
        block.members.append(nxt.name)
        compute.check_bn_axis(block)
    if block.activation is None:
        take_relu(block, r)
    if block.activation is None and _reaches_output(block.members[-1], r):
        raise refuse(layer, "a linear Conv2DTranspose producing the network output (int32 "
                            "logits): the transpose_conv kernel writes 2/4/8-bit codes only; "
                            "give it an activation (e.g. sigmoid, ReLU) or end the network "
                            "with a 1 x 1 Conv2D")
    return [block]


# ----------------------------------------------------------------------- fake quant
def build(b: Block, ctx):
    """One QuantTransposeConv, its float kernel, bias and BN copied."""
    from tinyopt.mixed import transpose_layers  # noqa: F401  (registers the layer; TF is loaded)
    QuantTransposeConv = fake_quant("QuantTransposeConv")
    spec = ctx.policy[b.name]
    bn = b.bn
    bn_config = None if bn is None else {"epsilon": float(bn.epsilon),
                                         "momentum": float(bn.momentum)}
    out = compute.output_kind(b, ctx.cons, ctx.by_name, ctx.out_name)
    if out == "logits":  # refused by the reader; a block list built by hand
        raise refuse(b.layer, "a linear Conv2DTranspose producing the network output")
    act, bits = {"act": (b.activation, spec["act_bits"]), "head": ("signed", 8),
                 "signed": ("signed", spec["act_bits"])}[out]
    src = ctx.g_in[0][0]
    q = QuantTransposeConv(dict(b.op_config), spec["weight_bits"], bits,
                           ctx.policy.granularity, spec["fold"], bn_config, act, ctx.clip_decay,
                           ctx.alpha_decay, input_scale_from=src, name=b.name)
    q.input_scale = ctx.owners[src].output_scale
    y = q(ctx.xs[0])
    layer = b.layer
    q.kernel.assign(layer.kernel.numpy())  # [kh, kw, c_out, c_in], as Keras
    if layer.use_bias:
        q.bias.assign(layer.bias)
    if bn is not None:
        n = q.out_channels
        q.gamma.assign(bn.gamma if bn.scale else np.ones(n, np.float32))
        q.beta.assign(bn.beta if bn.center else np.zeros(n, np.float32))
        q.moving_mean.assign(bn.moving_mean)
        q.moving_variance.assign(bn.moving_variance)
    q.alpha.assign(ctx.alpha)
    ctx.created.append(q)
    ctx.owners[b.name] = q
    return y, (b.name, bits, act == "signed")


def params(layer, entry: dict, g_in: list) -> dict:
    """QuantCompute's integer view (weight codes in the Keras kernel's [kh, kw, c_out, c_in])."""
    return {**compute.params(layer, entry, g_in), "type": KIND}


# ----------------------------------------------------------------------- integer nodes
def transpose_node(name: str, src: str, in_shape: tuple, out_shape: tuple, cfg: dict,
                   fin: dict, fout: dict) -> IntegerLayer:
    """A ``transpose_conv`` node without weights and multipliers: wiring, grids (``fin`` /
    ``fout``: in_* / out_* fields), strides and the padding of Keras' geometry.

    Raises:
        ValueError: the output size differs from Keras' (the node named).
    """
    out_hw, pads = keras_geometry(in_shape[:2], cfg["kernel_size"], cfg["strides"],
                                  cfg["padding"])
    if tuple(out_hw) != tuple(int(d) for d in out_shape[:2]):
        raise ValueError(f"layer {name!r}: Conv2DTranspose output {tuple(out_shape)} differs "
                         f"from the transposed convolution's {out_hw}")
    return IntegerLayer(kind=KIND, name=name, in_shape=tuple(in_shape),
                        out_shape=tuple(out_shape), inputs=(src,), outputs=(name,),
                        stride=tuple(int(s) for s in cfg["strides"]), padding=tuple(pads),
                        **fin, **fout)


def _per_layer(fold: str, granularity: str, bn_kept: bool) -> bool:
    """One multiplier for the layer (PL weights, FB or no BN), else one per output channel."""
    return fold == "FB" and granularity == "PL" and not bn_kept


def lower(e: dict, ctx) -> list[IntegerLayer]:
    """One ``integer_params`` transpose_conv entry -> its node (module docstring)."""
    src, shape, g = ctx.srcs[0]
    name, where, out = e["name"], f"layer {e['name']!r}", e["output"]
    if out is None:
        raise ValueError(f"{where}: a linear Conv2DTranspose producing int32 logits has no "
                         "integer kernel; give it an activation")
    layer = transpose_node(name, src, shape, ctx.keras_out, e["op_config"],
                           grid_fields("in", g), grid_fields("out", out))
    c = int(ctx.keras_out[-1])
    s_x = float(e["input"]["scale"])
    s_w = np.broadcast_to(np.asarray(e["weight_scale"], np.float64).reshape(-1), (c,))
    bn = e["bn"]  # kept (ICN) only; FB folded it into the kernel and the bias
    g_bn = bn_gain(bn) if bn is not None else np.ones(c)
    codes = np.asarray(e["weight_codes"])  # [kh, kw, c_out, c_in]
    layer.set_weights(codes.transpose(2, 0, 1, 3).astype(np.uint8), int(e["weight_bits"]))
    layer.weight_zero_point = np.atleast_1d(np.asarray(e["weight_zero_point"], np.int32))
    layer.weight_scale = np.atleast_1d(np.asarray(e["weight_scale"], np.float64))
    layer.bias = np.asarray(e["bias_codes"], np.int32)
    layer.extra = {"fold": e["fold"], "granularity": e["granularity"],
                   "kernel_source": e["kernel_source"]}
    if "bias_clamped_channels" in e:
        layer.extra["bias_clamped_channels"] = e["bias_clamped_channels"]
    # PACT / signed output: Y = clamp(floor(M (Phi + B_q)), code range) + Z_y, M = g S_x S_w / S_y
    mult = g_bn * s_x * s_w / float(out["scale"])
    one = _per_layer(e["fold"], e["granularity"], bn is not None)
    layer.m0, layer.n0 = multiplier(mult[:1] if one else mult, where)
    return [layer]


def plan(b: Block, ctx) -> list[IntegerLayer]:
    """The node ``lower`` gives, with zero weights and unit multipliers of the right shapes."""
    src, shape = ctx.srcs[0]
    wbits, abits = int(ctx.weight_bits[b.name]), int(ctx.act_bits[b.name])
    fold = ctx.fold.get(b.name, "FB")
    s = ctx.structure
    out = compute.output_kind(b, s.cons, s.by_name, s.out_name)
    if out == "logits":
        raise refuse(b.layer, "a linear Conv2DTranspose producing the network output")
    go = {"act": pact(abits, False, ("act", b.name)), "head": pact(8, True, None),
          "signed": pact(abits, True, ("act", b.name))}[out]
    layer = transpose_node(b.name, src, shape, tuple(int(d) for d in b.out_shape), b.op_config,
                           plan_fields("in", ctx.gin), plan_fields("out", go))
    c = int(b.out_shape[-1])
    kh, kw = (int(k) for k in b.op_config["kernel_size"])
    cin = int(shape[-1])
    layer.weight_shape, layer.weight_bits = (c, kh, kw, cin), wbits
    layer.weights = np.zeros((c, packed_bytes(kh * kw * cin, wbits)), np.uint8)
    layer.weight_zero_point = np.zeros(c if ctx.granularity == "PC" else 1, np.int32)
    layer.bias = np.zeros(c, np.int32)
    layer.extra = {"fold": fold, "granularity": ctx.granularity}
    k = 1 if _per_layer(fold, ctx.granularity, b.bn is not None and fold == "ICN") else c
    layer.m0, layer.n0 = np.ones(k, np.int32), np.zeros(k, np.int8)
    ctx.grids[b.name] = go
    return [layer]


register(Handler(
    KIND, (KIND,), 5, read=_read, build=build, layers=("QuantTransposeConv",), params=params,
    entry_types=(KIND,), lower=lower, plan=plan, policy=True,
    supported="Conv2DTranspose (strides, 'same' / 'valid', optionally followed by "
              "BatchNormalization and ReLU/ReLU6; a registry activation of its own, e.g. "
              "sigmoid, is split off)"))

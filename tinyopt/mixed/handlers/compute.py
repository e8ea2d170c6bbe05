"""Compute blocks: a Conv2D, Conv1D (run as a 1 x k Conv2D on [N, 1, W, C]; ``padding="causal"``
pads (k - 1) d on the left of W), DepthwiseConv2D, dilated or not, or Dense (on (C,); on (T, C)
or (H, W, C) a 1 x 1 Conv2D, every step / pixel alike), with the BatchNormalization and the
ReLU / ReLU6 that follow it (``Activation`` or ``ReLU`` layers, or the layer's own activation)
when nothing else reads the tensors between.
A compute layer's own softmax is read as the linear layer then the ``<layer>_softmax`` head; its
own registry activation (``KerasPattern.layer_activations``: sigmoid, swish, ...) as the linear
layer then a ``<layer>_<activation>`` activation block.

Fake quant: one :class:`~tinyopt.mixed.layers.QuantCompute` named as the layer (PACT output,
the signed quantizer for a linear layer read by others, float logits at the network output,
8-bit signed logits before a softmax head). Integer: ``conv2d`` / ``pointwise`` / ``depthwise``
/ ``dense`` (:mod:`tinyopt.integer.ops.compute`), between two reshapes when the Keras tensor is
not 3-D (Conv1D, a Dense on (T, C), a standalone BN on a 1-D tensor). The standalone BN
(:mod:`.bn`) shares ``build`` and ``plan``: a 1 x 1 depthwise of ones.
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer import ops
from tinyopt.integer.arith import bn_gain, weight_rows
from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops.compute import causal_padding
from tinyopt.mixed.handlers.base import (LOGIT_BITS, Block, Grid, Handler, fake_quant, grid_fields,
                                         multiplier, pact, padding, plan_fields, reaches_output,
                                         refuse, register, take_relu)

# a standalone BatchNormalization runs as this depthwise (with the BN kept or folded)
BN_CONFIG = {"kernel_size": [1, 1], "strides": [1, 1], "padding": "valid",
             "dilation_rate": [1, 1], "depth_multiplier": 1}


def split_activations() -> dict[str, str]:
    """Keras activation names that, inside a compute layer, are read as the linear layer then
    a registry op's block: name -> op kind (``KerasPattern.layer_activations`` over the op
    registry)."""
    return {name: op.name for op in ops.REGISTRY.values() if op.keras is not None
            for name in getattr(op.keras, "layer_activations", ())}


def registry_activations() -> list[str]:
    """The op kinds of the registry the block reader can read from Keras layers."""
    return sorted(k for k, op in ops.REGISTRY.items() if op.keras is not None)


def activation_of(layer) -> str | None:
    """A compute layer's own activation: None (linear), relu, relu6, softmax or a name of
    :func:`split_activations`.

    Raises:
        ValueError: another activation, naming the layer and the fix (its own layer).
    """
    name = getattr(layer.activation, "__name__", str(layer.activation))
    split = split_activations()
    if name in ("linear", "relu", "relu6", "softmax") or name in split:
        return None if name == "linear" else name
    raise refuse(layer, f"activation {name!r} inside the layer (only linear, relu, relu6, "
                        f"softmax, {', '.join(sorted(split))}); for the registry's element-wise "
                        f"ops ({', '.join(registry_activations())}) build the layer linear and "
                        "put the activation in its own layer (e.g. LeakyReLU)")


def compute_config(layer, keras) -> tuple[str | None, dict | None, bool]:
    """(kind, op config, conv1d) of a compute layer; (None, None, False) for other layers.

    Convolutions keep their ``dilation_rate`` (the integer node's ``dilation``); a Conv1D's
    ``padding="causal"`` stays in the config (left padding (k - 1) d, :func:`conv_padding`). A
    Dense applied to a (T, C) or (H, W, C) tensor acts on every step / pixel: it is read as a
    1 x 1 conv2d (``conv1d`` True for (T, C): run on [1, T, C]).

    Raises:
        ValueError: a grouped convolution, a Dense on a tensor of more than three axes.
    """
    t = type(layer)
    if t is keras.layers.DepthwiseConv2D:
        return "depthwise", {"kernel_size": list(layer.kernel_size),
                             "strides": list(layer.strides), "padding": layer.padding,
                             "dilation_rate": list(layer.dilation_rate),
                             "depth_multiplier": int(layer.depth_multiplier)}, False
    if t is keras.layers.Conv2D:
        if layer.groups != 1:
            raise refuse(layer, f"groups={layer.groups} (a grouped convolution); build it as "
                                "one convolution per group and a Concatenate")
        return "conv2d", {"kernel_size": list(layer.kernel_size), "strides": list(layer.strides),
                          "padding": layer.padding, "dilation_rate": list(layer.dilation_rate),
                          "filters": int(layer.filters)}, False
    if t is keras.layers.Conv1D:
        if layer.groups != 1:
            raise refuse(layer, f"groups={layer.groups} (a grouped convolution); build it as "
                                "one convolution per group and a Concatenate")
        return "conv2d", {"kernel_size": [1, int(layer.kernel_size[0])],
                          "strides": [1, int(layer.strides[0])], "padding": layer.padding,
                          "dilation_rate": [1, int(layer.dilation_rate[0])],
                          "filters": int(layer.filters)}, True
    if t is keras.layers.Dense:
        rank = len(layer.input_shape) - 1
        if rank == 1:
            return "dense", {"units": int(layer.units)}, False
        if rank in (2, 3):  # per step / per pixel: a pointwise convolution
            return "conv2d", {"kernel_size": [1, 1], "strides": [1, 1], "padding": "valid",
                              "dilation_rate": [1, 1], "filters": int(layer.units)}, rank == 2
        raise refuse(layer, f"a Dense on a {rank}-D input {layer.input_shape} (the flow takes "
                            "a Dense on (C,), (T, C) or (H, W, C)); add a Flatten or a Reshape "
                            "before it")
    return None, None, False


def check_bn_axis(block: Block) -> None:
    """A fused or standalone BN must normalise the last axis."""
    axis = block.bn.axis
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    if axis not in (-1, len(block.bn.input_shape) - 1):
        raise refuse(block.bn, "BatchNormalization must normalise the last axis")


def _read(layer, srcs, r):
    kind, cfg, conv1d = compute_config(layer, r.keras)
    if kind is None:
        return None
    block = Block(layer.name, "compute", layer, srcs, kind=kind, op_config=cfg, conv1d=conv1d,
                  members=[layer.name])
    act = activation_of(layer)
    if act == "softmax":  # the linear layer, then the head (it must be the model output)
        block.out_shape = r.shape(layer)
        if layer.name != r.output_layer:
            raise refuse(layer, "a softmax that is not the model output")
        return [block, Block(f"{layer.name}_softmax", "softmax", layer, [block.name],
                             members=[], out_shape=r.shape(layer))]
    split = split_activations()
    if act in split:  # the linear layer, then the registry op's own block
        block.out_shape = r.shape(layer)
        return [block, Block(f"{layer.name}_{act}", "activation", layer, [block.name],
                             kind=split[act], members=[], out_shape=r.shape(layer))]
    block.activation = act
    nxt = r.only_reader(layer.name)
    if act is None and nxt is not None and type(nxt) is r.keras.layers.BatchNormalization:
        block.bn = nxt
        block.members.append(nxt.name)
        check_bn_axis(block)
    if block.activation is None:
        take_relu(block, r)
    return [block]


def output_kind(b: Block, cons: dict, by_name: dict, out_name: str) -> str:
    """What a compute / bn block's output is: "act" (its ReLU's PACT grid), "head" (8-bit
    signed logits a softmax head reads), "logits" (float / int32 logits: it reaches the
    network output through reshapes only) or "signed" (a linear layer read by others)."""
    if b.activation is not None:
        return "act"
    if any(by_name[c].op == "softmax" for c in cons.get(b.name, [])):
        return "head"
    if reaches_output(b.name, cons, by_name, out_name):
        return "logits"
    return "signed"


def _kind_config(b: Block) -> tuple[str, dict]:
    return ("depthwise", dict(BN_CONFIG)) if b.op == "bn" else (b.kind, dict(b.op_config))


# ----------------------------------------------------------------------- fake quant
def _copy_float_weights(q, block: Block) -> None:
    if block.op == "bn":  # a standalone BN: a 1 x 1 depthwise of ones, then the BN
        q.kernel.assign(np.ones(q.kernel.shape, np.float32))
    else:
        layer = block.layer
        kernel = layer.depthwise_kernel if block.kind == "depthwise" else layer.kernel
        q.kernel.assign(np.reshape(kernel.numpy(), q.kernel.shape))  # Conv1D: (k, ci, co)
        if layer.use_bias:
            q.bias.assign(layer.bias)
    bn = block.bn
    if bn is not None:
        n = q.out_channels
        q.gamma.assign(bn.gamma if bn.scale else np.ones(n, np.float32))
        q.beta.assign(bn.beta if bn.center else np.zeros(n, np.float32))
        q.moving_mean.assign(bn.moving_mean)
        q.moving_variance.assign(bn.moving_variance)


def build(b: Block, ctx):
    """One QuantCompute (compute and standalone-BN blocks)."""
    QuantCompute = fake_quant("QuantCompute")
    spec = ctx.policy[b.name]
    bn = b.bn
    bn_config = None if bn is None else {"epsilon": float(bn.epsilon),
                                         "momentum": float(bn.momentum)}
    out = output_kind(b, ctx.cons, ctx.by_name, ctx.out_name)
    act, bits = {"act": (b.activation, spec["act_bits"]), "head": ("signed", 8),
                 "logits": (None, None), "signed": ("signed", spec["act_bits"])}[out]
    rank = len(b.layer.input_shape) - 1
    kind, cfg = _kind_config(b)
    if kind != "dense" and rank != 3:
        cfg["rank"] = rank
    src = ctx.g_in[0][0]
    q = QuantCompute(kind, cfg, spec["weight_bits"], bits, ctx.policy.granularity, spec["fold"],
                     bn_config, act, ctx.clip_decay, ctx.alpha_decay, input_scale_from=src,
                     name=b.name)
    q.input_scale = ctx.owners[src].output_scale
    y = q(ctx.xs[0])
    _copy_float_weights(q, b)
    if act is not None:
        q.alpha.assign(ctx.alpha)
    ctx.created.append(q)
    ctx.owners[b.name] = q
    return y, (None if act is None else (b.name, bits, act == "signed"))


def params(layer, entry: dict, g_in: list) -> dict:
    g = g_in[0]
    entry = {"type": "compute", **layer.integer_params(g["scale"], g["zero_point"], g["bits"]),
             **entry}
    o = entry["output"]
    entry["grid"] = None if o is None else {"scale": float(o["scale"]),
                                            "zero_point": int(o["zero_point"]),
                                            "bits": int(o["bits"]),
                                            "signed": bool(o.get("signed", False))}
    return entry


# ----------------------------------------------------------------------- integer nodes
def conv_padding(cfg: dict, in_shape: tuple, out_shape: tuple) -> tuple:
    """(top, bottom, left, right) of a convolution of Keras config ``cfg`` run on the 3-D
    ``in_shape``: "valid" none; "same" TensorFlow's, on the dilated extent (k - 1) d + 1 (as
    ``tf.nn.conv2d`` and TFLite); "causal" (Conv1D, run as 1 x k) (k - 1) d on the left of the
    width (time) axis only (:func:`tinyopt.integer.ops.compute.causal_padding`)."""
    kernel = tuple(int(k) for k in cfg["kernel_size"])
    rate = tuple(int(d) for d in cfg.get("dilation_rate", (1, 1)))
    if str(cfg.get("padding", "valid")).lower() == "causal":
        return causal_padding(kernel[1], rate[1])
    extent = tuple((k - 1) * d + 1 for k, d in zip(kernel, rate))
    return padding(cfg, in_shape, out_shape, extent)


def _geometry(layer: IntegerLayer, kind: str, cfg: dict, in_zero_point: int) -> None:
    """Stride, dilation, padding, depth multiplier and pad mode of a convolution node."""
    kernel = tuple(int(k) for k in cfg["kernel_size"])
    layer.stride = tuple(int(s) for s in cfg["strides"])
    # a 1-tap axis has no dilation (the same taps either way; keeps the undilated kernels)
    layer.dilation = tuple(int(d) if k > 1 else 1
                           for k, d in zip(kernel, cfg.get("dilation_rate", (1, 1))))
    layer.padding = conv_padding(cfg, layer.in_shape, layer.out_shape)
    layer.depth_multiplier = int(cfg.get("depth_multiplier", 1))
    # CMix-NN's depthwise kernels pad with integer 0 (docs/integer.md#padding): real 0 only when
    # the input zero point is 0 (every PACT activation and a [0, 1] image); otherwise pad with
    # the zero point, as the fake-quant model does (Keras' "same" and "causal" pad real 0).
    layer.pad_mode = "zero" if kind == "depthwise" and in_zero_point == 0 else "zero_point"


def _nodes(name: str, src: str, shape: tuple, out: tuple, rank: int, dense: bool,
           fin: dict, core) -> list[IntegerLayer]:
    """The compute node ``core(src, in_shape, out_shape)`` (named ``name``), run as 2-D between
    two reshapes ``<name>_in`` / ``<name>_out`` when the Keras tensor is not 3-D (``fin``: the
    in / out grid fields of the input, which the first reshape keeps)."""
    new, in_shape, out_shape = [], tuple(shape), tuple(out)
    wrap = not dense and rank != 3
    if wrap:
        in_shape, out_shape = (1,) * (3 - rank) + tuple(shape), (1,) * (3 - rank) + tuple(out)
        new.append(IntegerLayer(kind="reshape", name=f"{name}_in", in_shape=tuple(shape),
                                out_shape=in_shape, inputs=(src,), outputs=(f"{name}_in",),
                                **fin))
        src = f"{name}_in"
    layer = core(src, in_shape, out_shape)
    new.append(layer)
    if wrap:
        new.append(IntegerLayer(
            kind="reshape", name=f"{name}_out", in_shape=out_shape, out_shape=tuple(out),
            inputs=(name,), outputs=(f"{name}_out",),
            **{f"{p}_{k}": getattr(layer, f"out_{k}") for p in ("in", "out")
               for k in ("bits", "zero_point", "scale", "signed")}))
    return new


def compute_layer(e: dict, in_shape: tuple, out_shape: tuple, in_zero_point: int
                  ) -> IntegerLayer:
    """One ``integer_params`` compute entry -> IntegerLayer
    (docs/integer.md#icn-integer-channel-normalization,
    docs/integer.md#logits-of-the-last-layer)."""
    kind, cfg, where = e["kind"], e["op_config"], f"layer {e['name']!r}"
    codes = np.asarray(e["weight_codes"])
    extra = {}
    if kind == "conv2d":
        layout = codes.transpose(3, 0, 1, 2)  # [kh, kw, cin, cout] -> [cout][ky][kx][cin]
        if tuple(codes.shape[:2]) == (1, 1):
            kind = "pointwise"
    elif kind == "depthwise":  # [kh, kw, cin, mult] -> [ky][kx][cin * mult], TF channel order
        layout = codes.reshape(codes.shape[0], codes.shape[1], -1)
    else:
        layout = codes.T  # [in, out] -> [out][in]
    c = int(out_shape[-1])
    s_x = float(e["input"]["scale"])
    s_w = np.broadcast_to(np.asarray(e["weight_scale"], np.float64).reshape(-1), (c,))
    unit = s_x * s_w  # real value of one accumulator step, per channel
    bn = e["bn"]
    # ICN (docs/integer.md#icn-integer-channel-normalization): BN stays a per-channel multiplier
    # g; no BN or FB (BN already folded into the kernel and the bias,
    # docs/integer.md#fb-folded-batchnorm): g = 1. The bias codes are the effective bias's.
    g = bn_gain(bn) if bn is not None else np.ones(c)
    bias = np.asarray(e["bias_codes"], np.int32)
    if "bias_clamped_channels" in e:
        extra["bias_clamped_channels"] = e["bias_clamped_channels"]
    step = g * unit  # real value of one accumulator step after BN
    layer = IntegerLayer(
        kind=kind, name=e["name"], in_shape=tuple(in_shape), out_shape=tuple(out_shape),
        in_bits=int(e["input"]["bits"]), in_zero_point=int(in_zero_point), in_scale=s_x,
        weight_zero_point=np.atleast_1d(np.asarray(e["weight_zero_point"], np.int32)),
        weight_scale=np.atleast_1d(np.asarray(e["weight_scale"], np.float64)), bias=bias,
        extra={**extra, "fold": e["fold"], "granularity": e["granularity"],
               "kernel_source": e["kernel_source"]})
    layer.set_weights(layout.astype(np.uint8), int(e["weight_bits"]))
    if kind in ("conv2d", "pointwise", "depthwise"):
        _geometry(layer, kind, cfg, in_zero_point)
    out = e["output"]
    if out is not None:  # PACT output: Y = clamp(floor(M (Phi + B_q)), 0, 2^Q - 1)
        layer.out_bits, layer.out_zero_point = int(out["bits"]), int(out["zero_point"])
        layer.out_scale = float(out["scale"])
        mult = step / layer.out_scale
        per_layer = e["fold"] == "FB" and e["granularity"] == "PL" and bn is None
        layer.m0, layer.n0 = multiplier(mult[:1] if per_layer else mult, where)
    else:  # logits (docs/integer.md#logits-of-the-last-layer): int32, signed; real = out_scale Y
        layer.out_bits, layer.out_signed = 32, True
        if bn is None and np.all(step == step[0]):  # PL: the common factor drops out
            layer.requantize, layer.out_scale = False, float(step[0])
        else:  # PC (or BN): per-channel rescale onto the largest step (full Q1.31 mantissa)
            ref = float(np.max(np.abs(step)))
            layer.out_scale = ref
            layer.m0, layer.n0 = multiplier(step / ref, where)
        layer.extra["logits"] = "int32"
    return layer


def lower(e: dict, ctx) -> list[IntegerLayer]:
    src, shape, g = ctx.srcs[0]
    name = e["name"]

    def core(src_, in_shape, out_shape):
        layer = compute_layer(e, in_shape, out_shape, int(g["zero_point"]))
        layer.inputs, layer.outputs = (src_,), (name,)
        return layer

    return _nodes(name, src, shape, ctx.keras_out, int(e["op_config"].get("rank", 3)),
                  e["kind"] == "dense", {**grid_fields("in", g), **grid_fields("out", g)}, core)


def plan(b: Block, ctx) -> list[IntegerLayer]:
    """The node(s) ``lower`` gives, with zero weights and unit multipliers of the right shapes
    (the kernel choice and the planner read only shapes, bits and geometry)."""
    src, shape = ctx.srcs[0]
    gin, grids = ctx.gin, ctx.grids
    wbits, abits = int(ctx.weight_bits[b.name]), int(ctx.act_bits[b.name])
    granularity, fold = ctx.granularity, ctx.fold.get(b.name, "FB")
    s = ctx.structure
    go = {"act": lambda: pact(abits, False, ("act", b.name)),
          "head": lambda: pact(8, True, None),  # the softmax head reads 8-bit signed logits
          "logits": lambda: Grid(LOGIT_BITS, 0, True, None),
          "signed": lambda: pact(abits, True, ("act", b.name))}[
        output_kind(b, s.cons, s.by_name, s.out_name)]()
    kind, cfg = _kind_config(b)
    bn_kept = b.bn is not None and fold == "ICN"

    def core(src_, in_shape, out_shape):
        nonlocal kind
        c = int(out_shape[-1])
        if kind == "conv2d":
            kh, kw = (int(k) for k in cfg["kernel_size"])
            layout = (c, kh, kw, int(in_shape[-1]))
            kind = "pointwise" if (kh, kw) == (1, 1) else kind
        elif kind == "depthwise":
            kh, kw = (int(k) for k in cfg["kernel_size"])
            layout = (kh, kw, c)
        else:
            layout = (c, int(np.prod(in_shape)))
        rows, n = weight_rows(kind, layout)
        layer = IntegerLayer(
            kind=kind, name=b.name, in_shape=in_shape, out_shape=out_shape, inputs=(src_,),
            outputs=(b.name,), **plan_fields("in", gin), **plan_fields("out", go),
            weights=np.zeros((rows, -(-n * wbits // 8)), np.uint8), weight_shape=layout,
            weight_bits=wbits,
            weight_zero_point=np.zeros(c if granularity == "PC" else 1, np.int32),
            bias=np.zeros(c, np.int32), extra={"fold": fold, "granularity": granularity})
        if kind != "dense":
            _geometry(layer, kind, cfg, gin.zero_point)
        if go.bits == LOGIT_BITS:  # PL without a kept BN: the raw accumulator
            layer.requantize = granularity == "PC" or bn_kept
        k = 1 if fold == "FB" and granularity == "PL" and not bn_kept else c
        if layer.requantize:
            layer.m0, layer.n0 = np.ones(k, np.int32), np.zeros(k, np.int8)
        return layer

    new = _nodes(b.name, src, shape, b.out_shape, len(b.layer.input_shape) - 1, kind == "dense",
                 {**plan_fields("in", gin), **plan_fields("out", gin)}, core)
    grids[b.name] = go
    if new[-1].name != b.name:  # the 2-D run's output reshape keeps the grid
        grids[new[-1].name] = Grid(go.bits, go.zero_point, go.signed, ("derived", (b.name,)))
    return new


register(Handler(
    "compute", ("compute",), 0, read=_read, build=build, layers=("QuantCompute",), params=params,
    entry_types=("compute",), lower=lower, plan=plan, policy=True,
    supported="Conv2D, Conv1D, DepthwiseConv2D, Dense (each optionally followed by "
              "BatchNormalization and ReLU/ReLU6; a softmax or a registry activation of its "
              "own, e.g. sigmoid, is split off; convolutions dilated or not, Conv1D causal; "
              "Dense on (C,), (T, C) or (H, W, C))"))

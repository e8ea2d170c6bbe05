"""Lowering: a fake-quant model of :func:`tinyopt.mixed.build.quantize_mixed` /
:func:`tinyopt.mixed.ptq.quantize_mixed` -> an integer-only
:class:`~tinyopt.integer.graph.IntegerGraph`, with Integer Channel-Normalization (ICN) where the
policy keeps BatchNorm (NEMO's fake-quantized -> integer-deployable stage; see
``docs/integer.md``).

- :func:`convert`: packed weights, int32 biases B_q, Q1.31 multipliers m0 and exponents n0 per
  layer (FB) or per channel (ICN), CMix-NN floor requantization, int32 logits;
- :func:`snap_bias`: the stored float biases onto the int32 grid.

The check of the lowered graph against its fake-quant model is :mod:`tinyopt.mixed.verify`.
"""

from __future__ import annotations

import numpy as np

from tinyopt.front.checks import check_weights
from tinyopt.integer.arith import bn_gain, m0_n0, same_padding, tflite_quantize_multiplier
from tinyopt.integer.graph import IntegerGraph, IntegerLayer, Tensor, plain
from tinyopt.mixed import dag
from tinyopt.mixed.skeleton import activation_layers

# Fake-quant Keras model -> IntegerGraph (docs/integer.md#lowering-a-fake-quant-model)
# --------------------------------------------------------------------------------------------



def _padding(cfg: dict, in_shape: tuple, out_shape: tuple, kernel: tuple) -> tuple:
    """(top, bottom, left, right) of a Keras "same" / "valid" op."""
    if str(cfg.get("padding", "valid")).lower() == "valid":
        return (0, 0, 0, 0)
    strides = tuple(cfg.get("strides") or kernel)
    top, bottom = same_padding(in_shape[0], kernel[0], strides[0], out_shape[0])
    left, right = same_padding(in_shape[1], kernel[1], strides[1], out_shape[1])
    return (top, bottom, left, right)


def _m0_n0(multiplier, where: str):
    """:func:`m0_n0`, with the layer named when a multiplier is not finite (a zero or NaN scale)."""
    try:
        return m0_n0(multiplier)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}; its input, weight or output scale is zero or not "
                         "finite (check the layer's clips and PACT alpha)") from exc


def _compute_layer(e: dict, in_shape: tuple, out_shape: tuple, in_zero_point: int
                   ) -> IntegerLayer:
    """One ``tinyopt.qat.integer_params`` compute entry -> IntegerLayer
    (docs/integer.md#icn-integer-channel-normalization,
    docs/integer.md#logits-of-the-last-layer)."""
    kind, cfg, where = e["kind"], e["op_config"], f"layer {e['name']!r}"
    codes = np.asarray(e["weight_codes"])
    if kind in ("conv2d", "depthwise") and any(int(d) != 1 for d in cfg["dilation_rate"]):
        raise ValueError(f"{where}: dilated convolutions ({cfg['dilation_rate']}) are not "
                         "supported by the integer kernels; use dilation_rate=1")
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
    # ICN (docs/integer.md#icn-integer-channel-normalization): BN stays a per-channel multiplier g;
    # no BN or FB (BN already folded into
    # the kernel and the bias, docs/integer.md#fb-folded-batchnorm): g = 1. The bias codes are the
    # effective bias's.
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
        kernel = tuple(int(k) for k in cfg["kernel_size"])
        layer.stride = tuple(int(s) for s in cfg["strides"])
        layer.padding = _padding(cfg, in_shape, out_shape, kernel)
        layer.depth_multiplier = int(cfg.get("depth_multiplier", 1))
        # CMix-NN's depthwise kernels pad with integer 0 (docs/integer.md#padding): real 0 only when
        # the
        # input zero point is 0 (every PACT activation and a [0, 1] image); otherwise pad with the
        # zero point, as the fake-quant model does.
        layer.pad_mode = "zero" if kind == "depthwise" and in_zero_point == 0 else "zero_point"
    out = e["output"]
    if out is not None:  # PACT output: Y = clamp(floor(M (Phi + B_q)), 0, 2^Q - 1)
        layer.out_bits, layer.out_zero_point = int(out["bits"]), int(out["zero_point"])
        layer.out_scale = float(out["scale"])
        mult = step / layer.out_scale
        per_layer = e["fold"] == "FB" and e["granularity"] == "PL" and bn is None
        layer.m0, layer.n0 = _m0_n0(mult[:1] if per_layer else mult, where)
    else:  # logits (docs/integer.md#logits-of-the-last-layer): int32, signed; real = out_scale * Y
        layer.out_bits, layer.out_signed = 32, True
        if bn is None and np.all(step == step[0]):  # PL: the common factor drops out
            layer.requantize, layer.out_scale = False, float(step[0])
        else:  # PC (or BN): per-channel rescale onto the largest step (full Q1.31 mantissa)
            ref = float(np.max(np.abs(step)))
            layer.out_scale = ref
            layer.m0, layer.n0 = _m0_n0(step / ref, where)
        layer.extra["logits"] = "int32"
    return layer


def _grid_fields(prefix: str, g: dict) -> dict:
    """IntegerLayer in_* / out_* fields of a grid (signed grids of pact_signed are stored as
    unsigned codes with zero point 2^(Q-1); only the softmax's int8 is signed)."""
    signed = bool(g.get("signed", False)) and g["zero_point"] <= 0
    return {f"{prefix}_bits": int(g["bits"]), f"{prefix}_zero_point": int(g["zero_point"]),
            f"{prefix}_scale": float(g["scale"]), f"{prefix}_signed": signed}


def stored(g: dict) -> dict:
    """A grid of :func:`tinyopt.mixed.build.integer_params` as the integer graph stores it
    (``signed``: two's complement codes; the signed quantizer's grids are unsigned codes with
    zero point 2^(Q-1))."""
    return {"bits": int(g["bits"]), "scale": float(g["scale"]),
            "zero_point": int(g["zero_point"]),
            "signed": bool(g.get("signed", False)) and int(g["zero_point"]) <= 0}


def _add_layer(e: dict, ins: list, out_shape: tuple) -> IntegerLayer:
    """QuantAdd -> TFLite-style ADD with floor requantization: each addend minus its zero point,
    shifted left by 20, rescaled by S_i / (2 max S); the sum by 2 max S / (2^20 S_out)."""
    ga, gb = e["input_grids"]
    go = e["grid"]
    layer = IntegerLayer(kind="add", name=e["name"], in_shape=out_shape, out_shape=out_shape,
                         inputs=tuple(ins), outputs=(e["name"],), **_grid_fields("in", ga),
                         **_grid_fields("out", go))
    layer.left_shift = 20
    twice_max = 2 * max(ga["scale"], gb["scale"])
    reals = np.array([ga["scale"] / twice_max, gb["scale"] / twice_max,
                      twice_max / ((1 << layer.left_shift) * go["scale"])])
    layer.m0, layer.n0 = _m0_n0(reals, f"add {e['name']!r}")
    return layer


def _requant_layer(name: str, src: str, shape: tuple, g_in: dict, g_out: dict) -> IntegerLayer:
    """A QUANTIZE node moving a tensor from grid ``g_in`` onto ``g_out`` (floor)."""
    layer = IntegerLayer(kind="quantize", name=name, in_shape=shape, out_shape=shape,
                         inputs=(src,), outputs=(name,), **_grid_fields("in", g_in),
                         **_grid_fields("out", g_out))
    layer.m0, layer.n0 = _m0_n0(np.array([g_in["scale"] / g_out["scale"]]), f"node {name!r}")
    return layer


def _softmax_layers(e: dict, src: str, shape: tuple) -> list[IntegerLayer]:
    """The int8 softmax head: the 8-bit logits (unsigned codes, zero point 128) moved to int8
    (an exact QUANTIZE by 1), then TFLite's fixed-point int8 SOFTMAX (beta 1; output scale
    1/256, zero point -128), with TFLite's double rounding as in every TFLite kernel."""
    g = e["input_grid"]
    if g is None or int(g["bits"]) != 8:
        raise ValueError(f"softmax {e['name']!r} needs 8-bit logits, got {g}")
    int8 = {"scale": g["scale"], "zero_point": 0, "bits": 8, "signed": True}
    head = []
    if int(g["zero_point"]) != 0:
        head.append(_requant_layer(f"{e['name']}_int8", src, shape, g, int8))
        src = head[-1].name
    layer = IntegerLayer(kind="softmax", name=e["name"], in_shape=shape, out_shape=shape,
                         inputs=(src,), outputs=(e["name"],), **_grid_fields("in", int8),
                         **_grid_fields("out", e["grid"]))
    layer.out_signed = True
    real = min(float(g["scale"]) * float(1 << 26), float((1 << 31) - 1))
    q, n = tflite_quantize_multiplier(real)
    layer.m0, layer.n0 = q, n
    layer.diff_min = -int(np.floor(31.0 * (1 << 26) / float(1 << int(n[0]))))
    layer.rounding = "tflite_double"
    return head + [layer]


def convert(qmodel, name: str | None = None) -> IntegerGraph:
    """Fake-quantized Keras model (tinyopt.qat / tinyopt.ptq ``quantize_mixed``) -> IntegerGraph.

    The graph computes what CMix-NN-style kernels compute (``rounding="floor"``;
    docs/integer.md#lowering-a-fake-quant-model, docs/integer.md#cmix-nn-kernels):

    - input: the model's 8-bit input quantizer (scale, zero point) is recorded on the graph;
      :meth:`IntegerGraph.quantize_input` maps float images onto it exactly as the fake-quant
      model does; with a folded input scaling (a leading Rescaling / Normalization) that is
      the raw input's quantizer, the input tensor's record (``graph.tensors``) holds the grid
      the network reads and ``meta["input_scaling"]`` the map;
    - compute layers (``conv2d``, ``pointwise`` = 1x1 conv, ``depthwise``, ``dense``): weight
      codes packed LSB-first in the layouts of this module (conv [c_out][ky][kx][c_in],
      depthwise [ky][kx][c], dense [c_out][c_in]), weight zero point(s) and scale(s) (PL: one,
      PC: per channel), int32 bias B_q and (m0, n0):

      * ICN with BN (docs/integer.md#icn-integer-channel-normalization): B_q = round((b - mu +
        beta sigma / gamma) / (S_x S_w)), M_c = (gamma_c / sigma_c) S_x S_w / S_y, per channel
        (negative when gamma < 0);
      * FB or no BN (docs/integer.md#fb-folded-batchnorm): B_q = round(b' / (S_x S_w)) with the
        folded bias b', M = S_x S_w / S_y, one per layer for PL+FB, per channel otherwise;
      * a linear layer producing the network output (docs/integer.md#logits-of-the-last-layer)
        outputs signed **int32 logits**: PL without BN the raw accumulator Phi + B_q
        (``requantize=False``, ``out_scale = S_x S_w``); PC (or a BN) rescales every channel
        onto the largest per-channel step with a per-channel (m0, n0) and floor;
      * a linear layer inside the network (signed quantizer) writes unsigned codes with zero
        point 2^(Q-1); Conv1D and a standalone BN on a 1-D / 2-D tensor run as 2-D ops between
        two reshapes (``<name>_in``, ``<name>_out``);

      Convolutions pad TF-style (SAME: the extra row / column at the bottom / right) with the
      zero point (real 0); depthwise with integer 0 when the input zero point is 0 (CMix-NN);
    - ``add`` (:func:`_add_layer`), ``concat`` (inputs on another grid first pass a
      ``quantize`` node ``<concat>_<i>``), the int8 ``softmax`` head (:func:`_softmax_layers`),
      ``pad`` (ZeroPadding2D), ``maxpool``, ``avgpool`` (floor(sum / count); a global average
      pool becomes an H x W ``avgpool`` followed by a ``flatten`` named ``<name>_flatten``),
      ``flatten``, ``reshape``; dropout is dropped (identity at inference);
    - an element-wise op of the op registry (``QuantActivation``): the nodes its module's
      ``KerasPattern.lower`` gives at the input and output grids (:func:`activation_layers`:
      LeakyReLU a ``leaky_relu`` node, TFLite's arithmetic; hard-swish TFLite's int8 kernel
      at 8 bits, a lookup table otherwise), its own step(s), never fused into the layer before.

    Every node names its input and output tensors (a DAG); a node's output tensor is named after
    its Keras layer.

    Arguments:
        qmodel: a model from :func:`tinyopt.qat.quantize_mixed` or
            :func:`tinyopt.ptq.quantize_mixed` (moving BN statistics are used, as in inference).
        name: the graph's name (default: the model's).

    Returns:
        A validated :class:`IntegerGraph`; ``meta`` records the source model and its policy.

    Raises:
        ValueError: the model was not built by ``quantize_mixed``, or contains a layer with no
            integer equivalent (named in the message), a layer
            :func:`tinyopt.mixed.dag.check_supported` refuses (a dilated convolution, an add
            that broadcasts; every one named), or a layer with a NaN / Inf weight, BN statistic
            or quantizer clip (named).
    """
    from tinyopt.mixed import build  # TF is imported only when converting
    if not hasattr(qmodel, "layers") or not hasattr(qmodel, "input_shape"):
        raise TypeError(f"convert needs a Keras model from tinyopt.qat.quantize_mixed or "
                        f"tinyopt.ptq.quantize_mixed, got {type(qmodel).__name__}")
    dag.check_supported(qmodel)  # every refusal at once, before any layer is lowered
    check_weights(qmodel, "icn.convert")
    params = build.integer_params(qmodel)
    inp = params["input"]
    # the input quantizer maps RAW images to the codes (raw_*); with a folded input scaling the
    # network reads them on another grid, the input tensor's explicit record
    raw_scale = float(inp.get("raw_scale", inp["scale"]))
    raw_zero_point = int(inp.get("raw_zero_point", inp["zero_point"]))
    graph = IntegerGraph(layers=[], input_shape=tuple(int(d) for d in qmodel.input_shape[1:]),
                         input_bits=int(inp["bits"]), input_zero_point=raw_zero_point,
                         input_scale=raw_scale, rounding="floor",
                         name=name or qmodel.name, meta={"source": qmodel.name,
                                                         "input_range": [inp["lo"], inp["hi"]]})
    if inp.get("input_scaling") is not None:
        graph.meta["input_scaling"] = dict(inp["input_scaling"])
        graph.tensors[graph.input_name] = Tensor(graph.input_name, graph.input_shape,
                                                 int(inp["bits"]), False, int(inp["zero_point"]),
                                                 float(inp["scale"]))
    policy = getattr(qmodel, "policy", None)
    if policy is not None:
        graph.meta["policy"] = {k: plain(getattr(policy, k)) for k in
                                ("layers", "weight_bits", "act_bits", "granularity", "fold")}
    # Keras layer name -> (integer tensor name, its per-image shape, its grid)
    tensor_of = {"input_quant": (graph.input_name, graph.input_shape,
                                 {"scale": float(inp["scale"]),
                                  "zero_point": int(inp["zero_point"]),
                                  "bits": graph.input_bits, "signed": False})}
    for e in params["layers"]:
        kind, lname = e["type"], e["name"]
        srcs = [tensor_of[n] for n in e["inputs"]]
        src, shape, g = srcs[0]
        keras_out = tuple(int(d) for d in qmodel.get_layer(lname).output_shape[1:])
        common = {"name": lname, "in_shape": shape, "inputs": (src,), "outputs": (lname,),
                  **_grid_fields("in", g), **_grid_fields("out", g)}
        if kind == "compute":
            rank = int(e["op_config"].get("rank", 3))
            new = []
            in_shape, out_shape = shape, keras_out
            if e["kind"] != "dense" and rank != 3:  # run as 2-D between two reshapes
                in_shape = (1,) * (3 - rank) + tuple(shape)
                out_shape = (1,) * (3 - rank) + keras_out
                new.append(IntegerLayer(kind="reshape", out_shape=in_shape,
                                        **{**common, "name": f"{lname}_in",
                                           "outputs": (f"{lname}_in",)}))
                src = f"{lname}_in"
            layer = _compute_layer(e, in_shape, out_shape, int(g["zero_point"]))
            layer.inputs, layer.outputs = (src,), (lname,)
            new.append(layer)
            if e["kind"] != "dense" and rank != 3:
                new.append(IntegerLayer(
                    kind="reshape", name=f"{lname}_out", in_shape=out_shape, out_shape=keras_out,
                    inputs=(lname,), outputs=(f"{lname}_out",),
                    **{f"{p}_{k}": getattr(layer, f"out_{k}") for p in ("in", "out")
                       for k in ("bits", "zero_point", "scale", "signed")}))
        elif kind == "dropout":
            tensor_of[lname] = tensor_of[e["inputs"][0]]
            continue
        elif kind in ("flatten", "reshape"):
            new = [IntegerLayer(kind=kind, out_shape=keras_out, **common)]
        elif kind == "pad":
            (top, bottom), (left, right) = e["config"]["padding"]
            new = [IntegerLayer(kind="pad", out_shape=keras_out,
                                padding=(int(top), int(bottom), int(left), int(right)), **common)]
        elif kind == "maxpool":
            cfg = e["config"]
            size = tuple(int(k) for k in cfg["pool_size"])
            cfg = {**cfg, "strides": cfg.get("strides") or size}
            new = [IntegerLayer(kind="maxpool", out_shape=keras_out, pool_size=size,
                                stride=tuple(int(s) for s in cfg["strides"]),
                                padding=_padding(cfg, shape, keras_out, size), **common)]
        elif kind == "avgpool":
            if e["pool_size"] is None and e.get("keepdims"):  # global, (1, 1, C): the pool
                size = tuple(shape[:2])
                new = [IntegerLayer(kind="avgpool", out_shape=keras_out, pool_size=size,
                                    stride=size, avg_rounding="floor", **common)]
            elif e["pool_size"] is None:  # global: H x W window, then flatten as Keras' [N, C]
                size = tuple(shape[:2])
                pooled = (1, 1, shape[-1])
                new = [IntegerLayer(kind="avgpool", out_shape=pooled, pool_size=size,
                                    stride=size, avg_rounding="floor",
                                    **{**common, "outputs": (f"{lname}_pool",),
                                       "name": f"{lname}_pool"}),
                       IntegerLayer(kind="flatten", out_shape=keras_out,
                                    **{**common, "in_shape": pooled,
                                       "inputs": (f"{lname}_pool",)})]
                # the pooled node keeps the Keras name for the comparison with the fake model
                new[0].name, new[0].outputs = lname, (lname,)
                new[1].name, new[1].inputs = f"{lname}_flatten", (lname,)
                new[1].outputs = (f"{lname}_flatten",)
            else:
                size = tuple(int(k) for k in e["pool_size"])
                stride = tuple(int(s) for s in (e["strides"] or size))
                new = [IntegerLayer(kind="avgpool", out_shape=keras_out, pool_size=size,
                                    stride=stride, avg_rounding="floor", **common)]
        elif kind == "add":
            new = [_add_layer(e, [s[0] for s in srcs], keras_out)]
        elif kind == "concat":
            go, new, names = e["grid"], [], []
            for i, (t, sh, gi) in enumerate(srcs):
                if (gi["scale"], gi["zero_point"], gi["bits"]) != (go["scale"], go["zero_point"],
                                                                   go["bits"]):
                    new.append(_requant_layer(f"{lname}_{i}", t, sh, gi, go))
                    t = new[-1].name
                names.append(t)
            new.append(IntegerLayer(kind="concat", name=lname, in_shape=shape,
                                    out_shape=keras_out, inputs=tuple(names), outputs=(lname,),
                                    axis=-1, **_grid_fields("in", go), **_grid_fields("out", go)))
        elif kind == "softmax":
            new = _softmax_layers(e, src, shape)
        elif kind == "element_wise":  # a registry op: its module's integer form
            new = activation_layers(e["kind"], lname, src, shape, stored(e["input_grid"]),
                                    stored(e["grid"]), e["config"])
        else:
            raise ValueError(f"layer {lname!r} ({type(qmodel.get_layer(lname)).__name__}) has "
                             "no integer equivalent; convert supports the layers of "
                             "quantize_mixed (tinyopt.mixed.dag.SUPPORTED)")
        graph.layers.extend(new)
        last = new[-1]
        tensor_of[lname] = (last.outputs[0], tuple(last.out_shape),
                            {"scale": last.out_scale, "zero_point": last.out_zero_point,
                             "bits": last.out_bits, "signed": last.out_signed})
    graph.validate()
    return graph


def snap_bias(qmodel) -> dict[str, float]:
    """Round every compute layer's effective bias onto its integer grid IN the fake-quant model
    (in place): the stored float parameters then hold the values the integer graph uses.

    The integer kernels add an int32 bias B_q = round(bias / (S_x S_w)) to the accumulator
    (docs/mixed_precision.md#bias-codes, docs/integer.md#icn-integer-channel-normalization). The
    fake-quant forward pass already rounds the effective bias the same way
    (:meth:`tinyopt.qat.QuantCompute.quantize_bias`, with a straight-through gradient), so this
    call does not change what the model computes (up to float32 rounding); it makes the stored
    parameters say so (no BN: the bias; FB: beta, so that the folded bias is on the grid; ICN:
    beta, so that b - mu + beta sigma / gamma is), e.g. before exporting them elsewhere.
    Weights, scales and zero points are untouched.

    Arguments:
        qmodel: a model from :func:`tinyopt.qat.quantize_mixed` or
            :func:`tinyopt.ptq.quantize_mixed`.

    Returns:
        {layer name: largest |change| of that layer's effective bias, in accumulator steps}
        (at most 0.5, except channels whose gamma is 0, which are left alone).
    """
    from tinyopt.mixed import build
    changes = {}
    for e in build.integer_params(qmodel)["layers"]:
        if e["type"] != "compute":
            continue
        layer = qmodel.get_layer(e["name"])
        c = len(e["bias"])
        unit = float(e["input"]["scale"]) * np.broadcast_to(
            np.asarray(e["weight_scale"], np.float64).reshape(-1), (c,))
        real = e["bias"]  # the effective bias: b, FB's folded bias or ICN's b - mu + beta / g
        gain = bn_gain(e["bn"]) if e["bn"] is not None else np.ones(c)
        target = np.round(real / unit) * unit
        delta = np.where(np.isfinite(target) & (gain != 0), target - real, 0.0)
        if layer.bn_config is None:
            layer.bias.assign((layer.bias.numpy() + delta).astype(np.float32))
        else:  # beta absorbs it: FB's folded bias = beta + (b - mu) f; ICN's = beta / g
            layer.beta.assign((layer.beta.numpy() + delta * gain).astype(np.float32))
        changes[e["name"]] = float(np.max(np.abs(delta / unit), initial=0.0))
    return changes

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
from tinyopt.integer.arith import bn_gain, m0_n0, same_padding
from tinyopt.integer.graph import IntegerGraph, IntegerLayer, plain

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


def _compute_layer(e: dict, in_shape: tuple, out_shape: tuple, in_zero_point: int,
                   last: bool) -> IntegerLayer:
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
    elif not last:
        raise ValueError(f"{where}: a linear (no activation) compute layer must be the last one")
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


def convert(qmodel, name: str | None = None) -> IntegerGraph:
    """Fake-quantized Keras model (tinyopt.qat / tinyopt.ptq ``quantize_mixed``) -> IntegerGraph.

    The graph computes what CMix-NN-style kernels compute (``rounding="floor"``;
    docs/integer.md#lowering-a-fake-quant-model, docs/integer.md#cmix-nn-kernels):

    - input: the model's 8-bit input quantizer (scale, zero point) is recorded on the graph;
      :meth:`IntegerGraph.quantize_input` maps float images onto it exactly as the fake-quant
      model does;
    - compute layers (``conv2d``, ``pointwise`` = 1x1 conv, ``depthwise``, ``dense``): weight
      codes packed LSB-first in the layouts of this module (conv [c_out][ky][kx][c_in],
      depthwise [ky][kx][c], dense [c_out][c_in]), weight zero point(s) and scale(s) (PL: one,
      PC: per channel), int32 bias B_q and (m0, n0):

      * ICN with BN (docs/integer.md#icn-integer-channel-normalization): B_q = round((b - mu + beta
      sigma / gamma) / (S_x S_w)),
        M_c = (gamma_c / sigma_c) S_x S_w / S_y, per channel (negative when gamma < 0);
      * FB or no BN (docs/integer.md#fb-folded-batchnorm): B_q = round(b' / (S_x S_w)) with the
      folded bias b',
        M = S_x S_w / S_y, one per layer for PL+FB, per channel otherwise (PC, or ICN);
      * the last, linear layer (docs/integer.md#logits-of-the-last-layer) outputs signed **int32
      logits**: PL without BN the
        raw accumulator Phi + B_q (``requantize=False``, ``out_scale = S_x S_w``); PC (or a BN)
        rescales every channel onto the largest per-channel step with a per-channel (m0, n0)
        (full Q1.31 mantissa, not the repo's 8-bit one) and floor; real logit = out_scale * Y.

      Convolutions pad TF-style (SAME: the extra row / column at the bottom / right); the conv
      kernels pad with the zero point (real 0), depthwise with integer 0 (CMix-NN,
      docs/integer.md#kernel-arithmetic-step-by-step),
      which is real 0 as long as the input zero point is 0 (else the zero point is used);
    - ``maxpool``, ``avgpool`` (floor(sum / count); a global average pool becomes an H x W
      ``avgpool`` followed by a ``flatten`` named ``<name>_flatten``), ``flatten``, ``reshape``;
      dropout is dropped (identity at inference).

    Arguments:
        qmodel: a model from :func:`tinyopt.qat.quantize_mixed` or
            :func:`tinyopt.ptq.quantize_mixed` (moving BN statistics are used, as in inference).
        name: the graph's name (default: the model's).

    Returns:
        A validated :class:`IntegerGraph`; ``meta`` records the source model and its policy.

    Raises:
        ValueError: the model was not built by ``quantize_mixed``, or contains a layer with no
            integer equivalent (named in the message), a dilated convolution, or a layer with a
            NaN / Inf weight, BN statistic or quantizer clip (named).
    """
    from tinyopt.mixed import build  # TF is imported only when converting
    if not hasattr(qmodel, "layers") or not hasattr(qmodel, "input_shape"):
        raise TypeError(f"convert needs a Keras model from tinyopt.qat.quantize_mixed or "
                        f"tinyopt.ptq.quantize_mixed, got {type(qmodel).__name__}")
    check_weights(qmodel, "icn.convert")
    params = build.integer_params(qmodel)
    inp = params["input"]
    graph = IntegerGraph(layers=[], input_shape=tuple(int(d) for d in qmodel.input_shape[1:]),
                         input_bits=int(inp["bits"]), input_zero_point=int(inp["zero_point"]),
                         input_scale=float(inp["scale"]), rounding="floor",
                         name=name or qmodel.name, meta={"source": qmodel.name,
                                                         "input_range": [inp["lo"], inp["hi"]]})
    policy = getattr(qmodel, "policy", None)
    if policy is not None:
        graph.meta["policy"] = {k: plain(getattr(policy, k)) for k in
                                ("layers", "weight_bits", "act_bits", "granularity", "fold")}
    shape, bits, zp, scale = graph.input_shape, graph.input_bits, graph.input_zero_point, \
        graph.input_scale
    computes = [e["name"] for e in params["layers"] if e["type"] == "compute"]
    for e in params["layers"]:
        kind, lname = e["type"], e["name"]
        out_shape = tuple(int(d) for d in qmodel.get_layer(lname).output_shape[1:])
        common = {"name": lname, "in_shape": shape, "in_bits": bits, "in_zero_point": zp,
                  "in_scale": scale, "out_bits": bits, "out_zero_point": zp, "out_scale": scale}
        if kind == "compute":
            new = [_compute_layer(e, shape, out_shape, zp, lname == computes[-1])]
        elif kind == "dropout":
            continue
        elif kind in ("flatten", "reshape"):
            new = [IntegerLayer(kind=kind, out_shape=out_shape, **common)]
        elif kind == "maxpool":
            cfg = e["config"]
            size = tuple(int(k) for k in cfg["pool_size"])
            cfg = {**cfg, "strides": cfg.get("strides") or size}
            new = [IntegerLayer(kind="maxpool", out_shape=out_shape, pool_size=size,
                                stride=tuple(int(s) for s in cfg["strides"]),
                                padding=_padding(cfg, shape, out_shape, size), **common)]
        elif kind == "avgpool":
            if e["pool_size"] is None:  # global: H x W window, then flatten as Keras' [N, C]
                size = tuple(shape[:2])
                new = [IntegerLayer(kind="avgpool", out_shape=(1, 1, shape[-1]), pool_size=size,
                                    stride=size, avg_rounding="floor", **common),
                       IntegerLayer(kind="flatten", out_shape=out_shape,
                                    **{**common, "name": f"{lname}_flatten",
                                       "in_shape": (1, 1, shape[-1])})]
            else:
                size = tuple(int(k) for k in e["pool_size"])
                stride = tuple(int(s) for s in (e["strides"] or size))
                new = [IntegerLayer(kind="avgpool", out_shape=out_shape, pool_size=size,
                                    stride=stride, avg_rounding="floor", **common)]
        else:
            raise ValueError(f"layer {lname!r} ({type(qmodel.get_layer(lname)).__name__}) has "
                             "no integer equivalent; convert supports the compute layers of "
                             "quantize_mixed, MaxPooling2D, (Global)AveragePooling2D, Flatten, "
                             "Reshape and Dropout")
        graph.layers.extend(new)
        last = new[-1]
        shape, bits, zp, scale = last.out_shape, last.out_bits, last.out_zero_point, \
            last.out_scale
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

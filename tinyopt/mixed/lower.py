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

from types import SimpleNamespace

import numpy as np

from tinyopt.front.checks import check_weights
from tinyopt.integer.arith import bn_gain
from tinyopt.integer.graph import IntegerGraph, Tensor, plain
from tinyopt.mixed import dag, handlers
from tinyopt.mixed.handlers.base import grid_fields, stored  # noqa: F401  (stored: public)

# Fake-quant Keras model -> IntegerGraph (docs/integer.md#lowering-a-fake-quant-model): a walk
# over the integer view of the model (build.integer_params), each entry lowered by its block
# kind's handler (tinyopt.mixed.handlers: Handler.lower).


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
    - ``add`` (TFLite's ADD, floor requantization), ``concat`` (inputs on another grid first pass a
      ``quantize`` node ``<concat>_<i>``), the int8 ``softmax`` head,
      ``pad`` (ZeroPadding2D), ``maxpool``, ``avgpool`` (floor(sum / count); a global average
      pool becomes an H x W ``avgpool`` followed by a ``flatten`` named ``<name>_flatten``),
      ``flatten``, ``reshape``; dropout is dropped (identity at inference);
    - an element-wise op of the op registry (``QuantActivation``): the nodes its module's
      ``KerasPattern.lower`` gives at the input and output grids
      (:func:`tinyopt.mixed.handlers.activation.activation_layers`: LeakyReLU a ``leaky_relu``
      node, TFLite's arithmetic; hard-swish TFLite's int8 kernel
      at 8 bits, a lookup table otherwise), its own step(s), never fused into the layer before.

    Every node names its input and output tensors (a DAG); a node's output tensor is named after
    its Keras layer. Each entry is lowered by its block kind's handler (``Handler.lower``,
    :mod:`tinyopt.mixed.handlers`).

    Arguments:
        qmodel: a model from :func:`tinyopt.qat.quantize_mixed` or
            :func:`tinyopt.ptq.quantize_mixed` (moving BN statistics are used, as in inference).
        name: the graph's name (default: the model's).

    Returns:
        A validated :class:`IntegerGraph`; ``meta`` records the source model and its policy.

    Raises:
        ValueError: the model was not built by ``quantize_mixed``, or contains a layer with no
            integer equivalent (named in the message), a layer
            :func:`tinyopt.mixed.dag.check_supported` refuses (a dilation rate above 255, an add
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
                  **grid_fields("in", g), **grid_fields("out", g)}
        handler = handlers.for_entry(kind)
        if handler is None:
            raise ValueError(f"layer {lname!r} ({type(qmodel.get_layer(lname)).__name__}) has "
                             "no integer equivalent; convert supports the layers of "
                             "quantize_mixed (tinyopt.mixed.dag.SUPPORTED)")
        new = handler.lower(e, SimpleNamespace(srcs=srcs, keras_out=keras_out, common=common))
        if new is None:  # an alias (dropout): its output is its input
            tensor_of[lname] = tensor_of[e["inputs"][0]]
            continue
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
        if e["type"] not in ("compute", "transpose_conv"):
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

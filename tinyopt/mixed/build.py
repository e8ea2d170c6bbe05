"""Building a sub-byte fake-quant model: :func:`quantize_mixed` turns a trained float
Conv/DepthwiseConv/Dense (+BN) (+ReLU) chain into a copy of fake-quant layers
(:mod:`tinyopt.mixed.layers`) that follows a :class:`tinyopt.mixed.policy.Policy`: PACT
activations with floor, PL or PC weights, BN folded ("FB") or kept ("ICN"). The quantizers are in
:mod:`tinyopt.mixed.quantizers`, post-training calibration of the same model in
:mod:`tinyopt.mixed.ptq`.

The fake-quant layers of each block kind are its handler's ``build``
(:mod:`tinyopt.mixed.handlers`), the integer view of each fake-quant layer its handler's
``params``; this module keeps the walk (inputs, grids, the policy).

Introspection of a sub-byte model: :func:`integer_params` (what the integer lowering needs,
layer by layer: weight codes, zero points, scales, bias, BN, input/output grids, all computed by
the quantizers of the forward pass), :func:`summary` (larq-style bits / bytes / MACs table),
:func:`named_policy` ("w4a4", "mixed", ...).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

import tinyopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tf_keras as keras

from tinyopt.front.checks import check_weights
from tinyopt.integer import arith
from tinyopt.mixed import quantizers
from tinyopt.mixed import dag, handlers
from tinyopt.mixed import transpose_layers  # noqa: F401  (registers QuantTransposeConv for load_model)
from tinyopt.mixed.policy import Policy
from tinyopt.mixed.graph_layers import QuantSoftmax
from tinyopt.mixed.handlers.base import grid_of
from tinyopt.mixed.layers import (ALPHA_DECAY, CLIP_DECAY, DEFAULT_ALPHA, QuantCompute,
                                  QuantInput, QuantModel, freeze_bn)

from tinyopt.mixed.dag import SOFTMAX_HEADS  # noqa: E402


# ---------------------------------------------------------------------------- quantize_mixed

def _check_policy(block_list: list, policy: Policy) -> list[str]:
    names = [b.name for b in block_list if b.is_policy_layer]
    if not isinstance(policy, Policy):
        raise TypeError(f"policy must be a tinyopt.Policy, got {type(policy).__name__}")
    if list(policy.layers) != names:
        raise ValueError(f"the policy's layers {list(policy.layers)} do not match the model's "
                         f"compute layers {names} (same names, same graph order); build it "
                         "with Policy.uniform(model, ...) or from "
                         "tinyopt.mixed.dag.policy_layers(model)")
    return names


def init_weight_clip(layer: QuantCompute, method: str = "spec") -> None:
    """Set a PL layer's clips (a, b) from its current weights.

    Arguments:
        layer: a :class:`QuantCompute` (PC layers are left alone: they have no clips).
        method: "minmax" (min/max of the quantized tensor), "ppq" (the repo's least-squares
            fit), "mse" (shrink factor minimising the weight MSE) or "spec" (the repo's rule:
            min/max for FB layers, PPQ for ICN layers).

    Raises:
        ValueError: unknown method.
    """
    if method not in ("spec", "minmax", "ppq", "mse"):
        raise ValueError(f"weight clip method must be spec, minmax, ppq or mse; got {method!r}")
    if layer.granularity != "PL":
        return
    w = layer.quantized_kernel_source().numpy()
    if method == "spec":
        method = "minmax" if layer.fold == "FB" else "ppq"
    if method == "minmax":
        a, b = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
    elif method == "ppq":
        a, b = quantizers.ppq_clip(w, layer.weight_bits)
    else:
        a, b = quantizers.mse_clip(w, layer.weight_bits)
    layer.w_min.assign(a)
    layer.w_max.assign(b)


def quantize_mixed(model: keras.Model, policy: Policy, freeze_bn_after: int | None = 1,
                   input_range: tuple[float, float] = (0.0, 1.0), weight_init: str = "spec",
                   alpha: float = DEFAULT_ALPHA, clip_decay: float = CLIP_DECAY,
                   alpha_decay: float = ALPHA_DECAY, softmax: str = "int8") -> QuantModel:
    """A sub-byte fake-quant copy of a trained float model, following ``policy``.

    The model is read as blocks (:func:`tinyopt.mixed.dag.blocks`): every Conv2D / Conv1D /
    DepthwiseConv2D / Dense with its optional BatchNormalization and ReLU/ReLU6 becomes one
    :class:`QuantCompute` (same name as the compute layer), a standalone BatchNormalization a
    :class:`QuantCompute` computing a per-channel affine (a 1 x 1 depthwise of ones with the BN,
    named as the BN); the input gets the 8-bit :class:`QuantInput`; ``Add`` / ``x + y`` a
    :class:`QuantAdd`, concatenation a :class:`QuantConcat`; average pooling
    :class:`QuantAvgPool` (floor); an element-wise op of the op registry (LeakyReLU,
    MobileNetV3's hard-swish) a :class:`~tinyopt.mixed.graph_layers.QuantActivation` (its float
    function, then its own output quantizer at its input's bits); MaxPooling2D, ZeroPadding2D,
    Flatten, Dropout and Reshape are
    copied. A compute layer without ReLU whose output feeds other layers gets the signed
    quantizer (a linear bottleneck, a residual branch); the one producing the model output gives
    float logits. The input model is not modified.

    Arguments:
        model: a trained float ``tf_keras`` model (e.g. ``seed_cnn``, ``mobilenet_v1``, the
            MLPerf Tiny ResNet-8 or DS-CNN).
        policy: bits, granularity and FB/ICN per policy layer (compute layers and standalone
            BNs, :func:`tinyopt.mixed.dag.policy_layers`; names and order must match).
        freeze_bn_after: epoch at which BN freezes during ``fit`` (spec: 1); 0 freezes from the
            start, None never.
        input_range: real range of the model input for the 8-bit input quantizer (the raw
            input's: a leading Rescaling / Normalization is folded into that quantizer,
            :func:`tinyopt.mixed.dag.input_scaling`,
            :func:`tinyopt.mixed.quantizers.scaled_input_params`).
        weight_init: PL clip initialisation, see :func:`init_weight_clip`.
        alpha: initial PACT clip of every activation (spec: 6).
        clip_decay, alpha_decay: weight decay of the PL clips and of alpha (spec: 5e-4, 1e-4).
        softmax: a softmax head is kept as TFLite's int8 softmax on 8-bit signed logits
            ("int8", default) or dropped, the network then ending in int32 logits ("logits").
            An add's output has the larger of its addends' bits, a concatenation's too.

    Returns:
        A :class:`QuantModel` (uncompiled) with ``policy`` and ``freeze_bn_after`` attributes.

    Raises:
        ValueError: an unsupported layer (named, with its type and the supported set), a layer
            :func:`tinyopt.to_integer_graph` would refuse
            (:func:`tinyopt.mixed.dag.check_supported`:
            a dilation rate above 255, an add that broadcasts), a policy that does not match the
            model, a concatenation of signed and unsigned tensors, an unknown ``softmax``, or a
            layer with a NaN / Inf weight (named).
    """
    if softmax not in SOFTMAX_HEADS:
        raise ValueError(f"softmax must be one of {SOFTMAX_HEADS}, got {softmax!r}")
    dag.check_supported(model)  # what to_integer_graph refuses, before anything is built or trained
    check_weights(model, "quantize_mixed")
    block_list = dag.blocks(model)
    _check_policy(block_list, policy)
    renamed = {}
    if softmax == "logits":  # drop the head: its readers (none: it is the output) need nothing
        heads = [b for b in block_list if b.op == "softmax"]
        block_list = [b for b in block_list if b.op != "softmax"]
        renamed = {h.name: h.inputs[0] for h in heads}
    by_name = {b.name: b for b in block_list}
    cons = dag.consumers(block_list)
    out_name = block_list[-1].name
    first = model.layers[0]
    inputs = keras.Input(model.input_shape[1:], name=first.name
                         if isinstance(first, keras.layers.InputLayer) else "input")
    # leading Rescaling / Normalization: folded into the input quantizer (input_range is the
    # raw input's; the network reads the codes on the scaled grid, QuantInput)
    scaling = dag.input_scaling(model) or {"scale": 1.0, "offset": 0.0}
    x_layer = QuantInput(*input_range, bits=8, scale=scaling["scale"],
                         offset=scaling["offset"], name="input_quant")
    # per block output: the tensor, and the grid it is on: (layer owning the scale, bits, signed)
    tensors = {dag.INPUT: x_layer(inputs)}
    grid = {dag.INPUT: ("input_quant", 8, False)}
    created, owners = [], {"input_quant": x_layer}
    # what every block's build hook reads (tinyopt.mixed.handlers: Handler.build); it adds the
    # layers owning an output scale to ``owners`` and new QuantComputes to ``created``
    ctx = SimpleNamespace(policy=policy, cons=cons, by_name=by_name, out_name=out_name,
                          owners=owners, created=created, alpha=alpha, clip_decay=clip_decay,
                          alpha_decay=alpha_decay)
    for b in block_list:
        srcs = [renamed.get(s, s) for s in b.inputs]
        g_in = [grid[s] for s in srcs]
        if any(g is None for g in g_in):
            raise ValueError(f"layer {b.name!r} reads the unquantized logits of "
                             f"{[s for s, g in zip(srcs, g_in) if g is None]}")
        ctx.xs, ctx.g_in = [tensors[s] for s in srcs], g_in
        y, g_out = handlers.get(b.op).build(b, ctx)
        tensors[b.name], grid[b.name] = y, g_out
    qmodel = QuantModel(inputs, tensors[out_name], name=f"{model.name}_q")
    qmodel.connect_scales()
    for q in created:
        init_weight_clip(q, weight_init)
    qmodel.freeze_bn_after = freeze_bn_after
    qmodel.policy = policy
    # Keras orders a functional model's layers its own way; the integer graph (and so the C
    # export and the memory model) runs the float model's layer order.
    qmodel.execution_order = [b.name for b in block_list]
    if freeze_bn_after == 0:
        freeze_bn(qmodel)
    return qmodel


# ---------------------------------------------------------------------------- introspection

def _inbound_names(layer) -> list[str]:
    inbound = layer._inbound_nodes[0].inbound_layers
    inbound = inbound if isinstance(inbound, (list, tuple)) else [inbound]
    return [source.name for source in inbound]


def integer_params(qmodel: keras.Model) -> dict:
    """The integer view of a fake-quant model from :func:`quantize_mixed` or
    :func:`tinyopt.quantize_ptq`, in graph order.

    Returns:
        ``{"input": {scale, zero_point, bits, lo, hi}, "layers": [...]}`` where each entry of
        ``layers`` has ``"inputs"`` (the names of the entries it reads; ``"input_quant"`` is the
        input quantizer) and ``"type"``: ``"compute"`` (plus everything of
        :meth:`QuantCompute.integer_params`), ``"avgpool"`` (``pool_size`` / ``strides``, None =
        global; floor(sum / count) on the input grid, ``scale``, ``bits``), ``"add"`` /
        ``"concat"`` (``input_grids``, ``output``: scale, zero_point, bits, signed),
        ``"element_wise"`` (a registry op: ``kind``, ``config``, ``input_grid``, ``output``),
        ``"softmax"``, or ``"maxpool"``, ``"pad"``, ``"flatten"``, ``"reshape"``, ``"dropout"``
        (identity at inference) with the Keras ``config``. Every entry has ``grid``: the
        {scale, zero_point, bits, signed} of its output (None for float logits).

    Raises:
        ValueError: the model has no :class:`QuantInput` (not built by quantize_mixed).
    """
    grids, out, entries = {}, None, []
    for layer in qmodel.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, QuantInput):
            out = layer.qparams()
            grids[layer.name] = grid_of(out["scale"], out["zero_point"], out["bits"])
            continue
        if out is None:
            raise ValueError(f"layer {layer.name!r} comes before any QuantInput; pass a model "
                             "built by tinyopt.quantize_qat or tinyopt.quantize_ptq")
        names = _inbound_names(layer)
        g_in = [grids.get(n) for n in names]
        if any(g is None for g in g_in) and not isinstance(layer, QuantSoftmax):
            raise ValueError(f"layer {layer.name!r} reads float logits of {names}")
        base = {"name": layer.name, "inputs": names}
        handler = handlers.for_layer(type(layer).__name__)  # by the layer's class
        if handler is not None:
            entry = handler.params(layer, base, g_in)
        else:  # a copied Keras layer no handler claims: convert refuses its type by name
            entry = {"type": type(layer).__name__.lower().replace("pooling2d", "pool"), **base,
                     "config": layer.get_config(), "grid": g_in[0]}
        grids[layer.name] = entry["grid"]
        entries.append(entry)
    if out is None:
        raise ValueError("the model has no QuantInput layer; build it with "
                         "tinyopt.quantize_qat or tinyopt.quantize_ptq")
    order = getattr(qmodel, "execution_order", None)
    if order:  # the float model's layer order (a topological order, as Keras' own)
        rank = {name: i for i, name in enumerate(order)}
        entries.sort(key=lambda e: rank.get(e["name"], -1))
    return {"input": out, "layers": entries}


def _graph_weight_shape(kind: str, keras_shape) -> tuple:
    """A Keras kernel shape in the integer graph's layout ([c_out][ky][kx][c_in], dense
    [c_out][c_in], depthwise [ky][kx][c]), which is how the deployed weights are packed."""
    s = [int(d) for d in keras_shape]
    if kind == "depthwise":
        return (s[0], s[1], s[2] * s[3])
    if kind == "dense":
        return (s[1], s[0])
    if kind == "transpose_conv":  # Keras [kh][kw][c_out][c_in] -> [c_out][kh][kw][c_in]
        return (s[2], s[0], s[1], s[3])
    return (s[3], s[0], s[1], s[2])


def summary(qmodel: keras.Model, print_fn=None):
    """A larq-style table of a fake-quant model: per compute layer the weight, input and output
    bits, fold, granularity, parameters (kernel + bias; BN statistics are not counted), packed
    weight bytes (rows byte-aligned), MACs per image and MACs by precision
    (``w{W}a{A}``: weight bits x input bits), then a ``total`` row.

    Arguments:
        qmodel: a model from :func:`quantize_mixed` / :func:`tinyopt.quantize_ptq`.
        print_fn: e.g. ``print`` to also print the table.

    Returns:
        A pandas DataFrame.
    """
    import pandas as pd
    params = integer_params(qmodel)
    rows = []
    for e in params["layers"]:
        if e["type"] not in ("compute", "transpose_conv"):
            continue
        layer = qmodel.get_layer(e["name"])
        shape = layer.kernel.shape
        if e["type"] == "transpose_conv":  # every input pixel meets every weight
            macs = int(np.prod(layer.input_shape[1:-1])) * int(np.prod(shape))
        else:
            macs = arith.macs(int(np.prod(layer.output_shape[1:])), int(np.prod(shape)),
                              int(layer.output_shape[-1]))
        rows.append({"layer": e["name"], "kind": e["kind"], "weight_bits": e["weight_bits"],
                     "input_bits": e["input_bits"], "output_bits": e["output_bits"],
                     "fold": e["fold"], "granularity": e["granularity"],
                     "params": int(np.prod(shape)) + int(
                         np.prod(shape[2:]) if e["kind"] == "depthwise"
                         else shape[2] if e["type"] == "transpose_conv" else shape[-1]),
                     "weight_bytes": arith.packed_weight_bytes(
                         "conv2d" if e["type"] == "transpose_conv" else e["kind"],
                         _graph_weight_shape("transpose_conv" if e["type"] == "transpose_conv"
                                             else e["kind"], shape), e["weight_bits"]),
                     "macs": macs, f"macs_w{e['weight_bits']}a{e['input_bits']}": macs})
    frame = pd.DataFrame(rows)
    mac_cols = sorted(c for c in frame.columns if c.startswith("macs_"))
    frame[mac_cols] = frame[mac_cols].fillna(0).astype(int)
    for c in ("weight_bits", "input_bits", "output_bits"):
        frame[c] = frame[c].astype("Int64")
    total = {"layer": "total", "params": int(frame["params"].sum()),
             "weight_bytes": int(frame["weight_bytes"].sum()), "macs": int(frame["macs"].sum()),
             **{c: int(frame[c].sum()) for c in mac_cols}}
    frame = pd.concat([frame, pd.DataFrame([total])], ignore_index=True)
    if print_fn is not None:
        print_fn(frame.to_string(index=False, na_rep=""))
    return frame


def named_policy(model: keras.Model, name: str, granularity: str = "PL",
                 fold: str | None = None, memory_fraction: float = 0.5) -> Policy:
    """A policy by name, for experiments and notebooks.

    Arguments:
        model: the float model.
        name: ``"w{W}a{A}"`` (e.g. "w4a4": uniform W-bit weights, A-bit activations) or
            ``"mixed"``: the paper's memory-driven rule (:func:`tinyopt.memory_driven`)
            with flash and RAM budgets of ``memory_fraction`` times those of w8a8.
        granularity: "PL" or "PC".
        fold: force "FB" or "ICN" on every layer but the last (None: the paper's rule).
        memory_fraction: budget fraction for "mixed".

    Returns:
        A :class:`tinyopt.Policy`.

    Raises:
        ValueError: an unknown name.
    """
    import re
    match = re.fullmatch(r"w(\d)a(\d)", name)
    if match:
        return Policy.uniform(model, int(match[1]), int(match[2]), granularity, fold=fold)
    if not (isinstance(memory_fraction, (int, float)) and 0 < memory_fraction <= 1):
        raise ValueError(f"memory_fraction must be a number in (0, 1], got {memory_fraction!r}")
    if name != "mixed":
        raise ValueError(f"policy name must be 'w<bits>a<bits>' (e.g. w4a4) or 'mixed', got "
                         f"{name!r}")
    from tinyopt.mixed import memory, search
    p8 = Policy.uniform(model, 8, 8, granularity)
    # the paper's named policy: its rule on its accounting (the device's plan is not monotone
    # in the bits: a sub-byte layer may need a kernel with more scratch than its int8 form)
    p = search.memory_driven(model, int(memory.flash_bytes(model, p8) * memory_fraction),
                             int(memory.peak_ram_bytes(model, p8, accounting="paper")
                                 * memory_fraction),
                             granularity, accounting="paper")
    if fold is not None:
        n = len(p.layers)
        p = Policy(p.layers, p.weight_bits, p.act_bits, granularity,
                   [fold if i < n - 1 else "FB" for i in range(n)], p.trace)
    return p

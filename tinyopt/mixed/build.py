"""Building a sub-byte fake-quant model: :func:`quantize_mixed` turns a trained float
Conv/DepthwiseConv/Dense (+BN) (+ReLU) chain into a copy of fake-quant layers
(:mod:`tinyopt.mixed.layers`) that follows a :class:`tinyopt.mixed.policy.Policy`: PACT
activations with floor, PL or PC weights, BN folded ("FB") or kept ("ICN"). The quantizers are in
:mod:`tinyopt.mixed.quantizers`, post-training calibration of the same model in
:mod:`tinyopt.mixed.ptq`.

Introspection of a sub-byte model: :func:`integer_params` (what the integer lowering needs,
layer by layer: weight codes, zero points, scales, bias, BN, input/output grids, all computed by
the quantizers of the forward pass), :func:`summary` (larq-style bits / bytes / MACs table),
:func:`named_policy` ("w4a4", "mixed", ...).
"""

from __future__ import annotations


import numpy as np

import tinyopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tf_keras as keras

from tinyopt.front.checks import check_weights
from tinyopt.integer import arith
from tinyopt.mixed import quantizers
from tinyopt.transforms.keras_graph import COMPUTE_LAYERS, chain, relu_kind
from tinyopt.mixed.policy import Policy
from tinyopt.mixed.layers import (ALPHA_DECAY, CLIP_DECAY, DEFAULT_ALPHA, QuantAvgPool,
                                  QuantCompute, QuantInput, QuantModel, freeze_bn)

PASS_THROUGH = ("MaxPooling2D", "Flatten", "Dropout", "Reshape")


def _activation_kind(fn) -> str | None:
    """'relu' / 'relu6' / None (linear) for a Keras activation function, else ValueError."""
    name = getattr(fn, "__name__", str(fn))
    if name in ("linear", "relu", "relu6"):
        return None if name == "linear" else name
    raise ValueError(f"activation {name!r} is not supported by the sub-byte quantizers "
                     "(only linear, relu, relu6)")


def _op_config(layer) -> tuple[str, dict]:
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return "depthwise", {"kernel_size": list(layer.kernel_size),
                             "strides": list(layer.strides), "padding": layer.padding,
                             "dilation_rate": list(layer.dilation_rate),
                             "depth_multiplier": int(layer.depth_multiplier)}
    if isinstance(layer, keras.layers.Conv2D):
        if type(layer) is not keras.layers.Conv2D or layer.groups != 1:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}, groups="
                             f"{getattr(layer, 'groups', 1)}) is not supported; only plain "
                             "Conv2D, DepthwiseConv2D and Dense")
        return "conv2d", {"kernel_size": list(layer.kernel_size), "strides": list(layer.strides),
                          "padding": layer.padding, "dilation_rate": list(layer.dilation_rate),
                          "filters": int(layer.filters)}
    if len(layer.input_shape) != 2:
        raise ValueError(f"Dense layer {layer.name!r} has input shape {layer.input_shape}; only "
                         "2-D inputs are supported")
    return "dense", {"units": int(layer.units)}


def _blocks(model: keras.Model) -> list[dict]:
    """Group the chain into compute blocks (compute [+ BN] [+ ReLU]) and other layers."""
    layers, blocks, i = chain(model), [], 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, COMPUTE_LAYERS):
            kind, cfg = _op_config(layer)
            block = {"type": "compute", "layer": layer, "kind": kind, "op_config": cfg,
                     "bn": None, "activation": _activation_kind(layer.activation)}
            i += 1
            if block["activation"] is None and i < len(layers) and \
                    isinstance(layers[i], keras.layers.BatchNormalization):
                block["bn"] = layers[i]
                i += 1
            if block["activation"] is None and i < len(layers) and relu_kind(layers[i]):
                block["activation"] = relu_kind(layers[i])
                block["act_layer"] = layers[i]
                i += 1
            blocks.append(block)
        elif type(layer).__name__ in PASS_THROUGH:
            blocks.append({"type": "pass", "layer": layer})
            i += 1
        elif isinstance(layer, (keras.layers.GlobalAveragePooling2D,
                                keras.layers.AveragePooling2D)):
            if isinstance(layer, keras.layers.AveragePooling2D) and layer.padding != "valid":
                raise ValueError(f"AveragePooling2D {layer.name!r} must use VALID padding")
            if isinstance(layer, keras.layers.GlobalAveragePooling2D) and layer.keepdims:
                raise ValueError(f"GlobalAveragePooling2D {layer.name!r} with keepdims=True "
                                 "is not supported")
            blocks.append({"type": "avgpool", "layer": layer})
            i += 1
        else:
            what = "BatchNormalization not directly after a compute layer" if isinstance(
                layer, keras.layers.BatchNormalization) else type(layer).__name__
            raise ValueError(f"layer {layer.name!r} ({what}) is not supported by "
                             "tinyopt.qat.quantize_mixed; supported: Conv2D, DepthwiseConv2D, "
                             "Dense, each optionally followed by BatchNormalization and "
                             f"ReLU/ReLU6, plus {', '.join(PASS_THROUGH)}, "
                             "GlobalAveragePooling2D and AveragePooling2D (valid)")
    return blocks


# ---------------------------------------------------------------------------- quantize_mixed

def _check_policy(blocks: list[dict], policy: Policy) -> list[str]:
    names = [b["layer"].name for b in blocks if b["type"] == "compute"]
    if not isinstance(policy, Policy):
        raise TypeError(f"policy must be a tinyopt.policy.Policy, got {type(policy).__name__}")
    if list(policy.layers) != names:
        raise ValueError(f"the policy's layers {list(policy.layers)} do not match the model's "
                         f"compute layers {names} (same names, same graph order); build it with "
                         "Policy.uniform(model, ...) or from compute_layer_names(model)")
    return names


def _copy_float_weights(q: QuantCompute, block: dict) -> None:
    layer = block["layer"]
    kernel = layer.depthwise_kernel if block["kind"] == "depthwise" else layer.kernel
    q.kernel.assign(kernel)
    if layer.use_bias:
        q.bias.assign(layer.bias)
    bn = block["bn"]
    if bn is not None:
        n = q.out_channels
        q.gamma.assign(bn.gamma if bn.scale else np.ones(n, np.float32))
        q.beta.assign(bn.beta if bn.center else np.zeros(n, np.float32))
        q.moving_mean.assign(bn.moving_mean)
        q.moving_variance.assign(bn.moving_variance)


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
                   alpha_decay: float = ALPHA_DECAY) -> QuantModel:
    """A sub-byte fake-quant copy of a trained float chain model, following ``policy``.

    Every Conv2D / DepthwiseConv2D / Dense with its optional BatchNormalization and ReLU/ReLU6
    becomes one :class:`QuantCompute` (same name as the compute layer); the input gets the 8-bit
    :class:`QuantInput`; average pooling becomes :class:`QuantAvgPool` (floor); MaxPooling2D,
    Flatten, Dropout and Reshape are copied. The input model is not modified.

    Arguments:
        model: a trained float ``tf_keras`` chain model (e.g. ``seed_cnn``, ``mobilenet_v1``).
        policy: bits, granularity and FB/ICN per compute layer (names and order must match).
        freeze_bn_after: epoch at which BN freezes during ``fit`` (spec: 1); 0 freezes from the
            start, None never.
        input_range: real range of the model input for the 8-bit input quantizer.
        weight_init: PL clip initialisation, see :func:`init_weight_clip`.
        alpha: initial PACT clip of every activation (spec: 6).
        clip_decay, alpha_decay: weight decay of the PL clips and of alpha (spec: 5e-4, 1e-4).

    Returns:
        A :class:`QuantModel` (uncompiled) with ``policy`` and ``freeze_bn_after`` attributes.

    Raises:
        ValueError: an unsupported layer (named), a non-chain model, a policy that does not
            match the model, a hidden compute layer without ReLU (PACT is unsigned), or a layer
            with a NaN / Inf weight (named).
    """
    check_weights(model, "quantize_mixed")
    blocks = _blocks(model)
    _check_policy(blocks, policy)
    computes = [b for b in blocks if b["type"] == "compute"]
    for b in computes[:-1]:
        if b["activation"] is None:
            raise ValueError(f"compute layer {b['layer'].name!r} has no ReLU/ReLU6 but is not "
                             "the last compute layer; PACT activations are unsigned")
    inputs = keras.Input(model.input_shape[1:], name=model.layers[0].name
                         if isinstance(model.layers[0], keras.layers.InputLayer) else "input")
    x_layer = QuantInput(*input_range, bits=8, name="input_quant")
    x = x_layer(inputs)
    source, bits = "input_quant", 8  # the layer whose output grid the next layer reads
    by_name = {"input_quant": x_layer}
    created = []
    for block in blocks:
        layer = block["layer"]
        if block["type"] == "compute":
            spec = policy[layer.name]
            bn = block["bn"]
            bn_config = None if bn is None else {"epsilon": float(bn.epsilon),
                                                 "momentum": float(bn.momentum)}
            if bn is not None and bn.axis not in ([len(layer.output_shape) - 1], [-1], -1):
                raise ValueError(f"BatchNormalization {bn.name!r} must normalise the last axis")
            q = QuantCompute(block["kind"], block["op_config"], spec["weight_bits"],
                             spec["act_bits"], policy.granularity, spec["fold"], bn_config,
                             block["activation"], clip_decay, alpha_decay,
                             input_scale_from=source, name=layer.name)
            q.input_scale = by_name[source].output_scale
            by_name[layer.name] = q
            x = q(x)
            _copy_float_weights(q, block)
            if block["activation"] is not None:
                q.alpha.assign(alpha)
                source, bits = layer.name, spec["act_bits"]
            else:
                source, bits = None, None
            created.append(q)
        elif block["type"] == "avgpool":
            if source is None:
                raise ValueError(f"average pooling {layer.name!r} follows a linear layer")
            pool = isinstance(layer, keras.layers.AveragePooling2D)
            q = QuantAvgPool(bits, layer.pool_size if pool else None,
                             layer.strides if pool else None, input_scale_from=source,
                             name=layer.name)
            q.input_scale = by_name[source].output_scale
            x = q(x)
        else:
            x = type(layer).from_config(layer.get_config())(x)
    qmodel = QuantModel(inputs, x, name=f"{model.name}_q")
    qmodel.connect_scales()
    for q in created:
        init_weight_clip(q, weight_init)
    qmodel.freeze_bn_after = freeze_bn_after
    qmodel.policy = policy
    if freeze_bn_after == 0:
        freeze_bn(qmodel)
    return qmodel


# ---------------------------------------------------------------------------- introspection

def integer_params(qmodel: keras.Model) -> dict:
    """The integer view of a fake-quant model from :func:`quantize_mixed` or
    :func:`tinyopt.ptq.quantize_mixed`, in graph order.

    Returns:
        ``{"input": {scale, zero_point, bits, lo, hi}, "layers": [...]}`` where each entry of
        ``layers`` has ``"type"``: ``"compute"`` (plus everything of
        :meth:`QuantCompute.integer_params`), ``"avgpool"`` (``pool_size`` / ``strides``, None =
        global; floor(sum / count) on the input grid, ``scale``, ``bits``), or ``"maxpool"``,
        ``"flatten"``, ``"reshape"``, ``"dropout"`` (identity at inference) with the Keras
        ``config``. Scales propagate: a compute layer's input grid is the output grid of the
        previous quantizer.

    Raises:
        ValueError: the model has no :class:`QuantInput` (not built by quantize_mixed).
    """
    state, out, entries = None, None, []
    for layer in qmodel.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, QuantInput):
            out = layer.qparams()
            state = (out["scale"], out["zero_point"], out["bits"])
        elif state is None:
            raise ValueError(f"layer {layer.name!r} comes before any QuantInput; pass a model "
                             "built by tinyopt.qat.quantize_mixed or tinyopt.ptq.quantize_mixed")
        elif isinstance(layer, QuantCompute):
            entry = {"type": "compute", **layer.integer_params(*state)}
            entries.append(entry)
            o = entry["output"]
            state = (o["scale"], 0, o["bits"]) if o else (None, None, None)
        elif isinstance(layer, QuantAvgPool):
            entries.append({"type": "avgpool", "name": layer.name, "pool_size": layer.pool_size,
                            "strides": layer.strides, "scale": state[0], "bits": state[2]})
        else:
            entries.append({"type": type(layer).__name__.lower().replace("pooling2d", "pool"),
                            "name": layer.name, "config": layer.get_config()})
    if out is None:
        raise ValueError("the model has no QuantInput layer; build it with "
                         "tinyopt.qat.quantize_mixed or tinyopt.ptq.quantize_mixed")
    return {"input": out, "layers": entries}


def _graph_weight_shape(kind: str, keras_shape) -> tuple:
    """A Keras kernel shape in the integer graph's layout ([c_out][ky][kx][c_in], dense
    [c_out][c_in], depthwise [ky][kx][c]), which is how the deployed weights are packed."""
    s = [int(d) for d in keras_shape]
    if kind == "depthwise":
        return (s[0], s[1], s[2] * s[3])
    if kind == "dense":
        return (s[1], s[0])
    return (s[3], s[0], s[1], s[2])


def summary(qmodel: keras.Model, print_fn=None):
    """A larq-style table of a fake-quant model: per compute layer the weight, input and output
    bits, fold, granularity, parameters (kernel + bias; BN statistics are not counted), packed
    weight bytes (rows byte-aligned), MACs per image and MACs by precision
    (``w{W}a{A}``: weight bits x input bits), then a ``total`` row.

    Arguments:
        qmodel: a model from :func:`quantize_mixed` / :func:`tinyopt.ptq.quantize_mixed`.
        print_fn: e.g. ``print`` to also print the table.

    Returns:
        A pandas DataFrame.
    """
    import pandas as pd
    params = integer_params(qmodel)
    rows = []
    for e in params["layers"]:
        if e["type"] != "compute":
            continue
        layer = qmodel.get_layer(e["name"])
        shape = layer.kernel.shape
        macs = arith.macs(int(np.prod(layer.output_shape[1:])), int(np.prod(shape)),
                          int(layer.output_shape[-1]))
        rows.append({"layer": e["name"], "kind": e["kind"], "weight_bits": e["weight_bits"],
                     "input_bits": e["input_bits"], "output_bits": e["output_bits"],
                     "fold": e["fold"], "granularity": e["granularity"],
                     "params": int(np.prod(shape)) + int(shape[-1] if e["kind"] != "depthwise"
                                                         else np.prod(shape[2:])),
                     "weight_bytes": arith.packed_weight_bytes(
                         e["kind"], _graph_weight_shape(e["kind"], shape), e["weight_bits"]),
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
            ``"mixed"``: the paper's memory-driven rule (:func:`tinyopt.policy.memory_driven`)
            with flash and RAM budgets of ``memory_fraction`` times those of w8a8.
        granularity: "PL" or "PC".
        fold: force "FB" or "ICN" on every layer but the last (None: the paper's rule).
        memory_fraction: budget fraction for "mixed".

    Returns:
        A :class:`tinyopt.policy.Policy`.

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
    p = search.memory_driven(model, int(memory.flash_bytes(model, p8) * memory_fraction),
                               int(memory.peak_ram_bytes(model, p8) * memory_fraction),
                               granularity)
    if fold is not None:
        n = len(p.layers)
        p = Policy(p.layers, p.weight_bits, p.act_bits, granularity,
                   [fold if i < n - 1 else "FB" for i in range(n)], p.trace)
    return p

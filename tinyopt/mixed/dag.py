"""Reading a float Keras model as the graph of blocks the sub-byte flow quantizes.

:func:`blocks` walks a functional (or Sequential) ``tf_keras`` model in its layer order (a
topological order) and groups its layers into :class:`Block` s, each one node of the fake-quant
model, of the integer graph and of the memory model:

- ``compute``: a Conv2D, Conv1D (run as a 1 x k Conv2D on [N, 1, W, C]), DepthwiseConv2D or
  Dense, with the BatchNormalization and the ReLU / ReLU6 that follow it (``Activation`` or
  ``ReLU`` layers, or the layer's own activation) when nothing else reads the tensors between;
- ``bn``: a standalone BatchNormalization (one that does not directly follow a compute layer, or
  whose input is read elsewhere too): an integer per-channel affine, optionally with its ReLU;
- ``add`` (an ``Add`` layer or the TF op ``x + y`` / ``tf.add``) and ``concat``
  (``Concatenate`` or ``tf.concat`` on the channel axis), with a following ReLU;
- ``maxpool``, ``avgpool`` (VALID), ``gap`` (GlobalAveragePooling2D, ``keepdims`` too: its
  (1, 1, C) output), ``pad`` (ZeroPadding2D),
  ``flatten``, ``reshape``, ``dropout``;
- ``activation``: an element-wise op of the op registry whose module reads Keras layers
  (:class:`tinyopt.integer.ops.registry.KerasPattern`: LeakyReLU, MobileNetV3's hard-swish, ...;
  ``kind`` is the op's name, ``config`` its settings): asked for every layer the reader above
  does not know, before refusing it. It stays its own block (never fused into the compute layer
  before it: that layer's output is quantized signed, the activation requantizes it);
- input scaling: ``Rescaling`` / ``Normalization`` layers right after the input are no block:
  :func:`input_scaling` composes them and the input quantizer folds them in (anywhere else
  they are refused);
- ``softmax``: the model's softmax head (``Activation("softmax")``, ``Softmax`` or a Dense with
  ``activation="softmax"``); it must produce the model output.

A compute block without activation that is read by other layers is a *linear* block (a linear
bottleneck, a residual branch before its ``Add``): its output is quantized signed.
Anything else is refused with an error naming the layer, its type and :data:`SUPPORTED`; what a
later stage would refuse in an accepted layer type (a dilated convolution, an add that
broadcasts) is refused first, every such layer named at once (:func:`check_supported`), so the
memory model, the policy search, PTQ and QAT refuse what ``to_integer_graph`` refuses.
The *policy layers* (:func:`policy_layers`) are the compute and ``bn`` blocks, in order.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tinyopt.integer import ops as _ops

import tinyopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

keras = None  # tf_keras, imported by blocks(): the memory model imports this module without TF


def _load_keras():
    global keras
    if keras is None:
        import tf_keras
        keras = tf_keras

INPUT = "__input__"  # the producer name of the model input
# A softmax head is kept as TFLite's int8 softmax or dropped (the network ends in int32 logits).
SOFTMAX_HEADS = ("int8", "logits")
SUPPORTED = ("Conv2D, Conv1D, DepthwiseConv2D, Dense (each optionally followed by "
             "BatchNormalization and ReLU/ReLU6), standalone BatchNormalization, Add / x + y, "
             "Concatenate / tf.concat (channel axis), MaxPooling2D, AveragePooling2D (valid), "
             "GlobalAveragePooling2D, ZeroPadding2D, Flatten, Reshape, Dropout, "
             "Activation/ReLU (relu, relu6, linear), the element-wise ops of the op registry "
             "(LeakyReLU, MobileNetV3's hard-swish, sigmoid: "
             "tinyopt.mixed.dag.registry_activations()), a compute layer's own sigmoid, "
             "Rescaling / Normalization as the first layers (folded into the input quantizer), "
             "and a softmax head; convolutions "
             "undilated, adds of tensors of one shape")
# TFOpLambda symbols that are layers in disguise
_OP_ADD = ("__operators__.add", "math.add")
_OP_CONCAT = ("concat",)


@dataclass
class Block:
    """One node of the sub-byte graph.

    Attributes:
        name: the block's name (its main Keras layer's name; a softmax split from a Dense is
            ``<dense>_softmax``; an activation block: its last layer's, whose output it is).
        op: compute, bn, add, concat, maxpool, avgpool, gap, pad, flatten, reshape, dropout,
            softmax, activation.
        layer: the main Keras layer.
        inputs: names of the blocks whose outputs it reads (:data:`INPUT` = the model input).
        kind, op_config: compute blocks: "conv2d" / "depthwise" / "dense" and the op's config
            (Conv1D: a 1 x k conv2d config, ``conv1d`` True); activation blocks: the registry
            op's name (``config``: its :class:`KerasPattern` config).
        bn: the BatchNormalization fused into a compute block (None if none).
        activation: "relu", "relu6" or None.
        members: names of every Keras layer the block stands for (its output is the last one's).
        out_shape: per-image output shape (Keras's; Conv1D blocks keep the (W, C) shape).
        config: extra settings (pool sizes, padding, concat axis).
    """

    name: str
    op: str
    layer: object
    inputs: list
    kind: str | None = None
    op_config: dict | None = None
    bn: object = None
    activation: str | None = None
    conv1d: bool = False
    members: list = field(default_factory=list)
    out_shape: tuple = ()
    config: dict = field(default_factory=dict)

    @property
    def is_policy_layer(self) -> bool:
        return self.op in ("compute", "bn")


_HINTS = {
    "SeparableConv2D": "build the depthwise and pointwise parts as separate layers (as "
                       "tinyopt.mobilenet_v1)",
    "Conv2DTranspose": "a transposed convolution has no integer kernel here",
    "LSTM": "recurrent layers (weights, state and per-step buffers) are not modelled",
    "GRU": "recurrent layers (weights, state and per-step buffers) are not modelled",
    "SimpleRNN": "recurrent layers (weights, state and per-step buffers) are not modelled",
}


def _refuse(layer, why: str = "") -> ValueError:
    kind = type(layer).__name__
    why = why or _HINTS.get(kind, "")
    if kind == "TFOpLambda":
        kind = f"TF op {getattr(layer, 'symbol', '?')}"
    return ValueError(f"layer {layer.name!r} ({kind}) is not supported by the sub-byte flow"
                      f"{': ' + why if why else ''}. Supported: {SUPPORTED}")


# ------------------------------------------------------------------------- the support check
# What a later stage refuses in a layer the block reader would otherwise accept (the integer
# graph's ADD does not broadcast, its convolutions and the C kernels are undilated): checked once,
# up front, so no entry point (memory model, policy search, PTQ, QAT) accepts a model that
# to_integer_graph refuses after training.
_ADD_TYPES = ("Add", "QuantAdd")


def _dilation(layer) -> tuple | None:
    """The dilation rate of a convolution (float or :class:`~tinyopt.mixed.layers.QuantCompute`),
    else None."""
    kind = type(layer).__name__
    if kind in ("Conv2D", "Conv1D", "DepthwiseConv2D"):
        return tuple(int(d) for d in layer.dilation_rate)
    if kind == "QuantCompute" and getattr(layer, "kind", "dense") != "dense":
        return tuple(int(d) for d in layer.op_config.get("dilation_rate", (1, 1)))
    return None


def _add_shapes(layer) -> list[tuple] | None:
    """Per-image shapes of the tensors an add (``Add``, ``x + y``, ``QuantAdd``) reads, else
    None."""
    kind = type(layer).__name__
    if kind not in _ADD_TYPES and not (kind == "TFOpLambda"
                                       and getattr(layer, "symbol", "") in _OP_ADD):
        return None
    nodes = getattr(layer, "_inbound_nodes", [])
    if len(nodes) != 1:
        return None  # a shared layer: refused by blocks() with its own message
    tensors = [t for t in nodes[0].keras_inputs]
    return [tuple(None if d is None else int(d) for d in t.shape[1:]) for t in tensors]


def later_stage_problem(layer) -> str | None:
    """What a later stage of the sub-byte flow (to_integer_graph, the integer graph, the C export)
    refuses in ``layer``, with the fix; None when nothing. Float Keras layers and the fake-quant
    layers of :func:`tinyopt.quantize_qat` alike."""
    rate = _dilation(layer)
    if rate is not None and any(d != 1 for d in rate):
        return (f"dilation_rate={rate}: dilated (atrous) convolutions are not supported (the "
                "integer graph, its simulator and the C kernels run undilated kernels only); "
                "use dilation_rate=1 (a larger kernel or a strided layer instead)")
    shapes = _add_shapes(layer)
    if shapes is not None and len(set(shapes)) > 1:
        return (f"an add of tensors of shapes {shapes}: broadcasting is not supported (the "
                "integer ADD adds element by element); give both addends the same shape")
    return None


def check_supported(model) -> None:
    """Refuse, before any quantization, calibration or training, every layer of ``model`` that
    a later stage of the sub-byte flow would refuse (:func:`later_stage_problem`: dilated
    Conv1D / Conv2D / DepthwiseConv2D, an add that broadcasts). Called by :func:`blocks` (so by
    the memory model, :func:`tinyopt.memory_driven`, ``tinyopt.quantize_ptq`` and
    ``tinyopt.quantize_qat``) and by :func:`tinyopt.to_integer_graph` (on the fake-quant
    model). Layer types the flow does not take at all are refused by :func:`blocks`.

    Arguments:
        model: a ``tf_keras`` model (float, or fake-quant from ``quantize_mixed``).

    Raises:
        TypeError: not a Keras model.
        ValueError: naming every such layer, its type, what is unsupported and the fix.
    """
    if not hasattr(model, "layers"):
        raise TypeError(f"expected a tf_keras model, got {type(model).__name__}")
    problems = []
    for layer in model.layers:
        why = later_stage_problem(layer)
        if why is not None:
            kind = type(layer).__name__
            if kind == "TFOpLambda":
                kind = f"TF op {getattr(layer, 'symbol', '?')}"
            problems.append(f"layer {layer.name!r} ({kind}): {why}")
    if problems:
        raise ValueError(f"model {getattr(model, 'name', '?')!r} has {len(problems)} layer"
                         f"{'s' if len(problems) > 1 else ''} the sub-byte flow cannot deploy "
                         "(to_integer_graph would refuse it after quantization and training): "
                         + "; ".join(problems))


def _inbound(layer) -> list[str]:
    nodes = layer._inbound_nodes
    if len(nodes) != 1:
        raise _refuse(layer, f"it is called {len(nodes)} times (a shared layer); build the model "
                             "with one layer per call")
    inbound = nodes[0].inbound_layers
    inbound = inbound if isinstance(inbound, (list, tuple)) else [inbound]
    return [layer.name for layer in inbound]


def _relu(layer) -> str | None:
    """'relu' / 'relu6' for a ReLU-type layer, 'linear' for a linear Activation, else None."""
    if type(layer) is keras.layers.Activation:
        name = getattr(layer.activation, "__name__", str(layer.activation))
        return name if name in ("relu", "relu6", "linear", "softmax") else None
    if type(layer) is keras.layers.ReLU:
        slope = float(layer.negative_slope)
        threshold = float(layer.threshold)
        if slope == 0 and threshold == 0:
            if layer.max_value is None:
                return "relu"
            if float(layer.max_value) == 6.0:
                return "relu6"
    if type(layer) is keras.layers.Softmax:
        return "softmax"
    return None


def registry_activations() -> list[str]:
    """The op kinds of the registry the block reader can read from Keras layers."""
    return sorted(k for k, op in _ops.REGISTRY.items() if op.keras is not None)


# activations inside a compute layer read as the linear layer then a registry op's block
# (``<layer>_<activation>``, as a softmax head is split): the activation's op kind
_SPLIT = {"sigmoid": "logistic"}


def _activation_of(layer) -> str | None:
    name = getattr(layer.activation, "__name__", str(layer.activation))
    if name in ("linear", "relu", "relu6", "softmax") or name in _SPLIT:
        return None if name == "linear" else name
    raise _refuse(layer, f"activation {name!r} inside the layer (only linear, relu, relu6, "
                         "softmax, sigmoid); for the registry's element-wise ops "
                         f"({', '.join(registry_activations())}) build the layer linear and put "
                         "the activation in its own layer (e.g. LeakyReLU)")


def _compute_config(layer) -> tuple[str, dict, bool]:
    t = type(layer)
    if t is keras.layers.DepthwiseConv2D:
        return "depthwise", {"kernel_size": list(layer.kernel_size),
                             "strides": list(layer.strides), "padding": layer.padding,
                             "dilation_rate": list(layer.dilation_rate),
                             "depth_multiplier": int(layer.depth_multiplier)}, False
    if t is keras.layers.Conv2D:
        if layer.groups != 1:
            raise _refuse(layer, f"groups={layer.groups}")
        return "conv2d", {"kernel_size": list(layer.kernel_size), "strides": list(layer.strides),
                          "padding": layer.padding, "dilation_rate": list(layer.dilation_rate),
                          "filters": int(layer.filters)}, False
    if t is keras.layers.Conv1D:
        if layer.groups != 1 or layer.padding == "causal":
            raise _refuse(layer, "groups > 1 or causal padding")
        return "conv2d", {"kernel_size": [1, int(layer.kernel_size[0])],
                          "strides": [1, int(layer.strides[0])], "padding": layer.padding,
                          "dilation_rate": [1, int(layer.dilation_rate[0])],
                          "filters": int(layer.filters)}, True
    if t is keras.layers.Dense:
        if len(layer.input_shape) != 2:
            raise _refuse(layer, f"a Dense on a {len(layer.input_shape) - 1}-D input "
                                 f"{layer.input_shape}; add a Flatten before it")
        return "dense", {"units": int(layer.units)}, False
    return None, None, False


def _take_relu(block: Block, only_reader) -> None:
    """Fuse a ReLU / ReLU6 that is the only reader of the block's output into the block."""
    nxt = only_reader(block.members[-1])
    if nxt is not None and _relu(nxt) in ("relu", "relu6"):
        block.activation = _relu(nxt)
        block.members.append(nxt.name)


def _shape(layer) -> tuple:
    return tuple(int(d) for d in layer.output_shape[1:])


_SCALING = ("Rescaling", "Normalization")


def _affine(layer) -> tuple[float, float]:
    """(scale, offset) of a Rescaling / Normalization layer, y = x scale + offset, one for
    every channel (a per-channel map has no single input grid: refused)."""
    import numpy as np
    kind = type(layer).__name__
    if kind == "Rescaling":
        scale = np.asarray(layer.scale, np.float64)
        offset = np.asarray(layer.offset, np.float64)
    else:
        if getattr(layer, "invert", False):
            raise _refuse(layer, "an inverted Normalization (invert=True)")
        std = np.maximum(np.sqrt(np.asarray(layer.variance, np.float64)), 1e-7)  # Keras' epsilon
        scale = 1.0 / std
        offset = -np.asarray(layer.mean, np.float64) / std
    if scale.size == 0 or np.ptp(scale) != 0 or np.ptp(offset) != 0:
        raise _refuse(layer, f"a per-channel input scaling (scale {scale.ravel().tolist()}, "
                             f"offset {offset.ravel().tolist()}) cannot be folded into the one "
                             "8-bit input quantizer; scale the data before the model instead")
    return float(scale.ravel()[0]), float(offset.ravel()[0])


def _scaling_chain(layers, inbound: dict, consumers: dict, inputs: set) -> tuple[list, float,
                                                                                   float]:
    """The Rescaling / Normalization layers right after the model input (each the only reader
    of the tensor before it) and their composed map (scale, offset)."""
    chain, scale, offset = [], 1.0, 0.0
    by_name = {layer.name: layer for layer in layers}
    current = set(inputs)
    while True:
        readers = [r for src in current for r in consumers.get(src, [])]
        if len(readers) != 1 or type(by_name[readers[0]]).__name__ not in _SCALING \
                or len(inbound[readers[0]]) != 1:
            return chain, scale, offset
        layer = by_name[readers[0]]
        a, b = _affine(layer)
        scale, offset = scale * a, offset * a + b
        chain.append(layer.name)
        current = {layer.name}


def input_scaling(model) -> dict | None:
    """The input scaling the sub-byte flow folds into the 8-bit input quantizer: the
    ``Rescaling`` / ``Normalization`` layers that are the first layers of ``model`` (each read
    by nothing else), composed into y = x scale + offset (Normalization: (x - mean) /
    max(sqrt(variance), 1e-7), as Keras), or None when there are none.

    Returns:
        {"scale": float, "offset": float, "layers": [names]} or None.

    Raises:
        ValueError: a per-channel scaling (different values per channel), an inverted
            Normalization (the layer named).
    """
    if not hasattr(model, "layers"):
        raise TypeError(f"expected a tf_keras model, got {type(model).__name__}")
    _load_keras()
    inbound, consumers = {}, {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer) or isinstance(layer, keras.Model):
            continue
        inbound[layer.name] = _inbound(layer)
        for src in inbound[layer.name]:
            consumers.setdefault(src, []).append(layer.name)
    inputs = {layer.name for layer in getattr(model, "_input_layers", [])}
    chain, scale, offset = _scaling_chain(model.layers, inbound, consumers, inputs)
    return {"scale": scale, "offset": offset, "layers": chain} if chain else None


def blocks(model) -> list[Block]:
    """The blocks of a float ``tf_keras`` model, in execution order (module docstring).

    Raises:
        TypeError: not a Keras model.
        ValueError: an unsupported layer (named, with its type and the supported set), a layer
            a later stage refuses (:func:`check_supported`: a dilated convolution, an add that
            broadcasts), a layer called more than once, a nested model, a softmax that is not
            the model output, a model with several inputs or outputs, or no compute layer.
    """
    if not hasattr(model, "layers") or not hasattr(model, "inputs"):
        raise TypeError(f"expected a tf_keras model, got {type(model).__name__}")
    _load_keras()
    check_supported(model)
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise ValueError(f"model {model.name!r} has {len(model.inputs)} inputs and "
                         f"{len(model.outputs)} outputs; the sub-byte flow takes one of each")
    layers = list(model.layers)
    consumers: dict[str, list[str]] = {}
    inbound: dict[str, list[str]] = {}
    for layer in layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.Model):
            raise _refuse(layer, "a nested model; flatten it into one functional model")
        inbound[layer.name] = _inbound(layer)
        for src in inbound[layer.name]:
            consumers.setdefault(src, []).append(layer.name)
    output_layer = model.outputs[0].node.layer.name
    by_name = {layer.name: layer for layer in layers}

    def only_reader(name):
        readers = consumers.get(name, [])
        return by_name[readers[0]] if len(readers) == 1 and name != output_layer else None

    producer: dict[str, str] = {}  # Keras layer name -> block whose output it is
    for input_layer in getattr(model, "_input_layers", []):  # (not in a Sequential's .layers)
        producer[input_layer.name] = INPUT
    # input scaling: folded into the input quantizer (input_scaling), read as the input itself
    scaling, _, _ = _scaling_chain(layers, inbound, consumers, set(producer))
    for name in scaling:
        producer[name] = INPUT
    out: list[Block] = []
    absorbed: set[str] = set()
    for layer in layers:
        if isinstance(layer, keras.layers.InputLayer):
            producer[layer.name] = INPUT
            continue
        if layer.name in absorbed or layer.name in scaling:
            continue
        if type(layer).__name__ in _SCALING:
            raise _refuse(layer, "input scaling (Rescaling / Normalization) is folded into the "
                                 "8-bit input quantizer only as the first layers of the model, "
                                 "right after its input and read by nothing else; move it there "
                                 "or scale the data before the model")
        srcs = [producer[s] for s in inbound[layer.name]]
        t = type(layer)
        kind, cfg, conv1d = _compute_config(layer)
        if kind is not None or t is keras.layers.BatchNormalization:
            if kind is None:
                block = Block(layer.name, "bn", layer, srcs, bn=layer, members=[layer.name])
            else:
                block = Block(layer.name, "compute", layer, srcs, kind=kind, op_config=cfg,
                              conv1d=conv1d, members=[layer.name])
                act = _activation_of(layer)
                if act == "softmax":
                    block.out_shape = _shape(layer)
                    out.append(block)
                    producer[layer.name] = block.name
                    if layer.name != output_layer:
                        raise _refuse(layer, "a softmax that is not the model output")
                    out.append(Block(f"{layer.name}_softmax", "softmax", layer, [block.name],
                                     members=[], out_shape=_shape(layer)))
                    producer[layer.name] = out[-1].name
                    continue
                if act in _SPLIT:  # the linear layer, then the registry op's own block
                    block.out_shape = _shape(layer)
                    out.append(block)
                    out.append(Block(f"{layer.name}_{act}", "activation", layer, [block.name],
                                     kind=_SPLIT[act], members=[], out_shape=_shape(layer)))
                    producer[layer.name] = out[-1].name
                    absorbed.add(layer.name)
                    continue
                block.activation = act
                nxt = only_reader(layer.name)
                if (act is None and nxt is not None
                        and type(nxt) is keras.layers.BatchNormalization):
                    block.bn = nxt
                    block.members.append(nxt.name)
            if block.bn is not None:
                axis = block.bn.axis
                axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
                if axis not in (-1, len(block.bn.input_shape) - 1):
                    raise _refuse(block.bn, "BatchNormalization must normalise the last axis")
            if block.activation is None:
                _take_relu(block, only_reader)
        elif (found := _ops.registry.match_keras(layer, only_reader)) is not None:
            op, members = found
            config = op.keras.config(layer) if op.keras.config is not None else {}
            block = Block(members[-1], "activation", layer, srcs, kind=op.name,
                          members=members, config=dict(config))
        elif t is keras.layers.Add or (t.__name__ == "TFOpLambda"
                                       and getattr(layer, "symbol", "") in _OP_ADD):
            if len(srcs) != 2:
                raise _refuse(layer, f"an add of {len(srcs)} tensors (two are supported; chain "
                                     "two-input adds)")
            block = Block(layer.name, "add", layer, srcs, members=[layer.name])
            _take_relu(block, only_reader)
        elif t is keras.layers.Concatenate or (t.__name__ == "TFOpLambda"
                                               and getattr(layer, "symbol", "") in _OP_CONCAT):
            rank = len(layer.output_shape)
            axis = layer.axis if t is keras.layers.Concatenate else \
                layer._inbound_nodes[0].call_kwargs.get("axis", 0)
            if axis not in (-1, rank - 1):
                raise _refuse(layer, f"concatenation along axis {axis}; only the channel "
                                     "(last) axis is supported")
            block = Block(layer.name, "concat", layer, srcs, members=[layer.name])
            _take_relu(block, only_reader)
        elif _relu(layer) == "softmax":
            if layer.name != output_layer:
                raise _refuse(layer, "a softmax that is not the model output")
            if getattr(layer, "axis", -1) not in (-1, len(layer.output_shape) - 1):
                raise _refuse(layer, "a softmax over another axis than the last")
            block = Block(layer.name, "softmax", layer, srcs, members=[layer.name])
        elif _relu(layer) == "linear" or t is keras.layers.Dropout:
            block = Block(layer.name, "dropout", layer, srcs, members=[layer.name])
        elif _relu(layer) in ("relu", "relu6"):
            raise _refuse(layer, "a ReLU that does not directly follow a compute layer, a "
                                 "BatchNormalization, an Add or a Concatenate read by nothing "
                                 "else")
        elif t is keras.layers.MaxPooling2D:
            block = Block(layer.name, "maxpool", layer, srcs, members=[layer.name],
                          config={"pool_size": list(layer.pool_size),
                                  "strides": list(layer.strides), "padding": layer.padding})
        elif t is keras.layers.AveragePooling2D:
            if layer.padding != "valid":
                raise _refuse(layer, "AveragePooling2D must use VALID padding")
            block = Block(layer.name, "avgpool", layer, srcs, members=[layer.name],
                          config={"pool_size": list(layer.pool_size),
                                  "strides": list(layer.strides)})
        elif t is keras.layers.GlobalAveragePooling2D:
            # keepdims=True (squeeze-excite): the pooled (1, 1, C) tensor itself, no flatten
            block = Block(layer.name, "gap", layer, srcs, members=[layer.name],
                          config={"keepdims": bool(layer.keepdims)})
        elif t is keras.layers.ZeroPadding2D:
            (top, bottom), (left, right) = layer.padding
            block = Block(layer.name, "pad", layer, srcs, members=[layer.name],
                          config={"padding": [int(top), int(bottom), int(left), int(right)]})
        elif t in (keras.layers.Flatten, keras.layers.Reshape):
            block = Block(layer.name, t.__name__.lower(), layer, srcs, members=[layer.name],
                          config=layer.get_config())
        else:
            raise _refuse(layer)
        block.out_shape = _shape(by_name[block.members[-1]])
        absorbed.update(block.members)
        for m in block.members:
            producer[m] = block.name
        out.append(block)
    if not any(b.op == "compute" for b in out):
        raise ValueError(f"model {model.name!r} has no Conv2D / Conv1D / DepthwiseConv2D / Dense "
                         "layer")
    return out


def policy_layers(model) -> list[str]:
    """Names of the layers a :class:`~tinyopt.mixed.policy.Policy` assigns bits to: the compute
    layers and standalone BatchNormalizations, in execution order."""
    return [b.name for b in blocks(model) if b.is_policy_layer]


def is_chain(block_list: list[Block]) -> bool:
    """True when every block reads one tensor and every tensor has at most one reader (the
    paper's memory accounting applies)."""
    readers: dict[str, int] = {}
    for b in block_list:
        if len(b.inputs) != 1:
            return False
        for s in b.inputs:
            readers[s] = readers.get(s, 0) + 1
    return all(n <= 1 for n in readers.values())


def reaches_output(name: str, cons: dict, by_name: dict, output: str) -> bool:
    """True when block ``name``'s output reaches the model output (block ``output``) through
    flatten / reshape / dropout only: nothing computes on it (a linear layer there writes the
    network's logits)."""
    while True:
        if name == output:
            return True
        readers = cons.get(name, [])
        if len(readers) != 1 or by_name[readers[0]].op not in ("flatten", "reshape", "dropout"):
            return False
        name = readers[0]


def consumers(block_list: list[Block]) -> dict[str, list[str]]:
    """Block name (or :data:`INPUT`) -> names of the blocks reading its output."""
    out: dict[str, list[str]] = {}
    for b in block_list:
        for s in b.inputs:
            out.setdefault(s, []).append(b.name)
    return out

"""Reading a float Keras model as the graph of blocks the sub-byte flow quantizes.

:func:`blocks` walks a functional (or Sequential) ``tf_keras`` model in its layer order (a
topological order) and groups its layers into :class:`Block` s, each one node of the fake-quant
model, of the integer graph and of the memory model. What a block kind is lives in its handler,
one module of :mod:`tinyopt.mixed.handlers` (the table, in reading order: ``compute`` (Conv2D,
Conv1D, DepthwiseConv2D, Dense with a following BatchNormalization and ReLU / ReLU6), ``bn``
(a standalone BatchNormalization), ``activation`` (the op registry's element-wise ops, their
``KerasPattern``), ``add``, ``concat``, ``softmax`` (the model's softmax head), ``shape``
(flatten, reshape, dropout), ``pool`` (maxpool, avgpool, gap), ``pad``); this module keeps the
walk: for every layer no block has absorbed yet, the handlers' ``read`` hooks are tried in
table order and the first that returns blocks wins; their members' outputs are then produced
by those blocks. :data:`SUPPORTED` is generated from the table.

Input scaling: ``Rescaling`` / ``Normalization`` layers right after the input are no block:
:func:`input_scaling` composes them and the input quantizer folds them in (anywhere else they
are refused).

A compute block without activation that is read by other layers is a *linear* block (a linear
bottleneck, a residual branch before its ``Add``): its output is quantized signed.
Anything else is refused with an error naming the layer, its type and :data:`SUPPORTED`; what a
later stage would refuse in an accepted layer type (a dilation rate the C descriptor cannot
hold, an add that broadcasts) is refused first, every such layer named at once
(:func:`check_supported`), so the memory model, the policy search, PTQ and QAT refuse what
``to_integer_graph`` refuses.
The *policy layers* (:func:`policy_layers`) are the blocks of the handlers marked ``policy``
(compute and ``bn``), in order.
"""

from __future__ import annotations

from tinyopt.mixed import handlers
from tinyopt.mixed.handlers import add as _add, compute as _compute, concat as _concat
from tinyopt.mixed.handlers.base import HINTS as _HINTS, INPUT, Block, reaches_output  # noqa: F401
from tinyopt.mixed.handlers.base import refuse as _refuse, relu_of

import tinyopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)

keras = None  # tf_keras, imported by blocks(): the memory model imports this module without TF


def _load_keras():
    global keras
    if keras is None:
        import tf_keras
        keras = tf_keras


# A softmax head is kept as TFLite's int8 softmax or dropped (the network ends in int32 logits).
SOFTMAX_HEADS = ("int8", "logits")
# what the flow takes, from the handler table (tinyopt.mixed.handlers)
SUPPORTED = handlers.supported()
# TFOpLambda symbols that are layers in disguise
_OP_ADD = _add.OP_ADD
_OP_CONCAT = _concat.OP_CONCAT
registry_activations = _compute.registry_activations


# ------------------------------------------------------------------------- the support check
# What a later stage refuses in a layer the block reader would otherwise accept (the integer
# graph's ADD does not broadcast; the C descriptor holds a dilation rate in one byte; a dilated
# window at a stride above 1, which Keras refuses, could only come from an edited fake-quant
# config): checked once, up front, so no entry point (memory model, policy search, PTQ, QAT)
# accepts a model that to_integer_graph or the C export refuses after training. Dilation itself
# (and Conv1D's causal padding) is supported: the simulator and the portable C kernel take
# dilated windows at every width (on the Cortex-M7 an 8-bit dilated conv2d runs tn_m7_conv, the
# other dilated layers the portable kernel).
_ADD_TYPES = ("Add", "QuantAdd")
MAX_DILATION = 255  # tn_layer_t's dil_h / dil_w are bytes (integer.ops.compute.check_c)


def _dilation(layer) -> tuple | None:
    """(dilation rate, strides) of a convolution (float or
    :class:`~tinyopt.mixed.layers.QuantCompute`), else None."""
    kind = type(layer).__name__
    if kind in ("Conv2D", "Conv1D", "DepthwiseConv2D"):
        return (tuple(int(d) for d in layer.dilation_rate),
                tuple(int(s) for s in layer.strides))
    if kind == "QuantCompute" and getattr(layer, "kind", "dense") != "dense":
        c = layer.op_config
        return (tuple(int(d) for d in c.get("dilation_rate", (1, 1))),
                tuple(int(s) for s in c.get("strides", (1, 1))))
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
    conv = _dilation(layer)
    if conv is not None:
        rate, strides = conv
        if max(rate) > MAX_DILATION:
            return (f"dilation_rate={rate}: a dilation rate above {MAX_DILATION} is not "
                    "supported (the C kernels' layer descriptor holds it in one byte); use a "
                    f"rate of at most {MAX_DILATION} (e.g. a pooling or a strided layer before "
                    "the convolution)")
        if max(rate) > 1 and max(strides) > 1:
            return (f"dilation_rate={rate} with strides={strides}: a dilated convolution runs "
                    "at stride 1 only (as Keras requires); use strides=1 and a pooling or "
                    "strided layer after it")
    shapes = _add_shapes(layer)
    if shapes is not None and len(set(shapes)) > 1:
        return (f"an add of tensors of shapes {shapes}: broadcasting is not supported (the "
                "integer ADD adds element by element); give both addends the same shape")
    return None


def check_supported(model) -> None:
    """Refuse, before any quantization, calibration or training, every layer of ``model`` that
    a later stage of the sub-byte flow would refuse (:func:`later_stage_problem`: a dilation
    rate above :data:`MAX_DILATION`, a dilated window at a stride above 1, an add that
    broadcasts). Called by :func:`blocks` (so by
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
    """'relu' / 'relu6' for a ReLU-type layer, 'linear' / 'softmax' for such an Activation or a
    Softmax, else None (:func:`tinyopt.mixed.handlers.base.relu_of`)."""
    return relu_of(layer, keras)


def _compute_config(layer) -> tuple[str | None, dict | None, bool]:
    """(kind, op config, conv1d) of a compute layer
    (:func:`tinyopt.mixed.handlers.compute.compute_config`)."""
    return _compute.compute_config(layer, keras)


def _shape(layer) -> tuple:
    return tuple(int(d) for d in layer.output_shape[1:])


class Reader:
    """What a handler's ``read`` sees of the walk: ``keras`` (tf_keras), ``output_layer`` (the
    name of the layer producing the model output), :meth:`only_reader` and :meth:`shape`."""

    def __init__(self, consumers_: dict, by_name: dict, output_layer: str):
        self.keras = keras
        self.output_layer = output_layer
        self._consumers, self._by_name = consumers_, by_name

    def only_reader(self, name: str):
        """The layer that alone reads layer ``name``'s output (None when several or none, or
        when it is the model output)."""
        readers = self._consumers.get(name, [])
        return self._by_name[readers[0]] if len(readers) == 1 and name != self.output_layer \
            else None

    @staticmethod
    def shape(layer) -> tuple:
        """A layer's per-image output shape."""
        return _shape(layer)


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
            a later stage refuses (:func:`check_supported`: a dilation rate above
            :data:`MAX_DILATION`, an add that broadcasts), a layer called more than once, a
            nested model, a softmax that is not the model output, a model with several inputs
            or outputs, or no compute layer.
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

    reader = Reader(consumers, by_name, output_layer)

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
        found = None
        for handler in handlers.table():  # the first handler reading the layer wins
            if handler.read is not None:
                found = handler.read(layer, srcs, reader)
                if found is not None:
                    break
        if found is None:
            raise _refuse(layer)
        for block in found:
            if not block.out_shape:
                block.out_shape = _shape(by_name[block.members[-1]] if block.members else layer)
            absorbed.update(block.members)
            for m in block.members:
                producer[m] = block.name
            if not block.members:  # split from the layer read: it takes over that output
                producer[layer.name] = block.name
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


def consumers(block_list: list[Block]) -> dict[str, list[str]]:
    """Block name (or :data:`INPUT`) -> names of the blocks reading its output."""
    out: dict[str, list[str]] = {}
    for b in block_list:
        for s in b.inputs:
            out.setdefault(s, []).append(b.name)
    return out

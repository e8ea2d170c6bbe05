"""LiteRT front end of the simulator: a full-int8 ``.tflite`` flatbuffer -> an
:class:`~tinyopt.integer.graph.IntegerGraph` (a DAG over the model's tensors), read from the model
itself (weights, scales, zero points, options) with ``ai_edge_litert``'s flatbuffer schema.

Each TFLite op is read by the builder its op module registers (:mod:`tinyopt.integer.ops`;
:data:`HANDLERS`, the supported set :data:`TFLITE_OPS`); any other op is refused naming the op,
the tensor it writes and the supported set. Two rounding flavours (:data:`OP_ROUNDING`, each
op's :class:`~tinyopt.integer.ops.registry.TFLiteOp` record): "litert" (LiteRT's BUILTIN_REF
kernels; FULLY_CONNECTED rounds once) and "tflm" (TensorFlow Lite Micro / CMSIS-NN: every
requantization rounds twice). Run the result with
:func:`tinyopt.integer.sim.run`, or both steps with :func:`tinyopt.integer.sim.run_tflite`.
"""

from __future__ import annotations

from tinyopt.integer import ops
from tinyopt.integer.graph import IntegerGraph
from tinyopt.integer.tflite_check import TFLiteFileError, validate
from tinyopt.integer.tflite_ctx import ImportContext, TFLiteModel

FLAVOURS = ops.registry.FLAVOURS

__all__ = ["FLAVOURS", "TFLiteFileError", "graph_from_tflite", "tflite_ops"]  # + HANDLERS, ...


# Ops of the run-time shape computations a converter emits for a dynamic batch axis.
SHAPE_OPS = ("SHAPE", "STRIDED_SLICE", "PACK", "GATHER", "REDUCE_PROD", "SLICE")


def keras_layers_of(tensor_name: str) -> list[str]:
    """The Keras layer names a TFLite tensor name carries (the converter names tensors
    ``<model>/<layer>/<op>``, several joined by ``;``), in order, without repeats; [] for names
    such as ``StatefulPartitionedCall:0``. Untrusted text: for error messages only."""
    out = []
    for part in str(tensor_name).split(";"):
        pieces = part.split("/")
        if len(pieces) >= 3 and pieces[1] and pieces[1] not in out:
            out.append(pieces[1][:64])
    return out


def _handlers() -> dict:
    """TFLite builtin name -> builder, from the op registry."""
    return {name: imp.build for name, (_, imp) in ops.tflite_table().items()}


def __getattr__(name: str):
    # HANDLERS / TFLITE_OPS / OP_ROUNDING are views of the registry, computed when asked so an op
    # module added to tinyopt.integer.ops shows up without an edit here.
    if name == "HANDLERS":
        return _handlers()
    if name == "TFLITE_OPS":
        return tuple(ops.tflite_table())
    if name == "OP_ROUNDING":
        return {f: {t: imp.rounding[f] for t, (_, imp) in ops.tflite_table().items()
                    if imp.rounding} for f in FLAVOURS}
    raise AttributeError(name)


def graph_from_tflite(tflite_bytes: bytes, *, flavour: str = "litert") -> IntegerGraph:
    """Read a full-int8 LiteRT flatbuffer into an IntegerGraph (a DAG; one node per op, named
    after its output tensor, except MEAN without keep_dims: a depthwise node plus a reshape).

    Weights, biases, scales, zero points, strides, paddings and fused activations are read from
    the model; multipliers are computed as TFLite's kernels compute them at Prepare time
    (per-channel: double(s_in) * double(s_w[c]) / double(s_out); FULLY_CONNECTED per tensor:
    double(float32(s_in * s_w)) / double(s_out) in LiteRT, the double product in TFLM). int8
    weights w are stored as unsigned codes w + 128 with zero point z_w + 128, so W - Z_w is
    unchanged.

    Arguments:
        tflite_bytes: the flatbuffer of a full-integer model (int8 activations; int8 I/O).
        flavour: "litert" (default): what LiteRT's reference kernels (BUILTIN_REF) compute
            (FULLY_CONNECTED rounds once); "tflm": what TensorFlow Lite Micro with CMSIS-NN
            computes (every requantization rounds twice). See :data:`OP_ROUNDING`.

    Returns:
        A validated :class:`IntegerGraph` (``meta["flavour"]``).

    Raises:
        TFLiteFileError: (a ValueError) the file is not a well-formed TFLite model
            (:func:`tinyopt.integer.tflite_check.validate`: truncated or corrupted flatbuffer,
            indices out of range, inconsistent quantization, nonzero int8 weight zero point,
            ...), naming the operator or tensor and the field.
        ValueError: an op outside :data:`TFLITE_OPS` (named with its output tensor and the
            supported set), a non-int8 tensor, an unknown flavour, or a form of a supported op
            that is not (dilation, broadcasting ADD, ...), each naming the tensor.
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"flavour must be one of {FLAVOURS}, got {flavour!r}")
    # The file is untrusted: validate it before anything reads it (tflite_check).
    m = TFLiteModel(tflite_bytes, validate(tflite_bytes))
    handlers = _handlers()
    sub = m.sub
    if len(sub.inputs) != 1:
        raise ValueError(f"only single-input models are supported, this one has "
                         f"{len(sub.inputs)} inputs")
    for op in sub.operators:
        kind = m.op_names[op.opcodeIndex]
        if kind not in handlers:
            out = m.name(int(op.outputs[0])) if len(op.outputs) else "?"
            layers = keras_layers_of(out)
            where = (f" (Keras layer{'s' if len(layers) > 1 else ''} "
                     f"{', '.join(map(repr, layers))})" if layers else "")
            fix = (" These ops compute a reshape target at run time because the batch axis "
                   "was dynamic at conversion: convert with a fixed batch of one "
                   "(tinyopt.to_tflite(model, 'int8', calibration, batch_size=1)), which folds "
                   "them." if kind in SHAPE_OPS else
                   " Replace the layer that produced it, or run this model with LiteRT.")
            raise ValueError(f"unsupported TFLite op {kind} writing tensor {out!r}{where}; the "
                             f"integer graph supports {sorted(handlers)}.{fix}")
    ctx = ImportContext(m, flavour)
    x = int(sub.inputs[0])
    src = ctx.spec(x, "model input")
    graph = IntegerGraph(layers=[], input_shape=src.shape, input_bits=8, input_signed=True,
                         input_zero_point=src.zero_point, input_scale=src.scale,
                         rounding="tflite_double", name="tflite", input_name=src.name,
                         meta={"source": "tflite", "flavour": flavour})
    for op in sub.operators:
        kind = m.op_names[op.opcodeIndex]
        graph.layers.extend(handlers[kind](ctx, op, kind))
    graph.outputs = [ctx.tname(int(i)) for i in sub.outputs]
    for name in graph.outputs:
        if name not in ctx.tensors:
            raise ValueError(f"model output {name!r} is not written by any op")
    graph.tensors = {k: v for k, v in ctx.tensors.items() if k != src.name}
    graph.validate()
    return graph


def tflite_ops(tflite_bytes: bytes) -> list[tuple[str, str]]:
    """Every operator of a flatbuffer in order, as (op name, output tensor name), after
    :func:`tinyopt.integer.tflite_check.validate` accepted the file, so that a caller can list
    every op outside :data:`TFLITE_OPS` at once (``tinyopt analyze``).

    Raises:
        TFLiteFileError: the file is not a well-formed TFLite model.
    """
    m = TFLiteModel(tflite_bytes)
    return [(m.op_names[op.opcodeIndex], m.name(int(op.outputs[0])) if len(op.outputs) else "?")
            for op in m.sub.operators]

"""The handler table of the sub-byte Keras path: one :class:`Handler` record per block kind,
filled by one module of :mod:`tinyopt.mixed.handlers` (as :mod:`tinyopt.integer.ops.registry`
for the integer graph's op kinds), and what those modules share: the :class:`Block` record, the
refusal message, the ReLU test, the stored grids, SAME padding.

A handler says what its block kind is at every stage of the sub-byte path, so the stages are
loops over :func:`table` (no if-ladder over layer types or block kinds):

- ``read``: float Keras layer(s) -> :class:`Block` s (:func:`tinyopt.mixed.dag.blocks`);
- ``build``: a block -> its fake-quant Keras layer(s) (:func:`tinyopt.mixed.build.quantize_mixed`);
- ``params``: a trained fake-quant layer -> its integer view
  (:func:`tinyopt.mixed.build.integer_params`);
- ``lower``: that view -> :class:`~tinyopt.integer.graph.IntegerLayer` s
  (:func:`tinyopt.mixed.lower.convert`);
- ``plan``: a block -> the same IntegerLayers from bit widths alone, dummy parameters
  (:meth:`tinyopt.mixed.skeleton.Structure.graph`, the memory model's device accounting).

No TensorFlow at import (the memory model reads blocks without it): the hooks import Keras and
the fake-quant layers when they are called. The integer arithmetic stays in
:mod:`tinyopt.integer` (the hooks call it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from tinyopt.integer.arith import m0_n0, same_padding

INPUT = "__input__"  # the producer name of the model input
LOGIT_BITS = 32  # a linear layer producing the network output writes int32 logits


@dataclass
class Block:
    """One node of the sub-byte graph.

    Attributes:
        name: the block's name (its main Keras layer's name; a softmax split from a Dense is
            ``<dense>_softmax``; an activation block: its last layer's, whose output it is).
        op: the block kind, one of the ``ops`` of a registered :class:`Handler` (compute, bn,
            add, concat, maxpool, avgpool, gap, pad, flatten, reshape, dropout, softmax,
            activation: :func:`block_kinds`).
        layer: the main Keras layer.
        inputs: names of the blocks whose outputs it reads (:data:`INPUT` = the model input).
        kind, op_config: compute blocks: "conv2d" / "depthwise" / "dense" and the op's config
            (Conv1D: a 1 x k conv2d config, ``conv1d`` True); activation blocks: the registry
            op's name (``config``: its :class:`KerasPattern` config).
        bn: the BatchNormalization fused into a compute block (None if none).
        activation: "relu", "relu6" or None.
        members: names of every Keras layer the block stands for (its output is the last one's;
            empty: a block split from the layer read, whose output it takes over).
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
        return get(self.op).policy


@dataclass(frozen=True)
class Handler:
    """What one block kind is in the sub-byte path (module docstring).

    Arguments:
        name: the handler's name (its module's).
        ops: the :attr:`Block.op` values it reads, builds and plans.
        order: its place in the reading order (lower first): ``read`` hooks are tried in this
            order and the first that returns blocks wins (the registry's element-wise patterns
            come before the add: hard-swish starts with ``x + 3``).
        supported: what it accepts, for the refusal message (:func:`supported`).
        read: ``(layer, srcs, reader) -> list[Block] | None``: the blocks the float Keras
            ``layer`` starts (``srcs``: the producer blocks of its inputs; ``reader``: the
            walk's view, :class:`tinyopt.mixed.dag.Reader`), None when it is not this kind.
            Raises ValueError (:func:`refuse`) for an option of this kind the flow cannot take.
        build: ``(block, ctx) -> (tensor, grid)``: the fake-quant layer(s) of a block applied
            to ``ctx.xs``, and the output grid ``(owner layer, bits, signed)`` (None: float
            logits); ``ctx``: :func:`tinyopt.mixed.build.quantize_mixed`'s state.
        layers: the class names of the fake-quant model's layers whose integer view it gives
            (``QuantCompute``, or a copied Keras layer's: ``MaxPooling2D``).
        params: ``(layer, entry, g_in) -> dict``: the integer view of such a layer (``entry``
            holds ``name`` / ``inputs``; ``g_in`` the input grids).
        entry_types: the ``type`` s of the ``params`` entries it lowers.
        lower: ``(entry, ctx) -> list[IntegerLayer] | None`` (None: an alias of its input).
        plan: ``(block, ctx) -> list[IntegerLayer] | None``: the nodes ``lower`` gives, from
            the bits alone (dummy weights and multipliers; None: an alias).
        policy: its blocks are policy layers (bits per layer in a Policy).
    """

    name: str
    ops: tuple
    order: int
    supported: str = ""
    read: Callable | None = None
    build: Callable | None = None
    layers: tuple = ()
    params: Callable | None = None
    entry_types: tuple = ()
    lower: Callable | None = None
    plan: Callable | None = None
    policy: bool = False


_TABLE: list[Handler] = []


def register(handler: Handler) -> None:
    """Add a handler (each module of the package calls this once at import).

    Raises:
        ValueError: a handler name, block kind or entry type registered twice.
    """
    for h in _TABLE:
        if h.name == handler.name or set(h.ops) & set(handler.ops) \
                or set(h.entry_types) & set(handler.entry_types) \
                or set(h.layers) & set(handler.layers):
            raise ValueError(f"handler {handler.name!r} overlaps {h.name!r} (names, block kinds, "
                             "entry types or layer classes registered twice)")
    _TABLE.append(handler)
    _TABLE.sort(key=lambda h: (h.order, h.name))


def table() -> list[Handler]:
    """Every handler, in reading order."""
    return list(_TABLE)


def get(op: str) -> Handler:
    """The handler of block kind ``op``.

    Raises:
        ValueError: an unknown block kind, listing the known ones.
    """
    for h in _TABLE:
        if op in h.ops:
            return h
    raise ValueError(f"unknown block kind {op!r}; known: {block_kinds()}")


def for_entry(entry_type: str) -> Handler | None:
    """The handler lowering ``integer_params`` entries of ``entry_type``, or None."""
    return next((h for h in _TABLE if entry_type in h.entry_types), None)


def for_layer(class_name: str) -> Handler | None:
    """The handler giving the integer view of fake-quant model layers of class ``class_name``,
    or None."""
    return next((h for h in _TABLE if class_name in h.layers), None)


def fake_quant(class_name: str):
    """The fake-quant Keras layer class ``class_name`` (``QuantCompute``, ``QuantAdd``, ...),
    from Keras' registry of serializable classes (:mod:`tinyopt.mixed.layers` and
    :mod:`tinyopt.mixed.graph_layers` register them as ``tinyopt>name``; the build hooks run
    from :mod:`tinyopt.mixed.build`, which imports both). Looked up by name so that the block
    reader (below the fake-quant layers in the layering) does not import them.

    Raises:
        RuntimeError: the class is not registered (the fake-quant layers were not imported).
    """
    import tf_keras
    cls = tf_keras.utils.get_registered_object(f"tinyopt>{class_name}")
    if cls is None:
        raise RuntimeError(f"fake-quant layer class {class_name!r} is not registered; import "
                           "tinyopt.mixed.build first")
    return cls


def block_kinds() -> list[str]:
    """Every block kind, in reading order."""
    return [op for h in _TABLE for op in h.ops]


def supported() -> str:
    """What the sub-byte flow takes, from the table (the refusal message's list)."""
    parts = [h.supported for h in _TABLE if h.supported]
    return ", ".join(parts) + ("; Rescaling / Normalization as the first layers (folded into "
                               "the input quantizer); dilation rates up to 255, adds of tensors "
                               "of one shape")


HINTS = {
    "SeparableConv2D": "build the depthwise and pointwise parts as separate layers (as "
                       "tinyopt.mobilenet_v1)",
    "LSTM": "recurrent layers (weights, state and per-step buffers) are not modelled",
    "GRU": "recurrent layers (weights, state and per-step buffers) are not modelled",
    "SimpleRNN": "recurrent layers (weights, state and per-step buffers) are not modelled",
}


def refuse(layer, why: str = "") -> ValueError:
    """The error refusing ``layer``: its name, its type, why (or a hint for known types) and
    what the flow supports."""
    kind = type(layer).__name__
    why = why or HINTS.get(kind, "")
    if kind == "TFOpLambda":
        kind = f"TF op {getattr(layer, 'symbol', '?')}"
    return ValueError(f"layer {layer.name!r} ({kind}) is not supported by the sub-byte flow"
                      f"{': ' + why if why else ''}. Supported: {supported()}")


def relu_of(layer, keras) -> str | None:
    """'relu' / 'relu6' for a ReLU-type layer, 'linear' / 'softmax' for such an Activation or
    a Softmax, else None."""
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


def take_relu(block: Block, reader) -> None:
    """Fuse a ReLU / ReLU6 that is the only reader of the block's output into the block."""
    nxt = reader.only_reader(block.members[-1])
    if nxt is not None and relu_of(nxt, reader.keras) in ("relu", "relu6"):
        block.activation = relu_of(nxt, reader.keras)
        block.members.append(nxt.name)


def one_block(layer, srcs, op: str, **fields) -> list[Block]:
    """A block of one Keras layer (named after it)."""
    return [Block(layer.name, op, layer, srcs, members=[layer.name], **fields)]


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


# ----------------------------------------------------------------------- integer nodes
@dataclass(frozen=True)
class Grid:
    """The quantization of a tensor as the integer graph stores it, planned from bits alone:
    ``bits``, ``zero_point``, ``signed`` (only int32 logits and the int8 softmax head), and
    ``ctl``: what sets its bits: ``("act", layer)`` (policy layer ``layer``'s act bits),
    ``("derived", tensors)`` (the largest bits of those tensors: adds, concatenations) or None
    (fixed: the image, logits, the softmax head)."""

    bits: int
    zero_point: int = 0
    signed: bool = False
    ctl: tuple | None = None


def pact(bits: int, signed: bool, ctl) -> Grid:
    """A PACT output grid: unsigned codes; a signed quantizer's with zero point 2^(Q-1)."""
    return Grid(int(bits), 2 ** (int(bits) - 1) if signed else 0, False, ctl)


def plan_fields(prefix: str, g: Grid) -> dict:
    """IntegerLayer in_* / out_* fields of a planned :class:`Grid` (no scale: unit)."""
    return {f"{prefix}_bits": g.bits, f"{prefix}_zero_point": g.zero_point,
            f"{prefix}_signed": g.signed}


def grid_fields(prefix: str, g: dict) -> dict:
    """IntegerLayer in_* / out_* fields of a calibrated grid (signed grids of pact_signed are
    stored as unsigned codes with zero point 2^(Q-1); only the softmax's int8 is signed)."""
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


def padding(cfg: dict, in_shape: tuple, out_shape: tuple, kernel: tuple) -> tuple:
    """(top, bottom, left, right) of a Keras "same" / "valid" op."""
    if str(cfg.get("padding", "valid")).lower() == "valid":
        return (0, 0, 0, 0)
    strides = tuple(cfg.get("strides") or kernel)
    top, bottom = same_padding(in_shape[0], kernel[0], strides[0], out_shape[0])
    left, right = same_padding(in_shape[1], kernel[1], strides[1], out_shape[1])
    return (top, bottom, left, right)


def multiplier(real, where: str):
    """:func:`m0_n0`, with the layer named when a multiplier is not finite (a zero or NaN
    scale)."""
    try:
        return m0_n0(real)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}; its input, weight or output scale is zero or not "
                         "finite (check the layer's clips and PACT alpha)") from exc


def quantize_node(name: str, src: str, shape: tuple, fin: dict, fout: dict, m0, n0):
    """A QUANTIZE node moving tensor ``src`` onto another grid (``fin`` / ``fout``: the in_* /
    out_* fields) with the multiplier (m0, n0)."""
    from tinyopt.integer.graph import IntegerLayer
    return IntegerLayer(kind="quantize", name=name, in_shape=shape, out_shape=shape,
                        inputs=(src,), outputs=(name,), m0=m0, n0=n0, **fin, **fout)


def requant_node(name: str, src: str, shape: tuple, g_in: dict, g_out: dict):
    """A QUANTIZE node moving a tensor from calibrated grid ``g_in`` onto ``g_out`` (floor)."""
    import numpy as np
    m0, n0 = multiplier(np.array([g_in["scale"] / g_out["scale"]]), f"node {name!r}")
    return quantize_node(name, src, shape, grid_fields("in", g_in), grid_fields("out", g_out),
                         m0, n0)


def unit_multipliers(n: int) -> tuple:
    """(m0, n0) placeholders of ``n`` multipliers for a planned node (never run)."""
    import numpy as np
    return np.ones(n, np.int32), np.zeros(n, np.int8)


def grid_of(scale, zero_point, bits, signed=False) -> dict:
    """A grid of :func:`tinyopt.mixed.build.integer_params`."""
    return {"scale": float(scale), "zero_point": int(zero_point), "bits": int(bits),
            "signed": bool(signed)}


def copy_build(b: Block, ctx):
    """A Keras layer copied into the fake-quant model (its output stays on its input's grid)."""
    return type(b.layer).from_config(b.layer.get_config())(ctx.xs[0]), ctx.g_in[0]


def copy_params(entry_type: str, layer, entry: dict, g_in: list) -> dict:
    """The integer view of a copied Keras layer: its config, its input's grid."""
    return {"type": entry_type, **entry, "config": layer.get_config(), "grid": g_in[0]}

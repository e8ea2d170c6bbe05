"""Flash (ROM) and RAM bytes of a quantized chain network, with the mixed-precision paper's
accounting (Rusci et al., MLSys 2020;
``docs/mixed_precision.md#memory-model``).

Per compute node i (Conv2D, DepthwiseConv2D, Dense, in graph order):

- **flash** = packed weights ``ceil(n_w * q_w / 8)`` + the bias / ICN / zero-point bytes of the
  spec's table (C = output channels):

  ==========================  ========================================================
  case                        extra bytes
  ==========================  ========================================================
  PL, not last, fold "FB"     4C (int32 bias) + 20 (Zi, Zo, Zw, M0, N0 as 5 x int32)
  PL, not last, fold "ICN"    9C (M0 int32 + N0 int8 + bias int32) + 12 (Zw, Zi, Zo)
  PL, last layer              4C + 20
  PC, not last (always ICN)   10C (M0 4 + N0 1 + bias 4 + Zw 1) + 8 (Zi, Zo)
  PC, last layer              7C (bias 4 + Zw 1 + M0 1 + N0 1) + 4
  ==========================  ========================================================

  These are the bytes of the *deployed* integer layer, not the Keras variables: our MobileNetV1
  convolutions have no bias (BN follows), yet every layer is charged its int32 bias.
- **RAM** = input tensor + output tensor, ``ceil(n_x * q_x / 8) + ceil(n_y * q_y / 8)``; the
  network input is 8-bit, q_x of node i is q_y of node i-1, and the last node's output (logits) is
  counted at 8 bits. Pooling, im2col buffers and parameters are not counted (as in the paper).

``ceil`` only matters for element counts that do not fill whole bytes; for MobileNetV1 every count
is a multiple of 4, so the totals equal the paper's ``n * q / 8``. Memory is in bytes; the paper's
"MB" is MiB (2^20 B, see :data:`MIB`).

The functions take a ``tf_keras`` model or, to avoid building one, a list of :class:`Node`
(:func:`nodes`, :func:`mobilenet_v1_nodes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from tinyopt.integer.arith import macs, packed_bytes
from tinyopt.front.architectures import MOBILENET_V1_BLOCKS
from tinyopt.mixed.policy import INPUT_BITS, Policy

MIB = 2 ** 20
LOGIT_BITS = 8  # the last node's output is counted at 8 bits whatever the policy says
KINDS = ("conv", "depthwise", "dense")



@dataclass(frozen=True)
class Node:
    """What the memory model needs to know about one compute layer.

    Attributes:
        name: layer name (e.g. "pw13").
        kind: "conv", "depthwise" or "dense".
        weight_elements: kernel elements (bias excluded: it is charged as extra bytes).
        out_channels: C, the output channels (or units).
        in_elements: elements of the input tensor (batch 1).
        out_elements: elements of the output tensor (batch 1).
        macs: multiply-accumulates per image (informational).
    """

    name: str
    kind: str
    weight_elements: int
    out_channels: int
    in_elements: int
    out_elements: int
    macs: int = 0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"node {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        for what in ("weight_elements", "out_channels", "in_elements", "out_elements"):
            if int(getattr(self, what)) < 1:
                raise ValueError(f"node {self.name!r}: {what} must be >= 1, got "
                                 f"{getattr(self, what)}")


# ------------------------------------------------------------------------------ node lists

def _prod(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


# The layers the memory model accounts for. Compute layers become nodes (exact types: a subclass
# such as Conv2DTranspose computes something else). The pass-through layers hold no weights and
# do not change the memory picture of a chain: element-wise in place, a view, identity at
# inference, or a pooling / padding whose result the next compute node's input shape already
# counts. A BatchNormalization directly after a compute layer is that node's BN (folded or ICN;
# its bytes are the node's extra bytes). Every other layer is refused by name.
COMPUTE_TYPES = ("Conv2D", "DepthwiseConv2D", "Dense")
PASS_THROUGH = ("InputLayer", "ReLU", "Activation", "Softmax", "Identity", "Flatten", "Reshape",
                "Dropout", "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
                "GlobalMaxPooling2D", "ZeroPadding2D", "QuantizeLayer")
SUPPORTED = (f"compute layers {', '.join(COMPUTE_TYPES)}; pass-through "
             f"{', '.join(PASS_THROUGH)}; BatchNormalization directly after a compute layer")
_WRAPPERS = ("QuantizeWrapper", "PruneLowMagnitude")  # tfmot: looked through
_HINTS = {
    "SeparableConv2D": "build the depthwise and pointwise parts as separate layers (as "
                       "tinyopt.models.mobilenet_v1)",
    "Conv2DTranspose": "a transposed convolution has other MACs and tensor sizes than a Conv2D; "
                       "it is not modelled",
    "Conv1D": "1-D convolutions are not modelled; use a Conv2D with a 1 x K kernel on "
              "[N, 1, W, C] inputs",
    "LSTM": "recurrent layers (weights, state and per-step buffers) are not modelled",
    "GRU": "recurrent layers (weights, state and per-step buffers) are not modelled",
    "SimpleRNN": "recurrent layers (weights, state and per-step buffers) are not modelled",
    "BatchNormalization": "only a BatchNormalization directly after a compute layer is accounted "
                          "for (as that layer's BN); fold or remove this one "
                          "(tinyopt.graph.optimize folds BN)",
}


def _unwrap(layer):
    """The layer inside a tfmot QuantizeWrapper / PruneLowMagnitude, else the layer itself."""
    if any(c.__name__ in _WRAPPERS for c in type(layer).__mro__) and hasattr(layer, "layer"):
        return layer.layer
    return layer


def _refuse(outer, layer) -> ValueError:
    kind = type(layer).__name__
    hint = _HINTS.get(kind, "the memory model cannot account for its weights or buffers")
    return ValueError(f"layer {outer.name!r} ({kind}) is not supported by the memory model: "
                      f"{hint}. Supported: {SUPPORTED}")


def nodes(model) -> list[Node]:
    """The compute nodes of a chain network, in graph order.

    Arguments:
        model: a ``tf_keras`` model (built: its layers must have shapes), or a list of
            :class:`Node` (returned as a list, unchanged).

    Returns:
        One :class:`Node` per Conv2D / DepthwiseConv2D / Dense layer (tfmot wrappers are looked
        through), in ``model.layers`` order.

    Raises:
        ValueError: the model has a layer with several inputs (the paper's accounting, where node
            i's input is node i-1's output, holds for chains only), a layer the memory model
            cannot account for (named, with the supported set :data:`SUPPORTED`: e.g. LSTM,
            Conv1D, Conv2DTranspose, SeparableConv2D, a BatchNormalization that does not follow a
            compute layer, a nested model), or no compute layer.
    """
    if isinstance(model, (list, tuple)):
        if not all(isinstance(n, Node) for n in model):
            raise TypeError("a list given as model must hold tinyopt.memory.Node objects")
        return list(model)
    if not hasattr(model, "layers"):
        raise TypeError(f"model must be a tf_keras model or a list of tinyopt.memory.Node, got "
                        f"{type(model).__name__}")
    import tf_keras as keras
    compute = {getattr(keras.layers, name): name for name in COMPUTE_TYPES}
    out, previous = [], None
    for outer in model.layers:
        layer = _unwrap(outer)
        kind = type(layer).__name__
        if isinstance(getattr(outer, "input", None), (list, tuple)) and len(outer.input) > 1:
            raise ValueError(f"layer {outer.name!r} has {len(outer.input)} inputs; the memory "
                             "model handles chain networks only")
        after_compute, previous = previous in compute.values(), kind
        if type(layer) not in compute:
            if kind in PASS_THROUGH or (kind == "BatchNormalization" and after_compute and
                                        type(layer) is keras.layers.BatchNormalization):
                continue
            raise _refuse(outer, layer)
        if kind == "DepthwiseConv2D":
            node_kind, kernel = "depthwise", layer.depthwise_kernel
        elif kind == "Conv2D":
            node_kind, kernel = "conv", layer.kernel
        else:
            node_kind, kernel = "dense", layer.kernel
        in_shape, out_shape = outer.input_shape, outer.output_shape
        out_elements = _prod(out_shape[1:])
        kelems = _prod(kernel.shape)
        n_macs = macs(out_elements, kelems, int(out_shape[-1]))
        out.append(Node(outer.name, node_kind, kelems, int(out_shape[-1]), _prod(in_shape[1:]),
                        out_elements, n_macs))
    if not out:
        raise ValueError(f"model {model.name!r} has no Conv2D / DepthwiseConv2D / Dense layer")
    return out


def mobilenet_v1_nodes(alpha: float = 1.0, resolution: int = 224, classes: int = 1000,
                       input_channels: int = 3) -> list[Node]:
    """The nodes of ``tinyopt.models.mobilenet_v1(alpha, resolution, classes, input_channels)``
    computed from the architecture, without building the Keras model (milliseconds instead of
    seconds, and without importing TensorFlow; the tests check both paths agree).

    Raises:
        ValueError: alpha <= 0 or resolution < 1.
    """
    if alpha <= 0 or resolution < 1:
        raise ValueError(f"alpha must be > 0 and resolution >= 1, got {alpha}, {resolution}")

    def same(h, stride):  # SAME padding output size
        return -(-h // stride)

    def _channels(c, alpha):  # as tinyopt.models._channels
        return max(1, int(c * alpha))

    h = same(resolution, 2)
    c = _channels(32, alpha)
    out = [Node("conv0", "conv", 9 * input_channels * c, c, resolution ** 2 * input_channels,
                h * h * c, h * h * c * 9 * input_channels)]
    for i, (stride, width) in enumerate(MOBILENET_V1_BLOCKS, start=1):
        h_in, h = h, same(h, stride)
        out.append(Node(f"dw{i}", "depthwise", 9 * c, c, h_in * h_in * c, h * h * c, h * h * c * 9))
        cout = _channels(width, alpha)
        out.append(Node(f"pw{i}", "conv", c * cout, cout, h * h * c, h * h * cout,
                        h * h * c * cout))
        c = cout
    out.append(Node("fc", "dense", c * classes, classes, c, classes, c * classes))
    return out


# ------------------------------------------------------------------------------ accounting

def extra_bytes(channels: int, granularity: str, fold: str, last: bool) -> int:
    """Bias / ICN / zero-point bytes of one deployed layer (the table in the module docstring).

    Raises:
        ValueError: unknown granularity or fold, or PC with FB on a non-last layer (CMix-NN has
            no per-channel kernel without ICN, so the paper has no such accounting).
    """
    c = int(channels)
    if granularity == "PL":
        if last:
            return 4 * c + 20
        if fold == "FB":
            return 4 * c + 20
        if fold == "ICN":
            return 9 * c + 12
    elif granularity == "PC":
        if last:
            return 7 * c + 4
        if fold == "ICN":
            return 10 * c + 8
        if fold == "FB":
            raise ValueError("per-channel (PC) weights with folded BN (FB) have no deployed form "
                             "(CMix-NN's PC kernels are ICN only); use fold='ICN' for PC")
    raise ValueError(f"unknown granularity/fold {granularity!r}/{fold!r}; expected PL or PC and "
                     "FB or ICN")


def _check(node_list: list[Node], policy: Policy) -> None:
    names = [n.name for n in node_list]
    if list(policy.layers) != names:
        raise ValueError(f"the policy's layers {list(policy.layers)} do not match the model's "
                         f"compute layers {names}; build the policy from this model")


def report(model, policy: Policy) -> pd.DataFrame:
    """Per-node flash and RAM bytes of ``model`` quantized with ``policy``.

    Arguments:
        model: a ``tf_keras`` model or a list of :class:`Node`.
        policy: a :class:`tinyopt.policy.Policy` over the same compute layers.

    Returns:
        DataFrame, one row per node: layer, kind, weight_elements, out_channels, weight_bits,
        input_bits, output_bits (8 for the last node), fold, granularity, weight_bytes,
        extra_bytes, flash_bytes, in_elements, out_elements, in_bytes, out_bytes, ram_bytes, macs.

    Raises:
        ValueError: the policy's layers differ from the model's compute layers, or see
            :func:`extra_bytes`.
    """
    node_list = nodes(model)
    _check(node_list, policy)
    n = len(node_list)
    in_bits = policy.input_bits
    rows = []
    for i, node in enumerate(node_list):
        last = i == n - 1
        out_bits = LOGIT_BITS if last else policy.act_bits[i]
        wb = packed_bytes(node.weight_elements, policy.weight_bits[i])
        eb = extra_bytes(node.out_channels, policy.granularity, policy.fold[i], last)
        ib = packed_bytes(node.in_elements, in_bits[i])
        ob = packed_bytes(node.out_elements, out_bits)
        rows.append({
            "layer": node.name, "kind": node.kind, "weight_elements": node.weight_elements,
            "out_channels": node.out_channels, "weight_bits": policy.weight_bits[i],
            "input_bits": in_bits[i], "output_bits": out_bits, "fold": policy.fold[i],
            "granularity": policy.granularity, "weight_bytes": wb, "extra_bytes": eb,
            "flash_bytes": wb + eb, "in_elements": node.in_elements,
            "out_elements": node.out_elements, "in_bytes": ib, "out_bytes": ob,
            "ram_bytes": ib + ob, "macs": node.macs,
        })
    return pd.DataFrame(rows)


def flash_bytes(model, policy: Policy) -> int:
    """Total flash bytes: packed weights + extras over all nodes (see :func:`report`)."""
    return int(report(model, policy)["flash_bytes"].sum())


def peak_ram_bytes(model, policy: Policy) -> int:
    """Largest input + output bytes over the nodes (see :func:`report`)."""
    return int(report(model, policy)["ram_bytes"].max())


def ram_per_node(node_list: list[Node], act_bits: list[int]) -> list[int]:
    """RAM bytes per node for output bits ``act_bits`` (the last entry is ignored: logits are
    8-bit). The fast path used by the policy search."""
    n = len(node_list)
    out = []
    for i, node in enumerate(node_list):
        qx = INPUT_BITS if i == 0 else act_bits[i - 1]
        qy = LOGIT_BITS if i == n - 1 else act_bits[i]
        out.append(packed_bytes(node.in_elements, qx) + packed_bytes(node.out_elements, qy))
    return out


def to_mib(nbytes: float) -> float:
    """Bytes -> MiB (2^20 B), the paper's "MB"."""
    return nbytes / MIB

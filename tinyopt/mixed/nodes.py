"""What the memory model knows of a network: one :class:`Node` per policy layer (compute layers,
transposed convolutions and standalone BatchNormalizations), from a ``tf_keras`` model
(:func:`nodes`, through :func:`tinyopt.mixed.dag.blocks`) or from the MobileNetV1
architecture without building it (:func:`mobilenet_v1_nodes`). The accounting is
:mod:`tinyopt.mixed.memory`."""

from __future__ import annotations

from dataclasses import dataclass

from tinyopt.front.architectures import MOBILENET_V1_BLOCKS
from tinyopt.integer.arith import macs
from tinyopt.mixed import dag  # imports TensorFlow lazily (only for Keras models)

KINDS = ("conv", "depthwise", "dense", "transpose_conv")


@dataclass(frozen=True)
class Node:
    """What the memory model needs to know about one compute layer.

    Attributes:
        name: layer name (e.g. "pw13").
        kind: "conv", "depthwise", "dense" or "transpose_conv" (a Conv2DTranspose: its weights
            are stored as a conv's, one row of kh kw c_in per output channel).
        weight_elements: kernel elements (bias excluded: it is charged as extra bytes).
        out_channels: C, the output channels (or units).
        in_elements: elements of the input tensor (batch 1).
        out_elements: elements of the output tensor (batch 1).
        macs: multiply-accumulates per image (informational; a transposed convolution: every
            input pixel times every weight, as the integer op counts them).
        bn: the layer has a BatchNormalization (fused or standalone); the deployed parameters
            depend on it (ICN keeps a multiplier per channel).
    """

    name: str
    kind: str
    weight_elements: int
    out_channels: int
    in_elements: int
    out_elements: int
    macs: int = 0
    bn: bool = False

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


def nodes(model) -> list[Node]:
    """The policy layers of a network as memory-model nodes, in execution order.

    Arguments:
        model: a ``tf_keras`` model (built: its layers must have shapes), or a list of
            :class:`Node` (returned as a list, unchanged).

    Returns:
        One :class:`Node` per policy layer (:func:`tinyopt.mixed.dag.policy_layers`): Conv2D,
        Conv1D (kind "conv"), DepthwiseConv2D, Dense, Conv2DTranspose (kind "transpose_conv")
        and standalone BatchNormalization (kind "depthwise": the deployed 1 x 1 depthwise of
        one weight per channel).

    Raises:
        ValueError: a layer the sub-byte flow cannot take (named, with its type and the supported
            set :data:`tinyopt.mixed.dag.SUPPORTED`: e.g. LSTM, SeparableConv2D,
            a nested model), or no compute layer.
    """
    if isinstance(model, (list, tuple)):
        if not all(isinstance(n, Node) for n in model):
            raise TypeError("a list given as model must hold tinyopt.memory.Node objects")
        return list(model)
    if not hasattr(model, "layers"):
        raise TypeError(f"model must be a tf_keras model or a list of tinyopt.memory.Node, got "
                        f"{type(model).__name__}")
    return _nodes_of(dag.blocks(model))


def _nodes_of(block_list) -> list[Node]:
    out = []
    for b in block_list:
        if not b.is_policy_layer:
            continue
        layer = b.layer
        in_elements = _prod(layer.input_shape[1:])
        out_elements = _prod(b.out_shape)
        c = int(b.out_shape[-1])
        if b.op == "bn":
            kind, kelems = "depthwise", c
        elif b.op == "transpose_conv":  # every input pixel scatters through every weight
            kelems = _prod(layer.kernel.shape)
            out.append(Node(b.name, "transpose_conv", kelems, c, in_elements, out_elements,
                            _prod(layer.input_shape[1:3]) * kelems, b.bn is not None))
            continue
        elif b.kind == "depthwise":
            kind, kelems = "depthwise", _prod(layer.depthwise_kernel.shape)
        else:
            kind, kelems = ("conv" if b.kind == "conv2d" else "dense"), _prod(layer.kernel.shape)
        out.append(Node(b.name, kind, kelems, c, in_elements, out_elements,
                        macs(out_elements, kelems, c), b.bn is not None))
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
                h * h * c, h * h * c * 9 * input_channels, True)]
    for i, (stride, width) in enumerate(MOBILENET_V1_BLOCKS, start=1):
        h_in, h = h, same(h, stride)
        out.append(Node(f"dw{i}", "depthwise", 9 * c, c, h_in * h_in * c, h * h * c,
                        h * h * c * 9, True))
        cout = _channels(width, alpha)
        out.append(Node(f"pw{i}", "conv", c * cout, cout, h * h * c, h * h * cout,
                        h * h * c * cout, True))
        c = cout
    out.append(Node("fc", "dense", c * classes, classes, c, classes, c * classes))
    return out

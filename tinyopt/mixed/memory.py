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
from tinyopt.mixed import dag  # imports TensorFlow lazily (only for Keras models)
from tinyopt.mixed.policy import INPUT_BITS, Policy

MIB = 2 ** 20
LOGIT_BITS = 32  # a network ending in a linear layer writes int32 logits (as deployed)
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


def nodes(model) -> list[Node]:
    """The policy layers of a network as memory-model nodes, in execution order.

    Arguments:
        model: a ``tf_keras`` model (built: its layers must have shapes), or a list of
            :class:`Node` (returned as a list, unchanged).

    Returns:
        One :class:`Node` per policy layer (:func:`tinyopt.mixed.dag.policy_layers`): Conv2D,
        Conv1D (kind "conv"), DepthwiseConv2D, Dense, and standalone BatchNormalization (kind
        "depthwise": the deployed 1 x 1 depthwise of one weight per channel).

    Raises:
        ValueError: a layer the sub-byte flow cannot take (named, with its type and the supported
            set :data:`tinyopt.mixed.dag.SUPPORTED`: e.g. LSTM, Conv2DTranspose, SeparableConv2D,
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
        elif b.kind == "depthwise":
            kind, kelems = "depthwise", _prod(layer.depthwise_kernel.shape)
        else:
            kind, kelems = ("conv" if b.kind == "conv2d" else "dense"), _prod(layer.kernel.shape)
        out.append(Node(b.name, kind, kelems, c, in_elements, out_elements,
                        macs(out_elements, kelems, c)))
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
                         f"policy layers {names}; build the policy from this model")


# ------------------------------------------------------------------------------ tensor lifetimes

@dataclass
class MemTensor:
    """A tensor the deployed network stores. ``kind``: "input" (8-bit image), "act" (the output
    of policy layer ``layer``, at its act bits), "logits" (int32), "int8" (8 bits, fixed: the
    softmax head's logits and output), "derived" (bits = the largest of ``sources``' bits: add,
    concat, pool and pad outputs)."""

    name: str
    elements: int
    kind: str
    layer: str | None = None
    sources: tuple = ()


@dataclass
class MemGraph:
    """Steps in the C export's execution order, each reading tensors and writing one.
    ``chain``: the paper's accounting applies (:func:`report`)."""

    tensors: dict
    steps: list  # (step name, input tensor names, output tensor name)
    nodes: list
    chain: bool

    def bits(self, act_bits: dict) -> dict:
        """Tensor name -> bits for the policy layers' output bits ``act_bits``."""
        out = {}
        for name, t in self.tensors.items():  # insertion order is topological
            if t.kind == "input":
                out[name] = INPUT_BITS
            elif t.kind == "act":
                out[name] = int(act_bits[t.layer])
            elif t.kind == "logits":
                out[name] = LOGIT_BITS
            elif t.kind == "int8":
                out[name] = 8
            else:
                out[name] = max(out[s] for s in t.sources)
        return out

    def lifetimes(self) -> dict:
        """Tensor name -> (first step, last step), both inclusive (the graph output lives to the
        end; the input from step 0)."""
        life = {}
        for i, (_, ins, out) in enumerate(self.steps):
            life.setdefault(out, [i, i])
            for t in ins:
                life.setdefault(t, [0, i])[1] = i
        life[self.steps[-1][2]][1] = len(self.steps) - 1
        return {k: tuple(v) for k, v in life.items()}

    def live_bytes(self, act_bits: dict) -> list[int]:
        """Bytes alive at each step (every tensor from the step writing it to its last reader)."""
        bits, life = self.bits(act_bits), self.lifetimes()
        size = {t: packed_bytes(self.tensors[t].elements, bits[t]) for t in life}
        return [sum(size[t] for t, (a, b) in life.items() if a <= i <= b)
                for i in range(len(self.steps))]


def mem_graph(model, softmax: str = "int8") -> MemGraph:
    """The tensors and steps of ``model`` as :func:`tinyopt.icn.convert` lowers it and the C
    export runs it: Keras layer order; flatten / reshape / dropout are aliases (no step); a
    compute layer read only by a max pool is fused with it; a global average pool is one step;
    a concatenation first requantizes every input (a QUANTIZE step each: an upper bound, an input
    already on the output grid is copied directly); the int8 softmax head is two steps (the
    logits moved to int8, then the softmax).

    Arguments:
        model: a ``tf_keras`` model or a list of :class:`Node` (a chain).
        softmax: "int8" or "logits", as :func:`tinyopt.qat.quantize_mixed`.
    """
    if isinstance(model, (list, tuple)):
        node_list = nodes(model)
        tensors = {"input": MemTensor("input", node_list[0].in_elements, "input")}
        steps, prev = [], "input"
        for i, n in enumerate(node_list):
            kind = "logits" if i == len(node_list) - 1 else "act"
            tensors[n.name] = MemTensor(n.name, n.out_elements, kind, n.name)
            steps.append((n.name, (prev,), n.name))
            prev = n.name
        return MemGraph(tensors, steps, node_list, True)
    if softmax not in dag.SOFTMAX_HEADS:
        raise ValueError(f"softmax must be one of {dag.SOFTMAX_HEADS}, got {softmax!r}")
    block_list = dag.blocks(model)
    chain = dag.is_chain(block_list)
    if softmax == "logits":
        block_list = [b for b in block_list if b.op != "softmax"]
    cons = dag.consumers(block_list)
    by_name = {b.name: b for b in block_list}
    out_name = block_list[-1].name
    tensors = {dag.INPUT: MemTensor(dag.INPUT, _prod(model.input_shape[1:]), "input")}
    alias = {dag.INPUT: dag.INPUT}
    steps, fused = [], {}
    for b in block_list:
        ins = [alias[s] for s in b.inputs]
        elements = _prod(b.out_shape)
        if b.op in ("flatten", "reshape", "dropout"):
            alias[b.name] = ins[0]
            continue
        if b.op in ("compute", "bn"):
            readers = cons.get(b.name, [])
            head = any(by_name[r].op == "softmax" for r in readers)
            if b.activation is None and not head and _reaches_output(b.name, cons, by_name,
                                                                      out_name):
                kind = "logits"
            else:
                kind = "int8" if head else "act"
            if (len(readers) == 1 and by_name[readers[0]].op == "maxpool"
                    and b.name != out_name and kind == "act"):
                fused[readers[0]] = (b.name, ins)  # the pool step writes the pooled tensor
                alias[b.name] = b.name
                continue
            tensors[b.name] = MemTensor(b.name, elements, kind, b.name)
        elif b.op == "maxpool" and b.name in fused:
            src, ins = fused[b.name]
            tensors[b.name] = MemTensor(b.name, elements, "act", src)
        elif b.op == "softmax":
            tensors[f"{b.name}_int8"] = MemTensor(f"{b.name}_int8", elements, "int8")
            steps.append((f"{b.name}_int8", tuple(ins), f"{b.name}_int8"))
            ins = [f"{b.name}_int8"]
            tensors[b.name] = MemTensor(b.name, elements, "int8")
        elif b.op == "concat":
            moved = []
            for k, t in enumerate(ins):
                name = f"{b.name}_{k}"
                tensors[name] = MemTensor(name, tensors[t].elements, "derived", sources=tuple(ins))
                steps.append((name, (t,), name))
                moved.append(name)
            ins = moved
            tensors[b.name] = MemTensor(b.name, elements, "derived", sources=tuple(ins))
        else:  # add, avgpool, gap, pad, maxpool
            tensors[b.name] = MemTensor(b.name, elements, "derived", sources=tuple(ins))
        alias[b.name] = b.name
        steps.append((b.name, tuple(ins), b.name))
    return MemGraph(tensors, steps, _nodes_of(block_list), chain)


def _reaches_output(name, cons, by_name, out_name) -> bool:
    while True:
        if name == out_name:
            return True
        readers = cons.get(name, [])
        if len(readers) != 1 or by_name[readers[0]].op not in ("flatten", "reshape", "dropout"):
            return False
        name = readers[0]


def _input_tensors(g: MemGraph) -> dict:
    """Policy layer -> the tensor its step reads."""
    out = {}
    for name, ins, _ in g.steps:
        if name in {n.name for n in g.nodes}:
            out[name] = ins[0]
    for t in g.tensors.values():  # a compute fused with its max pool reads the compute's input
        if t.kind == "act" and t.layer != t.name and t.layer not in out:
            step = next(s for s in g.steps if s[2] == t.name)
            out[t.layer] = step[1][0]
    return out


def report(model, policy: Policy, softmax: str = "int8") -> pd.DataFrame:
    """Per-node flash and RAM bytes of ``model`` quantized with ``policy``.

    RAM. For a chain (every layer reads one tensor, every tensor has one reader) the paper's
    rule: ``ram_bytes`` = input + output bytes of the node, pools and pads not counted. For any
    other graph the bytes alive at the node's step (:func:`live_steps`): a skip tensor stays
    alive until its add reads it. Output bits are the deployed ones: int32 logits count 4 bytes
    each, the int8 softmax head's logits 1.

    Arguments:
        model: a ``tf_keras`` model or a list of :class:`Node`.
        policy: a :class:`tinyopt.policy.Policy` over the same policy layers.
        softmax: "int8" or "logits", as :func:`tinyopt.qat.quantize_mixed`.

    Returns:
        DataFrame, one row per node: layer, kind, weight_elements, out_channels, weight_bits,
        input_bits, output_bits, fold, granularity, weight_bytes, extra_bytes, flash_bytes,
        in_elements, out_elements, in_bytes, out_bytes, ram_bytes, macs.

    Raises:
        ValueError: the policy's layers differ from the model's policy layers, or see
            :func:`extra_bytes` and :func:`nodes`.
    """
    g = mem_graph(model, softmax)
    node_list = g.nodes
    _check(node_list, policy)
    n = len(node_list)
    act = dict(zip(policy.layers, policy.act_bits))
    bits = g.bits(act)
    live = dict(zip([s[0] for s in g.steps], g.live_bytes(act)))
    reads = _input_tensors(g)
    rows = []
    for i, node in enumerate(node_list):
        last = i == n - 1
        out_t = next(t for t in g.tensors.values() if t.layer == node.name)
        out_bits, in_bits = bits[out_t.name], bits[reads[node.name]]
        wb = packed_bytes(node.weight_elements, policy.weight_bits[i])
        eb = extra_bytes(node.out_channels, policy.granularity, policy.fold[i], last)
        ib = packed_bytes(node.in_elements, in_bits)
        ob = packed_bytes(node.out_elements, out_bits)
        step = node.name if node.name in live else out_t.name
        rows.append({
            "layer": node.name, "kind": node.kind, "weight_elements": node.weight_elements,
            "out_channels": node.out_channels, "weight_bits": policy.weight_bits[i],
            "input_bits": in_bits, "output_bits": out_bits, "fold": policy.fold[i],
            "granularity": policy.granularity, "weight_bytes": wb, "extra_bytes": eb,
            "flash_bytes": wb + eb, "in_elements": node.in_elements,
            "out_elements": node.out_elements, "in_bytes": ib, "out_bytes": ob,
            "ram_bytes": ib + ob if g.chain else live[step], "macs": node.macs,
        })
    return pd.DataFrame(rows)


def live_steps(model, policy: Policy, softmax: str = "int8") -> pd.DataFrame:
    """Every step of the deployed network in execution order with the bytes alive during it.

    Returns:
        DataFrame: step, output (tensor written), output_bits, output_bytes, live_bytes, live
        (the tensors alive, comma-separated).
    """
    g = mem_graph(model, softmax)
    _check(g.nodes, policy)
    act = dict(zip(policy.layers, policy.act_bits))
    bits, life = g.bits(act), g.lifetimes()
    live = g.live_bytes(act)
    return pd.DataFrame([{"step": name, "output": out, "output_bits": bits[out],
                          "output_bytes": packed_bytes(g.tensors[out].elements, bits[out]),
                          "live_bytes": live[i],
                          "live": ",".join(t for t, (a, b) in life.items() if a <= i <= b)}
                         for i, (name, _, out) in enumerate(g.steps)])


def flash_bytes(model, policy: Policy) -> int:
    """Total flash bytes: packed weights + extras over all nodes (see :func:`report`)."""
    return int(report(model, policy)["flash_bytes"].sum())


def peak_ram_bytes(model, policy: Policy, softmax: str = "int8") -> int:
    """Peak activation RAM: for chains the largest input + output of a node (the paper's rule),
    for other graphs the largest sum of tensors alive at one step (see :func:`report`)."""
    g = mem_graph(model, softmax)
    _check(g.nodes, policy)
    act = dict(zip(policy.layers, policy.act_bits))
    if g.chain:
        return int(report(model, policy, softmax)["ram_bytes"].max())
    return int(max(g.live_bytes(act)))


def ram_per_node(node_list: list[Node], act_bits: list[int], last_bits: int = LOGIT_BITS
                 ) -> list[int]:
    """RAM bytes per node of a chain for output bits ``act_bits`` (the last entry is ignored: the
    last node writes ``last_bits``, int32 logits or the softmax head's int8). The fast path used
    by the policy search."""
    n = len(node_list)
    out = []
    for i, node in enumerate(node_list):
        qx = INPUT_BITS if i == 0 else act_bits[i - 1]
        qy = last_bits if i == n - 1 else act_bits[i]
        out.append(packed_bytes(node.in_elements, qx) + packed_bytes(node.out_elements, qy))
    return out


def to_mib(nbytes: float) -> float:
    """Bytes -> MiB (2^20 B), the paper's "MB"."""
    return nbytes / MIB

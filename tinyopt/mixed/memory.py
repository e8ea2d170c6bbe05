"""Flash (ROM) and RAM bytes of a quantized network.

Two RAM accountings, chosen by name (``accounting=``):

- ``"device"`` (the default for a Keras model): the arena of the plan the C export builds by
  default (:func:`tinyopt.integer.steps.memory_plan`, kernel scratch included) for the integer
  graph of the policy, built without calibration (:mod:`tinyopt.mixed.skeleton`): the RAM the
  device uses for tensors; ``peak_ram_bytes(model, policy)`` equals ``mcu.deploy``'s arena.
- ``"paper"`` (the default, and the only one, for a list of :class:`Node`): the mixed-precision
  paper's accounting for chains (Rusci et al., MLSys 2020; ``docs/mixed_precision.md#memory-model``)
  and live tensors for graphs with branches, described below. The MobileNetV1 oracle uses it.

Flash is the paper's accounting either way.

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
- **RAM**, chains (every layer reads one tensor, every tensor has one reader) = input tensor +
  output tensor, ``ceil(n_x * q_x / 8) + ceil(n_y * q_y / 8)``; the network input is 8-bit, q_x
  of node i is q_y of node i-1, and the last node's output is counted as deployed: int32 logits
  (4 bytes each), or 8 bits when it feeds the int8 softmax head. im2col buffers and parameters
  are not counted (as in the paper). The paper leaves out pads and pools too; the peak does not:
  a pad, pool or softmax step holds its input and its output at once on the device, so
  :func:`peak_ram_bytes` is the larger of the per-node rule and the bytes of every such step
  (:meth:`~tinyopt.mixed.lifetimes.MemGraph.uncovered_steps`; for MobileNetV1 its global
  average pool is never the peak, so the paper's figures stand).
- **RAM**, other graphs: the largest sum of the tensors alive at one step of the C export
  (:mod:`tinyopt.mixed.lifetimes`): a skip tensor stays alive until its add reads it.
- **which plan**: the C export with ``overlap=False, fuse_add=False`` and the same
  ``fuse_pool`` (default True, as :func:`tinyopt.deploy.codegen.export_c`): every tensor whole
  from the step writing it to its last reader. Its arena equals :func:`peak_ram_bytes` when the
  per-node rule and the live tensors agree (graphs with branches; chains without a compute
  layer fused with its max pool) and is below it otherwise (the per-node rule counts the
  un-pooled output the fused step never stores); the default export overlaps tensors and needs
  less. ``tests/test_memory_chains.py`` checks this on pad and pool chains.
- **deployed parameters** (:func:`deployed_param_bytes`): exactly the parameter arrays the C
  export stores (weight rows byte-aligned, bias, multipliers, zero points, add / quantize /
  softmax multipliers), next to the paper's accounting above.

``ceil`` only matters for element counts that do not fill whole bytes; for MobileNetV1 every count
is a multiple of 4, so the totals equal the paper's ``n * q / 8``. Memory is in bytes; the paper's
"MB" is MiB (2^20 B, see :data:`MIB`).

The functions take a ``tf_keras`` model or, to avoid building one, a list of :class:`Node`
(:func:`nodes`, :func:`mobilenet_v1_nodes`).
"""

from __future__ import annotations

import pandas as pd

from tinyopt.integer.arith import packed_bytes
from tinyopt.mixed.lifetimes import LOGIT_BITS, MemGraph, MemTensor, mem_graph  # noqa: F401
from tinyopt.mixed.nodes import KINDS, Node, mobilenet_v1_nodes, nodes  # noqa: F401
from tinyopt.mixed.policy import INPUT_BITS, Policy

MIB = 2 ** 20
ACCOUNTINGS = ("device", "paper")


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


def _input_tensors(g: MemGraph) -> dict:
    """Policy layer -> the tensor its step reads."""
    names = {n.name for n in g.nodes}
    out = {name: ins[0] for name, ins, _ in g.steps if name in names}
    for t in g.tensors.values():  # a compute fused with its max pool reads the compute's input
        if t.kind == "act" and t.layer != t.name and t.layer not in out:
            step = next(s for s in g.steps if s[2] == t.name)
            out[t.layer] = step[1][0]
    return out


def accounting_of(model, accounting: str | None) -> str:
    """The accounting to use: ``accounting``, or by default "device" for a Keras model and
    "paper" for a list of :class:`Node` (which has no kernels, strides or wiring to plan).

    Raises:
        ValueError: an unknown accounting, or "device" for a list of :class:`Node`.
    """
    node_list = isinstance(model, (list, tuple))
    if accounting is None:
        return "paper" if node_list else "device"
    if accounting not in ACCOUNTINGS:
        raise ValueError(f"accounting must be one of {ACCOUNTINGS} (or None: device for a Keras "
                         f"model, paper for a list of Node), got {accounting!r}")
    if accounting == "device" and node_list:
        raise ValueError("accounting='device' needs the Keras model (a list of Node has no "
                         "kernels, strides or wiring to plan); pass the model, or "
                         "accounting='paper'")
    return accounting


def device_plan(model, policy: Policy, softmax: str = "int8", fuse_pool: bool = True,
                structure=None):
    """The deployed plan of ``model`` under ``policy``: the integer graph's structure
    (:func:`tinyopt.mixed.skeleton.skeleton`, no calibration) planned by
    :func:`tinyopt.integer.steps.memory_plan` with the C export's defaults (``fuse_pool`` as
    given).

    Arguments:
        model, policy, softmax, fuse_pool: as :func:`report`.
        structure: a :class:`tinyopt.mixed.skeleton.Structure` of ``model`` already read
            (the policy search reads the model once).

    Returns:
        (steps, :class:`~tinyopt.integer.memplan.MemoryPlan`, the
        :class:`~tinyopt.mixed.skeleton.Structure`, per step the bytes the plan holds at it:
        the spans of its buffers, scratch included).

    Raises:
        ValueError: as :func:`report`.
    """
    from tinyopt.integer.steps import memory_plan
    from tinyopt.mixed.skeleton import Structure
    s = structure if structure is not None else Structure(model, softmax)
    if list(policy.layers) != s.layers:
        raise ValueError(f"the policy's layers {list(policy.layers)} do not match the model's "
                         f"policy layers {s.layers}; build the policy from this model")
    graph = s.graph(dict(zip(policy.layers, policy.weight_bits)),
                    dict(zip(policy.layers, policy.act_bits)), policy.granularity,
                    dict(zip(policy.layers, policy.fold)))
    # the export's default plan: memory_plan's own defaults (kernel scratch included)
    steps, mem = memory_plan(graph) if fuse_pool else memory_plan(graph, fuse_pool=False)
    held = [sum(b.span_at(i) for b in mem.buffers) for i in range(mem.n_steps)]
    return steps, mem, s, held


def report(model, policy: Policy, softmax: str = "int8", fuse_pool: bool = True,
           accounting: str | None = None) -> pd.DataFrame:
    """Per-node flash and RAM bytes of ``model`` quantized with ``policy``.

    RAM per row, the paper accounting's (whatever ``accounting``): for a chain (every layer
    reads one tensor, every tensor has one reader) the paper's rule: ``ram_bytes`` = input +
    output bytes of the node; for any other graph the bytes alive at the node's step (every
    tensor whole from its writer to its last reader): a skip tensor stays alive until its add
    reads it. Output bits are the deployed ones: int32 logits count 4 bytes each, the int8
    softmax head's logits 1. ``attrs["peak_ram_bytes"]`` and ``attrs["peak_step"]`` give the
    network's peak RAM by ``accounting`` (:func:`peak_ram_bytes`; "device": the deployed arena
    and the planner step holding the most bytes; "paper": the per-node rule and the pad / pool
    steps it does not see), ``attrs["accounting"]`` which one; :func:`live_steps` lists every
    step.

    Arguments:
        model: a ``tf_keras`` model or a list of :class:`Node`.
        policy: a :class:`tinyopt.policy.Policy` over the same policy layers.
        softmax: "int8" or "logits", as :func:`tinyopt.qat.quantize_mixed`.
        fuse_pool: the C export's ``fuse_pool`` (see :func:`tinyopt.mixed.lifetimes.mem_graph`).
        accounting: "device", "paper" or None (module docstring: device for a Keras model,
            paper for a list of :class:`Node`).

    Returns:
        DataFrame, one row per node: layer, kind, weight_elements, out_channels, weight_bits,
        input_bits, output_bits, fold, granularity, weight_bytes, extra_bytes, flash_bytes,
        in_elements, out_elements, in_bytes, out_bytes, ram_bytes, macs.

    Raises:
        ValueError: the policy's layers differ from the model's policy layers, a layer a later
            stage refuses (:func:`tinyopt.mixed.dag.check_supported`), an unknown accounting
            (or "device" for a list of :class:`Node`), or see :func:`extra_bytes` and
            :func:`nodes`.
    """
    accounting = accounting_of(model, accounting)
    g = mem_graph(model, softmax, fuse_pool)
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
    df = pd.DataFrame(rows)
    if accounting == "paper":
        df.attrs["peak_ram_bytes"], df.attrs["peak_step"] = _peak(g, act, df)
    else:
        steps, mem, _, held = device_plan(model, policy, softmax, fuse_pool)
        df.attrs["peak_ram_bytes"] = int(mem.arena_bytes)
        df.attrs["peak_step"] = steps[held.index(max(held))].name
    df.attrs["accounting"] = accounting
    return df


def _peak(g: MemGraph, act: dict, df: pd.DataFrame) -> tuple[int, str]:
    """(peak bytes, the step where it occurs) from :func:`report`'s rows and the live bytes:
    chains take the larger of the per-node rule and the steps it does not cover (pads, pools,
    the softmax head); other graphs the largest live bytes."""
    if g.chain:
        i = int(df["ram_bytes"].values.argmax())
        peak, where = int(df["ram_bytes"].iloc[i]), str(df["layer"].iloc[i])
        extra, at = g.uncovered_peak(act)
        if extra > peak:
            peak, where = int(extra), g.steps[at][0]
        return peak, where
    live = g.live_bytes(act)
    i = live.index(max(live))
    return int(live[i]), g.steps[i][0]


def live_steps(model, policy: Policy, softmax: str = "int8", fuse_pool: bool = True,
               accounting: str | None = None) -> pd.DataFrame:
    """Every step of the deployed network in execution order with the bytes held during it.

    "device": the steps of the deployed plan (:func:`device_plan`: fused pools and adds,
    in-place and sliding writes); ``live_bytes`` is the bytes the plan's buffers span at the
    step (kernel scratch included), at most ``attrs["arena_bytes"]`` (the arena; equal at the
    peak unless the placement leaves a gap). "paper": the steps of
    :func:`tinyopt.mixed.lifetimes.mem_graph`, every tensor whole from its writer to its last
    reader (pads and pools included: each holds its input and its output).

    Arguments:
        model, policy, softmax, fuse_pool, accounting: as :func:`report`.

    Returns:
        DataFrame: step, output (tensor written), output_bits, output_bytes, live_bytes, live
        (the tensors alive, comma-separated); ``attrs["accounting"]``, and with "device"
        ``attrs["arena_bytes"]``.

    Raises:
        ValueError: as :func:`report`.
    """
    if accounting_of(model, accounting) == "device":
        steps, mem, _, held = device_plan(model, policy, softmax, fuse_pool)
        df = pd.DataFrame([{"step": s.name, "output": s.output, "output_bits": s.out_bits,
                            "output_bytes": s.out_bytes, "live_bytes": held[i],
                            "live": ",".join(m.name for b in mem.buffers for m in b.members
                                             if m.first <= i <= m.last)}
                           for i, s in enumerate(steps)])
        df.attrs["accounting"], df.attrs["arena_bytes"] = "device", int(mem.arena_bytes)
        return df
    g = mem_graph(model, softmax, fuse_pool)
    _check(g.nodes, policy)
    act = dict(zip(policy.layers, policy.act_bits))
    bits, life = g.bits(act), g.lifetimes()
    live = g.live_bytes(act)
    df = pd.DataFrame([{"step": name, "output": out, "output_bits": bits[out],
                        "output_bytes": packed_bytes(g.tensors[out].elements, bits[out]),
                        "live_bytes": live[i],
                        "live": ",".join(t for t, (a, b) in life.items() if a <= i <= b)}
                       for i, (name, _, out) in enumerate(g.steps)])
    df.attrs["accounting"] = "paper"
    return df


def deployed_param_bytes(model, policy: Policy, softmax: str = "int8") -> int:
    """The parameter bytes the C export stores for ``model`` under ``policy``
    (:func:`tinyopt.deploy.codegen.export_c`'s ``param_bytes``): per compute layer the packed
    weights with every row starting on a byte (conv and dense: a row per output channel;
    depthwise: a row per tap), the weight zero points (one, or one per channel for PC), the int32
    bias, and (m0 int32, n0 int8) once for a per-layer FB layer or a PL logits layer, else per
    channel; 15 bytes per residual add, 5 per requantization (the softmax head's move to int8,
    every input of a concatenation: an upper bound, as :func:`tinyopt.mixed.lifetimes.mem_graph`)
    and 5 for the softmax. Step descriptors and code are not parameters.

    Raises:
        ValueError: as :func:`report`.
    """
    g = mem_graph(model, softmax)
    _check(g.nodes, policy)
    kinds = {t.layer: t.kind for t in g.tensors.values() if t.layer is not None}
    total = 0
    for i, node in enumerate(g.nodes):
        c, bits = node.out_channels, policy.weight_bits[i]
        per_row = node.weight_elements // c
        rows, row = (per_row, c) if node.kind == "depthwise" else (c, per_row)
        total += rows * packed_bytes(row, bits)
        total += c if policy.granularity == "PC" else 1  # weight zero points
        total += 4 * c  # bias
        kept_bn = node.bn and policy.fold[i] == "ICN"
        if kinds.get(node.name) == "logits":
            one = policy.granularity == "PL" and not kept_bn  # raw accumulator: m0 = n0 = 0
        else:
            one = policy.granularity == "PL" and policy.fold[i] == "FB" and not kept_bn
        total += 5 if one else 5 * c
    extra = {"add": 15, "quantize": 5, "softmax": 5, "mul": 5}  # their multipliers
    return total + sum(extra.get(g.kinds[name], 0) for name, _, _ in g.steps)


def flash_bytes(model, policy: Policy) -> int:
    """Total flash bytes: packed weights + extras over all nodes (see :func:`report`).

    Raises:
        ValueError: as :func:`report`.
    """
    # the rows' flash bytes are the same under either accounting; "paper" skips the device
    # plan (a skeleton graph and a memory-plan search) whose arena this would throw away
    return int(report(model, policy, accounting="paper")["flash_bytes"].sum())


def peak_ram_bytes(model, policy: Policy, softmax: str = "int8", fuse_pool: bool = True,
                   accounting: str | None = None) -> int:
    """Peak activation RAM (module docstring).

    "device" (the default for a Keras model): the arena of the plan the C export builds by
    default for the integer graph of ``policy`` (:func:`device_plan`), kernel scratch included
    once the planner places it: the RAM the device uses for tensors. "paper" (the default for
    a list of :class:`Node`): for chains the largest input + output of a node (the paper's
    rule) or of a pad / pool / softmax step, whichever is larger; for other graphs the largest
    sum of tensors alive at one step; never below the arena of the C export with
    ``overlap=False, fuse_add=False`` and the same ``fuse_pool``.

    Arguments:
        model, policy, softmax, fuse_pool, accounting: as :func:`report`.

    Raises:
        ValueError: as :func:`report`.
    """
    if accounting_of(model, accounting) == "device":
        return int(device_plan(model, policy, softmax, fuse_pool)[1].arena_bytes)
    return int(report(model, policy, softmax, fuse_pool, "paper").attrs["peak_ram_bytes"])


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

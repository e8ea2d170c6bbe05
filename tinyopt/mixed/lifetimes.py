"""Tensor lifetimes of a deployed network: the tensors the C export stores and the steps that
write and read them, in its execution order (:func:`mem_graph`). The memory model
(:mod:`tinyopt.mixed.memory`) sums the bytes alive at each step; the memory-driven policy
(:mod:`tinyopt.mixed.search`) cuts the tensors alive at the peak."""

from __future__ import annotations

from dataclasses import dataclass

from tinyopt.integer.arith import packed_bytes
from tinyopt.mixed import dag
from tinyopt.mixed.nodes import _nodes_of, _prod, nodes
from tinyopt.mixed.policy import INPUT_BITS

LOGIT_BITS = 32  # a network ending in a linear layer writes int32 logits (as deployed)


@dataclass
class MemTensor:
    """A tensor the deployed network stores. ``kind``: "input" (8-bit image), "act" (the output
    of policy layer ``layer``, at its act bits), "logits" (int32), "int8" (8 bits, fixed: the
    softmax head's logits and output), "derived" (bits = the largest of ``sources``' bits: add,
    concat, pool, pad and up-sampling outputs)."""

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
    kinds: dict  # step name -> compute, add, concat, quantize, softmax, pool, pad

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

    def uncovered_steps(self) -> list[int]:
        """Indices of the steps the paper's per-node chain rule (input + output of a policy
        layer) does not cover: pads, pools, the softmax head's steps, requantizations. A step
        that writes a new tensor needs its input(s) and its output at once whatever its kind, so
        for a chain the peak is the larger of the chain rule and the live bytes of these steps
        (a policy layer's own step holds exactly its input and output, or less when a max pool
        is fused into it, so the chain rule covers it)."""
        return [i for i, (name, _, _) in enumerate(self.steps) if self.kinds[name] != "compute"]

    def uncovered_peak(self, act_bits: dict) -> tuple[int, int | None]:
        """(largest bytes alive at an :meth:`uncovered_steps` step, that step's index), or
        (0, None) when there is none (a list of :class:`~tinyopt.mixed.nodes.Node`: the paper's
        accounting alone)."""
        steps = self.uncovered_steps()
        if not steps:
            return 0, None
        live = self.live_bytes(act_bits)
        at = max(steps, key=lambda i: (live[i], -i))
        return live[at], at


def mem_graph(model, softmax: str = "int8", fuse_pool: bool = True) -> MemGraph:
    """The tensors and steps of ``model`` as :func:`tinyopt.icn.convert` lowers it and the C
    export runs it with ``overlap=False, fuse_add=False`` (every tensor whole from the step
    writing it to its last reader; :func:`tinyopt.integer.steps.memory_plan`): Keras layer order;
    flatten / reshape / dropout are aliases (no step, as the export's flatten / reshape nodes);
    every other layer is a step writing a new tensor (pads, pools, the global average pool,
    nearest up-sampling); a policy layer (compute, standalone BN, transposed convolution) writes
    its output at its act bits (int32 logits at the output, 8 bits before a softmax head);
    with ``fuse_pool`` a compute layer read only by a max pool is fused with it (the export's
    ``fuse_pool=True``: the un-pooled tensor is never stored); a concatenation first
    requantizes every input (a QUANTIZE step each: an upper bound, an input already on the
    output grid is copied directly); the int8 softmax head is two steps (the logits moved to
    int8, then the softmax).

    Arguments:
        model: a ``tf_keras`` model or a list of :class:`Node` (a chain).
        softmax: "int8" or "logits", as :func:`tinyopt.qat.quantize_mixed`.
        fuse_pool: as the C export's ``fuse_pool`` (False: the compute layer's output and the
            max pool's output are two tensors, the pool a step of its own).

    Raises:
        ValueError: a layer the sub-byte flow cannot take (:func:`tinyopt.mixed.dag.blocks`),
            an unknown ``softmax``.
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
        return MemGraph(tensors, steps, node_list, True, {n.name: "compute" for n in node_list})
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
    steps, fused, kinds = [], {}, {}
    for b in block_list:
        ins = [alias[s] for s in b.inputs]
        elements = _prod(b.out_shape)
        if b.op in ("flatten", "reshape", "dropout"):
            alias[b.name] = ins[0]
            continue
        if b.is_policy_layer:  # compute, bn, transpose_conv: a tensor at its own act bits
            readers = cons.get(b.name, [])
            head = any(by_name[r].op == "softmax" for r in readers)
            if b.activation is None and not head and dag.reaches_output(b.name, cons, by_name,
                                                                        out_name):
                kind = "logits"
            else:
                kind = "int8" if head else "act"
            # the export fuses a max pool into a convolution / dense step (passes.py), never
            # into a transposed convolution
            if (fuse_pool and len(readers) == 1 and by_name[readers[0]].op == "maxpool"
                    and b.name != out_name and kind == "act" and b.op != "transpose_conv"):
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
            kinds[f"{b.name}_int8"] = "quantize"
            ins = [f"{b.name}_int8"]
            tensors[b.name] = MemTensor(b.name, elements, "int8")
        elif b.op == "concat":
            moved = []
            for k, t in enumerate(ins):
                name = f"{b.name}_{k}"
                tensors[name] = MemTensor(name, tensors[t].elements, "derived", sources=tuple(ins))
                steps.append((name, (t,), name))
                kinds[name] = "quantize"
                moved.append(name)
            ins = moved
            tensors[b.name] = MemTensor(b.name, elements, "derived", sources=tuple(ins))
        else:  # add, avgpool, gap, pad, maxpool, upsample, activation (a registry op)
            tensors[b.name] = MemTensor(b.name, elements, "derived", sources=tuple(ins))
        alias[b.name] = b.name
        steps.append((b.name, tuple(ins), b.name))
        kinds[b.name] = {"bn": "compute", "transpose_conv": "compute",
                         "maxpool": "compute" if b.name in fused else "pool",
                         "avgpool": "pool", "gap": "pool"}.get(b.op, b.op)
    return MemGraph(tensors, steps, _nodes_of(block_list), chain, kinds)

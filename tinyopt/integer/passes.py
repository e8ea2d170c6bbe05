"""Rewrites of the integer graph matched in one place, used by the simulator and the C export
alike (as hls4ml's optimizer passes: a match, then what the users do with it).

- :func:`max_pool_fusions`: a compute node whose only reader is a max pool (and whose output is
  no graph output) runs with the pool: the C writes only the pooled tensor
  (:func:`tinyopt.integer.steps.memory_plan`), the simulator pools the accumulators before
  requantizing when that is exact (:mod:`tinyopt.integer.sim`).
- :func:`add_fusion`: a compute node whose only reader is an ADD whose other addend is already
  computed forms the sum as it writes its output (a residual block needs no third buffer).

The sub-byte path's rewrites (BN folding, ReLU and pad folding) happen before the integer graph
exists, while lowering the fake-quant model (:mod:`tinyopt.mixed.lower`).
"""

from __future__ import annotations

from tinyopt.integer.graph import IntegerGraph
from tinyopt.integer.ops.registry import REGISTRY


def _only_reader(graph: IntegerGraph, i: int, consumers: dict, outputs: set):
    """(reader index, its layer) when node i is a compute node with exactly one reader and its
    output is not a graph output; else None."""
    layer = graph.layers[i]
    if not REGISTRY[layer.kind].compute:
        return None
    out = graph.wiring()[i][1][0]
    readers = consumers.get(out, [])
    if out in outputs or len(readers) != 1:
        return None
    return readers[0], graph.layers[readers[0]]


def max_pool_fusions(graph: IntegerGraph) -> dict[int, int]:
    """Compute node index -> the index of the max pool that is its only reader (its output not a
    graph output)."""
    consumers, outputs = graph.consumers(), set(graph.output_names())
    fused = {}
    for i in range(len(graph.layers)):
        match = _only_reader(graph, i, consumers, outputs)
        if match is not None and match[1].kind == "maxpool":
            fused[i] = match[0]
    return fused


def add_fusion(graph: IntegerGraph, i: int, produced: set, consumers: dict,
               outputs: set, wiring: list) -> tuple[int, int, str] | None:
    """Can compute node i form the residual sum of the ADD that reads it?

    Arguments:
        graph: the graph; i: the node's index.
        produced: tensors already written when node i runs (its execution order).
        consumers, outputs, wiring: ``graph.consumers()``, the output names, ``graph.wiring()``.

    Returns:
        (ADD index, the slot of node i's output among the ADD's inputs, the other addend's
        tensor) when the ADD is node i's only reader and the other addend is already computed;
        else None.
    """
    match = _only_reader(graph, i, consumers, outputs)
    if match is None or match[1].kind != "add":
        return None
    out = wiring[i][1][0]
    addends = wiring[match[0]][0]
    slot = addends.index(out)
    other = addends[1 - slot]
    if other == out or other not in produced:
        return None
    return match[0], slot, other

"""The registry of op kinds: one :class:`OpKind` record per node kind of the integer graph, each
filled in by the one module of :mod:`tinyopt.integer.ops` that defines the op.

A record says what the op is at every stage, so the stages are loops over the registry instead
of if-ladders over kind names:

- the IR: how many inputs and (m0, n0) pairs a node holds, whether it carries weights, whether
  it keeps its input's quantization, and its own field checks (:meth:`IntegerGraph.validate`);
- the importer: the TFLite operators it is read from, each with its builder and its rounding
  per flavour (:func:`tinyopt.integer.from_litert.graph_from_tflite`);
- the simulator: ``prepare`` (constants computed once per run) and ``simulate`` (one batch of
  inputs -> int32 codes), :func:`tinyopt.integer.sim.run`;
- the deployed step: a kernel call or an alias of its input (reshapes), which inputs the kernel
  may overwrite (in place), the portable C entry point and, for ops added after the C library,
  the op's own C file; what the C kernel accepts (``check_c``) and the descriptor fields it
  reads (``c_fields``), :mod:`tinyopt.integer.steps` and :mod:`tinyopt.deploy.codegen`;
- its cost: multiply-accumulates per image (``macs``).

One name per op: ``OpKind.name`` is ``IntegerLayer.kind``, the ``tn_run_<name>``-style C entry
point is named by the record, and tables and reports print the same name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

FLAVOURS = ("litert", "tflm")


@dataclass(frozen=True)
class TFLiteOp:
    """How one TFLite builtin operator becomes integer-graph nodes.

    Arguments:
        build: ``(ctx, op, op_name) -> list[IntegerLayer]`` (``ctx``: the importer's state,
            :class:`tinyopt.integer.tflite_ctx.ImportContext`).
        rounding: flavour ("litert", "tflm") -> the requantization flavour of the nodes it
            builds; empty for operators that do not requantize.
    """

    build: Callable
    rounding: dict = field(default_factory=dict)


@dataclass(frozen=True)
class OpKind:
    """Everything tinyopt knows about one node kind (see the module docstring).

    Arguments:
        name: the kind, as ``IntegerLayer.kind`` spells it.
        summary: one line for tables and ``tinyopt supported-ops``.
        n_inputs: input tensors a node reads (None: two or more).
        n_multipliers: (m0, n0) pairs a non-compute node holds (0: none; compute kinds hold one
            per layer or per channel).
        compute: weights, bias and per-channel multipliers (conv, depthwise, dense).
        same_quantization: output bits, signedness and zero point equal the input's.
        check: ``(layer, where) -> None``, raising ValueError naming ``where`` and the field;
            the op's own field checks after the common ones.
        check_inputs: ``(layer, where, input_tensors) -> None``: checks against the tensors
            the node reads (shapes of an add, a concat).
        prepare: ``(prepared) -> None``: per-run constants on the simulator's prepared node.
        simulate: ``(prepared, inputs, wrap) -> int32 codes``: the bit-exact definition.
        tflite: TFLite builtin name -> :class:`TFLiteOp`.
        alias: a deployed node that is no kernel call: its output is its input's bytes.
        inplace_inputs: inputs the kernel may overwrite (it reads element i before writing it).
        c_function: the portable C kernel's entry point (same signature as ``tn_run``).
        c_source: the op's own C file under ``tinyopt/deploy/c/ops/`` (None: in tinyopt_nn.c).
        check_c: ``(layer, rounding, where) -> None``: what the C kernel cannot run.
        c_fields: ``(layer, arrays) -> dict`` of descriptor fields (C initialisers) beyond the
            common ones; ``arrays`` is a callback ``(ctype, values) -> C name`` that emits a
            constant array.
        macs: ``(layer) -> int`` multiply-accumulates per image.
    """

    name: str
    summary: str
    n_inputs: int | None = 1
    n_multipliers: int = 0
    compute: bool = False
    same_quantization: bool = False
    check: Callable | None = None
    check_inputs: Callable | None = None
    prepare: Callable | None = None
    simulate: Callable | None = None
    tflite: dict = field(default_factory=dict)
    alias: bool = False
    inplace_inputs: tuple = ()
    c_function: str | None = None
    c_source: str | None = None
    check_c: Callable | None = None
    c_fields: Callable | None = None
    macs: Callable | None = None


REGISTRY: dict[str, OpKind] = {}


def register(*ops: OpKind) -> None:
    """Add op kinds to the registry (each op module calls this once at import).

    Raises:
        ValueError: a kind or a TFLite operator registered twice, or a record without a
            simulation, or a C source name that is not a plain file name.
    """
    for op in ops:
        if op.name in REGISTRY:
            raise ValueError(f"op kind {op.name!r} is registered twice")
        if op.simulate is None:
            raise ValueError(f"op kind {op.name!r} has no simulate function")
        if op.c_source is not None and ("/" in op.c_source or not op.c_source.endswith(".c")):
            raise ValueError(f"op kind {op.name!r}: c_source must be a .c file name")
        taken = {t: k.name for k in REGISTRY.values() for t in k.tflite}
        for t in op.tflite:
            if t in taken:
                raise ValueError(f"TFLite op {t} is imported by both {taken[t]!r} and "
                                 f"{op.name!r}")
        REGISTRY[op.name] = op


def get(kind: str) -> OpKind:
    """The record of ``kind``.

    Raises:
        ValueError: an unknown kind, listing the known ones.
    """
    try:
        return REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown op kind {kind!r}; known kinds: {sorted(REGISTRY)}") from None

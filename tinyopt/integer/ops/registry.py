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
- its Cortex-M7 twin (``m7_*``, optional): the same arithmetic written for the M7's DSP
  instructions in ``tinyopt/deploy/c/ops/m7/`` under the portable file's name (TFLite Micro's
  ``kernels/cmsis_nn/`` convention), which steps it takes and the arena scratch it needs; the
  ``kernels="m7"`` export calls it where it takes the step, the portable kernel elsewhere;
- its cost: multiply-accumulates per image (``macs``);
- the sub-byte Keras path (``keras``, a :class:`KerasPattern`): the float Keras layers it is
  read from, its float function, its output range and its integer form at given input and
  output quantizations (:mod:`tinyopt.mixed` loops over these; duck-typed, no TensorFlow here).

One name per op: ``OpKind.name`` is ``IntegerLayer.kind``, the ``tn_run_<name>``-style C entry
point is named by the record, and tables and reports print the same name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

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
class KerasPattern:
    """How an element-wise op is read from a float Keras model and lowered in the sub-byte path
    (:mod:`tinyopt.mixed`). Every hook is duck-typed: it receives Keras layer objects, a tensor
    module or numbers, never imports TensorFlow or :mod:`tinyopt.mixed` (the layering).

    Arguments:
        match: ``(layer, only_reader) -> list[str] | None``: the names of the float Keras
            layers this op stands for, starting at ``layer`` (its output is the last one's),
            or None when ``layer`` does not start the pattern. ``only_reader(name)`` is the
            Keras layer that alone reads layer ``name``'s output (None when several or none, or
            when it is the model output): a pattern spanning several layers must own every
            intermediate tensor. Matched on class names and configs.
        config: ``(layer) -> dict``: the op's JSON-serialisable settings read from the first
            matched layer (LeakyReLU's ``alpha``); passed to ``float_fn`` and ``lower``.
        float_fn: ``(xp, x, config) -> y``: the float function, written with ``xp.maximum``,
            ``xp.minimum``, ``xp.where``, ``xp.exp`` and arithmetic only, so ``xp`` may be
            ``tensorflow`` (the fake-quant layer) or ``numpy`` on float32 (the lookup table:
            the same IEEE float32 operations, so the table reproduces the fake-quant layer; an
            ``exp`` may differ by one float32 step between the two, so a sigmoid's table is
            within 1 LSB of it on rare ties).
        signed: the output quantizer is signed (codes in [-2^(Q-1), 2^(Q-1) - 1], a learned
            clip alpha, scale alpha / 2^(Q-1), stored with zero point 2^(Q-1)); False with
            ``out_range`` None: unsigned with a learned clip (scale alpha / (2^Q - 1)).
        out_range: a fixed output range (lo, hi) instead of a learned clip: (0, 1) for a
            sigmoid, scale hi / 2^Q, zero point 0 (TFLite's 1/256 at 8 bits); None: learned.
        lower: ``(name, in_q, out_q, config) -> list[dict]``: the integer nodes of the op at
            the input and output quantizations ``in_q`` / ``out_q`` (dicts ``bits``, ``scale``,
            ``zero_point``, ``signed``: the stored codes' signedness), as dicts of
            :class:`~tinyopt.integer.graph.IntegerLayer` fields (``kind``, ``name``, ``in_*`` /
            ``out_*`` grid fields, ``m0``, ``n0``, ``table``, ``rounding``) run one after the
            other (the caller wires them and sets the shapes); the last is named ``name``.
            Raises ValueError naming ``name`` and the fix for a quantization it cannot run.
        rounding: how the fake-quant output quantizer rounds y / S: "round" (to nearest, ties
            to even, as TFLite's kernels within 1 LSB and :func:`lookup_table` exactly).
        layer_activations: the names of Keras activation functions (``layer.activation.__name__``,
            e.g. "sigmoid", "swish", "silu") that, given inside a compute layer
            (``Conv2D(..., activation="swish")``), mean this op: the sub-byte path reads such a
            layer as the linear layer followed by this op. Empty: the op is never split off a
            compute layer (its activation there is refused as unsupported).
    """

    match: Callable
    float_fn: Callable
    lower: Callable
    config: Callable | None = None
    signed: bool = True
    out_range: tuple | None = None
    rounding: str = "round"
    layer_activations: tuple = ()


def grid_fields(prefix: str, q: dict) -> dict:
    """IntegerLayer ``in_*`` / ``out_*`` fields of a quantization dict (``bits``, ``scale``,
    ``zero_point``, ``signed``)."""
    return {f"{prefix}_bits": int(q["bits"]), f"{prefix}_scale": float(q["scale"]),
            f"{prefix}_zero_point": int(q["zero_point"]),
            f"{prefix}_signed": bool(q.get("signed", False))}


def output_codes(pattern: KerasPattern, y: np.ndarray, out_q: dict) -> np.ndarray:
    """The stored output codes of float32 values ``y`` under ``pattern``'s output quantizer at
    ``out_q`` (NumPy mirror of the fake-quant layer's forward pass: round half to even of
    y / S in float32, clamped to the signed or unsigned code range, plus the zero point)."""
    bits = int(out_q["bits"])
    y = np.asarray(y, np.float32)
    codes = np.round(y / np.float32(out_q["scale"]))
    if pattern.signed and pattern.out_range is None:
        half = 2 ** (bits - 1)
        codes = np.clip(codes, -half, half - 1) + half
    else:
        codes = np.clip(codes, 0, 2 ** bits - 1)
    return codes.astype(np.int64)


def table_node(kind: str, pattern: KerasPattern, name: str, in_q: dict, out_q: dict,
               config: dict) -> list[dict]:
    """The one node of a table-only op (swish, hard_sigmoid) at any width: its
    :func:`lookup_table` on the grids.

    Raises:
        ValueError: a quantization the table cannot hold (more than 8 bits), naming the layer
            ``name``, the op and the fix.
    """
    try:
        table = lookup_table(pattern, in_q, out_q, config)
    except ValueError as exc:
        raise ValueError(f"layer {name!r} ({kind}): {exc}; quantize its input and output with "
                         "at most 8 bits") from None
    return [{"kind": kind, "name": name, **grid_fields("in", in_q),
             **grid_fields("out", out_q), "table": table}]


def lookup_table(pattern: KerasPattern, in_q: dict, out_q: dict, config: dict) -> np.ndarray:
    """The ``2^in_bits``-entry table of an element-wise op at the given quantizations: entry
    ``c`` (a stored input code, unsigned) is the stored output code of the real input
    ``S_in (c - Z_in)`` (float32, as the fake-quant model holds it) through ``float_fn`` (float32)
    and the output quantizer (:func:`output_codes`), as a byte. What the simulator and the C run
    are then exactly the fake-quant layer.

    Raises:
        ValueError: signed (two's complement) stored codes or more than 8 bits.
    """
    bits = int(in_q["bits"])
    if bool(in_q.get("signed", False)) or bool(out_q.get("signed", False)) or bits > 8 \
            or int(out_q["bits"]) > 8:
        raise ValueError("a lookup table maps unsigned stored codes of at most 8 bits, got "
                         f"in {in_q}, out {out_q}")
    codes = np.arange(2 ** bits, dtype=np.int64)
    x = np.float32(in_q["scale"]) * (codes - int(in_q["zero_point"])).astype(np.float32)
    y = pattern.float_fn(np, x, config)
    return output_codes(pattern, y, out_q).astype(np.uint8)


def table_lookup(table, codes, in_bits: int) -> np.ndarray:
    """Entries of ``table`` at stored input codes ``codes`` (masked to ``in_bits`` bits, so an
    int8 code indexes by its byte), as int32."""
    table = np.asarray(table, np.uint8).astype(np.int32)
    return table[np.asarray(codes, np.int64) & ((1 << int(in_bits)) - 1)]


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
        keras: a :class:`KerasPattern` when the sub-byte Keras path can read and lower the op
            (element-wise ops: one fake-quant ``QuantActivation`` layer, one block of the
            memory model), else None.
        m7_source: the op's Cortex-M7 twin, a C file of ``tinyopt/deploy/c/ops/m7/`` (by
            convention named as ``c_source``), or None (the portable kernel everywhere).
        m7_function: the twin's entry point, ``void tn_m7_run_<op>(const tn_layer_t *l,
            const uint8_t *const *in, uint8_t *out, uint8_t *scratch)`` (``scratch``: the
            step's word-aligned arena scratch of ``m7_scratch`` bytes, NULL when 0).
        m7_check: ``(step) -> str``: "" when the twin runs the deployed step
            (:class:`tinyopt.integer.steps.Step`: its layer, input tensors, graph rounding),
            else why the step keeps the portable kernel (reported, never an error). None: the
            twin takes every step the portable kernel takes.
        m7_scratch: ``(step) -> int``: bytes of arena scratch the twin needs on ``step`` (the
            memory plan reserves them during the step); None: 0.
        m7_fields: ``(step, arrays) -> dict`` of descriptor fields when the twin runs the
            step, applied after ``c_fields``' (e.g. weights in the order the twin reads them);
            None: ``c_fields``' alone.
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
    keras: KerasPattern | None = None
    m7_source: str | None = None
    m7_function: str | None = None
    m7_check: Callable | None = None
    m7_scratch: Callable | None = None
    m7_fields: Callable | None = None


REGISTRY: dict[str, OpKind] = {}


def register(*ops: OpKind) -> None:
    """Add op kinds to the registry (each op module calls this once at import).

    Raises:
        ValueError: a kind or a TFLite operator registered twice, or a record without a
            simulation, or a C source name that is not a plain file name (or starts with
            ``m7_``), or an M7 twin without its entry point or without a portable kernel, or
            on a compute or pool kind.
    """
    for op in ops:
        if op.name in REGISTRY:
            raise ValueError(f"op kind {op.name!r} is registered twice")
        if op.simulate is None:
            raise ValueError(f"op kind {op.name!r} has no simulate function")
        for what in ("c_source", "m7_source"):
            src = getattr(op, what)
            if src is not None and ("/" in src or "\\" in src or not src.endswith(".c")):
                raise ValueError(f"op kind {op.name!r}: {what} must be a .c file name")
        if (op.m7_source is None) != (op.m7_function is None):
            raise ValueError(f"op kind {op.name!r}: an M7 twin needs both m7_source and "
                             "m7_function")
        if op.c_source is not None and op.c_source.startswith("m7_"):
            raise ValueError(f"op kind {op.name!r}: c_source must not start with 'm7_' (the "
                             "export's name of an M7 twin's file)")
        if op.m7_function is not None and (op.compute or op.c_function == "tn_run_pool"):
            raise ValueError(f"op kind {op.name!r}: an M7 twin of a compute layer or a pool is "
                             "not supported (their steps fuse a pool or an ADD and carry the "
                             "compute descriptor); add a kernel to tinyopt/deploy/kernels_m7/")
        if op.m7_function is not None and op.c_function is None:
            raise ValueError(f"op kind {op.name!r}: an M7 twin needs the portable kernel "
                             "(c_function) beside it")
        taken = {t: k.name for k in REGISTRY.values() for t in k.tflite}
        for t in op.tflite:
            if t in taken:
                raise ValueError(f"TFLite op {t} is imported by both {taken[t]!r} and "
                                 f"{op.name!r}")
        REGISTRY[op.name] = op


def match_keras(layer, only_reader) -> tuple[OpKind, list[str]] | None:
    """The registered op whose :class:`KerasPattern` matches the float Keras ``layer`` (the
    sub-byte path's block reader asks this for layers it does not know), with the names of the
    layers it stands for; None when no op matches."""
    for op in REGISTRY.values():
        if op.keras is not None:
            members = op.keras.match(layer, only_reader)
            if members:
                return op, list(members)
    return None


def add_tflite(kind: str, builtin: str, imp: TFLiteOp) -> None:
    """Import TFLite operator ``builtin`` into the registered ``kind`` (an operator that is
    another kind's arithmetic: TFLite's RELU is a QUANTIZE with a narrower clamp).

    Raises:
        ValueError: an unknown kind, or an operator some kind imports already.
    """
    taken = {t: k.name for k in REGISTRY.values() for t in k.tflite}
    if builtin in taken:
        raise ValueError(f"TFLite op {builtin} is imported by {taken[builtin]!r} already")
    get(kind).tflite[builtin] = imp


def get(kind: str) -> OpKind:
    """The record of ``kind``.

    Raises:
        ValueError: an unknown kind, listing the known ones.
    """
    try:
        return REGISTRY[kind]
    except KeyError:
        raise ValueError(f"unknown op kind {kind!r}; known kinds: {sorted(REGISTRY)}") from None

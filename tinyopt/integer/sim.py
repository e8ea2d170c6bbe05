"""A bit-exact integer simulator for :class:`tinyopt.integer.graph.IntegerGraph`, and its LiteRT
entry.

- :func:`run` computes, for a batch of integer inputs, exactly what the integer-only kernels
  compute, node by node in a topological order. What each node computes is defined by its op's
  module (:mod:`tinyopt.integer.ops`: ``simulate``, one module per kind; :data:`HANDLERS` is the
  registry's view kind -> function): for compute layers the exact accumulators Phi = bias +
  sum (W - Z_w)(X - Z_x) (int32 wrap-around emulated on request), then the requantization
  flavour (``layer.rounding``, default ``graph.rounding``), zero point and clamp. The flavours
  and TFLite's fixed point are in :mod:`tinyopt.integer.fixedpoint` (re-exported here:
  :func:`requant_floor`, :func:`requant_tflite_double`, :func:`requant_tflite_single`,
  :func:`softmax_int8`, ...).
- :func:`run_tflite` runs a full-int8 ``.tflite`` through
  :func:`tinyopt.integer.from_litert.graph_from_tflite` (flavour "litert": LiteRT's reference
  kernels; "tflm": TensorFlow Lite Micro / CMSIS-NN).

Two engines, the same bits. ``run(..., engine="reference")`` is this module's numpy, the
readable definition of the arithmetic (and what generated C is checked against). The default
``engine="fast"`` runs every convolution, depthwise, dense and ADD node that it can prove exact
through the C kernels of :mod:`tinyopt.integer.sim_fast` (compiled once with the host compiler):
numpy cannot fuse the int64 requantization's dozen passes, and BLAS runs the skinny products of
these networks far below peak, while one C pass per layer (AVX-512 VNNI byte products, then the
flavour's int64 requantization vectorized over channels) is about ten times faster and makes the
simulator at least as fast as LiteRT's builtin kernels on the MLPerf Tiny models
(benchmarks/bench_sim_mlperf.py). Every other node, every node without the static no-overflow
proof (so ``wrap32`` and OverflowError are untouched), and every node when no C compiler works
runs on the reference engine. tests/test_sim_fast.py checks both engines bit for bit.

Exactness of the matrix products: see :mod:`tinyopt.integer.ops.compute`.

Max-pool fusion (speed, exact). Every flavour's requantization is monotone non-decreasing in Phi
when m0 >= 0 and nothing overflows, and so are the bias add and the clamp; therefore
maxpool(requant(Phi)) = requant(maxpool(Phi)). Without ``trace`` and ``wrap32``, a compute layer
followed by a max pool is evaluated in that order when all its m0 >= 0 and int32 overflow is
excluded (statically from the bounds, or by checking every accumulator before pooling). Which
pools are fused is the pass :func:`tinyopt.integer.passes.max_pool_fusions`, the same the C
export uses.
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer import ops, passes, sim_fast
from tinyopt.integer.arith import quantize_real
# The arithmetic is defined in fixedpoint (shared with the ops); re-exported here, where readers
# of the simulator look for it.
from tinyopt.integer.fixedpoint import (INT32_MAX, INT32_MIN, REQUANT,  # noqa: F401
                                        exact_float_dtype, exp_on_negative_values_q5_26,
                                        max_left_shift, one_over_one_plus_x_q0_31,
                                        requant_floor, requant_tflite_double,
                                        requant_tflite_single, rounding_divide_by_pot,
                                        saturating_left_shift, softmax_int8, srdhm, value_range)
from tinyopt.integer.fixedpoint import wrap32 as wrap32  # noqa: F401,F811 (run's argument too)
from tinyopt.integer.from_litert import graph_from_tflite
from tinyopt.integer.graph import IntegerGraph, IntegerLayer
from tinyopt.integer.ops.compute import accumulate, finish
from tinyopt.integer.ops.pool import pool_windows

_value_range = value_range  # the name tests and sim_fast used

class _Prepared:
    """A node ready to run: its layer, flavour, input zero points, and what its op's ``prepare``
    adds (compute layers: centered weights, bias, ``safe32``, ``monotone``)."""

    def __init__(self, layer: IntegerLayer, rounding: str):
        self.layer = layer
        self.rounding = layer.rounding or rounding
        self.monotone = False
        self.zero_points = [layer.in_zero_point]
        self.op = ops.get(layer.kind)
        if self.op.prepare is not None:
            self.op.prepare(self)


def __getattr__(name: str):
    # HANDLERS (kind -> simulate function) is a view of the op registry, so an op module added to
    # tinyopt.integer.ops runs here without an edit.
    if name == "HANDLERS":
        return _handlers()
    raise AttributeError(name)


def _handlers() -> dict:
    return {kind: op.simulate for kind, op in ops.REGISTRY.items()}


def _plan(graph: IntegerGraph) -> list[tuple]:
    """Execution plan: per node in topological order (prepared node, input names, output name,
    tensors to free afterwards, fused max pool index or None)."""
    wiring = graph.wiring()
    order = graph.order()
    outputs = set(graph.output_names())
    prepared = {}
    for i in order:
        layer = graph.layers[i]
        p = _Prepared(layer, graph.rounding)
        p.zero_points = [graph.tensor(t).zero_point for t in wiring[i][0]]
        prepared[i] = p
    last_use = {}
    for step, i in enumerate(order):
        for t in wiring[i][0]:
            last_use[t] = step
    plan = []
    for step, i in enumerate(order):
        ins, outs = wiring[i]
        free = [t for t in set(ins) if last_use[t] == step and t not in outputs]
        plan.append((prepared[i], ins, outs[0], free, i))
    # max-pool fusion (the pass shared with the C export), where the requantization is monotone
    fuse = {i: j for i, j in passes.max_pool_fusions(graph).items() if prepared[i].monotone}
    return plan, fuse


def _forward(graph_plan, x: np.ndarray, input_name: str, output_names: list, wrap: bool,
             trace: dict | None) -> list:
    """One chunk through the graph; fills ``trace`` (node name -> list of chunks) when given."""
    plan, fuse = graph_plan
    values = {input_name: x}
    skip = set()
    for p, ins, out, free, i in plan:
        if i in skip:
            continue
        layer = p.layer
        xs = [values[t] for t in ins]
        if trace is None and not wrap and i in fuse:
            pool_index = fuse[i]
            pool_p, pool_out = next((q, o) for q, _, o, _, j in plan if j == pool_index)
            acc = accumulate(p, xs[0])
            if not p.safe32:  # every accumulator must be checked before pooling
                finish(p, acc, wrap)
            pooled = pool_windows(pool_p.layer, acc, -np.inf if acc.dtype.kind == "f"
                                  else np.iinfo(acc.dtype).min)
            values[pool_out] = np.clip(finish(p, pooled, wrap), *pool_p.layer.out_range)
            skip.add(pool_index)
        else:
            values[out] = p.op.simulate(p, xs, wrap)
            if trace is not None:
                trace[layer.name].append(values[out])
        for t in free:
            values.pop(t, None)
    return [values[t] for t in output_names]


ENGINES = ("fast", "reference")


def run(graph: IntegerGraph, x: np.ndarray, trace: bool = False, wrap32: bool = False,
        batch_size: int = 256, *, engine: str = "fast", _fast_cache: dict | None = None):
    """Run an IntegerGraph on a batch of integer inputs, bit-exactly, node by node in a
    topological order (one handler per node kind, :data:`HANDLERS`).

    Arguments:
        graph: the graph (validated first).
        x: integer array [N, *graph.input_shape] of input codes in the input's bit range.
        trace: also return every node's integer output.
        wrap32: emulate int32 wrap-around of the accumulators (default: raise OverflowError
            where the 32-bit device arithmetic would wrap).
        batch_size: images per internal chunk (small chunks keep intermediates in cache).
        engine: "fast" (default: the C kernels of :mod:`tinyopt.integer.sim_fast` on every node
            they provably compute exactly, this module's numpy elsewhere and when no C compiler
            works) or "reference" (this module's numpy only: the readable definition, and what
            generated C is checked against). Both give the same bits and raise the same errors.

    Returns:
        int32 array [N, *output shape] of the graph's output (a list of arrays, one per output,
        when the graph has several); with ``trace``, a dict node name -> int32 output of that
        node (in execution order; the last entry is the last node's output).

    Raises:
        TypeError, ValueError: bad input dtype, shape or range; an invalid graph; an unknown
            engine.
        OverflowError: int32 overflow with ``wrap32=False``.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: choose one of {ENGINES}")
    graph.validate()
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"inputs must be integer codes, got {x.dtype}; quantize them first "
                        "(e.g. tinyopt.litert.measure.quantize_input for a TFLite graph)")
    if x.shape[1:] != tuple(graph.input_shape):
        raise ValueError(f"inputs have shape {x.shape[1:]} per image, the graph expects "
                         f"{tuple(graph.input_shape)}")
    lo, hi = _value_range(graph.input_bits, graph.input_signed)
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"input codes span [{x.min()}, {x.max()}], outside the "
                         f"{graph.input_bits}-bit range [{lo}, {hi}]")
    if batch_size < 1 or len(x) == 0:
        raise ValueError(f"need at least one image and batch_size >= 1, got {len(x)} images "
                         f"and batch_size {batch_size}")
    if _fast_cache is not None and engine in _fast_cache:  # run_tflite's parsed model
        graph_plan, fast = _fast_cache[engine]
    else:
        graph_plan = _plan(graph)
        fast = sim_fast.prepare(graph_plan) if engine == "fast" else None
        if _fast_cache is not None:
            _fast_cache[engine] = graph_plan, fast
    names = graph.output_names()
    chunks = {graph.layers[i].name: [] for i in graph.order()} if trace else None
    outputs = []
    for start in range(0, len(x), batch_size):
        chunk = x[start:start + batch_size]
        if fast:
            outputs.append(sim_fast.forward(graph_plan, chunk, graph.input_name, names, wrap32,
                                            chunks, _handlers(), fast))
        else:
            outputs.append(_forward(graph_plan, chunk, graph.input_name, names, wrap32, chunks))
    if trace:
        return {k: np.concatenate(v) for k, v in chunks.items()}
    result = [np.concatenate([chunk[k] for chunk in outputs]) for k in range(len(names))]
    return result[0] if len(result) == 1 else result


def _tflite_input_codes(graph: IntegerGraph, x) -> np.ndarray:
    """``x`` as the int8 input codes of a LiteRT model: int8 arrays are codes; float arrays are
    real values, quantized with the input tensor's scale and zero point after a check that they
    are on that tensor's scale. Anything else is ambiguous (are uint8 values pixels or codes?)
    and refused, so a forgotten preprocessing step cannot pass as codes."""
    x = np.asarray(x)
    s, zp = float(graph.input_scale), int(graph.input_zero_point)
    lo, hi = (-128 - zp) * s, (127 - zp) * s  # the real range the int8 input can represent
    if np.issubdtype(x.dtype, np.floating):
        finite = np.isfinite(x)
        if not finite.all():
            raise ValueError(f"run_tflite: x holds {int((~finite).sum())} NaN/Inf values; every "
                             "input must be finite")
        if x.size:
            vmin, vmax = float(x.min()), float(x.max())
            span = hi - lo
            if vmax > hi + span / 2 or vmin < lo - span / 2:
                hint = ("pixel-scale values (0..255)? Scale them as the model was trained (e.g. "
                        "tinyopt.preprocess_images). " if vmax > 64 and hi < 64 else "")
                raise ValueError(
                    f"run_tflite: x spans [{vmin:g}, {vmax:g}] but the model's int8 input "
                    f"represents [{lo:g}, {hi:g}] (scale {s:g}, zero point {zp}); {hint}Pass real "
                    "values on the model's input scale, or int8 codes as an np.int8 array")
        return quantize_real(x, s, zp, np.int8)
    if x.dtype != np.int8:
        raw = " (raw pixels? tinyopt.load_raw_dataset returns uint8)" if x.dtype == np.uint8 else ""
        raise TypeError(
            f"run_tflite: x has dtype {x.dtype}{raw}; pass real values as a float array (they "
            f"are quantized with the input's scale {s:g} and zero point {zp}, e.g. "
            "tinyopt.preprocess_images output) or int8 input codes as an np.int8 array "
            "(x.astype(np.int8) if they already are codes)")
    return x


_PARSED: dict = {}  # (flatbuffer, flavour) -> (graph, prepared engines), a few recent models
_PARSED_MAX = 8


def _parsed(tflite_bytes: bytes, flavour: str):
    """The graph of a flatbuffer (parsed once per process; the key is the bytes themselves, so
    a different model never hits) and the engines' prepared plans, kept private to run_tflite
    (nothing outside can mutate the cached graph)."""
    key = (bytes(tflite_bytes), flavour)
    if key not in _PARSED:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.pop(next(iter(_PARSED)))
        _PARSED[key] = graph_from_tflite(tflite_bytes, flavour=flavour), {}
    return _PARSED[key]


def run_tflite(tflite_bytes: bytes, x: np.ndarray, trace: bool = False, wrap32: bool = False,
               batch_size: int = 256, *, flavour: str = "litert", engine: str = "fast"):
    """Run a full-int8 LiteRT model with the simulator.

    Arguments:
        tflite_bytes: the flatbuffer.
        x: int8 input codes (an ``np.int8`` array), or model-ready float images (quantized
            with the input tensor's own scale and zero point, as
            :func:`tinyopt.litert.measure.quantize_input`; refused when they lie far outside the
            range that input represents, e.g. 0..255 pixels into a [0, 1] model).
        trace, wrap32, batch_size: as :func:`run`.
        flavour: "litert" (LiteRT's reference kernels, BUILTIN_REF) or "tflm" (TensorFlow Lite
            Micro with CMSIS-NN); see :func:`tinyopt.integer.from_litert.graph_from_tflite`.
        engine: as :func:`run`.

    Returns:
        int8 output codes [N, ...] (with ``trace``: a dict node name -> int8 output).

    Raises:
        TypeError: ``x`` neither float nor int8 (e.g. raw uint8 pixels).
        ValueError: as :func:`graph_from_tflite`, or inputs that do not fit the model (shape,
            NaN/Inf, values on the wrong scale).
    """
    graph, prepared = _parsed(tflite_bytes, flavour)
    x = _tflite_input_codes(graph, x)
    out = run(graph, x, trace=trace, wrap32=wrap32, batch_size=batch_size, engine=engine,
              _fast_cache=prepared)
    if trace:
        return {k: v.astype(np.int8) for k, v in out.items()}
    if isinstance(out, list):
        return [o.astype(np.int8) for o in out]
    return out.astype(np.int8)

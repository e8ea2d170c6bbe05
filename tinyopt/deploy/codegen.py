"""C export of an :class:`tinyopt.integer.graph.IntegerGraph`: portable C99, no malloc, bit-exact
with :mod:`tinyopt.sim`.

:func:`export_c` writes, into one folder:

- ``tinyopt_nn.h`` / ``tinyopt_nn.c``: the kernels (conv / pointwise, depthwise, dense, max and
  average pool; any of 1/2/4/8-bit inputs, outputs and weights, 16/32-bit tensors for raw logits;
  the three requantization flavours of the simulator: ``floor`` (CMix-NN), ``tflite_single``,
  ``tflite_double``; and the DAG nodes add, concat, pad, quantize and TFLite's int8 softmax),
  copied from the package folder ``tinyopt/deploy/c``, with ``tn_arith.h`` (the element
  arithmetic they share with the specialised kernels) and ``tn_m7.h`` (kernels specialised per
  layer for the Cortex-M7's DSP instructions, portable C elsewhere; :mod:`tinyopt.deploy.kernels_m7`
  chooses them per step, ``kernels="m7"``, the default);
- ``model_params.h``: the packed const weights (one byte-aligned row per output channel, or per
  tap for depthwise, exactly :attr:`IntegerLayer.weights`), weight zero points (uint8), biases
  (int32), multipliers m0 (int32) and exponents n0 (int8), and one ``tn_layer_t`` per step;
- ``model.h`` / ``model.c``: ``int model_run(const uint8_t *in, uint8_t *out)``, the static
  activation arena and each step's input and output offsets in it, and the function each step
  calls: a specialised ``model_step<k>`` or the portable kernel of its kind (``tn_run_pool``,
  ...), so only the kernels the model uses are linked.

Steps (:func:`memory_plan`). The graph is a DAG run in a topological order. Flatten / reshape
nodes cost nothing (the packed HWC stream is already flat: the output aliases the input). A
compute layer whose only reader is a max pool is fused with it (``fuse_pool=True``): each pooled
output is the max over its window of the layer's requantized outputs, so the un-pooled tensor is
never stored (exact for any m0 sign; windows that overlap recompute a few outputs). A compute
layer whose only reader is an ADD whose other addend is already computed is fused with it
(``fuse_add=True``): the sum is formed as the layer writes, over the other addend when that dies
there.

Arena (:mod:`tinyopt.integer.memplan`). One static byte array; every tensor, the model input and
output included, at a fixed offset chosen from the tensors' lifetimes: a buffer is reused as soon
as its last reader has run, element-wise steps write in place over an input they are the last
reader of, 8-bit windowed layers slide their output over their input as they read it, and the
smallest of several placement heuristics wins (never more, for a chain, than the two-ended
"ping-pong" arena of ``max over steps (input bytes + output bytes)``). Tensor bytes are
``ceil(n * bits / 8)`` (packed HWC, LSB-first), 4n for int32 logits.

I/O. ``in`` is the packed input tensor (signed int8 inputs: the int8 bytes themselves, i.e. pass
an ``int8_t`` array cast to ``const uint8_t *``); ``out`` receives the packed output tensor
(int8 codes as bytes; int32 logits as 4 little-endian bytes each on every target, i.e. an
``int32_t`` array on a little-endian MCU). ``model_input_buffer()`` / ``model_output_buffer()``
return where the input and output live inside the arena: writing the image there and passing
those pointers avoids both copies (the MCU harness does that); other pointers are copied in and
out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyopt.deploy import kernels_m7
from tinyopt.integer import memplan
from tinyopt.integer.steps import (  # noqa: F401  (re-exported: codegen.plan, codegen.Step, ...)
    ALIAS_KINDS, INPLACE_INPUTS, SCRATCH_ALIGN, STEP_KINDS, SUPPORTED_KINDS, TENSOR_BITS, Step,
    _hwc, check_layer, memory_plan, plan, tensor_bytes)
from tinyopt.files import atomic_path
from tinyopt.integer.graph import IntegerGraph, IntegerLayer, pack, unpack
from tinyopt.integer.ops.registry import REGISTRY
from tinyopt.names import c_comment, c_identifier, c_string

C_DIR = Path(__file__).resolve().parent / "c"
KERNEL_FILES = ("tinyopt_nn.h", "tinyopt_nn.c", "tn_arith.h", "tn_m7.h", "tn_m7_core.h",
                "tn_m7_gemm.h", "tn_m7_dw.h", "tn_m7_pool.h", "tn_m7_add.h", "tn_m7_sub.h",
                "tn_m7_subconv.h", "tn_m7_subfc.h")
ROUNDING_C = {"floor": "TN_FLOOR", "tflite_single": "TN_TFL_SINGLE",
              "tflite_double": "TN_TFL_DOUBLE"}
# The kinds tinyopt_nn.c's own dispatcher (tn_run) knows; the kernels of ops added since live in
# their own file (tinyopt/deploy/c/ops/, the op's OpKind.c_source), are called directly and carry
# TN_OP in the descriptor.
KIND_C = {"conv2d": "TN_CONV", "pointwise": "TN_CONV", "depthwise": "TN_DEPTHWISE",
          "dense": "TN_DENSE", "maxpool": "TN_MAXPOOL", "avgpool": "TN_AVGPOOL", "add": "TN_ADD",
          "concat": "TN_CONCAT", "pad": "TN_PAD", "quantize": "TN_QUANTIZE",
          "softmax": "TN_SOFTMAX"}
OPS_DIR = C_DIR / "ops"
TWIN_PREFIX = "m7_"  # an op's Cortex-M7 twin c/ops/m7/tn_x.c is exported as m7_tn_x.c


def _op_file(fname: str) -> Path:
    """The library file of an exported op kernel file name (``tn_x.c``: ``c/ops/tn_x.c``;
    ``m7_tn_x.c``: the op's Cortex-M7 twin ``c/ops/m7/tn_x.c``)."""
    if fname.startswith(TWIN_PREFIX):
        return OPS_DIR / "m7" / fname[len(TWIN_PREFIX):]
    return OPS_DIR / fname


@dataclass
class Export:
    """What :func:`export_c` wrote. ``steps`` give each step's arena offsets and bytes."""

    out_dir: Path
    files: list[Path]
    steps: list[Step]
    arena_bytes: int
    in_bytes: int
    out_bytes: int
    in_bits: int
    in_signed: bool
    out_bits: int
    out_signed: bool
    out_shape: tuple
    param_bytes: dict = field(default_factory=dict)  # weights / bias / m0 / n0 / wzp bytes
    memory: memplan.MemoryPlan | None = None  # where every tensor lives (memory.table())
    in_offset: int = 0  # the graph input's and output's places in the arena
    out_offset: int = 0
    kernels: list = field(default_factory=list)  # per step: "gemm", "depthwise", "portable"
    op_sources: list = field(default_factory=list)  # the kernel files of registry ops it uses
    scratch_bytes: int = 0  # largest kernel scratch of a step (in the arena, Step.scratch_*)
    weight_pad_bytes: int = 0  # .rodata beside the packed weights: zero bytes after weight arrays
    # (word loads of the last row) and what a kernel's own weight order adds (row padding,
    # per-channel constants)
    prefix: str = "model"  # the C name: <prefix>.h, <prefix>.c, <prefix>_run, ... (export_c)
    # the kernel forms its steps use, declared in <prefix>.c (kernels_m7.unit_forms): a unit of
    # several models declares the union of theirs before including them
    forms: dict = field(default_factory=dict)

    @property
    def sources(self) -> list[Path]:
        """The C files to compile: ``<prefix>.c`` and the kernels' ``.c``."""
        kernel = "tinyopt_nn.c" if self.prefix == "model" else f"{self.prefix}_tinyopt_nn.c"
        return [Path(self.out_dir) / f"{self.prefix}.c", Path(self.out_dir) / kernel,
                *(Path(self.out_dir) / f for f in self.op_sources)]

    @property
    def header(self) -> Path:
        """The public header ``<prefix>.h``."""
        return Path(self.out_dir) / f"{self.prefix}.h"

    def step_table(self):
        """pandas DataFrame: one row per step (name, kind, fused pool, bytes, offsets)."""
        import pandas as pd
        return pd.DataFrame([{"step": i, "name": s.name, "kind": s.layer.kind,
                              "fused_pool": s.pool.name if s.pool is not None else "",
                              "in_bytes": s.in_bytes, "out_bytes": s.out_bytes,
                              "in_offset": s.in_offset, "out_offset": s.out_offset,
                              "inplace": s.out_offset in s.in_offsets}
                             for i, s in enumerate(self.steps)])


# ------------------------------------------------------------------------------ tensors

def pack_tensor(values: np.ndarray, bits: int, signed: bool) -> np.ndarray:
    """Pack a batch of integer tensors as the C code stores them.

    Arguments:
        values: integer array [N, ...] (values, not codes: signed tensors hold negatives).
        bits: 1, 2, 4, 8, 16 or 32.
        signed: two's-complement storage.

    Returns:
        uint8 array [N, packed_bytes(n, bits)].

    Raises:
        ValueError: unsupported bits or a value outside the bits' range.
    """
    values = np.asarray(values, np.int64).reshape(len(values), -1)
    if bits not in TENSOR_BITS:
        raise ValueError(f"tensor bits must be one of {TENSOR_BITS}, got {bits}")
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if values.size and (values.min() < lo or values.max() > hi):
        raise ValueError(f"values span [{values.min()}, {values.max()}], outside the "
                         f"{'signed' if signed else 'unsigned'} {bits}-bit range [{lo}, {hi}]")
    codes = values & ((1 << bits) - 1)
    if bits <= 8:
        return pack(codes.astype(np.uint8), bits)
    dtype = "<u2" if bits == 16 else "<u4"
    return np.ascontiguousarray(codes.astype(dtype)).view(np.uint8).reshape(len(values), -1)


def unpack_tensor(packed: np.ndarray, bits: int, signed: bool, n: int) -> np.ndarray:
    """Inverse of :func:`pack_tensor`: [N, bytes] -> int64 values [N, n]."""
    packed = np.asarray(packed, np.uint8).reshape(len(packed), -1)
    if bits <= 8:
        codes = unpack(packed, bits, n).astype(np.int64)
    else:
        dtype = "<u2" if bits == 16 else "<u4"
        codes = np.ascontiguousarray(packed).view(dtype)[:, :n].astype(np.int64)
    if signed:
        codes = np.where(codes >= (1 << (bits - 1)), codes - (1 << bits), codes)
    return codes


# ------------------------------------------------------------------------------ C text

def _c_array(ctype: str, name: str, values, per_line: int = 16, attribute: str = "") -> str:
    values = [int(v) for v in np.asarray(values).ravel()]
    if not values:
        values = [0]
    fmt = (lambda v: f"0x{v:02x}") if ctype == "uint8_t" else str
    lines = [", ".join(fmt(v) for v in values[k:k + per_line])
             for k in range(0, len(values), per_line)]
    body = ",\n    ".join(lines)
    attr = f" {attribute}" if attribute else ""
    return f"static const {ctype} {name}[{len(values)}]{attr} = {{\n    {body}\n}};\n"


def _int32_literal(v: int) -> str:
    return "INT32_MIN" if v == -(1 << 31) else str(int(v))


def _tensor_c(shape, bits, signed, zp) -> str:
    h, w, c = _hwc(shape)
    return f"{{{h}, {w}, {c}, {bits}, {int(bool(signed))}, {int(zp)}}}"


def _step_c(k: int, s: Step, rounding: str, arrays: list[str], nbytes: dict,
            w_pad: int = 0, pads: dict | None = None, prefix: str = "model",
            weights: np.ndarray | None = None, twin: bool = False) -> str:
    pads = {} if pads is None else pads
    layer, pool = s.layer, s.pool
    attr = f"{prefix.upper()}_WEIGHTS_ATTRIBUTE"
    flavour = layer.rounding or rounding
    fields = {"kind": KIND_C.get(layer.kind, "TN_OP"), "rounding": ROUNDING_C[flavour]}
    fields["in"] = _tensor_c(layer.in_shape, layer.in_bits, layer.in_signed, layer.in_zero_point)
    fields["out"] = _tensor_c(layer.out_shape, layer.out_bits, layer.out_signed,
                              layer.out_zero_point)
    op = REGISTRY[layer.kind]
    if not op.compute and op.c_function != "tn_run_pool":
        return _dag_step_c(k, s, fields, arrays, nbytes, prefix, twin, pads)
    if layer.kind in ("maxpool", "avgpool"):
        win = layer
    else:
        win = pool
        if layer.kind == "depthwise":
            kh, kw = layer.weight_shape[:2]
        elif layer.kind == "dense":
            kh = kw = 1
        else:
            kh, kw = layer.weight_shape[1:3]
        top, _, left, _ = layer.padding
        zw = np.asarray(layer.weight_zero_point).astype(np.uint8)
        bias = np.asarray(layer.bias, np.int32)
        m0 = np.asarray(layer.m0 if layer.requantize else [0], np.int32)
        n0 = np.asarray(layer.n0 if layer.requantize else [0], np.int8)
        # weights: the step kernel's own order (kernels_m7.Choice.weights), else the row layout
        w_vals = layer.weights if weights is None else weights
        # bytes a kernel's own order adds to the packed weights (row padding, per-channel
        # constants of tn_m7_dw3) are in .rodata but not the model's weights: counted with the
        # pad bytes (Export.weight_pad_bytes), so param_bytes["w"] stays the packed weights
        layout = max(0, int(np.asarray(w_vals).nbytes) - int(np.asarray(layer.weights).nbytes))
        for suffix, ctype, vals in (("w", "uint8_t", w_vals), ("wzp", "uint8_t", zw),
                                    ("bias", "int32_t", bias), ("m0", "int32_t", m0),
                                    ("n0", "int8_t", n0)):
            nbytes[suffix] = nbytes.get(suffix, 0) + int(np.asarray(vals).nbytes) - (
                layout if suffix == "w" else 0)
            if suffix == "w" and w_pad:  # word loads of the last row (tn_m7.h) stay inside
                vals = np.concatenate([np.asarray(vals).ravel(), np.zeros(w_pad, np.uint8)])
            if suffix == "w" and (w_pad or layout):
                pads[k] = w_pad + layout  # in .rodata, not counted as weights
            arrays.append(_c_array(ctype, f"{prefix}_{suffix}{k}", vals, attribute=attr))
        lo, hi = layer.out_range
        fields.update({
            "requantize": int(bool(layer.requantize)),
            "pad_zero": int(layer.pad_mode == "zero"),
            "k_h": kh, "k_w": kw, "stride_h": layer.stride[0], "stride_w": layer.stride[1],
            "pad_t": top, "pad_l": left, "depth_multiplier": layer.depth_multiplier,
            "dil_h": int(layer.dilation[0]), "dil_w": int(layer.dilation[1]),
            "w_bits": layer.weight_bits, "w_row_bytes": layer.weights.shape[1],
            "n_wzp": len(zw), "n_m": len(m0), "act_lo": _int32_literal(lo),
            "act_hi": _int32_literal(hi), "w": f"{prefix}_w{k}", "wzp": f"{prefix}_wzp{k}",
            "bias": f"{prefix}_bias{k}", "m0": f"{prefix}_m0{k}", "n0": f"{prefix}_n0{k}",
            "fuse_pool": int(pool is not None)})
        if s.add is not None:
            add = s.add
            for suffix, ctype, vals in (("add_m0", "int32_t", np.asarray(add.m0, np.int32)),
                                        ("add_n0", "int8_t", np.asarray(add.n0, np.int8))):
                arrays.append(_c_array(ctype, f"{prefix}_{suffix}{k}", vals, attribute=attr))
                nbytes[suffix[4:]] = nbytes.get(suffix[4:], 0) + int(vals.nbytes)
            alo, ahi = add.out_range
            fields.update({
                "fuse_add": 1, "add_slot": s.add_slot, "left_shift": int(add.left_shift),
                "add_rounding": ROUNDING_C[add.rounding or rounding],
                "add_out_bits": add.out_bits, "add_other_zp": int(s.in_specs[1].zero_point),
                "add_out_zp": int(add.out_zero_point), "add_lo": _int32_literal(alo),
                "add_hi": _int32_literal(ahi), "add_m0": f"{prefix}_add_m0{k}",
                "add_n0": f"{prefix}_add_n0{k}"})
    if win is not None:
        top, _, left, _ = win.padding
        lo, hi = win.out_range
        fields.update({"pool_h": win.pool_size[0], "pool_w": win.pool_size[1],
                       "pool_sh": win.stride[0], "pool_sw": win.stride[1], "pool_pt": top,
                       "pool_pl": left, "pool_out_h": _hwc(win.out_shape)[0],
                       "pool_out_w": _hwc(win.out_shape)[1], "pool_lo": _int32_literal(lo),
                       "pool_hi": _int32_literal(hi)})
        if win.kind == "avgpool":  # as tinyopt.sim: floor for floor graphs, else half away
            mode = getattr(win, "avg_rounding", None) or (
                "floor" if (win.rounding or rounding) == "floor" else "half_away")
            fields["avg_half_away"] = int(mode == "half_away")
    body = ",\n      ".join(f".{k} = {v}" for k, v in fields.items())
    return f"    {{ /* {k}: {c_comment(s.name)} */\n      {body} }}"


def _dag_step_c(k: int, s: Step, fields: dict, arrays: list[str], nbytes: dict,
                prefix: str = "model", twin: bool = False, pads: dict | None = None) -> str:
    """The descriptor fields of a step that is neither a compute layer nor a pool: the output
    clamp, the op's (m0, n0) pairs and table, and what its ``c_fields`` adds (and, where its
    Cortex-M7 twin runs the step, ``twin``, its ``m7_fields``). The twin's arrays replace the
    portable ones of the same field (each array written once); the layer's parameters are
    counted as the portable form holds them (``nbytes``), what the twin's arrays hold beyond
    that (its own weight order, a plan's constants) as layout bytes (``pads[k]``, as for the
    compute kernels' own orders)."""
    layer = s.layer
    op = REGISTRY[layer.kind]
    attr = f"{prefix.upper()}_WEIGHTS_ATTRIBUTE"
    lo, hi = layer.out_range
    fields.update({"act_lo": _int32_literal(lo), "act_hi": _int32_literal(hi)})

    twin_bytes: dict = {}  # the twin's arrays, by field
    replaced = 0  # bytes of the portable arrays they replace

    def twin_emit(ctype: str, values, what: str) -> str:
        name = f"{prefix}_{what}{k}"
        arrays.append(_c_array(ctype, name, values, attribute=attr))
        twin_bytes[what] = int(np.asarray(values).nbytes)
        return name

    def emit(ctype: str, values, what: str) -> str:
        nonlocal replaced
        name = f"{prefix}_{what}{k}"
        if what in twin_bytes:  # the twin's array stands in its place: not written
            replaced += int(np.asarray(values).nbytes)
        else:
            arrays.append(_c_array(ctype, name, values, attribute=attr))
        if what in ("w", "wzp", "bias", "m0", "n0", "table"):  # parameters, not geometry
            nbytes[what] = nbytes.get(what, 0) + int(np.asarray(values).nbytes)
        return name

    # the twin's fields first: they replace the portable ones (c_fields' and the common arrays)
    m7 = op.m7_fields(s, twin_emit) if twin and op.m7_fields is not None else {}
    if op.n_multipliers:
        fields.update({"n_m": op.n_multipliers,
                       "m0": emit("int32_t", np.asarray(layer.m0, np.int32), "m0"),
                       "n0": emit("int8_t", np.asarray(layer.n0, np.int8), "n0")})
    if layer.table is not None:
        table = np.asarray(layer.table, np.uint8).ravel()
        fields.update({"table": emit("uint8_t", table, "table"), "table_bytes": len(table)})
    own = op.c_fields(s, emit) if op.c_fields is not None else {}
    extra = sum(twin_bytes.values()) - replaced
    if extra > 0 and pads is not None:
        pads[k] = pads.get(k, 0) + extra
    for key, value in {**own, **m7}.items():
        fields[key] = _int32_literal(value) if isinstance(value, (int, np.integer)) else value
    body = ",\n      ".join(f".{key} = {v}" for key, v in fields.items())
    return f"    {{ /* {k}: {c_comment(s.name)} */\n      {body} }}"


def kernel_symbols() -> list[str]:
    """The kernels' functions with external linkage (declared in ``tinyopt_nn.h``, and the entry
    points of the registry ops with a kernel file of their own), which a prefixed export renames
    (:func:`export_c`, ``prefix``)."""
    text = (C_DIR / "tinyopt_nn.h").read_text()
    found = re.findall(r"^(?!static|typedef|#)[A-Za-z_][\w \t]*?\**\s*\b(tn_\w+)\s*\(", text,
                       flags=re.MULTILINE)
    return found + sorted({fn for op in REGISTRY.values()
                           for fn in ((op.c_function if op.c_source is not None else None),
                                      op.m7_function) if fn is not None} - set(found))


def check_prefix(prefix: str) -> str:
    """``prefix`` if it can name an export's C symbols, else ValueError.

    A prefix must be a plain C identifier (:func:`tinyopt.names.c_identifier` leaves it as it
    is: a letter, then letters, digits and ``_``, no ``__``, not a keyword, at most 48
    characters) and must not make a model symbol (``<prefix>_run``, ...) equal to a kernel's.

    Raises:
        TypeError: not a str.
        ValueError: not a plain identifier (the message gives the one that would be), or one
            whose symbols collide with the kernels'.
    """
    safe = c_identifier(prefix, "C prefix")
    if safe != prefix:
        raise ValueError(f"C prefix {prefix!r} is not a plain C identifier (a letter, then "
                         f"letters, digits or '_', no '__', not a C keyword, at most 48 "
                         f"characters); choose one such as {re.sub(r'_[0-9a-f]{8}$', '', safe)!r}")
    if prefix != "model":
        public = {f"{prefix}_{s}" for s in PUBLIC_SYMBOLS}
        clash = sorted(public & set(kernel_symbols()))
        if clash:
            raise ValueError(f"C prefix {prefix!r} makes {clash} equal to kernel symbols of "
                             f"tinyopt_nn.h; choose another prefix")
    return prefix


# the symbols an export defines with external linkage, after its prefix ("model_run", ...)
PUBLIC_SYMBOLS = ("run", "input_buffer", "output_buffer", "step_names", "set_arena")


def _kernel_texts(prefix: str, op_files=()) -> dict:
    """The kernel sources as the export writes them (the library's files and the kernel files
    ``op_files`` of the registry ops the model uses): as they are for the prefix ``model``;
    for another prefix, files named ``<prefix>_<file>``, their includes and include guards
    renamed, and every external kernel symbol ``tn_x`` renamed ``<prefix>_tn_x`` by a block of
    ``#define`` s at the top of ``tinyopt_nn.h``, which every file of the export includes
    first, so two exports with different prefixes link into one program."""
    texts = {fname: (C_DIR / fname).read_text() for fname in KERNEL_FILES}
    texts.update({fname: _op_file(fname).read_text() for fname in op_files})
    if prefix == "model":
        return texts
    upper = prefix.upper()
    out = {}
    for fname, text in texts.items():
        for other in KERNEL_FILES:
            text = text.replace(f'#include "{other}"', f'#include "{prefix}_{other}"')
        text = re.sub(r"^#ifndef (\w+_H)\n#define \1\b",
                      lambda m: f"#ifndef {upper}_{m.group(1)}\n#define {upper}_{m.group(1)}",
                      text, count=1, flags=re.MULTILINE)
        if fname == "tinyopt_nn.h":
            renames = "".join(f"#define {s} {prefix}_{s}\n" for s in kernel_symbols())
            guard = f"#define {upper}_TINYOPT_NN_H\n"
            assert guard in text, "tinyopt_nn.h lost its include guard"
            text = text.replace(guard, guard + f"\n/* {prefix}: this library's own copy of the "
                                "kernels (symbols renamed, so several libraries link into one "
                                "program) */\n" + renames, 1)
        out[f"{prefix}_{fname}"] = text
    return out


def export_c(graph: IntegerGraph, out_dir, fuse_pool: bool = True,
             fuse_add: bool = True, overlap: bool = True, kernels: str = "m7",
             prefix: str = "model", arena_budget: int | None = None) -> Export:
    """Write the C sources of ``graph`` into ``out_dir`` (created; existing files replaced).

    Arguments:
        graph: a valid IntegerGraph (CMix-NN floor or TFLite rounding, see tinyopt.sim).
        out_dir: folder for model.h, model.c, model_params.h, tinyopt_nn.h, tinyopt_nn.c
            (relative to the working directory).
        fuse_pool: fuse "compute layer -> max pool" pairs into one step (smaller arena).
        fuse_add: fuse "compute layer -> residual ADD" pairs into one step (smaller arena;
            :func:`memory_plan`).
        overlap: False keeps every tensor whole for its lifetime (no in-place or sliding
            writes): the plan the memory model assumes (:func:`memory_plan`).
        kernels: "m7" (default): the steps :mod:`tinyopt.deploy.kernels_m7` covers run kernels
            specialised to their shapes (``tn_m7.h``: ARMv7E-M DSP intrinsics on the
            Cortex-M7, the same arithmetic in portable C elsewhere); "portable": every step
            runs the generic kernels of ``tinyopt_nn.c`` (the reference).
        prefix: the C name of the model (:func:`check_prefix`): its files are ``<prefix>.h``,
            ``<prefix>.c``, ``<prefix>_params.h``, its symbols ``<prefix>_run``, ... and its
            macros ``<PREFIX>_IN_BYTES``, ...; any prefix but the default ``model`` also gives
            the export its own renamed copy of the kernels (``<prefix>_tinyopt_nn.c``, symbols
            ``<prefix>_tn_*``), so that several exports link into one program.
        arena_budget: None (default): the smallest arena (on a Keras-path graph the kernels
            needing more scratch run only where it is free); bytes: those faster kernels may
            grow the arena up to that many bytes (:func:`memory_plan`).

    Compile-time options of the generated C (all off by default): ``<PREFIX>_ARENA_EXTERNAL``
    (the caller supplies the arena with ``<prefix>_set_arena``), ``<PREFIX>_ARENA_SECTION`` /
    ``<PREFIX>_WEIGHTS_SECTION`` (a section name string for the static arena / the constant
    arrays, e.g. ``".dtcm"``; or ``<PREFIX>_ARENA_ATTRIBUTE`` / ``<PREFIX>_WEIGHTS_ATTRIBUTE``
    for any other placement attribute) and ``<PREFIX>_PROFILE`` (a per-step hook).

    Returns:
        An :class:`Export` (files, steps, arena and I/O bytes, parameter bytes).

    Raises:
        ValueError: an invalid graph or a layer the C kernels cannot run (the message names it:
            several graph outputs, add / quantize / softmax wider than 8 bits, a softmax
            left shift outside [0, 31], bit widths outside 1/2/4/8 (weights) or 1/2/4/8/16/32
            (tensors), weight zero points outside [0, 255], negative m0 or out-of-range n0
            with TFLite rounding, dimensions too large for the descriptor fields); a prefix
            that is not a plain C identifier (:func:`check_prefix`).
    """
    p = check_prefix(prefix)
    P = p.upper()
    steps, mem = memory_plan(graph, fuse_pool, fuse_add, overlap, kernels, arena_budget)
    arena = mem.arena_bytes
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays: list[str] = []
    nbytes: dict = {}
    choices = [kernels_m7.choose(s, k, kernels, rounding=graph.rounding)
               for k, s in enumerate(steps)]
    pads: dict = {}
    step_c = [_step_c(k, s, graph.rounding, arrays, nbytes, c.weight_pad, pads, p, c.weights,
                      twin=c.kind == "op")
              for k, (s, c) in enumerate(zip(steps, choices))]
    step_fns = "".join(kernels_m7.step_function(s, k, c, graph.rounding, f"{p}_arena")
                       for k, (s, c) in enumerate(zip(steps, choices)))
    # the registry ops with a kernel file of their own (tinyopt/deploy/c/ops/): copied into the
    # export, compiled with it and declared here (tinyopt_nn.h does not know them)
    # (and the Cortex-M7 twins of the ops whose steps take one, exported as m7_<file>)
    own = sorted({REGISTRY[s.layer.kind].c_source: REGISTRY[s.layer.kind].c_function
                  for s in steps if REGISTRY[s.layer.kind].c_source is not None}.items())
    twins = sorted({TWIN_PREFIX + REGISTRY[s.layer.kind].m7_source:
                    REGISTRY[s.layer.kind].m7_function
                    for s, c in zip(steps, choices) if c.kind == "op"}.items())
    op_decls = "".join(f"void {fn}(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out);\n"
                       for _, fn in own) + "".join(
        f"void {fn}(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out, "
        "uint8_t *scratch);\n" for _, fn in twins)
    own = own + twins
    # the kernels' scratch is word-aligned in the arena (SCRATCH_ALIGN), and the specialised
    # kernels' plans read a tensor by words (LDM / LDRD: a fault on a Cortex-M7 at an address not
    # a multiple of 4) where its offset is a multiple of 4 (kernels_m7: tn_m7_subfc16's XA,
    # tn_m7_sub's lanes): the static arena is declared aligned, a caller's arena is aligned up by
    # <prefix>_set_arena, which needs up to SCRATCH_ALIGN - 1 more bytes for it (so an arena of
    # any alignment still works). Only the portable kernels (bytes) need no alignment.
    pad = SCRATCH_ALIGN - 1 if step_fns or any(s.scratch_bytes for s in steps) else 0
    src, last = graph.tensor(graph.input_name), graph.tensor(graph.output_names()[0])
    n_out = int(np.prod(last.shape))
    info = Export(out_dir=out_dir, files=[], steps=steps, arena_bytes=arena,
                  in_bytes=tensor_bytes(src), out_bytes=tensor_bytes(last),
                  in_bits=graph.input_bits, in_signed=graph.input_signed,
                  out_bits=last.bits, out_signed=last.signed,
                  out_shape=tuple(last.shape), param_bytes=nbytes, memory=mem,
                  in_offset=mem.offset(src.name), out_offset=mem.offset(last.name),
                  kernels=[c.kind for c in choices],
                  scratch_bytes=kernels_m7.scratch_bytes(choices),
                  weight_pad_bytes=sum(pads.values()), prefix=p,
                  op_sources=[(p + "_" if p != "model" else "") + f for f, _ in own],
                  forms=kernels_m7.unit_forms(step_fns))
    # names come from model files (untrusted): C sees them only through tinyopt.names. The step
    # names are also printed one per line into the QEMU harness's stats (a 128-byte line buffer),
    # so they are cut and kept on one line by c_comment before being escaped.
    guard = c_identifier(graph.name, "graph name").upper()
    names = ", ".join(f'"{c_string(c_comment(s.name, max_len=64))}"' for s in steps)
    texts = {}
    in_kind = ("signed: int8 bytes as two's complement" if graph.input_signed else "unsigned")
    out_kind = (f"{last.bits}-bit {'signed' if last.signed else 'unsigned'}, {n_out} "
                f"elements" + (", each 4 little-endian bytes: an int32_t array on little-endian "
                            "targets" if last.bits == 32 else ""))
    arena_define = (f"#define {P}_ARENA_BYTES {arena}u\n" if not pad else
                    f"#ifndef {P}_ARENA_EXTERNAL\n#define {P}_ARENA_BYTES {arena}u\n#else\n"
                    f"/* the plan's {arena} bytes and up to {pad} to align the caller's arena to "
                    f"{SCRATCH_ALIGN} bytes */\n#define {P}_ARENA_BYTES {arena + pad}u\n#endif\n")
    texts[f"{p}.h"] = f"""/* {p}.h: generated by tinyopt.codegen.export_c from IntegerGraph
 * {c_comment(repr(graph.name))}.
 * int {p}_run(const uint8_t *in, uint8_t *out): runs one image; returns 0, -1 for a NULL
 * pointer, -2 when {P}_ARENA_EXTERNAL is defined and no arena was set.
 *   in:  {P}_IN_BYTES packed input codes ({graph.input_bits}-bit, {in_kind});
 *   out: {P}_OUT_BYTES packed output ({out_kind}).
 * Packing: HWC, element j at bit (j * bits) % 8 of byte j * bits / 8 (LSB first).
 * No malloc: all activations and the kernels' scratch live in one arena of {P}_ARENA_BYTES,
 * static unless the library is compiled with {P}_ARENA_EXTERNAL (then pass one to
 * {p}_set_arena before {p}_run).
 */
#ifndef {P}_{guard}_H
#define {P}_{guard}_H
#include <stdint.h>

#define {P}_IN_BYTES {info.in_bytes}u
#define {P}_OUT_BYTES {info.out_bytes}u
#define {P}_OUT_ELEMENTS {n_out}u
{arena_define}#define {P}_N_STEPS {len(steps)}u

int {p}_run(const uint8_t *in, uint8_t *out);
/* Where {p}_run expects its input / leaves its output inside the arena (no copy needed). */
uint8_t *{p}_input_buffer(void);
uint8_t *{p}_output_buffer(void);
/* Only with {P}_ARENA_EXTERNAL: use arena (at least {P}_ARENA_BYTES bytes, any alignment);
 * returns 0, or -1 for a NULL or too small arena. */
int {p}_set_arena(void *arena, uint32_t bytes);
extern const char *const {p}_step_names[{P}_N_STEPS];
#ifdef {P}_PROFILE
/* Called with -1 before the first step and with k after step k (define it in the harness). */
void {p}_profile_hook(int step);
#endif
#endif
"""
    attributes = "".join(
        f"#ifndef {P}_{what}_ATTRIBUTE\n#ifdef {P}_{what}_SECTION\n"
        f"#define {P}_{what}_ATTRIBUTE __attribute__((section({P}_{what}_SECTION)))\n"
        f"#else\n#define {P}_{what}_ATTRIBUTE\n#endif\n#endif\n" for what in ("WEIGHTS", "ARENA"))
    texts[f"{p}_params.h"] = (
        f"/* {p}_params.h: generated by tinyopt.codegen.export_c. Packed const weights and "
        "per-layer parameters. */\n"
        f"#include \"{p + '_' if p != 'model' else ''}tinyopt_nn.h\"\n\n"
        f"/* Where the constants (and the static arena) go: {P}_WEIGHTS_SECTION / "
        f"{P}_ARENA_SECTION name a\n * section (\".qspi\", \".dtcm\"), or {P}_*_ATTRIBUTE gives "
        "any attribute; default: none. */\n" + attributes + "\n" + "\n".join(arrays)
        + f"\nstatic const tn_layer_t {p}_steps[{len(steps)}] {P}_WEIGHTS_ATTRIBUTE = {{\n"
        + ",\n".join(step_c) + "\n};\n")
    in_offsets = ", ".join(f"{o}u" for s in steps for o in s.in_offsets)
    starts = np.cumsum([0] + [len(s.inputs) for s in steps]).tolist()
    max_in = max(len(s.inputs) for s in steps)
    in_start = ", ".join(f"{v}u" for v in starts)
    out_offsets = ", ".join(f"{s.out_offset}u" for s in steps)
    fn_table = ", ".join(c.function for c in choices)
    kernel_prefix = p + "_" if p != "model" else ""
    m7_include = (kernels_m7.forms_defines(info.forms) + f'#include "{kernel_prefix}tn_m7.h"\n'
                  if step_fns else "")
    if step_fns and not any(c.kind == "sub" for c in choices):
        # no sub-byte kernel to parse (tn_m7.h); undefined after, for a unit of several models
        m7_include = ("#define TN_M7_INT8_ONLY /* no sub-byte step */\n" + m7_include
                      + "#undef TN_M7_INT8_ONLY\n")
    if pad:
        set_arena = (f"    /* up to {pad} of its bytes align the arena (the kernels' words) */\n"
                     f"    {p}_arena = (uint8_t *)arena + ((0u - (uint32_t)(uintptr_t)arena) & "
                     f"{pad}u);\n")
        static_arena = (
            "#if defined(__GNUC__) || defined(__clang__)\n"
            f"static uint8_t {p}_arena[{P}_ARENA_BYTES] __attribute__((aligned({SCRATCH_ALIGN})))"
            f" {P}_ARENA_ATTRIBUTE;\n#else /* the kernels read words: a word-aligned arena */\n"
            f"static uint32_t {p}_arena_words[({P}_ARENA_BYTES + 3u) / 4u] {P}_ARENA_ATTRIBUTE;\n"
            f"#define {p}_arena ((uint8_t *){p}_arena_words)\n#endif\n")
    else:
        set_arena = f"    {p}_arena = (uint8_t *)arena;\n"
        static_arena = f"static uint8_t {p}_arena[{P}_ARENA_BYTES] {P}_ARENA_ATTRIBUTE;\n"
    texts[f"{p}.c"] = f"""/* {p}.c: generated by tinyopt.codegen.export_c. */
#include <string.h>
#include "{p}.h"
#include "{p}_params.h"
{m7_include}
/* The activation arena (tinyopt.integer.memplan): step k reads its inputs at
 * {p}_in_offsets[{p}_in_start[k] ..] and writes at {p}_out_offsets[k]; tensors live at the
 * same step never overlap (an element-wise step may write over an input it is the last reader
 * of). A specialised step's scratch (im2col rows, output values) is a buffer of the arena alive
 * during that step only, at a multiple of {SCRATCH_ALIGN} bytes from its start. */
#define {P}_MAX_INPUTS {max_in}u
#define {P}_INPUT_OFFSET {info.in_offset}u
#define {P}_OUTPUT_OFFSET {info.out_offset}u
#ifdef {P}_ARENA_EXTERNAL
static uint8_t *{p}_arena; /* the caller's, set by {p}_set_arena */
int {p}_set_arena(void *arena, uint32_t bytes)
{{
    if (arena == NULL || bytes < {P}_ARENA_BYTES) return -1;
{set_arena}    return 0;
}}
#else
{static_arena}#endif

/* The kernels the steps call: specialised functions (tn_m7.h, tinyopt.deploy.kernels_m7) or
 * the portable kernel of the step's kind (tinyopt_nn.c, or the op's own file). */
{op_decls}{step_fns}
static const tn_kernel_fn {p}_fns[{P}_N_STEPS] = {{{fn_table}}};
static const uint32_t {p}_in_offsets[{starts[-1]}] = {{{in_offsets}}};
static const uint16_t {p}_in_start[{P}_N_STEPS + 1] = {{{in_start}}};
static const uint32_t {p}_out_offsets[{P}_N_STEPS] = {{{out_offsets}}};
const char *const {p}_step_names[{P}_N_STEPS] = {{{names}}};

#ifdef {P}_ARENA_EXTERNAL
uint8_t *{p}_input_buffer(void) {{ return {p}_arena ? {p}_arena + {P}_INPUT_OFFSET : NULL; }}
uint8_t *{p}_output_buffer(void) {{ return {p}_arena ? {p}_arena + {P}_OUTPUT_OFFSET : NULL; }}
#else
uint8_t *{p}_input_buffer(void) {{ return {p}_arena + {P}_INPUT_OFFSET; }}
uint8_t *{p}_output_buffer(void) {{ return {p}_arena + {P}_OUTPUT_OFFSET; }}
#endif

int {p}_run(const uint8_t *in, uint8_t *out)
{{
    uint32_t k, j;
    const uint8_t *ins[{P}_MAX_INPUTS];
    if (in == NULL || out == NULL) return -1;
#ifdef {P}_ARENA_EXTERNAL
    if ({p}_arena == NULL) return -2;
#endif
    if (in != {p}_input_buffer()) memmove({p}_input_buffer(), in, {P}_IN_BYTES);
#ifdef {P}_PROFILE
    {p}_profile_hook(-1);
#endif
    for (k = 0; k < {P}_N_STEPS; k++) {{
        for (j = {p}_in_start[k]; j < {p}_in_start[k + 1]; j++)
            ins[j - {p}_in_start[k]] = {p}_arena + {p}_in_offsets[j];
        {p}_fns[k](&{p}_steps[k], ins, {p}_arena + {p}_out_offsets[k]);
#ifdef {P}_PROFILE
        {p}_profile_hook((int)k);
#endif
    }}
    if (out != {p}_output_buffer()) memmove(out, {p}_output_buffer(), {P}_OUT_BYTES);
    return 0;
}}
"""
    texts.update(_kernel_texts(p, [f for f, _ in own]))
    for fname, text in texts.items():
        with atomic_path(out_dir / fname, Path(fname).suffix) as tmp:
            Path(tmp).write_text(text)
        info.files.append(out_dir / fname)
    return info


def reference_output(graph: IntegerGraph, x: np.ndarray) -> np.ndarray:
    """What the C model must output: ``tinyopt.sim.run`` flattened per image, on the numpy
    reference engine (the simulator's fast engine runs C kernels of its own, and C is checked
    against an independent implementation, never against C)."""
    from tinyopt.integer import sim
    return np.asarray(sim.run(graph, x, engine="reference")).reshape(len(x), -1).astype(np.int64)


# ------------------------------------------------------------------------------ memory model view

def layer_macs(layer: IntegerLayer) -> int:
    """Multiply-accumulates per image of a node: its op's ``macs`` (0 for ops without)."""
    op = REGISTRY[layer.kind]
    return int(op.macs(layer)) if op.macs is not None else 0


def memory_view(graph: IntegerGraph):
    """The graph's compute layers as :class:`tinyopt.memory.Node` s and the
    :class:`tinyopt.policy.Policy` its bits and parameter shapes correspond to, so that
    ``tinyopt.memory.report(nodes, policy)`` predicts its flash and RAM.

    Granularity is "PC" when any compute layer has per-channel weight zero points, else "PL";
    a layer is "ICN" when it has per-channel multipliers (and in PC, every layer but the last).
    Output bits outside (2, 4, 8) (e.g. int32 logits of the last layer) are recorded as 8, as the
    memory model counts logits.

    Returns:
        (nodes, policy).
    """
    from tinyopt.mixed.memory import Node
    from tinyopt.mixed.policy import Policy
    compute = [lay for lay in graph.layers
               if lay.kind in ("conv2d", "pointwise", "depthwise", "dense")]
    kind = {"conv2d": "conv", "pointwise": "conv", "depthwise": "depthwise", "dense": "dense"}
    nodes = [Node(lay.name, kind[lay.kind], int(np.prod(lay.weight_shape)), lay.out_channels,
                  int(np.prod(lay.in_shape)), int(np.prod(lay.out_shape)), layer_macs(lay))
             for lay in compute]
    pc = any(len(np.atleast_1d(lay.weight_zero_point)) > 1 for lay in compute)
    n = len(compute)
    folds = []
    for i, lay in enumerate(compute):
        if i == n - 1:
            folds.append("FB")
        elif pc:
            folds.append("ICN")
        else:
            folds.append("ICN" if lay.requantize and len(np.atleast_1d(lay.m0)) > 1 else "FB")
    bits = lambda b: b if b in (2, 4, 8) else 8
    policy = Policy([lay.name for lay in compute], [bits(lay.weight_bits) for lay in compute],
                    [bits(lay.out_bits) for lay in compute], "PC" if pc else "PL", folds)
    return nodes, policy

"""The integer-only graph: the plain, inspectable structure the bit-exact simulator
(:mod:`tinyopt.integer.sim`) and the C export (:mod:`tinyopt.deploy.codegen`) run.

An :class:`IntegerGraph` is a directed acyclic graph of :class:`IntegerLayer` nodes over named
:class:`Tensor` s (plain dataclasses holding numpy arrays) that says exactly what an integer-only
MCU kernel sequence computes
(``docs/integer.md``, "Lowering a fake-quant model" and "CMix-NN kernels"):
- compute layers ``conv2d``, ``pointwise`` (a 1x1 ``conv2d``), ``depthwise`` and ``dense``:
  weights as unsigned Q-bit codes with zero point(s) ``weight_zero_point`` (one per layer, PL, or
  one per output channel, PC), packed LSB-first (:func:`pack`), each row starting on a byte:
  conv ``[c_out][ky][kx][c_in]``, depthwise ``[ky][kx][c]`` (one row per tap), dense
  ``[c_out][c_in]``; an int32 ``bias`` B_q; the requantization multiplier ``m0`` (int32, Q1.31)
  and exponent ``n0`` (int8), one per layer (FB) or per output channel (ICN), meaning
  M = m0 * 2^(n0 - 31) (the same convention as TFLite's ``QuantizeMultiplier``; CMix-NN's
  ``n_zero`` is ``-(n0 + 1)``);
- ``maxpool``, ``avgpool``, ``flatten`` / ``reshape`` (also TFLite's SQUEEZE / EXPAND_DIMS),
  ``pad`` (with the output zero point), ``concat`` (along ``axis``, equal quantization),
  ``add`` (TFLite's int8 ADD: both inputs shifted left by ``left_shift`` and rescaled by
  ``m0[0:2]`` / ``n0[0:2]``, the sum rescaled by ``m0[2]`` / ``n0[2]``), ``quantize`` (int8 ->
  int8 requantization by one multiplier) and ``softmax`` (TFLite's int8 fixed-point softmax:
  ``m0`` / ``n0`` the input-beta multiplier and left shift, ``diff_min``).

Wiring. Each node names its input and output tensors (``inputs`` / ``outputs``). A node that
names none is the *chain shorthand*: it reads the previous node's output (the graph input for the
first node) and writes a tensor named after itself, so a list of layers built one after the other
is a valid graph. ``graph.tensors`` holds explicit tensor records (name, shape, bits, signedness,
zero point, scale); a tensor without a record is described by its producer's ``out_*`` fields (or
the graph's ``input_*`` fields). :meth:`IntegerGraph.order` gives a topological execution order;
:meth:`IntegerGraph.validate` names the node and field at fault.

Every layer records its input and output bits, signedness, zero point and real scale (the scales
are for reference only: the simulator never uses a float scale). ``graph.rounding`` selects the
requantization flavour: ``"floor"`` (CMix-NN: high word of the 64-bit product, then arithmetic
shifts), ``"tflite_single"`` (TFLite single rounding) or ``"tflite_double"`` (rounding doubling
high multiply, then rounding divide by a power of two); a layer's ``rounding`` overrides it. See
:mod:`tinyopt.integer.sim`.

``IntegerGraph.save(path)`` / ``IntegerGraph.load(path)`` store one ``.npz`` with a versioned JSON
header; :meth:`IntegerGraph.quantize_input` maps float images onto its integer input. Graphs come
from :func:`tinyopt.to_integer_graph` (fake-quant model) or :func:`tinyopt.graph_from_tflite`.
"""

from __future__ import annotations

import json
import math
import zipfile
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from tinyopt.files import atomic_path
from tinyopt.integer.arith import weight_rows
from tinyopt.integer.ops.registry import REGISTRY

FORMAT = "tinyopt.IntegerGraph"
VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: chains (no tensors, no wiring) load as chain shorthand
# The node kinds and what each holds live in the op registry (tinyopt.integer.ops, one module
# per kind); the compute kinds are kept by name here for readers of this module's docstring.
COMPUTE_KINDS = ("conv2d", "pointwise", "depthwise", "dense")
ROUNDINGS = ("floor", "tflite_single", "tflite_double")
PACK_BITS = (1, 2, 4, 8)
# Array-valued layer fields (stored as npz members); everything else goes into the JSON header.
ARRAY_FIELDS = ("weights", "weight_zero_point", "bias", "m0", "n0", "weight_scale", "table")
ARRAY_DTYPES = {"weights": np.uint8, "weight_zero_point": np.int32, "bias": np.int32,
                "m0": np.int32, "n0": np.int8, "weight_scale": np.float64, "table": np.uint8}


class GraphFileError(ValueError):
    """An IntegerGraph file is damaged, not an IntegerGraph, or of an unsupported version."""


# --------------------------------------------------------------------------------------------
# Packing (docs/integer.md#packing-of-sub-byte-tensors): element j of a row sits in byte j // (8/Q)
# at bit offset Q * (j mod 8/Q).
# --------------------------------------------------------------------------------------------

def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """Pack unsigned ``bits``-bit codes LSB-first along the last axis, each row byte-aligned.

    Arguments:
        codes: integer array of codes in [0, 2^bits - 1]; the last axis is the packed row.
        bits: 1, 2, 4 or 8.

    Returns:
        uint8 array of shape ``codes.shape[:-1] + (ceil(n * bits / 8),)``; unused high bits of a
        row's last byte are 0.

    Raises:
        ValueError: unsupported ``bits`` or a code out of range.
    """
    if bits not in PACK_BITS:
        raise ValueError(f"bits must be one of {PACK_BITS}, got {bits}")
    codes = np.asarray(codes)
    if codes.ndim == 0:
        raise ValueError("pack needs at least a 1-D array of codes")
    if codes.size and (not np.issubdtype(codes.dtype, np.integer)
                       or codes.min() < 0 or codes.max() > (1 << bits) - 1):
        raise ValueError(f"codes must be integers in [0, {(1 << bits) - 1}] for {bits}-bit "
                         f"packing; got dtype {codes.dtype}, range "
                         f"[{codes.min()}, {codes.max()}]")
    per = 8 // bits
    n = codes.shape[-1]
    nbytes = -(-n * bits // 8)
    padded = np.zeros(codes.shape[:-1] + (nbytes * per,), np.uint8)
    padded[..., :n] = codes
    grouped = padded.reshape(codes.shape[:-1] + (nbytes, per))
    shifts = (np.arange(per, dtype=np.uint8) * bits)
    return np.bitwise_or.reduce(grouped << shifts, axis=-1).astype(np.uint8)


def unpack(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """Inverse of :func:`pack`: the first ``n`` codes of every packed row (shift-and-mask, the
    intended CMix-NN decode; see docs/integer.md#known-bugs-in-the-published-kernels for the
    depthwise ``__USAT`` bug we do not copy).

    Arguments:
        packed: uint8 array, the last axis holds one byte-aligned row.
        bits: 1, 2, 4 or 8.
        n: codes per row.

    Returns:
        uint8 array of shape ``packed.shape[:-1] + (n,)``.

    Raises:
        ValueError: unsupported ``bits`` or a row too short for ``n`` codes.
    """
    if bits not in PACK_BITS:
        raise ValueError(f"bits must be one of {PACK_BITS}, got {bits}")
    packed = np.asarray(packed, np.uint8)
    per = 8 // bits
    if packed.shape[-1] * per < n:
        raise ValueError(f"a row of {packed.shape[-1]} bytes holds {packed.shape[-1] * per} "
                         f"{bits}-bit codes, fewer than the {n} asked for")
    shifts = np.arange(per, dtype=np.uint8) * bits
    codes = (packed[..., None] >> shifts) & np.uint8((1 << bits) - 1)
    return codes.reshape(packed.shape[:-1] + (packed.shape[-1] * per,))[..., :n]


# --------------------------------------------------------------------------------------------
# The structure
# --------------------------------------------------------------------------------------------

@dataclass
class IntegerLayer:
    """One integer-only layer; see the module docstring for the meaning of each kind.

    Shapes are per image, without the batch: (H, W, C) for feature maps, (C,) after flatten.
    ``padding`` is (top, bottom, left, right); ``pad_mode`` says what a padded input pixel holds:
    ``"zero_point"`` (the input zero point, i.e. real 0: TFLite, and CMix-NN's conv im2col) or
    ``"zero"`` (integer 0: CMix-NN's depthwise kernels, docs/integer.md#padding). ``act_min`` /
    ``act_max`` narrow the output clamp (TFLite's fused ReLU/ReLU6); None means the full range of
    ``out_bits``. ``requantize=False`` outputs the raw int32 accumulator
    (docs/integer.md#logits-of-the-last-layer, PL logits).
    """

    kind: str
    name: str
    in_shape: tuple
    out_shape: tuple
    in_bits: int = 8
    in_signed: bool = False
    in_zero_point: int = 0
    in_scale: float = 1.0
    out_bits: int = 8
    out_signed: bool = False
    out_zero_point: int = 0
    out_scale: float = 1.0
    # compute layers
    weights: np.ndarray | None = None
    weight_shape: tuple | None = None
    weight_bits: int = 8
    weight_zero_point: np.ndarray | None = None
    weight_scale: np.ndarray | None = None
    bias: np.ndarray | None = None
    m0: np.ndarray | None = None
    n0: np.ndarray | None = None
    requantize: bool = True
    stride: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)
    pad_mode: str = "zero_point"
    depth_multiplier: int = 1
    dilation: tuple = (1, 1)  # conv2d / depthwise: (dh, dw) between taps (TFLite dilation)
    # pools
    pool_size: tuple = (1, 1)
    act_min: int | None = None
    act_max: int | None = None
    rounding: str | None = None  # None: the graph's flavour
    avg_rounding: str | None = None  # avgpool; None: "floor" for floor graphs, else "half_away"
    # DAG wiring: input and output tensor names; empty = chain shorthand (module docstring)
    inputs: tuple = ()
    outputs: tuple = ()
    axis: int = -1  # concat: the axis of the per-image shape
    left_shift: int = 0  # add: both inputs are shifted left by this before rescaling
    diff_min: int = 0  # softmax: input differences below this give probability 0
    table: np.ndarray | None = None  # an op's constant bytes (a lookup table), op-defined
    extra: dict = field(default_factory=dict)  # free-form, JSON-serialisable notes

    @property
    def out_range(self) -> tuple[int, int]:
        """The integer output clamp [lo, hi]: the bits' range, narrowed by act_min / act_max."""
        if self.out_signed:
            lo, hi = -(1 << (self.out_bits - 1)), (1 << (self.out_bits - 1)) - 1
        else:
            lo, hi = 0, (1 << self.out_bits) - 1
        if self.act_min is not None:
            lo = max(lo, int(self.act_min))
        if self.act_max is not None:
            hi = min(hi, int(self.act_max))
        return lo, hi

    def unpacked_weights(self) -> np.ndarray:
        """The weight codes (unsigned, before zero-point subtraction) in ``weight_shape``."""
        rows, n = weight_rows(self.kind, self.weight_shape)
        return unpack(self.weights.reshape(rows, -1), self.weight_bits, n).reshape(
            self.weight_shape)

    def set_weights(self, codes: np.ndarray, bits: int) -> None:
        """Pack unsigned weight ``codes`` (in the layout of the module docstring) into the layer."""
        codes = np.asarray(codes)
        rows, n = weight_rows(self.kind, codes.shape)
        self.weight_shape, self.weight_bits = tuple(int(s) for s in codes.shape), int(bits)
        self.weights = pack(codes.reshape(rows, n), bits)

    @property
    def out_channels(self) -> int:
        return int(self.out_shape[-1])

    def validate(self) -> None:
        """Raise ValueError naming the layer and the field when the record is inconsistent: the
        kind is registered (:mod:`tinyopt.integer.ops`), the rounding known, a kind that keeps
        its input's quantization keeps it, the (m0, n0) pairs the kind holds, then the op's own
        checks."""
        where = f"layer {self.name!r} ({self.kind})"
        op = REGISTRY.get(self.kind)
        if op is None:
            raise ValueError(f"{where}: unknown kind; choose one of {sorted(REGISTRY)}")
        if self.rounding is not None and self.rounding not in ROUNDINGS:
            raise ValueError(f"{where}: rounding must be None or one of {ROUNDINGS}")
        lo, hi = self.out_range
        if lo > hi:  # every kernel would clamp differently (min-then-max or max-then-min)
            raise ValueError(f"{where}: the output clamp [act_min, act_max] = "
                             f"[{self.act_min}, {self.act_max}] leaves no {self.out_bits}-bit "
                             f"code in [{lo}, {hi}]; set act_min <= act_max within the output's "
                             "code range")
        if op.same_quantization and (self.in_zero_point != self.out_zero_point
                                     or self.in_bits != self.out_bits
                                     or self.in_signed != self.out_signed):
            raise ValueError(f"{where}: {self.kind} keeps the input's quantization (in/out bits, "
                             "signedness and zero point must be equal)")
        if op.n_multipliers:
            k = op.n_multipliers
            for name in ("m0", "n0"):
                arr = getattr(self, name)
                if arr is None or np.asarray(arr).shape != (k,):
                    raise ValueError(f"{where}: {name} must hold {k} entr{'y' if k == 1 else 'ies'}"
                                     f", got {None if arr is None else np.asarray(arr).shape}")
        dil = tuple(self.dilation)
        if len(dil) != 2 or not all(isinstance(d, (int, np.integer)) and d >= 1 for d in dil):
            raise ValueError(f"{where}: dilation must be two integers >= 1, got {self.dilation}")
        if dil != (1, 1) and self.kind not in ("conv2d", "pointwise", "depthwise"):
            raise ValueError(f"{where}: dilation {dil} on a {self.kind} node; only conv2d, "
                             "pointwise and depthwise layers are dilated (set it to (1, 1))")
        if op.check is not None:
            op.check(self, where)


@dataclass
class Tensor:
    """A named integer tensor of the graph: per-image ``shape`` (no batch), ``bits``,
    signedness, ``zero_point`` and real ``scale`` (real value = scale * (code - zero_point); the
    scale is documentation, the simulator never uses it)."""

    name: str
    shape: tuple
    bits: int = 8
    signed: bool = False
    zero_point: int = 0
    scale: float = 1.0

    def __post_init__(self):
        self.shape = tuple(int(d) for d in self.shape)


# (layer field, tensor field) pairs that must agree between a node and the tensors it reads
# (in_*) and writes (out_*).
_IN_FIELDS = (("in_shape", "shape"), ("in_bits", "bits"), ("in_signed", "signed"),
              ("in_zero_point", "zero_point"))
_OUT_FIELDS = (("out_shape", "shape"), ("out_bits", "bits"), ("out_signed", "signed"),
               ("out_zero_point", "zero_point"))


@dataclass
class IntegerGraph:
    """A directed acyclic graph of integer nodes (``layers``, kept in a topological order by the
    builders; :meth:`order` computes one for any listing).

    ``input_*`` describe the graph's integer input tensor ``input_name``; ``outputs`` name the
    output tensors (empty: the last node's output). ``tensors`` holds explicit tensor records;
    see the module docstring for the chain shorthand.
    """

    layers: list[IntegerLayer]
    input_shape: tuple
    input_bits: int = 8
    input_signed: bool = False
    input_zero_point: int = 0
    input_scale: float = 1.0
    rounding: str = "floor"
    name: str = "graph"
    meta: dict = field(default_factory=dict)
    input_name: str = "graph_input"
    outputs: list = field(default_factory=list)
    tensors: dict = field(default_factory=dict)  # name -> Tensor

    # ---------------------------------------------------------------- wiring
    def wiring(self) -> list[tuple[tuple, tuple]]:
        """(input tensor names, output tensor names) of every node, in ``layers`` order, with the
        chain shorthand resolved."""
        out, prev = [], (self.input_name,)
        for layer in self.layers:
            ins = tuple(layer.inputs) if layer.inputs else prev[:1]
            outs = tuple(layer.outputs) if layer.outputs else (layer.name,)
            out.append((ins, outs))
            prev = outs
        return out

    def output_names(self) -> list[str]:
        """The graph's output tensor names (default: the last node's first output)."""
        if self.outputs:
            return list(self.outputs)
        return [self.wiring()[-1][1][0]] if self.layers else [self.input_name]

    def producers(self) -> dict[str, int]:
        """Tensor name -> index in ``layers`` of the node that writes it."""
        return {t: i for i, (_, outs) in enumerate(self.wiring()) for t in outs}

    def tensor(self, name: str) -> Tensor:
        """The record of tensor ``name``: explicit (``tensors``) or derived from its producer's
        ``out_*`` fields (the graph's ``input_*`` fields for the input).

        Raises:
            KeyError: no node writes ``name`` and it is not the graph input.
        """
        if name in self.tensors:
            return self.tensors[name]
        if name == self.input_name:
            return Tensor(name, self.input_shape, self.input_bits, self.input_signed,
                          self.input_zero_point, self.input_scale)
        prod = self.producers()
        if name not in prod:
            raise KeyError(f"no tensor {name!r}: it is neither the graph input "
                           f"{self.input_name!r} nor written by a node")
        lay = self.layers[prod[name]]
        return Tensor(name, lay.out_shape, lay.out_bits, lay.out_signed, lay.out_zero_point,
                      lay.out_scale)

    def order(self) -> list[int]:
        """A topological execution order (indices into ``layers``; stable: the listing order
        whenever it is already topological).

        Raises:
            ValueError: a cycle (naming the nodes on it) or an input tensor nobody writes.
        """
        wiring = self.wiring()
        prod = self.producers()
        deps = []
        for layer, (ins, _) in zip(self.layers, wiring):
            d = set()
            for t in ins:
                if t == self.input_name and t not in prod:
                    continue
                if t not in prod:
                    raise ValueError(f"node {layer.name!r}: field inputs names tensor {t!r}, "
                                     f"which no node writes and which is not the graph input "
                                     f"{self.input_name!r}")
                d.add(prod[t])
            deps.append(d)
        done, order = set(), []
        while len(order) < len(self.layers):
            ready = [i for i in range(len(self.layers)) if i not in done and deps[i] <= done]
            if not ready:
                stuck = [self.layers[i].name for i in range(len(self.layers)) if i not in done]
                raise ValueError(f"the graph has a cycle through nodes {stuck}; a node may only "
                                 "read tensors written before it")
            order.append(ready[0])
            done.add(ready[0])
        return order

    def is_chain(self) -> bool:
        """True when every node reads exactly the previous node's output (the graph input for
        the first) and the last node's output is the only graph output: what the memory model
        (tinyopt.mixed.memory) describes; the C export runs any DAG."""
        prev = self.input_name
        for layer, (ins, outs) in zip(self.layers, self.wiring()):
            if ins != (prev,) or len(outs) != 1:
                return False
            prev = outs[0]
        return self.output_names() == [prev]

    def consumers(self) -> dict[str, list[int]]:
        """Tensor name -> indices of the nodes that read it."""
        out: dict[str, list[int]] = {}
        for i, (ins, _) in enumerate(self.wiring()):
            for t in ins:
                out.setdefault(t, []).append(i)
        return out

    # ---------------------------------------------------------------- validation
    def validate(self) -> None:
        """Check the graph: flavour, node kinds and per-node fields, unique node and tensor
        names, every input tensor written before it is read (no cycle), each node's ``in_*`` /
        ``out_*`` fields equal to the tensors it reads and writes, input counts per kind,
        shapes of ``add`` / ``concat``, and that the outputs exist.

        Raises:
            ValueError: naming the node (or tensor) and the field at fault.
        """
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {self.rounding!r}")
        if not self.layers:
            raise ValueError("an IntegerGraph needs at least one layer")
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"node names must be unique; repeated: {dup}")
        for key, t in self.tensors.items():
            if not isinstance(t, Tensor) or t.name != key:
                raise ValueError(f"tensors[{key!r}] must be a Tensor named {key!r}")
        wiring = self.wiring()
        written = {}
        for layer, (_, outs) in zip(self.layers, wiring):
            for t in outs:
                if t == self.input_name:
                    raise ValueError(f"node {layer.name!r}: field outputs writes the graph input "
                                     f"tensor {t!r}")
                if t in written:
                    raise ValueError(f"tensor {t!r} is written by nodes {written[t]!r} and "
                                     f"{layer.name!r}; every tensor has one producer")
                written[t] = layer.name
        self.order()  # raises on cycles and dangling inputs
        for layer, (ins, outs) in zip(self.layers, wiring):
            layer.validate()
            where = f"layer {layer.name!r} ({layer.kind})"
            op = REGISTRY[layer.kind]
            n_in = op.n_inputs
            if (n_in is None and len(ins) < 2) or (n_in is not None and len(ins) != n_in):
                raise ValueError(f"{where}: field inputs names {len(ins)} tensors {list(ins)}; "
                                 f"{layer.kind} reads {n_in or 'two or more'}")
            if len(outs) != 1:
                raise ValueError(f"{where}: field outputs must name one tensor, got {list(outs)}")
            src = self.tensor(ins[0])
            for lf, tf in _IN_FIELDS:
                have, want = getattr(layer, lf), getattr(src, tf)
                if (tuple(have) if lf == "in_shape" else have) != want:
                    raise ValueError(f"{where}: field {lf} is {have!r} but its input tensor "
                                     f"{src.name!r} has {tf} {want!r} (the previous node or the "
                                     "graph input gives that)")
            if outs[0] in self.tensors:
                dst = self.tensors[outs[0]]
                for lf, tf in _OUT_FIELDS:
                    have, want = getattr(layer, lf), getattr(dst, tf)
                    if (tuple(have) if lf == "out_shape" else have) != want:
                        raise ValueError(f"{where}: field {lf} is {have!r} but its output "
                                         f"tensor {dst.name!r} has {tf} {want!r}")
            if op.check_inputs is not None:
                op.check_inputs(layer, where, [self.tensor(t) for t in ins])
        for t in self.output_names():
            if t not in written and t != self.input_name:
                raise ValueError(f"graph output {t!r} is not written by any node")

    def quantize_input(self, x, rounding: str = "half_even") -> np.ndarray:
        """Float model-ready images -> the graph's integer input codes:
        clamp(round(x / S) + Z) over the input bits, computed in float32 like the fake-quant
        input quantizer (:func:`tinyopt.mixed.quantizers.input_quant`), so the codes are identical.

        Arguments:
            x: float images [N, *input_shape].
            rounding: "half_even" (tinyopt's input quantizer, ``tf.round``) or "half_away"
                (TFLite's QUANTIZE, for graphs read from a .tflite).

        Returns:
            int32 codes [N, *input_shape].

        Raises:
            ValueError: wrong shape or unknown rounding.
        """
        x = np.asarray(x, np.float32)
        if x.shape[1:] != tuple(self.input_shape):
            raise ValueError(f"images have shape {x.shape[1:]} per image, the graph expects "
                             f"{tuple(self.input_shape)}")
        v = x / np.float32(self.input_scale)
        if rounding == "half_even":
            q = np.round(v)
        elif rounding == "half_away":
            q = np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))
        else:
            raise ValueError(f"rounding must be 'half_even' or 'half_away', got {rounding!r}")
        if self.input_signed:
            lo, hi = -(1 << (self.input_bits - 1)), (1 << (self.input_bits - 1)) - 1
        else:
            lo, hi = 0, (1 << self.input_bits) - 1
        return np.clip(q + np.float32(self.input_zero_point), lo, hi).astype(np.int32)

    def __getitem__(self, name: str) -> IntegerLayer:
        """The node called ``name`` (KeyError listing the node names otherwise)."""
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r}; layers are {[layer.name for layer in self.layers]}")

    # ---------------------------------------------------------------- persistence
    def save(self, path) -> Path:
        """Write one ``.npz`` (JSON header + arrays, format version :data:`VERSION`), atomically
        (temp file, then rename). Version 1 files (chains, before tensors and wiring) still load.

        Returns:
            The resolved path written.
        """
        self.validate()
        header = {"format": FORMAT, "version": VERSION,
                  "graph": {f.name: plain(getattr(self, f.name)) for f in fields(self)
                            if f.name not in ("layers", "tensors")},
                  "tensors": [plain(vars(t)) for t in self.tensors.values()],
                  "layers": []}
        arrays = {}
        for i, layer in enumerate(self.layers):
            record = {}
            for f in fields(layer):
                value = getattr(layer, f.name)
                if f.name in ARRAY_FIELDS:
                    record[f.name] = value is not None
                    if value is not None:
                        arrays[f"layer{i}.{f.name}"] = np.asarray(value, ARRAY_DTYPES[f.name])
                else:
                    record[f.name] = plain(value)
            header["layers"].append(record)
        text = json.dumps(header, sort_keys=True)
        with atomic_path(path, ".npz") as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, header=np.frombuffer(text.encode(), np.uint8), **arrays)
        return Path(path).resolve()

    @classmethod
    def load(cls, path) -> IntegerGraph:
        """Read a graph written by :meth:`save`.

        Raises:
            FileNotFoundError: no such file.
            GraphFileError: damaged file, not an IntegerGraph, or a version this code cannot read.
        """
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"no IntegerGraph file at {path}")
        try:
            with np.load(path, allow_pickle=False) as npz:
                if "header" not in npz.files:
                    raise GraphFileError(f"{path} is an .npz but not an IntegerGraph (no header)")
                header = json.loads(npz["header"].tobytes().decode())
                arrays = {k: npz[k] for k in npz.files if k != "header"}
        except GraphFileError:
            raise
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, UnicodeDecodeError) as exc:
            raise GraphFileError(f"{path} is damaged or not an IntegerGraph .npz "
                                 f"({type(exc).__name__}: {exc}); re-create it with "
                                 "IntegerGraph.save") from exc
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise GraphFileError(f"{path} is not an IntegerGraph file (format "
                                 f"{header.get('format') if isinstance(header, dict) else '?'})")
        if header.get("version") not in READABLE_VERSIONS:
            raise GraphFileError(f"{path} has IntegerGraph version {header.get('version')}; this "
                                 f"tinyopt reads versions {list(READABLE_VERSIONS)} (writes "
                                 f"{VERSION}); re-create it with this tinyopt")
        try:
            layers = []
            for i, record in enumerate(header["layers"]):
                kwargs = {}
                for f in fields(IntegerLayer):
                    if f.name in ARRAY_FIELDS:
                        stored = record.get(f.name)  # fields added later are absent: None
                        kwargs[f.name] = arrays[f"layer{i}.{f.name}"] if stored else None
                    elif f.name in record:
                        value = record[f.name]
                        kwargs[f.name] = tuple(value) if isinstance(value, list) else value
                layers.append(IntegerLayer(**kwargs))
            g = dict(header["graph"])
            g["input_shape"] = tuple(g["input_shape"])
            # version 1 files are chains: no tensors, no wiring (the chain shorthand reads them)
            tensors = {t["name"]: Tensor(**t) for t in header.get("tensors", [])}
            graph = cls(layers=layers, tensors=tensors, **g)
            graph.validate()
        except (KeyError, TypeError, ValueError) as exc:
            raise GraphFileError(f"{path} has an inconsistent IntegerGraph record "
                                 f"({type(exc).__name__}: {exc})") from exc
        return graph


def plain(value):
    """JSON-ready copy: tuples -> lists, numpy scalars -> Python numbers."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"non-finite value {value} cannot be stored")
    return value

"""The integer-only graph: the plain, inspectable structure the bit-exact simulator
(:mod:`tinyopt.sim`) and the C export (:mod:`tinyopt.codegen`) run.

An :class:`IntegerGraph` is a chain of :class:`IntegerLayer` records, plain dataclasses holding
numpy arrays, that says exactly what an integer-only MCU kernel sequence computes
(``docs/integer.md``, "Lowering a fake-quant model" and "CMix-NN kernels"):
- compute layers ``conv2d``, ``pointwise`` (a 1x1 ``conv2d``), ``depthwise`` and ``dense``:
  weights as unsigned Q-bit codes with zero point(s) ``weight_zero_point`` (one per layer, PL, or
  one per output channel, PC), packed LSB-first (:func:`pack`), each row starting on a byte:
  conv ``[c_out][ky][kx][c_in]``, depthwise ``[ky][kx][c]`` (one row per tap), dense
  ``[c_out][c_in]``; an int32 ``bias`` B_q; the requantization multiplier ``m0`` (int32, Q1.31)
  and exponent ``n0`` (int8), one per layer (FB) or per output channel (ICN), meaning
  M = m0 * 2^(n0 - 31) (the same convention as TFLite's ``QuantizeMultiplier``; CMix-NN's
  ``n_zero`` is ``-(n0 + 1)``);
- ``maxpool``, ``avgpool``, ``flatten`` / ``reshape``, and ``softmax`` (a placeholder: the
  simulator refuses it).

Every layer records its input and output bits, signedness, zero point and real scale (the scales
are for reference only: the simulator never uses a float scale). ``graph.rounding`` selects the
requantization flavour: ``"floor"`` (CMix-NN: high word of the 64-bit product, then arithmetic
shifts), ``"tflite_single"`` (TFLite single rounding) or ``"tflite_double"`` (rounding doubling
high multiply, then rounding divide by a power of two); a layer's ``rounding`` overrides it. See
:mod:`tinyopt.sim`.

``IntegerGraph.save(path)`` / ``IntegerGraph.load(path)`` store one ``.npz`` with a versioned JSON
header; :meth:`IntegerGraph.quantize_input` maps float images onto its integer input. Graphs come
from :func:`tinyopt.icn.convert` (fake-quant model) or :func:`tinyopt.sim.graph_from_tflite`.
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

FORMAT = "tinyopt.IntegerGraph"
VERSION = 1
COMPUTE_KINDS = ("conv2d", "pointwise", "depthwise", "dense")
POOL_KINDS = ("maxpool", "avgpool")
SHAPE_KINDS = ("flatten", "reshape")
KINDS = COMPUTE_KINDS + POOL_KINDS + SHAPE_KINDS + ("softmax",)
ROUNDINGS = ("floor", "tflite_single", "tflite_double")
PAD_MODES = ("zero_point", "zero")
# Average-pool division: floor (CMix-NN style floor everywhere; tinyopt.qat's avg_pool_floor) or
# round half away from zero (TFLite AVERAGE_POOL_2D, CMSIS-NN).
AVG_ROUNDINGS = ("floor", "half_away")
PACK_BITS = (1, 2, 4, 8)
# Array-valued layer fields (stored as npz members); everything else goes into the JSON header.
ARRAY_FIELDS = ("weights", "weight_zero_point", "bias", "m0", "n0", "weight_scale")
ARRAY_DTYPES = {"weights": np.uint8, "weight_zero_point": np.int32, "bias": np.int32,
                "m0": np.int32, "n0": np.int8, "weight_scale": np.float64}


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
    # pools
    pool_size: tuple = (1, 1)
    act_min: int | None = None
    act_max: int | None = None
    rounding: str | None = None  # None: the graph's flavour
    avg_rounding: str | None = None  # avgpool; None: "floor" for floor graphs, else "half_away"
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
        """Raise ValueError naming the layer and the field when the record is inconsistent."""
        where = f"layer {self.name!r} ({self.kind})"
        if self.kind not in KINDS:
            raise ValueError(f"{where}: unknown kind; choose one of {KINDS}")
        if self.kind in COMPUTE_KINDS:
            for name in ("weights", "weight_shape", "weight_zero_point", "bias"):
                if getattr(self, name) is None:
                    raise ValueError(f"{where}: compute layers need {name}")
            c = self.out_channels
            rows, n = weight_rows(self.kind, self.weight_shape)
            if self.weights.shape != (rows, -(-n * self.weight_bits // 8)):
                raise ValueError(f"{where}: packed weights have shape {self.weights.shape}, "
                                 f"expected {(rows, -(-n * self.weight_bits // 8))} for "
                                 f"{self.weight_bits}-bit {self.weight_shape}")
            per_channel = [("bias", self.bias)]
            if self.requantize:
                if self.m0 is None or self.n0 is None:
                    raise ValueError(f"{where}: requantizing layers need m0 and n0")
                per_channel += [("m0", self.m0), ("n0", self.n0)]
            per_channel.append(("weight_zero_point", self.weight_zero_point))
            for name, arr in per_channel:
                if arr.ndim != 1 or (len(arr) not in (1, c) or (name == "bias" and len(arr) != c)):
                    raise ValueError(f"{where}: {name} must have 1 (per layer) or {c} (per "
                                     f"channel) entries, got shape {arr.shape}")
            if self.rounding is not None and self.rounding not in ROUNDINGS:
                raise ValueError(f"{where}: rounding must be None or one of {ROUNDINGS}")
            if self.pad_mode not in PAD_MODES:
                raise ValueError(f"{where}: pad_mode must be one of {PAD_MODES}")
        if self.avg_rounding is not None and self.avg_rounding not in AVG_ROUNDINGS:
            raise ValueError(f"{where}: avg_rounding must be None or one of {AVG_ROUNDINGS}")
        if self.kind in POOL_KINDS and (self.in_zero_point != self.out_zero_point
                                        or self.in_bits != self.out_bits):
            raise ValueError(f"{where}: pools keep the input's quantization")


@dataclass
class IntegerGraph:
    """A chain of integer layers. ``input_*`` describe the integer input the first layer reads."""

    layers: list[IntegerLayer]
    input_shape: tuple
    input_bits: int = 8
    input_signed: bool = False
    input_zero_point: int = 0
    input_scale: float = 1.0
    rounding: str = "floor"
    name: str = "graph"
    meta: dict = field(default_factory=dict)

    def validate(self) -> None:
        """Check the chain: kinds, per-layer fields, and each layer's input = previous output."""
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {self.rounding!r}")
        if not self.layers:
            raise ValueError("an IntegerGraph needs at least one layer")
        names = [layer.name for layer in self.layers]
        if len(set(names)) != len(names):
            raise ValueError(f"layer names must be unique, got {names}")
        shape, zp = tuple(self.input_shape), self.input_zero_point
        for layer in self.layers:
            layer.validate()
            if tuple(layer.in_shape) != shape or layer.in_zero_point != zp:
                raise ValueError(f"layer {layer.name!r} reads shape {tuple(layer.in_shape)} "
                                 f"zero point {layer.in_zero_point}, but the previous layer "
                                 f"gives shape {shape} zero point {zp}")
            shape, zp = tuple(layer.out_shape), layer.out_zero_point

    def quantize_input(self, x, rounding: str = "half_even") -> np.ndarray:
        """Float model-ready images -> the graph's integer input codes:
        clamp(round(x / S) + Z) over the input bits, computed in float32 like the fake-quant
        input quantizer (:func:`tinyopt.quantizers.input_quant`), so the codes are identical.

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
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"no layer {name!r}; layers are {[layer.name for layer in self.layers]}")

    # ---------------------------------------------------------------- persistence
    def save(self, path) -> Path:
        """Write one ``.npz`` (JSON header + arrays), atomically (temp file, then rename).

        Returns:
            The resolved path written.
        """
        self.validate()
        header = {"format": FORMAT, "version": VERSION,
                  "graph": {f.name: plain(getattr(self, f.name)) for f in fields(self)
                            if f.name != "layers"},
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
        if header.get("version") != VERSION:
            raise GraphFileError(f"{path} has IntegerGraph version {header.get('version')}; this "
                                 f"tinyopt reads version {VERSION}; re-create it with this "
                                 "tinyopt")
        try:
            layers = []
            for i, record in enumerate(header["layers"]):
                kwargs = {}
                for f in fields(IntegerLayer):
                    if f.name in ARRAY_FIELDS:
                        kwargs[f.name] = arrays[f"layer{i}.{f.name}"] if record[f.name] else None
                    elif f.name in record:
                        value = record[f.name]
                        kwargs[f.name] = tuple(value) if isinstance(value, list) else value
                layers.append(IntegerLayer(**kwargs))
            g = dict(header["graph"])
            g["input_shape"] = tuple(g["input_shape"])
            graph = cls(layers=layers, **g)
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

"""Per-layer precision policies.

A :class:`Policy` says, for every compute layer (Conv2D, DepthwiseConv2D, Dense) in graph order,
how many bits its weights and its output activations get, whether weights are quantized per layer
("PL") or per output channel ("PC"), and whether BatchNorm is folded into the weights ("FB") or kept
and turned into Integer Channel-Normalization ("ICN"). Layer i's input bits are layer i-1's output
bits; the network input stays 8-bit.

:func:`memory_driven` builds a Policy with the mixed-precision paper's memory-driven rule (flash
and RAM budgets; docs/mixed_precision.md#memory-driven-policy); it raises :class:`BudgetError` when
no assignment of bits fits.

It is shared by the sub-byte quantizers (``tinyopt.quantize_qat``, ``tinyopt.quantize_ptq``), the
memory model (``tinyopt.mixed.memory``) and the integer conversion (``tinyopt.to_integer_graph``).
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, field

ALLOWED_BITS = (2, 4, 8)
INPUT_BITS = 8
GRANULARITIES = ("PL", "PC")
FOLDS = ("FB", "ICN")

# Byte-size suffixes of :func:`parse_bytes`: binary, as microcontroller datasheets count memory
# ("512k of RAM" = 512 KiB). k and K are the same; a trailing "B" / "iB" is optional.
BYTE_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
_BYTES_RE = re.compile(r"(\d[\d_]*(?:\.\d+)?)\s*([kmg]?)(?:i?b)?", re.IGNORECASE)


def parse_bytes(value, argument: str = "budget") -> int:
    """A memory budget as a whole number of bytes; the one place budgets are read.

    Accepts a positive int (``524288``), a positive finite float (rounded down to whole bytes:
    ``1.5e6``) or a string with an optional binary suffix: ``"512k"`` = ``"512K"`` =
    ``"512KiB"`` = ``"512kB"`` = 512 * 1024, ``"2M"`` = 2 * 1024**2, ``"1G"`` = 1024**3,
    ``"2_048_000"`` or ``"2048000B"`` = 2,048,000 bytes. Suffixes are **binary** (k = 1024,
    M = 1024^2, G = 1024^3; the paper's "MB" is MiB too); write decimal budgets as plain numbers.

    Arguments:
        value: the budget.
        argument: its name, used in error messages (e.g. ``"ram_bytes"``).

    Returns:
        The budget in bytes, an int >= 1.

    Raises:
        TypeError: not a number or a string (e.g. None, a list, a bool).
        ValueError: a string that is not a size, or a number that is not finite and positive
            (NaN, Inf, 0, negative), or less than one byte.
    """
    if isinstance(value, str):
        match = _BYTES_RE.fullmatch(value.strip())
        if not match:
            raise ValueError(f"{argument} must be a number of bytes or a size such as '512k', "
                             f"'2M' or '2_048_000' (k = 1024, M = 1024^2, G = 1024^3), got "
                             f"{value!r}")
        number = float(match[1].replace("_", "")) * BYTE_UNITS[match[2].lower()]
    elif isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argument} must be a positive number of bytes (int) or a size string "
                        f"such as '512k', got {type(value).__name__} {value!r}")
    else:
        number = float(value)
        if isinstance(value, numbers.Integral):
            number = int(value)
    if not math.isfinite(number) or number < 1:
        raise ValueError(f"{argument} must be a finite, positive number of bytes (at least 1), "
                         f"got {value!r}")
    return int(number) if isinstance(number, int) else math.floor(number)


def default_fold(granularity: str, weight_bits: int, act_bits: int, last: bool) -> str:
    """The paper's rule: per-channel is always ICN except the last layer; per-layer folds BN
    (FB) only when both weights and output are 8-bit, and the last layer (no BN) is FB."""
    if last:
        return "FB"
    if granularity == "PC":
        return "ICN"
    return "FB" if (weight_bits == 8 and act_bits == 8) else "ICN"


@dataclass
class Policy:
    """Bits and BN treatment per compute layer.

    Attributes:
        layers: compute-layer names in graph order.
        weight_bits: weight bits per layer (2, 4 or 8).
        act_bits: output-activation bits per layer (2, 4 or 8); the last layer's output (logits)
            is counted at 8 bits by the memory model whatever is written here.
        granularity: "PL" (per layer) or "PC" (per output channel) weight quantization.
        fold: per layer "FB" (BN folded into weights) or "ICN" (BN kept, integer normalization).
        trace: how the policy was obtained (e.g. the cuts of the memory-driven rule).
    """

    layers: list[str]
    weight_bits: list[int]
    act_bits: list[int]
    granularity: str = "PL"
    fold: list[str] | None = None
    trace: list[dict] = field(default_factory=list)

    def __post_init__(self):
        n = len(self.layers)
        if n == 0:
            raise ValueError("a Policy needs at least one layer")
        if len(set(self.layers)) != n:
            raise ValueError(f"layer names must be unique, got {self.layers}")
        self.weight_bits = [int(b) for b in self.weight_bits]
        self.act_bits = [int(b) for b in self.act_bits]
        if self.granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got "
                             f"{self.granularity!r}")
        if self.fold is None:
            self.fold = [default_fold(self.granularity, w, a, i == n - 1)
                         for i, (w, a) in enumerate(zip(self.weight_bits, self.act_bits))]
        for what, values in (("weight_bits", self.weight_bits), ("act_bits", self.act_bits),
                             ("fold", self.fold)):
            if len(values) != n:
                raise ValueError(f"{what} has {len(values)} entries but there are {n} layers")
        for what, values in (("weight_bits", self.weight_bits), ("act_bits", self.act_bits)):
            bad = [(name, b) for name, b in zip(self.layers, values) if b not in ALLOWED_BITS]
            if bad:
                raise ValueError(f"{what} must be in {ALLOWED_BITS}; got {bad}")
        bad = [(name, f) for name, f in zip(self.layers, self.fold) if f not in FOLDS]
        if bad:
            raise ValueError(f"fold must be one of {FOLDS}; got {bad}")

    @property
    def input_bits(self) -> list[int]:
        """Input bits per layer: 8 for the first, else the previous layer's output bits."""
        return [INPUT_BITS] + self.act_bits[:-1]

    def __getitem__(self, name: str) -> dict:
        i = self.layers.index(name)
        return {"weight_bits": self.weight_bits[i], "act_bits": self.act_bits[i],
                "input_bits": self.input_bits[i], "fold": self.fold[i]}

    def to_frame(self):
        import pandas as pd
        return pd.DataFrame({"layer": self.layers, "weight_bits": self.weight_bits,
                             "input_bits": self.input_bits, "act_bits": self.act_bits,
                             "fold": self.fold, "granularity": self.granularity})

    @classmethod
    def uniform(cls, model, w: int = 8, a: int = 8, granularity: str = "PL",
                fold: str | None = None) -> "Policy":
        """The same weight bits ``w`` and activation bits ``a`` for every policy layer of
        ``model`` (a Keras model: its compute layers and standalone BatchNormalizations,
        :func:`tinyopt.mixed.dag.policy_layers`; or a list of layer names). ``fold`` forces FB
        or ICN for every layer but the last; by default the paper's rule (:func:`default_fold`)
        decides."""
        if isinstance(model, (list, tuple)):
            names = list(model)
        else:
            from tinyopt.mixed.dag import policy_layers
            names = policy_layers(model)
        n = len(names)
        folds = None
        if fold is not None:
            folds = [fold if i < n - 1 else "FB" for i in range(n)]
        return cls(names, [w] * n, [a] * n, granularity, folds)

    def to_dict(self) -> dict:
        """Plain JSON-able fields (what a saved model stores)."""
        return {"layers": list(self.layers), "weight_bits": list(self.weight_bits),
                "act_bits": list(self.act_bits), "granularity": self.granularity,
                "fold": list(self.fold), "trace": [dict(t) for t in self.trace]}

    @classmethod
    def from_dict(cls, d: dict) -> "Policy":
        """Inverse of :meth:`to_dict`."""
        return cls(list(d["layers"]), list(d["weight_bits"]), list(d["act_bits"]),
                   d.get("granularity", "PL"), d.get("fold"), list(d.get("trace", [])))

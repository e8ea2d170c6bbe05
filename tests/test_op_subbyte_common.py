"""What the sub-byte op tests (tests/test_op_subbyte_*.py) share: tensor grids of the sub-byte
path (2/4/8-bit codes stored unsigned, a signed grid with zero point 2^(bits-1)), hand-built
nodes with random parameters, the float reference of the "floor" requantization, and the C of a
hand-built graph on the host against the simulator. The tests here check the helpers themselves
(a reference that agreed with anything would check nothing)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tinyopt.integer import sim
from tinyopt.integer.arith import m0_n0
from tinyopt.integer.fixedpoint import requant_floor, value_range
from tinyopt.integer.graph import IntegerLayer

BITS = (8, 4, 2)
GRIDS = ("signed", "unsigned")  # zero point 2^(bits-1) or 0, codes stored unsigned
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")


def grid(bits: int, kind: str) -> dict:
    """The in_* / out_* fields (without prefix) of a sub-byte tensor: ``kind`` "signed" (a
    signed grid, zero point 2^(bits-1)), "unsigned" (zero point 0), or "int8" (TFLite's
    two's-complement codes, zero point -3)."""
    if kind == "int8":
        return {"bits": 8, "signed": True, "zero_point": -3}
    return {"bits": int(bits), "signed": False,
            "zero_point": 2 ** (int(bits) - 1) if kind == "signed" else 0}


def fields(prefix: str, g: dict) -> dict:
    """IntegerLayer fields ``<prefix>_bits`` ... of grid ``g``."""
    return {f"{prefix}_{k}": v for k, v in g.items()}


def codes(rng, shape, g: dict) -> np.ndarray:
    """Uniform random codes of grid ``g`` over its whole range."""
    lo, hi = value_range(g["bits"], g["signed"])
    return rng.integers(lo, hi + 1, shape).astype(np.int64)


def floor_reference(phi, m0, n0) -> np.ndarray:
    """The floor flavour in float64: floor(Phi m0 2^(n0 - 31)), exact when |Phi| m0 < 2^53
    (asserted), m0 / n0 per channel (last axis) or scalar."""
    phi = np.asarray(phi, np.int64)
    m0 = np.asarray(m0, np.int64)
    assert np.abs(phi).max(initial=0) * np.abs(m0).max() < 2 ** 53, "not exact in float64"
    scale = np.asarray(m0, np.float64) * np.exp2(np.asarray(n0, np.float64) - 31)
    return np.floor(phi.astype(np.float64) * scale)


def multiplier(real) -> tuple[np.ndarray, np.ndarray]:
    """(m0, n0) of the sub-byte path (``arith.m0_n0``)."""
    return m0_n0(np.asarray(real, np.float64))


def spread_multiplier(fan_in: int, gin: dict, wbits: int, gout: dict) -> float:
    """A multiplier that spreads Phi = sum of ``fan_in`` products of uniform codes of ``gin``
    and ``wbits``-bit weights over most of ``gout``'s codes: with an unsigned input grid (zero
    point 0) and weight zero point 0 (what :func:`compute_node` then uses) Phi >= 0 and its mean
    maps to mid-range; with a centred input, about two standard deviations to half the range."""
    wmax = 2 ** wbits - 1
    half = 2.0 ** (gout["bits"] - 1)
    if gin["zero_point"] == 0 and not gin["signed"]:
        return half / (fan_in * (2 ** gin["bits"] - 1) / 2 * wmax / 2)
    sx, sw = 2.0 ** gin["bits"] / 12 ** 0.5, 2.0 ** wbits / 12 ** 0.5
    return half / (2 * fan_in ** 0.5 * sx * sw)


def compute_node(kind: str, name: str, src: str, in_shape, out_shape, gin: dict, gout: dict,
                 weight_shape, wbits: int, rng, real=None, per_channel: bool = True,
                 **extra) -> IntegerLayer:
    """A compute node (conv2d / pointwise / depthwise) with random ``wbits``-bit weights, zero
    points per channel (PC) or per layer (random; 0 with an unsigned input grid, so the output
    is not clamped to 0 half the time), a small random bias, and multipliers ``real`` (scalar:
    per layer; an array: per channel; None: :func:`spread_multiplier`), floor rounding."""
    c_out = int(out_shape[-1])
    wmax = 2 ** wbits - 1
    layer = IntegerLayer(kind=kind, name=name, in_shape=tuple(in_shape),
                         out_shape=tuple(out_shape), inputs=(src,), outputs=(name,),
                         **fields("in", gin), **fields("out", gout), **extra)
    layer.set_weights(rng.integers(0, wmax + 1, weight_shape), wbits)
    unsigned_in = gin["zero_point"] == 0 and not gin["signed"]
    layer.weight_zero_point = (np.zeros(c_out if per_channel else 1, np.int32) if unsigned_in
                               else rng.integers(0, wmax + 1, c_out if per_channel else 1)
                               .astype(np.int32))
    layer.bias = rng.integers(-20, 20, c_out).astype(np.int32)
    if real is None:
        ws = tuple(weight_shape)
        fan_in = ws[0] * ws[1] if kind == "depthwise" else int(np.prod(ws[1:]))
        real = spread_multiplier(fan_in, gin, wbits, gout)
    layer.m0, layer.n0 = multiplier(real)
    return layer


def host_exact(graph, x, tmp_path, kernel_file: str | None = None, min_distinct: int = 2):
    """The portable C of ``graph``, built for the host, gives the simulator's (reference engine)
    outputs to the bit on inputs ``x``.

    Returns:
        (export, the step plan's memory plan offsets by tensor name).

    Raises:
        AssertionError: the kernel file not exported, outputs that do not vary, a mismatch.
    """
    from tinyopt.deploy import codegen, mcu
    e = codegen.export_c(graph, tmp_path / "src", kernels="portable")
    if kernel_file:
        assert kernel_file in {p.name for p in e.sources}, f"{kernel_file} not exported"
    exe = mcu.build_host(e, build_dir=tmp_path / "host")
    want = codegen.reference_output(graph, x)
    assert len({r.tobytes() for r in want}) >= min_distinct, "the output does not vary"
    got = mcu.run_host(exe, e, x, work_dir=tmp_path / "run")
    np.testing.assert_array_equal(got, want)
    return e


def trace(graph, x) -> dict:
    """Every node's output on the numpy reference engine."""
    return sim.run(graph, x, trace=True, engine="reference")


# ------------------------------------------------------------------------------ the helpers

def test_floor_reference_is_requant_floor_and_not_rounding():
    """On random accumulators and multipliers of both shift signs the float reference is the
    simulator's floor requantization, and it differs from round-to-nearest (a reference that
    rounded would be caught)."""
    rng = np.random.default_rng(0)
    phi = rng.integers(-70000, 70000, 20000)
    differs = 0
    for real in (3e-5, 0.013, 0.49, 1.7, 6.0):
        m0, n0 = multiplier(real)
        want = floor_reference(phi, m0[0], n0[0])
        np.testing.assert_array_equal(requant_floor(phi, m0[0], n0[0]), want)
        differs += int(np.sum(want != np.round(phi * real)))
    assert differs > 1000


def test_grids():
    assert grid(4, "signed") == {"bits": 4, "signed": False, "zero_point": 8}
    assert grid(2, "unsigned")["zero_point"] == 0
    c = codes(np.random.default_rng(1), 5000, grid(2, "signed"))
    assert set(np.unique(c)) == {0, 1, 2, 3}

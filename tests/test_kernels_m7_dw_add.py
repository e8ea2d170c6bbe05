"""The Cortex-M7 3x3 depthwise row kernel (tn_m7_dw3, c/tn_m7_dw.h) on the MLPerf Tiny models
(ResNet-8's ADD kernels, c/tn_m7_add.h: tests/test_kernels_m7.py): bit-exact with tinyopt.sim
on the host (every rounding flavour and requantization form the row kernel takes) and under
QEMU.

The row kernel's scratch is planned by :func:`tinyopt.integer.steps.scratch_parts`
(:func:`tinyopt.integer.steps.dw3_scratch_bytes`); one test checks that a step whose plan lacks
it keeps tn_m7_depthwise and says why.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests._qemu_many import host_batch_fixture, check_many
from tests.test_kernels_m7 import _dw, chain, host_check
from tinyopt.deploy import kernels_m7, mcu
from tinyopt.integer import steps as steps_mod

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")


@pytest.fixture
def dw3_planned():
    """The planner plans the row kernel's scratch (integer.steps.scratch_parts)."""
    return None


def _int8_offsets(g):
    """The graph with every 8-bit depthwise layer's weights clipped so that w - z_w fits int8
    (TFLite's symmetric weights do; chain() draws codes over all of [0, 255])."""
    for lay in g.layers:
        if lay.kind == "depthwise" and lay.weight_bits == 8:
            zw = np.broadcast_to(np.atleast_1d(np.asarray(lay.weight_zero_point, np.int64)),
                                 (lay.weights.shape[1],))
            w = np.asarray(lay.weights, np.int64)
            lay.weights = np.clip(w, zw - 128, zw + 127).astype(lay.weights.dtype)
    return g


def _dw3_calls(e, tmp_path):
    text = "".join(p.read_text() for p in (tmp_path / "src").glob("*.c"))
    return text.count("tn_m7_dw3(l,")


# 8-bit 3x3 depthwise chains: stride 1 and 2, odd / even widths (a lone last output), SAME and
# VALID, zero-point and integer-0 padding, signed and unsigned inputs, PL and PC multipliers,
# ReLU-like clamps inside the 8-bit range, widths of 8+ outputs (doubled weights) and fewer.
DW3_CHAINS = {
    "tflite_double": ("tflite_double", True, -128, (11, 11, 8), [
        _dw(8, 11, 8, 8, pad_mode="zero_point", per_channel=True, icn=True, out_signed=True,
            out_zero_point=-128),
        _dw(8, 11, 8, 8, stride=2, pad_mode="zero_point", per_channel=True, icn=True,
            out_signed=True, out_zero_point=5),
        _dw(8, 6, 8, 8, pad_mode="zero", per_channel=True, icn=True, out_signed=True,
            out_zero_point=-3),
        dict(kind="flatten"),
        dict(kind="dense", out_shape=(5,), wshape=(5, 288), wbits=8, out_bits=32,
             out_signed=True, requantize=False)]),
    "wide": ("tflite_double", True, 3, (5, 18, 12), [
        dict(_dw(12, 5, 8, 8, pad_mode="zero", per_channel=True, icn=True, out_signed=True,
                 out_zero_point=-100), out_shape=(5, 18, 12),
             padding=(1, 1, 1, 1)),
        dict(_dw(12, 5, 8, 8, stride=2, per_channel=True, icn=True, out_signed=True),
             out_shape=(2, 8, 12), padding=(0, 0, 0, 0)),
        dict(kind="flatten"),
        dict(kind="dense", out_shape=(5,), wshape=(5, 192), wbits=8, out_bits=32,
             out_signed=True, requantize=False)]),
    "single_floor": ("tflite_single", False, 7, (7, 9, 16), [
        dict(_dw(16, 7, 8, 8, per_channel=True, icn=True, out_zero_point=2),
             out_shape=(7, 9, 16)),
        dict(_dw(16, 7, 8, 8, stride=2, pad_mode="zero", out_zero_point=9, rounding="floor"),
             out_shape=(4, 5, 16)),
        dict(kind="flatten"),
        dict(kind="dense", out_shape=(5,), wshape=(5, 320), wbits=8, out_bits=32,
             out_signed=True, requantize=False)]),
    # stride 2 on the assembly row loop (tn_dw3_row2) and chunk build: unsigned inputs
    # (UXTAB16) and outputs (USAT), 2 C > 255 bytes per output pair (ADDW), doubled (9 and 8
    # outputs) and not (5, 4), odd widths (the lone last output), PL = 1 (codes one at a time),
    # PL = 2 and W % 4 = 2 (the two-pixel ends), a padding row
    "s2_asm": ("tflite_double", False, 3, (17, 17, 136), [
        _dw(136, 17, 8, 8, stride=2, pad_mode="zero_point", per_channel=True, icn=True,
            out_signed=False, out_zero_point=7),
        _dw(136, 9, 8, 8, stride=2, per_channel=True, icn=True, out_signed=True,
            out_zero_point=-6),
        dict(_dw(136, 5, 8, 8, stride=2, pad_mode="zero_point", per_channel=True, icn=True,
                 out_signed=True, out_zero_point=2), out_shape=(4, 4, 136),
             padding=(2, 2, 2, 2)),
        dict(kind="flatten"),
        dict(kind="dense", out_shape=(5,), wshape=(5, 2176), wbits=8, out_bits=32,
             out_signed=True, requantize=False)]),
    # the floor form (DWQ = 2) with per-channel multipliers on the assembly, 18 wide (16
    # columns in chunks, two at the end), doubled-width output rows of 8
    "s2_floor_pc": ("tflite_single", True, -3, (18, 18, 8), [
        dict(_dw(8, 18, 8, 8, stride=2, per_channel=True, icn=True, out_zero_point=4,
                 rounding="floor"), out_shape=(8, 8, 8), padding=(0, 0, 0, 0)),
        dict(kind="flatten"),
        dict(kind="dense", out_shape=(5,), wshape=(5, 512), wbits=8, out_bits=32,
             out_signed=True, requantize=False)]),
}


def _asm_row(step, plan) -> bool:
    """Does c/tn_m7_dw.h's TN_DW3_FITS2 give ``step`` (row kernel ``plan``) the assembly row
    loop on a Cortex-M7: stride 2, 8-bit inputs and outputs, compact weights, DWQ 1 or 2,
    per-channel multipliers, no clamp inside the output type?"""
    lay = step.layer
    full = (-128, 127) if plan["OS"] else (0, 255)
    return (lay.stride[1] == 2 and lay.in_bits == 8 and lay.out_bits == 8 and not plan["WIDE"]
            and plan["DWQ"] != 0
            and np.size(lay.m0) > 1 and (plan["LO"], plan["HI"]) == full)


def _dw3_graph(name):
    rounding, signed, zin, shape, layers = DW3_CHAINS[name]
    return _int8_offsets(chain(len(name) + 20, layers, shape, 8, signed, zin, rounding))


# This module's host checks in one host program (tests._qemu_many.HostBatch).
host_batch = host_batch_fixture({
    "test_dw3_row_kernel_host_bitexact": lambda mp, name: (_dw3_graph(name), 24),
})


@pytest.mark.parametrize("name", sorted(DW3_CHAINS))
def test_dw3_row_kernel_host_bitexact(tmp_path, dw3_planned, host_batch, name):
    g = _dw3_graph(name)
    e = host_check(g, tmp_path, n=24, batch=host_batch)
    dws = [s for s in e.steps if s.layer.kind == "depthwise"]
    assert _dw3_calls(e, tmp_path) == len(dws), "every depthwise step on the row kernel"
    plans = [kernels_m7.dw3_plan(s, g.rounding) for s in dws]
    assert all(isinstance(p, dict) for p in plans), plans
    if name == "tflite_double":  # the folded SMMLAR form, with (11 wide) and without doubling
        assert [p["DWQ"] for p in plans] == [1, 1, 1]
    if name == "single_floor":  # tn_m7_out's form (single rounding), the floor SMMLA form
        assert [p["DWQ"] for p in plans] == [0, 2]
    if name.startswith("s2_"):  # every step on the assembly (checked under QEMU below)
        assert all(_asm_row(s, p) for s, p in zip(dws, plans)), plans
        assert [p["DWQ"] for p in plans] == ([1, 1, 1] if name == "s2_asm" else [2])


@pytest.mark.slow
def test_dw3_row_kernel_under_qemu(qemu, tmp_path, dw3_planned):
    """The row kernel's Cortex-M7 build (its assembly: tn_dw3_row2, the chunk build) bit-exact
    with the simulator under QEMU, on every chain above (one program: tests/_qemu_many.py)."""
    graphs, xs = {}, {}
    for name, (rounding, signed, zin, shape, layers) in sorted(DW3_CHAINS.items()):
        graphs[name] = _int8_offsets(chain(len(name) + 20, layers, shape, 8, signed, zin,
                                           rounding))
        lo = -128 if signed else 0
        xs[name] = np.random.default_rng(6).integers(lo, lo + 256, (6, *shape))
    exports = check_many(graphs, xs, tmp_path, host_images=6, mcu_images=6)
    for name, e in exports.items():
        assert _dw3_calls(e, tmp_path / name) == e.kernels.count("depthwise"), name


@pytest.mark.slow
@pytest.mark.parametrize("flags", [("-O0",)])  # -DTN_M7_NO_ASM takes the same #if
def test_dw3_without_its_assembly_under_qemu(qemu, tmp_path, monkeypatch, dw3_planned, flags):
    """A firmware build that cannot take the row kernel's assembly (a debug build: its
    immediates do not fold; a frame pointer: it needs r7) compiles and runs the C loops,
    bit-exact under QEMU: the library a user drops into a firmware must not depend on -O2."""
    cflags = tuple(f for f in mcu.MCU_CFLAGS if f != "-O2") + flags
    monkeypatch.setattr(mcu, "MCU_CFLAGS", cflags)
    rounding, signed, zin, shape, layers = DW3_CHAINS["s2_asm"]
    g = _int8_offsets(chain(26, layers, shape, 8, signed, zin, rounding))
    x = np.random.default_rng(6).integers(0, 256, (3, *shape))
    r = mcu.deploy(g, x, tmp_path, name="s2_noasm", host_images=3, mcu_images=3)
    s = r["summary"]
    assert s["mcu_images"] == 3 and s["mcu_mismatching_values"] == 0

def test_dw3_needs_its_planned_scratch(tmp_path):
    """The planner gives the row kernel its scratch (integer.steps.scratch_parts), and the
    choice takes the row kernel; a step whose plan lacks that scratch keeps tn_m7_depthwise
    (still exact) and the choice says why."""
    rounding, signed, zin, shape, layers = DW3_CHAINS["tflite_double"]
    g = _int8_offsets(chain(7, layers[:1], shape, 8, signed, zin, rounding))
    steps, _ = steps_mod.plan(g)
    need = kernels_m7.dw3_scratch_bytes(steps[0])
    assert need == 3 * 8 * kernels_m7.dw3_width(g.layers[0]) * 2
    assert steps[0].scratch_bytes == need
    assert kernels_m7.choose(steps[0], 0, rounding=g.rounding).weights is not None
    steps[0].scratch_bytes = need - 4
    ch = kernels_m7.choose(steps[0], 0, rounding=g.rounding)
    assert ch.kind == "depthwise" and ch.weights is None and "scratch" in ch.reason


def test_dw3_refuses_what_it_cannot_run(dw3_planned):
    rounding, signed, zin, shape, layers = DW3_CHAINS["tflite_double"]
    g = _int8_offsets(chain(9, layers[:1], shape, 8, signed, zin, rounding))
    step = steps_mod.plan(g)[0][0]
    assert kernels_m7.dw3_fits(step)
    lay = g.layers[0]
    zw = np.atleast_1d(lay.weight_zero_point).copy()
    lay.weight_zero_point = np.full_like(zw, 255)  # w - z_w leaves int8
    lay.weights = np.zeros_like(lay.weights)
    # the shape still fits (the plan keeps the scratch) and so do the weights: as int16 pairs
    assert kernels_m7.dw3_fits(step) and not steps_mod.dw3_weights_fit(lay)
    ch = kernels_m7.choose(step, 0, rounding=g.rounding)
    assert ch.weights is not None and ch.weights.size == 28 * 8
    assert kernels_m7.dw3_plan(step, g.rounding)["WIDE"] == 1
    g2 = chain(9, [dict(layers[0], wshape=(3, 3, 8), wbits=4)], shape, 8, signed, zin, rounding)
    assert kernels_m7.dw3_fits(steps_mod.plan(g2)[0][0])  # 4-bit weights: the row kernel too
    for change in (dict(wshape=(5, 5, 8), padding=(2, 2, 2, 2)),  # a 5x5 window
                   dict(wbits=1),  # 1-bit weights
                   dict(stride=(3, 3), out_shape=(4, 4, 8))):  # stride 3
        g3 = chain(9, [dict(layers[0], **change)], shape, 8, signed, zin, rounding)
        st = steps_mod.plan(g3)[0][0]
        assert not kernels_m7.dw3_fits(st), change
        assert "dw3_fits" in kernels_m7.dw3_plan(st, g3.rounding)
        assert steps_mod.dw3_scratch_bytes(st) == 0


def test_dw3_weights_layout():
    rounding, signed, zin, shape, layers = DW3_CHAINS["tflite_double"]
    lay = _int8_offsets(chain(11, layers[:1], shape, 8, signed, zin, rounding)).layers[0]
    cc = np.arange(8) * 1000 - 3000
    blob = kernels_m7.dw3_weights(lay, cc).reshape(8, 16)
    d = (np.asarray(lay.weights, np.int64).reshape(3, 3, 8)
         - np.atleast_1d(lay.weight_zero_point)[None, None, :])
    for c in range(8):
        for r in range(3):
            got = blob[c, 4 * r:4 * r + 4].view(np.int8)
            assert list(got) == [d[r, 0, c], d[r, 1, c], d[r, 1, c], d[r, 2, c]]
        assert int(blob[c, 12:].view("<i4")[0]) == cc[c]


# ResNet-8 (its residual ADDs fused, and stand-alone on tn_m7_add, bit-exact on the host and
# under QEMU, three "add" steps unfused): tests/test_kernels_m7.py::test_resnet8_adds_under_qemu
# builds and runs the same two exports and asserts all of that (and more)
MLPERF = ("kws_dscnn", "vww_mobilenet")


@pytest.mark.slow
@pytest.mark.parametrize("name", MLPERF)
def test_mlperf_dw_and_add_kernels_under_qemu(qemu, tmp_path, dw3_planned, name):
    """DS-CNN and VWW (every depthwise step on the row kernel) bit-exact on the host and under
    QEMU."""
    from tinyopt.front.zoo import mlperf_tiny_path
    from tinyopt.integer.from_litert import graph_from_tflite
    g = graph_from_tflite(mlperf_tiny_path(name).read_bytes(), flavour="tflm")
    x = np.random.default_rng(4).integers(-128, 128, (4, *g.input_shape))
    r = mcu.deploy(g, x, tmp_path, name=name, host_images=4, mcu_images=2)
    s = r["summary"]
    assert s["host_mismatching_values"] == 0 and s["mcu_mismatching_values"] == 0
    kinds = r["export"].kernels
    assert _dw3_calls(r["export"], tmp_path / name) == kinds.count("depthwise") > 0

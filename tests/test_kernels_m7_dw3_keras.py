"""The 3x3 depthwise row kernel (tn_m7_dw3, c/tn_m7_dw.h) on the sub-byte Keras path (issue 29):
"floor" graphs, asymmetric 8-bit weights (w - z_w beyond int8: the WIDE int16 weight pairs),
2/4/8-bit inputs, weights and outputs in any mix, PL and PC, the floor SMMLA requantization
(DWQ = 2) and tn_m7_out; bit-exact with tinyopt.sim on the host. The kernel choice keeps the
sub-byte rule (integer.steps.sub_kernel: scratch at lower bits <= at 8 bits)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests._qemu_many import HostBatch, check_many
from tests.test_kernels_m7 import _dw, chain, host_check
from tests.test_kernels_m7_dw_add import _dw3_calls
from tinyopt.deploy import kernels_m7
from tinyopt.integer import steps as steps_mod

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")


def _head(c, n):
    return [dict(kind="flatten"),
            dict(kind="dense", out_shape=(5,), wshape=(5, n), wbits=8, out_bits=32,
                 out_signed=True, requantize=False)]


# (input bits, signed, z_x, input shape, layers): chain() draws weight codes over the whole
# range and zero points in the middle half, so 8-bit weights are asymmetric (WIDE)
KERAS_CHAINS = {
    "w8a8": (8, False, 0, (9, 9, 16), [
        _dw(16, 9, 8, 8, per_channel=True, icn=True, out_zero_point=0),
        _dw(16, 9, 8, 8, stride=2, out_zero_point=3),
        _dw(16, 5, 8, 8, pad_mode="zero_point", per_channel=True, out_zero_point=0),
        *_head(16, 400)]),
    "w4a4": (4, False, 2, (10, 10, 16), [
        _dw(16, 10, 4, 4, per_channel=True, icn=True, out_zero_point=1),
        _dw(16, 10, 4, 4, stride=2, pad_mode="zero_point"),
        _dw(16, 5, 4, 8, out_zero_point=0), *_head(16, 400)]),
    "w2a2": (2, False, 1, (9, 9, 32), [
        _dw(32, 9, 2, 2, per_channel=True, icn=True),
        _dw(32, 9, 2, 2, stride=2, pad_mode="zero_point", out_zero_point=1),
        _dw(32, 5, 2, 4), *_head(32, 800)]),
    "mixed_signed": (4, True, -1, (8, 8, 8), [
        _dw(8, 8, 8, 2, per_channel=True, icn=True),
        _dw(8, 8, 4, 4, stride=2, pad_mode="zero_point", out_zero_point=2),
        _dw(8, 4, 2, 8, per_channel=True), *_head(8, 128)]),
    # pixels of a whole number of halfwords but not of words (C XB % 32 == 16: the build's
    # last halfword), odd widths (its lone last pixel), signed sub-byte outputs (the masked
    # low codes of a byte: 4-bit by read-modify-write, 2-bit packed from the dead slot),
    # 2-bit outputs with a lone last pixel and with fewer than four pixels
    "tails_signed": (4, False, 0, (7, 7, 12), [
        _dw(12, 7, 4, 4, per_channel=True, icn=True, out_signed=True),
        _dw(12, 7, 4, 8, stride=2, pad_mode="zero_point", out_zero_point=1),
        _dw(12, 4, 2, 2, out_signed=True), *_head(12, 192)]),
    "w2_c24": (2, False, 1, (9, 9, 24), [
        _dw(24, 9, 2, 2, out_zero_point=1),
        _dw(24, 9, 2, 4, stride=2, per_channel=True, icn=True),
        _dw(24, 5, 4, 2, out_signed=True, per_channel=True), *_head(24, 600)]),
}


def _row_kernel_everywhere(mp):
    """These chains are all depthwise: every step sets the arena's peak, so the planner's rule
    (the row kernel only where its scratch is free) would never run it; force it."""
    mp.setattr(steps_mod, "SCRATCH_ONLY_WHERE_FREE", False)


@pytest.fixture
def row_kernel_everywhere(monkeypatch):
    """:func:`_row_kernel_everywhere` for one test."""
    _row_kernel_everywhere(monkeypatch)


def _keras_graph(name):
    bits, signed, zin, shape, layers = KERAS_CHAINS[name]
    return chain(len(name) + 30, layers, shape, bits, signed, zin, "floor")


@pytest.fixture(scope="module")
def host_batch(request, tmp_path_factory):
    """This module's host checks in one host program (tests._qemu_many.HostBatch): each chain
    on the row kernel everywhere, as its test sets it up."""
    def make(mp, name):
        _row_kernel_everywhere(mp)
        return _keras_graph(name), 24
    return HostBatch(request, {"test_dw3_floor_subbyte_host_bitexact": make},
                     tmp_path_factory.mktemp("host_batch"))


@pytest.mark.parametrize("name", sorted(KERAS_CHAINS))
def test_dw3_floor_subbyte_host_bitexact(tmp_path, host_batch, name, row_kernel_everywhere):
    g = _keras_graph(name)
    e = host_check(g, tmp_path, n=24, batch=host_batch)
    dws = [s for s in e.steps if s.layer.kind == "depthwise"]
    assert _dw3_calls(e, tmp_path) == len(dws) == 3, "every depthwise step on the row kernel"
    plans = [kernels_m7.dw3_plan(s, g.rounding) for s in dws]
    assert all(isinstance(p, dict) for p in plans), plans
    assert {p["DWQ"] for p in plans} <= {0, 2, 3}  # the floor forms (3: some n0 >= 0)
    if name == "w8a8":  # asymmetric 8-bit weights: the int16 pairs
        assert [p["WIDE"] for p in plans] == [1, 1, 1]
    if name in ("w4a4", "w2a2"):  # sub-byte weights fit the int8 bytes
        assert [p["WIDE"] for p in plans] == [0, 0, 0]


@pytest.mark.slow  # one QEMU build and run for the chains
def test_dw3_floor_subbyte_under_qemu(qemu, tmp_path, row_kernel_everywhere):
    """The Cortex-M7 build (its inline assembly: the 4-bit outputs' read-modify-write, which the
    host build does not compile) bit-exact with the simulator under QEMU on every chain above
    (one program: tests/_qemu_many.py)."""
    graphs, xs = {}, {}
    for name, (bits, signed, zin, shape, layers) in sorted(KERAS_CHAINS.items()):
        graphs[name] = chain(len(name) + 30, layers, shape, bits, signed, zin, "floor")
        lo = -(1 << (bits - 1)) if signed else 0
        xs[name] = np.random.default_rng(6).integers(lo, lo + (1 << bits), (3, *shape))
    exports = check_many(graphs, xs, tmp_path, host_images=3, mcu_images=3)
    for name, e in exports.items():
        assert _dw3_calls(e, tmp_path / name) == 3, f"{name}: a depthwise step off the row kernel"


def test_dw3_subbyte_keeps_the_scratch_rule(row_kernel_everywhere):
    """A sub-byte 3x3 depthwise step takes the row kernel with exactly the scratch of the same
    layer at 8 bits (steps.sub_kernel's bound), never the portable kernel; a 2-bit input whose
    pixel is not a whole number of halfwords (4 channels) does not take it."""
    bits, signed, zin, shape, layers = KERAS_CHAINS["w2a2"]
    g = chain(3, layers, shape, bits, signed, zin, "floor")
    steps, _ = steps_mod.plan(g)
    for st in steps[:3]:
        assert steps_mod.m7_kernel(st) == ("depthwise", "")
        assert steps_mod.scratch_bytes(st) == steps_mod.eight_bit_scratch(st) > 0
        assert steps_mod.scratch_bytes(st) == steps_mod.dw3_scratch_bytes(st)
    g4 = chain(3, [_dw(4, 6, 2, 2), *_head(4, 144)], (6, 6, 4), 2, False, 0, "floor")
    st = steps_mod.plan(g4)[0][0]
    assert not steps_mod.dw3_fits(st)
    assert steps_mod.m7_kernel(st)[0] != "portable"


def test_dw3_wide_weights_layout():
    bits, signed, zin, shape, layers = KERAS_CHAINS["w8a8"]
    lay = chain(11, layers, shape, bits, signed, zin, "floor").layers[0]
    assert not steps_mod.dw3_weights_fit(lay)
    cc = np.arange(16) * 1000 - 3000
    blob = kernels_m7.dw3_weights(lay, cc, wide=True).reshape(16, 28)
    d = (lay.unpacked_weights().astype(np.int64)
         - np.atleast_1d(lay.weight_zero_point)[None, None, :])
    for c in range(16):
        lanes = blob[c, :24].copy().view("<i2").reshape(3, 4)
        for r in range(3):
            assert list(lanes[r]) == [d[r, 0, c], d[r, 1, c], d[r, 1, c], d[r, 2, c]]
        assert int(blob[c, 24:].copy().view("<i4")[0]) == cc[c]
    with pytest.raises(ValueError, match="outside int8"):
        kernels_m7.dw3_weights(lay, cc)


def _arenas(graph_or_plan, monkeypatch):
    """(arena under the planner's rule, arena with no row kernel, steps on the row kernel)."""
    steps, mem = graph_or_plan()
    rows = sum(steps_mod.dw3_fits(s) for s in steps)
    with monkeypatch.context() as m:
        m.setattr(steps_mod, "dw3_fits", lambda step: False)
        _, bare = graph_or_plan()
    return mem.arena_bytes, bare.arena_bytes, rows


@pytest.mark.slow  # the Keras VWW and DS-CNN planned eight times
def test_row_kernel_only_where_its_scratch_is_free(monkeypatch):
    """On a Keras-path graph the row kernel never grows the arena: an all-depthwise chain (each
    step at the peak) keeps the arena of the plan without it and runs no row kernel; the Keras
    VWW MobileNet, whose peak is elsewhere, takes it on most depthwise steps at the same arena,
    and DS-CNN (every depthwise layer at the peak) on none. Forced everywhere, the chain's arena
    grows (the rule is not idle)."""
    bits, signed, zin, shape, layers = KERAS_CHAINS["w8a8"]
    g = chain(5, layers, shape, bits, signed, zin, "floor")
    ruled, bare, rows = _arenas(lambda: steps_mod.memory_plan(g), monkeypatch)
    assert ruled == bare and rows == 0
    with monkeypatch.context() as m:
        m.setattr(steps_mod, "SCRATCH_ONLY_WHERE_FREE", False)
        assert steps_mod.memory_plan(g)[1].arena_bytes > bare
    from tinyopt.mixed import memory
    from tinyopt.mixed.policy import Policy
    from tinyopt.studies.any_graph import mlperf_architecture
    for arch, least in (("vww_mobilenet", 10), ("kws_dscnn", 0)):
        model = mlperf_architecture(arch, classes=10, seed=0)
        for wb, ab in ((8, 8), (4, 4)):
            pol = Policy.uniform(model, wb, ab, "PL")
            ruled, bare, rows = _arenas(lambda: memory.device_plan(model, pol, "logits")[:2],
                                        monkeypatch)
            assert ruled == bare, (arch, wb, ab)
            assert rows >= least, (arch, wb, ab, rows)
            assert memory.peak_ram_bytes(model, pol, "logits") == ruled

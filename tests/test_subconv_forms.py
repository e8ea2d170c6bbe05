"""The forms of tn_m7_subconv's pixel pairs (issue 29: sub-byte 3x3 and pointwise layers at or
below int8): tn_m7_sub's FC form with the pairs' lanes at the head of the step's own dead input
(kernels_m7.sub.sub_head_lanes, beside sub_tail_lanes: ResNet-8's 16 x 16 x 32 3x3 convolution
at w4a4 runs every pixel so) and the per-channel floor requantization without branches
(c/tn_m7_subconv.h: tn_sc_pcq; FAST 1, some n0 >= 0, as VWW's conv2d_5 at w4a4). Bit-exact
with the simulator on the host (and, slow, under QEMU).
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import tinyopt  # noqa: F401  (prepares TensorFlow before tf_keras)
from tinyopt.deploy import kernels_m7
from tinyopt.deploy.kernels_m7.common import requant_constants
from tinyopt.integer import steps as steps_mod
from tinyopt.integer.graph import IntegerGraph, IntegerLayer

from tests._qemu_many import host_batch_fixture, check_many
from tests.test_kernels_m7 import _conv, chain, host_check
from tests.test_kernels_m7_sub import _dense, _residual_graph
from tests.test_sub_lean import fc_call

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")


# The plans' patches, each on a monkeypatch ``mp``: written once for the tests' fixtures (or
# the test itself) and their host batch's make(), so both export the same C.
def _lean(mp):
    """The lean plan everywhere (no step takes tn_m7_subconv itself): every sub-byte conv /
    pointwise step runs tn_m7_sub's FC form, the form that places the pairs' lanes."""
    mp.setattr(steps_mod, "sub_conv_fits", lambda step: False)


def _roomy(mp):
    """tn_m7_subconv wherever it fits (steps.SCRATCH_ONLY_WHERE_FREE off)."""
    mp.setattr(steps_mod, "SCRATCH_ONLY_WHERE_FREE", False)


def _no_tail(mp):
    """No lanes in the output's tail (TLO 0): the FC form from pixel 0 to HP."""
    mp.setattr(kernels_m7.sub, "sub_tail_lanes", lambda step: 0)


@pytest.fixture
def lean(monkeypatch):
    """The lean plan everywhere (_lean)."""
    _lean(monkeypatch)


@pytest.fixture
def roomy(monkeypatch):
    """tn_m7_subconv wherever it fits (_roomy)."""
    _roomy(monkeypatch)


def _head_case(mp, tail):
    """test_head_lanes_host_bitexact's graph, its plan patched on ``mp``."""
    _lean(mp)
    if not tail:
        _no_tail(mp)
    return _head_graph()


# This module's parametrized host checks in one host program (tests._qemu_many.HostBatch), each
# case exported under its test's plan.
host_batch = host_batch_fixture({
    "test_head_lanes_host_bitexact": _head_case,
    "test_fast1_per_channel_host_bitexact":
        lambda mp, out_bits, narrow: _roomy(mp) or _fast1_graph(out_bits, narrow),
})


def _head_graph():
    """11 x 11 x 8 (8-bit, the graph's input: never overwritten) -> 3x3 conv, 16 channels (4-bit)
    -> 3x3 conv (HP 88 after the tail's 48 pairs' pixels: pairs, FC form, pairs again, and a
    lone last pixel of 121) -> 3x3 conv stride 2 (6 x 6: no room in the output's tail, HP 24:
    FC form then pairs) -> pointwise of 2-bit weights (HP 12) -> dense. Per-channel ICN
    multipliers."""
    return chain(77, [
        _conv((11, 11, 16), (16, 3, 3, 8), 4, 4, padding=(1, 1, 1, 1)),
        _conv((11, 11, 16), (16, 3, 3, 16), 4, 4, padding=(1, 1, 1, 1), per_channel=True,
              icn=True),
        _conv((6, 6, 16), (16, 3, 3, 16), 4, 4, stride=(2, 2), padding=(1, 1, 1, 1),
              per_channel=True),
        _conv((6, 6, 16), (16, 1, 1, 16), 2, 4, icn=True),
        dict(kind="flatten"),
        _dense(3, 576, 4, 32, out_signed=True, requantize=False)], (11, 11, 8), 8, False, 3)


def _forms(e):
    """(TLO, HP) of each conv / pointwise step of an export."""
    return [(kernels_m7.sub.sub_tail_lanes(s), kernels_m7.sub.sub_head_lanes(s))
            for s in e.steps if s.layer.kind in ("conv2d", "pointwise")]


@pytest.mark.parametrize("tail", [True, False])
def test_head_lanes_host_bitexact(tmp_path, host_batch, lean, monkeypatch, tail):
    """The FC form's steps whose input dies with them run tn_m7_subconv's pairs with their lanes
    at the input's head from HP on (after the FC form's pixels, which still read those rows);
    with the output's tail lanes too (tail) or alone (TLO forced to 0: the FC form from pixel
    0 to HP). Bit-exact on 40 inputs."""
    if not tail:
        _no_tail(monkeypatch)
    g = _head_graph()
    e = host_check(g, tmp_path, batch=host_batch)
    forms = _forms(e)
    assert [hp for _, hp in forms] == [0, 88, 24, 12], forms  # not over the graph's input
    if tail:
        assert [t > 0 for t, _ in forms] == [True, True, False, True], forms
    for s in e.steps:  # the lanes lie inside the input, word-aligned, below every byte read
        hp = kernels_m7.sub.sub_head_lanes(s)
        if hp:
            h, w, c = s.layer.in_shape
            lanes = 4 * steps_mod.sub_lanes(s.layer)[1]
            first = (hp // s.layer.out_shape[1] * s.layer.stride[0] - s.layer.padding[0])
            assert s.in_offsets[0] % 4 == 0 and first * w * c * s.layer.in_bits // 8 >= lanes
            assert s.in_dead == (True,)
    # the 2-bit-weight pointwise layer (unsigned 4-bit inputs): its pairs by tn_sc_epi
    # (tn_m7_sub_epi) with two rows per int16 lane (RAW = PK 1, kernels_m7.subconv_pack)
    fn, args = fc_call(next(s for s in e.steps if s.layer.name == "l3"), g.rounding)
    assert (fn, args[28:30]) == ("tn_m7_sub_epi", ["1u", "1u"]), (fn, args[28:30])


def _branch_graph():
    """x -> a (pointwise) -> b (pointwise) -> y = a + b: a is read by b's step and again by the
    ADD's (with fuse_add=False, three steps)."""
    rng = np.random.default_rng(3)
    def pw(name, ins, outs):
        lay = IntegerLayer(kind="pointwise", name=name, in_shape=(4, 4, 8), out_shape=(4, 4, 8),
                           in_bits=4, out_bits=4, inputs=ins, outputs=outs)
        lay.set_weights(rng.integers(0, 16, (8, 1, 1, 8)), 4)
        lay.weight_zero_point = np.array([8], np.int32)
        lay.bias = rng.integers(-50, 50, 8).astype(np.int32)
        lay.m0, lay.n0 = np.array([1 << 30], np.int32), np.array([-6], np.int32)
        return lay
    add = IntegerLayer(kind="add", name="y", in_shape=(4, 4, 8), out_shape=(4, 4, 8), in_bits=4,
                       out_bits=4, inputs=("a", "b"), outputs=("y",), left_shift=20,
                       m0=np.array([1 << 30] * 3, np.int32), n0=np.array([0, 0, -20], np.int32))
    g = IntegerGraph([pw("a", ("x",), ("a",)), pw("b", ("a",), ("b",)), add],
                     input_shape=(4, 4, 8), input_bits=4, input_name="x", outputs=["y"],
                     name="branch")
    g.validate()
    return g


def test_in_dead():
    """Step.in_dead: a step is the last reader of an input no later step reads, never of the
    graph's input; so a step whose input is read again later (a residual's addend) puts no
    lanes over it (sub_head_lanes 0)."""
    st, _ = steps_mod.memory_plan(_head_graph())
    assert [s.in_dead for s in st] == [(False,), (True,), (True,), (True,), (True,)]
    st, _ = steps_mod.memory_plan(_branch_graph(), fuse_add=False)
    assert [s.in_dead for s in st] == [(False,), (False,), (True, True)]
    st, _ = steps_mod.memory_plan(_residual_graph(4, 4, 1))  # x -> p; y = x + p (fused)
    assert [s.in_dead for s in st] == [(False, False)]


def _fast1_graph(out_bits, narrow=False):
    """A pointwise and a 3x3 layer of per-channel multipliers with channel 0's n0 = 0 (m0 scaled
    to keep its real multiplier: FAST 1, the left-shift branch), channel 1's n0 = 3 alike,
    floor rounding; ``narrow``: the clamp narrowed
    (act_min / act_max: tn_sc_pcq's third form)."""
    g = chain(91 + out_bits, [
        _conv((7, 7, 8), (8, 1, 1, 8), 4, out_bits, per_channel=True, icn=True),
        _conv((7, 7, 12), (12, 3, 3, 8), 4, out_bits, padding=(1, 1, 1, 1), per_channel=True,
              icn=True),
        dict(kind="flatten"),
        _dense(3, 588, 4, 32, out_signed=True, requantize=False)], (7, 7, 8), 4, False, 0)
    for lay in g.layers[:2]:
        m0 = np.array(np.broadcast_to(lay.m0, (lay.out_channels,)), np.int64)
        n0 = np.array(np.broadcast_to(lay.n0, (lay.out_channels,)), np.int64)
        for ch, k in ((0, 0), (1, 3)):  # n0 = k, the same real multiplier
            if n0[ch] < k:
                m0[ch] = max(1, int(m0[ch]) >> int(k - n0[ch]))
                n0[ch] = k
        lay.m0, lay.n0 = m0.astype(np.int32), n0.astype(np.int32)
        if narrow:
            lo, hi = lay.out_range
            lay.act_min, lay.act_max = lo + 1, hi - 1
    return g


@pytest.mark.parametrize("out_bits,narrow", [(4, False), (8, False), (2, False), (4, True)])
def test_fast1_per_channel_host_bitexact(tmp_path, host_batch, roomy, out_bits, narrow):
    """tn_m7_subconv's outputs on per-channel floor multipliers with left shifts (FAST 1):
    tn_sc_pcq's USAT / SSAT form (4-bit outputs packed by four, 8-bit ones, 2-bit ones) and its
    clamp form (narrow), bit-exact on 40 inputs."""
    g = _fast1_graph(out_bits, narrow)
    for lay in g.layers[:2]:
        assert requant_constants(lay, g.rounding)["FAST"] == 1
    e = host_check(g, tmp_path, batch=host_batch)
    assert [k for k, s in zip(e.kernels, e.steps) if s.layer.kind != "dense"] == ["sub"] * 2
    assert all(steps_mod.sub_conv_step(s) for s in e.steps[:2])


@pytest.mark.slow  # one Cortex-M7 build and QEMU run
def test_forms_under_qemu(qemu, tmp_path, monkeypatch):
    """Both forms bit-exact under QEMU: the head lanes (lean plan) and the FAST 1 per-channel
    requantization (tn_m7_subconv itself), two images each, in one program (each exported under
    its own plan: tests/_qemu_many.py). No host run here: these exports are
    test_head_lanes_host_bitexact[True]'s and test_fast1_per_channel_host_bitexact[4-False]'s,
    checked on the host on 40 images."""
    from tinyopt.deploy import codegen
    monkeypatch.setattr(steps_mod, "sub_conv_fits", lambda step: False)
    graphs = {"head": _head_graph()}
    exports = {"head": codegen.export_c(graphs["head"], tmp_path / "head" / "src")}
    assert [hp for _, hp in _forms(exports["head"])] == [0, 88, 24, 12]
    monkeypatch.undo()
    monkeypatch.setattr(steps_mod, "SCRATCH_ONLY_WHERE_FREE", False)
    graphs["fast1"] = _fast1_graph(4)
    exports["fast1"] = codegen.export_c(graphs["fast1"], tmp_path / "fast1" / "src")
    xs = {"head": np.random.default_rng(5).integers(0, 256, (4, 11, 11, 8)),
          "fast1": np.random.default_rng(6).integers(0, 16, (4, 7, 7, 8))}
    check_many(graphs, xs, tmp_path, host_images=0, mcu_images=2, exports=exports)

"""tn_m7_sub's FC form (issue 29): the lean plan's sub-byte convolution and pointwise steps (no
tn_m7_subconv lanes: the step is at the arena's peak) take each window, read in place or
gathered into the same scratch as before, as the input of a dense layer run by tn_m7_subfc's
blocks (steps.sub_fc_window, c/tn_m7_subfc.h: tn_sf_pixel). Bit-exact with the simulator on the
host (and, slow, under QEMU), with the arena and scratch of the lean plan unchanged.
"""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

import tinyopt  # noqa: F401  (prepares TensorFlow before tf_keras)
from tinyopt.deploy import kernels_m7
from tinyopt.deploy.kernels_m7.subconv import subconv_pack
from tinyopt.integer import steps as steps_mod
from tinyopt.integer.graph import IntegerLayer

from tests._qemu_many import HostBatch, check_many
from tests.test_kernels_m7 import _conv, chain, host_check
from tests.test_kernels_m7_sub import _dense, _residual_graph

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")


def _lean(mp):
    """The lean plan everywhere: no step takes tn_m7_subconv (what the default plan deploys at a
    Keras-path graph's peak), so every sub-byte conv / pointwise step runs tn_m7_sub."""
    mp.setattr(steps_mod, "sub_conv_fits", lambda step: False)


@pytest.fixture
def lean(monkeypatch):
    """:func:`_lean` for one test."""
    _lean(monkeypatch)


# Chains whose conv / pointwise steps all take the FC form: a first layer of three 8-bit
# channels (stride 2, padded with z_x; K = 27: a last word completed in a register) fused with a
# max pool (MODE 1); pointwise layers read in place at 4 and 2-bit inputs (signed: EOR; offset
# lanes: SSUB16), N % 4 = 1, 2, 3 (the pair block; a block of four with a padded row), outputs
# whose pixels do not start on a byte (5 x 4-bit: element by element), blocks of eight rows
# (unsigned inputs with z_x = 0); a gathered 3x3 conv of 2-bit weights over 4-bit inputs padded
# with integer 0; PL and PC weight zero points, FB and ICN; the three roundings.
LEAN_CHAINS = {  # name: (rounding, input signed, input zero point, input shape, layers)
    "first_pool": ("floor", True, -3, (10, 10, 3), [
        _conv((5, 5, 8), (8, 3, 3, 3), 4, 4, stride=(2, 2), padding=(1, 1, 1, 1),
              per_channel=True, icn=True),
        dict(kind="maxpool", out_shape=(2, 2, 8), pool_size=(3, 3), stride=(2, 2),
             padding=(0, 0, 0, 0)),
        _conv((2, 2, 9), (9, 1, 1, 8), 4, 4, out_signed=True, out_zero_point=-1),
        _conv((2, 2, 5), (5, 1, 1, 9), 2, 4, per_channel=True),
        dict(kind="flatten"),
        _dense(3, 20, 4, 32, out_signed=True, requantize=False)]),
    # the seed CNN's first layer's shape: one 8-bit channel, 3x3, its 9 codes gathered and
    # completed with z_x (signed, -3) once per call, fused with a 2x2 max pool into 8-bit
    # outputs (tn_m7_sub's clamp and store in one loop); 6 rows of 4-bit weights (the pair
    # block: tn_sf_emit4's MODE 1 row by row), then 12 rows of 2-bit weights over 54 codes
    # (padded with z_x = 3: 56; MODE 1's four rows unrolled), per-channel multipliers
    "pool8": ("floor", True, -3, (10, 10, 1), [
        _conv((8, 8, 6), (6, 3, 3, 1), 4, 8, out_zero_point=3),
        dict(kind="maxpool", out_shape=(4, 4, 6), pool_size=(2, 2), stride=(2, 2),
             padding=(0, 0, 0, 0)),
        _conv((4, 4, 12), (12, 3, 3, 6), 2, 8, padding=(1, 1, 1, 1), per_channel=True,
              icn=True),
        dict(kind="maxpool", out_shape=(2, 2, 12), pool_size=(2, 2), stride=(2, 2),
             padding=(0, 0, 0, 0)),
        dict(kind="flatten"),
        _dense(3, 48, 4, 32, out_signed=True, requantize=False)]),
    "pw_u": ("tflite_double", False, 0, (4, 4, 8), [
        _conv((4, 4, 16), (16, 1, 1, 8), 4, 4, per_channel=True),
        _conv((4, 4, 10), (10, 1, 1, 16), 4, 2),
        _conv((4, 4, 16), (16, 1, 1, 10), 2, 8, icn=True),
        _conv((4, 4, 6), (6, 3, 3, 16), 2, 4, padding=(1, 1, 1, 1), pad_mode="zero"),
        _conv((2, 2, 7), (7, 3, 3, 6), 4, 8, stride=(2, 2), padding=(1, 1, 1, 1)),
        dict(kind="flatten"),
        _dense(3, 28, 8, 32, out_signed=True, requantize=False)]),
    "pw_s4": ("tflite_single", True, 0, (3, 3, 16), [
        _conv((3, 3, 13), (13, 1, 1, 16), 4, 4, per_channel=True, icn=True),
        _conv((3, 3, 8), (8, 1, 1, 13), 2, 2, out_zero_point=1),
        _conv((3, 3, 8), (8, 1, 1, 8), 4, 8),
        dict(kind="flatten"),
        _dense(3, 72, 8, 32, out_signed=True, requantize=False)]),
    # pointwise layers whose tn_m7_subconv weights are the FC form's blocks
    # (kernels_m7.sub.sub_lane_layout): the pixel pairs before the output's tail run
    # tn_m7_subconv with their lanes in that tail (sub_tail_lanes), the rest the FC form; 8, 4
    # (signed and unsigned) and 2-bit inputs, 4 and 2-bit weights, 2 / 4 / 8-bit outputs, 8-bit
    # in and out (a sliding write: no lanes where the output overlaps the input)
    "lanes": ("floor", False, 5, (6, 5, 16), [
        _conv((6, 5, 16), (16, 1, 1, 16), 4, 4, out_signed=True, per_channel=True),
        _conv((6, 5, 32), (32, 1, 1, 16), 2, 2, out_zero_point=1),
        _conv((6, 5, 8), (8, 1, 1, 32), 4, 8, icn=True),
        _conv((6, 5, 12), (12, 1, 1, 8), 2, 4, per_channel=True),
        _conv((6, 5, 16), (16, 1, 1, 12), 4, 8),
        _conv((6, 5, 16), (16, 1, 1, 16), 4, 8, per_channel=True),
        dict(kind="flatten"),
        _dense(3, 480, 8, 32, out_signed=True, requantize=False)]),
    # gathered windows (padded 3x3 convolutions) the same way: 8-bit inputs padded with z_x,
    # 4-bit ones padded with integer 0 under 2-bit weights
    "conv_lanes": ("tflite_double", False, 5, (8, 8, 4), [
        _conv((8, 8, 16), (16, 3, 3, 4), 4, 4, padding=(1, 1, 1, 1), per_channel=True),
        _conv((8, 8, 16), (16, 3, 3, 16), 2, 8, padding=(1, 1, 1, 1), pad_mode="zero",
              icn=True),
        dict(kind="flatten"),
        _dense(3, 1024, 8, 32, out_signed=True, requantize=False)]),
    # first layers of three 8-bit channels (VWW's 3x3 / 2): window rows of 9 codes that the
    # pairs pad to 12 lanes, so their weights are their own, appended after the FC form's
    # (kernels_m7.sub.sub_pair_weights, WOFF); pairs before the output's tail, then the FC form
    # (an odd pixel count: a lone last pixel); 4-bit weights over signed inputs with an offset
    # (tn_sc_epi, 4-bit outputs), 2-bit weights over unsigned ones (z_x = 5: x' < 0 too)
    "first4": ("floor", True, -3, (19, 19, 3), [
        _conv((10, 10, 8), (8, 3, 3, 3), 4, 4, stride=(2, 2), padding=(1, 1, 1, 1),
              per_channel=True, icn=True),
        _conv((10, 10, 8), (8, 1, 1, 8), 4, 4),
        dict(kind="flatten"),
        _dense(3, 800, 4, 32, out_signed=True, requantize=False)]),
    "first2": ("tflite_double", False, 5, (19, 19, 3), [
        _conv((10, 10, 12), (12, 3, 3, 3), 2, 2, stride=(2, 2), padding=(1, 1, 1, 1)),
        _conv((10, 10, 8), (8, 1, 1, 12), 2, 2),
        dict(kind="flatten"),
        _dense(3, 800, 2, 32, out_signed=True, requantize=False)]),
}


def fc_call(step, rounding: str) -> tuple[str, list[str]]:
    """The entry (tn_m7_sub, tn_m7_sub_epi, tn_m7_sub_sl) and the arguments after the six
    pointers of a tn_m7_sub step's call (kernels_m7.step_function): [28] FC, [29] RAW (with
    2-bit weights and pixel pairs, TLO / HP: the pairs' PK, kernels_m7.subconv_pack)."""
    text = kernels_m7.step_function(step, 0, kernels_m7.choose(step, 0), rounding)
    m = re.search(r"(tn_m7_sub(?:_epi|_sl)?)\(l, in\[0\], [^,]+, out, [^,]+, [^,]+,\s*([^;]*)\);",
                  text)
    assert m, text
    return m.group(1), [a.strip() for a in m.group(2).split(",")]


def _lean_graph(name):
    rounding, signed, zin, shape, layers = LEAN_CHAINS[name]
    return chain(40 + len(name), layers, shape, 8, signed, zin, rounding)


@pytest.fixture(scope="module")
def host_batch(request, tmp_path_factory):
    """This module's host checks in one host program (tests._qemu_many.HostBatch): each case's
    graph under the lean plan, as its test sets them up."""
    def lean_too(graph):
        def make(mp, **params):
            _lean(mp)
            return graph(**params)
        return make
    return HostBatch(request, {
        "test_lean_fc_form_host_bitexact": lean_too(_lean_graph),
        "test_lean_fc_form_fused_add_host_bitexact": lean_too(_residual_graph),
    }, tmp_path_factory.mktemp("host_batch"))


@pytest.mark.parametrize("name", sorted(LEAN_CHAINS))
def test_lean_fc_form_host_bitexact(tmp_path, lean, host_batch, name):
    """Every conv / pointwise step of the chains takes tn_m7_sub's FC form, its scratch that of
    the lean plan (a gathered window at most; nothing in place), and the C equals the
    simulator on 40 inputs."""
    g = _lean_graph(name)
    e = host_check(g, tmp_path, batch=host_batch)
    convs = [(k, s) for k, s in zip(e.kernels, e.steps) if s.layer.kind != "dense"
             and s.layer.weights is not None]
    assert len(convs) >= 2
    for k, s in convs:
        assert k == "sub" and steps_mod.sub_fc_window(s.layer), (s.name, k)
        assert s.scratch_bytes == steps_mod.scratch_bytes(s) <= steps_mod.eight_bit_scratch(s)
        assert s.scratch_bytes == 0 or not steps_mod.sub_direct(s)
    tails = [kernels_m7.sub.sub_tail_lanes(s) for _, s in convs]
    for t, (_, s) in zip(tails, convs):  # tn_m7_subconv's lanes: word-aligned in the arena,
        # after one pair's outputs at least, inside the output
        if t:
            oh, ow, co = s.layer.out_shape
            lanes = 4 * steps_mod.sub_lanes(s.layer)[1]
            assert (s.out_offset + t) % 4 == 0 and t >= 2 * co * s.layer.out_bits // 8
            assert t + lanes <= oh * ow * co * s.layer.out_bits // 8, (s.name, t, lanes)
    if name == "lanes":  # tn_m7_subconv's pairs first where the layouts agree, but not over
        # 12 x 4-bit channels (another lane group) or where the output slides over the input
        assert [t > 0 for t in tails] == [True] * 4 + [False] * 2, tails
        assert kernels_m7.sub.sub_lane_layout(convs[5][1].layer)
        assert steps_mod.write_delay(convs[5][1]) is not None
    if name == "pool8":  # fused pools into 8-bit codes, 6 and 12 rows, gathered windows
        assert [(s.pool is not None, s.layer.out_bits, s.layer.out_channels,
                 steps_mod.sub_direct(s)) for _, s in convs] == [(True, 8, 6, False),
                                                                (True, 8, 12, False)]
    if name == "conv_lanes":  # gathered windows too
        assert all(t > 0 for t in tails) and not any(steps_mod.sub_direct(s) for _, s in convs)
    if name in ("first4", "first2"):  # pairs on their own weights (WOFF: after the FC form's)
        s = convs[0][1]
        extra = kernels_m7.sub.sub_pair_weights(s.layer)
        assert tails[0] > 0 and extra > 0 and not kernels_m7.sub.sub_lane_layout(s.layer)
        woff = int(fc_call(s, g.rounding)[1][37].rstrip("u"))
        got = kernels_m7.sub_weights(s.layer, steps_mod.sub_units(s))
        assert woff > 0 and got.size == woff + extra
        np.testing.assert_array_equal(got[woff:], kernels_m7.subconv_weights(s.layer))
    # 2-bit weights: the pairs take PK (two rows per int16 lane) where subconv_pack allows it,
    # tn_m7_sub's FC form the same bytes as before (c/tn_m7_sub.h: TN_SUB_RF); lanes' l1 reads
    # signed codes (no PK), its l3 and conv_lanes' l1 unsigned ones
    pk = [(subconv_pack(s.layer), fc_call(s, g.rounding)[1][28:30]) for t, (_, s)
          in zip(tails, convs) if t and s.layer.weight_bits == 2]
    if name in ("lanes", "conv_lanes"):
        assert pk == ([(0, ["1u", "0u"]), (1, ["1u", "1u"])] if name == "lanes"
                      else [(1, ["1u", "1u"])]), pk


@pytest.mark.parametrize("wbits,bits,slot", [(4, 8, 1), (2, 8, 0)])
def test_lean_fc_form_fused_add_host_bitexact(tmp_path, lean, host_batch, wbits, bits, slot):
    """A pointwise layer with the residual ADD fused after it (MODE 2) in the FC form."""
    g = _residual_graph(wbits, bits, slot)
    e = host_check(g, tmp_path, batch=host_batch)
    step = e.steps[0]
    assert e.kernels == ["sub"] and step.add is not None
    assert steps_mod.sub_fc_window(step.layer) and not steps_mod.sub_conv_step(step)


def test_sub_fc_window_rule():
    """sub_fc_window: conv2d / pointwise layers of 2 / 4-bit weights over 2 / 4 / 8-bit inputs;
    a window ending inside a word only with z_x a code; 2-bit weights within 255 max |x'|
    KP < 2^31; the weight order follows (kernels_m7.sub_weights: tn_m7_subfc's blocks)."""
    def layer(kind, c, wb, xb, zx=0, k=3, signed=False):
        kk = 1 if kind == "pointwise" else k
        lay = IntegerLayer(kind=kind, name="l", in_shape=(6, 6, c), out_shape=(6, 6, 8),
                           in_bits=xb, in_signed=signed, in_zero_point=zx, out_bits=8)
        lay.set_weights(np.zeros((8, kk, kk, c), np.int64), wb)
        return lay
    assert steps_mod.sub_fc_window(layer("conv2d", 3, 4, 8, zx=-3, signed=True))
    assert steps_mod.sub_fc_window(layer("pointwise", 16, 2, 4))
    assert not steps_mod.sub_fc_window(layer("pointwise", 16, 8, 4))  # 8-bit weights
    assert not steps_mod.sub_fc_window(layer("pointwise", 16, 4, 1))  # 1-bit inputs
    assert not steps_mod.sub_fc_window(layer("pointwise", 16, 1, 4))  # 1-bit weights
    dense = IntegerLayer(kind="dense", name="d", in_shape=(16,), out_shape=(8,), in_bits=4)
    dense.set_weights(np.zeros((8, 16), np.int64), 4)
    assert not steps_mod.sub_fc_window(dense)  # tn_m7_subfc itself
    # 4-bit inputs, z_x = 20 (not a code): whole words only (C = 8: one word; C = 6: a tail)
    assert steps_mod.sub_fc_window(layer("pointwise", 8, 4, 4, zx=20))
    assert not steps_mod.sub_fc_window(layer("pointwise", 6, 4, 4, zx=20))
    # 2-bit weights: 255 * 255 * KP < 2^31 holds for KP = 33024, not beyond
    assert steps_mod.sub_fc_window(layer("pointwise", 33024, 2, 8, zx=-128, signed=True))
    assert not steps_mod.sub_fc_window(layer("pointwise", 33028, 2, 8, zx=-128, signed=True))
    assert steps_mod.sub_fc_window(layer("pointwise", 33028, 4, 8, zx=-128, signed=True))
    lay = layer("conv2d", 3, 4, 8)
    lay.set_weights(np.arange(8 * 27).reshape(8, 3, 3, 3) % 16, 4)
    lay.weight_zero_point = np.array([7], np.int32)
    got = kernels_m7.sub_weights(lay, 32)
    fc = kernels_m7.subfc_weights(kernels_m7.sub.sub_fc_view(lay), fc16=False)
    # then tn_m7_subconv's own weights for the pixel pairs (three 8-bit channels: the pairs pad
    # window rows to 12 lanes, another layout; kernels_m7.sub.sub_pair_weights)
    assert kernels_m7.sub.sub_pair_weights(lay) == got.size - fc.size > 0
    np.testing.assert_array_equal(got[:fc.size], fc)
    np.testing.assert_array_equal(got[fc.size:], kernels_m7.subconv_weights(lay))


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
def test_lean_fc_form_under_qemu(qemu, tmp_path, lean):
    """The FC form's assembly (tn_m7_subfc's loops per window: 8-bit inputs with an offset,
    4-bit signed and unsigned, blocks of eight, pair blocks, a gathered window with a tail
    word, fused max pool) bit-exact under QEMU: one deploy per chain."""
    names = ("first_pool", "pool8", "pw_u", "lanes", "conv_lanes", "first4", "first2")
    graphs = {name: _lean_graph(name) for name in names}
    xs = {}
    for name in names:
        rounding, signed, zin, shape, _ = LEAN_CHAINS[name]
        lo = -128 if signed else 0
        xs[name] = np.random.default_rng(5).integers(lo, lo + 256, (4, *shape))
    exports = check_many(graphs, xs, tmp_path, host_images=4, mcu_images=2)  # one program
    for e in exports.values():
        assert all(k == "sub" for k, st in zip(e.kernels, e.steps)
                   if st.layer.kind in ("conv2d", "pointwise"))


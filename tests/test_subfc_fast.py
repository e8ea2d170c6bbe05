"""tn_m7_subfc16 (c/tn_m7_subfc.h): small dense layers of 2 / 4-bit weights as int16 lanes
(kernels_m7.subfc16_scale / subfc16_weights) equal the simulator value for value on the host
and under QEMU: 4 / 2-bit weights over 8 / 4 / 2-bit inputs, signed and unsigned (z_x != 0)
inputs, PL and PC, FB and ICN, the three roundings, inputs ending inside a word, N not a
multiple of the block, 8 / 4 / 2 / 32-bit outputs; a layer whose bound fails takes tn_m7_subfc
and stays exact."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import tinyopt  # noqa: F401  (prepares TensorFlow before tf_keras)
from tinyopt.deploy import kernels_m7, mcu
from tinyopt.integer import steps as steps_mod

from tests.test_kernels_m7 import chain, host_check
from tests.test_kernels_m7_sub import _dense

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")

# name: (rounding, input signed, input zero point, input bits, shape, layers); every dense layer
# small (N K <= 4096). Tails: K XB not a multiple of 32, the last word more than half full (45, 13
# nibbles; 14, 12 crumbs) and at most half (9, 10, 20 nibbles: HALF, v | v << 8; 6 crumbs).
S16_CHAINS = {
    "s16_floor_u4": ("floor", False, 5, 4, (45,), [
        _dense(13, 45, 4, 8, per_channel=True),       # 4-bit in, R 6 + 1, tail of 5 nibbles
        _dense(9, 13, 2, 4, out_zero_point=2),          # 8-bit in, 2-bit weights, 4-bit out
        _dense(14, 9, 4, 2, per_channel=True, icn=True),  # 4-bit in, tail (9 nibbles), 2-bit out
        _dense(11, 14, 2, 4),                           # 2-bit in, tail (14 crumbs), 4-bit out
        _dense(5, 11, 4, 32, out_signed=True, requantize=False)]),  # 4-bit in, int32 logits
    "s16_double_s4": ("tflite_double", True, -3, 4, (24,), [
        _dense(12, 24, 2, 2, per_channel=True, out_signed=True),     # signed 4-bit in
        _dense(10, 12, 4, 4, out_signed=True, out_zero_point=1),     # signed 2-bit in (EOR)
        _dense(7, 10, 2, 8, out_signed=True),   # signed 4-bit in, tail; FAST = 3 (2 acc)
        _dense(6, 7, 4, 8, out_signed=True)]),  # signed 8-bit in; its own rounding: S = 2, DBL
    "s16_single_u2": ("tflite_single", False, 1, 2, (48,), [
        _dense(8, 48, 4, 4, icn=True),                  # 2-bit in, K 48 (three words)
        _dense(6, 8, 4, 2, per_channel=True),          # 4-bit in, one word
        _dense(3, 6, 2, 8),                             # 2-bit in, 6 crumbs
        _dense(4, 3, 4, 32, out_signed=True, requantize=False)]),
    "s16_floor_s8": ("floor", True, -7, 8, (70,), [
        _dense(20, 70, 4, 4, per_channel=True, icn=True),  # 8-bit in, 4-bit out, K % 4 = 2
        _dense(16, 20, 2, 2),                               # 4-bit in
        _dense(9, 16, 4, 8, per_channel=True)]),            # 2-bit in, one word
}


def _s16_graph(name):
    rounding, signed, zin, bits, shape, layers = S16_CHAINS[name]
    g = chain(130 + len(name), layers, shape, bits, signed, zin, rounding)
    if name == "s16_double_s4":  # a layer naming its rounding: tn_m7_fc16's doubled lanes
        g.layers[-1].rounding = "tflite_double"
        # a right shift (n0 < 0) for the third layer: tn_m7_out's FAST = 3 form (2 acc)
        g.layers[2].n0 = np.asarray(g.layers[2].n0) - 3
    return g


@pytest.mark.parametrize("name", sorted(S16_CHAINS))
def test_subfc16_host_bitexact(tmp_path, name):
    """Every dense step of these chains takes tn_m7_subfc16 (no scratch) and the C equals the
    simulator on 40 inputs; the chains cover each input width, signed and unsigned inputs."""
    g = _s16_graph(name)
    e = host_check(g, tmp_path)
    for k, s in zip(e.kernels, e.steps):
        assert k == "sub" and s.scratch_bytes == 0, (s.name, k)
        assert steps_mod.sub_fc_fits(s) and kernels_m7.subfc16_scale(s.layer), s.name
    src = (tmp_path / "src" / "model.c").read_text()
    assert src.count("tn_m7_subfc16(") == len(e.steps), src


def test_subfc16_chains_cover_the_widths():
    """The chains above hold every pair (weight bits, input bits) of 2 / 4 x 2 / 4 / 8, signed
    and unsigned sub-byte inputs, 2 / 4 / 8 / 32-bit outputs, tails, PC and the three roundings
    (so that the test above checks them all)."""
    seen, signed, outs, tails = set(), set(), set(), set()
    for name in S16_CHAINS:
        g = _s16_graph(name)
        for layer in g.layers:
            xb, k = int(layer.in_bits), int(layer.in_shape[0])
            seen.add((int(layer.weight_bits), xb))
            if xb < 8:
                signed.add(bool(layer.in_signed))
                if k % (32 // xb):  # a tail: more than half a word, or at most half (HALF)
                    tails.add((xb, k % (32 // xb) <= 16 // xb))
            outs.add(int(layer.out_bits))
    assert seen == {(w, x) for w in (2, 4) for x in (2, 4, 8)}, seen
    assert signed == {True, False} and outs == {2, 4, 8, 32}
    assert tails == {(x, h) for x in (2, 4) for h in (True, False)}, tails
    assert {S16_CHAINS[n][0] for n in S16_CHAINS} == {"floor", "tflite_single", "tflite_double"}
    # the 2 acc forms: 8-bit inputs on doubled lanes (S = 2); sub-byte inputs into tn_m7_out's
    # FAST = 3 form (8-bit outputs, TFLite double rounding)
    g = _s16_graph("s16_double_s4")
    assert kernels_m7.subfc16_scale(g.layers[-1]) == 2
    assert any(int(layer.in_bits) < 8 and int(layer.out_bits) == 8 and layer.requantize
               and kernels_m7.requant_constants(layer, g.rounding)["FAST"] == 3
               for layer in g.layers)


def _one_dense(k, n, wb, xb, bias=None, signed=False, zin=0, rounding="floor", seed=3):
    g = chain(seed, [_dense(n, k, wb, 8)], (k,), xb, signed, zin, rounding)
    if bias is not None:
        g.layers[0].bias = np.full(n, bias, np.int32)
    return g


def test_subfc16_scale_bound_is_exact():
    """subfc16_scale: S = 16 / 64 / 1 for 4 / 2 / 8-bit inputs (2 where the layer names TFLite
    double rounding); zero above FC16_MAX_WEIGHTS weights, without a bias, and exactly where
    S (|bias| + sum |d| max |x'|) reaches 2^31."""
    assert kernels_m7.subfc16_scale(_one_dense(16, 4, 4, 4).layers[0]) == 16
    assert kernels_m7.subfc16_scale(_one_dense(16, 4, 4, 2).layers[0]) == 64
    assert kernels_m7.subfc16_scale(_one_dense(16, 4, 2, 8).layers[0]) == 1
    lay = _one_dense(16, 4, 2, 8).layers[0]
    lay.rounding = "tflite_double"
    assert kernels_m7.subfc16_scale(lay) == 2
    assert kernels_m7.subfc16_scale(_one_dense(512, 8, 4, 4).layers[0]) == 16  # 4096 weights
    assert kernels_m7.subfc16_scale(_one_dense(520, 8, 4, 4).layers[0]) == 0
    lay = _one_dense(16, 4, 4, 4).layers[0]
    lay.bias = None
    assert kernels_m7.subfc16_scale(lay) == 0
    # the bound at its edge: rows' sum |d| max |x'| known, bias set to reach 2^31 / S exactly
    g = _one_dense(16, 4, 4, 2, zin=1)
    lay = g.layers[0]
    d, _ = kernels_m7._subfc16_rows(lay)
    rest = int((np.abs(d).sum(axis=1) * kernels_m7._x_box(lay)).max())
    row = int(np.argmax(np.abs(d).sum(axis=1)))
    for bias, want in (((1 << 31) // 64 - rest - 1, 64), ((1 << 31) // 64 - rest, 0)):
        lay.bias = np.zeros(4, np.int32)
        lay.bias[row] = bias
        assert kernels_m7.subfc16_scale(lay) == want, bias
        lay.bias[row] = -bias
        assert kernels_m7.subfc16_scale(lay) == want, -bias


def test_subfc16_bound_fails_takes_subfc(tmp_path):
    """A small layer whose bound fails (a bias near 2^31 / 64, 2-bit inputs) takes tn_m7_subfc,
    not tn_m7_subfc16, and stays exact; with a small bias the same layer takes tn_m7_subfc16."""
    for bias, fast in ((34_000_000, False), (1000, True)):
        g = _one_dense(48, 7, 4, 2, bias=bias, zin=1)
        g.layers[0].requantize = False
        g.layers[0].out_bits = 32
        g.layers[0].out_signed = True
        assert bool(kernels_m7.subfc16_scale(g.layers[0])) == fast
        host_check(g, tmp_path / str(bias))
        src = (tmp_path / str(bias) / "src" / "model.c").read_text()
        assert ("tn_m7_subfc16(" in src) == fast and ("tn_m7_subfc(" in src) != fast, src


@pytest.mark.parametrize("k", [21, 20])  # a last word of 5 nibbles; of 4 (HALF)
def test_subfc16_weights_by_hand(k):
    """The layout of 4-bit inputs read back as the kernel reads it (constants, then per word
    and pair of lane pairs each row's two words; a last word of at most four codes: one pair,
    codes (0, 2) and (1, 3)), summed in numpy: S acc for every row."""
    g = _one_dense(k, 7, 4, 4, zin=3, seed=11)  # blocks of 6 + 1
    lay = g.layers[0]
    scale = kernels_m7.subfc16_scale(lay)
    assert scale == 16
    raw = kernels_m7.subfc16_weights(lay)
    d, bias = kernels_m7._subfc16_rows(lay)
    x = np.random.default_rng(0).integers(0, 16, k)
    want = bias + (d * (x - 3)).sum(axis=1)
    xw = np.zeros(24, np.int64)
    xw[:k] = x
    pos, got = 0, []
    for c, r in ((0, 6), (6, 1)):
        t = raw[pos:pos + 4 * r].view("<i4").astype(np.int64)
        pos += 4 * r
        for word in range(3):
            v = xw[8 * word:8 * word + 8]
            half = word == 2 and k % 8 <= 4
            for h in range(1 if half else 2):
                lanes = ([(v[0], v[2], 1), (v[1], v[3], 16)] if half else
                         [(v[2 * h], v[2 * h + 4], 1), (v[2 * h + 1], v[2 * h + 5], 16)])
                for row in range(r):
                    for (lo, hi, s) in lanes:
                        w = raw[pos:pos + 4].view("<i2").astype(np.int64)
                        pos += 4
                        t[row] += w[0] * lo * s + w[1] * hi * s
        got += list(t)
    assert pos == len(raw)
    got = np.array(got)
    wrapped = ((got + (1 << 31)) % (1 << 32)) - (1 << 31)
    assert np.array_equal(wrapped >> 4, want) and np.array_equal(wrapped & 15, np.zeros(7))


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
def test_subfc16_under_qemu(qemu, tmp_path):
    """tn_m7_subfc16's assembly loops (4 / 2-bit inputs, signed and not, tails, every block
    size and output width; 8-bit inputs: tn_m7_fc16) bit-exact under QEMU."""
    for name in S16_CHAINS:
        g = _s16_graph(name)
        lo = -(1 << (g.input_bits - 1)) if g.input_signed else 0
        x = np.random.default_rng(5).integers(lo, lo + (1 << g.input_bits), (4, *g.input_shape))
        r = mcu.deploy(g, x, tmp_path, name=name, host_images=4, mcu_images=3)
        s = r["summary"]
        assert s["host_mismatching_values"] == 0 and s["mcu_mismatching_values"] == 0, name

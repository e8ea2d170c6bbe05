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

from tests._qemu_many import host_batch_fixture, check_many
from tests.test_kernels_m7 import _conv, chain, host_check
from tests.test_kernels_m7_sub import _dense

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")

# name: (rounding, input signed, input zero point, input bits, shape, layers); every dense layer
# small (N K <= 4096). Tails: K XB not a multiple of 32, the last word more than half full (45, 13,
# 14 nibbles; 14 crumbs) and at most half (9, 20 nibbles: HALF, v | v << 8; 6, 66 crumbs).
S16_CHAINS = {
    "s16_floor_u4": ("floor", False, 5, 4, (45,), [
        _dense(13, 45, 4, 8, per_channel=True),       # 4-bit in, R 6 + 1, tail of 5 nibbles
        _dense(9, 13, 2, 4, out_zero_point=2),          # 8-bit in, 2-bit weights, 4-bit out
        _dense(14, 9, 4, 2, per_channel=True, icn=True),  # 4-bit in, tail (9 nibbles), 2-bit out
        _dense(11, 14, 2, 4),                           # 2-bit in, tail (14 crumbs), 4-bit out
        _dense(5, 11, 4, 32, out_signed=True, requantize=False)]),  # 4-bit in, int32 logits
    "s16_double_s4": ("tflite_double", True, -3, 4, (40,), [
        # signed 4-bit in (five words: 16 x 4 + 2 rows, the two by TN_S16_X4PASS's LDM)
        _dense(66, 40, 2, 2, per_channel=True, out_signed=True),
        _dense(14, 66, 4, 4, out_signed=True, out_zero_point=1),     # signed 2-bit in: 4 4 4 2
        _dense(7, 14, 2, 8, out_signed=True),   # signed 4-bit in, tail; FAST = 3 (2 acc)
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
    # inputs off a word boundary (the plan places tensors at any byte: 19 bytes of codes put
    # the next one at 19): blocks of two rows over at least four words, whose LDM of the input
    # (TN_S16_X4PASS) hard-faults there on a Cortex-M7, so XA 0 (LDR) for l1 and l3
    "s16_unaligned_s4": ("floor", True, -2, 4, (36,), [
        _dense(70, 36, 4, 2, per_channel=True, out_zero_point=1),  # aligned: 17 x 4 + 2 (LDM)
        _dense(38, 70, 2, 4, out_signed=True),         # 2-bit in at 19: 9 x 4 + 2, four words
        _dense(36, 38, 4, 4, per_channel=True, out_signed=True, out_zero_point=-1),
        _dense(2, 36, 2, 8, out_signed=True)]),        # signed 4-bit in at 19: two rows
}


def _s16_graph(name):
    rounding, signed, zin, bits, shape, layers = S16_CHAINS[name]
    g = chain(130 + len(name), layers, shape, bits, signed, zin, rounding)
    if name == "s16_double_s4":  # a layer naming its rounding: tn_m7_fc16's doubled lanes
        g.layers[-1].rounding = "tflite_double"
        # a right shift (n0 < 0) for the third layer: tn_m7_out's FAST = 3 form (2 acc); named
        # too, which keeps its 8-bit outputs on the S form (PCS takes them for floor alone)
        g.layers[2].n0 = np.minimum(np.asarray(g.layers[2].n0) - 3, -1)
        g.layers[2].rounding = "tflite_double"
    if name == "s16_single_u2":  # 8-bit outputs of the S form (T >> 6 into tn_m7_fc16_put)
        g.layers[2].rounding = "tflite_single"
    return g


# This module's parametrized host checks in one host program (tests._qemu_many.HostBatch): each
# case's graph and patches as its test sets them up.
host_batch = host_batch_fixture({
    "test_subfc16_host_bitexact": lambda mp, name: _s16_graph(name),
    "test_subfc_oct_host_bitexact": lambda mp, **case: _oct_case(mp, **case),
})


@pytest.mark.parametrize("name", sorted(S16_CHAINS))
def test_subfc16_host_bitexact(tmp_path, host_batch, name):
    """Every dense step of these chains takes tn_m7_subfc16 (no scratch) and the C equals the
    simulator on 40 inputs; the chains cover each input width, signed and unsigned inputs."""
    g = _s16_graph(name)
    e = host_check(g, tmp_path, batch=host_batch)
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
               and kernels_m7.subfc16_scale(layer) == 16 for layer in g.layers)
    # 8-bit outputs of sub-byte inputs on both forms: PCS (2: floor layers) and the S form
    forms = {kernels_m7.subfc16_scale(layer) for name in S16_CHAINS
             for layer in _s16_graph(name).layers
             if int(layer.in_bits) < 8 and int(layer.out_bits) == 8}
    assert forms == {2, 16, 64}, forms


def _sweep_ldm_graph():
    """The kernel sweep's case subfc16_ldm_unaligned (tests/test_kernel_sweep.py KNOWN): a
    pointwise layer's 36 signed 4-bit codes (18 bytes) put the dense layer's input at arena
    offset 18; 36 -> 2 of 2-bit weights, a block of two rows over four words (hard fault
    before XA)."""
    return chain(7, [_conv((3, 1, 12), (12, 1, 1, 12), 2, 4, out_signed=True),
                     dict(kind="flatten"), _dense(2, 36, 2, 8)], (3, 1, 12), 4, True, 0, "floor")


# the steps of S16_CHAINS whose input is off a word boundary (in_offsets[0] % 4), each with a
# block of two rows over at least four input words (TN_S16_RUN2's LDM form where aligned)
S16_UNALIGNED = {"s16_unaligned_s4": ("l1", "l3")}


def test_subfc16_xa_follows_the_offset(tmp_path):
    """Each tn_m7_subfc16 call's XA is 1 exactly where its input's arena offset is a multiple
    of 4; the steps of S16_UNALIGNED (2 and 4-bit inputs) are off a word boundary with a block
    of two rows over four words or more (what the QEMU build runs on LDR), and s16_double_s4
    keeps two such blocks on the LDM form (XA 1)."""
    from tinyopt.deploy import codegen
    seen = {}
    for name in S16_CHAINS:
        e = codegen.export_c(_s16_graph(name), tmp_path / name)
        calls = [line for line in (tmp_path / name / "model.c").read_text().splitlines()
                 if "tn_m7_subfc16(" in line]
        for s, call in zip(e.steps, calls):
            args = call.split("(", 1)[1].split(", ")  # l, in[0], out, K, N, XB, .., RB, XA
            xa = int(int(s.in_offsets[0]) % 4 == 0)
            assert args[10] == f"{xa}u", (name, s.name, call)
            k, n, xb, rb = (int(args[i].rstrip("u")) for i in (3, 4, 5, 9))
            two = xb < 8 and n % rb == 2 and k * xb // 32 >= 4  # a block of two rows, 4+ words
            seen.setdefault(name, []).append((s.name, xa, xb, two))
    unaligned = [(st, xb) for st, xa, xb, two in seen["s16_unaligned_s4"] if not xa and two]
    assert [st for st, _ in unaligned] == list(S16_UNALIGNED["s16_unaligned_s4"]), seen
    assert {xb for _, xb in unaligned} == {2, 4}, unaligned
    assert sum(1 for _, xa, _, two in seen["s16_double_s4"] if xa and two) == 2, seen
    e = codegen.export_c(_sweep_ldm_graph(), tmp_path / "sweep")
    call = [line for line in (tmp_path / "sweep" / "model.c").read_text().splitlines()
            if "tn_m7_subfc16(" in line]
    assert e.steps[-1].in_offsets[0] == 18 and len(call) == 1, (e.steps[-1], call)
    assert call[0].split(", ")[9:12] == ["6u", "0u", "1u"], call  # RB 6 (N = 2), XA 0, REQ


def _one_dense(k, n, wb, xb, bias=None, signed=False, zin=0, rounding="floor", seed=3):
    g = chain(seed, [_dense(n, k, wb, 8)], (k,), xb, signed, zin, rounding)
    if bias is not None:
        g.layers[0].bias = np.full(n, bias, np.int32)
    return g


def _s_form(g):
    """The graph's one layer naming TFLite single rounding: its 8-bit outputs keep the S form
    (subfc16_pcs_shift: PCS takes 8-bit outputs of floor layers only)."""
    g.layers[0].rounding = "tflite_single"
    return g.layers[0]


def test_subfc16_scale_bound_is_exact():
    """subfc16_scale: S = 16 / 64 / 1 for 4 / 2 / 8-bit inputs (2 where the layer names TFLite
    double rounding; 2 for sub-byte inputs on PCS, here 8-bit outputs of floor layers); zero
    above FC16_MAX_WEIGHTS weights, without a bias, and exactly where
    S (|bias| + sum |d| max |x'|) reaches 2^31."""
    assert kernels_m7.subfc16_scale(_s_form(_one_dense(16, 4, 4, 4))) == 16
    assert kernels_m7.subfc16_scale(_s_form(_one_dense(16, 4, 4, 2))) == 64
    assert kernels_m7.subfc16_scale(_one_dense(16, 4, 4, 4).layers[0]) == 2  # floor: PCS
    assert kernels_m7.subfc16_scale(_one_dense(16, 4, 4, 2).layers[0]) == 2
    assert kernels_m7.subfc16_scale(_one_dense(16, 4, 2, 8).layers[0]) == 1
    lay = _one_dense(16, 4, 2, 8).layers[0]
    lay.rounding = "tflite_double"
    assert kernels_m7.subfc16_scale(lay) == 2
    assert kernels_m7.subfc16_scale(_s_form(_one_dense(512, 8, 4, 4))) == 16  # 4096 weights
    assert kernels_m7.subfc16_scale(_one_dense(520, 8, 4, 4).layers[0]) == 0
    lay = _one_dense(16, 4, 4, 4).layers[0]
    lay.bias = None
    assert kernels_m7.subfc16_scale(lay) == 0
    # the bound at its edge: rows' sum |d| max |x'| known, bias set to reach 2^31 / S exactly
    g = _one_dense(16, 4, 4, 2, zin=1)
    lay = _s_form(g)
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
    g = _one_dense(k, 7, 4, 4, zin=3, seed=11)  # blocks of 4 + 3
    lay = _s_form(g)
    scale = kernels_m7.subfc16_scale(lay)
    assert scale == 16
    raw = kernels_m7.subfc16_weights(lay)
    d, bias = kernels_m7._subfc16_rows(lay)
    x = np.random.default_rng(0).integers(0, 16, k)
    want = bias + (d * (x - 3)).sum(axis=1)
    xw = np.zeros(24, np.int64)
    xw[:k] = x
    rb = kernels_m7.subfc16.subfc16_block_rows(lay)  # 4: blocks of 4 + 3 (one LDM per 2 rows)
    assert rb == 4
    pos, got = 0, []
    for c, r in ((0, rb), (rb, 7 - rb)):
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


def _codes(graphs: dict) -> dict:
    """Four seeded random input images of each graph, over its input codes."""
    out = {}
    for name, g in graphs.items():
        lo = -(1 << (g.input_bits - 1)) if g.input_signed else 0
        out[name] = np.random.default_rng(5).integers(lo, lo + (1 << g.input_bits),
                                                      (4, *g.input_shape))
    return out


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
def test_subfc16_under_qemu(qemu, tmp_path):
    """tn_m7_subfc16's assembly loops (4 / 2-bit inputs, signed and not, tails, every block
    size and output width; 8-bit inputs: tn_m7_fc16; blocks of two rows over inputs off a word
    boundary: s16_unaligned_s4 and the sweep's case) bit-exact under QEMU."""
    graphs = {name: _s16_graph(name) for name in S16_CHAINS}
    graphs["sweep_ldm"] = _sweep_ldm_graph()  # its dense layer's input at arena offset 18
    check_many(graphs, _codes(graphs), tmp_path, host_images=4, mcu_images=3)  # one program


# tn_m7_subfc's blocks of eight rows (kernels_m7.subfc_oct: 4-bit weights at RAW 2 and 2-bit
# weights, inputs without a lane offset). name: (rounding, input signed, input zero point,
# input bits, shape, layers). N: multiples of 8 and every kind of rest (N % 8 = 5: a
# padded block of four, 3 + 0; = 2 and 1: a pair block; = 0); K: tails of each input width.
OCT_CHAINS = {
    "oct_floor_u8": ("floor", False, 0, 8, (45,), [
        _dense(21, 45, 4, 4, per_channel=True),         # 8-bit in, tail (45 % 4), N % 8 = 5
        _dense(19, 21, 4, 2, icn=True),                 # 4-bit in, tail (5 nibbles), N % 4 = 3
        _dense(10, 19, 4, 8, per_channel=True),         # 2-bit in, tail (3 crumbs), N % 8 = 2
        _dense(8, 10, 4, 32, out_signed=True, requantize=False)]),  # 8-bit in, int32 logits
    "oct_double_s4": ("tflite_double", True, -8, 4, (40,), [
        _dense(16, 40, 4, 2, out_signed=True, out_zero_point=-2),  # signed 4-bit in (EOR)
        _dense(13, 16, 4, 8, out_signed=True, per_channel=True),   # signed 2-bit in, N % 8 = 5
        _dense(9, 13, 4, 4, out_signed=True, out_zero_point=-8, icn=True),  # signed 8-bit in
        _dense(11, 9, 4, 8)]),                                     # signed 4-bit in, tail
    "oct_w2_floor_u8": ("floor", False, 0, 8, (45,), [  # 2-bit weights: a word per lane pair
        _dense(21, 45, 2, 4, per_channel=True),         # 8-bit in, tail, N % 8 = 5
        _dense(19, 21, 2, 2, icn=True),                 # 4-bit in, tail, N % 4 = 3
        _dense(10, 19, 2, 8, per_channel=True),         # 2-bit in, tail, N % 8 = 2
        _dense(8, 10, 2, 32, out_signed=True, requantize=False)]),
    "oct_w2_single_s4": ("tflite_single", True, -8, 4, (40,), [
        _dense(16, 40, 2, 2, out_signed=True, out_zero_point=-2),  # signed 4-bit in
        _dense(13, 16, 2, 8, out_signed=True, per_channel=True),   # signed 2-bit in
        _dense(17, 13, 2, 4, out_signed=True, out_zero_point=-8, icn=True),  # signed 8-bit in
        _dense(9, 17, 2, 8)]),                                     # signed 4-bit in, tail
    "oct_single_u4": ("tflite_single", False, 0, 4, (64,), [
        _dense(24, 64, 4, 8, per_channel=True, icn=True),  # 4-bit in, three blocks of eight
        _dense(17, 24, 4, 4),                              # 8-bit in, N % 8 = 1 (a pair block)
        _dense(12, 17, 4, 32, out_signed=True, requantize=False)]),  # 4-bit in, tail of one
}


def _oct_graph(name):
    rounding, signed, zin, bits, shape, layers = OCT_CHAINS[name]
    return chain(170 + len(name), layers, shape, bits, signed, zin, rounding)


def _no_subfc16(monkeypatch):
    """Small layers on tn_m7_subfc (its blocks of eight), not tn_m7_subfc16."""
    monkeypatch.setattr(kernels_m7.subconv, "subfc16_scale", lambda layer: 0)


def _chunks(monkeypatch):
    """RAW 2 and the blocks of eight in chunks of 1, 2, 3 or 5 input words (every remainder of
    the loops)."""
    real, real_oct = kernels_m7.subfc_plan, kernels_m7.subfc_oct

    def chunk(layer):
        return (1, 2, 3, 5)[-(-int(layer.in_shape[0]) * int(layer.in_bits) // 32) % 4]

    def forced(layer):
        raw, kc = real(layer)
        return (2, chunk(layer)) if raw == 2 else (raw, kc)
    monkeypatch.setattr(kernels_m7.subconv, "subfc_plan", forced)
    monkeypatch.setattr(kernels_m7.subconv, "subfc_oct",
                        lambda layer: chunk(layer) if real_oct(layer) else 0)


def _oct_case(mp, name, chunks):
    """OCT_CHAINS[name] on tn_m7_subfc's blocks of eight, over the whole input or in chunks."""
    _no_subfc16(mp)
    if chunks:
        _chunks(mp)
    return _oct_graph(name)


@pytest.mark.parametrize("chunks", [False, True])
@pytest.mark.parametrize("name", sorted(OCT_CHAINS))
def test_subfc_oct_host_bitexact(tmp_path, monkeypatch, host_batch, name, chunks):
    """Every dense step of these chains takes tn_m7_subfc's blocks of eight (OCT = 1 in its
    call) and the C equals the simulator on 40 inputs, over the whole input and in chunks."""
    e = host_check(_oct_case(monkeypatch, name, chunks), tmp_path, batch=host_batch)
    for k, s in zip(e.kernels, e.steps):
        assert k == "sub" and s.scratch_bytes == 0, (s.name, k)
        assert steps_mod.sub_fc_fits(s) and kernels_m7.subfc_oct(s.layer), s.name
    src = (tmp_path / "src" / "model.c").read_text()
    calls = [line for line in src.splitlines() if "tn_m7_subfc(" in line]
    assert len(calls) == len(e.steps) and all(c.split(", ")[11] != "0u" for c in calls), calls


def test_subfc_oct_chains_cover():
    """The chains above hold 4 / 2-bit weights over 8 / 4 / 2-bit inputs, signed and unsigned,
    every N % 8 kind (0, a
    padded block of four, a pair block of one and of two rows, four rows), tails of every input
    width, PL and PC, FB and ICN, 2 / 4 / 8 / 32-bit outputs and the three roundings."""
    xs, rests, tails, outs, pc, icn = set(), set(), set(), set(), set(), set()
    for name in OCT_CHAINS:
        g = _oct_graph(name)
        for layer in g.layers:
            xb, k, n = int(layer.in_bits), int(layer.in_shape[0]), int(layer.out_channels)
            xs.add((int(layer.weight_bits), xb, bool(layer.in_signed)))
            rests.add(n % 8)
            if k % (32 // xb):
                tails.add(xb)
            outs.add(int(layer.out_bits))
            pc.add(np.size(layer.weight_zero_point) > 1)
            icn.add(np.size(layer.m0) > 1)
    assert xs == {(w, x, s) for w in (2, 4) for x in (2, 4, 8) for s in (True, False)}, xs
    assert {0, 1, 2, 3, 5} <= rests and tails == {2, 4, 8} and outs == {2, 4, 8, 32}, rests
    assert pc == {True, False} and icn == {True, False}
    assert {OCT_CHAINS[n][0] for n in OCT_CHAINS} == {"floor", "tflite_single", "tflite_double"}


@pytest.mark.parametrize("wb", [4, 2])
@pytest.mark.parametrize("xb,k", [(8, 45), (4, 21), (2, 19)])
def test_subfc_oct_weights_by_hand(monkeypatch, wb, xb, k):
    """The layout read back as the kernel reads it, in numpy: per input word and lane pair
    (x_j, x_{j + G/2}), 4-bit weights: one word per block of four rows of the eight (the first
    block's, then the second's), masked cumulatively (C_0 .. C_3 = w & 0x000F000F,
    & 0x00FF00FF, & ~0xF000F000, w), 16^r A_r = C_r - C_{r-1} (row 3 held w - 8, + 8 sum x');
    2-bit: one word of the eight rows, C_r = w & (4^(r+1) - 1) per lane (C_7 = w),
    4^r A_r = C_r - C_{r-1} (row 7 held w - 2, + 2 sum x'). The sums of the first N & ~7 rows
    equal sum_k w_k x_k; the rest is subconv_weights' blocks of four, the size unchanged."""
    _no_subfc16(monkeypatch)
    g = chain(9, [_dense(19, k, wb, 8)], (k,), xb, False, 0)
    lay = g.layers[0]
    assert kernels_m7.subfc_oct(lay)
    raw = kernels_m7.subfc_weights(lay)
    quads = kernels_m7.subconv_weights(lay)
    assert len(raw) == len(quads)  # the same bytes' count
    from tinyopt.integer.graph import unpack
    w = unpack(np.asarray(lay.weights, np.uint8).reshape(19, -1), wb, k).astype(np.int64)
    x = np.random.default_rng(1).integers(0, 1 << xb, k)
    g_ = 32 // xb
    xw = np.zeros(-(-k // g_) * g_, np.int64)
    xw[:k] = x
    words = raw.view("<u4")
    if wb == 4:  # (word of the lane pair, row in it, mask)
        masks = [(h, 4 * h + r, m) for h in range(2)
                 for r, m in enumerate((0x000F000F, 0x00FF00FF, 0x0FFF0FFF, 0xFFFFFFFF))]
    else:
        masks = [(0, r, ((4 << 2 * r) - 1) * 0x10001 if r < 7 else 0xFFFFFFFF) for r in range(8)]
    pos, sums = 0, np.zeros((2, 8), np.int64)
    for o in range(2):
        c = np.zeros(8, np.int64)
        for word in range(len(xw) // g_):
            v = xw[g_ * word:g_ * word + g_]
            for j in range(g_ // 2):
                lo, hi = v[j], v[j + g_ // 2]
                for h, r, m in masks:
                    t = int(words[pos + h]) & m
                    a, b = t & 0xFFFF, t >> 16
                    a, b = a - (a >> 15 << 16), b - (b >> 15 << 16)  # int16 lanes
                    c[r] += a * lo + b * hi
                pos += 2 if wb == 4 else 1
        if wb == 4:
            for h in range(2):
                cc = c[4 * h:4 * h + 4]
                sums[o, 4 * h:4 * h + 4] = [cc[0], (cc[1] - cc[0]) >> 4, (cc[2] - cc[1]) >> 8,
                                            ((cc[3] - cc[2]) >> 12) + 8 * x.sum()]
        else:
            sums[o] = [c[0]] + [(c[r] - c[r - 1]) >> (2 * r) for r in range(1, 8)]
            sums[o, 7] += 2 * x.sum()
    assert np.array_equal(sums.reshape(-1), w[:16] @ x)
    assert pos == len(xw) * wb // 2  # two blocks of eight: 4 rows x 2 lanes x wb bits per word
    assert np.array_equal(raw[4 * pos:], quads[4 * pos:])  # the rest: blocks of four, unchanged


def test_subfc_oct_fallback(tmp_path, monkeypatch):
    """subfc_oct refuses a layer whose lanes need an offset (z_x != 0 for 8-bit or unsigned
    inputs, != -2^(b-1) for signed sub-byte ones), fewer than eight rows and (4-bit weights)
    RAW below 2 (the bound of RAW 2 failing for the whole input and for chunks): those keep the
    blocks of four (OCT = 0, subconv_weights' order) and stay exact."""
    one = lambda k, n, wb, xb, s, z: chain(4, [_dense(n, k, wb, 8)], (k,), xb, s, z).layers[0]
    assert kernels_m7.subfc_oct(one(32, 16, 4, 8, False, 0))
    assert kernels_m7.subfc_oct(one(32, 16, 4, 4, True, -8))
    assert not kernels_m7.subfc_oct(one(32, 16, 4, 8, False, 3))
    assert not kernels_m7.subfc_oct(one(32, 16, 4, 8, True, -1))
    assert not kernels_m7.subfc_oct(one(32, 16, 4, 4, True, -7))
    assert not kernels_m7.subfc_oct(one(32, 16, 4, 2, False, 1))
    assert kernels_m7.subfc_oct(one(32, 16, 2, 8, False, 0))
    assert not kernels_m7.subfc_oct(one(32, 16, 2, 8, False, 2))
    assert not kernels_m7.subfc_oct(one(32, 7, 4, 8, False, 0))
    lay = one(32, 16, 4, 8, False, 0)
    monkeypatch.setattr(kernels_m7.subconv, "subfc_plan", lambda layer: (1, 8))
    assert not kernels_m7.subfc_oct(lay)
    monkeypatch.undo()
    _no_subfc16(monkeypatch)
    g = chain(4, [_dense(16, 40, 4, 8)], (40,), 4, False, 3)  # z_x = 3: blocks of four
    assert not kernels_m7.subfc_oct(g.layers[0])
    assert np.array_equal(kernels_m7.subfc_weights(g.layers[0]),
                          kernels_m7.subconv_weights(g.layers[0]))
    host_check(g, tmp_path)
    call = next(line for line in (tmp_path / "src" / "model.c").read_text().splitlines()
                if "tn_m7_subfc(" in line)
    assert call.split(", ")[11] == "0u", call


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
@pytest.mark.parametrize("plan", ["whole", "chunks", "ldr"])
def test_subfc_oct_under_qemu(qemu, tmp_path, monkeypatch, plan):
    """The blocks of eight's assembly loops (8 / 4 / 2-bit inputs, signed and not; every loop
    remainder in chunks; "ldr": the build loading the two words one by one, as for weights off
    a word boundary) bit-exact under QEMU."""
    _no_subfc16(monkeypatch)
    if plan == "chunks":
        _chunks(monkeypatch)
    if plan == "ldr":
        monkeypatch.setattr(mcu, "MCU_CFLAGS", (*mcu.MCU_CFLAGS, "-DTN_SF_NO_LDRD"))
    graphs = {name: _oct_graph(name) for name in OCT_CHAINS}
    check_many(graphs, _codes(graphs), tmp_path, host_images=4, mcu_images=3)  # one program


def _run_host(g, tmp_path, x):
    from tinyopt.deploy import codegen
    e = codegen.export_c(g, tmp_path / "src")
    return mcu.run_host(mcu.build_host(e, build_dir=tmp_path / "host"), e, x), e


def test_subfc_oct_w2_bound(tmp_path, monkeypatch):
    """2-bit weights in blocks of eight: the whole input where the weights keep 16384
    |A_7 - 2 sum x'| (and 4^r |A_r|) below 2^31, else chunks of (2^31 - 1) // (32768 max |x'|)
    codes; at the bound's worst input (row 7 all code 0, every x = 255) the chunked C equals the
    simulator, and the whole input (forced) would not."""
    from tinyopt.deploy import codegen
    _no_subfc16(monkeypatch)
    assert kernels_m7.subfc_oct(chain(2, [_dense(8, 64, 2, 8)], (64,), 8).layers[0]) == 16
    g = chain(2, [_dense(8, 640, 2, 32, out_signed=True, requantize=False)], (640,), 8)
    lay = g.layers[0]
    codes = np.random.default_rng(0).integers(0, 4, (8, 640))
    codes[7] = 0
    lay.set_weights(codes, 2)
    assert kernels_m7.subfc_oct(lay) == (2**31 - 1) // (32768 * 255) // 4 == 64
    x = np.concatenate([np.full((1, 640), 255),
                        np.random.default_rng(1).integers(0, 256, (3, 640))])
    want = codegen.reference_output(g, x)
    got, e = _run_host(g, tmp_path / "chunks", x)
    assert np.array_equal(got, want)
    src = (tmp_path / "chunks" / "src" / "model.c").read_text()
    assert "640u, 8u, 8u, 0u, 0u, 2u, 0u, 160u, 64u," in src  # RAW 0, KC 160; OCT 64
    monkeypatch.setattr(kernels_m7.subconv, "subfc_oct", lambda layer: 160)  # whole input: overflow
    got, _ = _run_host(g, tmp_path / "whole", x)
    assert not np.array_equal(got[:, 7], want[:, 7]) and np.array_equal(got[:, :7], want[:, :7])

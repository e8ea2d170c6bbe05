"""tn_m7_subfc's FOLD (c/tn_m7_subfc.h; kernels_m7.subfc_oct / subfc_weights with fold): dense
layers of 4-bit weights over 8-bit inputs with an offset (z_x != 0) take the blocks of eight on
the codes x themselves, -z_x sum_k w_k a per-row int32 constant stored before the blocks. Bit-exact
against the simulator on the host (unsigned and signed inputs, tails, N % 8 rests left to TWIN /
blocks of four / the pair block, PL and PC, chunks of every loop remainder, the bound's worst
input) and under QEMU (slow); layers below 64 inputs keep TWIN / blocks of four."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import tinyopt  # noqa: F401  (prepares TensorFlow before tf_keras)
from tinyopt.deploy import codegen, kernels_m7, mcu

from tests._qemu_many import host_batch_fixture, check_many, run_on_host
from tests.test_kernels_m7 import chain, host_check
from tests.test_kernels_m7_sub import _dense
from tests.test_build_levels import FORM_ABIS, FORM_LEVELS

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")

# name: (rounding, input signed, input zero point, input bits, shape, layers): the first layer
# folds (8-bit in, z_x != 0); the others as they come
FOLD_CHAINS = {
    "fold_u8_z217": ("floor", False, 217, 8, (67,), [  # AD's grid: unsigned, z_x 217, tail
        _dense(21, 67, 4, 8, per_channel=True),           # N % 8 = 5: a block of four + pair
        _dense(8, 21, 4, 32, out_signed=True, requantize=False)]),
    "fold_s8_double": ("tflite_double", True, -5, 8, (96,), [  # signed, no tail
        _dense(16, 96, 4, 8, out_signed=True, icn=True),  # two blocks of eight
        _dense(9, 16, 4, 8)]),
    "fold_u8_single": ("tflite_single", False, 3, 8, (130,), [  # tail of two codes
        _dense(26, 130, 4, 4, per_channel=True),          # N % 8 = 2: TWIN? no: the pair block
        _dense(8, 26, 4, 8)]),
}

# The lean blocks' 8-bit outputs (tn_sl_form 1 and 3: rows 0 .. 3 packed into a word and stored,
# then rows 4 .. 7) and tn_sf_sumx's assembly (more than 8 words: two words a pass, then the odd
# one and a last partial word in C), two chains (in one QEMU program with the FOLD chains):
# "lean8", 8-bit codes per channel (USAT, SSAT), by the layer's multiplier (z_out 5: SMMLA with
# z_out 2^k; SSAT, z_out -3), FOLD (z_x 5), 2-bit weights; "zp6", per channel with z_out 6
# (tn_sf_out4: the forms take z_out = 0; short chains, so that an error reaches the logits);
# "pair4", the pair block summing x' on its loads (tn_m7_subfc's PF) over unsigned 4-bit codes
# and signed ones with z_x = -8 (no offset), 7 and 5 words (every loop remainder) and a part;
# "pair2", PF under 2-bit weights (their blocks' bytes before the pair block);
# "sumx", the sums of x' over 16 words of unsigned 8-bit codes (in "lean8"), 9 of signed 8-bit
# ones, 17 of unsigned 4-bit, 9 of signed 4-bit, 9 and a partial of unsigned 2-bit, 9 and a
# partial of signed 2-bit (a pair block after a block of eight: N = 10), every one with z_w != 0
# (sum x' needed). name: (seed: every n0 of the lean blocks <= -1, FAST 2; input signed, input
# zero point, shape, layers), floor rounding, 8-bit inputs
LEAN8_CHAINS = {
    "lean8": (68, False, 0, (64,), [
        _dense(16, 64, 4, 8, icn=True),                       # FORM 1, USAT; sum x' 16 words
        _dense(16, 16, 4, 8, out_signed=True, icn=True),      # FORM 1, SSAT
        _dense(72, 16, 4, 8, out_zero_point=5),               # FORM 3, USAT (signed 8-bit in)
        _dense(16, 72, 4, 8, out_signed=True, icn=True),      # FOLD (z_x 5), FORM 1, SSAT
        _dense(8, 16, 2, 8, icn=True),                        # 2-bit weights, FORM 1, USAT
        _dense(24, 8, 2, 8, out_signed=True, out_zero_point=-3),  # 2-bit weights, FORM 3, SSAT
        _dense(10, 24, 4, 32, out_signed=True, requantize=False)]),
    "zp6": (67, False, 0, (8,), [
        _dense(72, 8, 4, 8, icn=True, out_zero_point=6),      # per channel, z_out 6: FORM 0
        _dense(10, 72, 4, 32, out_signed=True, requantize=False)]),
    "pair4": (61, False, 0, (40,), [  # pair blocks summing x' (PF) over 4-bit inputs
        _dense(60, 40, 4, 4, icn=True),                       # 4-bit unsigned, z_out 0
        _dense(46, 60, 4, 4, out_signed=True, out_zero_point=-8),  # 7 words and 4 codes
        _dense(9, 46, 4, 32, out_signed=True, requantize=False)]),  # signed, z_x -8: 5 and 6
    "pair2": (15, False, 0, (45,), [  # PF over 8-bit codes under 2-bit weights (its C loop)
        _dense(10, 45, 2, 8, icn=True),
        _dense(6, 10, 4, 32, out_signed=True, requantize=False)]),
    "sumx": (61, True, -3, (36,), [
        _dense(136, 36, 4, 4, icn=True),                      # 8-bit signed: 9 words
        _dense(72, 136, 4, 4, out_signed=True),               # 4-bit unsigned: 17 words
        _dense(150, 72, 2, 2),                                # 4-bit signed: 9 words
        _dense(152, 150, 2, 2, out_signed=True),              # 2-bit unsigned: 9 and a part
        _dense(10, 152, 4, 32, out_signed=True, requantize=False)]),  # signed: 9 and a part
}


def _lean8_graph(name):
    seed, signed, zin, shape, layers = LEAN8_CHAINS[name]
    return chain(seed, layers, shape, 8, signed, zin, "floor")


def _lean8_plan(name, g, calls):
    """The steps of chain ``name`` take the forms its comment names (``calls``: the split
    tn_m7_subfc calls of its model.c)."""
    assert len(calls) == len(g.layers), (name, len(calls))
    if name == "pair4":  # 4-bit codes without an offset, a pair block: PF sums x' there
        for lay in g.layers[1:]:
            assert int(lay.in_bits) == 4 and int(lay.out_channels) % 4 in (1, 2), lay.name
            assert (8 if lay.in_signed else 0) + int(lay.in_zero_point) == 0, lay.name
        assert {bool(lay.in_signed) for lay in g.layers[1:]} == {False, True}
        assert {int(lay.in_shape[0]) * 4 // 32 % 4 for lay in g.layers[1:]} == {3, 1}
        return
    if name == "pair2":  # 2-bit weights' blocks of four bytes before the pair block
        lay = g.layers[0]
        assert int(lay.weight_bits) == 2 and int(lay.out_channels) % 4 == 2 and calls[0][15] != "0u"
        return
    if name == "sumx":
        assert all(call[15] != "0u" for call in calls)  # HASZW: z_w != 0, sum x' needed
        seen = {(int(lay.in_bits), bool(lay.in_signed),
                 int(lay.in_shape[0]) * int(lay.in_bits) % 32)
                for lay in g.layers if int(lay.in_shape[0]) * int(lay.in_bits) >= 8 * 32}
        assert {(8, True, 0), (4, False, 0), (4, True, 0), (2, False, 12), (2, True, 16)} <= seen
        return
    lean = g.layers[:-1]
    for lay, call in zip(lean, calls):
        assert call[13] != "0u" and int(lay.out_bits) == 8, (lay.name, call)  # LEAN
        assert np.all(np.asarray(lay.n0) <= -1), lay.name  # FAST 2: tn_sl_form's 1 and 3
    forms = {(bool(np.size(lay.m0) > 1), int(lay.out_zero_point), int(lay.weight_bits))
             for lay in lean}
    if name == "zp6":
        assert forms == {(True, 6, 4)}
        return
    assert calls[3][12] != "0u"  # FOLD
    assert forms == {(True, 0, 4), (False, 5, 4), (True, 0, 2), (False, -3, 2)}


def test_lean8_host_bitexact(tmp_path, monkeypatch):
    """The lean blocks with 8-bit outputs take their forms where the chains say (LEAN in the
    calls; per channel and by the layer's multiplier, z_out 0 and not; FOLD), PF and the sums
    of x' run over more than 8 words of every input width, signed and unsigned, with and without
    a partial last word, and every output equals the simulator's on 40 inputs: the host runs
    the C twins, the chains in one host program (tests/_qemu_many.run_on_host)."""
    _no_subfc16(monkeypatch)
    exports, xs, wants = [], [], []
    for name in LEAN8_CHAINS:
        g = _lean8_graph(name)
        e = codegen.export_c(g, tmp_path / name / "src")
        assert e.kernels == ["sub"] * len(g.layers), (name, e.kernels)
        _lean8_plan(name, g, _calls(tmp_path / name))
        lo = -128 if g.input_signed else 0
        xs.append(np.random.default_rng(5).integers(lo, lo + 256, (40, *g.input_shape)))
        wants.append(codegen.reference_output(g, xs[-1]))
        assert len({r.tobytes() for r in wants[-1]}) > 1, name  # a constant output checks little
        exports.append(e)
    for name, got, want in zip(LEAN8_CHAINS, run_on_host(exports, xs, tmp_path / "host"), wants):
        assert np.array_equal(got, want), name


def _graph(name):
    rounding, signed, zin, bits, shape, layers = FOLD_CHAINS[name]
    return chain(90 + len(name), layers, shape, bits, signed, zin, rounding)


def _calls(tmp_path):
    src = (tmp_path / "src" / "model.c").read_text()
    return [line.split(", ") for line in src.splitlines() if "tn_m7_subfc(" in line]


def _no_subfc16(monkeypatch):
    """Small layers on tn_m7_subfc, not tn_m7_subfc16's int16 lanes."""
    monkeypatch.setattr(kernels_m7.subconv, "subfc16_scale", lambda layer: 0)


def _chunks(monkeypatch):
    """FOLD's blocks of eight in chunks of 1, 2, 3 or 5 input words (every loop remainder)."""
    real = kernels_m7.subconv.subfc_fold

    def forced(layer):
        words = -(-int(layer.in_shape[0]) * int(layer.in_bits) // 32)
        chunk, w3 = real(layer)
        return ((1, 2, 3, 5)[words % 4], w3) if chunk else (0, 0)
    monkeypatch.setattr(kernels_m7.subconv, "subfc_fold", forced)


def _fold_case(mp, name, chunks):
    """FOLD_CHAINS[name] on tn_m7_subfc, FOLD over the whole input or in chunks."""
    _no_subfc16(mp)
    if chunks:
        _chunks(mp)
    return _graph(name)


# This module's parametrized host checks in one host program (tests._qemu_many.HostBatch): each
# case's graph and patches as its test sets them up.
host_batch = host_batch_fixture({"test_fold_host_bitexact": _fold_case})


@pytest.mark.parametrize("chunks", [False, True])
@pytest.mark.parametrize("name", sorted(FOLD_CHAINS))
def test_fold_host_bitexact(tmp_path, monkeypatch, host_batch, name, chunks):
    """The first step takes FOLD (OCT and FOLD nonzero in its call) and every output equals the
    simulator's."""
    g = _fold_case(monkeypatch, name, chunks)
    lay = g.layers[0]
    assert kernels_m7.subconv.subfc_fold(lay)[0] and not kernels_m7.subfc_oct(lay)
    e = host_check(g, tmp_path, batch=host_batch)
    assert e.kernels[0] == "sub"
    first = _calls(tmp_path)[0]
    assert first[11] != "0u" and first[12] != "0u", first


def test_fold_weights_by_hand(monkeypatch):
    """The blob: N // 8 * 8 int32 constants -z_x sum_k w_rk (padding lanes at the weight zero
    point included), then the blocks of eight of the layer without offset, then the rest."""
    _no_subfc16(monkeypatch)
    g = _graph("fold_u8_z217")
    lay = g.layers[0]
    blob = kernels_m7.subfc_weights(lay)
    plain = kernels_m7.subfc_weights(lay, fold=False)
    n, k = int(lay.out_channels), int(lay.in_shape[0])
    f = blob[:4 * 16].view("<i4")
    from tinyopt.integer.graph import unpack
    codes = unpack(np.asarray(lay.weights, np.uint8), 4, k).reshape(n, k).astype(np.int64)
    zw = np.broadcast_to(np.atleast_1d(np.asarray(lay.weight_zero_point, np.int64)), (n,))
    kp = -(-k // 4) * 4
    want = -217 * (codes[:16].sum(axis=1) + (kp - k) * zw[:16])
    assert np.array_equal(f, want)
    octs = kernels_m7.subconv._oct_words(lay, kernels_m7.subconv_weights(lay))
    assert np.array_equal(blob[64:64 + len(octs)], octs)
    assert np.array_equal(blob[64 + len(octs):], plain[len(octs):])


def test_fold_refusals():
    """No FOLD: fewer than 64 inputs, fewer than eight rows, 2-bit weights, RAW below 2, or
    tn_m7_sub's FC form (fold False); inputs without an offset keep the plain blocks of eight."""
    one = lambda k, n, wb, s, z: chain(4, [_dense(n, k, wb, 8)], (k,), 8, s, z).layers[0]
    fold = kernels_m7.subconv.subfc_fold
    assert fold(one(64, 16, 4, False, 3))[0] and not kernels_m7.subfc_oct(one(64, 16, 4, False, 3))
    assert fold(one(64, 16, 4, False, 3)) == (16, fold(one(64, 16, 4, False, 3))[1])
    assert fold(one(60, 16, 4, False, 3)) == (0, 0)
    assert fold(one(64, 7, 4, False, 3)) == (0, 0)
    assert fold(one(64, 16, 2, False, 3)) == (0, 0)
    assert fold(one(64, 16, 4, False, 0)) == (0, 0)
    lay = one(64, 16, 4, False, 0)
    assert np.array_equal(kernels_m7.subfc_weights(lay), kernels_m7.subfc_weights(lay, fold=False))


def _exact_as_planned_not_forced(g, tmp_path, monkeypatch):
    """At the worst input (every x = 255) and a random one, the C of ``g`` as planned equals
    the simulator; forced to the whole input with the arithmetic shift's window (chunk 160,
    W3 = 2^19) it does not (the bound the plan kept matters)."""
    x = np.full((2, 640), 255)
    x[1] = np.random.default_rng(0).integers(0, 256, 640)
    want = codegen.reference_output(g, x)

    def run(d):
        e = codegen.export_c(g, d / "src")
        return mcu.run_host(mcu.build_host(e, build_dir=d / "host"), e, x)
    assert np.array_equal(run(tmp_path / "a"), want)
    monkeypatch.setattr(kernels_m7.subconv, "subfc_fold", lambda layer: (160, 1 << 19))
    assert not np.array_equal(run(tmp_path / "b"), want)


def test_fold_bound(tmp_path, monkeypatch):
    """RAW 2's bounds over |x| <= 255: a layer whose row 3 is all code 0 (|w - 8| = 8) over 640
    inputs takes chunks ((2^31 - 1) // (4096 8 255) codes: 64 words), and at the worst input
    (every x = 255) the C equals the simulator; the whole input (forced) would not."""
    _no_subfc16(monkeypatch)
    g = chain(2, [_dense(8, 640, 4, 32, out_signed=True, requantize=False)], (640,), 8, False, 200)
    lay = g.layers[0]
    w = np.full((8, 640), 9, np.uint8)
    w[3] = w[7] = 0
    lay.set_weights(w, 4)
    lay.weight_zero_point = np.zeros(1, np.int32)
    assert kernels_m7.subconv.subfc_fold(lay) == (64, 1 << 19)
    _exact_as_planned_not_forced(g, tmp_path, monkeypatch)


def test_fold_window(tmp_path, monkeypatch):
    """Row 3 (and 7) all code 4 over 640 inputs: 4096 A_3 spans [-4096 * 255 * 2560, 0], past
    -2^31 but inside a window of 2^32: the whole input (one chunk) with W3 = 255 * 2560, and
    at the worst input (every x = 255) the C equals the simulator; the arithmetic shift's
    window (W3 = 2^19, forced) would not."""
    _no_subfc16(monkeypatch)
    g = chain(3, [_dense(8, 640, 4, 32, out_signed=True, requantize=False)], (640,), 8, False, 100)
    lay = g.layers[0]
    w = np.random.default_rng(1).integers(0, 16, (8, 640)).astype(np.uint8)
    w[3] = w[7] = 4
    lay.set_weights(w, 4)
    lay.weight_zero_point = np.zeros(1, np.int32)
    assert kernels_m7.subconv.subfc_fold(lay) == (160, 255 * 2560)
    _exact_as_planned_not_forced(g, tmp_path, monkeypatch)


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
@pytest.mark.parametrize("plan", ["whole", "chunks", "ldr"])
def test_fold_under_qemu(qemu, tmp_path, monkeypatch, plan):
    """FOLD's assembly (the blocks of eight on 8-bit codes, unsigned and signed) bit-exact under
    QEMU; "ldr": the build loading the two weight words one by one."""
    _no_subfc16(monkeypatch)
    if plan == "chunks":
        _chunks(monkeypatch)
    if plan == "ldr":
        monkeypatch.setattr(mcu, "MCU_CFLAGS", (*mcu.MCU_CFLAGS, "-DTN_SF_NO_LDRD"))
    graphs = {name: _graph(name) for name in FOLD_CHAINS}
    for name in LEAN8_CHAINS if plan == "whole" else ():  # the lean blocks' 8-bit outputs, PF,
        graphs[name] = _lean8_graph(name)  # tn_sf_sumx's assembly (neither LDRD nor chunks)
    xs = {}
    for name, g in graphs.items():
        lo = -(1 << (g.input_bits - 1)) if g.input_signed else 0
        xs[name] = np.random.default_rng(5).integers(lo, lo + (1 << g.input_bits),
                                                     (4, *g.input_shape))
    check_many(graphs, xs, tmp_path, host_images=4, mcu_images=3)  # one Cortex-M7 program


FOLD_LEVELS = FORM_LEVELS


@pytest.fixture(scope="module")
def fold_export(tmp_path_factory):
    """AD's first layer's shape (640 -> 128, unsigned 8-bit in, z_x 217) then a small layer,
    exported once with FOLD."""
    g = chain(11, [_dense(128, 640, 4, 4, per_channel=True), _dense(16, 128, 4, 8)], (640,), 8,
              False, 217, "floor")
    e = codegen.export_c(g, tmp_path_factory.mktemp("fold"), kernels="m7")
    return e


@pytest.fixture(scope="module")
def lean8_exports(tmp_path_factory):
    """The lean blocks' 8-bit outputs, PF over 4-bit inputs and tn_sf_sumx's assembly
    (LEAN8_CHAINS), exported once."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernels_m7.subconv, "subfc16_scale", lambda layer: 0)
        return [codegen.export_c(_lean8_graph(n), tmp_path_factory.mktemp(n), kernels="m7")
                for n in ("lean8", "pair4", "sumx")]


@pytest.mark.slow  # a Cortex-M7 compile per level and float ABI
@pytest.mark.parametrize("abi", FORM_ABIS)
@pytest.mark.parametrize("level", FOLD_LEVELS)
def test_fold_compiles(fold_export, lean8_exports, tmp_path, level, abi):
    """model.c with FOLD builds at every level, soft float and with an FPU (hard ABI); so do
    the lean blocks' 8-bit outputs and tn_sf_sumx's assembly."""
    from pathlib import Path

    from tests.test_build_levels import ARM, _arm_gcc, _compile
    _arm_gcc()
    src = (Path(fold_export.out_dir) / "model.c").read_text()
    calls = [line.split(", ") for line in src.splitlines() if "tn_m7_subfc(" in line]
    assert calls and calls[0][12] != "0u", calls
    flags = ARM if abi == "hard" else tuple(
        f for f in ARM if f != "-mfpu=fpv5-d16" and not f.startswith("-mfloat-abi")) + (
        "-mfloat-abi=soft",)
    for export in (fold_export, *lean8_exports):
        _compile(flags, export, level, tmp_path)

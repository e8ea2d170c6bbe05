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

from tests._qemu_many import check_many
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


@pytest.mark.parametrize("chunks", [False, True])
@pytest.mark.parametrize("name", sorted(FOLD_CHAINS))
def test_fold_host_bitexact(tmp_path, monkeypatch, name, chunks):
    """The first step takes FOLD (OCT and FOLD nonzero in its call) and every output equals the
    simulator's."""
    _no_subfc16(monkeypatch)
    if chunks:
        _chunks(monkeypatch)
    g = _graph(name)
    lay = g.layers[0]
    assert kernels_m7.subconv.subfc_fold(lay)[0] and not kernels_m7.subfc_oct(lay)
    e = host_check(g, tmp_path)
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


@pytest.mark.slow  # a Cortex-M7 compile per level and float ABI
@pytest.mark.parametrize("abi", FORM_ABIS)
@pytest.mark.parametrize("level", FOLD_LEVELS)
def test_fold_compiles(fold_export, tmp_path, level, abi):
    """model.c with FOLD builds at every level, soft float and with an FPU (hard ABI)."""
    from pathlib import Path

    from tests.test_build_levels import ARM, _arm_gcc, _compile
    _arm_gcc()
    src = (Path(fold_export.out_dir) / "model.c").read_text()
    calls = [line.split(", ") for line in src.splitlines() if "tn_m7_subfc(" in line]
    assert calls and calls[0][12] != "0u", calls
    flags = ARM if abi == "hard" else tuple(
        f for f in ARM if f != "-mfpu=fpv5-d16" and not f.startswith("-mfloat-abi")) + (
        "-mfloat-abi=soft",)
    _compile(flags, fold_export, level, tmp_path)

"""tn_m7_subfc16's PCS form (c/tn_m7_subfc.h; kernels_m7.subfc16.subfc16_pcs_exponents): rows
of 2 / 4-bit inputs and 4 / 2 / 8-bit outputs scaled by 2^e_c, e_c = n0_c + 1 + R, so the floor
requantization is SMMUL >> R for every channel; over one input word (K XB = 32, N % 8 = 0;
2-bit codes: K = 8 too, half a word) rows of their own, eight a block (4 / 2-bit outputs).
Bit-exact on the host and under QEMU: both paths (one word, blocks of six), 4 / 2-bit inputs
(signed: EOR) and outputs (signed, z_out != 0), 8-bit outputs a byte each (blocks of six, also
over one word; R = 9 where a row needs it; unsigned and signed, z_out != 0), per-channel n0 of
both signs and a uniform multiplier, the floor form and the other roundings' fallback
(acc = T >> e_c; 8-bit outputs too), rows left unpacked (N % 6 = 1), signed inputs of at most
half a word (HALF: K XB = 16, 4 and 2-bit codes); layers outside the window keep the S form.
ONE8 (8-bit inputs, K = 8): signed (SXTB16) and unsigned inputs with z_x != 0, 4 and 2-bit
weights, 8-bit codes a STRB each and 4-bit ones packed, the floor form and (TFLite double
rounding) the fallback's tn_m7_fc16_put."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import tinyopt  # noqa: F401  (prepares TensorFlow before tf_keras)
from tinyopt.deploy import mcu
from tinyopt.deploy.kernels_m7 import requant_constants, subfc16

from tests.test_build_levels import FORM_FPUS
from tests.test_kernels_m7 import chain, host_check
from tests.test_kernels_m7_sub import _dense

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")

# name: (rounding, input signed, input zero point, input bits, shape, layers, n0 per layer
# (None: the calibrated ones), PCS's R per layer (0: not PCS))
PCS_CHAINS = {
    "pcs_floor_u4": ("floor", False, 5, 4, (8,), [
        _dense(16, 8, 4, 2, per_channel=True),                     # one word of nibbles, 2-bit out
        _dense(8, 16, 4, 4, per_channel=True, out_signed=True, out_zero_point=-2),  # 2-bit in
        _dense(13, 8, 2, 4, per_channel=True),   # signed 4-bit in (EOR), blocks of six, 13 % 6
        _dense(40, 13, 4, 4, out_zero_point=3),  # two words: blocks of six, one multiplier
        _dense(14, 40, 4, 8, per_channel=True, out_signed=True,
               out_zero_point=-5),                # 8-bit out, rows 4 4 4 2 (LDM)
        _dense(8, 14, 4, 4, per_channel=True),   # 8-bit in: tn_m7_fc16
        _dense(16, 8, 4, 8, per_channel=True, out_zero_point=7),  # one word, 8-bit out: blocks
        _dense(8, 16, 4, 8, per_channel=True, out_signed=True, out_zero_point=-3),  # tn_m7_fc16
        _dense(16, 8, 4, 8, per_channel=True, out_zero_point=2),  # ONE8: signed 8-bit in
        _dense(8, 16, 2, 8, per_channel=True, out_zero_point=9),  # tn_m7_fc16
        _dense(8, 8, 2, 4, per_channel=True, out_signed=True),  # ONE8: z_x 9, 4-bit codes out
        _dense(5, 8, 4, 32, out_signed=True, requantize=False)],
        [[-3, -2, 0, -1], [-1, 0, -4, -2], [0, -2, -5, -1], None, [-3, -1, 1, -2], None,
         [-2, 0, -1], None, [-3, -1, 0, -2], None, [-1, 0, -2], None],
        [10, 10, 10, 10, 9, 0, 10, 0, 0, 0, 0, 0]),
    "pcs_double_s4": ("tflite_double", True, -3, 4, (8,), [
        _dense(16, 8, 4, 4, per_channel=True),        # one word, signed nibbles: fallback
        _dense(4, 16, 4, 4, per_channel=True, out_signed=True),  # 4 signed 4-bit codes out
        _dense(8, 4, 2, 2, per_channel=True, out_signed=True),   # HALF: K XB = 16, signed
        _dense(8, 8, 2, 2, per_channel=True, out_signed=True),   # HALF signed 2-bit: one word
        _dense(7, 8, 4, 2, per_channel=True),         # HALF signed 2-bit; blocks of six
        _dense(9, 7, 4, 8, per_channel=True, out_signed=True),  # 8-bit out: fallback, FAST 3
        _dense(8, 9, 4, 8, per_channel=True, out_zero_point=4),  # 8-bit in: tn_m7_fc16
        _dense(8, 8, 4, 8, per_channel=True, out_signed=True),  # ONE8, fallback: T >> e_c
        _dense(3, 8, 4, 32, out_signed=True, requantize=False)],
        [[-2, -1, 0, -3], [-1, -2], [-2, -1, -3], [-3, -1, -2], [-4, -2], [-1, -3, -2], None,
         [-1, -2, 0], None],
        [10, 10, 10, 10, 10, 10, 0, 0, 0]),
}
# the layers of 8-bit inputs tn_m7_subfc16 takes in its ONE8 form (kernels_m7.subfc16
# .subfc16_one8: K = 8, N % 8 = 0; the call's RB 8)
ONE8 = {"pcs_floor_u4": (8, 10), "pcs_double_s4": (7,)}


def _pcs_graph(name):
    rounding, signed, zin, bits, shape, layers, n0s, _ = PCS_CHAINS[name]
    g = chain(90 + len(name), layers, shape, bits, signed, zin, rounding)
    for lay, n0 in zip(g.layers, n0s):
        if n0 is not None:  # per channel: n0 of both signs cycled, m0 spread over [2^30, 2^31)
            n = int(lay.out_channels)
            lay.n0 = np.resize(np.asarray(n0, np.int8), n)
            lay.m0 = ((1 << 30) + (np.arange(n, dtype=np.int64) * 0x2345677) % (1 << 30)).astype(
                np.int32)
    return g


def test_pcs_chains_take_the_form():
    """subfc16_scale names PCS (2) on exactly the layers meant, e_c = n0_c + 1 + R: R = 10 but
    for the first 8-bit outputs' layer, whose n0 = 1 takes R = 9 (2^12 |d| >= 2^15 for a
    |d| >= 8); the call carries R as its PCS argument (DBL 0)."""
    for name, spec in PCS_CHAINS.items():
        g = _pcs_graph(name)
        for k, (lay, want) in enumerate(zip(g.layers, spec[-1])):
            e = subfc16.subfc16_pcs_exponents(lay)
            assert subfc16.subfc16_pcs_shift(lay) == want, lay.name
            assert (e is not None) == bool(want), lay.name
            assert (subfc16.subfc16_scale(lay) == 2) == bool(want), lay.name
            one8 = k in ONE8[name]
            assert subfc16.subfc16_one8(lay) == one8, lay.name
            assert (subfc16.subfc16_block_rows(lay) == 8) == one8, lay.name
            if want:
                n0 = np.broadcast_to(np.asarray(lay.n0, np.int64), e.shape)
                assert np.array_equal(e, n0 + 1 + want), lay.name
                if want < subfc16.SUBFC16_PCS_R:  # R + 1 overflows an int16 lane of a row
                    d, _ = subfc16._subfc16_rows(lay)
                    assert ((np.abs(d).max(axis=1) << (e + 1)) >= (1 << 15)).any(), lay.name


@pytest.mark.parametrize("name", sorted(PCS_CHAINS))
def test_pcs_host_bitexact(tmp_path, name):
    """The C equals the simulator on 40 inputs, every dense step on tn_m7_subfc16."""
    g = _pcs_graph(name)
    host_check(g, tmp_path)
    src = (tmp_path / "src" / "model.c").read_text()
    calls = [line for line in src.splitlines() if "tn_m7_subfc16(" in line]
    assert len(calls) == len(g.layers), src
    if name == "pcs_double_s4":  # the fallback's acc, not tn_m7_out's 2 acc (FAST = 3's F3)
        assert requant_constants(g.layers[2], g.rounding)["FAST"] == 3
    for k, (lay, call, want) in enumerate(zip(g.layers, calls, PCS_CHAINS[name][-1])):
        if k in ONE8[name]:  # (DBL, PCS, RB): ONE8's RB 8, its R the C's TN_S16_ONE8_R
            assert call.split(", ")[7:10] == ["0u", "0u", "8u"], call
        if int(lay.in_bits) < 8:  # (DBL, PCS, RB)
            rb = subfc16.subfc16_block_rows(lay)
            assert call.split(", ")[7:10] == ["0u", f"{want}u", f"{rb}u"], call
    if name == "pcs_floor_u4":  # blocks of four and two rows (LDM) in the every-level build
        assert subfc16.subfc16_block_rows(g.layers[4]) == 4 and g.layers[4].out_channels % 4 == 2


def test_pcs_window():
    """A channel outside the window (e_c below the lanes' scale log2 S; 2^e_c |d| >= 2^15)
    leaves the layer on the S form (16), never a wrong scale; 8-bit outputs: R the largest
    that fits every row, the S form for a layer of another rounding."""
    g = _pcs_graph("pcs_floor_u4")
    lay = g.layers[0]
    assert subfc16.subfc16_scale(lay) == 2
    n0 = np.asarray(lay.n0).copy()
    lay.n0 = np.where(np.arange(len(n0)) == 3, -8, n0).astype(np.int8)  # e_3 = 3 < 4
    assert subfc16.subfc16_pcs_exponents(lay) is None and subfc16.subfc16_scale(lay) == 16
    d, _ = subfc16._subfc16_rows(lay)
    big = int(np.abs(d).max(axis=1).argmax())  # 2^12 |d| >= 2^15 where |d| >= 8
    assert np.abs(d[big]).max() >= 8
    lay.n0 = np.where(np.arange(len(n0)) == big, 1, n0).astype(np.int8)
    assert subfc16.subfc16_pcs_exponents(lay) is None and subfc16.subfc16_scale(lay) == 16
    lay.n0 = n0
    assert subfc16.subfc16_scale(lay) == 2
    # 8-bit outputs: R goes down to the rows' window (R = 9 above); a layer naming a rounding
    # other than floor, or a row below the lanes' scale at R = 10, keeps the S form
    lay = g.layers[4]
    assert subfc16.subfc16_pcs_shift(lay) == 9
    n0 = np.asarray(lay.n0).copy()
    lay.n0 = np.where(n0 == 1, 0, n0).astype(np.int8)
    assert subfc16.subfc16_pcs_shift(lay) == subfc16.SUBFC16_PCS_R
    lay.n0 = np.where(np.arange(len(n0)) == 2, -8, n0).astype(np.int8)  # e_2 <= 3 < 4
    assert subfc16.subfc16_pcs_exponents(lay) is None and subfc16.subfc16_scale(lay) == 16
    lay.n0 = n0
    lay.rounding = "tflite_single"
    assert subfc16.subfc16_pcs_shift(lay) == 0 and subfc16.subfc16_scale(lay) == 16
    lay.rounding = "floor"
    assert subfc16.subfc16_pcs_shift(lay) == 9
    g.layers[3].rounding = "tflite_single"  # 4-bit outputs: PCS whatever the rounding
    assert subfc16.subfc16_pcs_shift(g.layers[3]) == subfc16.SUBFC16_PCS_R


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
def test_pcs_under_qemu(qemu, tmp_path):
    """Both chains bit-exact under QEMU (the one-word assembly rows, the blocks of six, the
    two-row blocks' LDM)."""
    for name in PCS_CHAINS:
        g = _pcs_graph(name)
        lo = -(1 << (g.input_bits - 1)) if g.input_signed else 0
        x = np.random.default_rng(5).integers(lo, lo + (1 << g.input_bits), (4, *g.input_shape))
        r = mcu.deploy(g, x, tmp_path / name, name=name, host_images=4, mcu_images=3)
        s = r["summary"]
        assert s["host_mismatching_values"] == 0 and s["mcu_mismatching_values"] == 0, name


@pytest.mark.slow  # compiles per level and float ABI
@pytest.mark.parametrize("fpu", FORM_FPUS)
def test_pcs_compiles_at_every_level(tmp_path, fpu):
    """The one-word rows' statement (eight registers) and the PCS epilogue compile at the form
    levels (every level with TINYOPT_ALL_LEVELS=1), soft float and with an FPU, -Wall -Wextra
    -Werror."""
    from tinyopt.deploy import codegen
    from tests.test_build_levels import ARM, FORM_LEVELS, _arm_gcc, _compile
    from tests.test_subfc_forms import SOFT
    _arm_gcc()
    e = codegen.export_c(_pcs_graph("pcs_floor_u4"), tmp_path / "src", kernels="m7")
    for level in FORM_LEVELS:
        _compile(ARM if fpu else SOFT, e, level, tmp_path)

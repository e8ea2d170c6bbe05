"""The 3x3 depthwise row kernel (tn_m7_dw3, c/tn_m7_dw.h) on sub-byte Keras-path ("floor")
graphs with per-channel multipliers: DWQ 3's left shift SL = max(n0 + 1, 0) folded into the
exported weights and bias (kernels_m7.dw3_plan; int8 bytes, or int16 pairs when the shifted
bytes overflow), and the assembly channel loop tn_dw3_chan1 (strides 1 and 2, 4+ outputs per
row, DWQ 2 / 3), the assembly row of 3 outputs over every channel (tn_dw3_row3: strides 1
and 2, 2, 4 and 8-bit outputs, DWQ 2 of one multiplier and DWQ 3) and the sub-byte
widening's four-pixel form (STRD): bit-exact with tinyopt.sim on the host (the C twins) and
under QEMU (the assembly), in the full form and the tail form (whose weights rotate per row;
the w4a8 step, 8-bit in and out, has no tail form: it runs tn_m7_depthwise there), and
tn_m7_depthwise's w4a8 form (8-bit input words widened to lanes (c, c+2), two passes of four
channels: LEAN_W4A8)."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from tests._qemu_many import HostBatch
from tests.test_build_levels import FORM_ABIS
from tests.test_dw_sub import _dwr, _forms, _head
from tests.test_kernels_m7 import chain, host_check
from tinyopt.deploy import codegen, kernels_m7, mcu
from tinyopt.integer import steps as steps_mod

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")

C = 128
# 4-bit inputs, 128 channels (a pixel of 8-bit codes is 128 bytes: STRB's post-index cannot
# step two of them, the assembly's other store form): stride 1 with 4-bit codes at both nibbles
# of a byte; stride 2 (PL = 0: the widening's four-pixel STRD form, z_x = 1) to signed 8-bit
# outputs, odd widths from there on (the lone last output and pixel); signed
# 8-bit inputs beside 4-bit weights (w4a8); 8-bit inputs to 2-bit outputs (the dead slot's
# bytes); signed 4-bit outputs (the masked low code); asymmetric 8-bit weights (int16 pairs);
# output zero points below and above 0 (added after the shift)
LAYERS = [
    _dwr(C, 6, 14, 4, 4, per_channel=True, icn=True, out_zero_point=1),
    _dwr(C, 6, 14, 2, 8, stride=2, per_channel=True, icn=True, out_signed=True),
    _dwr(C, 3, 7, 4, 8, per_channel=True, icn=True, out_signed=True, out_zero_point=-3),
    _dwr(C, 3, 7, 2, 2, per_channel=True, icn=True, out_zero_point=1),
    _dwr(C, 3, 7, 4, 4, per_channel=True, icn=True, out_signed=True),
    _dwr(C, 3, 7, 8, 4, per_channel=True, icn=True),
    # horizontally VALID, stride 2 (rows: 1): 3 outputs a row (tn_dw3_row3's stride-2 rows;
    # tn_dw3_chan1's form without a loop runs the tail form's such rows: test_dw_sub)
    dict(kind="depthwise", out_shape=(3, 3, C), wshape=(3, 3, C), wbits=4, out_bits=4,
         stride=(1, 2), padding=(1, 1, 0, 0), pad_mode="zero", per_channel=True, icn=True),
    # 3 x 3 maps, 3 outputs a row at stride 1 (tn_dw3_row3, VWW's last depthwise layer; three
    # rows: each rotation of the slots): 8-bit outputs of one multiplier (DWQ 2, the bias
    # array), then 4-bit signed codes, z_out < 0 (DWQ 3, the bias in the weights' blob)
    _dwr(C, 3, 3, 4, 8, out_zero_point=3),
    _dwr(C, 3, 3, 4, 4, per_channel=True, icn=True, out_signed=True, out_zero_point=-2),
    # 3 outputs a row to signed 2-bit codes: tn_dw3_row3's four codes a byte (three masked);
    # the C twins (the host, -Og) through the plane of kernel row 0 (not tn_dw3_chan1's
    # last-output-first form, which overwrote a column the pair still read)
    _dwr(C, 3, 3, 4, 2, per_channel=True, icn=True, out_signed=True),
    *_head(9 * C)]
# (DWQ, WIDE) of each depthwise layer: 2 = every n0 <= -1; 3 = n0 of both signs, SL folded
PLANS = [(2, 0), (3, 0), (2, 0), (2, 0), (3, 0), (3, 1), (3, 0), (2, 0), (3, 0), (2, 0)]


# tn_m7_depthwise's w4a8 form (4-bit weights over 8-bit inputs, 8-bit outputs: no tail form,
# every step at the arena's peak, so the lean kernel): unsigned inputs with z_x = 5 and integer-0
# padding (the padded taps' -z_x), per-channel weight zero points; stride 2 with zero-point
# padding and one weight zero point; signed inputs; two channel groups of 8
LEAN_W4A8 = [
    _dwr(16, 9, 11, 4, 8, per_channel=True, icn=True),
    _dwr(16, 9, 11, 4, 8, stride=2, pad_mode="zero_point", out_signed=True),
    _dwr(16, 5, 6, 4, 8, per_channel=True, icn=True),
    *_head(5 * 6 * 16)]


def _lean_graph():
    return chain(3, LEAN_W4A8, (9, 11, 16), 8, False, 5, "floor")


def _lean_calls(text: str) -> list[list[int]]:
    """The arguments (from H on) of each tn_m7_depthwise call of an export's C."""
    calls = re.findall(r"tn_m7_depthwise\(l, in\[0\], in\[0\], out, ([^;]*)\);", text)
    return [[int(v.strip().rstrip("u")) for v in c.split(",")] for c in calls]


def _graph():
    """The chain, its multipliers moved where trained models have them (n0 of both signs, up
    to 1, in l1, l4, l5 and l8: the calibration of random weights gives n0 >= 1 or <= -2 in
    each layer; the scale kept, m0 halved per step up), and l7's one n0 moved down to -1 (DWQ 2
    of one multiplier; its scale divided by 4)."""
    g = chain(0, LAYERS, (6, 14, C), 4, False, 0, "floor")
    for k, top in ((1, 1), (4, 1), (5, 1), (8, 1), (7, -1)):
        lay = g.layers[k]
        n0, m0 = np.asarray(lay.n0), np.asarray(lay.m0)
        up = top - int(n0.max())
        lay.n0 = (n0 + up).astype(n0.dtype)
        if up > 0:
            lay.m0 = (m0 >> up).astype(m0.dtype)
    g.validate()
    return g


def _form(mp, form):
    """full: every depthwise step on the full form (the planner's rule off); tail: the plan's
    choice, the tail form where the scratch is not free (l0, l1, l2, l4)."""
    mp.setattr(steps_mod, "SCRATCH_ONLY_WHERE_FREE", form == "tail")


@pytest.fixture(params=["full", "tail"])
def form(request, monkeypatch):
    """:func:`_form` for one test."""
    _form(monkeypatch, request.param)
    return request.param


@pytest.fixture(scope="module")
def host_batch(request, tmp_path_factory):
    """This module's host checks of both forms in one host program (tests._qemu_many.HostBatch;
    test_dw_wide_lean_w4a8_host_bitexact, not parametrized, builds its own)."""
    def make(mp, form):
        _form(mp, form)
        return _graph(), 16
    return HostBatch(request, {"test_dw_wide_host_bitexact": make},
                     tmp_path_factory.mktemp("host_batch"))


def test_dw_wide_plans_and_weights(monkeypatch):
    """dw3_plan's forms (every step on the row kernel), and the exported words of DWQ 3:
    (w - z_w) << SL per channel (int8 [d0, d1, d1, d2] per kernel row, or int16 pairs), then
    bias << SL."""
    monkeypatch.setattr(steps_mod, "SCRATCH_ONLY_WHERE_FREE", False)
    g = _graph()
    steps, _ = steps_mod.memory_plan(g)
    dws = [s for s in steps if s.layer.kind == "depthwise"]
    plans = [kernels_m7.dw3_plan(s, g.rounding) for s in dws]
    assert [(p["DWQ"], p["WIDE"]) for p in plans] == PLANS
    for s, p in zip(dws, plans):
        lay = s.layer
        n0 = np.asarray(lay.n0, np.int64)
        if p["DWQ"] != 3:
            assert np.asarray(p["CC"]).ndim == 1
            continue
        sl = np.maximum(n0 + 1, 0)
        assert sl.max() >= 1 and n0.min() < -1, "SL and K both used"
        assert list(p["CC"][1]) == list(sl)
        blob = kernels_m7.dw3_weights(lay, p["CC"], bool(p["WIDE"]), lean=False)
        d = (lay.unpacked_weights().astype(np.int64).reshape(3, 3, C)
             - np.atleast_1d(lay.weight_zero_point)[None, None, :]) << sl[None, None, :]
        bias = np.asarray(lay.bias, np.int64) << sl
        if p["WIDE"]:
            rows = blob.reshape(C, 28)
            lanes = rows[:, :24].copy().view("<i2").reshape(C, 3, 4)
        else:
            rows = blob.reshape(C, 16)
            lanes = rows[:, :12].copy().view(np.int8).reshape(C, 3, 4)
        want = np.stack([d[:, 0], d[:, 1], d[:, 1], d[:, 2]], axis=1).transpose(2, 0, 1)
        assert np.array_equal(lanes, want), s.name
        assert np.array_equal(rows[:, -4:].copy().view("<i4")[:, 0], bias), s.name


def test_dw_wide_host_bitexact(tmp_path, host_batch, form):
    g = _graph()
    host_check(g, tmp_path, n=16, batch=host_batch)
    text = _c_text(tmp_path)
    forms = _forms(text)
    tails = [cb < c for c, cb, _ in forms]
    # tail: l2 (w4a8, 8-bit in and out) on tn_m7_depthwise, the scratch of l4 .. l9 free (the
    # full form)
    assert tails == ([True, True, True] + [False] * 6 if form == "tail" else [False] * 10), forms
    assert text.count("tn_m7_depthwise(l,") == (form == "tail")


def _c_text(tmp_path) -> str:
    return "".join(p.read_text() for p in (tmp_path / "src").glob("*.c"))


def test_dw_wide_lean_w4a8_host_bitexact(tmp_path):
    """tn_m7_depthwise's w4a8 form bit-exact on the host (the C twins of SMLAxy): every step
    on it, unsigned and signed inputs, integer-0 padding with z_x != 0, one and per-channel
    weight zero points."""
    g = _lean_graph()
    host_check(g, tmp_path, n=16)
    calls = _lean_calls(_c_text(tmp_path))
    # B, XB, XS, ZX, PADZERO, NWZP: the 12th to 16th and 18th arguments
    assert [(a[11], a[12], a[13], a[14], a[15], a[17]) for a in calls] == [
        (4, 8, 0, 5, 1, 16), (4, 8, 0, g.layers[1].in_zero_point, 0, 1),
        (4, 8, 1, g.layers[2].in_zero_point, 1, 16)], calls


@pytest.mark.slow  # one QEMU build
def test_dw_wide_lean_w4a8_under_qemu(qemu, tmp_path):
    """tn_m7_depthwise's w4a8 form under QEMU (the SMLAxy intrinsics, UXTAB16 / SXTAB16 with
    ROR #8, the scheduling barriers) bit-exact with the simulator."""
    g = _lean_graph()
    x = np.random.default_rng(9).integers(0, 256, (3, 9, 11, 16))
    r = mcu.deploy(g, x, tmp_path, name="lean", host_images=3, mcu_images=3)
    s = r["summary"]
    assert s["mcu_images"] == 3 and s["mcu_mismatching_values"] == 0
    assert s["host_mismatching_values"] == 0
    assert len(_lean_calls((tmp_path / "lean" / "src" / "model.c").read_text())) == 3


@pytest.mark.slow  # a QEMU build and run per form
def test_dw_wide_under_qemu(qemu, tmp_path, form):
    """The Cortex-M7 build (tn_dw3_chan1's assembly, which the host build does not compile)
    bit-exact with the simulator under QEMU, full form and tail form."""
    g = _graph()
    x = np.random.default_rng(8).integers(0, 16, (3, 6, 14, C))
    r = mcu.deploy(g, x, tmp_path, name="wide", host_images=3, mcu_images=3)
    s = r["summary"]
    assert s["mcu_images"] == 3 and s["mcu_mismatching_values"] == 0
    assert s["host_mismatching_values"] == 0
    assert len(_forms((tmp_path / "wide" / "src" / "model.c").read_text())) == 9 + (form == "full")


@pytest.mark.slow  # a Cortex-M7 compile per level
@pytest.mark.parametrize("abi", FORM_ABIS)
def test_dw_wide_compiles_at_every_level(tmp_path, abi):
    """model.c of both forms at each GCC level, with an FPU (hard float, fpv5-d16) and soft
    float (our QEMU builds' ABI): tn_dw3_chan1 takes 14 registers."""
    from tests.test_build_levels import ARM, FORM_LEVELS, _arm_gcc, _compile
    _arm_gcc()
    flags = ARM if abi == "hard" else tuple(
        f for f in ARM if not f.startswith(("-mfpu", "-mfloat-abi"))) + ("-mfloat-abi=soft",)
    for tail in (False, True):
        steps_mod.SCRATCH_ONLY_WHERE_FREE = tail
        try:
            export = codegen.export_c(_graph(), tmp_path / str(tail), kernels="m7")
        finally:
            steps_mod.SCRATCH_ONLY_WHERE_FREE = True
        for level in FORM_LEVELS:
            _compile(flags, export, level, tmp_path)
    export = codegen.export_c(_lean_graph(), tmp_path / "lean", kernels="m7")
    for level in FORM_LEVELS:
        _compile(flags, export, level, tmp_path)

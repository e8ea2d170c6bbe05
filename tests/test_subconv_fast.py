"""tn_m7_subconv's faster paths (c/tn_m7_subconv.h, issue 29) bit-exact against the simulator:
4-bit weights at RAW 2 masked in place (cumulative row sums: every remainder of the lane-pair
loop, LDRD and two-LDR weight loads), the floor requantization of sub-byte and 8-bit codes as
SMMLA + shift + SSAT / USAT (tn_sc_fq: signed and unsigned codes, stored, or through the fused
ADD's table), with the layers where it does not apply (per-channel multipliers, a narrowed
clamp, other roundings) on the general arithmetic, and the 4-bit window words unpacked in one
assembly statement each (unsigned inputs, z_x = 0; QEMU)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import tinyopt  # noqa: F401  (prepares TensorFlow before tf_keras)
from tinyopt.deploy import kernels_m7, mcu
from tinyopt.deploy.kernels_m7.subconv import subconv_pack
from tinyopt.integer import steps as steps_mod
from tinyopt.integer.arith import tflite_quantize_multiplier
from tinyopt.integer.graph import IntegerGraph, IntegerLayer

from tests._qemu_many import host_batch_fixture, check_many
from tests.test_kernels_m7 import _conv, chain, host_check
from tests.test_kernels_m7_sub import _roomy

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")


@pytest.fixture
def roomy(monkeypatch):
    """tn_m7_subconv wherever it fits (:func:`tests.test_kernels_m7_sub._roomy`: the tests'
    fixture and their host batch's make() alike)."""
    _roomy(monkeypatch)


# This module's host checks in one host program (tests._qemu_many.HostBatch), each case exported
# under the tests' plan (_roomy).
host_batch = host_batch_fixture({
    "test_subconv_fast_host_bitexact": lambda mp, name: _roomy(mp) or _chain(name),
    "test_subconv_fast_fused_add_host_bitexact":
        lambda mp, wbits, bits, slot: _roomy(mp) or _residual_floor(wbits, bits, slot),
})


def fast_form(layer, rounding: str) -> int:
    """tn_sc_fq of a layer, from its export constants: 1 (signed codes) or 2 (unsigned) where
    the output is SMMLA(acc, M0, ZP 2^K) >> K saturated to its width, else 0."""
    rq = kernels_m7.requant_constants(layer, rounding)
    ob, n0, zp = int(layer.out_bits), rq["N0"], rq["ZP"]
    if (not layer.requantize or rq["FAST"] < 2 or (layer.rounding or rounding) != "floor"
            or rq["NM"] != 1 or not -31 <= n0 <= -1 or ob not in (2, 4, 8)
            or (zp != 0 and (n0 < -21 or abs(zp) > 512))):
        return 0
    half = 1 << (ob - 1)
    lo, hi = rq["LOZ"] + zp, rq["HIZ"] + zp
    return 1 if (lo, hi) == (-half, half - 1) else 2 if (lo, hi) == (0, 2 * half - 1) else 0


def halfword_rows(layer) -> bool:
    """Does tn_sc_window read the layer's in-bounds window rows a halfword of sub-byte codes at a
    time (groups of four lanes, C XB a multiple of 16 but KW C XB not of 32)?"""
    xb, c = int(layer.in_bits), int(layer.in_shape[-1])
    return xb < 8 and steps_mod.sub_lane_group(layer) == 4 and c * xb % 16 == 0


def window2(layer) -> bool:
    """Does tn_sc_windows read a pixel pair's overlapping 8-bit windows at once
    (tn_m7_cv_window2: rows of whole groups, stride below the kernel's width)?"""
    _, kw = steps_mod.kernel_window(layer)
    c, sw = int(layer.in_shape[-1]), int(layer.stride[1])
    return (int(layer.in_bits) == 8 and kw * c == steps_mod.sub_lanes(layer)[0]
            and sw * c % 4 == 0 and sw < kw)


def lane_pairs(layer) -> int:
    """NU of tn_sc_block for 4-bit weights: the window's lane pairs."""
    return steps_mod.sub_lanes(layer)[1] // 2


# Floor chains (the Keras path's rounding): 4-bit weights over 8-bit inputs to 14 signed 8-bit
# codes, z_out = -5 (tn_sc_code stores them, CO not a multiple of 4; ZP 2^K in the SMMLA), then
# to unsigned 4-bit codes clamped to [5, 12] (act_min / act_max set after calibration:
# tn_sc_put4 on the general arithmetic), over unsigned 4-bit inputs with z_x = 0 (the
# one-statement window words; KP 144: the loop's first pair, then two, four, eight per loop), a
# pointwise layer of 16 4-bit
# channels (KP 16: first pair, two, four) to signed 2-bit codes, 2-bit weights, a strided conv;
# 2-bit weights over 12, 20 and 64 lanes (their units after the first: 2, 4, 15 = 1 + 2 + 4 + 8);
# windows of whole halfwords of sub-byte codes in groups of four lanes (tn_sc_window's halfword
# rows: fq_s's 12 signed 4-bit channels with z_x = 2, fq_u's 8 unsigned 2-bit channels in a
# pointwise layer and a padded 3x3 conv, its border rows lane by lane); padded 3x3 convs over
# 8 signed (fq_s's first) and unsigned (its last) 8-bit channels, both pixels' windows at once
# (tn_m7_cv_window2) where their rows lie inside; 2-bit weights over unsigned inputs with two
# rows per lane (PK: fq_u's l6 over 4-bit, l8 over 2-bit codes, fq_s's l5 over 64 lanes: every
# part of the loop), and where the bound or signed inputs keep them to one row per mask;
# per-channel multipliers (ICN), n0 = -1 (K = 0) with z_out = -1, n0 = 0 (the general
# arithmetic), signed inputs and codes.
FAST_CHAINS = {  # name: (rounding, input signed, input zero point, input shape, layers)
    "fq_u": ("floor", False, 0, (6, 7, 3), [
        _conv((6, 7, 14), (14, 3, 3, 3), 4, 8, padding=(1, 1, 1, 1), out_signed=True,
              out_zero_point=-5),
        _conv((6, 7, 16), (16, 3, 3, 14), 4, 4, padding=(1, 1, 1, 1)),
        _conv((6, 7, 16), (16, 3, 3, 16), 4, 4, padding=(1, 1, 1, 1)),
        _conv((6, 7, 12), (12, 1, 1, 16), 4, 2, out_signed=True),
        _conv((6, 7, 8), (8, 1, 1, 12), 2, 4),
        _conv((3, 4, 8), (8, 3, 3, 8), 4, 4, stride=(2, 2), padding=(1, 1, 1, 1)),
        _conv((3, 4, 8), (8, 1, 1, 8), 2, 2),
        _conv((3, 4, 8), (8, 3, 3, 8), 4, 2, padding=(1, 1, 1, 1)),
        _conv((3, 4, 12), (12, 1, 1, 8), 2, 4),
        dict(kind="flatten"),
        dict(kind="dense", out_shape=(3,), wshape=(3, 144), wbits=4, out_bits=32,
             out_signed=True, requantize=False)]),
    "fq_s": ("floor", True, -3, (5, 6, 8), [
        _conv((5, 6, 8), (8, 3, 3, 8), 4, 4, padding=(1, 1, 1, 1), out_signed=True),
        _conv((5, 6, 12), (12, 3, 3, 8), 4, 4, padding=(1, 1, 1, 1), per_channel=True,
              icn=True, out_signed=True, out_zero_point=2),
        _conv((5, 6, 16), (16, 1, 1, 12), 2, 4, out_signed=True, out_zero_point=-1),
        _conv((5, 6, 20), (20, 1, 1, 16), 4, 8),
        _conv((5, 6, 64), (64, 1, 1, 20), 2, 4),
        _conv((5, 6, 8), (8, 1, 1, 64), 2, 4),
        _conv((5, 6, 8), (8, 1, 1, 8), 4, 8),
        _conv((5, 6, 12), (12, 3, 3, 8), 2, 4, padding=(1, 1, 1, 1)),
        dict(kind="flatten"),
        dict(kind="dense", out_shape=(3,), wshape=(3, 360), wbits=4, out_bits=32,
             out_signed=True, requantize=False)]),
    # the same shapes under TFLite's rounding: tn_sc_code on the general arithmetic
    "fq_double": ("tflite_double", False, 0, (6, 7, 3), [
        _conv((6, 7, 16), (16, 3, 3, 3), 4, 4, padding=(1, 1, 1, 1)),
        _conv((6, 7, 16), (16, 3, 3, 16), 4, 8, padding=(1, 1, 1, 1)),
        dict(kind="flatten"),
        dict(kind="dense", out_shape=(3,), wshape=(3, 672), wbits=4, out_bits=32,
             out_signed=True, requantize=False)]),
}


def _chain(name):
    rounding, signed, zin, shape, layers = FAST_CHAINS[name]
    g = chain(90 + len(name), layers, shape, 8, signed, zin, rounding)
    if name == "fq_u":  # the clamp narrowed after calibration (which would rescale for it)
        g.layers[1].act_min, g.layers[1].act_max = 5, 12
        g.validate()
    return g


@pytest.mark.parametrize("name", sorted(FAST_CHAINS))
def test_subconv_fast_host_bitexact(tmp_path, host_batch, name, roomy):
    """Every conv / pointwise step runs tn_m7_subconv (RAW 2 on its 4-bit weights) and the C
    equals the simulator on 40 inputs; the floor chains hold layers of both fast forms and
    of none, and lane-pair counts that take every remainder of the loop."""
    g = _chain(name)
    e = host_check(g, tmp_path, batch=host_batch)
    conv = [s for s in e.steps if s.layer.kind in ("conv2d", "pointwise")]
    assert conv and all(steps_mod.sub_conv_step(s) for s in conv), e.kernels
    four = [s.layer for s in conv if s.layer.weight_bits == 4]
    assert {kernels_m7.subconv_raw(lay) for lay in four} == {2}
    forms = [fast_form(s.layer, g.rounding) for s in conv]
    packs = [subconv_pack(s.layer) for s in conv if s.layer.weight_bits == 2]
    if name != "fq_double":  # 2-bit weights with two rows per lane (PK) and without
        assert packs == ([0, 1, 1] if name == "fq_u" else [0, 0, 1, 0]), packs
    if name == "fq_s":  # tn_m7_cv_window2's pairs of 8-bit windows: signed, unsigned inputs
        assert [s.layer.in_signed for s in conv if window2(s.layer)] == [True, False]
    if name != "fq_double":  # tn_sc_window's halfword rows: 2-bit codes (fq_u), 4-bit (fq_s)
        halves = {int(s.layer.in_bits) for s in conv if halfword_rows(s.layer)}
        assert halves == ({2} if name == "fq_u" else {4}), halves
    if name == "fq_u":
        assert forms[:4] == [1, 0, 2, 1] and set(forms) == {0, 1, 2}, forms
        rests = [lane_pairs(lay) - 2 for lay in four]
        assert any(r & 2 for r in rests) and any(r & 4 for r in rests)
        assert any(r >= 8 for r in rests) and any(r < 8 for r in rests), rests
    elif name == "fq_s":  # l3's n0 = 0: tn_m7_out's general form
        assert forms[:6] == [1, 0, 1, 0, 2, 2], forms
        rests = [steps_mod.sub_lanes(s.layer)[1] // 4 - 1 for s in conv
                 if s.layer.weight_bits == 2]  # 2-bit units after the first
        assert all(any(r & m for r in rests) for m in (1, 2, 4)) and max(rests) >= 8, rests
    else:
        assert set(forms) == {0}, forms


def _residual_floor(wbits: int, bits: int, slot: int) -> IntegerGraph:
    """x -> p (pointwise, ``wbits``-bit weights, unsigned ``bits``-bit codes) -> y = x + p on
    the floor rounding: the ADD fused into p's step through its table (tn_sc_addtab), p's
    codes by tn_sc_code's fast form."""
    rng = np.random.default_rng(wbits + 10 * bits + slot + 100)
    p = IntegerLayer(kind="pointwise", name="p", in_shape=(5, 5, 16), out_shape=(5, 5, 16),
                     in_bits=bits, in_signed=False, in_zero_point=0, out_bits=bits,
                     out_signed=False, out_zero_point=0, inputs=("x",), outputs=("p",),
                     rounding="floor")
    top = (1 << wbits) - 1
    p.set_weights(rng.integers(0, top + 1, (16, 1, 1, 16)), wbits)
    p.weight_zero_point = np.array([(top + 1) // 2], np.int32)
    p.bias = rng.integers(-20, 60, 16).astype(np.int32)
    m0, n0 = tflite_quantize_multiplier([0.04 * (1 << bits) / 16 * 8 / (top + 1)])
    p.m0, p.n0 = m0, n0
    m0, n0 = tflite_quantize_multiplier([0.5, 0.31, 1.2 / (1 << 20)])
    add = IntegerLayer(kind="add", name="y", in_shape=(5, 5, 16), out_shape=(5, 5, 16),
                       in_bits=bits, in_signed=False, in_zero_point=0, out_bits=bits,
                       out_signed=False, out_zero_point=0,
                       inputs=("x", "p") if slot else ("p", "x"), outputs=("y",),
                       left_shift=20, m0=m0, n0=n0, rounding="floor")
    g = IntegerGraph([p, add], input_shape=(5, 5, 16), input_bits=bits, input_signed=False,
                     input_zero_point=0, rounding="floor", input_name="x", outputs=["y"],
                     name="res_floor")
    g.validate()
    return g


@pytest.mark.parametrize("wbits,bits,slot", [(4, 4, 1), (4, 4, 0), (2, 4, 1), (4, 2, 0)])
def test_subconv_fast_fused_add_host_bitexact(tmp_path, host_batch, wbits, bits, slot, roomy):
    """A floor residual ADD of sub-byte codes fused into tn_m7_subconv through its table, the
    convolution's codes by the fast form, bit-exact with the simulator."""
    g = _residual_floor(wbits, bits, slot)
    e = host_check(g, tmp_path, batch=host_batch)
    step = e.steps[0]
    assert e.kernels == ["sub"] and step.add is not None and steps_mod.sub_conv_step(step)
    assert fast_form(step.layer, g.rounding) == 2
    assert "addtab" in kernels_m7.step_function(step, 0, kernels_m7.choose(step, 0),
                                                g.rounding)


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
@pytest.mark.parametrize("ldrd", [1, 0])
def test_subconv_fast_under_qemu(qemu, tmp_path, monkeypatch, ldrd, roomy):
    """The assembly (cumulative masks with LDRD or two-LDR weight loads, the SMUAD start, the
    one-statement window words, SMMLA + SSAT / USAT) bit-exact under QEMU on every chain and
    a fused floor ADD. No host run here: the host checks above run these exports on 40 images
    (-DTN_SC_LDRD=0 goes to mcu.MCU_CFLAGS alone, never to the host build)."""
    if not ldrd:
        monkeypatch.setattr(mcu, "MCU_CFLAGS", (*mcu.MCU_CFLAGS, "-DTN_SC_LDRD=0"))
    # -DTN_SC_LDRD=0 changes only tn_sc_block's weight loads (ALW): fq_double's windows (KP
    # 27 over 8-bit inputs, 144 over 4-bit ones) are fq_u's first and third layers' and its
    # general arithmetic is fq_u's second layer's (tn_sc_pixels both), so the two-LDR build
    # runs the floor chains and the fused ADD (tn_sc_pixels_epi's own loads) only.
    names = sorted(FAST_CHAINS) if ldrd else ["fq_s", "fq_u"]
    graphs = [_chain(name) for name in names] + [_residual_floor(4, 4, 1)]
    graphs = dict(zip([*names, "residual_floor"], graphs))
    xs = {}
    for name, g in graphs.items():
        lo = -128 if g.input_signed else 0
        xs[name] = np.random.default_rng(5).integers(lo, lo + (1 << g.input_bits),
                                                     (3, *g.input_shape))
    check_many(graphs, xs, tmp_path, host_images=0, mcu_images=2)  # one Cortex-M7 program

"""The fused residual ADD by its table (kernels_m7.w16_add_table; c/tn_m7_gemm.h: TAB 2's run
into the scratch, then tn_m7_cv_addtab) at the output stage's exact rounding ties.

The output stage is t = (SMMLAR(x, QM, QC - QF [x < 0])) >> QK with QC = 2^(QK-1) + z_y 2^QK
(kernels_m7.add._stage): its rounding constant matters only where the high product h of x and
QM sits at a tie of the rounding divide, h = 2^(QK-1) (mod 2^QK); one off changes nothing
else. QC + 1 moves a negative tie (h < 0, rounded away from zero, down, thanks to QF) up a
code; QC - 1 moves a positive tie down a code (without QF, QC + 1 shows only one below a
tie). Random images meet such an h about once in 2^QK outputs (QK = 20 here): the QEMU run of
tests/test_pw_small.py passes with the constant of the assembly loops without QF one off.

Here the graph is built from the arithmetic so that ties occur, and the images drive every one:

- x -> a (1x1, 16 channels: a_c = x_{c^1} exactly, 4 (x - z_x) times 1/4) -> y = ADD(a, x),
  fused into a's step (QUAD 2, TAB 2: the sign term, as a fused ADD makes it). The layer's
  addend a and the other one x are then two free codes per channel: the images hold every
  pair (a, x) of codes (8 pairs per pixel, 512 images).
- The ADD is TFLite's (left shift 20; the other addend of the larger scale, rescaled by exactly
  1/2: the table's case; the layer's by a multiplier 0.37, rounded). For one pair (a*, x*) =
  (z_a + 37, z_x + E*) with sum s* the output multiplier M (n0 = -20) is solved so that
  SRDHM(s*, M) = 2^19 + j 2^20 exactly (a positive tie; or 2^19 - 1 + j 2^20); the pair
  (z_a - 37, z_x - E*), where in range, has the sum -s* (the rescale rounds half away from
  zero: odd), so SRDHM gives the negative tie.
- The ADD's output spans the whole int8 / uint8 range with QR = 1 and QK in [1, 31], so on the
  Cortex-M7 tn_m7_cv_addtab's assembly loops run it (TIE_GRAPHS: all four, int8 / uint8 with
  and without QF); the host runs its C loop.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests._qemu_many import HostBatch, check_many
from tinyopt.deploy import codegen, kernels_m7
from tinyopt.integer import steps as steps_mod
from tinyopt.integer.arith import tflite_quantize_multiplier
from tinyopt.integer.graph import IntegerGraph, IntegerLayer
from tinyopt.integer.sim import REQUANT

pytestmark = [pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine"),
              pytest.mark.skipif(not steps_mod.OWN_WEIGHT_ORDER,
                                 reason="tn_m7_conv is off (steps.OWN_WEIGHT_ORDER)")]

C, HW, LS, QK = 16, 4, 20, 20  # channels, image side, the ADD's left shift, output shift
OWN_REAL = 0.37  # the layer's addend's rescale (below 1/2: the other one is the larger scale)
D_STAR = 37  # the target pair's layer code minus its zero point
TIE, NEAR = 1 << (QK - 1), (1 << (QK - 1)) - 1  # SRDHM residues mod 2^QK: a tie, one below
# name: (signed, slot of the layer's addend, z_x = z_a, z_y, the target pair's other code minus
# z_x, the residue solved for). With the target's mirror pair in range (E* = 45) the sums hold
# ties of both signs, so the plan keeps the sign fix-up QF: QC - 1 shows at the positive tie,
# QC + 1 at the negative one. With it out of range (E* = 100, z_x = -60 / 60) no sum ties below
# zero, QF = 0: QC - 1 shows at a positive tie, QC + 1 at a positive value one below a tie
# (NEAR), which the constant one up rounds up. The four cover tn_m7_cv_addtab's assembly loops
# of int8 / uint8 codes with and without QF.
TIE_GRAPHS = {"s8_slot0": (True, 0, -3, 5, 45, TIE),
              "u8_slot1": (False, 1, 131, 128, 45, TIE),
              "s8_nofix_tie": (True, 1, -60, 5, 100, TIE),
              "s8_nofix_near": (True, 0, -60, 5, 100, NEAR),
              "u8_nofix_tie": (False, 0, 60, 128, 100, TIE),
              "u8_nofix_near": (False, 1, 60, 128, 100, NEAR)}


def _srdhm(a, b):
    """gemmlowp's SaturatingRoundingDoublingHighMul of int64 arrays (no operand is INT32_MIN
    here): round(a b / 2^31), halves away from zero."""
    ab = np.asarray(a, np.int64) * int(b)
    q = (np.abs(ab) + (1 << 30)) >> 31
    return np.where(ab < 0, -q, q)


def _own(d, m0, n0):
    """The layer's addend's rescale of codes minus their zero point (the simulator's)."""
    return REQUANT["tflite_double"](np.asarray(d, np.int64) << LS, m0, n0, False)


def _tie_graph(name):
    """The graph of the module's docstring, the output multiplier solved so that the target
    pair's sum s* gives SRDHM(s*, M) = the residue (mod 2^QK)."""
    signed, slot, zx, zy, e_star, residue = TIE_GRAPHS[name]
    m_own, n_own = (int(v[0]) for v in tflite_quantize_multiplier([OWN_REAL]))
    s_star = int(_own([D_STAR], m_own, n_own)[0]) + (e_star << (LS - 1))
    # the value of that residue nearest 0.7 s* (M near 0.7 2^31); round(s* M / 2^31) = t for
    # M in [(t - 1/2) 2^31 / s*, (t + 1/2) 2^31 / s*), an interval longer than 1 (s* < 2^31)
    t = round((0.7 * s_star - residue) / (1 << QK)) * (1 << QK) + residue
    m_out = -(-((2 * t - 1) << 30) // s_star)
    assert (1 << 30) <= m_out < (1 << 31)
    assert _srdhm([s_star, -s_star], m_out).tolist() == [t, -t]  # -s*: its mirror's sum
    pw = IntegerLayer(kind="pointwise", name="a", in_shape=(HW, HW, C), out_shape=(HW, HW, C),
                      in_bits=8, in_signed=signed, in_zero_point=zx, out_bits=8,
                      out_signed=signed, out_zero_point=zx, inputs=("x",), outputs=("a",),
                      rounding="tflite_double")
    w = np.full((C, 1, 1, C), 128)
    w[np.arange(C), 0, 0, np.arange(C) ^ 1] = 132  # w - z_w = 4 at input channel c ^ 1
    pw.set_weights(w, 8)
    pw.weight_zero_point = np.array([128], np.int32)
    pw.bias = np.zeros(C, np.int32)
    pw.m0, pw.n0 = tflite_quantize_multiplier([0.25])  # n0 < 0: TAB 2 / 3 take it
    own, other = (m_own, n_own), (1 << 30, 0)  # the other: exactly 1/2
    pairs = [own, other] if slot == 0 else [other, own]
    add = IntegerLayer(kind="add", name="y", in_shape=(HW, HW, C), out_shape=(HW, HW, C),
                       in_bits=8, in_signed=signed, in_zero_point=zx, out_bits=8,
                       out_signed=signed, out_zero_point=zy,
                       inputs=("a", "x") if slot == 0 else ("x", "a"), outputs=("y",),
                       left_shift=LS, m0=np.array([m for m, _ in pairs] + [m_out], np.int32),
                       n0=np.array([n for _, n in pairs] + [-QK], np.int8),
                       rounding="tflite_double")
    g = IntegerGraph([pw, add], input_shape=(HW, HW, C), input_bits=8, input_signed=signed,
                     input_zero_point=zx, rounding="tflite_double", input_name="x",
                     outputs=["y"], name=f"ties_{name}")
    g.validate()
    return g


def _all_pairs(signed):
    """Images holding every pair of codes (a, x) at some channel: channel 2i holds x, 2i + 1
    holds a (a_{2i} = x_{2i+1}); 8 pairs per pixel, 512 images."""
    lo = -128 if signed else 0
    a, x = np.meshgrid(np.arange(lo, lo + 256), np.arange(lo, lo + 256), indexing="ij")
    return np.stack([x.ravel(), a.ravel()], axis=1).reshape(-1, HW, HW, C)


def _residues(g, images):
    """Counts of the ADD output stage's high products h = SRDHM(sum, M) among the (a, x) pairs
    the images drive (TFLite's ADD written out here): "tie+" / "tie-" (h = 2^(QK-1) mod 2^QK,
    positive / negative) and "near+" (h = 2^(QK-1) - 1, positive) where the output is not
    saturated (there a constant one off shows), and "all_tie-": negative ties anywhere (the
    plan needs the sign fix-up QF for them)."""
    pw, add = g.layers
    slot = 0 if add.inputs[0] == "a" else 1
    za, zx = int(pw.out_zero_point), int(g.input_zero_point)
    a_codes, x_codes = images[..., np.arange(C) ^ 1].ravel(), images.ravel()
    s = _own(a_codes - za, int(add.m0[slot]), int(add.n0[slot])) + (
        (x_codes - zx) << (LS - 1))
    h = _srdhm(s, int(add.m0[2]))
    r = h & ((1 << QK) - 1)
    out = np.where(h < 0, -((-h + TIE) >> QK), (h + TIE) >> QK) + int(add.out_zero_point)
    lo = -128 if g.input_signed else 0
    inside = (out > lo) & (out < lo + 255)
    return {"tie+": int(((r == TIE) & inside & (h > 0)).sum()),
            "tie-": int(((r == TIE) & inside & (h < 0)).sum()),
            "near+": int(((r == NEAR) & inside & (h > 0)).sum()),
            "all_tie-": int(((r == TIE) & (h < 0)).sum())}


def _fused_table_step(g, tmp_path):
    """Export ``g``; check that its one step runs the fused ADD by the table with the plan of
    the assembly loop; return the export and the output stage's sign fix-up QF."""
    e = codegen.export_c(g, tmp_path / "src")
    assert e.kernels == ["pw"] and len(e.steps) == 1, e.kernels
    step = e.steps[0]
    assert step.add is not None and step.layer.kind == "pointwise"
    assert kernels_m7.conv_plan(step.layer, g.rounding, fused=True) == (2, 2)  # TAB 2
    assert kernels_m7.w16_add_table(step, g.rounding) is not None
    assert "static const int32_t addtab[256]" in (e.out_dir / "model.c").read_text()
    p = kernels_m7.add_plan(step, g.rounding)
    q = p["Q"]
    # SMMLAR, the whole 8-bit range, N % 4 == 0, QK in [1, 31]: the assembly loop
    assert (q["R"], q["K"]) == (1, QK) and step.layer.out_channels % 4 == 0, q
    assert (p["LO"], p["HI"]) == ((-128, 127) if g.input_signed else (0, 255))
    return e, q["F"]


def _check_residues(name, g, images, fix):
    """The target residues among the pairs ``images`` drive: ties of both signs with the sign
    fix-up (mirrored targets), else a positive tie or near-tie and no negative tie at all."""
    got = _residues(g, images)
    if TIE_GRAPHS[name][5] == NEAR:
        assert got["near+"] >= 1, got
    else:
        assert got["tie+"] >= 1, got
    if fix:
        assert got["tie-"] >= 1, got
    return got


@pytest.fixture(scope="module")
def host_batch(request, tmp_path_factory):
    """This module's host checks in one host program (tests._qemu_many.HostBatch), each graph
    on the images its test runs (:func:`_all_pairs`)."""
    def make(mp, name):
        g = _tie_graph(name)
        return g, _all_pairs(g.input_signed)
    return HostBatch(request, {"test_addtab_ties_host_bitexact": make},
                     tmp_path_factory.mktemp("host_batch"))


@pytest.mark.parametrize("name", sorted(TIE_GRAPHS))
def test_addtab_ties_host_bitexact(tmp_path, host_batch, name):
    """Every pair of codes through the fused step, among them the exact ties (or values one
    below a tie) the graph was solved for, unsaturated: the host's C equals the simulator on
    all of them (an output stage constant one off fails here)."""
    g = _tie_graph(name)
    e, fix = _fused_table_step(g, tmp_path)
    x = _all_pairs(g.input_signed)
    # QF exactly when some sum ties below zero (kernels_m7.add._stage drops it otherwise)
    assert fix == (_residues(g, x)["all_tie-"] > 0) == (TIE_GRAPHS[name][4] == 45), fix
    _check_residues(name, g, x, fix)
    want = codegen.reference_output(g, x)
    assert len(np.unique(want)) > 100
    got = host_batch.outputs(e, x)
    bad = np.argwhere(got != want)
    assert len(bad) == 0, f"{len(bad)} outputs differ, the first at {bad[:4].tolist()}"


@pytest.mark.slow  # one Cortex-M7 build and QEMU run for the graphs
def test_addtab_ties_under_qemu(qemu, tmp_path):
    """The images holding the target pairs through tn_m7_cv_addtab's assembly loop (and TAB 2's
    run into the scratch) on the Cortex-M7: value for value the simulator's (every graph in one
    program: tests/_qemu_many.py)."""
    graphs, xs, exports = {}, {}, {}
    for name in sorted(TIE_GRAPHS):
        g = graphs[name] = _tie_graph(name)
        exports[name], fix = _fused_table_step(g, tmp_path / name)
        x = _all_pairs(g.input_signed)
        keys = ["near+" if TIE_GRAPHS[name][5] == NEAR else "tie+"] + ["tie-"] * fix
        keep = [k for k in range(len(x)) if any(_residues(g, x[k:k + 1])[key] for key in keys)]
        xs[name] = x[keep]  # the few images that hold them: QEMU is slow
        assert 1 <= len(xs[name]) <= 8, (name, len(xs[name]))
        _check_residues(name, g, xs[name], fix)
    n = max(len(x) for x in xs.values())
    check_many(graphs, xs, tmp_path, host_images=n, mcu_images=n, exports=exports)

"""tn_m7_conv's small-K pointwise blocks (QUAD = 2, c/tn_m7_gemm.h tn_m7_cv_w16: int16 weights
2 (w - z_w), four rows x two pixels per pass, kernels_m7.conv_plan / conv_weights): the rule
that picks them, their weight layout by hand, and bit-exactness against tinyopt.sim on the host
and under QEMU (every K of 4 .. 32 lanes, padded lanes, odd pixel counts, stride 2, int8 and
uint8 inputs and outputs, per-channel and per-layer multipliers, the rounding's sign term on and
off, TAB 1 / 4 / 5, a constant channel, a fused residual ADD with tn_m7_add's arithmetic and with
the portable one; the other roundings keep the QUAD = 1 path)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.test_kernels_m7 import _conv, chain, host_check
from tinyopt.deploy import codegen, kernels_m7, mcu
from tinyopt.integer import steps as steps_mod
from tinyopt.integer.arith import tflite_quantize_multiplier
from tinyopt.integer.graph import IntegerGraph, IntegerLayer

pytestmark = [pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine"),
              pytest.mark.skipif(not steps_mod.OWN_WEIGHT_ORDER,
                                 reason="tn_m7_conv is off (steps.OWN_WEIGHT_ORDER)")]


def _pw(hw, c_in, c_out, **kw):
    return _conv((*hw, c_out), (c_out, 1, 1, c_in), 8, kw.pop("out_bits", 8), **kw)


# K (input channels) 16, 4, 8, 20, 24, 28, 12, 30 (padded to 32), 14 (padded to 16) and 32:
# every group count NG = 1 .. 8 of the assembly; 15, 9 and 4 pixels (a lone last pixel), stride
# 2; outputs clamped to the whole int8 / uint8 range with and without the rounding's sign term
# (z_out at the range's bottom with act_min there: LOZ = 0), per-channel (TAB 4, the layers in
# PCM) and per-layer multipliers (TAB 1), CO % 4 != 0 (QUAD 1) feeding a padded K, a 4-bit
# output.
W16_CHAINS = {  # name: (rounding, input signed, input zero point, input shape, layers)
    "s8": ("tflite_double", True, -128, (3, 5, 16), [
        _pw((3, 5), 16, 4, per_channel=True, out_signed=True, out_zero_point=-128,
            act_min=-128),
        _pw((3, 5), 4, 8, per_channel=True, out_signed=True, out_zero_point=5),
        _pw((3, 5), 8, 20, out_signed=True, out_zero_point=-128, act_min=-128),
        _pw((3, 5), 20, 24, per_channel=True, out_signed=True, out_zero_point=-7),
        _pw((3, 5), 24, 28, out_signed=True, out_zero_point=2),
        _pw((3, 5), 28, 12, per_channel=True, out_signed=True, out_zero_point=-1),
        _pw((3, 5), 12, 30, per_channel=True, out_signed=True),
        _pw((3, 5), 30, 32, per_channel=True, out_signed=True, out_zero_point=3),
        _pw((2, 3), 32, 16, stride=(2, 2), per_channel=True, out_signed=True,
            out_zero_point=-128, act_min=-128),
        _pw((2, 3), 16, 14, out_signed=True, out_zero_point=-2),
        _pw((2, 3), 14, 8, per_channel=True, out_signed=True, out_zero_point=-2)]),
    "u8": ("tflite_double", False, 0, (3, 3, 32), [
        _pw((3, 3), 32, 16, per_channel=True, out_zero_point=0, act_min=0),
        _pw((3, 3), 16, 12, out_zero_point=0, act_min=0),
        _pw((3, 3), 12, 20, per_channel=True, out_zero_point=131),
        _pw((3, 3), 20, 8, out_zero_point=9),
        _pw((3, 3), 8, 6, per_channel=True, out_zero_point=9),
        _pw((3, 3), 6, 16, per_channel=True, out_zero_point=255),
        _pw((3, 3), 16, 8, per_channel=True, out_bits=4, out_zero_point=3)]),
    # the other roundings: no table, QUAD = 2 not taken (conv_plan)
    "floor_u8": ("floor", False, 255, (3, 3, 16), [
        _pw((3, 3), 16, 32, per_channel=True, icn=True), _pw((3, 3), 32, 8)]),
    "single_s8": ("tflite_single", True, 127, (3, 3, 32), [
        _pw((3, 3), 32, 16, out_signed=True, out_zero_point=-9),
        _pw((3, 3), 16, 4, out_signed=True, per_channel=True)]),
}
PCM = {"s8": (0, 1, 2, 3, 4, 5, 7, 8, 10), "u8": (0, 1, 2, 3)}  # per-channel multipliers


def _graph(name):
    """The chain ``name``; the layers of PCM[name] with per-channel multipliers near their
    calibrated one (TFLite's: n0 < 0, a table of four words, TAB 4)."""
    rounding, signed, zin, shape, layers = W16_CHAINS[name]
    g = chain(70 + len(name), layers, shape, 8, signed, zin, rounding)
    rng = np.random.default_rng(1)
    for k in PCM.get(name, ()):
        lay = g.layers[k]
        real = float(np.ravel(lay.m0)[0]) * 2.0 ** (int(np.ravel(lay.n0)[0]) - 31)
        lay.m0, lay.n0 = tflite_quantize_multiplier(
            real * rng.uniform(0.8, 1.2, lay.out_channels))
    g.validate()
    return g


def _plans(g):
    return [kernels_m7.conv_plan(lay, g.rounding) for lay in g.layers]


def _fast_run(step, rounding):
    """(NG, SATS, SIGN, two blocks per iteration: CO % 8 == 0) of a step on tn_m7_cv_w16_run
    (QUAD 2, TAB 4, no fused ADD, an 8-bit output clamped to the whole int8 / uint8 range), else
    None."""
    lay = step.layer
    rq = kernels_m7.requant_constants(lay, rounding)
    lo, hi = rq["LOZ"] + rq["ZP"], rq["HIZ"] + rq["ZP"]
    if (kernels_m7.conv_plan(lay, rounding) != (2, 4) or step.add is not None
            or lay.out_bits != 8 or (lo, hi) not in ((-128, 127), (0, 255))):
        return None
    return (steps_mod.conv_lanes(lay)[1] // 4, lo == -128, rq["LOZ"] < 0,
            lay.out_channels % 8 == 0)


def test_w16_rule():
    """conv_plan gives QUAD = 2 to pointwise layers of at most 32 lanes with CO % 4 == 0 and a
    table (TFLite's double rounding), and not otherwise: 36 lanes, 6 output channels, floor and
    single rounding, a conv2d of few lanes."""
    assert _plans(_graph("s8")) == [(2, 4)] * 6 + [(1, 1), (2, 4), (2, 4), (1, 1), (2, 4)]
    assert _plans(_graph("u8")) == [(2, 4)] * 4 + [(1, 1), (2, 1), (2, 1)]
    assert all(p[0] != 2 for n in ("floor_u8", "single_s8") for p in _plans(_graph(n)))
    wide = chain(2, [_pw((2, 2), 36, 8, per_channel=True, out_signed=True)], (2, 2, 36), 8,
                 True, -128, "tflite_double")
    assert kernels_m7.conv_plan(wide.layers[0], "tflite_double")[0] == 1
    conv = chain(2, [_conv((2, 2, 8), (8, 3, 3, 1), 8, 8, padding=(1, 1, 1, 1),
                           out_signed=True)], (2, 2, 1), 8, True, -128, "tflite_double")
    assert conv.layers[0].kind == "conv2d" and steps_mod.conv_lanes(conv.layers[0])[1] == 12
    assert kernels_m7.conv_plan(conv.layers[0], "tflite_double")[0] == 1


def test_w16_weights_by_hand():
    """conv_weights with QUAD = 2: per block of four rows and group of four lanes the words
    [A r0 .. A r3, B r0 .. B r3] of int16 2 (w - z_w) (A: lanes k, k + 2 as low / high half;
    B: k + 1, k + 3); with TAB 4 the block's four 2 bias words before them and its channels'
    m0, rnd, sh after, with TAB 1 its 2 bias words after; padded lanes 0 (w = z_w); two bytes
    per weight. A QUAD = 2 the plan does not give is refused."""
    g = chain(1, [_pw((2, 2), 6, 8, per_channel=True, icn=True, out_signed=True)], (2, 2, 6), 8,
              True, 0, "tflite_double")
    lay = g.layers[0]
    lay.weights = (np.arange(48, dtype=np.int64).reshape(8, 6) * 5 % 256).astype(np.uint8)
    lay.weight_zero_point = np.arange(100, 108, dtype=np.int32)
    quad, tab = kernels_m7.conv_plan(lay, "tflite_double")
    assert (quad, tab) == (2, 4)
    got = kernels_m7.conv_weights(lay, quad, tab, rounding="tflite_double")
    d = 2 * (lay.weights.astype(np.int64) - lay.weight_zero_point[:, None])
    d = np.concatenate([d, np.zeros((8, 2), np.int64)], axis=1)  # lanes 6, 7: padding
    block = 4 * 4 + 4 * 8 * 2 + 4 * 3 * 4  # 2 bias x 4, 4 rows x 8 lanes x 2 B, 3 words x 4
    assert len(got) == 2 * block
    const = kernels_m7._conv_tab(lay, "tflite_double")[1]
    for b in range(2):
        blk = got[b * block:(b + 1) * block]
        words = blk[16:80].view("<i2").reshape(2, 2, 4, 2)  # group, half, row, lane
        for grp in range(2):
            for h in range(2):
                for r in range(4):
                    k = 4 * grp + h
                    assert words[grp, h, r].tolist() == [d[4 * b + r, k], d[4 * b + r, k + 2]]
        table = kernels_m7._conv_tables(lay, range(4 * b, 4 * b + 4), 4, const).view(
            "<u4").reshape(4, 4)  # per channel 2 bias, m0, rnd, sh
        assert blk[:16].view("<u4").tolist() == table[:, 0].tolist()
        assert blk[80:].view("<u4").reshape(4, 3).tolist() == table[:, 1:].tolist()
        assert table[:, 0].tolist() == [(2 * int(v)) % (1 << 32)
                                        for v in lay.bias[4 * b:4 * b + 4]]
    # TAB 1 (one multiplier): each block's weights then its four 2 bias words
    lay.m0, lay.n0 = np.int32(1 << 30), np.int8(-9)
    assert kernels_m7.conv_plan(lay, "tflite_double") == (2, 1)
    got = kernels_m7.conv_weights(lay, 2, 1, rounding="tflite_double")
    assert len(got) == 2 * (64 + 16)
    assert got[64:80].view("<u4").tolist() == [(2 * int(v)) % (1 << 32) for v in lay.bias[:4]]
    assert got[80:144].view("<i2").reshape(2, 2, 4, 2)[1, 0, 2].tolist() == [d[6, 4], d[6, 6]]
    with pytest.raises(ValueError, match="tab=4 is not conv_plan's"):
        kernels_m7.conv_weights(lay, 2, 4, rounding="floor")
    with pytest.raises(ValueError, match="quad=2 is not conv_plan's"):
        kernels_m7.conv_weights(lay, 2, 0)
    lay6 = chain(1, [_pw((2, 2), 6, 6, per_channel=True, out_signed=True)], (2, 2, 6), 8, True,
                 0, "tflite_double").layers[0]
    tab6 = kernels_m7.conv_plan(lay6, "tflite_double")[1]
    assert tab6 and kernels_m7.conv_plan(lay6, "tflite_double")[0] != 2  # 6 rows
    with pytest.raises(ValueError, match="quad=2 is not conv_plan's"):
        kernels_m7.conv_weights(lay6, 2, tab6, rounding="tflite_double")


@pytest.mark.parametrize("name", sorted(W16_CHAINS))
def test_w16_host_bitexact(tmp_path, name):
    """Every pointwise layer of the chains runs tn_m7_conv ("pw") and equals the simulator on
    120 inputs; the scratch stays the two pixels' lanes (4 KP bytes)."""
    g = _graph(name)
    e = host_check(g, tmp_path, n=120)
    assert e.kernels == ["pw"] * len(g.layers), e.kernels
    for s in e.steps:
        assert s.scratch_bytes == steps_mod.scratch_bytes(s) == 4 * steps_mod.conv_lanes(
            s.layer)[1]


def test_w16_tables_host_bitexact(tmp_path):
    """QUAD = 2 with TAB 5 (channels with n0 = 0 and 1 under a ReLU clamp: the left-shift word)
    and a constant channel (weights all at its zero point, bias near 2^30 and n0 = -30: exact
    through its table row) on the host, value for value."""
    g = chain(8, [_pw((3, 3), 16, 8, per_channel=True, icn=True, out_signed=True,
                      out_zero_point=-100, act_min=-100)], (3, 3, 16), 8, True, -128,
              "tflite_double")
    lay = g.layers[0]
    lay.weights[3] = np.asarray(lay.weight_zero_point).reshape(-1)[3]
    lay.bias[3] = (1 << 30) - 7
    lay.n0 = np.full(8, -12, np.int8)
    lay.m0 = np.full(8, 1 << 30, np.int32)
    lay.n0[3] = -30
    lay.n0[5], lay.n0[7] = 1, 0
    lay.m0[5] = lay.m0[7] = 1 << 14
    assert kernels_m7.conv_plan(lay, "tflite_double") == (2, 5)
    e = host_check(g, tmp_path, n=60)
    assert e.kernels == ["pw"]


def _res_graph(flavour, signed, cin, cout, ls=20, seed=4):
    """ResNet's shortcut: x (6 x 6 x cin) -> b (3x3 conv, stride 2) and a (1x1, stride 2: 9
    pixels); y = b + a, a fused with the ADD (its input 1), written over b. ``ls`` = 23 with
    z_b at the end of the codes: add_plan refuses the ADD (the portable arithmetic, FADD = 0)."""
    rng = np.random.default_rng(seed)
    base = -128 if signed else 0
    zx, za, zb, zy = (int(z) for z in rng.integers(base + 96, base + 160, 4))
    if ls > 20:
        zb = base
    t = dict(in_bits=8, in_signed=signed, out_bits=8, out_signed=signed, rounding=flavour)
    out = (3, 3, cout)

    def conv(name, k, zout, stride, padding):
        lay = IntegerLayer(kind="conv2d" if k > 1 else "pointwise", name=name,
                           in_shape=(6, 6, cin), out_shape=out, in_zero_point=zx,
                           out_zero_point=zout, inputs=("x",), outputs=(name,),
                           stride=stride, padding=padding, **t)
        lay.set_weights(rng.integers(0, 256, (cout, k, k, cin)), 8)
        lay.weight_zero_point = np.array([128], np.int32)
        lay.bias = rng.integers(-500, 500, cout).astype(np.int32)
        lay.m0, lay.n0 = tflite_quantize_multiplier(rng.uniform(0.001, 0.002, cout) / k)
        return lay

    sa, sb = rng.uniform(0.01, 0.2, 2)
    twice = 2 * max(sa, sb)
    m0, n0 = tflite_quantize_multiplier([sa / twice, sb / twice,
                                         twice / ((1 << ls) * (sa + sb) * 0.8)])
    add = IntegerLayer(kind="add", name="y", in_shape=out, out_shape=out, in_zero_point=zb,
                       out_zero_point=zy, inputs=("b", "a"), outputs=("y",), left_shift=ls,
                       m0=m0, n0=n0, act_min=zy, **t)
    g = IntegerGraph([conv("b", 3, zb, (2, 2), (0, 1, 0, 1)),
                      conv("a", 1, za, (2, 2), (0, 0, 0, 0)), add],
                     input_shape=(6, 6, cin), input_bits=8, input_signed=signed,
                     input_zero_point=zx, rounding=flavour, input_name="x", outputs=["y"],
                     name=f"res_{flavour}_{cin}")
    g.validate()
    return g


RES_GRAPHS = {"s8_16": ("tflite_double", True, 16, 32, 20),
              "u8_32": ("tflite_double", False, 32, 64, 20),
              "wide_shift": ("tflite_double", True, 16, 32, 23),
              "floor_16": ("floor", False, 16, 32, 20)}


@pytest.mark.parametrize("name", sorted(RES_GRAPHS))
def test_w16_fused_add_host_bitexact(tmp_path, name):
    """The stride-2 shortcut fused with the residual ADD: QUAD = 2 (but for floor rounding) with
    tn_m7_add's arithmetic per output, or the portable one after the pixel pair (add_plan
    refuses the wide shift), bit-exact on the host on 30 inputs."""
    flavour, signed, cin, cout, ls = RES_GRAPHS[name]
    g = _res_graph(flavour, signed, cin, cout, ls)
    e = codegen.export_c(g, tmp_path / "src")
    fused = [s for s in e.steps if s.add is not None]
    assert len(fused) == 1 and fused[0].layer.kind == "pointwise"
    assert kernels_m7.conv_plan(fused[0].layer, g.rounding)[0] == (1 if flavour == "floor"
                                                                     else 2)
    plan = kernels_m7.add_plan(fused[0], g.rounding)
    assert isinstance(plan, str) == (name == "wide_shift"), plan
    exe = mcu.build_host(e, build_dir=tmp_path / "host")
    lo = -128 if signed else 0
    x = np.random.default_rng(5).integers(lo, lo + 256, (30, *g.input_shape))
    want = codegen.reference_output(g, x)
    assert len(np.unique(want)) > 30
    np.testing.assert_array_equal(mcu.run_host(exe, e, x), want)


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
def test_w16_under_qemu(qemu, tmp_path):
    """The assembly of QUAD = 2 under QEMU: tn_m7_cv_w16_run for every group count NG = 1 .. 8
    and all four epilogues (int8 / uint8 codes, with and without the rounding's sign term), one
    and two blocks per iteration each,
    tn_m7_cv_w16 with the C epilogue (TAB 1, a 4-bit output, a narrowed clamp, the lone last
    pixel, the fused ADD both ways), bit-exact on the Cortex-M7."""
    runs = set()
    graphs = {n: _graph(n) for n in ("s8", "u8")}
    graphs.update({f"res_{n}": _res_graph(*RES_GRAPHS[n][:4], ls=RES_GRAPHS[n][4])
                   for n in ("s8_16", "wide_shift")})
    for name, g in graphs.items():
        lo = -128 if g.input_signed else 0
        x = np.random.default_rng(4).integers(lo, lo + 256, (6, *g.input_shape))
        r = mcu.deploy(g, x, tmp_path / name, name=name, host_images=6, mcu_images=3)
        s = r["summary"]
        assert s["host_mismatching_values"] == 0 and s["mcu_mismatching_values"] == 0, name
        runs |= {_fast_run(st, g.rounding) for st in r["export"].steps}
    assert {r[0] for r in runs - {None}} == set(range(1, 9)), runs
    assert {r[1:] for r in runs - {None}} == {(a, b, c) for a in (True, False)
                                              for b in (True, False) for c in (True, False)}, runs

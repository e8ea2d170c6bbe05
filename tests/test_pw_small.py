"""tn_m7_conv's small-K pointwise blocks (QUAD = 2, c/tn_m7_gemm.h tn_m7_cv_w16: int16 weights
2 (w - z_w), four rows x two pixels per pass, kernels_m7.conv_plan / conv_weights): the rule
that picks them, their weight layout by hand, and bit-exactness against tinyopt.sim on the host
and under QEMU (every K of 4 .. 32 lanes, padded lanes, odd pixel counts, stride 2, int8 and
uint8 inputs and outputs, per-channel and per-layer multipliers, the rounding's sign term on and
off, TAB 1 / 4 / 5, a constant channel, a fused residual ADD with tn_m7_add's arithmetic, by its
table (kernels_m7.w16_add_table) and with the portable one; the other roundings keep the
QUAD = 1 path)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests._qemu_many import check_many
from tests._qemu_many import host_batch_fixture, host_inputs
from tests.test_kernels_m7 import _conv, chain, host_check
from tinyopt.deploy import codegen, kernels_m7
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
        _pw((2, 3), 14, 8, per_channel=True, out_signed=True, out_zero_point=-2),
        _pw((2, 3), 8, 24, per_channel=True, out_signed=True, out_zero_point=-128,
            act_min=-128),
        _pw((2, 3), 24, 12, per_channel=True, out_signed=True, out_zero_point=-128,
            act_min=-128),
        _pw((2, 3), 12, 8, per_channel=True, out_signed=True, out_zero_point=-128,
            act_min=-128)]),
    "u8": ("tflite_double", False, 0, (3, 3, 32), [
        _pw((3, 3), 32, 16, per_channel=True, out_zero_point=0, act_min=0),
        _pw((3, 3), 16, 12, out_zero_point=0, act_min=0),
        _pw((3, 3), 12, 20, per_channel=True, out_zero_point=131),
        _pw((3, 3), 20, 8, out_zero_point=9),
        _pw((3, 3), 8, 8, per_channel=True, out_zero_point=0, act_min=0),
        _pw((3, 3), 8, 12, per_channel=True, out_zero_point=0, act_min=0),
        _pw((3, 3), 12, 8, per_channel=True, out_zero_point=0, act_min=0),
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
PCM = {"s8": (0, 1, 3, 4, 5, 7, 8, 10, 11, 12, 13), "u8": (0, 1, 2, 3, 4, 5, 6)}
# layers whose multipliers spread over 2^-14 .. 2^-6 (n0 over nine values): one shift for
# the layer would need weights 2^E (w - z_w) beyond int16, so TAB 4 keeps them (LOZ >= 0)
SPREAD = {"s8": (12, 13), "u8": (5, 6)}


def _graph(name):
    """The chain ``name``; the layers of PCM[name] with per-channel multipliers near their
    calibrated one (TFLite's: n0 < 0, a table of four words, TAB 4)."""
    rounding, signed, zin, shape, layers = W16_CHAINS[name]
    g = chain(70 + len(name), layers, shape, 8, signed, zin, rounding)
    rng = np.random.default_rng(1)
    for k in PCM.get(name, ()):
        lay = g.layers[k]
        real = float(np.ravel(lay.m0)[0]) * 2.0 ** (int(np.ravel(lay.n0)[0]) - 31)
        real = real * rng.uniform(0.8, 1.2, lay.out_channels)
        if k in SPREAD.get(name, ()):  # n0 over -6 .. -14
            real = rng.uniform(0.5, 1.0, lay.out_channels) * 2.0 ** -(
                6 + np.arange(lay.out_channels) % 9)
        lay.m0, lay.n0 = tflite_quantize_multiplier(real)
    g.validate()
    return g


def _plans(g):
    return [kernels_m7.conv_plan(lay, g.rounding) for lay in g.layers]


def _fast_run(step, rounding):
    """(TAB, NG, SATS, SIGN, blocks per iteration) of a step on tn_m7_cv_w16_run (QUAD 2, TAB 4
    or 3, no fused ADD, an 8-bit output clamped to the whole int8 / uint8 range; two blocks per
    iteration when CO % 8 == 0, with TAB 3 four when CO % 16 == 0), else None."""
    lay = step.layer
    rq = kernels_m7.requant_constants(lay, rounding)
    lo, hi = rq["LOZ"] + rq["ZP"], rq["HIZ"] + rq["ZP"]
    plan = kernels_m7.conv_plan(lay, rounding)
    if (plan not in ((2, 4), (2, 3)) or step.add is not None
            or lay.out_bits != 8 or (lo, hi) not in ((-128, 127), (0, 255))):
        return None
    co = lay.out_channels
    return (plan[1], steps_mod.conv_lanes(lay)[1] // 4, lo == -128, rq["LOZ"] < 0,
            4 if plan[1] == 3 and co % 16 == 0 else 2 if co % 8 == 0 else 1)


def test_w16_rule():
    """conv_plan gives QUAD = 2 to pointwise layers of at most 32 lanes with CO % 4 == 0 and a
    table (TFLite's double rounding), and not otherwise: 36 lanes, 6 output channels, floor and
    single rounding, a conv2d of few lanes; TAB 3 (one shift, w16_shift) to those of a clamp at
    or above the zero point whose scaled rows fit (not the SPREAD layers, not LOZ < 0); TAB 2
    (one shift and the sign term) to those of LOZ < 0 tn_m7_cv_w16_run does not take (the 4-bit
    output; a fused ADD: test_w16_fused_add_host_bitexact)."""
    assert _plans(_graph("s8")) == [(2, 3), (2, 4), (2, 3), (2, 4), (2, 4), (2, 4), (1, 1),
                                    (2, 4), (2, 3), (1, 1), (2, 4), (2, 3), (2, 4), (2, 4)]
    assert _plans(_graph("u8")) == [(2, 3), (2, 3), (2, 4), (2, 4), (2, 3), (2, 4), (2, 4),
                                    (1, 1), (2, 1), (2, 2)]
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


# This module's host checks in one host program (tests._qemu_many.HostBatch).
host_batch = host_batch_fixture({
    "test_w16_host_bitexact": lambda mp, name: (_graph(name), 120),
    "test_w16_fused_add_host_bitexact": lambda mp, name: (_res_case(name), 30),
    "test_w16_add_table_host_bitexact": lambda mp, name: (_table_graph(name), 30),
})


@pytest.mark.parametrize("name", sorted(W16_CHAINS))
def test_w16_host_bitexact(tmp_path, host_batch, name):
    """Every pointwise layer of the chains runs tn_m7_conv ("pw") and equals the simulator on
    120 inputs; the scratch stays the two pixels' lanes (4 KP bytes)."""
    g = _graph(name)
    e = host_check(g, tmp_path, n=120, batch=host_batch)
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


def _tab3_layer(n0, zout=-128, signed=True, relu=True, seed=2):
    """One 16 -> 4 int8 pointwise layer, per-channel multipliers m0 = 2^30 .. (many ties of
    both roundings) with shifts ``n0``, clamped at its zero point (``relu``) or not."""
    g = chain(9, [_pw((3, 3), 16, len(n0), per_channel=True, icn=True, out_signed=signed,
                      out_zero_point=zout, act_min=zout if relu else None)], (3, 3, 16), 8,
              True, -128, "tflite_double")
    lay = g.layers[0]
    rng = np.random.default_rng(seed)
    lay.m0 = ((1 << 30) + rng.integers(0, 3, len(n0)) * 12345).astype(np.int32)
    lay.m0[0] = 1 << 30
    lay.n0 = np.asarray(n0, np.int8)
    return g, lay


@pytest.mark.parametrize("n0, zout, signed, relu", [([-6, -9, -7, -8], -128, True, True),
                                                     ([-1, -3, -2, -1], 5, True, True),
                                                     ([-18, -20, -19, -17], 3, False, True),
                                                     ([0, 1, 0, 1], -20, True, True),
                                                     ([-6, -9, -7, -8], 5, True, False),
                                                     ([-1, -3, -2, -1], 100, True, False),
                                                     ([-18, -20, -19, -17], 128, False,
                                                      False)])
def test_w16_scaled_arithmetic(n0, zout, signed, relu):
    """TAB 3's arithmetic (kernels_m7._w16_scaled): per channel SMMLA(2^E acc, m0, C) >> T,
    clamped, equals the simulator's TFLite double rounding (integer.fixedpoint) plus the zero
    point, clamped, on every accumulator of a range around 0 (ties of SRDHM and of the rounding
    divide with m0 = 2^30) and on random ones up to the layer's bound; T = max(-n0) + 1, E =
    max(n0, 0) + 1 + T + n0 (per-layer zero shift: n0 >= 0), and the packed words are the
    scaled rows, seeds and (m0, C). Without the clamp at the zero point (LOZ < 0: TAB 2 where
    the step fuses an ADD) the sign term: C - K [acc < 0], K = 2^(T + n0), a fourth word."""
    from tinyopt.integer.fixedpoint import requant_tflite_double
    g, lay = _tab3_layer(n0, zout, signed, relu)
    tab = 3 if relu else 2
    assert kernels_m7.conv_plan(lay, g.rounding, fused=True) == (2, tab)
    assert kernels_m7.conv_plan(lay, g.rounding) == (2, 3 if relu else 4)
    t, e, seed, m0, cc, k = kernels_m7._w16_scaled(lay, g.rounding)
    assert k.tolist() == ([0] * 4 if relu else (1 << (t + np.asarray(n0))).tolist())
    sh = np.maximum(-np.asarray(n0), 0)
    assert t == kernels_m7.w16_shift(lay, g.rounding, fused=True) == sh.max() + 1
    assert e.tolist() == (np.maximum(n0, 0) + 1 + t - sh).tolist()
    lo, hi = (int(v) for v in lay.out_range)
    bound = kernels_m7.acc_bound(lay)
    rng = np.random.default_rng(0)
    acc = np.concatenate([np.arange(-70000, 70000), rng.integers(-bound, bound + 1, 200000)])
    for c in range(len(n0)):
        want = np.clip(requant_tflite_double(acc, int(lay.m0[c]), n0[c]) + zout, lo, hi)
        cs = int(cc[c]) - int(k[c]) * (acc < 0)
        num = (acc << int(e[c])) * int(m0[c]) + (cs << 32)  # exact in int64 here
        assert np.all(np.abs(acc << int(e[c])) < (1 << 30))
        got = np.clip((num >> 32) >> t, lo, hi)
        np.testing.assert_array_equal(got, want, err_msg=f"channel {c}")
    w = kernels_m7.conv_weights(lay, 2, tab, rounding=g.rounding)
    assert len(w) == 16 + 4 * 16 * 2 + 4 * 4 * (5 - tab)  # seeds, int16 rows, (m0, C (, K))
    assert w[:16].view("<i4").tolist() == (np.asarray(lay.bias, np.int64) << e).tolist()
    assert w[144:].view("<i4").reshape(4, 5 - tab).tolist() == np.stack(
        [m0, cc, k][:5 - tab], 1).tolist()
    zw = np.asarray(lay.weight_zero_point).reshape(-1)
    d = (np.asarray(lay.weights, np.int64).reshape(4, 16) - zw[:, None]) << e[:, None]
    words = w[16:144].view("<i2").reshape(4, 2, 4, 2)  # group, half, row, lane
    assert words[0, 1, 3].tolist() == [d[3, 1], d[3, 3]]
    assert words[3, 0, 2].tolist() == [d[2, 12], d[2, 14]]


def test_w16_scaled_edges():
    """TAB 3 only where it is exact and in range, else TAB 4 (or 5): the sign term (LOZ < 0),
    a scaled weight 2^E |w - z_w| at 2^15 (refused) and one below (taken), a scaled bound |acc|
    2^E at 2^30 (refused) and just below (taken); a constant channel gets E = 0, m0 = 0 and its
    code 2^T as C."""
    g, lay = _tab3_layer([-6, -9, -7, -8], zout=5, relu=False)
    assert kernels_m7.requant_constants(lay, g.rounding)["LOZ"] < 0
    assert kernels_m7.conv_plan(lay, g.rounding) == (2, 4)  # tn_m7_cv_w16_run's
    assert kernels_m7.w16_shift(lay, g.rounding) == 0
    assert kernels_m7.conv_plan(lay, g.rounding, fused=True) == (2, 2)
    assert kernels_m7.w16_shift(lay, g.rounding, fused=True) == 10
    with pytest.raises(ValueError, match="not conv_plan's"):
        kernels_m7.conv_weights(lay, 2, 3, rounding=g.rounding)
    # n0 -2 next to -12: T = 13, channel 0's E = 12: |w - z_w| < 8 fits int16 after scaling
    g, lay = _tab3_layer([-2, -12, -12, -12])
    zw = int(np.asarray(lay.weight_zero_point).reshape(-1)[0])
    lay.weights[0] = zw + np.resize([7, -7, 3, 0], 16)
    lay.bias[0] = 5
    assert kernels_m7.conv_plan(lay, g.rounding) == (2, 3)
    lay.weights[0, 0] = zw + 8  # 8 * 2^12 = 2^15
    assert kernels_m7.conv_plan(lay, g.rounding) == (2, 4)
    assert kernels_m7.w16_shift(lay, g.rounding) == 0
    lay.weights[0, 0] = zw + 7
    # the bound: channel 0's |bias| + sum |w - z_w| 255 (max |x - z_x|) times 2^12 at 2^30
    rest = int(np.abs(np.asarray(lay.weights[0], np.int64) - zw).sum()) * 255
    lay.bias[0] = (1 << 18) - rest
    assert kernels_m7.conv_plan(lay, g.rounding) == (2, 4)
    lay.bias[0] -= 1
    assert kernels_m7.conv_plan(lay, g.rounding) == (2, 3)
    # a constant channel (weights all at z_w)
    g, lay = _tab3_layer([-6, -9, -7, -8], zout=-100)
    lay.weights[2] = np.asarray(lay.weight_zero_point).reshape(-1)[2]
    lay.bias[2] = 300000
    assert kernels_m7.conv_plan(lay, g.rounding) == (2, 3)
    t, e, seed, m0, cc, k = kernels_m7._w16_scaled(lay, g.rounding)
    code = kernels_m7._conv_tab(lay, g.rounding)[1][2]
    assert (e[2], seed[2], m0[2], cc[2]) == (0, 0, 0, code << t) and t == 10


def test_w16_scaled_host_bitexact(tmp_path):
    """TAB 3 on the host with channels of n0 = 0 and 1 (no rounding divide: E = ls + 1 + T) and a
    constant channel, per-layer and per-channel, through tn_m7_conv's C epilogue, value for
    value against the simulator; an odd pixel count (the lone last pixel)."""
    g = chain(8, [_pw((3, 3), 16, 8, per_channel=True, icn=True, out_signed=True,
                      out_zero_point=-100, act_min=-100),
                  _pw((3, 3), 8, 4, out_signed=True, out_zero_point=-128, act_min=-128)],
              (3, 3, 16), 8, True, -128, "tflite_double")
    lay = g.layers[0]
    lay.weights[3] = np.asarray(lay.weight_zero_point).reshape(-1)[3]
    lay.bias[3] = 12345
    lay.n0 = np.array([0, 1, -3, -5, 1, 0, 1, 0], np.int8)  # channel 3: constant
    lay.m0 = np.full(8, 1 << 14, np.int32)
    lay.m0[::3] = (1 << 14) + 77
    assert [kernels_m7.conv_plan(la, "tflite_double") for la in g.layers] == [(2, 3)] * 2
    assert kernels_m7.w16_shift(lay, "tflite_double") == 4
    e = host_check(g, tmp_path, n=60)
    assert e.kernels == ["pw", "pw"]


def _small_shift_graph():
    """TAB 3 with T = 3 (every n0 in [-2, 1], unnormalized m0): int8 codes 16 -> 16 (four
    blocks per iteration), uint8 16 -> 8 (two); the rounding constant's 2^(d - 1) and the
    shift matter on about every other output."""
    g = chain(10, [_pw((4, 4), 16, 16, per_channel=True, icn=True, out_signed=True,
                       out_zero_point=-128, act_min=-128),
                   _pw((4, 4), 16, 8, per_channel=True, out_zero_point=0, act_min=0)],
              (4, 4, 16), 8, True, -128, "tflite_double")
    rng = np.random.default_rng(6)
    for lay in g.layers:  # the calibrated multiplier with an unnormalized m0
        real = float(np.ravel(lay.m0)[0]) * 2.0 ** (int(np.ravel(lay.n0)[0]) - 31)
        lay.n0 = rng.integers(-2, 2, lay.out_channels).astype(np.int8)
        lay.n0[0] = -2
        lay.m0 = np.round(real * rng.uniform(0.8, 1.2, lay.out_channels)
                          * 2.0 ** (31 - lay.n0.astype(np.int64))).astype(np.int32)
    g.validate()
    return g


def test_w16_small_shift_host_bitexact(tmp_path):
    """_small_shift_graph on the host: TAB 3 with T = 3, value for value, outputs spread."""
    g = _small_shift_graph()
    assert [kernels_m7.w16_shift(lay, g.rounding) for lay in g.layers] == [3, 3]
    e = host_check(g, tmp_path, n=60)
    assert e.kernels == ["pw", "pw"]


def _res_graph(flavour, signed, cin, cout, ls=20, seed=4, relu=False, slot=1, own_big=False,
               per_layer=False, add_relu=True, hw=6, oscale=0.8):
    """ResNet's shortcut: x (hw x hw x cin) -> b (3x3 conv, stride 2) and a (1x1, stride 2: 9
    pixels with hw = 6); y = b + a, a fused with the ADD (its input ``slot``), written over b.
    ``ls`` = 23 with z_b at the end of the codes: add_plan refuses the ADD (the portable
    arithmetic, FADD = 0). ``relu``: a clamped at its zero point (LOZ = 0: TAB 3). a's scale
    below b's (the ADD rescales b by exactly 1/2: kernels_m7.w16_add_table's table), or with
    ``own_big`` above it (a rescaled by 1/2: no table, tn_m7_add's arithmetic per output).
    ``per_layer``: a with one multiplier; ``add_relu``: the ADD clamped at its zero point (else
    the whole int8 / uint8 range: tn_m7_cv_addtab's assembly); ``oscale``: the ADD's output
    scale over sa + sb."""
    rng = np.random.default_rng(seed)
    base = -128 if signed else 0
    zx, za, zb, zy = (int(z) for z in rng.integers(base + 96, base + 160, 4))
    if ls > 20:
        zb = base
    t = dict(in_bits=8, in_signed=signed, out_bits=8, out_signed=signed, rounding=flavour)
    out = ((hw + 1) // 2, (hw + 1) // 2, cout)

    def conv(name, k, zout, stride, padding):
        lay = IntegerLayer(kind="conv2d" if k > 1 else "pointwise", name=name,
                           in_shape=(hw, hw, cin), out_shape=out, in_zero_point=zx,
                           out_zero_point=zout, inputs=("x",), outputs=(name,),
                           stride=stride, padding=padding,
                           act_min=zout if relu and k == 1 else None, **t)
        lay.set_weights(rng.integers(0, 256, (cout, k, k, cin)), 8)
        lay.weight_zero_point = np.array([128], np.int32)
        lay.bias = rng.integers(-500, 500, cout).astype(np.int32)
        real = rng.uniform(0.001, 0.002, cout) / k
        lay.m0, lay.n0 = tflite_quantize_multiplier(real[:1] if per_layer and k == 1 else real)
        return lay

    sa, sb = rng.uniform(0.01, 0.2, 2)  # the scales of the ADD's inputs 0 and 1
    if (sb > sa) != (own_big == (slot == 1)):  # a's scale below b's (own_big: above)
        sa, sb = sb, sa
    twice = 2 * max(sa, sb)
    m0, n0 = tflite_quantize_multiplier([sa / twice, sb / twice,
                                         twice / ((1 << ls) * (sa + sb) * oscale)])
    add = IntegerLayer(kind="add", name="y", in_shape=out, out_shape=out,
                       in_zero_point=zb if slot == 1 else za, out_zero_point=zy,
                       inputs=("b", "a") if slot == 1 else ("a", "b"), outputs=("y",),
                       left_shift=ls, m0=m0, n0=n0, act_min=zy if add_relu else None, **t)
    g = IntegerGraph([conv("b", 3, zb, (2, 2), (0, 1, 0, 1)),
                      conv("a", 1, za, (2, 2), (0, 0, 0, 0)), add],
                     input_shape=(hw, hw, cin), input_bits=8, input_signed=signed,
                     input_zero_point=zx, rounding=flavour, input_name="x", outputs=["y"],
                     name=f"res_{flavour}_{cin}")
    g.validate()
    return g


RES_GRAPHS = {"s8_16": ("tflite_double", True, 16, 32, 20),
              "u8_32": ("tflite_double", False, 32, 64, 20),
              "relu_s8_16": ("tflite_double", True, 16, 32, 20, True),
              "relu_u8_32": ("tflite_double", False, 32, 64, 20, True),
              "wide_shift": ("tflite_double", True, 16, 32, 23),
              "floor_16": ("floor", False, 16, 32, 20)}


@pytest.mark.parametrize("name", sorted(RES_GRAPHS))
def test_w16_fused_add_host_bitexact(tmp_path, host_batch, name):
    """The stride-2 shortcut fused with the residual ADD: QUAD = 2 (but for floor rounding),
    TAB 2 (one shift and the sign term) or with the ReLU TAB 3, with tn_m7_add's arithmetic per
    output, or the portable one after the pixel pair (add_plan refuses the wide shift),
    bit-exact on the host on 30 inputs."""
    flavour, signed, cin, cout, ls, *relu = RES_GRAPHS[name]
    g = _res_case(name)
    e = codegen.export_c(g, tmp_path / "src")
    fused = [s for s in e.steps if s.add is not None]
    assert len(fused) == 1 and fused[0].layer.kind == "pointwise"
    assert kernels_m7.conv_plan(fused[0].layer, g.rounding, fused=True) == (
        (1, 0) if flavour == "floor" else (2, 3) if relu else (2, 2))
    plan = kernels_m7.add_plan(fused[0], g.rounding)
    assert isinstance(plan, str) == (name == "wide_shift"), plan
    x = host_inputs(g, 30)
    want = codegen.reference_output(g, x)
    assert len(np.unique(want)) > 30
    np.testing.assert_array_equal(host_batch.outputs(e, x), want)


def _res_case(name):
    flavour, signed, cin, cout, ls, *relu = RES_GRAPHS[name]
    return _res_graph(flavour, signed, cin, cout, ls, relu=bool(relu))


# the fused ADD by its table (kernels_m7.w16_add_table, tn_m7_cv_addtab): the 1x1 layer as the
# ADD's input 0 (ResNet-8's shortcuts) and 1, int8 / uint8, per-channel / per-layer multipliers,
# TAB 2 (the sign term) / TAB 3 (a ReLU'd layer), the ADD over the whole range (the assembly)
# or clamped (the C loop), odd / even pixel counts; own_big: the layer's addend rescaled by 1/2
# (no table: tn_m7_add's arithmetic per output); the output stage with (oscale 0.8: ties among
# the sums) and without the sign fix-up. name: (kwargs of _res_graph, table expected)
TABLE_GRAPHS = {
    "slot0_s8": (dict(signed=True, cin=16, cout=32, slot=0, add_relu=False, hw=8, oscale=0.7),
                 True),
    "slot0_u8_pl": (dict(signed=False, cin=32, cout=64, slot=0, per_layer=True,
                         add_relu=False, seed=7, oscale=0.9), True),
    "slot1_relu_u8": (dict(signed=False, cin=16, cout=32, relu=True, add_relu=False, hw=8),
                      True),
    "slot1_s8_pl_clamped": (dict(signed=True, cin=32, cout=24, per_layer=True, seed=9), True),
    "slot0_s8_12": (dict(signed=True, cin=8, cout=12, slot=0, add_relu=False, seed=11), True),
    "slot0_relu_s8_clamped": (dict(signed=True, cin=16, cout=16, slot=0, relu=True, seed=3),
                              True),
    "own_big_s8": (dict(signed=True, cin=16, cout=32, own_big=True, add_relu=False), False),
    "own_big_slot0_u8": (dict(signed=False, cin=16, cout=32, slot=0, own_big=True), False),
}


def _table_run(step, rounding):
    """(TAB, blocks per iteration, tn_m7_cv_addtab's assembly, the output stage's sign fix-up)
    of a step whose fused ADD goes by its table (tn_m7_conv's pixel-pair loop: TAB 3 or 2 run
    into the scratch; the assembly for an SMMLAR output stage and the whole 8-bit range), else
    None."""
    if kernels_m7.w16_add_table(step, rounding) is None:
        return None
    p = kernels_m7.add_plan(step, rounding)
    tab = kernels_m7.conv_plan(step.layer, rounding, fused=True)[1]
    co = step.layer.out_channels
    full = (p["LO"], p["HI"]) == ((-128, 127) if p["OS"] else (0, 255))
    return (tab, 4 if co % 16 == 0 else 2 if co % 8 == 0 else 1,
            p["Q"]["R"] == 1 and full, bool(p["Q"]["F"]))


def _table_graph(name):
    kw = dict(TABLE_GRAPHS[name][0])
    return _res_graph("tflite_double", kw.pop("signed"), kw.pop("cin"), kw.pop("cout"), **kw)


def _fused_step(g, tmp_path):
    e = codegen.export_c(g, tmp_path / "src")
    fused = [s for s in e.steps if s.add is not None]
    assert len(fused) == 1 and fused[0].layer.kind == "pointwise"
    return e, fused[0]


@pytest.mark.parametrize("name", sorted(TABLE_GRAPHS))
def test_w16_add_table_entries(tmp_path, name):
    """w16_add_table's entries and FSH from TFLite's ADD written out independently: the own
    addend's rescale (the simulator's double rounding of (clamp(y) - z_own) << 20), minus the
    other addend's zero point at the plain shift's 2^19, all shifted by the output stage's
    max(n0, 0) + 1; None where the layer's addend is the one rescaled by 1/2."""
    from tinyopt.integer.sim import REQUANT
    g = _table_graph(name)
    _, step = _fused_step(g, tmp_path)
    assert kernels_m7.conv_plan(step.layer, g.rounding, fused=True) == (
        (2, 3) if TABLE_GRAPHS[name][0].get("relu") else (2, 2))
    got = kernels_m7.w16_add_table(step, g.rounding)
    assert (got is not None) == TABLE_GRAPHS[name][1]
    if got is None:
        return
    add, lay, slot = step.add, step.layer, step.add_slot
    assert slot == TABLE_GRAPHS[name][0].get("slot", 1)
    z_own = int(add.in_zero_point) if slot == 0 else int(step.layer.out_zero_point)
    z_oth = int(step.in_specs[1].zero_point)
    codes = np.arange(-128, 128) if lay.out_signed else np.arange(256)
    rq = kernels_m7.requant_constants(lay, g.rounding)
    y = np.clip(codes, rq["LOZ"] + rq["ZP"], rq["HIZ"] + rq["ZP"]).astype(np.int64)
    m0, n0 = np.atleast_1d(add.m0), np.atleast_1d(add.n0)
    own = REQUANT["tflite_double"]((y - z_own) << 20, int(m0[slot]), int(n0[slot]), False)
    qs = max(int(n0[2]), 0) + 1
    want = ((own - (z_oth << 19)) << qs).astype(np.int64)
    want = ((want + (1 << 31)) % (1 << 32)) - (1 << 31)
    np.testing.assert_array_equal(got[0], want)
    assert got[1] == 19 + qs


def test_w16_add_table_refuses_a_wrong_plan(tmp_path, monkeypatch):
    """The table's check against the simulator's ADD: an add_plan whose output stage is off by
    one code (C + 2^K) gives no table (and kernels keep tn_m7_add's arithmetic)."""
    g = _table_graph("slot0_s8")
    _, step = _fused_step(g, tmp_path)
    assert kernels_m7.w16_add_table(step, g.rounding) is not None
    orig = kernels_m7.add_plan

    def off_by_one(st, rounding):
        p = orig(st, rounding)
        q = p["Q"]
        return {**p, "Q": {**q, "C": q["C"] + (1 << q["K"])}}
    monkeypatch.setattr(kernels_m7.conv, "add_plan", off_by_one)
    assert kernels_m7.w16_add_table(step, g.rounding) is None


@pytest.mark.parametrize("name", sorted(TABLE_GRAPHS))
def test_w16_add_table_host_bitexact(tmp_path, host_batch, name):
    """TABLE_GRAPHS on the host (tn_m7_cv_pixels' C path of the table, or its fallback):
    the table in the step's C exactly when expected, outputs value for value on 30 inputs."""
    g = _table_graph(name)
    e, step = _fused_step(g, tmp_path)
    src = (tmp_path / "src" / "model.c").read_text()
    assert ("static const int32_t addtab[256]" in src) == TABLE_GRAPHS[name][1]
    x = host_inputs(g, 30)
    want = codegen.reference_output(g, x)
    assert len(np.unique(want)) > 30
    np.testing.assert_array_equal(host_batch.outputs(e, x), want)


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
def test_w16_under_qemu(qemu, tmp_path):
    """The assembly of QUAD = 2 under QEMU: tn_m7_cv_w16_run for every group count NG = 1 .. 8
    and all four TAB 4 epilogues (int8 / uint8 codes, with and without the rounding's sign
    term), one and two blocks per iteration each; TAB 3's (one shift: SMMLA, SSAT / USAT with
    the shift) for int8 and uint8 codes, one, two and four blocks per iteration each; the
    lanes of stride-1 pointwise pixel pairs (tn_m7_cv_w16_lanes) and of the stride-2 ones;
    tn_m7_cv_w16 with the C epilogue (TAB 1, a 4-bit output, a narrowed clamp, the lone last
    pixel, the fused ADD both ways, TAB 3 with the fused ADD); the fused ADD by its table
    (TABLE_GRAPHS: TAB 2's run into the scratch, one, two and four blocks per iteration,
    tn_m7_cv_addtab's assembly and C loop, the fallback), bit-exact on the Cortex-M7."""
    runs, tabs = set(), set()
    graphs = {n: _graph(n) for n in ("s8", "u8")}
    # Of RES_GRAPHS only the wide shift (add_plan refuses it: the portable fallback) builds for
    # the M7: s8_16 and relu_s8_16 go by the table too, and each of their parts runs here in a
    # TABLE_GRAPHS graph: s8_16's TAB 2 run of four blocks per-channel in slot0_s8, its C loop
    # of the table in slot 1 in slot1_s8_pl_clamped; relu_s8_16's TAB 3 run of four blocks into
    # the C loop in slot0_relu_s8_clamped, TAB 3 in slot 1 in slot1_relu_u8 (two M7 builds fewer).
    graphs["res_wide_shift"] = _res_graph(*RES_GRAPHS["wide_shift"][:5])
    graphs["small_shift"] = _small_shift_graph()
    graphs.update({f"tab_{n}": _table_graph(n) for n in TABLE_GRAPHS})
    xs = {name: np.random.default_rng(4).integers(-128 if g.input_signed else 0,
                                                  128 if g.input_signed else 256,
                                                  (6, *g.input_shape))
          for name, g in graphs.items()}
    exports = check_many(graphs, xs, tmp_path)  # one Cortex-M7 program for all the graphs
    for name, e in exports.items():
        runs |= {_fast_run(st, graphs[name].rounding) for st in e.steps}
        tabs |= {_table_run(st, graphs[name].rounding) for st in e.steps if st.add is not None}
    assert {r[1] for r in runs - {None}} == set(range(1, 9)), runs
    assert {r[2:] for r in runs - {None} if r[0] == 4} == {
        (a, b, c) for a in (True, False) for b in (True, False) for c in (1, 2)}, runs
    assert {r[2:] for r in runs - {None} if r[0] == 3} == {
        (a, False, c) for a in (True, False) for c in (1, 2, 4)}, runs
    assert None in tabs and {t[1] for t in tabs - {None} if t[0] == 2} == {1, 2, 4}, tabs
    assert {t[0] for t in tabs - {None}} == {2, 3}, tabs
    assert {t[2:] for t in tabs - {None}} >= {(True, True), (True, False), (False, True)}, tabs
    assert (3, 4, False, True) in tabs, tabs  # relu_s8_16's whole form, in a TABLE_GRAPHS graph

"""tn_m7_conv (c/tn_m7_gemm.h): the Cortex-M7 kernel of 8-bit convolutions and pointwise layers
(issue 29) agrees with tinyopt.sim value for value, its weights are exported in the order its
inner loop reads them (kernels_m7.conv_weights), and the planner's rule (steps.conv_fits)
picks it where it applies."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests._qemu_many import host_batch_fixture, check_many
from tests.test_kernels_m7 import _conv, _fast_first, chain, host_check
from tinyopt.deploy import codegen, kernels_m7
from tinyopt.integer import steps as steps_mod

pytestmark = [pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine"),
              pytest.mark.skipif(not steps_mod.OWN_WEIGHT_ORDER,
                                 reason="tn_m7_conv is off (steps.OWN_WEIGHT_ORDER)")]

# Chains of 8-bit convolutions: window rows of KW * C = 3, 6, 9, 12, 16, 40 bytes (padded to a
# group of four lanes, or not), C % 4 of 0, 1, 2, 3 (taps straddling groups at the borders),
# SAME padding (partial rows and whole padded rows), VALID, stride 2, asymmetric padding, odd
# output channel counts (the last row as it is), odd pixel counts (a lone last pixel), padding
# with the zero point and with integer 0 while z_x != 0, PL and PC, FB and ICN, the three
# roundings, int8 and uint8 inputs with extreme zero points, a 4-bit output.
CONV_CHAINS = {  # name: (rounding, input signed, input zero point, input shape, layers)
    "double_s8": ("tflite_double", True, -128, (9, 9, 3), [
        _conv((5, 5, 8), (8, 3, 3, 3), 8, 8, stride=(2, 2), padding=(1, 1, 1, 1),
              per_channel=True, icn=True, out_signed=True, out_zero_point=-128),
        _conv((5, 5, 16), (16, 3, 3, 8), 8, 8, padding=(1, 1, 1, 1), out_signed=True,
              out_zero_point=5, icn=True),
        _conv((3, 3, 7), (7, 3, 3, 16), 8, 8, per_channel=True, out_signed=True)]),
    "floor_u8": ("floor", False, 255, (7, 6, 1), [
        _conv((4, 3, 9), (9, 10, 4, 1), 8, 8, stride=(2, 2), padding=(4, 5, 1, 2),
              per_channel=True, icn=True),
        _conv((4, 3, 6), (6, 3, 3, 9), 8, 8, padding=(1, 1, 1, 1), pad_mode="zero",
              out_zero_point=3),
        _conv((3, 2, 5), (5, 2, 2, 6), 8, 4, per_channel=True, icn=True)]),
    "single_s8": ("tflite_single", True, 127, (6, 5, 2), [
        _conv((3, 3, 4), (4, 3, 3, 2), 8, 8, stride=(2, 2), padding=(1, 1, 1, 1),
              out_signed=True, out_zero_point=-9),
        _conv((3, 3, 5), (5, 3, 3, 4), 8, 8, padding=(1, 1, 1, 1), pad_mode="zero",
              out_signed=True, per_channel=True, icn=True, rounding="tflite_double")]),
    # both pixels' windows gathered at once (tn_m7_cv_window2: KW C and SW C multiples of 4,
    # SW < KW): stride 1 and 2, SAME (border pairs one by one, padded rows through the joint
    # gather) and VALID (INSIDE), odd output widths (pairs across two rows), integer-0 padding,
    # uint8 inputs (the sums x' of unsigned weights), rows DH apart (dilation (2, 1))
    "pair_u8": ("tflite_double", False, 3, (7, 9, 8), [
        _conv((7, 9, 12), (12, 3, 3, 8), 8, 8, padding=(1, 1, 1, 1), pad_mode="zero",
              per_channel=True, icn=True, out_zero_point=7),
        _conv((7, 9, 12), (12, 3, 3, 12), 8, 8, padding=(2, 2, 1, 1), dilation=(2, 1),
              icn=True),
        _conv((4, 5, 8), (8, 3, 3, 12), 8, 8, stride=(2, 2), padding=(1, 1, 1, 1),
              out_zero_point=2),
        _conv((2, 3, 9), (9, 3, 3, 8), 8, 8, per_channel=True),
        _conv((2, 2, 4), (4, 1, 2, 9), 8, 8, out_zero_point=1)]),
}


def _conv_graph(name):
    rounding, signed, zin, shape, layers = CONV_CHAINS[name]
    return chain(90 + len(name), layers, shape, 8, signed, zin, rounding)


# This module's parametrized host checks in one host program (tests._qemu_many.HostBatch): each
# case's graph and number of inputs as its test sets them up (not parametrized,
# test_conv_tables_host_bitexact builds its own).
host_batch = host_batch_fixture({
    "test_conv_kernel_host_bitexact": lambda mp, name: (_conv_graph(name), 120),
    "test_signed_weights_host_bitexact": lambda mp, name: (_signed_case(name), 60),
    "test_dilated_conv_host_bitexact": lambda mp, name: (_dil_graph(name), 120),
})


@pytest.mark.parametrize("name", _fast_first(CONV_CHAINS,
                                             ("double_s8", "floor_u8", "pair_u8")))
def test_conv_kernel_host_bitexact(tmp_path, host_batch, name):
    """Every 8-bit convolution of the chains runs tn_m7_conv and equals the simulator on 120
    inputs; its scratch is the two pixels' lanes (4 KP bytes, KP = KH * KWCP)."""
    g = _conv_graph(name)
    e = host_check(g, tmp_path, n=120, batch=host_batch)
    convs = [(k, s) for k, s in zip(e.kernels, e.steps) if s.layer.kind == "conv2d"]
    assert [k for k, _ in convs] == ["conv"] * len(convs), e.kernels
    for _, s in convs:
        kh, kw = steps_mod.kernel_window(s.layer)
        kwcp = -(-kw * s.layer.in_shape[-1] // 4) * 4
        assert steps_mod.conv_lanes(s.layer) == (kwcp, kh * kwcp)
        assert s.scratch_bytes == steps_mod.scratch_bytes(s) == 4 * kh * kwcp


def test_conv_weights_layout_by_hand():
    """conv_weights: each window row padded to four lanes with the row's weight zero point,
    then rows in pairs (fc_weights' words: [a_k, b_k ^ 0x80, a_k+2, b_k+2 ^ 0x80], ...), the last
    row of an odd count as it is (padded)."""
    g = chain(1, [_conv((2, 2, 3), (3, 1, 3, 1), 8, 8, per_channel=True)], (2, 4, 1))
    lay = g.layers[0]
    lay.weights = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 9]], np.uint8)
    lay.weight_zero_point = np.array([10, 20, 30], np.int32)
    got = kernels_m7.conv_weights(lay)
    a, b, c = [1, 2, 3, 10], [4, 5, 6, 20], [7, 8, 9, 30]
    f = [v ^ 0x80 for v in b]
    want = [a[0], f[0], a[2], f[2], a[1], f[1], a[3], f[3], *c]
    assert got.tolist() == want
    with pytest.raises(ValueError, match="conv_weights packs"):
        kernels_m7.conv_weights(chain(2, [_conv((2, 4, 2), (2, 1, 1, 1), 4, 8)],
                                      (2, 4, 1)).layers[0])


def test_conv_rule():
    """conv_fits: 8-bit conv2d layers without a fused pool; a sub-byte one is not conv_fits
    (steps.sub_kernel: tn_m7_sub, whose scratch is below the 8-bit kernel's)."""
    g = chain(3, [_conv((4, 4, 4), (4, 3, 3, 2), 8, 8, padding=(1, 1, 1, 1)),
                  _conv((4, 4, 4), (4, 3, 3, 4), 4, 8, padding=(1, 1, 1, 1))], (4, 4, 2))
    steps, _ = codegen.memory_plan(g)
    assert [steps_mod.m7_kernel(s)[0] for s in steps] == ["conv", "sub"]
    assert steps_mod.m7_kernel(steps[1], bits_rule=False)[0] == "gemm"
    assert steps_mod.conv_fits(steps[0]) and not steps_mod.conv_fits(steps[1])



def _codes(g, seed: int, n: int) -> np.ndarray:
    """n random 8-bit input codes of g (seeded)."""
    lo = -128 if g.input_signed else 0
    return np.random.default_rng(seed).integers(lo, lo + 256, (n, *g.input_shape))

@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
def test_conv_kernel_under_qemu(qemu, tmp_path):
    """tn_m7_conv's assembly loops (one, two and four groups per block) bit-exact under QEMU on
    the three chains."""
    graphs = {name: _conv_graph(name) for name in CONV_CHAINS}
    xs = {name: _codes(g, 4, 6) for name, g in graphs.items()}
    for name, e in check_many(graphs, xs, tmp_path).items():  # one Cortex-M7 program
        assert e.kernels == ["conv"] * len(graphs[name].layers), name


def test_conv_plan_paths_of_the_chains():
    """The chains reach every path of tn_m7_conv: two row pairs per block (QUAD) with and
    without requantization tables (TAB 4: per-channel multipliers, 1: one), and TAB 0 (floor
    and single rounding: the layer's tables per output)."""
    plans = {name: [kernels_m7.conv_plan(lay, _conv_graph(name).rounding)
                    for lay in _conv_graph(name).layers] for name in CONV_CHAINS}
    got = {p for v in plans.values() for p in v}
    assert {(1, 4), (1, 1), (1, 0)} <= got, plans


def test_conv_weights_quad_and_tables_by_hand():
    """conv_weights with QUAD: per group [pair 0 A, pair 1 A, pair 0 B, pair 1 B] then the four
    channels' TAB words (2 bias, m0, rounding constant with the zero point, shift), then the
    fifth row as it is with its own words; a constant channel (weights all at its zero point)
    gets m0 = 0 and its output code as rounding constant."""
    g = chain(1, [_conv((2, 2, 5), (5, 1, 1, 4), 8, 8, per_channel=True, icn=True,
                        out_signed=True, out_zero_point=-3)], (2, 2, 4), 8, True, 0,
              "tflite_double")
    lay = g.layers[0]
    lay.weights = np.arange(1, 21, dtype=np.uint8).reshape(5, 4)
    lay.weight_zero_point = np.array([10, 20, 30, 40, 50], np.int32)
    lay.weights[2] = 30  # channel 2: constant output
    lay.bias = np.array([5, -6, 1 << 29, 8, -9], np.int32)
    lay.m0 = np.array([1 << 30] * 5, np.int32)
    lay.n0 = np.array([-3, -4, -25, -2, -1], np.int8)
    quad, tab = kernels_m7.conv_plan(lay, "tflite_double")
    assert (quad, tab) == (1, 4)
    got = kernels_m7.conv_weights(lay, quad, tab, rounding="tflite_double")
    r = lay.weights.astype(int)
    pair = lambda a, b, k: [r[a][k], r[b][k] ^ 0x80, r[a][k + 2], r[b][k + 2] ^ 0x80]  # noqa
    want = pair(0, 1, 0) + pair(2, 3, 0) + pair(0, 1, 1) + pair(2, 3, 1)
    assert got[:16].tolist() == want
    words = got[16:16 + 64].view("<u4").reshape(4, 4).astype(np.int64)
    assert words[0].tolist() == [10, 1 << 30, 4 + (-3 % (1 << 32)) * 8 % (1 << 32), 3]
    assert words[1].tolist() == [(-12) % (1 << 32), 1 << 30, (8 + -3 * 16) % (1 << 32), 4]
    # the constant channel: requant(2^29 * 2^30 / 2^31 / 2^25) = 8, plus the zero point
    assert words[2].tolist() == [0, 0, 5, 0]
    assert got[80:84].tolist() == r[4].tolist() and len(got) == 84 + 16
    with pytest.raises(ValueError, match="conv_weights takes"):
        kernels_m7.conv_weights(lay, 3, 0)
    with pytest.raises(ValueError, match="not conv_plan's"):
        kernels_m7.conv_weights(lay, 1, 5, rounding="tflite_double")


def test_conv_tables_host_bitexact(tmp_path):
    """TAB with a constant channel (bias near 2^30, n0 = -30: outside the table's shift range,
    exact through its constant), channels with n0 = 0 and 1 (no rounding divide) under a ReLU clamp
    (LOZ >= 0: TAB 5, the left-shift word), and the 64-bit pair loop (QUAD = 0: weights that
    leave a pair's 32-bit sum unbounded) on the host, value for value."""
    g = chain(7, [_conv((6, 6, 9), (9, 3, 3, 48), 8, 8, padding=(1, 1, 1, 1), per_channel=True,
                        icn=True, out_signed=True, out_zero_point=-128)], (6, 6, 48), 8, True,
              -128, "tflite_double")
    lay = g.layers[0]
    lay.weights[3] = np.asarray(lay.weight_zero_point).reshape(-1)[3]  # constant channel 3
    lay.bias[3] = (1 << 30) - 7
    rng = np.random.default_rng(3)
    # b rows far from 128 on every lane: no 32-bit bound of a pair's sum (QUAD = 0)
    lay.weights[1::2] = rng.choice(np.array([235, 250], np.uint8), lay.weights[1::2].shape)
    lay.weights[3] = np.asarray(lay.weight_zero_point).reshape(-1)[3]
    lay.n0 = np.full(9, -16, np.int8)
    lay.m0 = np.full(9, 1 << 30, np.int32)
    lay.n0[3] = -30
    lay.n0[5] = 1
    lay.n0[7] = 0
    lay.m0[5] = lay.m0[7] = 1 << 14  # n0 >= 0 with a small multiplier: outputs in range
    assert kernels_m7.conv_plan(lay, "tflite_double") == (0, 5)
    e = host_check(g, tmp_path, n=60)
    assert e.kernels == ["conv"]


# --------------------------------------------------- SGW: weights stored minus their zero points
def _signed(g):
    """``g`` with every 8-bit dense / pointwise / conv layer's weights clipped to z_w +- 127 (per
    row): TFLite's symmetric int8 range, where kernels_m7.signed_weights holds (SGW = 1)."""
    for lay in g.layers:
        if lay.kind in ("dense", "pointwise", "conv2d") and lay.weight_bits == 8:
            w = np.asarray(lay.weights, np.int64).reshape(len(lay.weights), -1)
            z = np.broadcast_to(np.atleast_1d(np.asarray(lay.weight_zero_point, np.int64)),
                                (len(w),))[:, None]
            lay.weights = np.clip(w, np.maximum(z - 127, 0), np.minimum(z + 127, 255)).astype(
                np.uint8).reshape(np.shape(lay.weights))
            assert kernels_m7.signed_weights(lay), lay.name
    return g


def _signed_graphs():
    from tests.test_kernels_m7 import FC_CHAINS, PW_CHAINS, _fc_graph, _pw_graph
    return ([("conv_" + n, lambda n=n: _conv_graph(n)) for n in CONV_CHAINS]
            + [("pw_" + n, lambda n=n: _pw_graph(n)) for n in PW_CHAINS]
            + [("fc_" + n, lambda n=n: _fc_graph(n)) for n in FC_CHAINS])


def _signed_case(name):
    return _signed(dict(_signed_graphs())[name]())


@pytest.mark.parametrize("name", [n for n, _ in _signed_graphs()])
def test_signed_weights_host_bitexact(tmp_path, host_batch, name):
    """With SGW (weights minus their zero points in the lanes: no sum of the inputs) tn_m7_conv
    and tn_m7_fc equal the simulator on every chain (tails of K % 4, odd rows, PL and PC zero
    points, QUAD / pair loops, TAB 0 / 1 / 4)."""
    g = _signed_case(name)
    e = host_check(g, tmp_path, n=60, batch=host_batch)
    assert set(e.kernels) & {"conv", "pw", "fc"}, e.kernels


def test_signed_weights_rule_and_layout_by_hand():
    """signed_weights refuses a d = w - z_w outside int8 and a pair lane 256 d_b + d_a outside
    int16 (d_b = -128 with d_a < 0); the SGW bytes of a pair are the lane's low (a) and high (b,
    with the borrow) bytes, the odd last row d as int8."""
    g = chain(1, [_conv((2, 2, 3), (3, 1, 1, 4), 8, 8, per_channel=True)], (2, 2, 4))
    lay = g.layers[0]
    lay.weight_zero_point = np.array([128, 128, 128], np.int32)
    lay.weights = np.array([[129, 127, 1, 255], [100, 128, 255, 1], [0 + 1, 2, 3, 4]], np.uint8)
    assert kernels_m7.signed_weights(lay)
    got = kernels_m7.conv_weights(lay, signed=True)
    d = lay.weights.astype(int) - 128
    lane = [256 * d[1][k] + d[0][k] for k in range(4)]
    lo = [v & 0xFF for v in lane]
    hi = [(v >> 8) & 0xFF for v in lane]
    assert got[:8].tolist() == [lo[0], hi[0], lo[2], hi[2], lo[1], hi[1], lo[3], hi[3]]
    assert got[8:].tolist() == [v & 0xFF for v in d[2]]
    lay.weights[1, 0], lay.weights[0, 0] = 0, 100  # d_b = -128, d_a < 0: lane below int16
    assert not kernels_m7.signed_weights(lay)
    with pytest.raises(ValueError, match="signed_weights"):
        kernels_m7.conv_weights(lay, signed=True)
    lay.weights[0, 0] = 200  # d_b = -128 with d_a >= 0 fits
    assert kernels_m7.signed_weights(lay)
    lay.weight_zero_point = np.array([0, 128, 128], np.int32)  # d = 200 beyond int8
    assert not kernels_m7.signed_weights(lay)


def _asm_epilogue(step, rounding):
    """(SATS, SIGN) of the assembly epilogue (tn_m7_cv_epi4) a tn_m7_conv step takes on its
    QUAD blocks (TAB 4, SGW, no fused ADD, 8-bit output clamped to the whole int8 / uint8 range;
    the weights word-aligned, as the C arrays are), else None."""
    lay = step.layer
    rq = kernels_m7.requant_constants(lay, rounding)
    lo, hi = rq["LOZ"] + rq["ZP"], rq["HIZ"] + rq["ZP"]
    if (kernels_m7.conv_plan(lay, rounding) != (1, 4) or not kernels_m7.signed_weights(lay)
            or step.add is not None or lay.out_bits != 8
            or (lo, hi) not in ((-128, 127), (0, 255))):
        return None
    return lo == -128, rq["LOZ"] < 0


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
def test_signed_weights_under_qemu(qemu, tmp_path):
    """The SXTB16 forms of the assembly loops (tn_m7_cv_quad / tn_m7_cv_pair / tn_m7_fc_block)
    and the assembly epilogue of QUAD blocks (tn_m7_cv_epi4: int8 and uint8 codes, with and
    without the rounding's sign term) bit-exact under QEMU on conv, pointwise and dense chains
    with SGW."""
    graphs = dict(_signed_graphs())
    epilogues = set()
    chosen = {name: _signed(graphs[name]())
              for name in ("conv_double_s8", "conv_pair_u8", "pw_double_s8", "fc_double_s8")}
    xs = {name: _codes(g, 4, 6) for name, g in chosen.items()}
    for name, e in check_many(chosen, xs, tmp_path).items():  # one Cortex-M7 program
        epilogues |= {_asm_epilogue(st, chosen[name].rounding) for st, k in
                      zip(e.steps, e.kernels) if k in ("conv", "pw")}
    assert {(True, False), (True, True), (False, False), (False, True)} <= epilogues, epilogues


# ------------------------------------------------------------- dilated windows (issue 29)
def _dil(hw, c_in, c_out, k, d, same, **kw):
    """A dilated 8-bit conv2d on an (h, w, c_in) input, stride 1: SAME padding on the dilated
    extent (k - 1) d + 1 (TFLite's), or VALID, or ``padding`` given (a causal Conv1D)."""
    (h, w), (kh, kw_), (dh, dw) = hw, k, d
    eh, ew = (kh - 1) * dh + 1, (kw_ - 1) * dw + 1
    if "padding" in kw:
        t, b, l_, r = kw["padding"]
        oh, ow = h + t + b - eh + 1, w + l_ + r - ew + 1
    elif same:
        th, tw = eh - 1, ew - 1
        kw["padding"] = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
        oh, ow = h, w
    else:
        oh, ow = h - eh + 1, w - ew + 1
    return _conv((oh, ow, c_out), (c_out, kh, kw_, c_in), 8, 8, dilation=d, **kw)


# Dilations (1, 2), (2, 1), (2, 2), (1, 4) with SAME and VALID padding (and a causal Conv1D's),
# through the three gather paths of tn_m7_cv_window_d: contiguous rows (DW = 1, rows DH apart),
# whole taps (C % 4 == 0) and lane by lane (C % 4 != 0: taps straddle groups), inside the
# input and over the borders; padding with the zero point and with integer 0; odd channel and
# pixel counts; the three roundings.
DIL_CHAINS = {  # name: (rounding, input signed, input zero point, input shape, layers)
    "dil_double_s8": ("tflite_double", True, -128, (9, 10, 4), [
        _dil((9, 10), 4, 6, (3, 3), (1, 2), True, per_channel=True, icn=True,
             out_signed=True, out_zero_point=-7),
        _dil((9, 10), 6, 5, (3, 3), (2, 1), False, out_signed=True, out_zero_point=4),
        _dil((5, 8), 5, 8, (3, 3), (2, 2), True, pad_mode="zero", out_signed=True,
             per_channel=True),
        _dil((5, 8), 8, 7, (2, 3), (2, 2), False, out_signed=True, out_zero_point=-2)]),
    "dil_floor_u8": ("floor", False, 3, (1, 32, 8), [  # a TCN: causal Conv1D as 1 x k
        _dil((1, 32), 8, 12, (1, 3), (1, 4), False, padding=(0, 0, 8, 0), out_zero_point=2),
        _dil((1, 32), 12, 9, (1, 3), (1, 2), False, per_channel=True, icn=True),
        _dil((1, 28), 9, 5, (1, 3), (1, 4), False, out_zero_point=1),
        _dil((1, 20), 5, 6, (1, 3), (1, 4), True, pad_mode="zero")]),
    "dil_single_s8": ("tflite_single", True, 9, (7, 7, 3), [
        _dil((7, 7), 3, 4, (3, 3), (2, 2), True, out_signed=True, out_zero_point=-1),
        _dil((7, 7), 4, 3, (3, 2), (2, 1), True, pad_mode="zero", out_signed=True,
             per_channel=True, icn=True),
        _dil((7, 7), 3, 5, (2, 2), (1, 4), False, out_signed=True)]),
}


def _dil_graph(name):
    rounding, signed, zin, shape, layers = DIL_CHAINS[name]
    return chain(40 + len(name), layers, shape, 8, signed, zin, rounding)


@pytest.mark.parametrize("name", sorted(DIL_CHAINS))
def test_dilated_conv_host_bitexact(tmp_path, host_batch, name):
    """Every dilated 8-bit convolution of the chains runs tn_m7_conv (no longer the portable
    kernel) and equals the simulator on 120 inputs; its scratch is the two pixels' lanes, as
    undilated (the gather packs the KW taps of a row together whatever DW)."""
    g = _dil_graph(name)
    assert all(tuple(lay.dilation) != (1, 1) for lay in g.layers)
    e = host_check(g, tmp_path, n=120, batch=host_batch)
    assert e.kernels == ["conv"] * len(g.layers), e.kernels
    for s in e.steps:
        kh, kw = steps_mod.kernel_window(s.layer)
        kwcp = -(-kw * s.layer.in_shape[-1] // 4) * 4
        assert s.scratch_bytes == steps_mod.scratch_bytes(s) == 4 * kh * kwcp


def test_dilated_rule():
    """Only tn_m7_conv takes a dilated window: an 8-bit dilated conv2d is "conv"; a dilated
    depthwise layer and a dilated conv2d of 4-bit weights stay portable, the reason naming why;
    _inside measures the dilated extent (a VALID window that fits undilated but not dilated
    reads padding)."""
    g = chain(3, [_dil((6, 6), 2, 4, (3, 3), (2, 2), True),
                  dict(_dil((6, 6), 4, 4, (3, 3), (1, 2), True), wbits=4)],
              (6, 6, 2))
    steps, _ = codegen.memory_plan(g)
    assert steps_mod.m7_kernel(steps[0]) == ("conv", "")
    kind, why = steps_mod.m7_kernel(steps[1])
    assert kind == "portable" and "dilated" in why and "4-bit weights" in why, why
    assert steps_mod.scratch_bytes(steps[1]) == 0
    dw = chain(4, [dict(kind="depthwise", out_shape=(6, 6, 4), wshape=(3, 3, 4), wbits=8,
                        out_bits=8, padding=(2, 2, 2, 2), dilation=(2, 2))], (6, 6, 4))
    kind, why = steps_mod.m7_kernel(codegen.memory_plan(dw)[0][0])
    assert kind == "portable" and "depthwise" in why, why
    lay = _dil_graph("dil_double_s8").layers[1]  # VALID (2, 1): extent 5 x 3, all inside
    geo = steps_mod.gemm_geometry(lay)
    assert kernels_m7._inside(lay, geo)
    lay.dilation = (3, 1)  # now (OH - 1) + 7 > H: a window leaves the input
    assert not kernels_m7._inside(lay, geo)


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
def test_dilated_conv_under_qemu(qemu, tmp_path):
    """The dilated gathers under QEMU: the three chains bit-exact on the Cortex-M7."""
    graphs = {name: _dil_graph(name) for name in DIL_CHAINS}
    xs = {name: _codes(g, 6, 6) for name, g in graphs.items()}
    for name, e in check_many(graphs, xs, tmp_path).items():  # one Cortex-M7 program
        assert e.kernels == ["conv"] * len(graphs[name].layers), name

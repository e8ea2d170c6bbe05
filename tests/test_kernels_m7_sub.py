"""Sub-byte dense / pointwise / convolution steps on the Cortex-M7 kernels (issues 29 and 27):
tn_m7_sub (c/tn_m7_sub.h) equals the simulator value for value on the host, and the kernel choice
keeps the rule the memory-driven search relies on: for every compute step, the scratch of its
kernel at lower weight / input bits is at most the scratch at 8 bits (steps.sub_kernel), so
lowering bits never grows the deployed arena; memory_driven then finds the seed CNN's policies
that the sub-byte dense layer's gemm scratch used to rule out.
"""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

import tinyopt  # noqa: F401  (prepares TensorFlow before tf_keras)
from tinyopt.deploy import kernels_m7, mcu
from tinyopt.integer import steps as steps_mod
from tinyopt.integer.arith import tflite_quantize_multiplier
from tinyopt.integer.graph import IntegerGraph, IntegerLayer, pack, unpack

from tests._qemu_many import HostBatch, check_many
from tests.test_kernels_m7 import _conv, chain, host_check

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")


def _emitted_calls(e, kernel: str) -> dict[int, dict[str, int]]:
    """The literal arguments of every call of C kernel ``kernel`` in the export's model.c, by
    step index, named after the kernel's parameters (read from its prototype in the exported
    headers; those after the TN_RQ_ARGS / TN_FADD_ARGS macros are left out). What the C
    compiler specialises the kernel to, hence which of its variants ran (a patched Python plan
    that never reached the C shows up here, not in the outputs)."""
    headers = "".join(p.read_text() for p in sorted(e.out_dir.glob("*tn_m7*.h")))
    proto = re.search(rf"TN_INLINE void {kernel}\((.*?)\)\s*\{{", headers, re.S)
    assert proto, kernel
    names = []
    for param in proto.group(1).split(","):
        if "_ARGS" in param:  # the requantization / fused-ADD macros: the rest
            break
        names.append(re.findall(r"\w+", param)[-1])
    calls = {}
    model = e.sources[0].read_text()  # <prefix>.c
    for body in re.split(r"\nstatic void model_step", model)[1:]:
        index = int(re.match(r"(\d+)\(", body).group(1))
        call = re.search(rf"\b{kernel}\((.*?)\);", body, re.S)
        if call is None:
            continue
        args = [a.strip() for a in call.group(1).split(",")]  # no commas nest in these
        calls[index] = {n: int(a.rstrip("u")) for n, a in zip(names, args)
                        if re.fullmatch(r"-?\d+u?", a)}
    return calls


def _roomy(mp):
    """tn_m7_subconv wherever it fits: these small chains have their peak at the steps it
    runs, where the planner's rule (steps.SCRATCH_ONLY_WHERE_FREE: on a Keras-path graph only
    where its scratch is free) would give them the lean tn_m7_sub."""
    mp.setattr(steps_mod, "SCRATCH_ONLY_WHERE_FREE", False)


@pytest.fixture
def roomy(monkeypatch):
    """:func:`_roomy` for one test."""
    _roomy(monkeypatch)


@pytest.fixture(scope="module")
def host_batch(request, tmp_path_factory):
    """This module's host checks in one host program (tests._qemu_many.HostBatch): each case's
    graph and patches as its test sets them up."""
    def roomy_too(setup):
        def make(mp, **params):
            _roomy(mp)
            return setup(mp, **params)
        return make
    return HostBatch(request, {
        "test_sub_kernel_host_bitexact": lambda mp, name: _sub_chain(name),
        "test_subconv_host_bitexact": roomy_too(_subconv_case),
        "test_sub_kernel_fused_add_host_bitexact": roomy_too(
            lambda mp, wbits: _residual_graph(wbits)),
        "test_subconv_fused_sub_byte_add_host_bitexact": roomy_too(
            lambda mp, wbits, bits, slot: _residual_graph(wbits, bits, slot)),
        "test_subfc_host_bitexact": _subfc_case,
    }, tmp_path_factory.mktemp("host_batch"))


def _dense(n, k, wbits, out_bits=8, **kw):
    return dict(kind="dense", out_shape=(n,), wshape=(n, k), wbits=wbits, out_bits=out_bits, **kw)


# Chains of sub-byte steps: pairs of weight / input widths in (2, 4, 8) but 8 / 8 (and 1-bit
# weights); PL and PC weight zero points, FB and ICN, the three roundings; signed 8-bit and
# signed 4-bit inputs
# (the EOR / SSUB16 path), unsigned ones with z_x != 0; convolutions padded with z_x and with
# integer 0, strided, fused with a max pool; pointwise layers read in place (C XB % 8 == 0) and
# gathered (C XB % 8 != 0); odd channel counts (rows left over after blocks of R); dense layers
# whose K leaves a tail after the units of 8 and 16 codes; raw int32 logits.
SUB_CHAINS = {  # name: (rounding, input signed, input zero point, input shape, layers)
    "floor_s8": ("floor", True, -3, (9, 9, 3), [
        _conv((5, 5, 8), (8, 3, 3, 3), 4, 4, stride=(2, 2), padding=(1, 1, 1, 1),
              per_channel=True, icn=True),
        _conv((5, 5, 9), (9, 1, 1, 8), 2, 2, per_channel=True, icn=True, out_zero_point=1),
        _conv((5, 5, 6), (6, 3, 3, 9), 4, 8, padding=(1, 1, 1, 1), pad_mode="zero"),
        _conv((3, 3, 7), (7, 3, 3, 6), 2, 4),
        dict(kind="flatten"),
        _dense(11, 63, 8, 2, per_channel=True),
        _dense(5, 11, 4, 32, out_signed=True, requantize=False)]),
    "double_u8": ("tflite_double", False, 7, (8, 8, 4), [
        _conv((8, 8, 16), (16, 3, 3, 4), 2, 4, padding=(1, 1, 1, 1), out_signed=True,
              out_zero_point=1),
        dict(kind="maxpool", out_shape=(4, 4, 16), pool_size=(2, 2), stride=(2, 2),
             padding=(0, 0, 0, 0)),
        _conv((4, 4, 5), (5, 1, 1, 16), 8, 4, per_channel=True, icn=True),
        _conv((4, 4, 10), (10, 1, 1, 5), 4, 8, out_signed=True, out_zero_point=-2),
        _conv((4, 4, 6), (6, 1, 1, 10), 2, 2, per_channel=True),
        dict(kind="flatten"),
        _dense(9, 96, 2, 8, icn=True),
        _dense(3, 9, 4, 32, out_signed=True, requantize=False)]),
    "single_dense": ("tflite_single", False, 255, (150,), [
        _dense(13, 150, 2, 4, per_channel=True, icn=True),
        _dense(7, 13, 4, 2, out_zero_point=1),
        _dense(6, 7, 8, 4, per_channel=True),
        _dense(17, 6, 1, 8),
        _dense(4, 17, 4, 32, out_signed=True, requantize=False)]),
    # gathered windows completed to whole units (steps.sub_units): one input channel at 2-bit
    # weights (9 codes -> 16; int8 inputs, z_x = -3 in the padding lanes), fused pool; 54 -> 56
    # 4-bit codes (padding with integer 0); a pointwise layer of 5 x 4-bit channels (5 -> 8)
    "pad_units": ("tflite_double", True, -3, (8, 8, 1), [
        _conv((8, 8, 6), (6, 3, 3, 1), 2, 4, padding=(1, 1, 1, 1), per_channel=True, icn=True),
        dict(kind="maxpool", out_shape=(4, 4, 6), pool_size=(2, 2), stride=(2, 2),
             padding=(0, 0, 0, 0)),
        _conv((4, 4, 5), (5, 3, 3, 6), 4, 4, padding=(1, 1, 1, 1), pad_mode="zero"),
        _conv((4, 4, 7), (7, 1, 1, 5), 8, 8),
        dict(kind="flatten"),
        _dense(9, 112, 1, 8),
        _dense(3, 9, 4, 32, out_signed=True, requantize=False)]),
}


def _sub_chain(name):
    rounding, signed, zin, shape, layers = SUB_CHAINS[name]
    return chain(60 + len(name), layers, shape, 8, signed, zin, rounding)


@pytest.mark.parametrize("name", sorted(SUB_CHAINS))
def test_sub_kernel_host_bitexact(tmp_path, host_batch, name):
    """Every step whose weights or inputs have fewer than 8 bits takes tn_m7_sub (or a kernel
    of no more scratch than its 8-bit one) and the C equals the simulator on 40 inputs."""
    e = host_check(_sub_chain(name), tmp_path, batch=host_batch)
    subs = [s for k, s in zip(e.kernels, e.steps) if k == "sub"]
    assert len(subs) >= len([s for s in e.steps if s.layer.weights is not None]) - 1, e.kernels
    for k, s in zip(e.kernels, e.steps):
        if s.layer.weights is not None:
            assert s.scratch_bytes <= steps_mod.eight_bit_scratch(s), (s.name, k)
    bits = {(s.layer.weight_bits, s.layer.in_bits) for s in subs}
    assert len(bits) >= 4, bits
    if name == "floor_s8":  # a gathered window, in place only for byte-aligned pixels
        assert [steps_mod.sub_direct(s) for s in subs] == [False, True, False, False, True,
                                                          True]
    padded = [steps_mod.sub_units(s) > int(np.prod(s.layer.weight_shape)) // s.layer.out_channels
              for s in subs]
    assert padded == ([True, True, True, False, False] if name == "pad_units"
                      else [False, False, True, False, False, False] if name == "double_u8"
                      else [False] * len(subs)), padded
    if name == "double_u8":  # the fused pool's maxima; pointwise layers read in place
        first = e.steps[0]
        assert first.pool is not None and steps_mod.scratch_parts(first)[1] == 4 * 16


# tn_m7_subconv (steps.sub_conv_fits): 4 / 2-bit weights over windows of 8-bit inputs (the
# first layer, tn_m7_cv_window), of 4 / 2-bit inputs unpacked a word at a time (C a multiple of
# 32 / XB) or lane by lane (odd channel counts), signed 4-bit inputs with z_x != 0, padding with
# z_x and with integer 0, strides, an odd pixel count (the lone last pixel), output channels
# not a multiple of the four rows of a block, PL and PC, sub-byte and 8-bit outputs.
SUBCONV_CHAINS = {
    "sc_double": ("tflite_double", True, -3, (7, 7, 3), [
        _conv((7, 7, 16), (16, 3, 3, 3), 4, 4, padding=(1, 1, 1, 1), per_channel=True,
              icn=True, out_signed=True, out_zero_point=1),
        _conv((7, 7, 10), (10, 3, 3, 16), 2, 2, padding=(1, 1, 1, 1), pad_mode="zero"),
        _conv((3, 3, 16), (16, 3, 3, 10), 4, 8, stride=(2, 2), out_signed=True,
              out_zero_point=1),
        _conv((3, 3, 8), (8, 1, 1, 16), 2, 4, per_channel=True),
        _conv((3, 3, 13), (13, 1, 1, 8), 4, 8, padding=(1, 1, 1, 1)),
        dict(kind="flatten"),
        _dense(3, 117, 4, 32, out_signed=True, requantize=False)]),
    "sc_floor": ("floor", False, 5, (6, 5, 16), [
        _conv((6, 5, 32), (32, 3, 3, 16), 2, 4, padding=(1, 1, 1, 1), per_channel=True,
              icn=True),
        _conv((6, 5, 16), (16, 1, 1, 32), 4, 2, out_zero_point=1),
        _conv((3, 3, 32), (32, 3, 3, 16), 4, 4, stride=(2, 2), padding=(1, 0, 1, 1)),
        _conv((3, 3, 12), (12, 3, 3, 32), 2, 8, padding=(1, 1, 1, 1), per_channel=True),
        dict(kind="flatten"),
        _dense(4, 108, 4, 32, out_signed=True, requantize=False)]),
    # fused max pools (tn_sc_pooled): the seed CNN's first layer (one 8-bit channel, VALID,
    # 2x2 / 2), then an overlapping 3x3 / 2 padded pool (windows of 4, 6 and 9 layer outputs:
    # pairs and a lone last one) over 2-bit weights and 4-bit inputs, CO not a multiple of 4
    "sc_pool": ("tflite_double", False, 0, (10, 10, 1), [
        _conv((8, 8, 16), (16, 3, 3, 1), 4, 4, per_channel=True, icn=True),
        dict(kind="maxpool", out_shape=(4, 4, 16), pool_size=(2, 2), stride=(2, 2),
             padding=(0, 0, 0, 0)),
        _conv((4, 4, 10), (10, 3, 3, 16), 2, 8, padding=(1, 1, 1, 1), out_zero_point=3),
        dict(kind="maxpool", out_shape=(2, 2, 10), pool_size=(3, 3), stride=(2, 2),
             padding=(1, 1, 1, 1)),
        dict(kind="flatten"),
        _dense(3, 40, 4, 32, out_signed=True, requantize=False)]),
}


def _subconv_case(mp, name, raw):
    """SUBCONV_CHAINS[name], tn_m7_subconv's RAW forced to ``raw`` (None: as planned)."""
    rounding, signed, zin, shape, layers = SUBCONV_CHAINS[name]
    if raw is not None:
        mp.setattr(kernels_m7.subconv, "subconv_raw", lambda layer: raw)
    return chain(70 + len(name), layers, shape, 8, signed, zin, rounding)


@pytest.mark.parametrize("raw", [None, 1, 0])
@pytest.mark.parametrize("name", sorted(SUBCONV_CHAINS))
def test_subconv_host_bitexact(tmp_path, monkeypatch, host_batch, name, raw, roomy):
    """Every conv / pointwise step takes tn_m7_subconv, in at most the 8-bit kernel's scratch,
    and the C equals the simulator; RAW forced down to 1 (row 3 shifted) and 0 (no scaled
    rows) too (always exact: lower levels need no bound)."""
    e = host_check(_subconv_case(monkeypatch, name, raw), tmp_path, batch=host_batch)
    conv = [s for s in e.steps if s.layer.kind in ("conv2d", "pointwise")]
    assert conv and all(steps_mod.sub_conv_step(s) for s in conv), e.kernels
    for s in conv:  # tn_m7_conv's lanes (the 8-bit kernel's, or below a padded pointwise's)
        pool = 4 * s.layer.out_channels * (s.pool is not None)  # a fused pool's maxima
        assert s.scratch_bytes == 4 * steps_mod.sub_lanes(s.layer)[1] + pool, s.name
        assert s.scratch_bytes <= steps_mod.eight_bit_scratch(s), s.name
    assert (name == "sc_pool") == all(s.pool is not None for s in conv)
    groups = {steps_mod.sub_lane_group(s.layer) for s in conv}
    assert groups == ({4, 8, 16} if name == "sc_floor" else {4, 8}), groups
    if raw is None:
        assert {kernels_m7.subconv_raw(s.layer) for s in conv if s.layer.weight_bits == 4} == {2}
    _check_subconv_raw(e, raw)


def _check_subconv_raw(e, raw):
    """The RAW the C was specialised to (it selects tn_m7_subconv's loop; 2-bit weights ignore
    it): the forced level on every 4-bit step, else the planned 2. Without this the forced runs
    would pass unforced too (RAW 2 is exact as well), so a patch that stopped reaching the C
    would go unseen."""
    conv = [k for k, s in enumerate(e.steps) if s.layer.kind in ("conv2d", "pointwise")]
    calls = _emitted_calls(e, "tn_m7_subconv")
    assert sorted(calls) == conv, sorted(calls)
    four = [calls[k]["RAW"] for k in conv if e.steps[k].layer.weight_bits == 4]
    assert four and four == [2 if raw is None else raw] * len(four), four


def test_subconv_raw_levels():
    """subconv_raw: 2 for small windows, 1 when row 3's 4096-scaled sum could leave int32
    (a 3x3 x 64 window of 8-bit inputs, weights far from 8), 0 when 256 |A_2| could too."""
    def layer(c, zx=0, fill=None):
        g = chain(1, [_conv((1, 1, 4), (4, 1, 1, c), 4, 8)], (1, 1, c), 8, False, zx)
        lay = g.layers[0]
        if fill is not None:
            lay.set_weights(np.full((4, 1, 1, c), fill), 4)
        return lay
    assert kernels_m7.subconv_raw(layer(16)) == 2
    assert kernels_m7.subconv_raw(layer(576, fill=0)) == 1  # 4096 * 8 * 576 * 255 > 2^31
    assert kernels_m7.subconv_raw(layer(576, fill=8)) == 2  # row 3 holds w - 8 = 0
    assert kernels_m7.subconv_raw(layer(2400, fill=15)) == 0  # 256 * 15 * 2400 * 255 > 2^31
    with pytest.raises(ValueError, match="'l0'.*8-bit conv2d|'l0'.*8-bit pointwise"):
        kernels_m7.subconv_weights(chain(2, [_conv((1, 1, 4), (4, 1, 1, 8), 8, 8)],
                                         (1, 1, 8)).layers[0])


def test_subconv_weights_by_hand():
    """subconv_weights: 4-bit, per lane pair one word (nibble r: row r at i_q, 4 + r: row r at
    j_q; rows 3 ^ 8 with RAW 2); 2-bit, one word per two lane pairs; rows completed to four."""
    g = chain(3, [_conv((1, 1, 5), (5, 1, 1, 8), 4, 8)], (1, 1, 8), 8, False, 0)
    lay = g.layers[0]
    w = unpack(lay.weights, 4, 8)  # [5, 8]
    words = kernels_m7.subconv_weights(lay).view("<u4").reshape(2, 4)  # 2 blocks, 4 pairs
    raw = kernels_m7.subconv_raw(lay)
    assert raw == 2
    rows = np.zeros((8, 8), np.int64)
    rows[:5] = w
    rows[3::4] ^= 8
    for b in range(2):
        for q, (i, j) in enumerate([(0, 2), (1, 3), (4, 6), (5, 7)]):  # 8-bit inputs: GX = 4
            want = sum(int(rows[4 * b + r, i]) << (4 * r) for r in range(4)) + sum(
                int(rows[4 * b + r, j]) << (16 + 4 * r) for r in range(4))
            assert int(words[b, q]) == want, (b, q)
    g = chain(4, [_conv((1, 1, 4), (4, 1, 1, 16), 2, 4)], (1, 1, 16), 2, False, 0)
    lay = g.layers[0]
    assert steps_mod.sub_lane_group(lay) == 16  # 2-bit inputs: pairs (j, j + 8)
    w = unpack(lay.weights, 2, 16)
    words = kernels_m7.subconv_weights(lay).view("<u4")
    assert words.shape == (4,)
    for t in range(4):  # lane pairs 2t, 2t + 1 = elements (2t, 2t + 8), (2t + 1, 2t + 9)
        fields = [w[r, 2 * t] for r in range(4)] + [w[r, 2 * t + 1] for r in range(4)] + [
            w[r, 2 * t + 8] for r in range(4)] + [w[r, 2 * t + 9] for r in range(4)]
        assert int(words[t]) == sum(int(f) << (2 * k) for k, f in enumerate(fields)), t


def _residual_graph(wbits: int, bits: int = 8, slot: int = 1) -> IntegerGraph:
    """x -> p (pointwise, ``wbits``-bit weights, ``bits``-bit output) -> y = x + p (p the ADD's
    input ``slot``): the ADD fused into p's step (8 bits: tn_m7_add_fused after the outputs,
    in place over x's bytes; sub-byte, unsigned: the ADD's table, tn_sc_addtab)."""
    rng = np.random.default_rng(wbits + 10 * bits + slot)
    sg = bits == 8
    zx, zp, zy = (-5, 3, -20) if sg else (1, 1, 1)
    p = IntegerLayer(kind="pointwise", name="p", in_shape=(5, 5, 12), out_shape=(5, 5, 12),
                     in_bits=bits, in_signed=sg, in_zero_point=zx, out_bits=bits, out_signed=sg,
                     out_zero_point=zp, inputs=("x",), outputs=("p",), rounding="tflite_double")
    top = (1 << wbits) - 1
    p.set_weights(rng.integers(0, top + 1, (12, 1, 1, 12)), wbits)
    p.weight_zero_point = rng.integers(1, top, 12).astype(np.int32)
    p.bias = rng.integers(-200, 200, 12).astype(np.int32)
    p.m0, p.n0 = tflite_quantize_multiplier(rng.uniform(0.004, 0.02, 12) * 8 / (top + 1)
                                            * (1 << bits) / 256)
    m0, n0 = tflite_quantize_multiplier([0.5, 0.31, (0.6 if sg else 1.2) / (1 << 20)])
    add = IntegerLayer(kind="add", name="y", in_shape=(5, 5, 12), out_shape=(5, 5, 12),
                       in_bits=bits, in_signed=sg, in_zero_point=zx if slot else zp,
                       out_bits=bits, out_signed=sg, out_zero_point=zy,
                       inputs=("x", "p") if slot else ("p", "x"), outputs=("y",),
                       left_shift=20, m0=m0, n0=n0, rounding="tflite_double")
    g = IntegerGraph([p, add], input_shape=(5, 5, 12), input_bits=bits, input_signed=sg,
                     input_zero_point=zx, rounding="tflite_double", input_name="x",
                     outputs=["y"], name="res")
    g.validate()
    return g


@pytest.mark.parametrize("wbits", [4, 2])
def test_sub_kernel_fused_add_host_bitexact(tmp_path, host_batch, wbits, roomy):
    g = _residual_graph(wbits)
    e = host_check(g, tmp_path, batch=host_batch)
    assert e.kernels == ["sub"] and e.steps[0].add is not None, e.kernels
    # tn_m7_subconv: the 8-bit kernel's lanes and the pair's int32 outputs, no more
    assert steps_mod.sub_conv_step(e.steps[0])
    assert e.steps[0].scratch_bytes == steps_mod.eight_bit_scratch(e.steps[0]) == 4 * 12 + 8 * 12
    ch = kernels_m7.choose(e.steps[0], 0, rounding=g.rounding)
    assert ch.reason == "", ch.reason  # tn_m7_add's arithmetic, not the portable one


@pytest.mark.parametrize("wbits,bits,slot", [(4, 4, 1), (2, 4, 0), (4, 2, 0), (2, 2, 1)])
def test_subconv_fused_sub_byte_add_host_bitexact(tmp_path, host_batch, wbits, bits, slot,
                                                  roomy):
    """A residual ADD of sub-byte tensors fused into tn_m7_subconv runs its table (both
    slots), bit-exact with the simulator; the table is the simulator's ADD on every pair."""
    g = _residual_graph(wbits, bits, slot)
    e = host_check(g, tmp_path, batch=host_batch)
    step = e.steps[0]
    assert e.kernels == ["sub"] and step.add is not None and steps_mod.sub_conv_step(step)
    table = kernels_m7.subconv_add_table(step, g.rounding)
    assert table.size == 1 << (2 * bits) and len(set(table.tolist())) > 2
    assert kernels_m7.choose(step, 0, rounding=g.rounding).reason == ""
    assert "addtab" in kernels_m7.step_function(step, 0, kernels_m7.choose(step, 0),
                                                g.rounding)


def test_sub_weights_by_hand():
    """sub_weights: per unit of G = 32 / min(XB, WB) codes, weight lane pair q holds the weights
    of input lane pair q; the tail as it is; as many bytes as the row layout."""
    k = 21
    w = np.arange(2 * k).reshape(2, k) % 16
    lay = IntegerLayer(kind="dense", name="d", in_shape=(k,), out_shape=(2,), in_bits=8,
                       out_bits=8)
    lay.set_weights(w, 4)
    got = kernels_m7.sub_weights(lay).reshape(2, -1)
    assert got.shape == lay.weights.shape
    codes = unpack(got, 4, k)
    # 8-bit inputs: pairs (0, 2), (1, 3), (4, 6), (5, 7); a 4-bit word's pair s is nibbles
    # (s, s + 4): nibbles 0..7 hold inputs 0, 1, 4, 5, 2, 3, 6, 7
    order = [0, 1, 4, 5, 2, 3, 6, 7]
    want = np.concatenate([w[:, order], w[:, [8 + i for i in order]], w[:, 16:]], axis=1)
    np.testing.assert_array_equal(codes, want)
    lay.in_bits = 4  # inputs packed like the weights: the row layout itself
    np.testing.assert_array_equal(kernels_m7.sub_weights(lay), lay.weights.ravel())
    lay.in_bits = 2  # a 2-bit input word: pairs (s, s + 8) over 16 codes, two weight words
    codes = unpack(kernels_m7.sub_weights(lay).reshape(2, -1), 4, k)
    order = [0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15]
    np.testing.assert_array_equal(codes, np.concatenate([w[:, order], w[:, 16:]], axis=1))
    np.testing.assert_array_equal(pack(codes, 4), kernels_m7.sub_weights(lay).reshape(2, -1))
    lay.in_bits = 16
    with pytest.raises(ValueError, match="'d'.*16-bit inputs"):
        kernels_m7.sub_weights(lay)


# ------------------------------------------------------------ the rule over whole networks
POLICIES = [(8, 8), (4, 4), (2, 2), (8, 4), (4, 8), (2, 8)]


def _nets(which):
    import tf_keras as keras
    from tinyopt.front import models
    from tinyopt.studies.any_graph import mlperf_architecture
    if which == "seed_cnn":
        return models.seed_cnn()
    if which == "mobilenet_v2_035_32":
        keras.utils.set_random_seed(0)
        return keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None,
                                              classes=10)
    return mlperf_architecture(which, classes=10, seed=0)


def _scratch_by_step(model, w, a):
    from tinyopt.mixed import memory
    from tinyopt.mixed.policy import Policy
    steps, mem, _, _ = memory.device_plan(model, Policy.uniform(model, w, a, "PL"))
    return {s.name: (s.layer.kind, steps_mod.scratch_bytes(s), s.scratch_bytes)
            for s in steps}, mem.arena_bytes


NETS = ["seed_cnn"] + [pytest.param(n, marks=pytest.mark.slow) for n in (
    "ic_resnet8", "kws_dscnn", "vww_mobilenet", "ad_fcae", "mobilenet_v2_035_32")]


@pytest.mark.parametrize("net", NETS)
def test_scratch_never_grows_when_bits_drop(net, monkeypatch):
    """For every compute step, its kernel's scratch at w4a4, w2a2, w8a4, w4a8, w2a8 is at most
    its scratch at w8a8 (the kernel rule, steps.sub_kernel: checked with every kernel where it
    fits, the planned bytes the rule's). With the planner's free-scratch rule (the default) a
    step may take a faster kernel at lower bits where its scratch became free, so the property
    is then per layer: its scratch at most the same layer's 8-bit kernel's under the same choice
    (steps.eight_bit_scratch). The one exception, tn_m7_subfc's UNP buffer
    (steps.sub_fc_unpack_bytes), is the planner's: the arena with it equals the arena without.
    (The whole arena is not monotone: the planner is a heuristic; VWW at w8a4 plans 37,008 B
    against 37,000 B at w8a8.)"""
    model = _nets(net)
    from tinyopt.mixed import memory
    from tinyopt.mixed.policy import Policy
    for w, a in POLICIES[1:]:
        policy = Policy.uniform(model, w, a, "PL")
        steps, plan, _, _ = memory.device_plan(model, policy)
        unp = 0  # tn_m7_subfc's UNP buffer: more scratch, taken only where the arena keeps its size
        for s in steps:
            if s.layer.kind in ("conv2d", "pointwise", "depthwise", "dense") and min(
                    s.layer.weight_bits, s.layer.in_bits) < 8:
                bound = steps_mod.eight_bit_scratch(s)
                if s.scratch_bytes > bound and s.scratch_bytes == steps_mod.sub_fc_unpack_bytes(s):
                    unp += 1
                    continue
                assert s.scratch_bytes <= bound, (net, w, a, s.name)
        if unp:
            with monkeypatch.context() as m:
                m.setattr(steps_mod, "SUBFC_UNPACK_BYTES", 0)
                assert memory.device_plan(model, policy)[1].arena_bytes == plan.arena_bytes
    monkeypatch.setattr(steps_mod, "SCRATCH_ONLY_WHERE_FREE", False)
    ref, _ = _scratch_by_step(model, 8, 8)
    compute = 0
    for w, a in POLICIES[1:]:
        got, _ = _scratch_by_step(model, w, a)
        unp_bytes = {s.name: steps_mod.sub_fc_unpack_bytes(s) for s in memory.device_plan(
            model, Policy.uniform(model, w, a, "PL"))[0] if steps_mod.sub_fc_fits(s)}
        assert got.keys() == ref.keys(), (w, a)
        for name, (kind, scratch, planned) in got.items():
            assert scratch == planned, name
            if kind in ("conv2d", "pointwise", "depthwise", "dense"):
                compute += 1
                if scratch > ref[name][1] and scratch == unp_bytes.get(name):
                    continue  # UNP: the planner's to give (above), not the kernel rule's
                assert scratch <= ref[name][1], (net, w, a, name, scratch, ref[name][1])
    assert compute >= 2 * (len(POLICIES) - 1)


def test_seed_cnn_sub_byte_arena_below_int8():
    """The seed CNN's dense layer of sub-byte weights or inputs needs no scratch: every uniform
    sub-byte policy's arena is below w8a8's (the 2-bit activations one used to be 4,643 B
    against 3,004 B)."""
    model = _nets("seed_cnn")
    _, top = _scratch_by_step(model, 8, 8)
    for w, a in POLICIES[1:] + [(8, 2), (4, 2)]:
        got, arena = _scratch_by_step(model, w, a)
        assert got["fc"][1] == 0 and arena < top, (w, a, arena, top)


@pytest.mark.parametrize("fraction", [0.75, 0.6])
def test_seed_cnn_memory_driven_fits_below_int8(fraction):
    from tinyopt.mixed import memory, search
    from tinyopt.mixed.policy import Policy
    model = _nets("seed_cnn")
    p8 = Policy.uniform(model, 8, 8, "PL")
    flash, ram = (int(v * fraction) for v in (memory.flash_bytes(model, p8),
                                              memory.peak_ram_bytes(model, p8)))
    p = search.memory_driven(model, flash, ram, "PL")
    assert memory.flash_bytes(model, p) <= flash and memory.peak_ram_bytes(model, p) <= ram
    assert min(p.act_bits) < 8 and min(p.weight_bits) < 8


@pytest.mark.slow  # an MLPerf architecture
def test_budget_error_minimum_is_the_smallest_uniform_arena():
    """ad_fcae at 75 % of w8a8's RAM is infeasible for a reason inherent to the model (its
    8-bit 640-value input and an output beside it): the BudgetError's minimum is the smallest
    arena of every uniform policy of the allowed bits."""
    from tinyopt.mixed import memory, search
    from tinyopt.mixed.policy import Policy
    model = _nets("ad_fcae")
    p8 = Policy.uniform(model, 8, 8, "PL")
    with pytest.raises(search.BudgetError) as err:
        search.memory_driven(model, memory.flash_bytes(model, p8),
                             int(memory.peak_ram_bytes(model, p8) * 0.75), "PL")
    arenas = [memory.peak_ram_bytes(model, Policy.uniform(model, w, a, "PL"))
              for w in (8, 4, 2) for a in (8, 4, 2)]
    assert err.value.min_ram == min(arenas)
    assert f"{min(arenas):,} B" in str(err.value)
    assert err.value.min_ram >= 640  # the 8-bit input alone


@pytest.mark.slow  # PTQ, a Cortex-M7 build and a QEMU run
def test_seed_cnn_sub_byte_under_qemu(qemu, tmp_path):
    """The seed CNN at w4a4 (tn_m7_sub on the conv + pool and the dense layer) bit-exact on the
    host and under QEMU, the arena the memory model predicts; instructions per MAC of the dense
    layer beside the 8-bit one's (tn_m7_fc)."""
    import tf_keras as keras
    from tinyopt.mixed import lower, memory, ptq
    from tinyopt.mixed.policy import Policy
    model = _nets("seed_cnn")
    x = np.random.default_rng(0).uniform(0, 1, (16, 28, 28, 1)).astype(np.float32)
    rates = {}
    for w, a in ((4, 4), (2, 2), (8, 8)):
        p = Policy.uniform(model, w, a, "PL")
        keras.utils.set_random_seed(0)
        g = lower.convert(ptq.quantize_mixed(model, p, x))
        codes = np.round(x * 255).astype(np.int64)
        r = mcu.deploy(g, codes, tmp_path, name=f"seed_w{w}a{a}", host_images=8, mcu_images=2)
        s = r["summary"]
        assert s["host_mismatching_values"] == 0 and s["mcu_mismatching_values"] == 0
        assert s["arena_bytes"] == memory.peak_ram_bytes(model, p)
        fc = r["steps"].iloc[-1]  # the dense layer
        rates[(w, a)] = fc["insns_per_image"] / fc["macs"]
        if (w, a) != (8, 8):
            assert r["export"].kernels[-1] == "sub"
    print("dense instructions per MAC:", rates)
    assert rates[(4, 4)] < 3 and rates[(2, 2)] < 3


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
@pytest.mark.parametrize("raw", [None, 1, 0])
def test_subconv_under_qemu(qemu, tmp_path, monkeypatch, raw, roomy):
    """tn_m7_subconv's assembly loops (4-bit weights at RAW 2, 1, 0; 2-bit weights) bit-exact
    under QEMU: every chain at the planned RAW 2, the chains that hold every forced loop's
    form at RAW 1 and 0."""
    if raw is not None:
        monkeypatch.setattr(kernels_m7.subconv, "subconv_raw", lambda layer: raw)
    # A forced RAW changes only the 4-bit steps' tn_sc_block loop (which sees unpacked lanes:
    # the input width does not reach it) and the row-3 correction after it (tn_sc_pixels',
    # tn_sc_pool2's); 2-bit steps and the tn_m7_subfc16 head are the unforced build's.
    # sc_floor's 4-bit steps (NU 16 and 72: the loop without a remainder, then tn_sc_put4) are
    # sc_double's l4 and l0 / l2 there, so RAW 1 and 0 build sc_double and sc_pool (the pool's
    # own correction) only.
    names = list(SUBCONV_CHAINS) if raw is None else ["sc_double", "sc_pool"]
    graphs, xs = {}, {}
    for name in names:
        rounding, signed, zin, shape, layers = SUBCONV_CHAINS[name]
        graphs[name] = chain(70 + len(name), layers, shape, 8, signed, zin, rounding)
        lo = -128 if signed else 0
        xs[name] = np.random.default_rng(5).integers(lo, lo + 256, (4, *shape))
    for e in check_many(graphs, xs, tmp_path, host_images=4, mcu_images=2).values():
        _check_subconv_raw(e, raw)


# tn_m7_subfc (steps.sub_fc_fits): dense layers of 4 / 2-bit weights over 8, 4 and 2-bit inputs
# read a word at a time (K XB a multiple of 32), unsigned with z_x = 0 and z_x != 0 (SSUB16),
# signed (the sign bits flipped, EOR), PL and PC, FB and ICN, N a multiple of four (four 4 / 2-bit
# outputs per store) and not, the last one or two rows in a pair block (N % 4 = 1, 2; 2-bit
# weights over 8-bit inputs: its last word half used), 2 / 4 / 8-bit outputs; inputs that end
# inside a word (K = 10, 6 bytes; 13 nibbles, 6 crumbs: the last word completed with z_x).
SUBFC_CHAINS = {  # name: (rounding, input signed, input zero point, input bits, shape, layers)
    "fc_floor_u8": ("floor", False, 0, 8, (64,), [
        _dense(24, 64, 4, 4, per_channel=True, icn=True),
        _dense(16, 24, 2, 2),
        _dense(10, 16, 4, 8, per_channel=True),
        _dense(3, 10, 4, 32, out_signed=True, requantize=False)]),
    "fc_double_s8": ("tflite_double", True, -3, 8, (36,), [
        _dense(32, 36, 2, 4, out_signed=True, out_zero_point=1, per_channel=True),
        _dense(16, 32, 4, 2, out_signed=True),
        _dense(6, 16, 2, 8, per_channel=True, icn=True),
        _dense(4, 6, 4, 32, out_signed=True, requantize=False)]),
    "fc_pair_u8": ("floor", False, 3, 8, (36,), [
        _dense(7, 36, 4, 4, per_channel=True),
        _dense(5, 7, 4, 8)]),
    "fc_pair4_u8": ("tflite_single", False, 0, 8, (40,), [
        _dense(10, 40, 4, 4, per_channel=True),
        _dense(6, 10, 2, 8)]),
    "fc_pair2_u8": ("floor", False, 3, 8, (36,), [
        _dense(6, 36, 2, 2, per_channel=True),
        _dense(5, 6, 4, 8)]),
    "fc_single_u4": ("tflite_single", False, 5, 4, (40,), [
        _dense(13, 40, 4, 8, per_channel=True),
        _dense(8, 13, 2, 4, out_zero_point=2),
        _dense(5, 8, 4, 8)]),
}


def _subfc_graph(name):
    rounding, signed, zin, bits, shape, layers = SUBFC_CHAINS[name]
    return chain(90 + len(name), layers, shape, bits, signed, zin, rounding)


def _force_subfc_plan(monkeypatch, plan):
    """subfc_plan forced: "raw1" / "raw0" (RAW 1 / 0, one chunk), "chunks" (RAW 2 in chunks of
    1, 2, 3 or 5 input words: every remainder of the four-word loop), None: as planned."""
    if plan is None:
        return
    monkeypatch.setattr(kernels_m7.subconv, "subfc_plan",
                        lambda layer: _forced_subfc_plan(layer, plan))


def _forced_subfc_plan(layer, plan):
    """subfc_plan's (RAW, KC) for ``layer`` under :func:`_force_subfc_plan`'s ``plan`` (2-bit
    weights: as planned)."""
    raw, kc = kernels_m7.subfc_plan(layer)  # the re-exported binding: the real plan
    words = -(-int(layer.in_shape[0]) * int(layer.in_bits) // 32)
    if plan is None or int(layer.weight_bits) != 4:
        return raw, kc
    if plan == "chunks":
        return 2, (1, 2, 3, 5)[words % 4]
    return int(plan[-1]), words


SUBFC_PLANS = [None, "raw1", "raw0", "chunks"]


def _subfc_case(mp, name, plan):
    """SUBFC_CHAINS[name] on tn_m7_subfc (not tn_m7_subfc16), its plan forced to ``plan``."""
    _force_subfc_plan(mp, plan)
    mp.setattr(kernels_m7.subconv, "subfc16_scale", lambda layer: 0)  # tn_m7_subfc
    return _subfc_graph(name)


@pytest.mark.parametrize("plan", SUBFC_PLANS)
@pytest.mark.parametrize("name", sorted(SUBFC_CHAINS))
def test_subfc_host_bitexact(tmp_path, monkeypatch, host_batch, name, plan):
    """Every dense step whose input fills whole words takes tn_m7_subfc, with no scratch, and
    the C equals the simulator; RAW forced down to 1 and 0, and RAW 2 in short chunks, too."""
    e = host_check(_subfc_case(monkeypatch, name, plan), tmp_path, batch=host_batch)
    fits = [steps_mod.sub_fc_fits(s) for s in e.steps]
    assert all(fits), fits
    for k, s in zip(e.kernels, e.steps):
        assert k == "sub" and s.scratch_bytes == 0, (s.name, k)
    if plan is None:
        raws = {kernels_m7.subfc_plan(s.layer)[0] for s, f in zip(e.steps, fits)
                if f and s.layer.weight_bits == 4}
        assert raws == {2}, raws
    _check_subfc_plan(e, plan)


def _check_subfc_plan(e, plan):
    """What the C was specialised to: tn_m7_subfc on every step (not tn_m7_subfc16, which these
    small layers take unforced) with the forced (RAW, KC) on every 4-bit one; every forced plan
    differs from the planned one on some step. Without this the forced runs would pass
    unforced too (every plan is exact), so a patch that stopped reaching the C would go
    unseen."""
    calls = _emitted_calls(e, "tn_m7_subfc")
    assert sorted(calls) == list(range(len(e.steps))), (sorted(calls), e.kernels)
    got = [(calls[k]["RAW"], calls[k]["KC"]) for k in range(len(e.steps))]
    planned = [kernels_m7.subfc_plan(s.layer) for s in e.steps]
    want = [_forced_subfc_plan(s.layer, plan) for s in e.steps]
    assert got == want, (got, want)
    assert (got == planned) == (plan is None), (got, planned)


def test_sub_fc_fits_bounds():
    """sub_fc_fits: 2 / 4-bit weights, no fused ADD; an input ending inside a word only with
    z_x a code (its last word completed with z_x); 2-bit weights only while
    255 max |x'| K < 2^31."""
    g = _subfc_graph("fc_floor_u8")
    st = steps_mod.memory_plan(g)[0]
    assert [steps_mod.sub_fc_fits(s) for s in st] == [True, True, True, True]
    for k, fit in ((16, True), (12, False)):  # 4-bit inputs, z_x = 20: not a code
        g = chain(7, [_dense(4, k, 4, 8)], (k,), 4, False, 20)
        assert steps_mod.sub_fc_fits(steps_mod.memory_plan(g)[0][0]) == fit, k
    g = chain(7, [_dense(4, 64, 8, 8)], (64,), 4, False, 0)  # 8-bit weights
    assert not steps_mod.sub_fc_fits(steps_mod.memory_plan(g)[0][0])
    big = chain(6, [_dense(4, 40000, 2, 8)], (40000,), 8, True, -128)
    assert not steps_mod.sub_fc_fits(steps_mod.memory_plan(big)[0][0])  # 255 * 255 * 40000
    big4 = chain(6, [_dense(4, 40000, 4, 8)], (40000,), 8, True, -128)
    assert steps_mod.sub_fc_fits(steps_mod.memory_plan(big4)[0][0])


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
@pytest.mark.parametrize("plan", SUBFC_PLANS + ["ldr"])
def test_subfc_under_qemu(qemu, tmp_path, monkeypatch, plan):
    """tn_m7_subfc's assembly loops (every input width, signed / offset lanes, 4-bit weights at
    RAW 2, 1, 0 and in chunks; 2-bit weights) bit-exact under QEMU; "ldr": the build that loads
    the weights word by word (as for weights off a word boundary) instead of LDRD."""
    if plan == "ldr":
        monkeypatch.setattr(mcu, "MCU_CFLAGS", (*mcu.MCU_CFLAGS, "-DTN_SF_NO_LDRD"))
    _force_subfc_plan(monkeypatch, None if plan == "ldr" else plan)
    monkeypatch.setattr(kernels_m7.subconv, "subfc16_scale", lambda layer: 0)  # tn_m7_subfc
    graphs = {name: _subfc_graph(name) for name in SUBFC_CHAINS}
    xs = {}
    for name, g in graphs.items():
        lo = -(1 << (g.input_bits - 1)) if g.input_signed else 0
        xs[name] = np.random.default_rng(5).integers(lo, lo + (1 << g.input_bits),
                                                     (4, *g.input_shape))
    exports = check_many(graphs, xs, tmp_path, host_images=4, mcu_images=2)  # one program
    for e in exports.values():
        _check_subfc_plan(e, None if plan == "ldr" else plan)

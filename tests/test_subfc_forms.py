"""tn_m7_subfc's forms added for issue 29's dense layers (c/tn_m7_subfc.h): two blocks of four
rows at a time (TWIN: 8-bit inputs with an offset, 4-bit weights at RAW 2) equal the simulator
value for value on the host (its C twin of the loop) and under QEMU (the assembly): unsigned and
signed inputs, z_x != 0, inputs ending inside a word, N leaving a block of four, a padded one
and a pair block after the twins, chunks of every loop remainder, a second block out of an LDR
offset's reach (blocks of four, exact too)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import tinyopt  # noqa: F401  (prepares TensorFlow before tf_keras)
from tinyopt.deploy import kernels_m7, mcu
from tinyopt.integer import steps as steps_mod

from tests._qemu_many import host_batch_fixture
from tests.test_kernels_m7 import chain, host_check
from tests.test_kernels_m7_sub import _dense
from tests.test_build_levels import FORM_FPUS, FORM_LEVELS

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")

# name: (rounding, input signed, input zero point, input bits, shape, layers). Each chain's
# first two layers take 8-bit inputs with z_x != 0 and 4-bit weights (TWIN); N % 8 leaves 5
# (a block of four and a pair block of one), 0, 3 (a padded block of four), 2 (a pair block);
# K: tails of 1 code and of 3, none; K = 300 (block b + 1 600 bytes on); chunks: _chunks.
TWIN_CHAINS = {
    "tw_floor_u8": ("floor", False, 5, 8, (45,), [
        _dense(21, 45, 4, 8, per_channel=True, out_zero_point=3),  # tail of 1, N % 8 = 5
        _dense(16, 21, 4, 4, icn=True),                            # z_x = 3, tail of 1
        _dense(12, 16, 4, 32, out_signed=True, requantize=False)]),
    "tw_double_s8": ("tflite_double", True, -7, 8, (56,), [
        _dense(19, 56, 4, 8, out_signed=True, out_zero_point=-3, per_channel=True),  # N % 8 = 3
        _dense(10, 19, 4, 4, out_signed=True),                     # z_x = -3, N % 8 = 2, tail
        _dense(9, 10, 4, 32, out_signed=True, requantize=False)]),
    "tw_single_u8": ("tflite_single", False, 200, 8, (300,), [
        _dense(24, 300, 4, 8, per_channel=True, icn=True, out_zero_point=9),  # 75 words
        _dense(8, 24, 4, 8, out_zero_point=250),
        _dense(6, 8, 4, 32, out_signed=True, requantize=False)]),
}


def _graph(name):
    rounding, signed, zin, bits, shape, layers = TWIN_CHAINS[name]
    return chain(210 + len(name), layers, shape, bits, signed, zin, rounding)


def _no_subfc16(monkeypatch):
    """Small layers on tn_m7_subfc, not tn_m7_subfc16, and 8-bit inputs with an offset on TWIN,
    not FOLD (the blocks of eight over the raw codes, tests/test_subfc_fold.py), which would
    take the layers of 64 inputs and more."""
    monkeypatch.setattr(kernels_m7.subconv, "subfc16_scale", lambda layer: 0)
    monkeypatch.setattr(kernels_m7.subconv, "subfc_fold", lambda layer: (0, 0))


def _chunks(monkeypatch):
    """RAW 2 in chunks of 1, 2, 3 or 5 input words (every remainder of the loop: n % 4)."""
    real = kernels_m7.subfc_plan

    def forced(layer):
        raw, kc = real(layer)
        words = -(-int(layer.in_shape[0]) * int(layer.in_bits) // 32)
        return (2, (1, 2, 3, 5)[words % 4]) if raw == 2 else (raw, kc)
    monkeypatch.setattr(kernels_m7.subconv, "subfc_plan", forced)


def _twin(layer) -> bool:
    """Does tn_m7_subfc run two blocks of four at a time on this layer (tn_sf_twin_ok, for
    word-aligned weights, and at least eight rows in blocks of four)? Mirrors the C."""
    xb, k, n = int(layer.in_bits), int(layer.in_shape[0]), int(layer.out_channels)
    raw, _ = kernels_m7.subfc_plan(layer)
    nq = n & ~3 if n % 4 in (1, 2) else n
    words = -(-k * xb // 32)
    return (xb == 8 and int(layer.weight_bits) == 4 and raw == 2
            and not kernels_m7.subfc_oct(layer) and nq >= 8 and 8 * words - 4 < 4096)


def test_twin_chains_cover():
    """Every 4-bit-weight layer of 8-bit inputs above takes TWIN, over unsigned and signed
    inputs, z_x != 0, tails and none, N % 8 in {5, 0, 3, 2} and the three roundings."""
    rests, signed, tails = set(), set(), set()
    for name in TWIN_CHAINS:
        for layer in _graph(name).layers[:2]:
            assert _twin(layer) and int(layer.in_zero_point) != 0, (name, layer.name)
            rests.add(int(layer.out_channels) % 8)
            signed.add(bool(layer.in_signed))
            tails.add(int(layer.in_shape[0]) % 4 != 0)
    assert rests == {5, 0, 3, 2} and signed == {True, False} and tails == {True, False}
    assert {TWIN_CHAINS[n][0] for n in TWIN_CHAINS} == {"floor", "tflite_single", "tflite_double"}


def _twin_case(mp, name, chunks):
    """TWIN_CHAINS[name] on tn_m7_subfc, over the whole input or in chunks."""
    _no_subfc16(mp)
    if chunks:
        _chunks(mp)
    return _graph(name)


# This module's parametrized host checks in one host program (tests._qemu_many.HostBatch): each
# case's graph and patches as its test sets them up.
host_batch = host_batch_fixture({"test_twin_host_bitexact": _twin_case})


@pytest.mark.parametrize("chunks", [False, True])
@pytest.mark.parametrize("name", sorted(TWIN_CHAINS))
def test_twin_host_bitexact(tmp_path, monkeypatch, host_batch, name, chunks):
    """Every dense step takes tn_m7_subfc (no scratch) and the C, whose host build runs TWIN's
    C loop, equals the simulator on 40 inputs, over the whole input and in chunks."""
    e = host_check(_twin_case(monkeypatch, name, chunks), tmp_path, batch=host_batch)
    for k, s in zip(e.kernels, e.steps):
        assert k == "sub" and s.scratch_bytes == 0 and steps_mod.sub_fc_fits(s), (s.name, k)
    src = (tmp_path / "src" / "model.c").read_text()
    assert src.count("tn_m7_subfc(") == len(e.steps), src


def _far_graph():
    """K = 2052 8-bit inputs (513 words): block b + 1 is 4104 bytes on, beyond an LDR's offset,
    so the layer keeps blocks of four one at a time."""
    return chain(7, [_dense(8, 2052, 4, 8, per_channel=True), _dense(5, 8, 4, 32, out_signed=True,
                                                                     requantize=False)],
                 (2052,), 8, False, 17, "floor")


def test_twin_out_of_reach_host(tmp_path, monkeypatch):
    """A second block out of an LDR offset's reach: blocks of four, exact."""
    _no_subfc16(monkeypatch)
    g = _far_graph()
    assert not _twin(g.layers[0]) and int(g.layers[0].out_channels) == 8
    host_check(g, tmp_path)


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
@pytest.mark.parametrize("plan", ["whole", "chunks"])
def test_twin_under_qemu(qemu, tmp_path, monkeypatch, plan):
    """TWIN's assembly loop (UXTAB16 / SXTAB16 with the offset read from the stack, block
    b + 1 at an LDR offset; in chunks, every remainder n % 4) bit-exact under QEMU, and the
    layer out of reach (blocks of four) too."""
    _no_subfc16(monkeypatch)
    if plan == "chunks":
        _chunks(monkeypatch)
    graphs = {name: _graph(name) for name in TWIN_CHAINS}
    if plan == "whole":
        graphs["far"] = _far_graph()
    insns = {}
    for name, g in graphs.items():
        lo = -(1 << (g.input_bits - 1)) if g.input_signed else 0
        x = np.random.default_rng(5).integers(lo, lo + (1 << g.input_bits), (4, *g.input_shape))
        r = mcu.deploy(g, x, tmp_path, name=f"{name}_{plan}", host_images=4, mcu_images=3)
        s = r["summary"]
        assert s["host_mismatching_values"] == 0 and s["mcu_mismatching_values"] == 0, name
        insns[name] = r["steps"]["insns_per_image"].tolist()
    if plan == "whole":  # the same build without TWIN: its first step costs more (TWIN runs)
        monkeypatch.setattr(mcu, "MCU_CFLAGS", (*mcu.MCU_CFLAGS, "-DTN_SF_NO_TWIN"))
        g = graphs["tw_single_u8"]
        x = np.random.default_rng(5).integers(0, 256, (4, *g.input_shape))
        r = mcu.deploy(g, x, tmp_path, name="no_twin", host_images=4, mcu_images=1)
        assert r["summary"]["mcu_mismatching_values"] == 0
        quads = r["steps"]["insns_per_image"].tolist()
        assert quads[0] > insns["tw_single_u8"][0] * 1.03 and quads[1] > insns["tw_single_u8"][1]


SOFT = ("arm-none-eabi-gcc", "-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=soft")
LEVELS = FORM_LEVELS


@pytest.fixture(scope="module")
def twin_exports(tmp_path_factory):
    """The TWIN chains (unsigned and signed inputs) on tn_m7_subfc, exported once."""
    from tinyopt.deploy import codegen
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kernels_m7.subconv, "subfc16_scale", lambda layer: 0)
        mp.setattr(kernels_m7.subconv, "subfc_fold", lambda layer: (0, 0))
        return [codegen.export_c(_graph(n), tmp_path_factory.mktemp(n), kernels="m7")
                for n in ("tw_floor_u8", "tw_double_s8")]


@pytest.mark.slow  # two compiles per level and float ABI
@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("fpu", FORM_FPUS)
def test_twin_compiles_at_every_level(twin_exports, tmp_path, level, fpu):
    """TWIN's asm (fourteen registers, two memory operands and two immediate offsets) compiles
    at every GCC level, soft float and with an FPU (-mfloat-abi=hard -mfpu=fpv5-d16, where GCC
    allocates the core registers differently), -Wall -Wextra -Werror."""
    from tests.test_build_levels import ARM, _arm_gcc, _compile
    _arm_gcc()
    for export in twin_exports:
        _compile(ARM if fpu else SOFT, export, level, tmp_path)


def _clamped_logits():
    """Dense 40 -> 21 of 4-bit weights over 8-bit inputs with raw int32 outputs (blocks of eight,
    a block of four, a pair block of one row), clamped to [act_min, act_max] set at the 20th and
    80th percentiles of its unclamped outputs, so that both bounds bite."""
    from tinyopt.deploy import codegen
    g = chain(12, [_dense(21, 40, 4, 32, out_signed=True, requantize=False, per_channel=True)],
              (40,), 8, False, 0, "floor")
    x = np.random.default_rng(5).integers(0, 256, (40, 40))
    y = codegen.reference_output(g, x)
    g.layers[0].act_min, g.layers[0].act_max = (int(v) for v in np.percentile(y, [20, 80]))
    return g


def test_int32_outputs_clamped_host(tmp_path, monkeypatch):
    """tn_sf_out4's raw int32 outputs (one store each, the clamp in 32 bits) equal the simulator
    where act_min / act_max clamp some outputs from below and some from above."""
    from tinyopt.deploy import codegen
    _no_subfc16(monkeypatch)
    g = _clamped_logits()
    x = np.random.default_rng(5).integers(0, 256, (40, 40))
    y = codegen.reference_output(g, x)
    lo, hi = g.layers[0].out_range
    assert (y == lo).sum() > 20 and (y == hi).sum() > 20 and ((y > lo) & (y < hi)).any()
    e = host_check(g, tmp_path)
    assert "tn_m7_subfc(" in (tmp_path / "src" / "model.c").read_text() and e.kernels == ["sub"]


@pytest.mark.slow  # a Cortex-M7 build and a QEMU run
def test_int32_outputs_clamped_under_qemu(qemu, tmp_path, monkeypatch):
    """The same layer bit-exact under QEMU (the stores through TN_MEMCPY: one STR each)."""
    _no_subfc16(monkeypatch)
    g = _clamped_logits()
    x = np.random.default_rng(5).integers(0, 256, (4, 40))
    r = mcu.deploy(g, x, tmp_path, name="logits", host_images=4, mcu_images=3)
    s = r["summary"]
    assert s["host_mismatching_values"] == 0 and s["mcu_mismatching_values"] == 0

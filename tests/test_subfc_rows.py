"""tn_m7_subfc's lean blocks of eight (LEAN, kernels_m7.subfc_lean; c/tn_m7_subfc.h,
tn_sl_block): sums started at -z_w sum x' (+ 8 sum x' for rows 3 and 7; with FOLD, 8-bit codes
with an offset, those rows through FOLD's window and F_r per row), the LDRD / LDR loops in one
asm statement, the floor epilogues to 4 / 2-bit codes in asm (per-channel multipliers, or the
layer's one by SMMLA; USAT / SSAT, BFI packing) and the raw int32 one (LDRD / STRD) equal the
simulator value for value on the host and under QEMU: 4 / 2-bit weights (2-bit: sums at 4^r
brought to 16^(r % 4)) over 8 / 4 / 2-bit inputs, signed and unsigned, every loop remainder,
outputs that take tn_sf_out4 on the lean sums (8-bit codes, clamped int32 logits), no weight
zero point (HASZW = 0), rows left after the blocks of eight; the bound is the one that
matters."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import tinyopt  # noqa: F401  (prepares TensorFlow before tf_keras)
from tinyopt.deploy import codegen, kernels_m7, mcu
from tinyopt.integer import steps as steps_mod

from tests.test_build_levels import FORM_FPUS
from tests.test_kernels_m7 import chain, host_check
from tests.test_kernels_m7_sub import _dense

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")

# name: (input shape, input zero point, layers, lean): floor rounding, unsigned 8-bit inputs;
# z_x != 0 and K >= 64: the first layer takes FOLD (kernels_m7.subfc_fold) lean
LEAN_CHAINS = {
    "lean_a": ((64,), 100, [
        _dense(24, 64, 4, 4, icn=True),                    # FOLD, 16 words: USAT 4
        _dense(24, 24, 4, 4, out_signed=True,
               out_zero_point=-8),                         # 3 words, UNP; one M0, z_out: SMMLA
        _dense(16, 24, 4, 2, out_signed=True),             # signed 4-bit (EOR), one M0: SSAT 2
        _dense(20, 16, 4, 8, out_signed=True),             # signed 2-bit, z_x 0: not lean
        _dense(16, 20, 4, 4, icn=True, out_signed=True),   # signed 8-bit, 5 words: SSAT 4
        _dense(24, 16, 4, 8),                              # signed 4-bit, z_x 0: not lean
        _dense(16, 24, 2, 4, icn=True),                    # 2-bit weights, 8-bit in, 6 words
        _dense(16, 16, 2, 2),                              # 2-bit weights, 4-bit in, 2 words
        _dense(16, 16, 2, 8),                              # 2-bit weights and in, 1 word
        _dense(13, 16, 4, 32, out_signed=True,
               requantize=False)],                         # 4 words: raw int32, 13 rows
        [1, 2, 1, 0, 1, 0, 1, 1, 1, 1]),
    "lean_b": ((32,), 0, [
        _dense(32, 32, 4, 2, icn=True),                    # 8 words (NG % 4 = 0): USAT 2
        _dense(32, 32, 4, 2),                              # UNP, 2-bit in (two LDR under QEMU)
        _dense(16, 32, 4, 8),                              # 2-bit in, 2 words (a pass of two)
        _dense(21, 16, 4, 32, out_signed=True,
               requantize=False)],                         # 4 words: clamped int32
        [1, 2, 1, 1]),
    # LEAN 2 (UNP, kernels_m7.subfc_unpack: 2 / 4-bit inputs, three blocks of eight or more):
    # the four loops (4 / 2-bit weights over 4 / 2-bit lane pairs), signed and unsigned codes
    # unpacked, every NG % 4 of 4-bit inputs (TN_SU_LOOPN's entries), NG % 2 of 2-bit ones
    "lean_u": ((64,), 0, [
        _dense(32, 64, 4, 4),                              # 8-bit in: lean, not UNP
        _dense(48, 32, 4, 2, out_signed=True,
               out_zero_point=-2),                         # 4-bit in, NG 4 (% 4 = 0)
        _dense(48, 48, 2, 4, out_signed=True,
               out_zero_point=-8),                         # signed 2-bit in, NG 3; 2-bit w
        _dense(40, 48, 4, 4),                              # signed 4-bit in, NG 6 (% 4 = 2)
        _dense(32, 40, 2, 2),                              # 4-bit in, NG 5 (% 4 = 1); 2-bit w
        _dense(56, 32, 4, 4, out_signed=True,
               out_zero_point=-8),                         # 2-bit in, NG 2
        _dense(24, 56, 4, 4),                              # signed 4-bit in, NG 7 (% 4 = 3)
        _dense(29, 24, 4, 32, out_signed=True,
               requantize=False)],                         # 4-bit in, NG 3: raw int32
        [1, 2, 2, 2, 2, 2, 2, 2]),
}


def _lean_graph(name):
    shape, zin, layers, _ = LEAN_CHAINS[name]
    g = chain(60 + len(name), layers, shape, 8, False, zin, "floor")
    if name in ("lean_a", "lean_u"):  # the logits without a weight zero point (HASZW = 0)
        g.layers[-1].weight_zero_point = np.zeros(1, np.int32)
    else:  # the logits clamped at their 20th and 80th percentiles: tn_sf_out4 on the lean sums
        x = np.random.default_rng(5).integers(0, 256, (40, *shape))
        y = codegen.reference_output(g, x)
        g.layers[-1].act_min, g.layers[-1].act_max = (int(v) for v in np.percentile(y, [20, 80]))
    return g


def _force(monkeypatch):
    monkeypatch.setattr(kernels_m7.subconv, "subfc16_scale", lambda layer: 0)
    # UNP's arena scratch wherever UNP applies, not only where it keeps the arena's size
    monkeypatch.setattr(steps_mod, "SCRATCH_ONLY_WHERE_FREE", False)


@pytest.fixture
def no_subfc16(monkeypatch):
    """These small layers on tn_m7_subfc, not tn_m7_subfc16's int16 lanes; UNP (LEAN 2) at
    every step it applies to (its scratch planned even where it grows the arena)."""
    _force(monkeypatch)


def _calls(src_dir):
    src = (src_dir / "model.c").read_text()
    return [line.split(", ") for line in src.splitlines() if "tn_m7_subfc(" in line]


@pytest.mark.parametrize("name", sorted(LEAN_CHAINS))
def test_lean_host_bitexact(tmp_path, no_subfc16, name):
    """The C equals the simulator on 40 inputs; the steps marked lean take LEAN = 1 or 2 (UNP;
    the others 0; lean_a's first with FOLD), and the lean layers' epilogues are the ones named:
    per-channel floor (FAST 2) with z_out = 0 and the whole code range (USAT / SSAT), the
    layer's one multiplier (SMMLA with z_out 2^k, z_out 0 and -8), raw int32 logits."""
    g = _lean_graph(name)
    host_check(g, tmp_path)
    calls = _calls(tmp_path / "src")
    assert [c[13] for c in calls] == [f"{v}u" for v in LEAN_CHAINS[name][3]], calls
    # FOLD (its window W3 in the call) exactly where z_x != 0: lean_a's first layer
    assert [c[12] != "0u" for c in calls] == [name == "lean_a" and i == 0
                                              for i in range(len(calls))], calls
    # per lean step: (REQ, NM > 1, FAST, OB, ZP) of its epilogue
    got = {(c[17], c[18] != "1u", c[21], c[20], c[26].rstrip(");")) for c in calls
           if c[13] in ("1u", "2u")}
    want = {"lean_a": {("1u", True, "2u", "4u", "0u"), ("1u", False, "2u", "4u", "-8"),
                       ("1u", False, "2u", "2u", "0u"), ("0u", False, "0u", "32u", "0u")},
            "lean_b": {("1u", True, "2u", "2u", "0u"), ("0u", False, "0u", "32u", "0u")},
            "lean_u": {("0u", False, "0u", "32u", "0u")}}
    assert want[name] <= got, got
    # the layer's one multiplier shifts right (N0 <= -1: tn_sc_fq's SMMLA form; lean_u is about
    # the loops, not the epilogues)
    assert name == "lean_u" or all(
        c[23].startswith("-") for c in calls if c[13] in ("1u", "2u") and c[18] == "1u"
        and c[17] == "1u" and c[20] in ("4u", "2u")), calls


def test_lean_chains_cover():
    """Between them the lean steps hold 4 and 2-bit weights over 8, 4 and 2-bit inputs, signed
    and unsigned, every NG % 4 (2-bit inputs: NG % 2, their passes of two words), unsigned and
    signed 4 and 2-bit codes, rows left after the blocks of eight (N % 8 = 5), no weight zero
    point and a clamp that bites."""
    seen, ng, ng2, rest, wx = set(), set(), set(), set(), set()
    for name in LEAN_CHAINS:
        g = _lean_graph(name)
        for layer, lean in zip(g.layers, LEAN_CHAINS[name][3]):
            if lean:
                xb, k = int(layer.in_bits), int(layer.in_shape[0])
                seen.add((xb, bool(layer.in_signed), int(layer.out_bits), bool(layer.out_signed)))
                (ng2 if xb == 2 else ng).add(k * xb // 32 % (2 if xb == 2 else 4))
                rest.add(int(layer.out_channels) % 8)
                wx.add((int(layer.weight_bits), xb))
    assert {(8, False), (8, True), (4, False), (4, True)} <= {s[:2] for s in seen}, seen
    assert {(4, False), (4, True), (2, False), (2, True)} <= {s[2:] for s in seen}, seen
    assert ng == {0, 1, 2, 3} and ng2 == {0, 1} and 5 in rest, (ng, ng2, rest)
    assert wx == {(w, x) for w in (4, 2) for x in (8, 4, 2)}, wx
    a, b = _lean_graph("lean_a").layers[-1], _lean_graph("lean_b").layers[-1]
    assert not np.any(a.weight_zero_point) and b.out_range != (-(1 << 31), (1 << 31) - 1)


def test_unp_covers_and_bounds():
    """lean_u's UNP steps hold the four loops (4 / 2-bit weights over 4 / 2-bit lane pairs),
    signed and unsigned codes of both widths, every NG % 4 of 4-bit inputs and NG % 2 of 2-bit
    ones. UNP stays off where the unpacked input would pass SUBFC_UNPACK_BYTES (2 K bytes: K =
    136 4-bit codes), below SUBFC_UNPACK_BLOCKS blocks of eight and over 8-bit inputs, and the
    step's arena scratch is 36 + 2 K bytes (tinyopt.integer.steps.sub_fc_unpack_size)."""
    seen, ng = set(), set()
    g = _lean_graph("lean_u")
    for layer, lean in zip(g.layers, LEAN_CHAINS["lean_u"][3]):
        assert kernels_m7.subconv.subfc_unpack(layer) == (lean == 2), layer.name
        if lean == 2:
            xb = int(layer.in_bits)
            seen.add((int(layer.weight_bits), xb, bool(layer.in_signed)))
            ng.add((xb, int(layer.in_shape[0]) * xb // 32 % (4 if xb == 4 else 2)))
    assert {(w, x) for w, x, _ in seen} == {(w, x) for w in (4, 2) for x in (4, 2)}, seen
    assert {(x, sg) for _, x, sg in seen} == {(x, sg) for x in (4, 2) for sg in (False, True)}
    assert ng == {(4, 0), (4, 1), (4, 2), (4, 3), (2, 0), (2, 1)}, ng
    one = [chain(9, [_dense(n, k, 4, 4)], (k,), xb, False, 0, "floor").layers[0]
           for n, k, xb in ((24, 136, 4), (24, 128, 4), (16, 128, 4), (24, 32, 8))]
    assert [kernels_m7.subconv.subfc_lean(lay) for lay in one] == [1, 1, 1, 1]
    assert [kernels_m7.subconv.subfc_unpack(lay) for lay in one] == [0, 1, 0, 0]
    assert [steps_mod.sub_fc_unpack_size(lay) for lay in one] == [0, 292, 0, 0]


def _unp_plan(g):
    """(LEAN 2 per step by the C export's call, scratch bytes per step, arena) of ``g``."""
    steps, mem = steps_mod.memory_plan(g)
    return ([kernels_m7.subconv.subfc_unpack(s.layer) == 1
             and s.scratch_bytes >= steps_mod.sub_fc_unpack_size(s.layer)
             for s in steps], [s.scratch_bytes for s in steps], mem.arena_bytes)


def test_unp_scratch_in_the_arena(tmp_path, no_subfc16):
    """UNP's buffer is the step's arena scratch, sized to the layer (36 + 2 K bytes; K = 256
    4-bit codes past the former 256-byte stack buffer with SUBFC_UNPACK_BYTES raised): every
    lean_u step of LEAN 2 has exactly that scratch and the others none, the C equals the
    simulator and the export's arena is the plan's (the memory model's figure)."""
    g = _lean_graph("lean_u")
    unp, scratch, arena = _unp_plan(g)
    lean2 = [v == 2 for v in LEAN_CHAINS["lean_u"][3]]
    assert unp == lean2 and scratch == [
        4 * (9 + int(lay.in_shape[0]) // 2) if u else 0 for lay, u in zip(g.layers, lean2)]
    e = host_check(g, tmp_path / "u")
    assert e.arena_bytes == arena
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(steps_mod, "SUBFC_UNPACK_BYTES", 1024)
        big = chain(11, [_dense(32, 256, 4, 4)], (256,), 4, False, 0, "floor")
        assert _unp_plan(big)[:2] == ([True], [548])
        host_check(big, tmp_path / "big")
        assert [c[13] for c in _calls(tmp_path / "big" / "src")] == ["2u"]


def test_unp_only_where_free(tmp_path, monkeypatch):
    """On a Keras-path graph (floor) UNP's scratch is planned only where it keeps the arena
    (steps.SCRATCH_ONLY_WHERE_FREE, the default): the arena equals the one without UNP, the steps
    given the buffer run LEAN 2 and the others the lean loop (LEAN 1, no scratch), and the C
    equals the simulator. lean_u's 64 8-bit inputs leave room for some UNP steps, not all."""
    monkeypatch.setattr(kernels_m7.subconv, "subfc16_scale", lambda layer: 0)
    g = _lean_graph("lean_u")
    unp, scratch, arena = _unp_plan(g)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(steps_mod, "SUBFC_UNPACK_BYTES", 0)
        assert _unp_plan(g)[2] == arena  # UNP costs no arena byte
    lean2 = [v == 2 for v in LEAN_CHAINS["lean_u"][3]]
    assert any(unp) and unp != lean2, unp
    host_check(g, tmp_path)
    want = [f"{v - (v == 2 and not u)}u" for v, u in zip(LEAN_CHAINS["lean_u"][3], unp)]
    assert [c[13] for c in _calls(tmp_path / "src")] == want
    assert [b > 0 for b in scratch] == unp


@pytest.mark.slow  # three Cortex-M7 builds and QEMU runs
def test_lean_under_qemu(qemu, tmp_path, no_subfc16, monkeypatch):
    """The chains bit-exact under QEMU: lean_a and lean_u as built (word-aligned weights: the
    LDRD loop; lean_u's UNP loops on the unpacked input), lean_b with -DTN_SF_NO_LDRD (the same
    statement jumping to its loop of two LDR, as for weights off a word boundary; one UNP
    step)."""
    for name, flags in (("lean_a", ()), ("lean_b", ("-DTN_SF_NO_LDRD",)), ("lean_u", ())):
        monkeypatch.setattr(mcu, "MCU_CFLAGS", (*mcu.MCU_CFLAGS, *flags))
        g = _lean_graph(name)
        x = np.random.default_rng(5).integers(0, 256, (4, *g.input_shape))
        r = mcu.deploy(g, x, tmp_path, name=name, host_images=4, mcu_images=3)
        s = r["summary"]
        assert s["host_mismatching_values"] == 0 and s["mcu_mismatching_values"] == 0, name
        if name == "lean_u":  # UNP's buffer in the arena, not the stack (it alone is 292 B)
            assert s["stack_model_run"] < 256 and s["scratch_arena_bytes"] > 0, s
        monkeypatch.undo()
        _force(monkeypatch)


def test_lean_bound(tmp_path, no_subfc16, monkeypatch):
    """The lean start adds -z_w sum x' to the scaled sums: its bound is 16^r sum_k |w_rk - z_w|
    max |x'|, not RAW 2's |w - 8|. Rows 3 and 7 of codes 7 .. 9 over 640 8-bit inputs keep RAW 2
    (sum |w - 8| < 2056) but with z_w = 3 not the lean bound: LEAN 0 and the C equals the
    simulator at the worst input (every x = 255); forced to LEAN 1 it does not."""
    g = chain(7, [_dense(8, 640, 4, 32, out_signed=True, requantize=False)], (640,), 8)
    lay = g.layers[0]
    rng = np.random.default_rng(2)
    w = rng.integers(0, 16, (8, 640))
    w[3] = w[7] = rng.integers(7, 10, 640)
    lay.set_weights(w, 4)
    lay.weight_zero_point = np.full(1, 3, np.int32)
    assert kernels_m7.subfc_plan(lay) == (2, 160) and kernels_m7.subfc_oct(lay) == 160
    assert kernels_m7.subconv.subfc_lean(lay) == 0
    x = np.full((2, 640), 255)
    x[1] = rng.integers(0, 256, 640)
    want = codegen.reference_output(g, x)

    def run(d):
        e = codegen.export_c(g, d / "src")
        return mcu.run_host(mcu.build_host(e, build_dir=d / "host"), e, x), _calls(d / "src")
    got, calls = run(tmp_path / "a")
    assert np.array_equal(got, want) and calls[0][13] == "0u"
    monkeypatch.setattr(kernels_m7.subconv, "subfc_lean", lambda layer: 1)
    got, calls = run(tmp_path / "b")
    assert calls[0][13] == "1u" and not np.array_equal(got[0], want[0])


@pytest.mark.slow  # compiles per level and float ABI
@pytest.mark.parametrize("fpu", FORM_FPUS)
def test_lean_compiles_at_every_level(tmp_path, no_subfc16, fpu):
    """The lean statements (fourteen registers and three memory operands; the epilogue's four
    sums a statement) compile at the form levels (every level with TINYOPT_ALL_LEVELS=1), soft
    float and with an FPU (-mfloat-abi=hard -mfpu=fpv5-d16: thirteen registers of eight sums in
    one statement found none there), -Wall -Wextra -Werror."""
    from tests.test_build_levels import ARM, FORM_LEVELS, _arm_gcc, _compile
    from tests.test_subfc_forms import SOFT
    _arm_gcc()
    for name in ("lean_a", "lean_u"):  # lean_u: the four UNP loops and the unpacking
        e = codegen.export_c(_lean_graph(name), tmp_path / name / "src", kernels="m7")
        for level in FORM_LEVELS:
            _compile(ARM if fpu else SOFT, e, level, tmp_path / name)

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

import functools

import shutil

import numpy as np
import pytest

import tinyopt  # noqa: F401  (prepares TensorFlow before tf_keras)
from tinyopt.deploy import codegen, kernels_m7, mcu
from tinyopt.integer import steps as steps_mod

from tests._qemu_many import check_many
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
    "lean_u": ((68,), 0, [
        _dense(32, 68, 4, 4),                              # 8-bit in, NG 17: lean, not UNP
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
    # LP (c/tn_m7_subfc.h, tn_sl_pieces): 8-bit inputs without an offset past one chunk (rows
    # 3 and 7 of code 0, _extreme_chain, so that RAW 2 / the 2-bit rows 7 need chunks:
    # OCT 64 words, 127 for signed codes), the lean blocks in pieces of OCT & ~7 words, rows 3
    # and 7 (2-bit: 7) folded at each piece's end; the first piece NG % 8 = 2, 7, 3, 4 (the
    # entries of TN_LP_LOOP8, eight words a pass; 0, 5, 6 and 1: the lean steps' TN_SL_LOOP8N),
    # unsigned and signed codes (UXTB16 / SXTB16), 4-bit weights and 2-bit ones (K <= 685),
    # per-channel USAT 8 and 2, the layer's one multiplier (SMMLA form)
    "lean_p": ((264,), 0, [
        _dense(540, 264, 4, 8, icn=True, out_signed=True),  # NG 66: pieces 2, 64
        _dense(268, 540, 4, 8),                            # signed, NG 135: 15, 120
        _dense(336, 268, 4, 8, icn=True),                  # NG 67: 3, 64
        _dense(16, 336, 2, 2, icn=True),                   # 2-bit weights, NG 84: 20, 64
        _dense(13, 16, 4, 32, out_signed=True,
               requantize=False)],                         # 1 word: clamped int32
        [0, 0, 0, 0, 1]),
}


def _extreme_chain(seed, layers, shape):
    """chain's graph with rows 3 and 7 of every block of eight of code 0 (4-bit: |w - 8| = 8),
    2-bit rows 7 of codes 0 and 1 (3 : 1; |w - 2| = 2, 1), so that K = 264 .. 540 8-bit inputs
    pass RAW 2's whole-input bound (4096 sum |w_3 - 8| max |x'| < 2^31) and the 2-bit rows 7's
    (16384 sum |w_7 - 2| max |x'|): lean_p's chunks."""
    rng = np.random.default_rng(seed)
    real = rng.integers

    def codes(lo, hi=None, size=None, **kw):  # the weights' draws (high = 2^b), else chain's
        got = real(lo, hi, size, **kw)
        if hi in (16, 4) and size is not None and len(np.shape(np.empty(size))) == 2:
            if hi == 16:  # rows 3, 7, 11 ...
                got[3::4] = 0
            else:  # rows 7, 15 ...: not constant (their channels' own multipliers stay usual)
                got[7::8] = np.asarray([0, 0, 0, 1])[real(0, 4, got[7::8].shape)]
        return got
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(np.random, "default_rng", lambda s: type("R", (), {
            "integers": staticmethod(codes),
            "__getattr__": lambda self, a: getattr(rng, a)})())
        return chain(seed, layers, shape, 8, False, 0, "floor")


# FAST 1 (a channel's n0 >= 0: the asm epilogue's left shift by USAT5(n0 + 1) before SMMUL):
# lean_a's FOLD step (USAT 4: TN_SL_RQ1, a row at a time) and its 2-bit weights (lean, USAT 4),
# lean_p's first step (LP, SSAT 8) and its 2-bit weights (LP, USAT 2), those three by pairs of
# rows (TN_SL_RQ12); the other per-channel lean steps FAST 2 (TN_SL_RQ2's pairs of rows)
FAST1 = {"lean_a": (0, 6), "lean_p": (0, 3), "lean_b": (), "lean_u": ()}


def _lean_graph(name):
    shape, zin, layers, _ = LEAN_CHAINS[name]
    g = (_extreme_chain(60 + len(name), layers, shape) if name == "lean_p"
         else chain(60 + len(name), layers, shape, 8, False, zin, "floor"))
    for i in FAST1[name]:  # every third channel n0 = 0 or 1, m0 small enough not to saturate
        lay = g.layers[i]
        n0, m0 = np.asarray(lay.n0).copy(), np.asarray(lay.m0).copy()
        n0[::3] = np.resize(np.asarray([0, 1]), len(n0[::3]))
        m0[::3] = (1 << 20) + 4099 * np.arange(len(m0[::3]))
        lay.n0, lay.m0 = n0.astype(np.int8), m0.astype(np.int32)
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
                       ("1u", True, "1u", "4u", "0u"),
                       ("1u", False, "2u", "2u", "0u"), ("0u", False, "0u", "32u", "0u")},
            "lean_b": {("1u", True, "2u", "2u", "0u"), ("0u", False, "0u", "32u", "0u")},
            "lean_p": {("0u", False, "0u", "32u", "0u")},
            "lean_u": {("0u", False, "0u", "32u", "0u")}}
    assert want[name] <= got, got
    # the layer's one multiplier shifts right (N0 <= -1: tn_sc_fq's SMMLA form; lean_u is about
    # the loops, not the epilogues)
    assert name in ("lean_u", "lean_p") or all(
        c[23].startswith("-") for c in calls if c[13] in ("1u", "2u") and c[18] == "1u"
        and c[17] == "1u" and c[20] in ("4u", "2u")), calls


def test_pieces_planned(tmp_path, no_subfc16):
    """lean_p's first four steps meet tn_sl_pieces' conditions (LP; the C takes them itself,
    the call shows none): LEAN 0, no FOLD, OCT (the chunk) >= 8 and < NG, no partial
    word, one weight zero point, the asm epilogues (floor, FAST 2: n0 <= -1, or FAST 1: the
    first and the 2-bit weights' steps, z_out 0 per channel or N0 <= -1 for the one
    multiplier) and K within the rows' whole-input bound (4-bit weights:
    K <= 2193, 2-bit: 685); the first pieces cover NG % 8 = 2, 7, 3, 4, the steps both input
    signs, both weight widths, both multiplier forms, signed and unsigned 8-bit codes and 2-bit
    ones."""
    g = _lean_graph("lean_p")
    codegen.export_c(g, tmp_path / "src")
    calls = _calls(tmp_path / "src")[:4]
    firsts, seen = [], set()
    for lay, c in zip(g.layers, calls):
        k, xb, wb = int(c[3].rstrip("u")), int(c[5].rstrip("u")), int(c[8].rstrip("u"))
        ng, oct_ = k * xb // 32, int(c[11].rstrip("u"))
        assert xb == 8 and k * xb % 32 == 0 and c[7] == "0u" and c[12] == "0u", c
        assert c[13] == "0u" and 8 <= oct_ < ng and c[14] == "1u", c
        assert k <= (2193 if wb == 4 else 685) and (wb == 2 or c[9] == "2u"), c
        assert c[17] == "1u" and c[19] == "0u" and c[26] == "0u", c
        assert c[21] == ("1u" if len(firsts) in FAST1["lean_p"] else "2u"), c  # FAST
        assert c[18] != "1u" or c[23].startswith("-"), c  # the one multiplier: N0 <= -1
        firsts.append((ng - oct_ // 8 * 8 * ((ng - 1) // (oct_ // 8 * 8))) % 8)
        seen.add((wb, c[6], c[18] != "1u", int(lay.out_bits), bool(lay.out_signed)))
    assert firsts == [2, 7, 3, 4], firsts
    lean8 = {int(lay.in_shape[0]) // 4 % 8 for name in ("lean_a", "lean_u")  # TN_SL_LOOP8N's
             for lay, lean in zip(_lean_graph(name).layers, LEAN_CHAINS[name][3])
             if lean and int(lay.in_bits) == 8}
    assert lean8 | set(firsts) == set(range(8)), lean8
    assert {s[0] for s in seen} == {4, 2} and {s[1] for s in seen} == {"0u", "1u"}, seen
    assert {s[2] for s in seen} == {True, False} and {s[3] for s in seen} == {8, 2}, seen
    assert {s[4] for s in seen} == {True, False}, seen


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
    """The chains bit-exact under QEMU: lean_a and lean_p (LP: the pieces) in one program
    (check_many) and lean_u as built (word-aligned weights: the LDRD loops; lean_u's UNP loops
    on the unpacked input), lean_b with -DTN_SF_NO_LDRD (the same statement jumping to its loop
    of two LDR, as for weights off a word boundary; one UNP step)."""
    graphs = {name: _lean_graph(name) for name in ("lean_a", "lean_p")}
    xs = {name: np.random.default_rng(5).integers(0, 256, (4, *g.input_shape))
          for name, g in graphs.items()}
    check_many(graphs, xs, tmp_path / "many", host_images=4, mcu_images=3)
    for name, flags in (("lean_b", ("-DTN_SF_NO_LDRD",)), ("lean_u", ())):
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


def _host_run(g, x, d):
    """``g`` exported into ``d`` and run on the host on ``x``: its outputs and its step calls."""
    e = codegen.export_c(g, d / "src")
    return mcu.run_host(mcu.build_host(e, build_dir=d / "host"), e, x), _calls(d / "src")


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

    run = functools.partial(_host_run, g, x)
    got, calls = run(tmp_path / "a")
    assert np.array_equal(got, want) and calls[0][13] == "0u"
    monkeypatch.setattr(kernels_m7.subconv, "subfc_lean", lambda layer: 1)
    got, calls = run(tmp_path / "b")
    assert calls[0][13] == "1u" and not np.array_equal(got[0], want[0])


def test_pieces_bound(tmp_path, no_subfc16, monkeypatch):
    """LP's pieces are RAW 2's chunks (OCT): rows 3 and 7 of code 0 (w - 8 = -8, z_w 0) over
    640 inputs of 255 reach -8 * 255 * 256 * 4096 > -2^31 in a piece of 64 words, so the C equals
    the simulator (LEAN's one chunk does not apply: OCT = 64 < NG = 160); pieces of 80 words
    (OCT forced) pass 2^31 and it does not (rows 3 and 7 off by 2^20: code 255, not 0).
    On the host (the C twin of the pieces: the same sums modulo 2^32)."""
    g = chain(8, [_dense(8, 640, 4, 8, icn=True)], (640,), 8)
    lay = g.layers[0]
    rng = np.random.default_rng(3)
    w = rng.integers(0, 16, (8, 640))
    w[3] = w[7] = 0
    lay.set_weights(w, 4)
    lay.weight_zero_point = np.zeros(1, np.int32)
    lay.bias[[3, 7]] = 0  # rows 3 and 7: code 0 exact, a multiple of 2^20 off saturates
    lay.m0 = np.abs(lay.m0)
    assert kernels_m7.subfc_plan(lay) == (2, 64) and kernels_m7.subfc_oct(lay) == 64
    x = np.full((2, 640), 255)
    x[1] = rng.integers(0, 256, 640)
    want = codegen.reference_output(g, x)

    run = functools.partial(_host_run, g, x)
    got, calls = run(tmp_path / "a")
    assert np.array_equal(got, want) and calls[0][11] == "64u" and calls[0][21] == "2u", calls
    monkeypatch.setattr(kernels_m7.subconv, "subfc_oct", lambda layer: 80)
    got, calls = run(tmp_path / "b")
    assert calls[0][11] == "80u" and not np.array_equal(got[0], want[0])


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
    for name in ("lean_a", "lean_u", "lean_p"):  # lean_u: the four UNP loops, lean_p LP
        e = codegen.export_c(_lean_graph(name), tmp_path / name / "src", kernels="m7")
        for level in FORM_LEVELS:
            _compile(ARM if fpu else SOFT, e, level, tmp_path / name)

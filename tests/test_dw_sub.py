"""The 3x3 depthwise row kernel's tail form (tn_m7_dw3 with CB < C, c/tn_m7_dw.h): a sub-byte
Keras-path step whose plan leaves no free bytes for the row kernel's scratch (every depthwise
step of an all-depthwise chain sets the arena's peak, as DS-CNN's do at w4a4) widens CB channels
at a time into planes in its own output's tail, runs the rows before them on the row kernel and
the rest on tn_m7_depthwise; no byte of arena beyond the lean plan's; bit-exact with
tinyopt.sim on the host and under QEMU."""
from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from tests._qemu_many import host_batch_fixture, check_many
from tests.test_build_levels import FORM_ABIS
from tests.test_kernels_m7 import chain, host_check
from tinyopt.deploy import kernels_m7
from tinyopt.integer import steps as steps_mod

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")



def _dwr(c, h, w, b, out_bits, stride=1, pad_mode="zero", **kw):
    """A 3x3 depthwise layer of an h x w input, SAME padding (the lower / right side the
    larger)."""
    oh, ow = -(-h // stride), -(-w // stride)
    th, tw = max((oh - 1) * stride + 3 - h, 0), max((ow - 1) * stride + 3 - w, 0)
    return dict(kind="depthwise", out_shape=(oh, ow, c), wshape=(3, 3, c), wbits=b,
                out_bits=out_bits, stride=(stride, stride),
                padding=(th // 2, th - th // 2, tw // 2, tw - tw // 2), pad_mode=pad_mode, **kw)


def _head(n):
    return [dict(kind="flatten"),
            dict(kind="dense", out_shape=(5,), wshape=(5, n), wbits=8, out_bits=32,
                 out_signed=True, requantize=False)]


# (input bits, signed, z_x, input shape, layers): all-depthwise chains (each step at the
# arena's peak, no free bytes for the full scratch) of tall outputs (rows for the planes):
# 4-bit DS-CNN-like (odd width, PC / ICN, zero-point padding, z_out != 0), 2-bit (CB = 8),
# 8-bit inputs with sub-byte outputs and sub-byte inputs with 8-bit outputs, asymmetric 8-bit
# weights (WIDE), stride 2 (not the chunk layout: sub-byte inputs), signed inputs and outputs,
# tn_m7_out (DWQ = 0: z_x != 0 with integer-0 padding), 2-bit outputs (the dead slot's bytes)
TAIL_CHAINS = {
    "w4a4": (4, False, 0, (15, 5, 32), [
        _dwr(32, 15, 5, 4, 4, per_channel=True, icn=True, out_zero_point=1),
        _dwr(32, 15, 5, 4, 4, pad_mode="zero_point"),
        _dwr(32, 15, 5, 4, 4, stride=2, per_channel=True), *_head(8 * 3 * 32)]),
    "w2a2": (2, False, 1, (16, 6, 32), [
        _dwr(32, 16, 6, 2, 2, per_channel=True, icn=True),
        _dwr(32, 16, 6, 2, 2, pad_mode="zero_point", out_zero_point=1),
        _dwr(32, 16, 6, 2, 4, stride=2), *_head(8 * 3 * 32)]),
    "mixed": (8, True, -3, (14, 7, 16), [
        _dwr(16, 14, 7, 8, 4, per_channel=True, icn=True, out_signed=True),
        _dwr(16, 14, 7, 4, 8, out_zero_point=2),
        _dwr(16, 14, 7, 8, 2, stride=2, pad_mode="zero_point"), *_head(7 * 4 * 16)]),
}

# the row kernel's requantization forms of each chain's row-kernel steps (kernels_m7.dw3_plan:
# 2 = floor with every n0 <= -1, 3 = per-channel n0 of both signs (w2a2's first), 0 = tn_m7_out
# (one multiplier, n0 >= 0)
DWQ = {"w4a4": {2}, "w2a2": {0, 3}, "mixed": {0, 2}}


def _graph(name):
    bits, signed, zin, shape, layers = TAIL_CHAINS[name]
    return chain(len(name) + 40, layers, shape, bits, signed, zin, "floor")


def _forms(text: str) -> list[tuple[int, int, int]]:
    """(C, CB, OYF) of each tn_m7_dw3 call of an export's C (its 7th, 15th and 16th
    arguments)."""
    calls = re.findall(r"tn_m7_dw3\(l, in\[0\], out, \(int16_t \*\)\(void \*\)\(\w+ \+ \d+u\), "
                       r"([^;]*)\);", text)
    out = []
    for args in calls:
        a = [v.strip().rstrip("u") for v in args.split(",")]
        out.append((int(a[2]), int(a[10]), int(a[11])))
    return out


def _c_text(e, tmp_path) -> str:
    return "".join(p.read_text() for p in (tmp_path / "src").glob("*.c"))


# This module's host checks in one host program (tests._qemu_many.HostBatch).
host_batch = host_batch_fixture({
    "test_dw3_tail_form_host_bitexact": lambda mp, name: (_graph(name), 24),
})


@pytest.mark.parametrize("name", sorted(TAIL_CHAINS))
def test_dw3_tail_form_host_bitexact(tmp_path, host_batch, name):
    g = _graph(name)
    steps, mem = steps_mod.memory_plan(g)
    dws = [s for s in steps if s.layer.kind == "depthwise"]
    tails = [s for s in dws if steps_mod.dw3_tail_fits(s) and not s.roomy]
    assert tails, "a chain without a tail-form step checks nothing"
    assert all(s.scratch_bytes == 0 for s in tails), "the tail form has no scratch of its own"
    lean = _lean_arena(g)
    assert mem.arena_bytes == lean, "the tail form never grows the arena"
    e = host_check(g, tmp_path, n=24, batch=host_batch)
    dwq = {kernels_m7.dw3_plan(s, g.rounding)["DWQ"] for s in dws if steps_mod.dw3_fits(s)}
    assert dwq == DWQ[name], dwq
    forms = _forms(_c_text(e, tmp_path))
    assert len(forms) == len([s for s in dws if steps_mod.dw3_fits(s)]), forms
    assert sum(cb < c for c, cb, _ in forms) == len(tails), forms
    for (c, cb, oyf), s in zip(forms, [s for s in dws if steps_mod.dw3_fits(s)]):
        # the rows after the planes run the lean kernel (some in every tail-form step here)
        oh = s.out_shape[0]
        assert cb == c or 1 <= oyf < oh, (s.name, oyf, oh)


def _lean_arena(g):
    """The arena with the row kernel's tail form off (the lean kernel at every step that cannot
    have the full scratch)."""
    orig = steps_mod.dw3_tail_layer
    try:
        steps_mod.dw3_tail_layer = lambda layer: False
        return steps_mod.memory_plan(g)[1].arena_bytes
    finally:
        steps_mod.dw3_tail_layer = orig


@pytest.mark.slow  # one QEMU build and run for the chains
def test_dw3_tail_form_under_qemu(qemu, tmp_path):
    """The Cortex-M7 build (SMLAD, the 4-bit outputs' read-modify-write in assembly, which the
    host build does not compile) bit-exact with the simulator under QEMU on every chain (one
    program: tests/_qemu_many.py)."""
    graphs, xs = {}, {}
    for name, (bits, signed, zin, shape, _) in sorted(TAIL_CHAINS.items()):
        graphs[name] = _graph(name)
        lo = -(1 << (bits - 1)) if signed else 0
        xs[name] = np.random.default_rng(7).integers(lo, lo + (1 << bits), (3, *shape))
    exports = check_many(graphs, xs, tmp_path, host_images=3, mcu_images=3)
    for name, e in exports.items():
        forms = _forms((e.out_dir / "model.c").read_text())
        assert any(cb < c for c, cb, _ in forms), (name, forms)


@pytest.mark.slow  # a Cortex-M7 compile per level
@pytest.mark.parametrize("abi", FORM_ABIS)
def test_dw3_tail_form_compiles_at_every_level(tmp_path, abi):
    """model.c of the chains (every tail-form instance: 2/4/8-bit inputs, 2/4/8-bit outputs,
    WIDE, strides 1 and 2) at each GCC level, with an FPU (hard float, fpv5-d16: the register
    set of the inline assembly shrinks) and soft float (our QEMU builds' ABI)."""
    from tests.test_build_levels import ARM, FORM_LEVELS, _arm_gcc, _compile
    from tinyopt.deploy import codegen
    _arm_gcc()
    flags = ARM if abi == "hard" else tuple(
        f for f in ARM if not f.startswith(("-mfpu", "-mfloat-abi"))) + ("-mfloat-abi=soft",)
    for name in sorted(TAIL_CHAINS):
        export = codegen.export_c(_graph(name), tmp_path / name, kernels="m7")
        assert _forms((tmp_path / name / "model.c").read_text())
        for level in FORM_LEVELS:
            _compile(flags, export, level, tmp_path)

"""The average pool a word at a time (tn_m7_avgpool_words, c/tn_m7_pool.h): 1, 2, 4 and 8-bit
inputs, signed and unsigned, floor and half-away averages, padded windows (fewer elements
counted) and global ones, bit-exact with the simulator on the host and under QEMU; the pools it
does not take (a max pool, channels not filling whole words, a window whose code sum would
overflow a 16-bit lane) stay exact on the element-wise loop; a 4-bit average pool costs no more
instructions than the same pool of 8-bit inputs; the kernel compiles at every GCC level.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from tests._qemu_many import HostBatch
from tests.test_build_levels import ARM, FORM_LEVELS, WARN, _arm_gcc
from tinyopt import IntegerGraph, IntegerLayer
from tinyopt.deploy import codegen, mcu

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")

# name: bits, signed, zero point, input shape, pool size, stride, padding, output shape, kind,
# average rounding (None: the graph flavour's)
POOLS = {
    "u4_global": (4, False, 0, (5, 5, 64), (5, 5), (1, 1), (0, 0, 0, 0), (1, 1, 64),
                  "avgpool", None),
    "s4_same": (4, True, 0, (7, 7, 16), (3, 3), (2, 2), (1, 1, 1, 1), (4, 4, 16), "avgpool",
                None),
    "u4_zp_half_away": (4, False, 3, (6, 5, 8), (2, 3), (2, 1), (0, 0, 1, 1), (3, 5, 8),
                        "avgpool", "half_away"),
    "u2_same": (2, False, 0, (6, 6, 32), (3, 3), (2, 2), (0, 1, 0, 1), (3, 3, 32), "avgpool",
                None),
    "s2_floor": (2, True, 0, (5, 5, 48), (3, 3), (1, 1), (1, 1, 1, 1), (5, 5, 48), "avgpool",
                 "floor"),
    "u1": (1, False, 0, (4, 4, 64), (2, 2), (2, 2), (0, 0, 0, 0), (2, 2, 64), "avgpool", None),
    "s1": (1, True, 0, (4, 6, 32), (3, 3), (1, 2), (1, 1, 1, 1), (4, 3, 32), "avgpool", None),
    "s8_same": (8, True, -5, (7, 7, 8), (3, 3), (2, 2), (1, 1, 1, 1), (4, 4, 8), "avgpool",
                None),
    "u8_global": (8, False, 0, (5, 5, 64), (5, 5), (1, 1), (0, 0, 0, 0), (1, 1, 64),
                  "avgpool", None),
    # not the word-wise pool: channels not filling a word, a max pool, a window whose code
    # sum may leave 16 bits
    "u4_c12": (4, False, 0, (5, 5, 12), (3, 3), (2, 2), (1, 1, 1, 1), (3, 3, 12), "avgpool",
               None),
    "s4_max": (4, True, 0, (6, 6, 16), (2, 2), (2, 2), (0, 0, 0, 0), (3, 3, 16), "maxpool",
               None),
    # 17 x 17 8-bit codes (289 x 255 > 2^16 - 1)
    "u8_lane_bound": (8, False, 0, (17, 17, 4), (17, 17), (1, 1), (0, 0, 0, 0), (1, 1, 4),
                      "avgpool", None),
    # 68 x 68 4-bit codes (4624 x 15 > 2^16 - 1): a 16-bit lane would wrap
    "u4_lane_bound": (4, False, 0, (68, 68, 8), (68, 68), (1, 1), (0, 0, 0, 0), (1, 1, 8),
                      "avgpool", None),
}
FAST = ("u4_global", "s4_same", "u4_lane_bound", "s8_same")


def pool_graph(name: str, rounding: str = "floor") -> IntegerGraph:
    """One pool layer of POOLS[name] on the graph input."""
    bits, signed, zp, shape, size, stride, pad, out_shape, kind, avg = POOLS[name]
    q = dict(in_bits=bits, out_bits=bits, in_signed=signed, out_signed=signed,
             in_zero_point=zp, out_zero_point=zp)
    layer = IntegerLayer(kind=kind, name="pool", in_shape=shape, out_shape=out_shape,
                         pool_size=size, stride=stride, padding=pad,
                         avg_rounding=avg if kind == "avgpool" else None, **q)
    g = IntegerGraph(layers=[layer], input_shape=shape, input_bits=bits, input_signed=signed,
                     input_zero_point=zp, rounding=rounding, name=f"pool_{name}")
    g.validate()
    return g


def pool_inputs(g: IntegerGraph, n: int, seed: int = 1) -> np.ndarray:
    """Random codes; for the lane-bound case codes near the top, channel c in
    [top - c % 4, top] (channel 0's sums exceed 2^16)."""
    lo = -(1 << (g.input_bits - 1)) if g.input_signed else 0
    hi = lo + (1 << g.input_bits)
    rng = np.random.default_rng(seed)
    if g.name in ("pool_u4_lane_bound", "pool_u8_lane_bound"):
        low = hi - 1 - np.arange(g.input_shape[-1]) % 4
        return rng.integers(low, hi, (n, *g.input_shape))
    return rng.integers(lo, hi, (n, *g.input_shape))


CASES = [(n, r) for n in POOLS for r in ("floor", "tflite_double")]


def _order(cases):
    return sorted(cases, key=lambda c: c[0] not in FAST)


@pytest.fixture(scope="module")
def host_batch(request, tmp_path_factory):
    """This module's host checks in one host program (tests._qemu_many.HostBatch), each case
    on the inputs its test draws (:func:`pool_inputs`: seed 1, the lane-bound cases' codes near
    the top)."""
    def make(mp, name, rounding):
        g = pool_graph(name, rounding)
        return g, pool_inputs(g, 24)
    return HostBatch(request, {"test_pool_host_bitexact": make},
                     tmp_path_factory.mktemp("host_batch"))


@pytest.mark.parametrize("name,rounding", _order(CASES))
def test_pool_host_bitexact(tmp_path, host_batch, name, rounding):
    g = pool_graph(name, rounding)
    e = codegen.export_c(g, tmp_path / "src")
    assert e.kernels == ["pool"], e.kernels
    x = pool_inputs(g, 24)
    want = codegen.reference_output(g, x)
    assert len(np.unique(want)) > 1, "a constant output checks little"
    if name.endswith("lane_bound"):  # the window sums leave 16 bits
        c = g.input_shape[-1]
        assert int(np.abs(x.reshape(len(x), -1, c).sum(axis=1)).max()) > 65535
    got = host_batch.outputs(e, x)
    assert int((got != want).sum()) == 0


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
def test_pool_under_qemu(qemu, tmp_path):
    """Bit-exact under QEMU (UXTAB16 itself), and a 4-bit average pool takes no more
    instructions than the same pool of 8-bit inputs (the element-wise loop took twice as many:
    a global 5 x 5 x 64 pool 17,200 vs 10,860 at 8 bits; now 3,200)."""
    insns = {}
    for name, rounding in [("u4_global", "floor"), ("u8_global", "floor"),
                           ("s4_same", "tflite_double"), ("u2_same", "floor"),
                           ("s1", "tflite_double"), ("u4_zp_half_away", "floor"),
                           ("s8_same", "tflite_double")]:
        g = pool_graph(name, rounding)
        r = mcu.deploy(g, pool_inputs(g, 3), tmp_path / name, name="m", mcu_images=2)
        s = r["summary"]
        assert s["host_mismatching_values"] == 0 and s["mcu_mismatching_values"] == 0, name
        insns[name] = int(r["steps"]["insns_per_image"].iloc[0])
    assert insns["u4_global"] <= insns["u8_global"], insns


@pytest.mark.slow  # six compiles per width
@pytest.mark.parametrize("name", ["s4_same", "u2_same", "s1", "s8_same"])
def test_pool_compiles_at_every_level(tmp_path, name):
    _arm_gcc()
    e = codegen.export_c(pool_graph(name, "tflite_double"), tmp_path / "src")
    for level in FORM_LEVELS:
        cmd = [*ARM, level, *WARN, "-c", str(e.out_dir / "model.c"), "-I", str(e.out_dir),
               "-o", str(tmp_path / "model.o")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr[-4000:]}"

"""tn_m7_out's per-channel FAST 1 forms (c/tn_m7_core.h): a layer whose per-channel exponents n0
have both signs (FAST 1, kernels_m7.requant_constants: one channel of a trained layer with
n0 >= 0 suffices; the trained DS-CNN's last depthwise at w4a4 has one) requantizes without
branches on n0, shift counts saturated to [0, 31] (USAT #5), for the floor and the TFLite double
roundings. Equal to tn_requant_k (the portable kernels) over every n0 in [-31, 30], on the host
for accumulators at the int32 bounds (the left shift wraps, as tn_shl32), and bit-exact with the
simulator on graphs with mixed-sign n0 per channel, on the host and under QEMU (the USAT
intrinsic), including n0 = 30, n0 = -31 and wrapping shifts (the simulator's wrap32); the
kernels compile at every GCC level.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from tests._qemu_many import host_batch_fixture, check_many
from tests.test_build_levels import ARM, FORM_LEVELS, WARN, _arm_gcc
from tests.test_kernels_m7 import _conv, _dw, _host_program_output, chain
from tinyopt.deploy import codegen, kernels_m7, synth
from tinyopt.integer import sim

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")

# channels of each layer made to have small accumulators (every weight at its zero point but one
# tap): calibration gives them multipliers >= 1, n0 >= 0, among channels with n0 < 0
SMALL = (2, 5, 9, 14)
SHAPE = (6, 6, 16)


def mixed_sign_graph(rounding: str, edges: bool = False):
    """A 4-bit depthwise layer (tn_m7_depthwise) and a 4-bit pointwise layer (tn_m7_sub), per-
    channel multipliers with n0 of both signs (FAST 1). ``edges``: moreover n0 = 30 and n0 = -31
    with m0 = 2^31 - 1, n0 = 29 with a large m0 (negative for the floor rounding) and n0 = 12 on
    channels of ordinary accumulators: their left shifts wrap modulo 2^32 (the reference is the
    simulator's wrap32)."""
    layers = [_dw(16, 6, 4, 4, per_channel=True, icn=True),
              _conv(SHAPE, (16, 1, 1, 16), 4, 4, per_channel=True, icn=True)]
    g = chain(3, layers, SHAPE, 4, False, 0, rounding)
    rng = np.random.default_rng(4)
    x = rng.integers(0, 16, (48, *SHAPE))
    full = list(g.layers)
    for i, lay in enumerate(full):
        g.layers = full[:i + 1]  # calibrate_layer calibrates the graph's last layer
        w = lay.unpacked_weights().copy()
        zw = np.asarray(lay.weight_zero_point)
        for c in SMALL:
            if lay.kind == "depthwise":
                w[..., c] = zw[c]
                w[1, 1, c] = zw[c] + 1
            else:
                w[c] = zw[c]
                w[c, 0, 0, c] = zw[c] + 1
        lay.set_weights(w, lay.weight_bits)
        synth.calibrate_layer(g, lay, x, rng, True, 0.25 if rounding == "floor" else 0.0)
    g.layers = full
    if edges:
        for lay in g.layers:
            m0, n0 = np.asarray(lay.m0).copy(), np.asarray(lay.n0).copy()
            n0[0], m0[0] = 30, 2**31 - 1
            n0[1], m0[1] = -31, 2**31 - 1
            n0[3], m0[3] = 29, -(2**30) - 12345 if rounding == "floor" else 1 << 30
            n0[4] = 12
            lay.m0 = m0.astype(np.asarray(lay.m0).dtype)
            lay.n0 = n0.astype(np.asarray(lay.n0).dtype)
    g.validate()
    return g


CASES = [(r, e) for r in ("floor", "tflite_double") for e in (False, True)]


def _ids(case):
    return f"{case[0]}{'_edges' if case[1] else ''}"


def _inputs(n: int) -> np.ndarray:
    return np.random.default_rng(5).integers(0, 16, (n, *SHAPE))


def _want(g, x) -> np.ndarray:
    # wrap32: the edge channels' shifts leave int32; without them the same values (no wrap)
    return np.asarray(sim.run(g, x, wrap32=True, engine="reference")).reshape(len(x), -1)


def test_mixed_sign_graphs_take_fast1():
    """Both layers of every case have per-channel multipliers with n0 of both signs: FAST 1, the
    per-channel form (NM > 1)."""
    for rounding, edges in CASES:
        g = mixed_sign_graph(rounding, edges)
        for lay in g.layers:
            n0 = np.asarray(lay.n0)
            assert n0.min() < 0 <= n0.max(), (rounding, edges, lay.name, n0)
            rq = kernels_m7.requant_constants(lay, g.rounding)
            assert rq["FAST"] == 1 and rq["NM"] == 16, (rounding, edges, lay.name, rq)


# This module's host checks in one host program (tests._qemu_many.HostBatch), on the inputs the
# test draws (:func:`_inputs`).
host_batch = host_batch_fixture({
    "test_mixed_sign_n0_host_bitexact": lambda mp, case: (mixed_sign_graph(*case),
                                                           _inputs(40)),
})


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_mixed_sign_n0_host_bitexact(tmp_path, host_batch, case):
    g = mixed_sign_graph(*case)
    e = codegen.export_c(g, tmp_path / "src")
    assert e.kernels == ["depthwise", "sub"], e.kernels
    x = _inputs(40)
    want = _want(g, x)
    assert len({r.tobytes() for r in want}) > 1
    got = host_batch.outputs(e, x)
    assert int((got != want).sum()) == 0


def test_fast1_forms_equal_the_portable_requant(tmp_path):
    """tn_m7_out (FAST 1, per-channel multiplier) equals tn_requant_k for every n0 in [-31, 30]
    and both roundings: multipliers at 0, 1, 2^30, 2^31 - 1 (and INT32_MIN, -1 for the floor
    rounding, which takes any sign) and random ones, accumulators at the int32 bounds, around 0
    and random (so that the left shifts wrap); clamp bounds wide open."""
    src = tmp_path / "fast1.c"
    src.write_text(r'''
#include <stdio.h>
#include "tn_m7_core.h"
static uint32_t s = 2463534242u;
static uint32_t rnd(void) { s ^= s << 13; s ^= s >> 17; s ^= s << 5; return s; }
int main(void)
{
    static const int32_t m0s[] = {0, 1, 1 << 30, 2147483647, INT32_MIN, -1, 1518500250};
    static const int32_t accs[] = {0, 1, -1, 2, -2, INT32_MAX, INT32_MIN, INT32_MIN + 1,
                                   (1 << 30), -(1 << 30), 12345, -12345};
    static int32_t m0[1];
    static int8_t n0[1];
    tn_layer_t l;
    unsigned long bad = 0, n = 0;
    memset(&l, 0, sizeof l);
    l.m0 = m0;
    l.n0 = n0;
    for (int32_t e = -31; e <= 30; e++)
        for (uint32_t flavour = 0; flavour < 2u; flavour++) {
            const uint32_t rounding = flavour ? TN_TFL_DOUBLE : TN_FLOOR;
            for (int i = 0; i < 4000; i++) {
                int32_t mm = i < 7 ? m0s[i] : (int32_t)rnd();
                const int32_t acc = i % 50 < 12 ? accs[i % 50]
                                    : (int32_t)rnd() >> (rnd() % 32u);
                if (flavour && mm < 0) mm = (int32_t)((uint32_t)mm >> 1);
                m0[0] = mm;
                n0[0] = (int8_t)e;
                {
                    const int32_t want = (int32_t)tn_requant_k(acc, mm, (int8_t)e,
                                                               (uint8_t)rounding);
                    const int32_t got = tn_m7_out(&l, acc, 0u, 1u, 1u, rounding, 1u, 0, 0,
                                                  INT32_MIN, INT32_MAX, 0);
                    bad += got != want;
                    n++;
                }
            }
        }
    printf("%lu %lu\n", bad, n);
    return 0;
}
''')
    out = _host_program_output(src, tmp_path / "fast1")
    bad, n = (int(v) for v in bytes(out).decode().split())
    assert n == 62 * 2 * 4000 and bad == 0, (bad, n)


@pytest.mark.slow  # one Cortex-M7 build and QEMU run for the cases
def test_mixed_sign_n0_under_qemu(qemu, tmp_path):
    """The USAT #5 form (the host build takes portable C) bit-exact with the simulator, every
    case in one program (tests/_qemu_many.py)."""
    graphs = {_ids(case): mixed_sign_graph(*case) for case in CASES}
    check_many(graphs, {name: _inputs(6) for name in graphs}, tmp_path, host_images=0,
               mcu_images=6, reference=_want)


@pytest.mark.slow  # six compiles per case
@pytest.mark.parametrize("rounding", ["floor", "tflite_double"])
def test_fast1_compiles_at_every_level(tmp_path, rounding):
    _arm_gcc()
    e = codegen.export_c(mixed_sign_graph(rounding, True), tmp_path / "src")
    for level in FORM_LEVELS:
        cmd = [*ARM, level, *WARN, "-c", str(e.out_dir / "model.c"), "-I", str(e.out_dir),
               "-o", str(tmp_path / "model.o")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr[-4000:]}"

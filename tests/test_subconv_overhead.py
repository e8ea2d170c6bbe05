"""tn_m7_subconv's windows outside the inner loop (issue 29: ResNet-8's 4-bit 3x3 convolutions
at <= 1.0x the int8 instructions): a window wholly inside the input is unpacked as one run of
its KH rows (c/tn_m7_subconv.h: tn_sc_window, tn_sc_run with R rows and a row stride), the
USADA8 sums of unsigned 4-bit codes kept across the rows; a pair of such windows one column
apart (stride 1, unsigned 4-bit codes, z_x = 0) unpacks their common taps once (tn_sc_run2);
windows touching the padding keep the row-by-row form. Bit-exact with the simulator on the
host (the C forms) and, slow, under QEMU (the Cortex-M7 assembly of unsigned 4-bit codes).
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import tinyopt  # noqa: F401  (prepares TensorFlow before tf_keras)
from tinyopt.deploy import mcu
from tinyopt.integer import steps as steps_mod

from tests.test_kernels_m7 import _conv, chain, host_check
from tests.test_kernels_m7_sub import _dense

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")


@pytest.fixture
def roomy(monkeypatch):
    """tn_m7_subconv wherever it fits (steps.SCRATCH_ONLY_WHERE_FREE off)."""
    monkeypatch.setattr(steps_mod, "SCRATCH_ONLY_WHERE_FREE", False)


def _graph(in_bits, signed=False, zin=0):
    """9 x 9 x 8 inputs -> 3x3 conv SAME, 16 channels (the first and last rows and columns of
    windows touch the padding, the 7 x 7 inside are whole runs; with 4-bit inputs C = 8: pairs
    of one word per tap) -> 3x3 conv VALID of 4-bit inputs (every window inside, KW C = 48
    lanes: six words per row; 7 x 7 outputs: pairs in one row share their middle taps, pairs
    across two rows do not) -> 3x3 conv SAME of 2-bit outputs -> 3x3 conv SAME stride 2 of
    2-bit inputs (C = 16: G = 16, the generic unpacking over rows) -> dense. Per-channel ICN
    multipliers on two of them."""
    return chain(131 + in_bits, [
        _conv((9, 9, 16), (16, 3, 3, 8), 4, 4, padding=(1, 1, 1, 1)),
        _conv((7, 7, 16), (16, 3, 3, 16), 4, 4, per_channel=True, icn=True),
        _conv((7, 7, 16), (16, 3, 3, 16), 4, 2, padding=(1, 1, 1, 1)),
        _conv((4, 4, 8), (8, 3, 3, 16), 2, 4, stride=(2, 2), padding=(1, 1, 1, 1),
              per_channel=True, icn=True),
        dict(kind="flatten"),
        _dense(3, 128, 4, 32, out_signed=True, requantize=False)], (9, 9, 8), in_bits, signed,
        zin)


def _check_steps(e):
    """Every conv step runs tn_m7_subconv (the pixel pairs whose windows this covers)."""
    convs = [s for s in e.steps if s.layer.kind == "conv2d"]
    assert len(convs) == 4
    assert all(steps_mod.sub_conv_step(s) for s in convs), [s.layer.name for s in convs]


@pytest.mark.parametrize("in_bits,signed,zin", [(4, False, 0), (8, False, 0), (4, True, 0)])
def test_window_runs_host_bitexact(tmp_path, roomy, in_bits, signed, zin):
    """Whole-window runs beside the row-by-row windows, on the host's C (unsigned 4-bit codes:
    the USADA8 sum form; 2-bit codes: the generic lane pairs), bit-exact on 40 inputs."""
    g = _graph(in_bits, signed, zin)
    e = host_check(g, tmp_path)
    _check_steps(e)


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
def test_window_runs_under_qemu(qemu, tmp_path, roomy):
    """The same layers under QEMU (the assembly that unpacks a word of unsigned 4-bit codes,
    now running on across a window's rows, and storing a pair's common taps for both pixels),
    bit-exact on two images."""
    g = _graph(8)
    x = np.random.default_rng(7).integers(0, 256, (4, 9, 9, 8))
    r = mcu.deploy(g, x, tmp_path / "runs", name="runs", host_images=4, mcu_images=2)
    s = r["summary"]
    assert s["host_mismatching_values"] == 0 and s["mcu_mismatching_values"] == 0
    _check_steps(r["export"])

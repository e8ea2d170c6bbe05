"""Cortex-M7 builds with the FPU (``build_mcu(float_abi="hard" | "softfp")``, ``-mfpu=fpv5-d16``:
how most Cortex-M7 firmware is built) run under QEMU and compute what the simulator computes.

The harness's reset handler enables the FPU (CPACR) before any code that GCC may have given a
floating-point instruction runs; without it the first such instruction is a usage fault (the
test of the two exports below fails). Soft float stays the ABI the instruction counts are
measured with.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.test_codegen import _inputs, coverage_graph
from tinyopt.deploy import codegen, mcu


def test_unknown_float_abi_is_refused(tmp_path):
    export = codegen.export_c(coverage_graph(0, "floor", False), tmp_path / "src")
    with pytest.raises(ValueError, match="float_abi='vfp'.*soft, softfp, hard"):
        mcu.build_mcu(export, build_dir=tmp_path, float_abi="vfp")


@pytest.mark.slow  # two Cortex-M7 builds and QEMU runs
@pytest.mark.parametrize("float_abi", ["hard", "softfp"])
def test_fpu_build_under_qemu_bitexact(qemu, tmp_path, float_abi):
    """Every kernel and format of the coverage graph (sub-byte and int8, floor rounding),
    built with the FPU at -O2, bit-exact with the simulator on four random inputs."""
    g = coverage_graph(1, "floor", False)
    x = _inputs(g, 4, 1)
    export = codegen.export_c(g, tmp_path / "src", kernels="m7")
    elf = mcu.build_mcu(export, build_dir=tmp_path / float_abi, float_abi=float_abi)
    run = mcu.run_qemu(elf, export, x, work_dir=tmp_path / float_abi)
    np.testing.assert_array_equal(run.outputs, codegen.reference_output(g, x))

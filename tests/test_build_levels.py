"""The generated C libraries build at every GCC optimisation level a firmware may use.

The Cortex-M7 kernels' multi-register inline assembly (TN_M7_ASM, c/tn_m7_core.h) must leave
GCC registers to allocate at -O1, -O3, -Os, -Oz and -Og as well as at the -O2 the instruction
counts are measured at (where it cannot, a kernel takes its C twin at that level); at -O0 every
kernel is its C twin, not forced inline (tn_arith.h's TN_INLINE: a forced-inline VWW step at -O0
was too big for Thumb-2 branches). Compile-only
checks of the four MLPerf Tiny int8 libraries and a sub-byte one (``-Wall -Wextra -Werror
-pedantic -std=c99``, as a firmware build would), of small synthetic graphs whose assembly blocks
GCC once could not allocate at some levels ('asm' operand has impossible constraints), and QEMU
runs of VWW at other levels than -O2 bit-exact with the simulator.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tinyopt.deploy import codegen, mcu
from tinyopt.deploy.library import random_inputs
from tinyopt.front import zoo
from tinyopt.integer import steps as steps_mod

# -O2 is every other test's build (mcu.MCU_CFLAGS); the other levels, where GCC allocates the
# assembly's registers differently. The cheap models (which never failed) only at -Os; ResNet-8
# and VWW (which did) at all of LEVELS. Every compile here is `slow`: the edit-test loop
# (`make test-fast`) builds -O2 in many tests and has no time for other levels; `make test` (CI)
# runs them all.
# one level per way GCC treats the assembly (each ResNet-8 / VWW build costs 5-15 s of CPU): -O0
# (the C twins, not forced inline), -O3 (the assembly; -O1 failed where -O3 did, and passes where
# it does), -Os (__OPTIMIZE_SIZE__: -Oz takes the same C twins), -Og (no unrolling: the
# immediates). All six levels passed when this file was written (session 14).
# `make test` (CI, under 10 minutes) compiles at the levels below; `make test-levels`
# (TINYOPT_ALL_LEVELS=1) at every level: run it after touching a kernel's assembly or C twin,
# and before a release (session 16: every level, soft and hard float, passed).
ALL_LEVELS = os.environ.get("TINYOPT_ALL_LEVELS") == "1"
LEVELS = ["-O0", "-O1", "-O3", "-Os", "-Oz", "-Og"] if ALL_LEVELS else ["-O0", "-Og"]
CHEAP_LEVELS = ["-Os"]
# The compile checks of each new kernel form's test file: -Og in make test, the level where GCC
# found no registers for an assembly block most often (-O2 is every QEMU test's build); -O1 too
# until session 17, when make test ran 11m35s and every level moved to make test-levels
FORM_LEVELS = (["-O0", "-O1", "-O2", "-O3", "-Os", "-Og"] if ALL_LEVELS else ["-Og"])
# ... and with an FPU only (hard float: its core registers are allocated differently from the
# soft-float -O2 of the QEMU tests, so the two builds see two allocations); soft float too under
# make test-levels
FORM_ABIS = ["hard", "soft"] if ALL_LEVELS else ["hard"]
FORM_FPUS = [True, False] if ALL_LEVELS else [True]
HOST_LEVELS = ["-O3"]  # the C twins: -O3 is where -Warray-bounds looks deepest
ARM = ("arm-none-eabi-gcc", "-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16")
WARN = ("-Wall", "-Wextra", "-Werror", "-pedantic", "-std=c99")
# KWS and the autoencoder compile in a few seconds per level; ResNet-8 and VWW take longer
CHEAP = {"kws_dscnn", "ad_fcae"}
MODELS = ["kws_dscnn", "ad_fcae", "ic_resnet8", "vww_mobilenet"]


def _arm_gcc() -> None:
    """Skip, with the toolchain's reason, unless arm-none-eabi-gcc is installed."""
    if shutil.which("arm-none-eabi-gcc") is None:
        ok, why = mcu.toolchain()
        pytest.skip(f"Cortex-M7 compile not run: {why if not ok else 'no arm-none-eabi-gcc'}")


@pytest.fixture(scope="module")
def libraries(tmp_path_factory):
    """name -> the folder of its generated C sources (prefix = name), each exported once."""
    made = {}

    def get(name):
        if name not in made:
            from tinyopt.integer.from_litert import graph_from_tflite
            try:
                path = zoo.mlperf_tiny_path(name)
            except zoo.ModelNotFound as exc:
                pytest.skip(str(exc))
            graph = graph_from_tflite(path.read_bytes(), flavour="tflm")
            out = tmp_path_factory.mktemp(name)
            export = codegen.export_c(graph, out, kernels="m7", prefix=name)
            made[name] = (out, export)
        return made[name]
    return get


def _compile(cc_flags, export, level, tmp_path, portable=False):
    """Compile the C sources of ``export`` at ``level``; assert a clean build. The portable
    kernels (tinyopt_nn.c, the same text in every export but for the prefix) only when
    ``portable``: once per level is enough (test_portable_kernels_compile_for_the_m7)."""
    src = export.out_dir
    for i, c in enumerate(export.sources):
        if not str(c).endswith(".c") or (str(c).endswith("tinyopt_nn.c") and not portable):
            continue
        cmd = [*cc_flags, level, *WARN, "-c", str(c), "-I", str(src),
               "-o", str(tmp_path / f"{i}.o")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr[-4000:]}"


@pytest.mark.parametrize("name,level",
                         [pytest.param(m, lv, marks=pytest.mark.slow)
                          for m in MODELS for lv in (CHEAP_LEVELS if m in CHEAP else LEVELS)])
def test_mlperf_library_compiles_for_the_m7(name, level, libraries, tmp_path):
    _arm_gcc()
    _, export = libraries(name)
    _compile(ARM, export, level, tmp_path)


@pytest.mark.slow  # four compiles of tinyopt_nn.c
def test_portable_kernels_compile_for_the_m7(libraries, tmp_path):
    """tinyopt_nn.c (the portable kernels: the steps no specialised kernel takes) at every level
    of LEVELS, once: the other tests compile the model sources only."""
    _arm_gcc()
    _, export = libraries("ad_fcae")
    kernels = [c for c in export.sources if str(c).endswith("tinyopt_nn.c")]
    assert len(kernels) == 1, export.sources
    for level in LEVELS:
        cmd = [*ARM, level, *WARN, "-c", str(kernels[0]), "-I", str(export.out_dir), "-o",
               str(tmp_path / "nn.o")]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stderr[-4000:]}"


@pytest.mark.slow  # the host compiler (the C twins) at the levels other tests do not build
@pytest.mark.parametrize("name", [m for m in MODELS if m not in CHEAP])
def test_mlperf_library_compiles_on_the_host(name, libraries, tmp_path):
    if shutil.which("gcc") is None:
        pytest.skip("no host gcc")
    _, export = libraries(name)
    for level in HOST_LEVELS:
        _compile(("gcc",), export, level, tmp_path, portable=True)


def _fc16_chain():
    """Dense 62 -> 13 -> 12 -> 11 -> 10 -> 9 -> 8, int8 (tests/test_fc_heads.py): tn_m7_fc16's
    blocks of 7 and 6 .. 1 rows with 15, 3, 3, 2, 2, 2 groups."""
    from tests.test_fc_heads import _forms_chain
    return _forms_chain(True)


def _conv_w8_o4():
    """One 3x3 conv 32x32x3 -> 16 of 8-bit weights and a 4-bit output (ResNet-8's first layer
    in a w8a4 graph): tn_m7_conv's two-pair (tn_m7_cv_quad: failed at -O3 and -Og) and one-pair
    (tn_m7_cv_pair: -Og; at 8x8 it compiled) blocks, aligned and misaligned weights, in one
    step function."""
    from tests.test_kernels_m7 import _conv, chain
    return chain(11, [_conv((32, 32, 16), (16, 3, 3, 3), 8, 4, padding=(1, 1, 1, 1))],
                 (32, 32, 3), 8, False, 0, "floor")


def _pointwise_w2a4_add():
    """A 5x5x12 pointwise layer of 2-bit weights and 4-bit codes with the residual ADD fused
    (tests/test_kernels_m7_sub.py's _residual_graph; ResNet-8's w2a4 shortcut): tn_m7_subconv's
    2-bit blocks (TN_SC_G2_BLOCKS) of NU = 4 units, the first and three more. Their per-part asm
    statements failed at -Og here (at -O1 only in the whole w2a4 ResNet-8:
    test_sub_byte_library_compiles_for_the_m7)."""
    from tests.test_kernels_m7_sub import _residual_graph
    return _residual_graph(2, 4, 0)


# graph -> its kernel, the levels at which GCC found no registers for one of its asm blocks
# before each block became one asm statement (c/tn_m7_gemm.h: TN_F16_ONE, TN_CV_BLOCKS,
# TN_CV_QBLOCKS; c/tn_m7_subconv.h: TN_SC_G2_BLOCKS), and whether the export needs the planner
# to give tn_m7_subconv its scratch (steps.SCRATCH_ONLY_WHERE_FREE off, as
# test_kernels_m7_sub's `roomy`); -O2 (every other test's level) and -Oz (-Os's family) left out
SYNTHETIC = {"fc16_chain": (_fc16_chain, "tn_m7_fc16(", ["-O1", "-Os", "-Og"], False),
             "conv_w8_o4": (_conv_w8_o4, "tn_m7_conv(", ["-O3", "-Og"], False),
             "pointwise_w2a4_add": (_pointwise_w2a4_add, "tn_m7_subconv(", ["-Og"],
                                    True)}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """name -> the export of SYNTHETIC[name]'s graph, made once."""
    made = {}

    def get(name):
        if name not in made:
            with pytest.MonkeyPatch.context() as mp:
                if SYNTHETIC[name][3]:
                    mp.setattr(steps_mod, "SCRATCH_ONLY_WHERE_FREE", False)
                made[name] = codegen.export_c(SYNTHETIC[name][0](),
                                              tmp_path_factory.mktemp(name), kernels="m7")
        return made[name]
    return get


@pytest.mark.slow  # a compile per level (about a second each)
@pytest.mark.parametrize("name,level", [(n, lv) for n, (_, _, lvs, _) in SYNTHETIC.items()
                                        for lv in lvs])
def test_asm_blocks_compile_at_the_levels_that_failed(name, level, synthetic, tmp_path):
    """model.c of a small graph (about a second per level) at a level where its assembly once
    had impossible constraints."""
    _arm_gcc()
    export = synthetic(name)
    assert SYNTHETIC[name][1] in (Path(export.out_dir) / "model.c").read_text()
    _compile(ARM, export, level, tmp_path)


def _resnet8_sub_byte(tmp_path_factory, wbits):
    """The ResNet-8 architecture with wbits-bit weights and 4-bit activations (per-layer), PTQ on
    seeded random inputs, exported."""
    import tf_keras as keras
    from tinyopt.mixed import lower, ptq
    from tinyopt.mixed.policy import Policy
    from tinyopt.studies.any_graph import mlperf_architecture
    try:
        model = mlperf_architecture("ic_resnet8", classes=10, seed=0)
    except (FileNotFoundError, zoo.ModelNotFound) as exc:
        pytest.skip(str(exc))
    x = np.random.default_rng(0).uniform(0, 1, (8, *model.input_shape[1:])).astype(np.float32)
    keras.utils.set_random_seed(0)
    graph = lower.convert(ptq.quantize_mixed(model, Policy.uniform(model, wbits, 4, "PL"), x))
    export = codegen.export_c(graph, tmp_path_factory.mktemp(f"sub{wbits}"), kernels="m7",
                              prefix=f"sub{wbits}4")
    assert "sub" in export.kernels
    return export


@pytest.fixture(scope="module")
def sub_byte_library(tmp_path_factory):
    """The ResNet-8 architecture at w4a4 (tn_m7_subconv's 4-bit kernels on every conv and the
    fused ADDs), exported once."""
    return _resnet8_sub_byte(tmp_path_factory, 4)


@pytest.fixture(scope="module")
def sub_byte_w2_library(tmp_path_factory):
    """The ResNet-8 architecture at w2a4 (tn_m7_subconv's 2-bit blocks, TN_SC_G2_BLOCKS, on
    every conv but the first), exported once."""
    return _resnet8_sub_byte(tmp_path_factory, 2)


@pytest.mark.slow  # PTQ of a Keras model and four builds
def test_sub_byte_library_compiles_for_the_m7(sub_byte_library, tmp_path):
    _arm_gcc()
    for level in LEVELS:
        _compile(ARM, sub_byte_library, level, tmp_path)


@pytest.mark.slow  # PTQ of a Keras model and one build
def test_w2a4_library_compiles_at_o1(sub_byte_w2_library, tmp_path):
    """-O1, where the 2-bit blocks' per-part asm statements had impossible constraints in this
    model (the shortcut's pointwise with the fused ADD) and only here; the other levels passed
    (-O2: every QEMU test's build)."""
    _arm_gcc()
    _compile(ARM, sub_byte_w2_library, "-O1", tmp_path)


def test_build_mcu_refuses_an_unknown_level(libraries, tmp_path):
    _, export = libraries("ad_fcae")
    with pytest.raises(ValueError, match="opt='-O9'.*-Os"):
        mcu.build_mcu(export, build_dir=tmp_path, opt="-O9")


@pytest.mark.slow  # a Cortex-M7 build of VWW and QEMU runs
def test_vww_under_qemu_at_other_levels(qemu, tmp_path):
    """VWW at -Os (tn_dw3_build2's C loop beside tn_m7_conv's assembly, the level whose code
    differs most from -O2's) bit-exact with the simulator on two random inputs."""
    from tinyopt.integer.from_litert import graph_from_tflite
    try:
        path = zoo.mlperf_tiny_path("vww_mobilenet")
    except zoo.ModelNotFound as exc:
        pytest.skip(str(exc))
    graph = graph_from_tflite(path.read_bytes(), flavour="tflm")
    export = codegen.export_c(graph, tmp_path / "src", kernels="m7")
    x = random_inputs(graph, 2, seed=1)
    want = codegen.reference_output(graph, x)
    for level in ("-Os",):
        elf = mcu.build_mcu(export, build_dir=tmp_path / level, opt=level)
        run = mcu.run_qemu(elf, export, x, work_dir=tmp_path / level)
        np.testing.assert_array_equal(run.outputs, want, err_msg=level)

"""The sub-byte dense kernels compile with an FPU (-mfloat-abi=hard -mfpu=fpv5-d16, a Cortex-M7
firmware's usual flags) at the levels where GCC once found no registers for their assembly.

Our QEMU builds use -mfloat-abi=soft (mcu.MCU_CFLAGS); with an FPU (hard or softfp ABI) GCC
allocates the core registers differently, and tn_m7_subfc's blocks of eight rows (-O2, -O3, -Os)
and tn_m7_subfc16's blocks of six rows (-O2) failed with "'asm' operand has impossible
constraints", and so did tn_m7_fc16's blocks of two rows on a word-aligned input (per-channel
multipliers; -O2 or -Og depending on the layer). Compile-only checks of small synthetic graphs
and of the MLPerf autoencoder architecture (PTQ at w4a4 and w2a2), and a QEMU run of the blocks
of six's FPU form (the loop's end read from memory) built without an FPU, bit-exact with the
simulator.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tinyopt  # noqa: F401  (prepares TensorFlow before tf_keras)
from tinyopt.deploy import codegen, mcu
from tests._qemu_many import check_many
from tests.test_build_levels import ALL_LEVELS, ARM, _arm_gcc, _compile
from tests.test_kernels_m7 import _conv, chain
from tests.test_kernels_m7_sub import _dense

assert "-mfloat-abi=hard" in ARM and "-mfpu=fpv5-d16" in ARM, ARM


def _oct_w2():
    """Dense 128 -> 64 of 2-bit weights over 8-bit inputs (tn_m7_subfc's blocks of eight rows),
    then two small layers (tn_m7_subfc16)."""
    return chain(7, [_dense(64, 128, 2, 2), _dense(64, 64, 2, 2), _dense(16, 64, 2, 8)],
                 (128,), 8, False, 0, "floor")


def _s16_w4():
    """As _oct_w2 with 4-bit weights: its last layer, 64 -> 16 over 4-bit inputs, takes
    tn_m7_subfc16's blocks of six rows (R = 6), which failed at -O2."""
    return chain(7, [_dense(64, 128, 4, 4), _dense(64, 64, 4, 4), _dense(16, 64, 4, 8)],
                 (128,), 8, False, 0, "floor")


def _fc16_r2_icn():
    """Dense 124 -> 2, int8, ICN (per-channel multipliers) over signed 8-bit inputs: tn_m7_fc16's
    one block of two rows, 31 groups (the word-aligned input's one, two, four and eight-group
    forms all present); failed at -Og with an FPU (the kernel sweep, session 22)."""
    return chain(7, [_dense(2, 124, 8, 8, icn=True)], (124,), 8, True, 0, "floor")


def _fc16_r2_w2():
    """The kernel sweep's case (session 22): a 3 x 3 / 2 conv2d of 4-bit weights (10 x 10 x 10
    -> 5 x 5 x 28), then a dense layer 700 -> 2 of 2-bit weights, ICN, over its unsigned 8-bit
    codes, which tn_m7_subfc16 hands to tn_m7_fc16 (175 groups): failed at every level with an
    FPU."""
    return chain(7, [_conv((5, 5, 28), (28, 3, 3, 10), 4, 8, stride=(2, 2), padding=(0, 1, 0, 1),
                           per_channel=True), dict(kind="flatten"),
                     _dense(2, 700, 2, 8, icn=True)], (10, 10, 10), 8, False, 0, "floor")


def _subconv_add_r1():
    """The kernel sweep's case subconv_add_hard_impossible (session 22) on the TFLite rounding,
    which takes tn_m7_subconv without the sweep's roomy plan (steps.SCRATCH_ONLY_WHERE_FREE
    holds for floor graphs only): a 3x3 conv2d of 4-bit weights, 47 -> 47 channels over 8-bit
    codes, RAW 1, fused with the ADD of the graph input (MODE 2). TN_SC_G4R1's fourteen
    registers had impossible constraints with an FPU at -O1, -O2 and -O3 (the floor graph:
    -O2, -O3, -Os); TN_SC_LEAN_BLOCKS' thirteen (TN_SC_LEAN13) compile."""
    from tests.test_kernel_sweep import KNOWN, residual
    args = dict(dict(KNOWN)["subconv_add_hard_impossible"]["args"], rounding="tflite_single")
    return residual(**args)


# name -> (graph, a call its model.c must hold, the levels that failed before the fix)
SYNTHETIC = {"oct_w2": (_oct_w2, "tn_m7_subfc(", ["-O2", "-O3"]),
             "s16_w4": (_s16_w4, "tn_m7_subfc16(", ["-O2"]),
             "fc16_r2_icn": (_fc16_r2_icn, "tn_m7_fc16(", ["-Og"]),
             "fc16_r2_w2": (_fc16_r2_w2, "tn_m7_subfc16(", ["-O2"]),
             "subconv_add_r1": (_subconv_add_r1, "tn_m7_subconv(", ["-O2"])}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """name -> the export of SYNTHETIC[name]'s graph, made once."""
    made = {}

    def get(name):
        if name not in made:
            made[name] = codegen.export_c(SYNTHETIC[name][0](), tmp_path_factory.mktemp(name),
                                          kernels="m7")
        return made[name]
    return get


@pytest.mark.slow  # a compile per level (about a second each)
@pytest.mark.parametrize("name,level", [(n, lv) for n, (_, _, lvs) in SYNTHETIC.items()
                                        for lv in lvs])
def test_sub_byte_fc_compiles_with_an_fpu(name, level, synthetic, tmp_path):
    """model.c of a small graph, hard float, at a level where its assembly had impossible
    constraints."""
    _arm_gcc()
    export = synthetic(name)
    assert SYNTHETIC[name][1] in (Path(export.out_dir) / "model.c").read_text()
    _compile(ARM, export, level, tmp_path)


@pytest.fixture(scope="module")
def autoencoder(tmp_path_factory):
    """(wb, ab) -> the MLPerf autoencoder architecture (ad_fcae) PTQ'd at a uniform policy on
    seeded random inputs, exported once."""
    made = {}

    def get(wb, ab):
        if (wb, ab) not in made:
            import tf_keras as keras
            from tinyopt.front import zoo
            from tinyopt.mixed import lower, ptq
            from tinyopt.mixed.policy import Policy
            from tinyopt.studies.any_graph import mlperf_architecture
            try:
                model = mlperf_architecture("ad_fcae", classes=640, seed=0)
            except (FileNotFoundError, zoo.ModelNotFound) as exc:
                pytest.skip(str(exc))
            x = np.random.default_rng(0).uniform(0, 1, (8, *model.input_shape[1:]))
            keras.utils.set_random_seed(0)
            graph = lower.convert(ptq.quantize_mixed(
                model, Policy.uniform(model, wb, ab, "PL"), x.astype(np.float32)))
            made[wb, ab] = codegen.export_c(graph, tmp_path_factory.mktemp(f"ad{wb}{ab}"),
                                            kernels="m7")
        return made[wb, ab]
    return get


@pytest.mark.slow  # PTQ of a Keras model and three builds
@pytest.mark.parametrize("wb,ab", [(4, 4), (2, 2)])
def test_autoencoder_compiles_with_an_fpu(wb, ab, autoencoder, tmp_path):
    """The autoencoder's model.c, hard float, at -O2, -O3 and -Os (all three failed in
    tn_m7_subfc's blocks of eight rows); make test compiles -O2, a firmware's usual level (the
    synthetic graph oct_w2 keeps -O3 of the same blocks), make test-levels all three."""
    _arm_gcc()
    export = autoencoder(wb, ab)
    assert "tn_m7_subfc(" in (Path(export.out_dir) / "model.c").read_text()
    for level in ("-O2", "-O3", "-Os") if ALL_LEVELS else ("-O2",):
        _compile(ARM, export, level, tmp_path)


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
def test_subfc16_fpu_form_under_qemu(qemu, tmp_path, monkeypatch):
    """tn_m7_subfc16's FPU form (the loop's end read from memory: TN_S16_END_MEM, what
    __ARM_FP selects) built for our soft-float QEMU target, bit-exact with the simulator on
    test_subfc_fast's chains (every block size, 4 / 2-bit inputs, signed and not) and _s16_w4."""
    from tests.test_subfc_fast import S16_CHAINS, _s16_graph
    monkeypatch.setattr(mcu, "MCU_CFLAGS", (*mcu.MCU_CFLAGS, "-DTN_S16_END_MEM"))
    graphs = {name: _s16_graph(name) for name in S16_CHAINS}
    graphs["s16_w4"] = _s16_w4()
    xs = {}
    for name, g in graphs.items():
        lo = -(1 << (g.input_bits - 1)) if g.input_signed else 0
        xs[name] = np.random.default_rng(5).integers(lo, lo + (1 << g.input_bits),
                                                     (4, *g.input_shape))
    check_many(graphs, xs, tmp_path, host_images=4, mcu_images=3)  # one Cortex-M7 program


def _c4_chain():
    """Pointwise layers of 4-bit weights over 8-bit codes, 4, 8, .. 32 input channels: KP = C
    lanes, tn_m7_subconv's RAW 2 blocks of NU = C / 2 lane pairs, so every part TN_SC_C4_BLOCKS
    combines (the first two pairs, then two, four, the loop of eight: NU - 2 = 0 .. 14)."""
    from tests.test_kernels_m7 import _conv
    layers = [_conv((5, 5, c + 4), (c + 4, 1, 1, c), 4, 8, per_channel=True)
              for c in range(4, 33, 4)]
    return chain(23, [*layers, dict(kind="flatten"), _dense(3, 900, 4, 32, out_signed=True,
                                                            requantize=False)],
                 (5, 5, 4), 8, False, 0, "floor")


@pytest.mark.slow  # a compile per level
@pytest.mark.parametrize("level", ["-O1", "-Og"])
def test_subconv_c4_compiles_with_an_fpu(level, tmp_path, monkeypatch):
    """_c4_chain's model.c, hard float, at -O1 and -Og, where TN_SC_C4_BLOCKS' statement per
    part (sums "+&r" between them) had impossible constraints in the trained ResNet-8 at w4a4
    (-O1) and w4a8 (-O1, -Og); with an FPU (__ARM_FP) the one statement TN_SC_C4_ONE."""
    from tinyopt.integer import steps as steps_mod
    _arm_gcc()
    monkeypatch.setattr(steps_mod, "SCRATCH_ONLY_WHERE_FREE", False)
    export = codegen.export_c(_c4_chain(), tmp_path / "src", kernels="m7")
    assert export.kernels.count("sub") == 9
    _compile(ARM, export, level, tmp_path)


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
def test_subconv_c4_one_statement_under_qemu(qemu, tmp_path, monkeypatch):
    """TN_SC_C4_ONE (what __ARM_FP selects) built for our soft-float QEMU target, bit-exact with
    the simulator on _c4_chain (every combination of its parts)."""
    from tinyopt.integer import steps as steps_mod
    monkeypatch.setattr(steps_mod, "SCRATCH_ONLY_WHERE_FREE", False)
    monkeypatch.setattr(mcu, "MCU_CFLAGS", (*mcu.MCU_CFLAGS, "-DTN_SC_C4_ONE=1"))
    g = _c4_chain()
    x = np.random.default_rng(5).integers(0, 256, (4, 5, 5, 4))
    r = mcu.deploy(g, x, tmp_path, name="c4one", host_images=4, mcu_images=2)
    s = r["summary"]
    assert s["host_mismatching_values"] == 0 and s["mcu_mismatching_values"] == 0
    assert all(k == "sub" for k in r["export"].kernels if k != "portable")

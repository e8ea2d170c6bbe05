"""HARD_SWISH (tinyopt/integer/ops/hard_swish.py, tinyopt/deploy/c/ops/tn_hard_swish.c): the
simulator against LiteRT's reference kernels and TFLite Micro on every element, at input scales
that take each branch of the relu-ish rescaling (left shift, none, right shift); the C kernel on
the host against the simulator."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import tinyopt  # noqa: F401  (sets up tf_keras)
from tests import _keras_nets as nets
from tests import _ops
from tinyopt.integer import sim
from tinyopt.integer.ops.hard_swish import hard_swish_int8, int16_multiplier

# converts Keras models and builds C: make test runs it, the edit-test loop (test-fast) not
pytestmark = pytest.mark.slow

SCALES = (0.05, 1.0, 40.0)  # conv weights scaled: hard_swish input ranges of ~0.1, ~2, ~80


def _model(scale: float):
    keras = nets._keras()
    L = keras.layers
    x = inp = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same")(x)
    x = L.Multiply()([x, L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)])  # Keras' MobileNetV3 hard-swish
    return _ops.first_conv_scaled(keras.Model(inp, L.Conv2D(4, 1)(x)), scale)


@pytest.fixture(scope="module", params=SCALES)
def hs_tflite(request) -> bytes:
    return nets.to_int8(_model(request.param))


@pytest.mark.parametrize("flavour", ["litert", "tflm"])
def test_hard_swish_matches_litert_and_tflm(hs_tflite, flavour):
    _ops.assert_matches_interpreters(hs_tflite, flavour, "hard_swish", (6, 6, 3))


def test_relu_ish_exponent_takes_every_branch():
    exps = set()
    for scale in (0.001, 0.05, 1.0, 40.0):  # the hard_swish input scale s: relu-ish exponent
        hires = np.float32(1 / 128) * np.float32(scale)
        exps.add(np.sign(int16_multiplier(hires / np.float32(3 / 32768))[1]))
    assert exps == {-1, 0, 1} or exps >= {-1, 1}


def _params(s_in: float, s_out: float):
    hires = np.float32(1 / 128) * np.float32(s_in)
    return (*int16_multiplier(hires / np.float32(3 / 32768)),
            *int16_multiplier(hires / np.float32(s_out)))


def test_arithmetic_follows_the_real_function():
    """Away from the fixed point's rounding, the codes follow x * relu6(x + 3) / 6."""
    s_in, s_out, z_in, z_out = 0.1, 0.1, 3, -5
    x = np.arange(-128, 128)
    y = hard_swish_int8(x, z_in, z_out, *_params(s_in, s_out))
    real = (x - z_in) * s_in
    want = np.clip(np.round(real * np.clip(real + 3, 0, 6) / 6 / s_out) + z_out, -128, 127)
    assert np.abs(y - want).max() <= 1
    assert np.all(y[real <= -3] == z_out)  # relu6(x + 3) = 0: real 0 exactly
    big = hard_swish_int8(x, 0, 0, 32767, 15, 32767, 0)  # extreme gains: saturate, then clamp
    assert big.min() >= -128 and big.max() == 127


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
def test_c_kernel_matches_simulator_on_the_host(hs_tflite, tmp_path):
    _ops.assert_host_c_exact(hs_tflite, "tflm", "tn_hard_swish.c", (6, 6, 3), tmp_path)


# one scale: the prefixing (file copied and renamed, the #define) does not depend on it, and
# the C kernel at every scale is test_c_kernel_matches_simulator_on_the_host's (each library
# costs a host and a Cortex-M7 compile, ~4 s of CPU)
@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
@pytest.mark.parametrize("hs_tflite", [1.0], indirect=True)
def test_prefixed_library_carries_the_op_kernel(hs_tflite, tmp_path, monkeypatch):
    """A generated library (prefix hs) copies and renames the op's kernel file too, and its host
    check agrees with the simulator."""
    from tinyopt.deploy import library
    # without generate's Cortex-M7 size compile (library_sizes, uncached, ~2.3 s of CPU): no
    # size is read here; a prefixed library with the HARD_SWISH op compiles for the Cortex-M7
    # in tests/test_m7_twins.py::test_prefixed_libraries_link_into_one_program (hsa)
    monkeypatch.setattr(library, "library_sizes", lambda export: None)
    g = sim.graph_from_tflite(hs_tflite, flavour="tflm")
    meta = library.generate(g, tmp_path / "hs", name="hs", check_images=8)
    assert "hs_tn_hard_swish.c" in meta["sources"]
    text = (tmp_path / "hs" / "hs_tinyopt_nn.h").read_text()
    assert "#define tn_run_hard_swish hs_tn_run_hard_swish" in text
    assert meta["check"]["mismatching_values"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("hs_tflite", [1.0], indirect=True)  # the fixture's model, not another
def test_hard_swish_under_qemu(hs_tflite, tmp_path):
    from tinyopt.deploy import mcu
    ok, why = mcu.toolchain()
    if not ok:
        pytest.skip(why)
    g = sim.graph_from_tflite(hs_tflite, flavour="tflm")
    x = _ops.int8_inputs((6, 6, 3), 6, 3)
    s = mcu.deploy(g, x, tmp_path, name="hs", mcu_images=3)["summary"]
    assert s["host_images_exact"] == s["host_images"] and s["mcu_images_exact"] == 3

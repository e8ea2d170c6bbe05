"""LOGISTIC (tinyopt/integer/ops/logistic.py, tinyopt/deploy/c/ops/tn_logistic.c): LiteRT's float
lookup table and TFLite Micro's fixed point against the interpreters on every element, at input
scales from narrow to saturating; the swish x * sigmoid(x) (LOGISTIC + MUL); the table against
LiteRT over every code for many scales; the C kernel on the host against the simulator."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import tinyopt  # noqa: F401  (sets up tf_keras)
from tests import _keras_nets as nets
from tests import _ops
from tinyopt.integer import sim
from tinyopt.integer.ops import logistic
from tinyopt.litert.reference import litert_reference

# converts Keras models and builds C: make test runs it, the edit-test loop (test-fast) not
pytestmark = pytest.mark.slow

SCALES = (0.05, 1.0, 30.0)  # conv weights scaled: sigmoid inputs of range ~0.2, ~4, ~120


def _model(scale: float, swish: bool = False):
    keras = nets._keras()
    L = keras.layers
    x = inp = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same")(x)
    s = L.Activation("sigmoid")(x)
    x = L.Multiply()([x, s]) if swish else s
    return _ops.first_conv_scaled(keras.Model(inp, L.Conv2D(4, 1)(x)), scale)


@pytest.fixture(scope="module", params=SCALES)
def lg_tflite(request) -> bytes:
    return nets.to_int8(_model(request.param))


@pytest.fixture(scope="module")
def swish_tflite() -> bytes:
    return nets.to_int8(_model(1.0, swish=True))


def _check(tflite: bytes, flavour: str, kinds=("logistic",)):
    return _ops.assert_matches_interpreters(tflite, flavour, kinds, (6, 6, 3), min_unique=15,
                                            count=None)


@pytest.mark.parametrize("flavour", ["litert", "tflm"])
def test_logistic_matches_litert_and_tflm(lg_tflite, flavour):
    g = _check(lg_tflite, flavour)
    node = _ops.nodes(g, "logistic")[0]
    assert (node.table is not None) == (flavour == "litert")


@pytest.mark.parametrize("flavour", ["litert", "tflm"])
def test_swish_logistic_and_mul(swish_tflite, flavour):
    _check(swish_tflite, flavour, kinds=("logistic", "mul"))


def test_flavours_differ_somewhere():
    """The two runtimes' arithmetic is not the same function: the import must follow the
    flavour (a table everywhere would be wrong for TFLM on some codes)."""
    x = np.arange(-128, 128)
    diffs = 0
    for s in np.geomspace(1e-4, 2, 300):  # above ~4 TFLM saturates every nonzero input
        for z in (-128, 0, 5):
            table = logistic.litert_table(s, z, 1 / 256, -128).view(np.int8)
            mult, shift, _ = logistic.tflm_params(s)
            fixed = logistic.logistic_int8_fixed(x, z, mult, shift)
            assert np.abs(table[x.astype(np.uint8)].astype(int) - fixed).max() <= 1
            diffs += int(np.sum(table[x.astype(np.uint8)] != fixed))
    assert diffs > 0


def test_fixed_point_saturates_outside_the_radius():
    mult, shift, r = logistic.tflm_params(0.25)
    x = np.arange(-128, 128)
    y = logistic.logistic_int8_fixed(x, 0, mult, shift)
    assert np.all(y[x <= -r] == -128) and np.all(y[x >= r] == 127)
    assert y[x == 0][0] == 0  # sigmoid(0) = 1/2: code 128 - 128
    assert np.all(np.diff(y) >= 0)


def test_table_matches_litert_on_every_code():
    """Sigmoid of a model input (scales and zero points set directly): all 256 codes, many
    quantizations, against LiteRT's table (the float32 exp question, see _expf)."""
    keras = nets._keras()
    inp = keras.Input((256,))
    m = keras.Model(inp, keras.layers.Activation("sigmoid")(keras.layers.Dense(256)(inp)))
    tfl = nets.to_int8(m)
    g = sim.graph_from_tflite(tfl, flavour="litert")
    node = _ops.nodes(g, "logistic")[0]
    x = _ops.int8_inputs((256,), 50, 0)
    got = sim.run_tflite(tfl, x, trace=True, flavour="litert")[node.name]
    ref = litert_reference(tfl, x, tensors=[node.name])[node.name]
    np.testing.assert_array_equal(np.asarray(got).reshape(ref.shape), ref)


def test_import_refuses_other_output_quantization(lg_tflite):
    g = sim.graph_from_tflite(lg_tflite)
    node = _ops.nodes(g, "logistic")[0]
    node.out_zero_point = 0
    with pytest.raises(ValueError, match="out_zero_point must be -128"):
        node.validate()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
@pytest.mark.parametrize("flavour", ["litert", "tflm"])
def test_c_kernel_matches_simulator_on_the_host(lg_tflite, flavour, tmp_path):
    _ops.assert_host_c_exact(lg_tflite, flavour, "tn_logistic.c", (6, 6, 3), tmp_path)

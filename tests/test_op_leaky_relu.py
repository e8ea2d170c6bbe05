"""LEAKY_RELU (tinyopt/integer/ops/leaky_relu.py, tinyopt/deploy/c/ops/tn_leaky_relu.c): the
simulator against LiteRT's reference kernels and TFLite Micro on every element, for alphas below
and above one; the C kernel on the host against the simulator."""
from __future__ import annotations

import shutil

import pytest

import tinyopt  # noqa: F401  (sets up tf_keras)
from tests import _keras_nets as nets
from tests import _ops
from tinyopt.integer import sim

# converts Keras models and builds C: make test runs it, the edit-test loop (test-fast) not
pytestmark = pytest.mark.slow


def _model(alpha: float):
    keras = nets._keras()
    L = keras.layers
    x = inp = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same")(x)
    x = L.LeakyReLU(alpha)(x)
    x = L.Conv2D(4, 1)(x)
    return nets.randomize_bias(keras.Model(inp, x))


@pytest.fixture(scope="module", params=[0.1, 0.3, 2.5])
def lr_tflite(request) -> bytes:
    return nets.to_int8(_model(request.param))


@pytest.mark.parametrize("flavour", ["litert", "tflm"])
def test_leaky_relu_matches_litert_and_tflm(lr_tflite, flavour):
    _ops.assert_matches_interpreters(lr_tflite, flavour, "leaky_relu", (6, 6, 3))


def test_negative_inputs_take_the_alpha_multiplier(lr_tflite):
    node = _ops.node(sim.graph_from_tflite(lr_tflite), "leaky_relu")
    assert node.m0[0] != node.m0[1] or node.n0[0] != node.n0[1]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
def test_c_kernel_matches_simulator_on_the_host(lr_tflite, tmp_path):
    _ops.assert_host_c_exact(lr_tflite, "tflm", "tn_leaky_relu.c", (6, 6, 3), tmp_path)

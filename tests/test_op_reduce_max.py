"""REDUCE_MAX (tinyopt/integer/ops/reduce_max.py, tinyopt/deploy/c/ops/tn_reduce_max.c): Keras'
GlobalMaxPooling2D with and without keepdims and GlobalMaxPooling1D, the simulator against
LiteRT's reference kernels and TFLite Micro on every element; refusals; the C kernel on the
host against the simulator."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import tinyopt  # noqa: F401  (sets up tf_keras)
from tests import _keras_nets as nets
from tests import _ops
from tinyopt.integer import sim

# converts Keras models and builds C: make test runs it, the edit-test loop (test-fast) not
pytestmark = pytest.mark.slow


def _gmp2d(keepdims: bool):
    keras = nets._keras()
    L = keras.layers
    x = inp = keras.Input((6, 5, 3))
    x = L.Conv2D(8, 3, padding="same")(x)
    x = L.GlobalMaxPooling2D(keepdims=keepdims)(x)
    x = L.Conv2D(4, 1)(x) if keepdims else L.Dense(4)(x)
    return nets.randomize_bias(keras.Model(inp, x))


def _gmp1d():
    keras = nets._keras()
    L = keras.layers
    x = inp = keras.Input((10, 3))
    x = L.Conv1D(8, 3, padding="same")(x)
    x = L.GlobalMaxPooling1D()(x)
    return nets.randomize_bias(keras.Model(inp, L.Dense(4)(x)))


MODELS = {"2d": (lambda: _gmp2d(False), (6, 5, 3), (8,)),
          "2d_keepdims": (lambda: _gmp2d(True), (6, 5, 3), (1, 1, 8)),
          "1d": (_gmp1d, (10, 3), (8,))}


@pytest.fixture(scope="module", params=sorted(MODELS))
def rm_model(request):
    build, shape, out_shape = MODELS[request.param]
    return nets.to_int8(build()), shape, out_shape


@pytest.mark.parametrize("flavour", ["litert", "tflm"])
def test_reduce_max_matches_litert_and_tflm(rm_model, flavour):
    tfl, shape, out_shape = rm_model
    g = _ops.assert_matches_interpreters(tfl, flavour, "reduce_max", shape)
    assert tuple(_ops.node(g, "reduce_max").out_shape) == out_shape


def test_checks_name_the_shape(rm_model):
    tfl, _, _ = rm_model
    node = _ops.node(sim.graph_from_tflite(tfl), "reduce_max")
    node.out_shape = (2, node.out_shape[-1])
    with pytest.raises(ValueError, match="every axis but the last"):
        node.validate()


def test_simulate_is_the_maximum_over_positions():
    from tinyopt.integer.graph import IntegerLayer
    from tinyopt.integer.ops import reduce_max
    layer = IntegerLayer("reduce_max", "m", (4, 3, 2), (1, 1, 2), in_signed=True,
                         out_signed=True)
    layer.validate()
    x = np.random.default_rng(0).integers(-128, 128, (7, 4, 3, 2))

    class P:
        pass
    p = P()
    p.layer = layer
    y = reduce_max.simulate(p, [x], False)
    np.testing.assert_array_equal(y, x.max(axis=(1, 2), keepdims=True))


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
def test_c_kernel_matches_simulator_on_the_host(rm_model, tmp_path):
    tfl, shape, _ = rm_model
    _ops.assert_host_c_exact(tfl, "tflm", "tn_reduce_max.c", shape, tmp_path)

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
from tinyopt.integer import sim
from tinyopt.litert.reference import litert_reference, tflm_reference


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


def _node(g):
    nodes = [lay for lay in g.layers if lay.kind == "reduce_max"]
    assert len(nodes) == 1, "the converter did not emit one REDUCE_MAX"
    return nodes[0]


@pytest.mark.parametrize("flavour", ["litert", "tflm"])
def test_reduce_max_matches_litert_and_tflm(rm_model, flavour):
    tfl, shape, out_shape = rm_model
    g = sim.graph_from_tflite(tfl, flavour=flavour)
    node = _node(g)
    assert tuple(node.out_shape) == out_shape
    x = np.random.default_rng(1).integers(-128, 128, (200, *shape)).astype(np.int8)
    got = sim.run_tflite(tfl, x, trace=True, flavour=flavour)[node.name]
    ref = (litert_reference if flavour == "litert" else tflm_reference)(
        tfl, x, tensors=[node.name])[node.name]
    assert len(np.unique(ref)) > 20, "a near-constant maximum checks little"
    np.testing.assert_array_equal(np.asarray(got).reshape(ref.shape), ref)


def test_checks_name_the_shape(rm_model):
    tfl, _, _ = rm_model
    node = _node(sim.graph_from_tflite(tfl))
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
    from tinyopt.deploy import codegen, mcu
    tfl, shape, _ = rm_model
    g = sim.graph_from_tflite(tfl, flavour="tflm")
    e = codegen.export_c(g, tmp_path / "src")
    assert any(p.name.endswith("tn_reduce_max.c") for p in e.sources)
    exe = mcu.build_host(e, build_dir=tmp_path / "host")
    x = np.random.default_rng(2).integers(-128, 128, (40, *shape)).astype(np.int8)
    want = codegen.reference_output(g, x)
    assert len({r.tobytes() for r in want}) > 1
    np.testing.assert_array_equal(mcu.run_host(exe, e, x), want)

"""LEAKY_RELU (tinyopt/integer/ops/leaky_relu.py, tinyopt/deploy/c/ops/tn_leaky_relu.c): the
simulator against LiteRT's reference kernels and TFLite Micro on every element, for alphas below
and above one; the C kernel on the host against the simulator."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import tinyopt  # noqa: F401  (sets up tf_keras)
from tests import _keras_nets as nets
from tinyopt.integer import sim
from tinyopt.litert.reference import litert_reference, tflm_reference


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


def _node(g):
    nodes = [lay for lay in g.layers if lay.kind == "leaky_relu"]
    assert len(nodes) == 1, "the converter did not emit one LEAKY_RELU"
    return nodes[0]


@pytest.mark.parametrize("flavour", ["litert", "tflm"])
def test_leaky_relu_matches_litert_and_tflm(lr_tflite, flavour):
    g = sim.graph_from_tflite(lr_tflite, flavour=flavour)
    node = _node(g)
    x = np.random.default_rng(1).integers(-128, 128, (200, 6, 6, 3)).astype(np.int8)
    got = sim.run_tflite(lr_tflite, x, trace=True, flavour=flavour)[node.name]
    ref = (litert_reference if flavour == "litert" else tflm_reference)(
        lr_tflite, x, tensors=[node.name])[node.name]
    assert len(np.unique(ref)) > 20, "a near-constant activation checks little"
    np.testing.assert_array_equal(np.asarray(got).reshape(ref.shape), ref)


def test_negative_inputs_take_the_alpha_multiplier(lr_tflite):
    node = _node(sim.graph_from_tflite(lr_tflite))
    assert node.m0[0] != node.m0[1] or node.n0[0] != node.n0[1]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
def test_c_kernel_matches_simulator_on_the_host(lr_tflite, tmp_path):
    from tinyopt.deploy import codegen, mcu
    g = sim.graph_from_tflite(lr_tflite, flavour="tflm")
    e = codegen.export_c(g, tmp_path / "src")
    assert any(p.name.endswith("tn_leaky_relu.c") for p in e.sources)
    exe = mcu.build_host(e, build_dir=tmp_path / "host")
    x = np.random.default_rng(2).integers(-128, 128, (40, 6, 6, 3)).astype(np.int8)
    want = codegen.reference_output(g, x)
    assert len({r.tobytes() for r in want}) > 1
    np.testing.assert_array_equal(mcu.run_host(exe, e, x), want)

"""RELU / RELU6 as TFLite operators of their own (tinyopt/integer/ops/relu.py, imported as the
quantize kind with the activation's clamp): the simulator against LiteRT's reference kernels and
TFLite Micro, and the C on the host, on notebook 10's U-Net, whose Conv2DTranspose activation the
converter leaves as a separate RELU (its output joins a concatenation)."""
from __future__ import annotations

import shutil

import pytest

import tinyopt  # noqa: F401  (sets up tf_keras)
from tests import _ops

# converts Keras models and builds C: make test runs it, the edit-test loop (test-fast) not
pytestmark = pytest.mark.slow

SHAPE = (32, 32, 3)


@pytest.fixture(scope="module")
def unet_tflite() -> bytes:
    from tinyopt.integer.from_litert import tflite_ops
    from tinyopt.studies import model_zoo
    tfl = model_zoo.int8_tflite("unet", model_zoo.build("unet"))
    assert "RELU" in [op for op, _ in tflite_ops(tfl)], "the converter fused the RELU"
    return tfl


@pytest.mark.parametrize("flavour", ["litert", "tflm"])
def test_relu_matches_litert_and_tflm(unet_tflite, flavour):
    g = _ops.assert_matches_interpreters(unet_tflite, flavour, (), SHAPE, images=50,
                                         every_layer=True, min_compared=5, engine="reference")
    relu = [lay for lay in g.layers if lay.extra.get("tflite_op") == "RELU"]
    assert relu and all(lay.kind == "quantize" and lay.act_min is not None for lay in relu)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
def test_relu_c_matches_simulator_on_the_host(unet_tflite, tmp_path):
    _ops.assert_host_c_exact(unet_tflite, "tflm", "tn_transpose_conv.c", SHAPE, tmp_path,
                             images=10)

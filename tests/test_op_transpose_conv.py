"""TRANSPOSE_CONV (tinyopt/integer/ops/transpose_conv.py, tinyopt/deploy/c/ops/
tn_transpose_conv.c): a small U-Net (Conv -> MaxPool -> Conv -> Conv2DTranspose 'same' and
'valid', strides 2, with bias -> Concatenate -> Conv -> sigmoid) converted for one image; the
simulator against LiteRT's reference kernels and TFLite Micro on every element of every
tensor, the C on the host against the simulator."""
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


@pytest.fixture(scope="module")
def unet():
    return nets.unet_int8()


@pytest.mark.parametrize("flavour", ["litert", "tflm"])
def test_matches_litert_and_tflm(unet, flavour):
    """Every tensor compared; each TRANSPOSE_CONV's output varies (over 50 codes)."""
    g = _ops.assert_matches_interpreters(unet, flavour, "transpose_conv", (8, 8, 3), images=50,
                                         min_unique=50, count=2, every_layer=True)
    nodes = _ops.nodes(g, "transpose_conv", count=2)
    assert {n.padding for n in nodes} == {(0, 1, 0, 1), (0, 0, 0, 0)}
    assert all(np.any(n.bias != 0) for n in nodes), "the bias should be TRANSPOSE_CONV's input"


def test_refuses_bad_fields(unet):
    g = sim.graph_from_tflite(unet)
    node = _ops.nodes(g, "transpose_conv")[0]
    node.bias = node.bias[:-1]
    with pytest.raises(ValueError, match="bias must hold one entry per output channel"):
        g.validate()
    node.bias = np.zeros(node.out_shape[-1], np.int32)
    node.stride = (0, 2)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        g.validate()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
def test_c_kernel_matches_simulator_on_the_host(unet, tmp_path):
    _ops.assert_host_c_exact(unet, "tflm", "tn_transpose_conv.c", (8, 8, 3), tmp_path,
                             images=30)

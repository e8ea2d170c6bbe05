"""RESIZE_NEAREST_NEIGHBOR (tinyopt/integer/ops/resize_nearest.py,
tinyopt/deploy/c/ops/tn_resize_nearest.c): Keras UpSampling2D (integer factors, unequal per
axis) and tf.image.resize "nearest" to non-multiple sizes, the simulator against LiteRT's
reference kernels and TFLite Micro on every element; the other converter settings refused by
name; the C kernel on the host against the simulator."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import tinyopt  # noqa: F401  (sets up tf_keras)
from tests import _keras_nets as nets
from tests import _ops
from tinyopt.integer import sim
from tinyopt.integer.ops import resize_nearest

# converts Keras models and builds C: make test runs it, the edit-test loop (test-fast) not
pytestmark = pytest.mark.slow


def _model(size=None, factor=(2, 3)):
    keras = nets._keras()
    L = keras.layers
    x = inp = keras.Input((4, 5, 3))
    x = L.Conv2D(8, 3, padding="same")(x)
    if size is None:
        x = L.UpSampling2D(factor)(x)
    else:
        x = L.Resizing(*size, interpolation="nearest")(x)
    return nets.randomize_bias(keras.Model(inp, L.Conv2D(4, 1)(x)))


MODELS = {"upsampling_2x3": dict(factor=(2, 3)), "resize_7x13": dict(size=(7, 13)),
          "resize_down_3x2": dict(size=(3, 2))}


@pytest.fixture(scope="module", params=sorted(MODELS))
def rn_tflite(request) -> bytes:
    return nets.to_int8(_model(**MODELS[request.param]))


@pytest.mark.parametrize("flavour", ["litert", "tflm"])
def test_resize_matches_litert_and_tflm(rn_tflite, flavour):
    _ops.assert_matches_interpreters(rn_tflite, flavour, "resize_nearest", (4, 5, 3))


def test_indices_of_integer_factors_repeat_each_row():
    np.testing.assert_array_equal(resize_nearest.source_indices(4, 8),
                                  np.repeat(np.arange(4), 2))
    np.testing.assert_array_equal(resize_nearest.source_indices(5, 15),
                                  np.repeat(np.arange(5), 3))


def test_other_options_are_refused_by_name(rn_tflite):
    from tinyopt.integer.tflite_ctx import ImportContext, TFLiteModel
    m = TFLiteModel(rn_tflite)
    ctx = ImportContext(m, "litert")
    op = next(o for o in m.sub.operators if m.op_names[o.opcodeIndex] == "RESIZE_NEAREST_NEIGHBOR")
    op.builtinOptions.alignCorners, op.builtinOptions.halfPixelCenters = True, False
    with pytest.raises(ValueError, match="align_corners=True, half_pixel_centers=False"):
        resize_nearest._import_resize_nearest(ctx, op, "RESIZE_NEAREST_NEIGHBOR")


def test_table_out_of_range_is_refused(rn_tflite):
    node = _ops.node(sim.graph_from_tflite(rn_tflite), "resize_nearest")
    table = node.table.view("<u2").copy()
    table[0] = node.in_shape[0]
    node.table = table.view(np.uint8)
    with pytest.raises(ValueError, match="table indexes row"):
        node.validate()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
def test_c_kernel_matches_simulator_on_the_host(rn_tflite, tmp_path):
    _ops.assert_host_c_exact(rn_tflite, "tflm", "tn_resize_nearest.c", (4, 5, 3), tmp_path)

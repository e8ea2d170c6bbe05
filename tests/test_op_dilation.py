"""Dilated convolutions (IntegerLayer.dilation; tinyopt/integer/ops/compute.py, tn_acc in
tinyopt/deploy/c/tinyopt_nn.c): Conv2D / DepthwiseConv2D with dilation_rate 2 ('same' and
'valid') and a causal dilated TCN (Conv1D k=3, dilation 1, 2, 4, padding 'causal': PAD then
CONV_2D with dilation factors) converted for one image; the simulator (reference engine) against
LiteRT's reference kernels and TFLite Micro on every element of every tensor, the portable C on
the host against the simulator; the field round-trips through save / load."""
from __future__ import annotations

import shutil

import pytest

import tinyopt  # noqa: F401  (sets up tf_keras)
from tests import _keras_nets as nets
from tests import _ops
from tinyopt.integer import sim
from tinyopt.integer.graph import IntegerGraph

# converts Keras models and builds C: make test runs it, the edit-test loop (test-fast) not
pytestmark = pytest.mark.slow


def _dilated_2d():
    keras = nets._keras()
    L = keras.layers
    x = inp = keras.Input((12, 12, 3))
    x = L.Conv2D(8, 3, dilation_rate=2, padding="same", activation="relu")(x)
    x = L.DepthwiseConv2D(3, dilation_rate=2, padding="same")(x)
    x = L.Conv2D(4, 3, dilation_rate=2, padding="valid")(x)
    return keras.Model(inp, L.Flatten()(x))


def _tcn():
    keras = nets._keras()
    L = keras.layers
    x = inp = keras.Input((32, 3))
    for d in (1, 2, 4):
        x = L.Conv1D(8, 3, dilation_rate=d, padding="causal", activation="relu")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(4)(x))


MODELS = {"dilated_2d": (_dilated_2d, (12, 12, 3), {(2, 2)}),
          "causal_tcn": (_tcn, (32, 3), {(1, 2), (1, 4)})}


@pytest.fixture(scope="module", params=sorted(MODELS))
def dilated(request):
    from tinyopt.litert.convert import to_tflite
    build, shape, dilations = MODELS[request.param]
    model = nets.randomize_bias(build())
    tfl = to_tflite(model, "int8", calibration=nets.calibration(model), batch_size=1)
    return tfl, shape, dilations


@pytest.mark.parametrize("flavour", ["litert", "tflm"])
def test_matches_litert_and_tflm(dilated, flavour):
    """The reference engine (the fast one leaves dilations to it) on every tensor LiteRT /
    TFLM report, at least three; the output varies."""
    tfl, shape, dilations = dilated
    g = _ops.assert_matches_interpreters(tfl, flavour, (), shape, images=50, every_layer=True,
                                         min_compared=3, engine="reference")
    assert {tuple(lay.dilation) for lay in g.layers} - {(1, 1)} == dilations


def test_dilation_saved_and_checked(dilated, tmp_path):
    tfl, _, dilations = dilated
    g = sim.graph_from_tflite(tfl)
    back = IntegerGraph.load(g.save(tmp_path / "g.npz"))
    assert {tuple(lay.dilation) for lay in back.layers} - {(1, 1)} == dilations
    node = next(lay for lay in back.layers if tuple(lay.dilation) != (1, 1))
    node.dilation = (0, 2)
    with pytest.raises(ValueError, match="dilation must be two integers >= 1"):
        back.validate()
    pool = next((lay for lay in back.layers if lay.kind in ("flatten", "reshape")), None)
    if pool is not None:
        node.dilation = (1, 1)
        pool.dilation = (2, 2)
        with pytest.raises(ValueError, match="only conv2d, pointwise and depthwise"):
            back.validate()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
def test_portable_c_matches_simulator_on_the_host(dilated, tmp_path):
    tfl, shape, _ = dilated
    _ops.assert_host_c_exact(tfl, "tflm", None, shape, tmp_path, images=30,
                             kernels="portable")
    text = "".join(p.read_text() for p in (tmp_path / "src").glob("model*"))
    assert ".dil_h = 2" in text or ".dil_w = 2" in text

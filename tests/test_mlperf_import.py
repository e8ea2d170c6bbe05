"""The LiteRT importer and the simulator against the interpreters, bit for bit: the four MLPerf
Tiny int8 models and small Keras nets for each supported op, with flavour "litert" against
LiteRT's reference kernels (BUILTIN_REF) and flavour "tflm" against the tflite-micro package's
interpreter, every node's output compared."""
from __future__ import annotations

import os

import numpy as np
import pytest

from tinyopt.front import zoo
from tinyopt.integer import sim
from tinyopt.integer.from_litert import TFLITE_OPS, graph_from_tflite
from tinyopt.integer.tflite_ctx import TFLiteModel

MODELS = zoo.MLPERF_TINY


def _model(name: str) -> bytes:
    """The checked model (tinyopt.front.zoo's locator); skip when it is not there, or fail when
    TINYOPT_REQUIRE_DATA is set (as the data fixtures of conftest.py)."""
    try:
        return zoo.mlperf_tiny_tflite(name)
    except zoo.ModelNotFound as exc:
        if os.environ.get("TINYOPT_REQUIRE_DATA"):
            pytest.fail(f"{exc}; TINYOPT_REQUIRE_DATA is set, so the MLPerf Tiny models must "
                        f"be found (searched {[str(d) for d in zoo.mlperf_tiny_dirs()]})")
        pytest.skip(str(exc))


def _inputs(graph, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-128, 128, (n, *graph.input_shape)).astype(np.int8)


def litert_trace(tfl: bytes, x: np.ndarray) -> dict:
    """Every int8 tensor of LiteRT's reference kernels (BUILTIN_REF, one thread) on batch x."""
    from tinyopt.litert.reference import litert_reference
    return litert_reference(tfl, x)


def tflm_trace(tfl: bytes, x: np.ndarray, names=None) -> dict:
    """Every op output of the tflite-micro interpreter, image by image (batch 1)."""
    pytest.importorskip("tflite_micro.python.tflite_micro.runtime")
    from tinyopt.litert.reference import tflm_reference
    return tflm_reference(tfl, x, names)


def mismatches(tfl: bytes, x: np.ndarray, flavour: str, graph=None) -> dict:
    """Differing bytes per node output (nodes that are also interpreter tensors)."""
    g = graph or graph_from_tflite(tfl, flavour=flavour)
    ours = sim.run(g, x, trace=True)
    ref = litert_trace(tfl, x) if flavour == "litert" else tflm_trace(tfl, x)
    n = len(x)
    found = {k: int(np.sum(v.reshape(n, -1) != ref[k].reshape(n, -1)))
             for k, v in ours.items() if k in ref}
    assert len(found) >= len(ours) - 2, "most nodes must be compared"
    return found


# ------------------------------------------------------------------------------ MLPerf Tiny
@pytest.mark.parametrize("name", MODELS)
def test_mlperf_litert_bitexact_every_node(name):
    tfl = _model(name)
    g = graph_from_tflite(tfl)
    assert g.meta["flavour"] == "litert"
    bad = mismatches(tfl, _inputs(g, 60), "litert", g)
    assert sum(bad.values()) == 0, {k: v for k, v in bad.items() if v}
    # the int8 I/O path of run_tflite gives the same final output
    x = _inputs(g, 20, 1)
    out = litert_trace(tfl, x)[g.output_names()[0]]
    np.testing.assert_array_equal(sim.run_tflite(tfl, x), out)


@pytest.mark.parametrize("name", MODELS)
def test_mlperf_tflm_bitexact_every_node(name):
    tfl = _model(name)
    g = graph_from_tflite(tfl, flavour="tflm")
    bad = mismatches(tfl, _inputs(g, 15, 2), "tflm", g)
    assert sum(bad.values()) == 0, {k: v for k, v in bad.items() if v}


def test_the_flavours_differ_and_the_check_sees_it():
    """FULLY_CONNECTED rounds once in LiteRT's reference kernel and twice in TFLM: the FC
    autoencoder's outputs differ between the flavours, and each matches only its own
    interpreter."""
    tfl = _model("ad_fcae")
    x = _inputs(graph_from_tflite(tfl), 30, 3)
    lite = sim.run_tflite(tfl, x)
    micro = sim.run_tflite(tfl, x, flavour="tflm")
    assert int(np.sum(lite != micro)) > 0
    out = graph_from_tflite(tfl).output_names()[0]
    ref_micro = tflm_trace(tfl, x, {out})[out]
    np.testing.assert_array_equal(micro.reshape(len(x), -1), ref_micro)
    assert int(np.sum(lite.reshape(len(x), -1) != ref_micro)) > 0


# 250 random valid int8 inputs per model (seed 7), 0 differing output bytes against LiteRT
# BUILTIN_REF and the tflite-micro interpreter: tests/test_sim_fast.py::
# test_mlperf_fast_equals_reference_and_litert_tflm compares the same run_tflite outputs on the
# same inputs with the same two interpreters (and the numpy reference engine besides), so it is
# not run twice here. The acceptance run with 1,000 is notebook 07
# (results/real_models/bitexact.csv) and benchmarks/bench_mlperf.py.


def test_resnet_is_a_dag_with_residual_adds():
    g = graph_from_tflite(_model("ic_resnet8"))
    kinds = [lay.kind for lay in g.layers]
    assert kinds.count("add") == 3 and kinds[-1] == "softmax" and not g.is_chain()
    add = next(lay for lay in g.layers if lay.kind == "add")
    assert len(add.inputs) == 2 and add.left_shift == 20 and add.m0.shape == (3,)
    producers = g.producers()
    # both inputs of the first ADD are written by convolutions (a skip connection)
    assert {g.layers[producers[t]].kind for t in add.inputs} == {"conv2d"}


# ------------------------------------------------------------------------------ small Keras nets
NETS = ("residual", "concat", "conv1d", "zero_padding", "softmax_head", "qat_input_concat")
EXPECTED_OPS = {"residual": {"ADD", "DEPTHWISE_CONV_2D", "MEAN", "MAX_POOL_2D"},
                "concat": {"CONCATENATION", "AVERAGE_POOL_2D"},
                "conv1d": {"EXPAND_DIMS", "MEAN"}, "zero_padding": {"PAD"},
                "softmax_head": {"SOFTMAX"}, "qat_input_concat": {"QUANTIZE", "CONCATENATION"}}


@pytest.fixture(scope="module")
def nets():
    pytest.importorskip("tensorflow")
    from tests import _keras_nets
    return {name: _keras_nets.build(name) for name in NETS}


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("flavour", ["litert", "tflm"])
def test_keras_nets_bitexact(nets, name, flavour):
    tfl = nets[name]
    m = TFLiteModel(tfl)
    ops = {m.op_names[op.opcodeIndex] for op in m.sub.operators}
    assert EXPECTED_OPS[name] <= ops, f"the converter no longer emits {EXPECTED_OPS[name] - ops}"
    g = graph_from_tflite(tfl, flavour=flavour)
    bad = mismatches(tfl, _inputs(g, 40 if flavour == "litert" else 12, 4), flavour, g)
    assert sum(bad.values()) == 0, {k: v for k, v in bad.items() if v}


def test_unsupported_op_names_op_tensor_and_supported_set():
    pytest.importorskip("tensorflow")
    import tf_keras as keras

    from tests._keras_nets import to_int8
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, name="gate_dense"),
                              keras.layers.Activation("tanh", name="my_gate"),
                              keras.layers.Dense(2)])  # the gate is not the model output
    tfl = to_int8(model)
    with pytest.raises(ValueError) as err:
        graph_from_tflite(tfl)
    msg = str(err.value)
    assert "TANH" in msg and "my_gate" in msg and "SOFTMAX" in msg and "ADD" in msg
    with pytest.raises(ValueError, match="flavour must be one of"):
        graph_from_tflite(_model("ad_fcae"), flavour="cmsis")
    assert len(TFLITE_OPS) >= 15


def test_run_tflite_refuses_inputs_that_are_not_codes_or_on_the_wrong_scale():
    """uint8 pixels that happen to be <= 127 and float pixels in 0..255 used to pass as int8
    codes / be saturated into a [0, 1] model without a word."""
    tfl = _model("vww_mobilenet")  # int8 input representing [0, 1]
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 128, (1, 96, 96, 3)).astype(np.uint8)
    with pytest.raises(TypeError, match=r"x has dtype uint8 \(raw pixels\?.*np\.int8"):
        sim.run_tflite(tfl, pixels)
    with pytest.raises(TypeError, match=r"x has dtype int32.*x\.astype\(np\.int8\)"):
        sim.run_tflite(tfl, pixels.astype(np.int32))
    with pytest.raises(ValueError, match=r"x spans \[0, 127\] but the model's int8 input "
                                         r"represents \[0, 1\].*pixel-scale"):
        sim.run_tflite(tfl, pixels.astype(np.float32))
    with pytest.raises(ValueError, match="NaN/Inf"):
        sim.run_tflite(tfl, np.full((1, 96, 96, 3), np.nan, np.float32))
    # the same image, scaled as the model was trained, and as its int8 codes: one answer
    real = pixels.astype(np.float32) / 255.0
    codes = (np.round(real * 255) - 128).astype(np.int8)
    np.testing.assert_array_equal(sim.run_tflite(tfl, real), sim.run_tflite(tfl, codes))


def test_refusal_names_the_keras_layer_and_the_shape_ops_fix():
    from tinyopt.integer.from_litert import keras_layers_of
    assert keras_layers_of("model/re_lu/Relu6;model/tf.__operators__.add/AddV2") == \
        ["re_lu", "tf.__operators__.add"]
    assert keras_layers_of("StatefulPartitionedCall:0") == []
    pytest.importorskip("tensorflow")
    import tf_keras as keras

    from tests._keras_nets import calibration
    from tinyopt.litert.convert import to_tflite
    keras.utils.set_random_seed(0)
    inp = keras.Input((4, 4, 2))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    x = keras.layers.Reshape((8, 8), name="my_reshape")(x)
    x = keras.layers.Dense(2, name="dense_3d")(x)  # a Dense on a 3-D tensor (Tensordot)
    model = keras.Model(inp, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    cal = calibration(model)
    with pytest.raises(ValueError, match=r"RESHAPE.*my_reshape.*SHAPE.*batch_size=1"):
        graph_from_tflite(to_tflite(model, "int8", calibration=cal))
    g = graph_from_tflite(to_tflite(model, "int8", calibration=cal, batch_size=1))
    assert {lay.kind for lay in g.layers} <= {"conv2d", "reshape", "flatten", "dense"}
    # the simulator runs the converted model bit for bit (the Dense on rows included)
    from tinyopt.litert.reference import litert_reference
    tfl = to_tflite(model, "int8", calibration=cal, batch_size=1)
    x = np.random.default_rng(0).integers(-128, 128, (50, 4, 4, 2)).astype(np.int8)
    out = g.output_names()[0]
    ref = litert_reference(tfl, x, tensors=[out], batch_size=1)[out]
    np.testing.assert_array_equal(np.asarray(sim.run_tflite(tfl, x)).reshape(ref.shape), ref)

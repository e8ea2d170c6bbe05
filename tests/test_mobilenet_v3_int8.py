"""MobileNetV3 int8 end to end (issue 28): Keras MobileNetV3Small (alpha 0.75, 32x32x3,
weights=None, 10 classes, include_preprocessing: Rescaling -> MUL / ADD by constants, the
``mul_const`` / ``add_const`` nodes; hard-sigmoid's MUL by 1/6; HARD_SWISH; squeeze-and-excite)
converted for one image; the simulator against LiteRT's reference kernels and TFLite Micro on
every element of every tensor for 50 random int8 inputs, the C on the host against the
simulator. MobileNetV3Large and the minimalistic variant (slow): import and simulator vs LiteRT.

Untrained, the BatchNormalization statistics are set from one batch of calibration images
(momentum 0, one training-mode call) so activations keep a useful scale through the net."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import tinyopt  # noqa: F401  (sets up tf_keras)
from tests import _keras_nets as nets
from tinyopt.integer import sim
from tinyopt.litert.reference import litert_reference, tflm_reference

# converts Keras models and builds C: make test runs it, the edit-test loop (test-fast) not
pytestmark = pytest.mark.slow


def _convert(variant: str) -> bytes:
    from tinyopt.litert.convert import to_tflite
    keras = nets._keras()
    kw = dict(input_shape=(32, 32, 3), alpha=0.75, weights=None, classes=10,
              include_preprocessing=True)
    build = keras.applications.MobileNetV3Large if variant == "large" \
        else keras.applications.MobileNetV3Small
    model = nets.randomize_bias(build(minimalistic=variant == "minimalistic", **kw))
    cal = np.random.default_rng(0).uniform(0, 255, (64, 32, 32, 3)).astype(np.float32)
    for layer in model.layers:
        if type(layer).__name__.startswith("BatchNormalization"):
            layer.momentum = 0.0
    model(cal, training=True)  # moving statistics := this batch's
    return to_tflite(model, "int8", calibration=cal, batch_size=1)


@pytest.fixture(scope="module")
def small():
    return _convert("small")


def _inputs(n, seed):
    return np.random.default_rng(seed).integers(-128, 128, (n, 32, 32, 3)).astype(np.int8)


def _compare(tfl, flavour, n):
    g = sim.graph_from_tflite(tfl, flavour=flavour)
    x = _inputs(n, 1)
    names = [lay.name for lay in g.layers if lay.name in g.tensors]
    got = sim.run(g, x, trace=True)
    ref = (litert_reference if flavour == "litert" else tflm_reference)(tfl, x, tensors=names)
    for name in names:
        np.testing.assert_array_equal(np.asarray(got[name]).reshape(ref[name].shape), ref[name],
                                      err_msg=name)
    return g, ref


@pytest.mark.parametrize("flavour", ["litert", "tflm"])
def test_small_matches_litert_and_tflm(small, flavour):
    g, ref = _compare(small, flavour, 50)
    kinds = [lay.kind for lay in g.layers]
    assert kinds[:2] == ["mul_const", "add_const"], "Rescaling should be MUL then ADD"
    assert kinds.count("mul_const") > 1, "hard-sigmoid's * 1/6 should be a mul_const"
    assert len(np.unique(ref[g.output_names()[0]])) > 20


def test_constant_fields_checked(small):
    g = sim.graph_from_tflite(small)
    node = next(lay for lay in g.layers if lay.kind == "add_const")
    node.table = np.zeros(2, np.uint8)
    with pytest.raises(ValueError, match="table must hold the constant's int8 codes"):
        g.validate()
    node.table = np.zeros(1, np.uint8)
    node.weight_zero_point = None
    with pytest.raises(ValueError, match="weight_zero_point must hold the constant's zero"):
        g.validate()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
def test_small_c_matches_simulator_on_the_host(small, tmp_path):
    from tinyopt.deploy import codegen, mcu
    g = sim.graph_from_tflite(small, flavour="tflm")
    e = codegen.export_c(g, tmp_path / "src")
    names = {p.name for p in e.sources}
    assert {"tn_mul_const.c", "tn_add_const.c"} <= names
    exe = mcu.build_host(e, build_dir=tmp_path / "host")
    x = _inputs(20, 2)
    want = codegen.reference_output(g, x)
    assert len({r.tobytes() for r in want}) > 1
    np.testing.assert_array_equal(mcu.run_host(exe, e, x), want)


# MobileNetV3 Large and minimalistic against LiteRT and TFLite Micro: notebook 10 (0 differing
# bytes on 200 inputs each, results/model_zoo/)


@pytest.mark.slow
def test_small_under_qemu(small, tmp_path):
    """The Cortex-M7 build (its fused residual ADDs on 1 x 1 feature maps once failed to
    compile: gcc's loop analysis of the ADD tail) runs bit-exact under QEMU, and its flash, RAM
    and instructions are measured."""
    from tinyopt.deploy import mcu
    ok, why = mcu.toolchain()
    if not ok:
        pytest.skip(why)
    g = sim.graph_from_tflite(small, flavour="tflm")
    s = mcu.deploy(g, _inputs(4, 7), tmp_path, name="mv3s", mcu_images=1)["summary"]
    assert s["host_images_exact"] == s["host_images"] and s["mcu_images_exact"] == 1
    assert s["insns_per_image_mean"] > 0 and s["ram_measured"] > s["arena_bytes"]

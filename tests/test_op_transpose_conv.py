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
from tinyopt.integer import sim
from tinyopt.litert.reference import litert_reference, tflm_reference


@pytest.fixture(scope="module")
def unet():
    from tinyopt.litert.convert import to_tflite
    keras = nets._keras()
    L = keras.layers
    x = inp = keras.Input((8, 8, 3))
    a = L.Conv2D(4, 3, padding="same", activation="relu")(x)
    b = L.MaxPooling2D(2)(a)
    b = L.Conv2D(8, 3, padding="same", activation="relu")(b)
    u = L.Conv2DTranspose(4, 3, strides=2, padding="same")(b)
    v = L.Conv2DTranspose(3, 2, strides=2, padding="valid")(b)
    c = L.Concatenate()([a, u, v])
    y = L.Conv2D(1, 1, activation="sigmoid")(c)
    model = nets.randomize_bias(keras.Model(inp, y))
    return to_tflite(model, "int8", calibration=nets.calibration(model), batch_size=1)


def _inputs(n, seed):
    return np.random.default_rng(seed).integers(-128, 128, (n, 8, 8, 3)).astype(np.int8)


@pytest.mark.parametrize("flavour", ["litert", "tflm"])
def test_matches_litert_and_tflm(unet, flavour):
    g = sim.graph_from_tflite(unet, flavour=flavour)
    nodes = [lay for lay in g.layers if lay.kind == "transpose_conv"]
    assert len(nodes) == 2 and {n.padding for n in nodes} == {(0, 1, 0, 1), (0, 0, 0, 0)}
    assert all(np.any(n.bias != 0) for n in nodes), "the bias should be TRANSPOSE_CONV's input"
    x = _inputs(50, 1)
    names = [lay.name for lay in g.layers]
    got = sim.run(g, x, trace=True)
    ref = (litert_reference if flavour == "litert" else tflm_reference)(unet, x, tensors=names)
    for name in names:
        np.testing.assert_array_equal(np.asarray(got[name]).reshape(ref[name].shape), ref[name],
                                      err_msg=name)
    for n in nodes:
        assert len(np.unique(ref[n.name])) > 50, "a near-constant output checks little"


def test_refuses_bad_fields(unet):
    g = sim.graph_from_tflite(unet)
    node = next(lay for lay in g.layers if lay.kind == "transpose_conv")
    node.bias = node.bias[:-1]
    with pytest.raises(ValueError, match="bias must hold one entry per output channel"):
        g.validate()
    node.bias = np.zeros(node.out_shape[-1], np.int32)
    node.stride = (0, 2)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        g.validate()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
def test_c_kernel_matches_simulator_on_the_host(unet, tmp_path):
    from tinyopt.deploy import codegen, mcu
    g = sim.graph_from_tflite(unet, flavour="tflm")
    e = codegen.export_c(g, tmp_path / "src")
    assert any(p.name == "tn_transpose_conv.c" for p in e.sources)
    exe = mcu.build_host(e, build_dir=tmp_path / "host")
    x = _inputs(30, 2)
    want = codegen.reference_output(g, x)
    assert len({r.tobytes() for r in want}) > 1
    np.testing.assert_array_equal(mcu.run_host(exe, e, x), want)

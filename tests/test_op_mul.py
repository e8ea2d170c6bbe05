"""MUL (tinyopt/integer/ops/mul.py, tinyopt/deploy/c/ops/tn_mul.c): the simulator against
LiteRT's reference kernels and TFLite Micro on every element, for two tensors of one shape
(with a fused ReLU), the squeeze-and-excite gate broadcast per channel over (H, W, C) and over
(T, C), in both operand orders; the C kernel on the host against the simulator."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import tinyopt  # noqa: F401  (sets up tf_keras)
from tests import _keras_nets as nets
from tests import _ops
from tinyopt.integer import sim
from tinyopt.integer.arith import tflite_quantize_multiplier
from tinyopt.integer.graph import Tensor
from tinyopt.integer.ops import mul

# converts Keras models and builds C: make test runs it, the edit-test loop (test-fast) not
pytestmark = pytest.mark.slow


def _same_shape():
    keras = nets._keras()
    L = keras.layers
    x = inp = keras.Input((6, 6, 3))
    a = L.Conv2D(8, 3, padding="same")(x)
    b = L.Conv2D(8, 1)(x)
    x = L.ReLU()(L.Multiply()([a, b]))  # the converter fuses the ReLU into MUL
    return nets.randomize_bias(keras.Model(inp, L.Conv2D(4, 1)(x)))


def _se(gate_first: bool):
    keras = nets._keras()
    L = keras.layers
    x = inp = keras.Input((6, 6, 3))
    x = L.Conv2D(8, 3, padding="same")(x)
    s = L.GlobalAveragePooling2D(keepdims=True)(x)
    s = L.Conv2D(8, 1, activation="sigmoid")(s)
    x = L.Multiply()([s, x] if gate_first else [x, s])
    return nets.randomize_bias(keras.Model(inp, L.Conv2D(4, 1)(x)))


def _se_1d():
    keras = nets._keras()
    L = keras.layers
    x = inp = keras.Input((10, 3))
    x = L.Conv1D(8, 3, padding="same")(x)
    s = L.Conv1D(8, 1, activation="sigmoid")(L.GlobalAveragePooling1D(keepdims=True)(x))
    x = L.Multiply()([x, s])
    return nets.randomize_bias(keras.Model(inp, L.Conv1D(4, 1)(x)))


MODELS = {"same_shape_relu": (_same_shape, (6, 6, 3)),
          "se_gate_second": (lambda: _se(False), (6, 6, 3)),
          "se_gate_first": (lambda: _se(True), (6, 6, 3)),
          "se_1d": (_se_1d, (10, 3))}


@pytest.fixture(scope="module", params=sorted(MODELS))
def mul_model(request):
    build, shape = MODELS[request.param]
    return request.param, nets.to_int8(build()), shape


@pytest.mark.parametrize("flavour", ["litert", "tflm"])
def test_mul_matches_litert_and_tflm(mul_model, flavour):
    name, tfl, shape = mul_model
    g = _ops.assert_matches_interpreters(tfl, flavour, "mul", shape)
    node = _ops.node(g, "mul")
    b = g.tensor(node.inputs[1])
    if name.startswith("se"):
        assert int(np.prod(b.shape)) == node.out_shape[-1], "the gate should be broadcast"
    else:  # the ReLU is fused into MUL (its clamp is the output's zero point, here -128)
        assert "Relu" in node.name and node.act_min == node.out_zero_point


def test_arithmetic_both_shift_signs():
    """Multipliers below and above one (the left-shift branch of the double rounding) follow
    the real product; the clamp holds."""
    rng = np.random.default_rng(0)
    a, b = rng.integers(-128, 128, 5000), rng.integers(-128, 128, 5000)
    for real in (0.003, 0.7, 3.0):
        q, e = tflite_quantize_multiplier(real)
        y = mul.mul_int8(a, b, 3, -7, int(q[0]), int(e[0]), "tflite_double", 5, -128, 127)
        want = np.clip(np.round((a - 3) * (b + 7) * real) + 5, -128, 127)
        assert np.abs(y - want).max() <= 1
        assert (int(e[0]) > 0) == (real > 1)


def test_refuses_other_broadcasts(mul_model):
    _, tfl, _ = mul_model
    g = sim.graph_from_tflite(tfl)
    node = _ops.node(g, "mul")
    other = g.tensor(node.inputs[1])
    bad = Tensor(other.name, (1, node.out_shape[-1]) + (1,), 8, True, other.zero_point)
    with pytest.raises(ValueError, match="one value per channel"):
        mul.check_inputs(node, "mul", [g.tensor(node.inputs[0]), bad])
    node.in_shape = node.out_shape = (3, *node.out_shape[1:])
    with pytest.raises(ValueError, match="in_shape"):
        g.validate()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
def test_c_kernel_matches_simulator_on_the_host(mul_model, tmp_path):
    _, tfl, shape = mul_model
    _ops.assert_host_c_exact(tfl, "tflm", "tn_mul.c", shape, tmp_path)


def test_product_multiplier_follows_each_runtime():
    """LiteRT computes s1 s2 / s_out in float32, TFLite Micro in double (their Prepare): on
    scales where the two differ the import follows each (EfficientNetB0's squeeze-excite MUL
    differed from LiteRT by one code on 26 of 2,000 outputs before)."""
    from tinyopt.integer.ops.mul_const import product_multiplier
    rng = np.random.default_rng(0)
    differ = 0
    for s1, s2, so in rng.uniform(1e-3, 1.0, (2000, 3)).astype(np.float32):
        f32 = np.float64(np.float32(np.float32(s1 * s2) / so))
        f64 = np.float64(s1) * np.float64(s2) / np.float64(so)
        assert product_multiplier("litert", s1, s2, so) == f32
        assert product_multiplier("tflm", s1, s2, so) == f64
        differ += f32 != f64
    assert differ > 100  # the two really differ

"""tinyopt.ptq: calibration rules, the floor offset, PTQ accuracy on a trained seed CNN and QAT from
PTQ (notebook 02 runs in tests/test_notebooks.py)."""
from __future__ import annotations

import numpy as np
import pytest

import tinyopt  # noqa: F401
import tf_keras as keras

from tinyopt import ptq, qat, train
from tinyopt.mixed import quantizers
from tinyopt.mixed.ptq import calibrate, calibrate_alpha
from tinyopt.policy import Policy


def test_calibrate_alpha_rules():
    v = np.random.default_rng(0).uniform(-1, 1, 20000).astype(np.float32)
    a8 = calibrate_alpha(v, 8, "relu", "mse")
    a2 = calibrate_alpha(v, 2, "relu", "mse")
    assert 0.95 <= a8 <= 1.0  # 8 bits: clipping barely pays
    assert a2 < a8  # 2 bits: the MSE-optimal clip is tighter
    assert calibrate_alpha(v, 4, "relu", "percentile", percentile=75) == pytest.approx(
        0.5, abs=0.03)
    big = np.full(100, 9.0, np.float32)
    assert calibrate_alpha(big, 8, "relu6", "mse") <= 6.0  # ReLU6 target caps at 6
    assert calibrate_alpha(-np.ones(10), 4, "relu") == 1.0  # never fires: any clip is exact
    with pytest.raises(ValueError, match="calibration must be one of"):
        calibrate_alpha(v, 4, "relu", "max")


def _tiny():
    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 1))
    x = keras.layers.Conv2D(3, 3, activation="relu", name="c")(inp)
    x = keras.layers.Flatten()(x)
    return keras.Model(inp, keras.layers.Dense(2, name="fc")(x))


def test_floor_offset_adds_half_a_step_to_the_bias():
    model = _tiny()
    x = np.random.default_rng(0).random((64, 6, 6, 1), dtype=np.float32)
    policy = Policy.uniform(model, 4, 4)
    # percentile calibration: alpha does not depend on the offset (the MSE search does)
    result = calibrate(model, policy, x, activations="percentile", floor_offset=True)
    on = result.model
    off = ptq.quantize_mixed(model, policy, x, activations="percentile", floor_offset=False)
    c_on, c_off = on.get_layer("c"), off.get_layer("c")
    alpha = float(c_on.alpha.numpy())
    assert alpha == pytest.approx(float(c_off.alpha.numpy()))  # same calibration
    np.testing.assert_allclose(c_on.bias.numpy() - c_off.bias.numpy(), alpha / 15 / 2, rtol=1e-5)
    assert [r["layer"] for r in result.calibration] == ["c", "fc"]
    with pytest.raises(ValueError, match="weights must be one of"):
        ptq.quantize_mixed(model, policy, x, weights="bogus")
    with pytest.raises(ValueError, match="calibration is empty"):
        ptq.quantize_mixed(model, policy, x[:0])


@pytest.mark.slow  # trains
def test_ptq_on_trained_seed_cnn_and_qat_from_ptq(fashion, seed_cnn_fashion):
    x, y = fashion.x_train[:6000], fashion.y_train[:6000]
    xt, yt = fashion.x_test[:2000], fashion.y_test[:2000]
    model = seed_cnn_fashion  # not modified: checked below

    def acc(m):
        return float(np.mean(np.argmax(m.predict(xt, batch_size=500, verbose=0), 1) == yt))
    before = [w.copy() for w in model.get_weights()]
    base = acc(model)
    q8 = ptq.quantize_mixed(model, Policy.uniform(model, 8, 8, "PL"), x[:500])
    q4 = ptq.quantize_mixed(model, Policy.uniform(model, 4, 4, "PC"), x[:500])
    assert abs(acc(q8) - base) <= 0.005, (acc(q8), base)
    assert acc(q4) >= base - 0.03, (acc(q4), base)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    # QAT continues from the PTQ model; the integer view stays valid
    q2 = ptq.quantize_mixed(model, Policy.uniform(model, 2, 2, "PL"), x[:500])
    a2 = acc(q2)
    train.fit(q2, (x, y), epochs=1, learning_rate=1e-4, progress=False)
    assert acc(q2) > a2, (acc(q2), a2)
    conv = qat.integer_params(q2)["layers"][0]
    assert conv["weight_codes"].max() <= 3 and conv["output"]["bits"] == 2
    assert conv["output"]["scale"] == pytest.approx(conv["output"]["alpha"] / 3)
    assert quantizers.levels(2) == 3

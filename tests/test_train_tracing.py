"""tinyopt.fit traces Keras' train function once (train.BuildBeforeTracing), and
training is bit for bit what it was when Keras built the optimizer's slots and the metrics
inside the first trace (and traced twice)."""
from __future__ import annotations

import numpy as np
import pytest


def _fit(prebuild: bool, monkeypatch):
    import tf_keras as keras

    from tinyopt.front import models, train
    if not prebuild:
        class Keras(keras.callbacks.Callback):  # Keras' own way: built inside the first trace
            def __init__(self, y_sample):
                super().__init__()
        monkeypatch.setattr(train, "BuildBeforeTracing", Keras)
    rng = np.random.default_rng(0)
    x = rng.random((96, 8, 8, 1), np.float32)
    y = rng.integers(0, 10, 96)
    models.seed_initializers(0)
    inp = keras.Input((8, 8, 1))
    t = keras.layers.Conv2D(4, 3, use_bias=False, name="c")(inp)
    t = keras.layers.BatchNormalization(name="bn")(t)
    t = keras.layers.Dropout(0.2, name="drop")(keras.layers.ReLU(name="r")(t))  # a random op
    m = keras.Model(inp, keras.layers.Dense(10, name="fc")(
        keras.layers.GlobalAveragePooling2D(name="gap")(t)))
    history = train.fit(m, (x, y), epochs=2, batch_size=32, seed=3, progress=False,
                        lr_schedule="cosine")
    traces = (m.train_function.experimental_get_tracing_count(),
              m.test_function.experimental_get_tracing_count())
    monkeypatch.undo()
    return m.get_weights() + m.optimizer.variables, history, traces


@pytest.mark.slow
def test_fit_traces_once_and_trains_bit_for_bit_as_keras(monkeypatch):
    w_keras, h_keras, traces_keras = _fit(False, monkeypatch)
    w_ours, h_ours, traces_ours = _fit(True, monkeypatch)
    assert traces_keras == (2, 1)  # the trace the callback saves (else this proves nothing)
    assert traces_ours == (1, 1)
    assert h_ours == h_keras
    assert len(w_ours) == len(w_keras)
    for a, b in zip(w_ours, w_keras):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.slow
def test_fit_of_a_model_with_unknown_output_dims_still_trains():
    """A fully convolutional model (spatial dims None) leaves the loss and metrics to Keras'
    trace: it trains, traced twice, instead of failing in the callback."""
    import tf_keras as keras

    from tinyopt.front import train
    inp = keras.Input((None, None, 1))
    m = keras.Model(inp, keras.layers.Conv2D(10, 1)(keras.layers.Conv2D(3, 3, padding="same")(inp)))
    rng = np.random.default_rng(0)
    x, y = rng.random((40, 8, 8, 1), np.float32), rng.integers(0, 10, (40, 8, 8))
    history = train.fit(m, (x, y), epochs=1, progress=False)
    assert np.isfinite(history["loss"][0])
    assert m.train_function.experimental_get_tracing_count() == 2

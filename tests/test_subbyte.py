"""The library's one copy of the notebooks' helpers (issue 17): accuracy, keyed subsets, resizing,
BatchNorm re-estimation, the chain on a tiny model, and the figure helpers' Pareto front and
accuracy window. Fast."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tinyopt.pipeline import subbyte
from tinyopt.workbench import plots


def test_accuracy_of_logits_and_errors():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    assert subbyte.accuracy(logits, [1, 0, 0]) == pytest.approx(2 / 3)
    assert subbyte.accuracy(logits.reshape(3, 1, 2), np.array([1, 0, 1])) == 1.0
    with pytest.raises(ValueError, match="3 predictions for 2 labels"):
        subbyte.accuracy(logits, [1, 0])


def test_subset_is_keyed_sorted_and_complete_when_asked():
    x, y = np.arange(100)[:, None], np.arange(100)
    a, ya = subbyte.subset(x, y, 10, 0, 2)
    b, _ = subbyte.subset(x, y, 10, 0, 2)
    c, _ = subbyte.subset(x, y, 10, 0, 3)
    assert np.array_equal(a, b) and not np.array_equal(a, c)   # the key decides the draw
    assert np.all(np.diff(a[:, 0]) > 0) and np.array_equal(a[:, 0], ya)
    assert subbyte.subset(x, y, None)[0] is x and subbyte.subset(x, y, 500)[0] is x
    with pytest.raises(ValueError, match="100 images but 99 labels"):
        subbyte.subset(x, y[:99], 5)
    with pytest.raises(ValueError, match=">= 1"):
        subbyte.subset(x, y, 0)


def test_resize_pad_and_bilinear():
    x = np.random.default_rng(0).random((3, 28, 28, 1)).astype(np.float32)
    p = subbyte.resize(x, 32, "pad")
    assert p.shape == (3, 32, 32, 1) and np.array_equal(p[:, 2:30, 2:30], x)
    assert p[:, :2].max() == 0 and p[:, 30:].max() == 0
    b = subbyte.resize(x, 40, "bilinear")
    assert b.shape == (3, 40, 40, 1) and b.dtype == np.float32 and 0 <= b.min() and b.max() <= 1
    assert subbyte.resize(x, 28) is x
    with pytest.raises(ValueError, match="cannot shrink"):
        subbyte.resize(x, 20, "pad")
    with pytest.raises(ValueError, match="resize mode must be one of"):
        subbyte.resize(x, 32, "nearest")


def test_recalibrate_bn_sets_the_batch_statistics_and_keeps_momentum():
    import tf_keras as keras
    inp = keras.Input((4,))
    bn = keras.layers.BatchNormalization(momentum=0.99)
    model = keras.Model(inp, bn(keras.layers.Dense(3)(inp)))
    x = np.random.default_rng(1).normal(2.0, 3.0, (256, 4)).astype(np.float32)
    subbyte.recalibrate_bn(model, x)
    pre = model.layers[1](x).numpy()
    np.testing.assert_allclose(bn.moving_mean.numpy(), pre.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(), pre.var(0), rtol=1e-3)
    assert bn.momentum == 0.99


def test_quantize_chain_on_an_untrained_seed_cnn():
    """The chain's bookkeeping: a w8a8 integer graph computes what its fake-quant model does."""
    from tinyopt import models
    from tinyopt.mixed.policy import Policy
    m = models.seed_cnn()
    x = np.random.default_rng(0).random((64, 28, 28, 1)).astype(np.float32)
    y = np.argmax(m.predict(x, verbose=0), 1)   # labels = the float model's own classes
    r = subbyte.quantize_chain(m, Policy.uniform(m, 8, 8), x, (x, y), ptq_accuracy=True)
    assert r.test_images == 64 and r.seconds["qat"] < 1.0    # no QAT data: PTQ only
    assert r.top1_agreement >= 0.95 and r.integer_acc >= 0.9
    assert r.weight_bytes == 20388 and r.mac_mix == {"macs_w8a8": r.macs}
    assert subbyte.subbyte_mac_share(r.mac_mix) == 0.0
    row = r.row()
    assert row["weight_bits"] == "8/8" and row["integer_acc"] == r.integer_acc


def test_pareto_front_and_accuracy_window():
    df = pd.DataFrame({"variant": ["float32", "a", "b", "c", "far"],
                       "accuracy": [0.90, 0.899, 0.905, 0.895, 0.40],
                       "bytes": [80000, 20000, 40000, 30000, 5000]})
    front = plots.pareto_front(df, "bytes")
    assert list(df.variant[front]) == ["a", "b", "far"]     # c is beaten by a, float32 by b
    low, high, out = plots.accuracy_window(df, outlier_pt=5)
    assert list(out.variant) == ["far"] and low == pytest.approx(89.5 - 0.3)
    assert high == pytest.approx(90.5 + 0.3)

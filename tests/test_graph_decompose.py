import numpy as np
import pytest
import tf_keras as keras

from tinyopt import convert, graph, measure, models
from tinyopt.litert.measure import operators
from tinyopt.transforms import decompose


def _bn_net(seed=0):
    """Conv-BN-ReLU6 / Dropout / depthwise-BN-ReLU / Dense-BN with non-trivial BN statistics."""
    keras.utils.set_random_seed(seed)
    L = keras.layers
    m = keras.Sequential([
        L.InputLayer(input_shape=(12, 12, 2)),
        L.Conv2D(6, 3, padding="same", use_bias=False, name="c1"),
        L.BatchNormalization(name="c1_bn"),
        L.ReLU(max_value=6.0, name="c1_relu"),
        L.Dropout(0.3, name="drop"),
        L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, name="dw"),
        L.BatchNormalization(name="dw_bn"),
        L.ReLU(name="dw_relu"),
        L.Flatten(name="flat"),
        L.Dense(5, name="fc"),
        L.BatchNormalization(name="fc_bn"),
    ])
    rng = np.random.default_rng(seed)
    for layer in m.layers:
        if isinstance(layer, L.BatchNormalization):
            g, b, mu, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 2, g.shape), rng.normal(0, 0.5, b.shape),
                               rng.normal(0, 0.5, mu.shape), rng.uniform(0.2, 3, var.shape)])
    return m


def test_graph_optimize_folds_and_matches():
    m = _bn_net()
    opt = graph.optimize(m)
    kinds = [type(layer).__name__ for layer in opt.layers[1:]]
    assert kinds == ["Conv2D", "DepthwiseConv2D", "Flatten", "Dense"]
    assert opt.get_layer("c1").get_config()["activation"] == "relu6"
    assert opt.get_layer("dw").get_config()["activation"] == "relu"
    changes = graph.plan(m)
    assert any("folded BatchNormalization 'fc_bn'" in c for c in changes)
    assert any("removed Dropout 'drop'" in c for c in changes)
    x = np.random.default_rng(1).random((64, 12, 12, 2), dtype=np.float32)
    a, b = m.predict(x, verbose=0), opt.predict(x, verbose=0)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max())
    after = operators(convert.to_tflite(opt))
    assert after == ["CONV_2D", "DEPTHWISE_CONV_2D", "RESHAPE", "FULLY_CONNECTED"]


def test_graph_optimize_says_no_change_for_seed_cnn():
    m = models.seed_cnn()
    opt = graph.optimize(m)
    assert graph.plan(m) == []  # nothing to rewrite
    x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    np.testing.assert_allclose(opt.predict(x, verbose=0), m.predict(x, verbose=0), rtol=1e-6)
    assert opt.layers[1] is not m.layers[0]  # no shared layer objects


def test_graph_rejects_branching_models():
    inp = keras.Input((4,))
    out = keras.layers.Add()([keras.layers.Dense(4)(inp), keras.layers.Dense(4)(inp)])
    with pytest.raises(ValueError, match="linear chain"):
        graph.optimize(keras.Model(inp, out))


def test_als_error_falls_and_reaches_svd_optimum():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 3, 4, 8)).astype(np.float32)
    _, _, errors = decompose.als(w, rank=1, iterations=30, record=True)
    assert all(b <= a + 1e-12 for a, b in zip(errors, errors[1:]))
    assert errors[-1] < errors[0]
    # Eckart-Young: the optimum is the truncated SVD of each input-channel slice.
    m = np.transpose(w.reshape(9, 4, 8), (1, 0, 2)).astype(np.float64)
    s = np.linalg.svd(m, compute_uv=False)
    optimum = np.sqrt((s[:, 1:] ** 2).sum()) / np.linalg.norm(w)
    assert errors[-1] == pytest.approx(optimum, rel=1e-3)


def test_als_exact_for_rank1_kernels_and_reconstruct():
    rng = np.random.default_rng(1)
    d = rng.normal(size=(3, 3, 5, 1))
    p = rng.normal(size=(1, 1, 5, 7))
    w = decompose.reconstruct(d, p).astype(np.float32)
    d2, p2 = decompose.als(w, rank=1, iterations=5)
    np.testing.assert_allclose(decompose.reconstruct(d2, p2), w, atol=1e-4)


def test_decompose_model_matches_reconstructed_kernel():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.layers.InputLayer(input_shape=(10, 10, 3)),
                          keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu",
                                              name="conv"),
                          keras.layers.Flatten(), keras.layers.Dense(4)])
    result = decompose.decompose(m, rank=3, iterations=40)
    sep = result.model
    assert [type(layer).__name__ for layer in sep.layers[1:3]] == ["DepthwiseConv2D", "Conv2D"]
    dw, pw = sep.get_layer("conv_dw"), sep.get_layer("conv_pw")
    assert dw.strides == (2, 2) and dw.depth_multiplier == 3
    assert pw.get_config()["activation"] == "relu"
    # The separable pair computes exactly the conv with the reconstructed kernel.
    ref = keras.models.clone_model(m)
    ref.set_weights(m.get_weights())
    w_hat = decompose.reconstruct(dw.get_weights()[0], pw.get_weights()[0])
    ref.get_layer("conv").set_weights([w_hat, m.get_layer("conv").get_weights()[1]])
    x = np.random.default_rng(2).random((4, 10, 10, 3), dtype=np.float32)
    np.testing.assert_allclose(sep.predict(x, verbose=0), ref.predict(x, verbose=0), atol=1e-4)
    assert result.decomposition[0]["layer"] == "conv"
    assert 0 < result.decomposition[0]["relative_error"] < 1


def test_decompose_seed_cnn_params_and_macs():
    sep = decompose.decompose(models.seed_cnn()).model
    # depthwise 3x3x1 (9) + pointwise 1x12 + 12 bias = 33; dense 20,290 (the seed's 20,323)
    assert measure.params(sep)["total"] == 20323
    assert measure.macs(sep)["total"] == 26 * 26 * 9 + 26 * 26 * 12 + 20280
    with pytest.raises(ValueError, match="no k x k Conv2D"):
        decompose.decompose(keras.Sequential([keras.layers.Dense(3, input_shape=(4,))]))

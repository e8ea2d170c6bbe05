"""tinyopt.icn.convert (fake-quant model -> IntegerGraph) and check (c): the integer graph against
its fake-quant model, layer by layer, on Fashion-MNIST test images.

What is checked is arithmetic agreement, not accuracy. Each layer of the graph, fed the
simulator's own input, must give exactly what the fake-quant layer gives on that input, except
on rounding ties: a pre-floor value that sits on an integer (PTQ can make a multiplier
M = g S_w alpha_in / alpha_out a ratio of small integers, e.g. 5/36, so some outputs land exactly
on a floor boundary), where the float model decides by float32 rounding and the integer kernel
by its Q1.31 multiplier. Those, and only those, may differ, by 1 LSB
(:func:`tests.conftest.assert_equal_but_ties`); raw int32 logits, which are not floored, agree
within the 1 LSB of float32 accumulation error of the fake-quant logits. End to end the chain
may part from the simulator only where a tie flipped. The models are not perturbed to avoid
ties.

The structure tests use untrained (seeded) models; test_check_c trains (slow).
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tinyopt  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from tests.conftest import assert_equal_but_ties, on_boundary
from tinyopt import icn, models, ptq, qat, sim, train
from tinyopt.mixed import quantizers
from tinyopt.mixed.layers import QuantCompute
from tinyopt.policy import Policy
from tinyopt.transforms.keras_graph import compute_layer_names

N_TRAIN, N_CALIB, N_TEST = 500, 64, 500


def _pad32(x):
    return np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))


def _mobilenet():
    model = models.mobilenet_v1(0.25, 32, 10, input_channels=1)
    for layer in model.layers:  # test only: let the BN moving statistics settle in 16 steps
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = 0.5
    return model


@pytest.fixture(scope="module")
def trained(fashion, seed_cnn_fashion):
    """{name: (model, calibration images, test images)}: the session's trained seed CNN and a
    MobileNetV1 0.25 at 32 x 32 trained one epoch on 500 images."""
    mobilenet = _mobilenet()
    x, y = _pad32(fashion.x_train[:N_TRAIN]), fashion.y_train[:N_TRAIN]
    train.fit(mobilenet, (x, y), epochs=1, validation_split=0.0, progress=False,
              learning_rate=3e-3, batch_size=32)
    return {"seed_cnn": (seed_cnn_fashion, fashion.x_train[:N_TRAIN], fashion.x_test[:N_TEST]),
            "mobilenet": (mobilenet, x, _pad32(fashion.x_test[:N_TEST]))}


@pytest.fixture(scope="module")
def untrained(fashion):
    """The same two architectures, untrained (seeded): enough for the graph's structure."""
    return {"seed_cnn": (models.seed_cnn(seed=0), fashion.x_train[:N_CALIB],
                         fashion.x_test[:200]),
            "mobilenet": (_mobilenet(), _pad32(fashion.x_train[:N_CALIB]),
                          _pad32(fashion.x_test[:200]))}


def _policy(model, config):
    if config == "PL+FB":
        return Policy.uniform(model, 4, 4, "PL", "FB")
    if config == "PL+ICN":
        return Policy.uniform(model, 4, 4, "PL", "ICN")
    if config == "PC+ICN":
        return Policy.uniform(model, 4, 4, "PC")
    names = compute_layer_names(model)  # mixed 2/4/8, the paper's fold rule
    n = len(names)
    wb = [8 if i == n - 1 else (2, 4, 8)[i % 3] for i in range(n)]
    ab = [8 if i == n - 1 else (8, 4, 2)[i % 3] for i in range(n)]
    return Policy(names, wb, ab, "PL")


CONFIGS = ["PL+FB", "PL+ICN", "PC+ICN", "mixed"]
ACTIVATIONS = "percentile"


def _quantize(models_, model_name, config):
    """A fresh PTQ model of (model, config) (test_check_c snaps its biases in place)."""
    model, x_calib, _ = models_[model_name]
    return ptq.quantize_mixed(model, _policy(model, config), x_calib[:N_CALIB], weights="minmax",
                              activations=ACTIVATIONS)


def _window_means(codes: np.ndarray, pool: tuple, stride: tuple) -> np.ndarray:
    """Mean of each VALID pooling window of integer codes [N, H, W, C] (float64, exact)."""
    n, h, w, c = codes.shape
    oh, ow = (h - pool[0]) // stride[0] + 1, (w - pool[1]) // stride[1] + 1
    out = np.zeros((n, oh, ow, c))
    for i in range(oh):
        for j in range(ow):
            win = codes[:, i * stride[0]:i * stride[0] + pool[0],
                        j * stride[1]:j * stride[1] + pool[1]]
            out[:, i, j] = win.sum((1, 2))
    return out / (pool[0] * pool[1])


def assert_layers_match_but_ties(q, graph, x) -> dict:
    """Every layer of ``graph`` that ``q`` has, fed the simulator's own input of that layer, gives
    the fake-quant layer's output on that input exactly, except 1-LSB rounding ties; raw int32
    logits (not floored: Phi + B_q) agree within 1 LSB, the float32 accumulation error of the
    fake-quant logits.

    Returns:
        {layer name: (tie flips, outputs on a rounding boundary)} in graph order: how many
        outputs differ (all of them ties) and how many could have (0, 0 for exact layers).
    """
    codes = graph.quantize_input(x)
    trace = sim.run(graph, codes, trace=True)
    n = len(x)
    keras_names = {layer.name for layer in q.layers}
    ties = {}
    for i, layer in enumerate(graph.layers):
        if layer.name not in keras_names:
            continue
        kl = q.get_layer(layer.name)
        prev = graph.layers[i - 1] if i else None
        src = codes if prev is None else trace[prev.name]
        s, z = (graph.input_scale, graph.input_zero_point) if prev is None else \
            (prev.out_scale, prev.out_zero_point)
        xin = tf.constant((s * (src.astype(np.float64) - z)).astype(np.float32).reshape(
            (n,) + tuple(kl.input_shape[1:])))
        got = trace[layer.name].reshape(n, -1)
        fake = kl(xin, training=False).numpy().reshape(n, -1).astype(np.float64)
        fake = fake / layer.out_scale
        if isinstance(kl, QuantCompute):
            pre = kl.preactivation(xin, training=False).numpy().reshape(n, -1)
            pre = pre.astype(np.float64) / layer.out_scale + layer.out_zero_point
            if kl.activation is not None:  # PACT: S * floor(pre / S), clamped
                want = np.round(fake) + layer.out_zero_point
            elif layer.requantize:  # requantized logits: floored like the kernel
                want = np.floor(pre)
            else:  # raw int32 logits Phi + B_q: no rounding, only float32 error in the fake
                err = got - pre
                assert np.abs(err).max() <= 1 + 1e-6 * np.abs(pre).max(), (
                    f"{layer.name}: logits differ by up to {np.abs(err).max()} LSB from the "
                    "fake-quant ones")
                # float error has no sign: a per-class offset (e.g. one bias code off) would
                bias = np.abs(err.mean(axis=0)).max()
                assert bias <= 0.1, f"{layer.name}: logits offset by {bias} LSB on average"
                ties[layer.name] = (0, 0)
                continue
            flips = assert_equal_but_ties(got, want, pre, "floor", what=layer.name)
        elif layer.kind == "avgpool" and layer.avg_rounding == "floor":
            assert layer.padding == (0, 0, 0, 0), layer.name
            pre = _window_means(src.reshape((n,) + tuple(layer.in_shape)).astype(np.float64)
                                - layer.in_zero_point, layer.pool_size, layer.stride)
            pre = pre.reshape(n, -1) + layer.out_zero_point
            want = np.round(fake) + layer.out_zero_point
            flips = assert_equal_but_ties(got, want, pre, "floor", what=layer.name)
        else:  # max pool, flatten, reshape: the same codes
            np.testing.assert_array_equal(got, np.round(fake) + layer.out_zero_point,
                                          err_msg=layer.name)
            ties[layer.name] = (0, 0)
            continue
        ties[layer.name] = (flips, int(on_boundary(pre).sum()))
    return ties


def assert_chain_parts_only_at_a_tie(res: dict, ties: dict) -> None:
    """End to end (``icn.compare``'s chained comparison): a tie flips one activation by 1 LSB and
    the flip travels, so the chain may part from the simulator, but where it first parts (its
    input still equal to the simulator's) only by 1 LSB at outputs on a rounding boundary; with
    no tie flip in any layer it does not part, and every class agrees up to a 1-LSB logit tie."""
    layers = res["layers"].set_index("layer")
    acts = [name for name in ties if layers.loc[name, "out_bits"] <= 8]
    parted = [name for name in acts if layers.loc[name, "chained_frac_diff"] > 0]
    if parted:
        first = parted[0]
        assert ties[first][1] > 0 and layers.loc[first, "chained_max_lsb"] <= 1, (
            f"the chain first parts at {first!r}, not at a tie\n{layers.to_string()}")
    if not any(flips for flips, _ in ties.values()):
        assert not parted and res["top1_agreement_1lsb"] == 1.0, layers.to_string()


# every config on the seed CNN; on MobileNet the FB one (PTQ puts some of its multipliers on a
# rounding lattice: real tie flips) and the mixed 2/4/8-bit one with both folds
CHECK_C = [("seed_cnn", c) for c in CONFIGS] + [("mobilenet", "PL+FB"), ("mobilenet", "mixed")]


@pytest.mark.slow  # trains
@pytest.mark.parametrize("model_name,config", CHECK_C)
def test_check_c(trained, model_name, config):
    x_test = trained[model_name][2]
    q = _quantize(trained, model_name, config)
    graph = icn.convert(q)
    # The fake-quant forward pass rounds each bias onto its int32 grid, so every layer's
    # integer arithmetic (fed the simulator's own input) equals the fake-quant layer up to ties.
    ties = assert_layers_match_but_ties(q, graph, x_test)
    assert len(ties) >= 4
    res = icn.compare(q, graph, x_test)
    assert (res["layers"]["isolated_max_lsb"] <= 1).all(), res["layers"].to_string()
    assert_chain_parts_only_at_a_tie(res, ties)
    # snap_bias only moves the stored float biases onto the grid the forward pass already uses:
    # the model computes exactly what it computed before (an eager call, not predict: predict
    # traces a tf.function for each fresh model, ~2.5 s of CPU on MobileNet, and either forward
    # pass shows a moved bias)
    before = q(x_test, training=False).numpy()
    changes = icn.snap_bias(q)
    assert 0 < max(changes.values()) <= 0.5 + 1e-6
    np.testing.assert_array_equal(q(x_test, training=False).numpy(), before)
    # not vacuous: the model does predict several classes and most outputs are not clamped
    assert len(np.unique(np.argmax(res["int_logits"], 1))) >= 2
    assert len(np.unique(res["int_logits"])) > 50


def test_structure_and_files(untrained, tmp_path):
    x_test = untrained["seed_cnn"][2]
    for config in ("PL+FB", "PC+ICN"):
        q = _quantize(untrained, "seed_cnn", config)
        graph = icn.convert(q)
        assert [layer.kind for layer in graph.layers] == ["conv2d", "maxpool", "flatten", "dense"]
        assert graph.rounding == "floor" and graph.input_bits == 8
        assert graph.input_zero_point == 0 and graph.input_scale == pytest.approx(1 / 255)
        conv, fc = graph["conv"], graph["fc"]
        p = {e["name"]: e for e in qat.integer_params(q)["layers"] if e["type"] == "compute"}
        # weights: Keras [kh, kw, cin, cout] -> [cout][ky][kx][cin], packed 4-bit LSB first
        np.testing.assert_array_equal(conv.unpacked_weights(),
                                      p["conv"]["weight_codes"].transpose(3, 0, 1, 2))
        np.testing.assert_array_equal(fc.unpacked_weights(), p["fc"]["weight_codes"].T)
        assert conv.weights.shape == (12, 5)  # 9 codes of 4 bits -> 5 bytes per row
        assert conv.out_bits == 4 and conv.bias.dtype == np.int32
        np.testing.assert_array_equal(conv.bias, p["conv"]["bias_codes"])
        assert fc.out_bits == 32 and fc.out_signed
        if config == "PL+FB":
            assert len(conv.m0) == 1 and len(conv.weight_zero_point) == 1
            assert not fc.requantize  # PL logits: Phi + B_q
            assert fc.out_scale == pytest.approx(conv.out_scale * float(p["fc"]["weight_scale"]))
        else:
            assert len(conv.m0) == 12 and len(conv.weight_zero_point) == 12
            assert fc.requantize and len(fc.m0) == 10
        # M = m0 2^(n0 - 31) reproduces S_x S_w / S_y
        s_w = np.asarray(p["conv"]["weight_scale"], np.float64).reshape(-1)
        want = conv.in_scale * s_w / conv.out_scale
        got = conv.m0.astype(np.float64) * 2.0 ** (conv.n0.astype(np.float64) - 31)
        np.testing.assert_allclose(got, want, rtol=1e-6)
        path = graph.save(tmp_path / f"{config}.npz")
        again = icn.IntegerGraph.load(path)
        codes = graph.quantize_input(x_test[:50])
        np.testing.assert_array_equal(sim.run(again, codes), sim.run(graph, codes))
        assert_layers_match_but_ties(q, graph, x_test)


@pytest.mark.slow  # (a few seconds: make test runs it, test-fast does not)
def test_mobilenet_layout(untrained):
    q = _quantize(untrained, "mobilenet", "PC+ICN")
    graph = icn.convert(q)
    kinds = [layer.kind for layer in graph.layers]
    assert kinds[:3] == ["conv2d", "depthwise", "pointwise"]
    assert kinds[-3:] == ["avgpool", "flatten", "dense"]
    assert graph["conv0"].padding == (0, 1, 0, 1)  # TF SAME, stride 2: extra row at the bottom
    assert graph["dw1"].padding == (1, 1, 1, 1) and graph["dw1"].pad_mode == "zero"
    assert graph["dw2"].padding == (0, 1, 0, 1) and graph["dw2"].stride == (2, 2)
    assert graph["pool"].pool_size == (1, 1) and graph["pool_flatten"].out_shape == (256,)
    dw = graph["dw1"]
    assert dw.weight_shape == (3, 3, 8) and len(dw.m0) == 8
    # ICN multipliers carry BN: M_c = (gamma_c / sigma_c) S_x S_w,c / S_y
    layer = q.get_layer("dw1")
    g = layer.gamma.numpy() / np.sqrt(layer.moving_variance.numpy() + 1e-3)
    want = g * dw.in_scale * dw.weight_scale / dw.out_scale
    got = dw.m0.astype(np.float64) * 2.0 ** (dw.n0.astype(np.float64) - 31)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_quantize_input_matches_the_model(fashion):
    x = fashion.x_test[:200]
    _, qp = quantizers.input_quant(x, 0.0, 1.0, 8, params=True)
    graph = icn.IntegerGraph(layers=[icn.IntegerLayer(kind="flatten", name="f",
                                                      in_shape=(28, 28, 1), out_shape=(784,))],
                             input_shape=(28, 28, 1), input_scale=1 / 255)
    np.testing.assert_array_equal(graph.quantize_input(x), qp.codes.numpy())
    # exact half steps (0.5 / 255 and 2.5 / 255 divide back to exactly 0.5 and 2.5 in float32):
    # to even, as the model's input quantizer (tf.round); half away from zero as TFLite
    half = np.zeros((1, 28, 28, 1), np.float32)
    half[0, 0, 0, 0], half[0, 0, 1, 0] = 0.5 / 255, 2.5 / 255
    _, qh = quantizers.input_quant(half, 0.0, 1.0, 8, params=True)
    np.testing.assert_array_equal(graph.quantize_input(half), qh.codes.numpy())
    assert graph.quantize_input(half)[0, 0, :2, 0].tolist() == [0, 2]
    assert graph.quantize_input(half, rounding="half_away")[0, 0, :2, 0].tolist() == [1, 3]
    with pytest.raises(ValueError, match="shape"):
        graph.quantize_input(np.zeros((1, 32, 32, 1)))


def test_unsupported_layer_is_named(untrained):
    model = untrained["seed_cnn"][0]
    q = _quantize(untrained, "seed_cnn", "PL+FB")
    inputs = keras.Input((28, 28, 1))
    x = inputs
    for layer in q.layers[1:4]:  # input_quant, conv, pool
        x = layer(x)
    x = keras.layers.Activation("tanh", name="odd_tanh")(x)
    x = q.get_layer("flatten")(x)
    x = q.get_layer("fc")(x)
    with pytest.raises(ValueError, match="odd_tanh"):
        icn.convert(keras.Model(inputs, x))
    with pytest.raises(TypeError, match="quantize_mixed"):
        icn.convert(object())
    with pytest.raises(ValueError, match="QuantInput"):
        icn.convert(model)  # the float model


def test_depth_multiplier_avgpool_same_maxpool(fashion):
    """Layers the two models do not have: depthwise with depth_multiplier 2 and a bias, a SAME
    max pool with a padded edge, a VALID 2x2 average pool, a Reshape, PC weights."""
    layers = keras.layers
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        layers.InputLayer(input_shape=(28, 28, 1)),
        layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name="c"),
        layers.MaxPooling2D(3, strides=2, padding="same", name="mp"),
        layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw"),
        layers.BatchNormalization(name="dw_bn"),
        layers.ReLU(6.0, name="dw_relu"),
        layers.AveragePooling2D(2, name="ap"),
        layers.Reshape((3 * 3 * 8,), name="r"),
        layers.Dense(10, name="fc")])
    x = fashion.x_test[:200]
    policy = Policy.uniform(model, 4, 4, "PC")
    q = ptq.quantize_mixed(model, policy, x[:64], weights="minmax", activations=ACTIVATIONS)
    graph = icn.convert(q)
    assert [layer.kind for layer in graph.layers] == ["conv2d", "maxpool", "depthwise",
                                                      "avgpool", "reshape", "dense"]
    assert graph["mp"].padding == (0, 1, 0, 1) and graph["mp"].out_shape == (7, 7, 4)
    assert graph["dw"].depth_multiplier == 2 and graph["dw"].weight_shape == (3, 3, 8)
    assert graph["ap"].out_shape == (3, 3, 8)
    ties = assert_layers_match_but_ties(q, graph, x)
    assert list(ties) == ["c", "mp", "dw", "ap", "r", "fc"]
    res = icn.compare(q, graph, x)
    assert (res["layers"]["isolated_max_lsb"] <= 1).all(), res["layers"].to_string()
    assert_chain_parts_only_at_a_tie(res, ties)
    assert len(np.unique(graph.quantize_input(x))) > 100  # real images, not a constant input

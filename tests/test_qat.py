"""tinyopt.qat: tfmot 8-bit QAT (sparsity-preserving when pruned) and the sub-byte fake-quant
models."""
from __future__ import annotations

import numpy as np
import pytest

import tinyopt  # noqa: F401
import tensorflow as tf
import tf_keras as keras

from tests.conftest import assert_equal_but_ties
from tinyopt import convert, models, qat, train
from tinyopt.litert import measure
from tinyopt.litert.qat import SCHEME_DEFAULT, SCHEME_PRUNE_PRESERVE, quantize_model
from tinyopt.mixed.layers import QuantCompute


def _sparse_seed_cnn(fraction=0.8, seed=0):
    model = models.seed_cnn(seed=seed)
    rng = np.random.default_rng(seed)
    masks = {}
    for layer in model.layers:
        if hasattr(layer, "kernel"):
            k = layer.kernel.numpy()
            mask = rng.random(k.shape) < fraction
            k[mask] = 0.0
            layer.kernel.assign(k)
            masks[layer.name] = mask
    return model, masks


def _random_data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, n).astype(np.uint8)


def _tflite_kernels(flatbuffer):
    """The float weight tensors of the converted graph, by the layer name they mention."""
    interp = measure.interpreter(flatbuffer)
    out = {}
    for d in interp.get_tensor_details():
        for name, rank in (("conv/Conv2D", 4), ("fc/MatMul", 2)):
            # The weights are the constant tensors named after the fake-quant op that made them.
            if name in d["name"] and len(d["shape"]) == rank and d["name"].endswith(
                    ("FakeQuantWithMinMaxVars", "FakeQuantWithMinMaxVarsPerChannel")):
                out[name.split("/")[0]] = interp.get_tensor(d["index"])
    return out


@pytest.mark.slow  # trains
def test_quantize_keeps_pruned_zeros_through_finetune_and_tflite():
    model, masks = _sparse_seed_cnn(0.8)
    before = [w.copy() for w in model.get_weights()]
    result = quantize_model(model)  # auto: 80 % zeros -> prune-preserving scheme
    assert result.scheme == SCHEME_PRUNE_PRESERVE
    assert result.kernel_sparsity["conv"] == pytest.approx(0.8, abs=0.1)
    q = result.model
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights())), \
        "the input model was modified"
    train.fit(q, _random_data(), epochs=2, progress=False)
    kernels = {w.name.split("/")[0]: w.numpy() for w in q.weights if w.name.endswith("kernel:0")}
    for name, mask in masks.items():
        assert np.all(kernels[name][mask] == 0), f"{name}: pruned zeros were not preserved"
        assert np.any(kernels[name][~mask] != before[0 if name == "conv" else 2][~mask])
    flat = convert.to_tflite(q, "float32")
    ops = measure.operators(flat)
    assert "FAKE_QUANT" not in ops and "QUANTIZE" in ops
    tfl = _tflite_kernels(flat)
    # TFLite stores conv kernels as [out, kh, kw, in] and FC kernels as [out, in].
    assert np.all(np.transpose(tfl["conv"], (1, 2, 3, 0))[masks["conv"]] == 0)
    assert np.all(tfl["fc"].T[masks["fc"]] == 0)


def test_quantize_default_scheme_for_dense_model_and_errors():
    model = models.seed_cnn()
    q = qat.quantize(model)  # the public call: the QAT model itself
    assert quantize_model(model).scheme == SCHEME_DEFAULT
    assert quantize_model(model, preserve_sparsity=True).scheme == SCHEME_PRUNE_PRESERVE
    with pytest.raises(ValueError, match="already quantization-wrapped"):
        qat.quantize(q)


# =============================================================================================
# Sub-byte fake quantization: quantize_mixed, integer_params, summary, BN freezing
# =============================================================================================

from tinyopt import ptq  # noqa: E402
from tinyopt.policy import Policy  # noqa: E402

L = keras.layers


def _bn_model(seed=0):
    """A tiny chain with every supported piece: conv+BN+ReLU6, depthwise+BN+ReLU, maxpool,
    conv with fused relu and bias, global average pooling, dropout, dense."""
    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 2), name="input")
    x = L.Conv2D(4, 3, padding="same", use_bias=False, name="c1")(inp)
    x = L.BatchNormalization(name="c1_bn")(x)
    x = L.ReLU(6.0, name="c1_relu")(x)
    x = L.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, name="d2")(x)
    x = L.BatchNormalization(name="d2_bn")(x)
    x = L.ReLU(name="d2_relu")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Conv2D(6, 1, activation="relu", name="c3")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    x = L.Dropout(0.2, name="drop")(x)
    out = L.Dense(3, name="fc")(x)
    model = keras.Model(inp, out)
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # non-trivial BN statistics
        if isinstance(layer, L.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.3, n),
                               rng.normal(0, 0.2, n), rng.uniform(0.2, 3, n)])
    return model


def _input_codes(params, x):
    """The input quantizer from integer_params alone: clamp(round(x / S) + Z)."""
    inp = params["input"]
    return np.clip(np.round(x / inp["scale"]) + inp["zero_point"], 0, 2 ** inp["bits"] - 1)


def _reference_layer(e, v):
    """One layer of an integer-domain NumPy forward built ONLY from its integer_params entry
    (float64 arithmetic; biases on the accumulator grid S_x S_w, as the integer kernels add them).

    Arguments:
        e: the layer's entry of ``integer_params(q)["layers"]``.
        v: the layer's real-valued input (float64).

    Returns:
        ``(output, pre)``: the real-valued output and, for a floored output, the value in LSBs
        it was floored from (None otherwise).
    """
    if e["type"] == "maxpool":
        n, h, w, c = v.shape
        return v[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max((2, 4)), None
    if e["type"] == "avgpool":
        pre = np.round(v / e["scale"]).sum((1, 2)) / (v.shape[1] * v.shape[2])
        return np.floor(pre) * e["scale"], pre
    if e["type"] == "flatten":
        return v.reshape(len(v), -1), None
    if e["type"] == "dropout":
        return v, None
    assert e["type"] == "compute", e["type"]
    codes = e["weight_codes"].astype(np.float64)
    if e["kind"] == "depthwise":  # [kh, kw, cin, mult] -> [kh, kw, C], C = cin * mult
        codes = codes.reshape(codes.shape[:2] + (-1,))
    w = (codes - e["weight_zero_point"]) * e["weight_scale"]  # [C] broadcasts on last
    cfg = e["op_config"]
    if e["kind"] == "dense":
        t = v @ w
    else:
        t = _conv(v, w, cfg["strides"][0], cfg["padding"], e["kind"] == "depthwise")
    unit = e["input"]["scale"] * np.asarray(e["weight_scale"], np.float64).reshape(-1)
    # the int32 bias codes B_q = round(bias / u), on the accumulator grid u = S_x S_w
    # (bias is the effective bias: b, FB's folded bias or ICN's b - mu + beta / g)
    np.testing.assert_array_equal(e["bias_codes"],
                                  np.round(np.asarray(e["bias"], np.float64) / unit))
    t = t + e["bias_codes"] * unit
    if e["bn"] is not None:  # ICN: g (t + B_q u), g = gamma / sigma
        bn = e["bn"]
        t = t * bn["gamma"] / np.sqrt(bn["moving_variance"] + bn["epsilon"])
    if e["output"] is None:
        return t, None
    s, n = e["output"]["scale"], 2 ** e["output"]["bits"] - 1
    pre = t / s
    return np.clip(np.floor(pre), 0, n) * s, pre


def _conv(x, w, stride, padding, depthwise):
    kh, kw = w.shape[:2]
    n, h, wd, c = x.shape
    if padding == "same":
        oh, ow = -(-h // stride), -(-wd // stride)
        ph, pw = max((oh - 1) * stride + kh - h, 0), max((ow - 1) * stride + kw - wd, 0)
        x = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    else:
        oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = None
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i:i + stride * oh:stride, j:j + stride * ow:stride]
            term = patch * w[i, j] if depthwise else patch @ w[i, j]
            out = term if out is None else out + term
    return out


@pytest.mark.parametrize("granularity,fold,bits", [("PL", "FB", 4), ("PL", "ICN", 4),
                                                   ("PC", "ICN", 2), ("PC", "FB", 8)])
def test_integer_params_reproduce_the_fake_quant_forward(granularity, fold, bits):
    model = _bn_model()
    x = np.random.default_rng(1).random((16, 8, 8, 2), dtype=np.float32)
    policy = Policy.uniform(model, bits, bits, granularity, fold=fold)
    q = ptq.quantize_mixed(model, policy, x)  # calibrated alphas, clips and floor offsets
    params = qat.integer_params(q)
    computes = [e for e in params["layers"] if e["type"] == "compute"]
    assert [e["name"] for e in computes] == ["c1", "d2", "c3", "fc"]
    for e in computes:
        n = 2 ** e["weight_bits"] - 1
        assert e["weight_codes"].dtype == np.uint8 and e["weight_codes"].max() <= n
        assert np.all((np.asarray(e["weight_zero_point"]) >= 0)
                      & (np.asarray(e["weight_zero_point"]) <= n))
        assert e["kernel_source"] == ("folded" if fold == "FB" and e["name"] in ("c1", "d2")
                                      else "raw")
        assert (e["bn"] is None) == (fold == "FB" or e["name"] in ("c3", "fc"))
        assert e["bias_codes"].dtype == np.int32
    assert [e["input"]["bits"] for e in computes] == [8, bits, bits, bits]
    assert computes[-1]["output"] is None and computes[0]["output"]["zero_point"] == 0
    assert computes[1]["input"]["scale"] == computes[0]["output"]["scale"]
    # Layer by layer, each fed the fake-quant model's own input to it: the integer view must
    # give the model's output exactly, up to floor ties (a pre-floor value on an integer, where
    # float32 and float64 may round either way; none is expected here, but it would be legal).
    keras_layers = q.layers[1:]  # QuantInput, then one layer per entry
    probe = keras.Model(q.inputs, [layer.output for layer in keras_layers])
    outs = dict(zip([layer.name for layer in keras_layers],
                    [o.numpy().astype(np.float64) for o in probe(x, training=False)]))
    in_scale = params["input"]["scale"]
    np.testing.assert_array_equal(np.round(outs[keras_layers[0].name] / in_scale),
                                  _input_codes(params, x.astype(np.float64)))
    prev = keras_layers[0].name
    for e in params["layers"]:
        want, pre = _reference_layer(e, outs[prev])
        got = outs[e["name"]]
        if pre is not None:  # floored codes
            s = e["scale"] if e["type"] == "avgpool" else e["output"]["scale"]
            got_codes, want_codes = np.round(got / s), np.round(want / s)
            assert_equal_but_ties(got_codes, want_codes, pre, what=e["name"])
            if e["name"] == "c1":
                assert len(np.unique(got_codes)) > 2, "c1: a dead layer would hide errors"
        elif e["type"] == "compute":  # the logits
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
        else:  # max pool, flatten, dropout: the same values
            np.testing.assert_array_equal(got, want)
        prev = e["name"]
    assert prev == "fc"


@pytest.mark.slow  # trains
def test_quantize_mixed_structure_training_and_freezing():
    model = _bn_model()
    before = [w.copy() for w in model.get_weights()]
    q = qat.quantize_mixed(model, Policy.uniform(model, 4, 4, "PL"), freeze_bn_after=1,
                           alpha=0.5)  # small alpha: some activations clip, alpha gets a gradient
    assert [type(layer).__name__ for layer in q.layers[1:]] == [
        "QuantInput", "QuantCompute", "QuantCompute", "MaxPooling2D", "QuantCompute",
        "QuantAvgPool", "Dropout", "QuantCompute"]
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 8, 8, 2), dtype=np.float32), rng.integers(0, 3, 64)
    c1 = q.get_layer("c1")
    w = c1.kernel.numpy()
    c1.w_min.assign(0.5 * w.min())  # tight clips: some weights clip, a and b get gradients
    c1.w_max.assign(0.5 * w.max())
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(q(x, training=True) ** 2)
    grads = dict(zip([v.name for v in q.trainable_variables],
                     tape.gradient(loss, q.trainable_variables)))
    for name in ("c1/alpha:0", "c1/w_min:0", "c1/w_max:0", "c1/kernel:0", "c1/gamma:0"):
        assert grads[name] is not None and np.any(grads[name].numpy() != 0), name
    mean_before = c1.moving_mean.numpy().copy()
    seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(
        (c1.moving_mean.numpy().copy(), c1.gamma.numpy().copy(), float(c1.bn_frozen.numpy()))))
    hist = train.fit(q, (x, y), epochs=2, validation_split=0.0, progress=False,
                     callbacks=[record])
    assert np.isfinite(hist["loss"]).all()
    (mean0, gamma0, frozen0), (mean1, gamma1, frozen1) = seen
    assert frozen0 == 0.0 and frozen1 == 1.0  # FreezeBN at the start of epoch 1
    assert not np.allclose(mean0, mean_before)  # BN trained in epoch 0
    np.testing.assert_array_equal(mean1, mean0)  # ... and not in epoch 1
    np.testing.assert_array_equal(gamma1, gamma0)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_quantize_mixed_errors():
    model = _bn_model()
    with pytest.raises(ValueError, match="do not match"):
        qat.quantize_mixed(model, Policy.uniform(["c1", "fc"], 8, 8))
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(2, 3, activation="relu", name="c")(inp)
    x = L.SeparableConv2D(2, 3, name="up")(x)  # (Conv2DTranspose is a handler kind now)
    bad = keras.Model(inp, L.Dense(2, name="fc")(L.Flatten()(x)))
    with pytest.raises(ValueError, match="'up'.*SeparableConv2D"):
        qat.quantize_mixed(bad, Policy.uniform(bad, 8, 8))
    inp = keras.Input((8, 8, 1))
    a = L.Conv2D(2, 3, activation="relu", name="a")(inp)
    b = L.Conv2D(2, 3, activation="relu", name="b")(inp)
    branchy = keras.Model(inp, L.Dense(2, name="fc")(L.Flatten()(L.Add(name="add")([a, b]))))
    # branches and linear layers inside the network are taken (tests/test_any_graph.py)
    q = qat.quantize_mixed(branchy, Policy.uniform(branchy, 8, 8))
    assert type(q.get_layer("add")).__name__ == "QuantAdd"
    inp = keras.Input((8, 8, 1))
    lin = keras.Model(inp, L.Dense(2, name="fc")(L.Flatten()(L.Conv2D(2, 3, name="c")(inp))))
    assert qat.quantize_mixed(lin, Policy.uniform(lin, 8, 8)).get_layer("c").activation == \
        "signed"
    # a TF op that is not a layer in disguise is refused by name
    inp = keras.Input((8, 8, 1))
    scaled = keras.Model(inp, L.Dense(2, name="fc")(L.Flatten()(
        L.Conv2D(2, 3, activation="relu", name="c")(inp) * 2.0)))
    with pytest.raises(ValueError, match=r"TF op math.multiply.*Supported:"):
        qat.quantize_mixed(scaled, Policy.uniform(["c", "fc"], 8, 8))


def test_summary_counts_bits_bytes_and_macs():
    model = models.seed_cnn()
    policy = Policy(["conv", "fc"], [8, 2], [4, 8], "PL")
    table = qat.summary(qat.quantize_mixed(model, policy))
    conv, fc, total = (table.iloc[i] for i in range(3))
    assert (conv.weight_bits, conv.input_bits, conv.output_bits) == (8, 8, 4)
    assert (fc.weight_bits, fc.input_bits) == (2, 4)
    assert conv.weight_bytes == 12 * 9 and fc.weight_bytes == 10 * (2028 * 2 // 8)
    assert conv.macs == 26 * 26 * 12 * 9 and fc.macs == 2028 * 10
    assert conv.macs_w8a8 == conv.macs and fc.macs_w2a4 == fc.macs and fc.macs_w8a8 == 0
    assert total.layer == "total" and total.params == 20410
    assert total.macs == conv.macs + fc.macs


def test_quant_compute_without_input_scale_says_how_to_build_it():
    layer = QuantCompute("dense", {"units": 3}, 4, 4, "PL", "FB", None, "relu", name="lonely")
    with pytest.raises(RuntimeError, match="lonely.*quantize_qat or tinyopt.quantize_ptq"):
        layer(np.zeros((2, 5), np.float32), training=False)

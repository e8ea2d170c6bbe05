import numpy as np
import pytest

from tinyopt import convert, measure, models, train
from tinyopt.front.train import split
from tinyopt.litert.measure import ROW_COLUMNS, io_dtypes, quantize_input
from tinyopt.transforms.keras_graph import compute_layer_names


def test_seed_cnn_has_20410_params_and_93288_macs():
    m = models.seed_cnn()
    assert m.count_params() == 20410
    assert measure.params(m)["total"] == 20410
    assert measure.macs(m) == {"total": 93288, "per_layer": {"conv": 73008, "fc": 20280}}


def test_mobilenet_v1_names_and_params():
    m = models.mobilenet_v1(1.0, 224, 1000)
    names = compute_layer_names(m)
    assert names[0] == "conv0" and names[-1] == "fc" and len(names) == 28
    assert names[1:3] == ["dw1", "pw1"] and names[-3:-1] == ["dw13", "pw13"]
    conv = sum(int(np.prod(m.get_layer(n).weights[0].shape)) for n in names[:-1])
    # 224_1.0 without the background class, by hand: conv0 3*3*3*32 = 864; depthwise 9 * (32 + 64
    # + 2*128 + 2*256 + 6*512 + 1024) = 44,640; pointwise 3,139,584; FC 1024*1000 + 1000.
    assert conv == 864 + 44640 + 3139584
    assert m.get_layer("fc").count_params() == 1025000


def _tiny_model(seed=0):
    return models.seed_cnn(input_shape=(8, 8, 1), classes=3, seed=seed)


def _tiny_data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 8, 8, 1), dtype=np.float32)
    y = (x.mean(axis=(1, 2, 3)) * 6).astype(np.uint8) % 3
    return x, y


@pytest.mark.slow  # trains
def test_fit_is_deterministic_and_rejects_raw_pixels():
    x, y = _tiny_data()
    weights = []
    for _ in range(2):
        m = _tiny_model()
        h = train.fit(m, (x, y), epochs=2, batch_size=16, seed=3, progress=False)
        assert set(h) >= {"loss", "val_loss", "accuracy", "val_accuracy"}
        weights.append([w.copy() for w in m.get_weights()])
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(TypeError, match="preprocess"):
        train.fit(_tiny_model(), ((x * 255).astype(np.uint8), y), epochs=1, progress=False)


@pytest.mark.slow  # (a few seconds: make test runs it, test-fast does not)
def test_cosine_schedule_decays_and_bad_schedules_are_refused():
    x, y = _tiny_data()
    m = _tiny_model()
    train.fit(m, (x, y), epochs=2, batch_size=16, seed=3, learning_rate=1e-2,
              lr_schedule="cosine", progress=False)
    opt = m.optimizer
    steps = 2 * int(np.ceil(len(x) * 0.9 / 16))
    assert int(opt.iterations.numpy()) == steps
    assert float(opt.learning_rate) < 0.05 * 1e-2  # decayed to ~0 by the last batch
    const = _tiny_model()
    train.fit(const, (x, y), epochs=1, batch_size=16, seed=3, learning_rate=1e-2, progress=False)
    assert float(const.optimizer.learning_rate) == pytest.approx(1e-2)
    with pytest.raises(ValueError, match="lr_schedule must be"):
        train.fit(_tiny_model(), (x, y), epochs=1, lr_schedule="step", progress=False)
    with pytest.raises(ValueError, match="compile=True"):
        train.fit(_tiny_model(), (x, y), epochs=1, lr_schedule="cosine", compile=False,
                  progress=False)


def test_validation_comes_from_train_only():
    x, y = _tiny_data(100)
    (xt, yt), (xv, yv) = split(x, y, 0.1, seed=0)
    assert len(xv) == 10 and len(xt) == 90
    rows = {r.tobytes() for r in x}
    assert {r.tobytes() for r in xv} <= rows
    assert not ({r.tobytes() for r in xv} & {r.tobytes() for r in xt})


@pytest.fixture(scope="module")
def tiny_tflite():
    """An untrained (seeded) tiny model: measuring needs no training."""
    x, y = _tiny_data()
    m = _tiny_model()
    return m, convert.to_tflite(m, "float32"), x, y


def test_measure_on_tiny_model(tiny_tflite):
    m, tfl, x, y = tiny_tflite
    acc = measure.accuracy(tfl, x, y, batch_size=10)  # 64 images: last batch is partial
    logits = measure.predict(tfl, x, batch_size=10)
    assert acc == float(np.mean(np.argmax(logits, 1) == y))  # the argmax of what predict gives
    np.testing.assert_allclose(logits, m.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    lat = measure.latency(tfl, runs=20, warmup=2)
    assert 0 < lat["latency_ms_p10"] <= lat["latency_ms_median"] <= lat["latency_ms_p90"]
    assert lat["threads"] == 1 and lat["cpu"]
    s = measure.size(tfl)
    assert s["size_bytes"] == len(tfl) and 0 < s["size_gzip_bytes"] < len(tfl)
    assert io_dtypes(tfl) == ("float32", "float32")
    row = measure.evaluate(tfl, x, y, dataset="tiny", variant="float32", model=m, latency_runs=5)
    assert list(row)[:10] == ROW_COLUMNS
    assert row["accuracy"] == acc and row["params"] == m.count_params()


def test_measure_rejects_bad_input(tiny_tflite):
    _, tfl, x, y = tiny_tflite
    with pytest.raises(TypeError, match="preprocess"):
        measure.accuracy(tfl, (x * 255).astype(np.uint8), y)
    with pytest.raises(ValueError, match="labels"):
        measure.accuracy(tfl, x, y[:-1])
    with pytest.raises(ValueError, match="float32"):
        convert.to_tflite(_tiny_model(), "int3")


def test_quantize_input_uses_tensor_params():
    detail = {"dtype": np.int8, "quantization": (1 / 255, -128), "name": "in"}
    q = quantize_input(np.array([0, 255, 128], np.float32) / 255, detail)
    assert q.tolist() == [-128, 127, 0]


def test_params_look_through_tfmot_wrappers():
    import tensorflow_model_optimization as tfmot
    m = models.seed_cnn()
    q = tfmot.quantization.keras.quantize_model(m)
    assert measure.params(q)["total"] == 20410
    assert measure.macs(q)["total"] == 93288
    p = tfmot.sparsity.keras.prune_low_magnitude(models.seed_cnn())
    assert measure.params(p)["total"] == 20410

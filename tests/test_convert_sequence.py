"""Conversion modes, pruning, sequences of transforms and their recommendation. Tests that need
the trained toy model (the ``small`` fixture) are slow."""
import numpy as np
import pytest

from tinyopt import convert, measure, models, prune, sequence
from tinyopt.litert.measure import io_dtypes, operators


@pytest.fixture(scope="module")
def small():
    """A learnable 10-class toy problem at 28x28 and a seed CNN trained on it briefly."""
    from tests._toy import toy_model_and_data
    return toy_model_and_data()


@pytest.fixture(scope="module")
def small_float_accuracy(small):
    m, data = small
    return measure.accuracy(convert.to_tflite(m), data.x_test, data.y_test)


@pytest.mark.slow  # trains
@pytest.mark.parametrize("mode", list(convert.MODES))
def test_every_mode_converts_and_runs(small, small_float_accuracy, mode):
    m, data = small
    tfl = convert.to_tflite(m, mode, calibration=data.x_train, calibration_samples=50)
    acc = measure.accuracy(tfl, data.x_test, data.y_test)
    assert small_float_accuracy > 0.5  # the toy problem was learned
    assert abs(acc - small_float_accuracy) <= 0.05
    ins, outs = io_dtypes(tfl)
    if mode == "int8":
        assert (ins, outs) == ("int8", "int8")
        assert "QUANTIZE" not in operators(tfl)
    elif mode == "int16x8":
        assert (ins, outs) == ("int16", "int16")
    else:
        assert (ins, outs) == ("float32", "float32")


def test_calibrated_modes_need_calibration():
    m = models.seed_cnn()  # untrained: the arguments are refused before any conversion
    with pytest.raises(ValueError, match="calibration"):
        convert.to_tflite(m, "int8")
    with pytest.raises(ValueError, match="unknown conversion mode 'int4'.*float16"):
        convert.to_tflite(m, "int4")


def test_calibration_subset_is_seeded_and_sized():
    x = np.arange(2000, dtype=np.float32)[:, None]
    a, b = convert.calibration_subset(x, 500, 0), convert.calibration_subset(x, 500, 0)
    assert len(a) == 500 and np.array_equal(a, b)


@pytest.mark.parametrize("spec, reason", [
    ("int8>prune", "must end with a converter"),
    ("prune>int8>float16", "converter must be the last"),
    ("qat>qat>int8", "qat appears 2 times"),
    ("qat>decompose>int8", "decompose after qat"),
    ("prune>decompose>int8", "decompose after prune"),
    ("qat>float16", "label would be false"),
    ("prune>shrink>int8", "unknown step 'shrink'"),
    ("", "unknown step ''"),
])
def test_validation_errors(spec, reason):
    with pytest.raises(ValueError, match=reason):
        sequence.validate(spec)


def test_validate_accepts_seed_chains():
    for spec in ["graph>int8", "graph>dynamic", "decompose>float16", "prune>qat>int8",
                 ["decompose", "prune", "int8"], "float32"]:
        assert sequence.validate(spec)[-1] in convert.MODES


@pytest.mark.slow  # trains
def test_prune_reaches_sparsity_and_leaves_input_untouched(small):
    m, data = small
    before = [w.copy() for w in m.get_weights()]
    p = prune.prune(m, data, epochs=2, batch_size=128, final_sparsity=0.8, frequency=5,
                    progress=False)
    for layer, s in p.sparsity["per_layer"].items():
        assert s == pytest.approx(0.8, abs=0.02), layer
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert prune.sparsity(m)["total"] < 0.01
    # The artifact: dense storage, same size; gzip shows the zeros.
    assert prune.sparsity(p.model) == p.sparsity
    dense, sparse = (measure.size(convert.to_tflite(k)) for k in (m, p.model))
    assert abs(sparse["size_bytes"] - dense["size_bytes"]) < 200
    assert sparse["size_gzip_bytes"] < 0.6 * dense["size_gzip_bytes"]


@pytest.mark.slow  # trains
def test_sequence_run_many_caches_prefixes_and_recommends(small):
    m, data = small
    opts = dict(dataset="toy", prune_epochs=1, epochs=1, decompose_epochs=1, latency_runs=5,
                latency_warmup=1, calibration_samples=50, progress=False)
    df = sequence.run_many(["graph>int8", "decompose>float16", "prune>int8"], m, data, **opts)
    variants = df["variant"].tolist()
    assert variants[0] == "float32"
    for v in ["graph>float32", "graph>int8", "decompose>float32", "decompose@init>float32",
              "separable@scratch>float32", "decompose>float16", "prune>float32", "prune>int8"]:
        assert v in variants
    assert len(variants) == len(set(variants))
    assert df.set_index("variant").loc["graph>float32", "graph_changes"] == "no change"
    assert df.set_index("variant").loc["prune>int8", "sparsity"] > 0.7
    assert (df["test_images"] == 300).all()
    rec = sequence.recommend(df, tolerance_pt=100)
    assert set(rec.index) == {"smallest", "most_accurate", "fastest"}
    assert rec.loc["smallest", "size_bytes"] == df["size_bytes"].min()
    assert rec.loc["smallest", "ties"] == ""
    with pytest.raises(ValueError, match="baseline"):
        sequence.recommend(df[df["variant"] != "float32"])
    with pytest.raises(ValueError, match="unknown sequence options"):
        sequence.run("float32", m, data, epoch=3)


def test_recommend_tolerance_and_ties():
    rows = [
        dict(variant="float32", accuracy=0.900, size_bytes=80000, latency_ms_median=0.040,
             latency_ms_p10=0.039, latency_ms_p90=0.041, test_images=10000),
        dict(variant="a", accuracy=0.899, size_bytes=20000, latency_ms_median=0.039,
             latency_ms_p10=0.038, latency_ms_p90=0.040, test_images=10000),
        dict(variant="b", accuracy=0.880, size_bytes=10000, latency_ms_median=0.010,
             latency_ms_p10=0.009, latency_ms_p90=0.011, test_images=10000),
        dict(variant="c", accuracy=0.903, size_bytes=40000, latency_ms_median=0.060,
             latency_ms_p10=0.055, latency_ms_p90=0.065, test_images=10000),
    ]
    rec = sequence.recommend(rows, tolerance_pt=0.5)
    assert rec.loc["smallest", "variant"] == "a"        # b is 2 pt worse: excluded
    assert rec.loc["fastest", "variant"] == "a"
    assert rec.loc["fastest", "ties"] == "float32"      # overlapping p10-p90
    assert rec.loc["most_accurate", "variant"] == "c"
    assert rec.loc["most_accurate", "ties"] == "float32 a"  # within 2 SE (~0.59 pt)
    assert sequence.recommend(rows, tolerance_pt=3).loc["smallest", "variant"] == "b"


def test_sparsity_is_read_through_qat_wrappers():
    import tensorflow_model_optimization as tfmot
    m = models.seed_cnn()
    w = m.get_layer("fc").get_weights()
    w[0][:1000] = 0
    m.get_layer("fc").set_weights(w)
    q = tfmot.quantization.keras.quantize_model(m)
    assert prune.sparsity(q)["per_layer"]["quant_fc"] == pytest.approx(1000 / 2028)

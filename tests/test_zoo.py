"""The MLPerf Tiny model locator (checksummed) and the real-model integer check of notebook 07."""
from __future__ import annotations

import shutil

import pytest

from tinyopt.front import zoo
from tinyopt.studies import real_models


def _have(name="ad_fcae"):
    try:
        return zoo.mlperf_tiny_path(name)
    except zoo.ModelNotFound as exc:
        pytest.skip(str(exc))


def test_unknown_names_and_kinds_are_refused():
    with pytest.raises(ValueError, match=r"unknown MLPerf Tiny model 'resnet50'.*ic_resnet8"):
        zoo.mlperf_tiny_path("resnet50")
    with pytest.raises(ValueError, match="kind must be 'int8' or 'keras'"):
        zoo.mlperf_tiny_path("ad_fcae", "float16")


def test_a_changed_model_file_is_refused(tmp_path, monkeypatch):
    src = _have()
    folder = tmp_path / "mlperf_tiny"
    folder.mkdir()
    shutil.copy(src.parent / "SHA256SUMS", folder / "SHA256SUMS")
    data = bytearray(src.read_bytes())
    data[-1] ^= 1  # one bit flipped
    (folder / src.name).write_bytes(bytes(data))
    monkeypatch.setenv("TINYOPT_MODELS", str(tmp_path))
    with pytest.raises(zoo.ModelNotFound, match=r"is not the published model: sha256"):
        zoo.mlperf_tiny_path("ad_fcae")
    (folder / src.name).write_bytes(src.read_bytes())
    assert zoo.mlperf_tiny_path("ad_fcae") == folder / src.name  # the env folder comes first


def test_integer_check_compares_with_both_interpreters():
    _have()
    row = real_models.integer_check(zoo.mlperf_tiny_tflite("ad_fcae"), "ad_fcae", images=8)
    assert row["macs"] == 264192 and row["ops"] == "dense x10"
    assert row["litert_diff_bytes"] == 0 and row["tflm_diff_bytes"] == 0
    # the two interpreters themselves differ on this FC model (one vs two roundings), so a
    # simulator matching both, each in its flavour, is not comparing a thing with itself
    assert row["litert_vs_tflm_bytes"] > 0
    with pytest.raises(ValueError, match="images must be >= 1"):
        real_models.integer_check(zoo.mlperf_tiny_tflite("ad_fcae"), "ad_fcae", images=0)


def test_tflm_arena_splits_head_and_tail_and_refuses_a_non_model():
    from tinyopt.deploy.tflm_arena import tflm_arena
    _have()
    pytest.importorskip("tflite_micro")
    arena = tflm_arena(zoo.mlperf_tiny_tflite("ad_fcae"))
    assert arena["total_bytes"] == arena["activation_bytes"] + arena["persistent_bytes"]
    # the autoencoder's largest live pair: 640 int8 inputs + 128 outputs of its first layer
    assert arena["activation_bytes"] == 640 + 128
    with pytest.raises(RuntimeError, match="tflite-micro interpreter gave no arena report"):
        tflm_arena(b"not a model" * 10)

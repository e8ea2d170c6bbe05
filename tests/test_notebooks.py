"""Notebooks run under papermill with tiny parameters (make reproduce runs the defaults)."""

import pandas as pd
import pytest

from tests.conftest import run_notebook as run


@pytest.mark.slow
def test_00_baseline_tiny(tmp_path):
    run("00_baseline.ipynb", tmp_path, dataset="fashion_mnist", epochs=1, train_samples=2000,
        latency_runs=5, out_dir=str(tmp_path / "out"))
    df = pd.read_csv(tmp_path / "out" / "fashion_mnist.csv")
    assert len(df) == 1 and df.loc[0, "test_images"] == 10000
    assert df.loc[0, "accuracy"] > 0.5
    assert (tmp_path / "out" / "fashion_mnist.png").stat().st_size > 1000


@pytest.mark.slow
def test_01_multicomponent_tiny(tmp_path):
    run("01_multicomponent.ipynb", tmp_path, needs=("mnist",), dataset="mnist", epochs=1,
        train_samples=1500,
        sequences=["int8", "prune>qat>int8", "graph>dynamic", "decompose>float16"],
        latency_runs=3, prune_epochs=1, qat_epochs=1, decompose_epochs=1,
        calibration_samples=50, tolerance_pt=50.0, out_dir=str(tmp_path / "out"))
    df = pd.read_csv(tmp_path / "out" / "mnist.csv")
    assert {"float32", "int8", "prune>qat>int8", "graph>dynamic", "decompose>float16",
            "decompose@init>float32", "separable@scratch>float32"} <= set(df["variant"])
    assert (df["test_images"] == 10000).all()
    assert df.set_index("variant").loc["int8", "input_dtype"] == "int8"
    assert df.set_index("variant").loc["prune>qat>int8", "sparsity"] > 0.7
    vs = pd.read_csv(tmp_path / "out" / "mnist_vs_seed.csv")
    assert vs.set_index("seed_label").loc["TFLite float32", "seed_size_bytes"] == 83280
    assert len(pd.read_csv(tmp_path / "out" / "mnist_recommend.csv")) == 3
    for fig in ("mnist_bars.png", "mnist_scatter.png"):
        assert (tmp_path / "out" / fig).stat().st_size > 1000

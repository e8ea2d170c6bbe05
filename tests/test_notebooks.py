"""Every notebook runs under papermill with tiny parameters (the default ones run in make reproduce)."""
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest

from tests.conftest import REPO, have_real


def run(nb, tmp_path, **params):
    out = tmp_path / Path(nb).name
    pm.execute_notebook(str(REPO / "notebooks" / nb), str(out), parameters=params, cwd=str(REPO),
                        progress_bar=False, kernel_name="python3")
    return out


@pytest.mark.slow
def test_00_baseline_tiny(tmp_path):
    if not have_real("fashion_mnist"):
        pytest.skip("Fashion-MNIST not fetched (run `make data`)")
    run("00_baseline.ipynb", tmp_path, dataset="fashion_mnist", epochs=1, train_samples=2000,
        latency_runs=5, out_dir=str(tmp_path / "out"))
    df = pd.read_csv(tmp_path / "out" / "fashion_mnist.csv")
    assert len(df) == 1 and df.loc[0, "test_images"] == 10000
    assert df.loc[0, "accuracy"] > 0.5
    assert (tmp_path / "out" / "fashion_mnist.png").stat().st_size > 1000

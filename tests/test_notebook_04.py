"""Notebook 04 (integer-only deployment) runs under papermill with tiny parameters."""
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_notebook


@pytest.mark.slow
def test_04_integer_only_tiny(tmp_path):
    out = tmp_path / "out"
    run_notebook("04_integer_only.ipynb", tmp_path, epochs=1, train_samples=1000,
                 mobilenet_samples=300, test_samples=1000, qat_epochs=0, calibration_samples=64,
                 error_samples=50, model_names=["seed_cnn", "mobilenet"],
                 configs=["PL+FB", "PC+ICN"], out_dir=str(out))
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 4 and (summary["test_images"] == 1000).all()
    assert (summary["flash_bytes"] > 0).all()
    # the integer graph agrees with the bias-snapped fake-quant model on almost every image
    assert (summary["snapped_top1_agreement"] >= 0.995).all()
    errors = pd.read_csv(out / "layer_errors.csv")
    assert set(errors["model"]) == {"seed_cnn", "mobilenet"}
    for name in ("layer_error_trace.png", "accuracy.png"):
        assert (out / name).stat().st_size > 1000
    assert len(list(Path(out).glob("*.npz"))) == 4

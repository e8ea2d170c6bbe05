"""Notebook 05 (deploy) runs under papermill with tiny parameters: host path always, the QEMU
path when the Cortex-M7 toolchain is installed (otherwise host-only, with the reason printed)."""
import pytest

from tinyopt import mcu


@pytest.mark.slow
def test_notebook_05_tiny(tmp_path):
    import pandas as pd

    from tests.conftest import run_notebook
    ok, why = mcu.toolchain()
    if not ok:
        print(f"notebook 05 runs host-only: {why}")
    out = tmp_path / "out"
    run_notebook("05_deploy.ipynb", tmp_path, needs=("fashion_mnist", "mnist"),
                 train_samples=500, host_images=30, mcu_images=5,
                 build_dir=str(tmp_path / "build"), out_dir=str(out))
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["model"]) == ["seed_cnn_int8", "mobilenet_32_0.25_mixed",
                                      "seed_cnn_mixed_converted",
                                      "mobilenet_32_0.25_mixed_converted"]
    assert (summary["host_images_exact"] == 30).all()
    assert (pd.read_csv(out / "steps.csv")["model"].nunique()) == 4
    if ok:
        assert (summary["mcu_images_exact"] == 5).all() and summary["ram_acceptance_ok"].all()
        mem = pd.read_csv(out / "memory.csv")
        assert set(mem["memory"]) == {"flash", "ram"}
        assert (out / "instructions_per_step.png").stat().st_size > 1000

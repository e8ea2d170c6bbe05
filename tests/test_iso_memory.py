"""Notebook 06 (iso-memory: memory-driven mixed precision vs the best int8 that fits) runs under
papermill with tiny parameters and produces its table, runs, figure and run record."""

import pandas as pd
import pytest

from tests.conftest import run_notebook
from tinyopt import memory
from tinyopt.policy import Policy


@pytest.mark.slow
def test_06_iso_memory_tiny(tmp_path):
    out = tmp_path / "out"
    run_notebook("06_iso_memory.ipynb", tmp_path, alphas=[0.25, 0.5], resolutions=[28],
                 budget_member=[0.25, 28], flash_bytes=500000, epochs=2, train_samples=2000,
                 qat_samples=500, calibration_samples=128, test_samples=500, out_dir=str(out))
    runs = pd.read_csv(out / "runs.csv").set_index("policy")
    # RAM budget defaults to budget_member's w8a8 peak RAM; flash was given
    names = [n.name for n in memory.mobilenet_v1_nodes(0.25, 28, 10, 1)]
    ram = memory.peak_ram_bytes(memory.mobilenet_v1_nodes(0.25, 28, 10, 1),
                                Policy.uniform(names, 8, 8, "PL"))
    # 0.25@28 fits at int8; 0.5@28 does not (flash) and runs under both memory-driven policies
    assert set(runs.index) == {"int8", "Mix-PL", "Mix-PC"}
    assert runs.loc["int8", "member"] == "0.25@28" and runs.loc["int8", "fits_int8"]
    for tag in ("Mix-PL", "Mix-PC"):
        r = runs.loc[tag]
        assert r.member == "0.5@28" and not r.fits_int8 and r.int8_flash_bytes > 500000
        assert r.flash_bytes <= 500000 and r.ram_bytes <= ram and r.fits_budget
        assert "2" in r.weight_bits.split("/") or "4" in r.weight_bits.split("/")
        assert 0 < r.subbyte_mac_share < 1
    assert runs.loc["int8", "subbyte_mac_share"] == 0
    assert (runs.integer_acc > 0.3).all()  # 10 classes: well above chance even after 1 epoch
    table = pd.read_csv(out / "fashion_mnist_table.csv").set_index("member")
    assert list(table.index) == ["0.25@28", "0.5@28"]
    assert table.loc["0.5@28", "Mix-PL"] == pytest.approx(runs.loc["Mix-PL", "integer_acc"])
    assert table.loc["0.5@28", "int8_that_fits"].startswith("0.25@28")
    run = pd.read_csv(out / "fashion_mnist_run.csv").iloc[0]
    assert run.ram_budget == ram and run.flash_budget == 500000 and run.test_images == 500
    assert (out / "fashion_mnist_pareto.png").stat().st_size > 1000

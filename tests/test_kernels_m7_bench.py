"""Notebook 09's MLPerf tables (tinyopt.studies.deploy_c.mlperf_kernel_tables) from rows shaped
as benchmarks/bench_kernels.py writes them."""
import pandas as pd
import pytest

from tinyopt.studies.deploy_c import MLPERF_MODEL_COLUMNS, mlperf_kernel_tables


def _rows():
    model = {c: 0 for c in MLPERF_MODEL_COLUMNS}
    rows = [dict(model, scope="model", kernel="m7", model="mlperf_a", macs=100, insns=150,
                 cmsis_nn_insns=300, host_images=1000, mcu_images=20),
            dict(model, scope="model", kernel="portable", model="mlperf_a", macs=100,
                 insns=900, cmsis_nn_insns=300),
            dict(model, scope="model", kernel="m7", model="seed_cnn_int8", macs=10, insns=70),
            {"scope": "mlperf_layer_type", "model": "mlperf_a", "layer_type": "conv 3x3",
             "kernel": "conv", "insns_per_mac": 1.25},
            {"scope": "mlperf_layer_type", "model": "mlperf_a", "layer_type": "dense",
             "kernel": "fc", "insns_per_mac": 1.5},
            {"scope": "mlperf_add", "model": "mlperf_a", "layer_type": "add (fused)",
             "kernel": "conv", "layers": 1, "elements": 8, "insns": 100,
             "insns_per_element": 12.5, "model_insns": 150}]
    return rows


def test_mlperf_kernel_tables(tmp_path):
    path = tmp_path / "kernels.csv"
    pd.DataFrame(_rows()).to_csv(path, index=False)
    t = mlperf_kernel_tables(path)
    assert list(t["models"]["model"]) == ["mlperf_a"]  # m7 rows of MLPerf models only
    assert int(t["models"]["host_images"].iloc[0]) == 1000
    lt = t["layer_types"]
    assert lt.loc["conv 3x3 (conv)", "mlperf_a"] == 1.25
    assert lt.loc["CMSIS-NN, whole model", "mlperf_a"] == 3.0
    assert t["adds"]["insns_per_element"].tolist() == [12.5]


def test_mlperf_kernel_tables_refuses_a_csv_without_mlperf_rows(tmp_path):
    path = tmp_path / "kernels.csv"
    pd.DataFrame([r for r in _rows() if r["scope"] != "mlperf_layer_type"]).to_csv(path,
                                                                                 index=False)
    with pytest.raises(ValueError, match="mlperf_layer_type.*bench_kernels"):
        mlperf_kernel_tables(path)

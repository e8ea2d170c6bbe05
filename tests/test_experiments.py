"""The notebook-level studies of notebooks 02, 04, 05 and 06 (tinyopt.studies.subbyte_qat,
integer_only, deploy_c and iso_memory): their bookkeeping and tables on tiny inputs, and the
deployer on a small synthetic graph (host only). The training runs are checked end to end by the
notebook tests (tests/test_notebooks.py); the one here is marked slow. Fast otherwise."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import synthetic_graph
from tinyopt.studies import deploy_c, integer_only, iso_memory, subbyte_qat
from tinyopt.workbench import report


# ------------------------------------------------------------------------------ notebook 02
def _policy_rows():
    base = {"dataset": "d", "model": "m", "weight_bytes": None, "seconds": 1.0}
    return [{**base, "policy": "float32", "granularity": None, "fold": None, "method": "float32",
             "accuracy": 0.9},
            {**base, "policy": "float32", "granularity": None, "fold": None,
             "method": "float32+ft", "accuracy": 0.91},
            {**base, "policy": "w4a4", "granularity": "PL", "fold": "ICN", "method": "PTQ",
             "accuracy": 0.8},
            {**base, "policy": "w4a4", "granularity": "PL", "fold": "ICN", "method": "QAT",
             "accuracy": 0.85}]


def test_policy_row_text_and_qat_configs():
    rows = _policy_rows()
    assert subbyte_qat.policy_row_text(rows[0]).split() == ["m", "float32", "float32",
                                                             "acc=0.9000", "(1", "s)"]
    assert "w4a4   PL  ICN   PTQ" in subbyte_qat.policy_row_text(rows[2])
    assert subbyte_qat.parse_qat_configs(["w4a4/PL/FB", "mixed/PC"]) == {
        ("w4a4", "PL", "FB"), ("mixed", "PC", None)}
    assert subbyte_qat.parse_qat_configs([]) == set()


def test_ptq_qat_tables():
    refs, pivot = subbyte_qat.ptq_qat_tables(pd.DataFrame(_policy_rows()))
    assert list(refs.columns) == ["float32", "float32+ft"] and list(refs.index) == ["m"]
    assert list(pivot.columns) == ["PTQ", "QAT"]
    assert pivot.loc[("m", "w4a4", "PL", "ICN"), "QAT"] == 0.85


# ------------------------------------------------------------------------------ notebook 04
def test_integer_acceptance_columns_and_verdicts():
    summary = pd.DataFrame({
        "model": ["a", "b"], "config": ["PC+ICN", "PL+FB"], "fakequant_acc": [0.8, 0.7],
        "integer_acc": [0.801, 0.69], "diff_pt": [0.1, -1.0], "top1_agreement": [1.0, 0.98],
        "snapped_fakequant_acc": [0.8, 0.69], "snapped_integer_acc": [0.801, 0.69],
        "snapped_top1_agreement": [1.0, 1.0]})
    check = integer_only.integer_acceptance(summary)
    assert list(check.columns) == ["model", "config", "fakequant_acc", "integer_acc", "diff_pt",
                                   "top1_agreement", "snapped_diff_pt", "snapped_top1_agreement",
                                   "within_0p2", "snapped_within_0p2"]
    assert check.within_0p2.tolist() == [True, False]
    assert check.snapped_within_0p2.tolist() == [True, True]
    assert check.snapped_diff_pt.iloc[0] == pytest.approx(0.1)


# ------------------------------------------------------------------------------ notebook 06
def test_iso_memory_budget_defaults_to_the_members_int8_footprint(capsys):
    flash, ram, grid = iso_memory.iso_memory_budget([0.25, 0.5], [28], [0.25, 28], 500000, None)
    assert flash == 500000
    assert ram == iso_memory.mobilenet_footprint(0.25, 28, iso_memory.w8a8(0.25, 28))[1]
    assert grid.member.tolist() == ["0.25@28", "0.5@28"]
    assert grid.fits_int8.tolist() == [True, False]
    assert "(given)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="must let some members fit"):
        iso_memory.iso_memory_budget([0.25], [28], [0.25, 28], None, None)
    assert "w8a8 PL of α=0.25 @28" in capsys.readouterr().out


def test_iso_memory_run_row():
    from tinyopt.data import Dataset
    ds = Dataset("fashion_mnist", np.zeros((4, 28, 28, 1)), np.zeros(4), np.zeros((6, 28, 28, 1)),
                 np.zeros(6))
    started = iso_memory.clock()
    row = iso_memory.iso_memory_run_row(ds, 5, 100, 50, "verdict", started, [0.5, 32],
                                         [0.25, 0.5], [28], 4, 2000, 1, 300, "pad")
    assert list(row) == ["dataset", "flash_budget", "ram_budget", "budget_member", "alphas",
                         "resolutions", "epochs", "train_samples", "qat_epochs", "qat_samples",
                         "test_images", "resize_mode", "seconds", "load_start", "load_end",
                         "verdict"]
    assert row["budget_member"] == "0.5@32" and row["alphas"] == "[0.25, 0.5]"
    assert row["test_images"] == 5 and row["dataset"] == "fashion_mnist"
    assert iso_memory.iso_memory_run_row(ds, None, 100, 50, "v", started, [0.5, 32], [0.5],
                                          [28], 4, None, 1, 300, "pad")["test_images"] == 6
    assert 0 <= row["seconds"] < 60


# ------------------------------------------------------------------------------ notebook 05
def test_deployer_and_tables_host_only(tmp_path, capsys):
    deploy = deploy_c.Deployer(tmp_path / "build", tmp_path, host_images=6, mcu_images=2,
                                   run_mcu=False)
    assert not deploy.run_mcu and deploy.images == 6
    assert "Cortex-M7 toolchain:" in capsys.readouterr().out
    g = synthetic_graph(0)
    codes = np.random.default_rng(0).integers(0, 256, (6, *g.input_shape))
    r = deploy(g, codes)
    assert r["summary"]["host_images_exact"] == 6 and r["summary"]["deploy_exact"]
    assert (tmp_path / "synthetic.npz").is_file()
    summary, memory, steps = deploy_c.tables([r, r], deploy.run_mcu)
    assert memory is None and len(summary) == 2 and steps["model"].nunique() == 1
    assert set(deploy_c.summary_columns(False)) <= set(summary.columns)
    assert set(deploy_c.step_columns(False)) <= set(steps.columns)
    assert deploy_c.summary_columns(True)[-1] == "mcu_mismatching_values"
    assert deploy_c.step_columns(True)[-2:] == ["insns_per_image", "insns_per_mac"]


# ------------------------------------------------------------------------------ training runs
@pytest.mark.slow
def test_seed_cnn_studies_on_a_toy_problem(tmp_path):
    """Notebooks 02 and 04's seed CNN runs on the toy problem: the rows and columns they write."""
    from tests._toy import toy_model_and_data
    _, data = toy_model_and_data()
    log = report.Checkpoint(tmp_path / "rows.csv")
    model, rows = subbyte_qat.subbyte_qat_seed_cnn(
        data, 1, ["w8a8"], ["PL"], test_samples=100, calibration_samples=64, qat_samples=200,
        qat_epochs=1, qat_lr=1e-4, on_row=log)
    assert [r["method"] for r in rows] == ["float32", "float32+ft", "PTQ", "QAT"]
    assert log.rows == rows and len(pd.read_csv(tmp_path / "rows.csv")) == 4
    assert model.count_params() > 0
    summary, errors = integer_only.integer_only(
        data, ["seed_cnn"], ["PC+ICN"], 8, 8, epochs=1, train_samples=600, mobilenet_samples=None,
        mobilenet_lr=3e-3, mobilenet_batch=32, test_samples=100, qat_epochs=0, qat_samples=100,
        calibration_samples=64, error_samples=20, save_dir=tmp_path)
    assert summary[["model", "config", "within_0p2"]].values.tolist() == [
        ["seed_cnn", "PC+ICN", bool(summary.within_0p2.iloc[0])]]
    assert summary.test_images.iloc[0] == 100 and set(errors.model) == {"seed_cnn"}
    assert (tmp_path / "seed_cnn_PC_ICN.npz").is_file()


@pytest.mark.slow
def test_notebook_05_sections_2_and_3_host_only(tmp_path, capsys):
    """The memory-driven MobileNet graph with random parameters, and the toy seed CNN converted
    by the sub-byte chain: bit-exact on the host, saved under their names."""
    from tests._toy import toy_model_and_data
    cnn, data = toy_model_and_data()
    deploy = deploy_c.Deployer(tmp_path / "build", tmp_path, host_images=4, mcu_images=1,
                                   run_mcu=False)
    policy, r = deploy_c.mobilenet_random(data, 0.25, 32, 0.45, 0.3, 0, deploy)
    assert set(policy.weight_bits) <= {2, 4, 8} and min(policy.weight_bits) < 8
    assert "weight_bits" in capsys.readouterr().out  # the policy, layer by layer
    r2 = deploy_c.seed_cnn_converted(cnn, data, [8, 2], [4, 8], deploy)
    for res in (r, r2):
        assert res["summary"]["host_images_exact"] == 4
    assert sorted(p.stem for p in tmp_path.glob("*.npz")) == ["mobilenet_32_0.25_mixed",
                                                               "seed_cnn_mixed_converted"]


def test_iso_memory_more_flash_must_leave_an_int8_member():
    grid = pd.DataFrame({"member": ["0.25@28", "0.5@28"], "int8_flash_bytes": [221560, 834968]})
    with pytest.raises(ValueError, match="more_flash 200,000 B: no member fits it at int8"):
        iso_memory.iso_memory_runs(None, grid, 500000, 9000, "PL", "PL", 1, 10, 1e-3, 8, 0, 10,
                                   1e-4, 8, 10, "bilinear", 0, more_flash=[200000])


def test_iso_memory_searches_table_over_seeds():
    def rows(seed, mix, acc, int8):
        return [
            {"seed": seed, "flash_budget": 400, "policy": "int8", "member": "a", "integer_acc": int8},
            {"seed": seed, "flash_budget": 400, "policy": "Mix-PL", "member": "b", "integer_acc": mix},
            {"seed": seed, "flash_budget": 400, "policy": "Acc-PL", "member": "b", "integer_acc": acc},
            {"seed": seed, "flash_budget": 400, "policy": "Mix-PL", "member": "c",
             "integer_acc": None, "note": "BudgetError: ..."},
            {"seed": seed, "flash_budget": 400, "policy": "Acc-PL", "member": "c",
             "integer_acc": None, "note": "BudgetError: ..."}]
    t = iso_memory.searches_table(pd.DataFrame(rows(0, 0.80, 0.82, 0.70) + rows(1, 0.84, 0.90, 0.72)))
    t = t.set_index(["policy", "member"])
    assert t.loc[("int8", "best"), "accuracy_mean"] == pytest.approx(0.71)
    assert t.loc[("Mix-PL", "best"), "accuracy_mean"] == pytest.approx(0.82)
    assert t.loc[("Mix-PL", "best"), "accuracy_min"] == pytest.approx(0.80)
    assert t.loc[("Acc-PL", "b"), "minus_rule_pt"] == pytest.approx(4.0)
    assert t.loc[("Acc-PL", "best"), "minus_int8_pt"] == pytest.approx(15.0)
    assert t.loc[("Mix-PL", "c"), "runs"] == 2 and t.loc[("Mix-PL", "c"), "fit"] == 0
    with pytest.raises(ValueError, match="flash_budget"):
        iso_memory.searches_table(pd.DataFrame([{"policy": "int8", "integer_acc": 0.5}]))

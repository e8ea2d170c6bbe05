"""Every notebook runs under papermill with tiny parameters (``make reproduce`` runs the defaults)
and writes the tables and figures checked here: one parametrized test over the notebooks, plus
the QEMU half of notebook 05, which skips with the toolchain's reason when it is missing (the
notebook itself then runs host-only and its host half is still checked).

Each notebook runs once per session (the QEMU test reuses the run of notebook 05), from the repo
root as ``make`` runs it, with an absolute ``out_dir`` under pytest's temporary folder.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import run_notebook

pytestmark = pytest.mark.slow


# ------------------------------------------------------------------------------ checks
def _check_00(out: Path) -> None:
    df = pd.read_csv(out / "fashion_mnist.csv")
    assert len(df) == 1 and df.loc[0, "test_images"] == 10000
    assert df.loc[0, "accuracy"] > 0.5
    assert (out / "models" / "fashion_mnist_float32.tflite").stat().st_size == \
        df.loc[0, "size_bytes"]
    assert (out / "fashion_mnist.png").stat().st_size > 1000


def _check_01(out: Path) -> None:
    df = pd.read_csv(out / "mnist.csv")
    assert {"float32", "int8", "prune>qat>int8", "graph>dynamic", "decompose>float16",
            "decompose@init>float32", "separable@scratch>float32"} <= set(df["variant"])
    assert (df["test_images"] == 10000).all()
    by = df.set_index("variant")
    assert by.loc["int8", "input_dtype"] == "int8"
    assert by.loc["prune>qat>int8", "sparsity"] > 0.7
    assert by.loc["float32", "accuracy"] > 0.5
    vs = pd.read_csv(out / "mnist_vs_seed.csv")
    assert vs.set_index("seed_label").loc["TFLite float32", "seed_size_bytes"] == 83280
    rec = pd.read_csv(out / "mnist_recommend.csv")
    assert len(rec) == 3 and set(rec["variant"]) <= set(df["variant"])
    # the deployment steps: integer-simulator accuracy, ELF flash and RAM, instructions
    dep = by.loc[["int8>int>mcu", "ptq(w4a4,PC)>int>mcu"]]
    assert (by.loc[["int8>int", "ptq(w4a4,PC)>int"], "accuracy_source"] == "integer_sim").all()
    assert dep["deploy_exact"].all()
    assert dep.loc["ptq(w4a4,PC)>int>mcu", "weights_params_bytes"] < \
        dep.loc["int8>int>mcu", "weights_params_bytes"]
    if dep["elf_flash_bytes"].notna().all():  # the ARM toolchain and QEMU are installed
        assert (dep["elf_flash_bytes"] > dep["weights_params_bytes"]).all()
        assert (dep["mcu_instructions"] > by.loc["int8", "macs"]).all()
        device = pd.read_csv(out / "mnist_recommend_device.csv")
        assert len(device) == 3 and set(device["variant"]) <= set(dep.index)
    for fig in ("mnist_variants.png", "mnist_pareto.png"):
        assert (out / fig).stat().st_size > 1000


def _check_02(out: Path) -> None:
    table = pd.read_csv(out / "fashion_mnist.csv")
    assert set(table["model"]) == {"seed_cnn", "mobilenet_v1_0.25_32"}
    assert set(table["method"]) == {"float32", "float32+ft", "PTQ", "QAT"}
    mbn = table[table.model == "mobilenet_v1_0.25_32"]
    assert set(mbn[mbn.method == "PTQ"].fold) == {"ICN", "FB"}  # FB vs ICN at 4 bits
    # mobilenet_qat=[]: no QAT row, so no fine-tuned float reference either (nothing to compare)
    assert set(mbn.method) == {"float32", "PTQ"}
    # the seed CNN learned (10 classes: chance is 0.1), and 4-bit PTQ and QAT keep most of it
    seed = table[table.model == "seed_cnn"].set_index("method")["accuracy"]
    assert seed["float32"] > 0.3
    assert seed["PTQ"] >= seed["float32"] - 0.1 and seed["QAT"] >= seed["float32"] - 0.1
    assert (table.dropna(subset=["weight_bytes"])["weight_bytes"] > 0).all()
    assert (out / "fashion_mnist.png").stat().st_size > 1000


def _check_03(out: Path) -> None:
    fam = pd.read_csv(out / "family_PC.csv")
    assert fam["config"].tolist() == ["128_0.5", "128_0.75"]
    assert fam["feasible"].all() and (fam["flash_bytes"] <= 2_048_000).all()
    assert (fam["peak_ram_bytes"] <= 512_000).all()
    assert fam.loc[0, "keras_params"] > fam.loc[0, "weights"]  # BN and FC bias on top
    table = pd.read_csv(out / "weight_memory_224_1.0.csv")
    assert (table["MiB_rounded"] - table["paper_MiB"]).abs().max() <= 0.01
    pol = pd.read_csv(out / "policies_PC.csv")
    assert len(pol) == 2 * 28 and set(pol["weight_bits"]) <= {2, 4, 8}
    assert (out / "bits_heatmap_PC.png").stat().st_size > 10_000


def _check_04(out: Path) -> None:
    summary = pd.read_csv(out / "summary.csv")
    assert len(summary) == 2 and (summary["test_images"] == 1000).all()
    assert (summary["flash_bytes"] > 0).all()
    # The integer graph agrees with the bias-snapped fake-quant model on almost every image: a
    # 1-LSB tie of the int32 logits may pick either class (tests/test_icn_convert.py checks the
    # layers exactly, up to rounding ties).
    assert (summary["snapped_top1_agreement"] >= 0.995).all()
    # ... which says something only for a model that learned: the seed CNN (the tiny MobileNet
    # run is at chance, one class; its layers are still checked below)
    seed = summary[summary.model == "seed_cnn"]
    assert (seed["float_acc"] > 0.3).all() and (seed["integer_acc"] > 0.3).all()
    errors = pd.read_csv(out / "layer_errors.csv")
    assert set(errors["model"]) == {"seed_cnn", "mobilenet"}
    # every layer's integer arithmetic, fed the simulator's input, within 1 LSB (a tie)
    assert (errors["isolated_max_lsb"] <= 1).all(), errors.to_string()
    for name in ("layer_error_trace.png", "accuracy.png"):
        assert (out / name).stat().st_size > 1000
    assert sorted(p.name for p in out.glob("*.npz")) == ["mobilenet_PC_ICN.npz",
                                                          "seed_cnn_PC_ICN.npz"]


MODELS_05 = ["seed_cnn_int8", "mobilenet_32_0.25_mixed", "seed_cnn_mixed_converted",
             "mobilenet_32_0.25_mixed_converted"]


def _check_05(out: Path) -> None:
    """The host half (always runs); the QEMU half is test_05_deploy_under_qemu."""
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["model"]) == MODELS_05
    assert (summary["host_images"] == 30).all() and (summary["host_images_exact"] == 30).all()
    assert (summary["host_mismatching_values"] == 0).all()
    assert (summary["distinct_outputs"] > 1).all()  # not a constant model: the check has teeth
    assert pd.read_csv(out / "steps.csv")["model"].nunique() == 4
    assert sorted(p.stem for p in out.glob("*.npz")) == sorted(MODELS_05)


def _check_06(out: Path) -> None:
    from tinyopt import memory
    from tinyopt.policy import Policy
    every = pd.read_csv(out / "runs.csv")
    runs = every[every.flash_budget == 500000].set_index("policy")
    # RAM budget defaults to budget_member's w8a8 peak RAM; flash was given
    nodes = memory.mobilenet_v1_nodes(0.25, 28, 10, 1)
    ram = memory.peak_ram_bytes(nodes, Policy.uniform([n.name for n in nodes], 8, 8, "PL"))
    # 0.25@28 fits at int8; 0.5@28 does not (flash) and runs under the memory-driven policy
    assert set(runs.index) == {"int8", "Mix-PL"}
    assert runs.loc["int8", "member"] == "0.25@28" and runs.loc["int8", "fits_int8"]
    r = runs.loc["Mix-PL"]
    assert r.member == "0.5@28" and not r.fits_int8 and r.int8_flash_bytes > 500000
    assert r.flash_bytes <= 500000 and r.ram_bytes <= ram and r.fits_budget
    assert {"2", "4"} & set(r.weight_bits.split("/"))  # some sub-byte weights
    assert 0 < r.subbyte_mac_share < 1
    assert runs.loc["int8", "subbyte_mac_share"] == 0
    # the integer graph computes what its fake-quant model computes (up to rare 1-LSB logit
    # ties), and the int8 member learned (10 classes: chance is 0.1)
    assert ((runs.integer_acc - runs.fakequant_acc).abs() <= 0.01).all()
    assert runs.loc["int8", "integer_acc"] > 0.3
    table = pd.read_csv(out / "fashion_mnist_table.csv").set_index("member")
    assert list(table.index) == ["0.25@28", "0.5@28"]
    assert table.loc["0.5@28", "Mix-PL"] == pytest.approx(runs.loc["Mix-PL", "integer_acc"])
    assert table.loc["0.5@28", "int8_that_fits"].startswith("0.25@28")
    # more_flash: the same trained members under a tighter flash budget; int8 not re-run
    tight = every[every.flash_budget == 400000].set_index("policy")
    assert set(tight.index) == {"int8", "Mix-PL"} and (tight.ram_budget == ram).all()
    assert tight.loc["int8", "integer_acc"] == runs.loc["int8", "integer_acc"]
    # the float accuracy before BN re-estimation is the first budget's, not the re-estimated one
    assert (every.groupby("member").float_acc_before_bn_recalibration.nunique() == 1).all()
    assert tight.loc["Mix-PL", "flash_bytes"] <= 400000 < runs.loc["Mix-PL", "flash_bytes"]
    budgets = pd.read_csv(out / "fashion_mnist_budgets.csv")
    best = budgets.set_index(["flash_budget", "policy", "member"])
    assert best.loc[(400000, "Mix-PL", "best"), "accuracy_mean"] == pytest.approx(
        tight.loc["Mix-PL", "integer_acc"])
    assert best.loc[(400000, "Mix-PL", "0.5@28"), "minus_int8_pt"] == pytest.approx(
        100 * (tight.loc["Mix-PL", "integer_acc"] - tight.loc["int8", "integer_acc"]))
    run = pd.read_csv(out / "fashion_mnist_run.csv").iloc[0]
    assert run.ram_budget == ram and run.flash_budget == 500000 and run.test_images == 500
    assert (out / "fashion_mnist_pareto.png").stat().st_size > 1000


def _check_07(out: Path) -> None:
    """Host only (QEMU for the DAG export: tests/test_deploy_dag.py)."""
    checks = pd.read_csv(out / "bitexact.csv")
    assert list(checks["model"]) == ["kws_dscnn", "ad_fcae"]
    assert (checks["images"] == 6).all()
    assert (checks["litert_diff_bytes"] == 0).all() and (checks["tflm_diff_bytes"] == 0).all()
    assert checks.set_index("model").loc["kws_dscnn", "macs"] == 2656768  # MLPerf's 2.66 M
    table = pd.read_csv(out / "real_models.csv").set_index("model")
    assert (table["host_c_mismatching_values"] == 0).all() and (table["host_images"] == 4).all()
    assert (table["arena_bytes"] == table["predicted_ram"]).all()
    assert (table["tflm_activation_bytes"] > 0).all()
    assert (table["arena_bytes"] <= table["tflm_activation_bytes"]).all()
    assert table["mcu_images"].isna().all()  # run_mcu=False: no QEMU columns, and said so
    assert pd.read_csv(out / "deploy.csv")["mcu_skipped"].eq("run_mcu=False").all()


def _check_08(out):
    table = pd.read_csv(out / "any_graph.csv")
    assert list(table["variant"]) == ["float32 (trained)", "float32", "w8a8", "mixed"]
    q = table[table.variant.isin(["w8a8", "mixed"])]
    # the deployed C computes what the simulator computes, and its arena is the memory model's
    assert q["host_exact"].str.split("/").apply(lambda p: p[0] == p[1]).all()
    assert (q["arena_bytes"] == q["peak_ram_bytes"]).all()
    mixed = table[table.variant == "mixed"].iloc[0]
    assert mixed["flash_bytes"] <= mixed["budget_flash"]
    assert mixed["peak_ram_bytes"] <= mixed["budget_ram"]
    summary = pd.read_csv(out / "any_graph_summary.csv")
    assert set(summary["architecture"]) == {"kws_dscnn"}
    assert (out / "any_graph.png").stat().st_size > 1000


def _check_10(out):
    table = pd.read_csv(out / "model_zoo.csv").set_index("model")
    assert list(table.index) == ["unet", "ad_fcae"]
    ad = table.loc["ad_fcae"]
    # the MLPerf reference file: imported, exact against both interpreters and on the host
    assert float(ad["litert_diff_bytes"]) == 0 and float(ad["tflm_diff_bytes"]) == 0
    assert ad["host_mismatching_values"] == 0 and ad["macs"] == 264192
    assert ad["w8a8_flash"] > 0 and ad["w8a8_peak_ram"] > 0 and ad["arena_bytes"] > 0
    # every network has a row that says what happened in each path
    for name, row in table.iterrows():
        assert pd.notna(row.get("w8a8_flash")) or pd.notna(row.get("subbyte_refused")), name
        assert pd.notna(row.get("nodes")) or pd.notna(row.get("int8_refused")), name
    assert (out / "model_zoo.png").stat().st_size > 1000


# ------------------------------------------------------------------------------ the notebooks
# stem: (datasets it needs, tiny parameters, check of its out_dir)
NOTEBOOKS = {
    "00_baseline": (("fashion_mnist",), dict(
        dataset="fashion_mnist", epochs=1, train_samples=2000, latency_runs=5), _check_00),
    "01_multicomponent": (("mnist",), dict(
        dataset="mnist", epochs=1, train_samples=1000,
        sequences=["int8", "prune>qat>int8", "graph>dynamic", "decompose>float16",
                   "int8>int>mcu", "ptq(w4a4,PC)>int>mcu"],
        latency_runs=3, prune_epochs=1, qat_epochs=1, decompose_epochs=1,
        decompose_scratch=True, calibration_samples=50, tolerance_pt=50.0, device_flash="1M"),
        _check_01),
    "02_subbyte_qat": (("fashion_mnist",), dict(
        dataset="fashion_mnist", epochs=1, qat_epochs=1, train_samples=1000, qat_samples=300,
        test_samples=500, calibration_samples=64, mobilenet_epochs=0, mobilenet_samples=300,
        policies=["w4a4"], granularities=["PL"], mobilenet_qat=[]), _check_02),
    "03_memory_policy": ((), dict(
        configs=[[128, 0.5], [128, 0.75]], granularity="PC"), _check_03),
    "04_integer_only": (("fashion_mnist",), dict(
        epochs=1, train_samples=1000, mobilenet_samples=300, test_samples=1000, qat_epochs=0,
        calibration_samples=64, error_samples=50, model_names=["seed_cnn", "mobilenet"],
        configs=["PC+ICN"]), _check_04),
    "05_deploy": (("fashion_mnist", "mnist"), dict(
        train_samples=500, host_images=30, mcu_images=5, mobilenet_epochs=0), _check_05),
    "06_iso_memory": (("fashion_mnist",), dict(
        alphas=[0.25, 0.5], resolutions=[28], budget_member=[0.25, 28], flash_bytes=500000,
        epochs=1, train_samples=2000, qat_epochs=0, calibration_samples=128,
        test_samples=500, granularity=["PL"], more_flash=[400000]), _check_06),
    "07_real_models": ((), dict(
        models=["kws_dscnn", "ad_fcae"], images=6, host_images=4, mcu_images=2,
        run_mcu=False), _check_07),
    "08_any_graph": (("mnist",), dict(
        architectures=["kws_dscnn"], train_samples=300, test_samples=200, epochs=1,
        qat_epochs=1, batch_size=64), _check_08),
    "10_model_zoo": ((), dict(
        models=["unet", "ad_fcae"], images=10, host_images=2, run_mcu=False), _check_10),
}


@pytest.fixture(scope="session")
def executed(tmp_path_factory):
    """``executed(stem)`` runs ``notebooks/<stem>.ipynb`` once per session with its tiny
    parameters and returns its ``out_dir`` (a failed run fails every test that asks for it)."""
    runs: dict[str, Path | BaseException] = {}

    def run(stem: str) -> Path:
        if stem not in runs:
            needs, params, _ = NOTEBOOKS[stem]
            if stem in ("07_real_models", "10_model_zoo"):  # MLPerf Tiny, beside the checkout
                from tinyopt.front import zoo
                try:
                    zoo.mlperf_tiny_path("kws_dscnn")
                except zoo.ModelNotFound as exc:
                    pytest.skip(str(exc))
            tmp = tmp_path_factory.mktemp(stem)
            extra = ({"build_dir": str(tmp / "build")}
                     if stem in ("01_multicomponent", "05_deploy", "07_real_models",
                                 "08_any_graph", "10_model_zoo") else {})
            try:
                run_notebook(f"{stem}.ipynb", tmp, needs=needs, out_dir=str(tmp / "out"),
                             **params, **extra)
                runs[stem] = tmp / "out"
            except Exception as exc:  # noqa: BLE001 (kept and re-raised for every caller)
                runs[stem] = exc
                raise
        result = runs[stem]
        if isinstance(result, BaseException):
            raise result
        return result
    return run


@pytest.mark.parametrize("stem", list(NOTEBOOKS))
def test_notebook(stem, executed):
    NOTEBOOKS[stem][2](executed(stem))


def test_05_deploy_under_qemu(qemu, executed):
    """Notebook 05's Cortex-M7 half: every image bit-exact under QEMU, the RAM acceptance met,
    the memory table and the per-step instruction figure written."""
    out = executed("05_deploy")
    summary = pd.read_csv(out / "summary.csv")
    assert (summary["mcu_images"] == 5).all() and (summary["mcu_images_exact"] == 5).all()
    assert (summary["mcu_mismatching_values"] == 0).all()
    assert summary["ram_acceptance_ok"].all()
    assert (summary["insns_per_image_min"] > summary["macs"] / 2).all()  # SMLAD: 2 MACs at most
    mem = pd.read_csv(out / "memory.csv")
    assert set(mem["memory"]) == {"flash", "ram"}
    assert (out / "instructions_per_step.png").stat().st_size > 1000

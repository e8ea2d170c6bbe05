"""tinyopt.sweep: grid validation, resumable and parallel papermill sweeps.

The fixture notebooks (tests/notebooks_fixture/) import no TensorFlow, so a run costs a kernel
start. ``tiny.ipynb`` appends "x,y" to ``counter`` each time it starts, which is how these tests
see whether finished work was redone."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import REPO, have_real
from tinyopt import cli, sweep

TINY = "tests/notebooks_fixture/tiny.ipynb"


def grid(tmp_path, name="grid.yaml", **spec) -> Path:
    spec.setdefault("output", str(tmp_path / "sweep.csv"))
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec))
    return path


def counts(counter: Path) -> dict:
    lines = counter.read_text().split() if counter.exists() else []
    return {line: lines.count(line) for line in lines}


def table(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"run": str})


# ---------------------------------------------------------------- validation (nothing runs)

@pytest.mark.parametrize("spec, message", [
    ({"notebook": "nope.ipynb", "grid": {"x": [1]}}, "notebook 'nope.ipynb' not found"),
    ({"notebook": TINY, "grid": {"z": [1]}}, "['z'] are not in the parameters cell"),
    ({"notebook": TINY, "grid": {"x": []}}, "grid.x is an empty list"),
    ({"notebook": TINY}, "the grid is empty"),
    ({"notebook": TINY, "grid": {"x": 3}}, "grid.x must be a list"),
    ({"notebook": TINY, "grid": {"x": [1]}, "fixed": {"x": 2}}, "given both in 'fixed'"),
    ({"notebook": TINY, "grid": {"x": [1]}, "jobs": 2}, "unknown key(s) ['jobs']"),
    ({"notebook": TINY, "grid": {"x": [1, 2]}, "fixed": {"out_dir": "results/same"}},
     "gives the same files for several runs"),
    ({"notebook": TINY, "rows": [{"x": 1}], "collect": "{out_dir}/{seed}.csv"},
     "'seed'"),
])
def test_bad_grids_are_rejected_before_anything_runs(tmp_path, spec, message):
    path = grid(tmp_path, **spec)
    with pytest.raises(sweep.SweepError) as err:
        sweep.load(path, tmp_path / "runs")
    assert message in str(err.value)
    assert not (tmp_path / "runs").exists()


def test_malformed_yaml_and_cli_exit_code(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("notebook: [unclosed\n")
    with pytest.raises(sweep.SweepError, match="not valid YAML"):
        sweep.load(path)
    assert cli.main(["sweep", str(path)]) == 2
    assert "error:" in capsys.readouterr().err
    path.write_text("- just a list\n")
    with pytest.raises(sweep.SweepError, match="top level must be a mapping"):
        sweep.load(path)


def test_plan_hashes_products_rows_and_duplicates(tmp_path):
    path = grid(tmp_path, notebook=TINY, fixed={"hold": None},
                grid=[{"x": [1, 2], "y": ["a", "b"]}, {"x": [1], "y": ["a"]}],
                rows=[{"x": 9, "y": "z"}])
    s = sweep.load(path, tmp_path / "runs")
    assert [(r.parameters["x"], r.parameters["y"]) for r in s.runs] == \
        [(1, "a"), (1, "b"), (2, "a"), (2, "b"), (9, "z")]
    assert s.duplicates == 1
    assert s.output == tmp_path / "sweep.csv"
    run = s.runs[0]
    assert run.inject["out_dir"] == str(tmp_path / "runs" / "tiny" / run.hash)
    # The hash depends on the parameters, not on their order, and never reads as a number.
    assert run.hash == sweep.run_hash(s.name, {"y": "a", "x": 1, "hold": None})
    assert run.hash != sweep.run_hash(s.name, {"y": "a", "x": 1, "hold": "f"})
    assert len({r.hash for r in s.runs}) == 5
    for r in s.runs:
        assert len(r.hash) == 16 and not r.hash.isdigit()
        with pytest.raises(ValueError):
            float(r.hash)
    assert sweep.notebook_parameters(REPO / TINY) == {
        "x": "1", "y": '"a"', "counter": "None", "fail_flag": "None", "hold": "None",
        "out_dir": '"results/tiny"'}


def test_cpu_slots_split_the_cores():
    cores = sorted(os.sched_getaffinity(0))
    assert sweep.cpu_slots(1) == [cores]
    two = sweep.cpu_slots(2)
    assert len(two) == 2 and all(two)
    if len(cores) >= 2:
        assert sorted(two[0] + two[1]) == cores and not set(two[0]) & set(two[1])
    assert len(sweep.cpu_slots(len(cores) + 1)) == len(cores) + 1


# ---------------------------------------------------------------- running

def test_failure_is_recorded_and_retried_parallel_rows_once(tmp_path):
    counter, flag = tmp_path / "counter.txt", tmp_path / "fail.flag"
    flag.write_text("fail once")
    path = grid(tmp_path, notebook=TINY, fixed={"counter": str(counter)},
                rows=[{"x": 1}, {"x": 2, "fail_flag": str(flag)}, {"x": 3}])
    s = sweep.load(path, tmp_path / "runs")
    first = sweep.execute(s, jobs=2, progress=False)
    assert (first.ran, first.failed) == (2, 1)
    bad = s.runs[1]
    record = json.loads(s.failed_record(bad).read_text())
    assert record["error"].startswith("RuntimeError: simulated failure for x=2")
    assert (s.runs_dir / f"{bad.hash}.failed.ipynb").exists()
    assert not s.executed(bad).exists()
    assert sweep.status(s)["state"].tolist() == ["done", "failed", "done"]
    assert set(table(s.output)["run"]) == {s.runs[0].hash, s.runs[2].hash}
    # Each of the 2 workers was pinned to its share of the cores, and TF/OpenMP threads match.
    df = table(s.output)
    share = {len(c) for c in sweep.cpu_slots(2)}
    assert set(df["cpus"]) <= share
    assert (df["intra_threads"] == df["cpus"]).all() and (df["omp_threads"] == df["cpus"]).all()

    mtimes = {r.hash: s.executed(r).stat().st_mtime_ns for r in (s.runs[0], s.runs[2])}
    second = sweep.execute(s, jobs=2, progress=False)
    assert (second.ran, second.failed, second.skipped) == (1, 0, 2)
    assert counts(counter) == {"1,a": 1, "2,a": 2, "3,a": 1}  # only the failed run again
    assert {h: s.executed(r).stat().st_mtime_ns for h, r in
            ((r.hash, r) for r in (s.runs[0], s.runs[2]))} == mtimes
    assert not s.failed_record(bad).exists()
    df = table(s.output)
    assert len(df) == 6 and df.groupby("run").size().to_dict() == {r.hash: 2 for r in s.runs}
    assert sorted(df["value"]) == [10, 10, 20, 20, 30, 30]

    # Executed notebooks record their parameters, hash and library version.
    meta = json.loads(s.executed(bad).read_text())["metadata"]["tinyopt"]
    assert meta["hash"] == bad.hash and meta["parameters"] == bad.parameters
    assert meta["version"] == __import__("tinyopt").__version__ and len(meta["rows"]) == 2

    # A kill between the rename and the append: the rows are missing, the notebook is there.
    # The next sweep appends them without running anything, exactly once.
    sweep.report.write_csv(df[df["run"] != s.runs[0].hash], s.output)
    third = sweep.execute(s, jobs=1, progress=False)
    assert (third.ran, third.reconciled) == (0, 1)
    assert counts(counter) == {"1,a": 1, "2,a": 2, "3,a": 1}
    df = table(s.output)
    assert len(df) == 6 and df.groupby("run").size().to_dict() == {r.hash: 2 for r in s.runs}
    status = pd.read_csv(s.status_csv)
    assert status["state"].tolist() == ["done"] * 3

    # Another grid with a run of the same parameters reuses it, with its own 'collect'.
    for collect, expected in (("{out_dir}/result.csv", 2), (None, 1)):
        other = sweep.load(grid(tmp_path, "other.yaml", notebook=TINY, collect=collect,
                                output=str(tmp_path / "other.csv"),
                                fixed={"counter": str(counter)}, rows=[{"x": 1}]),
                           tmp_path / "runs")
        (tmp_path / "other.csv").unlink(missing_ok=True)
        assert other.runs[0].hash == s.runs[0].hash
        assert sweep.execute(other, progress=False).ran == 0
        rows = table(other.output)
        assert len(rows) == expected and ("status" in rows) == (collect is None)
    assert counts(counter) == {"1,a": 1, "2,a": 2, "3,a": 1}


def test_kill_midway_then_rerun_completes_every_row_once(tmp_path):
    counter, hold = tmp_path / "counter.txt", tmp_path / "hold"
    hold.write_text("runs 2 and 3 wait while this exists")
    # Run 1 finishes; run 2 waits on the hold file, so the kill lands while it is in flight.
    path = grid(tmp_path, notebook=TINY, fixed={"counter": str(counter)},
                rows=[{"x": 1}, {"x": 2, "hold": str(hold)}, {"x": 3, "hold": str(hold)}])
    s = sweep.load(path, tmp_path / "runs")
    proc = subprocess.Popen([sys.executable, "-m", "tinyopt.cli", "sweep", str(path),
                             "--runs-dir", str(tmp_path / "runs"), "--no-progress"],
                            cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not counts(counter).get("2,a") and time.monotonic() < deadline:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.2)
        assert counts(counter).get("2,a"), "run 2 never started"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the sweep and its worker, mid-run
        proc.wait()
    assert [sweep.state(s, r) for r in s.runs] == ["done", "pending", "pending"]
    assert len(table(s.output)) == 2 and list(s.runs_dir.glob(".*.tmp.ipynb"))
    done_mtime = s.executed(s.runs[0]).stat().st_mtime_ns

    hold.unlink()
    summary = sweep.execute(s, jobs=2, progress=False)
    assert (summary.ran, summary.failed, summary.skipped) == (2, 0, 1)
    assert counts(counter) == {"1,a": 1, "2,a": 2, "3,a": 1}  # finished work was not redone
    assert s.executed(s.runs[0]).stat().st_mtime_ns == done_mtime
    df = table(s.output)
    assert df.groupby("run").size().to_dict() == {r.hash: 2 for r in s.runs}
    assert not list(s.runs_dir.glob(".*.tmp.ipynb"))  # the killed worker's temp was removed


def test_notebook_without_out_dir_gives_parameter_rows(tmp_path):
    path = grid(tmp_path, notebook="tests/notebooks_fixture/no_out_dir.ipynb",
                grid={"n": [1, -1]})
    s = sweep.load(path, tmp_path / "runs")
    assert all("out_dir" not in r.inject and r.collect is None for r in s.runs)
    summary = sweep.execute(s, progress=False)
    assert (summary.ran, summary.failed) == (1, 1)
    assert "AssertionError: n must be non-negative" in summary.errors[s.runs[1].hash]
    df = table(s.output)
    assert df.to_dict("records") == [{"run": s.runs[0].hash, "n": 1, "status": "ok"}]
    assert cli.main(["sweep", str(path), "--runs-dir", str(tmp_path / "runs"), "--status"]) == 1
    assert cli.main(["sweep", str(path), "--runs-dir", str(tmp_path / "runs"), "--dry-run"]) == 0


@pytest.mark.slow
def test_real_notebook_00_two_runs(tmp_path):
    if not have_real("mnist") or not have_real("fashion_mnist"):
        pytest.skip("datasets not fetched (run `make data`)")
    path = grid(tmp_path, notebook="00_baseline.ipynb",
                fixed={"epochs": 1, "train_samples": 500, "latency_runs": 3},
                grid={"dataset": ["mnist", "fashion_mnist"]})
    s = sweep.load(path, tmp_path / "runs")
    summary = sweep.execute(s, jobs=2, progress=False)
    assert (summary.ran, summary.failed) == (2, 0), summary.errors
    df = table(s.output).set_index("run").loc[[r.hash for r in s.runs]]  # in finishing order
    assert df["dataset"].tolist() == ["mnist", "fashion_mnist"]
    assert (df["test_images"] == 10000).all() and (df["train_samples"] == 500).all()
    assert df["accuracy"].between(0.1, 1.0).all()
    for r in s.runs:
        assert (Path(r.inject["out_dir"]) / f"{r.parameters['dataset']}.png").exists()
    again = sweep.execute(s, jobs=1, progress=False)
    assert (again.ran, again.skipped) == (0, 2) and len(table(s.output)) == 2

"""tinyopt.workbench.sweep: grid validation, sweeps on Dask, faults, the table rebuilt from runs.

Every test works in its own project folder (the working directory, as a user's would be) with
notebooks the tests write themselves; they import no TensorFlow, so a run costs a kernel start.
``tiny.ipynb`` appends "x,y" to ``counter`` each time it starts, which is how these tests see
whether finished work was redone. Most tests share one real ``LocalCluster`` of 2 pinned worker
processes (``sweep.connect``, retries=1); a worker is killed by pid, when the notebook has written
that pid to a file. No test asserts on timing."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tinyopt.workbench import cli, sweep

TINY_PARAMETERS = '''\
x = 1
y = "a"
counter = None      # a file: one line per execution (to count re-runs)
fail_flag = None    # a file: if it exists, remove it and fail
hold = None         # a file: wait (at most 120 s) while it exists
marker = None       # a file: the worker's pid (the kernel's parent) is written there at start
kill_flag = None    # a file: while it exists, the notebook kills the worker running it
out_dir = "results/tiny"
'''
TINY_BODY = '''\
import csv
import os
import signal
import time
from pathlib import Path

if counter:
    with open(counter, "a") as f:
        f.write(f"{x},{y}\\n")
if marker:
    Path(marker + ".tmp").write_text(str(os.getppid()))
    os.replace(marker + ".tmp", marker)
if kill_flag and os.path.exists(kill_flag):
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(30)  # the kernel ends when it sees its parent gone
if fail_flag and os.path.exists(fail_flag):
    os.remove(fail_flag)
    raise RuntimeError(f"simulated failure for x={x}")
deadline = time.monotonic() + 120
while hold and os.path.exists(hold) and time.monotonic() < deadline:
    time.sleep(0.05)
rows = [{"x": x, "y": y, "value": x * 10, "part": part,
         "intra_threads": os.environ.get("TF_NUM_INTRAOP_THREADS"),
         "omp_threads": os.environ.get("OMP_NUM_THREADS"),
         "cpus": len(os.sched_getaffinity(0))} for part in (0, 1)]
Path(out_dir).mkdir(parents=True, exist_ok=True)
with open(Path(out_dir) / "result.csv", "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
'''
TIMEOUT = 120  # seconds a test waits for an event before it fails (a hang, never a timing check)


def write_notebook(path: Path, parameters: str, body: str) -> Path:
    """A two-cell notebook: the parameters cell (tagged) and the body."""
    def cell(n, source, tags=()):
        return {"cell_type": "code", "execution_count": None, "id": f"cell-{n}",
                "metadata": {"tags": list(tags)}, "outputs": [], "source": source}
    nb = {"cells": [cell(0, parameters, ["parameters"]), cell(1, body)], "nbformat": 4,
          "nbformat_minor": 5, "metadata": {"kernelspec": {"name": "python3",
                                                           "display_name": "Python 3",
                                                           "language": "python"}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1))
    return path


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A user's project folder, the working directory, with its own notebooks/."""
    root = tmp_path / "project"
    write_notebook(root / "notebooks" / "tiny.ipynb", TINY_PARAMETERS, TINY_BODY)
    write_notebook(root / "notebooks" / "no_out_dir.ipynb", "n = 1\n",
                   'assert n >= 0, "n must be non-negative"\n')
    monkeypatch.chdir(root)
    return root


# These run the fixture notebooks on a real Dask cluster: in make test, not in make test-fast
# (no training and no notebook runs there).
NOTEBOOK_RUNS = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    """One LocalCluster of 2 pinned worker processes for the module; a dead worker's task is
    started once more, then it fails."""
    with sweep.connect(jobs=2, retries=1) as client:
        yield client


def grid(name="notebooks/grids/g.yaml", **spec) -> Path:
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec))
    return path


def tiny_grid(tmp_path, name="notebooks/grids/g.yaml", **fixed) -> Path:
    return grid(name, notebook="tiny.ipynb", fixed={"counter": str(tmp_path / "counter.txt"),
                                                    **fixed}, grid={"x": [1, 2, 3]})


def counts(counter: Path) -> dict:
    lines = counter.read_text().split() if counter.exists() else []
    return {line: lines.count(line) for line in lines}


def table(path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"run": str})


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {TIMEOUT} s"
        time.sleep(0.1)


def rows_per_run(s) -> list[str]:
    """What the sweep table's run column must be: 2 rows per run, in grid order."""
    return [r.hash for r in s.runs for _ in range(2)]


# ---------------------------------------------------------------- validation (nothing runs)

@pytest.mark.parametrize("spec, message", [
    ({"notebook": "nope.ipynb", "grid": {"x": [1]}}, "notebook 'nope.ipynb' not found"),
    ({"notebook": "tiny.ipynb", "grid": {"z": [1]}}, "['z'] are not in the parameters cell"),
    ({"notebook": "tiny.ipynb", "grid": {"x": []}}, "grid.x is an empty list"),
    ({"notebook": "tiny.ipynb"}, "the grid is empty"),
    ({"notebook": "tiny.ipynb", "grid": {"x": 3}}, "grid.x must be a list"),
    ({"notebook": "tiny.ipynb", "grid": {"x": [1]}, "fixed": {"x": 2}}, "given both in 'fixed'"),
    ({"notebook": "tiny.ipynb", "grid": {"x": [1]}, "jobs": 2}, "unknown key(s) ['jobs']"),
    ({"notebook": "tiny.ipynb", "grid": {"x": [1, 2]}, "fixed": {"out_dir": "results/same"}},
     "gives the same files for several runs"),
    ({"notebook": "tiny.ipynb", "rows": [{"x": 1}], "collect": "{out_dir}/{seed}.csv"},
     "'seed'"),
])
def test_bad_grids_are_rejected_before_anything_runs(project, spec, message):
    path = grid(**spec)
    with pytest.raises(sweep.SweepError) as err:
        sweep.load(path)
    assert message in str(err.value)
    assert not (project / "results").exists()


def test_malformed_yaml_and_cli_exit_codes(project, capsys, monkeypatch):
    path = Path("bad.yaml")
    path.write_text("notebook: [unclosed\n")
    with pytest.raises(sweep.SweepError, match="not valid YAML"):
        sweep.load(path)
    assert cli.main(["sweep", str(path)]) == 2
    assert "error:" in capsys.readouterr().err
    path.write_text("- just a list\n")
    with pytest.raises(sweep.SweepError, match="top level must be a mapping"):
        sweep.load(path)
    good = grid(notebook="tiny.ipynb", grid={"x": [1]})
    with pytest.raises(SystemExit):  # argparse: one or the other
        cli.main(["sweep", str(good), "--jobs", "2", "--scheduler", "tcp://127.0.0.1:1"])
    monkeypatch.setenv(sweep.SCHEDULER_ENV, "tcp://127.0.0.1:1")
    assert cli.main(["sweep", str(good), "--jobs", "2"]) == 2
    assert "--jobs and --retries size the local cluster" in capsys.readouterr().err
    assert cli.main(["sweep", str(good), "--scheduler", "nonsense://x"]) == 2
    err = capsys.readouterr().err
    assert "cannot reach the Dask scheduler at 'nonsense://x'" in err and "unknown address" in err


def test_a_table_path_that_is_a_folder_is_refused_naming_it(project):
    Path("results/sweeps/tbl.csv").mkdir(parents=True)
    with pytest.raises(sweep.SweepError, match="sweep table results/sweeps/tbl.csv needs the file "
                                               "results/sweeps/tbl.csv, which is a folder"):
        sweep.load(grid(notebook="tiny.ipynb", grid={"x": [1]}, output="results/sweeps/tbl.csv"))
    Path("results/sweeps/g.status.csv").mkdir(parents=True)  # the default table's status file
    with pytest.raises(sweep.SweepError, match="results/sweeps/g.status.csv, which is a folder"):
        sweep.load(grid(notebook="tiny.ipynb", grid={"x": [1]}))


@pytest.mark.parametrize("text, problem", [
    ('{"hash": "trunc', "unreadable (JSONDecodeError: "),
    ("", "unreadable (JSONDecodeError: "),
    ("[1, 2]", "not a JSON object (a list)"),
    ('{"hash": "aaaaaaaaaaaaaaaa", "parameters": {"x": 2}}', "the record of another run"),
    ("SAME_HASH", 'for other parameters ({"x":7})'),
])
def test_a_damaged_result_file_is_reported_never_silently_rerun(project, capsys, text, problem):
    path = grid(notebook="tiny.ipynb", rows=[{"x": 1}, {"x": 2}])
    s = sweep.load(path)
    good, bad = s.runs
    s.run_dir(good).mkdir(parents=True)
    s.result_file(good).write_text(json.dumps({"hash": good.hash, "parameters": good.parameters,
                                               "collect": s.collect, "rows": None}))
    s.run_dir(bad).mkdir(parents=True)
    if text == "SAME_HASH":
        text = json.dumps({"hash": bad.hash, "parameters": {"x": 7}})
    s.result_file(bad).write_text(text)
    where = f"results/runs/tiny/{bad.hash}"
    assert [sweep.state(s, r) for r in s.runs] == ["done", "damaged"]
    error = sweep.status(s)["error"].tolist()[1]
    assert error.startswith(f"damaged result file {where}/run.json: {problem}"), error
    assert error.endswith(f"delete {where}/ to run it again")

    assert cli.main(["sweep", str(path), "--status"]) == 1
    out = capsys.readouterr().out
    assert "(1 done, 0 failed, 1 damaged, 0 pending)" in out, out
    assert f"DAMAGED {bad.hash} (not run): damaged result file {where}/run.json" in out
    # A sweep does not run it (a client that is used would fail: nothing is submitted).
    summary = sweep.execute(s, client=object(), progress=False)
    assert (summary.ran, summary.failed, summary.skipped) == (0, 0, 2)
    assert list(summary.damaged) == [bad.hash] and where in summary.damaged[bad.hash]
    assert cli.main(["sweep", str(path), "--no-progress"]) == 1
    assert f"DAMAGED {bad.hash} (not run): damaged result file {where}" in capsys.readouterr().err
    assert s.result_file(bad).read_text() == text  # left for the user to look at
    assert table(s.output)["run"].tolist() == [good.hash]
    assert pd.read_csv(s.status_csv)["state"].tolist() == ["done", "damaged"]
    shutil.rmtree(s.run_dir(bad))  # the documented fix
    assert sweep.state(s, bad) == "pending"


def test_unreachable_scheduler_names_the_address(project):
    with pytest.raises(sweep.SweepError, match="cannot reach the Dask scheduler at "
                                               "'tcp://127.0.0.1:1'.*dask scheduler"):
        with sweep.connect("tcp://127.0.0.1:1", timeout=1):
            pass


def test_plan_hashes_products_rows_and_duplicates(project):
    path = grid(notebook="tiny.ipynb", fixed={"hold": None},
                grid=[{"x": [1, 2], "y": ["a", "b"]}, {"x": [1], "y": ["a"]}],
                rows=[{"x": 9, "y": "z"}])
    s = sweep.load(path)
    assert [(r.parameters["x"], r.parameters["y"]) for r in s.runs] == \
        [(1, "a"), (1, "b"), (2, "a"), (2, "b"), (9, "z")]
    assert s.duplicates == 1
    assert s.output == project / "results/sweeps/g.csv"
    run = s.runs[0]
    assert run.inject["out_dir"] == f"results/runs/tiny/{run.hash}"  # from the project folder
    assert s.run_dir(run) == project / "results/runs/tiny" / run.hash
    # The hash depends on the parameters, not on their order, and never reads as a number.
    assert run.hash == sweep.run_hash(s.name, {"y": "a", "x": 1, "hold": None})
    assert run.hash != sweep.run_hash(s.name, {"y": "a", "x": 1, "hold": "f"})
    assert len({r.hash for r in s.runs}) == 5
    for r in s.runs:
        assert len(r.hash) == 16 and not r.hash.isdigit()
        with pytest.raises(ValueError):
            float(r.hash)
    assert list(sweep.notebook_parameters(project / "notebooks/tiny.ipynb")) == [
        "x", "y", "counter", "fail_flag", "hold", "marker", "kill_flag", "out_dir"]
    # From the notebooks/ folder (where JupyterLab starts kernels) the project is the same.
    os.chdir(project / "notebooks")
    assert sweep.load("notebooks/grids/g.yaml").output == s.output


def test_cpu_slots_split_the_cores():
    cores = sorted(os.sched_getaffinity(0))
    assert sweep.cpu_slots(1) == [cores]
    two = sweep.cpu_slots(2)
    assert len(two) == 2 and all(two)
    if len(cores) >= 2:
        assert sorted(two[0] + two[1]) == cores and not set(two[0]) & set(two[1])
    assert len(sweep.cpu_slots(len(cores) + 1)) == len(cores) + 1


# ---------------------------------------------------------------- the table's owner

def test_table_of_another_grid_with_the_same_name_is_refused(project, capsys):
    first = grid("notebooks/grids/same.yaml", notebook="tiny.ipynb", grid={"x": [1]})
    assert cli.main(["sweep", str(first), "--status"]) == 0  # writes the (empty) table
    assert json.loads(Path("results/sweeps/same.sweep.json").read_text())["grid"] == str(first)
    second = grid("elsewhere/same.yaml", notebook="tiny.ipynb", grid={"x": [2]})
    with pytest.raises(sweep.SweepError) as err:
        sweep.load(second)
    assert "results/sweeps/same.csv is the table of grid notebooks/grids/same.yaml, not of " \
        "elsewhere/same.yaml" in str(err.value) and "set another 'output:'" in str(err.value)
    assert cli.main(["sweep", str(second), "--dry-run"]) == 2
    assert "is the table of grid notebooks/grids/same.yaml" in capsys.readouterr().err
    grid("elsewhere/same.yaml", notebook="tiny.ipynb", grid={"x": [2]},
         output="results/sweeps/same_elsewhere.csv")
    assert sweep.load(second).output.name == "same_elsewhere.csv"


def test_table_that_no_sweep_wrote_is_refused(project):
    path = grid(notebook="tiny.ipynb", grid={"x": [1]})
    Path("results/sweeps").mkdir(parents=True)
    Path("results/sweeps/g.csv").write_text("run,x\nabc,1\n")  # e.g. an older tinyopt's table
    with pytest.raises(sweep.SweepError) as err:
        sweep.load(path)
    assert "results/sweeps/g.csv exists but no sweep wrote it (g.sweep.json" in str(err.value)
    assert "move or delete results/sweeps/g.csv" in str(err.value)
    Path("results/sweeps/g.sweep.json").write_text("{not json")
    with pytest.raises(sweep.SweepError, match=r"g.sweep.json is damaged \(JSONDecodeError"):
        sweep.load(path)


# ---------------------------------------------------------------- running on a LocalCluster

@NOTEBOOK_RUNS
def test_local_cluster_runs_records_failures_and_retries_them(project, tmp_path, cluster):
    counter, flag = tmp_path / "counter.txt", tmp_path / "fail.flag"
    flag.write_text("fail once")
    path = grid(notebook="tiny.ipynb", fixed={"counter": str(counter)},
                rows=[{"x": 1}, {"x": 2, "fail_flag": str(flag)}, {"x": 3}])
    s = sweep.load(path)
    first = sweep.execute(s, client=cluster, progress=False)
    assert (first.ran, first.failed) == (2, 1)
    bad = s.runs[1]
    record = json.loads(s.failed_record(bad).read_text())
    assert record["error"].startswith("RuntimeError: simulated failure for x=2")
    partial = json.loads((s.run_dir(bad) / "failed.ipynb").read_text())
    assert partial["metadata"]["tinyopt"]["state"] == "failed"  # never looks complete
    assert not s.result_file(bad).exists() and not s.executed(bad).exists()
    assert sweep.status(s)["state"].tolist() == ["done", "failed", "done"]
    df = table(s.output)
    assert df["run"].tolist() == [h for h in rows_per_run(s) if h != bad.hash]
    # Each of the 2 workers is pinned to its share of the cores, and TF/OpenMP threads match.
    assert set(df["cpus"]) == {len(c) for c in sweep.cpu_slots(2)}
    assert (df["intra_threads"] == df["cpus"]).all() and (df["omp_threads"] == df["cpus"]).all()

    mtimes = {r.hash: s.executed(r).stat().st_mtime_ns for r in (s.runs[0], s.runs[2])}
    second = sweep.execute(s, client=cluster, progress=False)
    assert (second.ran, second.failed, second.skipped) == (1, 0, 2)
    assert counts(counter) == {"1,a": 1, "2,a": 2, "3,a": 1}  # only the failed run again
    assert {r.hash: s.executed(r).stat().st_mtime_ns for r in (s.runs[0], s.runs[2])} == mtimes
    assert not s.failed_record(bad).exists()
    df = table(s.output)
    assert df["run"].tolist() == rows_per_run(s)
    assert df["value"].tolist() == [10, 10, 20, 20, 30, 30]
    assert pd.read_csv(s.status_csv)["state"].tolist() == ["done"] * 3

    # The run folder: the notebook's files, the executed notebook and the result file.
    folder = s.run_dir(bad)
    assert sorted(p.name for p in folder.iterdir()) == ["result.csv", "run.ipynb", "run.json"]
    rec = json.loads(s.result_file(bad).read_text())
    assert rec["hash"] == bad.hash and rec["parameters"] == bad.parameters
    assert rec["version"] == __import__("tinyopt").__version__ and len(rec["rows"]) == 2
    nb = json.loads(s.executed(bad).read_text())
    assert nb["metadata"]["tinyopt"]["state"] == "complete"
    injected = next(c for c in nb["cells"] if "injected-parameters" in c["metadata"]["tags"])
    assert f'out_dir = "results/runs/tiny/{bad.hash}"  # ran in ' in "".join(injected["source"])

    # Another grid with a run of the same parameters reuses it, with its own 'collect'.
    for collect, expected in (("{out_dir}/result.csv", 2), (None, 1)):
        other = sweep.load(grid("notebooks/grids/other.yaml", notebook="tiny.ipynb",
                                collect=collect, fixed={"counter": str(counter)},
                                rows=[{"x": 1}]))
        assert other.runs[0].hash == s.runs[0].hash
        assert sweep.execute(other, client=cluster, progress=False).ran == 0
        rows = table(other.output)
        assert len(rows) == expected and ("status" in rows) == (collect is None)
    assert counts(counter) == {"1,a": 1, "2,a": 2, "3,a": 1}


@NOTEBOOK_RUNS
def test_notebook_without_out_dir_gives_parameter_rows(project, cluster):
    s = sweep.load(grid(notebook="no_out_dir.ipynb", grid={"n": [1, -1]}))
    assert all("out_dir" not in r.inject and r.collect is None for r in s.runs)
    summary = sweep.execute(s, client=cluster, progress=False)
    assert (summary.ran, summary.failed) == (1, 1)
    assert "AssertionError: n must be non-negative" in summary.errors[s.runs[1].hash]
    assert table(s.output).to_dict("records") == [{"run": s.runs[0].hash, "n": 1,
                                                   "status": "ok"}]
    assert cli.main(["sweep", "notebooks/grids/g.yaml", "--status"]) == 1
    assert cli.main(["sweep", "notebooks/grids/g.yaml", "--dry-run"]) == 0


@NOTEBOOK_RUNS
def test_killed_worker_task_is_retried_on_another_worker(project, tmp_path, cluster):
    counter, hold, marker = (tmp_path / n for n in ("counter.txt", "hold", "worker.pid"))
    hold.write_text("run 1 waits while this exists")
    path = grid(notebook="tiny.ipynb", fixed={"counter": str(counter)},
                rows=[{"x": 1, "hold": str(hold), "marker": str(marker)}, {"x": 2}, {"x": 3}])
    s = sweep.load(path)
    done = {}
    thread = threading.Thread(target=lambda: done.update(
        summary=sweep.execute(s, client=cluster, progress=False)))
    thread.start()
    try:
        wait_for(marker.exists, "run 1 starting")
        pid = int(marker.read_text())
        workers = {p: address for address, p in cluster.run(os.getpid).items()}
        assert pid in workers, "the notebook's parent is not a worker of the cluster"
        os.kill(pid, signal.SIGKILL)  # the worker process, while its task runs
    finally:
        hold.unlink()
        thread.join()
    summary = done["summary"]
    assert (summary.ran, summary.failed, summary.skipped) == (3, 0, 0), summary.errors
    assert counts(counter) == {"1,a": 2, "2,a": 1, "3,a": 1}  # run 1 again, elsewhere
    assert json.loads(s.result_file(s.runs[0]).read_text())["worker"] != workers[pid]
    assert table(s.output)["run"].tolist() == rows_per_run(s)  # every row exactly once


@NOTEBOOK_RUNS
def test_worker_deaths_beyond_the_retries_fail_the_run_then_it_is_retried(project, tmp_path,
                                                                         cluster):
    # One run: a task waiting on a dying worker counts as suspicious too, so a second run could
    # fail with it when both deaths happen to find it queued there.
    counter, kill = tmp_path / "counter.txt", tmp_path / "kill.flag"
    kill.write_text("the notebook kills its worker while this exists")
    path = grid(notebook="tiny.ipynb", fixed={"counter": str(counter)},
                rows=[{"x": 1, "kill_flag": str(kill)}])
    s = sweep.load(path)
    first = sweep.execute(s, client=cluster, progress=False)
    assert (first.ran, first.failed) == (0, 1)
    error = first.errors[s.runs[0].hash]
    assert error.startswith("KilledWorker: the workers running this run died") and \
        "retried on the next sweep" in error
    assert json.loads(s.failed_record(s.runs[0]).read_text())["error"] == error
    assert counts(counter) == {"1,a": 2}  # 1 retry (the cluster allows 1), then failed
    assert sweep.status(s)["state"].tolist() == ["failed"]
    kill.unlink()
    second = sweep.execute(s, client=cluster, progress=False)
    assert (second.ran, second.failed) == (1, 0)
    assert counts(counter) == {"1,a": 3}
    assert table(s.output)["run"].tolist() == rows_per_run(s)


@NOTEBOOK_RUNS
def test_killed_client_rerun_does_only_the_missing_work(project, tmp_path, cluster):
    counter, hold = tmp_path / "counter.txt", tmp_path / "hold"
    hold.write_text("run 2 waits while this exists")
    path = grid(notebook="tiny.ipynb", fixed={"counter": str(counter)},
                rows=[{"x": 1}, {"x": 2, "hold": str(hold)}])
    s = sweep.load(path)
    # The command line with its own local cluster (the default), killed with its workers.
    proc = subprocess.Popen([sys.executable, "-m", "tinyopt.workbench.cli", "sweep", str(path),
                             "--jobs", "2", "--no-progress"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: proc.poll() is not None or (
            counts(counter).get("2,a") and s.output.exists()
            and s.runs[0].hash in s.output.read_text()),
            "run 1 done and in the table, and run 2 started")
        assert proc.poll() is None, "the sweep ended before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the client, its cluster and the kernels, mid-run
        proc.wait()
    assert [sweep.state(s, r) for r in s.runs] == ["done", "pending"]
    assert table(s.output)["run"].tolist() == [s.runs[0].hash] * 2
    # A client killed while moving a run folder into place leaves a temporary folder: it does
    # not count as done and the next sweep removes it.
    stale = s.runs_dir / f".{s.runs[1].hash}.99999.tmp"
    shutil.copytree(s.run_dir(s.runs[0]), stale)
    assert sweep.state(s, s.runs[1]) == "pending"
    done_mtime = s.executed(s.runs[0]).stat().st_mtime_ns

    hold.unlink()
    summary = sweep.execute(s, client=cluster, progress=False)
    assert (summary.ran, summary.failed, summary.skipped) == (1, 0, 1)
    assert counts(counter) == {"1,a": 1, "2,a": 2}  # finished work was not redone
    assert s.executed(s.runs[0]).stat().st_mtime_ns == done_mtime
    assert table(s.output)["run"].tolist() == rows_per_run(s)
    assert not stale.exists()


# ---------------------------------------------------------------- the table, rebuilt from runs

@NOTEBOOK_RUNS
def test_rerun_repairs_the_table_to_what_a_clean_sweep_writes(project, tmp_path, cluster):
    path = tiny_grid(tmp_path)
    s = sweep.load(path)
    assert sweep.execute(s, client=cluster, progress=False).ran == 3
    clean = s.output.read_bytes()

    shutil.rmtree(s.run_dir(s.runs[1]))  # a deleted run: its rows must go, then come back
    lines = s.output.read_text().splitlines(keepends=True)
    damaged = lines[:-1] + [lines[-1][:len(lines[-1]) // 2]]  # a truncated last line
    damaged.insert(2, lines[1])  # a duplicated row
    s.output.write_text("".join(damaged))
    summary = sweep.execute(s, client=cluster, progress=False)
    assert (summary.ran, summary.skipped) == (1, 2)
    assert summary.repaired.startswith("results/sweeps/g.csv did not match its runs (")
    assert "row(s) too many" in summary.repaired
    assert s.output.read_bytes() == clean
    pd.testing.assert_frame_equal(table(s.output), pd.read_csv(
        __import__("io").BytesIO(clean), dtype={"run": str}))
    assert table(s.output)["run"].tolist() == rows_per_run(s)


@NOTEBOOK_RUNS
def test_status_rebuilds_a_damaged_table_and_names_the_damage(project, tmp_path, cluster,
                                                              capsys):
    path = tiny_grid(tmp_path)
    s = sweep.load(path)
    assert sweep.execute(s, client=cluster, progress=False).ran == 3
    clean = s.output.read_bytes()
    lines = s.output.read_text().splitlines(keepends=True)
    damages = {
        "unreadable: ParserError": 'run,x\n"unclosed,\x00\n',
        "unreadable: EmptyDataError": "",
        "1 row(s) missing": "".join(lines[:-1]),
        "1 row(s) too many": "".join(lines + lines[-1:]),
        "values or columns differ (a truncated": "".join(lines)[:-5],
    }
    for problem, text in damages.items():
        s.output.write_text(text)
        assert cli.main(["sweep", str(path), "--status"]) == 0
        out = capsys.readouterr().out
        assert f"results/sweeps/g.csv did not match its runs ({problem}" in out, out
        assert s.output.read_bytes() == clean
    assert cli.main(["sweep", str(path), "--status"]) == 0
    assert "did not match" not in capsys.readouterr().out  # a right table is left alone

    shutil.rmtree(s.run_dir(s.runs[0]))  # deleting a run takes its rows out of the table
    assert cli.main(["sweep", str(path), "--status"]) == 0
    assert "2 row(s) too many (repeated, or of runs not done)" in capsys.readouterr().out
    assert table(s.output)["run"].tolist() == rows_per_run(s)[2:]
    assert pd.read_csv(s.status_csv)["state"].tolist() == ["pending", "done", "done"]


# ---------------------------------------------------------------- a separate Dask cluster

@NOTEBOOK_RUNS
def test_separate_scheduler_and_worker_processes(project, tmp_path, capsys):
    info = tmp_path / "scheduler.json"

    def start(command, *args):  # `dask scheduler ...`, `dask worker ...`
        procs.append(subprocess.Popen([sys.executable, "-m", f"distributed.cli.dask_{command}",
                                       *args], cwd=tmp_path, start_new_session=True,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    procs = []
    try:
        start("scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
              "--scheduler-file", str(info))
        start("worker", "--scheduler-file", str(info), "--nthreads", "1", "--no-nanny",
              "--no-dashboard", "--local-directory", str(tmp_path / "worker"))
        wait_for(lambda: info.exists() and info.read_text().strip().endswith("}"),
                 "the scheduler writing its address")
        address = json.loads(info.read_text())["address"]
        path = tiny_grid(tmp_path)
        assert cli.main(["sweep", str(path), "--scheduler", address, "--no-progress"]) == 0
        err = capsys.readouterr().err
        assert f"Dask scheduler {address} with " in err and "dashboard: " in err
    finally:
        for proc in reversed(procs):  # the worker, then the scheduler
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    s = sweep.load(path)
    assert [sweep.state(s, r) for r in s.runs] == ["done"] * 3
    assert table(s.output)["run"].tolist() == rows_per_run(s)
    assert counts(tmp_path / "counter.txt") == {"1,a": 1, "2,a": 1, "3,a": 1}
    assert {json.loads(s.result_file(r).read_text())["worker"] for r in s.runs} != {None}
    assert not list((tmp_path / "worker").rglob("tinyopt-*"))  # the scratch folders are gone

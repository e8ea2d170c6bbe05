"""`tinyopt run` refuses careless input clearly: parameter values (lists, mappings, values starting
with '-'), outputs that cannot be written, and an out_dir in use by another run (its lock).

Most tests stop before a kernel starts (the refusals come first, or ``execute.run`` is replaced
to see the parameters); the ones that run a notebook are marked slow."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from tinyopt.workbench import cli, execute, params

TIMEOUT = 240  # seconds a test waits for an event before it fails (a hang, never a timing check)


def _notebook(path: Path, parameters: str, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell(body)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """The working directory, with nb.ipynb whose out_dir defaults to results/nb."""
    monkeypatch.chdir(tmp_path)
    _notebook(tmp_path / "nb.ipynb", 'x = 1\nout_dir = "results/nb"\n', "y = x")
    return tmp_path


@pytest.fixture
def seen(monkeypatch) -> list:
    """Replace execute.run: record (notebook, output, parameters) instead of starting a kernel."""
    calls = []
    monkeypatch.setattr(execute, "run", lambda nb, out, p=None, **kw: calls.append((nb, out, p)))
    return calls


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_lock(folder: Path, **holder) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / execute.LOCK_NAME
    lock.write_text(json.dumps({"notebook": "other.ipynb", "output": "other_out.ipynb",
                                "pid": os.getppid(), "host": socket.gethostname(),
                                "started": "2030-01-02 03:04:05", "token": "t", **holder}))
    return lock


# ---------------------------------------------------------------- parameter values

def test_lists_mappings_and_dash_values_reach_the_notebook(project, seen):
    argv = ["run", "nb.ipynb", "out.ipynb", "-p", "ram", "-5k", "-p", "x", "-1",
            "-p", "sequences", '["int8", "mixed(flash=16k,ram=8k)>qat"]', "-p", "m", "{a: 1}",
            "-y", "models: [kws, vww]", "-y", "s: '[a]b'", "-p", "f", "1.5", "-p", "b", "True",
            "--parameter", "n", "None", "-y", "{seed: 3, dash: -x}"]
    assert cli.main(argv) == 0
    assert seen == [("nb.ipynb", "out.ipynb", {
        "ram": "-5k", "x": -1, "sequences": ["int8", "mixed(flash=16k,ram=8k)>qat"],
        "m": {"a": 1}, "models": ["kws", "vww"], "s": "[a]b", "f": 1.5, "b": True, "n": None,
        "seed": 3, "dash": "-x"})]
    # The parameters may come before the paths too.
    assert cli.main(["run", "-p", "x", "-7", "nb.ipynb", "out.ipynb"]) == 0
    assert seen[-1] == ("nb.ipynb", "out.ipynb", {"x": -7})


@pytest.mark.parametrize("args, message", [
    (["-p", "sequences", '["int8", unclosed'], "-p sequences '[\"int8\", unclosed'"),
    (["-p", "x", "1", "-p", "x", "2"], "parameter 'x' given twice"),
    (["-y", "x: 1", "-p", "x", "2"], "parameter 'x' given twice"),
    (["-y", "[1, 2]"], "must be a YAML mapping"),
    (["-y", "a: [unclosed"], "is not valid YAML"),
])
def test_bad_values_are_refused_before_running(project, seen, capsys, args, message):
    assert cli.main(["run", "nb.ipynb", "out.ipynb", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err, err
    assert seen == []


def test_an_option_without_its_values_is_a_usage_error(project, seen, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "nb.ipynb", "out.ipynb", "-p", "x"])
    assert exc.value.code == 2
    assert "-p needs NAME VALUE" in capsys.readouterr().err


def test_list_rules_read_a_list_given_as_text():
    """Plain papermill and JupyterLab pass -p x '[...]' as text; the notebook's check reads it."""
    assert params.items(params.text())("sequences", '["int8", "prune>qat>int8"]') == \
        ["int8", "prune>qat>int8"]
    assert params.one_or_items("PL", "PC")("g", "[PL, PC]") == ["PL", "PC"]
    assert params.one_or_items("PL", "PC")("g", "PC") == "PC"
    with pytest.raises(params.ParameterError, match=r"'sequences'.*YAML/JSON list.*'\[a, b\]'"):
        params.items(params.text())("sequences", '["int8", unclosed')
    with pytest.raises(params.ParameterError, match="non-empty list.*-p models '\\[a, b\\]'"):
        params.items()("models", "kws")


# ---------------------------------------------------------------- outputs that cannot be written

def test_output_that_is_a_folder_is_refused(project, capsys):
    (project / "out").mkdir()
    assert cli.main(["run", "nb.ipynb", "out"]) == 2
    assert "output 'out' is a folder" in capsys.readouterr().err


def test_output_under_a_file_is_refused_naming_the_folder(project, capsys):
    (project / "afile").write_text("")
    assert cli.main(["run", "nb.ipynb", "afile/out.ipynb"]) == 2
    assert "cannot write the output notebook in folder 'afile'" in capsys.readouterr().err
    assert not (project / "results").exists()  # nothing ran, no lock was taken


def test_output_in_a_read_only_folder_is_refused_naming_it(project, capsys):
    if os.geteuid() == 0:  # root writes anywhere chmod allows; /proc/self takes no files
        folder = Path("/proc/self")
    else:
        folder = project / "ro"
        folder.mkdir()
        folder.chmod(0o555)
    try:
        assert cli.main(["run", "nb.ipynb", str(folder / "out.ipynb")]) == 2
    finally:
        if folder != Path("/proc/self"):
            folder.chmod(0o755)
    err = capsys.readouterr().err
    assert f"cannot write the output notebook in folder {str(folder)!r}" in err, err


def test_missing_notebook_is_refused(project, capsys):
    assert cli.main(["run", "nope.ipynb", "out.ipynb"]) == 2
    assert "notebook 'nope.ipynb' does not exist" in capsys.readouterr().err


# ---------------------------------------------------------------- the out_dir lock

def test_out_dir_in_use_is_refused_naming_the_run_and_nothing_is_removed(project, capsys):
    lock = _write_lock(project / "results" / "x")
    (project / "out.ipynb").write_text("{}")  # an earlier complete run: kept when refused
    assert cli.main(["run", "nb.ipynb", "out.ipynb", "-p", "out_dir", "results/x"]) == 2
    err = capsys.readouterr().err
    for part in (f"out_dir {project / 'results' / 'x'} is in use by another run",
                 "other.ipynb -> other_out.ipynb", f"pid {os.getppid()} on "
                 f"{socket.gethostname()}", "started 2030-01-02 03:04:05",
                 "-p out_dir results/<name>", f"delete {lock}"):
        assert part in err, (part, err)
    assert (project / "out.ipynb").read_text() == "{}" and lock.exists()


def test_the_notebooks_default_out_dir_is_locked_from_the_project_folder(project, monkeypatch):
    _write_lock(project / "results" / "nb")  # nb.ipynb's default out_dir
    with pytest.raises(execute.OutDirBusy, match="results/nb is in use"):
        execute.run("nb.ipynb", "out.ipynb", {"x": 2})
    # From notebooks/, a relative out_dir is the project's (as the notebook's check resolves it).
    _notebook(project / "notebooks" / "nb.ipynb", 'out_dir = "results/nb"\n', "pass")
    monkeypatch.chdir(project / "notebooks")
    with pytest.raises(execute.OutDirBusy, match=f"{project / 'results' / 'nb'} is in use"):
        execute.run("nb.ipynb", "out.ipynb")


def test_a_lock_of_another_host_or_damaged_is_refused(project):
    folder = project / "results" / "x"
    _write_lock(folder, host="elsewhere.example", pid=_dead_pid())
    with pytest.raises(execute.OutDirBusy, match="on elsewhere.example.*another host, so its "
                                                 "pid cannot be checked here"):
        with execute.out_dir_lock(folder, "nb.ipynb", "out.ipynb"):
            pass
    (folder / execute.LOCK_NAME).write_text("{not json")
    with pytest.raises(execute.OutDirBusy, match="is not a tinyopt run lock.*delete the file"):
        with execute.out_dir_lock(folder, "nb.ipynb", "out.ipynb"):
            pass


def test_a_dead_runs_lock_is_taken_over_with_a_note_and_locks_are_released(project):
    folder = project / "results" / "x"
    lock = _write_lock(folder, pid=_dead_pid())
    with execute.out_dir_lock(folder, "nb.ipynb", "out.ipynb") as note:
        assert "took over" in note and "no longer running" in note and "other.ipynb" in note
        held = json.loads(lock.read_text())
        assert (held["pid"], held["notebook"], held["output"]) == (os.getpid(), "nb.ipynb",
                                                                   "out.ipynb")
        with pytest.raises(execute.OutDirBusy, match="in use by another run: nb.ipynb"):
            with execute.out_dir_lock(folder, "nb2.ipynb", "out2.ipynb"):
                pass
        assert lock.exists()  # the refused one did not remove the holder's lock
    assert not lock.exists()
    with pytest.raises(RuntimeError):  # released when the run fails
        with execute.out_dir_lock(folder) as note:
            assert note is None
            raise RuntimeError("a failed run")
    assert sorted(os.listdir(folder)) == []


# ---------------------------------------------------------------- runs (a kernel each: slow)

HOLD = '''\
import os, time
from pathlib import Path
Path(out_dir).mkdir(parents=True, exist_ok=True)
Path(started).touch()
deadline = time.monotonic() + 200
while os.path.exists(hold) and time.monotonic() < deadline:
    time.sleep(0.05)
(Path(out_dir) / "result.txt").write_text(str(seed))
'''


@pytest.mark.slow
def test_a_second_run_into_a_running_runs_out_dir_is_refused(project, capsys):
    _notebook(project / "hold.ipynb", 'seed = 0\nhold = ""\nstarted = ""\n'
              'out_dir = "results/x"\n', HOLD)
    hold, started = project / "hold", project / "started"
    hold.write_text("")
    first = subprocess.Popen([sys.executable, "-m", "tinyopt.workbench.cli", "run", "hold.ipynb",
                              "a.ipynb", "-p", "seed", "0", "-p", "hold", str(hold),
                              "-p", "started", str(started)], cwd=project,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while not started.exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.1)
        second = ["run", "hold.ipynb", "b.ipynb", "-p", "seed", "1", "-p", "out_dir",
                  "results/x"]
        assert cli.main(second) == 2
        err = capsys.readouterr().err
        assert "is in use by another run: hold.ipynb -> a.ipynb" in err, err
        assert f"pid {first.pid} on {socket.gethostname()}" in err
        assert not (project / "b.ipynb").exists()
    finally:
        hold.unlink()
        assert first.wait(timeout=TIMEOUT) == 0, first.stderr.read()
    assert (project / "results" / "x" / "result.txt").read_text() == "0"
    assert not (project / "results" / "x" / execute.LOCK_NAME).exists()
    # A later run into a finished run's out_dir is normal: it replaces the results.
    assert cli.main(second + ["-p", "hold", "", "-p", "started", str(started)]) == 0
    assert (project / "results" / "x" / "result.txt").read_text() == "1"
    assert not (project / "results" / "x" / execute.LOCK_NAME).exists()


@pytest.mark.slow
def test_dash_values_reach_the_notebooks_check_and_a_failed_run_releases_its_lock(project,
                                                                                 capsys):
    _notebook(project / "check.ipynb", 'ram = "8k"\nsequences = ["int8"]\nout_dir = "res"\n',
              "from tinyopt.workbench import params as P\n"
              "P.check(globals(), ram=P.budget(), sequences=P.items(P.text()), "
              "out_dir=P.out_dir())\n"
              "assert sequences == ['a>b', 'c'], sequences")
    assert cli.main(["run", "check.ipynb", "out.ipynb", "-p", "ram", "-5k"]) == 1
    err = capsys.readouterr().err
    assert "ParameterError" in err and "'ram'" in err and "-5k" in err, err
    assert not (project / "res" / execute.LOCK_NAME).exists()
    assert cli.main(["run", "check.ipynb", "out.ipynb", "-p", "sequences", '["a>b", "c"]']) == 0
    assert (project / "out.ipynb").exists() and not (project / "res" / execute.LOCK_NAME).exists()

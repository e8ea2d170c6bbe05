"""`tinyopt run`: the executed copy of a notebook is complete, or marked interrupted / failed and
kept apart from OUT."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.slow  # each test starts a kernel


def _notebook(path, body: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    params = nbformat.v4.new_code_cell("seconds = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body), nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, path)


class _Run:
    """A ``tinyopt run`` child whose output goes to files (a pipe nobody reads while it runs
    can fill and block it) and which takes SIGINT as a terminal's Ctrl-C (a test runner's worker
    may ignore SIGINT, and a child inherits that)."""

    def __init__(self, args, cwd):
        self.err_path = Path(cwd) / "cli.stderr"
        with open(Path(cwd) / "cli.stdout", "w") as out, open(self.err_path, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tinyopt.workbench.cli", "run", *args], stdout=out,
                stderr=err, text=True, cwd=cwd,
                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    @property
    def stderr(self):
        return self

    def read(self) -> str:
        return self.err_path.read_text()

    def __getattr__(self, name):
        return getattr(self.proc, name)


def _cli(*args, cwd):
    return _Run(args, cwd)


def test_complete_run_writes_out_only(tmp_path):
    _notebook(tmp_path / "nb.ipynb", "y = seconds + 1")
    proc = _cli("nb.ipynb", "out/nb.ipynb", "-p", "seconds", "2", cwd=tmp_path)
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["nb.ipynb"]
    nb = nbformat.read(tmp_path / "out" / "nb.ipynb", 4)
    assert "tinyopt" not in nb.metadata


def test_failed_run_is_marked_and_a_stale_out_removed(tmp_path):
    _notebook(tmp_path / "nb.ipynb", "raise RuntimeError('boom')")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "nb.ipynb").write_text("{}")  # a complete copy from an earlier run
    proc = _cli("nb.ipynb", "out/nb.ipynb", cwd=tmp_path)
    assert proc.wait(timeout=300) == 1
    assert "boom" in proc.stderr.read()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["nb.failed.ipynb"]
    nb = nbformat.read(tmp_path / "out" / "nb.failed.ipynb", 4)
    assert nb.metadata["tinyopt"]["state"] == "failed"
    assert "FAILED" in nb.cells[0].source


def test_interrupted_run_is_marked_never_complete(tmp_path):
    _notebook(tmp_path / "nb.ipynb", "import pathlib, time\npathlib.Path('started').touch()\n"
              "time.sleep(seconds)")
    # the cell would sleep 10 minutes: only the interrupt ends the run within the wait below
    # (generous: a loaded machine shuts a kernel down slowly)
    proc = _cli("nb.ipynb", "out/nb.ipynb", "-p", "seconds", "600", cwd=tmp_path)
    deadline = time.monotonic() + 240
    while not (tmp_path / "started").exists():  # the slow cell is running
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=400) == 130
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["nb.interrupted.ipynb"]
    nb = nbformat.read(tmp_path / "out" / "nb.interrupted.ipynb", 4)
    assert nb.metadata["tinyopt"]["state"] == "interrupted"
    assert "INTERRUPTED" in nb.cells[0].source

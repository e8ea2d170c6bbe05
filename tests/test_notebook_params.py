"""Notebook parameters: papermill reads every parameters cell whole, every notebook checks each
of its parameters before any work, and a mistyped or malformed ``-p`` fails the run at once."""
from __future__ import annotations

import ast
import math
from pathlib import Path

import nbformat
import pytest

from tinyopt.workbench import params as P

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0*.ipynb"))


def _cells(path):
    nb = nbformat.read(path, 4)
    tagged = {t: c for c in nb.cells for t in c.metadata.get("tags", [])}
    return tagged["parameters"], tagged["check-parameters"], nb


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter_and_the_check_covers_them(path, recwarn):
    import papermill as pm
    params_cell, check_cell, nb = _cells(path)
    assigned = [t.id for node in ast.parse(params_cell.source).body
                if isinstance(node, ast.Assign) for t in node.targets]
    seen = list(pm.inspect_notebook(str(path)))
    assert seen == assigned, f"papermill reads {seen}, the cell assigns {assigned}"
    call = next(n for n in ast.walk(ast.parse(check_cell.source))
                if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "check")
    checked = [k.arg for k in call.keywords]
    assert sorted(checked) == sorted(assigned)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    assert nb.cells.index(check_cell) == code[1], "the check must be the first code cell"


def _namespace(**values):
    import numpy as np
    return {"In": [], "Out": {}, "get_ipython": print, "np": np, **values}


def test_unknown_name_is_refused_and_named():
    ns = _namespace(epochs=1, trainsamples=5, train_samples=None)
    with pytest.raises(P.ParameterError, match=r"unknown parameter\(s\) \['trainsamples'\].*"
                                               r"train_samples"):
        P.check(ns, epochs=P.count(1), train_samples=P.count(1, none=True))


@pytest.mark.parametrize("value, message", [("abc", "an integer"), (0, r"\[1, inf\]"),
                                            (1.5, "an integer"), (True, "an integer")])
def test_bad_counts_are_refused(value, message):
    with pytest.raises(P.ParameterError, match=rf"'epochs'.*{message}"):
        P.check(_namespace(epochs=value), epochs=P.count(1))


def test_values_are_converted_in_place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = _namespace(epochs="3", ram_bytes="512k", keras_counts="false", out_dir="results/x",
                    samples=None)
    P.check(ns, epochs=P.count(1), ram_bytes=P.budget(), keras_counts=P.flag(),
            out_dir=P.out_dir(), samples=P.count(1, none=True))
    assert (ns["epochs"], ns["ram_bytes"], ns["keras_counts"]) == (3, 524288, False)
    assert ns["out_dir"] == tmp_path / "results" / "x" and ns["out_dir"].is_dir()


@pytest.mark.parametrize("value", [math.nan, "lots", -1, 0])
def test_bad_budgets_are_refused(value):
    with pytest.raises(P.ParameterError, match="'ram_bytes'"):
        P.check(_namespace(ram_bytes=value), ram_bytes=P.budget())


def test_out_dir_that_is_a_file_is_refused(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises(P.ParameterError, match="'out_dir'.*is a file"):
        P.check(_namespace(out_dir=str(f)), out_dir=P.out_dir())


@pytest.mark.slow
@pytest.mark.parametrize("notebook, bad, message", [
    ("03_memory_policy.ipynb", {"trainsamples": 5}, "unknown parameter"),
    ("00_baseline.ipynb", {"epochs": "abc"}, "'epochs': expected an integer"),
])
def test_papermill_run_with_a_bad_parameter_fails_before_any_work(tmp_path, notebook, bad,
                                                                   message):
    import papermill as pm
    repo = NOTEBOOKS[0].parents[1]
    out = tmp_path / "out"
    with pytest.raises(pm.PapermillExecutionError, match=message):
        pm.execute_notebook(str(repo / "notebooks" / notebook), str(tmp_path / "run.ipynb"),
                            parameters={**bad, "out_dir": str(out)}, cwd=str(tmp_path),
                            progress_bar=False, kernel_name="python3")
    assert not any(out.rglob("*.csv")), "the notebook wrote results before failing"


def test_one_or_items_takes_a_value_or_a_list_of_them():
    rule = P.one_or_items("PL", "PC")
    assert P.check(_namespace(g="PC"), g=rule)["g"] == "PC"
    assert P.check(_namespace(g=["PL", "PC"]), g=rule)["g"] == ["PL", "PC"]
    for bad in ("XX", ["PL", "XX"], []):
        with pytest.raises(P.ParameterError, match="'g"):
            P.check(_namespace(g=bad), g=rule)

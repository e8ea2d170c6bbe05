import os
import threading

import pandas as pd
import pytest

from tinyopt.files import atomic_path
from tinyopt.workbench import report


def test_write_and_append(tmp_path):
    p = tmp_path / "t.csv"
    report.write_csv([{"a": 1}], p)
    report.append_csv({"a": 2, "b": "x"}, p)
    df = pd.read_csv(p)
    assert df["a"].tolist() == [1, 2] and df["b"].isna().tolist() == [True, False]
    leftovers = [f for f in os.listdir(tmp_path) if f.startswith(".") and not f.endswith(".lock")]
    assert not leftovers


def test_parallel_appends_keep_every_row(tmp_path):
    p = tmp_path / "t.csv"
    threads = [threading.Thread(target=report.append_csv, args=({"i": i}, p))
               for i in range(20)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert sorted(pd.read_csv(p)["i"]) == list(range(20))


def test_failed_write_leaves_old_file(tmp_path):
    p = tmp_path / "t.csv"
    report.write_csv([{"a": 1}], p)
    with pytest.raises(RuntimeError, match="crash"), atomic_path(p) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash")
    assert pd.read_csv(p)["a"].tolist() == [1]
    assert len(os.listdir(tmp_path)) == 2  # the csv and its lock file


def test_results_are_world_readable(tmp_path):
    p = report.write_csv([{"a": 1}], tmp_path / "r.csv")
    assert p.stat().st_mode & 0o044 == 0o044


def test_append_keeps_old_values_verbatim(tmp_path):
    p = tmp_path / "t.csv"
    report.write_csv([{"run": "0123", "x": "1e5"}], p)
    report.append_csv({"run": "abc", "x": 2.5}, p)
    lines = p.read_text().splitlines()
    assert lines[1] == "0123,1e5" and lines[2] == "abc,2.5"


def test_checkpoint_prints_and_rewrites_the_csv(tmp_path, capsys):
    path = tmp_path / "rows.csv"
    log = report.Checkpoint(path, lambda r: f"row {r['a']}")
    log({"a": 1, "b": "x"})
    log({"a": 2, "b": "y"})
    assert capsys.readouterr().out == "row 1\nrow 2\n"
    assert pd.read_csv(path).to_dict("list") == {"a": [1, 2], "b": ["x", "y"]}
    silent = report.Checkpoint()
    silent({"a": 3})
    assert silent.rows == [{"a": 3}] and capsys.readouterr().out == ""

"""Every benchmark script parses its command line before it does anything: ``--help`` prints
and exits 0, an unknown option exits 2 (a mistyped flag once ran the whole bench and rewrote its
results)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(BENCH.glob("bench_*.py"))


def _module(path: Path):
    spec = importlib.util.spec_from_file_location(f"_bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_there_are_benchmarks():
    assert len(SCRIPTS) >= 9


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: p.stem)
def test_help_and_unknown_options_stop_before_any_work(path, capsys):
    module = _module(path)
    with pytest.raises(SystemExit) as stop:
        module.main(["--help"])
    assert stop.value.code == 0 and "usage:" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        module.main(["--no-such-option"])
    assert stop.value.code == 2 and "--no-such-option" in capsys.readouterr().err


def test_bench_kernels_refuses_write_without_a_scope(capsys):
    module = _module(BENCH / "bench_kernels.py")
    for argv in (["--write"], ["--exact"], ["--mlperf", "--subbyte"]):
        with pytest.raises(SystemExit) as stop:
            module.main(argv)
        assert stop.value.code == 2, argv


def test_bench_any_graph_refuses_an_unknown_model(capsys):
    module = _module(BENCH / "bench_any_graph.py")
    with pytest.raises(SystemExit) as stop:
        module.main(["--mcu", "no_such_model"])
    assert stop.value.code == 2 and "no_such_model" in capsys.readouterr().err

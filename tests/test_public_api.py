"""The one public surface (issue 27): ``tinyopt.<name>`` from the table in tinyopt/api.py, served
lazily; the 17 earlier facade modules as deprecated aliases from tinyopt/deprecated.py; README's
"Public API" table is the api table."""
from __future__ import annotations

import importlib
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import tinyopt
from tinyopt import api, deprecated

ROOT = Path(tinyopt.__file__).resolve().parent.parent
# TensorFlow-free stages: resolving their names must not import TensorFlow either
NO_TF_STAGES = ("tinyopt.integer.", "tinyopt.deploy.")
OLD_NAMES = sorted((m, n) for m, names in deprecated.OLD.items() for n in names)


def _python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
    return subprocess.run([sys.executable, *args] if not code else [sys.executable, "-c", code],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


@pytest.mark.parametrize("name", sorted(api.PUBLIC))
def test_public_name_is_its_documented_target(name):
    """``tinyopt.<name>`` is the very object its table entry names (so its docstring and
    signature are the real function's), and it is listed by ``dir(tinyopt)``."""
    where, what = api.PUBLIC[name]
    module, attribute = where.split(":")
    expected = getattr(importlib.import_module(module), attribute)
    assert getattr(tinyopt, name) is expected
    assert api.resolve(name) is expected
    assert name in dir(tinyopt)
    assert what and not what.endswith("."), f"{name}: one line, no final period"
    if callable(expected) and not isinstance(expected, type):
        assert (expected.__doc__ or "").strip(), f"{where} has no docstring"


def test_public_names_never_shadow_old_modules_or_stages():
    """A public name that is also an old facade module or a subpackage would hide it."""
    stages = {p.name.removesuffix(".py") for p in (ROOT / "tinyopt").iterdir()
              if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert not set(api.PUBLIC) & set(deprecated.OLD)
    assert not set(api.PUBLIC) & stages


def test_unknown_public_name_is_refused_with_suggestions():
    with pytest.raises(AttributeError, match=r"'simulat'.*did you mean simulate"):
        tinyopt.simulat  # noqa: B018
    with pytest.raises(AttributeError, match=r"tinyopt.api.PUBLIC"):
        getattr(tinyopt, "no_such_thing")


def test_every_old_name_maps_to_a_public_name():
    bad = [(m, n, new) for m, names in deprecated.OLD.items() for n, new in names.items()
           if new not in api.PUBLIC]
    assert not bad, f"old names pointing at no public name: {bad}"


@pytest.mark.parametrize("module,name", OLD_NAMES)
def test_old_name_resolves_and_warns_naming_the_new_one(module, name):
    old = importlib.import_module(f"tinyopt.{module}")
    new = deprecated.OLD[module][name]
    with pytest.warns(DeprecationWarning, match=rf"tinyopt\.{module}\.{name} is deprecated; "
                                                rf"use tinyopt\.{new} "):
        value = getattr(old, name)
    assert value is getattr(tinyopt, new)


def test_old_forms_users_write_still_work():
    """``import tinyopt.sim``, ``from tinyopt.ptq import quantize_mixed``, ``from tinyopt import
    icn`` and ``tinyopt.policy.X`` after ``import tinyopt`` each give the new object and warn."""
    with pytest.warns(DeprecationWarning, match="use tinyopt.simulate"):
        import tinyopt.sim
        run = tinyopt.sim.run
    assert run is tinyopt.simulate
    with pytest.warns(DeprecationWarning, match="use tinyopt.quantize_ptq"):
        from tinyopt.ptq import quantize_mixed
    assert quantize_mixed is tinyopt.quantize_ptq
    with pytest.warns(DeprecationWarning, match="use tinyopt.quantize_qat"):
        from tinyopt.qat import quantize_mixed as qat_mixed
    assert qat_mixed is tinyopt.quantize_qat
    with pytest.warns(DeprecationWarning, match="use tinyopt.to_integer_graph"):
        from tinyopt import icn
        assert icn.convert is tinyopt.to_integer_graph
    with pytest.warns(DeprecationWarning, match="use tinyopt.memory_driven"):
        assert tinyopt.policy.memory_driven is tinyopt.memory_driven


def test_old_module_refuses_a_name_it_never_had():
    with pytest.raises(AttributeError, match=r"'tinyopt.sim'.*no attribute 'simulate'.*"
                                             r"'graph_from_tflite', 'run', 'run_tflite'"):
        importlib.import_module("tinyopt.sim").simulate  # noqa: B018


def test_old_use_warns_once_per_line_under_default_filters():
    """Python's default filter shows the warning once per calling line, naming the new name."""
    code = ("import warnings; warnings.simplefilter('default')\n"
            "import tinyopt.memory as m\n"
            "for _ in range(3):\n    m.peak_ram_bytes\n"
            "m.flash_bytes\n")
    r = _python(code)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "DeprecationWarning" in ln]
    assert len(lines) == 2, r.stderr
    assert "use tinyopt.peak_ram_bytes" in lines[0] and "use tinyopt.flash_bytes" in lines[1]


def test_import_tinyopt_imports_no_tensorflow_and_no_stage():
    """``import tinyopt`` stays cheap, and an integer-stage name imports its stage only."""
    code = ("import sys, tinyopt\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('tinyopt.'))\n"
            "assert loaded == ['tinyopt.api', 'tinyopt.deprecated'], loaded\n"
            "assert 'tensorflow' not in sys.modules\n"
            "tinyopt.simulate, tinyopt.graph_from_tflite, tinyopt.IntegerGraph, tinyopt.export_c\n"
            "import tinyopt.sim\n"
            "print(sorted(k for k in ('tensorflow', 'tf_keras') if k in sys.modules))")
    r = _python(code)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_no_tf_names_come_from_no_tf_stages():
    """The names of the TensorFlow-free stages are where the test above can reach them."""
    for name in ("simulate", "graph_from_tflite", "IntegerGraph", "export_c"):
        assert api.PUBLIC[name][0].startswith(NO_TF_STAGES)


def test_python_m_old_data_module_still_runs_and_warns():
    """``python -m tinyopt.data`` (the former ``make data``) runs the dataset command."""
    r = _python("", "-W", "default::DeprecationWarning", "-m", "tinyopt.data", "--help")
    assert r.returncode == 0, r.stderr
    assert "fetch" in r.stdout and "verify" in r.stdout
    assert "use python -m tinyopt.front.data" in r.stderr
    r = _python("", "-m", "tinyopt.sim")
    assert r.returncode != 0 and "deprecated alias module" in r.stderr


def test_makefile_fetches_data_the_new_way():
    assert "-m tinyopt.front.data fetch" in (ROOT / "Makefile").read_text()


def _readme_public_table() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Public API"):]
    start = section.index("| name |")
    end = section.index("\n\n", start)
    return section[start:end]


def test_readme_table_is_the_api_table():
    """README.md's "Public API" table is exactly ``tinyopt.api.markdown_table()`` (print it with
    ``python -c "import tinyopt; print(tinyopt.api.markdown_table())"``)."""
    assert _readme_public_table() == api.markdown_table()


def test_markdown_table_has_one_row_per_name():
    rows = api.markdown_table().splitlines()[2:]
    assert [r.split("`")[1] for r in rows] == [f"tinyopt.{n}" for n in api.PUBLIC]


def test_installing_the_hook_twice_adds_one_finder():
    before = len(sys.meta_path)
    deprecated.install()
    assert len(sys.meta_path) == before
    sys.modules.pop("tinyopt.codegen", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        module = importlib.import_module("tinyopt.codegen")  # importing alone is silent
    assert isinstance(module, deprecated.DeprecatedModule)

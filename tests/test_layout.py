"""The package layout: imports run one way, no cycles, the integer and deployment stages import no
TensorFlow, library code never goes through the public surface (``tinyopt.<name>``, tinyopt.api)
or the deprecated facade modules, the old facade names users call still resolve, and a fake-quant
model round-trips through ``tf_keras.models.load_model``."""
from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinyopt
from tinyopt import api, deprecated

PKG = Path(tinyopt.__file__).resolve().parent
# Bottom to top: a module may import only from its own stage or a stage below it.
STAGES = ["files", "names", "integer", "front", "transforms", "litert", "mixed", "deploy",
          "pipeline", "studies", "workbench"]
# The 17 facade modules of the earlier public API: now deprecated aliases (tinyopt/deprecated.py),
# never files, never imported by library code.
FACADES = {"data", "models", "train", "convert", "measure", "prune", "decompose", "graph",
           "sequence", "sim", "memory", "mcu", "codegen", "qat", "ptq", "policy", "icn"}
# The surface library code must not import: the tables and the public names themselves.
SURFACE = {"tinyopt.api", "tinyopt.deprecated"} | {f"tinyopt.{n}" for n in api.PUBLIC}
PUBLIC = {  # the old contract (README's former table): tinyopt.<module>.<name> keeps resolving
    "sim": ["run", "run_tflite", "graph_from_tflite"], "icn": ["convert"],
    "ptq": ["quantize_mixed"], "qat": ["quantize_mixed", "quantize"],
    "policy": ["Policy", "memory_driven", "BudgetError"],
    "memory": ["flash_bytes", "peak_ram_bytes"], "mcu": ["deploy", "toolchain"],
    "codegen": ["export_c"], "convert": ["to_tflite"], "sequence": ["run", "recommend"],
    "models": ["seed_cnn", "mobilenet_v1"],
    "data": ["load", "dataset", "preprocess", "DatasetError"], "train": ["fit"],
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        out[".".join(["tinyopt", *parts])] = path
    return out


def _imports(path: Path) -> set[str]:
    """Every tinyopt module a file imports, at top level or inside functions."""
    return _imports_of_source(path.read_text())


def _imports_of_source(code: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tinyopt"):
            found.add(node.module)
            for alias in node.names:  # from tinyopt.mixed import build -> tinyopt.mixed.build
                found.add(f"{node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("tinyopt"))
    return found


def _stage(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def test_no_import_cycles():
    mods = _modules()
    graph = {m: {i for i in _imports(p) if i in mods and i != m and i != "tinyopt"}
             for m, p in mods.items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n] if n in stack else [m, n]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n, stack + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])


def test_facade_table_is_the_deprecated_table():
    """FACADES here and tinyopt.deprecated.OLD name the same 17 modules, and none is a file."""
    assert set(deprecated.OLD) == FACADES
    files = sorted(f for f in FACADES if (PKG / f"{f}.py").exists() or (PKG / f).is_dir())
    assert not files, f"old facade modules exist as files again: {files}"


def test_imports_run_one_way_and_library_never_uses_facades():
    bad = []
    for module, path in _modules().items():
        stage = _stage(module)
        if stage is None:  # tinyopt/__init__, api.py, deprecated.py
            continue
        for imp in _imports(path):
            parts = imp.split(".")
            if len(parts) == 2 and parts[1] in FACADES:
                bad.append(f"{module} imports the deprecated facade {imp}")
            if imp in SURFACE:
                bad.append(f"{module} imports the public surface {imp}; import from the stage "
                           f"module instead")
            target = _stage(imp)
            if target is not None and STAGES.index(target) > STAGES.index(stage):
                bad.append(f"{module} ({stage}) imports {imp} ({target}), a later stage")
    assert not bad, "\n".join(bad)


def test_integer_and_deploy_import_no_tensorflow():
    mods = [m for m in _modules() if _stage(m) in ("integer", "deploy", "files")]
    code = ("import importlib, sys\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            "print(sorted(k for k in ('tensorflow', 'tf_keras') if k in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", f"importing the integer/deploy stages loaded {out}"


def test_surface_check_sees_public_imports():
    """What the check above flags: ``from tinyopt import simulate``, ``import tinyopt.api`` and
    ``from tinyopt.sim import run``, not ``from tinyopt import files``."""
    code = "from tinyopt import simulate, files\nimport tinyopt.api\nfrom tinyopt.sim import run\n"
    found = {i for i in _imports_of_source(code)
             if i in SURFACE or (len(i.split(".")) == 2 and i.split(".")[1] in FACADES)}
    assert found == {"tinyopt.simulate", "tinyopt.api", "tinyopt.sim"}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_importable(module):
    import importlib
    mod = importlib.import_module(f"tinyopt.{module}")
    for name in PUBLIC[module]:
        assert callable(getattr(mod, name)), f"tinyopt.{module}.{name}"
        assert getattr(mod, name) is getattr(tinyopt, deprecated.OLD[module][name])


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_public_signatures_kept():
    from tinyopt import icn, mcu, policy, ptq, qat, sim
    assert list(inspect.signature(tinyopt.simulate).parameters)[:2] == ["graph", "x"]
    assert list(inspect.signature(tinyopt.simulate_tflite).parameters)[:2] == ["tflite_bytes", "x"]
    assert list(inspect.signature(tinyopt.to_integer_graph).parameters)[:1] == ["qmodel"]
    assert list(inspect.signature(tinyopt.quantize_ptq).parameters)[:3] == \
        ["model", "policy", "calibration"]
    assert list(inspect.signature(tinyopt.quantize_qat).parameters)[:2] == ["model", "policy"]
    assert list(inspect.signature(tinyopt.memory_driven).parameters)[:3] == \
        ["model", "flash_bytes", "ram_bytes"]
    assert list(inspect.signature(tinyopt.deploy_mcu).parameters)[:3] == ["graph", "x", "out_dir"]
    # the same signatures under the old, deprecated spellings
    assert list(inspect.signature(sim.run).parameters)[:2] == ["graph", "x"]
    assert list(inspect.signature(sim.run_tflite).parameters)[:2] == ["tflite_bytes", "x"]
    assert list(inspect.signature(icn.convert).parameters)[:1] == ["qmodel"]
    assert list(inspect.signature(ptq.quantize_mixed).parameters)[:3] == \
        ["model", "policy", "calibration"]
    assert list(inspect.signature(qat.quantize_mixed).parameters)[:2] == ["model", "policy"]
    assert list(inspect.signature(policy.memory_driven).parameters)[:3] == \
        ["model", "flash_bytes", "ram_bytes"]
    assert list(inspect.signature(mcu.deploy).parameters)[:3] == ["graph", "x", "out_dir"]


def _small_model():
    import tf_keras as keras
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, padding="same", use_bias=False, name="c0")(inp)
    x = keras.layers.BatchNormalization(name="bn0")(x)
    x = keras.layers.ReLU(name="r0")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    out = keras.layers.Dense(3, name="fc")(x)
    return keras.Model(inp, out)


@pytest.mark.parametrize("granularity", ["PL", "PC"])
def test_fake_quant_model_roundtrips_through_load_model(tmp_path, granularity):
    import tf_keras as keras

    from tinyopt.mixed import build
    from tinyopt.mixed.policy import Policy
    model = _small_model()
    policy = Policy(["c0", "dw", "fc"], [4, 2, 8], [4, 4, 8], granularity)
    q = build.quantize_mixed(model, policy)
    x = np.random.default_rng(0).random((16, 8, 8, 1), np.float32)
    before = q.predict(x, verbose=0)
    q.save(tmp_path / "q.keras")
    loaded = keras.models.load_model(tmp_path / "q.keras")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), before)
    assert loaded.policy == q.policy
    assert loaded.freeze_bn_after == q.freeze_bn_after
    # the integer view (what lowering reads) is the same too
    a, b = build.integer_params(q), build.integer_params(loaded)
    for ea, eb in zip(a["layers"], b["layers"]):
        if ea["type"] == "compute":
            np.testing.assert_array_equal(ea["weight_codes"], eb["weight_codes"])
            np.testing.assert_array_equal(ea["bias_codes"], eb["bias_codes"])


def _readme_module_map() -> str:
    """The code block of README.md's "The flow" section: the module map."""
    readme = (PKG.parent / "README.md").read_text()
    section = readme[readme.index("## The flow"):]
    start = section.index("```\n") + 4
    return section[start:section.index("```", start)]


def _mapped_files(block: str) -> set[str]:
    """Files the map names, relative to tinyopt/. A line starting with ``tinyopt/<dir>/`` opens
    that folder (its indented lines name files in it); one starting with ``tinyopt/<file>`` goes
    back to the package root. Names with a folder (``c/tn_m7.h``) are relative to the open one."""
    import re
    names, folder = set(), ""
    for line in block.splitlines():
        if line.startswith("tinyopt/"):
            head = line.split()[0][len("tinyopt/"):]
            folder = head if head.endswith("/") else ""
        for token in re.findall(r"[\w./]+\.(?:py|c|h|ld)\b", line):
            names.add(token[len("tinyopt/"):] if token.startswith("tinyopt/") else folder + token)
    return names


def test_readme_module_map_names_every_file():
    """Every module (and C file) of tinyopt/ is in the README's module map, and the map names no
    file that does not exist, so it cannot go stale either way."""
    files = {p.relative_to(PKG).as_posix() for p in PKG.rglob("*")
             if p.is_file() and p.suffix in (".py", ".c", ".h", ".ld") and "__pycache__" not in
             p.parts and (p.name != "__init__.py" or p.parent == PKG)}
    mapped = _mapped_files(_readme_module_map())
    assert not files - mapped, f"README.md's module map does not name {sorted(files - mapped)}"
    assert not mapped - files, \
        f"README.md's module map names files that do not exist: {sorted(mapped - files)}"


def test_module_map_parser_sees_folders():
    """The map's reader resolves indented names in their folder, and a ``tinyopt/<file>`` line
    goes back to the package root."""
    block = ("tinyopt/files.py        x\ntinyopt/integer/        y\n"
             "    sim.py   z (sim_kernels.c)\ntinyopt/deploy/\n    c/tn_m7.h  w\n"
             "tinyopt/data.py  facades: models.py\n")
    assert _mapped_files(block) == {"files.py", "integer/sim.py", "integer/sim_kernels.c",
                                    "deploy/c/tn_m7.h", "data.py", "models.py"}

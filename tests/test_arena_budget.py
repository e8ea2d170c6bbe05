"""``arena_budget``: on a Keras-path graph the scratch-hungry fast kernels (the 3x3 depthwise row
kernel, tn_m7_subconv) run only where their scratch is free unless the caller gives RAM to spare;
then they may grow the arena up to the budget, never past it, and the C stays bit-exact."""
from __future__ import annotations

import json

import pytest

from tests.test_kernels_m7 import chain, host_check
from tests.test_kernels_m7_dw3_keras import KERAS_CHAINS
from tinyopt.deploy import codegen
from tinyopt.integer import steps as steps_mod


def _graph(name="w8a8", seed=5):
    bits, signed, zin, shape, layers = KERAS_CHAINS[name]
    return chain(seed, layers, shape, bits, signed, zin, "floor")


def _plan(g, budget):
    steps, mem = steps_mod.memory_plan(g, arena_budget=budget)
    return mem.arena_bytes, sum(steps_mod.dw3_fits(s) for s in steps), steps


def _forced(g, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(steps_mod, "SCRATCH_ONLY_WHERE_FREE", False)
        return _plan(g, None)


@pytest.mark.parametrize("name", ["w8a8", "w4a4", "w2a2"])
def test_the_budget_buys_the_fast_kernels_and_is_never_exceeded(name, monkeypatch):
    g = _graph(name)
    lean, lean_rows, lean_steps = _plan(g, None)
    fast, fast_rows, _ = _forced(g, monkeypatch)
    # the chains are all depthwise: most steps set the peak, the row kernel's scratch grows it
    assert lean_rows < fast_rows == 3 and fast > lean
    # below or at the lean arena: the lean plan itself, offsets and all
    for budget in (0, lean - 1, lean):
        arena, rows, steps = _plan(g, budget)
        assert (arena, rows) == (lean, lean_rows)
        assert [(s.in_offset, s.out_offset, s.scratch_offset) for s in steps] == \
            [(s.in_offset, s.out_offset, s.scratch_offset) for s in lean_steps]
    # enough for everything: every step on the fast kernel, the forced plan's arena
    assert _plan(g, fast)[:2] == (fast, 3)
    assert _plan(g, 10 * fast)[:2] == (fast, 3)
    # in between: within the budget, and every budget at least as fast as a smaller one
    rows_seen = []
    for budget in range(lean, fast + 1, max(1, (fast - lean) // 12)):
        arena, rows, _ = _plan(g, budget)
        assert lean <= arena <= budget and rows >= lean_rows
        rows_seen.append(rows)
    assert rows_seen == sorted(rows_seen)


def test_a_budget_export_is_bitexact_and_uses_the_row_kernel(tmp_path, monkeypatch):
    g = _graph("w4a4", seed=7)
    fast, _, _ = _forced(g, monkeypatch)
    lean = codegen.export_c(g, tmp_path / "lean")
    assert sum(map(steps_mod.dw3_fits, lean.steps)) < 3
    e = codegen.export_c(g, tmp_path / "fast", arena_budget=fast)
    assert e.arena_bytes == fast and sum(map(steps_mod.dw3_fits, e.steps)) == 3
    host_check(g, tmp_path / "check")  # the default export
    from tinyopt.deploy import mcu
    import numpy as np
    exe = mcu.build_host(e, build_dir=tmp_path / "host")
    x = np.random.default_rng(3).integers(0, 16, (24, *g.input_shape))
    assert int((mcu.run_host(exe, e, x) != codegen.reference_output(g, x)).sum()) == 0


@pytest.mark.parametrize("bad", [-1, 1.5, "64k", True])
def test_a_bad_budget_is_refused(bad):
    with pytest.raises(ValueError, match="arena_budget"):
        steps_mod.memory_plan(_graph(), arena_budget=bad)


@pytest.mark.slow  # a generate: host build and check, Cortex-M7 compile
def test_the_cli_takes_the_budget_and_refuses_a_bad_one(tmp_path, capsys, monkeypatch):
    from tinyopt.deploy import library
    from tinyopt.workbench import cli
    path = tmp_path / "g.npz"
    _graph("w4a4", seed=7).save(path)
    # analyze without its Cortex-M7 compile of the library (library_sizes, ~1.8 s of CPU each
    # the first time): only arenas are asserted; the generate below compiles the budget
    # export's library for the Cortex-M7
    with monkeypatch.context() as m:
        m.setattr(library, "library_sizes", lambda export: None)
        assert cli.main(["analyze", str(path), "--arena-budget", "lots"]) == 2
        assert "--arena-budget 'lots' is not a byte count" in capsys.readouterr().err
        assert cli.main(["analyze", str(path), "--json"]) == 0
        lean = json.loads(capsys.readouterr().out)["totals"]["arena_bytes"]
        assert cli.main(["analyze", str(path), "--json", "--arena-budget", "1M"]) == 0
        report = json.loads(capsys.readouterr().out)
    assert report["totals"]["arena_bytes"] > lean
    out = tmp_path / "lib"
    assert cli.main(["generate", str(path), "--name", "net", "--out", str(out),
                              "--check", "4", "--no-progress", "--arena-budget", "1M"]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["arena_budget"] == 1 << 20 and meta["arena_bytes"] == \
        report["totals"]["arena_bytes"]


@pytest.mark.slow  # builds and calibrates the ResNet-8 architecture (random weights)
def test_the_lean_arena_itself_buys_every_scratch_that_fits():
    """The planner's first guess (a step's live bytes in the lean plan plus its scratch) is
    conservative: a scratch may take bytes the planner frees by placing buffers differently.
    Every candidate it leaves out is therefore tried, one plan each, also without a budget. On
    ResNet-8 at w4a8 two more 3x3 convolutions run tn_m7_subconv at the same arena: 9 of its
    9 convolutions (the guess alone took 7)."""
    import numpy as np
    import tf_keras as keras

    from tinyopt.mixed import lower, ptq
    from tinyopt.mixed.policy import Policy
    from tinyopt.studies.any_graph import mlperf_architecture
    model = mlperf_architecture("ic_resnet8", classes=10, seed=0)
    x = np.random.default_rng(0).uniform(0, 1, (16, *model.input_shape[1:])).astype(np.float32)
    keras.utils.set_random_seed(0)
    g = lower.convert(ptq.quantize_mixed(model, Policy.uniform(model, 4, 8, "PL"), x))
    steps, mem = steps_mod.memory_plan(g)
    fast = [s.name for s in steps if s.roomy and steps_mod.sub_conv_step(s)]
    assert mem.arena_bytes == 33472 and len(fast) == 9, (mem.arena_bytes, fast)
    # a budget at that arena changes nothing
    assert steps_mod.memory_plan(g, arena_budget=mem.arena_bytes)[1].arena_bytes == 33472

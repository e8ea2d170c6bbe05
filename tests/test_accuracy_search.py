"""Accuracy-aware mixed precision (issue 30): the sensitivity measurement
(tinyopt.mixed.sensitivity) and the exact search under the memory model
(tinyopt.mixed.accuracy_search). No training: untrained seeded models have input-dependent logits,
which is all the measurement needs."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from tinyopt.mixed.accuracy_search import (accuracy_driven, explain, total_sensitivity,
                                           zero_sensitivity)
from tinyopt.mixed.memory import Node, flash_bytes, peak_ram_bytes
from tinyopt.mixed.policy import Policy
from tinyopt.mixed.search import BudgetError, memory_driven

BITS = (8, 4, 2)
# a chain of 3 policy layers: brute force is 3^3 weight x 3^2 act assignments
NODES = [Node("c1", "conv", 216, 8, 1024, 2048), Node("p2", "conv", 512, 64, 2048, 4096),
         Node("fc", "dense", 640, 10, 4096, 10)]
NAMES = [n.name for n in NODES]


def table(seed):
    """A random sensitivity table (2 bits always worse than 4 bits, as measured ones mostly are
    but the solver does not assume)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in NAMES:
        for tensor in ("weights", "activations"):
            if tensor == "activations" and name == "fc":
                continue
            s4 = float(rng.random())
            out[(name, tensor, 4)] = s4
            out[(name, tensor, 2)] = s4 + 3 * float(rng.random())
    return out


def brute_force(sens, flash, ram, granularity):
    best = None
    for ws in itertools.product(BITS, repeat=3):
        for acts in itertools.product(BITS, repeat=2):
            p = Policy(NAMES, list(ws), list(acts) + [8], granularity)
            if flash_bytes(NODES, p) <= flash and peak_ram_bytes(NODES, p) <= ram:
                s = total_sensitivity(p, sens)
                best = s if best is None else min(best, s)
    return best


@pytest.mark.parametrize("granularity", ["PL", "PC"])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_solver_finds_the_brute_force_optimum_and_fits(granularity, seed):
    sens = table(seed)
    full = Policy.uniform(NAMES, 8, 8, granularity)
    f8, r8 = flash_bytes(NODES, full), peak_ram_bytes(NODES, full)
    checked = 0
    for flash, ram in [(f8, r8), (int(f8 * 0.7), int(r8 * 0.6)), (int(f8 * 0.5), int(r8 * 0.45)),
                       (int(f8 * 0.4), r8), (f8, int(r8 * 0.3))]:
        best = brute_force(sens, flash, ram, granularity)
        if best is None:
            with pytest.raises(BudgetError):
                accuracy_driven(NODES, flash, ram, granularity=granularity, sensitivity=sens)
            continue
        p = accuracy_driven(NODES, flash, ram, granularity=granularity, sensitivity=sens)
        assert flash_bytes(NODES, p) <= flash and peak_ram_bytes(NODES, p) <= ram
        assert total_sensitivity(p, sens) == pytest.approx(best, rel=1e-9, abs=1e-12)
        checked += 1
    assert checked >= 3  # the budgets above are not all infeasible


def test_never_worse_than_the_memory_driven_rule_at_the_same_budget():
    sens = table(3)
    full = Policy.uniform(NAMES, 8, 8)
    f8, r8 = flash_bytes(NODES, full), peak_ram_bytes(NODES, full)
    compared = 0
    for kf, kr in itertools.product([1.0, 0.8, 0.6, 0.45], [1.0, 0.7, 0.5, 0.35]):
        flash, ram = int(f8 * kf), int(r8 * kr)
        try:
            rule = memory_driven(NODES, flash, ram)
        except BudgetError:
            continue
        ours = accuracy_driven(NODES, flash, ram, sensitivity=sens, incumbent=False)
        assert total_sensitivity(ours, sens) <= total_sensitivity(rule, sens) + 1e-12
        compared += 1
    assert compared >= 6


def test_an_impossible_budget_raises_budget_error_with_the_minimum():
    with pytest.raises(BudgetError) as rule:
        memory_driven(NODES, 300, 100_000)
    with pytest.raises(BudgetError, match="smallest reachable flash") as ours:
        accuracy_driven(NODES, 300, 100_000, sensitivity=table(0))
    assert (ours.value.min_flash, ours.value.min_ram) == (rule.value.min_flash,
                                                          rule.value.min_ram)
    assert ours.value.flash_budget == 300
    with pytest.raises(BudgetError, match="RAM budget 100 B"):
        accuracy_driven(NODES, 100_000, 100, sensitivity=table(0))


def test_the_choice_explains_itself_per_layer():
    sens = table(0)
    p = accuracy_driven(NODES, 1400, "3k", sensitivity=sens)
    t = explain(p)
    assert list(t["layer"]) == NAMES
    assert list(t["weight_bits"]) == p.weight_bits
    assert t["act_bits"].isna().tolist() == [False, False, True]  # the logits are fixed
    assert t.attrs["total_sensitivity"] == pytest.approx(total_sensitivity(p, sens))
    assert t.attrs["flash_bytes"] == flash_bytes(NODES, p) <= 1400
    assert t.attrs["peak_ram_bytes"] == peak_ram_bytes(NODES, p) <= 3072
    assert (t["flash_budget"] == 1400).all() and (t["ram_budget"] == 3072).all()
    cut = t[t["weight_bits"] < 8]
    assert len(cut) and (cut["weight_sensitivity"] > 0).all()
    assert t["flash_saved_bytes"].sum() == flash_bytes(NODES, Policy.uniform(NAMES)) - \
        flash_bytes(NODES, p)
    assert Policy.from_dict(p.to_dict()).trace == p.trace  # JSON-able
    with pytest.raises(ValueError, match="no accuracy-aware trace"):
        explain(memory_driven(NODES, 1400, "3k"))


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop(("p2", "weights", 2)), r"no entry for layer 'p2' weights at 2 bits"),
    (lambda s: s.__setitem__(("c1", "activations", 4), -1.0), "finite and >= 0"),
    (lambda s: s.__setitem__(("c1", "activations", 4), float("nan")), "finite and >= 0"),
    (lambda s: s.__setitem__(("zz", "weights", 4), 0.1), "names no policy layer"),
])
def test_a_bad_sensitivity_table_is_refused_by_name(change, message):
    sens = table(0)
    change(sens)
    with pytest.raises(ValueError, match=message):
        accuracy_driven(NODES, "1k", "3k", sensitivity=sens)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="needs calibration images"):
        accuracy_driven(NODES, "1k", "3k")
    with pytest.raises(ValueError, match="granularity"):
        accuracy_driven(NODES, "1k", "3k", granularity="PX", sensitivity=table(0))
    with pytest.raises(ValueError, match="bits must be"):
        accuracy_driven(NODES, "1k", "3k", bits=(8, 3), sensitivity=table(0))
    with pytest.raises(ValueError, match="max_rounds"):
        accuracy_driven(NODES, "1k", "3k", max_rounds=0, sensitivity=table(0))
    with pytest.raises(ValueError, match="flash_bytes"):
        accuracy_driven(NODES, "-1", "3k", sensitivity=table(0))


# ----------------------------------------------------------------------------- Keras models

@pytest.fixture(scope="module")
def cnn():
    from tinyopt.front import models
    m = models.seed_cnn()
    x = np.random.default_rng(0).random((64, 28, 28, 1), dtype=np.float32)
    return m, x


@pytest.mark.slow  # (a few seconds: make test runs it, test-fast does not)
def test_layer_sensitivity_covers_the_policy_and_is_deterministic(cnn):
    from tinyopt.mixed.sensitivity import layer_sensitivity
    m, x = cnn
    before = [w.copy() for w in m.get_weights()]
    s = layer_sensitivity(m, x, samples=32)
    assert [tuple(r) for r in s[["layer", "tensor", "bits"]].itertuples(index=False)] == [
        ("conv", "weights", 4), ("conv", "weights", 2), ("conv", "activations", 4),
        ("conv", "activations", 2), ("fc", "weights", 4), ("fc", "weights", 2)]
    assert (s["sensitivity"] >= 0).all() and s["sensitivity"].max() > 0
    assert s.attrs["samples"] == 32
    assert all((a == b).all() for a, b in zip(before, m.get_weights()))  # model untouched
    again = layer_sensitivity(m, x, samples=32)
    assert again["sensitivity"].tolist() == s["sensitivity"].tolist()


def test_the_last_layer_s_sensitivity_is_what_ptq_of_that_policy_gives(cnn):
    """No layer follows the logits layer, so its in-place perturbation must reproduce a fresh PTQ
    of the policy with that one change exactly (same fold, clips, bias grid)."""
    from tinyopt.mixed import ptq
    from tinyopt.mixed.sensitivity import _kl, _log_softmax, layer_sensitivity
    m, x = cnn
    x = x[:32]
    names = Policy.uniform(m).layers
    s = layer_sensitivity(m, x, samples=None)
    ref = ptq.quantize_mixed(m, Policy.uniform(m), x)
    one = Policy(names, [8] * (len(names) - 1) + [2], [8] * len(names))
    cut = ptq.quantize_mixed(m, one, x)
    expect = _kl(_log_softmax(ref.predict(x, verbose=0)), cut.predict(x, verbose=0))
    got = s[(s.layer == names[-1]) & (s.tensor == "weights") & (s.bits == 2)]["sensitivity"]
    assert float(got.iloc[0]) == pytest.approx(expect, rel=1e-4, abs=1e-7)
    assert expect > 0


def test_accuracy_driven_on_a_keras_model_fits_and_is_deterministic(cnn):
    m, x = cnn
    names = Policy.uniform(m).layers
    full = Policy.uniform(m)
    # the paper's accounting: the device's plan is not monotone in the bits (the sub-byte dense
    # layer runs a kernel with more scratch than the int8 one), so 80 % of w8a8 is out of reach
    f8, r8 = flash_bytes(m, full), peak_ram_bytes(m, full, accounting="paper")
    flash, ram = int(f8 * 0.4), int(r8 * 0.8)
    p = accuracy_driven(m, flash, ram, x, samples=32, accounting="paper")
    assert p.layers == names
    assert flash_bytes(m, p) <= flash and peak_ram_bytes(m, p, accounting="paper") <= ram
    q = accuracy_driven(m, flash, ram, x, samples=32, accounting="paper")
    assert (p.weight_bits, p.act_bits, p.fold) == (q.weight_bits, q.act_bits, q.fold)
    assert p.trace == q.trace[:0] + [dict(r, seconds=r["seconds"]) for r in p.trace]
    assert [r["sensitivity"] for r in p.trace] == [r["sensitivity"] for r in q.trace]


@pytest.mark.parametrize("net", ["residual", "softmax_head", "zero_padding"])
def test_graphs_with_branches_heads_and_pools(net):
    """Adds (bits propagate, alpha recalibrated), an int8 softmax head (its logits fixed),
    pads and pools: the measurement runs and the search fits both budgets."""
    from tests import _keras_nets
    from tinyopt.mixed.sensitivity import controlled_activations, layer_sensitivity
    m = _keras_nets.randomize_bias(getattr(_keras_nets, net)())
    x = _keras_nets.calibration(m, 48)
    s = layer_sensitivity(m, x)
    ctl = controlled_activations(m)
    assert set(s[s.tensor == "activations"]["layer"]) == set(ctl)
    assert (s["sensitivity"] >= 0).all() and s["sensitivity"].max() > 0
    full = Policy.uniform(m)
    f8, r8 = flash_bytes(m, full), peak_ram_bytes(m, full)
    for kf, kr in [(1.0, 1.0), (0.5, 0.6), (0.35, 0.4)]:
        flash, ram = int(f8 * kf), int(r8 * kr)
        try:
            p = accuracy_driven(m, flash, ram, sensitivity=s)
        except BudgetError:
            with pytest.raises(BudgetError):
                accuracy_driven(m, flash, ram, sensitivity=zero_sensitivity(m))
            continue
        assert flash_bytes(m, p) <= flash and peak_ram_bytes(m, p) <= ram
        try:
            rule = memory_driven(m, flash, ram)
        except BudgetError:
            continue
        assert total_sensitivity(p, s) <= total_sensitivity(rule, s) + 1e-12


def test_the_grammar_reaches_the_accuracy_search(cnn):
    from tinyopt.pipeline import grammar
    m, x = cnn
    step = grammar.parse_step("mixed(flash=6000,ram=16k,search=accuracy)")
    assert step.policy["search"] == "accuracy"
    p = grammar.make_policy(step.policy, m, x, samples=16)
    assert explain(p)["layer"].tolist() == Policy.uniform(m).layers
    with pytest.raises(ValueError, match="needs calibration images"):
        grammar.make_policy(step.policy, m)
    rule = grammar.make_policy(grammar.parse_step("mixed(flash=6000,ram=16k)").policy, m)
    assert not rule.trace or rule.trace[0].get("phase") != "accuracy"

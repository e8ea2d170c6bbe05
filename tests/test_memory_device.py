"""The memory model on the device's plan (issue 27): ``peak_ram_bytes(model, policy)`` is, by
default, the arena of the plan the C export builds for the integer graph of ``policy``
(``tinyopt.integer.steps.plan``, export_c's default: fused pools and adds, in-place and sliding
writes, kernel scratch once the planner places it), computed without calibrating
(tinyopt.mixed.skeleton). Each model here goes the whole way (PTQ -> icn.convert -> plan) and
the two are compared; the skeleton is compared with icn.convert's graph node by node. The paper
accounting stays available by name (``accounting="paper"``) and still gives the MobileNetV1
figures.
"""
import numpy as np
import pytest

import tinyopt  # noqa: F401
import tf_keras as keras
from tf_keras import layers as L

from tinyopt.front import models, zoo
from tinyopt.integer import steps
from tinyopt.mixed import lower, memory, ptq
from tinyopt.mixed.policy import Policy
from tinyopt.mixed.search import BudgetError, memory_driven
from tinyopt.mixed.skeleton import skeleton

from tests.test_memory_chains import pad_chain, pool_chain

# the fields of a node the planner and the kernel choice read
FIELDS = ("kind", "name", "in_shape", "out_shape", "in_bits", "out_bits", "in_signed",
          "out_signed", "in_zero_point", "weight_shape", "weight_bits", "stride", "padding",
          "pool_size", "depth_multiplier", "inputs", "outputs", "requantize")


def _deployed(model, policy, x, softmax="int8"):
    """(icn.convert's graph after PTQ, the arena of the C export's default plan)."""
    keras.utils.set_random_seed(0)
    g = lower.convert(ptq.quantize_mixed(model, policy, x, softmax=softmax))
    return g, steps.plan(g)[1]


def _same_structure(sk, g):
    assert [layer.name for layer in sk.layers] == [layer.name for layer in g.layers]
    for a, b in zip(sk.layers, g.layers):
        for f in FIELDS:
            va, vb = getattr(a, f), getattr(b, f)
            if f == "in_zero_point" and a.kind not in ("add", "quantize", "softmax"):
                continue  # calibrated (the image's, the PACT grids' are 0 in both)
            va = tuple(va) if isinstance(va, (list, tuple)) else va
            vb = tuple(vb) if isinstance(vb, (list, tuple)) else vb
            assert va == vb, (a.name, f, va, vb)
        if a.weights is not None:
            assert a.weights.shape == b.weights.shape, a.name
            assert a.weight_zero_point.shape == b.weight_zero_point.shape, a.name
            assert (a.m0 is None) == (b.m0 is None), a.name
            assert a.m0 is None or a.m0.shape == b.m0.shape, a.name


def _check(model, policies, x, softmax="int8"):
    for label, p in policies.items():
        g, arena = _deployed(model, p, x, softmax)
        _same_structure(skeleton(model, p, softmax), g)
        assert memory.peak_ram_bytes(model, p, softmax) == arena, label
        rep = memory.report(model, p, softmax)
        assert rep.attrs["peak_ram_bytes"] == arena and rep.attrs["accounting"] == "device"
        live = memory.live_steps(model, p, softmax)
        assert live.attrs["arena_bytes"] == arena
        assert live["live_bytes"].max() <= arena
        assert rep.attrs["peak_step"] in set(live["step"])


def _mixed(model, granularity="PL"):
    """A mixed policy the memory-driven rule gives at 60 % of w8a8's flash and half-way between
    the smallest and the w8a8 arena (adds keep equal addends, so the policy converts)."""
    p8 = Policy.uniform(model, 8, 8, granularity)
    top = memory.peak_ram_bytes(model, p8)
    low = memory.peak_ram_bytes(model, Policy.uniform(model, 8, 2, granularity))
    # half-way between the two arenas; when the sub-byte one is the larger (a sub-byte dense
    # layer runs a kernel with scratch where the int8 one needs none), room for the flash cuts
    ram = (top + low) // 2 if low < top else int(max(top, low) * 1.25)
    p = memory_driven(model, int(memory.flash_bytes(model, p8) * 0.6), ram, granularity)
    assert len(set(p.weight_bits)) > 1 or len(set(p.act_bits)) > 1
    return p


# ------------------------------------------------------------------------------ small models

@pytest.mark.slow  # (a few seconds: make test runs it, test-fast does not)
def test_seed_cnn():
    m = models.seed_cnn()
    x = np.random.default_rng(0).uniform(0, 1, (32, 28, 28, 1)).astype(np.float32)
    _check(m, {"w8a8": Policy.uniform(m, 8, 8), "w4a4": Policy.uniform(m, 4, 4),
               "w2a4_PC": Policy.uniform(m, 2, 4, "PC")}, x)
    # the device holds less than the paper's rule counts (fused pool, sliding writes)
    p8 = Policy.uniform(m, 8, 8)
    assert memory.peak_ram_bytes(m, p8) < memory.peak_ram_bytes(m, p8, accounting="paper")


@pytest.mark.parametrize("chain", ["pad", "pool"])
def test_the_chains_of_the_security_issue(chain):
    m = pad_chain() if chain == "pad" else pool_chain(L.MaxPooling2D)
    x = np.random.default_rng(1).uniform(0, 1, (32, 16, 16, 3)).astype(np.float32)
    names = [n.name for n in memory.nodes(m)]
    _check(m, {"w8a8": Policy.uniform(m, 8, 8),
               "mixed": Policy(names, [8, 4, 2, 8][:len(names)], [2, 8, 4, 8][:len(names)])}, x)


def _residual() -> keras.Model:
    """A residual stage with a linear branch, a global average pool and a softmax head."""
    inp = keras.Input((8, 8, 4), name="img")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c0")(inp)
    y = L.Conv2D(8, 3, padding="same", activation="relu", name="c1")(x)
    y = L.Conv2D(8, 3, padding="same", name="c2")(y)
    x = L.Activation("relu", name="r")(L.Add(name="add")([x, y]))
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(3, activation="softmax", name="fc")(x), name="residual")


@pytest.mark.parametrize("softmax", ["int8", "logits"])
def test_a_residual_graph_and_the_softmax_head(softmax):
    m = _residual()
    x = np.random.default_rng(2).uniform(0, 1, (32, 8, 8, 4)).astype(np.float32)
    _check(m, {"w8a8": Policy.uniform(m, 8, 8),
               "mixed": Policy(["c0", "c1", "c2", "fc"], [4, 8, 2, 8], [4, 8, 4, 8], "PC")},
           x, softmax)


def test_memory_driven_fits_the_deployed_arena_and_keeps_addends_equal():
    m = _residual()
    x = np.random.default_rng(3).uniform(0, 1, (32, 8, 8, 4)).astype(np.float32)
    top = memory.peak_ram_bytes(m, Policy.uniform(m, 8, 8))
    # the smallest arena: every activation at 2 bits, weights at 8 (the narrowest im2col rows)
    low = memory.peak_ram_bytes(m, Policy.uniform(m, 8, 2))
    budget = (top + low) // 2
    p = memory_driven(m, 10 ** 9, budget)
    assert p.trace and all(t["phase"] == "activation" for t in p.trace)
    assert memory.peak_ram_bytes(m, p) <= budget
    # the policy converts (the add's inputs have equal bits) and deploys within the budget
    assert _deployed(m, p, x)[1] <= budget
    assert p == memory_driven(m, 10 ** 9, budget)  # deterministic
    # narrower weights shrink tn_m7_sub's window units: the smallest arena of the uniform
    # policies is below every-activation-at-2-bits-weights-at-8, and the search reaches it
    floor = min(memory.peak_ram_bytes(m, Policy.uniform(m, w, a))
                for w in (8, 4, 2) for a in (8, 4, 2))
    assert floor < low
    with pytest.raises(BudgetError) as err:
        memory_driven(m, 10 ** 9, floor - 1)
    assert err.value.min_ram == floor
    assert f"{floor:,} B" in str(err.value)
    for b in (floor, (floor + low) // 2):  # reachable, through a weight cut for RAM
        p = memory_driven(m, 10 ** 9, b)
        assert memory.peak_ram_bytes(m, p) <= b and _deployed(m, p, x)[1] <= b
        assert any(t["phase"] == "weight (RAM)" for t in p.trace)


def test_accounting_names():
    m = models.seed_cnn()
    p = Policy.uniform(m, 8, 8)
    with pytest.raises(ValueError, match="accounting must be one of"):
        memory.peak_ram_bytes(m, p, accounting="tflm")
    nodes = memory.nodes(m)
    # a list of Node has only the paper's accounting (nothing to plan)
    assert memory.peak_ram_bytes(nodes, p) == memory.peak_ram_bytes(m, p, accounting="paper")
    with pytest.raises(ValueError, match="accounting='device' needs the Keras model"):
        memory.peak_ram_bytes(nodes, p, accounting="device")


def test_the_paper_accounting_keeps_the_mobilenet_figures():
    """The paper accounting by name on a Keras MobileNetV1 gives what the architecture's nodes
    give (the MobileNetV1 oracle and the twelve pinned policies, tests/test_policy.py, run on
    nodes, whose default is the paper accounting): the same memory-driven policy, peak RAM and
    per-node bytes (pw1 of 0.25 at 128 x 128: 64 x 64 x 8 in + 64 x 64 x 16 out at 8 bits)."""
    nodes = memory.mobilenet_v1_nodes(0.25, 128, 10, 3)
    m = models.mobilenet_v1(0.25, 128, 10, 3)
    p8 = Policy.uniform([n.name for n in nodes], 8, 8)
    assert memory.peak_ram_bytes(nodes, p8) == memory.peak_ram_bytes(m, p8, accounting="paper") \
        == 64 * 64 * 8 + 64 * 64 * 16
    p = memory_driven(nodes, 120_000, 90_000, "PL")
    q = memory_driven(m, 120_000, 90_000, "PL", accounting="paper")
    assert p.trace and (q.weight_bits, q.act_bits) == (p.weight_bits, p.act_bits)
    assert memory.peak_ram_bytes(m, q, accounting="paper") == memory.peak_ram_bytes(nodes, p) \
        <= 90_000
    # the device's arena of the same network (fused, sliding writes) is smaller
    assert memory.peak_ram_bytes(m, p8) < memory.peak_ram_bytes(m, p8, accounting="paper")


# ------------------------------------------------------------------------------ larger models

def _mlperf(name):
    from tinyopt.studies.any_graph import load_keras, mlperf_inputs
    try:
        zoo.mlperf_tiny_path(name, "keras")
    except zoo.ModelNotFound as exc:
        pytest.skip(str(exc))
    # 8 calibration images: what is compared (the plan's arena, the graph's structure) is not
    # calibrated (the skeleton has no data), and PTQ's passes cost ~1 s per policy on VWW at 32
    return load_keras(name), mlperf_inputs(name, 8)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ic_resnet8", "kws_dscnn", "vww_mobilenet", "ad_fcae"])
def test_the_mlperf_tiny_models(name):
    m, x = _mlperf(name)
    _check(m, {"w8a8": Policy.uniform(m, 8, 8), "mixed": _mixed(m)}, x)


@pytest.mark.slow
def test_mlperf_resnet8_memory_driven_deploys_within_the_budget():
    m, x = _mlperf("ic_resnet8")
    top = memory.peak_ram_bytes(m, Policy.uniform(m, 8, 8))
    low = memory.peak_ram_bytes(m, Policy.uniform(m, 8, 2))
    budget = (top + low) // 2
    p = memory_driven(m, 10 ** 9, budget)
    assert _deployed(m, p, x)[1] == memory.peak_ram_bytes(m, p) <= budget


@pytest.mark.slow
def test_a_mobilenet_v2():
    m = keras.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None,
                                       classes=10)
    x = np.random.default_rng(4).uniform(0, 1, (8, 32, 32, 3)).astype(np.float32)  # as _mlperf
    _check(m, {"w8a8": Policy.uniform(m, 8, 8), "mixed": _mixed(m)}, x)


def _activations() -> keras.Model:
    """Registry activations as their own element-wise steps: a LeakyReLU and MobileNetV3's
    hard-swish (tests/test_subbyte_activations.py takes them through PTQ, the simulator and C)."""
    inp = keras.Input((8, 8, 2), name="img")
    x = L.Conv2D(8, 3, padding="same", name="c0")(inp)
    x = L.LeakyReLU(0.1, name="leaky")(x)
    x = L.Conv2D(8, 3, name="c1")(x)
    x = L.Multiply(name="hswish")([x, L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)])
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(3, name="fc")(x), name="activations")


def test_registry_activations_are_element_wise_steps():
    m = _activations()
    x = np.random.default_rng(5).uniform(0, 1, (32, 8, 8, 2)).astype(np.float32)
    # hard-swish at 8 bits (TFLite's int8 kernel); the LeakyReLU also at 4 bits (its kernel
    # reads packed codes). A sub-byte hard-swish is a lookup table, which tn_hard_swish.c
    # cannot run yet (the planner refuses it).
    _check(m, {"w8a8": Policy.uniform(m, 8, 8),
               "mixed": Policy(["c0", "c1", "fc"], [4, 8, 8], [4, 8, 8])}, x)


# ------------------------------------------------------------------------------ the planner's speed

def test_placed_members_in_the_way_are_the_literal_rule():
    """memplan._Placed answers from its step index exactly what the literal rule gives (every
    placed member live at a common step: f <= pl and pf <= la), the same intervals as often,
    lives without a step (first > last) included."""
    from tinyopt.integer import memplan
    rng = np.random.default_rng(0)

    def members(n):
        out = []
        for k in range(n):
            first = int(rng.integers(0, 12))
            last = first + int(rng.integers(-2, 6))  # some first > last
            out.append(memplan.Member(f"t{k}", [], int(rng.integers(0, 9)),
                                      int(rng.integers(1, 40)), first, last))
        return out

    placed = []
    for k in range(30):
        b = memplan.Buffer(f"b{k}", members(int(rng.integers(1, 4))))
        b.offset = int(rng.integers(0, 200))
        placed.append(b)
    index = memplan._Placed(placed)
    flat = [(m.first, m.last, b.offset + m.rel, b.offset + m.rel + m.bytes)
            for b in placed for m in b.members]
    for k in range(200):
        b = memplan.Buffer("q", members(int(rng.integers(1, 4))))
        want = [(lo - m.rel - m.bytes + 1, hi - m.rel) for m in b.members
                for pf, pl, lo, hi in flat if m.first <= pl and pf <= m.last]
        assert sorted(index.forbidden(b)) == sorted(want), k


def test_plan_memory_cache_gives_fresh_equal_plans():
    """plan_memory's cache: the same arguments give an equal plan that is a new object (a
    caller's change to one plan never reaches the next), other arguments another plan."""
    from tests.conftest import synthetic_graph
    from tinyopt.integer import memplan
    memplan._PLAN_CACHE.clear()
    g = synthetic_graph()
    _, first = steps.memory_plan(g)
    offsets = {b.name: b.offset for b in first.buffers}
    arena = first.arena_bytes
    planned = len(memplan._PLAN_CACHE)  # (the lean plan and the roomy kernels' trials)
    assert planned >= 1
    for b in first.buffers:  # a caller changes its plan
        b.offset += 7
    first.arena_bytes = -1
    _, again = steps.memory_plan(g)
    assert len(memplan._PLAN_CACHE) == planned  # answered from the cache
    assert again is not first and again.arena_bytes == arena
    assert {b.name: b.offset for b in again.buffers} == offsets
    again.check()
    # other sizes: planned anew, not the cached answer
    ios = [memplan.StepIO(("x",), "a"), memplan.StepIO(("a",), "b")]
    small = memplan.plan_memory(ios, {"x": 4, "a": 4, "b": 4}, "x", ["b"])
    large = memplan.plan_memory(ios, {"x": 4, "a": 40, "b": 4}, "x", ["b"])
    assert (small.arena_bytes, large.arena_bytes) == (8, 44)


def test_flash_bytes_plans_no_arena(monkeypatch):
    """flash_bytes is the sum of report's flash column (the same under either accounting) and
    computes no device plan: the policy searches and studies ask it often."""
    m = _residual()
    p = Policy(["c0", "c1", "c2", "fc"], [4, 8, 2, 8], [4, 8, 4, 8], "PC")
    want = int(memory.report(m, p)["flash_bytes"].sum())  # the device accounting's rows

    def no_plan(*args, **kwargs):
        raise AssertionError("flash_bytes planned the arena")
    monkeypatch.setattr(memory, "device_plan", no_plan)
    assert memory.flash_bytes(m, p) == want > 0


def test_plan_check_sees_a_buffer_to_its_last_byte():
    """MemoryPlan.check (run on every heuristic's plan) by the buffers' whole extent: one byte
    past the arena, or one byte shared by two tensors live at a common step, is refused."""
    from tinyopt.integer import memplan
    ios = [memplan.StepIO(("x",), "a"), memplan.StepIO(("a",), "b")]
    plan = memplan.plan_memory(ios, {"x": 4, "a": 4, "b": 4}, "x", ["b"])
    plan.check()
    x, a = (next(b for b in plan.buffers if b.name == n) for n in ("x", "a"))
    plan.arena_bytes -= 1
    with pytest.raises(ValueError, match="outside the arena"):
        plan.check()
    plan.arena_bytes += 1
    x.offset, a.offset = 0, 3  # x's last byte is a's first; both live at step 0
    with pytest.raises(ValueError, match="live at the same step and overlap"):
        plan.check()

"""The memory model on chains with pads and pools (issue 25, item 4) and the early refusal of what
icn.convert refuses (item 5).

Item 4: a pad or pool step between two policy layers holds its input and its output at once; the
paper's per-node rule (input + output of a policy layer) does not see it, so ``peak_ram_bytes``
and ``memory_driven`` said "fits" for a chain whose deployed arena did not fit. Each chain here
goes the whole way (PTQ -> icn.convert -> the C export's memory plan with ``overlap=False,
fuse_add=False``) and the memory model's paper accounting (``accounting="paper"``; the default,
the device's plan, is tests/test_memory_device.py) is compared with the plan's arena:

- ``peak_ram_bytes(..., fuse_pool=False)`` equals the arena of ``fuse_pool=False`` on every chain;
- the default (``fuse_pool=True``, as the export) equals the arena of ``fuse_pool=True`` where no
  compute layer is fused with a max pool, and is above it where one is (the per-node rule counts
  the un-pooled output the fused step never stores);
- ``memory_driven``'s policy at a budget between the per-node peak and the pad / pool step's
  bytes fits by the memory model and by the deployed arena.

Item 5: what a later stage cannot deploy (a dilation rate above 255, which the C descriptor cannot
hold; an add that broadcasts) is refused by every entry point, before any calibration or
training, naming the layer. (Dilation itself is supported since issue 28:
tests/test_handlers_dilation.py.)
"""
import numpy as np
import pytest

import tinyopt  # noqa: F401
import tf_keras as keras
from tf_keras import layers as L

import tinyopt.icn
import tinyopt.qat
from tinyopt.deploy import codegen
from tinyopt.mixed import build, dag, lower, memory, ptq
from tinyopt.mixed.search import memory_driven
from tinyopt.policy import Policy

BIG = 10 ** 9  # a flash budget that cuts no weight


# ------------------------------------------------------------------------------ chains

def pad_chain() -> keras.Model:
    """Conv(s2) -> Conv -> ZeroPadding2D -> Conv(s2) -> Dense (the issue's chain): the pad's
    step (its input 8x8x16 and output 12x12x16) needs more than any policy layer."""
    inp = keras.Input((16, 16, 3), name="img")
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="c0")(inp)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="c1")(x)
    x = L.ZeroPadding2D(2, name="pad")(x)
    x = L.Conv2D(16, 3, strides=2, activation="relu", name="c2")(x)
    x = L.Flatten(name="flat")(x)
    return keras.Model(inp, L.Dense(10, name="fc")(x), name="pad_chain")


def pool_chain(pool) -> keras.Model:
    """Conv -> pool 2x2 -> Conv -> Dense: the pool's step (16x16x16 in, 8x8x16 out) is the peak."""
    inp = keras.Input((16, 16, 3), name="img")
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="c0")(inp)
    x = pool(2, name="pool")(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="c1")(x)
    x = L.Flatten(name="flat")(x)
    return keras.Model(inp, L.Dense(10, name="fc")(x), name=f"{pool.__name__.lower()}_chain")


def pad_pool_chain() -> keras.Model:
    """Conv -> ZeroPadding2D -> MaxPooling2D (not fused: it reads the pad) -> Conv ->
    AveragePooling2D -> Dense with a softmax head: pads and both pools as steps of their own."""
    inp = keras.Input((12, 12, 2), name="img")
    x = L.Conv2D(12, 3, padding="same", activation="relu", name="c0")(inp)
    x = L.ZeroPadding2D(1, name="pad")(x)
    x = L.MaxPooling2D(2, name="max")(x)
    x = L.Conv2D(16, 3, padding="same", activation="relu", name="c1")(x)
    x = L.AveragePooling2D(3, strides=2, name="avg")(x)
    x = L.Flatten(name="flat")(x)
    return keras.Model(inp, L.Dense(6, activation="softmax", name="fc")(x), name="pad_pool")


CHAINS = {"pad": pad_chain, "avgpool": lambda: pool_chain(L.AveragePooling2D),
          "maxpool": lambda: pool_chain(L.MaxPooling2D), "pad_pool": pad_pool_chain}
# compute layer -> max pool pairs the export fuses by default (fuse_pool=True)
FUSED = {"maxpool"}


def _graph(model, policy):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).uniform(0, 1, (48,) + model.input_shape[1:]).astype(np.float32)
    return lower.convert(ptq.quantize_mixed(model, policy, x))


def _arena(graph, out_dir, fuse_pool: bool) -> int:
    """The arena of the plan the paper accounting describes (every tensor whole for its life,
    no kernel scratch: the portable kernels need none, and the paper counts none)."""
    e = codegen.export_c(graph, out_dir, fuse_pool=fuse_pool, fuse_add=False, overlap=False,
                         kernels="portable")
    return e.arena_bytes


def test_the_pad_step_is_counted_by_hand():
    m = pad_chain()
    p8 = Policy.uniform(m, 8, 8)
    steps = memory.live_steps(m, p8, accounting="paper").set_index("step")["live_bytes"]
    # c1 writes 8x8x16 (1,024 B), the pad 12x12x16 (2,304 B): both alive at the pad's step;
    # the largest policy layer, c2, holds 2,304 + 5x5x16 = 2,704 B
    assert steps["pad"] == 1024 + 2304
    assert memory.report(m, p8, accounting="paper")["ram_bytes"].max() == 2304 + 400
    assert memory.peak_ram_bytes(m, p8, accounting="paper") == 1024 + 2304
    assert memory.report(m, p8, accounting="paper").attrs["peak_step"] == "pad"
    p4 = Policy(["c0", "c1", "c2", "fc"], [8] * 4, [8, 4, 8, 8])
    # c1 at 4 bits: the pad step 512 + 1,152 B is still above c2's 1,152 + 400 B
    assert memory.peak_ram_bytes(m, p4, accounting="paper") == 512 + 1152


@pytest.mark.slow  # (a few seconds: make test runs it, test-fast does not)
@pytest.mark.parametrize("name", sorted(CHAINS))
def test_peak_is_never_below_the_deployed_arena(name, tmp_path):
    m = CHAINS[name]()
    names = dag.policy_layers(m)
    p8 = Policy.uniform(m, 8, 8)
    # tight: some activations must drop
    budget = memory.peak_ram_bytes(m, p8, accounting="paper") * 2 // 3
    policies = {"w8a8": p8, "w4a4": Policy.uniform(m, 4, 4),
                "mixed": Policy(names, [8, 4, 2, 8][:len(names)], [2, 8, 4, 8][:len(names)]),
                "memory_driven": memory_driven(m, BIG, budget, accounting="paper")}
    for label, p in policies.items():
        g = _graph(m, p)
        plain = _arena(g, tmp_path / label / "plain", fuse_pool=False)
        fused = _arena(g, tmp_path / label / "fused", fuse_pool=True)
        # the fuse_pool=False plan: equal on every chain
        assert memory.peak_ram_bytes(m, p, fuse_pool=False, accounting="paper") == plain, \
            (name, label)
        # the default (fuse_pool=True, as the export): never below its arena; equal unless a
        # compute layer's output is pooled by a fused max pool
        peak = memory.peak_ram_bytes(m, p, accounting="paper")
        assert peak >= fused, (name, label)
        if name in FUSED:
            assert fused < plain
        else:
            assert peak == fused == plain, (name, label)
            assert memory.live_steps(m, p, accounting="paper")["live_bytes"].max() == peak


@pytest.mark.parametrize("name, budget, cuts", [
    # the per-node rule alone leaves everything at 8 bits (largest layer c2: 2,704 B), but the
    # pad step needs 1,024 + 2,304 B: c1's output must drop
    ("pad", 3000, {True: ["pad"], False: ["pad"]}),
    # the pool step (4,096 + 1,024 B) is above every layer (c0: 768 + 4,096 B)
    ("avgpool", 5000, {True: ["pool"], False: ["pool"]}),
    # fused (the default) the pool step is c0's, within the per-node rule; not fused it is not
    ("maxpool", 5000, {True: [], False: ["pool"]}),
    # the per-node rule cuts c0 (288 + 1,728 B), the pad step (864 + 1,176 B) needs another cut
    ("pad_pool", 2000, {True: ["c0", "pad"], False: ["c0", "pad"]}),
])
def test_memory_driven_fits_by_the_model_and_the_deployed_arena(name, budget, cuts, tmp_path):
    m = CHAINS[name]()
    flash = memory.flash_bytes(m, Policy.uniform(m, 8, 8)) * 3 // 4  # some weights cut too
    for fuse_pool in (True, False):
        p = memory_driven(m, flash, budget, fuse_pool=fuse_pool, accounting="paper")
        assert memory.flash_bytes(m, p) <= flash
        assert memory.peak_ram_bytes(m, p, fuse_pool=fuse_pool, accounting="paper") <= budget
        assert _arena(_graph(m, p), tmp_path / str(fuse_pool), fuse_pool) <= budget
        # the cuts, where they were needed (a pad / pool step the per-node rule does not see)
        assert [t["node"] for t in p.trace if t["phase"] == "activation"] == cuts[fuse_pool]


def test_the_smallest_reachable_ram_counts_the_pad_step():
    from tinyopt.mixed.search import BudgetError
    m = pad_pool_chain()
    with pytest.raises(BudgetError) as err:
        memory_driven(m, BIG, 1000, accounting="paper")
    lowest = Policy.uniform(m, 2, 2)
    # at 2 bits the pad step (1,728 + 2,352 elements: 1,020 B) is above every layer (c0:
    # 288-B image + 432 B)
    assert err.value.min_ram == memory.peak_ram_bytes(m, lowest, accounting="paper") == 1020
    assert memory.report(m, lowest, accounting="paper")["ram_bytes"].max() < 1020
    assert err.value.min_ram_layer == "pad"


# ------------------------------------------------------------------------------ item 5

def _dilated(op: str = "conv2d") -> keras.Model:
    """A convolution dilated beyond what the C descriptor holds (one byte per rate)."""
    inp = keras.Input((12, 12, 3), name="img")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c0")(inp)
    if op == "conv2d":
        x = L.Conv2D(8, 3, dilation_rate=256, padding="same", activation="relu",
                     name="atrous")(x)
    elif op == "depthwise":
        x = L.DepthwiseConv2D(3, dilation_rate=(1, 300), padding="same", activation="relu",
                              name="atrous")(x)
    x = L.Flatten(name="flat")(x)
    return keras.Model(inp, L.Dense(4, name="fc")(x), name="dilated")


def _refuses(call, layer="atrous"):
    with pytest.raises(ValueError, match=rf"layer '{layer}' \((Conv2D|DepthwiseConv2D|Conv1D|"
                                         rf"QuantCompute)\): dilation_rate=.*at most 255"):
        call()


@pytest.fixture
def no_training(monkeypatch):
    """Any training (float or QAT: both go through tinyopt.front.train.fit) fails the test."""
    from tinyopt.front import train

    def fit(*args, **kwargs):
        raise AssertionError("training ran before the refusal")
    monkeypatch.setattr(train, "fit", fit)
    monkeypatch.setattr(keras.Model, "fit", fit)


@pytest.mark.parametrize("op", ["conv2d", "depthwise"])
def test_a_dilation_above_255_is_refused_by_every_entry_point_before_training(op, no_training):
    from tinyopt.pipeline import subbyte
    m = _dilated(op)
    p = Policy.uniform(["c0", "atrous", "fc"], 4, 4)
    x = np.random.default_rng(0).uniform(0, 1, (16, 12, 12, 3)).astype(np.float32)
    _refuses(lambda: dag.check_supported(m))
    _refuses(lambda: dag.policy_layers(m))
    _refuses(lambda: memory.peak_ram_bytes(m, p))
    _refuses(lambda: memory.report(m, p))
    _refuses(lambda: memory.flash_bytes(m, p))
    _refuses(lambda: memory.live_steps(m, p))
    _refuses(lambda: memory_driven(m, BIG, BIG))
    _refuses(lambda: ptq.quantize_mixed(m, p, x))
    _refuses(lambda: build.quantize_mixed(m, p))
    _refuses(lambda: tinyopt.qat.quantize_mixed(m, p))
    # the whole sub-byte chain (PTQ -> QAT -> integer graph): refused before QAT trains
    _refuses(lambda: subbyte.quantize_chain(m, p, x, (x, np.zeros(16, int)),
                                            qat_data=(x, np.zeros(16, int))))
    # a sequence that prunes (trains) first is refused by its validation, before pruning
    from tinyopt.pipeline import grammar, sequence
    _refuses(lambda: grammar.validate("prune>w4a4>qat>int", m))
    data = (x, np.zeros(16, int), x, np.zeros(16, int))
    _refuses(lambda: sequence.run("prune>w4a4>qat>int", m, data))


def test_conv1d_dilations_above_255_and_several_layers_are_named_at_once():
    inp = keras.Input((32, 4))
    x = L.Conv1D(8, 3, dilation_rate=300, padding="causal", activation="relu", name="k1")(inp)
    x = L.Conv1D(8, 3, dilation_rate=256, padding="causal", activation="relu", name="k2")(x)
    x = L.Conv1D(8, 3, dilation_rate=255, padding="causal", activation="relu", name="k3")(x)
    m = keras.Model(inp, L.Dense(2, name="fc")(L.Flatten()(x)))
    with pytest.raises(ValueError, match=r"2 layers.*'k1' \(Conv1D\): dilation_rate=\(300,\).*"
                                         r"'k2' \(Conv1D\): dilation_rate=\(256,\)"):
        memory.peak_ram_bytes(m, Policy.uniform(["k1", "k2", "fc"], 8, 8))


def test_icn_convert_refuses_an_edited_dilation_above_255_naming_the_layer():
    """A fake-quant model that holds a dilation the C cannot (e.g. an edited config) is refused
    by icn.convert up front, with the same message."""
    m = _dilated("none")
    q = build.quantize_mixed(m, Policy.uniform(m, 4, 4))
    lower.convert(q)  # undilated: converts
    q.get_layer("c0").op_config["dilation_rate"] = [2, 2]
    lower.convert(q)  # dilated (SAME, same output shape): converts
    q.get_layer("c0").op_config["dilation_rate"] = [256, 256]
    _refuses(lambda: tinyopt.icn.convert(q), layer="c0")


def test_an_add_that_broadcasts_is_refused_early():
    inp = keras.Input((8, 8, 3))
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="c0")(inp)
    b = L.Reshape((1, 1, 4), name="r")(L.GlobalAveragePooling2D(name="gap")(a))
    x = L.Flatten()(a + b)
    m = keras.Model(inp, L.Dense(2, name="fc")(x))
    with pytest.raises(ValueError, match=r"\(TF op __operators__.add\): an add of tensors of "
                                         r"shapes \[\(8, 8, 4\), \(1, 1, 4\)\].*same shape"):
        memory.peak_ram_bytes(m, Policy.uniform(["c0", "fc"], 8, 8))

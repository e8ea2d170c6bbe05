"""The ``upsample`` block kind (tinyopt/mixed/handlers/upsample.py, issue 28): Keras
UpSampling2D(interpolation="nearest") through the sub-byte path: read as a block, copied into the
fake-quant model on its input's grid, lowered to a ``resize_nearest`` node (the table of the
integer factors), planned the same from bits alone, in the memory model as a step writing a new
tensor; bilinear refused by name."""
import numpy as np
import pytest

import tinyopt  # noqa: F401
import tf_keras as keras
from tf_keras import layers as L

from tinyopt.integer import sim, steps
from tinyopt.integer.ops import resize_nearest as rn
from tinyopt.mixed import dag, handlers, lower, memory, ptq, verify
from tinyopt.mixed.lifetimes import mem_graph
from tinyopt.mixed.policy import Policy
from tinyopt.mixed.skeleton import skeleton

from tests.test_memory_device import _same_structure


def _model(size=(2, 3), interpolation="nearest") -> keras.Model:
    """conv -> pool -> conv -> up-sample (-> concat with the first conv at factor 2) -> 1 x 1
    conv -> dense."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 6, 2), name="img")
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="c0")(inp)
    b = L.MaxPooling2D(2, name="mp")(a)
    b = L.Conv2D(6, 3, padding="same", activation="relu", name="c1")(b)
    u = L.UpSampling2D(size, interpolation=interpolation, name="up")(b)
    if tuple(size) == (2, 2):
        u = L.Concatenate(name="cat")([u, a])
    u = L.Conv2D(4, 1, activation="relu", name="c2")(u)
    return keras.Model(inp, L.Dense(3, name="fc")(L.Flatten(name="flat")(u)), name="ups")


def _x(n=48, shape=(8, 6, 2)):
    return np.random.default_rng(1).uniform(0, 1, (n, *shape)).astype(np.float32)


def test_read_as_an_upsample_block():
    m = _model()
    blocks = dag.blocks(m)
    up = next(b for b in blocks if b.name == "up")
    assert up.op == "upsample" and up.config == {"size": [2, 3]} and up.inputs == ["c1"]
    assert up.out_shape == (8, 9, 6)
    assert not up.is_policy_layer and "up" not in dag.policy_layers(m)
    assert handlers.get("upsample").name == "upsample"
    assert "UpSampling2D (interpolation 'nearest')" in dag.SUPPORTED


def test_bilinear_is_refused_by_name():
    with pytest.raises(ValueError, match=r"layer 'up' \(UpSampling2D\).*interpolation="
                                         r"'bilinear': only 'nearest'"):
        dag.blocks(_model(interpolation="bilinear"))
    # the memory model and the policy refuse it too (they read the same blocks)
    with pytest.raises(ValueError, match="interpolation='bilinear'"):
        memory.flash_bytes(_model(interpolation="bilinear"),
                           Policy(["c0", "c1", "c2", "fc"], [8] * 4, [8] * 4))


def test_the_memory_model_counts_its_input_and_output():
    m = _model()
    g = mem_graph(m)
    step = next(s for s in g.steps if s[0] == "up")
    assert step[1] == ("c1",) and g.kinds["up"] == "upsample"
    t = g.tensors["up"]
    assert t.kind == "derived" and t.sources == ("c1",) and t.elements == 8 * 9 * 6
    p = Policy.uniform(m, 8, 4)
    bits = g.bits(dict(zip(p.layers, p.act_bits)))
    assert bits["up"] == bits["c1"] == 4
    # the step holds c1 (4-bit, 4 x 3 x 6) and its up-sampled copy at once
    live = g.live_bytes(dict(zip(p.layers, p.act_bits)))
    assert live[[s[0] for s in g.steps].index("up")] == (4 * 3 * 6 + 8 * 9 * 6) // 2


@pytest.mark.parametrize("policy", ["w8a8", "w4a2_pc"])
def test_lowered_to_resize_nearest_exactly(policy):
    """PTQ -> convert: the node is resize_nearest on its input's grid with the factors' table;
    the simulator equals the fake-quant model at the up-sampling (0 LSB: a copy of codes) and
    the skeleton plans the same nodes; the memory model's RAM is the deployed arena."""
    m = _model()
    layers = dag.policy_layers(m)
    p = Policy.uniform(m, 8, 8) if policy == "w8a8" else \
        Policy(layers, [4, 2, 4, 8], [2, 2, 4, 8], "PC", ["ICN", "ICN", "ICN", "FB"])
    x = _x()
    q = ptq.quantize_mixed(m, p, x)
    assert type(q.get_layer("up")).__name__ == "UpSampling2D"  # no quantizer of its own
    g = lower.convert(q)
    node = next(lay for lay in g.layers if lay.name == "up")
    assert node.kind == "resize_nearest" and node.in_shape == (4, 3, 6) \
        and node.out_shape == (8, 9, 6)
    rows, cols = rn.indices(node)
    np.testing.assert_array_equal(rows, np.repeat(np.arange(4), 2))
    np.testing.assert_array_equal(cols, np.repeat(np.arange(3), 3))
    src = next(lay for lay in g.layers if lay.name == "c1")
    assert (node.in_bits, node.in_zero_point, node.in_scale) == \
        (src.out_bits, src.out_zero_point, src.out_scale)
    assert (node.out_bits, node.out_zero_point, node.out_scale) == \
        (src.out_bits, src.out_zero_point, src.out_scale)
    t = sim.run(g, g.quantize_input(x), trace=True, engine="reference")
    np.testing.assert_array_equal(t["up"], np.repeat(np.repeat(t["c1"], 2, 1), 3, 2))
    rows = verify.compare(q, g, x)["layers"].set_index("layer")
    assert rows.loc["up", "isolated_max_lsb"] == 0
    assert rows.loc["up", "chained_max_lsb"] == rows.loc["c1", "chained_max_lsb"]
    _same_structure(skeleton(m, p), g)
    assert memory.peak_ram_bytes(m, p) == steps.plan(g)[1]


@pytest.mark.slow  # builds the C on the host (~10 s)
def test_the_c_on_the_host_is_the_simulator(tmp_path):
    from tinyopt.deploy import mcu
    m = _model((2, 2))
    layers = dag.policy_layers(m)
    p = Policy(layers, [4] * len(layers), [4] * (len(layers) - 1) + [8], "PL")
    x = _x()
    g = lower.convert(ptq.quantize_mixed(m, p, x))
    assert [lay.kind for lay in g.layers].count("resize_nearest") == 1
    d = mcu.deploy(g, g.quantize_input(x[:16]), tmp_path, run_mcu=False)
    s = d["summary"]
    assert s["host_images_exact"] == 16 and s["distinct_outputs"] > 1
    assert s["predicted_ram"] == s["arena_bytes"] == memory.peak_ram_bytes(m, p)

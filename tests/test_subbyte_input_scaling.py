"""Input scaling in the sub-byte Keras path (issue 28): a ``Rescaling`` / ``Normalization`` that
is the first layer of a model is folded into the 8-bit input quantizer (the codes quantize the
raw input; the network reads them on the scaled grid), so it costs nothing at run time, and
the lowered graph still agrees with the fake-quant model and the memory model with the arena.

What we see: Rescaling(1/127.5, offset=-1) on [0, 255] pixels gives the raw step 127.5/127 and
the network grid [-1, 128/127] of step 1/127 (zero point 127); the graph's input layer agrees
with the fake-quant model exactly (0 LSB) and every later layer within 1 LSB.
"""
import numpy as np
import pytest

import tinyopt  # noqa: F401
import tf_keras as keras
from tf_keras import layers as L

from tinyopt.integer import steps
from tinyopt.mixed import dag, lower, memory, ptq, quantizers, verify
from tinyopt.mixed.policy import Policy

# converts Keras models and builds C: make test runs it, the edit-test loop (test-fast) not
pytestmark = pytest.mark.slow


def net(scaling: str) -> keras.Model:
    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 2), name="img")
    if scaling == "rescaling":
        x = L.Rescaling(1 / 127.5, offset=-1.0, name="scale")(inp)
    elif scaling == "normalization":
        x = L.Normalization(mean=0.5, variance=0.0625, name="norm")(inp)
    else:  # EfficientNetB0's pair: Rescaling(1/255) then an (un-adapted) Normalization
        x = L.Rescaling(1 / 255.0, name="scale")(inp)
        x = L.Normalization(axis=-1, mean=[0.25, 0.25], variance=[0.25, 0.25], name="norm")(x)
    x = L.Conv2D(8, 3, padding="same", name="c0")(x)
    x = L.BatchNormalization(name="bn0")(x)
    x = L.ReLU(name="r0")(x)
    x = L.DepthwiseConv2D(3, padding="same", activation="relu", name="dw1")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(4, name="fc")(x), name=f"{scaling}_net")


def images(scaling: str, n=32, seed=0):
    rng = np.random.default_rng(seed)
    if scaling == "normalization":
        return rng.uniform(0, 1, (n, 12, 12, 2)).astype(np.float32)
    if scaling == "rescaling":  # (check_images takes integer pixels only before Rescaling(1/255))
        return rng.uniform(0, 255, (n, 12, 12, 2)).astype(np.float32)
    return rng.integers(0, 256, (n, 12, 12, 2)).astype(np.float32)  # pixels


SCALINGS = ["rescaling", "normalization", "both"]


@pytest.mark.parametrize("scaling", SCALINGS)
def test_the_scaling_is_folded_not_a_block(scaling):
    m = net(scaling)
    s = dag.input_scaling(m)
    want = {"rescaling": (1 / 127.5, -1.0), "normalization": (4.0, -2.0),
            "both": (2 / 255.0, -0.5)}[scaling]
    assert (s["scale"], s["offset"]) == pytest.approx(want)
    blocks = dag.blocks(m)
    assert blocks[0].name == "c0" and blocks[0].inputs == [dag.INPUT]
    assert not {"scale", "norm"} & {n for b in blocks for n in b.members}


def test_the_grids_of_rescaling_to_minus_one_one():
    p = quantizers.scaled_input_params(0.0, 255.0, 1 / 127.5, -1.0)
    assert p["raw_zero_point"] == 0 and p["zero_point"] == 127
    assert p["raw_scale"] == pytest.approx(127.5 / 127) and p["scale"] == pytest.approx(1 / 127)
    # no offset: the raw grid is input_params' own
    p = quantizers.scaled_input_params(0.0, 255.0, 1 / 255.0, 0.0)
    assert (p["raw_scale"], p["raw_zero_point"], p["zero_point"]) == (1.0, 0, 0)
    # the network's 0 outside the codes: refused, naming the map and the fix
    with pytest.raises(ValueError, match="does not contain 0"):
        quantizers.scaled_input_params(0.0, 1.0, 1.0, 0.5)
    with pytest.raises(ValueError, match="scale must be a finite number > 0"):
        quantizers.scaled_input_params(0.0, 1.0, -1.0, 0.0)


@pytest.mark.parametrize("scaling", SCALINGS)
@pytest.mark.parametrize("label", ["w8a8", "mixed"])
def test_ptq_lower_verify_and_memory(scaling, label):
    m = net(scaling)
    x = images(scaling)
    p = Policy.uniform(m, 8, 8) if label == "w8a8" else \
        Policy(["c0", "dw1", "fc"], [4, 2, 8], [4, 4, 8])
    q = ptq.quantize_mixed(m, p, x)
    g = lower.convert(q)
    assert g.meta["input_scaling"]["scale"] == pytest.approx(dag.input_scaling(m)["scale"])
    # the graph quantizes raw inputs; the network reads the codes on the scaled grid
    net_grid = g.tensor(g.input_name)
    codes = g.quantize_input(x)
    fake_in = keras.Model(q.inputs, q.get_layer("input_quant").output)(x).numpy()
    assert np.array_equal(net_grid.scale * (codes - net_grid.zero_point), fake_in) or \
        np.max(np.abs(net_grid.scale * (codes - net_grid.zero_point) - fake_in)) < 1e-6
    # ... which is the float scaling of the raw input within half a raw step
    s = dag.input_scaling(m)
    err = np.abs(fake_in - (x * s["scale"] + s["offset"]))
    assert err.max() <= 0.5 * g.input_scale * s["scale"] * (1 + 1e-4)
    r = verify.compare(q, g, x)
    table = r["layers"].set_index("layer")
    assert table["isolated_max_lsb"].max() <= 1, table
    assert table.loc["c0", "chained_max_lsb"] <= 1, table
    assert memory.peak_ram_bytes(m, p) == steps.plan(g)[1]


def test_the_input_codes_are_the_pixels_when_the_map_has_no_offset():
    m = net("both")  # Rescaling(1/255) then Normalization: offset -0.5, scale 2/255
    x = images("both")
    g = lower.convert(ptq.quantize_mixed(m, Policy.uniform(m, 8, 8), x))
    # x0 = 63.75 is not on the unit grid: step 63.75 / 63, so not the pixels; a pure Rescaling is
    m2 = keras.Sequential([keras.Input((12, 12, 2)), L.Rescaling(1 / 255.0, name="s"),
                           L.Conv2D(4, 3, name="c"), L.Flatten(), L.Dense(3, name="fc")])
    g2 = lower.convert(ptq.quantize_mixed(m2, Policy.uniform(m2, 8, 8), x))
    assert np.array_equal(g2.quantize_input(x), x.astype(np.int32))
    assert g2.tensor(g2.input_name).scale == pytest.approx(1 / 255.0)
    assert g.input_scale == pytest.approx(63.75 / 63)


def test_a_scaling_after_the_first_layer_is_refused_with_its_name():
    inp = keras.Input((6, 6, 1))
    x = L.Conv2D(2, 3, name="c")(inp)
    x = L.Rescaling(0.5, name="late_scale")(x)
    m = keras.Model(inp, L.Dense(3, name="fc")(L.Flatten()(x)))
    with pytest.raises(ValueError, match=r"'late_scale'.*first layers of the model"):
        dag.blocks(m)


def test_a_per_channel_normalization_is_refused_with_the_fix():
    inp = keras.Input((6, 6, 2))
    x = L.Normalization(mean=[0.1, 0.2], variance=[1.0, 1.0], name="norm")(inp)
    m = keras.Model(inp, L.Dense(3, name="fc")(L.Flatten()(L.Conv2D(2, 3, name="c")(x))))
    with pytest.raises(ValueError, match=r"'norm'.*per-channel.*scale the data before"):
        dag.blocks(m)

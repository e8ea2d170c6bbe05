"""Dilated and causal convolutions, and a Dense on (T, C) / (H, W, C), in the sub-byte Keras path
(issue 28): the compute handler reads ``dilation_rate`` (Conv1D, Conv2D, DepthwiseConv2D) and
Conv1D's ``padding="causal"``, the fake-quant layer computes them as Keras does, and the integer
node carries the dilation and the padding (causal: (k - 1) d on the left of the time axis only;
SAME: on the dilated extent), planned alike by the memory model's skeleton.

Networks: a causal dilated TCN on (64, 8) features (Conv1D dilations 1, 2, 4, 8 with ReLU, a
residual add whose branch ends linear, a per-step Dense, a global average pool, a Dense head) and
a small 2-D model (Conv2D dilation 2 SAME, DepthwiseConv2D dilation 2 SAME with BN and ReLU6, a
valid Conv2D dilated along W only, a Dense on (H, W, C)).

What we see (random weights, 48 random calibration inputs): the integer graph equals the
fake-quant model on every dilated / causal layer (0 LSB, chained and isolated) at w8a8, at
mixed policies and at memory_driven's policy for half of the w8a8 flash and RAM; the only
differences are 1 LSB of the per-channel int32 logits (PC) and, at w8a8, of the per-pixel Dense
on a few elements (the multiplier's rounding, as any pointwise layer); the skeleton has the
lowered graph's dilations and paddings, ``peak_ram_bytes`` is the deployed arena, and the C on
the host is the simulator.
"""
import numpy as np
import pytest

import tinyopt  # noqa: F401
import tf_keras as keras
from tf_keras import layers as L

from tinyopt.integer import steps
from tinyopt.mixed import build, dag, lower, memory, nodes, ptq, verify
from tinyopt.mixed.handlers import compute
from tinyopt.mixed.layers import QuantCompute
from tinyopt.mixed.policy import Policy
from tinyopt.mixed.search import memory_driven
from tinyopt.mixed.skeleton import skeleton


def tcn() -> keras.Model:
    """A causal dilated TCN (input (64, 8), values in [-1, 1])."""
    keras.utils.set_random_seed(0)
    x = inp = keras.Input((64, 8), name="feat")
    x = L.Conv1D(16, 3, padding="causal", activation="relu", name="t0")(x)
    y = L.Conv1D(16, 3, padding="causal", dilation_rate=2, activation="relu", name="t1")(x)
    y = L.Conv1D(16, 3, padding="causal", dilation_rate=4, name="t2")(y)  # linear branch
    x = L.ReLU(name="res_relu")(L.Add(name="res")([x, y]))
    x = L.Conv1D(16, 3, padding="causal", dilation_rate=8, activation="relu", name="t3")(x)
    x = L.Dense(8, activation="relu", name="per_step")(x)  # a Dense on (T, C): per time step
    x = L.Reshape((1, 64, 8), name="as_2d")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(10, name="logits")(x), name="tcn")


def net2d() -> keras.Model:
    """Dilated Conv2D / DepthwiseConv2D (input (16, 16, 3), values in [0, 1])."""
    keras.utils.set_random_seed(1)
    inp = keras.Input((16, 16, 3), name="img")
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="c0")(inp)
    x = L.Conv2D(8, 3, dilation_rate=2, padding="same", activation="relu", name="atrous")(x)
    x = L.DepthwiseConv2D(3, dilation_rate=2, padding="same", name="dw")(x)
    x = L.BatchNormalization(name="dw_bn")(x)
    x = L.ReLU(6.0, name="dw_relu")(x)
    x = L.Conv2D(8, (3, 2), dilation_rate=(1, 3), activation="relu", name="valid_d")(x)
    x = L.Dense(12, activation="relu", name="pix")(x)  # a Dense on (H, W, C): per pixel
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(5, name="fc")(x), name="dil2d")


NETS = {"tcn": (tcn, (64, 8), -1.0), "2d": (net2d, (16, 16, 3), 0.0)}
# mixed policies (the add's addends t0 and t2 at equal act bits)
MIXED = {"tcn": ([8, 4, 2, 4, 2, 8], [4, 2, 4, 4, 2, 8]),
         "2d": ([8, 2, 2, 2, 2, 8], [8, 4, 2, 2, 2, 4])}
DILATED = {"tcn": ("t1", "t2", "t3"), "2d": ("atrous", "dw", "valid_d")}


def data(net: str, n: int = 48, seed: int = 0) -> np.ndarray:
    _, shape, lo = NETS[net]
    return np.random.default_rng(seed).uniform(lo, 1.0, (n, *shape)).astype(np.float32)


def policy(m, net: str, label: str) -> Policy:
    if label == "w8a8":
        return Policy.uniform(m, 8, 8)
    return Policy(dag.policy_layers(m), *MIXED[net])


# ------------------------------------------------------------------------------ reading

def test_blocks_keep_dilation_and_causal_padding():
    by = {b.name: b for b in dag.blocks(tcn())}
    assert by["t1"].kind == "conv2d" and by["t1"].conv1d
    assert by["t1"].op_config == {"kernel_size": [1, 3], "strides": [1, 1], "padding": "causal",
                                  "dilation_rate": [1, 2], "filters": 16}
    assert by["t3"].op_config["dilation_rate"] == [1, 8]
    # a Dense on (T, C) is a 1 x 1 convolution run on [1, T, C]
    assert by["per_step"].kind == "conv2d" and by["per_step"].conv1d
    assert by["per_step"].op_config["kernel_size"] == [1, 1]
    assert by["logits"].kind == "dense"
    by = {b.name: b for b in dag.blocks(net2d())}
    assert by["atrous"].op_config["dilation_rate"] == [2, 2]
    assert by["dw"].kind == "depthwise" and by["dw"].op_config["dilation_rate"] == [2, 2]
    assert by["pix"].kind == "conv2d" and not by["pix"].conv1d
    # the memory model's nodes: a per-step Dense is a conv of C x units weights
    n = {node.name: node for node in nodes.nodes(tcn())}["per_step"]
    assert (n.kind, n.weight_elements, n.macs) == ("conv", 16 * 8, 64 * 16 * 8)


@pytest.mark.parametrize("rate,pad", [(1, "causal"), (4, "causal"), (3, "same"), (2, "valid")])
def test_the_fake_quant_op_is_keras_conv1d(rate, pad):
    """QuantCompute's convolution (no quantization involved: ``_op`` on a float kernel) is the
    Keras Conv1D's, causal padding and dilation included."""
    keras.utils.set_random_seed(2)
    layer = L.Conv1D(5, 3, padding=pad, dilation_rate=rate, use_bias=False)
    x = np.random.default_rng(0).normal(size=(2, 20, 4)).astype(np.float32)
    want = layer(x).numpy()
    kind, cfg, conv1d = compute.compute_config(layer, keras)
    assert conv1d
    q = QuantCompute(kind, {**cfg, "rank": 2}, 8, None, "PL", "FB", None, None)
    q.build((None, 20, 4))
    got = q._op(x, np.reshape(layer.kernel.numpy(), q.kernel.shape)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer", [
    lambda: L.Conv2D(3, 3, dilation_rate=2, padding="same", use_bias=False),
    lambda: L.Conv2D(3, (3, 2), dilation_rate=(1, 3), use_bias=False),
    lambda: L.DepthwiseConv2D(3, dilation_rate=(2, 3), padding="same", use_bias=False)])
def test_the_fake_quant_op_is_keras_conv2d(layer):
    keras.utils.set_random_seed(3)
    layer = layer()
    x = np.random.default_rng(1).normal(size=(2, 11, 12, 4)).astype(np.float32)
    want = layer(x).numpy()
    kind, cfg, _ = compute.compute_config(layer, keras)
    q = QuantCompute(kind, cfg, 8, None, "PL", "FB", None, None)
    q.build((None, 11, 12, 4))
    kernel = layer.depthwise_kernel if kind == "depthwise" else layer.kernel
    got = q._op(x, kernel.numpy()).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_conv_padding_causal_and_same_on_the_dilated_extent():
    causal = {"kernel_size": [1, 3], "strides": [1, 1], "padding": "causal",
              "dilation_rate": [1, 4]}
    assert compute.conv_padding(causal, (1, 64, 8), (1, 64, 8)) == (0, 0, 8, 0)
    same = {"kernel_size": [3, 3], "strides": [1, 1], "padding": "same",
            "dilation_rate": [2, 3]}
    # extents 5 and 7: TensorFlow pads 2 + 2 and 3 + 3
    assert compute.conv_padding(same, (10, 10, 4), (10, 10, 4)) == (2, 2, 3, 3)


def test_the_skeleton_plans_the_dilation_and_padding():
    m = tcn()
    sk = {n.name: n for n in skeleton(m, Policy.uniform(m, 4, 4)).layers}
    assert tuple(sk["t2"].dilation) == (1, 4) and tuple(sk["t2"].padding) == (0, 0, 8, 0)
    assert tuple(sk["t0"].dilation) == (1, 1) and tuple(sk["t0"].padding) == (0, 0, 2, 0)
    assert sk["per_step"].kind == "pointwise"
    assert [n.name for n in skeleton(m, Policy.uniform(m, 4, 4)).layers][:3] == \
        ["t0_in", "t0", "t0_out"]
    m = net2d()
    sk = {n.name: n for n in skeleton(m, Policy.uniform(m, 8, 8)).layers}
    assert tuple(sk["atrous"].dilation) == (2, 2) and tuple(sk["atrous"].padding) == (2, 2, 2, 2)
    assert tuple(sk["dw"].dilation) == (2, 2) and tuple(sk["dw"].padding) == (2, 2, 2, 2)
    # a 1-tap axis has no dilation
    assert tuple(sk["valid_d"].dilation) == (1, 3) and tuple(sk["valid_d"].padding) == (0,) * 4


# ------------------------------------------------------------------------------ refusals

def test_what_stays_unsupported_is_refused_naming_the_layer():
    inp = keras.Input((600, 2))
    x = L.Conv1D(4, 2, padding="causal", dilation_rate=300, name="wide")(inp)
    m = keras.Model(inp, L.Dense(2, name="fc")(L.Flatten()(x)))
    with pytest.raises(ValueError, match=r"'wide' \(Conv1D\): dilation_rate=\(300,\).*one byte"
                                         r".*at most 255"):
        dag.blocks(m)
    # Keras refuses a dilated window at a stride above 1; so does the fake-quant layer
    cfg = {"kernel_size": [3, 3], "strides": [2, 2], "padding": "valid",
           "dilation_rate": [2, 2], "filters": 4}
    with pytest.raises(ValueError, match=r"'q'.*strides \[2, 2\] with dilation_rate \[2, 2\]"):
        QuantCompute("conv2d", cfg, 8, None, "PL", "FB", None, None, name="q")
    with pytest.raises(ValueError, match=r"'q'.*causal padding is a Conv1D's"):
        QuantCompute("conv2d", {**cfg, "strides": [1, 1], "padding": "causal"}, 8, None, "PL",
                     "FB", None, None, name="q")
    # ... and check_supported, for a fake-quant model edited after it was built
    q = build.quantize_mixed(net2d(), Policy.uniform(net2d(), 8, 8))
    q.get_layer("c0").op_config["strides"] = [2, 2]
    q.get_layer("c0").op_config["dilation_rate"] = [2, 2]
    with pytest.raises(ValueError, match=r"'c0' \(QuantCompute\): dilation_rate=\(2, 2\) with "
                                         r"strides=\(2, 2\)"):
        dag.check_supported(q)
    # a Dense on more than three axes, a grouped Conv1D
    inp = keras.Input((2, 3, 4, 5))
    m = keras.Model(inp, L.Dense(2, name="d4")(inp))
    with pytest.raises(ValueError, match=r"'d4' \(Dense\).*4-D input.*Flatten or a Reshape"):
        dag.blocks(m)
    inp = keras.Input((16, 4))
    m = keras.Model(inp, L.Dense(2)(L.Flatten()(L.Conv1D(4, 3, groups=2, name="g")(inp))))
    with pytest.raises(ValueError, match=r"'g' \(Conv1D\).*groups=2"):
        dag.blocks(m)


# ------------------------------------------------------------------------------ the whole way

@pytest.mark.slow
@pytest.mark.parametrize("net", ["tcn", "2d"])
@pytest.mark.parametrize("label", ["w8a8", "mixed"])
def test_ptq_integer_graph_memory_and_the_c_on_the_host(net, label, tmp_path):
    from tinyopt.deploy import codegen, mcu
    m, x = NETS[net][0](), data(net)
    p = policy(m, net, label)
    q = ptq.quantize_mixed(m, p, x)
    g = lower.convert(q)
    layers = {n.name: n for n in g.layers}
    for name in DILATED[net]:  # the dilation is the integer node's
        assert max(layers[name].dilation) > 1, name
    if net == "tcn":  # causal: (k - 1) d on the left only, the input's zero point (real 0)
        assert tuple(layers["t3"].padding) == (0, 0, 16, 0)
        assert tuple(layers["t0"].padding) == (0, 0, 2, 0)
        assert layers["t0"].in_zero_point > 0 and layers["t0"].pad_mode == "zero_point"
    r = verify.compare(q, g, x)
    t = r["layers"].set_index("layer")
    assert t["isolated_max_lsb"].max() <= 1, t
    for name in DILATED[net]:
        assert t.loc[name, "isolated_max_lsb"] == 0 and t.loc[name, "chained_max_lsb"] == 0, t
    assert r["top1_agreement_1lsb"] == 1.0
    # the skeleton is the lowered graph (geometry included) and the memory model its arena
    sk = skeleton(m, p)
    geometry = ("kind", "name", "in_shape", "out_shape", "in_bits", "out_bits", "stride",
                "dilation", "padding", "pad_mode", "depth_multiplier", "inputs", "outputs")
    assert [tuple(np.asarray(getattr(n, f)).tolist() for f in geometry) for n in sk.layers] == \
        [tuple(np.asarray(getattr(n, f)).tolist() for f in geometry) for n in g.layers]
    assert memory.peak_ram_bytes(m, p) == steps.plan(g)[1]
    # the C on the host (8-bit dilated conv2d on tn_m7_conv, the others portable) is the simulator
    codes = g.quantize_input(data(net, 8, seed=5))
    export = codegen.export_c(g, tmp_path / "c")
    exe = mcu.build_host(export, build_dir=tmp_path / "build")
    got = mcu.run_host(exe, export, codes, work_dir=tmp_path / "run")
    assert np.array_equal(got, codegen.reference_output(g, codes))


@pytest.mark.slow
@pytest.mark.parametrize("net", ["tcn", "2d"])
def test_memory_driven_at_half_of_w8a8(net):
    m = NETS[net][0]()
    p8 = Policy.uniform(m, 8, 8)
    flash, ram = memory.flash_bytes(m, p8) // 2, memory.peak_ram_bytes(m, p8) // 2
    p = memory_driven(m, flash, ram)
    assert memory.flash_bytes(m, p) <= flash and memory.peak_ram_bytes(m, p) <= ram
    x = data(net)
    q = ptq.quantize_mixed(m, p, x)
    g = lower.convert(q)
    assert memory.peak_ram_bytes(m, p) == steps.plan(g)[1]
    r = verify.compare(q, g, x)
    t = r["layers"].set_index("layer")
    assert t["isolated_max_lsb"].max() <= 1 and r["top1_agreement_1lsb"] == 1.0, t

"""The ``transpose_conv`` block kind (tinyopt/mixed/handlers/transpose_conv.py,
tinyopt/mixed/transpose_layers.py, issue 28): Keras Conv2DTranspose through the sub-byte path as
a policy layer: read with its BN and ReLU (or its own sigmoid split off), fake-quantized by
QuantTransposeConv (QuantCompute's quantizers, the transposed op), calibrated by PTQ, lowered to
a ``transpose_conv`` node (kernel [kh, kw, c_out, c_in] -> rows [c_out][ky][kx][c_in], packed),
planned the same from bits alone, in the memory model and the sensitivity analysis; the
refusals."""
import numpy as np
import pytest

import tinyopt  # noqa: F401
import tf_keras as keras
from tf_keras import layers as L

from tinyopt.integer import sim, steps
from tinyopt.integer.arith import packed_bytes
from tinyopt.mixed import build, dag, lower, memory, ptq, verify
from tinyopt.mixed.lifetimes import mem_graph
from tinyopt.mixed.nodes import nodes
from tinyopt.mixed.policy import Policy
from tinyopt.mixed.skeleton import skeleton

from tests.test_memory_device import _same_structure


def _model(padding="same", kernel=3, bn=False, name="tc", skip=True) -> keras.Model:
    """A small U-Net: conv -> pool -> conv -> Conv2DTranspose (strides 2, with bias; BN + ReLU
    or its own ReLU) -> concat skip (``skip``) -> conv -> 1 x 1 conv with a sigmoid (the
    mask)."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 2), name="img")
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="c0")(inp)
    b = L.MaxPooling2D(2, name="mp")(a)
    b = L.Conv2D(6, 3, padding="same", activation="relu", name="c1")(b)
    if bn:
        u = L.Conv2DTranspose(5, kernel, strides=2, padding=padding, name=name)(b)
        u = L.BatchNormalization(name=f"{name}_bn")(u)
        u = L.ReLU(name=f"{name}_relu")(u)
    else:
        u = L.Conv2DTranspose(5, kernel, strides=2, padding=padding, activation="relu",
                              name=name)(b)
    if u.shape[1] != 8:  # 'valid' with a kernel above the stride: crop back with a pool
        u = L.MaxPooling2D(2, strides=1, name="crop")(u)
    if skip:
        u = L.Concatenate(name="cat")([u, a])
    u = L.Conv2D(4, 3, padding="same", activation="relu", name="dec")(u)
    m = keras.Model(inp, L.Conv2D(1, 1, activation="sigmoid", name="mask")(u), name="unet_s")
    rng = np.random.default_rng(2)
    layer = m.get_layer(name)
    layer.bias.assign(rng.normal(0, 0.1, layer.bias.shape).astype(np.float32))
    if bn:
        bnl = m.get_layer(f"{name}_bn")
        bnl.gamma.assign(rng.uniform(0.5, 1.5, 5).astype(np.float32))
        bnl.beta.assign(rng.normal(0, 0.2, 5).astype(np.float32))
        bnl.moving_mean.assign(rng.normal(0, 0.2, 5).astype(np.float32))
        bnl.moving_variance.assign(rng.uniform(0.5, 2, 5).astype(np.float32))
    return m


def _x(n=48):
    return np.random.default_rng(1).uniform(0, 1, (n, 8, 8, 2)).astype(np.float32)


# ----------------------------------------------------------------------- reading
def test_read_with_its_relu_bn_or_sigmoid():
    blocks = {b.name: b for b in dag.blocks(_model())}
    tc = blocks["tc"]
    assert tc.op == "transpose_conv" and tc.activation == "relu" and tc.is_policy_layer
    assert tc.op_config == {"kernel_size": [3, 3], "strides": [2, 2], "padding": "same",
                            "filters": 5}
    blocks = {b.name: b for b in dag.blocks(_model("valid", 2, bn=True))}
    assert blocks["tc"].members == ["tc", "tc_bn", "tc_relu"] and blocks["tc"].bn is not None
    assert dag.policy_layers(_model()) == ["c0", "c1", "tc", "dec", "mask"]
    # its own sigmoid is split off as the compute layer's is
    inp = keras.Input((4, 4, 2))
    x = L.Conv2DTranspose(3, 2, strides=2, activation="sigmoid", name="t")(inp)
    m = keras.Model(inp, L.Dense(2, name="fc")(L.Flatten()(x)))
    ops = [(b.name, b.op, b.kind) for b in dag.blocks(m)]
    assert ops[:2] == [("t", "transpose_conv", "transpose_conv"),
                       ("t_sigmoid", "activation", "logistic")]
    assert "Conv2DTranspose (strides, 'same' / 'valid'" in dag.SUPPORTED


@pytest.mark.parametrize("kwargs,match", [
    ({"dilation_rate": 2, "strides": 1}, r"dilation_rate=\(2, 2\)"),
    ({"output_padding": 1}, "output_padding="),
    ({"activation": "tanh"}, "activation 'tanh' inside the layer"),
])
def test_refusals_name_the_layer(kwargs, match):
    inp = keras.Input((4, 4, 2))
    x = L.Conv2DTranspose(3, 3, name="t", **{"strides": 2, "padding": "same", **kwargs})(inp)
    m = keras.Model(inp, L.Dense(2)(L.Flatten()(x)))
    with pytest.raises(ValueError, match=r"layer 't' \(Conv2DTranspose\).*" + match):
        dag.blocks(m)


def test_a_linear_transpose_conv_at_the_output_is_refused():
    """int32 logits: the transpose_conv kernel writes 2/4/8-bit codes only; refused where the
    memory model reads the model, not after calibration."""
    inp = keras.Input((4, 4, 2))
    x = L.Conv2D(3, 3, padding="same", activation="relu")(inp)
    m = keras.Model(inp, L.Flatten()(L.Conv2DTranspose(2, 2, strides=2, name="t")(x)))
    with pytest.raises(ValueError, match="linear Conv2DTranspose producing the network output"):
        dag.blocks(m)
    with pytest.raises(ValueError, match="linear Conv2DTranspose producing"):
        memory.flash_bytes(m, Policy(["conv2d", "t"], [8, 8], [8, 8]))


# ----------------------------------------------------------------------- memory model
def test_the_memory_model_knows_it():
    m = _model()
    node = next(n for n in nodes(m) if n.name == "tc")
    assert (node.kind, node.weight_elements, node.out_channels) == ("transpose_conv",
                                                                     3 * 3 * 5 * 6, 5)
    assert node.in_elements == 4 * 4 * 6 and node.out_elements == 8 * 8 * 5
    assert node.macs == 4 * 4 * 3 * 3 * 5 * 6  # every input pixel times every weight
    g = mem_graph(m)
    t = g.tensors["tc"]
    assert t.kind == "act" and t.layer == "tc" and g.kinds["tc"] == "compute"
    p = Policy(dag.policy_layers(m), [8, 8, 2, 8, 8], [8, 8, 4, 8, 8])
    assert g.bits(dict(zip(p.layers, p.act_bits)))["tc"] == 4
    # flash (the paper's): its packed weights and the extras of its fold (a 2-bit PL layer
    # keeps BN: ICN, 9C + 12)
    assert p.fold[2] == "ICN"
    rep = memory.report(m, p).set_index("layer")
    assert rep.loc["tc", "flash_bytes"] == packed_bytes(3 * 3 * 5 * 6, 2) + 9 * 5 + 12
    # deployed: rows of kh kw c_in per output channel, each from a byte, as the skeleton's node
    sk = next(lay for lay in skeleton(m, p).layers if lay.name == "tc")
    assert sk.weights.shape == (5, packed_bytes(3 * 3 * 6, 2))
    assert memory.deployed_param_bytes(m, p) == sum(
        lay.weights.size + 4 * len(lay.bias) + len(lay.weight_zero_point) + 5 * len(lay.m0)
        for lay in skeleton(m, p).layers if lay.weights is not None) + 5 * 2  # 2 requants


# ----------------------------------------------------------------------- PTQ -> integer
def _policy(m, label):
    layers = dag.policy_layers(m)
    if label == "w8a8":
        return Policy.uniform(m, 8, 8)
    if label == "w4a4_pl":
        return Policy(layers, [4] * 5, [4] * 5, "PL", ["FB"] * 5)
    n = len(layers)
    return Policy(layers, [8, 4, 2, 4, 8][:n], [8, 4, 2, 4, 8][:n], "PC",
                  ["ICN"] * (n - 1) + ["FB"])


@pytest.mark.parametrize("padding,kernel,bn,label", [
    ("same", 3, False, "w8a8"),
    ("valid", 2, True, "w4a4_pl"),  # 2 x 2 kernel, stride 2: exactly 2x; BN folded (FB)
    ("valid", 3, True, "mixed_pc"),  # kernel above the stride; BN kept (ICN), PC, 2 bits
])
def test_ptq_lowers_to_the_transpose_conv_node(padding, kernel, bn, label):
    """PTQ -> convert: one transpose_conv node with Keras' geometry and the transposed packed
    kernel; the simulator within 1 LSB of the fake-quant layer fed the same input; the
    skeleton plans the same nodes (no skip: the skeleton requantizes every input of a
    concatenation, an upper bound); the memory model's RAM is the deployed arena."""
    m = _model(padding, kernel, bn, skip=False)
    p = _policy(m, label)
    x = _x()
    q = ptq.quantize_mixed(m, p, x)
    fq = q.get_layer("tc")
    assert type(fq).__name__ == "QuantTransposeConv" and fq.kind == "transpose_conv"
    # the float layer's weights were copied ([kh, kw, c_out, c_in])
    np.testing.assert_array_equal(fq.kernel.numpy(), m.get_layer("tc").kernel.numpy())
    g = lower.convert(q)
    node = next(lay for lay in g.layers if lay.name == "tc")
    assert node.kind == "transpose_conv" and node.stride == (2, 2)
    assert node.weight_shape == (5, kernel, kernel, 6) and node.weight_bits == p["tc"][
        "weight_bits"]
    e = next(e for e in build.integer_params(q)["layers"] if e["name"] == "tc")
    np.testing.assert_array_equal(node.unpacked_weights(),
                                  np.asarray(e["weight_codes"]).transpose(2, 0, 1, 3))
    kept = bn and p["tc"]["fold"] == "ICN"
    assert len(node.m0) == (5 if p.granularity == "PC" or kept else 1)
    rows = verify.compare(q, g, x)["layers"].set_index("layer")
    assert rows.loc["tc", "isolated_max_lsb"] <= 1
    assert rows.loc["tc", "isolated_frac_diff"] < 0.01
    trace = sim.run(g, g.quantize_input(x), trace=True, engine="reference")
    assert len(np.unique(trace["tc"])) > 2, "the transposed convolution's output hardly varies"
    _same_structure(skeleton(m, p), g)
    assert memory.peak_ram_bytes(m, p) == steps.plan(g)[1]


def test_the_fake_quant_layer_round_trips_through_a_file(tmp_path):
    from tinyopt.mixed import transpose_layers  # noqa: F401  (registers the class for loading)
    m = _model("valid", 2, bn=True)
    x = _x(16)
    q = ptq.quantize_mixed(m, _policy(m, "mixed_pc"), x)
    path = tmp_path / "q.keras"
    q.save(path)
    back = keras.models.load_model(path)
    layer = back.get_layer("tc")
    assert type(layer).__name__ == "QuantTransposeConv" and layer.kind == "transpose_conv"
    np.testing.assert_array_equal(back.predict(x, verbose=0), q.predict(x, verbose=0))
    g1, g2 = lower.convert(q), lower.convert(back)
    np.testing.assert_array_equal(sim.run(g1, g1.quantize_input(x)),
                                  sim.run(g2, g2.quantize_input(x)))


def test_the_sensitivity_analysis_cuts_it():
    from tinyopt.mixed.sensitivity import layer_sensitivity
    m = _model()
    table = layer_sensitivity(m, _x(32), bits=(8, 2), samples=32)
    tc = table[table.layer == "tc"].set_index("tensor")
    assert set(tc.index) == {"weights", "activations"}
    assert tc.loc["weights", "sensitivity"] > 0 and tc.loc["activations", "sensitivity"] > 0


@pytest.mark.slow  # builds the C on the host (~10 s)
def test_the_c_on_the_host_is_the_simulator(tmp_path):
    from tinyopt.deploy import mcu
    m = _model("valid", 3, bn=True)
    p = _policy(m, "mixed_pc")
    x = _x()
    g = lower.convert(ptq.quantize_mixed(m, p, x))
    d = mcu.deploy(g, g.quantize_input(x[:16]), tmp_path, run_mcu=False)
    s = d["summary"]
    assert s["host_images_exact"] == 16 and s["distinct_outputs"] > 1
    assert s["predicted_ram"] == s["arena_bytes"] == memory.peak_ram_bytes(m, p)

"""swish / SiLU (tinyopt/integer/ops/swish.py, tinyopt/deploy/c/ops/tn_swish.c), issue 28.

Sub-byte Keras path: ``Activation("swish")``, ``Activation(tf.nn.silu)`` and the ``tf.nn.silu``
TF op are swish blocks; PTQ -> integer graph -> simulator at 8, 4 and 2 bits gives the
fake-quant layer's codes exactly (the table is computed as that layer computes); the C on the
host equals the simulator. A compute layer's own ``activation="swish"`` is split into the linear
layer and a swish block (the block reader's split table is built from
``KerasPattern.layer_activations``).

Int8 import: TFLite writes swish as LOGISTIC + MUL (no SWISH operator); an EfficientNet-like
block (Conv-BN-swish, depthwise-BN-swish, squeeze-excite with a swish and a sigmoid gate,
Multiply) imports bit-exact with LiteRT's reference kernels and TFLite Micro on every tensor,
and its C on the host equals the simulator.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import tinyopt
import tensorflow as tf
import tf_keras as keras
from tf_keras import layers as L

from tests import _keras_nets as nets
from tests import _ops
from tinyopt.deploy import codegen, mcu
from tinyopt.integer import ops, sim
from tinyopt.integer.ops.registry import lookup_table
from tinyopt.integer.tflite_ctx import TFLiteModel
from tinyopt.mixed import dag

# converts Keras models, calibrates and builds C: make test runs it, test-fast not
pytestmark = pytest.mark.slow

SHAPE = (12, 12, 1)


def swish_net() -> keras.Model:
    """Three swish forms: an Activation("swish"), the tf.nn.silu TF op, Activation(tf.nn.silu)."""
    keras.utils.set_random_seed(0)
    inp = keras.Input(SHAPE, name="img")
    x = L.Conv2D(16, 3, padding="same", name="c0")(inp)
    x = L.BatchNormalization(name="bn0")(x)
    x = L.Activation("swish", name="act0")(x)
    x = L.DepthwiseConv2D(3, name="dw1")(x)
    x = tf.nn.silu(x)
    x = L.Conv2D(24, 1, name="pw2")(x)
    x = L.Activation(tf.nn.silu, name="act2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(10, name="fc")(x), name="swish_net")


def images(n=48, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, *SHAPE)).astype(np.float32)


def test_the_three_forms_are_swish_blocks():
    m = swish_net()
    acts = [b for b in dag.blocks(m) if b.op == "activation"]
    assert [b.kind for b in acts] == ["swish"] * 3
    assert acts[0].name == "act0" and acts[2].name == "act2"
    assert type(acts[1].layer).__name__ == "TFOpLambda" and acts[1].layer.symbol == "nn.silu"
    assert dag.policy_layers(m) == ["c0", "dw1", "pw2", "fc"]


def test_a_silu_with_another_beta_is_refused_with_the_fix():
    inp = keras.Input((6, 6, 1))
    x = tf.nn.silu(L.Conv2D(2, 3, name="c")(inp), beta=2.0)
    with pytest.raises(ValueError, match=r"beta 2\.0.*without beta"):
        dag.blocks(keras.Model(inp, L.Dense(3)(L.Flatten()(x))))


def test_the_float_function_is_keras_swish():
    """The fake-quant layer's function (float32 x * (1 / (1 + exp(-x)))) is Keras' swish up to
    float32 rounding (TensorFlow's silu computes sigmoid differently), and the same function
    in TensorFlow and NumPy; x * sigmoid(x) has its minimum -0.2785 at x = -1.2785."""
    pattern = ops.get("swish").keras
    x = np.linspace(-100, 60, 40001, dtype=np.float32)
    want = keras.activations.swish(tf.constant(x)).numpy()
    got_np = pattern.float_fn(np, x, {})
    got_tf = pattern.float_fn(tf, tf.constant(x), {}).numpy()
    np.testing.assert_allclose(got_np, want, rtol=2e-6, atol=1e-30)
    np.testing.assert_allclose(got_tf, want, rtol=2e-6, atol=1e-30)
    assert got_np.min() == pytest.approx(-0.27846, abs=1e-5) and got_np[-1] == np.float32(60)


def test_the_table_is_the_fake_quant_layer_on_every_code():
    from tinyopt.mixed.graph_layers import QuantActivation
    pattern = ops.get("swish").keras
    assert pattern.signed and pattern.out_range is None
    assert set(pattern.layer_activations) == {"swish", "silu"}
    for bits, s_in, s_out in ((8, 0.05, 0.04), (4, 0.6, 0.5), (2, 1.3, 0.9)):
        half = 2 ** (bits - 1)
        in_q = {"bits": bits, "scale": s_in, "zero_point": half, "signed": False}
        out_q = {"bits": bits, "scale": s_out, "zero_point": half, "signed": False}
        table = lookup_table(pattern, in_q, out_q, {})
        layer = QuantActivation("swish", bits, name=f"s{bits}")
        layer.build((None, 2 ** bits))
        layer.alpha.assign(s_out * half)
        x = (np.float32(s_in) * (np.arange(2 ** bits) - half).astype(np.float32))[None]
        fake = layer(x).numpy()[0]
        assert np.array_equal(np.round(fake / np.float32(s_out)) + half, table), bits
        assert len(np.unique(table)) >= min(2 ** bits // 2, 3)  # the table varies


@pytest.fixture(scope="module", params=[8, 4, 2])
def lowered(request):
    """(bits, fake-quant model, integer graph) of swish_net at ``bits`` activations."""
    m = swish_net()
    policy = tinyopt.Policy.uniform(m, 8, request.param)
    q = tinyopt.quantize_ptq(m, policy, images())
    return request.param, q, tinyopt.to_integer_graph(q)


def test_the_simulator_is_the_fake_quant_layer(lowered):
    bits, q, g = lowered
    nodes = _ops.nodes(g, "swish", 3)
    for node in nodes:
        assert node.table.shape == (2 ** bits,) and node.out_bits == bits
        assert node.out_zero_point == 2 ** (bits - 1)  # signed grid, stored unsigned
    # the public path runs, and every swish node's output varies
    trace = tinyopt.simulate(g, g.quantize_input(images(16, seed=4)), trace=True)
    for node in nodes:
        assert len(np.unique(trace[node.name])) >= min(2 ** bits // 2, 3), node.name
    # each swish node fed the simulator's own input equals the fake-quant layer to the code
    r = tinyopt.compare_to_fake_quant(q, g, images())
    table = r["layers"].set_index("layer")
    for node in nodes:
        assert table.loc[node.name, "isolated_max_lsb"] == 0, table
        assert table.loc[node.name, "elements"] > 0


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
def test_the_c_on_the_host_is_the_simulator(lowered, tmp_path):
    bits, _, g = lowered
    codes = g.quantize_input(images(16, seed=5))
    export = codegen.export_c(g, tmp_path / "c", kernels="portable")
    assert "tn_swish.c" in {p.name for p in export.sources}
    exe = mcu.build_host(export, build_dir=tmp_path / "build")
    want = codegen.reference_output(g, codes)
    assert len({r.tobytes() for r in want}) > 1
    assert np.array_equal(mcu.run_host(exe, export, codes, work_dir=tmp_path / "run"), want)


def own_swish_net() -> keras.Model:
    """Conv2D, DepthwiseConv2D and Dense, each with its own swish (``"swish"``, ``"silu"``)."""
    keras.utils.set_random_seed(1)
    inp = keras.Input(SHAPE, name="img")
    x = L.Conv2D(8, 3, activation="swish", name="c")(inp)
    x = L.DepthwiseConv2D(3, activation="silu", name="dw")(x)
    x = L.Dense(6, activation="swish", name="d")(L.Flatten(name="flat")(x))
    return keras.Model(inp, L.Dense(3, name="fc")(x))


def test_a_compute_layers_own_swish_is_split():
    """A compute layer's own swish: the linear layer, then a ``<layer>_swish`` block (the
    block reader's split table is built from KerasPattern.layer_activations), lowered exactly
    like a swish layer."""
    m = own_swish_net()
    blocks = dag.blocks(m)
    assert [(b.name, b.op, b.kind) for b in blocks] == [
        ("c", "compute", "conv2d"), ("c_swish", "activation", "swish"),
        ("dw", "compute", "depthwise"), ("dw_swish", "activation", "swish"),
        ("flat", "flatten", None), ("d", "compute", "dense"),
        ("d_swish", "activation", "swish"), ("fc", "compute", "dense")]
    assert all(b.activation is None for b in blocks if b.op == "compute")
    q = tinyopt.quantize_ptq(m, tinyopt.Policy.uniform(m, 8, 4), images())
    g = tinyopt.to_integer_graph(q)
    nodes = _ops.nodes(g, "swish", 3)
    r = tinyopt.compare_to_fake_quant(q, g, images()).get("layers").set_index("layer")
    for node in nodes:
        assert node.table.shape == (16,)
        assert r.loc[node.name, "isolated_max_lsb"] == 0 and r.loc[node.name, "elements"] > 0


def test_the_node_needs_its_table():
    layer = ops.get("swish")
    from tinyopt.integer.graph import IntegerLayer
    node = IntegerLayer(kind="swish", name="s", in_shape=(2, 2, 3), out_shape=(2, 2, 3),
                        in_bits=4, out_bits=4, in_zero_point=8, out_zero_point=8)
    with pytest.raises(ValueError, match="needs its lookup table, 2\\^in_bits = 16"):
        node.validate()
    node.table = np.zeros(8, np.uint8)
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        node.validate()
    node.table = np.zeros(16, np.uint8)
    node.validate()
    node.in_bits = 16
    with pytest.raises(ValueError, match="at most 8 bits"):
        node.validate()
    assert layer.tflite == {}  # TFLite has no SWISH: LOGISTIC + MUL


# ------------------------------------------------------------------- the int8 .tflite import

def effnet_block() -> keras.Model:
    """EfficientNet's MBConv as tf_keras.applications.efficientnet builds it: expand Conv-BN-
    swish, depthwise-BN-swish, squeeze-excite (GlobalAveragePooling2D, Reshape to (1, 1, C),
    Conv2D(activation="swish"), Conv2D(activation="sigmoid"), multiply), project Conv-BN."""
    keras.utils.set_random_seed(3)
    inp = keras.Input((8, 8, 3))
    x = L.Conv2D(16, 3, padding="same", use_bias=False)(inp)
    x = L.BatchNormalization()(x)
    x = L.Activation("swish")(x)
    x = L.DepthwiseConv2D(3, padding="same", use_bias=False)(x)
    x = L.BatchNormalization()(x)
    x = L.Activation("swish")(x)
    se = L.GlobalAveragePooling2D()(x)
    se = L.Reshape((1, 1, 16))(se)
    se = L.Conv2D(4, 1, padding="same", activation="swish", name="se_reduce")(se)
    se = L.Conv2D(16, 1, padding="same", activation="sigmoid", name="se_expand")(se)
    x = L.multiply([x, se])
    x = L.Conv2D(8, 1, use_bias=False)(x)
    x = L.BatchNormalization()(x)
    return keras.Model(inp, L.Dense(10)(L.GlobalAveragePooling2D()(x)))


SE_GAIN = 30.0


@pytest.fixture(scope="module")
def effnet_tflite() -> bytes:
    from tinyopt.litert.convert import to_tflite
    model = nets.randomize_bias(effnet_block())
    # the pooled squeeze varies little between random images: wider SE weights spread the
    # gate's inputs over the sigmoid, so its outputs take many codes (the check has teeth)
    for name in ("se_reduce", "se_expand"):
        layer = model.get_layer(name)
        layer.kernel.assign(layer.kernel * SE_GAIN)
    # a fixed batch of one: the Reshape's shape is then a constant (as for MobileNetV3)
    return to_tflite(model, "int8", calibration=nets.calibration(model), batch_size=1)


def test_tflite_writes_swish_as_logistic_and_mul(effnet_tflite):
    names = set(TFLiteModel(effnet_tflite).op_names)
    assert {"LOGISTIC", "MUL"} <= names and not any("SWISH" in n for n in names)
    g = sim.graph_from_tflite(effnet_tflite)
    # three swish (two Activations, the squeeze conv's own) + the sigmoid gate; four MULs
    assert len(_ops.nodes(g, "logistic")) == 4 and len(_ops.nodes(g, "mul")) == 4


# the imported graph's 17 nodes write 16 tensors of the model (the global pooling's MEAN runs as
# two nodes, the first one's output internal): every one compared
MIN_COMPARED = 16


@pytest.mark.parametrize("flavour", ["litert", "tflm"])
def test_an_efficientnet_block_imports_bit_exact(effnet_tflite, flavour):
    _ops.assert_matches_interpreters(effnet_tflite, flavour, ("logistic", "mul"), (8, 8, 3),
                                     images=100, count=None, min_unique=10, every_layer=True,
                                     min_compared=MIN_COMPARED)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
def test_the_efficientnet_block_c_is_the_simulator(effnet_tflite, tmp_path):
    _ops.assert_host_c_exact(effnet_tflite, "litert", ("tn_logistic.c", "tn_mul.c"), (8, 8, 3),
                             tmp_path)

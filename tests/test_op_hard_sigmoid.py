"""hard sigmoid (tinyopt/integer/ops/hard_sigmoid.py, tinyopt/deploy/c/ops/tn_hard_sigmoid.c),
issue 28.

Sub-byte Keras path: MobileNetV3's squeeze-excite gate ``ReLU(6.)(x + 3.) * (1. / 6.)`` standing
alone and ``Activation("hard_sigmoid")`` (tf_keras 2.21: clip(0.2 x + 0.5, 0, 1), another
function) are hard_sigmoid blocks, each with the float function Keras computes; the hard-swish
``Multiply()([x, hard_sigmoid(x)])`` stays hard_swish in the same model. PTQ -> integer graph
-> simulator at 8, 4 and 2 bits gives the fake-quant layer's codes exactly (the table is
computed as that layer computes, min / max / add / multiply only); the C on the host equals the
simulator. The int8 import of the MobileNetV3 form (ADD, RELU6, MUL by constants) is
tests/test_mobilenet_v3_int8.py's.
"""
from __future__ import annotations

import shutil

import numpy as np
import pytest

import tinyopt
import tensorflow as tf
import tf_keras as keras
from tf_keras import layers as L

from tests import _ops
from tinyopt.deploy import codegen, mcu
from tinyopt.integer import ops
from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops import registry
from tinyopt.integer.ops.registry import lookup_table
from tinyopt.mixed import dag

# calibrates and builds C: make test runs it, test-fast not
pytestmark = pytest.mark.slow

SHAPE = (12, 12, 1)
GAIN = 30.0


def hard_sigmoid(x):
    """tf_keras.applications.mobilenet_v3.hard_sigmoid."""
    return L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)


def hard_swish(x, name):
    """tf_keras.applications.mobilenet_v3.hard_swish."""
    return L.Multiply(name=name)([x, hard_sigmoid(x)])


def net() -> keras.Model:
    """A hard-swish, MobileNetV3's hard sigmoid alone, Activation("hard_sigmoid")."""
    keras.utils.set_random_seed(0)
    inp = keras.Input(SHAPE, name="img")
    x = L.Conv2D(16, 3, padding="same", name="c0")(inp)
    x = L.BatchNormalization(name="bn0")(x)
    x = hard_swish(x, "hswish0")
    x = L.DepthwiseConv2D(3, name="dw1")(x)
    x = hard_sigmoid(x)
    x = L.Conv2D(24, 1, name="pw2")(x)
    x = L.Activation("hard_sigmoid", name="act2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    m = keras.Model(inp, L.Dense(10, name="fc")(x), name="hsig_net")
    # wider weights spread the hard sigmoids' inputs over their linear part, [-3, 3] and
    # [-2.5, 2.5], so that their outputs take many codes at every width (the checks have teeth)
    for name in ("dw1", "pw2"):
        kernel = m.get_layer(name).weights[0]
        kernel.assign(kernel * GAIN)
    return m


def images(n=48, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, *SHAPE)).astype(np.float32)


def test_blocks_hard_swish_still_wins():
    m = net()
    acts = [b for b in dag.blocks(m) if b.op == "activation"]
    assert [(b.kind, len(b.members)) for b in acts] == [
        ("hard_swish", 4), ("hard_sigmoid", 3), ("hard_sigmoid", 1)]
    assert acts[0].name == "hswish0" and acts[2].name == "act2"
    assert [b.config for b in acts[1:]] == [{"form": "relu6"}, {"form": "clip"}]
    assert [type(m.get_layer(n)).__name__ for n in acts[1].members] == [
        "TFOpLambda", "ReLU", "TFOpLambda"]
    assert dag.policy_layers(m) == ["c0", "dw1", "pw2", "fc"]


def _only_reader(model):
    """The block reader's ``only_reader`` (mixed/dag.py) for ``model``."""
    readers = {}
    for layer in model.layers:
        for node in layer._inbound_nodes:
            inbound = node.inbound_layers
            for src in inbound if isinstance(inbound, (list, tuple)) else [inbound]:
                readers.setdefault(src.name, []).append(layer)
    out = model.outputs[0].node.layer.name
    return lambda name: readers[name][0] if len(readers.get(name, [])) == 1 and name != out \
        else None


def test_the_squeeze_excite_gate_is_a_hard_sigmoid_the_hard_swish_is_not():
    """MobileNetV3's SE gate multiplies the block input by hard_sigmoid(conv(...)): the pattern
    is the gate (the two-input Multiply is no part of it); with x itself in that Multiply it is
    the hard-swish, whichever op the registry asks first."""
    inp = keras.Input((4, 4, 8))
    gate_in = L.Conv2D(8, 1, name="se_conv")(L.GlobalAveragePooling2D(keepdims=True)(inp))
    gate = hard_sigmoid(gate_in)
    se = L.Multiply(name="se_mul")([inp, gate])
    y = L.Conv2D(8, 1, name="c")(se)
    m = keras.Model(inp, hard_swish(y, "hs"))
    only = _only_reader(m)
    assert only("c") is None  # c is read by the add and by the Multiply: a hard-swish's x
    adds = {lay._inbound_nodes[0].inbound_layers.name: lay for lay in m.layers
            if getattr(lay, "symbol", "") == "__operators__.add"}
    add_se, add_hs = adds["se_conv"], adds["c"]
    hsig, hswish = ops.get("hard_sigmoid").keras, ops.get("hard_swish").keras
    assert len(hsig.match(add_se, only)) == 3 and hswish.match(add_se, only) is None
    assert hsig.match(add_hs, only) is None and len(hswish.match(add_hs, only)) == 4
    assert registry.match_keras(add_hs, only)[0].name == "hard_swish"
    assert registry.match_keras(add_se, only)[0].name == "hard_sigmoid"


def test_other_constants_are_no_hard_sigmoid():
    inp = keras.Input((4, 4, 2))
    x = L.Conv2D(2, 1, name="c")(inp)
    outs = [L.ReLU(6.0)(x + 2.0) * (1.0 / 6.0), L.ReLU(6.0)(x + 3.0) * 0.1666,
            L.ReLU()(x + 3.0) * (1.0 / 6.0)]
    m = keras.Model(inp, L.Concatenate()(outs))
    only = _only_reader(m)
    adds = [lay for lay in m.layers if getattr(lay, "symbol", "") == "__operators__.add"]
    assert len(adds) == 3
    assert all(ops.get("hard_sigmoid").keras.match(a, only) is None for a in adds)


def test_the_float_functions_are_keras():
    """Each form's function is what the Keras layers compute, to the float32 bit (the two
    forms differ between |x| = 2.5 and 3)."""
    pattern = ops.get("hard_sigmoid").keras
    x = np.concatenate([np.linspace(-4, 4, 8001, dtype=np.float32),
                        np.float32([-3, -2.5, 2.5, 3])])
    inp = keras.Input((len(x),))
    mobilenet = keras.Model(inp, hard_sigmoid(inp))(x[None]).numpy()[0]
    activation = L.Activation("hard_sigmoid")(tf.constant(x)).numpy()
    for form, want in (("relu6", mobilenet), ("clip", activation)):
        assert np.array_equal(pattern.float_fn(np, x, {"form": form}), want), form
        assert np.array_equal(pattern.float_fn(tf, tf.constant(x), {"form": form}).numpy(),
                              want), form
    assert not np.array_equal(mobilenet, activation)
    assert activation[x == np.float32(2.5)][0] == 1.0 and mobilenet[x == 2.5][0] < 1.0
    with pytest.raises(ValueError, match="config\\['form'\\]"):
        pattern.float_fn(np, x, {})


def test_the_table_is_the_fake_quant_layer_on_every_code():
    from tinyopt.mixed.graph_layers import QuantActivation
    pattern = ops.get("hard_sigmoid").keras
    assert not pattern.signed and pattern.out_range == (0.0, 1.0)
    for bits, s_in in ((8, 0.03), (4, 0.5), (2, 1.7)):
        for form in ("relu6", "clip"):
            half = 2 ** (bits - 1)
            in_q = {"bits": bits, "scale": s_in, "zero_point": half, "signed": False}
            out_q = {"bits": bits, "scale": 2.0 ** -bits, "zero_point": 0, "signed": False}
            table = lookup_table(pattern, in_q, out_q, {"form": form})
            layer = QuantActivation("hard_sigmoid", bits, config={"form": form}, name="h")
            layer.build((None, 2 ** bits))
            x = (np.float32(s_in) * (np.arange(2 ** bits) - half).astype(np.float32))[None]
            fake = layer(x).numpy()[0]
            assert np.array_equal(np.round(fake * 2 ** bits), table), (bits, form)
            assert table[0] == 0 and table[-1] == 2 ** bits - 1  # 0 and 1 (clamped)


@pytest.fixture(scope="module", params=[8, 4, 2])
def lowered(request):
    """(bits, fake-quant model, integer graph) of net() at ``bits`` activations."""
    m = net()
    q = tinyopt.quantize_ptq(m, tinyopt.Policy.uniform(m, 8, request.param), images())
    return request.param, q, tinyopt.to_integer_graph(q)


def test_the_simulator_is_the_fake_quant_layer(lowered):
    bits, q, g = lowered
    nodes = _ops.nodes(g, "hard_sigmoid", 2)
    for node in nodes:
        assert node.table.shape == (2 ** bits,) and node.out_zero_point == 0
        assert node.out_scale == pytest.approx(2.0 ** -bits)
    assert _ops.nodes(g, "hard_swish")  # the hard-swish is its own op
    trace = tinyopt.simulate(g, g.quantize_input(images(16, seed=4)), trace=True)
    for node in nodes:
        assert len(np.unique(trace[node.name])) >= min(2 ** bits // 2, 3), node.name
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
    assert "tn_hard_sigmoid.c" in {p.name for p in export.sources}
    exe = mcu.build_host(export, build_dir=tmp_path / "build")
    want = codegen.reference_output(g, codes)
    assert len({r.tobytes() for r in want}) > 1
    assert np.array_equal(mcu.run_host(exe, export, codes, work_dir=tmp_path / "run"), want)


def test_the_node_needs_its_table():
    node = IntegerLayer(kind="hard_sigmoid", name="h", in_shape=(3,), out_shape=(3,),
                        in_bits=2, out_bits=2, in_zero_point=2, out_zero_point=0)
    with pytest.raises(ValueError, match="needs its lookup table, 2\\^in_bits = 4"):
        node.validate()
    node.table = np.zeros(4, np.uint8)
    node.validate()
    node.in_signed = True
    with pytest.raises(ValueError, match="unsigned stored codes"):
        node.validate()
    assert ops.get("hard_sigmoid").tflite == {}  # TFLite: ADD, RELU6, MUL by constants

"""The sub-byte Keras path as a loop over per-kind handlers (issue 27): the table
(tinyopt/mixed/handlers), what the walks do with it, and that a handler's ``plan`` (bit widths
only) gives the nodes its ``lower`` gives after calibration."""
import numpy as np
import pytest

import tinyopt  # noqa: F401
import tf_keras as keras
from tf_keras import layers as L

from tinyopt.integer import ops
from tinyopt.mixed import dag, handlers
from tinyopt.mixed.handlers import base, compute
from tinyopt.mixed.policy import Policy
from tinyopt.mixed.skeleton import skeleton


def _every_kind() -> keras.Model:
    """One model with a block of every kind but concat (whose plan is an upper bound)."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((10, 10, 2), name="img")
    x = L.ZeroPadding2D(1, name="pad")(inp)
    x = L.Conv2D(6, 3, name="c0")(x)
    x = L.BatchNormalization(name="c0_bn")(x)
    x = L.ReLU(name="c0_relu")(x)
    y = L.DepthwiseConv2D(3, padding="same", name="dw")(x)  # linear: signed, read by the add
    x = L.Add(name="add")([x, y])
    x = L.LeakyReLU(0.1, name="leaky")(x)
    x = L.MaxPooling2D(2, name="mp")(x)
    x = L.Conv2D(6, 1, activation="sigmoid", name="pw")(x)  # split: pw, then pw_sigmoid
    x = L.BatchNormalization(name="bn_alone")(x)
    x = L.AveragePooling2D(2, name="ap")(x)
    x = L.GlobalAveragePooling2D(keepdims=True, name="gapk")(x)
    x = L.Reshape((6,), name="rs")(x)
    x = L.Dropout(0.1, name="drop")(x)
    x = L.Dense(8, activation="relu", name="d0")(x)
    x = L.Flatten(name="flat")(x)
    return keras.Model(inp, L.Dense(4, activation="softmax", name="head")(x), name="every")


def test_the_table_covers_every_block_kind_once():
    kinds = handlers.block_kinds()
    assert sorted(kinds) == sorted({"compute", "bn", "add", "concat", "maxpool", "avgpool", "gap",
                                    "pad", "flatten", "reshape", "dropout", "softmax",
                                    "activation", "mul", "upsample", "transpose_conv"})
    assert len(kinds) == len(set(kinds))
    orders = [h.order for h in handlers.table()]
    assert orders == sorted(orders)
    # registry patterns are tried before the add (hard-swish starts with ``x + 3``)
    assert handlers.get("activation").order < handlers.get("add").order
    assert [h.name for h in handlers.table() if h.policy] == ["compute", "transpose_conv", "bn"]
    with pytest.raises(ValueError, match="unknown block kind 'nope'"):
        handlers.get("nope")


def test_a_handler_cannot_take_a_kind_twice():
    with pytest.raises(ValueError, match="overlaps 'pool'"):
        base.register(base.Handler("other_pool", ("maxpool",), 99))
    with pytest.raises(ValueError, match="overlaps 'compute'"):
        base.register(base.Handler("other", ("x",), 99, layers=("QuantCompute",)))
    assert all(h.name not in ("other", "other_pool") for h in handlers.table())


def test_supported_and_the_split_table_come_from_the_tables():
    for h in handlers.table():
        if h.supported:
            assert h.supported in dag.SUPPORTED
    assert dag.SUPPORTED.startswith("Conv2D, Conv1D, DepthwiseConv2D, Dense")
    # the activations a compute layer may carry: the registry's layer_activations
    split = compute.split_activations()
    want = {name: op.name for op in ops.REGISTRY.values() if op.keras is not None
            for name in getattr(op.keras, "layer_activations", ())}
    assert split == want and split["sigmoid"] == "logistic"
    inp = keras.Input((6, 6, 1))
    bad = keras.Model(inp, L.Dense(2)(L.Flatten()(L.Conv2D(2, 3, activation="tanh",
                                                           name="c")(inp))))
    with pytest.raises(ValueError, match=r"'c' \(Conv2D\).*activation 'tanh'") as err:
        dag.blocks(bad)
    for name in split:  # the refusal lists what the table accepts
        assert name in str(err.value).split("inside the layer")[1].split(";")[0]


def test_the_walk_reads_every_kind_through_its_handler():
    m = _every_kind()
    blocks = dag.blocks(m)
    assert [(b.name, b.op) for b in blocks] == [
        ("pad", "pad"), ("c0", "compute"), ("dw", "compute"), ("add", "add"),
        ("leaky", "activation"), ("mp", "maxpool"), ("pw", "compute"),
        ("pw_sigmoid", "activation"), ("bn_alone", "bn"), ("ap", "avgpool"), ("gapk", "gap"),
        ("rs", "reshape"), ("drop", "dropout"), ("d0", "compute"), ("flat", "flatten"),
        ("head", "compute"), ("head_softmax", "softmax")]
    by = {b.name: b for b in blocks}
    assert by["c0"].members == ["c0", "c0_bn", "c0_relu"] and by["c0"].activation == "relu"
    assert by["bn_alone"].inputs == ["pw_sigmoid"]  # the split block produces pw's output
    assert by["pw_sigmoid"].kind == "logistic" and by["pw_sigmoid"].members == []
    assert dag.policy_layers(m) == ["c0", "dw", "pw", "bn_alone", "d0", "head"]


def test_a_registered_handler_is_read_without_editing_the_walk(monkeypatch):
    """A new kind (GaussianNoise: identity at inference, an alias) is one register() call:
    the reader, the skeleton and the refusal text pick it up."""
    monkeypatch.setattr(base, "_TABLE", list(base._TABLE))

    def read(layer, srcs, r):
        if type(layer) is r.keras.layers.GaussianNoise:
            return base.one_block(layer, srcs, "noise")
        return None

    base.register(base.Handler("noise", ("noise",), 65, read=read, plan=lambda b, ctx: None,
                               supported="GaussianNoise"))
    inp = keras.Input((6, 6, 1), name="img")
    x = L.GaussianNoise(0.1, name="gn")(L.Conv2D(2, 3, activation="relu", name="c")(inp))
    m = keras.Model(inp, L.Dense(2, name="fc")(L.Flatten(name="f")(x)))
    assert [b.op for b in dag.blocks(m)] == ["compute", "noise", "flatten", "compute"]
    g = skeleton(m, Policy.uniform(m, 4, 4))
    assert [lay.name for lay in g.layers] == ["c", "f", "fc"]
    assert g.layers[1].inputs == ("c",)  # the alias: flatten reads c's tensor
    assert "GaussianNoise" in base.supported()


@pytest.mark.slow  # PTQ of a small model (TF conversions, ~10 s)
@pytest.mark.parametrize("policy", ["w8a8", "mixed_pc_icn"])
def test_plan_gives_the_nodes_lower_gives(policy):
    """The skeleton (every handler's plan, bit widths only) and convert after PTQ (every
    handler's lower) give the same nodes: names, kinds, wiring, shapes, bits, zero points,
    signedness, geometry, weight bytes and multiplier counts."""
    from tinyopt.mixed import lower, ptq
    m = _every_kind()
    layers = dag.policy_layers(m)
    n = len(layers)
    if policy == "w8a8":
        p = Policy.uniform(m, 8, 8)
    else:
        p = Policy(layers, [[4, 2, 8][i % 3] for i in range(n)], [4] * n, "PC",
                   ["ICN"] * (n - 1) + ["FB"])
    x = np.random.default_rng(0).uniform(0, 1, (32, 10, 10, 2)).astype(np.float32)
    got = lower.convert(ptq.quantize_mixed(m, p, x))
    planned = skeleton(m, p)
    assert [lay.name for lay in planned.layers] == [lay.name for lay in got.layers]
    for a, b in zip(planned.layers, got.layers):
        for f in ("kind", "inputs", "outputs", "in_shape", "out_shape", "in_bits", "out_bits",
                  "in_zero_point", "out_zero_point", "in_signed", "out_signed", "stride",
                  "padding", "pool_size", "pad_mode", "depth_multiplier", "requantize",
                  "weight_bits", "rounding", "left_shift"):
            assert getattr(a, f) == getattr(b, f), (a.name, f)
        for f in ("weights", "m0", "weight_zero_point", "bias"):
            va, vb = getattr(a, f), getattr(b, f)
            assert (va is None) == (vb is None), (a.name, f)
            if va is not None:
                assert np.shape(va) == np.shape(vb), (a.name, f)


def test_construction_traces_the_op_alone_with_the_shapes_a_call_gives(monkeypatch):
    """Building a fake-quant model calls each QuantCompute once in tf_keras' throw-away scratch
    graph, only for its output's shape and dtype; there the layer returns its op alone
    (``FakeQuantLayer._signature_trace``: a third of the build's time on a MobileNetV2). Every
    QuantCompute of models with every compute kind (strided / padded / dilated / causal,
    Conv1D, depthwise, dense on 2-D and 3-D inputs, standalone BN) takes that path, and the
    shapes it declares are the shapes its real call gives (a wrong declared shape would break
    the next layer's build or the lowering only later, far from the cause)."""
    from tests.test_handlers_dilation import net2d, tcn
    from tinyopt.mixed import build
    from tinyopt.mixed.layers import FakeQuantLayer
    signature = FakeQuantLayer._signature_trace
    took = []

    def spy(layer):
        took.append((layer.name, signature(layer)))
        return took[-1][1]
    monkeypatch.setattr(FakeQuantLayer, "_signature_trace", spy)
    for model in (_every_kind(), tcn(), net2d()):
        took.clear()
        q = build.quantize_mixed(model, Policy.uniform(model, 4, 4))
        computes = [lay for lay in q.layers if type(lay).__name__ == "QuantCompute"]
        assert len(computes) >= 4, model.name
        assert {n for n, t in took if t} == {lay.name for lay in computes}, (model.name, took)
        probe = keras.Model(q.inputs, [lay.output for lay in computes])
        x = np.random.default_rng(0).uniform(0, 1, (2, *model.input_shape[1:]))
        for lay, y in zip(computes, probe(x.astype(np.float32))):
            assert lay.output.shape[1:] == y.shape[1:], (model.name, lay.name)
            assert lay.output.dtype == y.dtype == "float32", (model.name, lay.name)

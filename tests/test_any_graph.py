"""The sub-byte flow on graphs that are not chains (issue 15): residual adds (layer and ``x + y``),
concatenation, standalone BatchNormalization, Conv1D, linear layers inside the network, softmax
heads; the memory model's live tensors against the deployed C; the input range from the data."""
import warnings

import numpy as np
import pytest

import tinyopt  # noqa: F401
import tensorflow as tf
import tf_keras as keras
from tf_keras import layers as L

from tinyopt.deploy import mcu
from tinyopt.mixed import dag, lower, memory, ptq, verify
from tinyopt.mixed.layers import QuantModel
from tinyopt.mixed.search import BudgetError, memory_driven
from tinyopt.policy import Policy


def _residual(op_add: bool = True) -> keras.Model:
    """Conv-BN-ReLU, a residual block with a linear branch (written ``x + y``), a strided stage
    with a 1x1 linear skip conv, concatenation, a standalone BN, a softmax head."""
    inp = keras.Input((12, 12, 3), name="img")
    x = L.Conv2D(8, 3, padding="same", use_bias=False, name="c0")(inp)
    x = L.BatchNormalization(name="bn0")(x)
    x = L.ReLU(name="r0")(x)
    y = L.Conv2D(8, 3, padding="same", name="c1", activation="relu")(x)
    y = L.Conv2D(8, 3, padding="same", name="c2")(y)  # linear: signed
    x = (x + y) if op_add else L.Add(name="add0")([x, y])
    x = L.Activation("relu", name="r1")(x)
    a = L.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="c3")(x)
    b = L.Conv2D(4, 1, strides=2, activation="relu", name="c4")(x)
    x = L.Concatenate(name="cat")([a, b])
    x = L.BatchNormalization(name="bn_alone")(x)  # standalone: after a concatenation
    x = L.ReLU(6.0, name="r6")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    out = L.Dense(5, activation="softmax", name="fc")(x)
    return keras.Model(inp, out, name="residual")


def _conv1d() -> keras.Model:
    inp = keras.Input((64, 4), name="sig")
    x = L.Conv1D(16, 5, padding="same", activation="relu", name="k1")(inp)
    x = L.Conv1D(16, 3, strides=2, name="k2")(x)  # linear bottleneck into a BN + ReLU
    x = L.BatchNormalization(name="k2_bn")(x)
    x = L.ReLU(name="k2_relu")(x)
    x = L.Conv1D(8, 3, padding="same", activation="relu", name="k3")(x)
    x = L.Flatten(name="flat")(x)
    x = L.Dense(16, activation="relu", name="d1")(x)
    x = L.BatchNormalization(name="d1_bn")(x)  # BN after a ReLU Dense: standalone
    x = L.Dropout(0.2, name="drop")(x)
    out = L.Dense(4, name="d2")(x)
    return keras.Model(inp, out, name="conv1d")


def _randomize_bn(model, seed=0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, L.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                               rng.normal(0, 0.1, c), rng.uniform(0.5, 2.0, c)])


@pytest.fixture(scope="module")
def residual():
    tf.keras.utils.set_random_seed(0) if hasattr(tf.keras.utils, "set_random_seed") else None
    keras.utils.set_random_seed(0)
    m = _residual()
    _randomize_bn(m)
    return m


def _data(model, n, seed):
    """Images whose channel means vary from image to image (so that a random network's pooled
    features, and its predictions, vary too), with pixel noise on top."""
    rng = np.random.default_rng(seed)
    shape = model.input_shape[1:]
    means = rng.uniform(0, 1, (n,) + (1,) * (len(shape) - 1) + (shape[-1],))
    return np.clip(means + 0.3 * rng.uniform(-1, 1, (n, *shape)), 0, 1).astype(np.float32)


def test_blocks_of_a_residual_graph(residual):
    blocks = {b.name: b for b in dag.blocks(residual)}
    adds = [b for b in blocks.values() if b.op == "add"]
    assert len(adds) == 1 and adds[0].activation == "relu"  # x + y is an add, its ReLU fused
    assert blocks["c0"].bn is not None and blocks["c0"].activation == "relu"
    assert blocks["bn_alone"].op == "bn" and blocks["bn_alone"].activation == "relu6"
    assert blocks["fc_softmax"].op == "softmax"
    assert dag.policy_layers(residual) == ["c0", "c1", "c2", "c3", "c4", "bn_alone", "fc"]
    assert not dag.is_chain(dag.blocks(residual))


@pytest.mark.parametrize("w, a, softmax", [
    (8, 8, "int8"), pytest.param(4, 4, "logits", marks=pytest.mark.slow),
    pytest.param(2, 4, "int8", marks=pytest.mark.slow)])
def test_residual_ptq_integer_agrees_with_fake_quant(residual, w, a, softmax):
    policy = Policy.uniform(residual, w, a, "PC" if w == 2 else "PL")
    q = ptq.quantize_mixed(residual, policy, _data(residual, 200, 1), softmax=softmax)
    assert type(q.get_layer("c2")).__name__ == "QuantCompute"
    assert q.get_layer("c2").activation == "signed"
    g = lower.convert(q)
    kinds = {layer.kind for layer in g.layers}
    assert {"add", "concat", "depthwise"} <= kinds
    assert ("softmax" in kinds) == (softmax == "int8")
    res = verify.compare(q, g, _data(residual, 300, 2))
    # each layer's integer arithmetic alone is within one LSB of its fake-quant layer (in
    # practice equal: the fake-quant model snaps its accumulators onto the integer grid)
    assert res["layers"]["isolated_max_lsb"].max() <= 1
    assert res["top1_agreement"] >= 0.99
    # the network is not degenerate: its predictions vary
    assert len(np.unique(np.argmax(res["int_logits"], 1))) > 1


def test_conv1d_and_standalone_bn_lower_and_agree():
    keras.utils.set_random_seed(1)
    m = _conv1d()
    _randomize_bn(m, 1)
    blocks = {b.name: b for b in dag.blocks(m)}
    assert blocks["k1"].conv1d and blocks["k2"].bn is not None and blocks["d1_bn"].op == "bn"
    x = np.random.default_rng(3).normal(0, 2, (300, 64, 4)).astype(np.float32)
    q = ptq.quantize_mixed(m, Policy.uniform(m, 4, 4), x[:150])
    g = lower.convert(q)
    assert g.layers[0].kind == "reshape" and g.layers[1].in_shape == (1, 64, 4)
    res = verify.compare(q, g, x[150:])
    assert res["layers"]["isolated_max_lsb"].max() <= 1
    assert res["top1_agreement_1lsb"] >= 0.99
    # memory: the Conv1D layers are counted (16 x 64 activations at 4 bits = 512 B, ...)
    p8 = Policy.uniform(m, 8, 8)
    rep = memory.report(m, p8)
    assert rep.loc[rep.layer == "k1", ["in_bytes", "out_bytes"]].values.tolist() == \
        [[64 * 4, 64 * 16]]
    # the largest node: k2 reads 64 x 16 and writes 31 x 16 (valid, stride 2)
    assert memory.peak_ram_bytes(m, p8, accounting="paper") == 64 * 16 + 31 * 16
    assert memory.flash_bytes(m, p8) > 5 * 4 * 16 + 3 * 16 * 16  # k1 + k2 weights at least


@pytest.mark.slow
def test_input_range_comes_from_the_data_and_a_given_range_warns():
    m = _conv1d()
    x = np.random.default_rng(4).normal(0, 2, (100, 64, 4)).astype(np.float32)
    q = ptq.quantize_mixed(m, Policy.uniform(m, 8, 8), x)
    lo, hi = q.get_layer("input_quant").lo, q.get_layer("input_quant").hi
    assert (lo, hi) == (float(x.min()), float(x.max()))
    with pytest.warns(UserWarning, match=r"clips [\d,]+ of 25,600 calibration values"):
        ptq.quantize_mixed(m, Policy.uniform(m, 8, 8), x, input_range=(0.0, 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ptq.quantize_mixed(m, Policy.uniform(m, 8, 8), x, input_range=(-100.0, 100.0))


def _stage() -> keras.Model:
    """ResNet-8's first stage, small: the stage input is held for the skip while two convs run."""
    inp = keras.Input((8, 8, 4), name="img")
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="c0")(inp)
    y = L.Conv2D(4, 3, padding="same", activation="relu", name="c1")(x)
    y = L.Conv2D(4, 3, padding="same", name="c2")(y)
    x = L.Activation("relu", name="r")(x + y)
    x = L.Flatten(name="f")(x)
    return keras.Model(inp, L.Dense(3, name="fc")(x), name="stage")


def test_skip_tensor_stays_alive_and_the_deployed_arena_agrees(tmp_path):
    keras.utils.set_random_seed(2)
    m = _stage()
    p = Policy.uniform(m, 8, 8)
    steps = memory.live_steps(m, p, accounting="paper")
    t = 8 * 8 * 4  # one 8-bit feature map
    # c0: image + x; c1: x (held for the add) + c1; c2: x + c1 + c2; add: x + c2 + sum; fc: ...
    assert steps["live_bytes"].tolist()[:4] == [2 * t, 2 * t, 3 * t, 3 * t]
    assert memory.peak_ram_bytes(m, p, accounting="paper") == 3 * t
    # the chain rule (largest input + output) would have said 2 t
    x = _data(m, 60, 5)
    q = ptq.quantize_mixed(m, p, x[:40])
    g = lower.convert(q)
    codes = g.quantize_input(x[40:])
    # the paper's live tensors are the plan without overlaps and without kernel scratch
    live = mcu.deploy(g, codes, tmp_path, name="live", run_mcu=False, overlap=False,
                      fuse_add=False, kernels="portable")["summary"]
    assert live["host_images_exact"] == len(codes)
    assert live["arena_bytes"] == memory.peak_ram_bytes(m, p, accounting="paper")
    # the default accounting is the device's: the default deploy's arena, scratch included
    packed = mcu.deploy(g, codes, tmp_path, name="packed", run_mcu=False)["summary"]
    assert packed["host_images_exact"] == len(codes)
    assert packed["arena_bytes"] == memory.peak_ram_bytes(m, p)


def test_memory_driven_on_a_graph_fits_and_reports_the_minimum():
    m = _stage()
    p8 = Policy.uniform(m, 8, 8)
    lowest = Policy.uniform(m, 8, 2)  # the device's minimum: every activation at 2 bits
    budget = (memory.peak_ram_bytes(m, p8) + memory.peak_ram_bytes(m, lowest)) // 2
    p = memory_driven(m, 10 ** 9, budget)
    assert memory.peak_ram_bytes(m, p) <= budget < memory.peak_ram_bytes(m, p8)
    assert all(t["phase"] == "activation" for t in p.trace) and p.trace
    with pytest.raises(BudgetError) as err:
        memory_driven(m, 10 ** 9, 100)
    # the smallest arena of the uniform policies (narrower weights can shrink a kernel's scratch)
    assert err.value.min_ram == min(memory.peak_ram_bytes(m, Policy.uniform(m, w, a))
                                    for w in (8, 4, 2) for a in (8, 4, 2))
    assert f"{err.value.min_ram:,} B" in str(err.value)


def test_min_flash_is_reachable_and_below_all_lowest_bits():
    """Under PL a layer with one weight per channel is smaller at w8a8 (FB: 4C + 20 extras) than
    at 2 bits (ICN: 9C + 12): BudgetError's minimum is the true one, and a policy reaches it."""
    inp = keras.Input((4, 4, 32))
    x = L.DepthwiseConv2D(1, activation="relu", name="dw")(inp)
    m = keras.Model(inp, L.Dense(2, name="fc")(L.Flatten()(x)))
    with pytest.raises(BudgetError) as err:
        memory_driven(m, 1, 10 ** 9)
    two = memory.flash_bytes(m, Policy.uniform(m, 2, 2))
    best = memory.flash_bytes(m, Policy(["dw", "fc"], [8, 2], [8, 2]))
    assert err.value.min_flash == best < two


def test_refusals_name_the_layer():
    inp = keras.Input((8, 8, 1))
    x = L.Conv2D(2, 3, name="c")(inp)
    sm = L.Softmax(name="sm")(x)
    bad = keras.Model(inp, L.Dense(2, name="fc")(L.Flatten()(sm)))
    with pytest.raises(ValueError, match=r"'sm' \(Softmax\).*not the model output"):
        dag.blocks(bad)
    a = L.Conv2D(2, 3, activation="relu", name="a")(inp)
    b = L.Conv2D(2, 3, name="b")(inp)  # linear: signed
    mixed = keras.Model(inp, L.Dense(2, name="fc")(L.Flatten()(L.Concatenate()([a, b]))))
    from tinyopt import qat
    with pytest.raises(ValueError, match="signed .* and unsigned"):
        qat.quantize_mixed(mixed, Policy.uniform(mixed, 8, 8))
    with pytest.raises(ValueError, match="softmax must be one of"):
        qat.quantize_mixed(mixed, Policy.uniform(mixed, 8, 8), softmax="float")


@pytest.mark.slow  # (training)
def test_qat_step_and_save_load_of_a_graph_model(residual, tmp_path):
    from tinyopt import qat
    q = qat.quantize_mixed(residual, Policy.uniform(residual, 4, 4))
    q.compile("adam", "sparse_categorical_crossentropy")
    x = _data(residual, 16, 6)
    q.fit(x, np.arange(16) % 5, epochs=1, batch_size=16, verbose=0)
    path = tmp_path / "q.keras"
    q.save(path)
    back = keras.models.load_model(path)
    assert isinstance(back, QuantModel) and back.execution_order == q.execution_order
    np.testing.assert_allclose(back.predict(x, verbose=0), q.predict(x, verbose=0), atol=1e-6)


def test_tf_ops_written_as_layers_are_recognised():
    inp = keras.Input((6, 6, 2), name="img")
    a = L.Conv2D(3, 3, padding="same", activation="relu", name="a")(inp)
    b = L.Conv2D(3, 3, padding="same", activation="relu", name="b")(inp)
    c = tf.concat([a, b], axis=-1)
    d = L.Conv2D(6, 1, name="d")(c)
    s = tf.add(d, c)
    out = L.Dense(2, name="fc")(L.Flatten(name="f")(s))
    blocks = {b.op: b for b in dag.blocks(keras.Model(inp, out))}
    assert blocks["concat"].inputs == ["a", "b"] and blocks["add"].inputs == ["d", blocks[
        "concat"].name]
    bad = tf.concat([a, b], axis=1)  # along the width: refused by name
    with pytest.raises(ValueError, match=r"TF op concat.*axis 1"):
        dag.blocks(keras.Model(inp, L.Dense(2)(L.Flatten()(bad))))


def test_deployed_param_bytes_are_what_the_c_stores(tmp_path):
    keras.utils.set_random_seed(3)
    m = _stage()
    x = _data(m, 40, 7)
    for w, a, g in ((8, 8, "PL"), (4, 2, "PC"), (2, 4, "PL")):
        p = Policy.uniform(m, w, a, g)
        q = ptq.quantize_mixed(m, p, x)
        graph = lower.convert(q)
        from tinyopt.deploy import codegen
        export = codegen.export_c(graph, tmp_path / f"{w}{a}{g}")
        assert memory.deployed_param_bytes(m, p) == sum(export.param_bytes.values())

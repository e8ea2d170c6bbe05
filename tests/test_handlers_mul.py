"""The ``mul`` block kind of the sub-byte Keras path (issue 28, tinyopt/mixed/handlers/mul.py):
squeeze-and-excite's product of the features and a per-channel gate (MobileNetV3's form: GAP
keepdims, two 1 x 1 convolutions, hard-sigmoid; EfficientNet's: GAP, Reshape, swish and sigmoid
convolutions), and a same-shape product ``x * y``.

What we check: the reader (the full-size operand first, the refusals named), QuantMul against
the integer ``mul`` arithmetic on codes at 2/4/8 bits (bit-exact), PTQ -> convert -> the
simulator against the fake-quant model (the mul nodes exact, isolated and chained), the
skeleton equal to the converted graph, peak RAM equal to the deployed arena, the policy
search's controllers of a mul's output, memory_driven at half of w8a8, the C on the host equal
to the simulator, save / load.
"""
import numpy as np
import pytest

import tinyopt  # noqa: F401
import tensorflow as tf
import tf_keras as keras
from tf_keras import layers as L

from tinyopt.integer import steps
from tinyopt.integer.arith import m0_n0
from tinyopt.integer.ops.mul import mul_codes
from tinyopt.mixed import dag, lower, memory, ptq, verify
from tinyopt.mixed.graph_layers import QuantMul
from tinyopt.mixed.policy import Policy
from tinyopt.mixed.skeleton import Structure, skeleton

FORMS = ("mv3", "effnet", "relu", "same")


def hard_sigmoid(x):
    """Keras' MobileNetV3 hard_sigmoid (tf_keras.applications.mobilenet_v3)."""
    return L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)


def se_net(form: str) -> keras.Model:
    """A conv, a product with a gate (``form``), a pointwise, GAP, Dense.

    mv3: hard-swish features (signed) times MobileNetV3's SE gate (hard-sigmoid), Multiply;
    effnet: swish features (signed) times EfficientNet's SE gate (sigmoid), Multiply;
    relu: ReLU features (unsigned) times a sigmoid gate, the gate first (Multiply([gate, x]));
    same: ReLU features times a ReLU pointwise of them, same shape, the TF op ``y * x``.
    """
    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 3), name="img")
    x = L.Conv2D(16, 3, padding="same", name="c0")(inp)
    x = L.BatchNormalization(name="bn0")(x)
    if form == "mv3":
        x = L.Multiply(name="hswish")([x, hard_sigmoid(x)])
        s = L.GlobalAveragePooling2D(keepdims=True, name="se_pool")(x)
        s = L.Conv2D(4, 1, name="se_reduce")(s)
        s = L.ReLU(name="se_relu")(s)
        s = hard_sigmoid(L.Conv2D(16, 1, name="se_expand")(s))
        x = L.Multiply(name="se_mul")([x, s])
    elif form == "effnet":
        x = L.Activation("swish", name="swish0")(x)
        s = L.GlobalAveragePooling2D(name="se_squeeze")(x)
        s = L.Reshape((1, 1, 16), name="se_reshape")(s)
        s = L.Conv2D(4, 1, activation="swish", name="se_reduce")(s)
        s = L.Conv2D(16, 1, activation="sigmoid", name="se_expand")(s)
        x = L.Multiply(name="se_mul")([x, s])
    elif form == "relu":
        x = L.ReLU(name="r0")(x)
        s = L.GlobalAveragePooling2D(keepdims=True, name="se_pool")(x)
        s = L.Conv2D(16, 1, activation="sigmoid", name="se_expand")(s)
        x = L.Multiply(name="se_mul")([s, x])  # the gate first
    else:
        x = L.ReLU(name="r0")(x)
        y = L.Conv2D(16, 1, activation="relu", name="pw")(x)
        x = y * x
    x = L.Conv2D(32, 3, name="proj")(x)  # weights dominate flash: half of w8a8 is reachable
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inp, L.Dense(5, name="fc")(x), name=f"se_{form}")


def images(n=32, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (n, 12, 12, 3)).astype(np.float32)


def mixed(m) -> Policy:
    """4-bit and 2-bit layers with 8-bit ones: operands of different widths meet at the mul."""
    names = dag.policy_layers(m)
    return Policy(names, [[4, 8, 2][i % 3] for i in range(len(names))],
                  [[4, 2, 8][i % 3] for i in range(len(names))])


def _mul(m):
    return next(b for b in dag.blocks(m) if b.op == "mul")


# ------------------------------------------------------------------------------ the reader
def test_blocks_put_the_full_size_operand_first():
    b = _mul(se_net("mv3"))
    assert b.name == "se_mul" and b.inputs[0] == "hswish" and b.config["broadcast"]
    assert b.inputs[1].startswith("tf.math.multiply")  # the hard-sigmoid block's output
    b = _mul(se_net("effnet"))
    assert b.inputs == ["swish0", "se_expand_sigmoid"] and b.config["broadcast"]
    b = _mul(se_net("relu"))
    assert b.inputs == ["c0", "se_expand_sigmoid"]  # swapped: the gate came first
    b = _mul(se_net("same"))
    assert b.inputs == ["pw", "c0"] and not b.config["broadcast"]  # c0: conv, BN and ReLU
    assert b.layer.symbol in ("math.multiply", "__operators__.mul")
    # the mul is no policy layer; the policy layers are the convolutions
    assert dag.policy_layers(se_net("relu")) == ["c0", "se_expand", "proj", "fc"]


def _small(x_fn):
    inp = keras.Input((6, 6, 4), name="img")
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="c0")(inp)
    x = x_fn(x)
    return keras.Model(inp, L.Dense(2, name="fc")(L.Flatten(name="f")(x)))


def test_a_multiply_by_a_constant_is_refused_with_the_fix():
    m = _small(lambda x: x * 2.0)
    with pytest.raises(ValueError, match=r"'tf.math.multiply(_\d+)?' \(TF op math.multiply\).*"
                                         r"multiply by a constant"):
        dag.blocks(m)


def test_a_product_of_three_tensors_is_refused():
    m = _small(lambda x: L.Multiply(name="m3")([x, x, x]))
    with pytest.raises(ValueError, match=r"'m3' \(Multiply\).*product of 3 tensors"):
        dag.blocks(m)


def test_a_broadcast_other_than_per_channel_is_refused():
    def rows_times_columns(x):
        a = L.AveragePooling2D((6, 1), name="rows")(x)  # (1, 6, 4)
        b = L.AveragePooling2D((1, 6), name="cols")(x)  # (6, 1, 4)
        return L.Multiply(name="outer")([a, b])

    with pytest.raises(ValueError, match=r"'outer' \(Multiply\).*\(1, 6, 4\) and \(6, 1, 4\) "
                                         r"-> \(6, 6, 4\).*one value per channel"):
        dag.blocks(_small(rows_times_columns))
    # the memory model and the policy search refuse it the same way (they read the blocks)
    with pytest.raises(ValueError, match="'outer'"):
        memory.peak_ram_bytes(_small(rows_times_columns),
                              Policy(["c0", "fc"], [8, 8], [8, 8]))


# ----------------------------------------------------------------------- the fake-quant layer
@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("signed", [True, False])
def test_quantmul_is_the_integer_mul_bit_for_bit(bits, signed):
    """QuantMul on fake-quant operands equals ops.mul.mul_codes (the simulator's arithmetic)
    with the multiplier m0_n0(S_a S_b / S_out), every element, clamps included."""
    rng = np.random.default_rng(bits)
    ga = (bits, 0.37 / 2 ** (bits - 1), 2 ** (bits - 1) if signed else 0)  # bits, scale, zp
    gb = (4, 1.0 / 16, 0)  # a sigmoid-like gate: unsigned, fixed scale 1/2^Q
    ca = rng.integers(0, 2 ** ga[0], (16, 5, 5, 6))
    cb = rng.integers(0, 2 ** gb[0], (16, 1, 1, 6))
    a = ((ca - ga[2]) * np.float32(ga[1])).astype(np.float32)
    b = ((cb - gb[2]) * np.float32(gb[1])).astype(np.float32)
    q = QuantMul(bits, signed, "a,b", alpha_decay=0.0, name="m")
    q.input_scale = [lambda: tf.constant(ga[1], tf.float32),
                     lambda: tf.constant(gb[1], tf.float32)]
    q([tf.constant(a), tf.constant(b)])  # builds the layer (its alpha)
    q.alpha.assign(0.2)  # clips part of the products (the clamps are exercised)
    y = q([tf.constant(a), tf.constant(b)]).numpy()
    s_out = float(q.output_scale().numpy())
    zo = 2 ** (bits - 1) if signed else 0
    m0, n0 = m0_n0(np.array([(ga[1] * gb[1]) / s_out]))
    want = mul_codes(ca, cb, ga[2], gb[2], int(m0[0]), int(n0[0]), "floor", zo, 0,
                     2 ** bits - 1)
    got = np.round(y / s_out) + zo
    assert np.array_equal(got, want)
    assert len(np.unique(want)) > 2 ** bits // 2  # most codes used: a real test
    assert np.any(want == 2 ** bits - 1) and np.any(want == 0)  # both clamps reached
    assert q.grid() == {"scale": s_out, "zero_point": zo, "bits": bits, "signed": signed}


def test_quantmul_gradients_are_pacts():
    q = QuantMul(4, True, "a,b", alpha_decay=0.0, name="m")
    q.input_scale = [lambda: tf.constant(0.1), lambda: tf.constant(1 / 16)]
    a = tf.constant(np.linspace(-1.5, 1.5, 31, dtype=np.float32).reshape(1, 31, 1, 1))
    b = tf.constant([[[[0.5]]]])
    q([a, b])
    q.alpha.assign(0.5)
    with tf.GradientTape() as tape:
        tape.watch(a)
        y = tf.reduce_sum(q([a, b]))
    da, dalpha = tape.gradient(y, [a, q.alpha])
    y = a.numpy() * 0.5
    inside = (y >= -0.5) & (y < 0.5)  # pact_signed's straight-through range [-alpha, alpha)
    assert np.allclose(da.numpy()[inside], 0.5) and np.all(da.numpy()[~inside] == 0)
    assert float(dalpha) != 0  # the clipped products move the clip


# ------------------------------------------------------------------ PTQ, convert, the memory
@pytest.mark.slow  # PTQ and conversion of small models (~5 s each)
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("label", ["w8a8", "mixed"])
def test_ptq_convert_verify_and_the_memory_model(form, label):
    m = se_net(form)
    p = Policy.uniform(m, 8, 8) if label == "w8a8" else mixed(m)
    x = images()
    res = ptq.calibrate(m, p, x)
    name = "se_mul" if form != "same" else _mul(m).name
    row = next(r for r in res.calibration if r["layer"] == name)
    assert row["op"] == "mul" and row["alpha"] > 0  # its clip calibrated
    g = lower.convert(res.model)
    node = next(n for n in g.layers if n.name == name)
    assert node.kind == "mul" and (node.rounding or g.rounding) == "floor"
    full = {"mv3": "hswish", "effnet": "swish0", "relu": "c0", "same": "pw"}[form]
    assert node.inputs[0] == full
    assert node.out_zero_point == (2 ** (node.out_bits - 1) if form in ("mv3", "effnet")
                                   else 0)  # signed unless both operands are >= 0
    widths = [g.tensor(t).bits for t in node.inputs]
    assert node.out_bits == max(widths)
    # the integer graph against the fake-quant model: the mul exact, alone and in the chain
    r = verify.compare(res.model, g, images(16, seed=3))
    t = r["layers"].set_index("layer")
    assert t.loc[name, "isolated_max_lsb"] == 0, t
    assert t.loc[name, "chained_max_lsb"] <= t.loc[node.inputs[0], "chained_max_lsb"] + 1, t
    assert r["top1_agreement_1lsb"] >= 0.8
    # the skeleton is the converted graph; the memory model is the deployed arena
    sk = skeleton(m, p)
    fields = ("kind", "name", "inputs", "outputs", "in_shape", "out_shape", "in_bits",
              "out_bits", "out_zero_point", "in_signed", "out_signed")
    assert [tuple(getattr(n, f) for f in fields) for n in sk.layers] == \
        [tuple(getattr(n, f) for f in fields) for n in g.layers]
    assert memory.peak_ram_bytes(m, p) == steps.plan(g)[1]


def test_the_controllers_of_a_mul_output_are_its_operands_layers():
    m = se_net("relu")
    s = Structure(m)
    act = {"c0": 8, "se_expand": 8, "proj": 8, "fc": 8}
    s.graph(act, act)
    bits = s.bits_of(act)
    assert bits["se_mul"] == 8
    # the gate (the sigmoid's table output) has se_expand's bits, the features c0's
    assert s.controllers("se_mul", bits) == {"c0", "se_expand"}
    narrow = {**act, "se_expand": 4}
    s.graph(act, narrow)
    bits = s.bits_of(narrow)
    assert bits["se_mul"] == 8 and bits["se_expand_sigmoid"] == 4
    assert s.controllers("se_mul", bits) == {"c0"}  # only the wider operand sets it
    # the paper accounting's tensors: the mul a step reading both operands
    g = memory.mem_graph(m)
    step = next(st for st in g.steps if st[0] == "se_mul")
    assert step[1] == ("c0", "se_expand_sigmoid") and g.tensors["se_mul"].kind == "derived"


@pytest.mark.slow
@pytest.mark.parametrize("form", ["mv3", "effnet"])
def test_memory_driven_at_half_of_w8a8(form):
    m = se_net(form)
    p8 = Policy.uniform(m, 8, 8)
    flash, ram = memory.flash_bytes(m, p8) // 2, memory.peak_ram_bytes(m, p8) // 2
    from tinyopt.mixed.search import memory_driven
    p = memory_driven(m, flash, ram)
    assert memory.flash_bytes(m, p) <= flash and memory.peak_ram_bytes(m, p) <= ram
    g = lower.convert(ptq.quantize_mixed(m, p, images()))
    assert memory.peak_ram_bytes(m, p) == steps.plan(g)[1]


@pytest.mark.slow
@pytest.mark.parametrize("form,label", [("mv3", "w8a8"), ("mv3", "mixed"), ("effnet", "mixed"),
                                        ("same", "mixed")])
def test_the_c_on_the_host_is_the_simulator(form, label, tmp_path):
    from tinyopt.deploy import codegen, mcu
    m = se_net(form)
    p = Policy.uniform(m, 8, 8) if label == "w8a8" else mixed(m)
    g = lower.convert(ptq.quantize_mixed(m, p, images()))
    codes = g.quantize_input(images(8, seed=5))
    for kernels in ("portable", "m7"):
        export = codegen.export_c(g, tmp_path / kernels, kernels=kernels)
        exe = mcu.build_host(export, build_dir=tmp_path / f"build_{kernels}")
        got = mcu.run_host(exe, export, codes, work_dir=tmp_path / f"run_{kernels}")
        assert np.array_equal(got, codegen.reference_output(g, codes)), kernels


@pytest.mark.slow
def test_the_fake_quant_model_saves_and_loads(tmp_path):
    m = se_net("mv3")
    q = ptq.quantize_mixed(m, mixed(m), images())
    q.save(tmp_path / "q.keras")
    back = keras.models.load_model(tmp_path / "q.keras")
    x = images(8, seed=3)
    assert np.array_equal(q(x).numpy(), back(x).numpy())
    assert type(back.get_layer("se_mul")).__name__ == "QuantMul"

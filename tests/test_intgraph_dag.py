"""The integer graph as a DAG: tensors and wiring, topological order, validation that names the
node and field, save / load (format 2, version-1 chains still load), the simulator on a
hand-built DAG, the gemmlowp fixed-point softmax, and the C export's plan of a DAG."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tinyopt.deploy import codegen
from tinyopt.integer import sim
from tinyopt.integer.arith import tflite_quantize_multiplier
from tinyopt.integer.graph import VERSION, IntegerGraph, IntegerLayer, Tensor


def _conv(name, inputs, c_in, c_out, zp_in, zp_out, seed, k=1):
    rng = np.random.default_rng(seed)
    lay = IntegerLayer(kind="pointwise" if k == 1 else "conv2d", name=name, in_shape=(6, 6, c_in),
                       out_shape=(6, 6, c_out), in_bits=8, in_signed=True, in_zero_point=zp_in,
                       out_bits=8, out_signed=True, out_zero_point=zp_out, inputs=inputs,
                       outputs=(name,), padding=(k // 2,) * 4, rounding="tflite_double")
    lay.set_weights(rng.integers(0, 256, (c_out, k, k, c_in)), 8)
    lay.weight_zero_point = np.array([128], np.int32)
    lay.bias = rng.integers(-500, 500, c_out).astype(np.int32)
    lay.m0, lay.n0 = tflite_quantize_multiplier(rng.uniform(0.001, 0.004, c_out))
    return lay


def dag() -> IntegerGraph:
    """input -> a (3x3 conv) -> b (1x1) ; a + b -> add -> pad -> concat(pad, pad) -> flatten
    -> softmax. Layers listed in a topological order."""
    a = _conv("a", ("x",), 3, 4, -5, 3, 0, k=3)
    b = _conv("b", ("a",), 4, 4, 3, -7, 1)
    q, e = tflite_quantize_multiplier([0.5, 0.25, 1.5 / (1 << 20)])
    add = IntegerLayer(kind="add", name="sum", in_shape=(6, 6, 4), out_shape=(6, 6, 4),
                       in_bits=8, in_signed=True, in_zero_point=3, out_signed=True,
                       out_zero_point=-2, inputs=("a", "b"), outputs=("s",), left_shift=20,
                       m0=q, n0=e, act_min=-2, rounding="tflite_double")
    pad = IntegerLayer(kind="pad", name="pad", in_shape=(6, 6, 4), out_shape=(7, 8, 4),
                       in_signed=True, out_signed=True, in_zero_point=-2, out_zero_point=-2,
                       padding=(1, 0, 1, 1), inputs=("s",), outputs=("p",))
    cat = IntegerLayer(kind="concat", name="cat", in_shape=(7, 8, 4), out_shape=(7, 8, 8),
                       in_signed=True, out_signed=True, in_zero_point=-2, out_zero_point=-2,
                       axis=-1, inputs=("p", "p"), outputs=("c",))
    flat = IntegerLayer(kind="flatten", name="flat", in_shape=(7, 8, 8), out_shape=(448,),
                        in_signed=True, out_signed=True, in_zero_point=-2, out_zero_point=-2,
                        inputs=("c",), outputs=("f",))
    sq, se = tflite_quantize_multiplier(min(0.1 * (1 << 26), 2**31 - 1))
    soft = IntegerLayer(kind="softmax", name="soft", in_shape=(448,), out_shape=(448,),
                        in_signed=True, out_signed=True, in_zero_point=-2, out_zero_point=-128,
                        out_scale=1 / 256, m0=sq, n0=se,
                        diff_min=-int(np.floor(31 * 2**26 / 2 ** int(se[0]))),
                        inputs=("f",), outputs=("y",))
    return IntegerGraph([a, b, add, pad, cat, flat, soft], input_shape=(6, 6, 3),
                        input_signed=True, input_zero_point=-5, rounding="tflite_double",
                        input_name="x", outputs=["y"], name="dag",
                        tensors={"s": Tensor("s", (6, 6, 4), 8, True, -2, 0.1)})


def _x(n=7, seed=0):
    return np.random.default_rng(seed).integers(-128, 128, (n, 6, 6, 3))


def test_dag_wiring_order_and_simulation():
    g = dag()
    g.validate()
    assert not g.is_chain() and g.output_names() == ["y"]
    assert g.order() == list(range(7))
    assert g.tensor("s").scale == 0.1 and g.tensor("b").zero_point == -7  # explicit / derived
    trace = sim.run(g, _x(), trace=True)
    a, b, s = trace["a"].astype(np.int64), trace["b"].astype(np.int64), trace["sum"]
    # ADD by hand: (x - z) << 20, each rescaled, summed, rescaled, + z_out, clamp [-2, 127]
    rq = sim.requant_tflite_double
    want = rq(rq((a - 3) << 20, 0 + g["sum"].m0[0], g["sum"].n0[0])
              + rq((b + 7) << 20, g["sum"].m0[1], g["sum"].n0[1]), g["sum"].m0[2],
              g["sum"].n0[2]) - 2
    np.testing.assert_array_equal(s, np.clip(want, -2, 127))
    p = trace["pad"]
    assert p.shape == (7, 7, 8, 4) and np.all(p[:, 0] == -2) and np.all(p[:, :, [0, 7]] == -2)
    np.testing.assert_array_equal(trace["cat"][..., :4], trace["cat"][..., 4:])
    y = sim.run(g, _x())
    np.testing.assert_array_equal(y, trace["soft"])
    # the listing order does not matter: the simulator runs a topological order
    h = dag()
    h.layers = [h.layers[i] for i in (6, 2, 0, 4, 1, 5, 3)]
    assert [h.layers[i].name for i in h.order()][:2] == ["a", "b"]
    np.testing.assert_array_equal(sim.run(h, _x()), y)


def test_softmax_fixed_point_is_close_to_float():
    rng = np.random.default_rng(0)
    logits = rng.integers(-128, 128, (50, 10))
    scale = 0.07
    q, e = tflite_quantize_multiplier(scale * (1 << 26))
    diff_min = -int(np.floor(31 * 2**26 / 2 ** int(e[0])))
    got = sim.softmax_int8(logits, int(q[0]), int(e[0]), diff_min, "tflite_double")
    z = np.exp(scale * (logits - logits.max(1, keepdims=True)))
    want = np.clip(np.round(z / z.sum(1, keepdims=True) * 256) - 128, -128, 127)
    assert np.abs(got - want).max() <= 1
    a = -rng.integers(0, 31 << 26, 1000)
    exp = sim.exp_on_negative_values_q5_26(a) / 2.0**31
    np.testing.assert_allclose(exp, np.exp(a / 2.0**26), atol=2e-7)


@pytest.mark.parametrize("edit, match", [
    (lambda g: setattr(g["b"], "inputs", ("nowhere",)),
     "'b'.*field inputs.*'nowhere'"),
    (lambda g: setattr(g["a"], "inputs", ("f",)), "cycle"),
    (lambda g: setattr(g["b"], "outputs", ("a",)), "tensor 'a' is written by nodes 'a' and 'b'"),
    (lambda g: setattr(g["sum"], "inputs", ("a",)), "'sum' \\(add\\).*inputs names 1"),
    (lambda g: setattr(g["b"], "in_zero_point", 4), "'b'.*field in_zero_point is 4.*'a'"),
    (lambda g: setattr(g["sum"], "out_zero_point", 0), "'sum'.*field out_zero_point.*'s'"),
    (lambda g: setattr(g["cat"], "out_shape", (7, 8, 4)), "'cat'.*concatenation"),
    (lambda g: setattr(g["pad"], "padding", (1, 1, 1, 1)), "'pad'.*padded"),
    (lambda g: setattr(g["sum"], "m0", g["sum"].m0[:2]), "'sum'.*m0 must hold 3"),
    # one m0 with per-channel n0: the C would requantize every channel by n0[0] (hG, session 17)
    (lambda g: setattr(g["b"], "m0", g["b"].m0[:1]), "'b'.*m0 has 1 entries and n0 4"),
    (lambda g: setattr(g["b"], "n0", g["b"].n0[:1]), "'b'.*m0 has 4 entries and n0 1"),
    (lambda g: setattr(g, "outputs", ["zz"]), "graph output 'zz'"),
])
def test_validate_names_node_and_field(edit, match):
    g = dag()
    edit(g)
    with pytest.raises(ValueError, match=match):
        g.validate()


def test_save_load_round_trip_and_version_1(tmp_path):
    g = dag()
    path = g.save(tmp_path / "dag.npz")
    h = IntegerGraph.load(path)
    assert [lay.inputs for lay in h.layers] == [lay.inputs for lay in g.layers]
    assert h.tensors == g.tensors and h.outputs == ["y"] and h.input_name == "x"
    np.testing.assert_array_equal(sim.run(h, _x()), sim.run(g, _x()))
    with np.load(path) as npz:
        assert json.loads(npz["header"].tobytes().decode())["version"] == VERSION == 2
    # a version-1 file (a chain: no tensors, no wiring) still loads, as chain shorthand
    chain = IntegerGraph([_conv("c1", (), 3, 4, -5, 0, 0), _conv("c2", (), 4, 2, 0, 1, 1)],
                         input_shape=(6, 6, 3), input_signed=True, input_zero_point=-5,
                         rounding="tflite_double")
    for lay in chain.layers:
        lay.outputs = ()
    p1 = chain.save(tmp_path / "v1.npz")
    with np.load(p1) as npz:
        arrays = {k: npz[k] for k in npz.files}
    header = json.loads(arrays["header"].tobytes().decode())
    header["version"] = 1
    header.pop("tensors")
    for rec in header["layers"]:
        for key in ("inputs", "outputs", "axis", "left_shift", "diff_min"):
            rec.pop(key)
    for key in ("input_name", "outputs"):
        header["graph"].pop(key)
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(tmp_path / "old.npz", **arrays)
    old = IntegerGraph.load(tmp_path / "old.npz")
    assert old.is_chain() and old.wiring()[1][0] == ("c1",)
    np.testing.assert_array_equal(sim.run(old, _x()), sim.run(chain, _x()))


def test_c_export_plans_a_dag_and_a_chain(tmp_path):
    # DAGs are exported since issue 14 part 4 (tests/test_deploy_dag.py runs them bit-exactly)
    steps, arena = codegen.plan(dag())
    assert [s.layer.name for s in steps] == ["a", "b", "pad", "cat", "soft"] and arena > 0
    chain = IntegerGraph([_conv("c1", (), 3, 4, -5, 0, 0)], input_shape=(6, 6, 3),
                         input_signed=True, input_zero_point=-5, rounding="tflite_double")
    chain.layers[0].outputs = ()
    steps, _ = codegen.plan(chain)
    assert [s.layer.name for s in steps] == ["c1"]

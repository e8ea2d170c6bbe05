"""``mul`` on the sub-byte path's packed codes (tinyopt/integer/ops/mul.py,
tinyopt/deploy/c/ops/tn_mul.c): hand-built graphs at 8, 4 and 2 bits, signed grids (zero point
2^(bits-1)) and unsigned ones (zero point 0), a full-size product and a squeeze-excite gate
broadcast per channel, "floor" rounding; the simulator against a float64 reference of the integer
formula on every element, the C on the host against the simulator; widths that differ between
the inputs and the output; the planner's in-place writes over a packed input (same and different
widths); the refusals."""
from __future__ import annotations

import numpy as np
import pytest

from tests.test_op_subbyte_common import (BITS, GRIDS, codes, compute_node, fields,
                                          floor_reference, grid, host_exact, multiplier,
                                          needs_gcc, trace)
from tinyopt.integer.fixedpoint import value_range
from tinyopt.integer.graph import IntegerGraph, IntegerLayer, Tensor
from tinyopt.integer.ops import mul

SHAPE = (6, 5, 4)


def mul_node(name, a: str, b: str, ga: dict, gout: dict, real: float, shape=SHAPE):
    m0, n0 = multiplier(real)
    return IntegerLayer(kind="mul", name=name, in_shape=shape, out_shape=shape, inputs=(a, b),
                        outputs=(name,), m0=m0, n0=n0, **fields("in", ga), **fields("out", gout))


def spanning(ga: dict, gb: dict, gout: dict) -> float:
    """A product multiplier that maps typical |Phi| onto the output's range (some clamping)."""
    if ga["zero_point"] == 0 and gb["zero_point"] == 0 and not ga["signed"]:  # Phi >= 0
        return (2 ** gout["bits"] - 1) / (0.6 * (2 ** ga["bits"] - 1) * (2 ** gb["bits"] - 1))
    return 2.0 ** gout["bits"] / (2.0 ** (ga["bits"] + gb["bits"]) / 8)


def se_graph(ga: dict, gb: dict, gg: dict, g1: dict, g2: dict, seed: int = 0):
    """x -> a (quantize), b (pointwise), gate (depthwise over H x W -> (1, 1, C));
    m1 = a * b (full size), m2 = m1 * gate (broadcast per channel); output m2."""
    rng = np.random.default_rng(seed)
    c = SHAPE[-1]
    qm0, qn0 = multiplier(rng.uniform(0.7, 1.3))
    a = IntegerLayer(kind="quantize", name="a", in_shape=SHAPE, out_shape=SHAPE, inputs=("x",),
                     outputs=("a",), m0=qm0, n0=qn0, **fields("in", ga), **fields("out", ga))
    b = compute_node("pointwise", "b", "x", SHAPE, SHAPE, ga, gb, (c, 1, 1, c), gb["bits"], rng)
    g = compute_node("depthwise", "gate", "x", SHAPE, (1, 1, c), ga, gg, (*SHAPE[:2], c),
                     gg["bits"], rng, per_channel=False)
    m1 = mul_node("m1", "a", "b", ga, g1, spanning(ga, gb, g1))
    m2 = mul_node("m2", "m1", "gate", g1, g2, spanning(g1, gg, g2))
    graph = IntegerGraph([a, b, g, m1, m2], SHAPE, input_bits=ga["bits"],
                         input_signed=ga["signed"], input_zero_point=ga["zero_point"],
                         rounding="floor", input_name="x", outputs=["m2"])
    graph.validate()
    return graph


def reference(t: dict, node: IntegerLayer, a: str, b: str, za: int, zb: int) -> np.ndarray:
    """The float64 reference of one mul node from its inputs' traced codes."""
    phi = (t[a].astype(np.int64) - za) * (t[b].astype(np.int64) - zb)
    y = floor_reference(phi, node.m0[0], node.n0[0]) + node.out_zero_point
    return np.clip(y, *node.out_range)


CASES = [(bits, kind) for bits in BITS for kind in GRIDS]


@pytest.fixture(scope="module", params=CASES, ids=[f"{b}bit-{k}" for b, k in CASES])
def case(request):
    bits, kind = request.param
    g = grid(bits, kind)
    graph = se_graph(g, g, g, g, g, seed=bits)
    x = codes(np.random.default_rng(bits + 10), (24, *SHAPE), g)
    return bits, kind, graph, x


def test_simulator_is_the_float_reference(case):
    """Every element of both muls equals floor((a - z_a)(b - z_b) m0 2^(n0 - 31)) + z_out,
    clamped; the outputs use most of the code range (a constant would prove nothing)."""
    bits, kind, graph, x = case
    t = trace(graph, x)
    m1, m2 = graph.layers[3], graph.layers[4]
    za = graph.tensor("a").zero_point
    np.testing.assert_array_equal(t["m1"], reference(t, m1, "a", "b", za,
                                                     graph.tensor("b").zero_point))
    np.testing.assert_array_equal(t["m2"], reference(t, m2, "m1", "gate", m1.out_zero_point,
                                                     graph.tensor("gate").zero_point))
    assert t["gate"].shape == (len(x), 1, 1, SHAPE[-1])
    for name in ("m1", "m2"):
        lo, hi = value_range(bits, False)
        assert len(np.unique(t[name])) >= min(hi - lo, 12), name
        assert t[name].min() >= lo and t[name].max() <= hi


def test_fast_engine_agrees(case):
    _, _, graph, x = case
    from tinyopt.integer import sim
    np.testing.assert_array_equal(sim.run(graph, x), sim.run(graph, x, engine="reference"))


@needs_gcc
def test_c_on_the_host_is_the_simulator(case, tmp_path):
    """Both muls exported and run; the planner writes m1 over a and m2 over m1 (in place)."""
    _, _, graph, x = case
    e = host_exact(graph, x, tmp_path, "tn_mul.c")
    steps = {s.layer.name: s for s in e.steps}
    assert steps["m1"].out_offset == steps["m1"].in_offsets[0], "m1 should run in place over a"
    assert steps["m2"].out_offset == steps["m2"].in_offsets[0], "m2 should run in place"


MIXED = {  # (a, b, gate, m1, m2): widths that differ between inputs and output
    "4x8->2,2x8->4": (grid(4, "signed"), grid(8, "unsigned"), grid(8, "unsigned"),
                      grid(2, "signed"), grid(4, "unsigned")),
    "2x4->8,8x2->2": (grid(2, "unsigned"), grid(4, "signed"), grid(2, "signed"),
                      grid(8, "signed"), grid(2, "signed")),
    "int8": (grid(8, "int8"), grid(8, "int8"), grid(8, "int8"), grid(8, "int8"),
             grid(8, "int8")),
}


@pytest.mark.parametrize("name", sorted(MIXED))
def test_mixed_widths(name, tmp_path):
    ga, gb, gg, g1, g2 = MIXED[name]
    graph = se_graph(ga, gb, gg, g1, g2, seed=7)
    x = codes(np.random.default_rng(8), (24, *SHAPE), ga)
    t = trace(graph, x)
    np.testing.assert_array_equal(t["m1"], reference(t, graph.layers[3], "a", "b",
                                                     ga["zero_point"], gb["zero_point"]))
    np.testing.assert_array_equal(t["m2"], reference(t, graph.layers[4], "m1", "gate",
                                                     g1["zero_point"], gg["zero_point"]))
    assert len(np.unique(t["m2"])) >= min(2 ** g2["bits"] - 1, 12)
    if needs_gcc.args[0]:
        pytest.skip("no gcc on this machine")
    host_exact(graph, x, tmp_path, "tn_mul.c")


@needs_gcc
@pytest.mark.parametrize("widths", [(2, 4), (4, 2), (2, 8), (4, 8)])
def test_in_place_over_a_narrower_or_wider_input(widths, tmp_path):
    """Two elements: a 2-bit and a 4-bit tensor both take one byte. The planner puts an output
    over an input only when their element widths are equal too (integer.steps.memory_plan: an
    element-wise kernel of another op could overwrite unread codes), so the mul writes a
    buffer of its own here; the kernel itself also walks backward when its output is wider
    than the input it overwrites (run in place by a caller that plans it so). Checked to the
    bit on every input pair."""
    bi, bo = widths
    shape = (1, 1, 2)
    gi, go = grid(bi, "signed"), grid(bo, "signed")
    m0, n0 = multiplier(0.9)
    a = IntegerLayer(kind="quantize", name="a", in_shape=shape, out_shape=shape, inputs=("x",),
                     outputs=("a",), m0=m0, n0=n0, **fields("in", gi), **fields("out", gi))
    gate = IntegerLayer(kind="quantize", name="g", in_shape=shape, out_shape=shape,
                        inputs=("x",), outputs=("g",), m0=m0 // 2, n0=n0,
                        **fields("in", gi), **fields("out", gi))
    m = mul_node("m", "a", "g", gi, go, 2.0 ** bo / 2 ** (2 * bi) * 3, shape)
    graph = IntegerGraph([a, gate, m], shape, input_bits=bi, input_zero_point=gi["zero_point"],
                         rounding="floor", input_name="x", outputs=["m"])
    lo, hi = value_range(bi, False)
    grid_pts = np.arange(lo, hi + 1)
    x = np.stack(np.meshgrid(grid_pts, grid_pts), -1).reshape(-1, *shape)
    e = host_exact(graph, x, tmp_path, "tn_mul.c")
    step = next(s for s in e.steps if s.layer.name == "m")
    assert step.out_offset not in step.in_offsets  # widths differ: never in place


def test_refusals():
    g4 = grid(4, "signed")
    node = mul_node("m", "a", "b", g4, g4, 0.1)
    node.validate()
    node.in_bits = 3
    with pytest.raises(ValueError, match="3-bit; this op takes packed codes of 2, 4, 8 bits"):
        node.validate()
    node.in_bits = 4
    a = Tensor("a", SHAPE, 4, False, 8)
    with pytest.raises(ValueError, match="input 'b' is 16-bit"):
        mul.check_inputs(node, "m", [a, Tensor("b", SHAPE, 16, False, 0)])
    with pytest.raises(ValueError, match="'a' is unsigned but input 'b' is signed"):
        mul.check_inputs(node, "m", [a, Tensor("b", SHAPE, 8, True, 0)])
    with pytest.raises(ValueError, match="one value per channel"):
        mul.check_inputs(node, "m", [a, Tensor("b", (6, 1, 4), 4, False, 8)])
    mul.check_inputs(node, "m", [a, Tensor("b", (1, 1, 4), 2, False, 2)])
    node.m0 = np.array([-5], np.int32)
    with pytest.raises(ValueError, match="m0 must be >= 0"):
        node.validate()

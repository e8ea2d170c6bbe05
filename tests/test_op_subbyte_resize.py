"""``resize_nearest`` on the sub-byte path's packed codes (tinyopt/integer/ops/resize_nearest.py,
tinyopt/deploy/c/ops/tn_resize_nearest.c): Keras UpSampling2D's nearest rule (half-pixel
centres, no corner alignment) is ``np.repeat`` for integer factors; hand-built graphs at 8, 4
and 2 bits, signed and unsigned grids, integer factors and a non-integer resize; the simulator
against that reference, the C on the host against the simulator; the refusals."""
from __future__ import annotations

import numpy as np
import pytest

from tests.test_op_subbyte_common import (BITS, GRIDS, codes, fields, grid, host_exact,
                                          needs_gcc, trace)
from tinyopt.integer.graph import IntegerGraph, IntegerLayer
from tinyopt.integer.ops import resize_nearest as rn


def resize_graph(g: dict, in_shape, out_hw) -> IntegerGraph:
    node = IntegerLayer(kind="resize_nearest", name="up", in_shape=tuple(in_shape),
                        out_shape=(*out_hw, in_shape[-1]), inputs=("x",), outputs=("up",),
                        **fields("in", g), **fields("out", g))
    node.table = rn.table_for(in_shape[:2], out_hw)
    graph = IntegerGraph([node], tuple(in_shape), input_bits=g["bits"], input_signed=g["signed"],
                         input_zero_point=g["zero_point"], rounding="floor", input_name="x")
    graph.validate()
    return graph


def test_integer_factors_repeat_rows_and_columns():
    """TFLite's float32 half-pixel rule, for every size up to 64 and factor up to 6, is
    floor(i / f): Keras UpSampling2D's np.repeat."""
    for size in range(1, 65):
        for f in range(1, 7):
            np.testing.assert_array_equal(rn.source_indices(size, size * f),
                                          np.repeat(np.arange(size), f), err_msg=(size, f))
    # a non-integer ratio is no repeat (the rule is really evaluated)
    assert not np.array_equal(rn.source_indices(5, 7), np.repeat(np.arange(5), 2)[:7])


CASES = [(bits, kind) for bits in BITS for kind in GRIDS]


@pytest.mark.parametrize("bits,kind", CASES)
def test_simulator_and_c_at_sub_byte_widths(bits, kind, tmp_path):
    """(3, 5, 3) up by (2, 3): the simulator is np.repeat of the codes; the packed C moves
    every code to the bit (odd element counts, so rows do not end on bytes)."""
    g = grid(bits, kind)
    graph = resize_graph(g, (3, 5, 3), (6, 15))
    x = codes(np.random.default_rng(bits), (16, 3, 5, 3), g)
    t = trace(graph, x)
    np.testing.assert_array_equal(t["up"], np.repeat(np.repeat(x, 2, axis=1), 3, axis=2))
    if needs_gcc.args[0]:
        pytest.skip("no gcc on this machine")
    host_exact(graph, x, tmp_path, "tn_resize_nearest.c")


@needs_gcc
@pytest.mark.parametrize("bits", [4, 2])
def test_non_integer_resize_in_c(bits, tmp_path):
    g = grid(bits, "signed")
    graph = resize_graph(g, (5, 3, 1), (7, 4))
    x = codes(np.random.default_rng(3), (16, 5, 3, 1), g)
    rows, cols = rn.source_indices(5, 7), rn.source_indices(3, 4)
    np.testing.assert_array_equal(trace(graph, x)["up"], x[:, rows][:, :, cols])
    host_exact(graph, x, tmp_path, "tn_resize_nearest.c")


def test_refusals():
    g = grid(4, "signed")
    graph = resize_graph(g, (3, 5, 3), (6, 10))
    node = graph.layers[0]
    node.in_bits = node.out_bits = 3
    with pytest.raises(ValueError, match="3-bit; this op takes packed codes of 2, 4, 8"):
        node.validate()
    node.in_bits = node.out_bits = 4
    node.out_zero_point = 0
    with pytest.raises(ValueError, match="keeps the input's quantization"):
        node.validate()
    with pytest.raises(ValueError, match="must be >= 1"):
        rn.table_for((0, 5), (6, 10))


@pytest.mark.slow
def test_keras_upsampling2d_is_the_table():
    """tf_keras' UpSampling2D(interpolation="nearest") on a float tensor equals the node's
    gather (TensorFlow's own resize, not our reading of it)."""
    import tinyopt  # noqa: F401  (sets up tf_keras)
    from tests import _keras_nets as nets
    keras = nets._keras()
    x = np.random.default_rng(0).normal(size=(2, 5, 3, 4)).astype(np.float32)
    for size in ((2, 2), (3, 2), (1, 4)):
        got = keras.layers.UpSampling2D(size, interpolation="nearest")(x).numpy()
        rows = rn.source_indices(5, 5 * size[0])
        cols = rn.source_indices(3, 3 * size[1])
        np.testing.assert_array_equal(got, x[:, rows][:, :, cols])

"""``transpose_conv`` on the sub-byte path's packed codes (tinyopt/integer/ops/transpose_conv.py,
tinyopt/deploy/c/ops/tn_transpose_conv.c): hand-built nodes at 8, 4 and 2 bits (tensors and
weights), signed and unsigned grids, weight zero points and multipliers per layer and per channel,
with bias, strides 2, Keras Conv2DTranspose's 'same' and 'valid' geometry (kernel larger, equal
and smaller than the stride); the simulator against a float64 reference written differently
(the zero-stuffed input correlated with the flipped kernel), the C on the host against the
simulator; Keras' own output geometry and weight layout (slow); the refusals."""
from __future__ import annotations

import numpy as np
import pytest

from tests.test_op_subbyte_common import (codes, fields, floor_reference, grid, host_exact,
                                          multiplier, needs_gcc, spread_multiplier, trace)
from tinyopt.integer.graph import IntegerGraph, IntegerLayer
from tinyopt.integer.ops import transpose_conv as tc

IN_HW, C_IN, C_OUT = (4, 3), 3, 5
# (tensor bits, grid, weight bits, padding, kernel, strides, per-channel zero points and m0)
CASES = [(8, "signed", 2, "same", (3, 3), (2, 2), True),
         (8, "unsigned", 4, "valid", (2, 2), (2, 2), False),
         (4, "signed", 8, "valid", (3, 3), (2, 2), True),
         (4, "unsigned", 2, "same", (4, 2), (2, 2), False),
         (2, "signed", 4, "valid", (1, 1), (2, 2), False),  # kernel below the stride
         (2, "unsigned", 8, "same", (3, 3), (2, 1), True)]


def tconv_graph(bits, kind, wbits, padding, kernel, strides, per_channel, seed=0):
    rng = np.random.default_rng(seed)
    g = grid(bits, kind)
    out_hw, pads = tc.keras_geometry(IN_HW, kernel, strides, padding)
    node = IntegerLayer(kind="transpose_conv", name="up", in_shape=(*IN_HW, C_IN),
                        out_shape=(*out_hw, C_OUT), inputs=("x",), outputs=("up",),
                        stride=tuple(strides), padding=pads, **fields("in", g),
                        **fields("out", g))
    wmax = 2 ** wbits - 1
    node.set_weights(rng.integers(0, wmax + 1, (C_OUT, *kernel, C_IN)), wbits)
    n = C_OUT if per_channel else 1
    node.weight_zero_point = (rng.integers(0, wmax + 1, n) if kind == "signed"
                              else np.zeros(n, np.int64)).astype(np.int32)
    node.bias = rng.integers(-30, 30, C_OUT).astype(np.int32)
    # about kernel taps / stride^2 products per output
    fan_in = max(1, kernel[0] * kernel[1] // (strides[0] * strides[1])) * C_IN
    real = spread_multiplier(fan_in, g, wbits, g) * (rng.uniform(0.7, 1.4, n) if per_channel
                                                     else 1.0)
    node.m0, node.n0 = multiplier(real)
    graph = IntegerGraph([node], (*IN_HW, C_IN), input_bits=g["bits"], input_signed=g["signed"],
                         input_zero_point=g["zero_point"], rounding="floor", input_name="x")
    graph.validate()
    return graph


def reference(node: IntegerLayer, x: np.ndarray) -> np.ndarray:
    """Float64: the input zero-stuffed by the stride, padded by k - 1, correlated with the
    spatially flipped kernel (the full transposed convolution, (H - 1) s + k rows), cropped at
    (pad_t, pad_l) to the output (zeros past the full size), bias, floor requantization."""
    xs = x.astype(np.float64) - node.in_zero_point
    w = node.unpacked_weights().astype(np.float64)
    w -= np.asarray(node.weight_zero_point, np.float64).reshape(-1, 1, 1, 1)
    n, h, wd, _ = xs.shape
    c_out, kh, kw, _ = w.shape
    sh, sw = node.stride
    stuffed = np.zeros((n, (h - 1) * sh + 1, (wd - 1) * sw + 1, xs.shape[-1]))
    stuffed[:, ::sh, ::sw] = xs
    padded = np.pad(stuffed, ((0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1), (0, 0)))
    fh, fw = (h - 1) * sh + kh, (wd - 1) * sw + kw
    flipped = w[:, ::-1, ::-1, :]
    full = np.zeros((n, fh, fw, c_out))
    for ky in range(kh):
        for kx in range(kw):
            full += padded[:, ky:ky + fh, kx:kx + fw] @ flipped[:, ky, kx, :].T
    oh, ow, _ = node.out_shape
    top, _, left, _ = node.padding
    full = np.pad(full, ((0, 0), (0, max(0, top + oh - fh)), (0, max(0, left + ow - fw)),
                         (0, 0)))
    acc = full[:, top:top + oh, left:left + ow] + node.bias
    phi = np.round(acc).astype(np.int64)
    assert np.array_equal(phi, acc), "the float64 accumulators are integers"
    y = floor_reference(phi, node.m0, node.n0) + node.out_zero_point
    return np.clip(y, *node.out_range)


IDS = [f"{b}bit-{g}-w{wb}-{p}-k{k[0]}x{k[1]}-s{s[0]}x{s[1]}-{'PC' if pc else 'PL'}"
       for b, g, wb, p, k, s, pc in CASES]


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_simulator_is_the_float_reference_and_c_the_simulator(case, tmp_path):
    graph = tconv_graph(*case)
    node = graph.layers[0]
    g = grid(case[0], case[1])
    x = codes(np.random.default_rng(5), (20, *IN_HW, C_IN), g)
    got = trace(graph, x)["up"]
    np.testing.assert_array_equal(got, reference(node, x))
    lo, hi = node.out_range
    assert len(np.unique(got)) >= min(hi - lo, 12), "the output hardly varies"
    if case[3] == "valid" and case[4][0] < case[5][0]:  # rows past the scattered ones: bias only
        assert np.all(got[:, -1, :, :] == got[:1, -1, :, :])
    if needs_gcc.args[0]:
        pytest.skip("no gcc on this machine")
    host_exact(graph, x, tmp_path, "tn_transpose_conv.c")


def test_keras_geometry():
    """Keras' deconv_output_length and TensorFlow's padding: 'same' H s, 'valid'
    H s + max(k - s, 0); the odd padding pixel at the end."""
    assert tc.keras_geometry((4, 3), (3, 3), (2, 2), "same") == ((8, 6), (0, 1, 0, 1))
    assert tc.keras_geometry((4, 3), (2, 2), (2, 2), "valid") == ((8, 6), (0, 0, 0, 0))
    assert tc.keras_geometry((4, 3), (3, 3), (2, 2), "valid") == ((9, 7), (0, 0, 0, 0))
    assert tc.keras_geometry((4, 3), (1, 1), (2, 2), "valid") == ((8, 6), (0, 0, 0, 0))
    assert tc.keras_geometry((4, 3), (4, 4), (2, 2), "SAME") == ((8, 6), (1, 1, 1, 1))
    with pytest.raises(ValueError, match="only 'same' and 'valid'"):
        tc.keras_geometry((4, 3), (3, 3), (2, 2), "full")
    with pytest.raises(ValueError, match=">= 1"):
        tc.keras_geometry((4, 3), (3, 3), (0, 2), "same")


def test_refusals():
    graph = tconv_graph(*CASES[0])
    node = graph.layers[0]
    node.validate()
    node.in_bits = 16
    with pytest.raises(ValueError, match="16-bit; this op takes packed codes of 2, 4, 8"):
        node.validate()
    node.in_bits = 8
    node.m0 = np.ones(2, np.int32)
    with pytest.raises(ValueError, match="m0 must hold 1 \\(per layer\\) or 5 \\(per output"):
        node.validate()
    node.m0 = np.ones(1, np.int32)
    node.validate()  # per layer
    node.weights = node.weights[:, :-1]
    with pytest.raises(ValueError, match="packed weights have shape"):
        node.validate()
    graph = tconv_graph(*CASES[0])
    node = graph.layers[0]
    node.weight_bits = 3
    with pytest.raises(ValueError, match="weight_bits 3"):
        node.validate()
    node.weight_bits = 2
    node.weight_zero_point = np.array([300], np.int32)
    with pytest.raises(ValueError, match="weight zero points must be in \\[0, 255\\]"):
        tc.check_c(node, "floor", "up")


@pytest.mark.slow
@pytest.mark.parametrize("padding,kernel,strides", [("same", (3, 3), (2, 2)),
                                                    ("valid", (3, 2), (2, 2)),
                                                    ("valid", (1, 1), (2, 2))])
def test_keras_conv2d_transpose_is_the_node(padding, kernel, strides):
    """tf_keras' Conv2DTranspose (float, with bias, small integer values) equals the node run by
    the simulator at unit scales (multiplier exactly 1): the output size and padding of
    :func:`keras_geometry`, the Keras kernel [kh, kw, c_out, c_in] transposed to
    [c_out, kh, kw, c_in] (no flip)."""
    import tinyopt  # noqa: F401  (sets up tf_keras)
    from tests import _keras_nets as nets
    from tinyopt.integer import sim
    keras = nets._keras()
    layer = keras.layers.Conv2DTranspose(C_OUT, kernel, strides=strides, padding=padding)
    rng = np.random.default_rng(1)
    x = rng.integers(-2, 3, (3, *IN_HW, C_IN))
    layer(x.astype(np.float32))
    kernel_w = rng.integers(-2, 3, layer.kernel.shape)
    bias = rng.integers(-3, 4, C_OUT)
    layer.set_weights([kernel_w.astype(np.float32), bias.astype(np.float32)])
    want = layer(x.astype(np.float32)).numpy()
    out_hw, pads = tc.keras_geometry(IN_HW, kernel, strides, padding)
    assert want.shape[1:3] == out_hw and np.abs(want).max() < 128
    node = IntegerLayer(kind="transpose_conv", name="t", in_shape=(*IN_HW, C_IN),
                        out_shape=(*out_hw, C_OUT), stride=tuple(strides), padding=pads,
                        in_bits=8, in_signed=True, out_bits=8, out_signed=True)
    node.set_weights(kernel_w.transpose(2, 0, 1, 3) + 2, 4)  # codes 0..4, zero point 2
    node.weight_zero_point = np.array([2], np.int32)
    node.bias = bias.astype(np.int32)
    node.m0, node.n0 = np.array([1 << 30], np.int32), np.array([1], np.int8)  # exactly 1
    graph = IntegerGraph([node], (*IN_HW, C_IN), input_bits=8, input_signed=True,
                         rounding="floor")
    np.testing.assert_array_equal(sim.run(graph, x, engine="reference"), want)

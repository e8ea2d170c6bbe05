"""Dilated and causal convolutions on the sub-byte path's packed codes
(tinyopt/integer/ops/compute.py, ``tn_acc_dilated`` / ``tn_acc`` in
tinyopt/deploy/c/tinyopt_nn.c): conv2d, depthwise and a Conv1D run as a 1 x k conv2d with causal
(left-only) padding (k - 1) d, at 8, 4 and 2 bits (tensors and weights), signed and unsigned
grids, both pad modes, weight zero points and multipliers per layer and per channel; the
simulator (both engines) against a float64 reference that gathers every tap by its index, the
C on the host against the simulator; the geometry check."""
from __future__ import annotations

import numpy as np
import pytest

from tests.test_op_subbyte_common import (codes, compute_node, floor_reference, grid,
                                          host_exact, needs_gcc, trace)
from tinyopt.integer import sim
from tinyopt.integer.graph import IntegerGraph
from tinyopt.integer.ops import compute

# name: (kind, in_shape, c_out, kernel, stride, dilation, padding, bits, grid, weight bits,
#        pad_mode, per-channel)
CASES = {
    "conv3x3-d2-same-8bit": ("conv2d", (9, 8, 3), 4, (3, 3), (1, 1), (2, 2), (2, 2, 2, 2), 8,
                             "signed", 4, "zero_point", True),
    "conv3x3-s2-d2-valid-8bit-unsigned": ("conv2d", (11, 10, 2), 3, (3, 3), (2, 2), (2, 2),
                                          (0, 0, 0, 0), 8, "unsigned", 2, "zero_point", False),
    "dw3x3-d2x3-4bit-unsigned-zero-pad": ("depthwise", (8, 9, 5), 5, (3, 3), (1, 1), (2, 3),
                                          (2, 2, 3, 3), 4, "unsigned", 2, "zero", False),
    "dw3x3-d2-4bit-signed-zero-pad": ("depthwise", (8, 9, 5), 5, (3, 3), (1, 1), (2, 2),
                                      (2, 2, 2, 2), 4, "signed", 8, "zero", True),
    "conv1d-k3-d4-causal-2bit": ("conv2d", (1, 16, 3), 4, (1, 3), (1, 1), (1, 4),
                                 compute.causal_padding(3, 4), 2, "signed", 8, "zero_point",
                                 True),
    "conv1d-k3-d1-causal-4bit": ("conv2d", (1, 16, 3), 4, (1, 3), (1, 1), (1, 1),
                                 compute.causal_padding(3, 1), 4, "signed", 4, "zero_point",
                                 False),
    "conv1d-k2-d2-causal-2bit-unsigned": ("conv2d", (1, 12, 4), 3, (1, 2), (1, 1), (1, 2),
                                          compute.causal_padding(2, 2), 2, "unsigned", 2,
                                          "zero_point", True),
    "dw1d-k3-d2-causal-2bit-zero-pad": ("depthwise", (1, 12, 4), 4, (1, 3), (1, 1), (1, 2),
                                        compute.causal_padding(3, 2), 2, "signed", 4, "zero",
                                        True),
}


def out_hw(in_shape, kernel, stride, dilation, padding):
    """Output size: the windows that fit the padded input."""
    return tuple((in_shape[a] + padding[2 * a] + padding[2 * a + 1]
                  - (kernel[a] - 1) * dilation[a] - 1) // stride[a] + 1 for a in (0, 1))


def build(name: str, seed: int = 0):
    kind, in_shape, c_out, k, s, d, pad, bits, gkind, wbits, mode, pc = CASES[name]
    g = grid(bits, gkind)
    oh, ow = out_hw(in_shape, k, s, d, pad)
    wshape = (*k, c_out) if kind == "depthwise" else (c_out, *k, in_shape[-1])
    rng = np.random.default_rng(seed)
    node = compute_node(kind, "conv", "x", in_shape, (oh, ow, c_out), g, g, wshape, wbits, rng,
                        per_channel=pc, stride=s, dilation=d, padding=pad, pad_mode=mode)
    if pc:  # per-channel multipliers too (ICN)
        node.m0 = (node.m0.astype(np.int64) * rng.uniform(0.8, 1.0, c_out)).astype(np.int32)
        node.n0 = np.repeat(node.n0, c_out).astype(np.int8)
    graph = IntegerGraph([node], in_shape, input_bits=g["bits"], input_signed=g["signed"],
                         input_zero_point=g["zero_point"], rounding="floor", input_name="x")
    graph.validate()
    return graph, g


def reference(node, x: np.ndarray) -> np.ndarray:
    """Float64: output (oy, ox, c) sums tap (ky, kx) at input row oy sh - pad_t + ky dh and
    column ox sw - pad_l + kx dw, gathered by index; a tap outside the input holds the zero
    point ("zero_point") or integer 0 ("zero"); bias, floor requantization, clamp."""
    oh, ow, c_out = node.out_shape
    sh, sw = node.stride
    dh, dw = node.dilation
    top, _, left, _ = node.padding
    w = node.unpacked_weights().astype(np.float64)
    zw = np.asarray(node.weight_zero_point, np.float64)
    h, wd, c_in = node.in_shape
    kh, kw = (w.shape[:2] if node.kind == "depthwise" else w.shape[1:3])
    rows = np.arange(oh)[:, None] * sh - top + np.arange(kh)[None, :] * dh  # [oh, kh]
    cols = np.arange(ow)[:, None] * sw - left + np.arange(kw)[None, :] * dw  # [ow, kw]
    inside = ((rows >= 0) & (rows < h))[:, None, :, None] & ((cols >= 0) & (cols < wd))[None, :,
                                                                                       None, :]
    pad_value = node.in_zero_point if node.pad_mode == "zero_point" else 0
    patches = x[:, np.clip(rows, 0, h - 1)][:, :, :, np.clip(cols, 0, wd - 1)]
    patches = patches.transpose(0, 1, 3, 2, 4, 5)  # [n, oh, ow, kh, kw, c_in]
    patches = np.where(inside[None, ..., None], patches, pad_value).astype(np.float64)
    xs = patches - node.in_zero_point
    if node.kind == "depthwise":
        acc = np.einsum("nyxabc,abc->nyxc", xs, w - zw)  # depth multiplier 1
    else:
        acc = np.einsum("nyxabc,oabc->nyxo", xs, w - zw.reshape(-1, 1, 1, 1))
    acc = acc + node.bias
    phi = np.round(acc).astype(np.int64)
    assert np.array_equal(phi, acc)
    y = floor_reference(phi, node.m0, node.n0) + node.out_zero_point
    return np.clip(y, *node.out_range)


@pytest.mark.parametrize("name", sorted(CASES))
def test_simulator_is_the_float_reference_and_c_the_simulator(name, tmp_path):
    graph, g = build(name)
    node = graph.layers[0]
    x = codes(np.random.default_rng(3), (16, *node.in_shape), g)
    got = trace(graph, x)["conv"]
    np.testing.assert_array_equal(got, reference(node, x))
    np.testing.assert_array_equal(sim.run(graph, x, engine="fast"), got)
    lo, hi = node.out_range
    assert len(np.unique(got)) >= min(hi - lo, 12), "the output hardly varies"
    if node.padding[2] and not node.padding[3]:  # causal: the output keeps the T steps
        assert node.out_shape[:2] == node.in_shape[:2]
    if needs_gcc.args[0]:
        pytest.skip("no gcc on this machine")
    host_exact(graph, x, tmp_path)
    text = "".join(p.read_text() for p in (tmp_path / "src").glob("model*"))
    assert f".dil_w = {node.dilation[1]}" in text and f".pad_l = {node.padding[2]}" in text


def test_causal_output_ignores_the_future():
    """Changing input step t changes no output before t (the pad is on the left only)."""
    graph, g = build("conv1d-k3-d4-causal-2bit")
    x = codes(np.random.default_rng(4), (8, 1, 16, 3), g)
    base = trace(graph, x)["conv"]
    x2 = x.copy()
    x2[:, :, 10:] = (x2[:, :, 10:] + 1) % 4
    after = trace(graph, x2)["conv"]
    np.testing.assert_array_equal(after[:, :, :10], base[:, :, :10])
    assert not np.array_equal(after[:, :, 10:], base[:, :, 10:])


def test_causal_padding_and_geometry_check():
    assert compute.causal_padding(3, 4) == (0, 0, 8, 0)
    assert compute.causal_padding(1) == (0, 0, 0, 0)
    with pytest.raises(ValueError, match="must be >= 1"):
        compute.causal_padding(3, 0)
    graph, _ = build("conv1d-k3-d4-causal-2bit")
    node = graph.layers[0]
    node.padding = (0, 0, 7, 0)  # one step short of (k - 1) d
    with pytest.raises(ValueError, match="width: 16 outputs at stride 1 need 24 padded inputs "
                                         "\\(window 3, dilation 4\\) but the input has 16 plus "
                                         "padding 7 \\+ 0"):
        node.validate()
    node.padding = (0, 0, -1, 9)
    with pytest.raises(ValueError, match="padding must be four integers >= 0"):
        node.validate()

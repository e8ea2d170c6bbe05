"""The helpers the Cortex-M7 kernel modules share (the lowest module of
:mod:`tinyopt.deploy.kernels_m7`): the rounding ids (TN_FLOOR, ...), the step's scratch pointer,
the rows' weight zero points and signed weights (SGW), the requantization constants of tn_m7_out
(:func:`requant_constants`) and the accumulator bound (:func:`acc_bound`).
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.steps import Step, _hwc, conv_lanes, kernel_window


ROUNDING_ID = {"floor": 0, "tflite_single": 1, "tflite_double": 2}  # TN_FLOOR, ...


def _rounding(step: Step, graph_rounding: str) -> int:
    return ROUNDING_ID[step.layer.rounding or graph_rounding]


def _scratch(step: Step, arena: str, ctype: str, skip: int = 0) -> str:
    """C expression: a ``ctype`` pointer ``skip`` bytes into the step's scratch in the arena
    (through void *: the plan aligned it, SCRATCH_ALIGN)."""
    return f"({ctype} *)(void *)({arena} + {step.scratch_offset + skip}u)"


def _row_zero_points(layer, n: int) -> np.ndarray:
    """The weight zero point of each of the ``n`` rows, int64."""
    return np.broadcast_to(np.atleast_1d(np.asarray(layer.weight_zero_point, np.int64)),
                           (n,)).copy()


def signed_weights(layer) -> bool:
    """Can tn_m7_fc / tn_m7_conv take ``layer``'s weights minus their zero points (SGW = 1,
    c/tn_m7_gemm.h)? Then no sum of the inputs is needed for the zero points (the window sums,
    tn_m7_fc's pass over the input and one multiply per output go). Each d = w - z_w must fit
    int8 and each pair's lane 256 d_b + d_a (rows 2i, 2i + 1, the padded window rows of a
    convolution) int16; true for the symmetric int8 weights of TFLite ([-127, 127]). An 8-bit
    dense, pointwise or conv2d layer; False for any other."""
    if (layer.kind not in ("dense", "pointwise", "conv2d") or layer.weight_bits != 8
            or layer.in_bits != 8):
        return False
    rows = (_padded_rows(layer) if layer.kind != "dense"
            else np.asarray(layer.weights, np.uint8).reshape(len(layer.weights), -1))
    d = rows.astype(np.int64) - _row_zero_points(layer, len(rows))[:, None]
    if d.min() < -128 or d.max() > 127:
        return False
    m = len(d) - len(d) % 2
    lane = 256 * d[1:m:2] + d[0:m:2]
    return bool(not lane.size or (lane.min() >= -(1 << 15) and lane.max() < (1 << 15)))


def _signed_rows(rows: np.ndarray, layer, kernel: str) -> np.ndarray:
    """tn_m7_fc / tn_m7_conv's SGW codes of ``rows`` (uint8 [N, K]), to be packed as codes are
    (the b codes of whole groups of four flipped by ^ 0x80 there): in the first K & ~3 columns a
    row pair's lane 256 d_b + d_a as int16 split into its bytes (a: the low byte, b: the high
    byte, with the borrow of a negative d_a, pre-flipped), elsewhere (tails, the last row of an
    odd N) int8 d = w - z_w (:func:`signed_weights`).

    Raises:
        ValueError: weights minus their zero points outside int8 (``kernel`` names the kernel
            in the message)."""
    if not signed_weights(layer):
        raise ValueError(f"layer {layer.name!r}: its weights minus their zero points do not "
                         f"fit {kernel}'s signed lanes (signed_weights); export with "
                         "signed=False")
    d = rows.astype(np.int64) - _row_zero_points(layer, len(rows))[:, None]
    out = (d & 0xFF).astype(np.uint8)
    m, k4 = len(d) - len(d) % 2, rows.shape[1] - rows.shape[1] % 4
    lane = 256 * d[1:m:2, :k4] + d[0:m:2, :k4]
    out[1:m:2, :k4] = ((lane >> 8) & 0xFF).astype(np.uint8) ^ np.uint8(0x80)
    return out


def _x_box(layer) -> int:
    """max |x'| over a window's lanes: x - z_x of every input code, a padded tap's 0 - z_x or
    0, a padding lane's 0."""
    xb, z = int(layer.in_bits), int(layer.in_zero_point)
    lo = -(1 << (xb - 1)) if layer.in_signed else 0
    return max(abs(lo - z), abs(lo + (1 << xb) - 1 - z), abs(z))


def _padded_rows(layer) -> np.ndarray:
    """The weight rows of a convolution or pointwise layer with each window row padded to KWCP
    lanes with the row's weight zero point: uint8 [N, KP]."""
    kh, kw = kernel_window(layer)
    kwcp, kp = conv_lanes(layer)
    w = np.asarray(layer.weights, np.uint8).reshape(len(layer.weights), kh, -1)
    n, _, row = w.shape
    zw = np.broadcast_to(np.atleast_1d(np.asarray(layer.weight_zero_point, np.int64)), (n,))
    padded = np.empty((n, kh, kwcp), np.uint8)
    padded[:, :, :row] = w
    padded[:, :, row:] = zw.astype(np.uint8)[:, None, None]
    return padded.reshape(n, kp)


def _inside(layer, geo: dict) -> bool:
    """Does every window of a gemm layer lie inside its input (no padding reached)? A dilated
    window spans (k - 1) d + 1 inputs per axis."""
    if layer.kind == "dense":
        return True
    top, _, left, _ = layer.padding
    dh, dw = (int(d) for d in layer.dilation)
    return (top == 0 and left == 0
            and (geo["OH"] - 1) * layer.stride[0] + (geo["KH"] - 1) * dh + 1 <= geo["H"]
            and (geo["OW"] - 1) * layer.stride[1] + (geo["KW"] - 1) * dw + 1 <= geo["W"])


def requant_constants(layer, graph_rounding: str) -> dict:
    """The requantization constants of a step for tn_m7_out: NM (1 when m0 and n0 are uniform),
    FAST (tn_m7_requant is exact: TFLite flavours have m0 >= 0, checked at export; n0 in
    [-31, 30]; the clamp bounds minus the zero point fit in int32; 2: moreover every n0 < 0;
    3: moreover the flavour is tflite_double, every n0 >= -30 and :func:`acc_bound` < 2^30),
    M0 / N0 (the uniform multiplier, else 0), LOZ / HIZ (act_lo / act_hi minus the output zero
    point), ZP."""
    if not layer.requantize:
        return {"NM": 1, "FAST": 0, "M0": 0, "N0": 0, "LOZ": 0, "HIZ": 0, "ZP": 0}
    m0 = np.atleast_1d(np.asarray(layer.m0, np.int64))
    n0 = np.atleast_1d(np.asarray(layer.n0, np.int64))
    uniform = bool(np.all(m0 == m0[0]) and np.all(n0 == n0[0]))
    lo, hi = (int(v) for v in layer.out_range)
    zp = int(layer.out_zero_point)
    fits = lambda v: -(1 << 31) <= v < (1 << 31)  # noqa: E731
    flavour = layer.rounding or graph_rounding
    fast = (n0.min() >= -31 and n0.max() <= 30 and fits(lo - zp) and fits(hi - zp)
            and (flavour == "floor" or m0.min() >= 0))
    if fast and n0.max() < 0:
        fast = 2
        bound = acc_bound(layer)
        if (flavour == "tflite_double" and n0.min() >= -30 and bound is not None
                and bound < (1 << 30)):
            fast = 3  # tn_m7_out's SMMULR form (c/tn_m7_core.h)
    return {"NM": 1 if uniform else len(m0), "FAST": int(fast),
            "M0": int(m0[0]) if uniform else 0, "N0": int(n0[0]) if uniform else 0,
            "LOZ": lo - zp if fast else 0, "HIZ": hi - zp if fast else 0, "ZP": zp}


def acc_bound(layer) -> int | None:
    """An upper bound of |accumulator| of a compute layer on any input: |bias| + taps *
    max |w - z_w| * max |x - z_x| (taps: the window length of one output), or None for a layer
    without weights. tn_m7_out's FAST = 3 form needs it below 2^30."""
    if layer.weights is None or layer.bias is None:
        return None
    if layer.kind == "dense":
        taps = int(np.prod(layer.in_shape))
    elif layer.kind == "depthwise":
        taps = int(np.prod(layer.weight_shape[:2]))
    else:
        taps = int(np.prod(layer.weight_shape[1:]))
    zw = np.atleast_1d(np.asarray(0 if layer.weight_zero_point is None
                                  else layer.weight_zero_point, np.int64))
    top = (1 << int(layer.weight_bits)) - 1
    dw = int(max(zw.max(), top - zw.min()))
    z = int(layer.in_zero_point)
    lo = -(1 << (layer.in_bits - 1)) if layer.in_signed else 0
    hi = lo + (1 << int(layer.in_bits)) - 1
    dx = max(abs(lo - z), abs(hi - z))
    bias = int(np.abs(np.asarray(layer.bias, np.int64)).max(initial=0))
    return bias + taps * dw * dx


INT32 = (-(1 << 31), (1 << 31) - 1)


def _ones_row(layer) -> np.ndarray:
    """The packed weights of an all-ones depthwise layer of ``layer``'s shape."""
    from tinyopt.integer.graph import pack
    kh, kw, c = (int(k) for k in layer.weight_shape)
    ones = np.ones((kh * kw, c), np.uint8)
    return pack(ones, layer.weight_bits)


def _pool_args(step: Step) -> list[int]:
    """A fused max pool's eight kernel arguments (pool size, stride, top and left padding, pooled
    height and width); eight zeros for a step without one."""
    if step.pool is None:
        return [0] * 8
    p = step.pool
    pt, _, pl, _ = p.padding
    poh, pow_, _ = _hwc(p.out_shape)
    return [p.pool_size[0], p.pool_size[1], p.stride[0], p.stride[1], pt, pl, poh, pow_]

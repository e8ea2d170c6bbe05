"""Dense layers of 8-bit inputs and weights on the Cortex-M7 (c/tn_m7_gemm.h's dense part):
``tn_m7_fc`` and its small-layer form ``tn_m7_fc16``, their weight orders.

- ``fc``: dense layers of 8-bit inputs and 8-bit weights (no fused ADD;
  :func:`tinyopt.integer.steps.fc_fits`), no scratch: the input read a word at a time and
  widened on the fly, each output stored as soon as it is computed, six rows per pass (32-bit
  pair sums where :func:`fc_acc32` bounds them, else four with 64-bit sums). The
  weights are exported in the order the inner loop reads them (:func:`fc_weights`, as many bytes
  as the row layout; ``Choice.weights``): rows in pairs, the two rows' codes interleaved byte by
  byte in each word, so that one SMLALD on the raw word and one SMLAD on its UXTB16 give four
  MACs (about one instruction per MAC). Where :func:`signed_weights` holds (SGW: TFLite's
  symmetric int8 weights), ``fc``, ``conv`` and ``pw`` store the weights minus their zero
  points (a pair's int16 lane 256 d_b + d_a, SXTB16): no sum of the inputs is needed.
  A small dense layer (a classifier head, :func:`fc16_fits`: at most :data:`FC16_MAX_WEIGHTS`
  weights) takes ``tn_m7_fc16`` instead: each row's w - z_w as int16 lanes
  (:func:`fc16_weights`, twice the weight bytes, the extra counted as layout bytes), seven rows
  per pass, 3 + 3 R instructions per group of four inputs (R rows; fewer where R <= 6 leaves
  registers for LDM of the same weight words, and for R <= 2 of the input: 29 per 32 MACs on
  VWW's 256 -> 2 head), the input zero point and the bias folded at export into each
  row's initial accumulator, and (:func:`fc16_doubled`) the lanes doubled where the SMMULR
  requantization takes 2 acc: about 5 instructions per output.
"""

from __future__ import annotations

import numpy as np

from tinyopt.deploy.kernels_m7.common import _row_zero_points, _signed_rows, requant_constants


def fc_acc32(layer, signed: bool = False) -> bool:
    """Does tn_m7_fc keep each row pair's sum R in 32 bits (ACC32, c/tn_m7_gemm.h: blocks of
    three pairs)? Only when, for every pair (a, b) and every input the layer can receive,
    B = sum (b - 128) x' (``signed``, the weights stored minus their zero points,
    :func:`signed_weights`: sum (b - z_b) x') lies in [-2^23, 2^23) (then 256 B, recovered from
    R - S_a modulo 2^32, fits in int32): bounded exactly over the input codes' box from the
    weights themselves, sum_k max((b_k - 128) x'_lo, (b_k - 128) x'_hi) and the same minimum.
    A dense layer of 8-bit weights only; False for any other layer."""
    if layer.kind != "dense" or layer.weight_bits != 8 or layer.in_bits != 8:
        return False
    w = np.asarray(layer.weights, np.int64).reshape(len(layer.weights), -1)
    z = int(layer.in_zero_point)
    lo, hi = (-128, 127) if layer.in_signed else (0, 255)
    zb = _row_zero_points(layer, len(w))[:, None] if signed else 128
    b = (w - zb)[1:len(w) - len(w) % 2:2]  # the b rows of the pairs (the odd last row has none)
    if not len(b):
        return False
    top = np.maximum(b * (lo - z), b * (hi - z)).sum(axis=1)
    bottom = np.minimum(b * (lo - z), b * (hi - z)).sum(axis=1)
    return bool(top.max() < (1 << 23) and bottom.min() >= -(1 << 23))


def fc_weights(layer, block: int = 4, signed: bool = False) -> np.ndarray:
    """The weight bytes of a dense (or pointwise) layer in tn_m7_fc's order (c/tn_m7_gemm.h;
    blocks of two: the pair words of tn_m7_conv, :func:`conv_weights`): blocks of ``block``
    rows (6: three pairs, tn_m7_fc with ACC32, :func:`fc_acc32`; 4: two pairs a, b; 2: one
    pair), per group of four inputs k..k+3 each pair's words
    [a_k, b_k ^ 0x80, a_{k+2}, b_{k+2} ^ 0x80], [a_{k+1}, b_{k+1} ^ 0x80, a_{k+3}, b_{k+3} ^ 0x80],
    then each pair's K % 4 tail codes (a's, then b's); the rows left over in smaller blocks of
    the same form (six: a block of two pairs if four or five are left; then one pair if two or
    three are); the last row of an odd N as it is. A permutation of the rows' bytes (the 0x80
    flips aside): N K bytes, as many as the row layout.

    Arguments:
        layer: a dense or pointwise layer of 8-bit weights (:func:`tinyopt.integer.steps.fc_fits`,
            :func:`~tinyopt.integer.steps.pw_fits`); block: 6 or 4 (tn_m7_fc) or 2 (the pairs
            of :func:`conv_weights`).

    Returns:
        uint8 array of N * K bytes.

    Raises:
        ValueError: not a dense or pointwise layer of 8-bit weights, or a block other than 2,
            4, 6; ``signed`` weights that :func:`signed_weights` refuses.
    """
    if layer.kind not in ("dense", "pointwise") or layer.weight_bits != 8:
        raise ValueError(f"layer {layer.name!r}: fc_weights packs dense and pointwise layers of "
                         f"8-bit weights, not a {layer.weight_bits}-bit {layer.kind} layer")
    if block not in (2, 4, 6):
        raise ValueError(f"fc_weights: block must be 2, 4 or 6 rows, got {block!r}")
    w = np.asarray(layer.weights, np.uint8).reshape(len(layer.weights), -1)
    if signed:
        w = _signed_rows(w, layer, "tn_m7_fc")
    n, k = w.shape
    k4 = k - k % 4
    parts = []

    def pack(rows: np.ndarray) -> None:  # rows [2P, K]: P pairs (a = even, b = odd)
        a, b = rows[0::2], rows[1::2]
        bf = b[:, :k4] ^ np.uint8(0x80)
        a4, b4 = a[:, :k4].reshape(len(a), -1, 4), bf.reshape(len(a), -1, 4)
        words = np.stack([a4[..., 0], b4[..., 0], a4[..., 2], b4[..., 2],
                          a4[..., 1], b4[..., 1], a4[..., 3], b4[..., 3]], axis=-1)
        parts.append(words.transpose(1, 0, 2).ravel())  # [group, pair, 8 bytes]
        for p in range(len(a)):
            parts.extend([a[p, k4:], b[p, k4:]])

    c = 0
    while c + block <= n:
        pack(w[c:c + block])
        c += block
    for rest in (4, 2):  # the rows left over, as tn_m7_fc takes them
        if rest < block and n - c >= rest:
            pack(w[c:c + rest])
            c += rest
    if c < n:
        parts.append(w[c])
    out = np.concatenate(parts).astype(np.uint8)
    assert out.size == n * k
    return out


# Dense layers of at most this many weights (N K) take tn_m7_fc16 (c/tn_m7_gemm.h): their rows
# as int16 lanes, twice the flash of the weights (the extra bytes counted as layout bytes,
# Export.weight_pad_bytes), for the classifier heads whose fixed costs tn_m7_fc's layout leaves.
FC16_MAX_WEIGHTS = 4096
FC16_ROWS = 7  # rows per block (seven accumulators: tn_m7_fc16's registers)


def fc16_fits(layer) -> bool:
    """Does a dense layer of tn_m7_fc (:func:`tinyopt.integer.steps.fc_fits`) take its small-layer
    form tn_m7_fc16 (c/tn_m7_gemm.h)? When it has at most :data:`FC16_MAX_WEIGHTS` weights (and
    8-bit inputs and weights and a bias, which its layout holds: False for any other layer)."""
    return bool(layer.kind == "dense" and layer.weight_bits == 8 and layer.in_bits == 8
                and layer.weights is not None and layer.bias is not None
                and int(np.prod(layer.in_shape)) * int(layer.out_channels) <= FC16_MAX_WEIGHTS)


def fc16_doubled(layer, graph_rounding: str | None) -> bool:
    """Does tn_m7_fc16 store 2 d and 2 C (DBL, c/tn_m7_gemm.h: the accumulator is then the SMMULR
    operand of tn_m7_out's FAST = 3 form)? Exactly where that form applies
    (:func:`requant_constants`: TFLite double rounding, |acc| < 2^30, so 2 acc fits int32)."""
    rounding = layer.rounding or graph_rounding
    return bool(layer.requantize and rounding == "tflite_double"
                and requant_constants(layer, rounding)["FAST"] == 3)


def fc16_weights(layer, doubled: bool = False) -> np.ndarray:
    """The weight bytes of a dense layer in tn_m7_fc16's layout (c/tn_m7_gemm.h): blocks of
    :data:`FC16_ROWS` rows, then one of the N % 7 rows left; per block each row's constant
    C = bias - z_x sum_k d_k (int32 modulo 2^32, d = w - z_w), then per group of four inputs
    k..k+3 each row's int16 lanes [d_k, d_k+2], [d_k+1, d_k+3], then each row's K % 4 tail lanes
    (int16) and zeros to a whole word; little-endian. ``doubled``: 2 d and 2 C
    (:func:`fc16_doubled`).

    Arguments:
        layer: a dense layer of 8-bit inputs and weights with a bias.
        doubled: store 2 d and 2 C (only exact where :func:`fc16_doubled` says so).

    Returns:
        uint8 array: per block 4 R + 4 R K // 4 * 2 + the tails' bytes rounded up to a word
        (about 2 N K + 4 N bytes).

    Raises:
        ValueError: not a dense layer of 8-bit inputs and weights, or no bias.
    """
    if layer.kind != "dense" or layer.weight_bits != 8 or layer.in_bits != 8:
        raise ValueError(f"layer {layer.name!r}: fc16_weights packs dense layers of 8-bit inputs "
                         f"and weights, not a {layer.weight_bits}-bit {layer.kind} layer of "
                         f"{layer.in_bits}-bit inputs")
    if layer.bias is None:
        raise ValueError(f"layer {layer.name!r}: fc16_weights needs the layer's bias (none set)")
    w = np.asarray(layer.weights, np.int64).reshape(len(layer.weights), -1)
    n, k = w.shape
    d = (w - _row_zero_points(layer, n)[:, None]) * (2 if doubled else 1)
    bias = np.broadcast_to(np.asarray(layer.bias, np.int64), (n,))
    const = (bias * (2 if doubled else 1) - int(layer.in_zero_point) * d.sum(axis=1)) % (1 << 32)
    k4 = k - k % 4
    parts = []
    for c in range(0, n, FC16_ROWS):
        rows = d[c:c + FC16_ROWS]
        parts.append(const[c:c + FC16_ROWS].astype("<u4").view(np.uint8))
        g = rows[:, :k4].reshape(len(rows), -1, 4)[..., [0, 2, 1, 3]]  # [row, group, lanes]
        parts.append(np.ascontiguousarray(g.transpose(1, 0, 2), "<i2").view(np.uint8).ravel())
        tail = np.ascontiguousarray(rows[:, k4:], "<i2").view(np.uint8).ravel()
        parts.append(np.concatenate([tail, np.zeros(-len(tail) % 4, np.uint8)]))
    return np.concatenate(parts).astype(np.uint8)

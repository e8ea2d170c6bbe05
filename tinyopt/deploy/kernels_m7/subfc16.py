"""``tn_m7_subfc16`` (c/tn_m7_subfc.h): small sub-byte dense layers as int16 rows of
w - z_w like ``tn_m7_fc16``.

Sub-byte dense layers take ``tn_m7_subfc`` (c/tn_m7_subfc.h: four rows per 16-bit lane,
no scratch) or, when small (:func:`subfc16_scale`: at most :data:`FC16_MAX_WEIGHTS`
weights and every sum bounded in 32 bits), ``tn_m7_subfc16``: int16 rows of w - z_w like
``tn_m7_fc16``, the sub-byte input unpacked by masks into lanes pre-scaled at export.
"""

from __future__ import annotations

import types

import numpy as np

from tinyopt.deploy.kernels_m7.common import _row_zero_points, _x_box
from tinyopt.deploy.kernels_m7.fc import FC16_MAX_WEIGHTS, fc16_weights


SUBFC16_ROWS = 6  # tn_m7_subfc16's largest block of rows (subfc16_block_rows: 6 or 4)
# subfc16_block_rows' cost model, instructions of c/tn_m7_subfc.h's blocks (tn_s16_block): per
# input word the mask unpacking (4 / 2-bit inputs), per pair of its lane pairs and row LDRD and
# two SMLAD (3), or two rows' LDM and four SMLAD (2.5 a row: blocks of 2 and 4); per block about
# 12 more (its constants, loop set-up, stores)
_S16_UNPACK = {4: 6, 2: 10}
_S16_BLOCK = 12
# PCS's uniform right shift R (the PCS argument of tn_m7_subfc16, c/tn_m7_subfc.h; the
# largest one, subfc16_pcs_shift: 8-bit outputs go lower where the rows need): rows scaled by 2^e_c,
# e_c = n0_c + 1 + R, so that floor(acc m0 2^(n0 + 1) / 2^32) = SMMUL(T, m0) >> R for every
# channel (one immediate shift, folded into USAT / SSAT). R = 10: with 4-bit weights (|d| <= 15,
# e_c <= 11 for the int16 lanes) it takes n0 in [-7, 0] over 4-bit inputs (e_c >= 4: the
# lanes' scales), [-5, 0] over 2-bit ones (e_c >= 6), the range of trained 4-bit layers
# (AD dense_5: [-3, 0]); a layer outside (and no lower R for 8-bit outputs) takes the S form
SUBFC16_PCS_R = 10


def _subfc16_rows(layer) -> tuple[np.ndarray, np.ndarray]:
    """(d, bias) of a dense layer of sub-byte weights: d = w - z_w, int64 [N, K]; bias int64 [N]."""
    from tinyopt.integer.graph import unpack
    n, k = int(layer.out_channels), int(layer.in_shape[0])
    codes = unpack(np.asarray(layer.weights, np.uint8).reshape(n, -1), int(layer.weight_bits), k)
    d = codes.astype(np.int64) - _row_zero_points(layer, n)[:, None]
    return d, np.broadcast_to(np.asarray(layer.bias, np.int64), (n,)).copy()


def subfc16_block_rows(layer) -> int:
    """Rows per block of tn_m7_subfc16 over 2 / 4-bit inputs (the call's RB; the layout of
    :func:`subfc16_weights`): 4 for 2-bit outputs (a byte of codes), else 6 or 4, whichever
    :data:`SUBFC16_ROWS`-or-4 blocking (then one block of the N % RB rows left) costs fewer
    instructions by the model above: blocks of four load two rows by one LDM (DS-CNN's 64 -> 12
    head: three of four, not two of six; AD's 128 -> 8 dense_4: two of four, not six and two).
    8-bit inputs: 8 where :func:`subfc16_one8` takes the layer (the C's ONE8), else unused.

    Arguments:
        layer: a dense layer (its out_channels, in_shape, in_bits and out_bits are read).

    Returns:
        4, 6 or 8.
    """
    n, xb = int(layer.out_channels), int(layer.in_bits)
    if xb == 8 and subfc16_one8(layer):  # ONE8: rows of their own, eight a block
        return 8
    if int(layer.out_bits) == 2 or xb not in (2, 4):
        return 4 if int(layer.out_bits) == 2 else SUBFC16_ROWS
    words = -(-int(layer.in_shape[0]) * xb // 32)
    pairs = 8 // xb  # pairs of lane pairs per word

    def block(r):
        return words * (_S16_UNPACK[xb] + r * pairs * (2.5 if r in (2, 4) else 3)) + _S16_BLOCK

    def plan(rb):
        return n // rb * block(rb) + (block(n % rb) if n % rb else 0)
    return 4 if plan(4) < plan(SUBFC16_ROWS) else SUBFC16_ROWS


def subfc16_scale(layer) -> int:
    """S of tn_m7_subfc16 (c/tn_m7_subfc.h) for a dense layer of 2 / 4-bit weights, or 0 when
    that kernel does not take it: 8-bit inputs, 2 (tn_m7_fc16's doubled lanes) for a layer that
    names TFLite double rounding, else 1; 16 for 4-bit, 64 for 2-bit ones (the masked lanes'
    scales). It takes a layer of a 1-D input, a bias, at most :data:`FC16_MAX_WEIGHTS`
    weights (N K: the int16 lanes are four / eight times the packed weights' bytes, counted as
    layout bytes, Export.weight_pad_bytes) and, for every row and every input it can receive,
    S |acc| < 2^31 (acc = bias + sum (w - z_w)(x - z_x), bounded from the weights themselves,
    S (|bias| + sum_k |d_k| max |x - z_x|)): the kernel's T = S acc, acc = T >> log2 S, is then
    exact; else 0 (the layer takes tn_m7_subfc, exact for any weights). 2 / 4-bit inputs where
    :func:`subfc16_pcs_exponents` applies: 2, the PCS form (its rows' own scales 2^e_c), which
    the call names by its PCS argument, R (:func:`subfc16_pcs_shift`;
    kernels_m7.subconv._subfc_call)."""
    wb, xb = int(layer.weight_bits), int(layer.in_bits)
    if (layer.kind != "dense" or wb not in (2, 4) or xb not in (2, 4, 8) or layer.bias is None
            or layer.weights is None or len(layer.in_shape) != 1
            or int(layer.in_shape[0]) * int(layer.out_channels) > FC16_MAX_WEIGHTS):
        return 0
    # 8-bit inputs: doubled lanes (2 acc, tn_m7_out's FAST = 3 form) only where the layer names
    # TFLite double rounding, else plain ones (one shift less per output in the other forms)
    scale = {8: 2 if layer.rounding == "tflite_double" else 1, 4: 16, 2: 64}[xb]
    d, bias = _subfc16_rows(layer)
    top = np.abs(bias) + np.abs(d).sum(axis=1) * _x_box(layer)
    if scale * int(top.max()) >= (1 << 31) or scale * int(np.abs(d).max()) >= (1 << 15):
        return 0
    return 2 if xb != 8 and subfc16_pcs_exponents(layer) is not None else scale


def subfc16_pcs_shift(layer) -> int:
    """R of tn_m7_subfc16's PCS form (c/tn_m7_subfc.h; the call's PCS argument, 0 for the S
    form): the largest R <= :data:`SUBFC16_PCS_R` at which every row's e_c = n0_c + 1 + R is in
    the window (:func:`subfc16_pcs_exponents`). 4 / 2-bit outputs take R = SUBFC16_PCS_R only
    (the window their form was measured and pinned with; a lower R not tried there); 8-bit
    outputs any R >= 1: R changes
    nothing in the kernel's instructions (one immediate shift), and ResNet-8's and VWW's heads
    (n0 = 1, |d| up to 15: 2^(1 + 1 + 10) 15 >= 2^15, past the int16 lanes) need R = 9.

    Arguments:
        layer: a dense layer (any; the conditions are checked here).

    Returns:
        R in [1, SUBFC16_PCS_R], or 0 where no R applies.
    """
    win = _pcs_window(layer)
    if win is None:
        return 0
    n0, dmax, top, low = win
    for r in range(SUBFC16_PCS_R, (1 if int(layer.out_bits) == 8 else SUBFC16_PCS_R) - 1, -1):
        e = n0 + 1 + r
        if (e.min() >= low and not ((dmax << e) >= (1 << 15)).any()
                and not ((top << e) >= (1 << 31)).any()):
            return r
    return 0


def subfc16_pcs_exponents(layer) -> np.ndarray | None:
    """The rows' exponents e_c of tn_m7_subfc16's PCS form (c/tn_m7_subfc.h), or None where it
    does not apply. PCS: 2 / 4-bit inputs, 4 / 2 / 8-bit outputs (8-bit ones only where the
    layer names no rounding other than floor: there the floor form's one shift pays; elsewhere
    acc = T >> e_c would cost more than the S form's constant shift), the layer's own rounding
    floor (the C's ROUND: layer.rounding before the graph's) and its multipliers exact in 32
    bits (requant_constants' FAST) for the one-shift form, the others acc = T >> e_c; row c's
    lanes stored times 2^e_c / s (s: the lane's scale), so the row sums T_c = 2^e_c acc,
    e_c = n0_c + 1 + R (R: :func:`subfc16_pcs_shift`), and the floor requantization
    floor(acc m0 / 2^(31 - n0)) (fixedpoint.requant_floor without overflow) is
    floor(T_c m0 / 2^(32 + R)) = SMMUL(T_c, m0) >> R, one shift for every channel: exact when
    e_c >= log2 S (S = 16 / 64, the lanes' largest scale), 2^e_c max |d| < 2^15 (the int16
    lanes) and 2^e_c (|bias| + sum |d| max |x'|) < 2^31 (T_c exact; then acc << (n0 + 1)
    fits int32 too: the simulator's t never wraps).

    Arguments:
        layer: a dense layer (any; the conditions above are checked here).

    Returns:
        int64 [N] exponents, or None.
    """
    r = subfc16_pcs_shift(layer)
    if not r:
        return None
    n0 = _pcs_window(layer)[0]
    return n0 + 1 + r


def subfc16_one8(layer) -> bool:
    """Does tn_m7_subfc16 take a layer of 8-bit inputs in its ONE8 form (c/tn_m7_subfc.h: the
    PCS one-word rows over two words of 8-bit codes, R = :data:`SUBFC16_PCS_R`, the C's
    TN_S16_ONE8_R, as the call carries no R for 8-bit inputs; named by the call's RB = 8,
    :func:`subfc16_block_rows`)? K = 8, N % 8 = 0, the layer on tn_m7_subfc16 with plain lanes
    (:func:`subfc16_scale` 1: not a layer naming TFLite double rounding, whose DBL the form
    ignores), PCS's conditions (:func:`subfc16_pcs_exponents`: 2 / 4 / 8-bit outputs, 8-bit ones
    of a layer naming no rounding but floor) and its window at R = 10 for every row:
    e_c = n0_c + 11 >= 0 (the 8-bit lanes' scale 1), 2^e_c max |d| < 2^15 and
    2^e_c (|bias| + sum |d| max |x - z_x|) < 2^31 (T_c exact in 32 bits). Rows of 20 bytes
    (C and eight int16 lanes), the size of tn_m7_fc16's layout (AD's 8 -> 128: 2,560 bytes).

    Arguments:
        layer: a dense layer (any; the conditions are checked here).

    Returns:
        True where ONE8 takes it.
    """
    if (layer.kind != "dense" or int(layer.in_bits) != 8 or len(layer.in_shape) != 1
            or int(layer.in_shape[0]) != 8 or int(layer.out_channels) % 8):
        return False
    win = _pcs_window(layer, (8,))
    if win is None or subfc16_scale(layer) != 1:
        return False
    n0, dmax, top, low = win
    e = n0 + 1 + SUBFC16_PCS_R
    return bool(e.min() >= low and not ((dmax << e) >= (1 << 15)).any()
                and not ((top << e) >= (1 << 31)).any())


def _pcs_window(layer, widths=(2, 4)):
    """(n0 [N], max |d| per row, the rows' bound |bias| + sum |d| max |x'|, log2 S) of a layer
    PCS may take (:func:`subfc16_pcs_exponents`' conditions but the exponents' window) over
    inputs of the given ``widths`` (8: :func:`subfc16_one8`'s, S = 1), else None."""
    wb, xb, ob = int(layer.weight_bits), int(layer.in_bits), int(layer.out_bits)
    if (layer.kind != "dense" or wb not in (2, 4) or xb not in widths or layer.bias is None
            or layer.weights is None or len(layer.in_shape) != 1 or not layer.requantize
            or ob not in (2, 4, 8) or (ob == 8 and layer.rounding not in (None, "floor"))):
        return None
    n = int(layer.out_channels)
    n0 = np.broadcast_to(np.atleast_1d(np.asarray(layer.n0, np.int64)), (n,))
    d, bias = _subfc16_rows(layer)
    top = np.abs(bias) + np.abs(d).sum(axis=1) * _x_box(layer)
    return n0, np.abs(d).max(axis=1), top, 8 - xb


def subfc16_weights(layer) -> np.ndarray:
    """The weight bytes of a step of tn_m7_subfc16 (c/tn_m7_subfc.h, its comment; a layer of
    :func:`subfc16_scale`): 8-bit inputs, :func:`fc16_weights`' layout of the weight codes
    (doubled when S = 2); 2 / 4-bit inputs, per block of :func:`subfc16_block_rows` rows (then
    one of the N % R left) the rows' S C (int32 modulo 2^32, C = bias - o sum_k
    d_k, o = z_x (+ 2^(b-1) for signed inputs)), then per input word and pair of its lane pairs
    (2j, 2j + 1)
    each row's words [f_2j d_i, f_2j d_i'], [f_2j+1 d_i, f_2j+1 d_i'] (lane pair j = codes
    (j, j + 16 / b) of the word, f_j = S / 2^(b (j % (8 / b))); codes beyond K: d = 0); a last
    word of at most 16 / b codes, its lane pairs j < 8 / b alone, codes (j, j + 8 / b).
    PCS (scale 2 over 2 / 4-bit inputs): S replaced by each row's 2^e_c
    (:func:`subfc16_pcs_exponents`); over one word (K b = 32; 2-bit codes also K = 8, half a
    word: its lanes as the last word's above) and N % 8 = 0, each row's C then its words, rows
    one after the other, blocks of eight, the last row of each first.

    Arguments:
        layer: a dense layer of 2 / 4-bit weights where :func:`subfc16_scale` is nonzero.

    Returns:
        uint8 array (little-endian int32 constants and int16 lanes).

    Raises:
        ValueError: a layer :func:`subfc16_scale` refuses.
    """
    scale = subfc16_scale(layer)
    if not scale:
        raise ValueError(f"layer {layer.name!r}: tn_m7_subfc16 does not take it (subfc16_scale: "
                         "a dense layer of 2 / 4-bit weights, a bias, at most "
                         f"{FC16_MAX_WEIGHTS} weights, S |acc| < 2^31); use subfc_weights")
    d, bias = _subfc16_rows(layer)
    n, k = d.shape
    xb = int(layer.in_bits)
    if xb == 8 and subfc16_one8(layer):
        # ONE8: blocks of eight rows, the last first; each row's C = 2^e_c (bias - z_x sum d)
        # then its lanes 2^e_c [d_0, d_2], [d_1, d_3], [d_4, d_6], [d_5, d_7] (UXTB16 / SXTB16
        # of each word, then ROR 8)
        rs = np.ones(n, np.int64) << (_pcs_window(layer, (8,))[0] + 1 + SUBFC16_PCS_R)
        const = ((rs * (bias - int(layer.in_zero_point) * d.sum(axis=1))) % (1 << 32)).astype("<u4")
        lanes = np.ascontiguousarray(d[:, [0, 2, 1, 3, 4, 6, 5, 7]] * rs[:, None], "<i2")
        order = np.arange(n) // 8 * 8 + 7 - np.arange(n) % 8
        return np.concatenate([np.concatenate([const[c:c + 1].view(np.uint8),
                                               lanes[c].view(np.uint8)]) for c in order])
    if xb == 8:  # tn_m7_fc16's own layout (its rows: the codes as 8-bit weights)
        return fc16_weights(types.SimpleNamespace(
            kind="dense", weight_bits=8, in_bits=8, name=layer.name, bias=layer.bias,
            weights=(d + _row_zero_points(layer, n)[:, None]).astype(np.uint8),
            weight_zero_point=layer.weight_zero_point, in_zero_point=layer.in_zero_point),
            doubled=scale == 2)
    off = int(layer.in_zero_point) + ((1 << (xb - 1)) if layer.in_signed else 0)
    # each row's scale: S, or PCS's 2^e_c (subfc16_pcs_exponents; scale 2 names that form)
    rs = (np.ones(n, np.int64) << subfc16_pcs_exponents(layer) if scale == 2
          else np.full(n, scale, np.int64))
    const = ((rs * (bias - off * d.sum(axis=1))) % (1 << 32)).astype("<u4")
    g = 32 // xb  # codes per input word
    words = -(-k // g)
    half = 0 < k % g <= g // 2  # a last word of at most half its codes: v | v << 8 (HALF)
    dp = np.zeros((n, words * g), np.int64)
    dp[:, :k] = d
    npairs = 16 // xb
    j = np.arange(npairs)
    fac = rs[:, None, None] >> (xb * (j % (8 // xb)))  # [n, 1, pair]: the row's scale / the lane's

    def pairs(codes, m):  # [n, words, 2m] -> [n, words, m / 2, 4]: lane pairs (x_j, x_{j+m})
        lanes = np.stack([codes[..., :m] * fac[..., :m], codes[..., m:2 * m] * fac[..., :m]],
                         axis=-1)
        return lanes.reshape(n, codes.shape[1], m // 2, 4)  # per pair of lane pairs: 4 int16

    whole = pairs(dp.reshape(n, words, g)[:, :words - half], npairs)
    tail = pairs(dp.reshape(n, words, g)[:, words - 1:, :g // 2], npairs // 2) if half else None
    rows = subfc16_block_rows(layer)
    # PCS over one word (4 / 2-bit outputs: tn_s16_one packs them): each row C, its lanes; 2-bit
    # codes over half a word too (K = 8: the tail's lanes, HALF)
    if (scale == 2 and (k * xb == 32 or (xb == 2 and k == 8)) and n % 8 == 0
            and int(layer.out_bits) != 8):
        order = (np.arange(n) // 8 * 8 + 7 - np.arange(n) % 8)  # blocks of eight, last row first
        one = whole if k * xb == 32 else tail
        return np.concatenate([np.concatenate([const[c:c + 1].view(np.uint8),
                                               np.ascontiguousarray(one[c], "<i2").view(
                                                   np.uint8).ravel()]) for c in order])
    parts = []
    for c in range(0, n, rows):
        parts.append(const[c:c + rows].view(np.uint8))
        for lanes in (whole, tail):
            if lanes is not None:
                blk = np.ascontiguousarray(lanes[c:c + rows].transpose(1, 2, 0, 3), "<i2")
                parts.append(blk.view(np.uint8).ravel())
    return np.concatenate(parts).astype(np.uint8)

"""``tn_m7_conv`` (c/tn_m7_gemm.h): convolutions and pointwise layers of 8-bit inputs and
weights on the Cortex-M7, their plan (QUAD, TAB), weight order and fused-ADD table.

- ``conv`` and ``pw``: convolutions (any window, stride, padding; the first layer with 1-3 input
  channels too) and pointwise layers without padding, of 8-bit inputs and weights, no fused pool
  (:func:`tinyopt.integer.steps.conv_fits`, :func:`~tinyopt.integer.steps.pw_fits`): one kernel,
  ``tn_m7_conv``. Two pixels' windows widened into int16 lanes interleaved word by word
  (``4 * KP`` bytes of scratch, KP = KH x the window row's KW * C bytes rounded up to four),
  each row pair of weights (:func:`conv_weights`: window rows padded with the row's weight zero
  point, then :func:`fc_weights`' pair words) read once for both pixels: per group of four lanes
  one LDRD of weights, two LDRD of lanes, two UXTB16, four SMLALD and four SMLAD, i.e. 13
  instructions per 16 MACs in an assembly loop of four groups; where :func:`conv_plan` bounds
  every pair's sum in 32 bits (QUAD), two row pairs per loop instead (24 instructions per 32
  MACs; pointwise layers of at most 32 lanes with a table: int16 weights, four rows per loop,
  22); where the requantization allows (TAB), each block's weights are followed by its
  channels' constants (doubled bias, m0, a rounding constant holding the output zero point,
  the shift), about eight instructions per output; outputs written as computed (no int32
  output scratch). A fused residual ADD is applied to each output as it is computed
  (``tn_m7_add``'s arithmetic, :func:`add_plan`; the other addend's element read just before
  the sum is written over it); only when its plan fails are the pair's ``2 * CO`` int32 outputs
  kept in scratch for the portable arithmetic.
"""

from __future__ import annotations

import types

import numpy as np

from tinyopt.integer.steps import Step, conv_lanes
from tinyopt.integer.ops.registry import REGISTRY
from tinyopt.deploy.kernels_m7.common import (
    _row_zero_points, _padded_rows, signed_weights, _signed_rows, requant_constants)
from tinyopt.deploy.kernels_m7.fc import fc_acc32
from tinyopt.deploy.kernels_m7.add import add_plan


def conv_plan(layer, rounding: str | None, fused: bool = False) -> tuple[int, int]:
    """(QUAD, TAB) of an 8-bit convolution or pointwise layer on tn_m7_conv (c/tn_m7_gemm.h).

    QUAD = 1: the rows go in blocks of two pairs with 32-bit sums (tn_m7_cv_quad, 24
    instructions per 32 MACs), when the layer has at least four rows and every pair's B =
    sum (b - 128) x' over the padded window rows stays in [-2^23, 2^23) on every input (bounded
    from the weights as :func:`fc_acc32` does for a dense layer), else 0 (one pair at a time,
    64-bit sums). QUAD = 2: a pointwise layer of at most :data:`W16_MAX_LANES` lanes, a multiple
    of four output channels and a table (TAB below, whose bound keeps every sum exact): int16
    weights 2 (w - z_w) in blocks of four rows (tn_m7_cv_w16, 22 instructions per 32 MACs; the
    small K where the a codes' UXTB16, the b rows' R - S_a and the block loop weigh most), two
    bytes per weight in flash. TAB = 1, 4 or 5: each block's weights are followed by its
    channels' requantization constants, TAB int32 words per channel (2 bias; with per-channel
    multipliers then m0, [sh > 0] 2^(sh - 1) + z_out 2^sh with sh = max(-n0, 0), sh; with
    TAB = 5, a channel's n0 >= 0, then its left shift max(n0, 0)), for tn_m7_cv_rq: TFLite's
    double rounding with every n0 in [-20, 7] (the zero point folds into the rounding constant
    without overflow), n0 >= 0 only with a clamp at or above the zero point (LOZ >= 0: the sign
    term of the rounding divide is dropped, and a channel without one needs it dropped) and
    acc_bound * 2^(max(n0, 0) + 1) < 2^31; else 0 (the constants read from the layer's tables
    per output, tn_m7_cv_chan). TAB = 3 (QUAD = 2 only, :func:`w16_shift`): the rows scaled so
    that one shift T serves the whole layer, three words per channel (the scaled 2 bias, m0 and
    C): a clamp at or above the zero point (LOZ >= 0) and every scaled weight, bias and sum in
    range. TAB = 2: the same with the rounding's sign term (LOZ < 0: a fourth word per
    channel, 2^d), only where tn_m7_cv_w16_run does not take the layer (``fused``: a residual
    ADD fused after it; or an output other than 8-bit codes clamped to the whole range), so
    its C epilogue runs. ``rounding``: the graph's flavour (None: a layer that names none gets
    TAB = 0).

    Arguments:
        layer: a conv2d or pointwise layer of 8-bit weights and inputs.
        rounding: the graph's rounding flavour.
        fused: the step fuses a residual ADD after the layer.

    Returns:
        (QUAD, TAB) as ints.
    """
    quad = 0
    tab = _conv_tab(layer, rounding)[0]
    if (tab and layer.kind == "pointwise" and conv_lanes(layer)[1] <= W16_MAX_LANES
            and layer.out_channels % 4 == 0):
        # int16 weights 2 (w - z_w): the small-K blocks (tn_m7_cv_w16); TAB 3 / 2 where one
        # shift serves every channel (_w16_scaled)
        scaled = _w16_scaled(layer, rounding)
        if scaled is not None and not scaled[5].any():
            return 2, 3
        lo, hi = (int(v) for v in layer.out_range)
        if scaled is not None and (fused or layer.out_bits != 8
                                   or (lo, hi) not in ((-128, 127), (0, 255))):
            return 2, 2  # the sign term, on the C epilogue (not tn_m7_cv_w16_run's)
        return 2, tab
    if layer.out_channels >= 4:
        rows = _padded_rows(layer)
        m = len(rows) - len(rows) % 4
        quad = int(fc_acc32(types.SimpleNamespace(
            kind="dense", weight_bits=8, in_bits=8, weights=rows[:m],
            weight_zero_point=_row_zero_points(layer, len(rows))[:m],
            in_zero_point=layer.in_zero_point, in_signed=layer.in_signed),
            signed=signed_weights(layer)))
    return quad, tab


def _conv_tab(layer, rounding: str | None) -> tuple[int, np.ndarray | None]:
    """(TAB, constant outputs) of :func:`conv_plan`: the constant output code of every channel
    whose weights all equal its zero point (its accumulator is its bias on every input: the
    table gives it m0 = 0 and the code as rounding constant, exact whatever its bias and n0;
    None for the other channels: an object array), or (0, None)."""
    flavour = layer.rounding or rounding
    if not layer.requantize or flavour != "tflite_double":
        return 0, None
    from tinyopt.integer.fixedpoint import requant_tflite_double
    rq = requant_constants(layer, flavour)
    n = int(layer.out_channels)
    n0 = np.broadcast_to(np.atleast_1d(np.asarray(layer.n0, np.int64)), (n,))
    m0 = np.broadcast_to(np.atleast_1d(np.asarray(layer.m0, np.int64)), (n,))
    zw = np.broadcast_to(np.atleast_1d(np.asarray(layer.weight_zero_point, np.int64)), (n,))
    w = np.asarray(layer.weights, np.int64).reshape(n, -1)
    bias = np.asarray(layer.bias, np.int64)
    dead = np.all(w == zw[:, None], axis=1) & (n0 <= 0)
    lo, hi = (int(v) for v in layer.out_range)
    const = np.full(n, None, object)
    if dead.any():
        y = requant_tflite_double(bias[dead], m0[dead], n0[dead], wrap=True, layer=layer.name)
        const[dead] = [int(v) for v in np.clip(y + int(layer.out_zero_point), lo, hi)]
    live = ~dead
    if rq["FAST"] < 1:
        return 0, None
    if live.any():
        z = int(layer.in_zero_point)
        xlo, xhi = (-128, 127) if layer.in_signed else (0, 255)
        dx = max(abs(xlo - z), abs(xhi - z))
        # |acc| of each live channel: |bias| + sum |w - z_w| max |x'|
        bound = (np.abs(bias[live]) + np.abs(w[live] - zw[live, None]).sum(axis=1) * dx).max()
        left = max(int(n0[live].max()), 0)
        if not (n0[live].min() >= -20 and n0[live].max() <= 7
                and (n0[live].max() < 0 or rq["LOZ"] >= 0)  # sh = 0 needs the sign term gone
                and int(bound) << (left + 1) < (1 << 31)):
            return 0, None
    else:
        left = 0
    if rq["NM"] == 1 and not dead.any():
        return 1, const
    return (5 if left else 4), const


def _conv_tables(layer, rows: range, tab: int, const: np.ndarray | None) -> np.ndarray:
    """The TAB words of channels ``rows`` (:func:`conv_plan`; ``const``: :func:`_conv_tab`'s
    constant outputs) as little-endian bytes."""
    if not tab:
        return np.zeros(0, np.uint8)
    c = np.asarray(list(rows), np.int64)
    n = int(layer.out_channels)
    bias2 = (np.asarray(layer.bias, np.int64)[c] * 2) % (1 << 32)
    cols = [bias2]
    if tab >= 4:
        m0 = np.broadcast_to(np.atleast_1d(np.asarray(layer.m0, np.int64)), (n,))[c].copy()
        n0 = np.broadcast_to(np.atleast_1d(np.asarray(layer.n0, np.int64)), (n,))[c].copy()
        sh = np.maximum(-n0, 0)
        half = np.where(sh > 0, 1 << np.maximum(sh - 1, 0), 0)
        rnd = half + int(layer.out_zero_point) * (1 << sh)
        ls = np.maximum(n0, 0)
        k = np.array([v is not None for v in const[c]], bool)  # a constant channel: h = 0,
        if k.any():  # the code itself as rounding constant
            bias2[k], m0[k], sh[k], ls[k] = 0, 0, 0, 0
            rnd[k] = np.asarray(list(const[c][k]), np.int64)
        cols += [m0, rnd % (1 << 32), sh]
        if tab == 5:
            cols.append(ls)
    words = np.stack(cols, axis=1).astype(np.uint32).astype("<u4")
    return words.ravel().view(np.uint8)


def conv_weights(layer, quad: int = 0, tab: int = 0, rounding: str | None = None,
                 signed: bool = False) -> np.ndarray:
    """The weight bytes of an 8-bit convolution or pointwise layer in tn_m7_conv's order
    (c/tn_m7_gemm.h): each row's window rows of KW * C codes padded to KWCP lanes
    (:func:`tinyopt.integer.steps.conv_lanes`) with the row's weight zero point; then, with
    ``quad``, the rows in blocks of four (two pairs a, b: per group of four lanes the words
    [pair 0 A, pair 1 A, pair 0 B, pair 1 B], A = [a_k, b_k ^ 0x80, a_k+2, b_k+2 ^ 0x80], B the
    odd lanes'), then the rows left in pairs (per group [A, B], :func:`fc_weights`' pair words),
    then the last row of an odd count as it is (padded). With ``tab``, each block (quad, pair,
    last row) is followed by its channels' requantization words (:func:`conv_plan`). Without
    either: N * KP bytes (N K when KW * C is a multiple of four). With ``quad`` = 2
    (:func:`conv_plan`'s small pointwise layers): int16 lanes 2 (w - z_w) in blocks of four rows,
    per group the words [A r0 .. A r3, B r0 .. B r3], each block followed by its table (TAB 4:
    its 2 bias words before the weights, m0, rnd, sh after; ``signed`` is not used: 2 N KP
    bytes plus the tables). ``signed`` (SGW,
    :func:`signed_weights`): the codes minus their zero points, a pair's lanes 256 d_b + d_a.

    Arguments:
        layer: a conv2d or pointwise layer of 8-bit weights.
        quad, tab: :func:`conv_plan`'s answer for the layer (default: neither).
        rounding: the graph's rounding flavour (needed with ``tab``).

    Returns:
        uint8 array: N * KP bytes (2 N KP with quad = 2), plus 4 * tab bytes per channel.

    Raises:
        ValueError: not a conv2d or pointwise layer of 8-bit weights; quad / tab out of range,
            or a tab (or quad = 2) that is not conv_plan's for the layer and rounding; ``signed``
            weights that :func:`signed_weights` refuses.
    """
    if layer.kind not in ("conv2d", "pointwise") or layer.weight_bits != 8:
        raise ValueError(f"layer {layer.name!r}: conv_weights packs conv2d and pointwise layers "
                         f"of 8-bit weights, not a {layer.weight_bits}-bit {layer.kind} layer")
    if (quad not in (0, 1, 2) or tab not in (0, 1, 2, 3, 4, 5)
            or (tab in (2, 3) and quad != 2)):
        raise ValueError(f"layer {layer.name!r}: conv_weights takes quad in (0, 1, 2) and tab "
                         f"in (0, 1, 4, 5), or 2 and 2 / 3 (conv_plan), not {quad!r} and "
                         f"{tab!r}")
    const = _conv_tab(layer, rounding)[1] if tab else None
    if tab and (const is None or (_conv_tab(layer, rounding)[0] != tab and tab not in (2, 3))):
        raise ValueError(f"layer {layer.name!r}: conv_weights' tab={tab} is not conv_plan's "
                         f"for rounding {rounding!r}")
    rows = _padded_rows(layer)
    if quad == 2:
        return _w16_weights(layer, rows, tab, const, rounding)
    if signed:
        rows = _signed_rows(rows, layer, "tn_m7_conv")
    n, kp = rows.shape

    def words(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A pair's words per group: A = [a_k, b'_k, a_k+2, b'_k+2], B = the odd lanes."""
        a4, b4 = a.reshape(-1, 4), (b ^ np.uint8(0x80)).reshape(-1, 4)
        return (np.stack([a4[:, 0], b4[:, 0], a4[:, 2], b4[:, 2]], axis=-1),
                np.stack([a4[:, 1], b4[:, 1], a4[:, 3], b4[:, 3]], axis=-1))

    parts, c = [], 0
    while quad and c + 4 <= n:  # per group [pair 0 A, pair 1 A, pair 0 B, pair 1 B]
        a0, b0 = words(rows[c], rows[c + 1])
        a1, b1 = words(rows[c + 2], rows[c + 3])
        parts += [np.stack([a0, a1, b0, b1], axis=1).ravel(),
                  _conv_tables(layer, range(c, c + 4), tab, const)]
        c += 4
    while c + 2 <= n:  # per group [A, B]
        a0, b0 = words(rows[c], rows[c + 1])
        parts += [np.stack([a0, b0], axis=1).ravel(),
                  _conv_tables(layer, range(c, c + 2), tab, const)]
        c += 2
    if c < n:
        parts += [rows[c], _conv_tables(layer, range(c, n), tab, const)]
    return np.concatenate(parts).astype(np.uint8)


# QUAD = 2 (tn_m7_cv_w16): pointwise layers of at most this many lanes get int16 weights
W16_MAX_LANES = 32


def _w16_weights(layer, rows: np.ndarray, tab: int, const, rounding) -> np.ndarray:
    """:func:`conv_weights` with QUAD = 2: int16 lanes 2 (w - z_w) of the padded rows, in blocks
    of four rows, per group of four lanes the words [A r0 .. A r3, B r0 .. B r3] (A: lanes k,
    k + 2 as low and high half; B: k + 1, k + 3), each block followed by its TAB table; with
    TAB = 4 the block's four 2 bias words come before its weights instead (the seeds of its
    sums, tn_m7_cv_w16_run) and its channels' m0, rnd, sh after them.

    Raises:
        ValueError: not conv_plan's QUAD = 2 for the layer and rounding (a pointwise layer of at
            most W16_MAX_LANES lanes, a multiple of four output channels, a table)."""
    if (not tab or layer.kind != "pointwise" or layer.out_channels % 4
            or rows.shape[1] > W16_MAX_LANES
            or (2, tab) not in (conv_plan(layer, rounding), conv_plan(layer, rounding, True))):
        raise ValueError(f"layer {layer.name!r}: conv_weights' quad=2 is not conv_plan's for "
                         f"rounding {rounding!r}")
    n, kp = rows.shape
    d2 = 2 * (rows.astype(np.int64) - _row_zero_points(layer, n)[:, None])  # |.| <= 510
    scaled = _w16_scaled(layer, rounding) if tab in (2, 3) else None
    if scaled is not None:  # TAB 3 / 2: 2^E (w - z_w), |.| < 2^15 (_w16_scaled)
        d2 = (d2 // 2) << scaled[1][:, None]
    g = d2.reshape(n // 4, 4, kp // 4, 4)  # block, row, group, lane
    # per block and group: half A (lanes 0, 2) then B (1, 3), rows 0-3, (low, high) int16
    halves = np.stack([g[..., [0, 2]], g[..., [1, 3]]], axis=2)  # block, row, half, group, 2
    words = np.ascontiguousarray(halves.transpose(0, 3, 2, 1, 4).astype("<i2")).view(np.uint8)
    words = words.reshape(n // 4, -1)
    parts = []
    for b in range(n // 4):
        if scaled is not None:  # [2^E bias x 4][weights][m0, C (, K) x 4]
            seed, m0, cc, k = (np.asarray(v[4 * b:4 * b + 4], np.int64) % (1 << 32)
                               for v in scaled[2:])
            cols = [m0, cc] + ([k] if tab == 2 else [])
            parts += [seed.astype("<u4").view(np.uint8), words[b],
                      np.stack(cols, axis=1).astype("<u4").ravel().view(np.uint8)]
            continue
        table = _conv_tables(layer, range(4 * b, 4 * b + 4), tab, const)
        if tab == 4:  # the 2 bias first (the sums' seeds), then m0, rnd, sh per channel
            cols = table.view("<u4").reshape(4, 4)
            parts += [np.ascontiguousarray(cols[:, 0]).view(np.uint8), words[b],
                      np.ascontiguousarray(cols[:, 1:]).view(np.uint8).ravel()]
        else:
            parts += [words[b], table]
    return np.concatenate(parts).astype(np.uint8)


def w16_shift(layer, rounding: str | None, fused: bool = False) -> int:
    """tn_m7_conv's TSH: the layer's one shift T of QUAD = 2, TAB = 3 or 2
    (:func:`_w16_scaled`; ``fused`` as for :func:`conv_plan`), else 0."""
    if layer.kind != "pointwise" or conv_plan(layer, rounding, fused)[1] not in (2, 3):
        return 0
    return _w16_scaled(layer, rounding)[0]


def _w16_scaled(layer, rounding: str | None):
    """QUAD = 2's TAB 3 and 2 (c/tn_m7_gemm.h, tn_m7_cv_w16_run): (T, E, seed, m0, C, K),
    else None.

    TFLite's double rounding of a channel (h = SMMULR(2^(ls + 1) acc, m0), y = (h + rnd) >> sh
    with rnd = [sh > 0] 2^(sh - 1) + z_out 2^sh, the sign term dropped: LOZ >= 0, as
    tn_m7_cv_rq) is floor((2^(ls + 1) acc m0 + 2^31 + rnd 2^32) / 2^(32 + sh)) (floors of
    floors). With T = max sh + 1 over the layer and d = T - sh >= 1 per channel, multiplying
    numerator and denominator by 2^d: floor((acc' m0 + C 2^32) / 2^(32 + T)), acc' = 2^E acc
    (E = ls + 1 + d: the int16 weights 2^E (w - z_w), the sums seeded with 2^E bias) and C =
    2^(d - 1) + rnd 2^d, i.e. SMMLA(acc', m0, C) >> T: every channel one shift, a constant
    (SSAT's shifted operand). A constant channel (_conv_tab) gets E = 0, m0 = 0, C = code 2^T.
    With LOZ < 0 the sign term stays (every sh >= 1 then, _conv_tab): y = (h + rnd - [h < 0])
    >> sh, and [h < 0] may be [acc < 0] (m0 > 0: h <= 0 for acc < 0, and h = 0 gives
    (rnd - 1) >> sh = z_out = rnd >> sh for sh >= 1), i.e. C - K [acc' < 0] with K = 2^d (0 on
    a constant channel). None unless conv_plan's QUAD = 2 with a table applies, every n0 in
    [-20, 7], |2^E (w - z_w)| < 2^15 and |acc| 2^E < 2^30 (acc_bound per channel) on every live
    channel.

    Returns:
        (T, E, seed 2^E bias, m0, C, K): T an int, the others int64 arrays per channel (K all 0
        with LOZ >= 0).
    """
    tab, const = _conv_tab(layer, rounding)
    if (not tab or layer.kind != "pointwise" or conv_lanes(layer)[1] > W16_MAX_LANES
            or layer.out_channels % 4):
        return None
    rq = requant_constants(layer, layer.rounding or rounding)
    n = int(layer.out_channels)
    n0 = np.broadcast_to(np.atleast_1d(np.asarray(layer.n0, np.int64)), (n,))
    m0 = np.broadcast_to(np.atleast_1d(np.asarray(layer.m0, np.int64)), (n,)).copy()
    zw = np.broadcast_to(np.atleast_1d(np.asarray(layer.weight_zero_point, np.int64)), (n,))
    bias = np.asarray(layer.bias, np.int64)
    live = np.array([v is None for v in const], bool)
    if live.any() and not (n0[live].min() >= -20 and n0[live].max() <= 7):
        return None
    sh, ls = np.maximum(-n0, 0), np.maximum(n0, 0)
    t = int(sh[live].max()) + 1 if live.any() else 1
    d = np.maximum(t - sh, 1)  # >= 1 on every live channel (T above every live sh)
    e = np.where(live, ls + 1 + d, 0)
    w = np.asarray(layer.weights, np.int64).reshape(n, -1) - zw[:, None]
    z = int(layer.in_zero_point)
    xlo, xhi = (-128, 127) if layer.in_signed else (0, 255)
    dx = max(abs(xlo - z), abs(xhi - z))
    bound = np.abs(bias) + np.abs(w).sum(axis=1) * dx
    if np.any(live & ((np.abs(w).max(axis=1) << e >= 1 << 15) | (bound << e >= 1 << 30))):
        return None
    rnd = np.where(sh > 0, 1 << np.maximum(sh - 1, 0), 0) + int(rq["ZP"]) * (1 << sh)
    cc = (1 << (d - 1)) + rnd * (1 << d)
    seed = bias << e
    k = np.where(live, 1 << d, 0) if rq["LOZ"] < 0 else np.zeros(n, np.int64)
    if live.any() and rq["LOZ"] < 0 and (sh[live].min() < 1 or m0[live].min() < 1):
        return None  # (the table already refuses sh = 0 with LOZ < 0; m0 = 0 for safety)
    if not live.all():
        seed[~live], m0[~live] = 0, 0
        cc[~live] = np.asarray(list(const[~live]), np.int64) << t
    return t, e, seed, m0, cc, k


def w16_add_table(step: Step, rounding: str | None) -> tuple[np.ndarray, int] | None:
    """The residual ADD fused into a QUAD = 2, TAB 3 / 2 pointwise step as a table
    (c/tn_m7_gemm.h, tn_m7_cv_addtab): (table, FSH), or None (the step keeps tn_m7_cv_out's
    per-output tn_m7_add arithmetic).

    tn_m7_add's ADD is Q(R_own(y - z_own) + ((o - z_o) << S_o)) with the other addend's stage a
    plain shift (R = 2: TFLite rescales the input of the larger scale by exactly 1/2). Entry y
    (the layer's output code, saturated to its 8-bit type; the layer's own clamp applied
    here) is (R_own(clamp(y) - z_own) - (z_o << S_o)) << S_Q modulo 2^32, so that the output
    stage's operand is table[y] + (o << FSH), FSH = S_o + S_Q: one load and one add per output
    in place of the own addend's stage. Checked on every pair of codes (256 x 256) against
    the simulator's ADD (``tinyopt.integer.ops.add.simulate``): exact on any input by
    construction. 256 int32 words of flash, in code order (-128 .. 127 or 0 .. 255).

    Arguments:
        step: a compute step; rounding: the graph's flavour (for layers that name none).

    Returns:
        (table as int32 [256], FSH), or None: no fused ADD, not QUAD = 2 with TAB 3 / 2,
        add_plan refuses the ADD, the other addend's stage is not a plain shift, FSH > 31, or
        the check fails.
    """
    layer = step.layer
    if (step.add is None or layer.kind != "pointwise"
            or conv_plan(layer, rounding, fused=True) not in ((2, 2), (2, 3))):
        return None
    p = add_plan(step, rounding)
    if isinstance(p, str):
        return None
    own, oth = ("B", "A") if p["SLOT"] else ("A", "B")
    so, sq = p[oth], p["Q"]
    fsh = int(so["S"]) + int(sq["S"])
    if so["R"] != 2 or so["K"] or fsh > 31:
        return None
    signed = bool(p["XS"])
    codes = np.arange(-128, 128, dtype=np.int64) if signed else np.arange(256, dtype=np.int64)
    rq = requant_constants(layer, layer.rounding or rounding)
    lo, hi = int(rq["LOZ"]) + int(rq["ZP"]), int(rq["HIZ"]) + int(rq["ZP"])
    zo = int(p["ZB"] if not p["SLOT"] else p["ZA"])
    own_out = np.asarray(p[own]["out"], np.int64)[np.clip(codes, lo, hi) - codes[0]]
    table = ((own_out - (zo << int(so["S"]))) << int(sq["S"])) & 0xFFFFFFFF
    table = np.where(table >= 1 << 31, table - (1 << 32), table)
    # the kernel's arithmetic on every pair (own code, other code) against the simulator
    y, o = np.meshgrid(codes, codes, indexing="ij")
    x = (table[y - codes[0]] + (o << fsh)) & 0xFFFFFFFF
    x = np.where(x >= 1 << 31, x - (1 << 32), x)
    if sq["R"] == 2:
        t = x
    else:
        c = int(sq["C"]) - int(sq["F"]) * (x < 0)
        t = c + ((x * int(sq["M"]) + (int(sq["R"] == 1) << 31)) >> 32)
    out = np.clip(np.clip(t >> int(sq["K"]), *((-128, 127) if p["OS"] else (0, 255))),
                  p["LO"], p["HI"])
    add = step.add
    ins = [np.clip(y, lo, hi), o] if not p["SLOT"] else [o, np.clip(y, lo, hi)]
    sim = types.SimpleNamespace(layer=add, rounding=add.rounding or rounding,
                                zero_points=[int(p["ZA"]), int(p["ZB"])])
    want = REGISTRY["add"].simulate(sim, ins, False).astype(np.int64)
    if not np.array_equal(out, want):
        return None
    return table.astype(np.int32), fsh

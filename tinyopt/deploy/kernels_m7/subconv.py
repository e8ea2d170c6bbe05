"""``tn_m7_subconv`` (c/tn_m7_subconv.h) and ``tn_m7_subfc`` (c/tn_m7_subfc.h): sub-byte
convolution, pointwise and dense layers on blocks of four rows (the dense kernel reads
:func:`subconv_weights`' blocks, hence one module): RAW / chunk plans, weight orders, the
fused sub-byte ADD's table and the calls. Sub-byte dense layers take ``tn_m7_subfc`` (four rows
per 16-bit lane, no scratch) unless :func:`subfc16_scale` gives them ``tn_m7_subfc16``
(:mod:`tinyopt.deploy.kernels_m7.subfc16`).
"""

from __future__ import annotations

import types

import numpy as np

from tinyopt.integer.steps import (
    Step, _hwc, gemm_geometry, kernel_window, scratch_parts, sub_fc_unpack_size, sub_lane_group,
    sub_lanes)
from tinyopt.integer.ops.registry import REGISTRY
from tinyopt.deploy.kernels_m7.common import _scratch, _inside, _x_box
from tinyopt.deploy.kernels_m7.add import _addends, _fused_add_args
from tinyopt.deploy.kernels_m7.subfc16 import (
    subfc16_block_rows, subfc16_pcs_shift, subfc16_scale, subfc16_weights)


def _subconv_rows(layer) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The codes of tn_m7_subconv's rows as its lanes order them: [N4, KP] (each window row
    padded to KWCP lanes with the row's weight zero point, N rounded up to a block of four
    with rows of code 0), and the lane pairs (i_q, j_q) of a pixel's window in word order."""
    kh, kw = kernel_window(layer)
    kwcp, kp = sub_lanes(layer)
    g = sub_lane_group(layer)
    from tinyopt.integer.graph import unpack
    n = len(layer.weights)
    row = kw * _hwc(layer.in_shape)[2]
    codes = unpack(np.asarray(layer.weights, np.uint8), int(layer.weight_bits), kh * row)
    zw = np.broadcast_to(np.atleast_1d(np.asarray(layer.weight_zero_point, np.int64)), (n,))
    padded = np.zeros((-(-n // 4) * 4, kh, kwcp), np.int64)
    padded[:n, :, :row] = codes.reshape(n, kh, row)
    padded[:n, :, row:] = zw[:, None, None]
    pairs = [(base + j, base + j + g // 2) for base in range(0, kp, g) for j in range(g // 2)]
    return padded.reshape(len(padded), kp), pairs


def subconv_raw(layer) -> int:
    """RAW of tn_m7_subconv (c/tn_m7_subconv.h) for a layer of 4-bit weights: 2 when, for every
    block of four rows and every input, 16 |A_1|, 256 |A_2| and 4096 |A_3 - 8 sum x'| stay below
    2^31 (A_r = sum w_r x' of row r of the block: the sums the loop keeps scaled), 1 when the
    first two do, else 0 (each row masked after a shift, unscaled). Bounded from the weights
    themselves, sum_k |w_k| max |x'|; 0 for other widths (2-bit weights: scaled by
    steps.sub_conv_fits' bound, whatever the weights)."""
    if int(layer.weight_bits) != 4:
        return 0
    rows, _ = _subconv_rows(layer)
    dx = _x_box(layer)
    blocks = rows.reshape(-1, 4, rows.shape[1])
    top = (1 << 31)
    fit1 = bool((16 * np.abs(blocks[:, 1]).sum(axis=1) * dx < top).all()
                and (256 * np.abs(blocks[:, 2]).sum(axis=1) * dx < top).all())
    fit3 = bool((4096 * np.abs(blocks[:, 3] - 8).sum(axis=1) * dx < top).all())
    return 2 if fit1 and fit3 else 1 if fit1 else 0


def subconv_pack(layer) -> int:
    """PK of tn_m7_subconv (c/tn_m7_subconv.h, TN_SC_PK_BLOCKS; passed as RAW = 1 with 2-bit
    weights): 1 where a conv2d or pointwise layer of 2-bit weights may sum two rows of a block
    per int16 lane, w_a + 2^13 w_b, so that P = A_a + 2^13 A_b splits exactly into A_a = P &
    0x1FFF and A_b = P >> 13: every x' = x - z_x of the window >= 0 (unsigned inputs, z_x <= 0;
    padded taps hold 0 or -z_x), and for every block of four rows and both pairs (a, b) = (0, 1),
    (2, 3): sum_k w_ak max x' < 2^13 and (sum_k w_ak + 2^13 sum_k w_bk) max x' < 2^31, from the
    stored codes themselves (padding lanes hold z_w, padding rows 0). Same weight bytes as
    without it (:func:`subconv_weights`). Else 0.

    Arguments:
        layer: an integer layer.

    Returns:
        1 or 0.
    """
    if (int(layer.weight_bits) != 2 or layer.kind not in ("conv2d", "pointwise")
            or layer.weights is None or layer.in_signed or int(layer.in_zero_point) > 0):
        return 0
    xmax = (1 << int(layer.in_bits)) - 1 - int(layer.in_zero_point)
    rows, _ = _subconv_rows(layer)
    sums = rows.reshape(-1, 4, rows.shape[1]).astype(np.int64).sum(axis=-1)  # [block, row]
    low = (sums[:, 0::2] * xmax < (1 << 13)).all()
    whole = ((sums[:, 0::2] + (1 << 13) * sums[:, 1::2]) * xmax < (1 << 31)).all()
    return int(bool(low and whole))


def subconv_weights(layer) -> np.ndarray:
    """The weight bytes of a step of tn_m7_subconv (c/tn_m7_subconv.h, its comment): rows padded as
    :func:`_subconv_rows`, in blocks of four; per block and lane pair q (window order) one word
    of 4-bit weights (nibble r: row r at i_q, nibble 4 + r: row r at j_q; nibble 3 and 7 stored
    ^ 8 when :func:`subconv_raw` is 2), or per two lane pairs q, q + 1 one word of 2-bit weights
    (crumbs r, 4 + r, 8 + r, 12 + r: row r at i_q, i_{q+1}, j_q, j_{q+1}). ceil(N / 4) 4 KP WB / 8
    bytes.

    Arguments:
        layer: a conv2d or pointwise layer of 2 or 4-bit weights
            (:func:`tinyopt.integer.steps.sub_conv_fits`).

    Returns:
        uint8 array.

    Raises:
        ValueError: another kind of layer or weight width.
    """
    wb = int(layer.weight_bits)
    if layer.kind not in ("conv2d", "pointwise", "dense") or wb not in (2, 4) or (
            layer.kind == "dense" and len(layer.in_shape) != 1):
        raise ValueError(f"layer {layer.name!r}: subconv_weights packs conv2d, pointwise and "
                         f"dense (1-D input) layers of 2 or 4-bit weights, not a {wb}-bit "
                         f"{layer.kind} layer of input shape {tuple(layer.in_shape)}")
    rows, pairs = _subconv_rows(layer)
    raw = subfc_plan(layer)[0] if layer.kind == "dense" else subconv_raw(layer)
    if wb == 4 and raw == 2:
        rows = rows.copy()
        rows[3::4] ^= 8
    blocks = rows.reshape(-1, 4, rows.shape[1])  # [block, r, lane]
    i = np.array([a for a, _ in pairs])
    j = np.array([b for _, b in pairs])
    if wb == 4:  # [block, q, 8 nibbles]: rows at i_q, then rows at j_q
        fields = np.concatenate([blocks[:, :, i], blocks[:, :, j]], axis=1).transpose(0, 2, 1)
    else:  # [block, q / 2, 16 crumbs]: rows at i_q, i_{q+1}, j_q, j_{q+1}
        fi, fj = blocks[:, :, i], blocks[:, :, j]
        fields = np.concatenate([fi[:, :, 0::2], fi[:, :, 1::2], fj[:, :, 0::2], fj[:, :, 1::2]],
                                axis=1).transpose(0, 2, 1)
    shifts = np.arange(fields.shape[-1], dtype=np.uint64) * wb
    words = (fields.astype(np.uint64) << shifts).sum(axis=-1).astype("<u4")
    return words.reshape(-1).view(np.uint8).copy()


def subfc_plan(layer) -> tuple[int, int]:
    """(RAW, KC) of tn_m7_subfc (c/tn_m7_subfc.h) for a dense layer of
    :func:`tinyopt.integer.steps.sub_fc_fits`: 4-bit weights take RAW 2 (row 3 unmasked) over
    the whole input when :func:`subconv_raw` allows it (KC = all ceil(K XB / 32) input words), else
    in chunks of KC words short enough that the loop's scaled sums stay exact whatever the
    weights (16 * 15, 256 * 15 and 4096 * 8 times max |x'| per input: KC words of 32 / XB
    inputs below 2^31), each chunk's sums unscaled and added; :func:`subconv_raw`'s level over
    the whole input if such chunks would be shorter than four words. 2-bit weights: RAW 0 (their
    layout needs none), one chunk (the bound of sub_fc_fits)."""
    xb = int(layer.in_bits)
    words = -(-int(layer.in_shape[0]) * xb // 32)
    if int(layer.weight_bits) != 4:
        return 0, words
    raw = subconv_raw(layer)
    if raw == 2:
        return 2, words
    kc = ((1 << 31) - 1) // (4096 * 8 * _x_box(layer)) // (32 // xb)
    return (2, min(kc, words)) if kc >= 4 else (raw, words)


def subfc_oct(layer) -> int:
    """The chunk (input words) of tn_m7_subfc's blocks of eight rows (c/tn_m7_subfc.h) for a
    dense layer of :func:`tinyopt.integer.steps.sub_fc_fits`, or 0 where it keeps blocks of
    four. Blocks of eight take inputs whose lanes need no offset (x' = the code: z_x = 0 for
    8-bit and unsigned sub-byte inputs, z_x = -2^(b-1) for signed sub-byte ones; an offset
    would need a fifteenth register) and at least eight rows; 4-bit weights at RAW 2
    (:func:`subfc_plan`, its chunk); 2-bit weights: the whole input where every block of eight
    keeps 4^r |A_r| (r = 1 .. 6) and 16384 |A_7 - 2 sum x'| below 2^31 for every input (bounded
    from the weights, 4^r sum_k |w_r| max |x'|), else chunks short enough whatever the weights
    (32768 max |x'| per input). 8-bit inputs with an offset may still take blocks of eight in
    tn_m7_subfc's own steps (FOLD: :func:`subfc_fold`).

    Arguments:
        layer: a dense layer of :func:`tinyopt.integer.steps.sub_fc_fits`.

    Returns:
        the chunk in input words (at least 1), or 0: blocks of four only.
    """
    xb, zx, wb = int(layer.in_bits), int(layer.in_zero_point), int(layer.weight_bits)
    dx = -zx if xb == 8 else ((1 << (xb - 1)) if layer.in_signed else 0) + zx
    if dx != 0 or int(layer.out_channels) < 8 or wb not in (2, 4):
        return 0
    raw, kc = subfc_plan(layer)
    if wb == 4:
        return kc if raw == 2 else 0
    rows, _ = _subconv_rows(layer)
    n8 = int(layer.out_channels) // 8 * 8
    blocks = rows[:n8].reshape(-1, 8, rows.shape[1])
    box, top = _x_box(layer), 1 << 31
    fit = all(bool(((4 ** r) * np.abs(blocks[:, r]).sum(axis=1) * box < top).all())
              for r in range(1, 7))
    fit = fit and bool((16384 * np.abs(blocks[:, 7] - 2).sum(axis=1) * box < top).all())
    words = -(-int(layer.in_shape[0]) * xb // 32)
    return words if fit else max(1, min(words, (top - 1) // (32768 * box) // (32 // xb)))


def _oct_words(layer, quads: np.ndarray) -> np.ndarray:
    """The first N // 8 blocks of eight rows of :func:`subfc_weights` (``quads``: its blocks of
    four, the same size): 4-bit weights, two blocks of four's words of each lane pair side by
    side; 2-bit, per lane pair q a word, lanes sum_r 4^r w_r at i_q and j_q (row 7 ^ 2).

    Arguments:
        layer: a dense layer where :func:`subfc_oct` is nonzero.
        quads: :func:`subconv_weights` of it.

    Returns:
        uint8 array of 2 (N // 8) blocks of four's bytes.
    """
    n = int(layer.out_channels)
    rows, pairs = _subconv_rows(layer)
    if int(layer.weight_bits) == 4:  # a block of four: 2 KP bytes
        octs = quads[:n // 8 * 2 * 2 * rows.shape[1]]
        words = octs.view("<u4").reshape(n // 8, 2, -1).transpose(0, 2, 1)
        return words.reshape(-1).view(np.uint8)
    blocks = rows[:n // 8 * 8].reshape(n // 8, 8, rows.shape[1]).copy()
    blocks[:, 7] ^= 2
    lanes = (blocks << (2 * np.arange(8)[None, :, None])).sum(axis=1)  # [block, lane]
    i = np.array([a for a, _ in pairs])
    j = np.array([b for _, b in pairs])
    words = (lanes[:, i] | (lanes[:, j] << 16)).astype("<u4")
    return words.reshape(-1).view(np.uint8)


def subfc_weights(layer, fc16: bool = True, octs: bool = True,
                  fold: bool | None = None) -> np.ndarray:
    """The weight bytes of a step of tn_m7_subfc (c/tn_m7_subfc.h): :func:`subconv_weights`'
    blocks of four rows (RAW of :func:`subfc_plan`), but when N % 4 is 1 or 2 the last rows
    (padded to two with code 0) as a pair block: per two lane pairs q, q + 1 a word of 4-bit
    weights, bytes (i_q, i_{q+1}, j_q, j_{q+1}) each row 0 | row 1 << 4; per four lane pairs a
    word of 2-bit weights, nibble t of the low half row 0 | row 1 << 2 at i_{q+t}, of the high
    half at j_{q+t} (the last word completed with zeros). Where :func:`subfc_oct`, the first
    N // 8 blocks of eight rows in its place, the same size: 4-bit weights, two blocks of four
    with their words of each lane pair side by side (block 2b's, then 2b + 1's: one LDRD);
    2-bit, per lane pair q a word of the eight rows, lanes sum_r 4^r w_r at i_q and j_q (row 7
    stored ^ 2). With ``fold`` where :func:`subfc_fold` takes 8-bit inputs with an offset
    to blocks of eight (tn_m7_subfc's FOLD): first, per row of those blocks of eight, the int32
    constant F_r = -z_x sum_k w_rk over the row's lanes (padding lanes' weight zero points and a
    last partial word's completing codes z_x included, so that sum_k w_rk x_k + F_r is the sum
    over x' = x - z_x exactly).

    Arguments:
        layer: a dense layer of :func:`tinyopt.integer.steps.sub_fc_fits`.
        fc16: False: tn_m7_subfc's blocks even where :func:`subfc16_scale` would give the layer
            tn_m7_subfc16's int16 lanes (tn_m7_sub's FC form, ``kernels_m7.sub_weights``,
            reads only the blocks).
        fold: tn_m7_subfc's FOLD where :func:`subfc_fold` allows it (None: as ``fc16``, True
            only for tn_m7_subfc's own steps; tn_m7_sub's FC form has no FOLD).
        octs: False: blocks of four even where :func:`subfc_oct` allows eight (tn_m7_sub's FC
            form on the layout it shares with tn_m7_subconv, ``kernels_m7.sub.sub_lane_layout``).

    Returns:
        uint8 array.

    Raises:
        ValueError: as :func:`subconv_weights`.
    """
    if fc16 and subfc16_scale(layer):  # a small layer: tn_m7_subfc16's int16 lanes
        return subfc16_weights(layer)
    quads = subconv_weights(layer)
    n, wb = int(layer.out_channels), int(layer.weight_bits)
    rows, pairs = _subconv_rows(layer)
    k = rows.shape[1]
    block = k * wb // 2  # bytes of a block of four rows
    fold = fc16 if fold is None else fold
    head = np.zeros(0, np.uint8)
    folded = octs and fold and subfc_fold(layer)[0] > 0
    if octs and (subfc_oct(layer) or folded):  # the first N // 8 blocks of eight (same size)
        octs = _oct_words(layer, quads)
        assert len(octs) == n // 8 * 2 * block
        quads = np.concatenate([octs, quads[len(octs):]])
        if folded:  # FOLD: an offset z_x, -z_x sum w per row first
            xb, zx = int(layer.in_bits), int(layer.in_zero_point)
            # the loop reads every lane of the blocks: whole words, a partial one's fields z_x
            assert k == -(-int(layer.in_shape[0]) * xb // 32) * (32 // xb), (k, layer.in_shape)
            f = -zx * rows[:n // 8 * 8].sum(axis=1)
            assert (np.abs(f) < (1 << 31)).all()
            head = f.astype("<i4").view(np.uint8)
    if n % 4 not in (1, 2):
        return np.concatenate([head, quads])
    tail = rows[n - n % 4:n - n % 4 + 2]  # the last rows, then a padding row of code 0
    i = np.array([a for a, _ in pairs])
    j = np.array([b for _, b in pairs])
    fi = tail[0, i] | (tail[1, i] << wb)  # [pair]: both rows at i_q
    fj = tail[0, j] | (tail[1, j] << wb)
    if wb == 4:  # [q / 2, 4 bytes]
        fields, width = np.stack([fi[0::2], fi[1::2], fj[0::2], fj[1::2]], axis=1), 8
    else:  # [q / 4, 8 nibbles]: four at i, four at j
        pad = (-len(fi)) % 4
        fi = np.concatenate([fi, np.zeros(pad, fi.dtype)]).reshape(-1, 4)
        fj = np.concatenate([fj, np.zeros(pad, fj.dtype)]).reshape(-1, 4)
        fields, width = np.concatenate([fi, fj], axis=1), 4
    shifts = np.arange(fields.shape[-1], dtype=np.uint64) * width
    words = (fields.astype(np.uint64) << shifts).sum(axis=-1).astype("<u4")
    return np.concatenate([head, quads[:block * (n // 4)], words.view(np.uint8)])


def _subfc_call(step: Step, common: dict, zw: np.ndarray, rq: dict, u, arena: str) -> str:
    """The body of a tn_m7_subfc step (a dense layer, :func:`tinyopt.integer.steps
    .sub_fc_fits`): its call with the layer's constants."""
    layer = step.layer
    scale = subfc16_scale(layer)
    if scale:  # tn_m7_subfc16 (subfc_weights packed its layout)
        # DBL: 8-bit inputs' doubled lanes (S = 2); PCS: 2 / 4-bit inputs' PCS form, its shift
        # R (0: the S form; nonzero exactly where subfc16_scale gave them 2)
        eight = int(layer.in_bits) == 8
        pcs = 0 if eight else subfc16_pcs_shift(layer)
        # XA: the input word-aligned (its arena offset a multiple of 4; the plan places tensors
        # at any byte): its blocks of two rows then load four input words by one LDM, which
        # hard-faults on a Cortex-M7 at an address not a multiple of 4 (else LDR, any address)
        xa = int(int(step.in_offsets[0]) % 4 == 0)
        args = [int(layer.in_shape[0]), layer.out_channels, layer.in_bits, common["XS"],
                int(eight and scale == 2), pcs, subfc16_block_rows(layer), xa, common["REQ"],
                common["NM"], common["ROUND"], common["OB"], *rq.values()]
        return "    tn_m7_subfc16(l, in[0], out, " + ", ".join(u(a) for a in args) + ");\n"
    # UNP (LEAN 2) where the plan gave the step its buffer (a Keras-path graph: only where it
    # keeps the arena, tinyopt.integer.steps.memory_plan's roomy steps), else the lean loop
    need = sub_fc_unpack_size(layer)
    unp = subfc_unpack(layer) == 1 and step.scratch_bytes >= need
    if unp and step.scratch_offset % 4:  # the plan aligns scratch (SCRATCH_ALIGN): never
        raise ValueError(f"step {step.name!r}: UNP scratch at offset {step.scratch_offset}, "
                         "not a multiple of 4; plan the steps with tinyopt.integer.steps"
                         ".memory_plan")
    args = [int(layer.in_shape[0]), layer.out_channels, layer.in_bits, common["XS"],
            common["ZX"], layer.weight_bits, *subfc_plan(layer),
            # OCT, FOLD (tn_so_run's window W3 where the blocks of eight fold -z_x sum w, else 0)
            subfc_oct(layer) or subfc_fold(layer)[0], subfc_fold(layer)[1],
            subfc_lean(layer) + int(unp), common["NWZP"],
            int(bool(zw.any())), int(zw[0]), common["REQ"], common["NM"], common["ROUND"],
            common["OB"], *rq.values()]
    xu = _scratch(step, arena, "uint32_t") if unp else "(uint32_t *)0"  # UNP's buffer
    return "    tn_m7_subfc(l, in[0], out, " + ", ".join([*(u(a) for a in args), xu]) + ");\n"


def subconv_add_table(step: Step, rounding: str | None) -> np.ndarray | None:
    """The fused residual ADD of a tn_m7_subconv step as a table (c/tn_m7_subconv.h: tn_sc_addtab),
    when both addends and the sum have the same width b <= 4 (then :func:`add_plan` refuses it):
    entry (own << b) | other is the ADD's output code (its low b bits) for the compute layer's
    output code ``own`` and the other addend's code ``other``, computed by the simulator's ADD
    (``tinyopt.integer.ops.add.simulate``) on every pair of codes, so exact on any input by
    construction; 2^(2b) bytes of flash. None otherwise (no fused ADD, other widths, or the
    flavour unknown)."""
    if step.add is None:
        return None
    (b0, sg0, _), (b1, sg1, z1), _ = _addends(step)
    add = step.add
    flavour = add.rounding or rounding
    b = int(add.out_bits)
    if flavour is None or not b0 == b1 == b <= 4:
        return None
    own_first = step.add_slot == 0
    codes = np.arange(1 << b, dtype=np.int64)
    def value(signed):  # code bits -> the number they stand for
        return codes - (1 << b) * (codes >= (1 << (b - 1))) if signed else codes
    v0, v1 = value(sg0), value(sg1)
    x0, x1 = np.meshgrid(v0, v1, indexing="ij")  # [input 0 code, input 1 code]
    p = types.SimpleNamespace(layer=add, rounding=flavour,
                              zero_points=[int(add.in_zero_point), z1])
    y = REGISTRY["add"].simulate(p, [x0, x1], False).astype(np.int64) & ((1 << b) - 1)
    table = y if own_first else y.T  # [own code, other code]
    return table.astype(np.uint8).ravel()


def _subconv_call(step: Step, common: dict, zw: np.ndarray, rq: dict, graph_rounding: str,
                  arena: str, u) -> str:
    """The body of a tn_m7_subconv step: its call with the layer's constants (and the table of
    a fused sub-byte ADD, :func:`subconv_add_table`, as a constant of the function)."""
    layer = step.layer
    fadd = _fused_add_args(step, graph_rounding)
    table = subconv_add_table(step, graph_rounding) if not fadd[0] else None
    head, tab = "", "(const uint8_t *)0"
    if table is not None:
        head = ("    static const uint8_t addtab[" + str(table.size) + "] = {"
                + ", ".join(str(int(t)) for t in table) + "};\n")
        tab = "addtab"
    h, w, c = _hwc(layer.in_shape)
    oh, ow, co = _hwc(layer.out_shape)
    kh, kw = kernel_window(layer)
    top, _, left, _ = layer.padding
    pool = [0] * 8
    if step.pool is not None:  # MODE 1: the max pool after it (tn_sc_pooled)
        p = step.pool
        pt, _, pl, _ = p.padding
        poh, pow_, _ = _hwc(p.out_shape)
        pool = [p.pool_size[0], p.pool_size[1], p.stride[0], p.stride[1], pt, pl, poh, pow_]
    mode = 1 if step.pool is not None else 2 if step.add is not None else 0
    args = [mode, h, w, c, oh, ow, co, kh, kw, layer.stride[0],
            layer.stride[1], top, left, layer.in_bits, common["XS"], common["ZX"],
            common["PADZERO"], sub_lane_group(layer), sub_lanes(layer)[0],
            int(_inside(layer, gemm_geometry(layer))), layer.weight_bits,
            subconv_raw(layer) if int(layer.weight_bits) == 4 else subconv_pack(layer),
            common["NWZP"], int(zw[0]), common["REQ"], common["NM"], common["ROUND"],
            common["OB"]]
    rest = [*pool, *rq.values(), *fadd]
    lanes, _ = scratch_parts(step)  # the int32 outputs of a fused ADD follow the lanes
    obo = int(step.in_specs[1].bits) if step.add is not None else 0
    other = "in[1]" if step.add is not None else "in[0]"
    epi = subconv_epi(step, common, rq, table is not None, eight=True)
    fn = "tn_m7_subconv_epi" if epi else "tn_m7_subconv"
    return head + (f"    {fn}(l, in[0], {other}, out, "
            f"{_scratch(step, arena, 'uint32_t')},\n                  "
            f"{_scratch(step, arena, 'int32_t', lanes)}, "
            + ", ".join(u(a) for a in args) + f", {tab}, {obo}u,\n                  "
            + ", ".join(u(a) for a in rest) + ");\n")


def subconv_epi(step: Step, common: dict, rq: dict, table: bool, eight: bool = False) -> bool:
    """Does a tn_m7_subconv step take tn_m7_subconv_epi (c/tn_m7_subconv.h: each block's outputs
    by tn_sc_epi's assembly)? Python's copy of tn_sc_epi_fits, from the step's call constants:
    4-bit weights at RAW 2 or 2-bit weights, 4 or 2-bit outputs stored (no pool) or through the
    fused ADD's table (both addends of OB bits), with ``eight`` 8-bit outputs stored too (no
    fused ADD), CO % 4 == 0, one weight zero point, per-channel floor multipliers (FAST >= 1)
    with |ZP| <= 255 and the whole signed or unsigned clamp. Where the C's test disagrees
    tn_m7_subconv_epi runs tn_m7_subconv (the same outputs).

    Arguments:
        step: a step of :func:`tinyopt.integer.steps.sub_conv_step`.
        common: the call's constants (NWZP, REQ, NM, ROUND, OB; kernels_m7.step_function).
        rq: its requantization constants without NM (FAST, M0, N0, LOZ, HIZ, ZP).
        table: the fused ADD goes by its table (:func:`subconv_add_table`).
        eight: 8-bit outputs may take it (tn_m7_subconv's own steps; tn_m7_sub's pairs,
            ``kernels_m7.sub.sub_epi``, keep their 4 and 2-bit outputs only).

    Returns:
        True for tn_m7_subconv_epi.
    """
    from tinyopt.deploy.kernels_m7.common import ROUNDING_ID
    layer = step.layer
    wb, ob, co = int(layer.weight_bits), int(common["OB"]), int(layer.out_channels)
    if step.pool is not None or (step.add is not None and not (
            table and int(step.in_specs[1].bits) == ob)):
        return False
    if (not ((wb == 4 and subconv_raw(layer) == 2) or wb == 2) or co % 4
            or ob not in ((2, 4, 8) if eight and step.add is None else (2, 4))):
        return False
    zp, half = int(rq["ZP"]), 1 << (ob - 1)
    if (common["NWZP"] != 1 or not common["REQ"] or common["NM"] == 1 or rq["FAST"] < 1
            or common["ROUND"] != ROUNDING_ID["floor"] or abs(zp) > 255 or co * ob // 8 > 4095):
        return False
    lo, hi = rq["LOZ"] + zp, rq["HIZ"] + zp
    return (lo, hi) in ((-half, half - 1), (0, 2 * half - 1))


def subfc_fold(layer) -> tuple[int, int]:
    """(OCT, FOLD) of tn_m7_subfc's FOLD (c/tn_m7_subfc.h): a dense layer of 4-bit weights at
    RAW 2 over 8-bit inputs with an offset (z_x != 0, so :func:`subfc_oct` keeps it off the
    blocks of eight), at least eight rows and 64 inputs, takes the blocks of eight on the codes
    x with -z_x sum w a constant per row (:func:`subfc_weights`): the chunk and window of
    :func:`subfc_fold_window`. (0, 0) otherwise. FOLD costs an LDR and ADD per row against
    about 2 instructions per row and input word saved over TWIN / blocks of four: below 64
    inputs it hardly pays, so those keep them.

    Arguments:
        layer: a dense layer of :func:`tinyopt.integer.steps.sub_fc_fits`.

    Returns:
        (chunk in input words, W3), or (0, 0): no FOLD.
    """
    if not (int(layer.in_bits) == 8 and int(layer.in_zero_point) != 0
            and int(layer.weight_bits) == 4 and int(layer.out_channels) >= 8
            and int(layer.in_shape[0]) >= 64 and subfc_plan(layer)[0] == 2):
        return 0, 0
    return subfc_fold_window(layer)


def subfc_fold_window(layer) -> tuple[int, int]:
    """(chunk, W3) of tn_m7_subfc's FOLD (c/tn_m7_subfc.h) for a dense layer of 4-bit weights
    at RAW 2 over 8-bit codes x (no offset in the lanes): its blocks of eight keep
    C_r - C_{r-1} = 16^r A_r modulo 2^32 per chunk of input words. Rows 1 and 2 (weights 0 ..
    15) need 16 |A_1|, 256 |A_2| < 2^31 over every x of the grid; rows 3 and 7 (held w - 8)
    only that 4096 A_3 lies in a window [-4096 W3, 2^32 - 4096 W3) known at export (the loop
    shifts logically after adding 4096 W3): over [0, 255] A_3 spans [-255 N, 255 P] (N, P the
    sums of the row's negative and positive w - 8), off-centre where z_w is low, so the whole
    input fits where 4096 (max 255 N + max 255 P) < 2^32 even when 4096 * 255 * max N >= 2^31
    (AD's first layer: max N 2213 over 640 inputs). Else chunks short enough whatever the
    weights (4096 * 8 max |x| per input) with W3 = 2^19 ([-2^31, 2^31), the arithmetic shift).

    Arguments:
        layer: a dense layer of :func:`tinyopt.integer.steps.sub_fc_fits` with 8-bit inputs and
            4-bit weights at RAW 2 (:func:`subfc_plan`).

    Returns:
        (chunk in input words, W3 >= 1).
    """
    rows, _ = _subconv_rows(layer)
    n8 = int(layer.out_channels) // 8 * 8  # the blocks of eight's rows (the rest: TWIN / four)
    blocks = rows[:n8].reshape(-1, 4, rows.shape[1]).astype(np.int64)
    words = -(-int(layer.in_shape[0]) * 8 // 32)
    signed = bool(layer.in_signed)
    box, top = (128 if signed else 255), 1 << 31
    low = bool((16 * blocks[:, 1].sum(axis=1) * box < top).all()
               and (256 * blocks[:, 2].sum(axis=1) * box < top).all())
    d = blocks[:, 3] - 8
    pos, neg = np.clip(d, 0, None).sum(axis=1), (-np.clip(d, None, 0)).sum(axis=1)
    if signed:  # x in [-128, 127]: A_3 in [-(128 P + 127 N), 127 P + 128 N]
        below, above = int((128 * pos + 127 * neg).max()), int((127 * pos + 128 * neg).max())
    else:  # x in [0, 255]: A_3 in [-255 N, 255 P]
        below, above = int(255 * neg.max()), int(255 * pos.max())
    if low and 4096 * (below + above) < (1 << 32) and below < (1 << 20):
        return words, max(1, below)
    return max(1, min(words, (top - 1) // (4096 * 8 * box) // 4)), 1 << 19


def subfc_lean(layer) -> int:
    """LEAN of tn_m7_subfc (c/tn_m7_subfc.h, its lean blocks of eight: tn_sl_block): 1 where
    the blocks of eight of a dense layer of 4-bit weights at RAW 2 or of 2-bit weights
    (:func:`subfc_oct`, or FOLD: :func:`subfc_fold`) run over the whole input in one chunk of
    whole words with one weight
    zero point z_w, and the loop's sums, started at their rows' constants (-z_w sum x', + 8 sum
    x' for rows 3 and 7 but with FOLD), stay exact: C_r - C_{r-1} = 16^(r % 4) (A_r + c_r) below
    2^31 for every row r of the blocks and every input. Without FOLD A_r + c_r = sum_k (w_rk -
    z_w) x'_k, bounded by sum_k |w_rk - z_w| max |x'|; with FOLD (8-bit codes x in the lanes,
    rows 3 and 7 left to FOLD's window) rows r % 4 = 1, 2 hold sum_k w_rk x_k - z_w sum x',
    bounded by sum_k w_rk max |x| + |z_w| K max |x'|. Else 0. Bounded from the weights
    themselves (padding lanes hold z_w: no term without FOLD). 2-bit weights (rows at 4^r in
    the loop, row 7 held w - 2: c_7 + 2 sum x') are brought to the 4-bit weights' scales
    16^(r % 4) for the epilogues: the bound takes the larger of 4^r and 16^(r % 4).

    Arguments:
        layer: a dense layer of :func:`tinyopt.integer.steps.sub_fc_fits`.

    Returns:
        1 or 0.
    """
    xb, wb, n = int(layer.in_bits), int(layer.weight_bits), int(layer.out_channels)
    k = int(layer.in_shape[0])
    words = k * xb // 32
    zw = np.atleast_1d(np.asarray(layer.weight_zero_point, np.int64))
    fold = subfc_fold(layer)[0]
    if (wb not in (2, 4) or (k * xb) % 32 or words < 1 or n < 8 or not np.all(zw == zw[0])
            or (wb == 4 and subfc_plan(layer) != (2, words))
            or (fold or subfc_oct(layer)) < words):
        return 0
    rows, _ = _subconv_rows(layer)
    top = 1 << 31
    if wb == 2:  # rows at 4^r in the loop, at 16^(r % 4) in the epilogues: the larger of both
        d = np.abs(rows[:n // 8 * 8].astype(np.int64) - int(zw[0])).reshape(-1, 8, rows.shape[1])
        scale = np.maximum(4 ** np.arange(8), 16 ** (np.arange(8) % 4)).astype(np.int64)
        return int(bool((scale[None, :] * d.sum(axis=-1) * _x_box(layer) < top).all()))
    scale = 16 ** np.arange(4, dtype=np.int64)[None, None, :]
    if fold:  # rows 1, 2 (and 5, 6): sum w x over the codes, - z_w sum x'
        w = rows[:n // 8 * 8].astype(np.int64).reshape(-1, 2, 4, rows.shape[1])
        xmax = 128 if layer.in_signed else 255
        bound = w.sum(axis=-1) * xmax + abs(int(zw[0])) * rows.shape[1] * _x_box(layer)
        return int(bool((scale[..., 1:3] * bound[..., 1:3] < top).all()))
    d = np.abs(rows[:n // 8 * 8].astype(np.int64) - int(zw[0]))
    blocks = d.reshape(-1, 2, 4, rows.shape[1])  # [block, half, row r % 4, lane]
    return int(bool((scale * blocks.sum(axis=-1) * _x_box(layer) < top).all()))


def subfc_unpack(layer) -> int:
    """1 where tn_m7_subfc's lean blocks of eight (:func:`subfc_lean`) of a dense layer of 4 or
    2-bit inputs read the input unpacked once onto the stack, a lane pair per word (LEAN 2,
    c/tn_m7_subfc.h: tn_sl_unpack): two LDRD per word of 4-bit codes instead of LDR and seven
    AND / LSR (2-bit: four instead of fifteen) in every block, at 2 K bytes of lane pairs
    (the step's arena scratch: :func:`tinyopt.integer.steps.sub_fc_unpack_size`, bounded by
    its ``SUBFC_UNPACK_BYTES``) for layers of at least ``SUBFC_UNPACK_BLOCKS`` blocks.
    The sums are the lean ones, unchanged (the same lanes in the same order). Else 0.

    Arguments:
        layer: a dense layer of :func:`tinyopt.integer.steps.sub_fc_fits`.

    Returns:
        1 or 0 (added to :func:`subfc_lean`'s 1 in the call).
    """
    return int(sub_fc_unpack_size(layer) > 0 and subfc_lean(layer) == 1)

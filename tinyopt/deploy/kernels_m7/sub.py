"""The sub-byte gemm kernel of the Cortex-M7, ``tn_m7_sub`` (c/tn_m7_sub.h; issues 29 and 27):
its weight order (:func:`sub_weights`) and call.
"""

from __future__ import annotations

import numpy as np

from dataclasses import replace

from tinyopt.integer.steps import (
    SUB_BITS, Step, _hwc, gemm_geometry, kernel_window, scratch_parts, sub_direct, sub_fc_window,
    sub_lane_group, sub_lanes, sub_units, tensor_bytes)
from tinyopt.integer.arith import packed_bytes
from tinyopt.deploy.kernels_m7.common import _inside, _pool_args, _scratch
from tinyopt.deploy.kernels_m7.add import _fused_add_args


def _sub_pairs(bits: int, g: int) -> list[tuple[int, int]]:
    """The lane pairs (element indices inside a unit of ``g``) that unpacking the unit's words of
    ``bits``-bit codes gives, in order (tn_pair / tn_sub_xpair: (e_s, e_{s + 16/bits}) per word;
    8 bits: (0, 2), (1, 3))."""
    n = 32 // bits
    return [(j * n + s, j * n + s + n // 2) for j in range(g // n) for s in range(n // 2)]


def sub_fc_view(layer):
    """The dense layer K -> N that tn_m7_sub's FC form (:func:`tinyopt.integer.steps
    .sub_fc_window`) runs on each window of a conv2d or pointwise ``layer``: the same weights,
    widths, zero points and requantization, a 1-D input of K = KH KW C codes (the window's
    order, ky, kx, c: the order of the weight rows and of tn_m7_sub's gathered windows)."""
    kh, kw = kernel_window(layer)
    k = kh * kw * _hwc(layer.in_shape)[2]
    return replace(layer, kind="dense", in_shape=(k,), out_shape=(int(layer.out_channels),),
                   stride=(1, 1), padding=(0, 0, 0, 0))


def sub_lane_layout(layer) -> bool:
    """Do tn_m7_subconv's weights (``kernels_m7.subconv_weights``) of a pointwise or conv2d
    ``layer`` in tn_m7_sub's FC form equal the FC form's blocks of four (``subfc_weights`` of
    :func:`sub_fc_view` without blocks of eight), so that one array serves both kernels? Then
    the step may run tn_m7_subconv's pixel pairs with their lanes in the not yet written tail of
    its own output (:func:`sub_tail_lanes`). Asks: 4 | CO, 2 / 4 / 8-bit outputs,
    tn_m7_subconv's bound on 2-bit weights, the same lane pairs (lane group; window rows of
    whole groups: no padding lanes), one chunk and the same RAW (subfc_plan vs subconv_raw);
    then compares the bytes.

    Arguments:
        layer: an integer layer.

    Returns:
        True when one weight array serves both kernels.
    """
    from tinyopt.deploy.kernels_m7.subconv import (
        subconv_raw, subconv_weights, subfc_plan, subfc_weights)
    from tinyopt.deploy.kernels_m7.common import _x_box
    if (layer.kind not in ("pointwise", "conv2d") or layer.weights is None
            or not sub_fc_window(layer) or int(layer.out_channels) % 4
            or int(layer.out_bits) not in (2, 4, 8)):
        return False
    view = sub_fc_view(layer)
    kp = sub_lanes(layer)[1]
    if int(layer.weight_bits) == 2 and 64 * 3 * _x_box(layer) * kp >= (1 << 31):
        return False  # steps.sub_conv_fits' bound on tn_m7_subconv's scaled 2-bit rows
    words = -(-int(view.in_shape[0]) * int(layer.in_bits) // 32)
    if (sub_lane_group(layer) != sub_lane_group(view) or kp != sub_lanes(view)[1]
            or subfc_plan(view) != (subconv_raw(layer), words)):
        return False
    return bool(np.array_equal(subconv_weights(layer),
                               subfc_weights(view, fc16=False, octs=False)))


#: the most bytes of tn_m7_subconv's own weights :func:`sub_pair_weights` appends to a step's
PAIR_WEIGHTS_MAX = 512


def sub_pair_weights(layer) -> int:
    """Bytes of tn_m7_subconv's own weights (``kernels_m7.subconv_weights``) that
    :func:`sub_weights` appends after the FC form's blocks, so that tn_m7_sub's pixel pairs
    (:func:`sub_tail_lanes`, :func:`sub_head_lanes`; not :func:`sub_slide_lanes`, whose
    tn_m7_sub_sl reads one array) run where the two layouts differ (:func:`sub_lane_layout`
    False), or 0. Only for a layer over 8-bit inputs whose pairs' weights take at most
    :data:`PAIR_WEIGHTS_MAX` bytes: a first layer of three channels (VWW's 3x3 / 2 convolution:
    window rows of 9 codes, padded to 12 lanes by the pairs, 27 codes in a row for the FC
    form), where the pairs run 2-5 % fewer instructions than the FC form alone (its w4a4 and
    w2a2 first layer went above their w8a8 twin) for 144 or 72 bytes of flash. The bytes are
    appended whether or not the step finds room for the pairs' lanes (``sub_weights`` sees the
    layer, not the plan): dead flash where it does not. Asks what :func:`sub_lane_layout` asks
    but the layouts' equality (4 | CO, 2 / 4 / 8-bit outputs, the 2-bit bound) and, for 4-bit
    weights, one RAW for both forms (tn_m7_sub hands both its RAW; ``subfc_plan`` vs
    ``subconv_raw``).

    Arguments:
        layer: an integer layer.

    Returns:
        The appended bytes (WOFF of the call: they start after the FC form's), or 0.
    """
    from tinyopt.deploy.kernels_m7.subconv import subconv_raw, subconv_weights, subfc_plan
    from tinyopt.deploy.kernels_m7.common import _x_box
    if (layer.kind not in ("pointwise", "conv2d") or layer.weights is None
            or not sub_fc_window(layer) or int(layer.in_bits) != 8
            or int(layer.out_channels) % 4 or int(layer.out_bits) not in (2, 4, 8)
            or sub_lane_layout(layer)):
        return 0
    kp = sub_lanes(layer)[1]
    if int(layer.weight_bits) == 2 and 64 * 3 * _x_box(layer) * kp >= (1 << 31):
        return 0  # steps.sub_conv_fits' bound on tn_m7_subconv's scaled 2-bit rows
    if int(layer.weight_bits) == 4 and subfc_plan(sub_fc_view(layer))[0] != subconv_raw(layer):
        return 0
    n = int(subconv_weights(layer).size)
    return n if n <= PAIR_WEIGHTS_MAX else 0


def _pairs_fit(layer) -> bool:
    """Can tn_m7_sub's FC form run tn_m7_subconv's pixel pairs on ``layer`` at all (one weight
    array for both, or the pairs' own appended: :func:`sub_pair_weights`)?"""
    return sub_lane_layout(layer) or sub_pair_weights(layer) > 0


def sub_tail_lanes(step: Step) -> int:
    """TLO: where tn_m7_sub's FC form places tn_m7_subconv's lanes (two pixels' windows as int16,
    4 KP bytes) inside its own output, or 0 (the FC form alone). The output's bytes of pixels
    not yet computed hold nothing (the planner gives the output buffer to this step alone: no
    in-place or sliding write, no fused ADD or pool), so the pixel pairs whose outputs end
    before the lanes run tn_m7_subconv (near tn_m7_conv per MAC, the FC form's blocks cost
    about a quarter more on a 64-channel pointwise layer), then the FC form writes the other
    pixels over the lanes: no byte of arena beyond the lean plan's. Not where the output
    overlaps an input (a sliding write). A step of
    :func:`sub_lane_layout` (its one weight array) read in place (MODE 0) with room for at least
    one pair before the lanes (MODE 0: no fused pool or ADD), TLO a multiple of 4 from the
    arena's start (the plan's offsets: ``Step.out_offset``).

    Arguments:
        step: a planned step (``steps.memory_plan``: its ``out_offset``).

    Returns:
        TLO in bytes from the output's start, or 0.
    """
    layer = step.layer
    if step.pool is not None or step.add is not None or not _pairs_fit(layer):
        return 0
    oh, ow, co = _hwc(layer.out_shape)
    pixel = co * int(layer.out_bits) // 8
    lanes = 4 * sub_lanes(layer)[1]
    lo, hi = int(step.out_offset), int(step.out_offset) + oh * ow * pixel
    for off, spec in zip(step.in_offsets, step.in_specs):  # a sliding write (8-bit in and out:
        # steps.write_delay) puts unread input bytes in the output's tail: no lanes there
        if int(off) < hi and lo < int(off) + tensor_bytes(spec):
            return 0
    end = int(step.out_offset) + oh * ow * pixel - lanes  # the lanes' latest start in the arena
    tlo = end // 4 * 4 - int(step.out_offset)
    return tlo if tlo >= 2 * pixel else 0


def sub_head_lanes(step: Step) -> int:
    """HP: the first output pixel from which tn_m7_sub's FC form runs tn_m7_subconv's pixel pairs
    with their lanes (4 KP bytes) at the start of its own input, or 0 (none). Where the step is
    the input's last reader (``Step.in_dead``: no later step reads it, not the graph's input
    or output), the input rows above the first one the remaining pixels read are dead bytes:
    from the first output row whose windows start at or below input byte 4 KP on, the pairs
    gather their windows from rows below the lanes and write the lanes over rows no pixel
    reads again. With :func:`sub_tail_lanes` (the pairs before the output's tail) the FC form
    is left only with the pixels between the two, often none (ResNet-8's 16 x 16 x 32 3x3
    convolution at w4a4: all 256), and no arena byte is added. Asks what
    :func:`sub_tail_lanes` asks (MODE 0, one weight array, no overlap of input and output), the
    input dead after the step and 4-byte aligned in the arena, and a pixel left to gain.

    Arguments:
        step: a planned step (``steps.memory_plan``: its offsets and ``in_dead``).

    Returns:
        HP (an output pixel index, at least one output row), or 0.
    """
    layer = step.layer
    if (step.pool is not None or step.add is not None or len(step.inputs) != 1
            or not step.in_dead or not step.in_dead[0] or int(step.in_offsets[0]) % 4
            or not _pairs_fit(layer)):
        return 0
    oh, ow, co = _hwc(layer.out_shape)
    h, w, c = _hwc(layer.in_shape)
    lo = int(step.out_offset)
    hi = lo + packed_bytes(oh * ow * co, int(layer.out_bits))
    ilo = int(step.in_offsets[0])
    if ilo < hi and lo < ilo + tensor_bytes(step.in_specs[0]):
        return 0  # the output overlaps the input (a sliding write)
    lanes = 4 * sub_lanes(layer)[1]
    top = int(layer.padding[0])
    for oy in range(1, oh):  # the first input row the windows of output row oy on read
        if (oy * int(layer.stride[0]) - top) * w * c * int(layer.in_bits) // 8 >= lanes:
            return oy * ow
    return 0


def sub_slide_lanes(step: Step) -> int:
    """PSL: the pixel pairs p < PSL (an even pixel count) that tn_m7_sub's FC form runs as
    tn_m7_subconv's pairs with their lanes (two pixels' windows as int16, 4 KP bytes) just past
    the pair's own outputs (``tn_m7_sub_sl``, c/tn_m7_sub.h), where the output slides over its
    input (steps.write_delay: the case :func:`sub_tail_lanes` and :func:`sub_head_lanes`
    leave to the FC form alone), or 0. The bytes of the output not yet written are the step's
    own but for unread input: pair p's lanes, at output byte (p + 2) P (P bytes per output
    pixel), must end inside the output and at or before the first input byte that pixels p
    on read (their windows' starts, clipped to the input). Asks 4-bit weights (the form the
    tests run: 2-bit ones would take the same pairs, untested), 8-bit inputs and outputs,
    what :func:`sub_tail_lanes` asks but the overlap (MODE 0, one weight array), the output
    overlapping the input; the lanes start at the next word boundary (the arena is
    word-aligned: tn_m7_sub_sl rounds the address up, as here the offset).

    Arguments:
        step: a planned step (``steps.memory_plan``: its offsets).

    Returns:
        PSL (0, or an even number of pixels, at least 2).
    """
    layer = step.layer
    if (step.pool is not None or step.add is not None or len(step.inputs) != 1
            or int(layer.weight_bits) != 4 or int(layer.in_bits) != 8
            or int(layer.out_bits) != 8 or not sub_lane_layout(layer)):
        return 0
    oh, ow, co = _hwc(layer.out_shape)
    h, w, c = _hwc(layer.in_shape)
    pixel = co  # 8-bit outputs: bytes per output pixel
    lo, hi = int(step.out_offset), int(step.out_offset) + oh * ow * pixel
    ilo = int(step.in_offsets[0])
    if not (ilo < hi and lo < ilo + tensor_bytes(step.in_specs[0])):
        return 0
    lanes = 4 * sub_lanes(layer)[1]
    sy, sx = int(layer.stride[0]), int(layer.stride[1])
    top, _, left, _ = layer.padding
    p = np.arange(oh * ow)
    iy = np.clip(p // ow * sy - int(top), 0, h - 1)
    ix = np.clip(p % ow * sx - int(left), 0, w - 1)
    start = (iy * w + ix) * c  # the first input byte pixel p's window reads (8-bit codes)
    first = np.minimum.accumulate(start[::-1])[::-1]  # ... that pixels p on read
    at = (p + 2) * pixel
    end = at + (-(lo + at)) % 4 + lanes  # pair p's lanes' end (word-aligned), in output bytes
    ok = (end <= oh * ow * pixel) & (lo + end <= ilo + first) & (p % 2 == 0) & (p + 2 <= oh * ow)
    bad = np.flatnonzero(~ok & (p % 2 == 0))
    psl = int(bad[0]) if len(bad) else oh * ow - oh * ow % 2
    return psl if psl >= 2 else 0


def sub_weights(layer, units: int | None = None) -> np.ndarray:
    """The weight bytes of a step of tn_m7_sub (c/tn_m7_sub.h): every row's codes permuted inside
    each unit of G = 32 / min(input bits, weight bits) codes so that weight lane pair q (of the
    row's words, as tn_pair unpacks them) holds the weights of input lane pair q; the K % G tail
    as it is; each row packed as :func:`tinyopt.integer.graph.pack` packs it (as many bytes as
    the row layout), or, with ``units`` = KU > K (:func:`tinyopt.integer.steps.sub_units`: a
    gathered window completed to whole units), each row padded with code 0 to KU codes first
    (no tail; KU WB / 8 bytes per row, the extra bytes beyond the row layout count as pad bytes).
    A layer of :func:`tinyopt.integer.steps.sub_fc_window` (tn_m7_sub's FC form): instead
    ``kernels_m7.subfc_weights`` of :func:`sub_fc_view` (tn_m7_subfc's blocks; ``units``
    ignored: the form reads the window's own K codes), blocks of four only where
    :func:`sub_lane_layout` (then they are tn_m7_subconv's weights too).

    Arguments:
        layer: a dense, pointwise or convolution layer of 1/2/4/8-bit weights and inputs
            (:func:`tinyopt.integer.steps.sub_fits`).
        units: KU, the codes per window the kernel reads (None or K: the row layout's size).

    Returns:
        uint8 array of the row layout's size (or N rows of KU WB / 8 bytes).

    Raises:
        ValueError: weights or inputs of other widths, or a layer without weights.
    """
    from tinyopt.integer.graph import pack, unpack
    from tinyopt.deploy.kernels_m7.subconv import subfc_weights
    if layer.weights is not None and sub_fc_window(layer):  # the FC form: tn_m7_subfc's blocks
        fc = subfc_weights(sub_fc_view(layer), fc16=False, octs=not sub_lane_layout(layer))
        if sub_pair_weights(layer):  # the pairs' own weights after the FC form's
            from tinyopt.deploy.kernels_m7.subconv import subconv_weights
            fc = np.concatenate([fc, subconv_weights(layer)])
        return fc
    wb, xb = int(layer.weight_bits), int(layer.in_bits)
    if layer.weights is None or wb not in SUB_BITS or xb not in SUB_BITS:
        raise ValueError(f"layer {layer.name!r}: sub_weights packs layers of 1/2/4/8-bit weights "
                         f"and inputs, not {wb}-bit weights and {xb}-bit inputs")
    rows = np.asarray(layer.weights, np.uint8)
    k = int(np.prod(layer.weight_shape)) // len(rows)
    codes = unpack(rows, wb, k)
    g = 32 // min(wb, xb)
    padded = units is not None and units != k
    if padded:
        if units < k or units % g:
            raise ValueError(f"layer {layer.name!r}: sub_weights pads rows of {k} codes to whole "
                             f"units of {g}, not to {units}")
        codes = np.concatenate([codes, np.zeros((len(rows), units - k), codes.dtype)], axis=1)
        k = units
    perm = np.zeros(g, np.int64)  # unit position -> input index inside the unit
    per_word, half = 32 // wb, 16 // wb
    for q, (i, j) in enumerate(_sub_pairs(xb, g)):
        t, s = divmod(q, half)
        perm[t * per_word + s], perm[t * per_word + s + half] = i, j
    full = k - k % g
    blocks = codes[:, :full].reshape(len(rows), -1, g)[:, :, perm].reshape(len(rows), full)
    out = pack(np.concatenate([blocks, codes[:, full:]], axis=1), wb)
    assert out.shape == ((len(rows), packed_bytes(k, wb)) if padded else rows.shape)
    return out.ravel()


def _sub_call(step: Step, common: dict, zw: np.ndarray, rq: dict, graph_rounding: str,
              arena: str, u) -> str:
    """The body of a tn_m7_sub step: its call with the layer's constants."""
    layer = step.layer
    geo = gemm_geometry(layer)
    dense = layer.kind == "dense"
    top, _, left, _ = (0, 0, 0, 0) if dense else layer.padding
    pool = _pool_args(step)
    mode = 1 if step.pool is not None else 2 if step.add is not None else 0
    ku = sub_units(step)  # the row bytes: KU codes (padded rows) or the row layout's
    fc = sub_fc_window(layer)  # tn_m7_subfc's blocks per window (sub_weights gave their order)
    if fc:
        from tinyopt.deploy.kernels_m7.subconv import (
            subconv_pack, subfc_oct, subfc_plan, subfc_weights)
        view = sub_fc_view(layer)
        lane = sub_lane_layout(layer)  # blocks of four, shared with tn_m7_subconv's pairs
        raw, kc = subfc_plan(view)
        tlo, hp = sub_tail_lanes(step), sub_head_lanes(step)
        if (tlo or hp) and int(layer.weight_bits) == 2:
            # 2-bit weights: RAW is the pairs' PK (tn_m7_subconv's RAW 1, the same weight
            # bytes); tn_m7_sub hands its FC form RAW 0 for them whatever it is (c/tn_m7_sub.h)
            raw = subconv_pack(layer)
        # WOFF: where the pairs' weights start (after the FC form's when they are their own)
        woff = (len(subfc_weights(view, fc16=False, octs=not lane))
                if sub_pair_weights(layer) else 0)
        fc_args = [1, raw, kc, 0 if lane else subfc_oct(view), tlo, hp, sub_lane_group(layer),
                   sub_lanes(layer)[0], int(_inside(layer, geo)), woff]
    else:
        fc_args = [0] * 10
    args = [geo["H"], geo["W"], geo["C"], geo["OH"], geo["OW"], layer.out_channels, geo["KH"],
            geo["KW"], 1 if dense else layer.stride[0], 1 if dense else layer.stride[1], top,
            left, layer.in_bits, common["XS"], common["ZX"], common["PADZERO"],
            layer.weight_bits, packed_bytes(ku, layer.weight_bits), common["NWZP"],
            int(bool(zw.any())), int(zw[0]), common["REQ"], common["NM"], common["ROUND"],
            common["OB"], mode, int(sub_direct(step)), ku, *fc_args, *pool, *rq.values(),
            *_fused_add_args(step, graph_rounding)]
    gather, best = scratch_parts(step)  # the gathered window, then a fused pool's maxima
    other = "in[1]" if step.add is not None else "in[0]"
    bp = _scratch(step, arena, "int32_t", gather) if best else "(int32_t *)0"
    gp = _scratch(step, arena, "uint8_t") if gather else "(uint8_t *)0"
    fn = "tn_m7_sub_epi" if fc and sub_epi(step, common, rq) else "tn_m7_sub"
    psl = (sub_slide_lanes(step) if fc and mode == 0 and fn == "tn_m7_sub"
           and not (fc_args[4] or fc_args[5]) else 0)
    if psl:  # pairs with their lanes past their own outputs (a sliding write)
        fn, args = "tn_m7_sub_sl", [*args, psl]
    return (f"    {fn}(l, in[0], {other}, out, {bp}, {gp},\n              "
            + ", ".join(u(a) for a in args) + ");\n")


def sub_epi(step: Step, common: dict, rq: dict) -> bool:
    """Does a step of tn_m7_sub's FC form take tn_m7_sub_epi (c/tn_m7_sub.h: its pixel pairs of
    tn_m7_subconv, TLO / HP, with tn_sc_epi's block outputs)? Where it has such pairs
    (:func:`sub_tail_lanes`, :func:`sub_head_lanes`) and their blocks are tn_sc_epi's
    (``kernels_m7.subconv.subconv_epi`` with MODE 0).

    Arguments:
        step: a planned tn_m7_sub step of the FC form (``steps.sub_fc_window``).
        common, rq: its call's constants (``kernels_m7.subconv.subconv_epi``).

    Returns:
        True for tn_m7_sub_epi.
    """
    from tinyopt.deploy.kernels_m7.subconv import subconv_epi
    if step.pool is not None or step.add is not None:
        return False
    if not (sub_tail_lanes(step) or sub_head_lanes(step)):
        return False
    return subconv_epi(step, common, rq, False)

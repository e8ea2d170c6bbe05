"""The 3x3 depthwise row kernel of the Cortex-M7, ``tn_m7_dw3`` (c/tn_m7_dw.h).

3x3 layers of 2/4/8-bit inputs, weights and outputs, strides 1 / 2, of any rounding flavour
(:func:`dw3_fits`: the MLPerf int8 graphs and the sub-byte Keras path alike) take the
row kernel ``tn_m7_dw3`` instead when the plan gave the step its scratch
(:func:`dw3_scratch_bytes`: three input rows widened to int16, channel planes; at stride 2
with 8-bit inputs chunks of four columns of four channels): SMLAD on two taps of one
channel, two output pixels per weight register, weights exported as [d0, d1, d1, d2] per
kernel row, int8, or int16 pairs for asymmetric 8-bit weights (:func:`dw3_weights`,
``Choice.weights``). At stride 2 with 8-bit inputs and outputs, int8 weights, per-channel
multipliers and the folded requantization (:func:`dw3_plan`'s DWQ 1 / 2) an output row
runs in inline assembly (``tn_dw3_row2``).
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.steps import (
    Step, _hwc, dw3_fits, dw3_weights_fit, dw3_width, dw3_block, dw3_tail_bytes, dw3_tail_layer,
    dw3_tail_fits, dw3_tail_rows, tensor_bytes)
from tinyopt.deploy.kernels_m7.common import (
    _rounding, _scratch, requant_constants, acc_bound, INT32)


def dw3_plan(step: Step, graph_rounding: str | None) -> dict | str:
    """The row kernel's weight format and requantization for ``step`` (:func:`dw3_fits`).

    WIDE = 0 when every weight minus its zero point fits int8 (:func:`dw3_weights_fit`), else 1
    (int16 pairs, :func:`dw3_weights`). DWQ = 1 (the folded SMMLAR form of c/tn_m7_dw.h) with
    per-channel CC = 2^(K-1) + z_out 2^K (K = -n0) when tn_m7_out's FAST = 3 form applies
    (:func:`requant_constants`) and CC + h stays in int32 for every accumulator of the layer
    (|h| <= |2 acc| m0 / 2^32 + 1, :func:`acc_bound`); DWQ = 2 (floor: SMMLA(acc, m0, CC) >> K
    with CC = z_out 2^K, K = -(n0 + 1)) when every n0 <= -1, K <= 31 and CC + h stays in int32
    (|h| <= |acc m0| / 2^32 + 1); DWQ = 3 (floor with some n0 >= 0, n0 in [-32, 30]: per
    channel SMMLA(acc << SL, m0, CC) >> K, SL = max(n0 + 1, 0), K = max(-(n0 + 1), 0),
    CC = z_out 2^K) when the multipliers are per channel (one for the layer: tn_m7_out, whose
    shifts are then constants), |acc| << SL < 2^31 for every accumulator (no wrap), CC + h
    stays in int32 and the weights shifted left by SL fit the lanes (int8 bytes; else int16
    pairs, WIDE = 1; else DWQ = 0); else DWQ = 0 (tn_m7_out). DWQ 3 folds SL into the exported
    weights, (w - z_w) << SL per channel, and the bias, bias << SL in the blob's fourth word
    (where DWQ 1 and 2 keep CC; CC = z_out 2^K is formed from K at run time), so that the
    accumulator is acc << SL as formed, exactly (|acc| << SL < 2^31 bounds every partial sum
    too). Why: shifting every output left by a per-channel register cost one instruction and
    one live register per output (session 17, VWW w4a4: 8 of its 13 depthwise layers have n0
    of both signs; 10.65 M -> 10.48 M instructions an image).

    Returns:
        {"WIDE", "DWQ": 0 to 3, "CC": int64 array [C] (zeros for DWQ = 0; DWQ 3: [2, C], the
        shifted biases and SL), "LO", "HI", "OS"}, or the reason the row kernel does not run
        the step.
    """
    if not dw3_fits(step):
        return "not a 2/4/8-bit 3x3 depthwise layer of stride 1 / 2 (dw3_fits)"
    layer = step.layer
    c = _hwc(layer.in_shape)[2]
    ob = int(layer.out_bits)
    lo, hi = (int(v) for v in layer.out_range)
    tlo, thi = ((-(1 << (ob - 1)), (1 << (ob - 1)) - 1) if layer.out_signed
                else (0, (1 << ob) - 1))
    if not tlo <= lo <= hi <= thi:
        return f"output range [{lo}, {hi}] outside the {ob}-bit [{tlo}, {thi}]"
    plan = {"WIDE": int(not dw3_weights_fit(layer)), "DWQ": 0, "CC": np.zeros(c, np.int64),
            "LO": lo, "HI": hi, "OS": int(bool(layer.out_signed))}
    flavour = layer.rounding or graph_rounding
    if flavour is None:
        return plan
    m0 = np.broadcast_to(np.atleast_1d(np.asarray(layer.m0, np.int64)), (c,))
    n0 = np.broadcast_to(np.atleast_1d(np.asarray(layer.n0, np.int64)), (c,))
    zp = np.int64(int(layer.out_zero_point))
    bound = acc_bound(layer)
    if flavour == "floor":
        if bound is None or bound >= (1 << 31) or n0.max() > 30 or n0.min() < -32:
            return plan
        if n0.max() >= 0 and requant_constants(layer, flavour)["NM"] == 1:
            # one multiplier for the layer: tn_m7_out's shifts are constants there, measured
            # faster than DWQ = 3's (VWW w2a2, one multiplier: 348 K vs 370 K instructions)
            return plan
        k = np.maximum(-(n0 + 1), 0)
        sl = np.maximum(n0 + 1, 0)  # requant_floor's left shift n1 (DWQ = 3)
        # Python ints: bound << 31 times m0 exceeds int64
        shifted = [int(bound) << int(v) for v in sl]
        if max(shifted) >= (1 << 31):  # acc << SL might wrap: tn_m7_out keeps requant_floor's
            return plan
        cc = zp << k
        hmax = np.array([((b * abs(int(m))) >> 32) + 1 for b, m in zip(shifted, m0)], np.int64)
        if not np.all(np.abs(cc) + hmax <= INT32[1]):
            return plan
        if n0.max() <= -1:
            plan.update(DWQ=2, CC=cc)
            return plan
        # DWQ 3: SL in the weights' lanes (int16 pairs when the int8 bytes overflow) and the
        # bias (|bias << SL| <= bound << SL < 2^31)
        for wide in (plan["WIDE"], 1):
            if _shifted_fit(layer, sl, wide):
                bias = np.broadcast_to(np.asarray(layer.bias, np.int64), (c,))
                plan.update(WIDE=wide, DWQ=3, CC=np.stack([bias << sl, sl]))
                break
        return plan
    if requant_constants(layer, flavour)["FAST"] != 3:
        return plan
    k = -n0
    cc = (np.int64(1) << (k - 1)) + (zp << k)
    hmax = ((2 * int(bound) * m0) >> 32) + 1
    if np.all(np.abs(cc) + hmax + 1 <= INT32[1]):
        plan.update(DWQ=1, CC=cc)
    return plan


def _shifted_fit(layer, sl: np.ndarray, wide: int) -> bool:
    """Do the weights minus their zero point, shifted left by their channel's SL, still fit the
    row kernel's lanes (int8 bytes, or int16 pairs when ``wide``)?"""
    w = layer.unpacked_weights().astype(np.int64).reshape(9, -1)
    zw = np.broadcast_to(np.atleast_1d(np.asarray(layer.weight_zero_point, np.int64)),
                         (w.shape[1],))
    d = (w - zw[None, :]) << np.asarray(sl, np.int64)[None, :]
    top = 32767 if wide else 127
    return bool(d.min() >= -top - 1 and d.max() <= top)


def dw3_weights(layer, cc: np.ndarray, wide: bool = False, lean: bool = True) -> np.ndarray:
    """The row kernel's weight array (``Choice.weights``), per channel: three words
    [d_r0, d_r1, d_r1, d_r2] (d = w - z_w as int8, kernel row r) and CC (int32, little-endian;
    :func:`dw3_plan`), 16 bytes; ``wide`` (weights beyond int8: :func:`dw3_plan`'s WIDE): the six
    int16 pairs A_r = (d_r0, d_r1), B_r = (d_r1, d_r2) and CC, 28 bytes. For a step of the
    tail form (``lean``, :func:`dw3_tail_offset` >= 0, ``steps.dw3_tail_layer``) only the lean
    kernel's weights (:attr:`IntegerLayer.weights` as they are: tn_m7_depthwise runs the rows
    after the planes, and each block of the row kernel widens its channels' words from them and
    computes CC from n0 and z_out, tn_dw3_widen): 16 (28) bytes a channel of flash
    fewer. ``lean`` False (the full form, its scratch planned) never reads the lean weights.

    ``cc`` of :func:`dw3_plan`'s DWQ 3 ([2, C]: the fourth words and SL): the weights minus
    their zero point shifted left by their channel's SL.

    Raises:
        ValueError: a weight minus its zero point (shifted) outside int8 without ``wide``.
    """
    w = layer.unpacked_weights().astype(np.int64).reshape(3, 3, -1)
    c = w.shape[2]
    zw = np.broadcast_to(np.atleast_1d(np.asarray(layer.weight_zero_point, np.int64)), (c,))
    d = w - zw[None, None, :]  # [3, 3, C]
    cc = np.asarray(cc, np.int64)
    if cc.ndim == 2:  # DWQ 3: (the shifted biases, SL)
        d = d << cc[1][None, None, :]
        cc = cc[0]
    ccb = np.asarray(cc, "<i4").view(np.uint8).reshape(c, 4)
    if wide:
        pairs = np.stack([d[:, 0], d[:, 1], d[:, 1], d[:, 2]], axis=1)  # [3 rows, 4 lanes, C]
        lanes = np.ascontiguousarray(pairs.transpose(2, 0, 1).reshape(c, 12).astype("<i2"))
        lanes = lanes.view(np.uint8)
        blob = np.concatenate([lanes, ccb], axis=1).ravel().astype(np.uint8)
        return _with_lean(layer, blob) if lean else blob
    if d.min() < -128 or d.max() > 127:
        raise ValueError(f"layer {layer.name!r}: a depthwise weight minus its zero point is "
                         "outside int8; export it with wide=True (dw3_plan's WIDE)")
    d = d.astype(np.int8).view(np.uint8)
    words = np.stack([d[:, 0], d[:, 1], d[:, 1], d[:, 2]], axis=1)  # [3 rows, 4 bytes, C]
    blob = np.concatenate([words.transpose(2, 0, 1).reshape(c, 12), ccb], axis=1)
    blob = blob.ravel().astype(np.uint8)
    return _with_lean(layer, blob) if lean else blob


def _with_lean(layer, blob: np.ndarray) -> np.ndarray:
    """Where the tail form may run the layer: the lean kernel's weights alone (the row
    kernel's words and CC computed from them at run time, tn_dw3_widen); else ``blob``."""
    if not dw3_tail_layer(layer):
        return blob
    return np.ascontiguousarray(layer.weights, np.uint8).ravel()


def dw3_tail_offset(step: Step) -> int:
    """TLO: where the tail form (``steps.dw3_tail_fits``) places its planes in the step's
    output, in bytes from the output's start (a multiple of 4 from the arena's start), or -1
    for the full form (the plan gave the step the planes of every channel as its scratch).

    Raises:
        ValueError: a tail-form step whose output overlaps its input in the plan (the blocks
            would overwrite inputs not yet read: the planner never slides such a step).
    """
    layer = step.layer
    c = _hwc(layer.in_shape)[2]
    if step.scratch_bytes >= 3 * c * dw3_width(layer) * 2:
        return -1
    assert dw3_tail_fits(step), step.name  # dw3_fits: roomy (the scratch above) or the tail
    out_bytes = step.out_bytes
    lo, hi = int(step.out_offset), int(step.out_offset) + out_bytes
    for off, spec in zip(step.in_offsets, step.in_specs):
        if int(off) < hi and lo < int(off) + tensor_bytes(spec):
            raise ValueError(f"step {step.name!r}: the depthwise row kernel's tail form needs an "
                             "output apart from its input; plan it with memory_plan")
    end = lo + out_bytes - dw3_tail_bytes(layer)
    return end // 4 * 4 - lo


def _dw3_call(step: Step, graph_rounding: str, u, arena: str) -> str:
    """The C statement calling tn_m7_dw3 for a step of the row kernel."""
    layer = step.layer
    h, w, c = _hwc(layer.in_shape)
    oh, ow, _ = _hwc(layer.out_shape)
    top, _, left, _ = layer.padding
    plan = dw3_plan(step, graph_rounding)
    assert not isinstance(plan, str), plan  # choose() checked it
    rq = requant_constants(layer, graph_rounding)
    nm = rq.pop("NM")
    tlo = dw3_tail_offset(step)
    if tlo < 0:  # the full form: every channel's planes in the scratch
        cb, oyf, rows = c, oh, _scratch(step, arena, "int16_t")
    else:  # the tail form: CB channels' planes in the output's tail
        cb, oyf = dw3_block(layer), dw3_tail_rows(layer, step.out_offset)
        rows = f"(int16_t *)(void *)({arena} + {int(step.out_offset) + tlo}u)"
    zw = np.atleast_1d(np.asarray(layer.weight_zero_point, np.int64))
    nwzp = 1 if np.all(zw == zw[0]) else len(zw)
    args = [h, w, c, oh, ow, layer.stride[0], layer.stride[1], top, left, dw3_width(layer),
            cb, oyf, layer.weight_bits, int(layer.weights.shape[1]), nwzp, int(zw[0]),
            layer.in_bits, int(bool(layer.in_signed)), int(layer.in_zero_point),
            int(layer.pad_mode == "zero"), plan["WIDE"], plan["DWQ"], layer.out_bits,
            plan["OS"], plan["LO"], plan["HI"], nm, _rounding(step, graph_rounding),
            *rq.values()]
    return (f"    tn_m7_dw3(l, in[0], out, {rows}, "
            + ", ".join(u(a) for a in args) + ");\n")

"""``transpose_conv``: a transposed convolution (Keras ``Conv2DTranspose``, the U-Net
up-sampling) on packed codes: TFLite's int8 TRANSPOSE_CONV (per-channel weights, int32 bias, the
converter's 4th input) and the sub-byte path's 2/4/8-bit tensors and weights.

Integer form (TFLite's reference_integer_ops::TransposeConv, the same in LiteRT BUILTIN_REF and
TFLite Micro): every input pixel (iy, ix) scatters (x - z_x) (w[oc, ky, kx, ic] - z_w[oc]) into
output (iy sh - pad_t + ky, ix sw - pad_l + kx) when that lies inside the output, accumulated in
int32; then bias[oc], the multiplier (m0, n0) in the node's rounding flavour
(:data:`tinyopt.integer.fixedpoint.REQUANT`: TFLite's double rounding for an imported node, with
double(s_x) double(s_w[oc]) / double(s_out) and QuantizeMultiplier; ``"floor"``, CMix-NN's
floor(Phi m0 / 2^(31 - n0)), on the sub-byte path), z_out, and the clamp (the output's code range
narrowed by the fused activation). TFLite's padding is computed from the output size
(ComputePaddingHeightWidth on the output: the odd pixel goes to the end), only its top / left
part is used; :func:`keras_geometry` gives the output size and padding of a Keras
``Conv2DTranspose`` ('same': H s; 'valid': H s + max(k - s, 0)).

Widths: input and output of 2, 4 or 8 bits (``_checks.PACKED_BITS``, any signedness and zero
point), weights of 2, 4 or 8 bits with one zero point per layer (PL) or per output channel (PC),
and (m0, n0) per layer or per output channel, as ``compute``'s. TFLite's import makes int8 in and
out, 8-bit weights w + 128 with zero point 128 and per-channel multipliers.

Fields: weights as ``conv2d``'s (rows [c_out][ky][kx][c_in] of unsigned codes, each row packed
from a byte boundary), ``weight_zero_point``, ``bias`` per output channel, ``m0`` / ``n0``,
``stride``, ``padding`` (top, bottom, left, right). A Keras kernel [kh, kw, c_out, c_in] is
``kernel.transpose(2, 0, 1, 3)`` here (TFLite's converter writes the same order, unflipped).
C: ``tn_run_transpose_conv`` (``tinyopt/deploy/c/ops/tn_transpose_conv.c``: each output gathers
its taps, so no scratch). Cortex-M7 twin: ``tn_m7_run_transpose_conv``
(``tinyopt/deploy/c/ops/m7/tn_transpose_conv.c``) on 8-bit input, weights and output
(:func:`m7_check`): the gather split by output phase, each phase a small convolution on int16
lanes (SMLAD, two channels x two pixels), its weights in the order :func:`m7_weights` writes, its
widened windows in the arena (:func:`m7_scratch_bytes`).
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.arith import tflite_quantize_multiplier
from tinyopt.integer.fixedpoint import REQUANT, acc32, check_multipliers
from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops._checks import PACKED_BITS, packed_bits
from tinyopt.integer.ops.registry import OpKind, TFLiteOp, register


def check(layer: IntegerLayer, where: str) -> None:
    """2/4/8-bit (H, W, C) in and out; 2/4/8-bit weights [c_out, kh, kw, c_in] fitting the
    shapes; bias per output channel; weight zero points, m0 and n0 per layer or per output
    channel; strides >= 1, paddings >= 0."""
    packed_bits(where, "the input", layer.in_bits)
    packed_bits(where, "the output", layer.out_bits)
    if len(layer.in_shape) != 3 or len(layer.out_shape) != 3:
        raise ValueError(f"{where}: in_shape and out_shape must be (H, W, C), got "
                         f"{tuple(layer.in_shape)}, {tuple(layer.out_shape)}")
    for name in ("weights", "weight_shape", "weight_zero_point", "bias", "m0", "n0"):
        if getattr(layer, name) is None:
            raise ValueError(f"{where}: transpose_conv needs {name}")
    ws = tuple(layer.weight_shape)
    c_out = layer.out_shape[-1]
    if len(ws) != 4 or ws[0] != c_out or ws[3] != layer.in_shape[-1]:
        raise ValueError(f"{where}: weight_shape {ws} must be [c_out={c_out}, kh, kw, "
                         f"c_in={layer.in_shape[-1]}]")
    if layer.weight_bits not in PACKED_BITS:
        raise ValueError(f"{where}: weight_bits {layer.weight_bits}; transpose_conv takes "
                         f"{', '.join(map(str, PACKED_BITS))}-bit weights")
    row = -(-ws[1] * ws[2] * ws[3] * layer.weight_bits // 8)
    if layer.weights.shape != (c_out, row):
        raise ValueError(f"{where}: packed weights have shape {layer.weights.shape}, expected "
                         f"{(c_out, row)} for {layer.weight_bits}-bit {ws}")
    if np.asarray(layer.bias).shape != (c_out,):
        raise ValueError(f"{where}: bias must hold one entry per output channel ({c_out}), got "
                         f"shape {np.asarray(layer.bias).shape}")
    for name in ("m0", "n0", "weight_zero_point"):
        if np.asarray(getattr(layer, name)).shape not in ((1,), (c_out,)):
            raise ValueError(f"{where}: {name} must hold 1 (per layer) or {c_out} (per output "
                             f"channel) entries, got shape "
                             f"{np.asarray(getattr(layer, name)).shape}")
    if min(layer.stride) < 1 or len(layer.padding) != 4 or min(layer.padding) < 0:
        raise ValueError(f"{where}: stride must be >= 1 and padding >= 0, got "
                         f"{tuple(layer.stride)}, {tuple(layer.padding)}")


def check_c(layer: IntegerLayer, flavour: str, where: str) -> None:
    """Kernel sizes in [1, 255], weight zero points in [0, 255] (uint8 in the descriptor), rows
    of at most 65535 bytes, TFLite multipliers in range."""
    kh, kw = layer.weight_shape[1:3]
    if max(kh, kw) > 255:
        raise ValueError(f"{where}: kernel sizes must be in [1, 255], got {(kh, kw)}")
    zw = np.asarray(layer.weight_zero_point)
    if zw.min() < 0 or zw.max() > 255:
        raise ValueError(f"{where}: weight zero points must be in [0, 255] (uint8 in the C "
                         f"descriptor), got [{zw.min()}, {zw.max()}]")
    if layer.weights.shape[1] > 65535:
        raise ValueError(f"{where}: a packed weight row of {layer.weights.shape[1]} bytes "
                         "exceeds 65535")
    check_multipliers(layer, flavour, where)


def prepare(p) -> None:
    layer = p.layer
    w = layer.unpacked_weights().astype(np.int64)
    zw = np.asarray(layer.weight_zero_point, np.int64).reshape(-1, 1, 1, 1)
    p.w = w - zw  # [c_out, kh, kw, c_in], centered


def simulate(p, xs: list, wrap: bool) -> np.ndarray:
    """Scatter-accumulate (exact, then the int32 check or wrap-around), bias, requantize."""
    layer = p.layer
    x = xs[0].astype(np.int64) - layer.in_zero_point
    n, h, w, _ = x.shape
    oh, ow, c_out = layer.out_shape
    _, kh, kw, _ = p.w.shape
    sh, sw = layer.stride
    top, _, left, _ = layer.padding
    # a canvas holding every scattered position (iy sh + ky, ix sw + kx), then the output window
    ch = max((h - 1) * sh + kh, top + oh)
    cw = max((w - 1) * sw + kw, left + ow)
    canvas = np.zeros((n, ch, cw, c_out), np.int64)
    for ky in range(kh):
        for kx in range(kw):
            canvas[:, ky:ky + (h - 1) * sh + 1:sh, kx:kx + (w - 1) * sw + 1:sw] += \
                x @ p.w[:, ky, kx, :].T
    acc = canvas[:, top:top + oh, left:left + ow]
    acc = acc32(acc32(acc, wrap, layer.name) + np.asarray(layer.bias, np.int64), wrap,
                layer.name)
    y = REQUANT[p.rounding](acc, layer.m0, layer.n0, wrap, layer.name) + layer.out_zero_point
    return np.clip(y, *layer.out_range).astype(np.int32)


def macs(layer: IntegerLayer) -> int:
    """Every input pixel times every weight."""
    return int(np.prod(layer.in_shape[:2])) * int(np.prod(layer.weight_shape))


def c_fields(step, emit) -> dict:
    """Window, strides, top / left padding, the weights' bits, and the weights, their zero
    points, bias and multipliers (per layer or per channel) as arrays."""
    layer = step.layer
    zw = np.asarray(layer.weight_zero_point).astype(np.uint8)
    return {"k_h": int(layer.weight_shape[1]), "k_w": int(layer.weight_shape[2]),
            "stride_h": int(layer.stride[0]), "stride_w": int(layer.stride[1]),
            "pad_t": int(layer.padding[0]), "pad_l": int(layer.padding[2]),
            "w_bits": int(layer.weight_bits), "w_row_bytes": int(layer.weights.shape[1]),
            "w": emit("uint8_t", np.asarray(layer.weights, np.uint8), "w"),
            "n_wzp": len(zw), "wzp": emit("uint8_t", zw, "wzp"),
            "bias": emit("int32_t", np.asarray(layer.bias, np.int32), "bias"),
            "n_m": len(layer.m0), "m0": emit("int32_t", np.asarray(layer.m0, np.int32), "m0"),
            "n0": emit("int8_t", np.asarray(layer.n0, np.int8), "n0")}


# ------------------------------------------------------------------ the Cortex-M7 twin
# c/ops/m7/tn_transpose_conv.c: the gather form split by output phase (its header says how);
# 8-bit input, weights and output only (the sub-byte widths keep the portable kernel).
M7_MAX_SCRATCH = 16384  # scratch bytes the twin may take on a step (as steps.MAX_SCRATCH)


def _phase_taps(k: int, s: int, p: int) -> range:
    """The kernel taps (ky = p, p + s, ...) of output phase p: ceil((k - p) / s) of them."""
    return range(p, k, s)


def m7_grid(layer: IntegerLayer) -> tuple[int, int, int]:
    """The twin's grid of one base pixel.

    Arguments:
        layer: a ``transpose_conv`` node.

    Returns:
        (JM, IM, G): the taps of phase (0, 0) in y and in x (the input pixels widened once per
        base pixel, every phase reading its taps from them) and the groups of four int16 lanes
        holding one pixel's channels.
    """
    kh, kw = (int(v) for v in layer.weight_shape[1:3])
    sh, sw = (int(v) for v in layer.stride)
    groups = -(-int(layer.in_shape[-1]) // 4)
    return len(_phase_taps(kh, sh, 0)), len(_phase_taps(kw, sw, 0)), groups


def m7_scratch_bytes(step) -> int:
    """The twin's scratch (``OpKind.m7_scratch``).

    Arguments:
        step: a deployed step (:class:`tinyopt.integer.steps.Step`) of this op.

    Returns:
        Bytes: two base pixels' grids of int16 lanes (JM IM G 16, :func:`m7_grid`), their
        per-tap sums of x' (2 JM IM int32) and the per-channel requantization constants
        (3 c_out int32).
    """
    jm, im, g = m7_grid(step.layer)
    return jm * im * (16 * g + 8) + 12 * int(step.layer.out_shape[-1])


def m7_weights(layer: IntegerLayer) -> np.ndarray:
    """The weights in the order the twin reads them (the ``w`` it gets).

    Phase by phase (py outer, px inner), the phase's taps (ky = py + j sh, kx = px + i sw; j
    outer, i inner), each tap's c_in codes padded with 0 to a multiple of 4; output channels in
    pairs (c, c + 1) interleaved four codes at a time, an odd last channel alone. Unsigned codes
    (the twin subtracts the weight zero point through the sum of its inputs).

    Arguments:
        layer: a ``transpose_conv`` node with 8-bit weights.

    Returns:
        uint8 array, c_out kh kw ceil(c_in / 4) 4 bytes.

    Raises:
        ValueError: weights of another width.
    """
    if int(layer.weight_bits) != 8:
        raise ValueError(f"transpose_conv {layer.name!r}: the Cortex-M7 twin's weight order is "
                         f"for 8-bit weights, got {layer.weight_bits}-bit")
    w = layer.unpacked_weights().astype(np.uint8)  # [c_out, kh, kw, c_in]
    c_out, kh, kw, c_in = w.shape
    g = -(-c_in // 4)
    wp = np.zeros((c_out, kh, kw, 4 * g), np.uint8)
    wp[..., :c_in] = w
    sh, sw = (int(v) for v in layer.stride)
    parts = []
    for py in range(sh):
        for px in range(sw):
            ky, kx = list(_phase_taps(kh, sh, py)), list(_phase_taps(kw, sw, px))
            if not ky or not kx:
                continue
            rows = wp[:, ky][:, :, kx].reshape(c_out, -1, 4)  # [c_out, taps * g, 4]
            pairs = c_out // 2 * 2
            inter = rows[:pairs].reshape(pairs // 2, 2, rows.shape[1], 4).transpose(0, 2, 1, 3)
            parts += [inter.ravel(), rows[pairs:].ravel()]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint8)


def m7_check(step) -> str:
    """Does the twin run ``step`` (``OpKind.m7_check``)? It takes 8-bit input, weights and
    output; an input zero point in [-255, 255] (x - z_x in int16 lanes); at most
    :data:`M7_MAX_SCRATCH` bytes of scratch; on a Keras-path graph, a step where that scratch
    does not grow the arena (``Step.roomy``, as tn_m7_subconv and the 3x3 depthwise row kernel:
    the RAM budget first). Shapes and widths only, never the multipliers (the memory model plans
    the same before any weight is calibrated; the twin picks its requantization at run time).

    Arguments:
        step: a deployed step (:class:`tinyopt.integer.steps.Step`) of this op.

    Returns:
        "" when the twin runs it, else why the portable kernel keeps it (reported in
        ``kernels_m7.Choice.reason``).
    """
    layer = step.layer
    widths = {"input": layer.in_bits, "weights": layer.weight_bits, "output": layer.out_bits}
    other = {k: v for k, v in widths.items() if int(v) != 8}
    if other:
        return ("the twin takes 8-bit input, weights and output, got "
                + ", ".join(f"{v}-bit {k}" for k, v in other.items()))
    if abs(int(layer.in_zero_point)) > 255:
        return f"input zero point {layer.in_zero_point} outside [-255, 255]"
    need = m7_scratch_bytes(step)
    if need > M7_MAX_SCRATCH:
        return f"scratch {need} B > {M7_MAX_SCRATCH} B"
    if not step.roomy:
        return "its scratch would grow the arena (Keras path: the twin only where it is free)"
    return ""


def m7_fields(step, emit) -> dict:
    """The descriptor fields of a step the twin runs (``OpKind.m7_fields``).

    Arguments:
        step: the deployed step; emit: codegen's ``(ctype, values, what) -> array name``.

    Returns:
        {"w": the weights in the twin's order (:func:`m7_weights`)}, in place of the rows.
    """
    return {"w": emit("uint8_t", m7_weights(step.layer), "w")}


def keras_geometry(in_hw, kernel, strides, padding: str) -> tuple[tuple, tuple]:
    """Output (H', W') and ``padding`` (top, bottom, left, right) of a Keras ``Conv2DTranspose``
    (``output_padding`` None, no dilation): 'same' gives H s, 'valid' H s + max(k - s, 0)
    (Keras' deconv_output_length), the padding TFLite's rule on that output (:func:`_padding`),
    which is TensorFlow's conv2d_transpose's.

    Arguments:
        in_hw: (H, W) of the input; kernel: (kh, kw); strides: (sh, sw); padding: "same" or
            "valid" (any case).

    Returns:
        ((H', W'), (top, bottom, left, right)).

    Raises:
        ValueError: another padding, or a size, kernel or stride below 1.
    """
    mode = str(padding).lower()
    if mode not in ("same", "valid"):
        raise ValueError(f"Conv2DTranspose padding {padding!r}: only 'same' and 'valid' are "
                         "supported")
    vals = [int(v) for v in (*in_hw, *kernel, *strides)]
    if len(vals) != 6 or min(vals) < 1:
        raise ValueError(f"Conv2DTranspose: input size {tuple(in_hw)}, kernel {tuple(kernel)} "
                         f"and strides {tuple(strides)} must be two integers >= 1 each")
    out, pads = [], []
    for size, k, stride in zip(vals[:2], vals[2:4], vals[4:]):
        o = size * stride if mode == "same" else size * stride + max(k - stride, 0)
        out.append(o)
        pads += _padding(size, o, k, stride, mode == "same")
    return tuple(out), tuple(pads)


def _padding(size: int, out: int, k: int, stride: int, same: bool) -> tuple[int, int]:
    """TFLite's ComputePaddingHeightWidth applied to the transpose conv's output (its "input"
    there): (before, after), before = total // 2."""
    n = (out + stride - 1) // stride if same else (out + stride - k) // stride
    total = max((n - 1) * stride + k - out, 0)
    return total // 2, total - total // 2


def _import(ctx, op, op_name: str) -> list[IntegerLayer]:
    """TRANSPOSE_CONV: inputs (output_shape, weights [c_out, kh, kw, c_in], input, bias)."""
    m = ctx.m
    ins = [int(i) for i in op.inputs]
    if len(ins) < 3:
        raise ValueError(f"{op_name}: needs inputs (output_shape, weights, input[, bias]), got "
                         f"{len(ins)}")
    out = int(op.outputs[0])
    layer = ctx.node("transpose_conv", op_name, [ins[2]], out)
    where = f"{op_name} writing {layer.name!r}"
    src, dst = ctx.tensors[layer.inputs[0]], ctx.tensors[layer.outputs[0]]
    m.check_int8(ins[1], "weights", op_name)
    w = m.data(ins[1]).astype(np.int64)
    s_w, z_w = m.quant(ins[1])
    if w.ndim != 4 or len(src.shape) != 3 or len(dst.shape) != 3 \
            or w.shape[3] != src.shape[-1] or w.shape[0] != dst.shape[-1]:
        raise ValueError(f"{where}: weights {list(w.shape)} do not fit input {src.shape} and "
                         f"output {dst.shape} ([c_out, kh, kw, c_in] expected)")
    if np.any(z_w != 0) or len(s_w) not in (1, w.shape[0]):
        raise ValueError(f"{where}: weights need zero point 0 and 1 or {w.shape[0]} scales")
    shape = [int(d) for d in m.data(ins[0]).reshape(-1)]
    if shape[1:] != list(dst.shape) or shape[0] != 1:
        raise ValueError(f"{where}: output_shape input {shape} differs from the output tensor "
                         f"(1, {', '.join(map(str, dst.shape))})")
    c_out, kh, kw, _ = w.shape
    if len(ins) > 3 and ins[3] >= 0:
        if m.tensor(ins[3]).type != ctx.schema.TensorType.INT32:
            raise ValueError(f"{where}: the bias {m.name(ins[3])!r} must be int32")
        bias = m.data(ins[3]).astype(np.int64).reshape(-1)
        if bias.shape != (c_out,):
            raise ValueError(f"{where}: bias has {bias.size} entries, expected {c_out}")
    else:
        bias = np.zeros(c_out, np.int64)
    opts = op.builtinOptions
    same = opts.padding == ctx.schema.Padding.SAME
    layer.stride = (int(opts.strideH), int(opts.strideW))
    if min(layer.stride) < 1:
        raise ValueError(f"{where}: strides must be >= 1, got {layer.stride}")
    (oh, ow, _), (sh, sw) = dst.shape, layer.stride
    layer.padding = _padding(src.shape[0], oh, kh, sh, same) + _padding(src.shape[1], ow, kw, sw,
                                                                        same)
    layer.set_weights(w + 128, 8)
    layer.weight_zero_point = np.full(1, 128, np.int32)
    layer.weight_scale = s_w.astype(np.float64)
    layer.bias = bias.astype(np.int32)
    real = np.float64(src.scale) * s_w.astype(np.float64) / np.float64(dst.scale)
    q, e = tflite_quantize_multiplier(np.broadcast_to(real, (c_out,)).copy())
    layer.m0, layer.n0 = q, e
    layer.rounding = ctx.rounding(op_name)
    layer.act_min, layer.act_max = ctx.act_range(opts, out)
    return [layer]


register(OpKind("transpose_conv", "transposed convolution, 2/4/8-bit codes and weights "
                "(TFLite int8 TRANSPOSE_CONV)", n_inputs=1, check=check, prepare=prepare,
                simulate=simulate,
                tflite={"TRANSPOSE_CONV": TFLiteOp(_import, {"litert": "tflite_double",
                                                             "tflm": "tflite_double"})},
                c_function="tn_run_transpose_conv", c_source="tn_transpose_conv.c",
                check_c=check_c, c_fields=c_fields, macs=macs,
                m7_source="tn_transpose_conv.c", m7_function="tn_m7_run_transpose_conv",
                m7_check=m7_check, m7_scratch=m7_scratch_bytes, m7_fields=m7_fields))

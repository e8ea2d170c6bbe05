"""Compute ops: ``conv2d``, ``pointwise`` (a 1x1 conv2d), ``depthwise`` and ``dense``.

Accumulators Phi = bias + sum (W - Z_w)(X - Z_x), exact (int32 wrap-around on request), then the
layer's requantization flavour (:mod:`tinyopt.integer.fixedpoint`), output zero point and clamp;
``requantize=False`` writes the raw int32 accumulators (logits). Weights are unsigned codes
packed per row (``docs/integer.md``); the IR fields are those of :class:`IntegerLayer`.

Dilation (``IntegerLayer.dilation``, TFLite's dilation factors, Keras ``dilation_rate``): tap
(ky, kx) of output (oy, ox) reads input (oy sh - pad_t + ky dh, ox sw - pad_l + kx dw); SAME
padding is computed on the dilated extent (k - 1) d + 1, as TFLite does. Dilation is width-free:
the simulator works on codes and the portable C kernel (``tn_acc_dilated``) reads every tap with
``tn_get``, so 2/4/8-bit packed inputs and weights take it as int8 does
(tests/test_op_subbyte_dilation.py).

Padding (top, bottom, left, right) may be asymmetric: a causal Conv1D (Keras
``padding="causal"``, run as a 1 x k conv2d on (1, T, C)) pads (k - 1) d on the left of the width
axis and nothing on the right, (0, 0, (k - 1) d, 0) (:func:`causal_padding`); ``pad_mode`` says
what a padded tap holds (the zero point, real 0, for Keras' causal pad). :func:`check` refuses
a window that leaves the padded input (``out_shape`` too large for the padding).

Exactness of the matrix products: convolutions and dense layers are im2col + matmul, in float
only where provably exact (every partial sum is an integer below 2^24 / 2^53, see
:func:`tinyopt.integer.fixedpoint.exact_float_dtype`), else in int64.

TFLite: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED (int8 weights per tensor or per channel,
int32 bias, fused ReLU / ReLU6 as the output clamp), and MEAN over the spatial axes written as
an all-ones depthwise layer. C: ``tn_run_compute`` in tinyopt_nn.c (and the Cortex-M7 gemm and
depthwise kernels, :mod:`tinyopt.deploy.kernels_m7`).
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.arith import macs as _macs
from tinyopt.integer.arith import tflite_quantize_multiplier, weight_rows
from tinyopt.integer.fixedpoint import (INT32_MAX, REQUANT, acc32, check_multipliers,
                                        exact_float_dtype, max_left_shift, value_range)
from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops._windows import pad_hw, taps
from tinyopt.integer.ops.registry import OpKind, TFLiteOp, register
from tinyopt.integer.tflite_ctx import spatial

KINDS = ("conv2d", "pointwise", "depthwise", "dense")
PAD_MODES = ("zero_point", "zero")


# ------------------------------------------------------------------------------ the IR

def check(layer: IntegerLayer, where: str) -> None:
    """Weights, bias, multipliers and zero points of the right shapes (1 per layer or one per
    output channel), a known rounding and pad mode."""
    for name in ("weights", "weight_shape", "weight_zero_point", "bias"):
        if getattr(layer, name) is None:
            raise ValueError(f"{where}: compute layers need {name}")
    c = layer.out_channels
    rows, n = weight_rows(layer.kind, layer.weight_shape)
    if layer.weights.shape != (rows, -(-n * layer.weight_bits // 8)):
        raise ValueError(f"{where}: packed weights have shape {layer.weights.shape}, "
                         f"expected {(rows, -(-n * layer.weight_bits // 8))} for "
                         f"{layer.weight_bits}-bit {layer.weight_shape}")
    per_channel = [("bias", layer.bias)]
    if layer.requantize:
        if layer.m0 is None or layer.n0 is None:
            raise ValueError(f"{where}: requantizing layers need m0 and n0")
        per_channel += [("m0", layer.m0), ("n0", layer.n0)]
    per_channel.append(("weight_zero_point", layer.weight_zero_point))
    for name, arr in per_channel:
        if arr.ndim != 1 or (len(arr) not in (1, c) or (name == "bias" and len(arr) != c)):
            raise ValueError(f"{where}: {name} must have 1 (per layer) or {c} (per "
                             f"channel) entries, got shape {arr.shape}")
    if layer.requantize and len(layer.m0) != len(layer.n0):
        # the simulator would broadcast one against the other, but the C holds one count for
        # both (n_m): one m0 with per-channel n0 would requantize every channel by n0[0]
        raise ValueError(f"{where}: m0 has {len(layer.m0)} entries and n0 {len(layer.n0)}; give "
                         f"both per layer (1) or both per channel ({c}): repeat the single one")
    if layer.pad_mode not in PAD_MODES:
        raise ValueError(f"{where}: pad_mode must be one of {PAD_MODES}")
    if layer.kind == "dense" and tuple(layer.dilation) != (1, 1):
        raise ValueError(f"{where}: a dense layer has no dilation; set dilation to (1, 1)")
    if layer.kind != "dense":
        _check_geometry(layer, where)


def _check_geometry(layer: IntegerLayer, where: str) -> None:
    """Paddings and strides of a windowed layer: four paddings >= 0, strides >= 1, and the last
    output's (dilated) window inside the padded input, (out - 1) s + (k - 1) d + 1 <= size +
    before + after on each axis (the simulator slices the padded input; the C would read the
    taps beyond as padding)."""
    pads = tuple(int(v) for v in layer.padding)
    if len(pads) != 4 or min(pads) < 0:
        raise ValueError(f"{where}: padding must be four integers >= 0 (top, bottom, left, "
                         f"right), got {tuple(layer.padding)}")
    if len(layer.stride) != 2 or min(int(v) for v in layer.stride) < 1:
        raise ValueError(f"{where}: stride must be two integers >= 1, got {tuple(layer.stride)}")
    if len(layer.in_shape) != 3 or len(layer.out_shape) != 3:
        return  # ranks are the graph's and the kernels' concern
    k = layer.weight_shape[:2] if layer.kind == "depthwise" else layer.weight_shape[1:3]
    for axis, name in enumerate(("height", "width")):
        size, out = int(layer.in_shape[axis]), int(layer.out_shape[axis])
        s, d = int(layer.stride[axis]), int(layer.dilation[axis])
        extent = (int(k[axis]) - 1) * d + 1
        padded = size + pads[2 * axis] + pads[2 * axis + 1]
        if (out - 1) * s + extent > padded:
            raise ValueError(
                f"{where}: {name}: {out} outputs at stride {s} need {(out - 1) * s + extent} "
                f"padded inputs (window {k[axis]}, dilation {d}) but the input has {size} plus "
                f"padding {pads[2 * axis]} + {pads[2 * axis + 1]}; fix out_shape or padding")


def causal_padding(kernel: int, dilation: int = 1) -> tuple:
    """The ``padding`` of a causal Conv1D run as a 1 x k conv2d on (1, T, C): (k - 1) d on the
    left of the width axis, none elsewhere (Keras ``padding="causal"``), so output t reads inputs
    t - (k - 1) d .. t and the output keeps T steps at stride 1.

    Arguments:
        kernel: k, the Conv1D's kernel size; dilation: d, its dilation rate.

    Returns:
        (top, bottom, left, right) = (0, 0, (k - 1) d, 0).

    Raises:
        ValueError: k or d below 1.
    """
    if int(kernel) < 1 or int(dilation) < 1:
        raise ValueError(f"causal padding: kernel {kernel} and dilation {dilation} must be >= 1")
    return (0, 0, (int(kernel) - 1) * int(dilation), 0)


def check_c(layer: IntegerLayer, flavour: str, where: str) -> None:
    """What the C kernels and their descriptor hold: one row of features per dense layer,
    kernel sizes and depth multiplier below 256, 1/2/4/8-bit weights, uint8 weight zero points,
    rows of at most 65535 bytes, TFLite multipliers in range."""
    if layer.kind == "dense" and int(np.prod(layer.in_shape)) != int(layer.weight_shape[1]):
        raise ValueError(f"{where}: a dense layer applied row by row (input {layer.in_shape}, "
                         f"{layer.weight_shape[1]} features) is not exported")
    if layer.kind != "dense":
        k = list(layer.weight_shape[:-1] if layer.kind == "depthwise"
                 else layer.weight_shape[1:3]) + [layer.depth_multiplier] \
            + list(layer.dilation)
        if max(k) > 255:
            raise ValueError(f"{where}: kernel sizes, the depth multiplier and the dilation "
                             f"must be in [0, 255], got {k}")
    if layer.weight_bits not in (1, 2, 4, 8):
        raise ValueError(f"{where}: weight bits {layer.weight_bits} not supported (1, 2, 4, 8)")
    zw = np.asarray(layer.weight_zero_point)
    if zw.min() < 0 or zw.max() > 255:
        raise ValueError(f"{where}: weight zero points must be in [0, 255] (uint8 in the C "
                         f"header), got [{zw.min()}, {zw.max()}]")
    if layer.weights.shape[1] > 65535:
        raise ValueError(f"{where}: a packed weight row of {layer.weights.shape[1]} bytes "
                         "exceeds 65535")
    if layer.requantize:
        check_multipliers(layer, flavour, where)


def layer_macs(layer: IntegerLayer) -> int:
    """Multiply-accumulates per image."""
    return _macs(int(np.prod(layer.out_shape)), int(np.prod(layer.weight_shape)),
                 layer.out_channels)


# ------------------------------------------------------------------------------ simulation

def centered_weights(layer: IntegerLayer) -> np.ndarray:
    """Weights minus their zero point(s), int64, in the layer's logical layout."""
    w = layer.unpacked_weights().astype(np.int64)
    zw = np.asarray(layer.weight_zero_point, np.int64)
    if layer.kind == "depthwise":  # [ky][kx][c]: channels last
        return w - zw
    return w - zw.reshape((-1,) + (1,) * (w.ndim - 1))  # c_out first


def prepare(p) -> None:
    """Per-run constants on the simulator's prepared node ``p``: centered weights in the matmul
    dtype (:func:`tinyopt.integer.fixedpoint.exact_float_dtype`), the bias, and the static
    accumulator bound that may prove int32 overflow impossible (``p.safe32``); ``p.monotone``
    (every m0 >= 0) allows the simulator to pool accumulators before requantizing."""
    layer, rounding = p.layer, p.rounding
    w = centered_weights(layer)
    lo, hi = value_range(layer.in_bits, layer.in_signed)
    z = layer.in_zero_point
    xmax = max(abs(lo - z), abs(hi - z), abs(z))  # |x - z_x| for any input or padding
    wmax = int(np.abs(w).max(initial=0))
    p.bias = np.asarray(layer.bias, np.int64)
    if layer.kind == "depthwise":
        fan_in = w.shape[0] * w.shape[1]
        p.dtype = np.int32 if fan_in * wmax * xmax < (1 << 31) else np.int64
        p.w = w.astype(p.dtype)  # [kh, kw, c_out]
    else:
        if layer.kind == "dense":
            mat = w  # [c_out, c_in]
        else:  # [c_out, kh, kw, c_in] -> rows in im2col's (ky, kx, c) order
            mat = w.reshape(w.shape[0], -1)
        fan_in = mat.shape[1]
        p.dtype = exact_float_dtype(fan_in, wmax, xmax) or np.int64
        p.w = np.ascontiguousarray(mat.T.astype(p.dtype))
    bound = fan_in * wmax * xmax + int(np.abs(p.bias).max(initial=0))
    shift = max_left_shift(rounding, layer.n0) if layer.requantize else 0
    p.safe32 = (bound << shift) <= INT32_MAX  # overflow impossible: no data check needed
    p.monotone = layer.requantize and bool(np.all(np.asarray(layer.m0) >= 0))


def accumulate(p, x: np.ndarray) -> np.ndarray:
    """Exact accumulators WITHOUT bias, in the layer's matmul dtype (integer-valued)."""
    layer = p.layer
    xs = x.astype(p.dtype) - p.dtype(layer.in_zero_point)
    n = len(x)
    if layer.kind == "dense":  # rows of c_in features (one row unless TFLite keep_num_dims)
        return (xs.reshape(-1, p.w.shape[0]) @ p.w).reshape((n,) + tuple(layer.out_shape))
    oh, ow, c_out = layer.out_shape
    sh, sw = layer.stride
    dh, dw = (int(d) for d in layer.dilation)
    xp = pad_hw(xs, layer.padding, 0 if layer.pad_mode == "zero_point" else -layer.in_zero_point)
    if layer.kind == "depthwise":
        kh, kw, _ = p.w.shape
        if layer.depth_multiplier > 1:
            xp = np.repeat(xp, layer.depth_multiplier, axis=-1)
        acc = np.zeros((n, oh, ow, c_out), p.dtype)
        for ky in range(kh):
            for kx in range(kw):
                y0, x0 = ky * dh, kx * dw
                acc += xp[:, y0:y0 + (oh - 1) * sh + 1:sh, x0:x0 + (ow - 1) * sw + 1:sw] \
                    * p.w[ky, kx]
        return acc
    kh, kw = layer.weight_shape[1:3]
    c_in = xp.shape[-1]
    cols = np.empty((n, oh, ow, kh * kw * c_in), p.dtype)
    if (dh, dw) == (1, 1):
        views = taps(xp, kh, kw, sh, sw, oh, ow)
    else:  # tap (ky, kx) starts at (ky dh, kx dw) of the padded input
        views = [xp[:, ky * dh:ky * dh + (oh - 1) * sh + 1:sh,
                    kx * dw:kx * dw + (ow - 1) * sw + 1:sw]
                 for ky in range(kh) for kx in range(kw)]
    for t, tap in enumerate(views):  # im2col, one tap at a time
        cols[..., t * c_in:(t + 1) * c_in] = tap
    return (cols.reshape(n * oh * ow, -1) @ p.w).reshape(n, oh, ow, c_out)


def finish(p, acc: np.ndarray, wrap: bool) -> np.ndarray:
    """Bias, requantization (or raw int32 logits), zero point and clamp -> int32 codes."""
    layer = p.layer
    acc = acc.astype(np.int64) + p.bias
    lo, hi = layer.out_range
    if not layer.requantize:
        y = acc32(acc, wrap, layer.name, p.safe32)
    else:
        y = REQUANT[p.rounding](acc, layer.m0, layer.n0, wrap, layer.name, p.safe32)
        y += layer.out_zero_point
    return np.clip(y, lo, hi).astype(np.int32)


def simulate(p, xs: list, wrap: bool) -> np.ndarray:
    """One batch through the layer: accumulate, then :func:`finish`."""
    return finish(p, accumulate(p, xs[0]), wrap)


# ------------------------------------------------------------------------------ TFLite

def _import_conv(ctx, op, op_name: str) -> list[IntegerLayer]:
    """CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED: int8 weights (per tensor or per channel),
    int32 bias, TFLite's multipliers, fused ReLU / ReLU6 as the output clamp."""
    m, schema = ctx.m, ctx.schema
    inputs = [int(i) for i in op.inputs]
    out = int(op.outputs[0])
    layer = ctx.node("", op_name, [inputs[0]], out)
    src = ctx.tensors[layer.inputs[0]]
    dst = ctx.tensors[layer.outputs[0]]
    opts = op.builtinOptions
    w = m.data(inputs[1]).astype(np.int64)
    s_w, z_w = m.quant(inputs[1])
    bias = m.data(inputs[2]).astype(np.int64) if len(inputs) > 2 and inputs[2] >= 0 else None
    where = f"{op_name} writing {dst.name!r}"
    if op_name == "FULLY_CONNECTED":
        layer.kind = "dense"
        codes = w  # [c_out, c_in]
        c_out, c_in = w.shape
        # rows of c_in features in, as many rows of c_out out (several only with keep_num_dims;
        # LiteRT would otherwise write a larger output than the model's tensor says)
        rows = int(np.prod(src.shape)) // c_in
        if (int(np.prod(src.shape)) % c_in or dst.shape[-1] != c_out
                or rows * c_out != int(np.prod(dst.shape))):
            raise ValueError(f"{where}: input {src.shape} / output {dst.shape} do not fit "
                             f"weights {w.shape}")
        if len(s_w) == 1 and ctx.flavour == "litert":
            # LiteRT: double(float32(s_in * s_w)) / double(s_out); TFLM's
            # GetQuantizedConvolutionMultipler multiplies in double (the else branch)
            real = np.float64(np.float32(src.scale) * s_w[0]) / np.float64(dst.scale)
        else:
            real = np.float64(src.scale) * s_w.astype(np.float64) / np.float64(dst.scale)
    else:
        if op_name == "CONV_2D":
            codes = w  # [c_out, kh, kw, c_in]: the IntegerGraph layout already
            kh, kw = w.shape[1:3]
            if w.shape[3] != src.shape[-1]:
                raise ValueError(f"{where}: grouped convolutions are not supported (weights "
                                 f"{w.shape}, input {src.shape})")
            layer.kind = "pointwise" if kh == kw == 1 else "conv2d"
        else:
            codes = w[0]  # [1, kh, kw, c_out] -> [kh, kw, c_out]
            kh, kw = codes.shape[:2]
            layer.kind = "depthwise"
            layer.depth_multiplier = int(opts.depthMultiplier) or 1
            if src.shape[-1] * layer.depth_multiplier != codes.shape[-1]:
                layer.depth_multiplier = codes.shape[-1] // src.shape[-1]
        c_out = dst.shape[-1]
        # a 1-tap axis has no dilation (the same taps either way; keeps the plain kernels)
        layer.dilation = (int(opts.dilationHFactor) if kh > 1 else 1,
                          int(opts.dilationWFactor) if kw > 1 else 1)
        dh, dw = layer.dilation
        if dh < 1 or dw < 1:
            raise ValueError(f"{where}: dilation factors must be >= 1, got {(dh, dw)}")
        # TFLite pads and sizes the output on the dilated extent (k - 1) d + 1
        (oh, ow), layer.padding = spatial(opts, src.shape[:2],
                                          ((kh - 1) * dh + 1, (kw - 1) * dw + 1), schema)
        if (oh, ow) != dst.shape[:2]:
            raise ValueError(f"{where}: computed output {(oh, ow)} but the model says "
                             f"{dst.shape[:2]}")
        layer.stride = (int(opts.strideH), int(opts.strideW))
        real = np.float64(src.scale) * s_w.astype(np.float64) / np.float64(dst.scale)
    layer.rounding = ctx.rounding(op_name)
    layer.set_weights(codes + 128, 8)
    layer.weight_zero_point = (z_w + 128).astype(np.int32)
    layer.weight_scale = s_w.astype(np.float64)
    layer.bias = (bias if bias is not None else np.zeros(c_out, np.int64)).astype(np.int32)
    layer.m0, layer.n0 = tflite_quantize_multiplier(real)
    layer.pad_mode = "zero_point"
    layer.act_min, layer.act_max = ctx.act_range(opts, out)
    return [layer]


def _import_mean(ctx, op, op_name: str) -> list[IntegerLayer]:
    """MEAN over the spatial axes (Keras GlobalAveragePooling2D over H and W of (H, W, C),
    GlobalAveragePooling1D over T of (T, C)): TFLite's QuantizedMeanOrSum, i.e. the sum of
    (x - z_in) times QuantizeMultiplier(s_in / s_out) refolded by 1/n
    (s = min(floor(log2 n), 32, 31 + shift), q' = (q << s) // n, shift' = shift - s), the same
    in LiteRT and TFLM. Written as a depthwise H x W convolution with all-one weights and zero
    bias, with reshapes around it when the input is (T, C) or keep_dims is false."""
    x, out = int(op.inputs[0]), int(op.outputs[0])
    src = ctx.spec(x, op_name)
    dst = ctx.spec(out, op_name)
    rank = len(src.shape)
    axis = sorted(int(a) % (rank + 1) for a in ctx.m.data(int(op.inputs[1])).reshape(-1))
    if (rank, axis) not in ((3, [1, 2]), (2, [1])):
        raise ValueError(f"MEAN writing {dst.name!r}: only the mean over H and W of (H, W, C) or "
                         f"over T of (T, C) is supported (got axis {axis} of a {rank + 1}-D "
                         "tensor)")
    hwc = src.shape if rank == 3 else (src.shape[0], 1, src.shape[1])
    h, w, c = hwc
    if int(np.prod(dst.shape)) != c or dst.shape[-1] != c:
        raise ValueError(f"MEAN writing {dst.name!r}: the mean of {src.shape} has {c} channels "
                         f"but the model says {dst.shape}")
    n = h * w
    q, e = tflite_quantize_multiplier(np.float64(src.scale) / np.float64(dst.scale))
    q, e = int(q[0]), int(e[0])
    sh = min(n.bit_length() - 1, 32, 31 + e)
    nodes = []

    def shape_node(name, src_name, in_shape, out_shape, zp, scale):
        return IntegerLayer(kind="flatten" if len(out_shape) == 1 else "reshape", name=name,
                            in_shape=tuple(in_shape), out_shape=tuple(out_shape),
                            in_signed=True, out_signed=True, in_zero_point=zp,
                            out_zero_point=zp, in_scale=scale, out_scale=scale,
                            inputs=(src_name,), outputs=(name,), extra={"tflite_op": op_name})

    layer = ctx.node("depthwise", op_name, [x], out)
    if rank == 2:
        nodes.append(shape_node(dst.name + ":as_hwc", src.name, src.shape, hwc,
                                src.zero_point, src.scale))
        layer.inputs, layer.in_shape = (nodes[-1].name,), hwc
    layer.out_shape = (1, 1, c)
    layer.set_weights(np.ones((h, w, c), np.uint8), 8)
    layer.weight_zero_point = np.zeros(1, np.int32)
    layer.bias = np.zeros(c, np.int32)
    layer.m0 = np.array([(q << sh) // n], np.int32)
    layer.n0 = np.array([e - sh], np.int8)
    layer.rounding = ctx.rounding(op_name)
    layer.extra["keep_dims"] = bool(op.builtinOptions.keepDims)
    nodes.append(layer)
    if tuple(dst.shape) != (1, 1, c):
        layer.name = dst.name + ":mean_hw"
        layer.outputs = (layer.name,)
        nodes.append(shape_node(dst.name, layer.name, (1, 1, c), dst.shape, dst.zero_point,
                                dst.scale))
    return nodes


_CONV_ROUNDING = {"litert": "tflite_double", "tflm": "tflite_double"}
_COMMON = dict(compute=True, check=check, prepare=prepare, simulate=simulate,
               c_function="tn_run_compute", check_c=check_c, macs=layer_macs)
register(
    OpKind("conv2d", "2-D convolution (any kernel, stride, padding)",
           tflite={"CONV_2D": TFLiteOp(_import_conv, _CONV_ROUNDING)}, **_COMMON),
    OpKind("pointwise", "1x1 convolution", **_COMMON),
    OpKind("depthwise", "depthwise convolution (depth multiplier >= 1); TFLite MEAN",
           tflite={"DEPTHWISE_CONV_2D": TFLiteOp(_import_conv, _CONV_ROUNDING),
                   "MEAN": TFLiteOp(_import_mean, _CONV_ROUNDING)}, **_COMMON),
    OpKind("dense", "fully connected",
           tflite={"FULLY_CONNECTED": TFLiteOp(_import_conv, {"litert": "tflite_single",
                                                              "tflm": "tflite_double"})},
           **_COMMON),
)

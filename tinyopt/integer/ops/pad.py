"""``pad``: zero padding of H and W with the output zero point (real 0). TFLite: PAD, PADV2
(whose constant must be the zero point, as Keras ZeroPadding2D gives). C: ``tn_run_pad``.
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops._windows import pad_hw
from tinyopt.integer.ops.registry import OpKind, TFLiteOp, register
from tinyopt.integer.tflite_ctx import same_quant


def check(layer: IntegerLayer, where: str) -> None:
    """An (H, W, C) input, padding (top, bottom, left, right) >= 0 and the padded out_shape."""
    if len(layer.in_shape) != 3 or len(layer.padding) != 4 or min(layer.padding) < 0:
        raise ValueError(f"{where}: pad needs an (H, W, C) input and padding "
                         f"(top, bottom, left, right) >= 0, got {tuple(layer.in_shape)}, "
                         f"{tuple(layer.padding)}")
    t, b, lft, r = layer.padding
    h, w, c = layer.in_shape
    if tuple(layer.out_shape) != (h + t + b, w + lft + r, c):
        raise ValueError(f"{where}: out_shape {tuple(layer.out_shape)} is not the padded "
                         f"{(h + t + b, w + lft + r, c)}")


def simulate(p, xs: list, wrap: bool) -> np.ndarray:
    return pad_hw(xs[0], p.layer.padding, p.layer.out_zero_point)


def _import_pad(ctx, op, op_name: str) -> list[IntegerLayer]:
    """PAD / PADV2 of H and W with the output zero point (PADV2: its constant, which must be
    the zero point: Keras ZeroPadding2D)."""
    inputs = [int(i) for i in op.inputs]
    x, out = inputs[0], int(op.outputs[0])
    same_quant(ctx, op_name, x, out)
    layer = ctx.node("pad", op_name, [x], out)
    pads = ctx.m.data(inputs[1]).astype(np.int64).reshape(-1, 2)
    if op_name == "PADV2" and len(inputs) > 2 and inputs[2] >= 0:
        value = int(ctx.m.data(inputs[2]).reshape(-1)[0])
        if value != layer.out_zero_point:
            raise ValueError(f"PADV2 writing {layer.name!r}: pads with {value}, not the zero "
                             f"point {layer.out_zero_point}; only zero padding is supported")
    if pads.shape[0] == 3 and not pads[0].any() and not pads[2].any() \
            and len(layer.in_shape) == 2:
        return _import_pad_1d(ctx, layer, pads, op_name)
    if pads.shape[0] != 4 or pads[0].any() or pads[3].any() or len(layer.in_shape) != 3:
        raise ValueError(f"{op_name} writing {layer.name!r}: only padding of H and W of a 4-D "
                         f"tensor or of T of a 3-D one is supported (paddings {pads.tolist()}, "
                         f"input {layer.in_shape})")
    layer.padding = (int(pads[1, 0]), int(pads[1, 1]), int(pads[2, 0]), int(pads[2, 1]))
    h, w, c = layer.in_shape
    padded = (h + layer.padding[0] + layer.padding[1], w + layer.padding[2] + layer.padding[3], c)
    if tuple(layer.out_shape) != padded:
        raise ValueError(f"{op_name} writing {layer.name!r}: padding {layer.in_shape} gives "
                         f"{padded} but the model says {layer.out_shape}")
    return [layer]


def _import_pad_1d(ctx, layer: IntegerLayer, pads, op_name: str) -> list[IntegerLayer]:
    """PAD of T of a (T, C) tensor (Keras Conv1D padding='causal', ZeroPadding1D): a pad of W of
    (1, T, C) between two reshapes (aliases when deployed)."""
    (t, c), out = layer.in_shape, layer.out_shape
    left, right = int(pads[1, 0]), int(pads[1, 1])
    if tuple(out) != (t + left + right, c):
        raise ValueError(f"{op_name} writing {layer.name!r}: padding {layer.in_shape} by "
                         f"{(left, right)} gives {(t + left + right, c)} but the model says {out}")

    def reshape(name, src, in_shape, out_shape):
        return IntegerLayer(kind="reshape", name=name, in_shape=tuple(in_shape),
                            out_shape=tuple(out_shape), in_signed=True, out_signed=True,
                            in_zero_point=layer.in_zero_point, out_zero_point=layer.in_zero_point,
                            in_scale=layer.in_scale, out_scale=layer.in_scale, inputs=(src,),
                            outputs=(name,), extra={"tflite_op": op_name})

    name = layer.name
    before = reshape(name + ":as_hwc", layer.inputs[0], (t, c), (1, t, c))
    layer.name = name + ":pad_w"
    layer.inputs, layer.outputs = (before.name,), (layer.name,)
    layer.in_shape, layer.out_shape = (1, t, c), (1, t + left + right, c)
    layer.padding = (0, 0, left, right)
    after = reshape(name, layer.name, layer.out_shape, out)
    return [before, layer, after]


def c_fields(step, emit) -> dict:
    """The descriptor's top and left padding (the kernel derives the rest from the shapes)."""
    return {"pad_t": int(step.layer.padding[0]), "pad_l": int(step.layer.padding[2])}


register(OpKind("pad", "zero padding of H and W", same_quantization=True, check=check,
                simulate=simulate, tflite={"PAD": TFLiteOp(_import_pad),
                                           "PADV2": TFLiteOp(_import_pad)},
                c_function="tn_run_pad", c_fields=c_fields))

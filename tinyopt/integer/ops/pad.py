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
    if pads.shape[0] != 4 or pads[0].any() or pads[3].any() or len(layer.in_shape) != 3:
        raise ValueError(f"{op_name} writing {layer.name!r}: only padding of H and W of a 4-D "
                         f"tensor is supported (paddings {pads.tolist()}, input {layer.in_shape})")
    layer.padding = (int(pads[1, 0]), int(pads[1, 1]), int(pads[2, 0]), int(pads[2, 1]))
    h, w, c = layer.in_shape
    padded = (h + layer.padding[0] + layer.padding[1], w + layer.padding[2] + layer.padding[3], c)
    if tuple(layer.out_shape) != padded:
        raise ValueError(f"{op_name} writing {layer.name!r}: padding {layer.in_shape} gives "
                         f"{padded} but the model says {layer.out_shape}")
    return [layer]


def c_fields(step, emit) -> dict:
    """The descriptor's top and left padding (the kernel derives the rest from the shapes)."""
    return {"pad_t": int(step.layer.padding[0]), "pad_l": int(step.layer.padding[2])}


register(OpKind("pad", "zero padding of H and W", same_quantization=True, check=check,
                simulate=simulate, tflite={"PAD": TFLiteOp(_import_pad),
                                           "PADV2": TFLiteOp(_import_pad)},
                c_function="tn_run_pad", c_fields=c_fields))

"""Shape-only ops: ``flatten`` and ``reshape`` (also TFLite's SQUEEZE and EXPAND_DIMS). The
codes are unchanged; a deployed reshape is no kernel call, its output aliases its input's bytes.
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops.registry import OpKind, TFLiteOp, register
from tinyopt.integer.tflite_ctx import same_quant


def check(layer: IntegerLayer, where: str) -> None:
    """The same number of elements in and out."""
    if int(np.prod(layer.in_shape)) != int(np.prod(layer.out_shape)):
        raise ValueError(f"{where}: in_shape {tuple(layer.in_shape)} and out_shape "
                         f"{tuple(layer.out_shape)} differ in size")


def simulate(p, xs: list, wrap: bool) -> np.ndarray:
    return xs[0].reshape((len(xs[0]),) + tuple(p.layer.out_shape))


def _import_reshape(ctx, op, op_name: str) -> list[IntegerLayer]:
    """RESHAPE, SQUEEZE, EXPAND_DIMS: the codes are unchanged, only the shape."""
    x, out = int(op.inputs[0]), int(op.outputs[0])
    same_quant(ctx, op_name, x, out)
    layer = ctx.node("reshape", op_name, [x], out)
    if len(layer.out_shape) == 1:
        layer.kind = "flatten"
    if int(np.prod(layer.in_shape)) != int(np.prod(layer.out_shape)):
        raise ValueError(f"{op_name} writing {layer.name!r}: {layer.in_shape} -> "
                         f"{layer.out_shape} changes the size")
    return [layer]


_IMPORT = TFLiteOp(_import_reshape)
_RESHAPE = dict(same_quantization=True, check=check, simulate=simulate, alias=True)
register(OpKind("flatten", "flatten to (C,)", **_RESHAPE),
         OpKind("reshape", "reshape (also SQUEEZE, EXPAND_DIMS)",
                tflite={"RESHAPE": _IMPORT, "SQUEEZE": _IMPORT, "EXPAND_DIMS": _IMPORT},
                **_RESHAPE))

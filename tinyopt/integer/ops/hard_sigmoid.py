"""``hard_sigmoid``: the piecewise-linear sigmoid on packed tensors of 1 to 8 bits, as a lookup
table: the sub-byte Keras path's op (MobileNetV3's squeeze-excite gate).

Two float functions carry the name, and the node is whichever the Keras model computes
(``config["form"]``):

- ``"relu6"``: Keras' MobileNetV3 ``hard_sigmoid(x) = ReLU(6.)(x + 3.) * (1. / 6.)``
  (``tf_keras.applications.mobilenet_v3``): min(max(x + 3, 0), 6) * (1/6) in float32;
- ``"clip"``: ``Activation("hard_sigmoid")`` (``tf_keras.activations.hard_sigmoid``, in
  tf_keras 2.21 ``backend.hard_sigmoid``): min(max(x * 0.2 + 0.5, 0), 1) in float32 (not
  relu6(x + 3) / 6: the two differ between |x| = 2.5 and 3).

The node holds ``table`` (2^in_bits bytes): entry c is the stored output code of the stored
input code c; unsigned stored codes in and out, no multipliers. C: ``tn_run_hard_sigmoid``
(``tinyopt/deploy/c/ops/tn_hard_sigmoid.c``, a table lookup on packed codes; may run in place).

TFLite has no HARD_SIGMOID operator: the int8 converter writes the MobileNetV3 form as ADD of
the constant 3, RELU6 and MUL by the constant 1/6, which the import reads as ``add_const``, a
``quantize`` (``relu.py``) and ``mul_const`` nodes; so this op has no TFLite import.

Sub-byte Keras path (:data:`KERAS`): the MobileNetV3 form (a TF-op add of the constant 3, a
``ReLU(6.)`` layer read only by the multiply, a TF-op multiply by 1/6: every intermediate
tensor read only by the next layer; the constants exact in float32) and
``Activation("hard_sigmoid")`` are one element-wise block. When the multiply's only reader is a
``Multiply`` of x by it, the four layers are MobileNetV3's hard-swish: the pattern then leaves
them to ``hard_swish`` (whatever the registry's order). The output range is fixed, (0, 1), like
the sigmoid's: unsigned codes, scale 1/2^Q, zero point 0 (1.0 itself clamps to the top code
2^Q - 1, as in the fake-quant layer). It lowers to the table at every width, computed by
``registry.lookup_table`` in float32 from the input grid with the float function the fake-quant
layer runs (min, max, add and multiply only: the same IEEE float32 operations in TensorFlow and
NumPy), so the node is the fake-quant layer, bit for bit.
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops._checks import table_op
from tinyopt.integer.ops.hard_swish import KERAS as HARD_SWISH
from tinyopt.integer.ops.hard_swish import _constant, _is_op
from tinyopt.integer.ops.registry import (KerasPattern, OpKind, register, table_lookup, table_node)

FORMS = ("relu6", "clip")
_ADD = ("__operators__.add", "math.add")
_MUL = ("math.multiply", "__operators__.mul")


def check(layer: IntegerLayer, where: str) -> None:
    """The table form (:func:`tinyopt.integer.ops._checks.table_op`)."""
    table_op(layer, where)


def simulate(p, xs: list, wrap: bool) -> np.ndarray:
    return table_lookup(p.layer.table, xs[0], p.layer.in_bits)


# --------------------------------------------------------------- the sub-byte Keras path

def _is_f32(value, want: float) -> bool:
    """``value`` is a number equal to ``want`` in float32 (the model multiplies in float32)."""
    return value is not None and np.float32(value) == np.float32(want)


def _relu6_members(layer, only_reader) -> list[str] | None:
    """x + 3 -> ReLU(6) -> * (1/6), each intermediate tensor read only by the next layer."""
    if not _is_op(layer, _ADD) or not _is_f32(_constant(layer), 3.0):
        return None
    relu = only_reader(layer.name)
    if relu is None or type(relu).__name__ != "ReLU" or relu.max_value is None \
            or float(relu.max_value) != 6.0 or float(relu.negative_slope) != 0.0 \
            or float(relu.threshold) != 0.0:
        return None
    scale = only_reader(relu.name)
    if scale is None or not _is_op(scale, _MUL) or not _is_f32(_constant(scale), 1.0 / 6.0):
        return None
    return [layer.name, relu.name, scale.name]


def _keras_match(layer, only_reader) -> list[str] | None:
    """The MobileNetV3 form (unless it is the start of a hard-swish) or
    ``Activation("hard_sigmoid")``."""
    if type(layer).__name__ == "Activation" \
            and getattr(layer.activation, "__name__", "") == "hard_sigmoid":
        return [layer.name]
    members = _relu6_members(layer, only_reader)
    if members is None or HARD_SWISH.match(layer, only_reader):
        return None
    return members


def _keras_config(layer) -> dict:
    """The form of the matched layer (module docstring)."""
    return {"form": "clip" if type(layer).__name__ == "Activation" else "relu6"}


def _form(config: dict) -> str:
    form = config.get("form")
    if form not in FORMS:
        raise ValueError(f"hard_sigmoid: config['form'] must be one of {FORMS} (which float "
                         f"function the Keras model computes), got {form!r}")
    return form


def _keras_float(xp, x, config: dict):
    if _form(config) == "relu6":  # ReLU(6.)(x + 3.) * (1. / 6.): relu6 is min(max(., 0), 6)
        return xp.minimum(xp.maximum(x + 3.0, 0.0), 6.0) * (1.0 / 6.0)
    # backend.hard_sigmoid: multiply by float32 0.2, add 0.5, clip_by_value(0, 1)
    return xp.minimum(xp.maximum(x * 0.2 + 0.5, 0.0), 1.0)


def _keras_lower(name: str, in_q: dict, out_q: dict, config: dict) -> list[dict]:
    """One table node at every width (module docstring; :func:`registry.table_node`)."""
    return table_node("hard_sigmoid", KERAS, name, in_q, out_q, config)


KERAS = KerasPattern(match=_keras_match, float_fn=_keras_float, lower=_keras_lower,
                     config=_keras_config, signed=False, out_range=(0.0, 1.0))

register(OpKind("hard_sigmoid", "hard sigmoid relu6(x + 3) / 6 or clip(0.2 x + 0.5, 0, 1) "
                "(a lookup table; TFLite: ADD, RELU6, MUL)",
                check=check, simulate=simulate, inplace_inputs=(0,),
                c_function="tn_run_hard_sigmoid", c_source="tn_hard_sigmoid.c", keras=KERAS))

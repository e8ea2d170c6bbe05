"""``swish``: x * sigmoid(x) (SiLU; EfficientNet's activation) on packed tensors of 1 to 8 bits,
as a lookup table: the sub-byte Keras path's op.

The node holds ``table`` (2^in_bits bytes): entry c is the stored output code of the stored
input code c. It reads and writes unsigned stored codes (a signed grid is stored with zero point
2^(Q-1), as every sub-byte tensor); it holds no multipliers. C: ``tn_run_swish``
(``tinyopt/deploy/c/ops/tn_swish.c``, a table lookup on packed codes; may run in place).

TFLite has no SWISH operator: its converter writes Keras' swish (``Activation("swish")``,
``tf.nn.silu``, a layer's own ``activation="swish"``) as LOGISTIC then MUL of the input by it,
which the int8 import reads as a ``logistic`` node and a ``mul`` node (their own modules), so
this op has no TFLite import.

Sub-byte Keras path (:data:`KERAS`): ``Activation("swish")`` (also ``Activation("silu")`` and
``Activation(tf.nn.silu)``: Keras names the function ``swish`` either way), the TF op
``tf.nn.silu`` / ``tf.nn.swish`` / ``keras.activations.swish`` called on a Keras tensor (a
``TFOpLambda``, symbol ``nn.silu``) with beta 1, and a compute layer's own
``activation="swish"`` (``KerasPattern.layer_activations``: the block reader splits it into the
linear layer, then this op) are one element-wise block. Its output is quantized signed with a
learned clip (swish is not bounded above; its minimum is about -0.278), rounded to nearest. It
lowers to the table at every width, 8 bits included: ``registry.lookup_table`` computes it from
the input grid in float32 with the float function the fake-quant layer runs, so the node is the
fake-quant layer (up to TensorFlow's and NumPy's float32 ``exp`` differing by one float32 step,
which moves an output code only on an exact rounding tie; see ``KerasPattern.float_fn``).
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops._checks import table_op
from tinyopt.integer.ops.registry import (KerasPattern, OpKind, register, table_lookup, table_node)

# TFOpLambda symbols of the swish: tf.nn.silu is tf.nn.swish (one function, exported as both)
_SYMBOLS = ("nn.silu", "nn.swish", "math.silu", "math.swish")
# Keras activation function names that mean swish (Activation layers, a layer's activation)
ACTIVATION_NAMES = ("swish", "silu")


def check(layer: IntegerLayer, where: str) -> None:
    """The table form (:func:`tinyopt.integer.ops._checks.table_op`)."""
    table_op(layer, where)


def simulate(p, xs: list, wrap: bool) -> np.ndarray:
    return table_lookup(p.layer.table, xs[0], p.layer.in_bits)


# --------------------------------------------------------------- the sub-byte Keras path

def _silu_beta(layer):
    """The ``beta`` a ``tf.nn.silu`` TF-op layer was called with (1.0 when not given), or None
    when it is no number (a tensor or a variable)."""
    nodes = getattr(layer, "_inbound_nodes", [])
    if len(nodes) != 1:
        return 1.0  # a shared layer: the block reader refuses it with its own message
    args, kwargs = list(nodes[0].call_args), dict(nodes[0].call_kwargs)
    beta = kwargs.get("beta", args[1] if len(args) > 1 else 1.0)
    if isinstance(beta, bool) or not isinstance(beta, (int, float, np.floating, np.integer)):
        return None
    return float(beta)


def _keras_match(layer, only_reader) -> list[str] | None:
    """``Activation`` with a swish function, or the ``tf.nn.silu`` TF op with beta 1.

    Raises:
        ValueError: a ``tf.nn.silu`` with another beta, naming the layer and the fix (the
            float function here is x * sigmoid(x); a silent beta 1 would change the result).
    """
    kind = type(layer).__name__
    if kind == "Activation" \
            and getattr(layer.activation, "__name__", "") in ACTIVATION_NAMES:
        return [layer.name]
    if kind == "TFOpLambda" and getattr(layer, "symbol", "") in _SYMBOLS:
        beta = _silu_beta(layer)
        if beta != 1.0:
            raise ValueError(f"layer {layer.name!r} (TF op {layer.symbol}): swish with beta "
                             f"{'that is no number' if beta is None else beta} is not supported "
                             "by the sub-byte flow (its swish is x * sigmoid(x), beta 1); call "
                             "tf.nn.silu without beta, or scale x by beta in a layer of its own")
        return [layer.name]
    return None


def _keras_float(xp, x, config: dict):
    """x * sigmoid(x) = x * (1 / (1 + exp(-x))): the sigmoid as ``logistic`` writes it, so both
    engines (TensorFlow in the fake-quant layer, NumPy float32 for the table) run the same
    float32 operations."""
    if xp is np:  # exp overflows to inf below about -88: sigmoid 0, y = -0.0, as TensorFlow
        with np.errstate(over="ignore"):
            return x * (np.float32(1.0) / (np.float32(1.0) + np.exp(-x)))
    return x * (1.0 / (1.0 + xp.exp(-x)))


def _keras_lower(name: str, in_q: dict, out_q: dict, config: dict) -> list[dict]:
    """One table node at every width (module docstring; :func:`registry.table_node`)."""
    return table_node("swish", KERAS, name, in_q, out_q, config)


KERAS = KerasPattern(match=_keras_match, float_fn=_keras_float, lower=_keras_lower,
                     signed=True, layer_activations=ACTIVATION_NAMES)

register(OpKind("swish", "swish / SiLU x * sigmoid(x) (a lookup table; TFLite: LOGISTIC + MUL)",
                check=check, simulate=simulate, inplace_inputs=(0,), c_function="tn_run_swish",
                c_source="tn_swish.c", keras=KERAS))

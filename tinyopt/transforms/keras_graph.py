"""The one home for walking and rebuilding Keras graphs: every transform (graph optimization,
decomposition, pruning, sub-byte quantization) finds its layers and copies models here.

Every transform is Model -> Model and never shares layer objects with its input (the seed's
pruned weights leaked into its QAT model through shared layers): :func:`clone` and
:func:`rebuild` make fresh layers.
"""

from __future__ import annotations

from typing import Callable

import tinyopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tf_keras as keras

# The layers that multiply-accumulate: what pruning, quantization and the memory model count.
COMPUTE_LAYERS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)


def chain(model: keras.Model) -> list:
    """The model's layers (without the InputLayer) if they form a linear chain.

    Raises:
        ValueError: the model branches or merges (naming the first layer that does).
    """
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if isinstance(model, keras.Sequential):
        return layers
    previous = model.inputs[0] if len(model.inputs) == 1 else None
    for layer in layers:
        if previous is None or len(layer._inbound_nodes) != 1 or layer.input is not previous:  # noqa: SLF001
            raise ValueError(f"layer {layer.name!r} is not part of a single linear chain; "
                             "tinyopt's graph rewrites support sequential topologies only")
        previous = layer.output
    if len(model.outputs) != 1 or model.outputs[0] is not previous:
        raise ValueError("the model's output is not the end of its layer chain")
    return layers


def copy_layer(layer, **overrides):
    """A fresh layer with ``layer``'s config (plus ``overrides``); weights are set by rebuild."""
    config = dict(layer.get_config(), **overrides)
    return layer.__class__.from_config(config)


# A replacement: (new layer, weights to set after build, or None to keep its initial weights).
Replacement = list[tuple[keras.layers.Layer, list | None]]


def rebuild(model: keras.Model, rewrite: Callable[[list, int], tuple[Replacement, int]],
            name: str | None = None) -> keras.Model:
    """Rebuild a linear-chain model layer by layer.

    Arguments:
        model: a sequential-topology tf_keras model.
        rewrite: called as ``rewrite(layers, i)``; returns the replacement for ``layers[i]`` (and
            possibly following layers) and how many input layers it consumed (>= 1).
        name: name of the new model (default: the old one's).

    Returns:
        A new functional model; no layer object is shared with ``model``.
    """
    layers = chain(model)
    inputs = keras.Input(model.input_shape[1:], name=model.layers[0].name
                         if isinstance(model.layers[0], keras.layers.InputLayer) else "input")
    x, pending, i = inputs, [], 0
    while i < len(layers):
        replacement, consumed = rewrite(layers, i)
        if consumed < 1:
            raise RuntimeError("rewrite must consume at least one layer")
        for new_layer, weights in replacement:
            x = new_layer(x)
            pending.append((new_layer, weights))
        i += consumed
    new = keras.Model(inputs, x, name=name or model.name)
    for new_layer, weights in pending:
        if weights is not None:
            new_layer.set_weights(weights)
    return new


def keep(layers, i) -> tuple[Replacement, int]:
    """The identity rewrite: a fresh copy of the layer with the same weights."""
    return [(copy_layer(layers[i]), layers[i].get_weights())], 1


def relu_kind(layer) -> str | None:
    """'relu' / 'relu6' if the layer is a plain ReLU(6) (a ``ReLU`` or ``Activation`` layer) that
    can become a fused activation or a PACT quantizer, else None."""
    if isinstance(layer, keras.layers.ReLU):
        cfg = layer.get_config()
        if cfg.get("negative_slope", 0) or cfg.get("threshold", 0):
            return None
        if cfg.get("max_value") is None:
            return "relu"
        return "relu6" if float(cfg["max_value"]) == 6.0 else None
    if isinstance(layer, keras.layers.Activation):
        act = layer.get_config()["activation"]
        return act if act in ("relu", "relu6") else None
    return None


def clone(model: keras.Model) -> keras.Model:
    """A copy with its own layer objects and the same weights (``clone_model`` alone
    re-initialises them)."""
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def compute_layer_names(model: keras.Model) -> list[str]:
    """Names of the Conv2D / DepthwiseConv2D / Dense layers, in graph order."""
    return [layer.name for layer in model.layers if isinstance(layer, COMPUTE_LAYERS)]


def layer_macs(layer) -> int:
    """Multiply-accumulates per image of a built Keras layer (Conv2D / Conv1D, DepthwiseConv2D,
    SeparableConv2D, Dense; 0 for any other layer), with :func:`tinyopt.integer.arith.macs`."""
    from tinyopt.integer.arith import macs
    out = [int(d) for d in layer.output_shape[1:]]
    n_out = 1
    for d in out:
        n_out *= d
    if isinstance(layer, keras.layers.SeparableConv2D):
        dw = [int(d) for d in layer.depthwise_kernel.shape]
        pw = [int(d) for d in layer.pointwise_kernel.shape]
        hw = n_out // out[-1]
        return macs(hw * dw[2] * dw[3], dw[0] * dw[1] * dw[2] * dw[3], dw[2] * dw[3]) + \
            macs(n_out, pw[2] * pw[3], pw[3])
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        k = layer.depthwise_kernel.shape
    elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv1D, keras.layers.Dense)):
        k = layer.kernel.shape
    else:
        return 0
    n_k = 1
    for d in k:
        n_k *= int(d)
    return macs(n_out, n_k, out[-1])

"""Graph optimization that really changes the graph (the chain utilities it rebuilds with are in
:mod:`tinyopt.transforms.keras_graph`).

``optimize(model)`` rewrites a linear chain of layers:

- folds a BatchNormalization into the preceding Conv2D / DepthwiseConv2D / Dense (which must have a
  linear activation): ``w' = w * g``, ``b' = (b - mean) * g + beta`` with
  ``g = gamma/sqrt(var+eps)``
  per output channel;
- removes Dropout and identity layers (``Activation("linear")``, ``keras.layers.Identity``);
- folds a following ReLU / ReLU6 layer into the layer's activation when that activation is linear.

``plan(model)`` lists the rewrites ``optimize`` would make; an empty list means "no change", and the
results say so instead of claiming an effect (the seed's "graph optimization" retrained the same
graph and changed nothing in the deployed model).

Every transform here is Model -> Model and never shares layer objects with its input (the seed's
pruned weights leaked into its QAT model through shared layers).
"""

from __future__ import annotations


import numpy as np

import tinyopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tf_keras as keras

from tinyopt.transforms.keras_graph import (COMPUTE_LAYERS, Replacement, copy_layer, keep,
                                            rebuild, relu_kind)

AFFINE = COMPUTE_LAYERS


# --------------------------------------------------------------------------- the rewrites

def _is_identity(layer) -> bool:
    if isinstance(layer, keras.layers.Dropout):
        return True
    if isinstance(layer, keras.layers.Activation):
        return layer.get_config()["activation"] == "linear"
    return type(layer).__name__ == "Identity"


def _linear(layer) -> bool:
    return isinstance(layer, AFFINE) and layer.get_config().get("activation") == "linear"


def _fold_bn(layer, bn) -> tuple[np.ndarray, np.ndarray]:
    """Kernel and bias of ``layer`` with the inference-mode BatchNormalization ``bn`` folded in."""
    weights = layer.get_weights()
    kernel = weights[0].astype(np.float64)
    bias = weights[1].astype(np.float64) if layer.use_bias else 0.0
    cfg = bn.get_config()
    axis = cfg["axis"][0] if isinstance(cfg["axis"], (list, tuple)) else cfg["axis"]
    if axis not in (-1, len(layer.output_shape) - 1):
        raise ValueError(f"cannot fold {bn.name!r}: it normalizes axis {axis}, not channels")
    params = dict(zip([w.name.split("/")[-1].split(":")[0] for w in bn.weights], bn.get_weights()))
    gamma = params.get("gamma", 1.0)
    beta = params.get("beta", 0.0)
    scale = np.asarray(gamma, np.float64) / np.sqrt(params["moving_variance"].astype(np.float64)
                                                   + cfg["epsilon"])
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
    else:
        kernel = kernel * scale  # output channels are the last axis of Conv2D and Dense kernels
    bias = (bias - params["moving_mean"]) * scale + np.asarray(beta, np.float64)
    return kernel.astype(np.float32), np.broadcast_to(bias, scale.shape).astype(np.float32)


def _optimize_step(layers, i, notes: list[str]) -> tuple[Replacement, int]:
    layer = layers[i]
    if _is_identity(layer):
        notes.append(f"removed {type(layer).__name__} {layer.name!r}")
        return [], 1
    if not _linear(layer):
        return keep(layers, i)
    j = i + 1
    kernel_bias = None
    while j < len(layers) and _is_identity(layers[j]):  # dropout between conv and BN/ReLU
        j += 1
    if j < len(layers) and isinstance(layers[j], keras.layers.BatchNormalization):
        kernel_bias = _fold_bn(layer, layers[j])
        notes.append(f"folded BatchNormalization {layers[j].name!r} into {layer.name!r}")
        j += 1
    while j < len(layers) and _is_identity(layers[j]):
        j += 1
    activation = "linear"
    if j < len(layers) and relu_kind(layers[j]):
        activation = relu_kind(layers[j])
        notes.append(f"fused {activation} {layers[j].name!r} into {layer.name!r}")
        j += 1
    if kernel_bias is None and activation == "linear":
        return keep(layers, i)
    for skipped in layers[i + 1:j]:
        if _is_identity(skipped):
            notes.append(f"removed {type(skipped).__name__} {skipped.name!r}")
    if kernel_bias is None:
        w = layer.get_weights()
        kernel_bias = (w[0], w[1] if layer.use_bias else np.zeros(w[0].shape[-1] if not
                       isinstance(layer, keras.layers.DepthwiseConv2D) else
                       w[0].shape[2] * w[0].shape[3], np.float32))
    new = copy_layer(layer, activation=activation, use_bias=True)
    return [(new, list(kernel_bias))], j - i


def plan(model: keras.Model) -> list[str]:
    """The rewrites :func:`optimize` would make, in order; empty means the graph is unchanged."""
    notes: list[str] = []
    rebuild(model, lambda layers, i: _optimize_step(layers, i, notes))
    return notes


def optimize(model: keras.Model) -> keras.Model:
    """Fold BN, drop Dropout/identity layers, fuse following ReLU/ReLU6 (see module docstring).

    Arguments:
        model: a sequential-topology tf_keras model (inference semantics: BN uses moving stats).

    Returns:
        A new model computing the same function (to float rounding); :func:`plan` lists what
        changes.

    Raises:
        ValueError: the model is not a linear chain.
    """
    notes: list[str] = []
    return rebuild(model, lambda layers, i: _optimize_step(layers, i, notes),
                   name=f"{model.name}_graphopt")

"""tfmot's 8-bit quantization-aware training (QAT), the LiteRT path's QAT step.

- :func:`quantize`: tfmot's 8-bit QAT (``quantize_model``), or tfmot's pruning-preserving 8-bit
  scheme when the model is sparse, so that fine-tuning keeps the pruned zeros;
  :func:`quantize_model` returns the model with the scheme it used (:class:`QATResult`).

It returns an ordinary ``tf_keras`` model that trains with :func:`tinyopt.fit`. tinyopt's
own sub-byte (2/4/8-bit) QAT is elsewhere: the fake-quant copy following a policy in
:func:`tinyopt.mixed.build.quantize_mixed` (also ``tinyopt.quantize_qat``, with
``integer_params``, ``summary`` and ``named_policy``), its quantizers in
:mod:`tinyopt.mixed.quantizers`, its Keras layers in :mod:`tinyopt.mixed.layers` and
:mod:`tinyopt.mixed.graph_layers`, post-training calibration in :mod:`tinyopt.mixed.ptq`.
"""

from __future__ import annotations

from dataclasses import dataclass

import tinyopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tf_keras as keras

from tinyopt.transforms.keras_graph import clone
from tinyopt.transforms.prune import sparsity

SPARSE_THRESHOLD = 0.30  # a kernel with at least this fraction of exact zeros counts as pruned
SCHEME_DEFAULT = "Default8BitQuantizeScheme"
SCHEME_PRUNE_PRESERVE = "Default8BitPrunePreserveQuantizeScheme"


def kernel_sparsity(model: keras.Model) -> dict[str, float]:
    """Fraction of exact zeros in each kernel, ``{layer name: zero fraction}``
    (:func:`tinyopt.transforms.prune.sparsity`'s per-layer part)."""
    return sparsity(model)["per_layer"]


def _check_not_wrapped(model: keras.Model) -> None:
    """tfmot cannot quantize a model that still carries pruning wrappers or QAT wrappers."""
    import tensorflow_model_optimization as tfmot
    # Not exported by tfmot's public API; tfmot 0.8 keeps it at this path.
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (
        PruneLowMagnitude as prune_wrapper)
    for layer in model.layers:
        if isinstance(layer, prune_wrapper):
            raise ValueError(f"layer {layer.name!r} still has its pruning wrapper; call "
                             "tfmot.sparsity.keras.strip_pruning(model) before "
                             "tinyopt.qat_int8")
        if isinstance(layer, tfmot.quantization.keras.QuantizeWrapper) or \
                type(layer).__name__ == "QuantizeLayer":
            raise ValueError(f"layer {layer.name!r} is already quantization-wrapped; pass the "
                             "float model to tinyopt.qat_int8")


@dataclass
class QATResult:
    """What :func:`quantize_model` returns.

    Attributes:
        model: the tfmot QAT model (uncompiled; fine-tune it with :func:`tinyopt.fit`).
        scheme: ``SCHEME_DEFAULT`` or ``SCHEME_PRUNE_PRESERVE``.
        kernel_sparsity: per-layer zero fractions of the input model that drove the choice.
    """

    model: keras.Model
    scheme: str
    kernel_sparsity: dict


def quantize(model: keras.Model, preserve_sparsity: bool | None = None) -> keras.Model:
    """The QAT model of :func:`quantize_model` (the public ``tinyopt.qat_int8``)."""
    return quantize_model(model, preserve_sparsity).model


def quantize_model(model: keras.Model, preserve_sparsity: bool | None = None) -> QATResult:
    """tfmot 8-bit QAT copy of a trained float ``tf_keras`` model; the input is not modified.

    Arguments:
        model: a trained float model (pruning wrappers already stripped).
        preserve_sparsity: True uses tfmot's pruning-preserving scheme
            (``tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme``), so QAT
            fine-tuning keeps every zero weight; False uses ``quantize_model``'s default 8-bit
            scheme; None (default) decides automatically: preserve when some Conv/Dense kernel has
            at least ``SPARSE_THRESHOLD`` (30 %) exact zeros.

    Returns:
        A :class:`QATResult`: the QAT model, the scheme used and the sparsity behind the choice.

    Raises:
        ValueError: the model still carries pruning or quantization wrappers.
    """
    import tensorflow_model_optimization as tfmot
    _check_not_wrapped(model)
    per_layer = kernel_sparsity(model)
    if preserve_sparsity is None:
        preserve_sparsity = any(s >= SPARSE_THRESHOLD for s in per_layer.values())
    copy = clone(model)
    if preserve_sparsity:
        annotated = tfmot.quantization.keras.quantize_annotate_model(copy)
        qmodel = tfmot.quantization.keras.quantize_apply(
            annotated, tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
        scheme = SCHEME_PRUNE_PRESERVE
    else:
        qmodel = tfmot.quantization.keras.quantize_model(copy)
        scheme = SCHEME_DEFAULT
    return QATResult(qmodel, scheme, per_layer)

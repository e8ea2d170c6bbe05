"""Converters: Keras model -> LiteRT flatbuffer bytes.

``to_tflite(model, mode)`` is the one entry point; every mode is a small function that configures
a ``TFLiteConverter``. The LiteRT interpreter (``ai_edge_litert``) runs the result; see
:mod:`tinyopt.measure`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

import tinyopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf


def _float32(converter, calibration):
    return converter


MODES: dict[str, Callable] = {
    "float32": _float32,
}


def to_tflite(model, mode: str = "float32", calibration: np.ndarray | None = None) -> bytes:
    """Convert a ``tf_keras`` model to a LiteRT flatbuffer.

    Arguments:
        model: a ``tf_keras`` model.
        mode: one of ``MODES``.
        calibration: model-ready float images for the modes that calibrate activations.

    Returns:
        The flatbuffer as bytes.

    Raises:
        ValueError: unknown mode, or a calibrating mode without calibration data.
    """
    if mode not in MODES:
        raise ValueError(f"unknown conversion mode {mode!r}; choose one of {list(MODES)}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter = MODES[mode](converter, calibration)
    return bytes(converter.convert())

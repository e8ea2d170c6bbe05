"""Converters: Keras model -> LiteRT flatbuffer bytes.

``to_tflite(model, mode)`` is the one entry point; every mode is a small function that configures
a ``TFLiteConverter``. The LiteRT interpreter (``ai_edge_litert``) runs the result; see
:mod:`tinyopt.litert.measure`.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

import tinyopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras

from tinyopt.front.checks import check_images, check_weights


CALIBRATION_SAMPLES = 500


def _representative(calibration):
    def gen():
        for i in range(len(calibration)):
            yield [calibration[i:i + 1].astype(np.float32)]
    return gen


def _float32(converter, calibration):
    return converter


def _float16(converter, calibration):
    # fp16 weights, expanded to fp32 by DEQUANTIZE ops at load; compute stays fp32.
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]
    return converter


def _dynamic(converter, calibration):
    # Weight-only int8 ("dynamic range"): what the seed called "int with float fallback".
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter


def _int8_fallback(converter, calibration):
    # Full-integer calibration, but float ops and float I/O remain allowed.
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _representative(calibration)
    return converter


def _int8(converter, calibration):
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _representative(calibration)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter


def _int16x8(converter, calibration):
    # int16 activations, int8 weights; int16 I/O so the graph is integer end to end.
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = _representative(calibration)
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    converter.inference_input_type = tf.int16
    converter.inference_output_type = tf.int16
    return converter


MODES: dict[str, Callable] = {
    "float32": _float32,
    "float16": _float16,
    "dynamic": _dynamic,
    "int8_fallback": _int8_fallback,
    "int8": _int8,
    "int16x8": _int16x8,
}
CALIBRATED = {"int8_fallback", "int8", "int16x8"}
# Modes whose interpreter I/O dtypes we promise, verified after every conversion (the seed's
# "integer only" files silently kept float32 I/O).
IO_DTYPES = {"int8": ("int8", "int8"), "int16x8": ("int16", "int16")}


def calibration_subset(x: np.ndarray, samples: int = CALIBRATION_SAMPLES,
                       seed: int = 0) -> np.ndarray:
    """A seeded random subset of ``samples`` images (pass TRAIN images, never test images)."""
    if samples < 1:
        raise ValueError(f"calibration samples must be >= 1, got {samples}")
    if len(x) <= samples:
        return x
    idx = np.sort(np.random.default_rng(seed).choice(len(x), samples, replace=False))
    return x[idx]


def to_tflite(model, mode: str = "float32", calibration: np.ndarray | None = None,
              calibration_samples: int = CALIBRATION_SAMPLES, seed: int = 0,
              batch_size: int | None = None) -> bytes:
    """Convert a ``tf_keras`` model to a LiteRT flatbuffer.

    Arguments:
        model: a ``tf_keras`` model (float, pruned, QAT-wrapped or decomposed).
        mode: ``float32``; ``float16`` (fp16 weights); ``dynamic`` (int8 weights, float
            activations); ``int8_fallback`` (calibrated int8, float ops/I-O allowed); ``int8`` (full
            integer, int8 input and output); ``int16x8`` (int16 activations, int8 weights,
            int16 I/O).
        calibration: model-ready float TRAIN images, required by the calibrated modes: shape
            ``[N, *model.input_shape[1:]]``, a float dtype, finite, on the model's scale
            (``tinyopt.preprocess_images`` output for tinyopt models); checked in full before
            the converter sees them (:func:`tinyopt.front.checks.check_images`).
        calibration_samples: how many of them to use (a seeded random subset; default 500).
        seed: seed of that subset.
        batch_size: None (default): the model's batch axis stays dynamic; 1: converted for
            one image at a time, so the converter folds every shape computation (a Keras
            ``Reshape`` or a ``Dense`` on a 3-D tensor otherwise become SHAPE / STRIDED_SLICE /
            PACK / GATHER ops computing the reshape target at run time, which the integer
            graph does not import), as a microcontroller runs it.

    Returns:
        The flatbuffer as bytes.

    Raises:
        ValueError: unknown mode; a calibrated mode without calibration images; calibration of
            the wrong shape, with NaN / Inf values or on the wrong scale (e.g. raw pixels); a
            layer with a NaN / Inf weight (named).
        TypeError: ``model`` is not a tf_keras model; calibration that is not a float array
            (e.g. raw uint8 pixels).
        RuntimeError: the converted model's I/O dtypes are not what the mode promises.
    """
    if mode not in MODES:
        raise ValueError(f"unknown conversion mode {mode!r}; choose one of {list(MODES)}")
    if not isinstance(model, keras.Model):
        hint = " (a result record? pass its .model)" if hasattr(model, "model") else ""
        raise TypeError(f"to_tflite: model must be a tf_keras model, got "
                        f"{type(model).__name__}{hint}")
    if mode in CALIBRATED:
        if calibration is None or (hasattr(calibration, "__len__") and len(calibration) == 0):
            raise ValueError(f"mode {mode!r} needs calibration images: pass calibration="
                             "<model-ready TRAIN images> (e.g. dataset.x_train)")
        # The converter takes anything: uint8 pixels calibrate a chance-level model, NaN gives
        # NaN ranges, and +Inf crashes the interpreter process (segmentation fault). So the
        # whole array is checked against the model before it gets near the converter.
        calibration = check_images(calibration, model, "calibration", f"to_tflite({mode!r})")
        calibration = calibration_subset(calibration, calibration_samples, seed)
    check_weights(model, f"to_tflite({mode!r})")
    if batch_size is None:
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
    else:
        if batch_size != 1 or isinstance(batch_size, bool):
            raise ValueError(f"batch_size must be None (dynamic) or 1, got {batch_size!r}")
        spec = tf.TensorSpec([batch_size, *model.input_shape[1:]], tf.float32)
        fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(spec)
        converter = tf.lite.TFLiteConverter.from_concrete_functions([fn], model)
    converter = MODES[mode](converter, calibration)
    with warnings.catch_warnings():
        # Emitted for every calibrated conversion; the representative dataset supplies the
        # statistics, so it says nothing about this model.
        warnings.filterwarnings("ignore", message="Statistics for quantized inputs were expected")
        flatbuffer = bytes(converter.convert())
    if mode in IO_DTYPES:
        from tinyopt.litert.measure import io_dtypes
        got = io_dtypes(flatbuffer)
        if got != IO_DTYPES[mode]:
            raise RuntimeError(f"mode {mode!r} promised I/O dtypes {IO_DTYPES[mode]} but the "
                               f"converter produced {got}")
    return flatbuffer

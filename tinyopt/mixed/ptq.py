"""Mixed sub-byte post-training quantization (PTQ): no retraining, calibration data only.

:func:`quantize_mixed` builds the same fake-quant model as :func:`tinyopt.qat.quantize_mixed`
(so the integer conversion treats PTQ and QAT models alike, and QAT can start from a PTQ model)
and sets its quantizers from calibration images, layer by layer in graph order, each layer seeing
the already-quantized output of the layers before it:

- weights: PL clips from min/max or an MSE-optimal shrink of the range (``weights=``); PC weights
  need nothing (their per-channel min/max is computed from the weights themselves);
- activations: PACT alpha from a percentile of the calibration pre-activations or an MSE search
  against the float activation (``activations=``);
- optionally (``floor_offset=True``) half an output step S_y / 2 is added to the layer's bias
  (FB: the bias, ICN: BN's beta), so PACT's floor behaves like round on average; without it the
  floor loses S_y / 2 per activation on average, which hurts at 2 and 4 bits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import tinyopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras

from tinyopt.front.checks import check_images
from tinyopt.mixed import build, quantizers
from tinyopt.mixed.layers import QuantCompute, QuantModel
from tinyopt.mixed.policy import Policy

WEIGHT_METHODS = ("minmax", "mse", "ppq", "spec")
ACT_METHODS = ("mse", "percentile")


def _float_target(pre: np.ndarray, activation: str) -> np.ndarray:
    """What the float model computes from the pre-activation: ReLU or ReLU6."""
    y = np.maximum(pre, 0.0)
    return np.minimum(y, 6.0) if activation == "relu6" else y


def _pact_np(pre: np.ndarray, alpha: float, bits: int, offset: bool) -> np.ndarray:
    """NumPy mirror of :func:`tinyopt.quantizers.pact` used only to score alpha candidates."""
    n = quantizers.levels(bits)
    s = alpha / n
    x = pre + (s / 2 if offset else 0.0)
    return np.where(x >= alpha, n, np.clip(np.floor(np.maximum(x, 0.0) / s), 0, n)) * s


def calibrate_alpha(pre: np.ndarray, bits: int, activation: str, method: str = "mse",
                    percentile: float = 99.99, offset: bool = True, grid: int = 80,
                    max_samples: int = 100_000, seed: int = 0) -> float:
    """PACT clip alpha for the calibration pre-activations ``pre``.

    Arguments:
        pre: pre-activation values (any shape).
        bits: output bits.
        activation: "relu" or "relu6" (the float target the MSE search compares against).
        method: "percentile" (that percentile of the float activation) or "mse" (the candidate
            in (0, max] minimising the error of the quantized against the float activation).
        percentile: for ``method="percentile"``.
        offset: score candidates with the S/2 floor offset applied (see module docstring).
        grid: number of MSE candidates.
        max_samples: a seeded random subsample of at most this many values is used.
        seed: seed of the subsample.

    Returns:
        alpha (> 0).

    Raises:
        ValueError: unknown method.
    """
    if method not in ACT_METHODS:
        raise ValueError(f"activation calibration must be one of {ACT_METHODS}, got {method!r}")
    v = np.asarray(pre, np.float32).ravel()
    if v.size > max_samples:
        v = np.random.default_rng(seed).choice(v, max_samples, replace=False)
    target = _float_target(v, activation)
    top = float(target.max())
    if top <= 0:
        return 1.0  # the layer never fires on the calibration data; any clip is exact
    if method == "percentile":
        return max(float(np.percentile(target, percentile)), quantizers.ALPHA_MIN)
    alphas = top * np.linspace(1.0, 0.05, grid)
    errors = np.concatenate([  # vectorised over candidates, in chunks to bound memory
        np.mean((_pact_np(v[None, :], alphas[i:i + 8, None], bits, offset) - target) ** 2,
                axis=1) for i in range(0, grid, 8)])
    return float(alphas[int(np.argmin(errors))])


def _add_offset(layer: QuantCompute, amount: float) -> None:
    """Add ``amount`` to the pre-activation of every channel: to BN's beta when there is a BN
    (ICN: BN(t) + amount; FB: the folded bias beta + (b - mu) f grows by amount), else to the
    bias."""
    if layer.bn_config is not None:
        layer.beta.assign_add(tf.fill(layer.beta.shape, amount))
    else:
        layer.bias.assign_add(tf.fill(layer.bias.shape, amount))


@dataclass
class PTQResult:
    """What :func:`calibrate` returns.

    Attributes:
        model: the calibrated :class:`~tinyopt.mixed.layers.QuantModel`.
        calibration: one dict per compute layer: ``layer``, ``weights`` (the clip rule, "PC" for
            per-channel layers) and, for layers with an activation, ``alpha`` and
            ``activations`` (the rule).
    """

    model: QuantModel
    calibration: list[dict]


def quantize_mixed(model: keras.Model, policy: Policy, calibration: np.ndarray,
                   **options) -> QuantModel:
    """The calibrated model of :func:`calibrate` (the public ``tinyopt.ptq.quantize_mixed``;
    ``options`` as :func:`calibrate`)."""
    return calibrate(model, policy, calibration, **options).model


def calibrate(model: keras.Model, policy: Policy, calibration: np.ndarray,
              weights: str = "mse", activations: str = "mse", percentile: float = 99.99,
              floor_offset: bool = True, batch_size: int = 256,
              input_range: tuple[float, float] = (0.0, 1.0),
              freeze_bn_after: int | None = 0) -> PTQResult:
    """Post-training sub-byte quantization of a trained float chain model.

    Arguments:
        model: the trained float ``tf_keras`` model (not modified).
        policy: bits, granularity and FB/ICN per compute layer.
        calibration: model-ready float images (a few hundred to a few thousand).
        weights: PL clip rule, "mse" (default), "minmax", "ppq" or "spec" (see
            :func:`tinyopt.qat.init_weight_clip`); ignored for PC.
        activations: alpha rule, "mse" (default) or "percentile".
        percentile: for ``activations="percentile"``.
        floor_offset: add S_y / 2 to each layer's bias (see module docstring).
        batch_size: calibration batch size for the forward passes.
        input_range: real input range of the 8-bit input quantizer.
        freeze_bn_after: passed to :func:`tinyopt.qat.quantize_mixed`; 0 (default) keeps the BN
            statistics of the float model when QAT continues from this model.

    Returns:
        A :class:`PTQResult`: the calibrated model (same kind as QAT's) and the method and alpha
        chosen per layer.

    Raises:
        ValueError: as :func:`tinyopt.qat.quantize_mixed`, an unknown method or empty
            calibration data.
    """
    if weights not in WEIGHT_METHODS:
        raise ValueError(f"weights must be one of {WEIGHT_METHODS}, got {weights!r}")
    if activations not in ACT_METHODS:
        raise ValueError(f"activations must be one of {ACT_METHODS}, got {activations!r}")
    calibration = np.asarray(check_images(calibration, model, "calibration",
                                          "ptq.quantize_mixed"), np.float32)
    qmodel = build.quantize_mixed(model, policy, freeze_bn_after=freeze_bn_after,
                                input_range=input_range, weight_init=weights)

    def run(fn, x):
        return np.concatenate([np.asarray(fn(tf.constant(x[i:i + batch_size])))
                               for i in range(0, len(x), batch_size)])

    x, record = calibration, []
    for layer in qmodel.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if not isinstance(layer, QuantCompute):
            x = run(lambda t, layer=layer: layer(t, training=False)
                    if isinstance(layer, keras.layers.Dropout) else layer(t), x)
            continue
        pre = run(lambda t, layer=layer: layer.preactivation(t, training=False), x)
        row = {"layer": layer.name, "weights": weights if layer.granularity == "PL" else "PC"}
        if layer.activation is not None:
            alpha = calibrate_alpha(pre, layer.act_bits, layer.activation, activations,
                                    percentile, floor_offset)
            layer.alpha.assign(alpha)
            if floor_offset:
                _add_offset(layer, alpha / quantizers.levels(layer.act_bits) / 2)
                pre = run(lambda t, layer=layer: layer.preactivation(t, training=False), x)
            row.update(alpha=alpha, activations=activations)
            x = run(layer.quantize_output, pre)
        else:
            x = pre
        record.append(row)
    return PTQResult(qmodel, record)

"""Mixed sub-byte post-training quantization (PTQ): no retraining, calibration data only.

:func:`quantize_mixed` builds the same fake-quant model as :func:`tinyopt.quantize_qat`
(so the integer conversion treats PTQ and QAT models alike, and QAT can start from a PTQ model)
and sets its quantizers from calibration images, layer by layer in graph order, each layer seeing
the already-quantized output of the layers before it:

- weights: PL clips from min/max or an MSE-optimal shrink of the range (``weights=``); PC weights
  need nothing (their per-channel min/max is computed from the weights themselves);
- activations: PACT alpha from a percentile of the calibration pre-activations or an MSE search
  against the float activation (``activations=``);
- element-wise ops of the op registry (:class:`~tinyopt.mixed.graph_layers.QuantActivation`:
  LeakyReLU, hard-swish): the clip of their rounding output quantizer by the same rule, against
  the op's float output (a fixed output range, a sigmoid's, needs nothing);
- optionally (``floor_offset=True``) half an output step S_y / 2 is added to the layer's bias
  (FB: the bias, ICN: BN's beta), so PACT's floor behaves like round on average; without it the
  floor loses S_y / 2 per activation on average, which hurts at 2 and 4 bits.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

import tinyopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras

from tinyopt.front.checks import check_images
from tinyopt.mixed import build, dag, quantizers
from tinyopt.mixed.graph_layers import QuantActivation, QuantAdd, QuantConcat
from tinyopt.mixed.layers import QuantCompute, QuantModel
from tinyopt.mixed.policy import Policy

WEIGHT_METHODS = ("minmax", "mse", "ppq", "spec")
ACT_METHODS = ("mse", "percentile")


def _float_target(pre: np.ndarray, activation: str) -> np.ndarray:
    """What the float model computes from the pre-activation: ReLU, ReLU6 or (signed) identity."""
    if activation == "signed":
        return pre
    y = np.maximum(pre, 0.0)
    return np.minimum(y, 6.0) if activation == "relu6" else y


def _pact_np(pre: np.ndarray, alpha: float, bits: int, offset: bool,
             signed: bool = False) -> np.ndarray:
    """NumPy mirror of :func:`tinyopt.mixed.quantizers.pact` (and ``pact_signed``) used only to
    score alpha candidates."""
    if signed:
        half = 2 ** (bits - 1)
        s = alpha / half
        x = pre + (s / 2 if offset else 0.0)
        return np.clip(np.floor(x / s), -half, half - 1) * s
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
        activation: "relu", "relu6" or "signed" (the float target the MSE search compares
            against; "signed": the identity, with
            :func:`tinyopt.mixed.quantizers.pact_signed`).
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
    signed = activation == "signed"
    top = float(np.abs(target).max()) if signed else float(target.max())
    if top <= 0:
        return 1.0  # the layer never fires on the calibration data; any clip is exact
    if method == "percentile":
        return max(float(np.percentile(np.abs(target) if signed else target, percentile)),
                   quantizers.ALPHA_MIN)
    alphas = top * np.linspace(1.0, 0.05, grid)
    errors = np.concatenate([  # vectorised over candidates, in chunks to bound memory
        np.mean((_pact_np(v[None, :], alphas[i:i + 8, None], bits, offset, signed) - target) ** 2,
                axis=1) for i in range(0, grid, 8)])
    return float(alphas[int(np.argmin(errors))])


def calibrate_round_alpha(y: np.ndarray, bits: int, signed: bool, method: str = "mse",
                          percentile: float = 99.99, grid: int = 80,
                          max_samples: int = 100_000, seed: int = 0) -> float:
    """The clip alpha of a :class:`~tinyopt.mixed.graph_layers.QuantActivation` (a rounding
    quantizer, signed or unsigned) for the op's float outputs ``y`` on the calibration data:
    the percentile of |y| (unsigned: of y), or the candidate in (0, max] minimising the MSE of
    the quantized against the float output. Arguments as :func:`calibrate_alpha`.

    Raises:
        ValueError: unknown method.
    """
    if method not in ACT_METHODS:
        raise ValueError(f"activation calibration must be one of {ACT_METHODS}, got {method!r}")
    v = np.asarray(y, np.float32).ravel()
    if v.size > max_samples:
        v = np.random.default_rng(seed).choice(v, max_samples, replace=False)
    mag = np.abs(v) if signed else np.maximum(v, 0.0)
    top = float(mag.max()) if v.size else 0.0
    if top <= 0:
        return 1.0  # the op outputs no value the clip could cut; any clip is exact
    if method == "percentile":
        return max(float(np.percentile(mag, percentile)), quantizers.ALPHA_MIN)
    steps = 2 ** (bits - 1) if signed else quantizers.levels(bits)
    lo, hi = (-steps, steps - 1) if signed else (0, steps)
    alphas = top * np.linspace(1.0, 0.05, grid)
    errors = []
    for i in range(0, grid, 8):  # vectorised over candidates, in chunks to bound memory
        s = (alphas[i:i + 8] / steps)[:, None]
        q = np.clip(np.round(v[None, :] / s), lo, hi) * s
        errors.append(np.mean((q - v[None, :]) ** 2, axis=1))
    return float(alphas[int(np.argmin(np.concatenate(errors)))])


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
            ``activations`` (the rule); one per registry activation (``op``: its kind, and
            ``alpha`` when its clip is learned).
    """

    model: QuantModel
    calibration: list[dict]


def quantize_mixed(model: keras.Model, policy: Policy, calibration: np.ndarray,
                   **options) -> QuantModel:
    """The calibrated model of :func:`calibrate` (the public ``tinyopt.quantize_ptq``;
    ``options`` as :func:`calibrate`)."""
    return calibrate(model, policy, calibration, **options).model


def _input_range(calibration: np.ndarray, input_range) -> tuple[float, float]:
    """The input quantizer's range: ``input_range`` if given (with a warning saying how much of
    the calibration data it clips), else the calibration data's min and max."""
    lo, hi = float(calibration.min()), float(calibration.max())
    if input_range is None:
        return (lo, hi) if hi > lo else (min(lo, 0.0), max(hi, 1.0))
    a, b = (float(v) for v in input_range)
    outside = int(np.count_nonzero((calibration < a) | (calibration > b)))
    if outside:
        warnings.warn(f"input_range [{a}, {b}] clips {outside:,} of {calibration.size:,} "
                      f"calibration values ({100 * outside / calibration.size:.2f} %; the data "
                      f"span [{lo:.4g}, {hi:.4g}]); pass input_range=None to take the range from "
                      "the data", stacklevel=3)
    return a, b


def calibrate(model: keras.Model, policy: Policy, calibration: np.ndarray,
              weights: str = "mse", activations: str = "mse", percentile: float = 99.99,
              floor_offset: bool = True, batch_size: int = 256,
              input_range: tuple[float, float] | None = None,
              freeze_bn_after: int | None = 0, softmax: str = "int8") -> PTQResult:
    """Post-training sub-byte quantization of a trained float model (any graph
    :func:`tinyopt.quantize_qat` takes).

    Arguments:
        model: the trained float ``tf_keras`` model (not modified).
        policy: bits, granularity and FB/ICN per policy layer.
        calibration: model-ready float inputs (a few hundred to a few thousand).
        weights: PL clip rule, "mse" (default), "minmax", "ppq" or "spec" (see
            :func:`tinyopt.mixed.build.init_weight_clip`); ignored for PC.
        activations: alpha rule, "mse" (default) or "percentile" (ReLU outputs, signed outputs
            of linear layers and residual adds alike).
        percentile: for ``activations="percentile"``.
        floor_offset: add S_y / 2 to each compute layer's bias (see module docstring).
        batch_size: calibration batch size for the forward passes.
        input_range: real input range of the 8-bit input quantizer; None (default): the
            calibration data's min and max. A given range that clips calibration data warns
            with the share clipped.
        freeze_bn_after: passed to :func:`tinyopt.quantize_qat`; 0 (default) keeps the BN
            statistics of the float model when QAT continues from this model.
        softmax: "int8" or "logits", see :func:`tinyopt.quantize_qat`.

    Returns:
        A :class:`PTQResult`: the calibrated model (same kind as QAT's) and the method and alpha
        chosen per layer.

    Raises:
        ValueError: as :func:`tinyopt.quantize_qat` (a layer a later stage refuses,
            :func:`tinyopt.mixed.dag.check_supported`, before any calibration pass), an unknown
            method or empty calibration data.
    """
    if weights not in WEIGHT_METHODS:
        raise ValueError(f"weights must be one of {WEIGHT_METHODS}, got {weights!r}")
    if activations not in ACT_METHODS:
        raise ValueError(f"activations must be one of {ACT_METHODS}, got {activations!r}")
    dag.check_supported(model)  # what to_integer_graph refuses, before any calibration pass
    calibration = np.asarray(check_images(calibration, model, "calibration",
                                          "ptq.quantize_mixed"), np.float32)
    qmodel = build.quantize_mixed(model, policy, freeze_bn_after=freeze_bn_after,
                                  input_range=_input_range(calibration, input_range),
                                  weight_init=weights, softmax=softmax)

    def run(fn, xs):
        n = len(xs[0])
        return np.concatenate([np.asarray(fn(*[tf.constant(x[i:i + batch_size]) for x in xs]))
                               for i in range(0, n, batch_size)])

    values, record = {}, []
    for layer in qmodel.layers:
        if isinstance(layer, keras.layers.InputLayer):
            values[layer.name] = calibration
            continue
        xs = [values[n] for n in build._inbound_names(layer)]
        if isinstance(layer, (QuantCompute, QuantAdd)) and layer.activation is not None:
            if isinstance(layer, QuantAdd):
                pre = xs[0] + xs[1]
                row = {"layer": layer.name, "weights": "-"}
            else:
                pre = run(lambda t, layer=layer: layer.preactivation(t, training=False), xs)
                row = {"layer": layer.name,
                       "weights": weights if layer.granularity == "PL" else "PC"}
            bits = layer.act_bits if isinstance(layer, QuantCompute) else layer.bits
            offset = floor_offset and isinstance(layer, QuantCompute)
            alpha = calibrate_alpha(pre, bits, layer.activation, activations, percentile, offset)
            layer.alpha.assign(alpha)
            if offset:
                steps = 2 ** (bits - 1) if layer.activation == "signed" else \
                    quantizers.levels(bits)
                _add_offset(layer, alpha / steps / 2)
                pre = run(lambda t, layer=layer: layer.preactivation(t, training=False), xs)
            row.update(alpha=alpha, activations=activations)
            values[layer.name] = run(layer.quantize_output, [pre])
            record.append(row)
        elif isinstance(layer, QuantActivation):
            pre = run(layer.preactivation, xs)
            row = {"layer": layer.name, "weights": "-", "op": layer.kind}
            if layer.learned:
                alpha = calibrate_round_alpha(pre, layer.bits, layer.signed, activations,
                                              percentile)
                layer.alpha.assign(alpha)
                row.update(alpha=alpha, activations=activations)
            values[layer.name] = run(layer.quantize_output, [pre])
            record.append(row)
        elif isinstance(layer, QuantCompute):  # the logits layer
            values[layer.name] = run(lambda t, layer=layer: layer(t, training=False), xs)
            record.append({"layer": layer.name,
                           "weights": weights if layer.granularity == "PL" else "PC"})
        elif isinstance(layer, (QuantAdd, QuantConcat)):
            values[layer.name] = run(lambda *t, layer=layer: layer(list(t)), xs)
        elif isinstance(layer, keras.layers.Dropout):
            values[layer.name] = xs[0]
        else:
            values[layer.name] = run(lambda t, layer=layer: layer(t), xs)
        # free what no later layer reads (the calibration set times every tensor adds up)
    return PTQResult(qmodel, record)

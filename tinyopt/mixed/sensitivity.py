"""Per-layer and per-tensor sensitivity to sub-byte bits, measured on calibration data: what the
accuracy-aware policy search (:mod:`tinyopt.mixed.accuracy_search`) minimises.

:func:`layer_sensitivity` quantizes the float model once with PTQ at the largest allowed bit
width everywhere (the *reference*, :func:`tinyopt.mixed.ptq.calibrate`), then, one at a time,
moves a single policy layer's weights, or a single activation tensor the policy controls, to a
lower bit width and measures how far the network's output moves.

**Metric.** The mean over the calibration images of KL(p_ref || p), p = softmax of the logits
(the tensor the softmax head reads, or the model output when there is no head), in nats. It
needs no labels (as Sony MCT's output-distance sensitivity); it compares class distributions,
so it is invariant to a shift of the logits and comparable across layers; and for a small
perturbation it is the Fisher quadratic form 1/2 d^T F d, so the sum over layers approximates
the damage of cutting several at once as long as their cross terms are small (the additivity
assumption every per-layer search, HAWQ's Hessian trace included, makes). A Hessian-trace
estimate would need labels and gradients through the fake quantizers; this costs one forward
pass of the part of the network after the perturbed layer.

**Binary outputs.** A softmax over one logit is always 1, so the metric above is 0 for every
cut of a network with one output channel (a U-Net's sigmoid mask, a Dense(1) detector). When the
network ends in a sigmoid (a :class:`~tinyopt.mixed.graph_layers.QuantActivation` of kind
``logistic``) or its logits have one channel, every output element is a two-class distribution
(sigmoid(z), 1 - sigmoid(z)) and the metric is the Bernoulli KL averaged over the elements (and
the images), in nats. z is the tensor the sigmoid reads, on its quantized grid (so a cut of the
act bits of the layer feeding it counts); the sigmoid's own output rounding (at its input's
bits) is not measured.

**Reference: 8 bits, not float.** Everything else stays at the reference's PTQ grids (8-bit
weights and activations when 8 is allowed): the network the perturbation lives in is the one
that is deployed, the "no cut" choice has sensitivity exactly 0, and the measured damage is
that of the cut on top of 8-bit quantization (which is close to float for these networks).

**How the perturbed layer is quantized.** Exactly as PTQ would for a policy with that one
change: its fold follows :func:`tinyopt.mixed.policy.default_fold` (with PL a cut layer keeps BN,
ICN), its PL weight clips are initialised by the same rule
(:func:`tinyopt.mixed.build.init_weight_clip`), its PACT alpha and floor offset are calibrated by
:func:`tinyopt.mixed.ptq.calibrate_alpha` on its new pre-activations; the grids that follow from
its bits (average pools, adds, concatenations) take the new bits, an add's alpha is
recalibrated, a registry activation (:class:`~tinyopt.mixed.graph_layers.QuantActivation`)
takes its input's new bits and its clip is recalibrated. The later layers keep their
reference calibration. Every policy layer is a :class:`~tinyopt.mixed.layers.QuantCompute`
(a transposed convolution's :class:`~tinyopt.mixed.transpose_layers.QuantTransposeConv` is one:
same quantizers, its own op), perturbed the same way. The model is changed in place
and restored after every measurement (its variables and bit attributes), eagerly, so nothing is
built twice.

Deterministic: the first ``samples`` calibration images in their order, no randomness except
PTQ's seeded subsample of activations (seed 0).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

import tinyopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras

from tinyopt.front.checks import check_images
from tinyopt.mixed import build, ptq, quantizers
from tinyopt.mixed.graph_layers import (QuantActivation, QuantAdd, QuantConcat, QuantMul,
                                        QuantSoftmax)
from tinyopt.mixed.layers import QuantAvgPool, QuantCompute, QuantInput
from tinyopt.mixed.lifetimes import mem_graph
from tinyopt.mixed.policy import ALLOWED_BITS, GRANULARITIES, Policy, default_fold

TENSORS = ("weights", "activations")
# the attributes that carry bits / fold on the fake-quant layers (restored after each change)
_ATTRS = ("weight_bits", "act_bits", "fold", "bits", "input_bits")


def check_bits(bits) -> tuple[int, ...]:
    """``bits`` as a tuple sorted from the largest, or ValueError naming the allowed set."""
    try:
        out = tuple(sorted({int(b) for b in bits}, reverse=True))
    except (TypeError, ValueError):
        raise ValueError(f"bits must be a non-empty subset of {ALLOWED_BITS}, got {bits!r}")
    if not out or any(b not in ALLOWED_BITS for b in out):
        raise ValueError(f"bits must be a non-empty subset of {ALLOWED_BITS}, got {bits!r}")
    return out


def controlled_activations(model, softmax: str = "int8", fuse_pool: bool = True) -> list[str]:
    """The policy layers whose act bits set a stored tensor (the memory model's "act" tensors):
    not the logits layer, not a layer feeding the int8 softmax head (fixed at 8 bits).

    Raises:
        ValueError: as :func:`tinyopt.mixed.lifetimes.mem_graph`.
    """
    g = mem_graph(model, softmax, fuse_pool)
    act = {t.layer for t in g.tensors.values() if t.kind == "act"}
    return [n.name for n in g.nodes if n.name in act]


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def _log_probs(z: np.ndarray, binary: bool) -> np.ndarray:
    """Log-probabilities of logits ``z``: a softmax over the last axis, or (``binary``) per
    element the two classes (log sigmoid(z), log sigmoid(-z)) on a new last axis."""
    if not binary:
        return _log_softmax(z)
    z = np.asarray(z, np.float64)[..., None]
    return -np.logaddexp(0.0, -np.concatenate([z, -z], axis=-1))


def _kl(ref_logp: np.ndarray, logits: np.ndarray, binary: bool = False) -> float:
    """Mean KL(p_ref || p) over images (and, ``binary``, over the output elements) in nats,
    clipped at 0 against float rounding."""
    logp = _log_probs(logits, binary)
    kl = (np.exp(ref_logp) * (ref_logp - logp)).sum(axis=-1)
    return max(float(kl.mean()), 0.0)


class _Runner:
    """The reference fake-quant model, its cached tensors and the in-place perturbations."""

    def __init__(self, qmodel, calibration, batch_size, weights, activations, percentile,
                 floor_offset):
        self.q, self.batch = qmodel, batch_size
        self.weights, self.activations = weights, activations
        self.percentile, self.floor_offset = percentile, floor_offset
        self.layers = [lay for lay in qmodel.layers
                       if not isinstance(lay, keras.layers.InputLayer)]
        self.index = {lay.name: i for i, lay in enumerate(self.layers)}
        self.inbound = {lay.name: build._inbound_names(lay) for lay in self.layers}
        self.input_name = next(lay.name for lay in qmodel.layers
                               if isinstance(lay, keras.layers.InputLayer))
        out = qmodel.layers[-1]
        # a sigmoid output: its input's values are the logits (module docstring)
        self.sigmoid_out = isinstance(out, QuantActivation) and out.kind == "logistic"
        self.logits_of = self.inbound[out.name][0] \
            if isinstance(out, QuantSoftmax) or self.sigmoid_out else out.name
        self.values = {self.input_name: calibration}
        for layer in self.layers:
            self.values[layer.name] = self._apply(layer, [self.values[n] for n in
                                                          self.inbound[layer.name]])
        ref = self.logits(self.values)
        self.binary = self.sigmoid_out or np.shape(ref)[-1] == 1  # a softmax of one is 1
        self.ref_logp = _log_probs(ref, self.binary)
        self.grid = {self.input_name: 8}
        for layer in self.layers:
            self.grid[layer.name] = self._grid_bits(layer)

    def run(self, fn, xs):
        n = len(xs[0])
        return np.concatenate([np.asarray(fn(*[tf.constant(x[i:i + self.batch]) for x in xs]))
                               for i in range(0, n, self.batch)])

    def logits(self, values) -> np.ndarray:
        """The logits the metric compares: the model output, or with the int8 softmax head the
        pre-activation of the layer feeding it (before its 8-bit quantizer, whose coarse codes
        would hide small changes); ``values``: the layers' outputs."""
        layer = self.layers[self.index[self.logits_of]]
        if self.sigmoid_out:  # what the sigmoid reads, quantized as deployed
            return values[self.logits_of]
        if isinstance(layer, QuantCompute) and layer.activation is not None:
            x = values.get(self.inbound[layer.name][0])
            return self.run(lambda t: layer.preactivation(t, training=False), [x])
        return values[self.logits_of]

    def _apply(self, layer, xs):
        """One layer's output at inference (as :func:`tinyopt.mixed.ptq.calibrate` runs it)."""
        if isinstance(layer, QuantCompute):
            return self.run(lambda t: layer(t, training=False), xs)
        if isinstance(layer, (QuantAdd, QuantConcat, QuantMul)):
            return self.run(lambda *t: layer(list(t)), xs)
        if isinstance(layer, keras.layers.Dropout):
            return xs[0]
        return self.run(lambda t: layer(t), xs)

    def _grid_bits(self, layer):
        """Bits of the grid a layer's output is on (None: float logits / probabilities)."""
        if isinstance(layer, QuantCompute):
            return layer.act_bits if layer.activation is not None else None
        if isinstance(layer, (QuantInput, QuantAvgPool, QuantAdd, QuantConcat, QuantActivation)):
            return layer.bits
        if isinstance(layer, QuantSoftmax):
            return None
        return self.grid[self.inbound[layer.name][0]]

    def _calibrate_output(self, layer: QuantCompute, x, old_offset: float):
        """PTQ's calibration of one compute layer's output (alpha, floor offset) on input x."""
        if layer.activation is None:
            return self.run(lambda t: layer(t, training=False), [x])
        if old_offset:
            ptq._add_offset(layer, -old_offset)
        pre = self.run(lambda t: layer.preactivation(t, training=False), [x])
        alpha = ptq.calibrate_alpha(pre, layer.act_bits, layer.activation, self.activations,
                                    self.percentile, self.floor_offset)
        layer.alpha.assign(alpha)
        if self.floor_offset:
            steps = 2 ** (layer.act_bits - 1) if layer.activation == "signed" else \
                quantizers.levels(layer.act_bits)
            ptq._add_offset(layer, alpha / steps / 2)
            pre = self.run(lambda t: layer.preactivation(t, training=False), [x])
        return self.run(layer.quantize_output, [pre])

    def _offset(self, layer: QuantCompute) -> float:
        """The floor offset PTQ added to the layer's bias (0 without an activation)."""
        if layer.activation is None or not self.floor_offset:
            return 0.0
        steps = 2 ** (layer.act_bits - 1) if layer.activation == "signed" else \
            quantizers.levels(layer.act_bits)
        return float(layer.alpha.numpy()) / steps / 2

    def perturbed_kl(self, name: str, weight_bits: int, act_bits: int | None, fold: str) -> float:
        """KL of the output with policy layer ``name`` at these bits (everything else at the
        reference); the model is restored afterwards."""
        layer = self.layers[self.index[name]]
        saved = {}

        def save(lay):
            if lay.name not in saved:
                saved[lay.name] = (lay, lay.get_weights(), {a: getattr(lay, a) for a in _ATTRS
                                                            if hasattr(lay, a)})
        save(layer)
        try:
            offset = self._offset(layer)
            layer.weight_bits, layer.fold = weight_bits, fold
            if act_bits is not None:
                layer.act_bits = act_bits
            if layer.granularity == "PL":
                build.init_weight_clip(layer, self.weights)
            x = self.values[self.inbound[name][0]]
            new = {name: self._calibrate_output(layer, x, offset)}
            grid = {name: self._grid_bits(layer)}
            for other in self.layers[self.index[name] + 1:]:
                ins = self.inbound[other.name]
                if not any(n in new for n in ins):
                    continue
                xs = [new.get(n, self.values[n]) for n in ins]
                gin = [grid.get(n, self.grid[n]) for n in ins]
                if isinstance(other, QuantAvgPool) and other.bits != gin[0]:
                    save(other)
                    other.bits = gin[0]
                elif isinstance(other, QuantConcat) and list(other.input_bits) != gin:
                    save(other)
                    other.bits, other.input_bits = max(gin), list(gin)
                elif isinstance(other, QuantMul):  # (a two-input QuantActivation)
                    if other.bits != max(gin):  # the product's width follows its operands'
                        save(other)
                        other.bits = max(gin)
                        other.alpha.assign(ptq.calibrate_round_alpha(
                            xs[0] * xs[1], other.bits, other.signed, self.activations,
                            self.percentile))
                elif isinstance(other, QuantActivation) and other.bits != gin[0]:
                    save(other)  # a registry op's output follows its input's bits
                    other.bits = gin[0]
                    if other.learned:
                        pre = self.run(other.preactivation, xs)
                        other.alpha.assign(ptq.calibrate_round_alpha(
                            pre, other.bits, other.signed, self.activations, self.percentile))
                elif isinstance(other, QuantAdd) and other.bits != max(gin):
                    save(other)
                    other.bits = max(gin)
                    alpha = ptq.calibrate_alpha(xs[0] + xs[1], other.bits, other.activation,
                                                self.activations, self.percentile, False)
                    other.alpha.assign(alpha)
                new[other.name] = self._apply(other, xs)
                grid[other.name] = self._grid_bits(other)
            if self.logits_of in new:
                values = {**self.values, **new}
                return _kl(self.ref_logp, self.logits(values), self.binary)
            return 0.0  # the perturbed layer does not reach the logits
        finally:
            for lay, weights, attrs in saved.values():
                lay.set_weights(weights)
                for a, v in attrs.items():
                    setattr(lay, a, v)


def layer_sensitivity(model: keras.Model, calibration: np.ndarray, bits=(8, 4, 2),
                      granularity: str = "PL", samples: int | None = 256,
                      softmax: str = "int8", fuse_pool: bool = True, weights: str = "mse",
                      activations: str = "mse", percentile: float = 99.99,
                      floor_offset: bool = True, batch_size: int = 256) -> pd.DataFrame:
    """The damage of quantizing one policy layer's weights, or one activation tensor the policy
    controls, to each lower allowed bit width, everything else at the largest (module
    docstring: metric and reference).

    Arguments:
        model: the trained float ``tf_keras`` model (not modified).
        calibration: model-ready float inputs (the PTQ calibration images).
        bits: allowed bit widths, a subset of (8, 4, 2); the largest is the reference.
        granularity: "PL" or "PC" weights (as the policy that will be searched).
        samples: use the first ``samples`` calibration images (None: all). 256 keeps
            MobileNetV1 0.25 @ 32 to a few seconds on two cores.
        softmax, fuse_pool: as :func:`tinyopt.mixed.memory.peak_ram_bytes` (which activation
            tensors the policy controls).
        weights, activations, percentile, floor_offset, batch_size: PTQ's options
            (:func:`tinyopt.mixed.ptq.calibrate`), for the reference and the perturbed layer.

    Returns:
        DataFrame, one row per (layer, tensor, bits) for every bit width below the largest, in
        policy-layer order: ``layer``, ``tensor`` ("weights" / "activations"), ``bits``,
        ``sensitivity`` (mean KL in nats, >= 0), ``fold`` (the perturbed layer's FB / ICN).
        ``attrs``: ``reference_bits``, ``granularity``, ``samples``, ``metric``, ``seconds``.

    Raises:
        ValueError: bad bits / granularity / samples, calibration images that do not fit the
            model (:func:`tinyopt.front.checks.check_images`), a layer the sub-byte flow cannot
            take (as :func:`tinyopt.mixed.ptq.calibrate`).
    """
    started = time.perf_counter()
    bits = check_bits(bits)
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    if samples is not None and (isinstance(samples, bool) or int(samples) != samples
                                or samples < 1):
        raise ValueError(f"samples must be a positive number of images or None, got {samples!r}")
    calibration = np.asarray(check_images(calibration, model, "calibration",
                                          "layer_sensitivity"), np.float32)
    if samples is not None:
        calibration = calibration[:int(samples)]
    top = bits[0]
    ref = Policy.uniform(model, top, top, granularity)
    qmodel = ptq.calibrate(model, ref, calibration, weights=weights, activations=activations,
                           percentile=percentile, floor_offset=floor_offset,
                           batch_size=batch_size, softmax=softmax).model
    runner = _Runner(qmodel, calibration, batch_size, weights, activations, percentile,
                     floor_offset)
    controlled = set(controlled_activations(model, softmax, fuse_pool))
    n, rows = len(ref.layers), []
    for i, name in enumerate(ref.layers):
        last = i == n - 1
        for b in bits[1:]:
            fold = default_fold(granularity, b, top, last)
            rows.append({"layer": name, "tensor": "weights", "bits": b,
                         "sensitivity": runner.perturbed_kl(name, b, None, fold), "fold": fold})
        if name in controlled:
            for b in bits[1:]:
                fold = default_fold(granularity, top, b, last)
                rows.append({"layer": name, "tensor": "activations", "bits": b,
                             "sensitivity": runner.perturbed_kl(name, top, b, fold),
                             "fold": fold})
    table = pd.DataFrame(rows, columns=["layer", "tensor", "bits", "sensitivity", "fold"])
    table.attrs.update(reference_bits=top, granularity=granularity, samples=len(calibration),
                       metric="mean KL(p_ref || p), nats",
                       seconds=time.perf_counter() - started)
    return table

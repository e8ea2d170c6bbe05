"""Quantization-aware training (QAT).

Two entry points:

- :func:`quantize`: tfmot's 8-bit QAT (``quantize_model``), or tfmot's pruning-preserving 8-bit
  scheme when the model is sparse, so that fine-tuning keeps the pruned zeros.
- :func:`quantize_mixed`: tinyopt's own sub-byte (2/4/8-bit) fake-quant copy of a
  Conv/DepthwiseConv/Dense (+BN) (+ReLU) chain model following a :class:`tinyopt.policy.Policy`
  (PACT activations with floor, PL or PC weights, BN folded "FB" or kept "ICN"); the
  quantizers themselves are in :mod:`tinyopt.quantizers`, post-training calibration of the same
  model in :mod:`tinyopt.ptq`.

Both return ordinary ``tf_keras`` models that train with :func:`tinyopt.train.fit`.

Introspection of a sub-byte model: :func:`integer_params` (what the integer conversion needs,
layer by layer: weight codes, zero points, scales, bias, BN, input/output grids, all computed by
the quantizers of the forward pass), :func:`summary` (larq-style bits / bytes / MACs table),
:func:`named_policy` ("w4a4", "mixed", ...). Models from :func:`quantize_mixed` are meant for
training, evaluation and :func:`integer_params`; save them with ``save_weights`` (their layers are
not registered for ``keras.models.load_model``).
"""

from __future__ import annotations

import numpy as np

import tinyopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tf_keras as keras

SPARSE_THRESHOLD = 0.30  # a kernel with at least this fraction of exact zeros counts as pruned
SCHEME_DEFAULT = "Default8BitQuantizeScheme"
SCHEME_PRUNE_PRESERVE = "Default8BitPrunePreserveQuantizeScheme"


def kernel_sparsity(model: keras.Model) -> dict[str, float]:
    """Fraction of exact zeros in each Conv2D / DepthwiseConv2D / Dense kernel.

    Returns:
        ``{layer name: zero fraction}`` (empty for a model without such layers).
    """
    kinds = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    out = {}
    for layer in model.layers:
        if isinstance(layer, kinds):
            kernel = layer.depthwise_kernel if isinstance(
                layer, keras.layers.DepthwiseConv2D) else layer.kernel
            out[layer.name] = float(np.mean(kernel.numpy() == 0))
    return out


def _check_not_wrapped(model: keras.Model) -> None:
    """tfmot cannot quantize a model that still carries pruning wrappers or QAT wrappers."""
    import tensorflow_model_optimization as tfmot
    # Not exported by tfmot's public API; tfmot 0.8 keeps it at this path.
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (
        PruneLowMagnitude as prune_wrapper)
    for layer in model.layers:
        if isinstance(layer, prune_wrapper):
            raise ValueError(f"layer {layer.name!r} still has its pruning wrapper; call "
                             "tfmot.sparsity.keras.strip_pruning(model) before tinyopt.qat.quantize")
        if isinstance(layer, tfmot.quantization.keras.QuantizeWrapper) or \
                type(layer).__name__ == "QuantizeLayer":
            raise ValueError(f"layer {layer.name!r} is already quantization-wrapped; pass the "
                             "float model to tinyopt.qat.quantize")


def _float_copy(model: keras.Model) -> keras.Model:
    """A clone with the same weights (``clone_model`` alone re-initialises them)."""
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    return clone


def quantize(model: keras.Model, preserve_sparsity: bool | None = None) -> keras.Model:
    """tfmot 8-bit QAT copy of a trained float ``tf_keras`` model; the input is not modified.

    Arguments:
        model: a trained float model (pruning wrappers already stripped).
        preserve_sparsity: True uses tfmot's pruning-preserving scheme
            (``tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme``), so QAT
            fine-tuning keeps every zero weight; False uses ``quantize_model``'s default 8-bit
            scheme; None (default) decides automatically: preserve when some Conv/Dense kernel has
            at least ``SPARSE_THRESHOLD`` (30 %) exact zeros.

    Returns:
        The QAT model (uncompiled; fine-tune it with :func:`tinyopt.train.fit`). Its attribute
        ``qat_scheme`` names the scheme used (``SCHEME_DEFAULT`` or ``SCHEME_PRUNE_PRESERVE``) and
        ``qat_kernel_sparsity`` holds the per-layer zero fractions that drove the decision.

    Raises:
        ValueError: the model still carries pruning or quantization wrappers.
    """
    import tensorflow_model_optimization as tfmot
    _check_not_wrapped(model)
    sparsity = kernel_sparsity(model)
    if preserve_sparsity is None:
        preserve_sparsity = any(s >= SPARSE_THRESHOLD for s in sparsity.values())
    clone = _float_copy(model)
    if preserve_sparsity:
        annotated = tfmot.quantization.keras.quantize_annotate_model(clone)
        qmodel = tfmot.quantization.keras.quantize_apply(
            annotated, tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
        scheme = SCHEME_PRUNE_PRESERVE
    else:
        qmodel = tfmot.quantization.keras.quantize_model(clone)
        scheme = SCHEME_DEFAULT
    qmodel.qat_scheme = scheme
    qmodel.qat_kernel_sparsity = sparsity
    return qmodel


# =============================================================================================
# Sub-byte mixed-precision fake quantization (spec §1): layers, quantize_mixed, integer_params
# =============================================================================================

import math  # noqa: E402

import tensorflow as tf  # noqa: E402

from tinyopt import quantizers  # noqa: E402
from tinyopt.policy import Policy  # noqa: E402

DEFAULT_ALPHA = 6.0        # PACT clip init (ReLU6-like, spec §1.4)
ALPHA_DECAY = 1e-4         # weight decay on alpha (spec §1.8)
CLIP_DECAY = 5e-4          # weight decay on the PL clips a, b (spec §1.8)
PASS_THROUGH = ("MaxPooling2D", "Flatten", "Dropout", "Reshape")


def _activation_kind(fn) -> str | None:
    """'relu' / 'relu6' / None (linear) for a Keras activation function, else ValueError."""
    name = getattr(fn, "__name__", str(fn))
    if name in ("linear", "relu", "relu6"):
        return None if name == "linear" else name
    raise ValueError(f"activation {name!r} is not supported by the sub-byte quantizers "
                     "(only linear, relu, relu6)")


class QuantInput(keras.layers.Layer):
    """The 8-bit network input quantizer (:func:`tinyopt.quantizers.input_quant`).

    Arguments:
        lo, hi: the real input range (default [0, 1]: S = 1/255, Z = 0).
        bits: input bits (8).
    """

    def __init__(self, lo: float = 0.0, hi: float = 1.0, bits: int = 8, **kwargs):
        super().__init__(**kwargs)
        self.lo, self.hi, self.bits = float(lo), float(hi), quantizers.check_bits(bits)

    def call(self, x):
        return quantizers.input_quant(x, self.lo, self.hi, self.bits)

    def qparams(self) -> dict:
        """{"scale", "zero_point", "bits", "lo", "hi"} of the input grid."""
        s, z = quantizers.input_params(self.lo, self.hi, self.bits)
        return {"scale": s, "zero_point": z, "bits": self.bits, "lo": self.lo, "hi": self.hi}

    def get_config(self):
        return {**super().get_config(), "lo": self.lo, "hi": self.hi, "bits": self.bits}


class QuantAvgPool(keras.layers.Layer):
    """Average pooling of PACT activations with the integer kernels' floor(sum / count).

    Arguments:
        bits: the activation bits (those of the producing layer).
        pool_size, strides: None for global pooling, else a VALID 2-D average pool.
    """

    def __init__(self, bits: int, pool_size=None, strides=None, **kwargs):
        super().__init__(**kwargs)
        self.bits = quantizers.check_bits(bits)
        self.pool_size = None if pool_size is None else tuple(pool_size)
        self.strides = None if strides is None else tuple(strides)
        self.input_scale = None  # a callable returning the scale tensor, set by quantize_mixed

    def call(self, x):
        return quantizers.avg_pool_floor(x, self.input_scale(), self.bits, self.pool_size,
                                         self.strides)

    def get_config(self):
        return {**super().get_config(), "bits": self.bits, "pool_size": self.pool_size,
                "strides": self.strides}


class QuantCompute(keras.layers.Layer):
    """One Conv2D / DepthwiseConv2D / Dense, its optional BatchNorm and ReLU/ReLU6, fake-quantized.

    Forward (spec §1.7), with w the kernel, b the bias (zero when the float layer had none) and
    BN (gamma, beta, mu, var, eps):

    - **FB** with BN: f = gamma / sqrt(var + eps) (moving statistics); the folded kernel w f is
      quantized (PL or PC) and y = op(x, Q(w f)) + beta + (b - mu) f. While BN still trains
      (``training`` and not frozen) the quantized folded kernel is de-folded, Q(w f) / f, and BN
      runs on batch statistics, so the graph keeps its BN (Jacob et al.).
    - **ICN** (or no BN): y = BN(op(x, Q(w)) + b), batch statistics while BN trains, moving
      statistics otherwise; BN stays explicit for the integer channel normalization.
    - Bias: once BN uses moving statistics (always, without BN) the effective bias in the
      accumulator (no BN: b; FB: beta + (b - mu) f; ICN: b - mu + beta / f) is rounded to the
      integer grid S_x S_w with a straight-through gradient (:meth:`quantize_bias`), so the
      model computes what the integer graph computes.
    - Output: PACT (unsigned, floor) with learnable alpha when the float layer had ReLU/ReLU6;
      the last layer (no activation) outputs float logits.

    Once frozen (:func:`freeze_bn`, :class:`FreezeBN`; the ``frozen`` flag, mirrored in the
    ``bn_frozen`` weight) BN uses moving statistics and gamma, beta stop training. Build it with
    :func:`quantize_mixed`, not directly.
    """

    def __init__(self, kind: str, op_config: dict, weight_bits: int, act_bits: int | None,
                 granularity: str, fold: str, bn_config: dict | None, activation: str | None,
                 clip_decay: float = CLIP_DECAY, alpha_decay: float = ALPHA_DECAY, **kwargs):
        super().__init__(**kwargs)
        if kind not in ("conv2d", "depthwise", "dense"):
            raise ValueError(f"unknown compute kind {kind!r}")
        self.kind, self.op_config = kind, dict(op_config)
        self.weight_bits = quantizers.check_bits(weight_bits, f"{self.name} weight_bits")
        self.act_bits = None if activation is None else quantizers.check_bits(
            act_bits, f"{self.name} act_bits")
        self.granularity, self.fold = granularity, fold
        self.bn_config, self.activation = bn_config, activation
        self.clip_decay, self.alpha_decay = clip_decay, alpha_decay
        self.input_scale = None  # a callable returning S_x, set by quantize_mixed

    # ------------------------------------------------------------------ weights
    @property
    def channel_axes(self) -> tuple[int, ...]:
        """Axes of the kernel that are NOT output channels (reduced by PC quantization)."""
        return {"conv2d": (0, 1, 2), "depthwise": (0, 1), "dense": (0,)}[self.kind]

    def build(self, input_shape):
        cin = int(input_shape[-1])
        c = self.op_config
        if self.kind == "conv2d":
            kshape = tuple(c["kernel_size"]) + (cin, c["filters"])
            self.out_channels = c["filters"]
        elif self.kind == "depthwise":
            kshape = tuple(c["kernel_size"]) + (cin, c["depth_multiplier"])
            self.out_channels = cin * c["depth_multiplier"]
        else:
            kshape = (cin, c["units"])
            self.out_channels = c["units"]
        self.kernel = self.add_weight("kernel", kshape, initializer="glorot_uniform")
        self.bias = self.add_weight("bias", (self.out_channels,), initializer="zeros")
        if self.bn_config is not None:
            n = (self.out_channels,)
            self.gamma = self.add_weight("gamma", n, initializer="ones")
            self.beta = self.add_weight("beta", n, initializer="zeros")
            self.moving_mean = self.add_weight("moving_mean", n, initializer="zeros",
                                               trainable=False)
            self.moving_variance = self.add_weight("moving_variance", n, initializer="ones",
                                                   trainable=False)
        # The variable saves the state with the weights; ``frozen`` is what tracing reads.
        self.bn_frozen = self.add_weight("bn_frozen", (), initializer="zeros", trainable=False)
        self.frozen = False
        if self.granularity == "PL":
            reg = keras.regularizers.l2(self.clip_decay / 2) if self.clip_decay else None
            self.w_min = self.add_weight("w_min", (), initializer=keras.initializers.Constant(-1.0),
                                         regularizer=reg)
            self.w_max = self.add_weight("w_max", (), initializer=keras.initializers.Constant(1.0),
                                         regularizer=reg)
        if self.activation is not None:
            reg = keras.regularizers.l2(self.alpha_decay / 2) if self.alpha_decay else None
            self.alpha = self.add_weight("alpha", (), regularizer=reg,
                                         initializer=keras.initializers.Constant(DEFAULT_ALPHA))
        super().build(input_shape)

    def _bn_factor(self):
        """gamma / sqrt(moving_var + eps), shaped to broadcast over the kernel's out channels."""
        f = self.gamma / tf.sqrt(self.moving_variance + self.bn_config["epsilon"])
        if self.kind == "depthwise":
            return f, tf.reshape(f, self.kernel.shape[2:])
        return f, f

    def quantized_kernel_source(self):
        """The float tensor the weight quantizer sees: the folded kernel (FB with BN) or the raw
        kernel."""
        if self.fold == "FB" and self.bn_config is not None:
            return self.kernel * self._bn_factor()[1]
        return tf.convert_to_tensor(self.kernel)

    def quantize_kernel(self, w, params: bool = False):
        """Fake-quantize ``w`` with this layer's weight quantizer (PL clips or PC min/max)."""
        if self.granularity == "PL":
            return quantizers.weight_pl(w, self.w_min, self.w_max, self.weight_bits, params)
        return quantizers.weight_pc(w, self.weight_bits, self.channel_axes, params)

    def _op(self, x, kernel):
        c = self.op_config
        if self.kind == "dense":
            return tf.matmul(x, kernel)
        strides = (1,) + tuple(c["strides"]) + (1,)
        if self.kind == "depthwise":
            return tf.nn.depthwise_conv2d(x, kernel, strides, c["padding"].upper(),
                                          dilations=tuple(c["dilation_rate"]))
        return tf.nn.conv2d(x, kernel, strides, c["padding"].upper(),
                            dilations=tuple(c["dilation_rate"]))

    # ------------------------------------------------------------------ forward
    def _batch_bn(self, t):
        """BN on batch statistics (training, not frozen); updates the moving statistics."""
        axes = list(range(len(t.shape) - 1))
        mean, var = tf.nn.moments(t, axes)
        m = self.bn_config["momentum"]
        self.moving_mean.assign(self.moving_mean * m + mean * (1 - m))
        self.moving_variance.assign(self.moving_variance * m + var * (1 - m))
        return self.gamma * (t - mean) / tf.sqrt(var + self.bn_config["epsilon"]) + self.beta

    def _preact_train(self, x):
        if self.fold == "FB":
            f, fk = self._bn_factor()
            wq = self.quantize_kernel(self.kernel * fk)
            safe = tf.where(tf.abs(fk) > 1e-12, fk, tf.ones_like(fk))  # de-fold (spec §1.7)
            return self._batch_bn(self._op(x, wq / safe) + self.bias)
        return self._batch_bn(self._op(x, self.quantize_kernel(self.kernel)) + self.bias)

    def quantize_bias(self, c, weight_scale):
        """Round an accumulator-domain bias ``c`` onto the integer kernels' grid, one step
        u = S_x S_w (per channel for PC), with a straight-through gradient (spec §1.6).

        The integer graph adds B_q = round(c / u); adding the float c instead (as the fake-quant
        model did before) differs by up to half an accumulator step per channel, which flips a
        floor now and then and compounds through a deep network. Rounding here makes the
        fake-quant model compute what the integer graph computes, and QAT learns around it.
        """
        if self.input_scale is None:
            raise RuntimeError(f"QuantCompute {self.name!r} does not know its input scale; build "
                               "the model with tinyopt.qat.quantize_mixed (or "
                               "tinyopt.ptq.quantize_mixed), which sets it")
        unit = tf.stop_gradient(self.input_scale() * tf.reshape(weight_scale, [-1]))
        # round(c / u) u exactly in the forward pass (c + (q - c) would carry float error),
        # identity gradient: c - stop_gradient(c) is exactly 0.
        return tf.stop_gradient(tf.round(c / unit) * unit) + (c - tf.stop_gradient(c))

    def _preact_eval(self, x):
        if self.bn_config is None:
            wq, qp = self.quantize_kernel(self.kernel, params=True)
            return self._op(x, wq) + self.quantize_bias(self.bias, qp.scale)
        gamma, beta = tf.stop_gradient(self.gamma), tf.stop_gradient(self.beta)
        sigma = tf.sqrt(self.moving_variance + self.bn_config["epsilon"])
        if self.fold == "FB":
            f, fk = self._bn_factor()
            wq, qp = self.quantize_kernel(self.kernel * tf.stop_gradient(fk), params=True)
            folded = beta + (self.bias - self.moving_mean) * tf.stop_gradient(f)
            return self._op(x, wq) + self.quantize_bias(folded, qp.scale)
        # ICN: gamma (t - mu) / sigma + beta = g (t - mu + beta / g), g = gamma / sigma; the
        # integer kernel adds round((b - mu + beta / g) / u) and multiplies by g (spec §2.1).
        wq, qp = self.quantize_kernel(self.kernel, params=True)
        g = gamma / sigma
        live = tf.not_equal(g, 0.0)
        safe = tf.where(live, g, tf.ones_like(g))
        t = self._op(x, wq) + self.quantize_bias(self.bias - self.moving_mean + beta / safe,
                                                 qp.scale)
        return tf.where(live, g * t, beta + tf.zeros_like(t))  # gamma = 0: the output is beta

    def preactivation(self, x, training=False):
        """The layer's output before the PACT quantizer (after BN)."""
        if self.bn_config is None:
            return self._preact_eval(x)
        if not tf.is_tensor(training):
            # Decided at trace time (no tf.cond, which doubles the traced graph and its
            # gradient); FreezeBN re-traces the train function when it freezes.
            if bool(training) and not self.frozen:
                return self._preact_train(x)
            return self._preact_eval(x)
        use_batch = tf.logical_and(tf.cast(training, tf.bool), self.bn_frozen < 0.5)
        return tf.cond(use_batch, lambda: self._preact_train(x), lambda: self._preact_eval(x))

    def quantize_output(self, y, params: bool = False):
        """PACT on the pre-activation (identity for the linear last layer)."""
        if self.activation is None:
            return y
        return quantizers.pact(y, self.alpha, self.act_bits, params)

    def call(self, x, training=None):
        if training is None:
            training = keras.backend.learning_phase()
        return self.quantize_output(self.preactivation(x, training))

    def output_scale(self):
        """S_y = alpha / (2^Q - 1) as a tensor (None for the linear last layer)."""
        if self.activation is None:
            return None
        return tf.maximum(self.alpha, quantizers.ALPHA_MIN) / quantizers.levels(self.act_bits)

    def plain_op_config(self) -> dict:
        """``op_config`` with plain Python lists (Keras wraps attributes in trackable types)."""
        return {k: (v if isinstance(v, (str, int, float)) else [int(i) for i in v])
                for k, v in self.op_config.items()}

    def integer_params(self, input_scale: float, input_zero_point: int, input_bits: int) -> dict:
        """Exactly what integer conversion needs for this layer (spec §1, §2), computed by the
        same quantizer calls as the forward pass (inference mode, moving BN statistics).

        Arguments:
            input_scale, input_zero_point, input_bits: the grid of the layer's input (from the
                input quantizer or the previous layer's PACT; see :func:`integer_params`).

        Returns:
            dict with
            ``name, kind, op_config, fold, granularity, weight_bits, input_bits, output_bits``
            (None for the linear last layer);
            ``weight_codes`` (uint8, kernel shape: Conv2D [kh, kw, cin, cout], depthwise
            [kh, kw, cin, mult], Dense [in, out]; unsigned, real = scale * (code - zero point)),
            ``weight_zero_point`` (int, or int32 [C] for PC), ``weight_scale`` (float or
            float64 [C]), ``kernel_source`` ("folded" = w gamma / sigma for FB with BN, else
            "raw");
            ``bias`` (float64 [C]: FB with BN the folded beta + (b - mu) gamma / sigma, else the
            layer's own bias, zeros if it had none) and ``bias_codes`` = round(bias / (S_x S_w))
            (int32 [C], spec §1.6; for ICN this is the conv bias only, BN is separate);
            ``bn`` (ICN with BN: gamma, beta, moving_mean, moving_variance float64 [C] and
            epsilon, unfolded; else None);
            ``input`` {scale, zero_point, bits}; ``output`` {scale = alpha / (2^Q - 1),
            zero_point 0, bits, alpha, rounding "floor"} or None (logits).
        """
        source = self.quantized_kernel_source()
        _, qp = self.quantize_kernel(source, params=True)
        qp = qp.numpy()
        per_channel = self.granularity == "PC"
        scale = qp.scale.reshape(-1) if per_channel else float(qp.scale)
        zero = qp.zero_point.reshape(-1) if per_channel else int(qp.zero_point)
        folded = self.fold == "FB" and self.bn_config is not None
        if folded:
            f = self._bn_factor()[0].numpy().astype(np.float64)
            bias = self.beta.numpy() + (self.bias.numpy() - self.moving_mean.numpy()) * f
        else:
            bias = self.bias.numpy()
        bias = np.asarray(bias, np.float64)
        bn = None
        if self.bn_config is not None and not folded:
            bn = {"gamma": self.gamma.numpy().astype(np.float64),
                  "beta": self.beta.numpy().astype(np.float64),
                  "moving_mean": self.moving_mean.numpy().astype(np.float64),
                  "moving_variance": self.moving_variance.numpy().astype(np.float64),
                  "epsilon": float(self.bn_config["epsilon"])}
        output = None
        if self.activation is not None:
            alpha = max(float(self.alpha.numpy()), quantizers.ALPHA_MIN)
            output = {"scale": float(self.output_scale().numpy()), "zero_point": 0,
                      "bits": self.act_bits, "alpha": alpha, "rounding": "floor"}
        return {
            "name": self.name, "kind": self.kind, "op_config": self.plain_op_config(),
            "fold": self.fold, "granularity": self.granularity,
            "weight_bits": self.weight_bits, "input_bits": int(input_bits),
            "output_bits": self.act_bits,
            "weight_codes": qp.codes.astype(np.uint8), "weight_zero_point": zero,
            "weight_scale": scale, "kernel_source": "folded" if folded else "raw",
            "bias": bias, "bias_codes": quantizers.bias_codes(bias, input_scale, scale),
            "bn": bn,
            "input": {"scale": float(input_scale), "zero_point": int(input_zero_point),
                      "bits": int(input_bits)},
            "output": output,
        }

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "op_config": self.plain_op_config(),
                "weight_bits": self.weight_bits, "act_bits": self.act_bits,
                "granularity": self.granularity, "fold": self.fold,
                "bn_config": self.bn_config, "activation": self.activation,
                "clip_decay": self.clip_decay, "alpha_decay": self.alpha_decay}


class FreezeBN(keras.callbacks.Callback):
    """Freeze BatchNorm in every :class:`QuantCompute` layer at the start of epoch ``after``
    (spec §1.7: moving statistics from then on, gamma and beta stop training; the repo's
    ``batch_fold_delay``, 1 by default). A frozen layer stays frozen.

    Frozen layers get no gradient into gamma and beta, but a momentum optimizer (Adam) would
    still move them, so their values are also restored after every training batch.
    """

    def __init__(self, after: int | None = 1):
        super().__init__()
        self.after = after
        self._held: list = []

    def _hold(self):
        self._held = [(v, v.numpy()) for layer in self.model.layers
                      if isinstance(layer, QuantCompute) and layer.bn_config is not None
                      and layer.frozen
                      for v in (layer.gamma, layer.beta)]

    def on_train_begin(self, logs=None):
        self._hold()

    def on_epoch_begin(self, epoch, logs=None):
        if self.after is not None and epoch >= self.after and freeze_bn(self.model):
            self._hold()
            # the train function was traced with BN training; trace it again (fit calls
            # self.train_function at every step, so the new one is used from now on)
            self.model.make_train_function(force=True)

    def on_train_batch_end(self, batch, logs=None):
        for var, value in self._held:
            var.assign(value)


def freeze_bn(model: keras.Model) -> bool:
    """Freeze BN statistics in every :class:`QuantCompute` layer of ``model`` now.

    Returns:
        True if some layer with BN was not frozen before."""
    changed = False
    for layer in model.layers:
        if isinstance(layer, QuantCompute):
            changed |= layer.bn_config is not None and not layer.frozen
            layer.frozen = True
            layer.bn_frozen.assign(1.0)
    return changed


class QuantModel(keras.Model):
    """A functional model whose ``fit`` adds :class:`FreezeBN` (``freeze_bn_after`` epochs), so
    the fake-quant model trains with :func:`tinyopt.train.fit` like any Keras model."""

    freeze_bn_after: int | None = 1
    policy: Policy | None = None

    def fit(self, *args, callbacks=None, **kwargs):
        callbacks = list(callbacks or [])
        if not any(isinstance(c, FreezeBN) for c in callbacks):
            callbacks.append(FreezeBN(self.freeze_bn_after))
        return super().fit(*args, callbacks=callbacks, **kwargs)


# ---------------------------------------------------------------------------- graph analysis

def _chain(model: keras.Model) -> list:
    """The model's layers (InputLayer excluded) as a single chain, or ValueError."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if isinstance(model, keras.Sequential):
        return layers
    previous = None
    for layer in layers:
        nodes = layer._inbound_nodes  # noqa: SLF001 (no public API for the graph)
        if len(nodes) != 1:
            raise ValueError(f"layer {layer.name!r} is called {len(nodes)} times; "
                             "quantize_mixed supports chain models only")
        inbound = nodes[0].inbound_layers
        inbound = inbound if isinstance(inbound, (list, tuple)) else [inbound]
        if len(inbound) != 1 or (previous is not None and inbound[0] is not previous):
            raise ValueError(f"layer {layer.name!r} does not follow the previous layer in a "
                             "single chain (branches and merges are not supported)")
        previous = layer
    return layers


def _relu_kind(layer) -> str | None:
    """'relu' / 'relu6' for a standalone ReLU / Activation layer that PACT can replace."""
    if isinstance(layer, keras.layers.ReLU):
        if float(layer.threshold) != 0.0 or float(layer.negative_slope) != 0.0:
            return None
        if layer.max_value is None:
            return "relu"
        return "relu6" if float(layer.max_value) == 6.0 else None
    if isinstance(layer, keras.layers.Activation):
        name = getattr(layer.activation, "__name__", "")
        return name if name in ("relu", "relu6") else None
    return None


def _op_config(layer) -> tuple[str, dict]:
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return "depthwise", {"kernel_size": list(layer.kernel_size),
                             "strides": list(layer.strides), "padding": layer.padding,
                             "dilation_rate": list(layer.dilation_rate),
                             "depth_multiplier": int(layer.depth_multiplier)}
    if isinstance(layer, keras.layers.Conv2D):
        if type(layer) is not keras.layers.Conv2D or layer.groups != 1:
            raise ValueError(f"layer {layer.name!r} ({type(layer).__name__}, groups="
                             f"{getattr(layer, 'groups', 1)}) is not supported; only plain "
                             "Conv2D, DepthwiseConv2D and Dense")
        return "conv2d", {"kernel_size": list(layer.kernel_size), "strides": list(layer.strides),
                          "padding": layer.padding, "dilation_rate": list(layer.dilation_rate),
                          "filters": int(layer.filters)}
    if len(layer.input_shape) != 2:
        raise ValueError(f"Dense layer {layer.name!r} has input shape {layer.input_shape}; only "
                         "2-D inputs are supported")
    return "dense", {"units": int(layer.units)}


def _blocks(model: keras.Model) -> list[dict]:
    """Group the chain into compute blocks (compute [+ BN] [+ ReLU]) and other layers."""
    computes = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)
    layers, blocks, i = _chain(model), [], 0
    while i < len(layers):
        layer = layers[i]
        if isinstance(layer, computes):
            kind, cfg = _op_config(layer)
            block = {"type": "compute", "layer": layer, "kind": kind, "op_config": cfg,
                     "bn": None, "activation": _activation_kind(layer.activation)}
            i += 1
            if block["activation"] is None and i < len(layers) and \
                    isinstance(layers[i], keras.layers.BatchNormalization):
                block["bn"] = layers[i]
                i += 1
            if block["activation"] is None and i < len(layers) and _relu_kind(layers[i]):
                block["activation"] = _relu_kind(layers[i])
                block["act_layer"] = layers[i]
                i += 1
            blocks.append(block)
        elif type(layer).__name__ in PASS_THROUGH:
            blocks.append({"type": "pass", "layer": layer})
            i += 1
        elif isinstance(layer, (keras.layers.GlobalAveragePooling2D,
                                keras.layers.AveragePooling2D)):
            if isinstance(layer, keras.layers.AveragePooling2D) and layer.padding != "valid":
                raise ValueError(f"AveragePooling2D {layer.name!r} must use VALID padding")
            if isinstance(layer, keras.layers.GlobalAveragePooling2D) and layer.keepdims:
                raise ValueError(f"GlobalAveragePooling2D {layer.name!r} with keepdims=True "
                                 "is not supported")
            blocks.append({"type": "avgpool", "layer": layer})
            i += 1
        else:
            what = "BatchNormalization not directly after a compute layer" if isinstance(
                layer, keras.layers.BatchNormalization) else type(layer).__name__
            raise ValueError(f"layer {layer.name!r} ({what}) is not supported by "
                             "tinyopt.qat.quantize_mixed; supported: Conv2D, DepthwiseConv2D, "
                             "Dense, each optionally followed by BatchNormalization and "
                             f"ReLU/ReLU6, plus {', '.join(PASS_THROUGH)}, "
                             "GlobalAveragePooling2D and AveragePooling2D (valid)")
    return blocks


# ---------------------------------------------------------------------------- quantize_mixed

def _check_policy(blocks: list[dict], policy: Policy) -> list[str]:
    names = [b["layer"].name for b in blocks if b["type"] == "compute"]
    if not isinstance(policy, Policy):
        raise TypeError(f"policy must be a tinyopt.policy.Policy, got {type(policy).__name__}")
    if list(policy.layers) != names:
        raise ValueError(f"the policy's layers {list(policy.layers)} do not match the model's "
                         f"compute layers {names} (same names, same graph order); build it with "
                         "Policy.uniform(model, ...) or from compute_layer_names(model)")
    return names


def _copy_float_weights(q: QuantCompute, block: dict) -> None:
    layer = block["layer"]
    kernel = layer.depthwise_kernel if block["kind"] == "depthwise" else layer.kernel
    q.kernel.assign(kernel)
    if layer.use_bias:
        q.bias.assign(layer.bias)
    bn = block["bn"]
    if bn is not None:
        n = q.out_channels
        q.gamma.assign(bn.gamma if bn.scale else np.ones(n, np.float32))
        q.beta.assign(bn.beta if bn.center else np.zeros(n, np.float32))
        q.moving_mean.assign(bn.moving_mean)
        q.moving_variance.assign(bn.moving_variance)


def init_weight_clip(layer: QuantCompute, method: str = "spec") -> None:
    """Set a PL layer's clips (a, b) from its current weights.

    Arguments:
        layer: a :class:`QuantCompute` (PC layers are left alone: they have no clips).
        method: "minmax" (min/max of the quantized tensor), "ppq" (the repo's least-squares
            fit), "mse" (shrink factor minimising the weight MSE) or "spec" (the repo's rule:
            min/max for FB layers, PPQ for ICN layers).

    Raises:
        ValueError: unknown method.
    """
    if method not in ("spec", "minmax", "ppq", "mse"):
        raise ValueError(f"weight clip method must be spec, minmax, ppq or mse; got {method!r}")
    if layer.granularity != "PL":
        return
    w = layer.quantized_kernel_source().numpy()
    if method == "spec":
        method = "minmax" if layer.fold == "FB" else "ppq"
    if method == "minmax":
        a, b = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
    elif method == "ppq":
        a, b = quantizers.ppq_clip(w, layer.weight_bits)
    else:
        a, b = quantizers.mse_clip(w, layer.weight_bits)
    layer.w_min.assign(a)
    layer.w_max.assign(b)


def quantize_mixed(model: keras.Model, policy: Policy, freeze_bn_after: int | None = 1,
                   input_range: tuple[float, float] = (0.0, 1.0), weight_init: str = "spec",
                   alpha: float = DEFAULT_ALPHA, clip_decay: float = CLIP_DECAY,
                   alpha_decay: float = ALPHA_DECAY) -> QuantModel:
    """A sub-byte fake-quant copy of a trained float chain model, following ``policy``.

    Every Conv2D / DepthwiseConv2D / Dense with its optional BatchNormalization and ReLU/ReLU6
    becomes one :class:`QuantCompute` (same name as the compute layer); the input gets the 8-bit
    :class:`QuantInput`; average pooling becomes :class:`QuantAvgPool` (floor); MaxPooling2D,
    Flatten, Dropout and Reshape are copied. The input model is not modified.

    Arguments:
        model: a trained float ``tf_keras`` chain model (e.g. ``seed_cnn``, ``mobilenet_v1``).
        policy: bits, granularity and FB/ICN per compute layer (names and order must match).
        freeze_bn_after: epoch at which BN freezes during ``fit`` (spec: 1); 0 freezes from the
            start, None never.
        input_range: real range of the model input for the 8-bit input quantizer.
        weight_init: PL clip initialisation, see :func:`init_weight_clip`.
        alpha: initial PACT clip of every activation (spec: 6).
        clip_decay, alpha_decay: weight decay of the PL clips and of alpha (spec: 5e-4, 1e-4).

    Returns:
        A :class:`QuantModel` (uncompiled) with ``policy`` and ``freeze_bn_after`` attributes.

    Raises:
        ValueError: an unsupported layer (named), a non-chain model, a policy that does not
            match the model, or a hidden compute layer without ReLU (PACT is unsigned).
    """
    blocks = _blocks(model)
    _check_policy(blocks, policy)
    computes = [b for b in blocks if b["type"] == "compute"]
    for b in computes[:-1]:
        if b["activation"] is None:
            raise ValueError(f"compute layer {b['layer'].name!r} has no ReLU/ReLU6 but is not "
                             "the last compute layer; PACT activations are unsigned")
    inputs = keras.Input(model.input_shape[1:], name=model.layers[0].name
                         if isinstance(model.layers[0], keras.layers.InputLayer) else "input")
    x = QuantInput(*input_range, bits=8, name="input_quant")(inputs)
    s_in, _ = quantizers.input_params(*input_range, 8)
    scale_fn, bits = (lambda: tf.constant(s_in, tf.float32)), 8
    created = []
    for block in blocks:
        layer = block["layer"]
        if block["type"] == "compute":
            spec = policy[layer.name]
            bn = block["bn"]
            bn_config = None if bn is None else {"epsilon": float(bn.epsilon),
                                                 "momentum": float(bn.momentum)}
            if bn is not None and bn.axis not in ([len(layer.output_shape) - 1], [-1], -1):
                raise ValueError(f"BatchNormalization {bn.name!r} must normalise the last axis")
            q = QuantCompute(block["kind"], block["op_config"], spec["weight_bits"],
                             spec["act_bits"], policy.granularity, spec["fold"], bn_config,
                             block["activation"], clip_decay, alpha_decay, name=layer.name)
            q.input_scale = scale_fn
            x = q(x)
            _copy_float_weights(q, block)
            if block["activation"] is not None:
                q.alpha.assign(alpha)
                scale_fn, bits = q.output_scale, spec["act_bits"]
            else:
                scale_fn, bits = None, None
            created.append(q)
        elif block["type"] == "avgpool":
            if scale_fn is None:
                raise ValueError(f"average pooling {layer.name!r} follows a linear layer")
            pool = isinstance(layer, keras.layers.AveragePooling2D)
            q = QuantAvgPool(bits, layer.pool_size if pool else None,
                             layer.strides if pool else None, name=layer.name)
            q.input_scale = scale_fn
            x = q(x)
        else:
            x = type(layer).from_config(layer.get_config())(x)
    qmodel = QuantModel(inputs, x, name=f"{model.name}_q")
    for q in created:
        init_weight_clip(q, weight_init)
    qmodel.freeze_bn_after = freeze_bn_after
    qmodel.policy = policy
    if freeze_bn_after == 0:
        freeze_bn(qmodel)
    return qmodel


# ---------------------------------------------------------------------------- introspection

def integer_params(qmodel: keras.Model) -> dict:
    """The integer view of a fake-quant model from :func:`quantize_mixed` or
    :func:`tinyopt.ptq.quantize_mixed`, in graph order.

    Returns:
        ``{"input": {scale, zero_point, bits, lo, hi}, "layers": [...]}`` where each entry of
        ``layers`` has ``"type"``: ``"compute"`` (plus everything of
        :meth:`QuantCompute.integer_params`), ``"avgpool"`` (``pool_size`` / ``strides``, None =
        global; floor(sum / count) on the input grid, ``scale``, ``bits``), or ``"maxpool"``,
        ``"flatten"``, ``"reshape"``, ``"dropout"`` (identity at inference) with the Keras
        ``config``. Scales propagate: a compute layer's input grid is the output grid of the
        previous quantizer.

    Raises:
        ValueError: the model has no :class:`QuantInput` (not built by quantize_mixed).
    """
    state, out, entries = None, None, []
    for layer in qmodel.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, QuantInput):
            out = layer.qparams()
            state = (out["scale"], out["zero_point"], out["bits"])
        elif state is None:
            raise ValueError(f"layer {layer.name!r} comes before any QuantInput; pass a model "
                             "built by tinyopt.qat.quantize_mixed or tinyopt.ptq.quantize_mixed")
        elif isinstance(layer, QuantCompute):
            entry = {"type": "compute", **layer.integer_params(*state)}
            entries.append(entry)
            o = entry["output"]
            state = (o["scale"], 0, o["bits"]) if o else (None, None, None)
        elif isinstance(layer, QuantAvgPool):
            entries.append({"type": "avgpool", "name": layer.name, "pool_size": layer.pool_size,
                            "strides": layer.strides, "scale": state[0], "bits": state[2]})
        else:
            entries.append({"type": type(layer).__name__.lower().replace("pooling2d", "pool"),
                            "name": layer.name, "config": layer.get_config()})
    if out is None:
        raise ValueError("the model has no QuantInput layer; build it with "
                         "tinyopt.qat.quantize_mixed or tinyopt.ptq.quantize_mixed")
    return {"input": out, "layers": entries}


def _packed_weight_bytes(kind: str, shape, bits: int) -> int:
    """Packed bytes with each output-channel row (depthwise: each tap row) on a byte boundary,
    as CMix-NN stores them (spec §5.2)."""
    shape = [int(d) for d in shape]
    if kind == "depthwise":
        rows, row = shape[0] * shape[1], shape[2] * shape[3]
    elif kind == "dense":
        rows, row = shape[1], shape[0]
    else:
        rows, row = shape[3], shape[0] * shape[1] * shape[2]
    return rows * math.ceil(row * bits / 8)


def summary(qmodel: keras.Model, print_fn=None):
    """A larq-style table of a fake-quant model: per compute layer the weight, input and output
    bits, fold, granularity, parameters (kernel + bias; BN statistics are not counted), packed
    weight bytes (rows byte-aligned), MACs per image and MACs by precision
    (``w{W}a{A}``: weight bits x input bits), then a ``total`` row.

    Arguments:
        qmodel: a model from :func:`quantize_mixed` / :func:`tinyopt.ptq.quantize_mixed`.
        print_fn: e.g. ``print`` to also print the table.

    Returns:
        A pandas DataFrame.
    """
    import pandas as pd
    params = integer_params(qmodel)
    rows = []
    for e in params["layers"]:
        if e["type"] != "compute":
            continue
        layer = qmodel.get_layer(e["name"])
        shape = layer.kernel.shape
        out_shape = layer.output_shape
        macs = int(np.prod(out_shape[1:]))
        if e["kind"] == "conv2d":
            macs *= int(np.prod(shape[:3]))
        elif e["kind"] == "depthwise":
            macs *= int(np.prod(shape[:2]))
        else:
            macs *= int(shape[0])
        rows.append({"layer": e["name"], "kind": e["kind"], "weight_bits": e["weight_bits"],
                     "input_bits": e["input_bits"], "output_bits": e["output_bits"],
                     "fold": e["fold"], "granularity": e["granularity"],
                     "params": int(np.prod(shape)) + int(shape[-1] if e["kind"] != "depthwise"
                                                         else np.prod(shape[2:])),
                     "weight_bytes": _packed_weight_bytes(e["kind"], shape, e["weight_bits"]),
                     "macs": macs, f"macs_w{e['weight_bits']}a{e['input_bits']}": macs})
    frame = pd.DataFrame(rows)
    mac_cols = sorted(c for c in frame.columns if c.startswith("macs_"))
    frame[mac_cols] = frame[mac_cols].fillna(0).astype(int)
    for c in ("weight_bits", "input_bits", "output_bits"):
        frame[c] = frame[c].astype("Int64")
    total = {"layer": "total", "params": int(frame["params"].sum()),
             "weight_bytes": int(frame["weight_bytes"].sum()), "macs": int(frame["macs"].sum()),
             **{c: int(frame[c].sum()) for c in mac_cols}}
    frame = pd.concat([frame, pd.DataFrame([total])], ignore_index=True)
    if print_fn is not None:
        print_fn(frame.to_string(index=False, na_rep=""))
    return frame


def named_policy(model: keras.Model, name: str, granularity: str = "PL",
                 fold: str | None = None, memory_fraction: float = 0.5) -> Policy:
    """A policy by name, for experiments and notebooks.

    Arguments:
        model: the float model.
        name: ``"w{W}a{A}"`` (e.g. "w4a4": uniform W-bit weights, A-bit activations) or
            ``"mixed"``: the paper's memory-driven rule (:func:`tinyopt.policy.memory_driven`)
            with flash and RAM budgets of ``memory_fraction`` times those of w8a8.
        granularity: "PL" or "PC".
        fold: force "FB" or "ICN" on every layer but the last (None: the paper's rule).
        memory_fraction: budget fraction for "mixed".

    Returns:
        A :class:`tinyopt.policy.Policy`.

    Raises:
        ValueError: an unknown name.
    """
    import re
    match = re.fullmatch(r"w(\d)a(\d)", name)
    if match:
        return Policy.uniform(model, int(match[1]), int(match[2]), granularity, fold=fold)
    if name != "mixed":
        raise ValueError(f"policy name must be 'w<bits>a<bits>' (e.g. w4a4) or 'mixed', got "
                         f"{name!r}")
    from tinyopt import memory, policy as policies
    p8 = Policy.uniform(model, 8, 8, granularity)
    p = policies.memory_driven(model, int(memory.flash_bytes(model, p8) * memory_fraction),
                               int(memory.peak_ram_bytes(model, p8) * memory_fraction),
                               granularity)
    if fold is not None:
        n = len(p.layers)
        p = Policy(p.layers, p.weight_bits, p.act_bits, granularity,
                   [fold if i < n - 1 else "FB" for i in range(n)], p.trace)
    return p

"""The Keras layers of tinyopt's sub-byte fake-quantized models
(docs/mixed_precision.md#quantizers), built by
:func:`tinyopt.quantize_qat` and calibrated by :func:`tinyopt.quantize_ptq`.

- :class:`QuantInput`: the 8-bit input quantizer;
- :class:`QuantCompute`: a Conv2D / Conv1D / DepthwiseConv2D (dilated, causal) / Dense with its
  optional BN and ReLU, its weights (PL or PC), bias (on the int32 grid) and PACT output
  fake-quantized, BN folded (FB) or kept (ICN);
- :class:`QuantAvgPool`: average pooling with the integer kernels' floor;
- :class:`FreezeBN` / :func:`freeze_bn` / :class:`QuantModel`: BN freezing during QAT.

The layers of graphs with branches (add, concatenation) and of the softmax head are in
:mod:`tinyopt.mixed.graph_layers` (registered when :mod:`tinyopt.mixed.build`, i.e.
``tinyopt.quantize_qat`` / ``tinyopt.quantize_ptq``, is imported). The quantizer functions
themselves are in
:mod:`tinyopt.mixed.quantizers`.

The layers derive from :class:`FakeQuantLayer`, whose ``call`` autograph does not convert:
their Python branches test Python values only (a tensor-valued ``training`` goes through
``tf.cond`` explicitly), so the traced graph is the same, and converting the ``call`` of every
layer instance took ~0.3 s each when a model is built (a 100-layer MobileNetV2: ~30 s). Code
added to a ``call`` here must keep to that (a Python ``if`` on a tensor raises instead of being
converted).
"""

from __future__ import annotations

import numpy as np

import tinyopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras

from tinyopt.integer.arith import bias_codes, effective_bias
from tinyopt.mixed import quantizers
from tinyopt.mixed.policy import Policy

# PACT clip init (ReLU6-like, docs/mixed_precision.md#pact-activations-with-floor) and the weight
# decays on alpha and on the PL clips a, b (docs/mixed_precision.md#decays-and-training-recipe).
DEFAULT_ALPHA = 6.0
ALPHA_DECAY = 1e-4
CLIP_DECAY = 5e-4


# Layers created while a QuantModel is being rebuilt from its config, by name: a layer is called
# (symbolically) before the model that connects it exists, so it finds its scale source here.
_REVIVING: list[dict] = []


def _source_scale(layer):
    """The ``output_scale`` callable of ``layer.input_scale_from``: the connected one, else the
    one of a layer created in the same model rebuild. Raises RuntimeError naming the layer."""
    if layer.input_scale is not None:
        return layer.input_scale
    if _REVIVING and layer.input_scale_from in _REVIVING[-1]:
        return _REVIVING[-1][layer.input_scale_from].output_scale
    raise RuntimeError(f"{type(layer).__name__} {layer.name!r} does not know its input scale "
                       f"(input_scale_from={layer.input_scale_from!r}); build the model with "
                       "tinyopt.quantize_qat or tinyopt.quantize_ptq, or load it with "
                       "tf_keras.models.load_model")


def _register(layer) -> None:
    if _REVIVING:
        _REVIVING[-1][layer.name] = layer


def _steps(bits: int, signed: bool) -> int:
    """Codes per alpha: 2^Q - 1 for PACT, 2^(Q-1) for the signed quantizer."""
    return 2 ** (int(bits) - 1) if signed else quantizers.levels(bits)


def _source_scales(layer) -> list:
    """The ``output_scale`` callables of a multi-input layer's sources (``input_scale_from`` is
    a comma-separated list of layer names)."""
    if layer.input_scale is not None:
        return list(layer.input_scale)
    names = [n for n in layer.input_scale_from.split(",") if n]
    if _REVIVING and all(n in _REVIVING[-1] for n in names):
        return [_REVIVING[-1][n].output_scale for n in names]
    raise RuntimeError(f"{type(layer).__name__} {layer.name!r} does not know its input scales "
                       f"(input_scale_from={layer.input_scale_from!r}); build the model with "
                       "tinyopt.quantize_qat or tinyopt.quantize_ptq")


class FakeQuantLayer(keras.layers.Layer):
    """Base of tinyopt's fake-quant layers: ``call`` runs as written, never converted by
    autograph (the module docstring says why)."""

    def _should_use_autograph(self):
        # tf_keras' hook (engine/base_layer.py: subclassed layers answer True); should a later
        # tf_keras drop it, the layers are only slower to build, their graph the same
        return False

    def _signature_trace(self) -> bool:
        """True while tf_keras traces ``call`` only to learn its output's shape and dtype: a
        functional model's construction calls each layer once in a throw-away graph named
        ``<layer>_scratch_graph`` (engine/base_layer.py, ``_infer_output_signature``); the
        model's every real call runs ``call`` again on real tensors. A layer whose output has
        the shape of a cheaper op may return that op there (QuantCompute: the convolution
        alone, ~0.1 s less per layer, most of building a fake-quant model). Should a later
        tf_keras name the graph otherwise, this is False and ``call`` runs in full: slower,
        the same model."""
        graph = tf.compat.v1.get_default_graph()
        return getattr(graph, "name", None) == f"{self.name}_scratch_graph"


@keras.utils.register_keras_serializable(package="tinyopt")
class QuantInput(FakeQuantLayer):
    """The 8-bit network input quantizer (:func:`tinyopt.mixed.quantizers.input_quant`).

    With an input scaling folded in (``scale`` / ``offset``: the model's leading ``Rescaling``
    / ``Normalization`` layers, :func:`tinyopt.mixed.dag.input_scaling`), the codes quantize the
    raw input on the raw grid of :func:`tinyopt.mixed.quantizers.scaled_input_params` and the
    layer outputs their value on the network's grid, S (X - Z): the affine image of the
    quantized raw input, with no run-time cost.

    Arguments:
        lo, hi: the real range of the raw model input (default [0, 1]: S = 1/255, Z = 0).
        bits: input bits (8).
        scale, offset: the folded input scaling y = x scale + offset (default: none).
    """

    def __init__(self, lo: float = 0.0, hi: float = 1.0, bits: int = 8, scale: float = 1.0,
                 offset: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.lo, self.hi, self.bits = float(lo), float(hi), quantizers.check_bits(bits)
        self.scale, self.offset = float(scale), float(offset)
        self.scaled = (self.scale, self.offset) != (1.0, 0.0)
        if self.scaled:
            quantizers.scaled_input_params(self.lo, self.hi, self.scale, self.offset, self.bits)
        _register(self)

    def call(self, x):
        if not self.scaled:
            return quantizers.input_quant(x, self.lo, self.hi, self.bits)
        p = self.qparams()
        x = tf.convert_to_tensor(x, tf.float32)
        raw_s = tf.constant(p["raw_scale"], tf.float32)
        raw_z = tf.constant(float(p["raw_zero_point"]), tf.float32)
        codes = quantizers.affine_codes(x, raw_s, raw_z, self.bits)  # as quantize_input
        fake = tf.constant(p["scale"], tf.float32) * (codes - float(p["zero_point"]))
        # straight through (times the scaling) inside the raw grid, as input_quant
        inside = tf.logical_and(x >= -raw_z * raw_s, x <= (quantizers.levels(self.bits) - raw_z)
                                * raw_s)
        linear = tf.where(inside, x * self.scale, tf.stop_gradient(x * self.scale))
        return tf.stop_gradient(fake) + (linear - tf.stop_gradient(linear))

    def output_scale(self):
        """The input grid's scale S as a tensor (what the next layer's input scale is)."""
        return tf.constant(self.qparams()["scale"], tf.float32)

    def qparams(self) -> dict:
        """{"scale", "zero_point" (the grid the network reads), "bits", "lo", "hi" (the raw
        range), "raw_scale", "raw_zero_point" (the quantizer of raw inputs: equal to the first
        two without an input scaling), "input_scaling" ({scale, offset} or None)}."""
        if self.scaled:
            p = quantizers.scaled_input_params(self.lo, self.hi, self.scale, self.offset,
                                               self.bits)
            scaling = {"scale": self.scale, "offset": self.offset}
        else:
            s, z = quantizers.input_params(self.lo, self.hi, self.bits)
            p, scaling = {"scale": s, "zero_point": z, "raw_scale": s, "raw_zero_point": z}, None
        return {**p, "bits": self.bits, "lo": self.lo, "hi": self.hi, "input_scaling": scaling}

    def get_config(self):
        return {**super().get_config(), "lo": self.lo, "hi": self.hi, "bits": self.bits,
                "scale": self.scale, "offset": self.offset}


@keras.utils.register_keras_serializable(package="tinyopt")
class QuantAvgPool(FakeQuantLayer):
    """Average pooling of PACT activations with the integer kernels' floor(sum / count).

    Arguments:
        bits: the activation bits (those of the producing layer).
        pool_size, strides: None for global pooling, else a VALID 2-D average pool.
        keepdims: global pooling keeps the pooled axes (H and W: 1 x 1; T of a (T, C) input:
            1), as GlobalAveragePooling2D / 1D(keepdims=True).
    """

    def __init__(self, bits: int, pool_size=None, strides=None, input_scale_from: str = "",
                 signed: bool = False, keepdims: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.keepdims = bool(keepdims)  # global pooling: [N, 1, 1, C] / [N, 1, C], not [N, C]
        self.bits = quantizers.check_bits(bits)
        self.signed = bool(signed)  # the grid of a linear layer (pact_signed), zero point 2^(Q-1)
        self.pool_size = None if pool_size is None else tuple(pool_size)
        self.strides = None if strides is None else tuple(strides)
        # The layer whose output grid this layer reads (its ``output_scale``): explicit, saved
        # in the config, and connected by the QuantModel that holds both layers.
        self.input_scale_from = str(input_scale_from)
        self.input_scale = None
        _register(self)

    def call(self, x):
        y = quantizers.avg_pool_floor(x, _source_scale(self)(), self.bits, self.pool_size,
                                      self.strides, self.signed)
        if self.keepdims and self.pool_size is None:  # [N, C] -> [N, 1, (1,) C]
            return tf.reshape(y, [-1] + [1] * (len(x.shape) - 2) + [y.shape[-1]])
        return y

    def get_config(self):
        return {**super().get_config(), "bits": self.bits, "pool_size": self.pool_size,
                "strides": self.strides, "input_scale_from": self.input_scale_from,
                "signed": self.signed, "keepdims": self.keepdims}


def _check_conv_config(name: str, c: dict) -> None:
    """A convolution config QuantCompute runs as Keras does: padding valid / same / causal
    (causal: a Conv1D, ``rank`` 2, padded on the left of its time axis), dilation rates >= 1
    and, as Keras requires, strides of 1 where a rate is above 1.

    Raises:
        ValueError: naming the layer, the field and the fix.
    """
    pad = str(c.get("padding", "valid")).lower()
    if pad not in ("valid", "same", "causal"):
        raise ValueError(f"layer {name!r}: padding {pad!r}; use 'valid', 'same' or 'causal'")
    if pad == "causal" and int(c.get("rank", 3)) != 2:
        raise ValueError(f"layer {name!r}: causal padding is a Conv1D's (op_config rank 2, "
                         f"its (T, C) input), got rank {c.get('rank', 3)}")
    rate = [int(d) for d in c.get("dilation_rate", (1, 1))]
    if len(rate) != 2 or min(rate) < 1:
        raise ValueError(f"layer {name!r}: dilation_rate must be two integers >= 1, got "
                         f"{c.get('dilation_rate')}")
    if max(rate) > 1 and max(int(s) for s in c["strides"]) > 1:
        raise ValueError(f"layer {name!r}: strides {list(c['strides'])} with dilation_rate "
                         f"{rate}: Keras (and tf.nn.depthwise_conv2d) take a dilated "
                         "convolution at stride 1 only; use strides=1 and a pool or a strided "
                         "layer after it")


@keras.utils.register_keras_serializable(package="tinyopt")
class QuantCompute(FakeQuantLayer):
    """One Conv2D / DepthwiseConv2D / Dense, its optional BatchNorm and ReLU/ReLU6, fake-quantized.

    Forward (docs/mixed_precision.md#batchnorm-folded-fb-or-kept-icn), with w the kernel, b the bias
    (zero when the float layer had none) and
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
    - Output: PACT (unsigned, floor) with learnable alpha when the float layer had ReLU/ReLU6
      (``activation`` "relu" / "relu6"); a linear layer in the middle of a network (a linear
      bottleneck, a residual branch) has the signed quantizer :func:`quantizers.pact_signed`
      (``activation="signed"``); the last layer (``activation=None``) outputs float logits.
    - ``op_config["rank"]``: the per-image input rank when it is not 3 (Conv1D on [N, W, C],
      a standalone BN after a Dense on [N, C]): the op runs on [N, 1, W, C] / [N, 1, 1, C].
    - Convolutions run with their ``dilation_rate`` (``tf.nn.conv2d`` / ``depthwise_conv2d``,
      SAME on the dilated extent); ``padding="causal"`` (a Conv1D) pads (k - 1) d zeros (real
      0) before the time axis and runs VALID, as Keras' Conv1D.

    Once frozen (:func:`freeze_bn`, :class:`FreezeBN`; the ``frozen`` flag, mirrored in the
    ``bn_frozen`` weight) BN uses moving statistics and gamma, beta stop training. Build it with
    :func:`quantize_mixed`, not directly.
    """

    def __init__(self, kind: str, op_config: dict, weight_bits: int, act_bits: int | None,
                 granularity: str, fold: str, bn_config: dict | None, activation: str | None,
                 clip_decay: float = CLIP_DECAY, alpha_decay: float = ALPHA_DECAY,
                 input_scale_from: str = "", **kwargs):
        super().__init__(**kwargs)
        if kind not in ("conv2d", "depthwise", "dense"):
            raise ValueError(f"unknown compute kind {kind!r}")
        self.kind, self.op_config = kind, dict(op_config)
        if kind != "dense":
            _check_conv_config(self.name, self.op_config)
        self.weight_bits = quantizers.check_bits(weight_bits, f"{self.name} weight_bits")
        if activation not in (None, "relu", "relu6", "signed"):
            raise ValueError(f"activation must be None, relu, relu6 or signed, got {activation!r}")
        self.act_bits = None if activation is None else quantizers.check_bits(
            act_bits, f"{self.name} act_bits")
        self.granularity, self.fold = granularity, fold
        self.bn_config, self.activation = bn_config, activation
        self.clip_decay, self.alpha_decay = clip_decay, alpha_decay
        # The layer whose output grid S_x this layer reads (QuantInput or a PACT QuantCompute):
        # explicit, saved in the config, connected by the QuantModel holding both.
        self.input_scale_from = str(input_scale_from)
        self.input_scale = None
        _register(self)

    # ------------------------------------------------------------------ weights
    @property
    def channel_axes(self) -> tuple[int, ...]:
        """Axes of the kernel that are NOT output channels (reduced by PC quantization)."""
        return {"conv2d": (0, 1, 2), "depthwise": (0, 1), "dense": (0,)}[self.kind]

    def _add_kernel_bias_bn(self, kshape: tuple) -> None:
        """The kernel (``kshape``), the bias and, with a BN, its four per-channel variables
        (``out_channels`` of them); the BN-freezing state (subclasses with another kernel
        layout call this too)."""
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
        self._add_kernel_bias_bn(kshape)
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
        rank = int(c.get("rank", 3))
        if rank != 3:  # [N, W, C] -> [N, 1, W, C], [N, C] -> [N, 1, 1, C]
            shape = tf.shape(x)
            x = tf.reshape(x, tf.concat([shape[:1], [1] * (4 - rank - 1), shape[1:]], 0))
        strides = (1,) + tuple(c["strides"]) + (1,)
        rate = tuple(int(d) for d in c.get("dilation_rate", (1, 1)))
        pad = c["padding"].upper()
        if pad == "CAUSAL":  # as Keras' Conv1D: zeros (real 0) before the time axis, then VALID
            x = tf.pad(x, [[0, 0], [0, 0], [(int(c["kernel_size"][1]) - 1) * rate[1], 0],
                           [0, 0]])
            pad = "VALID"
        if self.kind == "depthwise":
            y = tf.nn.depthwise_conv2d(x, kernel, strides, pad, dilations=rate)
        else:
            y = tf.nn.conv2d(x, kernel, strides, pad, dilations=rate)
        if rank != 3:
            shape = tf.shape(y)
            y = tf.reshape(y, tf.concat([shape[:1], shape[4 - rank:]], 0))
        return y

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
            # de-fold (docs/mixed_precision.md#batchnorm-folded-fb-or-kept-icn)
            safe = tf.where(tf.abs(fk) > 1e-12, fk, tf.ones_like(fk))
            return self._batch_bn(self._op(x, wq / safe) + self.bias)
        return self._batch_bn(self._op(x, self.quantize_kernel(self.kernel)) + self.bias)

    def quantize_bias(self, c, weight_scale):
        """Round an accumulator-domain bias ``c`` onto the integer kernels' grid, one step
        u = S_x S_w (per channel for PC), with a straight-through gradient
        (docs/mixed_precision.md#bias-codes).

        The integer graph adds B_q = round(c / u); adding the float c instead (as the fake-quant
        model did before) differs by up to half an accumulator step per channel, which flips a
        floor now and then and compounds through a deep network. Rounding here makes the
        fake-quant model compute what the integer graph computes, and QAT learns around it.
        """
        unit = tf.stop_gradient(_source_scale(self)() * tf.reshape(weight_scale, [-1]))
        # round(c / u) u exactly in the forward pass (c + (q - c) would carry float error),
        # identity gradient: c - stop_gradient(c) is exactly 0.
        return tf.stop_gradient(tf.round(c / unit) * unit) + (c - tf.stop_gradient(c))

    def snap_accumulator(self, t, weight_scale):
        """``t`` (= u (Phi + B_q) up to float32 rounding, u = S_x S_w) put exactly on the
        accumulator grid, with a straight-through gradient.

        The integer kernel's accumulator Phi + B_q is an exact integer, and Phi + B_q = 0 is
        common (a window of zero activations and a zero bias code). The float32 convolution
        gives u (Phi + B_q) only up to rounding, so an exact 0 comes out as -3e-7 and the floor
        of the signed quantizer (whose code boundary is at 0) gives -1 where the kernel gives 0.
        Snapping removes these ties (the float error is far below u / 2).
        """
        unit = tf.stop_gradient(_source_scale(self)() * tf.reshape(weight_scale, [-1]))
        return tf.stop_gradient(tf.round(t / unit) * unit) + (t - tf.stop_gradient(t))

    def _preact_eval(self, x):
        if self.bn_config is None:
            wq, qp = self.quantize_kernel(self.kernel, params=True)
            return self.snap_accumulator(self._op(x, wq) + self.quantize_bias(self.bias, qp.scale),
                                         qp.scale)
        gamma, beta = tf.stop_gradient(self.gamma), tf.stop_gradient(self.beta)
        sigma = tf.sqrt(self.moving_variance + self.bn_config["epsilon"])
        if self.fold == "FB":
            f, fk = self._bn_factor()
            wq, qp = self.quantize_kernel(self.kernel * tf.stop_gradient(fk), params=True)
            folded = beta + (self.bias - self.moving_mean) * tf.stop_gradient(f)
            return self.snap_accumulator(self._op(x, wq) + self.quantize_bias(folded, qp.scale),
                                         qp.scale)
        # ICN: gamma (t - mu) / sigma + beta = g (t - mu + beta / g), g = gamma / sigma; the
        # integer kernel adds round((b - mu + beta / g) / u) and multiplies by g
        # (docs/integer.md#icn-integer-channel-normalization).
        wq, qp = self.quantize_kernel(self.kernel, params=True)
        g = gamma / sigma
        live = tf.not_equal(g, 0.0)
        safe = tf.where(live, g, tf.ones_like(g))
        t = self.snap_accumulator(
            self._op(x, wq) + self.quantize_bias(self.bias - self.moving_mean + beta / safe,
                                                 qp.scale), qp.scale)
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
        """PACT (signed for ``activation="signed"``) on the pre-activation (identity for the
        linear last layer)."""
        if self.activation is None:
            return y
        if self.activation == "signed":
            return quantizers.pact_signed(y, self.alpha, self.act_bits, params)
        return quantizers.pact(y, self.alpha, self.act_bits, params)

    def call(self, x, training=None):
        if self._signature_trace():  # the output has the op's shape and dtype (float32)
            return self._op(x, tf.convert_to_tensor(self.kernel))
        if training is None:
            training = keras.backend.learning_phase()
        return self.quantize_output(self.preactivation(x, training))

    def output_scale(self):
        """S_y = alpha / (2^Q - 1) (signed: alpha / 2^(Q-1)) as a tensor (None for the linear
        last layer)."""
        if self.activation is None:
            return None
        return tf.maximum(self.alpha, quantizers.ALPHA_MIN) / _steps(self.act_bits,
                                                                     self.activation == "signed")

    def plain_op_config(self) -> dict:
        """``op_config`` with plain Python lists (Keras wraps attributes in trackable types)."""
        return {k: (v if isinstance(v, (str, int, float)) else [int(i) for i in v])
                for k, v in self.op_config.items()}

    def integer_params(self, input_scale: float, input_zero_point: int, input_bits: int) -> dict:
        """Exactly what integer conversion needs for this layer (docs/mixed_precision.md#quantizers,
        docs/integer.md#lowering-a-fake-quant-model), computed by the
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
            ``bias`` (float64 [C]: the effective bias the integer kernel adds,
            :func:`tinyopt.integer.arith.effective_bias`: b, FB's beta + (b - mu) g or ICN's
            b - mu + beta / g) and ``bias_codes`` = round(bias / (S_x S_w)) (int32 [C], clamped
            to +-2^30; ``bias_clamped_channels`` lists clamped channels);
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
        bn = None
        if self.bn_config is not None:
            bn = {"gamma": self.gamma.numpy().astype(np.float64),
                  "beta": self.beta.numpy().astype(np.float64),
                  "moving_mean": self.moving_mean.numpy().astype(np.float64),
                  "moving_variance": self.moving_variance.numpy().astype(np.float64),
                  "epsilon": float(self.bn_config["epsilon"])}
        bias = effective_bias(self.bias.numpy(), bn, self.fold)
        notes = {}
        codes = bias_codes(bias, input_scale, scale, self.name, notes)
        if folded:
            bn = None
        output = None
        if self.activation is not None:
            alpha = max(float(self.alpha.numpy()), quantizers.ALPHA_MIN)
            signed = self.activation == "signed"
            output = {"scale": float(self.output_scale().numpy()),
                      "zero_point": 2 ** (self.act_bits - 1) if signed else 0,
                      "bits": self.act_bits, "alpha": alpha, "rounding": "floor",
                      "signed": signed}
        return {
            "name": self.name, "kind": self.kind, "op_config": self.plain_op_config(),
            "fold": self.fold, "granularity": self.granularity,
            "weight_bits": self.weight_bits, "input_bits": int(input_bits),
            "output_bits": self.act_bits,
            "weight_codes": qp.codes.astype(np.uint8), "weight_zero_point": zero,
            "weight_scale": scale, "kernel_source": "folded" if folded else "raw",
            "bias": bias, "bias_codes": codes, "bn": bn, **notes,
            "input": {"scale": float(input_scale), "zero_point": int(input_zero_point),
                      "bits": int(input_bits)},
            "output": output,
        }

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "op_config": self.plain_op_config(),
                "weight_bits": self.weight_bits, "act_bits": self.act_bits,
                "granularity": self.granularity, "fold": self.fold,
                "bn_config": self.bn_config, "activation": self.activation,
                "clip_decay": self.clip_decay, "alpha_decay": self.alpha_decay,
                "input_scale_from": self.input_scale_from}


class FreezeBN(keras.callbacks.Callback):
    """Freeze BatchNorm in every :class:`QuantCompute` layer at the start of epoch ``after``
    (docs/mixed_precision.md#batchnorm-folded-fb-or-kept-icn: moving statistics from then on, gamma
    and beta stop training; the repo's
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
        sync_frozen(self.model)
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


def sync_frozen(model: keras.Model) -> None:
    """Set every :class:`QuantCompute`'s ``frozen`` flag from its saved ``bn_frozen`` weight (a
    model loaded from a file has the weight, not the flag)."""
    for layer in model.layers:
        if isinstance(layer, QuantCompute):
            layer.frozen = bool(layer.bn_frozen.numpy() > 0.5)


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


@keras.utils.register_keras_serializable(package="tinyopt")
class QuantModel(keras.Model):
    """A functional fake-quant model: its ``fit`` adds :class:`FreezeBN` (``freeze_bn_after``
    epochs), so it trains with :func:`tinyopt.fit` like any Keras model; it connects every
    layer to the layer whose output grid it reads (``input_scale_from``), and it saves its
    ``policy`` and ``freeze_bn_after`` in its config, so ``tf_keras.models.load_model`` gives back
    a model that computes the same outputs.
    """

    # Functional's own constructor (a custom one would make Keras drop the functional config).
    freeze_bn_after: int | None = 1
    policy: Policy | None = None
    execution_order: list | None = None  # the float model's layer order (integer_params)

    def connect_scales(self) -> None:
        """Give every layer with ``input_scale_from`` its source's ``output_scale``.

        Raises:
            ValueError: a layer names a source this model does not have, or one without an
                output grid (a linear layer).
        """
        names = {layer.name: layer for layer in self.layers}
        for layer in self.layers:
            sources = [s for s in getattr(layer, "input_scale_from", "").split(",") if s]
            scales = []
            for source in sources:
                if source not in names or getattr(names[source], "output_scale", None) is None:
                    raise ValueError(f"layer {layer.name!r} reads its input scale from "
                                     f"{source!r}, which is not a quantizing layer of this model")
                src = names[source]
                if isinstance(src, QuantCompute) and src.activation is None:
                    raise ValueError(f"layer {layer.name!r} reads its input scale from the "
                                     f"linear layer {source!r}, which has no output grid")
                scales.append(src.output_scale)
            if getattr(layer, "multi_source", False):  # QuantAdd, QuantConcat
                layer.input_scale = scales
            elif scales:
                layer.input_scale = scales[0]

    def get_config(self):
        config = super().get_config()
        config["tinyopt"] = {"freeze_bn_after": self.freeze_bn_after,
                             "policy": None if self.policy is None else self.policy.to_dict(),
                             "execution_order": self.execution_order}
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        extra = config.pop("tinyopt", {}) or {}
        _REVIVING.append({})
        try:
            model = super().from_config(config, custom_objects)
        finally:
            _REVIVING.pop()
        model.connect_scales()
        model.freeze_bn_after = extra.get("freeze_bn_after", 1)
        model.execution_order = extra.get("execution_order")
        if extra.get("policy") is not None:
            model.policy = Policy.from_dict(extra["policy"])
        return model

    def fit(self, *args, callbacks=None, **kwargs):
        callbacks = list(callbacks or [])
        if not any(isinstance(c, FreezeBN) for c in callbacks):
            callbacks.append(FreezeBN(self.freeze_bn_after))
        return super().fit(*args, callbacks=callbacks, **kwargs)

"""The fake-quant Keras layers of graphs that are not chains (residual adds, concatenations,
element-wise products) and of a kept softmax head, built by :func:`tinyopt.quantize_qat` from
the blocks of :mod:`tinyopt.mixed.dag`. Each reads several input grids (``input_scale_from``
lists the source layers, comma-separated; the :class:`~tinyopt.mixed.layers.QuantModel` connects
them) and has the integer graph's arithmetic (:func:`tinyopt.mixed.lower.convert`). Their
``call`` methods are not converted by autograph
(:class:`~tinyopt.mixed.layers.FakeQuantLayer`)."""

from __future__ import annotations

import numpy as np

import tinyopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras

from tinyopt.integer.arith import m0_n0
from tinyopt.mixed import quantizers
from tinyopt.mixed.layers import (ALPHA_DECAY, DEFAULT_ALPHA, FakeQuantLayer, _register,
                                  _source_scales, _steps)


@keras.utils.register_keras_serializable(package="tinyopt")
class QuantAdd(FakeQuantLayer):
    """The element-wise sum of two quantized tensors (a residual connection), requantized onto
    its own grid: PACT when a ReLU / ReLU6 follows (``activation``), else the signed quantizer.

    The integer graph computes it as TFLite's ADD with floor requantization (each addend minus
    its zero point, shifted left by 20, rescaled onto a common grid, the sum rescaled onto the
    output grid); the fake-quant sum is the exact real sum, so the two agree except where the
    exact sum sits on a code boundary (below 2^-20 of a step).

    Arguments:
        bits: output bits (the larger of the addends' bits by default in quantize_mixed).
        activation: "relu", "relu6" or "signed".
        input_scale_from: the two source layers, comma-separated.
    """

    multi_source = True  # input_scale: one output_scale per input

    def __init__(self, bits: int, activation: str = "signed", input_scale_from: str = "",
                 alpha_decay: float = ALPHA_DECAY, **kwargs):
        super().__init__(**kwargs)
        if activation not in ("relu", "relu6", "signed"):
            raise ValueError(f"activation must be relu, relu6 or signed, got {activation!r}")
        self.bits, self.activation = quantizers.check_bits(bits), activation
        self.alpha_decay = alpha_decay
        self.input_scale_from, self.input_scale = str(input_scale_from), None
        _register(self)

    def build(self, input_shape):
        reg = keras.regularizers.l2(self.alpha_decay / 2) if self.alpha_decay else None
        self.alpha = self.add_weight("alpha", (), regularizer=reg,
                                     initializer=keras.initializers.Constant(DEFAULT_ALPHA))
        super().build(input_shape)

    def preactivation(self, inputs, training=False):
        return inputs[0] + inputs[1]

    def quantize_output(self, y, params: bool = False):
        if self.activation == "signed":
            return quantizers.pact_signed(y, self.alpha, self.bits, params)
        return quantizers.pact(y, self.alpha, self.bits, params)

    def call(self, inputs):
        return self.quantize_output(self.preactivation(inputs))

    def output_scale(self):
        return tf.maximum(self.alpha, quantizers.ALPHA_MIN) / _steps(
            self.bits, self.activation == "signed")

    def get_config(self):
        return {**super().get_config(), "bits": self.bits, "activation": self.activation,
                "input_scale_from": self.input_scale_from, "alpha_decay": self.alpha_decay}


@keras.utils.register_keras_serializable(package="tinyopt")
class QuantConcat(FakeQuantLayer):
    """Channel concatenation of quantized tensors onto one grid: ``bits`` (the largest of the
    inputs'), alpha the largest input alpha; every input on another grid is requantized with
    floor (the integer graph's QUANTIZE nodes), codes q_i -> floor(q_i S_i / S).

    Arguments:
        bits: output bits; signed: the inputs' grids are signed (all of them, or none);
        input_bits: each input's bits; input_scale_from: the sources, comma-separated.
    """

    multi_source = True

    def __init__(self, bits: int, input_bits, signed: bool = False, input_scale_from: str = "",
                 **kwargs):
        super().__init__(**kwargs)
        self.bits, self.signed = quantizers.check_bits(bits), bool(signed)
        self.input_bits = [quantizers.check_bits(b) for b in input_bits]
        self.input_scale_from, self.input_scale = str(input_scale_from), None
        _register(self)

    def _alphas(self):
        return [f() * _steps(b, self.signed) for f, b in zip(_source_scales(self), self.input_bits)]

    def output_scale(self):
        return tf.reduce_max(tf.stack(self._alphas())) / _steps(self.bits, self.signed)

    def call(self, inputs):
        s_out = self.output_scale()
        lo, hi = (-2.0 ** (self.bits - 1), 2.0 ** (self.bits - 1) - 1) if self.signed else \
            (0.0, float(quantizers.levels(self.bits)))
        outs = []
        for x, f in zip(inputs, _source_scales(self)):
            s_in = f()
            codes = tf.round(x / s_in)  # exact: x is S_in * integer
            ratio = s_in / s_out
            y = tf.clip_by_value(tf.floor(codes * ratio), lo, hi) * s_out
            # straight-through gradient
            outs.append(tf.stop_gradient(y) + (x - tf.stop_gradient(x)))
        return tf.concat(outs, axis=-1)

    def get_config(self):
        return {**super().get_config(), "bits": self.bits, "input_bits": self.input_bits,
                "signed": self.signed, "input_scale_from": self.input_scale_from}


@keras.utils.register_keras_serializable(package="tinyopt")
class QuantSoftmax(FakeQuantLayer):
    """A softmax head kept in the integer graph: softmax over the last axis, output on TFLite's
    int8 grid (scale 1/256, codes round(p 256) - 128); the integer graph runs TFLite's
    fixed-point int8 softmax on the 8-bit signed logits, which agrees within one output LSB."""

    def call(self, x):
        p = tf.nn.softmax(x, axis=-1)
        y = tf.clip_by_value(tf.round(p * 256.0), 0.0, 255.0) / 256.0
        return tf.stop_gradient(y) + (p - tf.stop_gradient(p))

    def output_scale(self):
        return tf.constant(1.0 / 256.0, tf.float32)


def _pattern(kind: str):
    """The :class:`~tinyopt.integer.ops.registry.KerasPattern` of op ``kind``."""
    from tinyopt.integer import ops
    op = ops.get(kind)
    if op.keras is None:
        raise ValueError(f"op kind {kind!r} has no Keras pattern (its module in "
                         "tinyopt/integer/ops defines none); it cannot be a QuantActivation")
    return op.keras


@keras.utils.register_keras_serializable(package="tinyopt")
class QuantActivation(FakeQuantLayer):
    """An element-wise op of the op registry, fake-quantized: the op's float function
    (``KerasPattern.float_fn``) on the input grid's values, then its output quantizer, rounding
    to nearest (ties to even, as ``tf.round``), per the op's range:

    - ``signed`` (hard-swish, LeakyReLU): codes clamp(round(y / S), -2^(Q-1), 2^(Q-1) - 1),
      S = alpha / 2^(Q-1) with a learned clip alpha (stored with zero point 2^(Q-1), like the
      signed quantizer of linear layers);
    - a fixed range (0, hi) (sigmoid): S = hi / 2^Q, codes clamp(round(y / S), 0, 2^Q - 1);
    - otherwise unsigned with a learned clip: S = alpha / (2^Q - 1).

    Gradients: straight through inside the clip; alpha gets the clipped gradients times the
    sign of y (PACT-style). ``bits`` are the input's (the grid of the layer it reads); the
    integer form is the op's ``KerasPattern.lower`` (:func:`tinyopt.mixed.lower.convert`).

    Arguments:
        kind: the registry op (``IntegerLayer.kind``).
        bits: output bits (2, 4 or 8).
        config: the op's settings (``KerasPattern.config``, e.g. LeakyReLU's alpha).
        input_scale_from: the layer whose output grid this one reads.
    """

    def __init__(self, kind: str, bits: int, config: dict | None = None,
                 input_scale_from: str = "", alpha_decay: float = ALPHA_DECAY, **kwargs):
        super().__init__(**kwargs)
        self.kind, self.pattern = str(kind), _pattern(kind)
        self.bits = quantizers.check_bits(bits, f"{self.name} bits")
        self.op_settings = dict(config or {})
        self.alpha_decay = alpha_decay
        self.input_scale_from, self.input_scale = str(input_scale_from), None
        _register(self)

    @property
    def learned(self) -> bool:
        """The output clip is learned (alpha), not a fixed range."""
        return self.pattern.out_range is None

    @property
    def signed(self) -> bool:
        return bool(self.pattern.signed) and self.learned

    def build(self, input_shape):
        if self.learned:
            reg = keras.regularizers.l2(self.alpha_decay / 2) if self.alpha_decay else None
            self.alpha = self.add_weight("alpha", (), regularizer=reg,
                                         initializer=keras.initializers.Constant(DEFAULT_ALPHA))
        super().build(input_shape)

    def code_range(self) -> tuple[float, float]:
        """(lowest, highest) signed code of the output quantizer."""
        if self.signed:
            return -float(2 ** (self.bits - 1)), float(2 ** (self.bits - 1) - 1)
        return 0.0, float(quantizers.levels(self.bits))

    def output_scale(self):
        if not self.learned:
            return tf.constant(float(self.pattern.out_range[1]) / 2 ** self.bits, tf.float32)
        return tf.maximum(self.alpha, quantizers.ALPHA_MIN) / _steps(self.bits, self.signed)

    def preactivation(self, x):
        """The op's float function (before the output quantizer)."""
        return self.pattern.float_fn(tf, tf.convert_to_tensor(x, tf.float32), self.op_settings)

    def quantize_output(self, y):
        lo, hi = self.code_range()
        if not self.learned:
            s = self.output_scale()
            q = tf.clip_by_value(tf.round(y / s), lo, hi) * s
            return tf.stop_gradient(q) + (y - tf.stop_gradient(y))
        steps = float(_steps(self.bits, self.signed))

        @tf.custom_gradient
        def _op(y, alpha):
            s = tf.maximum(alpha, quantizers.ALPHA_MIN) / steps
            out = tf.clip_by_value(tf.round(y / s), lo, hi) * s

            def grad(dy):
                inside = tf.logical_and(y >= lo * s, y <= hi * s)
                dalpha = tf.reduce_sum(tf.where(inside, tf.zeros_like(dy), dy * tf.sign(y)))
                return tf.where(inside, dy, tf.zeros_like(dy)), tf.reshape(dalpha,
                                                                          tf.shape(alpha))

            return out, grad

        return _op(y, tf.convert_to_tensor(self.alpha, tf.float32))

    def call(self, x):
        return self.quantize_output(self.preactivation(x))

    def grid(self) -> dict:
        """{scale, zero_point, bits, signed} of the output as the integer graph stores it."""
        return {"scale": float(self.output_scale().numpy()),
                "zero_point": 2 ** (self.bits - 1) if self.signed else 0, "bits": self.bits,
                "signed": self.signed}

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "bits": self.bits,
                "config": dict(self.op_settings), "input_scale_from": self.input_scale_from,
                "alpha_decay": self.alpha_decay}


def _quantized_multiplier(real):
    """The requantization multiplier the integer graph uses for ``real`` (float64 tensor):
    m0 * 2^(n0 - 31) of :func:`tinyopt.integer.arith.m0_n0`, computed by that very function."""
    def value(r):
        m0, n0 = m0_n0(np.asarray(r, np.float64).reshape(1))
        return np.float64(int(m0[0]) * 2.0 ** (int(n0[0]) - 31))

    return tf.reshape(tf.numpy_function(value, [real], tf.float64, stateful=False), ())


@keras.utils.register_keras_serializable(package="tinyopt")
class QuantMul(QuantActivation):
    """The element-wise product of two quantized tensors (squeeze-and-excite's gate: one operand
    full size, the other the same shape or one value per channel, broadcast), requantized onto
    its own grid with a learned clip alpha: signed (codes in [-2^(Q-1), 2^(Q-1) - 1], S = alpha /
    2^(Q-1), stored with zero point 2^(Q-1)) unless both operands are non-negative (unsigned
    PACT codes in [0, 2^Q - 1], S = alpha / (2^Q - 1)).

    Forward: the float product y = a b of the two fake-quant values, then the integer graph's
    requantization of it (:mod:`tinyopt.integer.ops.mul`, floor): Phi = round(y / (S_a S_b))
    recovers the product of the two signed codes exactly (|Phi| <= 255^2, the float error of y
    is far below half a unit), and the output code is clamp(floor(Phi M'), lo, hi) with M' =
    m0 2^(n0 - 31) the multiplier :func:`tinyopt.integer.arith.m0_n0` makes of S_a S_b / S_out
    (float64, in this order, as the lowering). Phi M' is exact in float64 (47 bits), so the
    layer is the integer ``mul`` node bit for bit, not only up to code boundaries.

    Gradients: those of PACT on y (:func:`tinyopt.mixed.quantizers.pact` / ``pact_signed``):
    straight through inside the clip, alpha from the clipped values.

    It is a :class:`QuantActivation` of two inputs with a learned clip (``preactivation(a, b)``
    gives y, ``quantize_output(y)`` the requantized output), so PTQ calibrates its alpha as an
    element-wise op's (:func:`tinyopt.mixed.ptq.calibrate_round_alpha` on y).

    Arguments:
        bits: output bits (the larger of the operands' bits in quantize_mixed).
        signed: the output grid is signed (an operand may be negative).
        input_scale_from: the two source layers, comma-separated (the full-size operand first).
    """

    multi_source = True  # input_scale: one output_scale per input

    def __init__(self, bits: int, signed: bool = True, input_scale_from: str = "",
                 alpha_decay: float = ALPHA_DECAY, **kwargs):
        keras.layers.Layer.__init__(self, **kwargs)  # not QuantActivation's: no registry op
        self.kind, self.pattern, self.op_settings = "mul", None, {}
        self.bits = quantizers.check_bits(bits, f"{self.name} bits")
        self._signed = bool(signed)
        self.alpha_decay = alpha_decay
        self.input_scale_from, self.input_scale = str(input_scale_from), None
        _register(self)

    @property
    def learned(self) -> bool:
        return True

    @property
    def signed(self) -> bool:
        return self._signed

    def preactivation(self, *inputs):
        """The float product of the two operands (one list, or two arguments)."""
        a, b = inputs[0] if len(inputs) == 1 else inputs
        return tf.convert_to_tensor(a, tf.float32) * tf.convert_to_tensor(b, tf.float32)

    def quantize_output(self, y):
        y = tf.convert_to_tensor(y, tf.float32)
        s_a, s_b = (tf.cast(f(), tf.float64) for f in _source_scales(self))
        s_out = self.output_scale()
        lo, hi = self.code_range()
        phi = tf.round(tf.cast(y, tf.float64) / (s_a * s_b))
        real = (s_a * s_b) / tf.cast(s_out, tf.float64)
        codes = tf.clip_by_value(tf.floor(phi * _quantized_multiplier(real)), lo, hi)
        exact = tf.cast(codes, tf.float32) * s_out
        pact = quantizers.pact_signed if self.signed else quantizers.pact
        grad = pact(y, self.alpha, self.bits)  # PACT's gradients, the integer node's values
        return grad + tf.stop_gradient(exact - grad)

    def call(self, inputs):
        return self.quantize_output(self.preactivation(inputs))

    def get_config(self):
        return {**keras.layers.Layer.get_config(self), "bits": self.bits, "signed": self.signed,
                "input_scale_from": self.input_scale_from, "alpha_decay": self.alpha_decay}

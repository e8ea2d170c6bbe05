"""The fake-quant Keras layer of a transposed convolution (``Conv2DTranspose``, the U-Net's learned
up-sampling): :class:`QuantTransposeConv`, a :class:`~tinyopt.mixed.layers.QuantCompute` whose
op is ``tf.nn.conv2d_transpose``.

Everything but the op and the kernel's shape is QuantCompute's: the PL (learned clips) or PC
weight quantizer, the bias rounded onto the accumulator grid S_x S_w, a following BatchNorm
folded (FB) or kept (ICN), the PACT output (or the signed quantizer of a linear layer read by
others), BN freezing (:class:`~tinyopt.mixed.layers.FreezeBN` and
:func:`~tinyopt.mixed.layers.freeze_bn` find it with ``isinstance``), PTQ's calibration and the
sensitivity analysis (both take any QuantCompute). What differs:

- the Keras kernel is [kh, kw, c_out, c_in]: the output channels are axis 2 (per-channel weight
  scales reduce axes (0, 1, 3); a folded BN scales axis 2);
- the op: ``conv2d_transpose`` with the output size of Keras' ``Conv2DTranspose``
  (:func:`tinyopt.integer.ops.transpose_conv.keras_geometry`: 'same' H s, 'valid'
  H s + max(k - s, 0)), which is the integer node's geometry.

Registered as ``tinyopt>QuantTransposeConv`` (so
:func:`tinyopt.mixed.handlers.base.fake_quant` finds it and ``tf_keras.models.load_model``
rebuilds it). A linear transposed convolution producing the network output (int32 logits) has
no integer kernel (``transpose_conv`` writes 2/4/8-bit codes) and is refused by its handler
(:mod:`tinyopt.mixed.handlers.transpose_conv`) before this layer is built.
"""

from __future__ import annotations

import tinyopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras

from tinyopt.integer.ops.transpose_conv import keras_geometry
from tinyopt.mixed.layers import ALPHA_DECAY, CLIP_DECAY, DEFAULT_ALPHA, QuantCompute

KIND = "transpose_conv"


@keras.utils.register_keras_serializable(package="tinyopt")
class QuantTransposeConv(QuantCompute):
    """A Conv2DTranspose (with bias, strides, 'same' / 'valid'), its optional BatchNorm and
    ReLU / ReLU6, fake-quantized as :class:`~tinyopt.mixed.layers.QuantCompute` (module
    docstring).

    Arguments:
        op_config: ``kernel_size`` [kh, kw], ``strides`` [sh, sw], ``padding`` ("same" /
            "valid"), ``filters`` (c_out).
        weight_bits, act_bits, granularity, fold, bn_config, activation, clip_decay,
            alpha_decay, input_scale_from: as QuantCompute.
        kind: "transpose_conv" (the value :meth:`get_config` saves).

    Raises:
        ValueError: another kind, an op_config without those keys, or a padding other than
            'same' / 'valid'.
    """

    def __init__(self, op_config: dict, weight_bits: int, act_bits: int | None,
                 granularity: str, fold: str, bn_config: dict | None, activation: str | None,
                 clip_decay: float = CLIP_DECAY, alpha_decay: float = ALPHA_DECAY,
                 input_scale_from: str = "", kind: str = KIND, **kwargs):
        if kind != KIND:
            raise ValueError(f"QuantTransposeConv: kind must be {KIND!r}, got {kind!r}")
        missing = [k for k in ("kernel_size", "strides", "padding", "filters")
                   if k not in op_config]
        if missing:
            raise ValueError(f"QuantTransposeConv: op_config lacks {missing}")
        if str(op_config["padding"]).lower() not in ("same", "valid"):
            raise ValueError(f"QuantTransposeConv: padding {op_config['padding']!r}; only "
                             "'same' and 'valid'")
        # QuantCompute validates everything else; its kind check knows conv2d (the same
        # weights and output quantizers), this layer's own kind is set right after
        super().__init__("conv2d", op_config, weight_bits, act_bits, granularity, fold,
                         bn_config, activation, clip_decay, alpha_decay, input_scale_from,
                         **kwargs)
        self.kind = KIND

    @property
    def channel_axes(self) -> tuple[int, ...]:
        """Axes of the [kh, kw, c_out, c_in] kernel that are not output channels."""
        return (0, 1, 3)

    def build(self, input_shape):
        # QuantCompute.build with the transposed kernel [kh, kw, c_out, c_in]
        cin = int(input_shape[-1])
        c = self.op_config
        self.out_channels = int(c["filters"])
        self.out_hw, _ = keras_geometry(tuple(int(d) for d in input_shape[1:3]),
                                        c["kernel_size"], c["strides"], c["padding"])
        kshape = tuple(int(k) for k in c["kernel_size"]) + (self.out_channels, cin)
        self._add_kernel_bias_bn(kshape)
        if self.granularity == "PL":
            reg = keras.regularizers.l2(self.clip_decay / 2) if self.clip_decay else None
            self.w_min = self.add_weight("w_min", (),
                                         initializer=keras.initializers.Constant(-1.0),
                                         regularizer=reg)
            self.w_max = self.add_weight("w_max", (),
                                         initializer=keras.initializers.Constant(1.0),
                                         regularizer=reg)
        if self.activation is not None:
            reg = keras.regularizers.l2(self.alpha_decay / 2) if self.alpha_decay else None
            self.alpha = self.add_weight("alpha", (), regularizer=reg,
                                         initializer=keras.initializers.Constant(DEFAULT_ALPHA))
        keras.layers.Layer.build(self, input_shape)  # QuantCompute.build would add its kernel

    def _bn_factor(self):
        """gamma / sqrt(moving_var + eps), and that shaped to scale the kernel's axis 2."""
        f = self.gamma / tf.sqrt(self.moving_variance + self.bn_config["epsilon"])
        return f, tf.reshape(f, (1, 1, -1, 1))

    def _op(self, x, kernel):
        c = self.op_config
        shape = tf.stack([tf.shape(x)[0], int(self.out_hw[0]), int(self.out_hw[1]),
                          int(self.out_channels)])
        return tf.nn.conv2d_transpose(x, kernel, shape, (1,) + tuple(c["strides"]) + (1,),
                                      str(c["padding"]).upper())

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:1]) + tuple(self.out_hw) + (self.out_channels,)

    def get_config(self):
        return {**super().get_config(), "kind": KIND}


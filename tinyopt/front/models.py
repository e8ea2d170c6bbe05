"""Model builders (all in ``tf_keras``, the Keras 2 that tfmot needs).

- :func:`seed_cnn`: the CNN_on_MCU seed network (20,410 parameters).
- :func:`mobilenet_v1`: MobileNetV1 as the mixed-precision paper uses it, with separate depthwise
  and pointwise Conv-BN-ReLU blocks and compute layers named
  ``conv0, dw1, pw1, ..., dw13, pw13, fc``.

Inputs are float32 in [0, 1] (see :func:`tinyopt.preprocess_images`, the one place pixels are
scaled); outputs are logits (train with ``from_logits=True``).
"""

from __future__ import annotations

import tinyopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tf_keras as keras

from tinyopt.front.architectures import MOBILENET_V1_BLOCKS


def seed_initializers(seed: int | None) -> None:
    """Seed Python, NumPy and TF so that a builder's random initial weights are reproducible
    (Keras initializers without their own seed draw from the global generators)."""
    if seed is not None:
        keras.utils.set_random_seed(seed)


def seed_cnn(input_shape=(28, 28, 1), classes: int = 10, seed: int | None = 0) -> keras.Model:
    """The seed CNN: Conv2D(12, 3x3, ReLU, valid) -> MaxPool 2x2 -> Flatten -> Dense(classes).

    Arguments:
        input_shape: (H, W, C) of the float32 [0, 1] input.
        classes: number of logits.
        seed: seeds the initial weights (None leaves the global generators alone).

    Returns:
        An uncompiled ``tf_keras`` Sequential model; 20,410 parameters for the defaults.
    """
    seed_initializers(seed)
    return keras.Sequential(
        [
            keras.layers.InputLayer(input_shape=input_shape, name="input"),
            keras.layers.Conv2D(12, (3, 3), activation="relu", padding="valid", name="conv"),
            keras.layers.MaxPooling2D((2, 2), name="pool"),
            keras.layers.Flatten(name="flatten"),
            keras.layers.Dense(classes, name="fc"),
        ],
        name="seed_cnn",
    )


def _channels(c: int, alpha: float) -> int:
    return max(1, int(c * alpha))


def mobilenet_v1(alpha: float = 1.0, resolution: int = 224, classes: int = 1000,
                 input_channels: int = 3, dropout: float = 0.2,
                 seed: int | None = 0) -> keras.Model:
    """MobileNetV1 with Conv-BN-ReLU6 blocks, depthwise and pointwise as separate layers.

    Compute layers (the policy's node order): ``conv0`` (3x3/2), then ``dw{i}`` and ``pw{i}`` for
    i = 1..13, then ``fc``. Each conv is followed by ``<name>_bn`` and ``<name>_relu`` (ReLU6: the
    PACT clip alpha of the quantized version starts at 6). Convolutions use SAME padding and no bias
    (BN follows); global average pooling and dropout precede the FC. No pretrained weights.

    Arguments:
        alpha: width multiplier (0.25, 0.5, 0.75, 1.0 in the paper).
        resolution: input height and width (128, 160, 192, 224 in the paper).
        classes: FC outputs (1000 for ImageNet without the background class).
        input_channels: 3 for RGB, 1 for (Fashion-)MNIST.
        dropout: rate before the FC (0.2 as in the paper's training recipe).
        seed: seeds the initial weights (None leaves the global generators alone).

    Returns:
        An uncompiled ``tf_keras`` functional model.
    """
    if alpha <= 0 or resolution < 1:
        raise ValueError(f"alpha must be > 0 and resolution >= 1, got {alpha}, {resolution}")
    seed_initializers(seed)
    layers = keras.layers
    inputs = keras.Input((resolution, resolution, input_channels), name="input")

    def block(x, conv, name):
        x = conv(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(max_value=6.0, name=f"{name}_relu")(x)

    x = block(inputs, layers.Conv2D(_channels(32, alpha), 3, strides=2, padding="same",
                                    use_bias=False, name="conv0"), "conv0")
    for i, (stride, out) in enumerate(MOBILENET_V1_BLOCKS, start=1):
        x = block(x, layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                                            name=f"dw{i}"), f"dw{i}")
        x = block(x, layers.Conv2D(_channels(out, alpha), 1, padding="same", use_bias=False,
                                   name=f"pw{i}"), f"pw{i}")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(classes, name="fc")(x)
    return keras.Model(inputs, outputs, name=f"mobilenet_v1_{resolution}_{alpha:g}")

"""Architecture tables that need no TensorFlow: the Keras builders (:mod:`tinyopt.front.models`),
the memory model's node descriptions and the synthetic integer graphs all read them here."""

# MobileNetV1 (Howard et al. 2017): (stride, pointwise output channels at alpha=1) for the 13
# depthwise-separable blocks.
MOBILENET_V1_BLOCKS = [
    (1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512),
    (1, 512), (1, 512), (1, 512), (1, 512), (1, 512), (2, 1024), (1, 1024),
]

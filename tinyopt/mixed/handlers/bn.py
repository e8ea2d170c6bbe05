"""Standalone BatchNormalization blocks: a BN that does not directly follow a compute layer, or
whose input is read elsewhere too, optionally with its ReLU. A policy layer: an integer
per-channel affine, built, lowered and planned as the compute handler's 1 x 1 depthwise of ones
(:data:`tinyopt.mixed.handlers.compute.BN_CONFIG`) with the BN kept (ICN) or folded (FB); its
fake-quant layer is a QuantCompute, so its integer view is the compute handler's.
"""

from __future__ import annotations

from tinyopt.mixed.handlers import compute
from tinyopt.mixed.handlers.base import Block, Handler, register, take_relu


def _read(layer, srcs, r):
    if type(layer) is not r.keras.layers.BatchNormalization:
        return None
    block = Block(layer.name, "bn", layer, srcs, bn=layer, members=[layer.name])
    compute.check_bn_axis(block)
    take_relu(block, r)
    return [block]


register(Handler("bn", ("bn",), 10, read=_read, build=compute.build, plan=compute.plan,
                 policy=True, supported="standalone BatchNormalization (optionally with its "
                                        "ReLU/ReLU6)"))

"""Integer graphs with random but valid parameters, for exercising the C export
(:mod:`tinyopt.deploy.codegen`) on every bit width while :func:`tinyopt.to_integer_graph`
(fake-quant model -> IntegerGraph) is not available.

Weight codes and zero points are random; biases and multipliers are calibrated layer by layer on
real input codes with the simulator (:func:`calibrate_layer`), so that activations spread over
their codes and a bit-exactness check is not vacuous. These are NOT trained networks: their
outputs mean nothing, only their arithmetic and their costs do.
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.arith import same_padding
from tinyopt.integer.graph import IntegerGraph, IntegerLayer


def calibrate_layer(graph: IntegerGraph, layer: IntegerLayer, x: np.ndarray, rng,
                    per_channel: bool, negative_fraction: float) -> None:
    """Set the bias and (m0, n0) of ``layer`` (the last of ``graph``) from its accumulators on
    ``x``, so that its outputs spread over the codes: per channel a random 20-60 % of the outputs
    clamp to the lowest code and the 99th percentile maps to the top code.

    Arguments:
        graph: the graph so far; ``layer`` must be its last layer, with weights set.
        layer: the layer to calibrate (modified in place: bias, m0, n0).
        x: integer input codes of ``graph``.
        rng: a numpy Generator.
        per_channel: per-channel multipliers (ICN) or one multiplier (FB).
        negative_fraction: share of per-channel multipliers made negative.
    """
    from tinyopt.integer import sim
    from tinyopt.integer.arith import m0_n0
    keep = (layer.requantize, layer.out_bits, layer.out_signed, layer.out_zero_point)
    layer.requantize, layer.out_bits, layer.out_signed, layer.out_zero_point = False, 32, True, 0
    layer.bias = np.zeros(layer.out_channels, np.int32)
    phi = sim.run(graph, x).reshape(-1, layer.out_channels).astype(np.float64)
    layer.requantize, layer.out_bits, layer.out_signed, layer.out_zero_point = keep
    c = layer.out_channels
    if not layer.requantize:  # raw logits: a small random bias only
        spread = np.percentile(phi, 90, axis=0) - np.percentile(phi, 10, axis=0)
        layer.bias = np.round(rng.uniform(-0.2, 0.2, c) * (spread + 1)).astype(np.int32)
        return
    lo, hi = layer.out_range
    span = hi - lo
    sign = np.where(rng.random(c) < negative_fraction, -1.0, 1.0)
    cut = rng.uniform(0.2, 0.6, c)  # the share of outputs at (or below) the lowest code
    q = np.array([np.quantile(sign[k] * phi[:, k], cut[k]) for k in range(c)])
    bias = -sign * q
    top = np.array([np.quantile(sign[k] * (phi[:, k] + bias[k]), 0.99) for k in range(c)])
    mult = sign * span / np.maximum(top, 1.0)
    if not per_channel:
        mult = np.array([np.median(np.abs(mult))])  # FB: one positive multiplier
        bias = -np.array([np.quantile(phi[:, k], cut[k]) for k in range(c)])
    layer.bias = np.round(bias).astype(np.int32)
    layer.m0, layer.n0 = m0_n0(mult)


def mobilenet_graph(policy, x_calib: np.ndarray, alpha: float = 0.25, resolution: int = 32,
                    classes: int = 10, input_channels: int = 1, input_zero_point: int = 0,
                    negative_fraction: float = 0.1, seed: int = 0) -> IntegerGraph:
    """A MobileNetV1-style IntegerGraph with the bits of ``policy`` and RANDOM parameters.

    The architecture is :func:`tinyopt.mobilenet_v1` (conv0 3x3/2, 13 x (dw 3x3, pw 1x1),
    SAME padding, average pool over the last feature map, flatten, fc), in CMix-NN form
    (docs/integer.md#cmix-nn-kernels):
    unsigned activations with zero point 0, per-layer (PL) weight zero points, folded (FB: one m0,
    n0) or ICN (per-channel m0, n0, a ``negative_fraction`` of them negative) as ``policy.fold``
    says, ``"floor"`` rounding, depthwise padding with integer 0 (``pad_mode="zero"``), and raw
    int32 logits for the fc (docs/integer.md#logits-of-the-last-layer). Weight codes are random (a
    clipped normal around a random
    zero point); biases and multipliers are calibrated layer by layer on ``x_calib`` with the
    simulator so that activations spread over their codes.

    Arguments:
        policy: a PL :class:`tinyopt.Policy` over conv0, dw1, pw1, ..., pw13, fc.
        x_calib: integer input codes [N, resolution, resolution, input_channels], 8-bit unsigned.
        alpha, resolution, classes, input_channels: the architecture.
        input_zero_point: zero point of the 8-bit input.
        negative_fraction: share of ICN channels with a negative multiplier (gamma < 0).
        seed: random seed.

    Returns:
        A validated IntegerGraph (``meta["random_parameters"] = True``).

    Raises:
        ValueError: the policy is not PL or its layers are not this architecture's.
    """
    from tinyopt.front.architectures import MOBILENET_V1_BLOCKS
    from tinyopt.integer import sim
    if policy.granularity != "PL":
        raise ValueError("mobilenet_graph builds per-layer (PL) graphs; pass a PL policy")
    rng = np.random.default_rng(seed)
    ch = lambda c: max(1, int(c * alpha))  # as tinyopt.front.models._channels
    names = ["conv0"] + [f"{k}{i}" for i in range(1, 14) for k in ("dw", "pw")] + ["fc"]
    if list(policy.layers) != names:
        raise ValueError(f"the policy's layers must be {names}, got {list(policy.layers)}")
    graph = IntegerGraph(layers=[], input_shape=(resolution, resolution, input_channels),
                         input_bits=8, input_zero_point=int(input_zero_point),
                         rounding="floor", name=f"mobilenet_{resolution}_{alpha:g}_mixed",
                         meta={"random_parameters": True, "seed": seed})
    shape, bits, zp = graph.input_shape, 8, int(input_zero_point)
    # the calibration images' codes at the current tensor: each layer is calibrated and run on
    # its own input (one simulator pass per layer, not one pass through all earlier layers)
    acts = np.asarray(x_calib)

    def tail(*layers):
        return IntegerGraph(layers=list(layers), input_shape=shape, input_bits=bits,
                            input_zero_point=zp, rounding="floor", name="calibration")

    def add(kind, name, out_shape, wshape, **kw):
        nonlocal shape, bits, zp, acts
        i = names.index(name)
        wb, last = policy.weight_bits[i], i == len(names) - 1
        layer = IntegerLayer(kind=kind, name=name, in_shape=shape, out_shape=out_shape,
                             in_bits=bits, in_zero_point=zp, out_bits=32 if last else
                             policy.act_bits[i], out_signed=last, requantize=not last, **kw)
        top = (1 << wb) - 1
        half = 1 << (wb - 1)  # a zero point near the middle keeps W - Z_w of both signs
        zw = half - int(rng.integers(0, 2)) if wb <= 4 else half + int(rng.integers(-16, 17))
        codes = np.clip(np.round(rng.normal(zw, max(top / 4, 0.5), wshape)), 0, top)
        layer.set_weights(codes.astype(np.int64), wb)
        layer.weight_zero_point = np.array([zw], np.int32)
        layer.weight_scale = np.array([1.0])
        graph.layers.append(layer)
        step = tail(layer)
        calibrate_layer(step, layer, acts, rng, policy.fold[i] == "ICN" and not last,
                        negative_fraction)
        if not last:
            acts = np.asarray(sim.run(step, acts)).reshape(len(acts), *out_shape)
        shape, bits, zp = tuple(out_shape), layer.out_bits, layer.out_zero_point

    h = -(-resolution // 2)
    top, bottom = same_padding(resolution, 3, 2)
    c = ch(32)
    add("conv2d", "conv0", (h, h, c), (c, 3, 3, input_channels), stride=(2, 2),
        padding=(top, bottom, top, bottom))
    for i, (stride, width) in enumerate(MOBILENET_V1_BLOCKS, start=1):
        h2 = -(-h // stride)
        top, bottom = same_padding(h, 3, stride)
        add("depthwise", f"dw{i}", (h2, h2, c), (3, 3, c), stride=(stride, stride),
            padding=(top, bottom, top, bottom), pad_mode="zero")
        h, cout = h2, ch(width)
        add("pointwise", f"pw{i}", (h, h, cout), (cout, 1, 1, c))
        c = cout
    pool = IntegerLayer(kind="avgpool", name="pool", in_shape=shape, out_shape=(1, 1, c),
                        in_bits=bits, out_bits=bits, pool_size=(h, h), stride=(h, h))
    flat = IntegerLayer(kind="flatten", name="flatten", in_shape=(1, 1, c), out_shape=(c,),
                        in_bits=bits, out_bits=bits)
    graph.layers += [pool, flat]
    acts = np.asarray(sim.run(tail(pool, flat), acts)).reshape(len(acts), c)
    shape = (c,)
    add("dense", "fc", (classes,), (classes, c))
    graph.validate()
    return graph


def per_channel_twin(graph: IntegerGraph, seed: int = 3) -> IntegerGraph:
    """The per-channel (PC) twin of a per-layer synthetic graph, for measuring what PC costs.

    Every compute layer gets per-channel weight zero points (the layer's own plus a random -1, 0
    or +1 per channel, clipped to the codes) and, when it requantizes, per-channel multipliers
    (ICN: the layer's multiplier times a random factor in [0.8, 1.25] per channel), as a
    per-channel quantizer would give. The weights, biases and shapes are the PL graph's; the
    outputs stay valid integer codes (clamped), as random as the PL graph's.

    Arguments:
        graph: a graph of :func:`mobilenet_graph` (or any graph with one weight zero point and
            one multiplier per layer); not modified.
        seed: random seed.

    Returns:
        A validated copy of ``graph``, named ``<name>_PC``.
    """
    import copy

    from tinyopt.integer.arith import m0_n0
    rng = np.random.default_rng(seed)
    g = copy.deepcopy(graph)
    g.name = f"{graph.name}_PC"
    for lay in g.layers:
        if lay.weights is None:
            continue
        c, top = lay.out_channels, (1 << lay.weight_bits) - 1
        zw = int(np.atleast_1d(lay.weight_zero_point)[0])
        lay.weight_zero_point = np.clip(zw + rng.integers(-1, 2, c), 0, top).astype(np.int32)
        lay.weight_scale = np.ones(c)
        if lay.requantize:
            m = np.ldexp(float(np.atleast_1d(lay.m0)[0]), int(np.atleast_1d(lay.n0)[0]) - 31)
            lay.m0, lay.n0 = m0_n0(m * rng.uniform(0.8, 1.25, c))
    g.validate()
    return g

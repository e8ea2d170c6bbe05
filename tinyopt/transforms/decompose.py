"""Depthwise-separable decomposition of trained convolutions.

Each Conv2D (k x k, Cin -> Cout, groups 1) becomes DepthwiseConv2D(k x k, depth multiplier r,
no bias, the conv's strides/padding/dilation) followed by a 1x1 Conv2D (Cin*r -> Cout, the conv's
bias and activation), initialised from the trained kernel.

Method. For every input channel c the conv computes ``sum_c conv(x_c, W[:, :, c, :])``; the
separable pair computes ``sum_c sum_m conv(x_c, D[:, :, c, m]) * P[c*r + m, :]``. So the pair is
exact iff each slice ``M_c = W[:, :, c, :]`` (reshaped k^2 x Cout) has rank <= r, and the best
initialisation is the best rank-r approximation of every ``M_c`` in the Frobenius norm, which
minimises ``||W - W_hat||_F`` overall. We compute it by alternating least squares: with D fixed, P
is a least-squares solve, then D with P fixed; each half-step cannot increase the error, so the
error falls monotonically with the iterations (a test checks it) towards the truncated SVD, which
is the optimum (Eckart-Young). ALS is initialised deterministically from the r columns of each
``M_c`` with the largest norms. ``rank=1`` is the standard depthwise-separable layer (what the
seed trained from scratch as SeparableConv2D).

The decomposed model is then fine-tuned (``tinyopt.fit``); we report accuracy right after
initialisation, after fine-tuning, and for the same architecture trained from scratch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import tinyopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tf_keras as keras

from tinyopt.transforms.keras_graph import copy_layer, keep, rebuild


def als(kernel: np.ndarray, rank: int = 1, iterations: int = 50, record: bool = False):
    """Best rank-``rank`` factorisation of every input-channel slice of a conv kernel.

    Arguments:
        kernel: Conv2D kernel [kh, kw, cin, cout].
        rank: depth multiplier r of the depthwise layer (1 <= r <= min(kh*kw, cout)).
        iterations: ALS sweeps (one sweep = solve P, then solve D).
        record: also return the relative error ``||W - W_hat|| / ||W||`` after every sweep.

    Returns:
        ``(depthwise [kh, kw, cin, r], pointwise [1, 1, cin*r, cout])``, plus the error list
        when ``record``.

    Raises:
        ValueError: bad shapes or rank.
    """
    if kernel.ndim != 4:
        raise ValueError(f"expected a Conv2D kernel [kh, kw, cin, cout], got shape {kernel.shape}")
    kh, kw, cin, cout = kernel.shape
    if not 1 <= rank <= min(kh * kw, cout):
        raise ValueError(f"rank must be in [1, {min(kh * kw, cout)}] for kernel {kernel.shape}")
    w = kernel.astype(np.float64)
    m = np.transpose(w.reshape(kh * kw, cin, cout), (1, 0, 2))  # [cin, k2, cout]
    norms = np.linalg.norm(m, axis=1)  # [cin, cout]
    cols = np.argsort(-norms, axis=1, kind="stable")[:, :rank]  # largest columns per channel
    d = np.take_along_axis(m, cols[:, None, :], axis=2)  # [cin, k2, r]
    d = d + (np.abs(d).sum(axis=1, keepdims=True) == 0)  # an all-zero channel: any nonzero start
    total = np.linalg.norm(w) or 1.0
    errors, eye = [], np.eye(rank) * 1e-12
    for _ in range(iterations):
        # P = argmin ||M - D P||: normal equations per channel (tiny r x r systems).
        p = np.linalg.solve(np.swapaxes(d, 1, 2) @ d + eye, np.swapaxes(d, 1, 2) @ m)
        # D = argmin ||M - D P||: D^T = solve(P P^T, P M^T).
        d = np.swapaxes(np.linalg.solve(p @ np.swapaxes(p, 1, 2) + eye,
                                        p @ np.swapaxes(m, 1, 2)), 1, 2)
        if record:
            errors.append(float(np.linalg.norm(m - d @ p) / total))
    p = np.linalg.solve(np.swapaxes(d, 1, 2) @ d + eye, np.swapaxes(d, 1, 2) @ m)
    depthwise = np.transpose(d, (1, 0, 2)).reshape(kh, kw, cin, rank)
    pointwise = p.reshape(cin * rank, cout)[None, None]
    out = (depthwise.astype(np.float32), pointwise.astype(np.float32))
    return (*out, errors) if record else out


def reconstruct(depthwise: np.ndarray, pointwise: np.ndarray) -> np.ndarray:
    """The full kernel [kh, kw, cin, cout] the separable pair computes."""
    kh, kw, cin, r = depthwise.shape
    p = pointwise.reshape(cin, r, -1)
    return np.einsum("hwcr,cro->hwco", depthwise, p)


def _decomposable(layer) -> bool:
    return (type(layer) is keras.layers.Conv2D and layer.groups == 1
            and layer.kernel_size != (1, 1))


@dataclass
class DecomposeResult:
    """What :func:`decompose` returns.

    Attributes:
        model: the new model (every k x k Conv2D as DepthwiseConv2D + 1x1 Conv2D).
        decomposition: per replaced layer ``{"layer", "rank", "relative_error"}`` (the relative
            reconstruction error of the least-squares initialisation; None without it).
    """

    model: keras.Model
    decomposition: list[dict]


def decompose(model: keras.Model, rank: int = 1, iterations: int = 50,
              initialise: bool = True) -> DecomposeResult:
    """Replace every k x k Conv2D (k > 1) by DepthwiseConv2D + 1x1 Conv2D.

    Arguments:
        model: a sequential-topology tf_keras model.
        rank: depth multiplier of the depthwise layers (capped per layer at min(k*k, Cout)).
        iterations: ALS sweeps for the initialisation.
        initialise: False leaves fresh random weights (the "from scratch" architecture).

    Returns:
        A :class:`DecomposeResult`: the new model and, per replaced layer, the relative
        reconstruction error of the initialisation.

    Raises:
        ValueError: no Conv2D to decompose, or a non-linear topology.
    """
    report = []

    def rewrite(layers, i):
        layer = layers[i]
        if not _decomposable(layer):
            return keep(layers, i)
        kernel = layer.get_weights()[0]
        kh, kw, cin, cout = kernel.shape
        r = min(rank, kh * kw, cout)
        cfg = layer.get_config()
        dw = keras.layers.DepthwiseConv2D(
            layer.kernel_size, strides=layer.strides, padding=cfg["padding"],
            depth_multiplier=r, dilation_rate=layer.dilation_rate, use_bias=False,
            name=f"{layer.name}_dw")
        pw = copy_layer(layer, name=f"{layer.name}_pw", kernel_size=(1, 1), strides=(1, 1),
                        padding="valid", dilation_rate=(1, 1))
        if not initialise:
            report.append({"layer": layer.name, "rank": r, "relative_error": None})
            return [(dw, None), (pw, None)], 1
        d, p, errors = als(kernel, r, iterations, record=True)
        report.append({"layer": layer.name, "rank": r, "relative_error": errors[-1]})
        bias = layer.get_weights()[1:] if layer.use_bias else []
        return [(dw, [d]), (pw, [p, *bias])], 1

    new = rebuild(model, rewrite, name=f"{model.name}_separable")
    if not report:
        raise ValueError(f"model {model.name!r} has no k x k Conv2D layer to decompose")
    return DecomposeResult(new, report)

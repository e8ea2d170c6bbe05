"""Integer arithmetic shared by every integer-path module: fixed-point multipliers (ours and
TFLite's), packed sizes, SAME padding, bias codes.

See ``docs/integer.md`` for the requantization the multipliers feed.
"""

from __future__ import annotations

import numpy as np


def m0_n0(multiplier) -> tuple[np.ndarray, np.ndarray]:
    """docs/integer.md#fixed-point-multiplier-m0-and-n0 (``_get_m0_nexp``): M = M0 * 2^N0 with 0.5
    <= |M0| < 1, m0 = clamp(round(M0 *
    2^31)) as int32 (round half to even, the sign kept in m0), N0 clamped to int8; M = 0 -> (0, 0).

    Arguments:
        multiplier: real multiplier(s) M (scalar or 1-D).

    Returns:
        (m0 int32 array, n0 int8 array), with M ~= m0 * 2^(n0 - 31).
    """
    m = np.atleast_1d(np.asarray(multiplier, np.float64))
    if not np.all(np.isfinite(m)):
        raise ValueError(f"multipliers must be finite, got {m[~np.isfinite(m)][:5]}")
    mant, exp = np.frexp(m)  # m = mant * 2^exp, 0.5 <= |mant| < 1
    m0 = np.clip(np.round(mant * 2.0 ** 31), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
    n0 = np.clip(np.where(m == 0, 0, exp), -128, 127).astype(np.int8)
    return m0, n0


def tflite_quantize_multiplier(real) -> tuple[np.ndarray, np.ndarray]:
    """TFLite's ``QuantizeMultiplier``: real = q * 2^(shift - 31), q in [2^30, 2^31), q rounded
    half away from zero; q = 2^31 renormalised; shift < -31 gives (0, 0)."""
    real = np.atleast_1d(np.asarray(real, np.float64))
    mant, exp = np.frexp(real)
    q = np.sign(mant) * np.floor(np.abs(mant) * 2.0 ** 31 + 0.5)
    over = np.abs(q) == 2.0 ** 31
    q = np.where(over, q / 2, q)
    exp = np.where(over, exp + 1, exp)
    tiny = exp < -31
    q, exp = np.where(tiny, 0, q), np.where(tiny, 0, exp)
    return q.astype(np.int32), exp.astype(np.int8)


def macs(out_elements: int, weight_elements: int, out_channels: int) -> int:
    """Multiply-accumulates per image of a conv, depthwise or dense layer, the one formula every
    counter uses: each output value takes weight_elements / out_channels products (conv:
    kh kw c_in; depthwise: kh kw; dense: the input features)."""
    return int(out_elements) * (int(weight_elements) // int(out_channels))


def quantize_real(x, scale: float, zero_point: int, dtype=np.int8) -> np.ndarray:
    """Real values -> integer codes as TFLite's QUANTIZE does: round half away from zero of
    x / scale, plus the zero point, clamped to ``dtype``."""
    info = np.iinfo(dtype)
    v = np.asarray(x) / scale  # in the images' own float type, as before the move
    q = np.sign(v) * np.floor(np.abs(v) + 0.5) + int(zero_point)
    return np.clip(q, info.min, info.max).astype(dtype)


# --------------------------------------------------------------------------------------------
# Packed sizes: the one place that says how many bytes a packed tensor takes
# --------------------------------------------------------------------------------------------

def packed_bytes(elements: int, bits: int) -> int:
    """Bytes of ``elements`` values of ``bits`` each, packed with no padding: ceil(n * bits / 8)."""
    return -(-int(elements) * int(bits) // 8)


def weight_rows(kind: str, shape) -> tuple[int, int]:
    """(rows, codes per row) of a weight tensor as the integer graph stores it (each row starts
    on a byte boundary, as CMix-NN's kernels read it; ``docs/integer.md``).

    Arguments:
        kind: "conv2d", "pointwise", "dense" ([c_out][...] rows, one per output channel) or
            "depthwise" ([ky][kx][c]: one row per tap).
        shape: the weight shape in the integer graph's layout.
    """
    shape = [int(d) for d in shape]
    if kind == "depthwise":
        return shape[0] * shape[1], shape[2]
    rows, row = shape[0], 1
    for d in shape[1:]:
        row *= d
    return rows, row


def packed_weight_bytes(kind: str, shape, bits: int) -> int:
    """Bytes of a weight tensor packed row by row (see :func:`weight_rows`)."""
    rows, row = weight_rows(kind, shape)
    return rows * packed_bytes(row, bits)


def same_padding(size: int, k: int, stride: int, out: int | None = None) -> tuple[int, int]:
    """TensorFlow's SAME padding of one dimension: (before, after), the odd one after.

    Arguments:
        size: input length; k: kernel length; stride: stride.
        out: output length (default ceil(size / stride), what SAME gives).
    """
    out = -(-int(size) // int(stride)) if out is None else int(out)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


# --------------------------------------------------------------------------------------------
# Biases: what the integer kernels add to the accumulator
# --------------------------------------------------------------------------------------------

# B_q is clamped to +-2^30 (not the full int32 range) so that Phi + B_q still fits the int32
# accumulator of the integer kernels.
BIAS_LIMIT = 1 << 30


def bn_gain(bn: dict) -> np.ndarray:
    """g = gamma / sqrt(moving_variance + epsilon) per channel (float64) of a BN record
    (``gamma``, ``moving_variance``, ``epsilon``)."""
    return np.asarray(bn["gamma"], np.float64) / np.sqrt(
        np.asarray(bn["moving_variance"], np.float64) + float(bn["epsilon"]))


def effective_bias(bias, bn: dict | None = None, fold: str = "FB") -> np.ndarray:
    """The bias the integer kernel adds to its accumulator, in real units (float64), the one
    export-side definition (the training forward pass computes the same in TensorFlow,
    :meth:`tinyopt.mixed.layers.QuantCompute.quantize_bias`); ``docs/integer.md#bias``.

    - no BN: the layer's bias b;
    - FB (BN folded into the kernel): beta + (b - mu) g;
    - ICN (BN kept as a per-channel multiplier g): b - mu + beta / g, so that
      g (acc + B) = gamma (t - mu) / sigma + beta. Channels with gamma = 0 give a non-finite
      value; their output is beta whatever the bias.

    Arguments:
        bias: the layer's float bias per output channel (zeros if it has none).
        bn: None, or a dict with gamma, beta, moving_mean, moving_variance, epsilon.
        fold: "FB" or "ICN" (ignored without BN).
    """
    b = np.asarray(bias, np.float64)
    if bn is None:
        return b
    g = bn_gain(bn)
    mu, beta = np.asarray(bn["moving_mean"], np.float64), np.asarray(bn["beta"], np.float64)
    if fold == "FB":
        return beta + (b - mu) * g
    with np.errstate(divide="ignore", invalid="ignore"):
        return b - mu + beta / g


def bias_codes(bias, input_scale, weight_scale, where: str = "", notes: dict | None = None
               ) -> np.ndarray:
    """int32 bias codes B_q = round(B / (S_x S_w)) (half to even), clamped to +-2^30
    (``docs/integer.md#bias``).

    Arguments:
        bias: the effective float bias per output channel (:func:`effective_bias`).
        input_scale: S_x (scalar).
        weight_scale: S_w, scalar (PL) or per channel (PC; any shape with one entry per channel).
        where: the layer name, for the warning.
        notes: a dict that receives ``bias_clamped_channels`` when some channel is clamped.

    Returns:
        int32 array, one entry per output channel. A channel whose code is not finite or
        exceeds 2^30 (BN gamma ~ 0) is clamped with a warning naming the layer and channels.
    """
    b = np.asarray(bias, np.float64)
    denom = float(input_scale) * np.asarray(weight_scale, np.float64).reshape(-1)
    if denom.size not in (1, b.size):
        raise ValueError(f"{where or 'bias'}: {denom.size} weight scales for {b.size} bias "
                         "entries")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        q = np.round(b / denom)
    bad = np.flatnonzero(~np.isfinite(q) | (np.abs(q) > BIAS_LIMIT))
    if bad.size:
        import warnings
        warnings.warn(f"{where or 'layer'}: integer bias of channels {bad.tolist()} exceeds "
                      "2^30 (BN gamma ~ 0?) and is clamped; those channels may differ from the "
                      "fake-quant model")
        if notes is not None:
            notes["bias_clamped_channels"] = bad.tolist()
        q = np.where(np.isfinite(q), q, np.sign(np.nan_to_num(q)) * BIAS_LIMIT)
    return np.clip(q, -BIAS_LIMIT, BIAS_LIMIT).astype(np.int32)

"""Sub-byte fake quantizers with custom gradients (``docs/mixed_precision.md#quantizers``).

Every quantizer is affine and unsigned: a real value t is represented as ``S * (T - Z)`` with the
integer code T in [0, 2^Q - 1] and an integer zero point Z in [0, 2^Q - 1], so exactly 2^Q levels
exist and real 0.0 is exactly representable (T = Z). The functions here are the ONE place where
codes, scales and zero points are computed: the fake-quant value is rebuilt from the codes
(``S * (T - Z)``), and :func:`tinyopt.integer_params` hands the same codes to the integer
conversion.

- :func:`weight_pl`: weights per layer (PL), learnable clip a <= 0 <= b, PACT-style gradients
  (STE inside the clip, the clipped gradients summed into a and b).
- :func:`weight_pc`: weights per output channel (PC), min/max range extended to include 0, STE.
- :func:`pact`: activations, unsigned, Z = 0, S = alpha / (2^Q - 1), **floor**; learnable alpha.
- :func:`input_quant`: the 8-bit network input quantizer (fixed range, round, STE).

Each quantizer returns the fake-quant tensor, or with ``params=True`` a ``(fake, QParams)`` pair.
Rounding: weights and the input use ``tf.round`` (half to even, as torch.round); activations use
``tf.math.floor``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import tinyopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf

from tinyopt.mixed.policy import ALLOWED_BITS

ALPHA_MIN = 1e-3  # a PACT clip below this is treated as this (keeps S > 0)
# A weight range narrower than this counts as zero (S = 1): TF flushes denormals to zero on CPU,
# so a range near float32's smallest normal would give S = 0 and NaN codes.
SPAN_MIN = 1e-30


@dataclass
class QParams:
    """The integer view of a quantized tensor: real value = scale * (codes - zero_point).

    Attributes:
        codes: unsigned integer codes (int32 tensor or array) in [0, 2^bits - 1].
        scale: scalar (per layer) or one per output channel, broadcastable against ``codes``.
        zero_point: integer zero point(s), same shape as ``scale``.
        bits: the bit width Q.
    """

    codes: object
    scale: object
    zero_point: object
    bits: int

    def numpy(self) -> "QParams":
        """The same parameters as NumPy arrays (codes and zero points int32, scale float64)."""
        def arr(t, dtype):
            return np.asarray(t.numpy() if hasattr(t, "numpy") else t).astype(dtype)
        return QParams(arr(self.codes, np.int32), arr(self.scale, np.float64),
                       arr(self.zero_point, np.int32), self.bits)


def check_bits(bits: int, what: str = "bits") -> int:
    """Return ``bits`` as int or raise ValueError if it is not 2, 4 or 8."""
    if int(bits) != bits or int(bits) not in ALLOWED_BITS:
        raise ValueError(f"{what} must be one of {ALLOWED_BITS}, got {bits!r}")
    return int(bits)


def levels(bits: int) -> int:
    """The largest code 2^Q - 1."""
    return 2 ** int(bits) - 1


def affine_params(lo, hi, bits: int):
    """Scale and zero point of the grid covering [lo, hi] (broadcast), extended to include 0.

    S = (hi - lo) / (2^Q - 1) (a zero range, or one below ``SPAN_MIN``, gives S = 1, as the repo
    does for zero), Z = round(-lo / S)
    clamped to [0, 2^Q - 1]. Returns float32 tensors (scale, zero_point)."""
    n = float(levels(bits))
    lo = tf.minimum(tf.cast(lo, tf.float32), 0.0)
    hi = tf.maximum(tf.cast(hi, tf.float32), 0.0)
    span = hi - lo
    scale = tf.where(span > SPAN_MIN, span / n, tf.ones_like(span))
    zero = tf.clip_by_value(tf.round(-lo / scale), 0.0, n)
    return scale, zero


def affine_codes(t, scale, zero, bits: int):
    """Codes T = clamp(round(t / S) + Z, 0, 2^Q - 1) as float32 (exact small integers)."""
    return tf.clip_by_value(tf.round(t / scale) + zero, 0.0, float(levels(bits)))


def _result(fake, codes, scale, zero, bits, params):
    if not params:
        return fake
    return fake, QParams(tf.cast(codes, tf.int32), scale, tf.cast(zero, tf.int32), bits)


# ----------------------------------------------------------------------------- weights, PL

def weight_pl(w, a, b, bits: int, params: bool = False):
    """Per-layer weight quantizer with learnable clip (PerLayerAsymPACT,
    docs/mixed_precision.md#pl-weights-with-learnable-clips).

    Forward: a and b are clamped to a <= 0 <= b, the weights clipped to [a, b]; the grid spans
    [min, max] of the clipped weights extended to include 0 (so a clip outside the data does not
    waste levels). Backward: dL/dw passes where a < w < b; dL/db sums dL/dw_hat over w >= b and
    dL/da over w <= a (the grid's own dependence on a, b is ignored, as in PACT).

    Arguments:
        w: weight tensor (any shape).
        a, b: scalar clip variables (lower, upper).
        bits: 2, 4 or 8.
        params: also return the :class:`QParams` (scalar scale and zero point).

    Returns:
        The fake-quant weights, or ``(fake, QParams)``.
    """
    bits = check_bits(bits)
    w = tf.convert_to_tensor(w, tf.float32)

    @tf.custom_gradient
    def _op(w, a, b):
        a_c, b_c = tf.minimum(a, 0.0), tf.maximum(b, 0.0)
        wc = tf.clip_by_value(w, a_c, b_c)
        scale, zero = affine_params(tf.reduce_min(wc), tf.reduce_max(wc), bits)
        codes = affine_codes(wc, scale, zero, bits)
        fake = scale * (codes - zero)

        def grad(dy, *_):  # the codes, scale and zero point outputs carry no gradient
            inside = tf.logical_and(w > a_c, w < b_c)
            dw = tf.where(inside, dy, tf.zeros_like(dy))
            da = tf.reduce_sum(tf.where(w <= a_c, dy, tf.zeros_like(dy)))
            db = tf.reduce_sum(tf.where(w >= b_c, dy, tf.zeros_like(dy)))
            # a (b) is clamped to <= 0 (>= 0): no gradient pushes it across zero from outside.
            da = tf.where(a > 0.0, tf.zeros_like(da), da)
            db = tf.where(b < 0.0, tf.zeros_like(db), db)
            return dw, tf.reshape(da, tf.shape(a)), tf.reshape(db, tf.shape(b))

        return (fake, codes, scale, zero), grad

    fake, codes, scale, zero = _op(w, tf.convert_to_tensor(a, tf.float32),
                                   tf.convert_to_tensor(b, tf.float32))
    return _result(fake, codes, scale, zero, bits, params)


# ----------------------------------------------------------------------------- weights, PC

def weight_pc(w, bits: int, reduce_axes, params: bool = False):
    """Per-output-channel weight quantizer (PerChannelsAsymMinMax,
    docs/mixed_precision.md#pc-weights), range [min, max]
    of each channel extended to include 0 (so a one-signed channel still gets Z in range).

    Arguments:
        w: weight tensor.
        bits: 2, 4 or 8.
        reduce_axes: the axes that are NOT output channels (Conv2D kernel: (0, 1, 2); Dense:
            (0,); DepthwiseConv2D: (0, 1)).
        params: also return :class:`QParams` (scale and zero point keep dims, broadcastable).

    Returns:
        The fake-quant weights (STE: the gradient passes unchanged), or ``(fake, QParams)``.
    """
    bits = check_bits(bits)
    w = tf.convert_to_tensor(w, tf.float32)
    axes = list(reduce_axes)

    @tf.custom_gradient
    def _op(w):
        scale, zero = affine_params(tf.reduce_min(w, axes, keepdims=True),
                                    tf.reduce_max(w, axes, keepdims=True), bits)
        codes = affine_codes(w, scale, zero, bits)
        return (scale * (codes - zero), codes, scale, zero), lambda dy, *_: dy

    fake, codes, scale, zero = _op(w)
    return _result(fake, codes, scale, zero, bits, params)


# ----------------------------------------------------------------------------- activations

def pact(x, alpha, bits: int, params: bool = False):
    """PACT activation quantizer (LearnedClippedLinearQuantization,
    docs/mixed_precision.md#pact-activations-with-floor).

    Forward: y = clamp(x, 0, alpha); code Y = floor(y (2^Q - 1) / alpha) (and exactly 2^Q - 1
    where x >= alpha, so float rounding of alpha / alpha cannot lose the top level); value
    Y * S with S = alpha / (2^Q - 1), Z = 0. Backward: dL/dx passes where 0 < x < alpha;
    dL/dalpha sums dL/dy over x >= alpha.

    Arguments:
        x: pre-activation tensor.
        alpha: scalar clip (values below ``ALPHA_MIN`` act as ``ALPHA_MIN``).
        bits: 2, 4 or 8.
        params: also return :class:`QParams` (codes of x, scalar scale, zero point 0).

    Returns:
        The fake-quant activations, or ``(fake, QParams)``.
    """
    bits = check_bits(bits)
    n = float(levels(bits))
    x = tf.convert_to_tensor(x, tf.float32)

    @tf.custom_gradient
    def _op(x, alpha):
        al = tf.maximum(alpha, ALPHA_MIN)
        scale = al / n
        codes = tf.where(x >= al, n, tf.clip_by_value(tf.floor(tf.maximum(x, 0.0) / scale), 0.0, n))
        fake = codes * scale

        def grad(dy, *_):
            dx = tf.where(tf.logical_and(x > 0.0, x < al), dy, tf.zeros_like(dy))
            dalpha = tf.reduce_sum(tf.where(x >= al, dy, tf.zeros_like(dy)))
            return dx, tf.reshape(dalpha, tf.shape(alpha))

        return (fake, codes, scale), grad

    fake, codes, scale = _op(x, tf.convert_to_tensor(alpha, tf.float32))
    return _result(fake, codes, scale, tf.zeros_like(scale), bits, params)


def pact_signed(x, alpha, bits: int, params: bool = False):
    """The signed counterpart of :func:`pact` for linear (no-ReLU) activations in the middle of a
    network: a linear bottleneck, a residual branch before its add.

    Forward: code q = clamp(floor(x / S), -2^(Q-1), 2^(Q-1) - 1), S = alpha / 2^(Q-1), value q S
    (floor, as the integer kernels' requantization). The integer graph stores q + 2^(Q-1) as an
    unsigned code with zero point 2^(Q-1), so every kernel and packing of unsigned codes applies.
    Backward: dL/dx passes where -alpha <= x < alpha; dL/dalpha sums dL/dy * sign(x) outside.

    Arguments, Returns: as :func:`pact` (``QParams`` codes unsigned, zero point 2^(Q-1)).
    """
    bits = check_bits(bits)
    half = float(2 ** (bits - 1))
    x = tf.convert_to_tensor(x, tf.float32)

    @tf.custom_gradient
    def _op(x, alpha):
        al = tf.maximum(alpha, ALPHA_MIN)
        scale = al / half
        codes = tf.clip_by_value(tf.floor(x / scale), -half, half - 1.0)
        fake = codes * scale

        def grad(dy, *_):
            inside = tf.logical_and(x >= -al, x < al)
            dx = tf.where(inside, dy, tf.zeros_like(dy))
            dalpha = tf.reduce_sum(tf.where(inside, tf.zeros_like(dy), dy * tf.sign(x)))
            return dx, tf.reshape(dalpha, tf.shape(alpha))

        return (fake, codes + half, scale), grad

    fake, codes, scale = _op(x, tf.convert_to_tensor(alpha, tf.float32))
    return _result(fake, codes, scale, tf.zeros_like(scale) + half, bits, params)


def avg_pool_floor(x, scale, bits: int, pool_size=None, strides=None, signed: bool = False):
    """Average pooling of activations on the grid ``scale`` the way the integer kernels do it:
    codes X = x / S, Y = floor(sum(X) / count), value Y * S. ``pool_size=None`` pools globally
    over every axis but the batch and the channels (GlobalAveragePooling2D on [N, H, W, C],
    GlobalAveragePooling1D on [N, T, C]; output [N, C]); otherwise VALID padding (every window
    full).
    ``signed``: the grid of :func:`pact_signed` (codes in [-2^(Q-1), 2^(Q-1) - 1]; the integer
    kernel floors the stored codes q + 2^(Q-1), which is the same). The gradient is that of the
    plain average."""
    n = float(levels(check_bits(bits)))
    lo = 0.0
    if signed:
        lo, n = -float(2 ** (bits - 1)), float(2 ** (bits - 1) - 1)
    x = tf.convert_to_tensor(x, tf.float32)
    scale = tf.convert_to_tensor(scale, tf.float32)
    axes = list(range(1, x.shape.rank - 1))  # global pooling: all but batch and channels

    @tf.custom_gradient
    def _op(x):
        codes = tf.round(x / scale)  # exact: x is S * integer
        if pool_size is None:
            count = tf.cast(tf.reduce_prod(tf.shape(x)[1:-1]), tf.float32)
            total = tf.reduce_sum(codes, axis=axes)
        else:
            count = float(np.prod(pool_size))
            total = tf.round(tf.nn.avg_pool2d(codes, pool_size, strides, "VALID") * count)
        out = tf.clip_by_value(tf.floor(total / count), lo, n) * scale

        def grad(dy):
            with tf.GradientTape() as tape:
                tape.watch(x)
                m = tf.reduce_mean(x, axis=axes) if pool_size is None else \
                    tf.nn.avg_pool2d(x, pool_size, strides, "VALID")
            return tape.gradient(m, x, output_gradients=dy)

        return out, grad

    return _op(x)


# ----------------------------------------------------------------------------- network input

def input_params(lo: float = 0.0, hi: float = 1.0, bits: int = 8) -> tuple[float, int]:
    """(scale, zero point) of the network input quantizer for inputs in [lo, hi] (lo <= 0 <= hi
    after extension). [0, 1] images: S = 1/255, Z = 0, i.e. the original uint8 pixels."""
    if not hi > lo:
        raise ValueError(f"input range must have hi > lo, got [{lo}, {hi}]")
    n = levels(bits)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = (hi - lo) / n
    return float(scale), int(np.clip(np.round(-lo / scale), 0, n))


def scaled_input_params(lo: float, hi: float, scale: float, offset: float, bits: int = 8
                        ) -> dict:
    """The grids of a network input whose first layers are an input scaling y = x scale +
    offset (Keras ``Rescaling`` / ``Normalization``, folded into the input quantizer).

    The codes X quantize the RAW input, X = clamp(round(x / S_raw) + Z_raw) (what
    :meth:`tinyopt.integer.graph.IntegerGraph.quantize_input` computes from raw images), and
    the network reads them as S (X - Z) with S = scale S_raw, Z = Z_raw + n: exactly the
    affine image of the raw quantized value, so the scaling costs nothing at run time. That
    needs the raw value mapped to 0, x0 = -offset / scale, on the raw grid: x0 = n S_raw with n
    an integer. The raw grid is :func:`input_params`'s when x0 already sits on it (offset 0,
    ``Rescaling(1/255)``); otherwise its step is widened to S_raw = x0 / n with |n| the largest
    integer <= |x0| / S_0 (a step at most 1/|n| wider: ``Rescaling(1/127.5, offset=-1)`` on
    [0, 255] gives S_raw = 127.5/127, Z = 127, the network grid [-1, 128/127] of step 1/127).

    Arguments:
        lo, hi: the raw input range; scale (> 0), offset: the folded map.
        bits: input bits.

    Returns:
        {"raw_scale", "raw_zero_point" (the input quantizer), "scale", "zero_point" (the grid
        the network reads)}.

    Raises:
        ValueError: scale <= 0 or not finite, or an offset that moves the network's 0 off the
            raw grid's range (x0 within one step of 0 but not 0, or outside the codes).
    """
    scale, offset = float(scale), float(offset)
    if not (np.isfinite(scale) and scale > 0 and np.isfinite(offset)):
        raise ValueError(f"input scaling y = x * {scale:g} + {offset:g}: the scale must be a "
                         "finite number > 0 and the offset finite to fold it into the input "
                         "quantizer; rescale the data before the model instead")
    s0, z0 = input_params(lo, hi, bits)
    n_max = levels(bits)
    if offset == 0.0:
        s_raw, z_raw, n = s0, z0, 0
    else:
        x0 = -offset / scale
        r = x0 / s0
        n = int(round(r)) if abs(r - round(r)) <= 1e-6 * max(1.0, abs(r)) else int(np.trunc(r))
        if n == 0:
            raise ValueError(f"input scaling y = x * {scale:g} + {offset:g} on the input range "
                             f"[{lo:g}, {hi:g}]: the input mapped to 0 ({x0:g}) is within one "
                             "input step of 0 but not 0, so no 8-bit grid holds both; fold the "
                             "offset into the data, or use an input range that contains it")
        s_raw = x0 / n if abs(r - n) > 1e-6 * max(1.0, abs(r)) else s0
        z_raw = int(np.clip(np.round(-min(lo, 0.0) / s_raw), 0, n_max))
    z = z_raw + n
    if not 0 <= z <= n_max:
        raise ValueError(f"input scaling y = x * {scale:g} + {offset:g} on the input range "
                         f"[{lo:g}, {hi:g}]: the scaled range [{lo * scale + offset:g}, "
                         f"{hi * scale + offset:g}] does not contain 0, which the network's "
                         "integer grid must hold; give an input range whose image contains 0")
    return {"raw_scale": float(s_raw), "raw_zero_point": int(z_raw),
            "scale": float(np.float32(scale) * np.float32(s_raw)), "zero_point": int(z)}


def input_quant(x, lo: float = 0.0, hi: float = 1.0, bits: int = 8, params: bool = False):
    """The network input quantizer: X = clamp(round(x / S) + Z, 0, 2^Q - 1), value S (X - Z).

    Arguments:
        x: model-ready float images.
        lo, hi: the real input range (default [0, 1], the tinyopt preprocessing).
        bits: 8 (the policy keeps the input at 8 bits), 4 or 2.
        params: also return :class:`QParams`.

    Returns:
        Fake-quant input (STE inside [lo, hi]), or ``(fake, QParams)``.
    """
    bits = check_bits(bits)
    s, z = input_params(lo, hi, bits)
    x = tf.convert_to_tensor(x, tf.float32)
    scale, zero = tf.constant(s, tf.float32), tf.constant(float(z), tf.float32)

    @tf.custom_gradient
    def _op(x):
        codes = affine_codes(x, scale, zero, bits)
        inside = tf.logical_and(x >= -z * s, x <= (levels(bits) - z) * s)
        return (scale * (codes - zero), codes), \
            lambda dy, *_: tf.where(inside, dy, tf.zeros_like(dy))

    fake, codes = _op(x)
    return _result(fake, codes, scale, zero, bits, params)


# ----------------------------------------------------------------------------- bias

# ----------------------------------------------------------------------------- initialisation

def ppq_clip(w, bits: int, iterations: int = 10) -> tuple[float, float]:
    """The repo's "PPQ" least-squares init of (a, b) for ICN layers
    (docs/mixed_precision.md#pl-weights-with-learnable-clips)."""
    w = np.asarray(w, np.float64).ravel()
    n = levels(bits)
    m = float(w.mean())
    gamma = 2 * float(np.max(np.abs(w - m))) / n
    prev = gamma
    for _ in range(iterations):
        if gamma <= 0:
            break
        prev = gamma
        lo, hi = min(m - gamma * n / 2, 0.0), max(m + gamma * n / 2, 0.0)
        q = np.round(np.clip(w, lo, hi) / gamma)
        denom = float(np.sum(q * q))
        if denom == 0:
            break
        gamma = float(np.sum(q * w)) / denom
    return min(m - prev * n / 2, 0.0), max(m + prev * n / 2, 0.0)


def mse_clip(w, bits: int, grid: int = 60) -> tuple[float, float]:
    """(a, b) = c * (min, max) with the shrink factor c in [0.2, 1] minimising the weight MSE of
    :func:`weight_pl` (the PTQ clip search for PL weights).

    The candidates are scored with a vectorised NumPy mirror of :func:`weight_pl`'s forward
    (same clip, grid, round-half-even and clamp); the weights are then quantized by
    :func:`weight_pl` itself, so the codes still have one source."""
    w = np.asarray(w, np.float32).ravel()
    n = float(levels(bits))
    lo, hi = min(float(w.min()), 0.0), max(float(w.max()), 0.0)
    c = np.linspace(1.0, 0.2, grid, dtype=np.float32)[:, None]
    wc = np.clip(w[None, :], lo * c, hi * c)
    lo_c = np.minimum(wc.min(axis=1, keepdims=True), 0.0)
    hi_c = np.maximum(wc.max(axis=1, keepdims=True), 0.0)
    span = hi_c - lo_c
    scale = np.where(span > SPAN_MIN, span / n, 1.0).astype(np.float32)
    zero = np.clip(np.round(-lo_c / scale), 0, n)
    fake = scale * (np.clip(np.round(wc / scale) + zero, 0, n) - zero)
    k = int(np.argmin(np.mean((fake - w[None, :]) ** 2, axis=1)))
    return float(lo * c[k, 0]), float(hi * c[k, 0])

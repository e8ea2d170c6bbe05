"""Integer arithmetic shared by the ops (:mod:`tinyopt.integer.ops`) and the simulator: the three
requantization flavours, int32 wrap-around and overflow checks, and gemmlowp's fixed point.

- ``"floor"`` (:func:`requant_floor`, CMix-NN, docs/integer.md#kernel-arithmetic-step-by-step),
  ``"tflite_double"`` (:func:`requant_tflite_double`, gemmlowp's rounding doubling high multiply
  then rounding divide by a power of two) and ``"tflite_single"`` (:func:`requant_tflite_single`,
  the single-rounding ``MultiplyByQuantizedMultiplier``); :data:`REQUANT` maps flavour names to
  them.
- gemmlowp's fixed point (:func:`srdhm`, :func:`rounding_divide_by_pot`, exp and reciprocal) as
  TFLite's int8 softmax uses it (:func:`softmax_int8`).

Every function takes and returns int64 numpy arrays holding the int32 values the kernels hold,
so the arithmetic is exact; a value that would leave int32 raises OverflowError unless the
caller asks for wrap-around.
"""

from __future__ import annotations

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1

# --------------------------------------------------------------------------------------------
# Requantization: each takes int64 accumulators (channels last) and per-channel or scalar
# (m0, n0) with M ~= m0 * 2^(n0 - 31); returns int64 before zero point and clamp.
# --------------------------------------------------------------------------------------------

def wrap32(x: np.ndarray) -> np.ndarray:
    """Two's-complement int32 wrap-around of int64 values (what a 32-bit register keeps)."""
    return ((np.asarray(x, np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def check32(x: np.ndarray, what: str, layer: str) -> None:
    """Raise OverflowError naming ``layer`` when a value of ``x`` leaves int32."""
    if x.size and (x.min() < INT32_MIN or x.max() > INT32_MAX):
        raise OverflowError(
            f"layer {layer!r}: {what} reaches [{x.min()}, {x.max()}], outside int32; the "
            "device's 32-bit arithmetic would wrap. Pass wrap32=True to emulate the "
            "wrap-around, or fix the layer's scales")


def acc32(acc, wrap: bool, layer: str, checked: bool = False) -> np.ndarray:
    """Accumulators as an int32 register holds them: wrapped (``wrap``) or checked to fit
    (skipped when the caller proved it, ``checked``)."""
    acc = np.asarray(acc, np.int64)
    if wrap:
        return wrap32(acc)
    if not checked:
        check32(acc, "the accumulator", layer)
    return acc


def shift_left32(x, n, wrap: bool, checked: bool, layer: str, what: str) -> np.ndarray:
    """``x << n`` kept in int32 as the kernels do: wrapped (``wrap``) or checked to fit."""
    if not np.any(n > 0):
        return x
    x = x << n
    if wrap:
        return wrap32(x)
    if not checked:
        check32(x, what, layer)
    return x


def requant_floor(acc, m0, n0, wrap: bool = False, layer: str = "?",
                  checked: bool = False) -> np.ndarray:
    """CMix-NN requantization (docs/integer.md#floor-requantization), without zero point and clamp.

    With n_zero = -(n0 + 1): n1 = max(-n_zero, 0), n2 = max(n_zero, 0); t = Phi << n1 (int32),
    h = high word of the 64-bit product t * m0 (floor of t * m0 / 2^32), result h >> n2 (floor).
    Without overflow this is floor(Phi * m0 / 2^(31 - n0)).

    Arguments:
        acc: accumulators Phi (integers), channels on the last axis.
        m0, n0: int32 multipliers (Q1.31) and int8 exponents, per channel or scalar.
        wrap: emulate int32 wrap-around of Phi and of Phi << n1 instead of raising.
        layer: name for error messages.
        checked: the caller has proven that Phi and Phi << n1 fit int32 (skips the check).

    Returns:
        int64 array, same shape as ``acc``.

    Raises:
        OverflowError: ``wrap`` is False and Phi or Phi << n1 leaves int32.
    """
    n0 = np.asarray(n0, np.int64)
    n1 = np.clip(n0 + 1, 0, 32)  # a shift by >= 32 leaves nothing of an int32
    n2 = np.clip(-(n0 + 1), 0, 63)  # >> 63 of an int64 already gives 0 or -1 (the floor)
    t = acc32(acc, wrap, layer, checked)
    t = shift_left32(t, n1, wrap, checked, layer, "the accumulator shifted left by n1")
    return ((t * np.asarray(m0, np.int64)) >> 32) >> n2


def requant_tflite_single(acc, multiplier, shift, wrap: bool = False, layer: str = "?",
                   checked: bool = False) -> np.ndarray:
    """TFLite's single-rounding ``MultiplyByQuantizedMultiplier`` (``TFLITE_SINGLE_ROUNDING``):
    (Phi * multiplier + 2^(30 - shift)) >> (31 - shift), i.e. Phi * M rounded half up, in int64.

    Arguments, Returns and Raises: as :func:`requant_floor` (``shift`` is TFLite's exponent, n0);
    also ValueError for a negative multiplier or a shift outside [-31, 30].
    """
    shift = np.asarray(shift, np.int64)
    mult = np.asarray(multiplier, np.int64)
    if np.any(mult < 0) or np.any(shift < -31) or np.any(shift > 30):
        raise ValueError(f"layer {layer!r}: TFLite needs multipliers >= 0 and shifts in "
                         f"[-31, 30]")
    total = 31 - shift
    x = acc32(acc, wrap, layer, checked)
    return (x * mult + (np.int64(1) << (total - 1))) >> total


def requant_tflite_double(acc, multiplier, shift, wrap: bool = False, layer: str = "?",
                          checked: bool = False) -> np.ndarray:
    """gemmlowp / TFLite double rounding: x = Phi * 2^max(shift, 0) (int32), then
    SaturatingRoundingDoublingHighMul(x, multiplier) = floor((x * multiplier + 2^30) / 2^31)
    (gemmlowp's nudge-and-truncate equals this floor for both signs), then RoundingDivideByPOT by
    max(-shift, 0) (round half away from zero).

    Arguments, Returns and Raises: as :func:`requant_tflite_single`.
    """
    shift = np.asarray(shift, np.int64)
    mult = np.asarray(multiplier, np.int64)
    if np.any(mult < 0):
        raise ValueError(f"layer {layer!r}: TFLite multipliers are non-negative")
    left = np.clip(shift, 0, 32)
    right = np.clip(-shift, 0, 62)
    x = acc32(acc, wrap, layer, checked)
    x = shift_left32(x, left, wrap, checked, layer, "the accumulator shifted left")
    # The only saturating case of SRDHM is x = multiplier = INT32_MIN, impossible for mult >= 0.
    h = (x * mult + (1 << 30)) >> 31
    mask = (np.int64(1) << right) - 1
    threshold = (mask >> 1) + (h < 0)
    return (h >> right) + ((h & mask) > threshold)


REQUANT = {"floor": requant_floor, "tflite_single": requant_tflite_single,
           "tflite_double": requant_tflite_double}


def max_left_shift(rounding: str, n0) -> int:
    """The largest left shift the flavour applies to Phi before its int32 product."""
    n0 = np.asarray(n0, np.int64)
    if rounding == "floor":
        return int(np.clip(n0 + 1, 0, 32).max())
    if rounding == "tflite_double":
        return int(np.clip(n0, 0, 32).max())
    return 0


def check_multipliers(layer, flavour: str, where: str) -> None:
    """What the TFLite flavours' kernels accept: m0 >= 0 and, for single rounding, n0 in
    [-31, 30] (as the simulator's requantizations check).

    Raises:
        ValueError: naming ``where`` and the range.
    """
    if flavour == "floor":
        return
    m0, n0 = np.asarray(layer.m0, np.int64), np.asarray(layer.n0, np.int64)
    if m0.min() < 0:
        raise ValueError(f"{where}: TFLite rounding needs m0 >= 0")
    if flavour == "tflite_single" and (n0.min() < -31 or n0.max() > 30):
        raise ValueError(f"{where}: tflite_single needs n0 in [-31, 30], got "
                         f"[{n0.min()}, {n0.max()}]")


def value_range(bits: int, signed: bool) -> tuple[int, int]:
    """The integer range [lo, hi] of a ``bits``-bit code, signed or not."""
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


def exact_float_dtype(fan_in: int, wmax: int, xmax: int):
    """float32 / float64 if a matmul with these integer bounds is provably exact in it (see the
    simulator's module docstring), else None (use int64)."""
    bound = int(fan_in) * int(wmax) * int(xmax)
    if bound < (1 << 24):
        return np.float32
    if bound < (1 << 53):
        return np.float64
    return None


# --------------------------------------------------------------------------------------------
# gemmlowp fixed point (int32 raw values held in int64 arrays), for TFLite's int8 SOFTMAX
# (docs/integer.md#softmax). Every function reproduces the int32 arithmetic of the reference
# kernel exactly, vectorised.
# --------------------------------------------------------------------------------------------

def srdhm(a, b) -> np.ndarray:
    """SaturatingRoundingDoublingHighMul of int32 values: round((a * b) / 2^31), ties up
    (equal to gemmlowp's nudge-and-truncate for both signs); INT32_MIN * INT32_MIN saturates."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    out = (a * b + (1 << 30)) >> 31
    return np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, out)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT: x / 2^exponent rounded half away from zero."""
    x = np.asarray(x, np.int64)
    mask = (np.int64(1) << np.asarray(exponent, np.int64)) - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + ((x & mask) > threshold)


def saturating_left_shift(x, exponent: int) -> np.ndarray:
    """gemmlowp's SaturatingRoundingMultiplyByPOT for a positive exponent on int32 values."""
    x = np.asarray(x, np.int64)
    threshold = (1 << (31 - exponent)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN,
                                                       x << exponent))


def _wrap_add(a, b) -> np.ndarray:
    return wrap32(np.asarray(a, np.int64) + np.asarray(b, np.int64))


def exp_on_negative_values_q5_26(a) -> np.ndarray:
    """gemmlowp's exp_on_negative_values for Q5.26 inputs (a <= 0): exp(a) as Q0.31 raw values."""
    a = np.asarray(a, np.int64)
    quarter = 1 << 24  # 1/4 in Q5.26
    a_mod = (a & (quarter - 1)) - quarter
    x = _wrap_add(a_mod << 5, 1 << 28)  # Rescale<0> (exact here), then + 1/8
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(_wrap_add(srdhm(_wrap_add(x4_over_4, x3), 715827883), x2), 1)
    const = 1895147668  # exp(-1/8) in Q0.31
    result = _wrap_add(const, srdhm(const, _wrap_add(x, poly)))
    remainder = wrap32(a_mod - a)
    for exponent, mult in ((-2, 1672461947), (-1, 1302514674), (0, 790015084),
                           (1, 290630308), (2, 39332535), (3, 720401), (4, 242)):
        bit = (remainder & (1 << (26 + exponent))) != 0
        result = np.where(bit, srdhm(result, mult), result)
    return np.where(a == 0, INT32_MAX, result)


def one_over_one_plus_x_q0_31(a) -> np.ndarray:
    """gemmlowp's one_over_one_plus_x_for_x_in_0_1 (Q0.31 in, Q0.31 out; Newton-Raphson)."""
    a = np.asarray(a, np.int64)
    s = a + INT32_MAX
    half = np.where(s >= 0, (s + 1) // 2, -((-(s - 1)) // 2))  # (s + sign) / 2, truncating
    x = _wrap_add(1515870810, srdhm(half, -1010580540))  # 48/17 - 32/17 d, in Q2.29
    for _ in range(3):
        one_minus = wrap32((1 << 29) - srdhm(half, x))
        x = _wrap_add(x, saturating_left_shift(srdhm(x, one_minus), 2))
    return saturating_left_shift(x, 1)


def softmax_int8(x, multiplier: int, left_shift: int, diff_min: int, rounding: str) -> np.ndarray:
    """TFLite's reference int8 softmax over the last axis (output scale 1/256, zero point -128).

    Arguments:
        x: int8 codes (any integer dtype), the softmax runs over the last axis.
        multiplier, left_shift: the input-beta multiplier (Q5.26 rescaling of input differences).
        diff_min: differences below this give the lowest code.
        rounding: "tflite_double" (gemmlowp high multiply, TFLite's default build and TFLM) or
            "tflite_single" (``TFLITE_SINGLE_ROUNDING`` builds) for that rescaling.

    Returns:
        int32 codes in [-128, 127], same shape as ``x``.
    """
    x = np.asarray(x, np.int64)
    diff = x - x.max(axis=-1, keepdims=True)
    valid = diff >= diff_min
    if rounding == "tflite_single":
        total = 31 - left_shift
        scaled = (diff * multiplier + (np.int64(1) << (total - 1))) >> total
    else:
        scaled = srdhm(wrap32(diff << left_shift), multiplier)
    exps = exp_on_negative_values_q5_26(np.where(valid, scaled, 0))
    sum_of_exps = wrap32(np.where(valid, rounding_divide_by_pot(exps, 12), 0).sum(
        axis=-1, keepdims=True))  # Q12.19
    _, bit_length = np.frexp(sum_of_exps.astype(np.float64))  # exact below 2^53
    headroom_plus_one = 32 - bit_length.astype(np.int64)
    num_bits_over_unit = 12 - headroom_plus_one
    shifted_minus_one = wrap32((sum_of_exps << headroom_plus_one) - (1 << 31))
    shifted_scale = one_over_one_plus_x_q0_31(shifted_minus_one)
    exponent = num_bits_over_unit + 31 - 8
    out = rounding_divide_by_pot(srdhm(shifted_scale, exps), exponent) - 128
    return np.where(valid, np.clip(out, -128, 127), -128).astype(np.int32)

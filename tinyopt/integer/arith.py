"""Integer arithmetic shared by every integer-path module: fixed-point multipliers.

See ``docs/integer.md`` for the requantization the multipliers feed.
"""

from __future__ import annotations

import numpy as np


def m0_n0(multiplier) -> tuple[np.ndarray, np.ndarray]:
    """Spec §2.2 (``_get_m0_nexp``): M = M0 * 2^N0 with 0.5 <= |M0| < 1, m0 = clamp(round(M0 *
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

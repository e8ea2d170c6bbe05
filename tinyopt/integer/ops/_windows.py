"""Sliding windows shared by the windowed ops (convolutions, pools): strided tap views."""

from __future__ import annotations

import numpy as np


def taps(xp: np.ndarray, kh: int, kw: int, sh: int, sw: int, oh: int, ow: int) -> list:
    """The kh * kw strided views xp[:, ky + sh*i, kx + sw*j, :] (i < oh, j < ow), tap order."""
    return [xp[:, ky:ky + (oh - 1) * sh + 1:sh, kx:kx + (ow - 1) * sw + 1:sw]
            for ky in range(kh) for kx in range(kw)]


def pad_hw(x: np.ndarray, padding: tuple, value) -> np.ndarray:
    """Pad H and W of a batch [N, H, W, C] by (top, bottom, left, right) with ``value``."""
    top, bottom, left, right = padding
    if not (top or bottom or left or right):
        return x
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)

"""Public API facade: ``tinyopt.ptq.<name>`` as users, notebooks and outside checks call it.

The code lives in ``tinyopt.mixed.ptq``.
Library modules import from there, never from here.
"""

from tinyopt.mixed.ptq import quantize_mixed  # noqa: F401

__all__ = ['quantize_mixed']

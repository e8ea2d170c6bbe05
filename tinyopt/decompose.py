"""Public API facade: ``tinyopt.decompose.<name>`` as users, notebooks and outside checks call it.

The code lives in ``tinyopt.transforms.decompose``.
Library modules import from there, never from here.
"""

from tinyopt.transforms.decompose import decompose  # noqa: F401

__all__ = ['decompose']

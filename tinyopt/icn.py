"""Public API facade: ``tinyopt.icn.<name>`` as users, notebooks and outside checks call it.

The code lives in ``tinyopt.mixed.lower``, ``tinyopt.mixed.verify``, ``tinyopt.integer.graph``.
Library modules import from there, never from here.
"""

from tinyopt.mixed.lower import convert, snap_bias  # noqa: F401
from tinyopt.mixed.verify import compare  # noqa: F401
from tinyopt.integer.graph import GraphFileError, IntegerGraph, IntegerLayer  # noqa: F401

__all__ = ['GraphFileError', 'IntegerGraph', 'IntegerLayer', 'compare', 'convert', 'snap_bias']

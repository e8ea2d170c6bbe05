"""Public API facade: ``tinyopt.qat.<name>`` as users, notebooks and outside checks call it.

The code lives in ``tinyopt.litert.qat``, ``tinyopt.mixed.build``.
Library modules import from there, never from here.
"""

from tinyopt.litert.qat import quantize  # noqa: F401
from tinyopt.mixed.build import integer_params, named_policy, quantize_mixed, summary  # noqa: F401

__all__ = ['integer_params', 'named_policy', 'quantize', 'quantize_mixed', 'summary']

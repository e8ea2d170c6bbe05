"""Public API facade: ``tinyopt.graph.<name>`` as users, notebooks and outside checks call it.

The code lives in ``tinyopt.transforms.optimize``.
Library modules import from there, never from here.
"""

from tinyopt.transforms.optimize import optimize, plan  # noqa: F401

__all__ = ['optimize', 'plan']

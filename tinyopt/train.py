"""Public API facade: ``tinyopt.train.<name>`` as users, notebooks and outside checks call it.

The code lives in ``tinyopt.front.train``.
Library modules import from there, never from here.
"""

from tinyopt.front.train import compile_classifier, fit, set_seed  # noqa: F401

__all__ = ['compile_classifier', 'fit', 'set_seed']

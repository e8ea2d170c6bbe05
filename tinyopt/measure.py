"""Public API facade: ``tinyopt.measure.<name>`` as users, notebooks and outside checks call it.

The code lives in ``tinyopt.litert.measure``.
Library modules import from there, never from here.
"""

from tinyopt.litert.measure import accuracy, evaluate, latency, macs, params, predict, size  # noqa: F401

__all__ = ['accuracy', 'evaluate', 'latency', 'macs', 'params', 'predict', 'size']

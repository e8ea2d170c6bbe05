"""Public API facade: ``tinyopt.sim.<name>`` as users, notebooks and outside checks call it.

The code lives in ``tinyopt.integer.sim``, ``tinyopt.integer.from_litert``.
Library modules import from there, never from here.
"""

from tinyopt.integer.sim import run, run_tflite  # noqa: F401
from tinyopt.integer.from_litert import graph_from_tflite  # noqa: F401

__all__ = ['graph_from_tflite', 'run', 'run_tflite']

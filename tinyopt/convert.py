"""Public API facade: ``tinyopt.convert.<name>`` as users, notebooks and outside checks call it.

The code lives in ``tinyopt.litert.convert``.
Library modules import from there, never from here.
"""

from tinyopt.litert.convert import MODES, calibration_subset, to_tflite  # noqa: F401

__all__ = ['MODES', 'calibration_subset', 'to_tflite']

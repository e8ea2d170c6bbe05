"""Public API facade: ``tinyopt.models.<name>`` as users, notebooks and outside checks call it.

The code lives in ``tinyopt.front.models``.
Library modules import from there, never from here.
"""

from tinyopt.front.models import mobilenet_v1, seed_cnn  # noqa: F401

__all__ = ['mobilenet_v1', 'seed_cnn']

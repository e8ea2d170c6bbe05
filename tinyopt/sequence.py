"""Public API facade: ``tinyopt.sequence.<name>`` as users, notebooks and outside checks call it.

The code lives in ``tinyopt.pipeline.sequence``.
Library modules import from there, never from here.
"""

from tinyopt.pipeline.sequence import recommend, run, run_many, validate  # noqa: F401

__all__ = ['recommend', 'run', 'run_many', 'validate']

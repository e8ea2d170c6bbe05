"""Public API facade: ``tinyopt.codegen.<name>`` as users, notebooks and outside checks call it.

The code lives in ``tinyopt.deploy.codegen``.
Library modules import from there, never from here.
"""

from tinyopt.deploy.codegen import export_c  # noqa: F401

__all__ = ['export_c']

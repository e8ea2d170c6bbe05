"""Public API facade: ``tinyopt.mcu.<name>`` as users, notebooks and outside checks call it.

The code lives in ``tinyopt.deploy.mcu``.
Library modules import from there, never from here.
"""

from tinyopt.deploy.mcu import deploy, toolchain  # noqa: F401

__all__ = ['deploy', 'toolchain']

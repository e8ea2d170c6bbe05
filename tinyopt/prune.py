"""Public API facade: ``tinyopt.prune.<name>`` as users, notebooks and outside checks call it.

The code lives in ``tinyopt.transforms.prune``.
Library modules import from there, never from here.
"""

from tinyopt.transforms.prune import prune, schedule, sparsity  # noqa: F401

__all__ = ['prune', 'schedule', 'sparsity']

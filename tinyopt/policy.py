"""Public API facade: ``tinyopt.policy.<name>`` as users, notebooks and outside checks call it.

The code lives in ``tinyopt.mixed.policy``, ``tinyopt.mixed.search``.
Library modules import from there, never from here.
"""

from tinyopt.mixed.policy import Policy, parse_bytes  # noqa: F401
from tinyopt.mixed.search import BudgetError, memory_driven  # noqa: F401

__all__ = ['BudgetError', 'Policy', 'memory_driven', 'parse_bytes']

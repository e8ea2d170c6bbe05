"""Public API facade: ``tinyopt.memory.<name>`` as users, notebooks and outside checks call it.

The code lives in ``tinyopt.mixed.memory``.
Library modules import from there, never from here.
"""

from tinyopt.mixed.memory import flash_bytes, mobilenet_v1_nodes, nodes, peak_ram_bytes, report  # noqa: F401

__all__ = ['flash_bytes', 'mobilenet_v1_nodes', 'nodes', 'peak_ram_bytes', 'report']

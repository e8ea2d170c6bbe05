"""Public API facade: ``tinyopt.memory.<name>`` as users, notebooks and outside checks call it.

The code lives in ``tinyopt.mixed.memory``.
Library modules import from there, never from here.
"""

from tinyopt.mixed.memory import (deployed_param_bytes, flash_bytes, live_steps,  # noqa: F401
                                  mobilenet_v1_nodes, nodes, peak_ram_bytes, report)

__all__ = ['deployed_param_bytes', 'flash_bytes', 'live_steps', 'mobilenet_v1_nodes', 'nodes',
           'peak_ram_bytes', 'report']

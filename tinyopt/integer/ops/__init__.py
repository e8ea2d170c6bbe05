"""The op kinds of the integer graph, one module each (``compute``, ``pool``, ``add``, ...): what
the op is in the IR, how it is imported from TFLite, how the simulator computes it, how it is
deployed and what it costs, registered in :mod:`tinyopt.integer.ops.registry`.

Adding an op means adding one module here (it calls :func:`~tinyopt.integer.ops.registry.register`
at import), its C kernel under ``tinyopt/deploy/c/ops/`` and its test: every module of this
package whose name does not start with ``_`` is imported below, so the importer, the
simulator, the planner and the code generator see the new kind without an edit elsewhere.
"""

from __future__ import annotations

import importlib
import pkgutil

from tinyopt.integer.ops.registry import REGISTRY, OpKind, TFLiteOp, get, register  # noqa: F401

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _module.startswith("_") and _module != "registry":
        importlib.import_module(f"{__name__}.{_module}")


def tflite_table() -> dict:
    """TFLite builtin name -> (kind, :class:`TFLiteOp`) over every registered kind."""
    return {t: (k.name, imp) for k in REGISTRY.values() for t, imp in k.tflite.items()}

"""The block kinds of the sub-byte Keras path, one module each (``compute``, ``bn``,
``activation``, ``add``, ``concat``, ``softmax``, ``shape``, ``pool``, ``pad``): what the kind
is when a float Keras model is read (``read``), fake-quantized (``build``), viewed as integers
(``params``), lowered (``lower``) and planned from bit widths alone (``plan``), registered in
:mod:`tinyopt.mixed.handlers.base` (the :class:`~tinyopt.mixed.handlers.base.Handler` record,
the table in reading order).

:func:`tinyopt.mixed.dag.blocks`, :func:`tinyopt.mixed.build.quantize_mixed`,
:func:`tinyopt.mixed.build.integer_params`, :func:`tinyopt.mixed.lower.convert` and
:meth:`tinyopt.mixed.skeleton.Structure.graph` keep only the walk (producers, consumers,
wiring, the policy) and call the handler. Every module of this package whose name does not
start with ``_`` is imported below, so adding a block kind is adding one module. Element-wise
ops need none: the ``activation`` handler reads every op of the op registry with a
``KerasPattern``.
"""

from __future__ import annotations

import importlib
import pkgutil

from tinyopt.mixed.handlers.base import (Block, Handler, block_kinds, for_entry,  # noqa: F401
                                         for_layer, get, register, supported, table)

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if not _module.startswith("_") and _module != "base":
        importlib.import_module(f"{__name__}.{_module}")

"""tinyopt: squeeze neural networks onto microcontrollers.

The package is organised by stage, one subpackage each, in the order a model flows (README.md,
"The flow", maps every module)::

    front -> transforms -> litert                       (the 8-bit LiteRT path)
                       `-> mixed -> integer -> deploy   (the sub-byte path; a full-int8 .tflite
                                                         also enters integer)

- ``front``: data, model builders, training; ``transforms``: Keras Model -> Model (pruning,
  decomposition, graph optimization); ``litert``: tfmot 8-bit QAT, ``.tflite`` conversion and
  measurement;
- ``mixed``: sub-byte policies, PTQ / QAT, the memory model and the memory-driven search,
  lowering to the integer graph; ``integer``: the integer graph (the IR) and the bit-exact
  simulator; ``deploy``: C export, run on the host and on a Cortex-M7 under QEMU;
- ``pipeline``: sequences such as ``"prune>mixed(flash=16k,ram=8k)>qat>int>mcu"`` and the one
  sub-byte chain; ``studies``: the notebooks' studies; ``workbench``: notebook parameters and
  runs, sweeps, tables, figures, the ``tinyopt`` command;
- ``files`` and ``names``: atomic writes and untrusted names, used by all.

A module imports only from its own stage or an earlier one: files, names, integer, front,
transforms, litert, mixed, deploy, pipeline, studies, workbench (``tests/test_layout.py``).

The public API is this namespace: ``tinyopt.simulate``, ``tinyopt.quantize_ptq``,
``tinyopt.to_integer_graph``, ``tinyopt.deploy_mcu``, ... one table in :mod:`tinyopt.api` (name ->
the stage function, class or constant it *is*; README.md, "Public API"). The names are served
lazily (PEP 562 ``__getattr__``): ``tinyopt.simulate`` imports ``tinyopt.integer.sim`` on first
use and nothing else. The earlier facade modules (``tinyopt.sim.run``, ``tinyopt.icn.convert``,
...) are deprecated aliases served from :mod:`tinyopt.deprecated`.

Importing ``tinyopt`` prepares the TensorFlow environment *before* TensorFlow is imported:

- ``TF_USE_LEGACY_KERAS=1``: tfmot works only with Keras 2 (``tf_keras``); every tinyopt model is
  built with ``tf_keras``.
- ``TF_CPP_MIN_LOG_LEVEL=3``: TensorFlow's C++ log chatter (including the CUDA-probe "errors" on
  CPU-only machines) is silenced, unless the user set the variable already.

TensorFlow itself is imported lazily by the submodules that need it, so ``import tinyopt`` is cheap.
"""

from __future__ import annotations

import importlib
import os
import sys

__version__ = "0.1.0"

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _check_keras_2() -> None:
    """Raise ImportError if TensorFlow was imported earlier with Keras 3 behind ``tf.keras``.

    When TensorFlow is already imported, ``tf.keras`` may have been resolved to Keras 3 before the
    variable above was set; tfmot then fails later with obscure errors, so we stop here instead.
    """
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return
    try:
        # tf.keras is a lazy module; resolving it tells which Keras it is bound to.
        module = str(tf.keras.__name__)
    except Exception as exc:  # noqa: BLE001 (any failure to resolve tf.keras has one remedy)
        module = f"unresolvable ({type(exc).__name__}: {exc})"
    if not module.startswith("tf_keras"):
        raise ImportError(
            "tinyopt needs Keras 2 (tf_keras) behind tf.keras, but TensorFlow was imported before "
            f"tinyopt with {module} (Keras 3) active. Fix: `import tinyopt` before "
            "`import tensorflow`, or set TF_USE_LEGACY_KERAS=1 in the environment before "
            "starting Python (and `pip install tf-keras==2.21.*`)."
        )


_check_keras_2()


# The public surface and the deprecated facade modules: two tables, no stage imported here.
from tinyopt import api as _api, deprecated as _deprecated  # noqa: E402

_deprecated.install()


def __getattr__(name: str):
    """A public name of :data:`tinyopt.api.PUBLIC` (imported on first use, then cached), or a
    deprecated facade module (``tinyopt.sim``, served by :mod:`tinyopt.deprecated`).

    Raises:
        AttributeError: ``name`` is neither (the message suggests close public names).
    """
    if name in _api.PUBLIC:
        value = _api.resolve(name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _deprecated.OLD:
        return importlib.import_module(f"{__name__}.{name}")
    _api.target(name)  # raises the AttributeError that names close public names
    raise AssertionError("unreachable: tinyopt.api.target accepted a name PUBLIC lacks")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_api.PUBLIC))

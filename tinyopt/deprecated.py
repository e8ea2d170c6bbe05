"""The names of the earlier facade modules, kept one release as deprecated aliases.

Until the public surface became one namespace (:mod:`tinyopt.api`, issue 27), the public API was
17 facade modules, ``tinyopt.<module>.<name>``: ``tinyopt.sim.run``, ``tinyopt.icn.convert``,
``tinyopt.ptq.quantize_mixed``, ... Their files are gone; :data:`OLD` (old module -> {old name:
new public name}) is the only place they live. :func:`install` (run by ``import tinyopt``) adds an
import hook that serves ``tinyopt.<module>`` for exactly these 17 modules, so

- ``import tinyopt.sim; tinyopt.sim.run(...)``, ``from tinyopt.ptq import quantize_mixed`` and
  ``from tinyopt import sim`` keep working: each old name is the very object of its new name
  (same function, signature and docstring), looked up on use;
- each use emits a :class:`DeprecationWarning` naming the replacement (``tinyopt.sim.run is
  deprecated; use tinyopt.simulate``), once per old name and calling line (a loop over
  ``tinyopt.sim.run`` warns once); Python's default filters show it where ``__main__`` (a script,
  a notebook) uses the name;
- ``python -m tinyopt.data fetch`` still runs the dataset command (warning first); the new way is
  ``python -m tinyopt.front.data fetch``.

Importing an old module alone warns nothing: only a use of one of its names does. Library code
uses none of this (``tests/test_layout.py``).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
import warnings

from tinyopt import api

# old facade module -> {old name: new public name (a key of tinyopt.api.PUBLIC)}
OLD: dict[str, dict[str, str]] = {
    "data": {"load": "load_raw_dataset", "dataset": "dataset", "preprocess": "preprocess_images",
             "fetch": "fetch_dataset", "Dataset": "Dataset", "DatasetError": "DatasetError",
             "CLASS_NAMES": "DATASET_CLASS_NAMES"},
    "models": {"seed_cnn": "seed_cnn", "mobilenet_v1": "mobilenet_v1"},
    "train": {"fit": "fit", "set_seed": "set_seed", "compile_classifier": "compile_classifier"},
    "prune": {"prune": "prune_magnitude", "schedule": "pruning_schedule",
              "sparsity": "weight_sparsity"},
    "decompose": {"decompose": "decompose_conv2d"},
    "graph": {"optimize": "optimize_keras_graph", "plan": "keras_graph_rewrites"},
    "convert": {"to_tflite": "to_tflite", "MODES": "TFLITE_MODES",
                "calibration_subset": "calibration_subset"},
    "measure": {"accuracy": "tflite_accuracy", "latency": "tflite_latency", "size": "tflite_size",
                "predict": "tflite_predict", "evaluate": "evaluate_tflite",
                "params": "count_params", "macs": "count_macs"},
    "qat": {"quantize": "qat_int8", "quantize_mixed": "quantize_qat",
            "integer_params": "integer_params", "summary": "fake_quant_summary",
            "named_policy": "named_policy"},
    "ptq": {"quantize_mixed": "quantize_ptq"},
    "policy": {"Policy": "Policy", "parse_bytes": "parse_bytes", "memory_driven": "memory_driven",
               "BudgetError": "BudgetError"},
    "memory": {"flash_bytes": "flash_bytes", "peak_ram_bytes": "peak_ram_bytes",
               "report": "memory_report", "nodes": "memory_nodes",
               "mobilenet_v1_nodes": "mobilenet_v1_nodes", "live_steps": "live_steps",
               "deployed_param_bytes": "deployed_param_bytes"},
    "icn": {"convert": "to_integer_graph", "snap_bias": "snap_bias",
            "compare": "compare_to_fake_quant", "IntegerGraph": "IntegerGraph",
            "IntegerLayer": "IntegerLayer", "GraphFileError": "GraphFileError"},
    "sim": {"run": "simulate", "run_tflite": "simulate_tflite",
            "graph_from_tflite": "graph_from_tflite"},
    "codegen": {"export_c": "export_c"},
    "mcu": {"deploy": "deploy_mcu", "toolchain": "mcu_toolchain"},
    "sequence": {"run": "run_sequence", "run_many": "run_sequences",
                 "validate": "validate_sequence", "recommend": "recommend"},
}

# old modules that were runnable (python -m tinyopt.<module>) -> their new command
MAIN: dict[str, tuple[str, str]] = {
    "data": ("tinyopt.front.data:main", "python -m tinyopt.front.data"),
}


def message(module: str, name: str) -> str:
    """The deprecation message of one old name.

    Arguments:
        module: an old facade module (a key of :data:`OLD`).
        name: one of its names.

    Returns:
        ``"tinyopt.<module>.<name> is deprecated; use tinyopt.<new> ..."``.
    """
    return (f"tinyopt.{module}.{name} is deprecated; use tinyopt.{OLD[module][name]} (the same "
            f"object). The old facade modules go away in the next release.")


_WARNED: set[tuple[str, str, str, int]] = set()  # (old module, old name, file, line) warned


class DeprecatedModule(types.ModuleType):
    """An old facade module: its names resolve, on every use, to their new public objects."""

    def __getattr__(self, name: str):
        """The object behind an old name, with a DeprecationWarning naming the new name.

        Raises:
            AttributeError: ``name`` was never a name of this module (the message lists them).
        """
        short = self.__name__.rpartition(".")[2]
        names = OLD[short]
        if name not in names:
            raise AttributeError(f"module {self.__name__!r} (deprecated) has no attribute "
                                 f"{name!r}; it had {sorted(names)}. Use the public names of "
                                 f"tinyopt (tinyopt.api.PUBLIC) instead.")
        # Once per old name and calling line: Python's own "once per line" registry is reset
        # whenever any import changes the warning filters (TensorFlow does), which repeats it.
        caller = sys._getframe(1)
        key = (short, name, caller.f_code.co_filename, caller.f_lineno)
        if key not in _WARNED:
            _WARNED.add(key)
            # stacklevel 2: the warning points at the caller's line
            warnings.warn(message(short, name), DeprecationWarning, stacklevel=2)
        return api.resolve(names[name])

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(OLD[self.__name__.rpartition(".")[2]]))


class _Loader(importlib.abc.Loader):
    """Creates a :class:`DeprecatedModule`; gives ``python -m`` the code of the old command."""

    def create_module(self, spec):
        short = spec.name.rpartition(".")[2]
        renames = ", ".join(f"{old} -> tinyopt.{new}" for old, new in OLD[short].items())
        module = DeprecatedModule(spec.name, f"Deprecated alias module; use {renames}.")
        module.__all__ = sorted(OLD[short])
        return module

    def exec_module(self, module) -> None:
        """Nothing to run: the names are looked up on use."""

    def get_code(self, fullname: str):
        """The code ``python -m tinyopt.<module>`` runs: a warning, then the new command.

        Raises:
            ImportError: the old module was not runnable.
        """
        short = fullname.rpartition(".")[2]
        if short not in MAIN:
            raise ImportError(f"{fullname} is a deprecated alias module and cannot be run with "
                              f"python -m; its names are in tinyopt.api.PUBLIC")
        (where, command) = MAIN[short]
        module, function = where.split(":")
        source = (f"import sys, warnings\n"
                  f"warnings.warn('python -m {fullname} is deprecated; use {command}', "
                  f"DeprecationWarning)\n"
                  f"from {module} import {function}\n"
                  f"sys.exit({function}())\n")
        return compile(source, f"<deprecated {fullname}>", "exec")

    def is_package(self, fullname: str) -> bool:
        return False


class _Finder(importlib.abc.MetaPathFinder):
    """Finds exactly the 17 old modules ``tinyopt.<module>`` of :data:`OLD`, nothing else."""

    def find_spec(self, fullname, path=None, target=None):
        package, _, short = fullname.rpartition(".")
        if package != "tinyopt" or short not in OLD:
            return None
        return importlib.machinery.ModuleSpec(fullname, _LOADER, origin="tinyopt.deprecated")


_LOADER = _Loader()
_FINDER = _Finder()


def install() -> None:
    """Put the finder of the old modules first on ``sys.meta_path`` (once).

    First, so that a stale ``tinyopt/<module>.py`` left by an old checkout cannot shadow the
    deprecation; it answers only for the 17 names of :data:`OLD`.
    """
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _FINDER)

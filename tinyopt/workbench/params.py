"""Notebook parameters checked before any work: types, ranges, a writable ``out_dir``, and no
unknown names.

papermill injects ``-p name value`` as a new cell after a notebook's ``parameters`` cell; a typo
(``-p trainsamples 500``) would silently run with the default, ``-p epochs abc`` would fail deep
inside Keras, and a bad ``out_dir`` only after training. Every notebook's first code cell calls
:func:`check` with one rule per parameter::

    from tinyopt.workbench import params as P
    P.check(globals(), dataset=P.choice("fashion_mnist", "mnist"), epochs=P.count(1),
            seed=P.integer(), out_dir=P.out_dir())

A rule takes the value and returns it converted (``"512k"`` -> 524288, ``"3"`` -> 3, a relative
``out_dir`` -> an absolute, created, writable folder) or raises ``ValueError`` saying what was
expected; :func:`check` writes the converted values back into the notebook's namespace.
"""

from __future__ import annotations

import math
import numbers
import types
from typing import Any, Callable

# Names IPython and papermill put in a notebook's namespace; everything else that exists before
# the first code cell ran came from the parameters cell or from ``-p``.
_KERNEL_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}

Rule = Callable[[str, Any], Any]


class ParameterError(ValueError):
    """A notebook parameter is unknown or has a value its rule refuses."""


def _fail(name: str, expected: str, value, example: str = "<value>") -> None:
    raise ParameterError(f"parameter {name!r}: expected {expected}, got {value!r}. Fix: "
                         f"-p {name} {example} (see the notebook's parameters cell)")


_LIST_EXAMPLE = "'[a, b]' (a YAML/JSON list, quoted for the shell)"


def _as_list(name: str, value):
    """A list given as text (plain papermill and JupyterLab pass ``-p x '[1, 2]'`` as a string):
    read with ``yaml.safe_load``, never evaluated; other values are returned as they are."""
    if not (isinstance(value, str) and value.lstrip().startswith("[")):
        return value
    import yaml
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        _fail(name, "a YAML/JSON list", value, _LIST_EXAMPLE)
    return parsed


def _number(name, value, kind):
    if isinstance(value, str):
        try:
            value = kind(value.strip())
        except ValueError:
            _fail(name, f"{'an integer' if kind is int else 'a number'}", value)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        _fail(name, f"{'an integer' if kind is int else 'a number'}", value)
    if kind is int and int(value) != value:
        _fail(name, "an integer", value)
    if not math.isfinite(float(value)):
        _fail(name, "a finite number", value)
    return kind(value)


def integer(lo: int | None = None, hi: int | None = None, none: bool = False) -> Rule:
    """An int in [lo, hi] (bounds optional); ``none=True`` also accepts None (e.g. "all")."""
    def rule(name, value):
        if value is None and none:
            return None
        v = _number(name, value, int)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            _fail(name, f"an integer in [{lo if lo is not None else '-inf'}, "
                        f"{hi if hi is not None else 'inf'}]" + (" or None" if none else ""), value)
        return v
    return rule


def count(lo: int = 1, none: bool = False) -> Rule:
    """An int >= ``lo`` (epochs, samples, runs)."""
    return integer(lo, None, none)


def real(lo: float | None = None, hi: float | None = None, lo_open: bool = False) -> Rule:
    """A finite number in [lo, hi] ((lo, hi] with ``lo_open``)."""
    def rule(name, value):
        v = _number(name, value, float)
        if (lo is not None and (v < lo or (lo_open and v == lo))) or (hi is not None and v > hi):
            _fail(name, f"a number in {'(' if lo_open else '['}{lo}, {hi}]", value)
        return v
    return rule


def choice(*allowed) -> Rule:
    """One of ``allowed``."""
    def rule(name, value):
        if value not in allowed:
            _fail(name, f"one of {list(allowed)}", value)
        return value
    return rule


def flag() -> Rule:
    """A bool (papermill passes ``-p x True`` as a bool; "true"/"false" strings are accepted)."""
    def rule(name, value):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            _fail(name, "True or False", value)
        return value
    return rule


def text() -> Rule:
    """A non-empty string."""
    def rule(name, value):
        if not isinstance(value, str) or not value:
            _fail(name, "a non-empty string", value)
        return value
    return rule


def items(rule_for_each: Rule | None = None, choices=None, nonempty: bool = True) -> Rule:
    """A list (or tuple) whose items each pass ``rule_for_each`` or are among ``choices``; text
    starting with ``[`` is read as a YAML/JSON list first (``-p models '["kws"]'``)."""
    def rule(name, value):
        value = _as_list(name, value)
        if not isinstance(value, (list, tuple)) or (nonempty and not value):
            _fail(name, "a non-empty list" if nonempty else "a list", value, _LIST_EXAMPLE)
        out = []
        for i, item in enumerate(value):
            if choices is not None and item not in choices:
                _fail(f"{name}[{i}]", f"one of {list(choices)}", item)
            out.append(rule_for_each(f"{name}[{i}]", item) if rule_for_each else item)
        return type(value)(out)
    return rule


def one_or_items(*allowed) -> Rule:
    """One of ``allowed``, or a non-empty list of them (``"PL"`` or ``["PL", "PC"]``)."""
    def rule(name, value):
        value = _as_list(name, value)
        if isinstance(value, (list, tuple)):
            return items(choices=allowed)(name, value)
        if value not in allowed:
            _fail(name, f"one of {list(allowed)} or a list of them", value)
        return value
    return rule


def budget(none: bool = False) -> Rule:
    """A memory budget in bytes: an int or a size such as ``"512k"`` (binary units, see
    :func:`tinyopt.mixed.policy.parse_bytes`)."""
    def rule(name, value):
        if value is None and none:
            return None
        from tinyopt.mixed.policy import parse_bytes
        try:
            return parse_bytes(value, name)
        except (TypeError, ValueError) as exc:
            raise ParameterError(f"parameter {name!r}: {exc}") from None
    return rule


def out_dir() -> Rule:
    """A writable output folder (:func:`tinyopt.workbench.paths.output_dir`: resolved from the
    project folder, created, checked), returned as an absolute :class:`pathlib.Path`."""
    def rule(name, value):
        from tinyopt.workbench.paths import output_dir
        if not isinstance(value, str) or not value:
            _fail(name, "a folder path", value)
        try:
            return output_dir(value)
        except ValueError as exc:
            raise ParameterError(f"parameter {name!r}: {exc}") from None
    return rule


def anything() -> Rule:
    """No check (for values validated by the library call that uses them)."""
    return lambda name, value: value


def unknown_names(namespace: dict, known) -> list[str]:
    """Names in a notebook's namespace that are neither parameters, kernel names, modules nor
    private: what a mistyped ``-p`` creates."""
    return sorted(k for k, v in namespace.items()
                  if not k.startswith("_") and k not in known and k not in _KERNEL_NAMES
                  and not isinstance(v, (types.ModuleType, type, types.FunctionType,
                                         types.BuiltinFunctionType)))


def check(namespace: dict, **rules: Rule) -> dict:
    """Validate a notebook's parameters in place; call it in the first code cell, after the
    imports it needs and before any work.

    Arguments:
        namespace: the notebook's ``globals()``.
        rules: one rule per parameter of the ``parameters`` cell (e.g. ``epochs=count(1)``).

    Returns:
        {name: converted value}, also written back into ``namespace``.

    Raises:
        ParameterError: a name that is not a parameter (a mistyped ``-p``; the message lists
            the parameters), a parameter missing from the namespace, or a value its rule
            refuses.
    """
    unknown = unknown_names(namespace, rules)
    if unknown:
        raise ParameterError(f"unknown parameter(s) {unknown}; this notebook's parameters are "
                             f"{sorted(rules)}. Fix the -p name(s).")
    missing = [n for n in rules if n not in namespace]
    if missing:
        raise ParameterError(f"parameters {missing} are checked but not set in the parameters "
                             "cell; the notebook and its check disagree")
    values = {name: rule(name, namespace[name]) for name, rule in rules.items()}
    namespace.update(values)
    return values

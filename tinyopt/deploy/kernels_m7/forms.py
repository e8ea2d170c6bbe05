"""The kernel forms a unit declares: compile time, not arithmetic.

A specialised kernel (c/tn_m7_*.h) is one forced-inline function whose constant parameters pick
its form: which unrolled variant, epilogue, fused ADD. GCC optimises the kernel's body once on
its own, every form in it, before copying that body into each step that calls it, and only then
do the step's constants prune it: for a sub-byte or MobileNet model most of the compiler's time
is those copies. So the export declares, before including tn_m7.h, the values its steps pass
for each form parameter (``TN_M7_<KERNEL>_FORMS(<parameters>)``, :func:`forms_defines`); the
kernel's first statement, ``TN_FORMS_ONLY`` (c/tn_arith.h), lets GCC drop the other forms from
its body first. A step outside the declared values is a build error, never another path: the
declaration can cost a build, never a number. The values are read from the step calls the export
emits (:func:`unit_forms`), the parameters' places from the kernel's C prototype
(:func:`kernel_params`), so neither can drift from the C.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

C_DIR = Path(__file__).resolve().parent.parent / "c"

# The parameters that select each kernel's form, by kernel (its C name). A kernel is listed once
# its objects were checked identical with and without the declaration (tests/test_kernel_forms.py
# and the instruction-count benches): declaring other parameters can move GCC's register
# allocation.
FORM_PARAMS: dict[str, tuple[str, ...]] = {
    "tn_m7_conv": ("MODE", "QUAD", "TAB", "OB"),
}


@functools.lru_cache(maxsize=None)
def kernel_params(kernel: str) -> tuple[str, ...]:
    """The parameter names of a kernel, in order, read from its prototype in c/tn_m7_*.h (the
    ``TN_*_ARGS`` list macros and ``TN_ST_ARGS(p)`` expanded).

    Arguments:
        kernel: the kernel's C name (``tn_m7_conv``).

    Returns:
        The names, one per argument of a call.

    Raises:
        KeyError: no ``TN_INLINE void <kernel>(`` in the kernel headers.
    """
    headers = {f: f.read_text() for f in sorted(C_DIR.glob("tn_*.h"))}
    for text in headers.values():
        m = re.search(rf"^TN_INLINE void {re.escape(kernel)}\((.*?)\)\s*\{{", text, re.S | re.M)
        if m:
            break
    else:
        raise KeyError(f"no kernel {kernel!r} in {C_DIR}")
    every = "".join(headers.values())
    args = re.sub(r"/\*.*?\*/", " ", m.group(1), flags=re.S)
    for _ in range(4):  # list macros name others (TN_FADD_ARGS: TN_ST_ARGS(A), ...)
        args = re.sub(r"\bTN_ST_ARGS\((\w+)\)",
                      lambda k: ", ".join(f"uint32_t {k.group(1)}{n}" for n in "SMCKRF"), args)
        for name in set(re.findall(r"\b(TN_\w+_ARGS)\b(?!\()", args)):
            d = re.search(rf"^#define {name} ((?:.*\\\n)*.*)", every, re.M)
            if d is None:
                raise KeyError(f"{kernel}: no #define {name} in {C_DIR}")
            args = re.sub(rf"\b{name}\b", d.group(1).replace("\\\n", " "), args)
    return tuple(a.split()[-1].lstrip("*") for a in args.split(","))


def _call_args(text: str, kernel: str) -> list[list[str]]:
    """The argument lists of every call of ``kernel`` in generated C (split at top-level
    commas)."""
    calls = []
    for m in re.finditer(rf"\b{re.escape(kernel)}\(", text):
        depth, args, cur = 1, [], ""
        for ch in text[m.end():]:
            depth += (ch == "(") - (ch == ")")
            if depth == 0:
                break
            if ch == "," and depth == 1:
                args.append(cur.strip())
                cur = ""
            else:
                cur += ch
        calls.append(args + [cur.strip()])
    return calls


def unit_forms(step_c: str, into: dict | None = None) -> dict[str, dict[str, set[int]]]:
    """The form values the steps' calls pass, for every kernel of :data:`FORM_PARAMS`.

    Arguments:
        step_c: the C of the unit's step functions (:func:`step_function`'s texts).
        into: forms to add them to (a union over several models), or None.

    Returns:
        {kernel: {parameter: the values passed}} (``into``, grown).

    Raises:
        ValueError: a call whose argument count is not the prototype's, or a form argument that
            is not an unsigned literal.
    """
    forms = {} if into is None else into
    # comments hold layer names (tinyopt.names.c_comment: never a "*/"), which may read as a call
    step_c = re.sub(r"/\*.*?\*/", " ", step_c, flags=re.S)
    for kernel, names in FORM_PARAMS.items():
        params = kernel_params(kernel)
        for args in _call_args(step_c, kernel):
            if len(args) != len(params):
                raise ValueError(f"a call of {kernel} passes {len(args)} arguments, its "
                                 f"prototype takes {len(params)}")
            for name in names:
                arg = args[params.index(name)]
                if re.fullmatch(r"\d+u", arg) is None:
                    raise ValueError(f"{kernel}'s {name} is {arg!r}, not an unsigned literal")
                forms.setdefault(kernel, {}).setdefault(name, set()).add(int(arg[:-1]))
    return forms


def union_forms(*units: dict[str, dict[str, set[int]]]) -> dict[str, dict[str, set[int]]]:
    """The forms of several units together (``Export.forms`` of models compiled as one unit: the
    kernels are parsed at the first ``#include "tn_m7.h"``, so that unit declares them all)."""
    forms: dict[str, dict[str, set[int]]] = {}
    for unit in units:
        for kernel, params in unit.items():
            for name, values in params.items():
                forms.setdefault(kernel, {}).setdefault(name, set()).update(values)
    return forms


def forms_defines(forms: dict[str, dict[str, set[int]]]) -> str:
    """The C that declares a unit's kernel forms: ``TN_M7_<KERNEL>_FORMS(<parameters>)``, true
    for the values its steps pass, each parameter on its own (GCC's ranges are per variable).
    Each is guarded by ``#ifndef``: a unit of several models (a test's one-program build) defines
    the union of theirs first.

    Arguments:
        forms: {kernel C name: {parameter: the values the unit's steps pass}}.

    Returns:
        Preprocessor lines ("" for no form).

    Raises:
        ValueError: a kernel without :data:`FORM_PARAMS`, a parameter missing, a value not a
            non-negative int (the literals are unsigned).
    """
    lines = []
    for kernel in sorted(forms):
        if kernel not in FORM_PARAMS:
            raise ValueError(f"kernel {kernel!r} declares no forms (FORM_PARAMS)")
        names, values = FORM_PARAMS[kernel], forms[kernel]
        if set(values) != set(names) or not all(values[n] for n in names):
            raise ValueError(f"{kernel}: forms for {sorted(values)}, want each of {names}")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                   for n in names for v in values[n]):
            raise ValueError(f"{kernel}: form values must be non-negative ints, got {values}")
        cond = " && ".join("(" + " || ".join(f"({n}) == {v}u" for v in sorted(values[n]))
                           + ")" for n in names)
        macro = f"TN_M7_{kernel.removeprefix('tn_m7_').upper()}_FORMS"
        lines.append(f"#ifndef {macro} /* the forms this unit's steps use (several models in "
                     "one unit: define the union, kernels_m7.union_forms, or 1, before) */\n"
                     f"#define {macro}({', '.join(names)}) ({cond})\n#endif\n")
    return "".join(lines)

"""Compiling C through a content-keyed object cache.

:func:`compiled_object` gives ``source`` compiled with ``flags`` (``-c``), taken from the cache
when an identical compile already ran. The key covers everything the object depends on: the
compiler (path and version), the flags, and the bytes of the source and of every header it
includes with "..." (found recursively; system headers come with the compiler version). The
kernels (tinyopt_nn.c) and the M7 startup code are the same for every model and compile once; a
model's own sources are keyed through the model.h and model_params.h they include, so the same
export built twice (a test, then a notebook; validate, then generate) compiles once. An object
is written to a temporary name and renamed: whole or absent, also with builds in parallel.
``$TINYOPT_OBJ_CACHE=off`` turns the cache off (every build compiles everything).

Not done, and why: precompiling the Cortex-M7 kernel header (GCC's ``.gch``) would save about
0.2 s of parsing per model compile, but GCC 12.2 (Debian's arm-none-eabi-gcc) then fails about
half of the compiles that inline ``__ssat`` / ``__usat`` ("saturation bit range must be in the
range [0, 31]"), depending on the address the ``.gch`` was built at (session 18).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

from tinyopt.files import cache_dir

OBJ_CACHE_ENV = "TINYOPT_OBJ_CACHE"  # "off": no object cache
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
_compiler_ids: dict[str, str] = {}


class BuildError(RuntimeError):
    """The C compiler or linker failed; the message holds its output."""


def run(cmd, cwd=None, timeout=None) -> subprocess.CompletedProcess:
    """``cmd`` (its parts made strings) run to completion, output captured as text."""
    return subprocess.run([str(c) for c in cmd], check=False, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


def compile_c(cmd, what: str) -> None:
    """Run the compiler command ``cmd``.

    Raises:
        BuildError: it failed; the message names ``what`` and holds the compiler's output.
    """
    proc = run(cmd)
    if proc.returncode != 0:
        raise BuildError(f"{what} failed ({' '.join(map(str, cmd[:1]))}, exit "
                         f"{proc.returncode}):\n{proc.stdout}{proc.stderr}")


def compiler_id(cc: str) -> str:
    """The compiler's path and ``--version`` text (part of every cache key)."""
    if cc not in _compiler_ids:
        proc = run([cc, "--version"])
        _compiler_ids[cc] = f"{shutil.which(cc)}\n{proc.stdout}"
    return _compiler_ids[cc]


def source_closure(source: Path, include_dirs) -> list[tuple[str, bytes]]:
    """(name, bytes) of ``source`` and of every header it includes with quotes, recursively,
    each found as the compiler finds it (the including file's folder, then ``include_dirs``)."""
    seen, todo, out = set(), [Path(source)], []
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        data = path.read_bytes()
        out.append((path.name, data))
        for name in _INCLUDE.findall(data.decode("utf-8", "replace")):
            for folder in (path.parent, *map(Path, include_dirs)):
                if (folder / name).is_file():
                    todo.append(folder / name)
                    break
    return sorted(out)


def obj_cache_dir() -> Path | None:
    """The object cache folder (``<tinyopt.files.cache_dir()>/objects``), or None when
    ``$TINYOPT_OBJ_CACHE`` is ``off`` (every build compiles everything)."""
    if os.environ.get(OBJ_CACHE_ENV) == "off":
        return None
    return cache_dir("objects")


def _key(cc: str, flags, closure) -> str:
    h = hashlib.sha256(compiler_id(cc).encode())
    for part in map(str, flags):  # not the folders: the headers' bytes are hashed
        h.update(b"\0" + part.encode())
    for name, data in closure:
        h.update(b"\0" + name.encode() + b"\0" + hashlib.sha256(data).digest())
    return h.hexdigest()[:24]


def compiled_object(cc: str, flags, source: Path, include_dirs, what: str) -> Path:
    """``source`` compiled with ``flags`` (``-c``).

    Arguments:
        cc: the compiler.
        flags: its flags (without ``-I`` / ``-c`` / ``-o``).
        source: the C file.
        include_dirs: the ``-I`` folders, in order.
        what: names the compile in an error.

    Returns:
        The object from the cache (compiled into it when new), or ``source`` itself when the
        cache is off (the caller then compiles it).

    Raises:
        BuildError: the compiler failed.
    """
    cache = obj_cache_dir()
    if cache is None:
        return Path(source)
    obj = cache / f"{Path(source).stem}-{_key(cc, flags, source_closure(source, include_dirs))}.o"
    if not obj.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        tmp = cache / f".{obj.name}.{os.getpid()}.tmp"
        try:
            incs = [a for d in include_dirs for a in ("-I", d)]
            compile_c([cc, *flags, *incs, "-c", source, "-o", tmp], what)
            os.replace(tmp, obj)  # whole or absent, also with builds in parallel
        finally:
            if tmp.exists():
                tmp.unlink()
    return obj

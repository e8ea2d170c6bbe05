"""Files written whole or not at all: every table, figure, graph, C source and executed notebook
tinyopt writes goes through :func:`atomic_path`, so a reader never sees a torn file and a crash
never leaves half a result. Relative paths are taken from the working directory.

:func:`cache_dir` is the one folder for what tinyopt compiles once and reuses (the simulator's
fast kernels, the C kernels' objects), keyed by content so that nothing stale is ever used.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(target, suffix: str = ""):
    """Yield a temporary path next to ``target``; rename it over ``target`` on success only."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp",
                               dir=target.parent)
    os.close(fd)
    # mkstemp creates mode 0600; give the result the mode a plain open() would (0666 & ~umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


CACHE_ENV = "TINYOPT_CACHE"


def cache_dir(sub: str = "") -> Path:
    """tinyopt's cache folder (``$TINYOPT_CACHE``, default ``~/.cache/tinyopt``, else a folder of
    the user's in the temp folder when the home is not writable), or its sub-folder ``sub``.

    Everything in it is keyed by a hash of what produced it; deleting it is always safe.
    """
    if os.environ.get(CACHE_ENV):
        root = Path(os.environ[CACHE_ENV])
    else:
        root = Path.home() / ".cache" / "tinyopt"
        try:
            root.mkdir(parents=True, exist_ok=True)
            if not os.access(root, os.W_OK):
                raise PermissionError(root)
        except OSError:
            root = Path(tempfile.gettempdir()) / f"tinyopt-{os.getuid()}"
    return root / sub if sub else root

"""Where a notebook's relative paths point: the project folder.

Library functions take paths as Python does (relative to the working directory). Notebooks run
from two places: the project folder (papermill, ``make``) and its ``notebooks/`` folder
(JupyterLab starts kernels next to the notebook); :func:`project_path` makes a notebook's
``out_dir = "results/x"`` land in the same place from both.
"""

from __future__ import annotations

import os
from pathlib import Path


def project_root(start=None) -> Path:
    """The working directory, or its parent when the working directory is a ``notebooks``
    folder."""
    here = Path(start or Path.cwd()).resolve()
    return here.parent if here.name == "notebooks" else here


def project_path(path) -> Path:
    """``path`` if absolute, else ``path`` under :func:`project_root`."""
    p = Path(os.path.expanduser(str(path)))
    return p if p.is_absolute() else project_root() / p


def output_dir(path) -> Path:
    """A notebook's ``out_dir``: resolved with :func:`project_path`, created, and checked to be
    a writable folder before any work starts.

    Raises:
        ValueError: the path is an existing file, or the folder cannot be created or written.
    """
    p = project_path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"out_dir {str(path)!r} is a file ({p}); give a folder, e.g. "
                         "-p out_dir results/my_run")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"out_dir {str(path)!r}: cannot create {p} ({exc.strerror}); give a "
                         "writable folder with -p out_dir") from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise ValueError(f"out_dir {str(path)!r}: {p} is not writable; give a writable folder "
                         "with -p out_dir")
    return p

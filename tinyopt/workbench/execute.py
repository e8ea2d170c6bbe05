"""Run one notebook under papermill so that its executed copy is complete or clearly not.

``papermill`` alone writes the executed notebook as it goes and, interrupted with Ctrl-C, leaves a
copy whose metadata says every cell completed. :func:`run` (``tinyopt run IN OUT -p k v``, what
``make`` uses) executes into a temporary file beside ``OUT`` and renames it over ``OUT`` only when
every cell ran; an interrupted or failed run goes to ``OUT`` with ``.interrupted.ipynb`` /
``.failed.ipynb`` instead of ``.ipynb``, its metadata ``tinyopt.state`` says so, and a first
markdown cell says so to whoever opens it. ``OUT`` from an earlier run is removed first, so it
never stands in for a run that did not finish.
"""

from __future__ import annotations

import os
from pathlib import Path

from tinyopt.files import atomic_path

STATES = ("complete", "interrupted", "failed")


def value(text: str):
    """A ``-p`` value as papermill's CLI reads it: int, float, True/False/None, else the string.
    """
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"True": True, "False": False, "None": None}.get(text, text)


def _mark(path: Path, state: str, detail: str) -> None:
    import nbformat
    nb = nbformat.read(path, 4)
    nb.metadata.setdefault("tinyopt", {})["state"] = state
    nb.metadata["tinyopt"]["detail"] = detail
    banner = nbformat.v4.new_markdown_cell(
        f"**This run is {state.upper()}**: {detail}. Its cells after the point of failure did "
        "not run; do not take numbers from it.")
    banner.metadata["tags"] = ["tinyopt-state"]
    nb.cells.insert(0, banner)
    nbformat.write(nb, path)


def sibling(output: Path, state: str) -> Path:
    """Where a run in ``state`` is written: ``OUT`` itself when complete, else
    ``OUT.<state>.ipynb``."""
    return output if state == "complete" else output.with_suffix(f".{state}.ipynb")


def run(notebook, output, parameters: dict | None = None, cwd=None, **papermill_kwargs) -> Path:
    """Execute ``notebook`` into ``output``, complete or marked (see the module docstring).

    Arguments:
        notebook: the notebook to run.
        output: the executed copy's path (relative to the working directory).
        parameters: papermill parameters.
        cwd: the kernel's working directory (default: the current one).
        papermill_kwargs: passed to ``papermill.execute_notebook``.

    Returns:
        ``output``.

    Raises:
        KeyboardInterrupt: the run was interrupted (after writing the ``.interrupted.ipynb``).
        papermill.PapermillExecutionError: a cell raised (after writing the ``.failed.ipynb``).
    """
    import papermill as pm
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    for state in STATES:
        if sibling(output, state).exists():
            os.unlink(sibling(output, state))
    papermill_kwargs.setdefault("progress_bar", False)
    with atomic_path(output, ".ipynb") as tmp:
        try:
            pm.execute_notebook(str(notebook), str(tmp), parameters=parameters or {},
                                cwd=None if cwd is None else str(cwd), **papermill_kwargs)
        except KeyboardInterrupt:
            _keep(tmp, output, "interrupted", "stopped by an interrupt (Ctrl-C / SIGINT)")
            raise
        except pm.PapermillExecutionError as exc:
            _keep(tmp, output, "failed", f"{exc.ename}: {exc.evalue}".strip()[:500])
            raise
    return output


def _keep(tmp: Path, output: Path, state: str, detail: str) -> None:
    """Move a partial run to its state's sibling, marked; nothing if papermill wrote nothing."""
    if not Path(tmp).exists() or Path(tmp).stat().st_size == 0:
        return
    _mark(Path(tmp), state, detail)
    os.replace(tmp, sibling(output, state))

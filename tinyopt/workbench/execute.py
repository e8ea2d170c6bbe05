"""Run one notebook under papermill so that its executed copy is complete or clearly not, and so
that two runs never write one ``out_dir`` at the same time.

``papermill`` alone writes the executed notebook as it goes and, interrupted with Ctrl-C, leaves a
copy whose metadata says every cell completed. :func:`run` (``tinyopt run IN OUT -p k v``, what
``make`` uses) executes into a temporary file beside ``OUT`` and renames it over ``OUT`` only when
every cell ran; an interrupted or failed run goes to ``OUT`` with ``.interrupted.ipynb`` /
``.failed.ipynb`` instead of ``.ipynb``, its metadata ``tinyopt.state`` says so, and a first
markdown cell says so to whoever opens it. ``OUT`` from an earlier run is removed first, so it
never stands in for a run that did not finish.

**The out_dir lock.** Before anything runs (or is removed), :func:`run` takes
``<out_dir>/.tinyopt-run.lock`` (:func:`out_dir_lock`), where ``out_dir`` is the ``out_dir``
parameter given, else the default in the notebook's ``parameters`` cell, resolved as the
notebook's check resolves it (:func:`tinyopt.workbench.paths.project_path`, from the kernel's
working directory). The file is created whole and atomically (a hard link of a written temporary
file, or ``O_CREAT | O_EXCL`` where hard links are not supported) and holds JSON naming the run:
notebook, output, out_dir, pid, host, start time. A second run into the same ``out_dir`` is
refused (:class:`OutDirBusy`) naming the first. A lock whose pid is dead on this host (a run
killed with SIGKILL / SIGTERM) is stale: it is taken over, with a note. The lock is removed when
the run ends, done, failed or interrupted. A later run into a finished run's ``out_dir`` is
normal and overwrites its results.

The lock is taken here, not in the notebook's parameter check: a kernel in JupyterLab has no end
of run (it stays up after the last cell), so a lock it held would block every later run until the
kernel is shut down. Plain papermill and JupyterLab runs are therefore not covered; a notebook
whose default ``out_dir`` is not a literal string takes no lock unless ``-p out_dir`` is given;
and a run on another host is never judged stale (its pid cannot be checked): delete the lock file
by hand when the message says its run is gone.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import socket
import sys
import tempfile
import time
import uuid
from pathlib import Path

from tinyopt.files import atomic_path
from tinyopt.workbench.paths import project_root

STATES = ("complete", "interrupted", "failed")
LOCK_NAME = ".tinyopt-run.lock"


class RunError(ValueError):
    """A run refused before anything ran: a bad parameter value on the command line, a missing
    notebook, an output that cannot be written, or an ``out_dir`` in use (:class:`OutDirBusy`)."""


class OutDirBusy(RunError):
    """Another run holds the ``out_dir``'s lock; the message names it."""


def value(text: str, name: str | None = None):
    """A ``-p`` value: as papermill's CLI reads it (int, float, True/False/None, else the string),
    and a list or mapping when it starts with ``[`` or ``{`` (YAML flow style, which includes
    JSON: ``'["int8", "prune>qat>int8"]'``, ``'{a: 1}'``; read with ``yaml.safe_load``, never
    evaluated).

    Arguments:
        text: the value as typed.
        name: the parameter's name, for the error message.
    Raises:
        RunError: a value starting with ``[`` or ``{`` that is not a valid YAML list / mapping.
    """
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lstrip().startswith(("[", "{")):
        import yaml
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            reason = str(exc).replace("\n", " ")
            raise RunError(f"-p {name or '<name>'} {text!r}: a value starting with '[' or '{{' is "
                           f"read as a YAML/JSON list or mapping, and this one is not valid "
                           f"({reason}); e.g. -p {name or 'sequences'} '[\"int8\", "
                           f"\"prune>qat>int8\"]'") from None
        if isinstance(parsed, (list, dict)):
            return parsed
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
    """Execute ``notebook`` into ``output``, complete or marked, holding its ``out_dir``'s lock
    (see the module docstring).

    Arguments:
        notebook: the notebook to run.
        output: the executed copy's path (relative to the working directory).
        parameters: papermill parameters.
        cwd: the kernel's working directory (default: the current one).
        papermill_kwargs: passed to ``papermill.execute_notebook``.

    Returns:
        ``output``.

    Raises:
        RunError: before anything ran: the notebook does not exist, ``output`` is a folder or in
            a folder that cannot be created or written.
        OutDirBusy: another run is using the same ``out_dir`` (the message names it).
        KeyboardInterrupt: the run was interrupted (after writing the ``.interrupted.ipynb``).
        papermill.PapermillExecutionError: a cell raised (after writing the ``.failed.ipynb``).
    """
    parameters = dict(parameters or {})
    if "://" not in str(notebook) and not Path(notebook).is_file():
        raise RunError(f"notebook {str(notebook)!r} does not exist (or is not a file)")
    output = Path(output)
    _check_output(output)
    out_dir = _out_dir(notebook, parameters, cwd)
    lock = out_dir_lock(out_dir, notebook, output) if out_dir is not None \
        else contextlib.nullcontext()
    with lock as note:
        if note:
            print(f"note: {note}", file=sys.stderr)
        _execute(notebook, output, parameters, cwd, papermill_kwargs)
    return output


def _execute(notebook, output: Path, parameters: dict, cwd, papermill_kwargs: dict) -> None:
    import papermill as pm
    for state in STATES:
        if sibling(output, state).exists():
            os.unlink(sibling(output, state))
    papermill_kwargs.setdefault("progress_bar", False)
    with atomic_path(output, ".ipynb") as tmp:
        try:
            pm.execute_notebook(str(notebook), str(tmp), parameters=parameters,
                                cwd=None if cwd is None else str(cwd), **papermill_kwargs)
        except KeyboardInterrupt:
            _keep(tmp, output, "interrupted", "stopped by an interrupt (Ctrl-C / SIGINT)")
            raise
        except pm.PapermillExecutionError as exc:
            _keep(tmp, output, "failed", f"{exc.ename}: {exc.evalue}".strip()[:500])
            raise


def _check_output(output: Path) -> None:
    """Refuse an output that cannot be written, before a run whose result would be lost."""
    if output.is_dir():
        raise RunError(f"output {str(output)!r} is a folder; give the executed notebook's file "
                       f"name, e.g. {output / 'run.ipynb'}")
    folder = output.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # os.access alone says yes to root and on read-only mounts; a probe file tells.
        fd, probe = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".probe", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise RunError(f"cannot write the output notebook in folder {str(folder) or '.'!r} "
                       f"({exc.strerror or exc}); give OUT in a writable folder") from None


def _out_dir(notebook, parameters: dict, cwd) -> Path | None:
    """The absolute ``out_dir`` this run writes (see the module docstring), or None when the
    notebook has none, or its value is not a string (its own check refuses that)."""
    value = parameters["out_dir"] if "out_dir" in parameters else _default_out_dir(notebook)
    if not isinstance(value, str) or not value:
        return None
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else project_root(cwd) / path


def _default_out_dir(notebook):
    """The literal default of ``out_dir`` in the notebook's ``parameters`` cell, else None."""
    try:
        nb = json.loads(Path(notebook).read_text())
    except (OSError, ValueError):
        return None  # papermill reports an unreadable notebook itself
    for cell in nb.get("cells", []):
        if "parameters" not in cell.get("metadata", {}).get("tags", []):
            continue
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else src
        try:
            tree = ast.parse(src)
        except SyntaxError:
            return None
        found = None
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                    isinstance(t, ast.Name) and t.id == "out_dir" for t in node.targets):
                with contextlib.suppress(ValueError, TypeError, SyntaxError):
                    found = ast.literal_eval(node.value)
        return found
    return None


# ---------------------------------------------------------------- the out_dir lock

@contextlib.contextmanager
def out_dir_lock(out_dir, notebook="?", output="?"):
    """Hold ``<out_dir>/.tinyopt-run.lock`` for the block (see the module docstring).

    Arguments:
        out_dir: the folder (created if missing).
        notebook, output: what this run is, for a message to a second run.
    Yields:
        None, or a note saying that a stale lock (of a run that died) was taken over.
    Raises:
        RunError: ``out_dir`` cannot be created or written.
        OutDirBusy: another run holds the lock, or the lock file is not readable as one.
    """
    folder = Path(out_dir)
    lock = folder / LOCK_NAME
    if folder.exists() and not folder.is_dir():
        raise RunError(f"out_dir {folder} is a file; give a folder, e.g. -p out_dir results/x")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunError(f"out_dir {folder}: cannot create it ({exc.strerror}); give a writable "
                       "folder with -p out_dir") from None
    me = {"notebook": str(notebook), "output": str(output), "out_dir": str(folder),
          "pid": os.getpid(), "host": socket.gethostname(),
          "started": time.strftime("%Y-%m-%d %H:%M:%S %z"), "token": uuid.uuid4().hex}
    note = None
    for _ in range(10):  # only a crowd of runs starting at once needs more than two rounds
        if _create(lock, me):
            break
        holder, inode = _read(lock)
        if holder is None:
            continue  # it was removed meanwhile: try again
        if _alive(holder):
            raise OutDirBusy(_busy_message(folder, lock, holder))
        if _take_over(lock, inode):
            note = (f"took over {lock}: it was left by a run that is no longer running "
                    f"({_who(holder)})")
    else:
        raise OutDirBusy(f"out_dir {folder}: could not take {lock}; other runs are starting "
                         "in the same folder, give each run its own -p out_dir")
    try:
        yield note
    finally:
        _release(lock, me["token"])


def _create(lock: Path, me: dict) -> bool:
    """Create ``lock`` holding ``me``, whole, unless it exists; False when it does."""
    text = json.dumps(me, indent=1)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{LOCK_NAME}.", suffix=".tmp", dir=lock.parent)
    except OSError as exc:
        raise RunError(f"out_dir {lock.parent} is not writable ({exc.strerror}); give a "
                       "writable folder with -p out_dir") from None
    try:
        os.fchmod(fd, 0o644)  # readable by another user's run, whose message names this one
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        try:
            os.link(tmp, lock)  # atomic, fails if it exists, and never shows a half file
            return True
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links
            pass
    finally:
        os.unlink(tmp)
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return True


def _read(lock: Path) -> tuple[dict | None, int]:
    """The lock's record and inode; (None, 0) when it is gone.

    Raises:
        OutDirBusy: the file is not a lock record (damaged, or written by someone else).
    """
    try:
        with open(lock) as handle:
            inode, text = os.fstat(handle.fileno()).st_ino, handle.read()
    except FileNotFoundError:
        return None, 0
    except OSError as exc:
        raise OutDirBusy(f"out_dir {lock.parent} has a lock file {lock} that cannot be read "
                         f"({exc.strerror}); another user's run may be writing that folder: "
                         "give this run its own -p out_dir") from None
    try:
        holder = json.loads(text)
        if not (isinstance(holder, dict) and isinstance(holder.get("pid"), int)
                and isinstance(holder.get("host"), str)):
            raise ValueError("no pid and host")
    except ValueError as exc:
        raise OutDirBusy(f"out_dir {lock.parent} has a lock file {lock} that is not a tinyopt "
                         f"run lock ({type(exc).__name__}: {exc}); if no run is writing that "
                         "folder, delete the file and run again") from None
    return holder, inode


def _alive(holder: dict) -> bool:
    """Whether the holder may still run: True unless its pid is dead on this very host."""
    if holder["host"] != socket.gethostname():
        return True
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process, or a pid this system cannot have: not ours to judge
    return True


def _take_over(lock: Path, inode: int) -> bool:
    """Remove the stale ``lock`` (inode ``inode``); False when another run replaced it first."""
    grave = lock.with_name(f"{LOCK_NAME}.stale.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        os.rename(lock, grave)  # atomic: of several runs taking over, one gets the stale file
    except FileNotFoundError:
        return False
    if os.stat(grave).st_ino != inode:  # a fresh lock, made after we read: put it back
        with contextlib.suppress(FileExistsError):
            os.link(grave, lock)
        os.unlink(grave)
        return False
    os.unlink(grave)
    return True


def _release(lock: Path, token: str) -> None:
    """Remove ``lock`` if it is still this run's."""
    with contextlib.suppress(OSError, ValueError):
        if json.loads(lock.read_text()).get("token") == token:
            lock.unlink()


def _who(holder: dict) -> str:
    return (f"{holder.get('notebook', '?')} -> {holder.get('output', '?')}, pid "
            f"{holder['pid']} on {holder['host']}, started {holder.get('started', '?')}")


def _busy_message(folder: Path, lock: Path, holder: dict) -> str:
    here = holder["host"] == socket.gethostname()
    return (f"out_dir {folder} is in use by another run: {_who(holder)}. Two runs writing one "
            "out_dir overwrite each other's results: wait for it to finish, or give this run "
            "its own folder (-p out_dir results/<name>). "
            + (f"If that run is no longer running, delete {lock}" if here else
               f"It runs on another host, so its pid cannot be checked here: if it is no longer "
               f"running, delete {lock}"))


def _keep(tmp: Path, output: Path, state: str, detail: str) -> None:
    """Move a partial run to its state's sibling, marked; nothing if papermill wrote nothing."""
    if not Path(tmp).exists() or Path(tmp).stat().st_size == 0:
        return
    _mark(Path(tmp), state, detail)
    os.replace(tmp, sibling(output, state))

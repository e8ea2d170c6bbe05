"""Resumable papermill sweeps over one notebook's parameters, run on Dask (``tinyopt sweep``).

Grid file (YAML); every key but ``notebook`` is optional, but there must be at least one run::

    notebook: 00_baseline.ipynb        # under notebooks/, or a path from the project folder
    fixed:                             # given to every run
      epochs: 1
    grid:                              # the product of these lists; a list of such mappings
      dataset: [fashion_mnist, mnist]  #   gives the union of their products
      seed: [0, 1, 2]
    rows:                              # explicit parameter sets, run after the product(s)
      - {dataset: mnist, seed: 7}
    output: results/sweeps/x.csv       # the sweep's table; default results/sweeps/<grid stem>.csv
    collect: "{out_dir}/*.csv"         # a run's result CSVs (the default; name one file when the
                                       #   notebook writes several kinds); null: collect none

Every name must be a variable of the notebook's ``parameters`` cell (read with ``ast``). Identical
parameter sets are run once. Relative paths are taken from the project folder
(:func:`tinyopt.workbench.paths.project_root`: the working directory, or its parent in
``notebooks/``).

**Runs.** A run is identified by its hash: 16 base32 characters (a-z, 2-7) of the SHA-256 of the
canonical JSON ``{"notebook": <name>, "parameters": <the grid's parameters>}`` (base32, so a hash
never reads as a number in a CSV). Only the parameters the grid gives are hashed: a changed
notebook does not invalidate finished runs; delete a run's folder to redo it, or
``results/runs/<stem>/`` to start afresh.

**Execution.** Each run is one task on ``dask.distributed`` (:func:`connect`): by default a local
cluster of ``jobs`` single-threaded worker processes, worker *i* pinned to share *i* of the cores
(its kernels inherit the pinning, and thread counts ``TF_NUM_INTRAOP_THREADS`` ...
``OPENBLAS_NUM_THREADS`` = the size of the share); or a running
cluster, by its scheduler's address. A task runs papermill on its worker with the kernel in the
project folder (which must exist at the same path there: notebooks read their inputs from it,
read-only) and ``out_dir`` in a scratch folder, reads the result rows (``collect``, formatted with
the run's parameters, ``out_dir`` and ``hash``; matching nothing is a failure) and returns the
executed notebook, the rows and the files under ``out_dir``. Workers need no shared file system:
only the client writes ``results/``. A worker that dies mid-task has its task started again on
another worker, at most ``retries`` times, then the run is recorded as failed; a notebook that
raises is recorded as failed while the others go on.

**Run folders.** ``results/runs/<stem>/<hash>/`` is the run's ``out_dir`` (unless the grid sets
one) and holds ``run.ipynb`` (the executed notebook) and ``run.json`` (the run's result file: hash,
parameters, rows, version, worker, seconds). The client builds the folder under a temporary name
and renames it into place, so a run is absent or complete: it is done when ``run.json`` carries
its hash and parameters, and a rerun skips it. A ``run.json`` that does not (unreadable, not JSON,
another run's) makes the run "damaged": reported with the file's path by the sweep and by
``--status``, never re-run by itself (delete the folder to run it again). A failed run's folder
holds ``failed.json`` (the error) and ``failed.ipynb`` (the partial notebook, its
``metadata.tinyopt.state`` "failed"); it is retried on the next sweep unless ``skip_failed``. One
sweep at a time writes a notebook's runs (an flock on ``results/runs/<stem>/.sweep.lock``); a
killed client's temporary folders are removed by the next sweep. The sweep does not go through
:func:`tinyopt.workbench.execute.run`, so its runs take no ``out_dir`` lock (each run has its own
folder, and the runs' lock is the sweep's).

**The sweep table** is rebuilt from the done runs' result files, in grid order, whenever a run
finishes and by ``tinyopt sweep --status``; it is never patched. It holds, per done run, its rows:
``run`` (the hash), the parameters (lists and mappings as canonical JSON; a parameter whose value
differs from a same-named notebook column is kept as ``param_<name>``), then the notebook's
columns; a run without collected rows gives one row with ``status = ok``. A table that differs
from its runs (a deleted run, a truncated, deleted or duplicated row, an unreadable file) is
replaced and the difference reported. ``<output stem>.sweep.json`` names the grid the table belongs
to: a table of another grid (two grids with one file name) or without that record (from an older
tinyopt, or another file) is refused. ``<output stem>.status.csv`` lists every run with its state
and error.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import fcntl
import glob
import hashlib
import itertools
import json
import os
import re
import shutil
import socket
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

import tinyopt
from tinyopt.files import atomic_path
from tinyopt.workbench import report
from tinyopt.workbench.paths import project_path, project_root

RUNS_ROOT = "results/runs"
SWEEPS_ROOT = "results/sweeps"
GRID_KEYS = ("notebook", "fixed", "grid", "rows", "output", "collect", "description")
DEFAULT_COLLECT = "{out_dir}/*.csv"
RESERVED = ("run.ipynb", "run.json", "failed.ipynb", "failed.json")  # names in a run folder
RETRIES = 3  # a task whose worker died is started again this often (Dask's default)
SCHEDULER_ENV = "TINYOPT_DASK_SCHEDULER"
THREAD_VARS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS",
               "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class SweepError(ValueError):
    """A grid file, notebook or table that cannot be swept; the message names the problem and the
    fix."""


class SweepBusy(SweepError):
    """Another sweep is writing the same runs (it holds their lock)."""


@dataclass(frozen=True)
class Run:
    """One parameter set: ``parameters`` (hashed) and ``inject`` (given to the notebook)."""
    hash: str
    parameters: dict
    inject: dict
    collect: str | None  # absolute glob pattern on the client, or None


@dataclass
class Sweep:
    """A validated grid: the notebook, its runs and where things go."""
    grid_path: Path
    notebook: Path
    name: str            # notebook key in the hash: path under notebooks/ (or the project)
    runs: list[Run]
    runs_dir: Path       # results/runs/<notebook stem>
    output: Path         # the sweep CSV
    collect: str | None  # the grid's 'collect' template
    duplicates: int = 0  # parameter sets given more than once (run once)
    notebook_parameters: dict = field(default_factory=dict)

    def run_dir(self, run: Run) -> Path:
        return self.runs_dir / run.hash

    def executed(self, run: Run) -> Path:
        return self.run_dir(run) / "run.ipynb"

    def result_file(self, run: Run) -> Path:
        return self.run_dir(run) / "run.json"

    def failed_record(self, run: Run) -> Path:
        return self.run_dir(run) / "failed.json"

    @property
    def status_csv(self) -> Path:
        return self.output.with_name(self.output.stem + ".status.csv")

    @property
    def manifest(self) -> Path:
        return self.output.with_name(self.output.stem + ".sweep.json")


# ---------------------------------------------------------------- validation and planning

def notebook_parameters(path) -> dict[str, str]:
    """The variables assigned in a notebook's ``parameters``-tagged cell.

    Returns:
        {name: source of the default expression}, in cell order.
    Raises:
        SweepError: no such cell, or it is not valid Python.
    """
    # Plain JSON, not nbformat: importing nbformat costs seconds (its jsonschema formats).
    try:
        nb = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SweepError(f"cannot read notebook {path}: {exc}") from exc
    cells = [c for c in nb.get("cells", [])
             if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise SweepError(f"{path} has no cell tagged 'parameters'; tag the cell that assigns the "
                         "notebook's parameters (tools/nbwrite.py does this for cell 1)")
    src = cells[0]["source"]
    src = "".join(src) if isinstance(src, list) else src
    try:
        tree = ast.parse(src)
    except SyntaxError as exc:
        raise SweepError(f"the parameters cell of {path} is not valid Python: {exc}") from exc
    names = {}
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) else []
        for t in targets:
            for leaf in ast.walk(t):
                if isinstance(leaf, ast.Name):
                    names[leaf.id] = ast.get_source_segment(src, node.value) if node.value else ""
    return names


def run_hash(name: str, parameters: dict) -> str:
    """16 base32 characters of the SHA-256 of the canonical JSON of notebook name + parameters."""
    blob = _canonical({"notebook": name, "parameters": parameters}).encode()
    return base64.b32encode(hashlib.sha256(blob).digest()).decode().lower()[:16]


def load(grid_path, runs_root=RUNS_ROOT) -> Sweep:
    """Read and validate a grid file; nothing runs and nothing is written.

    Arguments:
        grid_path: the YAML grid (relative paths from the project folder).
        runs_root: where the run folders ``<notebook stem>/<hash>/`` go.
    Returns:
        A :class:`Sweep` with its runs in grid order.
    Raises:
        SweepError: malformed YAML, unknown key, notebook or parameter, empty grid, or an output
            table that belongs to another grid or to no sweep.
    """
    import yaml
    grid_path = project_path(grid_path)
    if not grid_path.is_file():
        raise SweepError(f"grid file {grid_path} does not exist; grids live in notebooks/grids/")
    try:
        spec = yaml.safe_load(grid_path.read_text())
    except yaml.YAMLError as exc:
        raise SweepError(f"{grid_path} is not valid YAML: {exc}") from exc
    where = grid_path.name
    if not isinstance(spec, dict):
        raise SweepError(f"{where}: the top level must be a mapping with at least 'notebook' and "
                         f"'grid' or 'rows', got {type(spec).__name__}")
    unknown = sorted(set(spec) - set(GRID_KEYS))
    if unknown:
        raise SweepError(f"{where}: unknown key(s) {unknown}; allowed: {list(GRID_KEYS)}")
    notebook, name = _find_notebook(spec.get("notebook"), where)
    known = notebook_parameters(notebook)

    fixed = spec.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise SweepError(f"{where}: 'fixed' must be a mapping name: value")
    products = spec.get("grid") or []
    products = [products] if isinstance(products, dict) else products
    rows = spec.get("rows") or []
    if not isinstance(products, list) or not all(isinstance(p, dict) for p in products):
        raise SweepError(f"{where}: 'grid' must be a mapping name: [values...] or a list of them")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise SweepError(f"{where}: 'rows' must be a list of mappings name: value")

    sets = []
    for i, product in enumerate(products):
        label = f"grid[{i}]" if len(products) > 1 else "grid"
        for key, values in product.items():
            if not isinstance(values, list):
                raise SweepError(f"{where}: {label}.{key} must be a list of values (got "
                                 f"{values!r}); put a single value under 'fixed:'")
            if not values:
                raise SweepError(f"{where}: {label}.{key} is an empty list, so the product is "
                                 "empty; give at least one value or remove the key")
        keys = list(product)
        sets += [dict(zip(keys, combo)) for combo in itertools.product(*product.values())]
    sets += [dict(r) for r in rows]
    if not sets:
        raise SweepError(f"{where}: the grid is empty; give 'grid: {{name: [values]}}' and/or "
                         "'rows: [{name: value}]'")

    runs_dir = project_path(runs_root) / notebook.stem
    collect = spec.get("collect", DEFAULT_COLLECT if "out_dir" in known else None)
    runs, seen, dup = [], set(), 0
    for params in sets:
        clash = sorted(set(params) & set(fixed))
        if clash:
            raise SweepError(f"{where}: {clash} given both in 'fixed' and in grid/rows; keep one")
        params = {**fixed, **params}
        bad = sorted(set(params) - set(known))
        if bad:
            raise SweepError(f"{where}: parameter(s) {bad} are not in the parameters cell of "
                             f"{name}; it has {list(known)}")
        try:
            h = run_hash(name, params)
        except (TypeError, ValueError) as exc:
            raise SweepError(f"{where}: parameters {params} are not plain YAML values "
                             f"(str, number, bool, null, list, mapping): {exc}") from exc
        if h in seen:
            dup += 1
            continue
        seen.add(h)
        inject = dict(params)
        if "out_dir" in known and "out_dir" not in params:
            inject["out_dir"] = display_path(runs_dir / h)
        pattern = None
        if collect is not None:
            try:
                pattern = str(project_path(str(collect).format(hash=h, **inject)))
            except (KeyError, IndexError, ValueError) as exc:
                raise SweepError(f"{where}: 'collect: {collect}' uses {exc} which is not a "
                                 f"parameter of this run ({sorted(inject)}) nor 'hash'") from exc
        runs.append(Run(h, params, inject, pattern))

    patterns = [r.collect for r in runs if r.collect is not None]
    if len(set(patterns)) < len(patterns):
        raise SweepError(f"{where}: 'collect: {collect}' gives the same files for several runs "
                         "(is out_dir fixed?); make it per run, e.g. '{out_dir}/{dataset}_{seed}"
                         ".csv', or let the sweep choose out_dir")
    output = project_path(spec.get("output") or f"{SWEEPS_ROOT}/{grid_path.stem}.csv")
    for path in (output, output.with_name(output.stem + ".sweep.json"),
                 output.with_name(output.stem + ".status.csv")):
        if path.is_dir():
            raise SweepError(f"{where}: the sweep table {display_path(output)} needs the file "
                             f"{display_path(path)}, which is a folder; set 'output:' to a CSV "
                             f"file name, e.g. 'output: {SWEEPS_ROOT}/{grid_path.stem}.csv', or "
                             "move the folder")
    sweep = Sweep(grid_path, notebook, name, runs, runs_dir, output,
                  None if collect is None else str(collect), dup, known)
    _check_owner(sweep)
    return sweep


def _find_notebook(value, where: str) -> tuple[Path, str]:
    available = sorted(p.name for p in (project_root() / "notebooks").glob("*.ipynb"))
    if not isinstance(value, str) or not value:
        raise SweepError(f"{where}: missing 'notebook: <name>.ipynb'; available: {available}")
    candidates = [project_root() / "notebooks" / value, project_path(value)]
    candidates += [c.with_suffix(".ipynb") for c in candidates if c.suffix != ".ipynb"]
    for c in candidates:
        if c.is_file() and c.suffix == ".ipynb":
            c = c.resolve()
            for base in (project_root() / "notebooks", project_root()):
                if c.is_relative_to(base):
                    return c, c.relative_to(base).as_posix()
            return c, str(c)
    raise SweepError(f"{where}: notebook {value!r} not found under notebooks/ or the project "
                     f"folder {project_root()}; available in notebooks/: {available}")


def _check_owner(sweep: Sweep) -> None:
    """Refuse an output table that another grid, or no sweep, wrote (see the module docstring)."""
    me, table = display_path(sweep.grid_path), display_path(sweep.output)
    if sweep.manifest.exists():
        try:
            owner = json.loads(sweep.manifest.read_text())["grid"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SweepError(f"{display_path(sweep.manifest)} is damaged ({type(exc).__name__}: "
                             f"{exc}); it names the grid that {table} belongs to. If that is "
                             f"{me}, delete it: the table is rebuilt from the runs") from exc
        if owner != me:
            raise SweepError(f"{table} is the table of grid {owner}, not of {me} (two grids with "
                             f"the same file name share a default table); set another 'output:' "
                             f"in {me}, e.g. 'output: {SWEEPS_ROOT}/<new name>.csv'")
    elif sweep.output.exists():
        raise SweepError(f"{table} exists but no sweep wrote it ({sweep.manifest.name}, which "
                         "names the grid a table belongs to, is missing: a table from an older "
                         "tinyopt, or another file). The sweep table is rebuilt from the runs in "
                         f"{display_path(sweep.runs_dir)}/, so move or delete {table}, or set "
                         f"another 'output:' in {me}")


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def display_path(path: Path) -> str:
    """A path from the project folder when it is inside it (portable in tables)."""
    path = Path(path)
    return path.relative_to(project_root()).as_posix() \
        if path.is_relative_to(project_root()) else str(path)


# ---------------------------------------------------------------- state and the sweep table

def result(sweep: Sweep, run: Run) -> dict | None:
    """The result file of a done run; None when it is absent or damaged (:func:`damage`)."""
    try:
        rec = json.loads(sweep.result_file(run).read_text())
    except (OSError, ValueError):
        return None
    done = isinstance(rec, dict) and rec.get("hash") == run.hash \
        and rec.get("parameters") == run.parameters
    return rec if done else None


def damage(sweep: Sweep, run: Run) -> str | None:
    """What is wrong with a run's result file, or None when it is absent or right.

    A damaged ``run.json`` (unreadable, not JSON, or for another run) is reported, never taken
    as "not done yet": a sweep that silently re-ran it would replace whatever the folder still
    holds. The fix, which the text names, is to delete the run folder.
    """
    path = sweep.result_file(run)
    if not path.exists():
        return None
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problem = f"unreadable ({type(exc).__name__}: {str(exc).strip().splitlines()[0]})" \
            if str(exc).strip() else f"unreadable ({type(exc).__name__})"
    else:
        if not isinstance(rec, dict):
            problem = f"not a JSON object (a {type(rec).__name__})"
        elif rec.get("hash") != run.hash:
            problem = f"the record of another run ({rec.get('hash')!r})"
        elif rec.get("parameters") != run.parameters:
            problem = f"for other parameters ({_canonical_or_repr(rec.get('parameters'))})"
        else:
            return None
    return (f"damaged result file {display_path(path)}: {problem}; delete "
            f"{display_path(sweep.run_dir(run))}/ to run it again")


def _canonical_or_repr(value) -> str:
    try:
        return _canonical(value)
    except (TypeError, ValueError):
        return repr(value)


def state(sweep: Sweep, run: Run) -> str:
    """'done', 'damaged' (a ``run.json`` that is not this run's record: :func:`damage`; never
    re-run by itself), 'failed' or 'pending'."""
    if sweep.result_file(run).exists():
        return "done" if result(sweep, run) is not None else "damaged"
    return "failed" if sweep.failed_record(run).exists() else "pending"


def status(sweep: Sweep) -> pd.DataFrame:
    """One row per run: run, state, parameters (as JSON), error (first line), its notebook."""
    out = []
    for run in sweep.runs:
        s, error = state(sweep, run), ""
        if s == "failed":
            with contextlib.suppress(OSError, ValueError, AttributeError):
                error = json.loads(sweep.failed_record(run).read_text()).get("error", "")
        elif s == "damaged":
            error = damage(sweep, run) or ""
        notebook = sweep.run_dir(run) / "failed.ipynb" if s == "failed" else sweep.executed(run)
        out.append({"run": run.hash, "state": s, "parameters": _canonical(run.parameters),
                    "error": error.strip().splitlines()[0] if error.strip() else "",
                    "notebook": display_path(notebook)})
    return pd.DataFrame(out)


def sweep_rows(sweep: Sweep, run: Run, rec: dict) -> list[dict]:
    """The sweep-table rows of a done run, from its result file ``rec``.

    Raises:
        SweepError: the run was done with another 'collect' and this grid's files are missing.
    """
    params = {k: _cell(v) for k, v in {**run.parameters, **run.inject}.items()}
    collected = rec.get("rows")
    if rec.get("collect") != sweep.collect:
        # The run was done for another grid with another 'collect': read this grid's files.
        try:
            collected = None if run.collect is None else collect_rows(run.collect)
        except RuntimeError as exc:
            raise SweepError(f"run {run.hash} was executed with collect={rec.get('collect')!r}"
                             f"; {exc}. Delete {display_path(sweep.run_dir(run))}/ to rerun "
                             "it") from exc
    if collected is None:
        return [{"run": run.hash, **params, "status": "ok"}]
    rows = []
    for row in collected:
        merged = {"run": run.hash}
        for k, v in params.items():
            same = k not in row or str(row[k]) == str(v)
            merged[k if same else f"param_{k}"] = v
        merged.update(row)
        rows.append(merged)
    return rows


def table(sweep: Sweep) -> pd.DataFrame:
    """The sweep table: the rows of every done run, in grid order."""
    rows = [row for run in sweep.runs if (rec := result(sweep, run)) is not None
            for row in sweep_rows(sweep, run, rec)]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=["run"])


def write_table(sweep: Sweep) -> str | None:
    """Rebuild the sweep table from the runs; call it holding the runs' lock (:func:`refresh`).

    Returns:
        None when the file was right or absent, else what was wrong with it (it is replaced).
    Raises:
        SweepError: from :func:`sweep_rows`.
    """
    frame = table(sweep)
    old = sweep.output.read_text(errors="replace") if sweep.output.exists() else None
    if old == frame.to_csv(index=False):
        return None
    problem = None if old is None else _difference(sweep.output, frame)
    if not sweep.manifest.exists():
        with atomic_path(sweep.manifest, ".json") as tmp:
            tmp.write_text(json.dumps({"grid": display_path(sweep.grid_path),
                                       "notebook": sweep.name,
                                       "runs": display_path(sweep.runs_dir)}, indent=1))
    report.write_csv(frame, sweep.output)
    done = frame["run"].nunique()
    return None if problem is None else \
        f"{display_path(sweep.output)} did not match its runs ({problem}); rebuilt it from " \
        f"the {done} done run{'s' * (done != 1)}"


def _difference(path: Path, frame: pd.DataFrame) -> str:
    """What an existing sweep table has wrong, compared with ``frame`` (the right one)."""
    try:
        old = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:  # pandas' ParserError and EmptyDataError included
        return f"unreadable: {type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
    if "run" not in old.columns:
        return "no 'run' column"
    have, want = old["run"].value_counts(), frame["run"].astype(str).value_counts()
    missing = sum(max(0, n - have.get(r, 0)) for r, n in want.items())
    extra = sum(max(0, n - want.get(r, 0)) for r, n in have.items())
    parts = ([f"{missing} row(s) missing"] if missing else []) + \
        ([f"{extra} row(s) too many (repeated, or of runs not done)"] if extra else [])
    return ", ".join(parts) or "values or columns differ (a truncated or edited row?)"


def refresh(sweep: Sweep) -> str | None:
    """Rebuild the sweep table and ``<output stem>.status.csv`` from the runs (``--status``).

    Returns:
        What was wrong with the old table, or None.
    Raises:
        SweepBusy: a sweep is running over these runs (it rebuilds the table itself).
    """
    with _writer(sweep):
        note = write_table(sweep)
        report.write_csv(status(sweep), sweep.status_csv)
    return note


def collect_rows(pattern: str) -> list[dict]:
    """The rows of the CSVs matching ``pattern`` (sorted by name), every value as text.

    Raises:
        RuntimeError: no file matches, or the files hold no rows.
    """
    files = sorted(glob.glob(pattern))
    if not files:
        raise RuntimeError(f"no CSV matches {pattern}; set 'collect:' in the grid (null: collect "
                           "none)")
    # As text, so values reach the sweep CSV exactly as the notebook wrote them.
    rows = [row for f in files
            for row in pd.read_csv(f, dtype=str, keep_default_na=False).to_dict("records")]
    if not rows:
        raise RuntimeError(f"{files} hold no rows")
    return rows


def _cell(value):
    """A parameter value as a CSV cell: scalars as they are, None empty, containers as JSON."""
    if value is None:
        return ""
    return _canonical(value) if isinstance(value, (list, dict)) else value


@contextlib.contextmanager
def _writer(sweep: Sweep):
    """Hold the lock that makes one process at a time write a notebook's runs and tables."""
    sweep.runs_dir.mkdir(parents=True, exist_ok=True)
    with open(sweep.runs_dir / ".sweep.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SweepBusy(f"another tinyopt sweep is writing {display_path(sweep.runs_dir)}/ "
                            "(it holds .sweep.lock there); wait for it to finish or stop it: "
                            "one sweep at a time writes a notebook's runs") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------- execution

def cpu_slots(jobs: int) -> list[list[int]]:
    """Split the cores this process may use into ``jobs`` shares (round-robin if fewer cores)."""
    # os.sched_getaffinity is Linux-only; elsewhere workers get thread counts but no pinning.
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else list(range(os.cpu_count() or 1))
    if jobs <= len(cores):
        bounds = [round(i * len(cores) / jobs) for i in range(jobs + 1)]
        return [cores[bounds[i]:bounds[i + 1]] for i in range(jobs)]
    return [[cores[i % len(cores)]] for i in range(jobs)]


@contextlib.contextmanager
def connect(scheduler: str | None = None, jobs: int = 1, retries: int = RETRIES,
            timeout: float = 30):
    """A ``distributed.Client`` for sweeps; it and any cluster it started close after the block.

    Arguments:
        scheduler: the address of a running Dask scheduler (``tcp://host:8786``); None: start a
            local cluster of ``jobs`` single-threaded worker processes (named 0, 1, ...); worker
            *i*'s tasks pin it, and so their notebook kernels, to share *i* of :func:`cpu_slots`
            (``$TINYOPT_SWEEP_SLOTS``) and set the thread variables to the share's size.
        jobs: worker processes of the local cluster.
        retries: local cluster only: how often a task whose worker died is started again (the
            scheduler's ``allowed-failures``); a running cluster keeps its own setting.
        timeout: seconds to wait for ``scheduler`` to answer.
    Yields:
        The connected client.
    Raises:
        SweepError: jobs < 1, retries < 0, or the scheduler cannot be reached.
    """
    from distributed import Client, LocalCluster
    if scheduler:
        try:
            client = Client(scheduler, timeout=timeout)
        except (OSError, ValueError) as exc:
            raise SweepError(f"cannot reach the Dask scheduler at {scheduler!r} ({exc}); start "
                             "one (`dask scheduler`, then `dask worker ADDRESS`) or fix "
                             f"--scheduler / ${SCHEDULER_ENV}; without either the sweep starts "
                             "a local cluster") from exc
        with client:
            yield client
        return
    if jobs < 1 or retries < 0:
        raise SweepError(f"--jobs must be at least 1 and --retries at least 0, got {jobs} and "
                         f"{retries}")
    env = {"TINYOPT_SWEEP_SLOTS": json.dumps(cpu_slots(jobs))}  # worker i takes share i
    with LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, env=env,
                      scheduler_kwargs={"allowed_failures": retries}) as cluster, \
            Client(cluster) as client:
        yield client


@dataclass
class Summary:
    """What a sweep did: counts of runs by outcome, the table repair, and the seconds it took."""
    total: int
    skipped: int = 0
    ran: int = 0
    failed: int = 0
    repaired: str | None = None  # what was wrong with the sweep table before this sweep
    seconds: float = 0.0
    errors: dict = field(default_factory=dict)
    damaged: dict = field(default_factory=dict)  # run hash -> what is wrong (not run)


def execute(sweep: Sweep, jobs: int = 1, scheduler: str | None = None, client=None,
            skip_failed: bool = False, timeout: float | None = None, retries: int = RETRIES,
            progress: bool = True) -> Summary:
    """Run every run that is not done as a Dask task; write each run and rebuild the sweep table
    as runs finish.

    Arguments:
        sweep: from :func:`load`.
        jobs: worker processes of the local cluster (when neither ``scheduler`` nor ``client``).
        scheduler: the address of a running Dask scheduler to use instead of a local cluster.
        client: a connected ``distributed.Client`` to use (left open).
        skip_failed: leave runs that failed before alone instead of retrying them.
        timeout: seconds per notebook cell (papermill's execution_timeout); None: no limit.
        retries: local cluster only: how often a run whose worker died is started again.
        progress: show a tqdm bar over the runs to do.
    Returns:
        A :class:`Summary`; ``failed`` > 0 means some runs failed (see ``errors`` and the runs'
        ``failed.json``); ``damaged`` lists runs whose ``run.json`` is damaged, which are not run
        (counted in ``skipped``; delete their folders to run them again).
    Raises:
        SweepError: bad arguments, an unreachable scheduler, or a table that cannot be rebuilt.
        SweepBusy: another sweep is writing these runs.
    """
    from tqdm import tqdm
    if scheduler and client is not None:
        raise SweepError("give a scheduler address or a client, not both")
    if jobs < 1 or retries < 0:
        raise SweepError(f"--jobs must be at least 1 and --retries at least 0, got {jobs} and "
                         f"{retries}")
    start = time.perf_counter()
    summary = Summary(total=len(sweep.runs))
    with _writer(sweep):
        for stale in [*sweep.runs_dir.glob(".*.*.tmp"), *sweep.runs_dir.glob(".*.*.old")]:
            shutil.rmtree(stale)  # a killed client's half-written run folder (see _commit)
        summary.repaired = write_table(sweep)
        states = {r.hash: state(sweep, r) for r in sweep.runs}
        todo = [r for r in sweep.runs
                if states[r.hash] == "pending" or (states[r.hash] == "failed" and not skip_failed)]
        summary.skipped = len(sweep.runs) - len(todo)
        summary.damaged = {r.hash: damage(sweep, r) for r in sweep.runs
                           if states[r.hash] == "damaged"}
        if todo:
            given = contextlib.nullcontext(client) if client is not None else None
            with given or connect(scheduler, jobs, retries) as dc:
                _announce(dc)
                text = sweep.notebook.read_text()
                futures = {dc.submit(_run_task, _spec(sweep, run, text, timeout),
                                       key=f"{sweep.notebook.stem}-{run.hash}-"
                                       f"{uuid.uuid4().hex[:8]}"): run for run in todo}
                bar = tqdm(total=len(todo), unit="run", desc=sweep.notebook.stem,
                           disable=not progress)
                try:
                    _gather(sweep, futures, summary, bar)
                finally:  # on Ctrl-C: a given client keeps nothing of this sweep running
                    bar.close()
                    dc.cancel(list(futures))
        report.write_csv(status(sweep), sweep.status_csv)
    summary.seconds = time.perf_counter() - start
    return summary


def _announce(client) -> None:
    """Print where the sweep runs and its dashboard."""
    info = client.scheduler_info()
    board = client.dashboard_link if "dashboard" in info.get("services", {}) else \
        "none (the scheduler serves none)"
    print(f"Dask scheduler {info.get('address')} with {len(info.get('workers', {}))} worker(s); "
          f"dashboard: {board}", file=sys.stderr, flush=True)


def _gather(sweep: Sweep, futures: dict, summary: Summary, bar) -> None:
    """Commit each task's outcome as it finishes and rebuild the table."""
    from distributed import KilledWorker, as_completed
    for future in as_completed(futures):
        run = futures[future]
        try:
            outcome = future.result()
        except KilledWorker as exc:
            outcome = {"ok": False, "info": {}, "error": (
                f"KilledWorker: the workers running this run died until Dask gave up ({exc}): "
                "killed, out of memory, or the kernel crashed them; retried on the next sweep")}
        except Exception as exc:  # noqa: BLE001  (one task's failure, recorded for its run)
            outcome = {"ok": False, "info": {}, "error": _error_text(exc)}
        future.release()
        error = _commit(sweep, run, outcome)
        if error is None:
            summary.ran += 1
        else:
            summary.failed += 1
            summary.errors[run.hash] = error
        write_table(sweep)
        bar.update(1)
        bar.set_postfix(failed=summary.failed)


def _spec(sweep: Sweep, run: Run, notebook: str, timeout: float | None) -> dict:
    return {"notebook": notebook, "name": sweep.name, "hash": run.hash,
            "parameters": run.parameters, "inject": run.inject, "collect": sweep.collect,
            "out_dir": "out_dir" in sweep.notebook_parameters, "cwd": str(project_root()),
            "grid": display_path(sweep.grid_path), "timeout": timeout}


def _commit(sweep: Sweep, run: Run, outcome: dict) -> str | None:
    """Write a task's outcome into the run's folder; None for a done run, else the error."""
    folder = sweep.run_dir(run)
    clash = sorted(set(outcome.get("files", {})) & set(RESERVED))
    if clash:
        outcome = {**outcome, "ok": False, "error": f"the notebook wrote {clash} into out_dir, "
                   "names the sweep keeps for itself in the run folder; rename them"}
    if not outcome["ok"]:
        return _fail(sweep, run, outcome)
    out = project_path(run.inject["out_dir"]).resolve() if outcome["files"] else None
    tmp = sweep.runs_dir / f".{run.hash}.{os.getpid()}.tmp"
    tmp.mkdir(parents=True)
    for name, data in outcome["files"].items():
        if out == folder.resolve():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / name).write_bytes(data)
        else:  # the grid gave out_dir
            with atomic_path(out / name) as part:
                part.write_bytes(data)
    (tmp / "run.ipynb").write_text(outcome["notebook"])
    rec = {**outcome["info"], "collect": sweep.collect, "rows": outcome["rows"]}
    (tmp / "run.json").write_text(json.dumps(rec, indent=1, default=str))
    if folder.exists():  # a failed attempt's records, or a run whose result file was deleted
        old = tmp.with_suffix(".old")
        os.replace(folder, old)
        shutil.rmtree(old)
    os.replace(tmp, folder)  # the commit point
    return None


def _fail(sweep: Sweep, run: Run, outcome: dict) -> str:
    partial = sweep.run_dir(run) / "failed.ipynb"
    if outcome.get("notebook"):
        with atomic_path(partial, ".ipynb") as tmp:
            tmp.write_text(outcome["notebook"])
    else:
        partial.unlink(missing_ok=True)
    record = {"run": run.hash, "parameters": run.parameters, "error": outcome["error"],
              "failed_notebook": display_path(partial) if partial.exists() else None,
              "worker": outcome["info"].get("worker"), "host": outcome["info"].get("host"),
              "time": _now()}
    with atomic_path(sweep.failed_record(run), ".json") as tmp:
        tmp.write_text(json.dumps(record, indent=1, default=str))
    return outcome["error"]


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _pin(name) -> list[int] | None:
    """On a worker of :func:`connect`'s local cluster (``$TINYOPT_SWEEP_SLOTS`` set), pin this
    process (every thread, so the kernels it starts) to share ``name`` of the cores and set the
    thread variables to its size; returns the share (None elsewhere)."""
    slots = os.environ.get("TINYOPT_SWEEP_SLOTS")
    if not slots or name is None:
        return None
    slots = json.loads(slots)
    cpus = slots[int(name) % len(slots)]
    if hasattr(os, "sched_setaffinity"):
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(ProcessLookupError):  # a thread that just ended
                os.sched_setaffinity(int(tid), cpus)
    os.environ.update({var: str(len(cpus)) for var in THREAD_VARS})
    return cpus


def _run_task(spec: dict) -> dict:
    """Execute one run on a Dask worker (see the module docstring).

    Arguments:
        spec: from :func:`_spec` (the notebook's text travels with it).
    Returns:
        ``{"ok": True, "notebook": executed notebook (JSON text), "rows": collected rows or None,
        "files": {path under out_dir: bytes}, "info": {...}}``, or ``{"ok": False, "error": text,
        "notebook": the partial notebook or None, "info": {...}}`` when the run failed.
    """
    # papermill -> nbformat -> jsonschema imports rfc3987_syntax when installed, which builds a
    # grammar for ~2 s of CPU at import. It only checks the "iri" string formats, which the
    # notebook schema does not use; without it jsonschema skips those formats.
    sys.modules.setdefault("rfc3987_syntax", None)
    import logging

    import nbformat
    import papermill as pm
    from distributed import get_worker
    from jupyter_client.manager import AsyncKernelManager
    # papermill re-parses the parameters cell and warns about comments it cannot read; the grid
    # was validated against that cell already.
    logging.getLogger("papermill").setLevel(logging.ERROR)
    try:
        worker = get_worker()
        where, name, scratch_root = worker.address, worker.name, worker.local_directory
    except ValueError:  # called outside a worker (debugging)
        where, name, scratch_root = None, None, None
    cpus = _pin(name)
    info = {"hash": spec["hash"], "notebook": spec["name"], "grid": spec["grid"],
            "parameters": spec["parameters"], "injected": spec["inject"],
            "version": tinyopt.__version__, "worker": where, "host": socket.gethostname(),
            "cpus": cpus, "started": _now()}
    scratch = Path(tempfile.mkdtemp(prefix=f"tinyopt-{spec['hash']}-", dir=scratch_root))
    executed, out, log = scratch / "run.ipynb", scratch / "out", scratch / "kernel.log"

    class KernelManager(AsyncKernelManager):
        """The kernel's own output (TensorFlow's C++ log, a crash) goes to kernel.log."""
        async def start_kernel(self, **kw):
            with open(log, "ab") as handle:
                return await super().start_kernel(**kw, stdout=handle, stderr=handle)

    started = time.perf_counter()
    try:
        cwd = Path(spec["cwd"])
        if not cwd.is_dir():
            raise RuntimeError(f"the project folder {cwd} does not exist on worker {where} "
                               f"({info['host']}); notebooks run in it to read their inputs: "
                               "make it available at that path on every worker (it is only "
                               "read; results come back to the client)")
        inject = dict(spec["inject"], **({"out_dir": str(out)} if spec["out_dir"] else {}))
        nb = nbformat.reads(spec["notebook"], as_version=4)
        nb.metadata["tinyopt"] = {**info, "state": "running"}
        pm.execute_notebook(nb, str(executed), parameters=inject, cwd=str(cwd),
                            kernel_name="python3", progress_bar=False,
                            execution_timeout=spec["timeout"], kernel_manager_class=KernelManager)
        rows = None
        if spec["collect"] is not None:
            pattern = Path(spec["collect"].format(hash=spec["hash"], **inject))
            rows = collect_rows(str(pattern if pattern.is_absolute() else cwd / pattern))
        files = {p.relative_to(out).as_posix(): p.read_bytes()
                 for p in sorted(out.rglob("*")) if p.is_file()}
        info["seconds"] = round(time.perf_counter() - started, 3)
        done = nbformat.read(executed, as_version=4)
        done.metadata["tinyopt"] = {**info, "state": "complete"}
        for cell in done.cells:  # show the client's out_dir, where the files are now
            if spec["out_dir"] and "injected-parameters" in cell.metadata.get("tags", []):
                cell.source = cell.source.replace(
                    f"out_dir = {json.dumps(str(out))}",
                    f"out_dir = {json.dumps(spec['inject']['out_dir'])}  # ran in {out}")
        return {"ok": True, "notebook": nbformat.writes(done), "rows": rows, "files": files,
                "info": info}
    except Exception as exc:  # noqa: BLE001  (the run's failure, recorded by the client)
        info["seconds"] = round(time.perf_counter() - started, 3)
        partial = None
        if executed.exists():  # never left looking complete: marked as failed
            nb = json.loads(executed.read_text())
            nb.setdefault("metadata", {})["tinyopt"] = {**info, "state": "failed"}
            partial = json.dumps(nb, indent=1, ensure_ascii=False)
        error = _error_text(exc)
        if not hasattr(exc, "ename") and log.exists():  # not a cell's error: the kernel's end
            error += f"\nkernel output (end):\n{log.read_text(errors='replace')[-3000:]}"
        return {"ok": False, "error": error, "notebook": partial, "info": info}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _error_text(exc: Exception) -> str:
    """First line 'Name: message (where)', then papermill's traceback without ANSI colours."""
    if hasattr(exc, "ename") and hasattr(exc, "evalue"):  # papermill.PapermillExecutionError
        trace = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(getattr(exc, "traceback", []) or []))
        return f"{exc.ename}: {exc.evalue} (cell In [{getattr(exc, 'exec_count', '?')}])\n{trace}"
    return f"{type(exc).__name__}: {exc}"

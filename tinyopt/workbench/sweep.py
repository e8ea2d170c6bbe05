"""Resumable, parallel papermill sweeps over one notebook's parameters (``tinyopt sweep``).

Grid file (YAML); every key but ``notebook`` is optional, but there must be at least one run::

    notebook: 00_baseline.ipynb        # under notebooks/, or a path from the repository root
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
parameter sets are run once.

**Runs.** A run is identified by its hash: 16 base32 characters (a-z, 2-7) of the SHA-256 of the
canonical JSON ``{"notebook": <name>, "parameters": <the grid's parameters>}``. Base32 rather than
hex so that a hash never reads as a number when pandas re-reads a CSV (``0123``, ``12e4``). Only
the parameters the grid gives are hashed: a changed notebook default or notebook code does not
invalidate finished runs (delete ``results/runs/<stem>/`` to start afresh). A notebook that has an
``out_dir`` parameter gets ``results/runs/<stem>/<hash>/`` unless the grid sets ``out_dir``.

Each run executes in its own worker process (``python -m tinyopt.sweep``) through papermill into
``results/runs/<stem>/.<hash>.<pid>.tmp.ipynb``. On success the worker reads the CSVs matching
``collect`` (formatted with the run's parameters, ``out_dir`` and ``hash``; matching nothing is a
failure), stores their rows, the parameters, the hash and ``tinyopt.__version__`` in the notebook's
``metadata.tinyopt`` and renames it to ``<hash>.ipynb``: that rename is the single commit point.

**Resuming.** A run is done when ``<hash>.ipynb`` exists and its metadata carries the same hash and
parameters; a rerun skips it. A failed run leaves ``<hash>.failed.json`` (error text, return code)
and ``<hash>.failed.ipynb`` (the partial notebook, when papermill got that far); it is retried on
the next sweep unless ``skip_failed``. A per-run lock makes a second sweep wait for a run in flight
instead of redoing it; a killed worker's temp notebook is removed by the next sweep (its lock
is free) or by the next worker of that run. Runs are shared by every grid over the same notebook:
a grid whose ``collect`` differs from the one a run was done with re-reads that run's files.

**The sweep CSV** holds, per done run, its rows with columns ``run`` (the hash), the parameters
(lists and mappings as canonical JSON; a parameter whose value differs from a same-named CSV column
is kept as ``param_<name>``), then the notebook's columns; a run without collected rows gives one
row with ``status = ok``. Rows are appended with :func:`tinyopt.report.append_csv` (atomic) under a
sweep lock that first checks the ``run`` column, so a run's rows are appended once. Every sweep
starts by reconciling: a done run whose rows are missing (a kill between rename and append) gets
them appended. Failed runs are not in the sweep CSV; ``<output stem>.status.csv`` lists every run
with its state and error.

**Parallel.** ``jobs`` workers; worker *i* is pinned (``os.sched_setaffinity``, inherited by the
kernel it starts) to its share of the cores this process may use, and its environment, which the
papermill kernel inherits, sets ``TF_NUM_INTRAOP_THREADS``, ``TF_NUM_INTEROP_THREADS``,
``OMP_NUM_THREADS`` (and MKL/OpenBLAS) to the size of that share. With more jobs than cores, jobs
share single cores round-robin.
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
import queue
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
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
THREAD_VARS = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS",
               "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class SweepError(ValueError):
    """A grid file or notebook that cannot be swept; the message names the problem and the fix."""


@dataclass(frozen=True)
class Run:
    """One parameter set: ``parameters`` (hashed) and ``inject`` (given to the notebook)."""
    hash: str
    parameters: dict
    inject: dict
    collect: str | None  # absolute glob pattern, or None


@dataclass
class Sweep:
    """A validated grid: the notebook, its runs and where things go."""
    grid_path: Path
    notebook: Path
    name: str            # notebook key in the hash: path under notebooks/ (or repo root)
    runs: list[Run]
    runs_dir: Path       # results/runs/<notebook stem>
    output: Path         # the sweep CSV
    duplicates: int = 0  # parameter sets given more than once (run once)
    notebook_parameters: dict = field(default_factory=dict)

    def executed(self, run: Run) -> Path:
        return self.runs_dir / f"{run.hash}.ipynb"

    def failed_record(self, run: Run) -> Path:
        return self.runs_dir / f"{run.hash}.failed.json"

    @property
    def status_csv(self) -> Path:
        return self.output.with_name(self.output.stem + ".status.csv")


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
    """Read and validate a grid file; nothing runs.

    Arguments:
        grid_path: the YAML grid (relative paths from the repository root).
        runs_root: where ``<notebook stem>/<hash>.ipynb`` go.
    Returns:
        A :class:`Sweep` with its runs in grid order.
    Raises:
        SweepError: malformed YAML, unknown key, notebook or parameter, empty grid, ...
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

    stem = notebook.stem
    runs_dir = project_path(runs_root) / stem
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
    return Sweep(grid_path, notebook, name, runs, runs_dir, output, dup, known)


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
    raise SweepError(f"{where}: notebook {value!r} not found under notebooks/ or the repository "
                     f"root; available in notebooks/: {available}")


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def display_path(path: Path) -> str:
    """A path from the repository root when it is inside it (portable in tables)."""
    path = Path(path)
    return path.relative_to(project_root()).as_posix() \
        if path.is_relative_to(project_root()) else str(path)


# ---------------------------------------------------------------- state

def state(sweep: Sweep, run: Run) -> str:
    """'done', 'failed' or 'pending'."""
    meta = _metadata(sweep.executed(run))
    if meta and meta.get("hash") == run.hash and meta.get("parameters") == run.parameters:
        return "done"
    return "failed" if sweep.failed_record(run).exists() else "pending"


def _metadata(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text()).get("metadata", {}).get("tinyopt")
    except (OSError, ValueError):  # unreadable: treat as not done, the run is redone
        return None


def status(sweep: Sweep) -> pd.DataFrame:
    """One row per run: run, state, parameters (as JSON), error (first line), executed notebook."""
    out = []
    for run in sweep.runs:
        s = state(sweep, run)
        error = ""
        if s == "failed":
            with contextlib.suppress(OSError, ValueError):
                error = json.loads(sweep.failed_record(run).read_text()).get("error", "")
        out.append({"run": run.hash, "state": s, "parameters": _canonical(run.parameters),
                    "error": error.strip().splitlines()[0] if error.strip() else "",
                    "notebook": display_path(sweep.executed(run))})
    return pd.DataFrame(out)


def csv_runs(path: Path) -> set[str]:
    """The run hashes present in a sweep CSV (empty if the file does not exist)."""
    if not path.exists():
        return set()
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    if "run" not in frame.columns:
        raise SweepError(f"{path} exists but has no 'run' column, so it is not a sweep table; "
                         "set another 'output:' in the grid or move the file away")
    return set(frame["run"])


@contextlib.contextmanager
def _lock(path: Path):
    """An exclusive flock on ``path`` (created), held for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def sweep_rows(sweep: Sweep, run: Run) -> list[dict]:
    """The sweep-CSV rows of a done run, from its executed notebook's metadata."""
    meta = _metadata(sweep.executed(run)) or {}
    params = {k: _cell(v) for k, v in {**run.parameters, **run.inject}.items()}
    collected = meta.get("rows")
    if meta.get("collect") != run.collect:
        # The run was done for another grid with another 'collect': read this grid's files.
        try:
            collected = None if run.collect is None else collect_rows(run.collect)
        except RuntimeError as exc:
            raise SweepError(f"run {run.hash} was executed with collect={meta.get('collect')!r}"
                             f"; {exc}. Delete {sweep.executed(run)} to rerun it") from exc
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


def append_rows(sweep: Sweep, runs: list[Run]) -> int:
    """Append the rows of done ``runs`` not yet in the sweep CSV; returns how many runs that was.

    The check and the append happen under one lock, so concurrent sweeps never duplicate a run."""
    with _lock(sweep.output.with_name(sweep.output.name + ".sweep.lock")):
        have = csv_runs(sweep.output)
        missing = [r for r in runs if r.hash not in have]
        rows = [row for r in missing for row in sweep_rows(sweep, r)]
        if rows:
            report.append_csv(rows, sweep.output)
        return len(missing)


def reconcile(sweep: Sweep) -> int:
    """Append the rows of every done run missing from the sweep CSV; returns how many runs."""
    return append_rows(sweep, [r for r in sweep.runs if state(sweep, r) == "done"])


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


@dataclass
class Summary:
    """What a sweep did: counts of runs by outcome, and the seconds it took."""
    total: int
    skipped: int = 0
    ran: int = 0
    failed: int = 0
    appended: int = 0
    reconciled: int = 0
    seconds: float = 0.0
    errors: dict = field(default_factory=dict)


def execute(sweep: Sweep, jobs: int = 1, skip_failed: bool = False, timeout: float | None = None,
            progress: bool = True) -> Summary:
    """Run every run that is not done, ``jobs`` at a time, and append rows as runs finish.

    Arguments:
        sweep: from :func:`load`.
        jobs: parallel workers (each pinned to its share of the cores).
        skip_failed: leave runs that failed before alone instead of retrying them.
        timeout: seconds per notebook cell (papermill's execution_timeout); None: no limit.
        progress: show a tqdm bar over the runs to do.
    Returns:
        A :class:`Summary`; ``failed`` > 0 means some runs failed (see ``errors`` and the
        ``<hash>.failed.json`` files).
    Raises:
        SweepError: jobs < 1, or the output CSV is not a sweep table.
    """
    from tqdm import tqdm
    if jobs < 1:
        raise SweepError(f"--jobs must be at least 1, got {jobs}")
    start = time.perf_counter()
    sweep.runs_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(sweep.runs_dir)
    summary = Summary(total=len(sweep.runs))
    summary.reconciled = reconcile(sweep)
    states = {r.hash: state(sweep, r) for r in sweep.runs}
    todo = [r for r in sweep.runs
            if states[r.hash] == "pending" or (states[r.hash] == "failed" and not skip_failed)]
    summary.skipped = len(sweep.runs) - len(todo)

    slots: queue.Queue = queue.Queue()
    for cpus in cpu_slots(jobs):
        slots.put(cpus)

    def work(run: Run):
        cpus = slots.get()
        try:
            return _spawn(sweep, run, cpus, timeout)
        finally:
            slots.put(cpus)

    bar = tqdm(total=len(todo), unit="run", desc=sweep.notebook.stem, disable=not progress)
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        futures = {pool.submit(work, run): run for run in todo}
        for future in as_completed(futures):
            run = futures[future]
            error = future.result()
            if error is None:
                summary.ran += 1
                summary.appended += append_rows(sweep, [run])
                sweep.failed_record(run).unlink(missing_ok=True)
            else:
                summary.failed += 1
                summary.errors[run.hash] = error
            bar.update(1)
            bar.set_postfix(failed=summary.failed)
    finally:
        # On Ctrl-C, start no queued run; the ones in flight get the terminal's SIGINT too.
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
    report.write_csv(status(sweep), sweep.status_csv)
    summary.seconds = time.perf_counter() - start
    return summary


def _spawn(sweep: Sweep, run: Run, cpus: list[int], timeout: float | None) -> str | None:
    """Execute one run in a worker process pinned to ``cpus``; None on success, else the error."""
    env = dict(os.environ, TINYOPT_SWEEP_CPUS=",".join(map(str, cpus)))
    env.update({var: str(len(cpus)) for var in THREAD_VARS})
    spec = {"notebook": str(sweep.notebook), "name": sweep.name, "hash": run.hash,
            "parameters": run.parameters, "inject": run.inject, "collect": run.collect,
            "output": str(sweep.executed(run)), "grid": display_path(sweep.grid_path),
            "timeout": timeout}
    proc = subprocess.run([sys.executable, "-m", "tinyopt.workbench.sweep"], input=json.dumps(spec), env=env,
                          cwd=project_root(), capture_output=True, text=True, check=False)
    if proc.returncode == 0 and state(sweep, run) == "done":
        return None
    lines = proc.stdout.strip().splitlines()
    try:
        error = json.loads(lines[-1])["error"]
    except (IndexError, ValueError, KeyError, TypeError):  # the worker died before reporting
        error = f"worker exited with code {proc.returncode}: {proc.stderr[-3000:]}"
    failed_nb = sweep.runs_dir / f"{run.hash}.failed.ipynb"
    shown = display_path(failed_nb) if failed_nb.exists() else None
    record = {"run": run.hash, "parameters": run.parameters, "returncode": proc.returncode,
              "error": error, "failed_notebook": shown,
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with atomic_path(sweep.failed_record(run), ".json") as tmp:
        tmp.write_text(json.dumps(record, indent=1, default=str))
    return error


def _remove_stale_temps(runs_dir: Path) -> None:
    """Delete ``.<hash>.<pid>.tmp.ipynb`` left by killed workers.

    A worker holds ``.<hash>.lock`` while it runs (the kernel does not inherit it) and the kernel
    releases it when the worker dies, even as a zombie; so a temp whose lock is free is stale."""
    for tmp in runs_dir.glob(".*.*.tmp.ipynb"):
        lock = runs_dir / f".{tmp.name.split('.')[1]}.lock"
        with open(lock, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live worker (maybe another sweep's) owns this run
                continue
            tmp.unlink(missing_ok=True)
            fcntl.flock(handle, fcntl.LOCK_UN)


def _worker(spec: dict) -> None:
    """Execute one run (see the module docstring); raises on any failure."""
    import nbformat
    import papermill as pm
    final = Path(spec["output"])
    failed_nb = final.with_name(final.stem + ".failed.ipynb")
    # A second sweep reaching a run in flight waits here, then finds it done.
    with _lock(final.with_name(f".{final.stem}.lock")):
        meta = _metadata(final)
        if meta and meta.get("hash") == spec["hash"] and meta.get("parameters") == \
                spec["parameters"]:
            return
        for stale in final.parent.glob(f".{final.stem}.*.tmp.ipynb"):  # a killed worker's
            stale.unlink(missing_ok=True)
        tmp = final.with_name(f".{final.stem}.{os.getpid()}.tmp.ipynb")
        nb = nbformat.read(spec["notebook"], as_version=4)
        info = {"hash": spec["hash"], "notebook": spec["name"], "parameters": spec["parameters"],
                "injected": spec["inject"], "version": tinyopt.__version__,
                "grid": spec["grid"], "cpus": os.environ.get("TINYOPT_SWEEP_CPUS"),
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        nb.metadata["tinyopt"] = info
        started = time.perf_counter()
        try:
            pm.execute_notebook(nb, str(tmp), parameters=spec["inject"], cwd=str(project_root()),
                                kernel_name="python3", progress_bar=False,
                                execution_timeout=spec["timeout"])
            rows = None if spec["collect"] is None else collect_rows(spec["collect"])
            done = nbformat.read(str(tmp), as_version=4)
            done.metadata["tinyopt"] = {**info, "collect": spec["collect"], "rows": rows,
                                        "seconds": round(time.perf_counter() - started, 3)}
            nbformat.write(done, str(tmp))
            os.replace(tmp, final)
            failed_nb.unlink(missing_ok=True)
        except BaseException:
            if tmp.exists():
                os.replace(tmp, failed_nb)
            raise


def _error_text(exc: Exception) -> str:
    """First line 'Name: message (where)', then papermill's traceback without ANSI colours."""
    if hasattr(exc, "ename") and hasattr(exc, "evalue"):  # papermill.PapermillExecutionError
        trace = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(getattr(exc, "traceback", []) or []))
        return f"{exc.ename}: {exc.evalue} (cell In [{getattr(exc, 'exec_count', '?')}])\n{trace}"
    return f"{type(exc).__name__}: {exc}"


def _worker_main() -> int:
    """Entry point of a worker process: the run's spec as JSON on stdin, result as JSON line."""
    cpus = os.environ.get("TINYOPT_SWEEP_CPUS")
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})  # the kernel inherits it
    # papermill -> nbformat -> jsonschema imports rfc3987_syntax when installed, which builds a
    # grammar for ~2 s of CPU at import. It only checks the "iri" string formats, which the
    # notebook schema does not use; without it jsonschema skips those formats.
    sys.modules.setdefault("rfc3987_syntax", None)
    spec = json.loads(sys.stdin.read())
    try:
        _worker(spec)
    except Exception as exc:  # noqa: BLE001  (reported to the parent, which records it)
        print(json.dumps({"error": _error_text(exc)}))
        return 1
    print(json.dumps({"error": None}))
    return 0


if __name__ == "__main__":
    sys.exit(_worker_main())

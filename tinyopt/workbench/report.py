"""Tidy result tables and figures, written atomically.

Every write goes to a temporary file in the target folder and is renamed over the target
(:func:`tinyopt.files.atomic_path`), so a reader never sees a torn file and a crash never leaves
half a table. Appends take an exclusive lock
(``fcntl.flock`` on a hidden ``.<file>.lock`` beside it) around read-modify-rename, so parallel
writers (sweeps) do not lose each other's rows. Relative paths are taken from the working
directory, like every path in tinyopt (notebooks resolve theirs with
:func:`tinyopt.workbench.paths.project_path`).
"""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path

import pandas as pd

from tinyopt.files import atomic_path

# The papers' reported numbers ship with the checkout (data/reference/), not with a user's project.
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "data" / "reference"


def reference_table(name: str = "cnn_on_mcu") -> pd.DataFrame:
    """A paper's reported numbers shipped with tinyopt (``data/reference/<name>.csv``), found
    from the installed package whatever the working directory.

    Raises:
        FileNotFoundError: no such table; the message lists the ones there are.
    """
    path = REFERENCE_DIR / f"{name}.csv"
    if not path.is_file():
        have = sorted(p.stem for p in REFERENCE_DIR.glob("*.csv"))
        raise FileNotFoundError(f"no reference table {name!r} in {REFERENCE_DIR}; "
                                f"available: {have}")
    return read_csv(path)

@contextlib.contextmanager
def _locked(target: Path):
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(f".{target.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _frame(rows) -> pd.DataFrame:
    if isinstance(rows, pd.DataFrame):
        return rows
    if isinstance(rows, dict):
        rows = [rows]
    return pd.DataFrame(list(rows))


def write_csv(rows, path) -> Path:
    """Replace ``path`` with ``rows`` (dicts, a dict or a DataFrame), atomically."""
    target = Path(path)
    with _locked(target), atomic_path(target, ".csv") as tmp:
        _frame(rows).to_csv(tmp, index=False)
    return target


def append_csv(rows, path) -> Path:
    """Append ``rows`` to ``path`` (created if absent), atomically and under a lock.

    New columns are added (empty in older rows); the file is rewritten whole and renamed, never
    appended in place, so it cannot tear."""
    target = Path(path)
    with _locked(target):
        new = _frame(rows)
        # Old rows are re-read as text so they are rewritten exactly as they were (no type
        # inference turning "0123" into 123).
        frame = pd.concat([pd.read_csv(target, dtype=str, keep_default_na=False), new],
                          ignore_index=True) if target.exists() else new
        with atomic_path(target, ".csv") as tmp:
            frame.to_csv(tmp, index=False)
    return target


def read_csv(path) -> pd.DataFrame:
    return pd.read_csv(path)


class Checkpoint:
    """Collects result rows as they come, prints each and rewrites a CSV of all of them after
    every row (:func:`write_csv`), so a cut run keeps what it had. Pass it as a study's
    ``on_row``.

    Arguments:
        path: the CSV; None: no file.
        text: ``row -> str`` printed for each row; None: nothing printed.

    Attributes:
        rows: the rows so far (dicts).
    """

    def __init__(self, path=None, text=None):
        self.path, self.text, self.rows = path, text, []

    def __call__(self, row: dict) -> None:
        self.rows.append(row)
        if self.text is not None:
            print(self.text(row))
        if self.path is not None:
            write_csv(self.rows, self.path)


def save_figure(fig, path, dpi: int = 150) -> Path:
    """Save a matplotlib figure atomically (format from the suffix)."""
    target = Path(path)
    with atomic_path(target, target.suffix) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=target.suffix.lstrip(".") or "png")
    return target


def side_by_side(results: pd.DataFrame, reference, dataset: str) -> pd.DataFrame:
    """Our measured variants next to a reference table (e.g. :func:`reference_table`).

    Sizes are compared as reported; ``size_ratio`` is against OUR float32 ``.tflite`` (the fair
    baseline), while ``seed_ratio_vs_h5`` reproduces the seed's way (its 271,400 B Keras ``.h5``
    with optimizer state) so its headline ratios can be checked like for like.

    Arguments:
        results: rows with variant, accuracy, size_bytes, size_gzip_bytes, latency_ms_median.
        reference: a DataFrame or CSV path with dataset, variant, seed_* columns.
        dataset: which dataset's reference rows to use.

    Returns:
        One row per reference variant (ours empty where we have no such variant).
    """
    ref = reference if isinstance(reference, pd.DataFrame) else read_csv(reference)
    ref = ref[ref["dataset"] == dataset].drop(columns=["dataset", "source"], errors="ignore")
    ours = results[["variant", "accuracy", "size_bytes", "size_gzip_bytes",
                    "latency_ms_median", "latency_ms_p10", "latency_ms_p90"]]
    table = ref.merge(ours, on="variant", how="left")
    base = results.loc[results["variant"] == "float32", "size_bytes"]
    if not base.empty:
        table["size_ratio"] = float(base.iloc[0]) / table["size_bytes"]
    table["seed_ratio_vs_h5"] = 271400 / table["seed_size_bytes"]
    table["accuracy_delta_pt"] = 100 * (table["accuracy"] - table["seed_accuracy"])
    return table

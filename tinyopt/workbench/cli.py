"""The ``tinyopt`` command line.

``tinyopt sweep GRID.yaml [--jobs N] [--dry-run | --status] [--skip-failed] [--timeout S]``
runs a resumable papermill sweep (see :mod:`tinyopt.sweep`). Exit codes: 0 every run done,
1 some runs failed (listed, and in ``<hash>.failed.json``), 2 a bad grid or bad arguments.
"""

from __future__ import annotations

import argparse
import signal
import sys

import pandas as pd


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinyopt", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sweep = sub.add_parser("sweep", help="run a resumable papermill sweep from a grid file",
                           description="Run every not-yet-done run of GRID (a YAML file naming a "
                           "notebook and parameter lists), appending result rows to its CSV.")
    sweep.add_argument("grid", help="grid file, e.g. notebooks/grids/00_baseline_small.yaml")
    sweep.add_argument("--jobs", "-j", type=int, default=1,
                       help="parallel runs, each pinned to its share of the cores (default 1)")
    mode = sweep.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="validate the grid and list the runs and their state; run nothing")
    mode.add_argument("--status", action="store_true",
                      help="show each run's state (done / failed / pending) and run nothing")
    sweep.add_argument("--skip-failed", action="store_true",
                       help="do not retry runs that failed before (default: retry them)")
    sweep.add_argument("--timeout", type=float, default=None,
                       help="seconds allowed per notebook cell (default: no limit)")
    sweep.add_argument("--runs-dir", default=None,
                       help="where executed notebooks go (default results/runs)")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def _sweep(args) -> int:
    from tinyopt.workbench import sweep as sw
    s = sw.load(args.grid, args.runs_dir or sw.RUNS_ROOT)
    table = sw.status(s)
    counts = table["state"].value_counts().to_dict() if len(table) else {}
    print(f"{s.grid_path.name}: {len(s.runs)} runs of {s.name} "
          f"({counts.get('done', 0)} done, {counts.get('failed', 0)} failed, "
          f"{counts.get('pending', 0)} pending)"
          + (f"; {s.duplicates} duplicate parameter sets merged" if s.duplicates else "")
          + f"\n  executed notebooks: {sw.display_path(s.runs_dir)}/<run>.ipynb"
          + f"\n  sweep table:        {sw.display_path(s.output)} (rows of "
          f"{len(sw.csv_runs(s.output) & set(table['run']))} runs)")
    if args.dry_run or args.status:
        columns = ["run", "state", "parameters"] + (["error"] if table["error"].any() else [])
        with pd.option_context("display.max_rows", None, "display.max_colwidth", 80,
                               "display.width", 200):
            print(table[columns].to_string(index=False))
        return 1 if args.status and counts.get("failed") else 0
    summary = sw.execute(s, jobs=args.jobs, skip_failed=args.skip_failed, timeout=args.timeout,
                         progress=not args.no_progress)
    rows = summary.appended + summary.reconciled
    print(f"ran {summary.ran}, failed {summary.failed}, skipped {summary.skipped} (done"
          f"{' or failed' if args.skip_failed else ''}), rows of {rows}"
          f" runs appended ({summary.reconciled} reconciled) in {summary.seconds:.1f} s")
    for run, error in summary.errors.items():
        print(f"FAILED {run}: {error.strip().splitlines()[0] if error.strip() else '?'}\n"
              f"  details: {sw.display_path(s.runs_dir)}/{run}.failed.json", file=sys.stderr)
    return 1 if summary.failed else 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = _parser().parse_args(argv)
    if argv is None:  # as a command: `tinyopt sweep --status G | head` ends quietly
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    from tinyopt.workbench.sweep import SweepError
    try:
        if args.command == "sweep":
            return _sweep(args)
    except SweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())

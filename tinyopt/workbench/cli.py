"""The ``tinyopt`` command line.

``tinyopt run NOTEBOOK OUT [-p NAME VALUE]... [-y YAML]...`` executes one notebook under papermill;
``OUT`` is written only when every cell ran, an interrupted or failed run goes to
``OUT.interrupted.ipynb`` / ``OUT.failed.ipynb``, marked, and two runs into one ``out_dir`` at a
time are refused (:mod:`tinyopt.workbench.execute`). A ``-p`` value is read as papermill reads it
(int, float, True/False/None, else a string), except that one starting with ``[`` or ``{`` is a
YAML/JSON list or mapping (``-p sequences '["int8", "prune>qat>int8"]'``); ``-y`` gives
parameters as a YAML mapping (``-y 'models: [kws, vww]'``); both are read with
``yaml.safe_load``, never evaluated. ``-p`` takes its two values as they are, so ``-p ram -5k``
reaches the notebook's check. A name given twice is refused. Exit codes: 0 done, 1 a cell failed,
2 refused before running (bad value, unwritable output, ``out_dir`` in use), 130 interrupted.

``tinyopt sweep GRID.yaml [--jobs N | --scheduler tcp://HOST:PORT] [--dry-run | --status]
[--skip-failed] [--timeout S] [--retries N]`` runs a resumable papermill sweep on Dask (see
:mod:`tinyopt.workbench.sweep` and docs/sweeps.md). Exit codes: 0 every run done, 1 some runs
failed or damaged (listed, with their run folder's ``failed.json`` / ``run.json``), 2 a bad grid
or bad arguments.

``tinyopt analyze | validate | generate | supported-ops``: from a model file to a firmware's C
library (:mod:`tinyopt.workbench.firmware_cli`).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import pandas as pd

from tinyopt.workbench import firmware_cli


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinyopt", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sweep = sub.add_parser("sweep", help="run a resumable papermill sweep from a grid file",
                           description="Run every not-yet-done run of GRID (a YAML file naming a "
                           "notebook and parameter lists) as Dask tasks, and rebuild its table "
                           "from the runs.")
    sweep.add_argument("grid", help="grid file, e.g. notebooks/grids/00_baseline_small.yaml")
    where = sweep.add_mutually_exclusive_group()
    where.add_argument("--jobs", "-j", type=int, default=None,
                       help="worker processes of the local Dask cluster, each pinned to its "
                       "share of the cores (default 1)")
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run on the Dask cluster of this scheduler, e.g. tcp://host:8786 "
                       "(default: $TINYOPT_DASK_SCHEDULER, else a local cluster)")
    mode = sweep.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true",
                      help="validate the grid and list the runs and their state; write nothing")
    mode.add_argument("--status", action="store_true",
                      help="show each run's state (done / failed / pending) and rebuild the "
                      "sweep table from the runs; run nothing")
    sweep.add_argument("--skip-failed", action="store_true",
                       help="do not retry runs that failed before (default: retry them)")
    sweep.add_argument("--timeout", type=float, default=None,
                       help="seconds allowed per notebook cell (default: no limit)")
    sweep.add_argument("--retries", type=int, default=None,
                       help="local cluster: times a run whose worker died is started again "
                       "(default 3); a --scheduler cluster keeps its own setting")
    sweep.add_argument("--runs-dir", default=None,
                       help="where run folders go (default results/runs)")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    run = sub.add_parser("run", help="run one notebook; its executed copy is complete or marked",
                         description="Execute NOTEBOOK into OUT under papermill. OUT is written "
                         "only when every cell ran; an interrupted or failed run is written to "
                         "OUT.interrupted.ipynb / OUT.failed.ipynb and marked as such. A second "
                         "run into the out_dir of a running one is refused, naming it.")
    run.add_argument("notebook")
    run.add_argument("output")
    # -p and -y are taken out of the arguments before argparse (see _split_run), which would
    # read a value such as -5k as an option; these entries are for --help.
    run.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                     metavar=("NAME", "VALUE"),
                     help="a parameter: int, float, True/False/None, a YAML/JSON list or "
                     "mapping when VALUE starts with [ or { (e.g. -p sequences "
                     "'[\"int8\", \"prune>qat>int8\"]'), else a string; VALUE may start with "
                     "'-' (-p ram -5k)")
    firmware_cli.add_parsers(sub)  # analyze, validate, generate, supported-ops
    run.add_argument("-y", "--yaml", action="append", default=[], metavar="YAML",
                     help="parameters as a YAML mapping, e.g. -y 'models: [kws, vww]' "
                     "(as papermill's -y)")
    return parser


RUN_OPTIONS = {"-p": 2, "--parameter": 2, "-y": 1, "--yaml": 1}  # option -> values it takes


def _split_run(argv: list[str]) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Take ``-p NAME VALUE`` and ``-y YAML`` out of ``tinyopt run``'s arguments, their values
    verbatim (argparse would read ``-p ram -5k``'s value as an option).

    Returns:
        (the other arguments, [(option, its values)] in order).
    Raises:
        SystemExit: an option without its values (argparse's usage error, exit code 2).
    """
    rest, taken, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest += argv[i:]
            break
        if arg in RUN_OPTIONS:
            n = RUN_OPTIONS[arg]
            if len(argv) - i - 1 < n:
                _parser().error(f"tinyopt run: {arg} needs {'NAME VALUE' if n == 2 else 'YAML'}")
            taken.append((arg, argv[i + 1:i + 1 + n]))
            i += 1 + n
            continue
        rest.append(arg)
        i += 1
    return rest, taken


def _run_parameters(taken: list[tuple[str, list[str]]]) -> dict:
    """The parameters of ``-p`` / ``-y`` options, in order.

    Raises:
        RunError: a bad value or YAML, or a name given twice.
    """
    import yaml

    from tinyopt.workbench.execute import RunError, value
    params: dict = {}

    def put(name, v, how):
        if name in params:
            raise RunError(f"parameter {name!r} given twice (again by {how}); give it once")
        params[name] = v

    for option, values in taken:
        if option in ("-p", "--parameter"):
            name, text = values
            put(name, value(text, name), f"-p {name} {text}")
            continue
        try:
            mapping = yaml.safe_load(values[0])
        except yaml.YAMLError as exc:
            raise RunError(f"-y {values[0]!r} is not valid YAML ({exc})".replace("\n", " ")) \
                from None
        if not isinstance(mapping, dict) or not all(isinstance(k, str) for k in mapping):
            raise RunError(f"-y {values[0]!r} must be a YAML mapping of parameter names to "
                           "values, e.g. -y 'models: [kws, vww]' or -y '{seed: 1, epochs: 2}'")
        for name, v in mapping.items():
            put(name, v, f"-y {values[0]}")
    return params


def _run(args) -> int:
    import papermill as pm

    from tinyopt.workbench import execute
    params = _run_parameters(args.taken)
    try:
        execute.run(args.notebook, args.output, params)
    except KeyboardInterrupt:
        print(f"interrupted: the partial run is in "
              f"{execute.sibling(Path(args.output), 'interrupted')}",
              file=sys.stderr)
        return 130
    except pm.PapermillExecutionError as exc:
        print(f"error: {args.notebook} failed in cell {exc.exec_count}: {exc.ename}: "
              f"{exc.evalue}\n  the partial run is in "
              f"{execute.sibling(Path(args.output), 'failed')}",
              file=sys.stderr)
        return 1
    return 0


def _sweep(args) -> int:
    from tinyopt.workbench import sweep as sw
    scheduler = args.scheduler or os.environ.get(sw.SCHEDULER_ENV) or None
    if scheduler and (args.jobs is not None or args.retries is not None):
        raise sw.SweepError(f"--jobs and --retries size the local cluster; the cluster of "
                            f"{scheduler} (--scheduler or ${sw.SCHEDULER_ENV}) has its own "
                            "workers and settings: drop them, or unset the scheduler")
    s = sw.load(args.grid, args.runs_dir or sw.RUNS_ROOT)
    note = None
    if args.status:
        try:
            note = sw.refresh(s)
        except sw.SweepBusy as exc:
            note = f"sweep table not rebuilt: {exc}"
    table = sw.status(s)
    counts = table["state"].value_counts().to_dict() if len(table) else {}
    print(f"{s.grid_path.name}: {len(s.runs)} runs of {s.name} "
          f"({counts.get('done', 0)} done, {counts.get('failed', 0)} failed, "
          + (f"{counts['damaged']} damaged, " if counts.get("damaged") else "")
          + f"{counts.get('pending', 0)} pending)"
          + (f"; {s.duplicates} duplicate parameter sets merged" if s.duplicates else "")
          + f"\n  run folders: {sw.display_path(s.runs_dir)}/<run>/ (run.ipynb, run.json)"
          + f"\n  sweep table: {sw.display_path(s.output)} (rebuilt from the done runs)")
    if note:
        print(note)
    if args.dry_run or args.status:
        columns = ["run", "state", "parameters"] + (["error"] if table["error"].any() else [])
        with pd.option_context("display.max_rows", None, "display.max_colwidth", 80,
                               "display.width", 200):
            print(table[columns].to_string(index=False))
        for row in table[table["state"] == "damaged"].itertuples():
            print(f"DAMAGED {row.run} (not run): {row.error}")  # whole: the path and the fix
        return 1 if args.status and (counts.get("failed") or counts.get("damaged")) else 0
    summary = sw.execute(s, jobs=args.jobs or 1, scheduler=scheduler,
                         skip_failed=args.skip_failed, timeout=args.timeout,
                         retries=sw.RETRIES if args.retries is None else args.retries,
                         progress=not args.no_progress)
    if summary.repaired:
        print(summary.repaired)
    print(f"ran {summary.ran}, failed {summary.failed}, skipped {summary.skipped} (done"
          f"{' or failed' if args.skip_failed else ''}{', damaged' if summary.damaged else ''})"
          f" in {summary.seconds:.1f} s; table: "
          f"{sw.display_path(s.output)}")
    for run, error in summary.errors.items():
        print(f"FAILED {run}: {error.strip().splitlines()[0] if error.strip() else '?'}\n"
              f"  details: {sw.display_path(s.runs_dir)}/{run}/failed.json", file=sys.stderr)
    for run, problem in summary.damaged.items():
        print(f"DAMAGED {run} (not run): {problem}", file=sys.stderr)
    return 1 if summary.failed or summary.damaged else 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    raw = sys.argv[1:] if argv is None else list(argv)
    taken = []
    if raw[:1] == ["run"]:
        rest, taken = _split_run(raw[1:])
        raw = ["run", *rest]
    args = _parser().parse_args(raw)
    if args.command == "run":  # forms the split leaves to argparse (-pNAME VALUE, --yaml=...)
        args.taken = taken + [("-p", v) for v in args.parameter] + \
            [("-y", [v]) for v in args.yaml]
    if argv is None:  # as a command: `tinyopt sweep --status G | head` ends quietly
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    from tinyopt.workbench.execute import RunError
    from tinyopt.workbench.sweep import SweepError
    try:
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "run":
            return _run(args)
        if args.command in firmware_cli.COMMANDS:
            return firmware_cli.run(args)
    except (SweepError, RunError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())

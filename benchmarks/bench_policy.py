"""Speed of the memory-driven policy (issue 5 acceptance): the 12 MobileNetV1 configurations
(224/192/160/128 x 1.0/0.75/0.5) under 2,048,000 B flash / 512,000 B RAM in < 10 s in total, and
an infeasible budget answered (BudgetError with the minimum) in < 1 s.

Rows (results/bench/policy.csv), each the median of ``REPEATS`` runs:

- ``policies_12_from_nodes``: node descriptions (``memory.mobilenet_v1_nodes``) + 12 policies;
- ``policies_12_from_keras``: 12 policies on the already built tf_keras models (``memory.nodes``
  walks the layers); model building is timed separately, once, in ``build_12_keras_models``
  (it is not part of the policy);
- ``infeasible_224_1.0``: 500,000 B / 100,000 B on 224_1.0, a BudgetError.

Run ``.venv/bin/python benchmarks/bench_policy.py`` (results go under the repository root).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tinyopt
from tinyopt import memory
from tinyopt.litert.measure import cpu_model
from tinyopt.workbench import report
from tinyopt.policy import BudgetError, memory_driven

CONFIGS = [(r, a) for r in (224, 192, 160, 128) for a in (1.0, 0.75, 0.5)]
FLASH, RAM = 2_048_000, 512_000
REPEATS = 5


def timed(fn, repeats=REPEATS):
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), max(samples)


def main(argv: list[str] | None = None):
    # no options: --help prints the docstring's summary; anything else is refused before any
    # result is written
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    rows = []

    def add(case, granularity, seconds, worst, target, note="", repeats=REPEATS):
        rows.append({"case": case, "granularity": granularity, "seconds_median": seconds,
                     "seconds_max": worst, "repeats": repeats, "target_seconds": target,
                     "meets_target": None if target is None else worst < target, "note": note,
                     "cpu": cpu_model(),
                     "tinyopt": tinyopt.__version__})
        print(f"{case:28s} {granularity}  median {seconds * 1e3:9.2f} ms  max {worst * 1e3:9.2f} ms"
              f"  (target < {target} s) {note}")  # target None: informational

    for g in ("PL", "PC"):
        def from_nodes(g=g):
            for r, a in CONFIGS:
                memory_driven(memory.mobilenet_v1_nodes(a, r), FLASH, RAM, g)
        add("policies_12_from_nodes", g, *timed(from_nodes), 10.0)

    from tinyopt.models import mobilenet_v1
    t0 = time.perf_counter()
    models = [mobilenet_v1(a, r) for r, a in CONFIGS]
    build = time.perf_counter() - t0
    add("build_12_keras_models", "-", build, build, None, "tf_keras model building, once",
        repeats=1)
    for g in ("PL", "PC"):
        def from_keras(g=g):
            for m in models:
                memory_driven(m, FLASH, RAM, g)
        add("policies_12_from_keras", g, *timed(from_keras), 10.0)

    nodes224 = memory.mobilenet_v1_nodes(1.0, 224)
    for g in ("PL", "PC"):
        message = []

        def infeasible(g=g, message=message):
            try:
                memory_driven(nodes224, 500_000, 100_000, g)
            except BudgetError as e:
                message[:] = [f"min flash {e.min_flash} B, min peak RAM {e.min_ram} B"]
            else:
                raise AssertionError("500,000 B / 100,000 B should be infeasible for 224_1.0")
        add("infeasible_224_1.0", g, *timed(infeasible), 1.0, message[0])

    path = report.write_csv(rows, REPO / "results/bench/policy.csv")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

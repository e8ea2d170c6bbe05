"""Compare the result tables of two ``make reproduce`` runs, column by column, ignoring the
columns that measure time or machine load.

    .venv/bin/python tools/compare_results.py RUN_A RUN_B

RUN_A and RUN_B are checkouts (or folders holding a ``results/``). For every CSV of notebooks
00-05 and 07 present in both, it reports the non-timing columns whose values differ. This is how
the README's reproducibility claim was checked (two fresh clones, and the code before and after
the layout move). Exit status 1 when a table differs.

Timing columns (:data:`TIMING`) are measurements of the machine, not of the model. Note that
``*_recommend.csv`` holds a "fastest" pick chosen by latency: its row may differ between runs
while every other row is identical.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

TIMING = {"cpu", "latency_ms_mean", "latency_ms_median", "latency_ms_p10", "latency_ms_p90",
          "litert_img_s", "load_avg_1m", "notebook_seconds", "ratio_sim_over_litert", "seconds",
          "sim_img_s", "train_seconds"}
FOLDERS = ["baseline", "multicomponent", "subbyte_qat", "memory_policy", "integer_only", "deploy",
           "real_models"]


def compare(a: Path, b: Path) -> int:
    same = differ = 0
    for sub in FOLDERS:
        for fa in sorted((a / "results" / sub).glob("*.csv")):
            fb = b / "results" / sub / fa.name
            if not fb.exists():
                print(f"only in {a}: {fa.relative_to(a)}")
                continue
            da, db = pd.read_csv(fa), pd.read_csv(fb)
            name = fa.relative_to(a)
            if len(da) != len(db):
                print(f"DIFF {name}: {len(da)} vs {len(db)} rows")
                differ += 1
                continue
            cols = [c for c in da.columns if c in db.columns and c not in TIMING]
            bad = [c for c in cols if not (da[c].astype(str) == db[c].astype(str)).all()]
            if bad:
                differ += 1
                print(f"DIFF {name}: {bad}")
                for c in bad[:3]:
                    m = da[c].astype(str) != db[c].astype(str)
                    print(f"    {c}: {list(zip(da[c][m].head(3), db[c][m].head(3)))}")
            else:
                same += 1
            one_side = sorted(set(da.columns) ^ set(db.columns))
            if one_side:
                print(f"    {name}: columns in one run only: {one_side}")
    print(f"{same} tables identical in every non-timing column, {differ} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(compare(Path(sys.argv[1]), Path(sys.argv[2])))

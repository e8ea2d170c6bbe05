"""Which tinyopt modules run when one sequence goes from its spec to the ELF: the number of
modules a reader crosses following ``mixed(flash=6000,ram=16k,PL)>qat>int>mcu`` (issue 27's
measure of how spread the flow is). Every Python function call is traced (sys.setprofile); the
modules of the tinyopt package whose code ran are listed, with how many of their functions ran.

Run: ``.venv/bin/python benchmarks/trace_modules.py [--out results/bench/modules_crossed.csv]``
(seed CNN, untrained, 512 training images, one QAT epoch; needs the ARM toolchain for ``mcu``).
Uses only stage modules, so it runs on older trees too (PYTHONPATH=<tree>).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import tinyopt  # noqa: F401

SPEC = "mixed(flash=6000,ram=16k,PL)>qat>int>mcu"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=None, help="CSV of module, functions called")
    ap.add_argument("--spec", default=SPEC)
    args = ap.parse_args(argv)
    from tinyopt.front.data import dataset
    from tinyopt.front.models import seed_cnn
    from tinyopt.pipeline import sequence

    data = dataset("mnist", train_samples=512)
    model = seed_cnn()
    called: dict[str, set] = defaultdict(set)

    def profile(frame, event, arg):
        if event == "call":
            mod = frame.f_globals.get("__name__", "")
            if mod.startswith("tinyopt"):
                called[mod].add(frame.f_code.co_name)

    with tempfile.TemporaryDirectory() as tmp:
        sys.setprofile(profile)
        try:
            rows = sequence.run(args.spec, model, data, subbyte_qat_epochs=1,
                                subbyte_qat_samples=512, subbyte_calibration_samples=256,
                                deploy_host_images=2, deploy_mcu_images=1, build_dir=tmp,
                                progress=False)
        finally:
            sys.setprofile(None)
    steps = [r.get("step") for r in rows]
    mods = sorted(called)
    print(f"{args.spec}: steps {steps}")
    print(f"{len(mods)} tinyopt modules ran:")
    for m in mods:
        print(f"  {m:45s} {len(called[m]):4d} functions")
    if args.out:
        import pandas as pd
        from tinyopt.files import atomic_path
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(out, ".csv") as tmp_csv:
            pd.DataFrame([{"module": m, "functions": len(called[m])} for m in mods]).to_csv(
                tmp_csv, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Exported C model vs the NumPy simulator: host throughput, and the QEMU run's wall time.

For the two graphs notebook 05 saves (``results/deploy/*.npz``; run the notebook first): export
(``tinyopt.codegen.export_c``), build with gcc, then time on ``IMAGES`` random valid input codes,
in interleaved rounds (``ROUNDS``) so that both share the machine's load:

- the host C program (one process per round: file I/O + ``model_run`` per image);
- ``tinyopt.sim.run`` (NumPy, single BLAS thread);
- once, the QEMU mps2-an500 run on ``QEMU_IMAGES`` images (wall time; needs the toolchain).

Every round's outputs are checked bit-exact against the simulator. Writes
``results/bench/codegen.csv`` (best and median images/s per engine, the 1-minute load average).
Run ``.venv/bin/python benchmarks/bench_codegen.py`` (about a minute); paths are taken from the
repository root, wherever it runs from.
"""
from __future__ import annotations

import argparse
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before NumPy loads its BLAS: a single-threaded simulator

import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np

import tinyopt  # noqa: F401
from tinyopt import sim
from tinyopt.deploy import codegen, mcu
from tinyopt.icn import IntegerGraph
from tinyopt.workbench.report import write_csv

IMAGES = 1000
ROUNDS = 3
QEMU_IMAGES = 20
GRAPHS = ("results/deploy/seed_cnn_int8.npz", "results/deploy/mobilenet_32_0.25_mixed.npz")


def _inputs(graph: IntegerGraph, n: int) -> np.ndarray:
    lo = -(1 << (graph.input_bits - 1)) if graph.input_signed else 0
    return np.random.default_rng(0).integers(lo, lo + (1 << graph.input_bits),
                                             (n, *graph.input_shape))


def main(argv: list[str] | None = None) -> None:
    # no options: --help prints the docstring's summary; anything else is refused before any
    # result is written
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    rows = []
    for path in GRAPHS:
        if not (REPO / path).exists():
            raise SystemExit(f"{path} not found: run notebooks/05_deploy.ipynb first (make mcu)")
        graph = IntegerGraph.load(REPO / path)
        x = _inputs(graph, IMAGES)
        want = codegen.reference_output(graph, x)
        with tempfile.TemporaryDirectory() as tmp:
            export = codegen.export_c(graph, Path(tmp) / "src")
            exe = mcu.build_host(export)
            times = {"host_c": [], "sim": []}
            for _ in range(ROUNDS):
                t = time.perf_counter()
                got = mcu.run_host(exe, export, x)
                times["host_c"].append(time.perf_counter() - t)
                if not np.array_equal(got, want):
                    raise SystemExit(f"{graph.name}: host C output differs from the simulator")
                t = time.perf_counter()
                sim.run(graph, x)
                times["sim"].append(time.perf_counter() - t)
            for engine, ts in times.items():
                rows.append({"graph": graph.name, "engine": engine, "images": IMAGES,
                             "images_per_s_best": IMAGES / min(ts),
                             "images_per_s_median": IMAGES / statistics.median(ts),
                             "rounds": ROUNDS})
            ok, why = mcu.toolchain()
            if ok:
                elf = mcu.build_mcu(export, Path(tmp) / "mcu")
                t = time.perf_counter()
                run = mcu.run_qemu(elf, export, x[:QEMU_IMAGES])
                wall = time.perf_counter() - t
                if not np.array_equal(run.outputs, want[:QEMU_IMAGES]):
                    raise SystemExit(f"{graph.name}: QEMU output differs from the simulator")
                rows.append({"graph": graph.name, "engine": "qemu_mps2_an500",
                             "images": QEMU_IMAGES, "images_per_s_best": QEMU_IMAGES / wall,
                             "images_per_s_median": QEMU_IMAGES / wall, "rounds": 1,
                             "emulated_insns_per_image": float(run.image_insns.mean())})
            else:
                print(f"QEMU part skipped: {why}")
    load = os.getloadavg()[0]
    for r in rows:
        r.update(load_1min=load, cpu=platform.processor() or platform.machine(),
                 numpy=np.__version__)
    out = write_csv(rows, REPO / "results/bench/codegen.csv")
    for r in rows:
        print(f"{r['graph']:28s} {r['engine']:16s} {r['images_per_s_best']:10.1f} images/s")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

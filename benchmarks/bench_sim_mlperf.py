"""The integer simulator against LiteRT's builtin kernels on the four MLPerf Tiny int8 models
(issue 26, simulator part).

Per model: the same ``N`` seeded random int8 inputs; ``tinyopt.sim.run_tflite`` with the fast
engine (C kernels, the default) and with the numpy reference engine, and the LiteRT interpreter
with its builtin optimized kernels (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``, no XNNPACK), one
thread, batches of ``BATCH``. Engines are timed in interleaved rounds (best of ``ROUNDS``) so
that they share the machine's load; the 1-minute load average and the BLAS kernel in use are
recorded. The fast engine's output is checked against the reference engine's before timing.

One thread everywhere: OPENBLAS_NUM_THREADS=1 before NumPy loads. OPENBLAS_CORETYPE and
OPENBLAS_L2_SIZE, when set, pick a slower BLAS kernel: run this with them unset (``env -u
OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE``); the kernel that ran is in the ``blas_kernel`` column.

Writes ``results/bench/sim_mlperf.csv`` and prints the ratio table. Run from the repo root:
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_sim_mlperf.py``.
"""
from __future__ import annotations

import argparse
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before NumPy loads its BLAS: a single-threaded simulator

import ctypes  # noqa: E402
import glob  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import tinyopt  # noqa: E402,F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from tinyopt.front.zoo import MLPERF_TINY, mlperf_tiny_tflite  # noqa: E402
from tinyopt.integer import sim, sim_fast  # noqa: E402
from tinyopt.litert import measure  # noqa: E402
from tinyopt.workbench import report  # noqa: E402

N, BATCH, ROUNDS, SIM_BATCH = 400, 100, 3, 256
TARGET = 1.0
KERNELS = {"sim_fast": "tinyopt C kernels (VNNI int8 products, int64 requant) + numpy",
           "sim_reference": "tinyopt numpy reference (int64 requant, exact float BLAS)",
           "litert_builtin": "LiteRT builtin optimized, no delegate"}


def blas_kernel() -> str:
    """The OpenBLAS core numpy's BLAS runs (e.g. SkylakeX), and the overriding variables."""
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs",
                                  "libscipy_openblas*"))
    name = "unknown"
    for path in libs:
        lib = ctypes.CDLL(path)
        for fn in ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename",
                   "openblas_get_corename64_", "openblas_get_corename"):
            if hasattr(lib, fn):
                getattr(lib, fn).restype = ctypes.c_char_p
                name = getattr(lib, fn)().decode()
                break
    env = [f"{v}={os.environ[v]}" for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
           if v in os.environ]
    return name + (f" ({', '.join(env)})" if env else "")


def litert_runner(tfl: bytes, x: np.ndarray):
    interp = measure.interpreter(tfl, threads=1, resolver="builtin")
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], [BATCH, *inp["shape"][1:]])
    interp.allocate_tensors()

    def run():
        outs = []
        for i in range(0, len(x), BATCH):
            interp.set_tensor(inp["index"], x[i:i + BATCH])
            interp.invoke()
            outs.append(interp.get_tensor(out["index"]).copy())
        return np.concatenate(outs)
    return run


def main(argv: list[str] | None = None) -> int:
    # no options: --help prints the docstring's summary; anything else is refused before any
    # result is written
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    rows, table = [], []
    kernel = blas_kernel()
    sim_fast.library()
    for name in MLPERF_TINY:
        tfl = mlperf_tiny_tflite(name)
        g = sim.graph_from_tflite(tfl)
        x = np.random.default_rng(7).integers(-128, 128, (N, *g.input_shape)).astype(np.int8)
        runners = {"sim_fast": lambda: sim.run_tflite(tfl, x, batch_size=SIM_BATCH),
                   "sim_reference": lambda: sim.run_tflite(tfl, x, batch_size=SIM_BATCH,
                                                           engine="reference"),
                   "litert_builtin": litert_runner(tfl, x)}
        outs = {k: f() for k, f in runners.items()}  # warm-up (parse, compile, caches)
        if not np.array_equal(outs["sim_fast"], outs["sim_reference"]):
            print(f"FAIL {name}: fast and reference engines differ", file=sys.stderr)
            return 1
        times, loads = {k: [] for k in runners}, []
        for _ in range(ROUNDS):
            for k, f in runners.items():
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
            loads.append(round(os.getloadavg()[0], 2))
        lite = min(times["litert_builtin"])
        for k, samples in times.items():
            best, median = min(samples), statistics.median(samples)
            rows.append({
                "model": name, "engine": k, "kernels": KERNELS[k], "threads": 1,
                "batch": BATCH if k == "litert_builtin" else SIM_BATCH, "images": N,
                "rounds": ROUNDS, "seconds_best": best, "seconds_median": median,
                "images_per_s_best": N / best, "images_per_s_median": N / median,
                "sim_over_litert_ratio": lite / best,
                "meets_target": (lite / best >= TARGET) if k == "sim_fast" else None,
                "load_avg_1min": statistics.median(loads), "blas_kernel": kernel,
                "c_kernels": sim_fast.REASON, "cpu": measure.cpu_model()})
        table.append((name, N / min(times["sim_fast"]), N / min(times["sim_reference"]),
                      N / lite, lite / min(times["sim_fast"]), statistics.median(loads)))
    path = report.write_csv(rows, REPO / "results" / "bench" / "sim_mlperf.csv")
    exact = exactness()
    print(f"\nBLAS kernel: {kernel}; C kernels: {sim_fast.REASON}")
    print(f"{'model':15s} {'fast img/s':>11s} {'ref img/s':>10s} {'LiteRT img/s':>13s} "
          f"{'fast/LiteRT':>11s} {'load':>5s}")
    for name, fast, ref, lite, ratio, load in table:
        print(f"{name:15s} {fast:11,.0f} {ref:10,.0f} {lite:13,.0f} {ratio:10.2f}x {load:5.2f}")
    print("\nbit-exactness, fast engine, 1,000 seeded inputs per model (differing output bytes):")
    for r in exact:
        print(f"  {r['model']:15s} vs LiteRT BUILTIN_REF {r['diff_vs_litert_ref']}, "
              f"flavour tflm vs TFLite Micro {r['diff_vs_tflm']}")
    print(f"wrote {path} and {EXACT_CSV}")
    return 0 if all(r["diff_vs_litert_ref"] == r["diff_vs_tflm"] == 0 for r in exact) else 1


EXACT_CSV = REPO / "results" / "bench" / "sim_mlperf_exact.csv"
EXACT_N = 1000


def exactness() -> list[dict]:
    """The fast engine against LiteRT's reference kernels (flavour "litert") and against TFLite
    Micro (flavour "tflm") on ``EXACT_N`` seeded inputs per model: differing output values."""
    from tinyopt.litert.reference import litert_reference, tflm_reference
    rows = []
    for name in MLPERF_TINY:
        tfl = mlperf_tiny_tflite(name)
        g = sim.graph_from_tflite(tfl)
        x = np.random.default_rng(11).integers(-128, 128, (EXACT_N, *g.input_shape))
        x = x.astype(np.int8)
        out = g.output_names()[0]
        fast = sim.run_tflite(tfl, x).reshape(EXACT_N, -1)
        ref = np.asarray(litert_reference(tfl, x, {out})[out]).reshape(EXACT_N, -1)
        micro = sim.run_tflite(tfl, x, flavour="tflm").reshape(EXACT_N, -1)
        tflm = np.asarray(tflm_reference(tfl, x, {out})[out]).reshape(EXACT_N, -1)
        rows.append({"model": name, "inputs": EXACT_N, "engine": "sim_fast",
                     "diff_vs_litert_ref": int((fast != ref).sum()),
                     "diff_vs_tflm": int((micro != tflm).sum()), "output_values": fast.size})
    report.write_csv(rows, EXACT_CSV)
    return rows


if __name__ == "__main__":
    sys.exit(main())

"""The four MLPerf Tiny int8 models through the integer simulator (issue 14 acceptance).

Per model (``../shared/models/mlperf_tiny``), on 1,000 random valid int8 inputs (seeded):

1. Bit-exactness: differing output bytes of ``tinyopt.sim.run_tflite(.., flavour="litert")``
   against the LiteRT interpreter with reference kernels (BUILTIN_REF), and of
   ``flavour="tflm"`` against the tflite-micro package's interpreter (image by image).
2. Throughput: images/s of the simulator (flavour litert, default chunks) and of the LiteRT
   interpreter with its builtin optimized kernels (BUILTIN_WITHOUT_DEFAULT_DELEGATES, one thread,
   batches of ``BATCH``), best of ``ROUNDS`` interleaved rounds; the ratio simulator / LiteRT.

Writes ``results/integer_only/mlperf_sim.csv``. Run from the repo root:
``.venv/bin/python benchmarks/bench_mlperf.py`` (a few minutes).
"""
from __future__ import annotations

import argparse
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # a single-threaded simulator

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import pandas as pd  # noqa: E402

from tinyopt.front.zoo import MLPERF_TINY, mlperf_tiny_tflite  # noqa: E402
from tinyopt.integer import sim  # noqa: E402
from tinyopt.integer.from_litert import graph_from_tflite  # noqa: E402
from tinyopt.litert.reference import litert_reference, tflm_reference  # noqa: E402
from tinyopt.workbench.report import write_csv  # noqa: E402

N, BATCH, ROUNDS = 1000, 100, 3


def litert_rate(tfl: bytes, x: np.ndarray) -> float:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_content=tfl, num_threads=1, experimental_op_resolver_type=(
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(inp["index"], [BATCH, *inp["shape"][1:]])
    it.allocate_tensors()
    t = time.perf_counter()
    for i in range(0, len(x), BATCH):
        it.set_tensor(inp["index"], x[i:i + BATCH])
        it.invoke()
        it.get_tensor(out["index"])
    return len(x) / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> None:
    # no options: --help prints the docstring's summary; anything else is refused before any
    # result is written
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    rows = []
    for name in MLPERF_TINY:
        tfl = mlperf_tiny_tflite(name)
        g = graph_from_tflite(tfl)
        x = np.random.default_rng(7).integers(-128, 128, (N, *g.input_shape)).astype(np.int8)
        out = g.output_names()[0]
        ref = litert_reference(tfl, x, {out})[out]
        d_litert = int(np.sum(sim.run_tflite(tfl, x) != ref))
        micro = tflm_reference(tfl, x, {out})[out]
        d_tflm = int(np.sum(sim.run_tflite(tfl, x, flavour="tflm").reshape(N, -1) != micro))
        cross = int(np.sum(ref.reshape(N, -1) != micro))  # LiteRT vs TFLM themselves
        sim_rates, lite_rates = [], []
        for _ in range(ROUNDS):
            t = time.perf_counter()
            sim.run(g, x)
            sim_rates.append(N / (time.perf_counter() - t))
            lite_rates.append(litert_rate(tfl, x))
        row = {"model": name, "inputs": N, "litert_diff_bytes": d_litert,
               "tflm_diff_bytes": d_tflm, "litert_vs_tflm_bytes": cross,
               "sim_img_s": round(max(sim_rates), 1), "litert_img_s": round(max(lite_rates), 1),
               "ratio_sim_over_litert": round(max(sim_rates) / max(lite_rates), 3)}
        print(row, flush=True)
        rows.append(row)
    path = write_csv(pd.DataFrame(rows), ROOT / "results" / "integer_only" / "mlperf_sim.csv")
    print(f"wrote {path}")

if __name__ == "__main__":
    main()

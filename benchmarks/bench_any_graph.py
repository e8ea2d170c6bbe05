"""The four trained MLPerf Tiny Keras models through the sub-byte path (issue 15 acceptance).

Per model and policy (w8a8 and w4a4, PL; ``tinyopt.studies.any_graph``):

1. PTQ on ``N_CAL`` calibration inputs, :func:`tinyopt.icn.convert`, and the integer simulator
   against the fake-quant model on ``N_EVAL`` other inputs: top-1 agreement, and the largest
   per-layer difference in LSBs, chained (end to end) and isolated (each layer fed the
   simulator's own input). Inputs: Fashion-MNIST brought to the image models' shapes, smooth
   random features for the audio models (their datasets are not here).
2. Per policy (w8a8, and w4a4: the sub-byte kernels, tn_m7_sub): the memory model's peak RAM
   against the arena of the deployed C (host build, bit-exact check on ``N_HOST`` inputs; QEMU
   with ``--mcu``: instructions per inference with the Cortex-M7 kernels, ``policy`` column):
   the plan without overlapping writes (the memory model's assumption) and the default plan;
   for w4a4 a third build given an int8 deployment's arena as its ``arena_budget`` (the
   sub-byte model's faster kernels may spend the RAM int8 would have needed:
   ``insns_budgeted``): the larger of the w8a8 build's and the converted int8 model's.
3. The converted int8 model (the MLPerf Tiny ``.tflite``, imported, flavour ``tflm``) deployed
   the same way (``int8_tflite_arena``, ``int8_tflite_insns``, exact on random inputs), with
   ``budgeted_vs_int8_tflite``: what "never slower than int8" means to a user who would
   otherwise deploy that file. Its graph is not the Keras path's (the converter folds BN per
   channel, symmetric int8 weights; the Keras path keeps PL weights with zero points and ICN).

Writes ``results/any_graph/mlperf_keras.csv`` and ``results/any_graph/mlperf_memory.csv``.
Run from the repo root: ``.venv/bin/python benchmarks/bench_any_graph.py [--mcu]`` (about ten
minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import tinyopt  # noqa: E402,F401
from tinyopt.front.zoo import MLPERF_TINY  # noqa: E402
from tinyopt.mixed.policy import Policy  # noqa: E402
from tinyopt.studies import any_graph  # noqa: E402
from tinyopt.workbench.report import write_csv  # noqa: E402

N_CAL, N_EVAL, N_HOST = 500, 1000, 200
POLICIES = ((8, 8), (4, 4))


def _tflite_int8(name: str, run_mcu: bool) -> dict:
    """The converted int8 model of ``name`` deployed (the Cortex-M7 kernels; QEMU with
    ``run_mcu``): its arena, instructions per inference and exactness on random inputs."""
    from tinyopt.deploy import mcu
    from tinyopt.deploy.library import random_inputs
    from tinyopt.front import zoo
    from tinyopt.integer.from_litert import graph_from_tflite
    graph = graph_from_tflite(zoo.mlperf_tiny_path(name).read_bytes(), flavour="tflm")
    with tempfile.TemporaryDirectory() as tmp:
        s = mcu.deploy(graph, random_inputs(graph, 20, seed=0), tmp, name="int8_tflite",
                       run_mcu=run_mcu, mcu_images=5)["summary"]
    return {"int8_tflite_arena": s["arena_bytes"],
            "int8_tflite_exact": f"{s['host_images_exact']}/{s['host_images']}",
            "int8_tflite_mcu_exact": s.get("mcu_images_exact"),
            "int8_tflite_insns": s.get("insns_per_image_mean")}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mcu", action="store_true", help="also count instructions under QEMU")
    ap.add_argument("models", nargs="*", metavar="MODEL",
                    help=f"some of {', '.join(MLPERF_TINY)} (default: all four)")
    args = ap.parse_args(argv)
    unknown = [m for m in args.models if m not in MLPERF_TINY]
    if unknown:  # (argparse's choices refuse an empty list with nargs="*" on Python 3.11)
        ap.error(f"unknown model {', '.join(map(repr, unknown))}: choose from "
                 f"{', '.join(MLPERF_TINY)}")
    run_mcu = args.mcu
    models = args.models or list(MLPERF_TINY)
    out = ROOT / "results" / "any_graph"
    rows, mem_rows = [], []
    for name in models:
        model = any_graph.load_keras(name)
        cal = any_graph.mlperf_inputs(name, N_CAL, seed=1)
        x = any_graph.mlperf_inputs(name, N_EVAL, seed=2, offset=N_CAL)
        tflite = _tflite_int8(name, run_mcu)
        print(tflite, flush=True)
        int8_arena = None
        for w, a in POLICIES:
            start = time.time()
            row, _, graph = any_graph.ptq_check(model, name, Policy.uniform(model, w, a), cal, x)
            row["seconds"] = round(time.time() - start, 1)
            rows.append(row)
            print(row, flush=True)
            with tempfile.TemporaryDirectory() as tmp:
                codes = graph.quantize_input(x[:N_HOST])
                # sub-byte given int8's RAM: its faster kernels may use the difference
                m = any_graph.memory_check(model, Policy.uniform(model, w, a), graph, codes,
                                           tmp, run_mcu=run_mcu,
                                           arena_budget=None if w == 8 else int8_arena)
            if w == 8:
                int8_arena = max(m["arena_packed"], tflite["int8_tflite_arena"])
            elif run_mcu and m.get("insns_budgeted") and tflite.get("int8_tflite_insns"):
                m["budgeted_vs_int8_tflite"] = round(
                    m["insns_budgeted"] / tflite["int8_tflite_insns"], 4)
            mem_rows.append({"policy": f"w{w}a{a}", **m, **tflite})
            print(mem_rows[-1], flush=True)
    write_csv(rows, out / "mlperf_keras.csv")
    write_csv(mem_rows, out / "mlperf_memory.csv")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Integer simulator vs the LiteRT interpreter on the full-int8 seed CNN (issue 6 acceptance).

For each dataset (Fashion-MNIST, MNIST): train the seed CNN briefly (``EPOCHS`` epochs, seeded),
convert it to full int8 (``tinyopt.convert.to_tflite(model, "int8", calibration=TRAIN images)``),
then over the full 10k TEST set (and once more for ``tinyopt.models.mobilenet_v1(0.25, 32, 10,
input_channels=1)`` trained one epoch on MNIST zero-padded to 32 x 32, one timing round):

1. Bit-exactness -> ``results/integer_only/tflite_bitexact.csv``: mismatching output bytes of
   ``tinyopt.sim.run_tflite`` against the interpreter with reference kernels (BUILTIN_REF, the
   acceptance line) and, for information, with the default optimized builtin kernels.
2. Throughput -> ``results/bench/sim.csv``: images/s of the simulator and of the interpreter with
   (a) the builtin optimized kernels (``BUILTIN_WITHOUT_DEFAULT_DELEGATES``, no XNNPACK: the
   kernels tinyopt measures everywhere), (b) the default resolver (XNNPACK where it applies), and
   (c) the reference kernels; and the ratio simulator / engine.

Fairness: one thread for everything (the interpreter with ``num_threads=1``; OpenBLAS pinned to
1 thread before NumPy loads), the same pre-quantized int8 inputs, the interpreter invoked on
batches of ``BATCH`` images (its fastest mode here) and the simulator on its default chunks. The
engines are timed in interleaved rounds (``ROUNDS``) so that they share the machine's load; each
row reports the best and the median round and the 1-minute load average.

Run ``.venv/bin/python benchmarks/bench_sim.py`` (about 10 minutes; results go under the
repository root).
"""
from __future__ import annotations

import argparse
import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before NumPy loads its BLAS: a single-threaded simulator

import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np

import tinyopt  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from tinyopt import convert, data, models, sim, train
from tinyopt.litert import measure
from tinyopt.workbench import report

DATASETS = ("fashion_mnist", "mnist")
EPOCHS = 2
BATCH = 1000
SIM_BATCH = 256
ROUNDS = 3
TARGET_RATIO = 0.5
SEED = "seed_cnn int8"
MOBILENET = "mobilenet_v1 0.25 32x32 int8"
ENGINES = {"litert_builtin": "builtin", "litert_auto": "auto", "litert_reference": "reference"}


def interpreter_runner(tflite_bytes: bytes, xq: np.ndarray, resolver: str):
    """A callable running the whole int8 batch through one prepared interpreter."""
    interp = measure.interpreter(tflite_bytes, threads=1, resolver=resolver)
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    interp.resize_tensor_input(inp["index"], [BATCH, *inp["shape"][1:]])
    interp.allocate_tensors()

    def run() -> np.ndarray:
        outputs = []
        for start in range(0, len(xq), BATCH):
            chunk = xq[start:start + BATCH]
            n = len(chunk)
            if n < BATCH:  # the last partial batch: pad (outputs of the pad are dropped)
                chunk = np.concatenate([chunk, np.zeros((BATCH - n, *chunk.shape[1:]),
                                                        chunk.dtype)])
            interp.set_tensor(inp["index"], chunk)
            interp.invoke()
            outputs.append(interp.get_tensor(out["index"])[:n].copy())
        return np.concatenate(outputs)
    return run


KERNELS = {"tinyopt_sim": "numpy (int64 requant, exact float32/64 matmul)",
           "litert_builtin": "builtin optimized, no delegate",
           "litert_auto": "default resolver (XNNPACK where it applies)",
           "litert_reference": "builtin reference (BUILTIN_REF)"}


def int8_model(model, x_train, y_train, epochs: int) -> bytes:
    """Train briefly (seeded), convert to full int8 calibrated on TRAIN images."""
    train.fit(model, (x_train, y_train), epochs=epochs, seed=0, progress=False)
    return convert.to_tflite(model, "int8", calibration=x_train)


def evaluate(dataset: str, label: str, tfl: bytes, x: np.ndarray, y: np.ndarray, rounds: int,
             exact_rows: list, speed_rows: list) -> None:
    """Bit-exactness of the simulator against every engine, then interleaved timing rounds."""
    graph = sim.graph_from_tflite(tfl)
    xq = measure.quantize_input(x, {"dtype": np.int8, "name": "input",
                                    "quantization": (graph.input_scale,
                                                     graph.input_zero_point)})
    runners = {"tinyopt_sim": lambda: sim.run_tflite(tfl, xq, batch_size=SIM_BATCH)}
    runners.update({k: interpreter_runner(tfl, xq, r) for k, r in ENGINES.items()})
    outputs = {k: f() for k, f in runners.items()}  # warm-up round, also the outputs
    ours = outputs["tinyopt_sim"]
    for engine in ENGINES:
        theirs = outputs[engine]
        exact_rows.append({
            "dataset": dataset, "model": label, "images": len(xq), "reference": engine,
            "output_bytes": int(theirs.size), "mismatching_bytes": int(np.sum(ours != theirs)),
            "mismatching_images": int(np.sum(np.any(ours != theirs, axis=1))),
            "max_abs_diff": int(np.abs(ours.astype(int) - theirs).max()),
            "top1_agreement": float(np.mean(ours.argmax(1) == theirs.argmax(1))),
            "accuracy_sim": float(np.mean(ours.argmax(1) == y)),
            "accuracy_reference": float(np.mean(theirs.argmax(1) == y)),
            "ai_edge_litert": _litert_version()})
        print(exact_rows[-1])
    times = {k: [] for k in runners}
    loads = []
    for _ in range(rounds):  # interleaved, so every engine sees the same load
        for k, f in runners.items():
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
        loads.append(round(os.getloadavg()[0], 2))
    sim_best = min(times["tinyopt_sim"])
    for k, samples in times.items():
        best, median = min(samples), statistics.median(samples)
        target = TARGET_RATIO if k == "litert_builtin" and label == SEED else None
        speed_rows.append({
            "dataset": dataset, "model": label, "engine": k, "kernels": KERNELS[k],
            "threads": 1, "batch": BATCH if k != "tinyopt_sim" else SIM_BATCH,
            "images": len(xq), "rounds": rounds, "seconds_best": best,
            "seconds_median": median, "images_per_s_best": len(xq) / best,
            "images_per_s_median": len(xq) / median,
            "sim_over_engine_ratio": (best / sim_best) if k != "tinyopt_sim" else 1.0,
            "target_ratio": target,
            "meets_target": None if target is None else best / sim_best >= target,
            "load_avg_1min": statistics.median(loads), "cpu": measure.cpu_model(),
            "ai_edge_litert": _litert_version()})
        print(speed_rows[-1])


def main(argv: list[str] | None = None):
    # no options: --help prints the docstring's summary; anything else is refused before any
    # result is written
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    exact_rows, speed_rows = [], []
    for name in DATASETS:
        ds = data.dataset(name)
        tfl = int8_model(models.seed_cnn(seed=0), ds.x_train, ds.y_train, EPOCHS)
        evaluate(name, SEED, tfl, ds.x_test, ds.y_test, ROUNDS, exact_rows, speed_rows)
    # MobileNetV1 0.25 at 32 x 32 (MNIST zero-padded 28 -> 32): stride-2 SAME convolutions,
    # depthwise layers, global average pooling (TFLite MEAN); bit-exactness is the point here.
    ds = data.dataset("mnist")
    pad = ((0, 0), (2, 2), (2, 2), (0, 0))
    mobilenet = models.mobilenet_v1(0.25, 32, 10, input_channels=1, seed=0)
    tfl = int8_model(mobilenet, np.pad(ds.x_train, pad), ds.y_train, 1)
    evaluate("mnist", MOBILENET, tfl, np.pad(ds.x_test, pad), ds.y_test, 1, exact_rows,
             speed_rows)
    report.write_csv(exact_rows, REPO / "results/integer_only/tflite_bitexact.csv")
    report.write_csv(speed_rows, REPO / "results/bench/sim.csv")
    bad = [r for r in exact_rows if r["reference"] == "litert_reference"
           and r["mismatching_bytes"]]
    if bad:
        print(f"FAIL: mismatches against the reference kernels: {bad}", file=sys.stderr)
        return 1
    return 0


def _litert_version() -> str:
    from importlib.metadata import version
    return version("ai-edge-litert")


if __name__ == "__main__":
    sys.exit(main())

"""The four MLPerf Tiny int8 models through the C export (issue 14, part 4).

Per model (``../shared/models/mlperf_tiny``) and flavour ("litert": LiteRT's reference kernels;
"tflm": TensorFlow Lite Micro / CMSIS-NN rounding), with :func:`tinyopt.deploy.mcu.deploy`:

1. Bit-exactness: differing output bytes of the host C build against ``tinyopt.sim.run`` on
   ``N_HOST`` random valid int8 inputs (seeded), and of the Cortex-M7 build under QEMU
   (mps2-an500) on the first ``N_QEMU`` of them.
2. RAM: our arena (the ``model_arena`` symbol of the built program), the memory plan's
   prediction, its lower bound (largest bytes live at one step), and TFLM's tensor arena for the
   same ``.tflite`` from the tflite-micro interpreter (:func:`tinyopt.deploy.tflm_arena.
   tflm_arena`: total, and its activation part, the non-persistent head, which is what our
   arena replaces); the peak stack of ``model_run`` and of the whole program.
3. Flash: packed weights, other parameters (bias, multipliers, zero points), other constants
   (step descriptors, offsets, names), code of the kernels and ``model_run``.
4. Instructions per inference under QEMU ``-icount`` (an instruction count, not Cortex-M7 cycles).

Writes ``results/integer_only/mlperf_deploy.csv``. Run from the repo root:
``.venv/bin/python benchmarks/bench_mlperf_deploy.py`` (about ten minutes; needs gcc, and
arm-none-eabi-gcc with qemu-system-arm for the QEMU columns).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tinyopt.front.zoo import MLPERF_TINY, mlperf_tiny_path  # noqa: E402
from tinyopt.deploy import mcu  # noqa: E402
from tinyopt.deploy.tflm_arena import tflm_arena  # noqa: E402
from tinyopt.workbench.report import write_csv  # noqa: E402
from tinyopt.integer.from_litert import graph_from_tflite  # noqa: E402

N_HOST, N_QEMU, SEED = 1000, 20, 7
FLAVOURS = ("litert", "tflm")


def main(argv: list[str] | None = None) -> None:
    # no options: --help prints the docstring's summary; anything else is refused before any
    # result is written
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args(argv)
    ok, why = mcu.toolchain()
    if not ok:
        print(f"QEMU columns skipped: {why}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in MLPERF_TINY:
            path = mlperf_tiny_path(name)
            tfl = path.read_bytes()
            ref = tflm_arena(path)
            row = {"model": name}
            for flavour in FLAVOURS:
                g = graph_from_tflite(tfl, flavour=flavour)
                x = np.random.default_rng(SEED).integers(-128, 128, (N_HOST, *g.input_shape))
                r = mcu.deploy(g, x, Path(tmp) / flavour, name=name, host_images=N_HOST,
                               mcu_images=N_QEMU, run_mcu=ok)
                s = r["summary"]
                row[f"host_{flavour}_diff_bytes"] = s["host_mismatching_values"]
                row[f"qemu_{flavour}_diff_bytes"] = s.get("mcu_mismatching_values")
                if flavour == "tflm":  # sizes and instructions: the TFLM-rounding build
                    row.update({
                        "host_inputs": N_HOST, "qemu_inputs": N_QEMU if ok else 0,
                        "macs": s["macs"], "steps": s["steps"],
                        "arena_bytes": s["arena_bytes"], "predicted_ram": s["predicted_ram"],
                        "arena_in_elf": s.get("arena_in_bss"),
                        "arena_lower_bound": s["arena_lower_bound"],
                        "tflm_arena_total": ref["total_bytes"],
                        "tflm_arena_activations": ref["activation_bytes"],
                        "arena_minus_tflm_activations": s["arena_bytes"]
                        - ref["activation_bytes"],
                        "stack_model_run": s.get("stack_model_run"),
                        "stack_peak": s.get("stack_peak"),
                        "flash_weights": s["weight_bytes_c"],
                        "flash_parameters": s["param_bytes_c"] - s["weight_bytes_c"],
                        "flash_other_constants": (s["rodata"] - s["param_bytes_c"]
                                                  if "rodata" in s else None),
                        "flash_code_model": s.get("code_model"),
                        "flash_total_elf": s.get("flash_measured"),
                        "insns_per_inference": (round(s["insns_per_image_mean"])
                                                if "insns_per_image_mean" in s else None),
                        "insns_per_mac": (round(s["insns_per_image_mean"] / s["macs"], 2)
                                          if "insns_per_image_mean" in s else None),
                    })
            print(row, flush=True)
            rows.append(row)
    out = ROOT / "results" / "integer_only" / "mlperf_deploy.csv"
    write_csv(rows, out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

"""Instructions of the Cortex-M7 depthwise and ADD kernels on the MLPerf Tiny int8 models
(issue 29), measured under QEMU (mps2-an500, ``-icount shift=0``) by
:func:`tinyopt.deploy.mcu.deploy`, every run checked bit-exact against ``tinyopt.sim`` on the
host and under QEMU (flavour "tflm").

Printed (and, with ``--csv PATH``, written as tidy rows):

- ``scope=step``: every step of ResNet-8, DS-CNN and VWW: kernel, MACs, instructions per image.
- ``scope=depthwise``: per model, instructions per MAC of its depthwise steps, stride 1 and 2
  apart.
- ``scope=add``: ResNet-8's three residual ADDs, instructions per output element, both ways:
  stand-alone ADD steps (``fuse_add=False``: the ``add`` kernel, c/tn_m7_add.h) and fused into
  the producing convolution (``fuse_add=True``: the step's instructions minus those of the same
  convolution without the ADD, from the ``fuse_add=False`` run).
- ``scope=model``: instructions per inference, and the ratio to CMSIS-NN's (issue 29's table).

The 3x3 depthwise row kernel (tn_m7_dw3) runs where the planner gives a step its scratch
(:func:`tinyopt.integer.steps.scratch_parts`, :func:`~tinyopt.integer.steps.dw3_scratch_bytes`).

Run ``.venv/bin/python benchmarks/bench_kernels_dw_add.py [--csv PATH] [--models ...]`` (about
a minute; needs arm-none-eabi-gcc and qemu-system-arm).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tinyopt.deploy import mcu  # noqa: E402

MODELS = ("ic_resnet8", "kws_dscnn", "vww_mobilenet")
CMSIS_NN = {"ic_resnet8": 31_201_302, "kws_dscnn": 7_548_545,  # issue 29's table
            "vww_mobilenet": 23_808_422}
IMAGES = 2


def _graph(name: str):
    from tinyopt.front.zoo import mlperf_tiny_path
    from tinyopt.integer.from_litert import graph_from_tflite
    g = graph_from_tflite(mlperf_tiny_path(name).read_bytes(), flavour="tflm")
    g.name = f"mlperf_{name}"
    return g


def _inputs(graph, n: int, seed: int = 1) -> np.ndarray:
    lo = -(1 << (graph.input_bits - 1)) if graph.input_signed else 0
    return np.random.default_rng(seed).integers(lo, lo + (1 << graph.input_bits),
                                                (n, *graph.input_shape))


def _deploy(graph, tmp: Path, tag: str, fuse_add: bool = True):
    r = mcu.deploy(graph, _inputs(graph, 8), tmp, name=f"{graph.name}_{tag}", host_images=8,
                   mcu_images=IMAGES, fuse_add=fuse_add)
    s = r["summary"]
    if s["host_mismatching_values"] or s["mcu_mismatching_values"]:
        raise SystemExit(f"{graph.name} ({tag}): the C output differs from the simulator")
    return r


def rows_for(name: str, tmp: Path) -> list[dict]:
    g = _graph(name)
    r = _deploy(g, tmp, "m7")
    st, s = r["steps"], r["summary"]
    rows = []
    for _, row in st.iterrows():
        rows.append({"scope": "step", "model": name, "step": row["name"], "kind": row["kind"],
                     "kernel": row["kernel"], "macs": int(row["macs"]),
                     "insns": int(row["insns_per_image"])})
        print(f"{name:14s} {row['name']:40s} {row['kernel']:17s} {int(row['macs']):9d} MACs "
              f"{int(row['insns_per_image']):10d} insns", flush=True)
    strides = [tuple(stp.layer.stride) for stp in r["export"].steps]
    st = st.assign(stride=[sh for sh, _ in strides])
    dw = st[st["kind"] == "depthwise"]
    for label, sel in (("all", dw), ("stride 1", dw[dw["stride"] == 1]),
                       ("stride 2", dw[dw["stride"] == 2])):
        if sel.empty:
            continue
        ipm = float(sel["insns_per_image"].sum() / sel["macs"].sum())
        rows.append({"scope": "depthwise", "model": name, "step": label, "kernel": "/".join(
            sorted(set(sel["kernel"]))), "macs": int(sel["macs"].sum()),
            "insns": int(sel["insns_per_image"].sum()), "insns_per_unit": ipm,
            "share": float(sel["insns_per_image"].sum() / s["insns_per_image_mean"])})
        print(f"{name:14s} depthwise {label:9s} {ipm:6.3f} insns/MAC "
              f"({rows[-1]['share']:.1%} of the model)", flush=True)
    if any(stp.add is not None for stp in r["export"].steps):
        rows += add_rows(name, g, r, tmp)
    total = int(s["insns_per_image_mean"])
    rows.append({"scope": "model", "model": name, "insns": total, "cmsis_nn_insns": CMSIS_NN[name],
                 "insns_per_unit": total / CMSIS_NN[name], "arena_bytes": s["arena_bytes"],
                 "scratch_arena_bytes": s["scratch_arena_bytes"]})
    print(f"{name:14s} total {total:,} insns, {total / CMSIS_NN[name]:.3f} x CMSIS-NN, arena "
          f"{s['arena_bytes']} B (scratch {s['scratch_arena_bytes']} B)", flush=True)
    return rows


def add_rows(name: str, g, fused, tmp: Path) -> list[dict]:
    """ADD instructions per element, stand-alone and fused (see the module docstring)."""
    apart = _deploy(g, tmp, "m7_nofuse", fuse_add=False)
    by_name = dict(zip(apart["steps"]["name"], apart["steps"]["insns_per_image"]))
    layer_step = {stp.layer.name: stp.name for stp in apart["export"].steps}
    rows = []
    for stp, (_, row) in zip(fused["export"].steps, fused["steps"].iterrows()):
        if stp.add is None:
            continue
        n = int(np.prod(stp.add.out_shape))
        own = int(by_name[layer_step[stp.layer.name]])  # the same layer without the ADD
        alone = int(by_name[layer_step[stp.add.name]])
        for how, insns, kernel in (
                ("fused", int(row["insns_per_image"]) - own, row["kernel"]),
                ("stand-alone", alone, apart["export"].kernels[
                    [s.name for s in apart["export"].steps].index(layer_step[stp.add.name])])):
            rows.append({"scope": "add", "model": name, "step": stp.name, "kind": how,
                         "kernel": kernel, "macs": n, "insns": insns,
                         "insns_per_unit": insns / n})
            print(f"{name:14s} ADD {stp.name:30s} {how:12s} ({kernel:8s}) "
                  f"{insns / n:7.2f} insns/element", flush=True)
    total = apart["summary"]["insns_per_image_mean"]
    rows.append({"scope": "model", "model": name + " (fuse_add=False)", "insns": int(total),
                 "cmsis_nn_insns": CMSIS_NN[name], "insns_per_unit": total / CMSIS_NN[name]})
    print(f"{name:14s} total without ADD fusion {int(total):,} insns", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", help="write the rows to this CSV file")
    ap.add_argument("--models", nargs="*", default=list(MODELS), choices=MODELS)
    args = ap.parse_args(argv)
    ok, why = mcu.toolchain()
    if not ok:
        raise SystemExit(f"bench_kernels_dw_add needs the ARM toolchain and QEMU: {why}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            rows += rows_for(name, Path(tmp))
    if args.csv:
        from tinyopt.workbench.report import write_csv
        print(f"wrote {write_csv(rows, Path(args.csv))}")


if __name__ == "__main__":
    main()

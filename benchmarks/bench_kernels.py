"""Instructions of the Cortex-M7 kernels under QEMU (issue 16): per layer type, bit width and
granularity, and per inference for whole models. Every number is measured: the QEMU mps2-an500
run of :func:`tinyopt.deploy.mcu.deploy` (``-icount shift=0``, SysTick-timed steps), never a
formula; every run is checked bit-exact against ``tinyopt.sim`` on the host and under QEMU.

Rows of ``results/bench/kernels.csv``:

- ``scope=layer_type``: MobileNetV1 0.5 @ 32 with random calibrated parameters
  (:func:`tinyopt.deploy.synth.mobilenet_graph`), uniform 8, 4 or 2 bits (weights and
  activations), PL (one weight zero point and multiplier per layer, FB) and PC (per-channel
  weight zero points and multipliers, ICN). Instructions per MAC summed over the layers of a type
  (first conv with 1 input channel, depthwise, pointwise, dense), and the ratio to the same
  layers at 8 bits.
- ``scope=mlperf_layer_type``: the four MLPerf Tiny int8 models with the specialised kernels,
  instructions per MAC summed over the steps of each layer type and kernel (``conv2d+add``: a
  convolution with the residual ADD fused into it; ``fc`` / ``pw``: the dense and pointwise
  kernels of 8-bit layers, c/tn_m7_gemm.h; ``conv``: tn_m7_conv on 8-bit convolutions).
- ``scope=model``: instructions per inference of the seed CNN int8 and the mixed-precision
  MobileNet of notebook 05 (``results/deploy/*.npz``), MobileNetV1 0.25 @ 32 int8 (LiteRT
  conversion of :func:`tinyopt.front.models.mobilenet_v1`, 1 input channel, random weights),
  the four MLPerf Tiny int8 models (:mod:`tinyopt.front.zoo`, TFLM rounding), each with the
  specialised kernels ("m7") and the portable reference kernels; CMSIS-NN's figures of issues 16
  and 29 where known (instructions, and RAM = data + bss + peak stack for MLPerf); flash: kernel
  code bytes (``code_model``: tn_* kernels, step functions and model_run) beside the packed
  weights; the kernels' scratch (in the arena) and the measured RAM.

Run ``.venv/bin/python benchmarks/bench_kernels.py`` (a few minutes; needs arm-none-eabi-gcc and
qemu-system-arm). ``--mlperf`` measures the four MLPerf Tiny models with the specialised kernels
only (per-model totals beside CMSIS-NN's, flash and RAM, and the ``mlperf_layer_type`` rows),
printed, without writing ``results/bench/kernels.csv`` (the edit-measure loop of issue 29).
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tinyopt.deploy import mcu, synth  # noqa: E402
from tinyopt.integer.graph import IntegerGraph  # noqa: E402
from tinyopt.workbench.report import write_csv  # noqa: E402

IMAGES = 2
CMSIS_NN = {"seed_cnn_int8": 961_391, "mobilenet_32_0.25_int8": 3_134_129,  # issue 16's table
            # issue 29's: CMSIS-NN @ 99f736a6, -O2, the same QEMU counting
            "mlperf_ic_resnet8": 31_201_302, "mlperf_kws_dscnn": 7_548_545,
            "mlperf_vww_mobilenet": 23_808_422, "mlperf_ad_fcae": 580_332}
CMSIS_NN_RAM = {"mlperf_ic_resnet8": 52_472, "mlperf_kws_dscnn": 17_208,  # data + bss + stack
                "mlperf_vww_mobilenet": 57_424, "mlperf_ad_fcae": 1_368}
LAYER_TYPE = {"conv2d": "conv (1 input channel)", "depthwise": "depthwise",
              "pointwise": "pointwise", "dense": "dense"}


def _inputs(graph: IntegerGraph, n: int, seed: int = 1) -> np.ndarray:
    lo = -(1 << (graph.input_bits - 1)) if graph.input_signed else 0
    return np.random.default_rng(seed).integers(lo, lo + (1 << graph.input_bits),
                                                (n, *graph.input_shape))


def _deploy(graph, out, name, kernels="m7", images=IMAGES):
    r = mcu.deploy(graph, _inputs(graph, max(images, 8)), out, name=f"{name}_{kernels}",
                   host_images=8, mcu_images=images, kernels=kernels)
    s = r["summary"]
    if s["host_mismatching_values"] or s["mcu_mismatching_values"]:
        raise SystemExit(f"{name} ({kernels}): C output differs from the simulator")
    return r


def layer_type_rows(tmp: Path, x_calib: np.ndarray) -> list[dict]:
    from tinyopt.mixed.policy import Policy
    names = ["conv0"] + [f"{k}{i}" for i in range(1, 14) for k in ("dw", "pw")] + ["fc"]
    rows, base = [], {}
    for bits in (8, 4, 2):
        policy = Policy(names, [bits] * len(names), [bits] * len(names), "PL",
                        ["FB"] * len(names))
        pl = synth.mobilenet_graph(policy, x_calib, alpha=0.5, resolution=32)
        for gran, graph in (("PL", pl), ("PC", synth.per_channel_twin(pl))):
            graph.name = f"mobilenet_32_0.5_w{bits}a{bits}_{gran}"
            r = _deploy(graph, tmp, graph.name)
            st = r["steps"]
            for kind, label in LAYER_TYPE.items():
                sel = st[st["kind"] == kind]
                if sel.empty:
                    continue
                ipm = float(sel["insns_per_image"].sum() / sel["macs"].sum())
                if bits == 8:
                    base[(gran, kind)] = ipm
                rows.append({"scope": "layer_type", "model": graph.name, "layer_type": label,
                             "weight_bits": bits, "act_bits": bits, "granularity": gran,
                             "layers": len(sel), "macs": int(sel["macs"].sum()),
                             "insns": float(sel["insns_per_image"].sum()),
                             "insns_per_mac": ipm,
                             "ratio_to_8bit": ipm / base[(gran, kind)],
                             "kernel": "/".join(sorted(set(sel["kernel"])))})
                print(f"{graph.name:32s} {label:24s} {ipm:7.2f} insns/MAC", flush=True)
    return rows


def _mobilenet_int8() -> IntegerGraph:
    from tinyopt.front import models
    from tinyopt.integer.from_litert import graph_from_tflite
    from tinyopt.litert.convert import to_tflite
    m = models.mobilenet_v1(0.25, 32, classes=10, input_channels=1, seed=0)
    x = np.random.default_rng(0).random((64, 32, 32, 1)).astype("float32")
    g = graph_from_tflite(to_tflite(m, "int8", calibration=x))
    g.name = "mobilenet_32_0.25_int8"
    return g


def model_rows(tmp: Path) -> list[dict]:
    from tinyopt.front.zoo import MLPERF_TINY, mlperf_tiny_path
    from tinyopt.integer.from_litert import graph_from_tflite
    graphs = [IntegerGraph.load(REPO / "results/deploy/seed_cnn_int8.npz"), _mobilenet_int8(),
              IntegerGraph.load(REPO / "results/deploy/mobilenet_32_0.25_mixed.npz")]
    for name in MLPERF_TINY:
        g = graph_from_tflite(mlperf_tiny_path(name).read_bytes(), flavour="tflm")
        g.name = f"mlperf_{name}"
        graphs.append(g)
    rows = []
    for g in graphs:
        for kernels in ("m7", "portable"):
            r = _deploy(g, tmp, g.name, kernels)
            s = r["summary"]
            if kernels == "m7" and g.name.startswith("mlperf_"):
                rows += mlperf_layer_rows(g.name, r["steps"])
            ref = CMSIS_NN.get(g.name)
            rows.append({"scope": "model", "model": g.name, "kernel": kernels,
                         "weight_bits": s["weight_bits"], "act_bits": s["act_bits"],
                         "macs": s["macs"], "insns": s["insns_per_image_mean"],
                         "insns_per_mac": s["insns_per_image_mean"] / s["macs"],
                         "cmsis_nn_insns": ref,
                         "ratio_to_cmsis_nn": s["insns_per_image_mean"] / ref if ref else None,
                         "steps": s["steps"], "steps_specialised": s["steps_specialised"],
                         "code_model_bytes": s["code_model"],
                         "weight_bytes": s["weight_bytes_c"],
                         "weight_pad_bytes": s["weight_pad_bytes"],
                         "params_other_bytes": s["param_bytes_c"] - s["weight_bytes_c"],
                         "arena_bytes": s["arena_bytes"],
                         "scratch_stack_bytes": s["scratch_stack_bytes"],
                         "scratch_arena_bytes": s["scratch_arena_bytes"],
                         "stack_model_run": s["stack_model_run"],
                         "ram_measured": s["ram_measured"],
                         "cmsis_nn_ram": CMSIS_NN_RAM.get(g.name),
                         "ram_acceptance_ok": s["ram_acceptance_ok"]})
            print(f"{g.name:32s} {kernels:9s} {s['insns_per_image_mean']:14,.0f} insns "
                  f"code {s['code_model']} B", flush=True)
    return rows


def mlperf_layer_rows(model: str, steps) -> list[dict]:
    """Instructions per MAC of one MLPerf model's steps, per layer type and kernel (steps with
    MACs only; ``+add``: a residual ADD fused into the step)."""
    st = steps[steps["macs"] > 0].copy()
    st["layer_type"] = [k + ("+add" if "+add" in str(n) else "")
                        for k, n in zip(st["kind"], st["name"])]
    rows = []
    for (kind, kernel), sel in st.groupby(["layer_type", "kernel"]):
        rows.append({"scope": "mlperf_layer_type", "model": model, "layer_type": kind,
                     "kernel": kernel, "weight_bits": 8, "act_bits": 8, "layers": len(sel),
                     "macs": int(sel["macs"].sum()), "insns": float(sel["insns_per_image"].sum()),
                     "insns_per_mac": float(sel["insns_per_image"].sum() / sel["macs"].sum())})
        print(f"{model:32s} {kind:16s} {kernel:10s} {rows[-1]['insns_per_mac']:7.2f} insns/MAC",
              flush=True)
    return rows


def mlperf_only(tmp: Path) -> None:
    """The four MLPerf Tiny int8 models on the specialised kernels, printed (nothing written)."""
    from tinyopt.front.zoo import MLPERF_TINY, mlperf_tiny_path
    from tinyopt.integer.from_litert import graph_from_tflite
    for name in MLPERF_TINY:
        g = graph_from_tflite(mlperf_tiny_path(name).read_bytes(), flavour="tflm")
        g.name = f"mlperf_{name}"
        r = _deploy(g, tmp, g.name, "m7")
        s = r["summary"]
        print(f"{g.name:32s} {s['insns_per_image_mean']:14,.0f} insns "
              f"({s['insns_per_image_mean'] / CMSIS_NN[g.name]:.3f} x CMSIS-NN), code "
              f"{s['code_model']} B, weights {s['weight_bytes_c']} B, RAM {s['ram_measured']} B "
              f"(CMSIS-NN {CMSIS_NN_RAM[g.name]})", flush=True)
        mlperf_layer_rows(g.name, r["steps"])


def main() -> None:
    ok, why = mcu.toolchain()
    if not ok:
        raise SystemExit(f"bench_kernels needs the ARM toolchain and QEMU: {why}")
    if "--mlperf" in sys.argv[1:]:
        with tempfile.TemporaryDirectory() as tmp:
            mlperf_only(Path(tmp))
        return
    x_calib = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 1))
    with tempfile.TemporaryDirectory() as tmp:
        rows = layer_type_rows(Path(tmp), x_calib) + model_rows(Path(tmp))
    out = write_csv(rows, REPO / "results/bench/kernels.csv")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

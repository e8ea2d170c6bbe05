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
  instructions per MAC summed over the steps of each layer type and kernel (:func:`layer_type`:
  ``first layer``, ``conv 3x3``, ``pointwise``, ``depthwise 3x3 s1`` / ``s2``, ``dense``;
  ``+add``: the residual ADD fused into the step; kernels ``conv`` / ``pw``: tn_m7_conv,
  ``fc``: tn_m7_fc, c/tn_m7_gemm.h; ``depthwise``: tn_m7_dw3, c/tn_m7_dw.h). ``insns`` /
  ``insns_per_mac`` are raw: each step's count holds the measurement itself (the end of one
  profile hook and the start of the next, a fixed cost per step that weighs on small layers).
  The harness times that cost alone (c/mcu/harness_mcu.c: 8000 back-to-back hook calls, exact to
  one SysTick tick over all of them), ``hook_insns_per_step``
  (:attr:`tinyopt.deploy.mcu.McuRun.hook_insns_per_step`); ``insns_net`` = ``insns`` - ``layers``
  x that and ``insns_per_mac_net`` are the counts net of it (model_run's loop and the step's
  call stay in). The ``scope=model`` counts stay raw (they hold it once per step).
- ``scope=mlperf_add``: ResNet-8's residual ADDs, instructions per element: stand-alone
  (``fuse_add=False``, tn_m7_add) and fused (the fused step minus the same convolution's step
  in the unfused build).
- ``scope=subbyte_layer_type``: the seed CNN and the four MLPerf Tiny Keras architectures
  (:func:`tinyopt.studies.any_graph.mlperf_architecture`, random weights) through the sub-byte
  path (PTQ on 16 random inputs, uniform PL policies w8a8, w4a4, w2a2, w4a8), instructions per
  MAC per layer type (:func:`layer_type`, ``+pool``: a fused max pool) and ``ratio_to_8bit``:
  over the same layers at w8a8 (issue 29: sub-byte layers on the same footing as int8; above
  1.0 where they are not yet); ``weight_bits`` / ``act_bits``: the widths the steps have
  (a first layer keeps its 8-bit input); kernels ``sub``: c/tn_m7_sub*.h (tn_m7_subconv for
  conv / pointwise layers, with a fused max pool too; tn_m7_subfc for dense layers; tn_m7_sub
  where neither fits).
- ``scope=model``: instructions per inference of the seed CNN int8 and the mixed-precision
  MobileNet of notebook 05 (``results/deploy/*.npz``), MobileNetV1 0.25 @ 32 int8 (LiteRT
  conversion of :func:`tinyopt.front.models.mobilenet_v1`, 1 input channel, random weights),
  the four MLPerf Tiny int8 models (:mod:`tinyopt.front.zoo`, TFLM rounding), each with the
  specialised kernels ("m7") and the portable reference kernels; the bit-exactness check of each
  run (``host_images`` / ``host_mismatching_values``: the host C against the simulator,
  ``mcu_images`` / ``mcu_mismatching_values``: the Cortex-M7 build under QEMU; the MLPerf
  models on "m7" over :data:`EXACT_HOST` and :data:`EXACT_MCU` inputs, the others over 8 and
  2); CMSIS-NN's figures of issues 16
  and 29 where known (instructions, and RAM = data + bss + peak stack for MLPerf); flash: kernel
  code bytes (``code_model``: tn_* kernels, step functions and model_run) beside the packed
  weights; the kernels' scratch (in the arena) and the measured RAM.

Run ``.venv/bin/python benchmarks/bench_kernels.py`` (a few minutes; needs arm-none-eabi-gcc and
qemu-system-arm). ``--mlperf`` measures the four MLPerf Tiny models with the specialised kernels
only (per-model totals beside CMSIS-NN's, flash and RAM, and the ``mlperf_layer_type`` rows),
printed, without writing ``results/bench/kernels.csv`` (the edit-measure loop of issue 29);
with ``--exact`` too, over :data:`EXACT_HOST` host and :data:`EXACT_MCU` QEMU inputs, and with
``--exact --write`` the MLPerf rows of ``results/bench/kernels.csv`` replaced by these.
``--subbyte`` prints the ``subbyte_layer_type`` rows alone; with ``--write`` too, puts them in
place of those rows of ``results/bench/kernels.csv`` (the other rows kept as they are).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tinyopt.deploy import mcu, synth  # noqa: E402
from tinyopt.integer.graph import IntegerGraph  # noqa: E402
from tinyopt.integer.steps import kernel_window  # noqa: E402
from tinyopt.workbench.report import write_csv  # noqa: E402

IMAGES = 2
EXACT_HOST, EXACT_MCU = 1000, 20  # the MLPerf models' bit-exactness check (issue 29)
CMSIS_NN = {"seed_cnn_int8": 961_391, "mobilenet_32_0.25_int8": 3_134_129,  # issue 16's table
            # issue 29's: CMSIS-NN @ 99f736a6, -O2, the same QEMU counting
            "mlperf_ic_resnet8": 31_201_302, "mlperf_kws_dscnn": 7_548_545,
            "mlperf_vww_mobilenet": 23_808_422, "mlperf_ad_fcae": 580_332}
CMSIS_NN_RAM = {"mlperf_ic_resnet8": 52_472, "mlperf_kws_dscnn": 17_208,  # data + bss + stack
                "mlperf_vww_mobilenet": 57_424, "mlperf_ad_fcae": 1_368}
INT_COLUMNS = ("layers", "macs", "insns", "insns_net", "hook_insns_per_step", "cmsis_nn_insns",
               "steps", "steps_specialised", "code_model_bytes", "weight_bytes", "weight_pad_bytes",
               "params_other_bytes", "arena_bytes", "scratch_stack_bytes", "scratch_arena_bytes",
               "stack_model_run", "ram_measured", "cmsis_nn_ram", "host_images",
               "host_mismatching_values", "mcu_images", "mcu_mismatching_values", "elements",
               "model_insns")
LAYER_TYPE = {"conv2d": "conv (1 input channel)", "depthwise": "depthwise",
              "pointwise": "pointwise", "dense": "dense"}


def _inputs(graph: IntegerGraph, n: int, seed: int = 1) -> np.ndarray:
    lo = -(1 << (graph.input_bits - 1)) if graph.input_signed else 0
    return np.random.default_rng(seed).integers(lo, lo + (1 << graph.input_bits),
                                                (n, *graph.input_shape))


def _deploy(graph, out, name, kernels="m7", images=IMAGES, host=8, **kw):
    """mcu.deploy on ``host`` random inputs (the first ``images`` under QEMU); exits when the C
    differs from the simulator."""
    r = mcu.deploy(graph, _inputs(graph, max(images, host)), out, name=f"{name}_{kernels}",
                   host_images=host, mcu_images=images, kernels=kernels, **kw)
    s = r["summary"]
    if s["host_mismatching_values"] or s["mcu_mismatching_values"]:
        raise SystemExit(f"{name} ({kernels}): C output differs from the simulator")
    return r


def _exactness(s: dict) -> dict:
    """The bit-exactness columns of a deploy summary."""
    return {k: s[k] for k in ("host_images", "host_mismatching_values", "mcu_images",
                              "mcu_mismatching_values")}


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
                             "insns": int(sel["insns_per_image"].sum()),
                             "insns_per_mac": ipm,
                             "ratio_to_8bit": ipm / base[(gran, kind)],
                             "kernel": "/".join(sorted(set(sel["kernel"])))})
                print(f"{graph.name:32s} {label:24s} {ipm:7.2f} insns/MAC", flush=True)
    return rows


SUB_POLICIES = ((8, 8), (4, 4), (2, 2), (4, 8))
SUB_NETS = ("seed_cnn", "ic_resnet8", "kws_dscnn", "vww_mobilenet", "ad_fcae")


def subbyte_rows(tmp: Path) -> list[dict]:
    """``scope=subbyte_layer_type`` rows: per network, policy and layer type, instructions per
    MAC under QEMU and their ratio to the same layers at w8a8 (every build bit-exact on 8 host
    and 1 QEMU inputs), for each kernel choice (``kernel_choice``): "deployed", the planner's
    default (on these Keras-path graphs tn_m7_subconv and the depthwise row kernel only where
    their scratch does not grow the arena, ``steps.SCRATCH_ONLY_WHERE_FREE``), and "fastest"
    (wherever they fit); ``arena_bytes`` the built arena of the model under that choice."""
    from tinyopt.integer import steps as steps_mod
    rows = []
    for choice in ("deployed", "fastest"):
        steps_mod.SCRATCH_ONLY_WHERE_FREE = choice == "deployed"
        try:
            rows += [{**r, "kernel_choice": choice} for r in _subbyte_rows(tmp, choice)]
        finally:
            steps_mod.SCRATCH_ONLY_WHERE_FREE = True
    return rows


def trained_like_bn(model, seed: int = 0) -> int:
    """Give every BatchNormalization of a re-initialised ``model`` per-channel statistics drawn
    like a trained model's (seeded), in place, so that the sub-byte policies' ICN layers get a
    multiplier (m0, n0) per channel, as the trained MLPerf models do, instead of the one a fresh
    BN (gamma 1, beta 0, mean 0, variance 1) gives every channel. The draws: gamma ~ U(0.5, 1.5),
    beta and the moving mean ~ N(0, 0.1), the moving variance 2^N(0, 1): the per-channel scale
    gamma / sqrt(var) then spreads by a standard deviation of about 0.6 in log2, within what the
    trained MLPerf Keras models' BN layers show (0.1 to 1.1 for ResNet-8, DS-CNN, the
    autoencoder and most of VWW; a few VWW layers with dead channels more).

    Arguments:
        model: a Keras model (changed in place).
        seed: the draws' seed.

    Returns:
        The number of BatchNormalization layers changed."""
    import tf_keras as keras
    rng = np.random.default_rng(seed)
    n = 0
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        weights = []
        for w, name in zip(layer.get_weights(), ("gamma", "beta", "mean", "var")
                           if layer.scale and layer.center else ()):
            c = w.shape
            weights.append({"gamma": rng.uniform(0.5, 1.5, c), "beta": rng.normal(0, 0.1, c),
                            "mean": rng.normal(0, 0.1, c),
                            "var": 2.0 ** rng.normal(0, 1, c)}[name].astype(w.dtype))
        if not weights:
            raise ValueError(f"{model.name}: BatchNormalization {layer.name!r} without scale or "
                             "center; trained_like_bn draws all four statistics")
        layer.set_weights(weights)
        n += 1
    return n


def _subbyte_rows(tmp: Path, choice: str) -> list[dict]:
    import tf_keras as keras
    from tinyopt.front import models
    from tinyopt.mixed import lower, ptq
    from tinyopt.mixed.policy import Policy
    from tinyopt.studies.any_graph import mlperf_architecture
    rows = []
    for net in SUB_NETS:
        model = (models.seed_cnn() if net == "seed_cnn"
                 else mlperf_architecture(net, classes=10, seed=0))
        trained_like_bn(model, seed=0)
        x = np.random.default_rng(0).uniform(0, 1, (16, *model.input_shape[1:]))
        x = x.astype(np.float32)
        base = {}
        for w, a in SUB_POLICIES:
            keras.utils.set_random_seed(0)
            g = lower.convert(ptq.quantize_mixed(model, Policy.uniform(model, w, a, "PL"), x))
            g.name = f"{net}_w{w}a{a}_{choice}"
            r = mcu.deploy(g, g.quantize_input(x), tmp, name=g.name, host_images=8,
                           mcu_images=1)
            s = r["summary"]
            if s["host_mismatching_values"] or s["mcu_mismatching_values"]:
                raise SystemExit(f"{g.name}: C output differs from the simulator")
            st, steps = r["steps"].copy(), r["export"].steps
            first = next(k for k in range(len(st)) if st["macs"].iloc[k] > 0)
            st["layer_type"] = [
                layer_type(step, k == first) + ("+pool" if step.pool is not None else "")
                if st["macs"].iloc[k] > 0 else "" for k, step in enumerate(steps)]
            st["wb"] = [step.layer.weight_bits for step in steps]
            st["xb"] = [step.layer.in_bits for step in steps]
            st = st[st["macs"] > 0]
            for label, sel in st.groupby("layer_type", sort=False):
                ipm = float(sel["insns_per_image"].sum() / sel["macs"].sum())
                if (w, a) == (8, 8):
                    base[label] = ipm
                rows.append({"scope": "subbyte_layer_type", "model": net, "layer_type": label,
                             "weight_bits": "/".join(map(str, sorted(set(sel["wb"])))),
                             "act_bits": "/".join(map(str, sorted(set(sel["xb"])))),
                             "granularity": "PL", "layers": len(sel),
                             "macs": int(sel["macs"].sum()),
                             "insns": int(sel["insns_per_image"].sum()), "insns_per_mac": ipm,
                             "ratio_to_8bit": ipm / base[label] if label in base else None,
                             "kernel": "/".join(sorted(set(sel["kernel"]))),
                             "arena_bytes": int(s["arena_bytes"])})
                print(f"{g.name:36s} {label:22s} {rows[-1]['kernel']:12s} {ipm:7.2f} insns/MAC "
                      f"({rows[-1]['ratio_to_8bit']:.2f} x w8a8)", flush=True)
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


def _model_row(name: str, kernels: str, s: dict) -> dict:
    """The ``scope=model`` row of one deploy summary ``s``."""
    ref = CMSIS_NN.get(name)
    return {"scope": "model", "model": name, "kernel": kernels,
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
            "cmsis_nn_ram": CMSIS_NN_RAM.get(name),
            "ram_acceptance_ok": s["ram_acceptance_ok"], **_exactness(s)}


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
            mlperf = kernels == "m7" and g.name.startswith("mlperf_")
            r = (_deploy(g, tmp, g.name, kernels, EXACT_MCU, EXACT_HOST) if mlperf
                 else _deploy(g, tmp, g.name, kernels))
            s = r["summary"]
            if mlperf:
                rows += mlperf_layer_rows(g.name, r)
            if mlperf and g.name == "mlperf_ic_resnet8":
                rows += add_rows(g, tmp, r)
            rows.append(_model_row(g.name, kernels, s))
            print(f"{g.name:32s} {kernels:9s} {s['insns_per_image_mean']:14,.0f} insns "
                  f"code {s['code_model']} B", flush=True)
    return rows


def layer_type(step, first: bool) -> str:
    """The layer type of a compute step in the issue's table: ``first layer``, ``conv KHxKW``,
    ``pointwise``, ``depthwise KHxKW s<stride>``, ``dense``; ``+add`` with a fused ADD."""
    lay = step.layer
    kh, kw = kernel_window(lay)
    label = ("first layer" if first
             else f"conv {kh}x{kw}" if lay.kind == "conv2d"
             else f"depthwise {kh}x{kw} s{lay.stride[0]}" if lay.kind == "depthwise"
             else lay.kind)
    return label + ("+add" if step.add is not None else "")


def mlperf_layer_rows(model: str, r: dict) -> list[dict]:
    """Instructions per MAC of one MLPerf model's steps (a deploy result ``r``), per layer type
    (:func:`layer_type`) and kernel, steps with MACs only."""
    st = r["steps"].copy()
    steps = r["export"].steps
    first = next(k for k in range(len(st)) if st["macs"].iloc[k] > 0)
    st["layer_type"] = [layer_type(step, k == first) if st["macs"].iloc[k] > 0 else ""
                        for k, step in enumerate(steps)]
    st = st[st["macs"] > 0]
    hook = r["summary"].get("hook_insns_per_step")  # None: a harness that did not measure it
    rows = []
    for (kind, kernel), sel in st.groupby(["layer_type", "kernel"], sort=False):
        insns, macs = int(sel["insns_per_image"].sum()), int(sel["macs"].sum())
        rows.append({"scope": "mlperf_layer_type", "model": model, "layer_type": kind,
                     "kernel": kernel, "weight_bits": 8, "act_bits": 8, "layers": len(sel),
                     "macs": macs, "insns": insns, "insns_per_mac": insns / macs,
                     **net_columns(insns, macs, len(sel), hook)})
        net = rows[-1]["insns_per_mac_net"]
        print(f"{model:32s} {kind:22s} {kernel:10s} {rows[-1]['insns_per_mac']:7.2f} insns/MAC"
              + (f" ({net:.2f} net of {hook} per step)" if hook is not None else ""), flush=True)
    return rows


def net_columns(insns: int, macs: int, steps: int, hook: int | None) -> dict:
    """The columns of a per-layer-type row net of the measurement (the profile hooks, counted
    once per step: tinyopt.deploy.mcu.McuRun.hook_insns_per_step): ``hook_insns_per_step``,
    ``insns_net`` = ``insns`` - ``steps`` x it and ``insns_per_mac_net``; empty (None) when the
    run did not measure the hooks."""
    if hook is None:
        return {"hook_insns_per_step": None, "insns_net": None, "insns_per_mac_net": None}
    net = int(insns) - int(steps) * int(hook)
    return {"hook_insns_per_step": int(hook), "insns_net": net, "insns_per_mac_net": net / macs}


def add_rows(g: IntegerGraph, tmp: Path, fused: dict) -> list[dict]:
    """ResNet-8's residual ADDs per element: stand-alone (a build with ``fuse_add=False``) and
    fused (each fused step minus its convolution's step in that build); ``fused``: the default
    build's deploy result."""
    r = _deploy(g, tmp, g.name + "_unfused", "m7", fuse_add=False)
    st, steps = r["steps"], r["export"].steps
    alone = [k for k, step in enumerate(steps) if step.layer.kind == "add"]
    n = sum(int(np.prod(steps[k].layer.out_shape)) for k in alone)
    rows = [{"scope": "mlperf_add", "model": g.name, "layer_type": "add (stand-alone)",
             "kernel": "/".join(sorted({st["kernel"].iloc[k] for k in alone})),
             "layers": len(alone), "elements": n,
             "insns": int(sum(st["insns_per_image"].iloc[k] for k in alone)),
             "model_insns": r["summary"]["insns_per_image_mean"]}]
    conv = {step.layer.name: int(st["insns_per_image"].iloc[k]) for k, step in enumerate(steps)}
    fs, fsteps = fused["steps"], fused["export"].steps
    fk = [k for k, step in enumerate(fsteps) if step.add is not None]
    rows.append({"scope": "mlperf_add", "model": g.name, "layer_type": "add (fused)",
                 "kernel": "/".join(sorted({fs["kernel"].iloc[k] for k in fk})),
                 "layers": len(fk),
                 "elements": sum(int(np.prod(fsteps[k].add.out_shape)) for k in fk),
                 "insns": int(sum(fs["insns_per_image"].iloc[k] - conv[fsteps[k].layer.name]
                                  for k in fk)),
                 "model_insns": fused["summary"]["insns_per_image_mean"]})
    for row in rows:
        row["insns_per_element"] = row["insns"] / row["elements"]
        print(f"{g.name:32s} {row['layer_type']:22s} {row['insns_per_element']:7.2f} insns per "
              f"element (model {row['model_insns']:,})", flush=True)
    return rows


def mlperf_only(tmp: Path, exact: bool = False, write: bool = False) -> None:
    """The four MLPerf Tiny int8 models on the specialised kernels, printed; ``exact``: checked
    over EXACT_HOST / EXACT_MCU inputs (else 8 / IMAGES); ``write`` (needs ``exact``): their rows
    of ``results/bench/kernels.csv`` replaced (``mlperf_layer_type``, ``mlperf_add`` and the
    models' "m7" rows; every other row kept as it is)."""
    from tinyopt.front.zoo import MLPERF_TINY, mlperf_tiny_path
    from tinyopt.integer.from_litert import graph_from_tflite
    if write and not exact:
        raise SystemExit("bench_kernels --mlperf --write needs --exact (the rows' exactness "
                         "columns are over EXACT_HOST / EXACT_MCU inputs)")
    rows = []
    for name in MLPERF_TINY:
        g = graph_from_tflite(mlperf_tiny_path(name).read_bytes(), flavour="tflm")
        g.name = f"mlperf_{name}"
        r = (_deploy(g, tmp, g.name, "m7", EXACT_MCU, EXACT_HOST) if exact
             else _deploy(g, tmp, g.name, "m7"))
        s = r["summary"]
        print(f"{g.name:32s} {s['insns_per_image_mean']:14,.0f} insns "
              f"({s['insns_per_image_mean'] / CMSIS_NN[g.name]:.3f} x CMSIS-NN), code "
              f"{s['code_model']} B, weights {s['weight_bytes_c']} B, RAM {s['ram_measured']} B "
              f"(CMSIS-NN {CMSIS_NN_RAM[g.name]}); exact: {_exactness(s)}", flush=True)
        rows += mlperf_layer_rows(g.name, r)
        if name == "ic_resnet8":
            rows += add_rows(g, tmp, r)
        rows.append(_model_row(g.name, "m7", s))
    if write:
        path = REPO / "results/bench/kernels.csv"
        old = pd.read_csv(path)
        new = pd.DataFrame(rows)
        keep = ~(old["scope"].isin(["mlperf_layer_type", "mlperf_add"])
                 | ((old["scope"] == "model") & old["model"].str.startswith("mlperf_")
                    & (old["kernel"] == "m7")))
        # the new rows where the old ones stood (model by model)
        out, done = [], set()
        for _, row in old.iterrows():
            if keep[row.name]:
                out.append(row.to_dict())
            elif row["model"] not in done:
                done.add(row["model"])
                out += new[new["model"] == row["model"]].to_dict("records")
        out += new[~new["model"].isin(done)].to_dict("records")
        cols = [*old.columns, *(c for c in new.columns if c not in old.columns)]  # net columns
        print(f"wrote {write_csv(integer_counts(pd.DataFrame(out, columns=cols)), path)}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = ap.add_mutually_exclusive_group()
    what.add_argument("--mlperf", action="store_true",
                      help="the four MLPerf Tiny models only (printed)")
    what.add_argument("--subbyte", action="store_true",
                      help="the subbyte_layer_type rows only (printed)")
    ap.add_argument("--exact", action="store_true",
                    help="with --mlperf: also check exactness on the host and under QEMU")
    ap.add_argument("--write", action="store_true",
                    help="with --mlperf --exact or --subbyte: put the rows in kernels.csv")
    args = ap.parse_args(argv)
    if args.write and not (args.subbyte or args.mlperf):
        ap.error("--write goes with --mlperf --exact or --subbyte (the full run always writes)")
    if args.exact and not args.mlperf:
        ap.error("--exact goes with --mlperf")
    ok, why = mcu.toolchain()
    if not ok:
        raise SystemExit(f"bench_kernels needs the ARM toolchain and QEMU: {why}")
    if args.mlperf:
        with tempfile.TemporaryDirectory() as tmp:
            mlperf_only(Path(tmp), exact=args.exact, write=args.write)
        return
    if args.subbyte:  # the subbyte_layer_type rows only, printed
        with tempfile.TemporaryDirectory() as tmp:
            rows = subbyte_rows(Path(tmp))
        if args.write:  # ... and put in place of those of kernels.csv
            path = REPO / "results/bench/kernels.csv"
            old = pd.read_csv(path)
            keep = old[old["scope"] != "subbyte_layer_type"]
            at = int(np.argmax((old["scope"] == "subbyte_layer_type").to_numpy()))
            new = pd.DataFrame(rows)
            cols = [*old.columns, *(c for c in new.columns if c not in old.columns)]
            frame = pd.concat([keep.iloc[:at], new.reindex(columns=cols), keep.iloc[at:]],
                              ignore_index=True).reindex(columns=cols)
            print(f"wrote {write_csv(integer_counts(frame), path)}")
        return
    x_calib = np.random.default_rng(0).integers(0, 256, (64, 32, 32, 1))
    with tempfile.TemporaryDirectory() as tmp:
        rows = (layer_type_rows(Path(tmp), x_calib) + subbyte_rows(Path(tmp))
                + model_rows(Path(tmp)))
    out = write_csv(integer_counts(pd.DataFrame(rows)), REPO / "results/bench/kernels.csv")
    print(f"wrote {out}")


def integer_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its counts (instructions, MACs, bytes, images, ...) as integers (pandas'
    nullable Int64: an empty cell stays empty instead of turning the column into floats);
    ratios and per-MAC figures stay floats. Raises ValueError if a count is not a whole
    number (a bug of the rows, not something to round away)."""
    frame = frame.copy()
    for col in INT_COLUMNS:
        if col in frame.columns:
            v = pd.to_numeric(frame[col])
            if (v.dropna() % 1 != 0).any():
                raise ValueError(f"kernels.csv column {col!r} holds a fraction: {v.tolist()}")
            frame[col] = v.astype("Int64")
    return frame


if __name__ == "__main__":
    main()

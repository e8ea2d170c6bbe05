"""Notebook 07 (``07_real_models``): a trained full-int8 ``.tflite`` from outside tinyopt, through
the integer path: what it contains, whether tinyopt computes what the interpreters compute, and
what it costs deployed.

Notebook 07 runs this on the four MLPerf Tiny reference models; it works for any full-int8
flatbuffer with one int8 input that :func:`tinyopt.graph_from_tflite` imports.

- :func:`integer_check`: ops, MACs and parameters of the imported graph; differing output bytes of
  the simulator against LiteRT's reference kernels (``flavour="litert"``) and against the
  TFLite Micro interpreter (``flavour="tflm"``) on random valid int8 inputs. Random inputs
  exercise every code path of the integer arithmetic (the MLPerf datasets are not here); they say
  nothing about accuracy, which the integer path does not change when it is bit-exact.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from tinyopt.deploy.codegen import layer_macs
from tinyopt.integer import sim
from tinyopt.integer.from_litert import graph_from_tflite
from tinyopt.litert.reference import litert_reference, tflm_reference


def random_inputs(graph, images: int, seed: int = 0) -> np.ndarray:
    """``images`` random valid int8 input codes for ``graph`` (seeded)."""
    if int(images) < 1:
        raise ValueError(f"images must be >= 1, got {images}")
    rng = np.random.default_rng(seed)
    return rng.integers(-128, 128, (int(images), *graph.input_shape)).astype(np.int8)


def op_summary(graph) -> str:
    """The graph's node kinds with their counts, e.g. ``"conv2d x7, add x3, dense x1"``."""
    counts = Counter(layer.kind for layer in graph.layers)
    return ", ".join(f"{k} x{n}" for k, n in counts.items())


def integer_check(tflite_bytes: bytes, name: str, images: int = 1000, seed: int = 0,
                  tflm: bool = True) -> dict:
    """Import ``tflite_bytes`` and hold the simulator to both interpreters on random inputs.

    Arguments:
        tflite_bytes: a full-int8 flatbuffer with one int8 input.
        name: the model's name in the row.
        images: random valid int8 inputs (seeded by ``seed``).
        tflm: also compare ``flavour="tflm"`` with the tflite-micro interpreter (image by image;
            about 10x slower than the LiteRT side).

    Returns:
        One row: model, nodes, ops, macs, weights (parameters), images, litert_diff_bytes
        (simulator, flavour litert, vs LiteRT BUILTIN_REF), tflm_diff_bytes (flavour tflm vs
        the tflite-micro interpreter; None when ``tflm`` is False), litert_vs_tflm_bytes (how
        much the two interpreters differ from each other on the same inputs), output_bytes.

    Raises:
        ValueError: the model cannot be imported (the error names the op and tensor).
    """
    g = graph_from_tflite(tflite_bytes, flavour="litert")
    x = random_inputs(g, images, seed)
    out = g.output_names()[0]
    ours = np.asarray(sim.run(g, x)).reshape(len(x), -1)
    ref = litert_reference(tflite_bytes, x, {out})[out].reshape(len(x), -1)
    row = {"model": name, "nodes": len(g.layers), "ops": op_summary(g),
           "macs": int(sum(layer_macs(layer) for layer in g.layers)),
           "weights": int(sum(int(np.prod(layer.weight_shape)) for layer in g.layers
                              if getattr(layer, "weights", None) is not None)),
           "images": len(x), "output_bytes": int(ref.size),
           "litert_diff_bytes": int(np.sum(ours != ref)),
           "tflm_diff_bytes": None, "litert_vs_tflm_bytes": None}
    if tflm:
        gt = graph_from_tflite(tflite_bytes, flavour="tflm")
        micro = tflm_reference(tflite_bytes, x, {out})[out].reshape(len(x), -1)
        row["tflm_diff_bytes"] = int(np.sum(np.asarray(sim.run(gt, x)).reshape(len(x), -1)
                                            != micro))
        row["litert_vs_tflm_bytes"] = int(np.sum(ref != micro))
    return row


def deploy_check(tflite_bytes: bytes, name: str, build_dir, host_images: int = 1000,
                 mcu_images: int = 20, run_mcu: bool = True, seed: int = 0,
                 flavour: str = "tflm") -> dict:
    """Deploy the imported graph as C (:func:`tinyopt.deploy_mcu`) and put TFLite Micro's arena
    for the same flatbuffer beside ours.

    Arguments:
        tflite_bytes, name: as :func:`integer_check`.
        build_dir: folder for the C sources and builds (``<build_dir>/<name>/``).
        host_images, mcu_images: random int8 inputs checked on the host / under QEMU.
        run_mcu: False (or no ARM toolchain) skips the Cortex-M7 part; the reason is in
            ``mcu_skipped``.
        flavour: the rounding the C code computes: "tflm" (default: what the same model computes
            deployed with TensorFlow Lite Micro and CMSIS-NN) or "litert".

    Returns:
        :func:`tinyopt.deploy_mcu`'s summary plus ``flavour``, ``tflm_arena_bytes`` (TFLM's
        whole tensor arena), ``tflm_activation_bytes`` (its planned, non-persistent part: the
        figure comparable with our ``arena_bytes``) and ``tflm_persistent_bytes``.
    """
    from tinyopt.deploy import mcu
    from tinyopt.deploy.tflm_arena import tflm_arena
    g = graph_from_tflite(tflite_bytes, flavour=flavour)
    g.name = name
    x = random_inputs(g, max(host_images, mcu_images if run_mcu else 0), seed + 1)
    result = mcu.deploy(g, x, build_dir, name=name, host_images=host_images,
                        mcu_images=mcu_images, run_mcu=run_mcu)
    row = {"flavour": flavour, **result["summary"]}
    tflm = tflm_arena(tflite_bytes)
    row.update(tflm_arena_bytes=tflm["total_bytes"], tflm_activation_bytes=tflm["activation_bytes"],
               tflm_persistent_bytes=tflm["persistent_bytes"])
    return row


def headline(checks, deployed):
    """One row per model: bit-exactness, flash, RAM next to TFLM's, instructions per inference.

    Arguments:
        checks: :func:`integer_check` rows (a DataFrame).
        deployed: :func:`deploy_check` rows (a DataFrame).

    Returns:
        A DataFrame; MCU columns are NaN where the QEMU part was skipped.
    """
    import pandas as pd
    d = deployed.set_index("model")
    rows = []
    for c in checks.to_dict("records"):
        s = d.loc[c["model"]]
        get = (lambda k: s[k] if k in s.index else float("nan"))  # noqa: E731
        rows.append({
            "model": c["model"], "macs": c["macs"], "weights": c["weights"],
            "sim_vs_litert_diff_bytes": c["litert_diff_bytes"],
            "sim_vs_tflm_diff_bytes": c["tflm_diff_bytes"],
            "host_c_mismatching_values": s["host_mismatching_values"],
            "host_images": s["host_images"],
            "mcu_mismatching_values": get("mcu_mismatching_values"),
            "mcu_images": get("mcu_images"),
            "flash_weights": s["weight_bytes_c"],
            "flash_params_other": s["param_bytes_c"] - s["weight_bytes_c"],
            "flash_code": get("code_model"),
            "arena_bytes": s["arena_bytes"], "predicted_ram": s["predicted_ram"],
            "tflm_activation_bytes": s["tflm_activation_bytes"],
            "arena_vs_tflm": s["arena_bytes"] / s["tflm_activation_bytes"],
            "tflm_arena_bytes": s["tflm_arena_bytes"],
            "stack_model_run": get("stack_model_run"),
            "insns_per_inference": get("insns_per_image_mean"),
            "insns_per_mac": get("insns_per_image_mean") / c["macs"],
        })
    return pd.DataFrame(rows)

"""Notebook 10 (``10_model_zoo``): today's small networks, none written for tinyopt, through both
paths, with untrained (seeded) weights: what fits, whether it is exact, what it costs deployed.

- :func:`build`: the networks of :data:`ZOO` at small input sizes (Keras applications
  MobileNetV3 Small / Large, minimalistic or not, EfficientNetB0 and MobileNetV2, with their
  preprocessing layers; a U-Net with Conv2DTranspose / UpSampling2D and a sigmoid output; a causal
  dilated TCN on audio features), and the MLPerf Tiny architectures.
- :func:`subbyte_row`: the sub-byte path's memory model: parameters, w8a8 flash and peak RAM
  (the device's plan, :func:`tinyopt.peak_ram_bytes`), and the memory-driven mixed policy at a
  fraction of both (:func:`tinyopt.memory_driven`); a network the sub-byte path refuses gets the
  refusal (its first line) instead. With ``agreement_images``, the mixed policy also goes
  through PTQ, the integer graph and the simulator (:func:`mixed_agreement`): top-1 agreement
  and LSB differences with the fake-quant model, layer by layer, and the deployed arena against
  the memory model.
- :func:`int8_row`: the int8 path: the network converted for one image
  (:func:`tinyopt.to_tflite`, ``batch_size=1``), or the MLPerf reference ``.tflite``, imported,
  the simulator held to LiteRT's reference kernels and TFLite Micro
  (:func:`tinyopt.studies.real_models.integer_check`), and deployed as C on the host and on the
  Cortex-M7 under QEMU (:func:`tinyopt.studies.real_models.deploy_check`) when it fits the
  target's flash and RAM (else the reason).

Every figure comes from a run: nothing is filled in by hand, and a stage that refuses a network
says so in the row (``*_refused`` columns).
"""

from __future__ import annotations

import numpy as np

# name -> (what it is, input shape, real input range of its float input)
ZOO = {
    "mobilenet_v3_small": ("Keras MobileNetV3Small, alpha 0.75, with preprocessing",
                           (32, 32, 3), (0.0, 255.0)),
    "mobilenet_v3_small_min": ("Keras MobileNetV3Small, alpha 0.75, minimalistic",
                               (32, 32, 3), (0.0, 255.0)),
    "mobilenet_v3_large": ("Keras MobileNetV3Large, alpha 0.75, with preprocessing",
                           (32, 32, 3), (0.0, 255.0)),
    "mobilenet_v3_large_min": ("Keras MobileNetV3Large, alpha 0.75, minimalistic",
                               (32, 32, 3), (0.0, 255.0)),
    "efficientnet_b0": ("Keras EfficientNetB0 (Rescaling + Normalization first)",
                        (32, 32, 3), (0.0, 255.0)),
    "mobilenet_v2": ("Keras MobileNetV2, alpha 0.35", (32, 32, 3), (-1.0, 1.0)),
    "unet": ("U-Net: Conv2DTranspose, UpSampling2D, skip concatenation, sigmoid output",
             (32, 32, 3), (0.0, 1.0)),
    "tcn": ("causal dilated TCN (Conv1D dilation 1, 2, 4) on 64 x 16 audio features",
            (64, 16), (-1.0, 1.0)),
    "ic_resnet8": ("MLPerf Tiny image classification ResNet-8", (32, 32, 3), (0.0, 255.0)),
    "kws_dscnn": ("MLPerf Tiny keyword spotting DS-CNN", (49, 10, 1), (-1.0, 1.0)),
    "vww_mobilenet": ("MLPerf Tiny visual wake words MobileNetV1 0.25", (96, 96, 3),
                      (0.0, 1.0)),
    "ad_fcae": ("MLPerf Tiny anomaly detection autoencoder", (640,), (-1.0, 1.0)),
}
MLPERF = ("ic_resnet8", "kws_dscnn", "vww_mobilenet", "ad_fcae")


def _unet(keras, shape):
    L = keras.layers
    inp = keras.Input(shape)
    a = L.Conv2D(8, 3, padding="same", activation="relu", name="enc1")(inp)
    b = L.MaxPooling2D(2, name="down")(a)
    b = L.Conv2D(16, 3, padding="same", activation="relu", name="enc2")(b)
    c = L.MaxPooling2D(2, name="down2")(b)
    c = L.Conv2D(16, 3, padding="same", activation="relu", name="mid")(c)
    u = L.UpSampling2D(2, name="up_nearest")(c)
    u = L.Concatenate(name="skip2")([u, b])
    u = L.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu", name="up_t")(u)
    u = L.Concatenate(name="skip1")([u, a])
    u = L.Conv2D(8, 3, padding="same", activation="relu", name="dec")(u)
    return keras.Model(inp, L.Conv2D(1, 1, activation="sigmoid", name="mask")(u), name="unet")


def _tcn(keras, shape):
    L = keras.layers
    x = inp = keras.Input(shape)
    for i, rate in enumerate((1, 2, 4)):
        x = L.Conv1D(16, 3, padding="causal", dilation_rate=rate, activation="relu",
                     name=f"tcn{i}")(x)
    x = L.GlobalAveragePooling1D(name="gap")(x)
    return keras.Model(inp, L.Dense(10, name="logits")(x), name="tcn")


def settle_batchnorm(model, x) -> None:
    """Give an untrained network the BatchNormalization statistics of the data ``x`` (one
    forward pass in training mode with momentum 0): with Keras' initial statistics (mean 0,
    variance 1) on [0, 255] inputs, activations grow or vanish layer after layer, and the int8
    conversion ends in scales that LiteRT's and TFLite Micro's kernels refuse."""
    bns = [layer for layer in model.layers
           if type(layer).__name__.startswith("BatchNormalization")]
    if not bns:
        return
    momenta = [layer.momentum for layer in bns]
    for layer in bns:
        layer.momentum = 0.0
    model(x, training=True)
    for layer, m in zip(bns, momenta):
        layer.momentum = m


def build(name: str, seed: int = 0):
    """The untrained (seeded) network ``name`` of :data:`ZOO`, with 10 outputs, its
    BatchNormalization statistics those of :func:`calibration` data (:func:`settle_batchnorm`).

    Raises:
        ValueError: an unknown name (the known ones listed).
    """
    model = _build(name, seed)
    if name not in MLPERF:
        settle_batchnorm(model, calibration(name, seed=seed))
    return model


def _build(name: str, seed: int = 0):
    if name not in ZOO:
        raise ValueError(f"unknown network {name!r}; choose from {sorted(ZOO)}")
    import tf_keras as keras
    keras.utils.set_random_seed(seed)
    shape = ZOO[name][1]
    apps = keras.applications
    if name.startswith("mobilenet_v3"):
        ctor = apps.MobileNetV3Large if "_large" in name else apps.MobileNetV3Small
        return ctor(input_shape=shape, alpha=0.75, minimalistic=name.endswith("_min"),
                    weights=None, classes=10, include_preprocessing=True)
    if name == "efficientnet_b0":
        return apps.EfficientNetB0(input_shape=shape, weights=None, classes=10)
    if name == "mobilenet_v2":
        return apps.MobileNetV2(input_shape=shape, alpha=0.35, weights=None, classes=10)
    if name == "unet":
        return _unet(keras, shape)
    if name == "tcn":
        return _tcn(keras, shape)
    from tinyopt.studies.any_graph import mlperf_architecture
    return mlperf_architecture(name, classes=10, seed=seed)


def calibration(name: str, n: int = 64, seed: int = 0) -> np.ndarray:
    """``n`` seeded random float inputs spanning network ``name``'s input range."""
    _, shape, (lo, hi) = ZOO[name]
    return np.random.default_rng(seed).uniform(lo, hi, (n, *shape)).astype(np.float32)


def _refusal(exc: Exception) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"


def subbyte_row(name: str, model, fraction: float = 0.5, agreement_images: int = 0,
                calibration_images: int = 16, seed: int = 0, depth: list | None = None) -> dict:
    """The sub-byte path's memory model on ``model``: w8a8 and the memory-driven policy at
    ``fraction`` of the w8a8 flash and peak RAM (``subbyte_refused``: why not, when refused).

    Arguments:
        name, model: the network (:data:`ZOO`) and its float model.
        fraction: the mixed policy's budgets, this fraction of the w8a8 flash and peak RAM.
        agreement_images: > 0: the mixed policy through PTQ on ``calibration_images`` inputs,
            the integer graph and the simulator on this many other inputs
            (:func:`mixed_agreement`, its columns prefixed ``mixed_``).
        calibration_images, seed: PTQ's calibration inputs (:func:`calibration`).
        depth: a list that receives the per-layer rows of the agreement (with ``model``).

    Returns:
        One row (a dict).
    """
    from tinyopt.mixed import memory
    from tinyopt.mixed.policy import Policy
    from tinyopt.mixed.search import BudgetError, memory_driven
    row = {"model": name, "parameters": int(model.count_params())}
    try:
        p8 = Policy.uniform(model, 8, 8)
        flash8, ram8 = memory.flash_bytes(model, p8), memory.peak_ram_bytes(model, p8)
    except ValueError as exc:
        return {**row, "subbyte_refused": _refusal(exc)}
    row.update(w8a8_flash=flash8, w8a8_peak_ram=ram8,
               budget_flash=int(flash8 * fraction), budget_ram=int(ram8 * fraction))
    try:
        mixed = memory_driven(model, row["budget_flash"], row["budget_ram"])
        row.update(mixed_flash=memory.flash_bytes(model, mixed),
                   mixed_peak_ram=memory.peak_ram_bytes(model, mixed),
                   mixed_weight_bits="/".join(map(str, sorted(set(mixed.weight_bits)))),
                   mixed_act_bits="/".join(map(str, sorted(set(mixed.act_bits)))))
    except BudgetError as exc:
        return {**row, "mixed_refused": _refusal(exc)}
    if agreement_images > 0:
        try:
            summary, layers = mixed_agreement(
                model, mixed, calibration(name, calibration_images, seed + 2),
                calibration(name, agreement_images, seed + 3))
        except (ValueError, OverflowError) as exc:  # a stage refused it: in the row
            return {**row, "mixed_ptq_refused": _refusal(exc)}
        row.update({f"mixed_{k}": v for k, v in summary.items()})
        if depth is not None:
            depth.extend({"model": name, **r} for r in layers.to_dict("records"))
    return row


def mixed_agreement(model, policy, calibration_x, x) -> tuple[dict, object]:
    """``policy`` through PTQ (:func:`tinyopt.quantize_ptq` on ``calibration_x``), the integer
    graph (:func:`tinyopt.to_integer_graph`) and the simulator, against the fake-quant model on
    ``x`` (:func:`tinyopt.mixed.verify.compare`, layer by layer), and the memory model against
    the arena the C export plans for that graph.

    Returns:
        (summary, layers): summary: ``ptq_images`` / ``images``, ``top1_agreement`` (and
        ``top1_agreement_1lsb``, a tie at the output's resolution counted as agreeing),
        ``out_max_lsb`` (the largest difference of an output code; None when the output
        node has no fake-quant layer of its name), ``layers_exact`` ("k/n":
        layers whose output equals the fake-quant model's on every element, end to end),
        ``first_diff`` (the first layer, in execution order, that differs end to end),
        ``isolated_max_lsb`` (the largest difference of one layer's own arithmetic, fed the
        simulator's input), ``chained_max_lsb``, ``arena_bytes`` and ``arena_is_peak_ram``
        (the deployed arena equals :func:`tinyopt.peak_ram_bytes`); layers: the per-layer
        DataFrame of :func:`~tinyopt.mixed.verify.compare` with ``depth`` (the node's index).

    Raises:
        ValueError: a stage refuses the model (named by that stage).
    """
    from tinyopt.integer import steps
    from tinyopt.mixed import lower, memory, ptq, verify
    qmodel = ptq.quantize_mixed(model, policy, calibration_x)
    g = lower.convert(qmodel)
    r = verify.compare(qmodel, g, x)
    layers = r["layers"]
    index = {layer.name: i for i, layer in enumerate(g.layers)}
    layers.insert(0, "depth", [index[n] for n in layers["layer"]])
    last = layers[layers["layer"] == g.layers[-1].name]  # the output node, when compared
    differ = layers[layers["chained_max_lsb"] > 0]
    arena = int(steps.plan(g)[1])
    summary = {"ptq_images": int(len(calibration_x)), "images": int(len(x)),
               "top1_agreement": r["top1_agreement"],
               "top1_agreement_1lsb": r["top1_agreement_1lsb"],
               "out_max_lsb": float(last["chained_max_lsb"].max()) if len(last) else None,
               "layers_exact": f"{len(layers) - len(differ)}/{len(layers)}",
               "first_diff": differ["layer"].iloc[0] if len(differ) else "",
               "isolated_max_lsb": float(layers["isolated_max_lsb"].max()),
               "chained_max_lsb": float(layers["chained_max_lsb"].max()),
               "arena_bytes": arena,
               "arena_is_peak_ram": arena == memory.peak_ram_bytes(model, policy)}
    return summary, layers


def int8_tflite(name: str, model) -> bytes:
    """The network's full-int8 flatbuffer: the MLPerf reference file, else ``model`` converted
    for one image with seeded random calibration."""
    if name in MLPERF:
        from tinyopt.front.zoo import mlperf_tiny_tflite
        return mlperf_tiny_tflite(name)
    from tinyopt.litert.convert import to_tflite
    return to_tflite(model, "int8", calibration=calibration(name), batch_size=1)


def _diff_bytes(tflite_bytes: bytes, flavour: str, images: int, seed: int) -> int:
    """Differing output bytes of the simulator (``flavour``) against its interpreter on
    ``images`` random inputs (run in a child process by :func:`int8_row`)."""
    from tinyopt.integer import sim
    from tinyopt.integer.from_litert import graph_from_tflite
    from tinyopt.litert.reference import litert_reference, tflm_reference
    from tinyopt.studies.real_models import random_inputs
    g = graph_from_tflite(tflite_bytes, flavour=flavour)
    x = random_inputs(g, images, seed)
    out = g.output_names()[0]
    ref = (litert_reference if flavour == "litert" else tflm_reference)(
        tflite_bytes, x, {out})[out].reshape(len(x), -1)
    return int(np.sum(np.asarray(sim.run(g, x)).reshape(len(x), -1) != ref))


def _in_child(fn, *args):
    """``fn(*args)`` in a fresh process: an interpreter that aborts (LiteRT's reference kernels
    abort on some converted models, killing the process) becomes an error, not a dead kernel."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            return pool.submit(fn, *args).result()
        except BrokenProcessPool:
            raise RuntimeError("the interpreter aborted the process") from None


def int8_row(name: str, model, build_dir, images: int = 200, host_images: int = 20,
             mcu_images: int = 1, run_mcu: bool = True, seed: int = 0) -> dict:
    """The int8 path on network ``name``: import, exactness against LiteRT REF and TFLite
    Micro on ``images`` random inputs (each interpreter in a child process), the C on the
    host and (``run_mcu``) under QEMU.

    Returns:
        One row; ``int8_refused`` / ``deploy_refused`` say why a stage did not run,
        ``litert_diff_bytes`` / ``tflm_diff_bytes`` hold the reason when an interpreter failed.
    """
    from tinyopt.deploy.codegen import layer_macs
    from tinyopt.integer.from_litert import graph_from_tflite
    from tinyopt.studies import real_models
    row = {"model": name}
    try:
        tfl = int8_tflite(name, model)
        g = graph_from_tflite(tfl)
    except ValueError as exc:
        return {**row, "int8_refused": _refusal(exc)}
    row.update(nodes=len(g.layers), ops=real_models.op_summary(g),
               macs=int(sum(layer_macs(layer) for layer in g.layers)), images=int(images))
    for flavour in ("litert", "tflm"):
        try:
            row[f"{flavour}_diff_bytes"] = _in_child(_diff_bytes, tfl, flavour, images, seed)
        except (RuntimeError, ValueError) as exc:
            row[f"{flavour}_diff_bytes"] = _refusal(exc)
    row["tflite_bytes"] = len(tfl)
    from tinyopt.deploy import mcu
    gt = graph_from_tflite(tfl, flavour="tflm")  # what TFLite Micro / CMSIS-NN compute
    gt.name = name
    x = real_models.random_inputs(gt, max(host_images, mcu_images if run_mcu else 0), seed + 1)
    try:
        dep = mcu.deploy(gt, x, build_dir, name=name, host_images=host_images,
                         mcu_images=mcu_images, run_mcu=run_mcu)["summary"]
    except ValueError as exc:  # e.g. the target's flash or RAM is too small (mcu.check_fits)
        return {**row, "deploy_refused": _refusal(exc)}
    except mcu.BuildError as exc:  # a bug of ours: in the table for all to see, not a crash
        return {**row, "deploy_failed": _refusal(exc)}
    for key in ("host_images", "host_mismatching_values", "weight_bytes_c", "arena_bytes",
                "flash_measured", "ram_measured", "mcu_images", "mcu_mismatching_values",
                "insns_per_image_mean", "mcu_skipped"):
        if key in dep:
            row[key] = dep[key]
    return row


def zoo_table(names, build_dir, fraction: float = 0.5, images: int = 200,
              host_images: int = 20, mcu_images: int = 1, run_mcu: bool = True,
              seed: int = 0, progress=print, agreement_images: int = 0,
              calibration_images: int = 16, depth: list | None = None):
    """Both paths on every network of ``names``; one row each (a DataFrame). With
    ``agreement_images`` the mixed policy's integer graph is compared with its fake-quant
    model (:func:`subbyte_row`), its per-layer rows appended to ``depth`` (a list, for
    :func:`depth_figure` as a DataFrame)."""
    import pandas as pd
    from pathlib import Path
    rows = []
    for name in names:
        model = build(name, seed)
        row = subbyte_row(name, model, fraction, agreement_images, calibration_images, seed,
                          depth)
        row.update(int8_row(name, model, Path(build_dir), images, host_images, mcu_images,
                            run_mcu))
        row["what"] = ZOO[name][0]
        rows.append(row)
        if progress:
            progress(f"{name}: " + ", ".join(f"{k}={row[k]}" for k in (
                "w8a8_flash", "mixed_flash", "mixed_top1_agreement", "mixed_out_max_lsb",
                "litert_diff_bytes", "insns_per_image_mean") if k in row))
    return pd.DataFrame(rows)


def figure(table, path) -> None:
    """Flash and peak RAM of w8a8 and the mixed policy per network (log scale), and the
    instructions per inference on the M7 where measured; written atomically to ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tinyopt.files import atomic_path
    t = table.set_index("model")
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, (a, b, title) in zip(axes[:2], (("w8a8_flash", "mixed_flash", "flash (B)"),
                                             ("w8a8_peak_ram", "mixed_peak_ram",
                                              "peak RAM (B, device plan)"))):
        cols = [c for c in (a, b) if c in t]
        if cols:
            t[cols].plot.bar(ax=ax, logy=True, rot=60)
        ax.set_title(title)
    if "insns_per_image_mean" in t:
        t["insns_per_image_mean"].dropna().plot.bar(ax=axes[2], logy=True, rot=60)
    axes[2].set_title("Cortex-M7 instructions per inference (QEMU)")
    fig.suptitle("Small networks through tinyopt (untrained weights)")
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def depth_figure(depth, path) -> None:
    """The mixed policy's integer graph against its fake-quant model, layer by layer (``depth``:
    the DataFrame of :func:`zoo_table`'s per-layer rows): the largest LSB difference of each
    layer's output, end to end (chained) and of its own arithmetic alone (isolated), against
    the layer's depth, one panel per network; written atomically to ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tinyopt.files import atomic_path
    names = list(dict.fromkeys(depth["model"])) if len(depth) else []
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(4 * max(len(names), 1), 3.5),
                             squeeze=False)
    for ax, name in zip(axes[0], names):
        d = depth[depth["model"] == name]
        ax.plot(d["depth"], d["chained_max_lsb"], ".-", label="chained")
        ax.plot(d["depth"], d["isolated_max_lsb"], "x", label="isolated")
        ax.set_title(name)
        ax.set_xlabel("node index")
        ax.set_ylabel("max |integer - fake quant| (LSB)")
        ax.legend()
    fig.suptitle("Mixed policy: integer graph vs fake quant, by depth (untrained weights)")
    fig.tight_layout()
    with atomic_path(path, ".png") as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)

"""Notebook 05 (``05_deploy``) as functions: four integer graphs exported as C and checked
bit-exact on the host (and on the emulated Cortex-M7), then their tables. Each graph goes through
a :class:`Deployer` (:func:`tinyopt.pipeline.subbyte.deploy_graph`, non-strict: mismatches are
counted, not raised).

1. :func:`seed_cnn_int8`: the seed CNN, full int8 through LiteRT (TFLite rounding).
2. :func:`mobilenet_random`: a MobileNetV1-style graph with the memory-driven bits and random
   parameters (:func:`tinyopt.deploy.synth.mobilenet_graph`).
3. :func:`seed_cnn_converted`: the seed CNN of (1), mixed bits, through the sub-byte chain (PTQ).
4. :func:`mobilenet_converted`: a trained MobileNetV1 with the bits of (2), through the chain.

:func:`tables` gathers the summary, memory and per-step tables; the ``*_COLUMNS`` and
:func:`summary_columns` / :func:`step_columns` are the notebook's views of them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tinyopt.names import path_slug
from tinyopt.pipeline import subbyte

# The notebook's views of tables()'s summary (RAM; instructions, with QEMU).
RAM_COLUMNS = ["model", "arena_bytes", "predicted_ram", "arena_lower_bound", "memory_model_ram",
               "ram_measured", "ram_overheads", "ram_acceptance_ok"]
INSTRUCTION_COLUMNS = ["model", "macs", "insns_per_image_mean", "insns_per_image_min",
                       "insns_per_image_max", "insns_per_tick"]


class Deployer:
    """Deploys integer graphs the one way notebook 05 does, and saves each graph.

    Arguments:
        build_dir: folder for the C sources and builds (a notebook resolves its relative path
            with :func:`tinyopt.workbench.paths.project_path` first).
        out_dir: where ``<graph name>.npz`` goes (None: not saved).
        host_images, mcu_images: images for the bit-exactness checks.
        run_mcu: also run on the emulated Cortex-M7 when the toolchain is installed (the
            constructor prints whether it is, and why the QEMU part is skipped if so).

    Attributes:
        run_mcu: whether the QEMU part runs (asked for and the toolchain is here).
        images: ``max(host_images, mcu_images)``: the test images each model is checked on.
    """

    def __init__(self, build_dir, out_dir, host_images: int, mcu_images: int,
                 run_mcu: bool = True):
        from tinyopt.deploy import mcu
        ok, why = mcu.toolchain()
        print("Cortex-M7 toolchain:", why)
        self.run_mcu = bool(run_mcu and ok)
        if run_mcu and not ok:
            print("QEMU part skipped:", why)
        self.build_dir = build_dir
        self.out_dir, self.host_images, self.mcu_images = out_dir, host_images, mcu_images
        self.images = max(host_images, mcu_images)

    def __call__(self, graph, codes: np.ndarray) -> dict:
        """C on the host (and the Cortex-M7 under QEMU), bit-exactness counted; the graph saved.

        Arguments:
            graph: an IntegerGraph (its name names the build folder and the file).
            codes: its integer input codes (at least :attr:`images`).

        Returns:
            :func:`tinyopt.pipeline.subbyte.deploy_graph`'s dict ("summary", "steps", ...).
        """
        r = subbyte.deploy_graph(graph, codes, self.build_dir, host_images=self.host_images,
                                 mcu_images=self.mcu_images, run_mcu=self.run_mcu, strict=False)
        if self.out_dir is not None:
            name = path_slug(graph.name, "graph name")  # the name comes from a user's file
            graph.save(Path(self.out_dir) / f"{name}.npz")
        return r


def _pad(x, resolution):
    return subbyte.resize(x, resolution, "pad")  # 28x28 -> resolution x resolution


def _to_codes(x):
    return np.round(x * 255).astype(np.int64)  # [0, 1] images -> 8-bit codes


def seed_cnn_int8(ds, train_samples: int | None, epochs: int, seed: int, deploy: Deployer):
    """Section 1: the seed CNN trained briefly, converted to full int8 by LiteRT, read as an
    integer graph (``seed_cnn_int8``, TFLite rounding) and deployed; prints its layers, rounding
    and int8 accuracy on the first :attr:`Deployer.images` test images.

    Arguments:
        ds: a :class:`tinyopt.Dataset` (the first ``train_samples`` training images train
            the model; all of them calibrate the int8 conversion).
        train_samples, epochs, seed: the float training.
        deploy: the :class:`Deployer`.

    Returns:
        ``(model, result)``: the float seed CNN and the deployment result.
    """
    from tinyopt.deploy import codegen
    from tinyopt.front import models, train
    from tinyopt.litert.convert import to_tflite
    from tinyopt.pipeline import deployed
    cnn = models.seed_cnn(seed=seed)
    train.fit(cnn, (ds.x_train[:train_samples], ds.y_train[:train_samples]), epochs=epochs,
              seed=seed, progress=False)
    n = deploy.images
    g, x = deployed.litert_graph(to_tflite(cnn, "int8", calibration=ds.x_train), ds.x_test[:n])
    g.name = "seed_cnn_int8"
    print([lay.kind for lay in g.layers], "rounding", g.rounding,
          "| int8 accuracy on", n, "test images:",
          subbyte.accuracy(codegen.reference_output(g, x), ds.y_test[:n]))
    return cnn, deploy(g, x)


def mobilenet_random(ds, alpha: float, resolution: int, flash_fraction: float,
                     ram_fraction: float, seed: int, deploy: Deployer):
    """Section 2: the memory-driven policy of the MobileNetV1 member at ``flash_fraction`` /
    ``ram_fraction`` of its all-8-bit flash / RAM (printed, layer by layer), and a graph with
    those bits and random parameters (calibrated on 200 zero-padded training images), deployed.

    Arguments:
        ds: a :class:`tinyopt.Dataset` (28x28, padded to ``resolution``).
        alpha, resolution: the member (10 classes, 1 input channel).
        flash_fraction, ram_fraction: the budget, in (0, 1].
        seed: the random parameters.
        deploy: the :class:`Deployer`.

    Returns:
        ``(policy, result)``.

    Raises:
        tinyopt.BudgetError: the budget cannot be met even at the lowest bits.
    """
    from tinyopt.deploy import synth
    from tinyopt.mixed import memory
    from tinyopt.mixed.policy import Policy
    from tinyopt.mixed.search import memory_driven
    nodes = memory.mobilenet_v1_nodes(alpha, resolution, classes=10, input_channels=1)
    names = [nd.name for nd in nodes]
    all8 = Policy.uniform(names, 8, 8)
    policy = memory_driven(nodes, int(flash_fraction * memory.flash_bytes(nodes, all8)),
                           int(ram_fraction * memory.peak_ram_bytes(nodes, all8)))
    print(pd.DataFrame({"layer": names, "weight_bits": policy.weight_bits,
                        "act_bits": policy.act_bits, "fold": policy.fold}
                       ).T.to_string(header=False))
    g = synth.mobilenet_graph(policy, _to_codes(_pad(ds.x_train[:200], resolution)), alpha=alpha,
                              resolution=resolution, seed=seed)
    return policy, deploy(g, _to_codes(_pad(ds.x_test[:deploy.images], resolution)))


def seed_cnn_converted(cnn, ds, weight_bits, act_bits, deploy: Deployer) -> dict:
    """Section 3: the float seed CNN quantized post-training to per-layer ``weight_bits`` /
    ``act_bits`` (PL; 1000 calibration images) and converted by the sub-byte chain
    (``seed_cnn_mixed_converted``), deployed; prints its layers and integer accuracy.

    Arguments:
        cnn: the float seed CNN (:func:`seed_cnn_int8`'s model).
        ds: its :class:`tinyopt.Dataset`.
        weight_bits, act_bits: one per compute layer (conv, fc).
        deploy: the :class:`Deployer`.

    Returns:
        The deployment result.

    Raises:
        ValueError: bits that do not match the model's compute layers.
    """
    from tinyopt.mixed.policy import Policy
    from tinyopt.transforms.keras_graph import compute_layer_names
    n = deploy.images
    policy = Policy(compute_layer_names(cnn), weight_bits, act_bits, "PL")
    c = subbyte.quantize_chain(cnn, policy, ds.x_train[:1000],
                               (ds.x_test[:n], ds.y_test[:n]))  # PTQ only
    g = c.graph
    g.name = "seed_cnn_mixed_converted"
    print([(lay.name, lay.kind, lay.in_bits, lay.out_bits, lay.weight_bits) for lay in g.layers],
          g.rounding, "| integer accuracy on", n, "test images:", c.integer_acc)
    return deploy(g, g.quantize_input(ds.x_test[:n]))


def mobilenet_converted(ds, policy, alpha: float, resolution: int, train_samples: int | None,
                        epochs: int, seed: int, deploy: Deployer) -> dict:
    """Section 4: a MobileNetV1 trained briefly on the zero-padded images, its BatchNorm
    statistics re-estimated on 2000 of them, quantized post-training to ``policy`` (1000
    calibration images) and converted by the sub-byte chain, deployed; prints its integer
    accuracy.

    So brief a training leaves BatchNorm's moving statistics far from the data: the float model
    predicts one class and the quantized graph's activations die; the re-estimation (one batch
    statistic per layer) gives the converted graph live activations and varied outputs.

    Arguments:
        ds: a :class:`tinyopt.Dataset` (28x28).
        policy: the bits (:func:`mobilenet_random`'s policy).
        alpha, resolution: the member (10 classes, 1 input channel).
        train_samples, epochs, seed: the float training (the first ``train_samples`` images;
            ``epochs`` 0: none, the seeded initial model, its BatchNorm statistics still
            re-estimated on them).
        deploy: the :class:`Deployer`.

    Returns:
        The deployment result (graph ``mobilenet_<resolution>_<alpha>_mixed_converted``).
    """
    from tinyopt.front import models, train
    n = deploy.images
    fmn = models.mobilenet_v1(alpha, resolution, classes=10, input_channels=1, seed=seed)
    x_fmn = _pad(ds.x_train[:train_samples], resolution)
    if epochs:  # 0: the seeded initial model (Keras refuses epochs=0)
        train.fit(fmn, (x_fmn, ds.y_train[:train_samples]), epochs=epochs, seed=seed,
                  progress=False)
    subbyte.recalibrate_bn(fmn, x_fmn[:2000])
    c = subbyte.quantize_chain(fmn, policy, x_fmn[:1000],
                               (_pad(ds.x_test[:n], resolution), ds.y_test[:n]))  # PTQ only
    g = c.graph
    g.name = f"mobilenet_{resolution}_{alpha:g}_mixed_converted"
    print("integer accuracy on", n, "test images:", c.integer_acc)
    return deploy(g, g.quantize_input(_pad(ds.x_test[:n], resolution)))


def tables(runs, run_mcu: bool):
    """The notebook's tables from its deployment results.

    Arguments:
        runs: :class:`Deployer` results, in order.
        run_mcu: whether QEMU ran (:attr:`Deployer.run_mcu`).

    Returns:
        ``(summary, memory, steps)``: one summary row per run; flash and RAM measured vs
        predicted (:func:`tinyopt.deploy.mcu.memory_table`; None without QEMU); every step of
        every run.
    """
    from tinyopt.deploy import mcu
    summary = pd.DataFrame([r["summary"] for r in runs])
    memory = pd.concat([mcu.memory_table(r["summary"]) for r in runs], ignore_index=True) \
        if run_mcu else None
    steps = pd.concat([r["steps"] for r in runs], ignore_index=True)
    return summary, memory, steps


def summary_columns(run_mcu: bool) -> list[str]:
    """The bit-exactness view of the summary (QEMU columns when it ran)."""
    cols = ["model", "host_images", "host_images_exact", "host_mismatching_values",
            "distinct_outputs"]
    return cols + (["mcu_images", "mcu_images_exact", "mcu_mismatching_values"] if run_mcu
                   else [])


def step_columns(run_mcu: bool) -> list[str]:
    """The view of the per-step table (instructions when QEMU ran)."""
    return (["model", "name", "kind", "in_bits", "out_bits", "weight_bits", "macs"]
            + (["insns_per_image", "insns_per_mac"] if run_mcu else []))


# ------------------------------------------------------------- notebook 09: the MLPerf kernels
MLPERF_MODEL_COLUMNS = ["model", "macs", "insns", "insns_per_mac", "cmsis_nn_insns",
                        "ratio_to_cmsis_nn", "ram_measured", "cmsis_nn_ram", "host_images",
                        "host_mismatching_values", "mcu_images", "mcu_mismatching_values"]


def mlperf_kernel_tables(csv_path) -> dict:
    """The MLPerf Tiny rows of ``benchmarks/bench_kernels.py``'s CSV (``results/bench/
    kernels.csv``) as the tables of issue 29: per model the Cortex-M7 kernels' instructions per
    inference beside CMSIS-NN's (same QEMU counting; CMSIS-NN was measured per model only, so
    its column in the layer table is the whole model's instructions per MAC), RAM and the
    bit-exactness counts; per layer type and model the instructions per MAC; ResNet-8's ADD per
    element (stand-alone and fused).

    Arguments:
        csv_path: the CSV file (a notebook resolves it with
            :func:`tinyopt.workbench.paths.project_path`).

    Returns:
        {"models": DataFrame (MLPERF_MODEL_COLUMNS), "layer_types": DataFrame (rows: layer
        type, columns: model; the last row "CMSIS-NN, whole model"), "adds": DataFrame}.

    Raises:
        ValueError: the file has no MLPerf rows (written by another version of the benchmark).
    """
    df = pd.read_csv(csv_path)
    models = df[(df["scope"] == "model") & (df["kernel"] == "m7")
                & df["model"].astype(str).str.startswith("mlperf_")]
    layers = df[df["scope"] == "mlperf_layer_type"]
    if models.empty or layers.empty:
        raise ValueError(f"{csv_path}: no MLPerf model / mlperf_layer_type rows; rerun "
                         "benchmarks/bench_kernels.py")
    missing = [c for c in MLPERF_MODEL_COLUMNS if c not in models.columns]
    if missing:
        raise ValueError(f"{csv_path}: columns {missing} missing; rerun "
                         "benchmarks/bench_kernels.py")
    models = models[MLPERF_MODEL_COLUMNS].reset_index(drop=True)
    types = layers.assign(label=layers["layer_type"] + " (" + layers["kernel"] + ")")
    wide = types.pivot_table(index="label", columns="model", values="insns_per_mac",
                             aggfunc="first")
    wide.loc["CMSIS-NN, whole model"] = (models.set_index("model")["cmsis_nn_insns"]
                                         / models.set_index("model")["macs"])
    wide.index.name = "layer type (kernel): instructions per MAC"
    adds = df[df["scope"] == "mlperf_add"]
    adds = adds[[c for c in ("model", "layer_type", "kernel", "layers", "elements", "insns",
                             "insns_per_element", "model_insns") if c in adds.columns]]
    return {"models": models, "layer_types": wide, "adds": adds.reset_index(drop=True)}

"""The public surface: every name ``tinyopt.<name>`` offers, where it lives, what it does.

One table, :data:`PUBLIC`, maps a public name to ``"module:attribute"`` in the stage that
implements it and a one-line description. ``tinyopt/__init__.py`` serves the names lazily from it
(PEP 562 ``__getattr__``): ``import tinyopt`` imports no stage and no TensorFlow, and
``tinyopt.simulate`` *is* ``tinyopt.integer.sim.run`` (same object, same docstring and
signature). README.md's "Public API" table is :func:`markdown_table` (``tests/test_public_api.py``
checks that they agree; ``python -c "import tinyopt; print(tinyopt.api.markdown_table())"``
prints it).

Library code imports from the stages, never from here or from ``tinyopt.<name>``
(``tests/test_layout.py``). The names of the earlier facade modules (``tinyopt.sim.run``, ...)
are deprecated aliases of these, in one table: :mod:`tinyopt.deprecated`.

A public name is never the name of an old facade module (``tinyopt.prune`` must stay that module
while it is deprecated); ``tests/test_public_api.py`` checks it.
"""

from __future__ import annotations

import importlib

# name -> ("module:attribute", what it does). Grouped by stage, in the order a model flows.
PUBLIC: dict[str, tuple[str, str]] = {
    # front: data, models, training
    "dataset": ("tinyopt.front.data:dataset",
                "MNIST / Fashion-MNIST ready to train on: float32 images in [0, 1] with a channel "
                "axis, as a `Dataset`"),
    "load_raw_dataset": ("tinyopt.front.data:load",
                         "the checksummed arrays exactly as `keras.datasets` returns them (uint8)"),
    "preprocess_images": ("tinyopt.front.data:preprocess",
                          "uint8 images -> float32 [0, 1] with a channel axis (the one place "
                          "pixels are scaled)"),
    "fetch_dataset": ("tinyopt.front.data:fetch",
                      "copy or download one dataset into `data/<name>/`, every file verified"),
    "Dataset": ("tinyopt.front.data:Dataset", "train and test arrays of one dataset"),
    "DatasetError": ("tinyopt.front.data:DatasetError",
                     "a dataset file missing or corrupt (names the file and the fix)"),
    "DATASET_CLASS_NAMES": ("tinyopt.front.data:CLASS_NAMES", "class labels per dataset"),
    "seed_cnn": ("tinyopt.front.models:seed_cnn",
                 "the CNN_on_MCU seed network (20,410 parameters)"),
    "mobilenet_v1": ("tinyopt.front.models:mobilenet_v1",
                     "MobileNetV1 at any width and resolution"),
    "fit": ("tinyopt.front.train:fit",
            "deterministic training, validated on a seeded split of the training set"),
    "set_seed": ("tinyopt.front.train:set_seed",
                 "seed Python, NumPy and TensorFlow; deterministic TF ops"),
    "compile_classifier": ("tinyopt.front.train:compile_classifier",
                           "Adam + sparse cross-entropy on logits + accuracy (the seed's recipe)"),
    # transforms: Keras Model -> Model
    "prune_magnitude": ("tinyopt.transforms.prune:prune",
                        "tfmot magnitude pruning, fine-tuned and stripped"),
    "pruning_schedule": ("tinyopt.transforms.prune:schedule",
                         "a tfmot pruning schedule (polynomial or constant)"),
    "weight_sparsity": ("tinyopt.transforms.prune:sparsity",
                        "the share of exact zero weights, per kernel and overall"),
    "decompose_conv2d": ("tinyopt.transforms.decompose:decompose",
                         "Conv2D -> depthwise + pointwise, least-squares initialised"),
    "optimize_keras_graph": ("tinyopt.transforms.optimize:optimize",
                             "Keras graph optimization: BN folding, Dropout removal, ReLU fusion"),
    "keras_graph_rewrites": ("tinyopt.transforms.optimize:plan",
                             "the rewrites `optimize_keras_graph` would make (empty: none)"),
    # litert: the 8-bit LiteRT path
    "qat_int8": ("tinyopt.litert.qat:quantize",
                 "tfmot 8-bit QAT model (pruning-preserving after pruning)"),
    "to_tflite": ("tinyopt.litert.convert:to_tflite",
                  "Keras -> .tflite bytes: float32, float16, dynamic, int8_fallback, int8, "
                  "int16x8"),
    "TFLITE_MODES": ("tinyopt.litert.convert:MODES", "the conversion modes of `to_tflite`"),
    "calibration_subset": ("tinyopt.litert.convert:calibration_subset",
                           "a seeded random subset of (training) images for calibration"),
    "tflite_accuracy": ("tinyopt.litert.measure:accuracy",
                        "top-1 accuracy of a .tflite through the LiteRT interpreter"),
    "tflite_latency": ("tinyopt.litert.measure:latency",
                       "per-image latency of a .tflite through the LiteRT interpreter"),
    "tflite_size": ("tinyopt.litert.measure:size", "bytes of a .tflite, raw and `gzip -9`"),
    "tflite_predict": ("tinyopt.litert.measure:predict", "outputs of a .tflite on a batch"),
    "evaluate_tflite": ("tinyopt.litert.measure:evaluate",
                        "one tidy row: accuracy, sizes, latency, parameters, MACs"),
    "count_params": ("tinyopt.litert.measure:params",
                     "parameters of a Keras model, per layer and total"),
    "count_macs": ("tinyopt.litert.measure:macs",
                   "multiply-accumulates of a Keras model, per layer and total"),
    # mixed: sub-byte mixed precision (Rusci et al.)
    "quantize_ptq": ("tinyopt.mixed.ptq:quantize_mixed",
                     "sub-byte mixed-precision post-training quantization (calibrated fake-quant "
                     "model)"),
    "quantize_qat": ("tinyopt.mixed.build:quantize_mixed",
                     "sub-byte mixed-precision fake-quant model to fine-tune (QAT)"),
    "integer_params": ("tinyopt.mixed.build:integer_params",
                       "the integer codes and scales of a fake-quant model"),
    "fake_quant_summary": ("tinyopt.mixed.build:summary",
                           "a per-layer table of a fake-quant model: bits, bytes, MACs"),
    "named_policy": ("tinyopt.mixed.build:named_policy",
                     "a policy by name for a model: `w4a4`, ..., or `mixed` (memory-driven)"),
    "Policy": ("tinyopt.mixed.policy:Policy",
               "bits per layer (weights, activations), PL / PC, FB / ICN"),
    "parse_bytes": ("tinyopt.mixed.policy:parse_bytes",
                    "a memory budget (`512k`, `2M`, an int) -> bytes"),
    "memory_driven": ("tinyopt.mixed.search:memory_driven",
                      "the memory-driven bit policy under flash and RAM budgets"),
    "BudgetError": ("tinyopt.mixed.search:BudgetError",
                    "no bit assignment meets the budget (names the smallest reachable)"),
    "flash_bytes": ("tinyopt.mixed.memory:flash_bytes",
                    "flash bytes of a network under a policy (weights + parameters)"),
    "peak_ram_bytes": ("tinyopt.mixed.memory:peak_ram_bytes",
                       "peak RAM bytes of a network under a policy (tensors alive at each step)"),
    "memory_report": ("tinyopt.mixed.memory:report",
                      "per-layer flash and RAM table of a network under a policy"),
    "memory_nodes": ("tinyopt.mixed.nodes:nodes",
                     "a Keras network as memory-model nodes, one per policy layer"),
    "mobilenet_v1_nodes": ("tinyopt.mixed.nodes:mobilenet_v1_nodes",
                           "MobileNetV1's memory-model nodes without building the model"),
    "live_steps": ("tinyopt.mixed.memory:live_steps",
                   "the tensors alive at each step of the deployed network"),
    "deployed_param_bytes": ("tinyopt.mixed.memory:deployed_param_bytes",
                             "the parameter bytes the C export stores"),
    "to_integer_graph": ("tinyopt.mixed.lower:convert",
                         "fake-quant model -> integer graph (folds BN: FB, or ICN)"),
    "snap_bias": ("tinyopt.mixed.lower:snap_bias",
                  "round a fake-quant model's biases onto the int32 grid of the kernels"),
    "compare_to_fake_quant": ("tinyopt.mixed.verify:compare",
                              "an integer graph against its fake-quant model, layer by layer"),
    # integer: the integer graph and the bit-exact simulator
    "IntegerGraph": ("tinyopt.integer.graph:IntegerGraph",
                     "the integer graph (the IR): save / load"),
    "IntegerLayer": ("tinyopt.integer.graph:IntegerLayer", "one node of an integer graph"),
    "GraphFileError": ("tinyopt.integer.graph:GraphFileError",
                       "an integer-graph file that cannot be read"),
    "simulate": ("tinyopt.integer.sim:run", "run an integer graph bit-exactly (the simulator)"),
    "simulate_tflite": ("tinyopt.integer.sim:run_tflite",
                        "run a full-int8 .tflite bit-exactly as LiteRT or TFLite Micro computes"),
    "graph_from_tflite": ("tinyopt.integer.from_litert:graph_from_tflite",
                          "full-int8 .tflite -> integer graph"),
    # deploy: C, host, Cortex-M7
    "export_c": ("tinyopt.deploy.codegen:export_c",
                 "integer graph -> the model's C, its kernels and harnesses in one folder"),
    "deploy_mcu": ("tinyopt.deploy.mcu:deploy",
                   "export, check on the host and a Cortex-M7 under QEMU, measure flash, RAM, "
                   "instructions"),
    "BuildError": ("tinyopt.deploy.mcu:BuildError",
                   "the C compiler or linker failed (its output in the message)"),
    "mcu_toolchain": ("tinyopt.deploy.mcu:toolchain",
                      "`(available, reason)`: are the ARM toolchain and QEMU installed"),
    # pipeline: chains across the stages
    "run_sequence": ("tinyopt.pipeline.sequence:run",
                     "run one chain such as `prune>qat>int8`, every step measured"),
    "run_sequences": ("tinyopt.pipeline.sequence:run_many",
                      "validate every chain, then run them with a shared cache: one table"),
    "validate_sequence": ("tinyopt.pipeline.grammar:validate",
                          "check a chain before any training"),
    "recommend": ("tinyopt.pipeline.sequence:recommend",
                  "the smallest / most accurate / fastest variant within a tolerance, or for a "
                  "device"),
}


def target(name: str) -> tuple[str, str]:
    """The module and attribute a public name stands for.

    Arguments:
        name: a public name, a key of :data:`PUBLIC`.

    Returns:
        ``(module, attribute)``, e.g. ``("tinyopt.integer.sim", "run")``.

    Raises:
        AttributeError: ``name`` is not public (the message lists close public names).
    """
    if name not in PUBLIC:
        import difflib
        close = difflib.get_close_matches(name, PUBLIC, n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise AttributeError(f"tinyopt has no public name {name!r}{hint} The public names are in "
                             f"tinyopt.api.PUBLIC (README.md, \"Public API\").")
    module, attribute = PUBLIC[name][0].split(":")
    return module, attribute


def resolve(name: str):
    """The object a public name stands for, importing its stage module (only that one).

    Arguments:
        name: a public name, a key of :data:`PUBLIC`.

    Returns:
        the function, class or constant itself (not a wrapper).

    Raises:
        AttributeError: ``name`` is not public.
    """
    module, attribute = target(name)
    return getattr(importlib.import_module(module), attribute)


def markdown_table() -> str:
    """README.md's "Public API" table: one row per public name, in :data:`PUBLIC`'s order.

    Returns:
        the table as Markdown lines joined by newlines (no trailing newline).
    """
    lines = ["| name | what it does | home |", "| --- | --- | --- |"]
    for name, (where, what) in PUBLIC.items():
        module, attribute = where.split(":")
        home = f"{module.removeprefix('tinyopt.')}.{attribute}"
        lines.append(f"| `tinyopt.{name}` | {what} | `{home}` |")
    return "\n".join(lines)

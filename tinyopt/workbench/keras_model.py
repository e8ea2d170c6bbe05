"""A float Keras model file in the firmware commands (``tinyopt analyze | validate | generate``):
loaded, checked (every unsupported layer listed at once), given a bit policy and lowered to the
IntegerGraph the C export runs.

- :func:`is_keras_path`: ``.h5`` / ``.hdf5`` / ``.keras`` files and SavedModel folders;
- :func:`load`: ``tf_keras.models.load_model(path, compile=False)``; a file that is not a
  model is refused naming it;
- :func:`unsupported_layers`: every layer the sub-byte flow refuses, by type and by what a
  later stage refuses (:func:`tinyopt.mixed.dag.later_stage_problem`), so a user sees all of
  them at once (:func:`tinyopt.mixed.dag.blocks` stops at the first); structural problems the
  type check cannot see (a ReLU after a pool, a shared layer) still come from ``blocks``;
- :func:`policy_for`: ``w8a8`` (uniform 8-bit) or ``mixed`` (the memory-driven rule,
  :func:`tinyopt.memory_driven`, under ``--flash`` / ``--ram``);
- :func:`to_graph`: post-training quantization (:func:`tinyopt.quantize_ptq`) on
  calibration data, then :func:`tinyopt.to_integer_graph`.

The integer graph computes CMix-NN's arithmetic (floor rounding): the C is held to it bit for
bit. Accuracy is another matter: random calibration data (when no ``--calibration`` is given)
makes a graph whose numbers run and check, not one to deploy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

KERAS_SUFFIXES = (".h5", ".hdf5", ".keras")
BITS = ("w8a8", "mixed")


def is_keras_path(path) -> bool:
    """A Keras file suffix, or a folder (a SavedModel)."""
    p = Path(path)
    return p.suffix.lower() in KERAS_SUFFIXES or p.is_dir()


def load(path):
    """The ``tf_keras`` model in ``path`` (uncompiled).

    Raises:
        ValueError: no such file, a folder without ``saved_model.pb``, or a file Keras cannot
            read as a model (the reason given).
    """
    p = Path(path)
    if not p.exists():
        raise ValueError(f"{path}: no such file or folder")
    if p.is_dir() and not (p / "saved_model.pb").is_file():
        raise ValueError(f"{path} is a folder without saved_model.pb: not a SavedModel; give a "
                         ".h5 / .keras file, a SavedModel folder or a full-int8 .tflite")
    import tinyopt  # noqa: F401  (Keras 2 before TensorFlow loads)
    import tf_keras as keras
    from tinyopt.mixed import layers  # noqa: F401  (registers the fake-quant layers)
    try:
        model = keras.models.load_model(p, compile=False)
    except (OSError, ValueError, TypeError, KeyError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"{path} is not a Keras model tf_keras can load ({first}); give a "
                         ".h5 / .keras file or a SavedModel folder saved from tf_keras, or a "
                         "full-int8 .tflite") from None
    if not isinstance(model, keras.Model):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a Keras model")
    return model


def unsupported_layers(model) -> list[str]:
    """Every layer of ``model`` the sub-byte flow cannot take, one message each (empty: none
    found by type; :func:`tinyopt.mixed.dag.blocks` may still refuse the wiring)."""
    import tf_keras as keras

    from tinyopt.integer import ops
    from tinyopt.mixed import dag
    dag._load_keras()
    try:  # the handler table's own reader: what it takes is supported, whatever the scan says
        dag.blocks(model)
        return []
    except ValueError:
        pass
    # it refused: list every layer a type scan finds unsupported (the reader stops at the first)
    L = keras.layers
    plain = (L.InputLayer, L.BatchNormalization, L.Add, L.Concatenate, L.Dropout,
             L.MaxPooling2D, L.AveragePooling2D, L.GlobalAveragePooling2D, L.GlobalAveragePooling1D,
             L.ZeroPadding2D, L.UpSampling2D, L.Multiply, L.Conv2DTranspose, L.Flatten, L.Reshape)
    readers: dict[str, list] = {}
    for layer in model.layers:
        if not isinstance(layer, L.InputLayer):
            for src in dag._inbound(layer):
                readers.setdefault(src, []).append(layer)

    def only_reader(name):
        found = readers.get(name, [])
        return found[0] if len(found) == 1 else None
    in_pattern: set[str] = set()
    for layer in model.layers:
        found = ops.registry.match_keras(layer, only_reader)
        if found is not None:
            in_pattern.update(found[1])
    problems = []
    for layer in model.layers:
        if layer.name in in_pattern:
            continue
        kind = type(layer).__name__
        where = f"layer {layer.name!r} ({kind})"
        try:
            compute = dag._compute_config(layer)[0] is not None
        except ValueError as exc:  # a compute layer with an unsupported option
            problems.append(str(exc).split(". Supported:")[0])
            continue
        ok = (compute or type(layer) in plain or dag._relu(layer) is not None
              or (kind == "TFOpLambda" and getattr(layer, "symbol", "")
                  in dag._OP_ADD + dag._OP_CONCAT + ("math.multiply", "__operators__.mul")))
        if not ok:
            hint = dag._HINTS.get(kind, "")
            problems.append(f"{where}: not supported" + (f" ({hint})" if hint else ""))
            continue
        why = dag.later_stage_problem(layer)
        if why is not None:
            problems.append(f"{where}: {why}")
    return problems


def check(model, path) -> None:
    """Refuse ``model`` listing every unsupported layer, then as :func:`tinyopt.mixed.dag.blocks`.

    Raises:
        ValueError: naming the file, each layer and the supported set.
    """
    from tinyopt.mixed import dag
    problems = unsupported_layers(model)
    if problems:
        raise ValueError(f"{path}: {len(problems)} layer(s) the sub-byte flow cannot take: "
                         + "; ".join(problems) + f". Supported: {dag.SUPPORTED} "
                         "(tinyopt supported-ops)")
    try:
        dag.blocks(model)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def policy_for(model, bits: str, flash: int | None = None, ram: int | None = None):
    """The bit policy: "w8a8" (uniform 8-bit, per layer) or "mixed" (the memory-driven rule
    under the budgets).

    Raises:
        ValueError: an unknown ``bits``; "mixed" without both budgets.
        tinyopt.BudgetError: no assignment of 8/4/2 bits meets the budgets.
    """
    from tinyopt.mixed.policy import Policy
    from tinyopt.mixed.search import memory_driven
    if bits not in BITS:
        raise ValueError(f"--bits must be one of {BITS}, got {bits!r}")
    if bits == "w8a8":
        return Policy.uniform(model, 8, 8, "PL")
    if flash is None or ram is None:
        raise ValueError("--bits mixed needs both --flash and --ram (the budgets the "
                         "memory-driven rule cuts bits to meet), e.g. --flash 64k --ram 16k")
    return memory_driven(model, flash, ram)


def calibration_data(model, path=None, images: int = 32, seed: int = 0) -> tuple[np.ndarray, str]:
    """Float calibration images: ``path`` (a ``.npy`` / ``.npz`` of model-ready floats
    [N, *input shape]) or seeded uniform random values in [0, 1) (said so).

    Returns:
        (array, a description for the output).

    Raises:
        ValueError: a file of the wrong shape or dtype (expected vs got).
    """
    shape = tuple(int(d) for d in model.input_shape[1:])
    if path is None:
        x = np.random.default_rng(seed).random((images, *shape), dtype=np.float32)
        return x, (f"RANDOM calibration: {images} uniform [0, 1) inputs, seed {seed} (give "
                   "--calibration FILE.npy with real model-ready inputs to deploy)")
    from tinyopt.workbench.validate import read_data
    x = np.asarray(read_data(path))
    if x.shape == shape:
        x = x[None]
    if x.shape[1:] != shape or len(x) == 0:
        raise ValueError(f"--calibration {path} has shape {x.shape}; the model's input expects "
                         f"(N, {', '.join(map(str, shape))}) with N >= 1")
    if not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
        what = ("NaN/Inf values" if np.issubdtype(x.dtype, np.floating)
                else f"dtype {x.dtype}")
        raise ValueError(f"--calibration {path} has {what}; give finite float model-ready "
                         "inputs (scaled as the model was trained)")
    return x.astype(np.float32), f"calibrated on {len(x)} inputs from {path}"


def to_graph(model, policy, calibration: np.ndarray, name: str):
    """PTQ to ``policy`` on ``calibration``, lowered to the IntegerGraph (CMix-NN floor)."""
    from tinyopt.mixed import lower, ptq
    qmodel = ptq.quantize_mixed(model, policy, calibration)
    return lower.convert(qmodel, name=name)


def memory_rows(model, policy) -> tuple[list[dict], dict]:
    """The memory model's per-layer table of ``model`` under ``policy`` and its totals
    (:func:`tinyopt.memory_report`)."""
    from tinyopt.mixed import memory
    df = memory.report(model, policy)
    keep = ["layer", "kind", "weight_bits", "input_bits", "output_bits", "fold", "macs",
            "weight_bytes", "extra_bytes", "flash_bytes", "ram_bytes"]
    rows = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
            for r in df[keep].to_dict("records")]
    totals = {"flash_bytes": int(df["flash_bytes"].sum()),
              "peak_ram_bytes": int(df.attrs["peak_ram_bytes"]),
              "peak_step": str(df.attrs["peak_step"]), "macs": int(df["macs"].sum())}
    return rows, totals

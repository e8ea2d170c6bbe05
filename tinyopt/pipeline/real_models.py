"""A trained full-int8 ``.tflite`` from outside tinyopt, through the integer path: what it
contains, whether tinyopt computes what the interpreters compute, and what it costs deployed.

Notebook 07 runs this on the four MLPerf Tiny reference models; it works for any full-int8
flatbuffer with one int8 input that :func:`tinyopt.sim.graph_from_tflite` imports.

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

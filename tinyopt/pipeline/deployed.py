"""Rows of the integer and deployment steps of a sequence (``int``, ``mcu``), measured the same way
whichever path made the integer graph (a LiteRT int8 flatbuffer or the sub-byte chain).

- ``int``: the integer graph's top-1 accuracy in the bit-exact simulator (:func:`tinyopt.simulate`)
  on the full test set (``accuracy_source = "integer_sim"``).
- ``mcu``: the graph exported as C, checked bit-exact against the simulator on the host and on the
  emulated Cortex-M7, and measured from the built ELF: ``weights_params_bytes`` (packed weights +
  bias / requantization arrays), ``code_bytes`` (.text + .ARM.exidx), ``elf_flash_bytes`` (the
  whole flash image), ``elf_ram_bytes`` (.data + .bss + peak stack), ``arena_bytes`` and
  ``mcu_instructions`` (mean per inference; min/max beside it).
"""

from __future__ import annotations

import numpy as np

# The deployment columns every mcu row carries, in this order (tables select them by name).
MCU_COLUMNS = ("weights_params_bytes", "code_bytes", "elf_flash_bytes", "elf_ram_bytes",
               "arena_bytes", "mcu_instructions", "mcu_instructions_min",
               "mcu_instructions_max", "mcu_images", "deploy_exact", "mcu_skipped")


def litert_graph(tflite_bytes: bytes, x: np.ndarray):
    """The integer graph of an int8 LiteRT flatbuffer and ``x`` as its integer input codes.

    Returns:
        ``(graph, codes)``.

    Raises:
        ValueError: a flatbuffer the integer graph cannot represent (float tensors), from
            :func:`tinyopt.integer.from_litert.graph_from_tflite`.
    """
    from tinyopt.integer.from_litert import graph_from_tflite
    from tinyopt.litert.measure import quantize_input
    graph = graph_from_tflite(tflite_bytes)
    detail = {"dtype": np.int8, "quantization": (graph.input_scale, graph.input_zero_point),
              "name": "input"}
    return graph, quantize_input(x, detail)


def integer_accuracy(graph, codes: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy of ``graph`` in the bit-exact simulator on integer inputs ``codes``."""
    from tinyopt.integer import sim
    logits = np.asarray(sim.run(graph, codes))
    return float(np.mean(np.argmax(logits.reshape(len(y), -1), 1) == np.asarray(y)))


def graph_bytes(graph) -> int:
    """Packed weight bytes of the integer graph (what the C export stores as weights)."""
    return int(sum(lay.weights.nbytes for lay in graph.layers if lay.weights is not None))


def mcu_row(graph, codes: np.ndarray, build_dir, name: str, host_images: int = 20,
            mcu_images: int = 5, run_mcu: bool = True) -> dict:
    """Deploy ``graph`` and return the deployment columns (:data:`MCU_COLUMNS`).

    Arguments:
        graph: the IntegerGraph.
        codes: integer input codes (at least ``max(host_images, mcu_images)`` of them).
        build_dir: folder for the C sources and builds (``<build_dir>/<name>``).
        name: a file-system-safe name for this variant.
        host_images, mcu_images: images for the bit-exactness checks.
        run_mcu: False (or no toolchain): only the host check; the ELF columns are None and
            ``mcu_skipped`` says why.

    Returns:
        dict of the deployment columns.

    Raises:
        RuntimeError: the C output is not bit-exact with the simulator (a bug, not a number).
    """
    from tinyopt.pipeline.subbyte import deploy_graph
    n = max(host_images, mcu_images if run_mcu else 0)
    res = deploy_graph(graph, codes[:n], build_dir, name=name, host_images=host_images,
                       mcu_images=mcu_images, run_mcu=run_mcu)
    s = res["summary"]
    row = dict.fromkeys(MCU_COLUMNS)
    row.update(weights_params_bytes=s["params_flash_bytes"], deploy_exact=s["deploy_exact"],
               arena_bytes=s["arena_bytes"], mcu_skipped=s.get("mcu_skipped"))
    if "text" in s:
        row.update(code_bytes=s["code_bytes"], elf_flash_bytes=int(s["flash_measured"]),
                   elf_ram_bytes=int(s["ram_measured"]),
                   mcu_instructions=float(s["insns_per_image_mean"]),
                   mcu_instructions_min=float(s["insns_per_image_min"]),
                   mcu_instructions_max=float(s["insns_per_image_max"]),
                   mcu_images=int(s["mcu_images"]))
    return row


def safe_name(variant: str) -> str:
    """A variant's text as a folder name (``mnist_prune>mixed(flash=16k,...)`` ->
    ``mnist_prune_mixed_flash_16k_..._<hash>``): :func:`tinyopt.names.path_slug`, the one home
    of safe names."""
    from tinyopt.names import path_slug
    return path_slug(variant, "variant")

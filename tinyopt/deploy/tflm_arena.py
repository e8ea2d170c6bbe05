"""What TensorFlow Lite Micro plans for the same model: the tensor arena of the ``tflite-micro``
package's Python interpreter, to put beside the arena of our export
(:func:`tinyopt.deploy.codegen.export_c`).

The interpreter allocates its arena with TFLM's ``RecordingMicroAllocator`` and reports it
(``Interpreter.print_allocations``, written to the process's stderr by C++ code, hence a child
process here):

- ``head``: the non-persistent part, planned by TFLM's memory planner (the greedy planner by
  default) over tensor lifetimes: every activation tensor, the model input and output included,
  plus the scratch buffers the kernels request. This is the number to compare with our arena
  (``activation_bytes``).
- ``tail``: the persistent part (tensor structs, quantization parameters, node and registration
  structs, kernels' persistent buffers): TFLM's runtime bookkeeping, which our export keeps in
  flash as const descriptors instead.
- ``total`` = head + tail: what ``tensor_arena`` must hold on the device.

The package's interpreter uses TFLM's reference kernels. A CMSIS-NN build requests extra scratch
buffers (im2col for convolutions, for example) in the head, so its arena is at least as large:
the head reported here is a lower bound for a CMSIS-NN deployment.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from pathlib import Path

_CHILD = """
import sys
import numpy as np
from tflite_micro.python.tflite_micro import runtime
it = runtime.Interpreter.from_bytes(open(sys.argv[1], "rb").read())
d = it.get_input_details(0)
it.set_input(np.zeros(d["shape"], d["dtype"]), 0)
it.invoke()
it.print_allocations()
"""
_FIELDS = {"total": "total", "head": "head", "tail": "tail"}


def tflm_arena(model, timeout: float = 600) -> dict:
    """TFLM's tensor arena for a ``.tflite`` model, from the tflite-micro interpreter.

    Arguments:
        model: the flatbuffer (bytes) or a path to a ``.tflite`` file.
        timeout: seconds allowed for the child process.

    Returns:
        dict with ``total_bytes`` (head + tail: the ``tensor_arena`` TFLM needs),
        ``activation_bytes`` (the head: planned activations and kernel scratch, the figure to
        compare with our arena) and ``persistent_bytes`` (the tail), all ints.

    Raises:
        ImportError: the ``tflite-micro`` package is not installed (pip install tflite-micro).
        RuntimeError: the interpreter failed on the model (its message included) or printed no
            allocation report.
    """
    try:
        import tflite_micro  # noqa: F401  (checked here, used in the child process)
    except ImportError as exc:
        raise ImportError("tflm_arena needs the tflite-micro package (pip install "
                          "tflite-micro)") from exc
    with tempfile.TemporaryDirectory() as tmp:
        if isinstance(model, (bytes, bytearray)):
            path = Path(tmp) / "model.tflite"
            path.write_bytes(bytes(model))
        else:
            path = Path(model)
            if not path.is_file():
                raise FileNotFoundError(f"no .tflite file at {path}")
        proc = subprocess.run([sys.executable, "-c", _CHILD, str(path)], capture_output=True,
                              text=True, timeout=timeout, check=False)
    text = proc.stdout + proc.stderr
    found = {k: re.search(rf"Arena allocation {k} (\d+) bytes", text) for k in _FIELDS}
    if proc.returncode != 0 or not all(found.values()):
        raise RuntimeError(f"the tflite-micro interpreter gave no arena report for {path.name} "
                           f"(exit {proc.returncode}): {text[-1500:]}")
    head, tail, total = (int(found[k].group(1)) for k in ("head", "tail", "total"))
    if head + tail != total:
        raise RuntimeError(f"TFLM's report is inconsistent: head {head} + tail {tail} != total "
                           f"{total}")
    return {"total_bytes": total, "activation_bytes": head, "persistent_bytes": tail}

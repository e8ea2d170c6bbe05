"""What the interpreters compute, tensor by tensor: the references the integer simulator is held
to.

- :func:`litert_reference`: the LiteRT interpreter with its reference kernels (``BUILTIN_REF``,
  one thread): what ``tinyopt.simulate_tflite`` reproduces with ``flavour="litert"``.
- :func:`tflm_reference`: the ``tflite-micro`` package's Python interpreter (TensorFlow Lite
  Micro's kernels, the arithmetic of a microcontroller deployment with CMSIS-NN): what
  ``flavour="tflm"`` reproduces. It runs one image per ``invoke``.

Both take int8 input codes and return int8 arrays keyed by tensor name. No TensorFlow.
"""

from __future__ import annotations

import numpy as np


def _codes(x) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.int8 or x.ndim < 2 or len(x) == 0:
        raise ValueError(f"x must be a non-empty batch of int8 input codes [N, ...], got "
                         f"{x.dtype} {x.shape}")
    return x


def litert_reference(tflite_bytes: bytes, x, tensors=None, batch_size: int = 250) -> dict:
    """Every int8 tensor (or those named in ``tensors``) of LiteRT's reference kernels on ``x``.

    Arguments:
        tflite_bytes: a full-int8 flatbuffer with one int8 input.
        x: int8 input codes [N, *input shape].
        tensors: tensor names to keep (default: every int8 tensor).
        batch_size: images per ``invoke`` (the batch dimension is resized); a model converted
            for a fixed batch of one (no -1 in its input's shape signature) runs one image per
            ``invoke`` whatever this says.

    Returns:
        {tensor name: int8 array [N, ...]}.

    Raises:
        ValueError: ``x`` is not a batch of int8 codes; a requested tensor does not exist.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    x = _codes(x)
    it = Interpreter(model_content=tflite_bytes, num_threads=1,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                     experimental_preserve_all_tensors=True)
    inp = it.get_input_details()[0]
    if int(inp.get("shape_signature", inp["shape"])[0]) != -1:
        batch_size = 1  # a fixed batch: its folded shapes do not resize
    chunks: dict = {}
    for i in range(0, len(x), batch_size):
        part = x[i:i + batch_size]
        it.resize_tensor_input(inp["index"], [len(part), *inp["shape"][1:]])
        it.allocate_tensors()
        it.set_tensor(inp["index"], part)
        it.invoke()
        details = [d for d in it.get_tensor_details() if d["dtype"] == np.int8
                   and (tensors is None or d["name"] in tensors)]
        for d in details:
            chunks.setdefault(d["name"], []).append(it.get_tensor(d["index"]).copy())
    _all_found(chunks, tensors)
    return {k: np.concatenate(v) for k, v in chunks.items()}


def tflm_reference(tflite_bytes: bytes, x, tensors=None) -> dict:
    """Every operator output (or those named in ``tensors``) of the TFLite Micro interpreter.

    Arguments and Returns: as :func:`litert_reference` (one image per ``invoke``).

    Raises:
        ImportError: the ``tflite-micro`` package is missing (``pip install tflite-micro``).
        ValueError: as :func:`litert_reference`.
    """
    from tflite_micro.python.tflite_micro import runtime

    from tinyopt.integer.tflite_ctx import TFLiteModel
    x = _codes(x)
    it = runtime.Interpreter.from_bytes(
        tflite_bytes, intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    m = TFLiteModel(tflite_bytes)
    index = {m.name(i): int(i) for op in m.sub.operators for i in op.outputs}
    if tensors is not None:
        index = {k: v for k, v in index.items() if k in tensors}
    out: dict = {k: [] for k in index}
    for img in x:
        it.set_input(img[None], 0)
        it.invoke()
        for k, i in index.items():
            out[k].append(np.asarray(it.GetTensor(i, 0)["tensor_data"]).reshape(-1))
    _all_found(out, tensors)
    return {k: np.stack(v) for k, v in out.items()}


def _all_found(found: dict, tensors) -> None:
    missing = sorted(set(tensors or ()) - set(found))
    if missing:
        raise ValueError(f"no int8 tensor named {missing} in the model")

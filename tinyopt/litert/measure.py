"""Honest measurement of LiteRT models: full-test-set accuracy, warm repeated latency, real sizes.

Conventions (see the README's "How we measure"):

- Accuracy: top-1 over every image given (the full 10k test set in the notebooks), through the
  LiteRT interpreter, batched when the model's batch dimension is dynamic. Quantized inputs use the
  input tensor's own scale and zero point.
- Latency: ``invoke()`` only, one image, ``warmup`` untimed calls then ``runs`` timed ones with
  ``time.perf_counter_ns``; median, p10, p90 and mean in ms; one thread by default (MCU-like).
- Interpreter kernels: ``resolver="builtin"`` (TFLite's builtin kernels, no XNNPACK delegate) by
  default, so that every variant runs the same kind of kernels an MCU port would; "auto" gives the
  interpreter's default (XNNPACK where it applies), "reference" the slow reference kernels.
- Size: the flatbuffer's bytes and its ``gzip -9`` bytes (a pruned model is smaller only after
  compression; we report both and claim nothing the artifact does not show).
"""

from __future__ import annotations

import gzip
import os
import platform
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from tinyopt.integer.arith import quantize_real

RESOLVERS = {
    "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    "auto": OpResolverType.AUTO,
    "reference": OpResolverType.BUILTIN_REF,
}

ROW_COLUMNS = ["dataset", "variant", "accuracy", "size_bytes", "size_gzip_bytes",
               "latency_ms_median", "latency_ms_p10", "latency_ms_p90", "params", "macs"]


def interpreter(tflite_bytes: bytes, threads: int = 1, resolver: str = "builtin") -> Interpreter:
    """A LiteRT interpreter for the flatbuffer (tensors not yet allocated)."""
    if resolver not in RESOLVERS:
        raise ValueError(f"unknown resolver {resolver!r}; choose one of {list(RESOLVERS)}")
    return Interpreter(model_content=bytes(tflite_bytes), num_threads=threads,
                       experimental_op_resolver_type=RESOLVERS[resolver])


def quantize_input(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float model-ready images -> the input tensor's dtype, with its own scale and zero point."""
    dtype = detail["dtype"]
    if np.issubdtype(dtype, np.floating):
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    if scale == 0:
        raise ValueError(f"input tensor {detail['name']} is {np.dtype(dtype).name} but has no "
                         "quantization scale; cannot map float images onto it")
    return quantize_real(x, scale, zero, dtype)


def predict(tflite_bytes: bytes, x: np.ndarray, batch_size: int = 1000, threads: int = 1,
            resolver: str = "builtin") -> np.ndarray:
    """Raw output tensor values (in the output tensor's dtype) for every image in ``x``."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"images are {x.dtype}; pass model-ready floats from "
                        "tinyopt.preprocess_images")
    interp = interpreter(tflite_bytes, threads, resolver)
    inp = interp.get_input_details()[0]
    want = tuple(int(d) for d in inp["shape"][1:])
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        raise ValueError(f"images have shape {list(x.shape)} but the model's input "
                         f"{inp['name']!r} takes [N, {', '.join(map(str, want))}]; pass "
                         "model-ready images (tinyopt.preprocess_images adds the channel axis)")
    if not np.isfinite(x).all():
        raise ValueError(f"images hold {int(np.isnan(x).sum())} NaN and "
                         f"{int(np.isinf(x).sum())} Inf values; every value must be finite")
    dynamic = len(inp.get("shape_signature", [])) > 0 and inp["shape_signature"][0] == -1
    if not dynamic:
        batch_size = int(inp["shape"][0])
    outputs, current = [], None
    for start in range(0, len(x), batch_size):
        chunk = quantize_input(x[start:start + batch_size], inp)
        if dynamic and chunk.shape[0] != current:
            interp.resize_tensor_input(inp["index"], list(chunk.shape))
            interp.allocate_tensors()
            current = chunk.shape[0]
        elif current is None:
            interp.allocate_tensors()
            current = batch_size
        if chunk.shape[0] != current:  # static batch: pad the last chunk
            pad = np.zeros((current - chunk.shape[0], *chunk.shape[1:]), chunk.dtype)
            n = chunk.shape[0]
            chunk = np.concatenate([chunk, pad])
        else:
            n = chunk.shape[0]
        interp.set_tensor(inp["index"], chunk)
        interp.invoke()
        out = interp.get_output_details()[0]
        outputs.append(interp.get_tensor(out["index"])[:n].copy())
    return np.concatenate(outputs)


def accuracy(tflite_bytes: bytes, x: np.ndarray, y: np.ndarray, batch_size: int = 1000,
             threads: int = 1, resolver: str = "builtin") -> float:
    """Top-1 accuracy over every image of ``x`` (argmax of the raw outputs: dequantization
    by a positive scale does not change it)."""
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    out = predict(tflite_bytes, x, batch_size, threads, resolver)
    return float(np.mean(np.argmax(out.reshape(len(out), -1), axis=1) == np.asarray(y)))


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def latency(tflite_bytes: bytes, runs: int = 200, warmup: int = 20, threads: int = 1,
            x: np.ndarray | None = None, resolver: str = "builtin") -> dict:
    """Per-image ``invoke()`` latency of a fresh interpreter, warm.

    Arguments:
        runs: timed invocations (each is one sample of the distribution).
        warmup: untimed invocations first (allocations, caches, lazy kernel setup).
        threads: interpreter threads (1 = MCU-like).
        x: one model-ready image to feed (default: zeros of the input shape).

    Returns:
        dict with latency_ms_median, latency_ms_p10, latency_ms_p90, latency_ms_mean, runs,
        warmup, threads, resolver, cpu, load_avg_1m (the machine's load when measured).
    """
    if runs < 1 or warmup < 0:
        raise ValueError(f"runs must be >= 1 and warmup >= 0, got {runs}, {warmup}")
    interp = interpreter(tflite_bytes, threads, resolver)
    inp = interp.get_input_details()[0]
    shape = [1, *inp["shape"][1:]]
    interp.resize_tensor_input(inp["index"], shape)
    interp.allocate_tensors()
    image = np.zeros(shape, np.float32) if x is None else np.asarray(x, np.float32).reshape(shape)
    interp.set_tensor(inp["index"], quantize_input(image, inp))
    for _ in range(warmup):
        interp.invoke()
    samples = np.empty(runs, dtype=np.float64)
    for i in range(runs):
        t0 = time.perf_counter_ns()
        interp.invoke()
        samples[i] = time.perf_counter_ns() - t0
    ms = samples / 1e6
    return {
        "latency_ms_median": float(np.median(ms)),
        "latency_ms_p10": float(np.percentile(ms, 10)),
        "latency_ms_p90": float(np.percentile(ms, 90)),
        "latency_ms_mean": float(ms.mean()),
        "runs": runs, "warmup": warmup, "threads": threads, "resolver": resolver,
        "cpu": cpu_model(),
        # Other work on the machine inflates latencies: keep the context with the numbers.
        "load_avg_1m": os.getloadavg()[0],
    }


def size(tflite_bytes: bytes) -> dict:
    """Flatbuffer bytes and ``gzip -9`` bytes (fixed mtime, so reproducible)."""
    b = bytes(tflite_bytes)
    return {"size_bytes": len(b), "size_gzip_bytes": len(gzip.compress(b, 9, mtime=0))}


def io_dtypes(tflite_bytes: bytes) -> tuple[str, str]:
    """The (input, output) tensor dtypes as the interpreter sees them, e.g. ('int8', 'int8')."""
    interp = interpreter(tflite_bytes)
    return (np.dtype(interp.get_input_details()[0]["dtype"]).name,
            np.dtype(interp.get_output_details()[0]["dtype"]).name)


def operators(tflite_bytes: bytes) -> list[str]:
    """The builtin operator names of the graph, in execution order."""
    interp = interpreter(tflite_bytes)
    return [op["op_name"] for op in interp._get_ops_details()]  # noqa: SLF001 (no public API)


# ----------------------------------------------------------------------- Keras-side counts

def _inner_layers(model):
    """Layers, looking through tfmot wrappers (prune / quantize) to the layer they wrap."""
    for layer in model.layers:
        yield getattr(layer, "layer", layer), layer


# Variables that are model parameters; wrapper bookkeeping (fake-quant ranges, pruning masks,
# step counters) is not. tfmot wrappers hold the kernel themselves, not in ``layer.layer``.
PARAMETER_NAMES = {"kernel", "bias", "depthwise_kernel", "pointwise_kernel", "gamma", "beta",
                   "moving_mean", "moving_variance", "embeddings"}


def params(model) -> dict:
    """Parameters per layer and in total: ``{"total": int, "per_layer": {name: int}}``.

    Counts the layer's own weights (kernel, bias, BN statistics), not wrapper bookkeeping such as
    pruning masks or quantizer ranges."""
    per_layer = {}
    for layer in model.layers:
        names = [w.name.split("/")[-1].split(":")[0] for w in layer.weights]
        per_layer[layer.name] = int(sum(np.prod(w.shape) for w, n in zip(layer.weights, names)
                                        if n in PARAMETER_NAMES))
    return {"total": sum(per_layer.values()), "per_layer": per_layer}


def macs(model) -> dict:
    """Multiply-accumulates per image, per layer and in total (conv, depthwise, separable, dense).

    ``{"total": int, "per_layer": {name: int}}``; layers without MACs are omitted."""
    from tinyopt.transforms.keras_graph import layer_macs
    per_layer = {}
    for inner, outer in _inner_layers(model):
        n = layer_macs(inner) if hasattr(inner, "output_shape") else 0
        if n:
            per_layer[outer.name] = int(n)
    return {"total": sum(per_layer.values()), "per_layer": per_layer}


def evaluate(tflite_bytes: bytes, x: np.ndarray, y: np.ndarray, *, dataset: str, variant: str,
             model=None, latency_runs: int = 200, latency_warmup: int = 20, threads: int = 1,
             resolver: str = "builtin", **extra) -> dict:
    """One tidy result row for a converted model.

    Arguments:
        tflite_bytes: the flatbuffer.
        x, y: model-ready test images and labels (all of them are used).
        dataset, variant: labels for the row.
        model: the Keras model it came from, for ``params`` and ``macs`` (None leaves them empty).
        latency_runs, latency_warmup, threads, resolver: see :func:`latency`.
        extra: further columns to append (e.g. sparsity, operator list).

    Returns:
        dict with ``ROW_COLUMNS`` first, then latency details and ``extra``.
    """
    lat = latency(tflite_bytes, latency_runs, latency_warmup, threads, x[:1], resolver)
    in_dtype, out_dtype = io_dtypes(tflite_bytes)
    row = {
        "dataset": dataset,
        "variant": variant,
        "accuracy": accuracy(tflite_bytes, x, y, threads=threads, resolver=resolver),
        **size(tflite_bytes),
        "latency_ms_median": lat["latency_ms_median"],
        "latency_ms_p10": lat["latency_ms_p10"],
        "latency_ms_p90": lat["latency_ms_p90"],
        "params": params(model)["total"] if model is not None else None,
        "macs": macs(model)["total"] if model is not None else None,
        "latency_ms_mean": lat["latency_ms_mean"],
        "latency_runs": lat["runs"],
        "threads": threads,
        "resolver": resolver,
        "input_dtype": in_dtype,
        "output_dtype": out_dtype,
        "test_images": int(len(x)),
        "cpu": lat["cpu"],
        "load_avg_1m": lat["load_avg_1m"],
    }
    row.update(extra)
    return row

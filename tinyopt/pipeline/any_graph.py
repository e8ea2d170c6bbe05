"""A float Keras network from outside tinyopt through the sub-byte path: PTQ to a policy,
integer lowering, the simulator against the fake-quant model, and the memory model against the
deployed C's arena.

The MLPerf Tiny Keras models (:mod:`tinyopt.front.zoo`) are the yardstick: ResNet-8 (residual
adds, a linear 1x1 skip convolution), DS-CNN (depthwise separable, dropout, average pooling),
the visual-wake-words MobileNet (softmax head) and the FC autoencoder (linear output).

- :func:`mlperf_inputs`: model-ready inputs for them without their datasets: Fashion-MNIST images
  brought to 32x32x3 (0..255, ResNet-8's input scale) and 96x96x3 ([0, 1], VWW); for the audio
  models, smooth random features spanning the input range of the reference int8 model;
- :func:`ptq_check`: policy -> PTQ -> :func:`tinyopt.icn.convert` -> :func:`tinyopt.mixed.verify
  .compare`, one row (top-1 agreement, per-layer LSB differences, memory model);
- :func:`memory_check`: the memory model's peak RAM against the arena of the deployed C
  (``overlap=False``: every tensor whole for its lifetime, the memory model's assumption; and the
  default plan with in-place and sliding writes, which needs less).
"""

from __future__ import annotations

import numpy as np

from tinyopt.front import zoo

# Real input ranges of the reference int8 models (their input quantization; checked by a test).
MLPERF_INPUT_RANGES = {"ic_resnet8": (0.0, 255.0), "vww_mobilenet": (0.0, 1.0),
                       "kws_dscnn": (-123.37, 25.73), "ad_fcae": (-84.85, 14.86)}


def load_keras(name: str):
    """The trained Keras model of an MLPerf Tiny benchmark (``tf_keras``, uncompiled)."""
    import tinyopt  # noqa: F401
    import tf_keras as keras
    return keras.models.load_model(zoo.mlperf_tiny_path(name, "keras"), compile=False)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    import tensorflow as tf
    rgb = np.repeat(images[..., None], 3, axis=-1).astype(np.float32)
    return tf.image.resize(rgb, (size, size), method="bilinear").numpy()


def mlperf_inputs(name: str, images: int, seed: int = 0, offset: int = 0) -> np.ndarray:
    """``images`` model-ready float inputs for the MLPerf Tiny Keras model ``name`` (module
    docstring). ``offset`` skips that many Fashion-MNIST test images (distinct calibration and
    evaluation sets).

    Raises:
        ValueError: an unknown name or ``images`` < 1.
    """
    if name not in MLPERF_INPUT_RANGES:
        raise ValueError(f"unknown MLPerf Tiny model {name!r}; choose one of "
                         f"{tuple(MLPERF_INPUT_RANGES)}")
    if int(images) < 1:
        raise ValueError(f"images must be >= 1, got {images}")
    lo, hi = MLPERF_INPUT_RANGES[name]
    if name in ("ic_resnet8", "vww_mobilenet"):
        from tinyopt.front import data
        (_, _), (x, _) = data.load("fashion_mnist")
        if offset + images > len(x):
            raise ValueError(f"offset + images = {offset + images} exceeds the {len(x)} "
                             "Fashion-MNIST test images")
        x = data.preprocess(x[offset:offset + images])[..., 0]  # [0, 1]
        size = 32 if name == "ic_resnet8" else 96
        return _resize(x, size) * hi
    import tensorflow as tf
    rng = np.random.default_rng(seed + offset)
    shape = (49, 10, 1) if name == "kws_dscnn" else (640,)
    noise = rng.normal(0.0, 1.0, (images, *shape)).astype(np.float32)
    if name == "kws_dscnn":  # smooth along time, as MFCC frames are
        noise = tf.nn.avg_pool2d(noise, (5, 1), 1, "SAME").numpy() * 2.0
    mid, half = (lo + hi) / 2, (hi - lo) / 2
    return np.clip(mid + noise * half / 3, lo, hi).astype(np.float32)


def ptq_check(model, name: str, policy, calibration: np.ndarray, x: np.ndarray,
              softmax: str = "int8") -> tuple[dict, object, object]:
    """PTQ ``model`` to ``policy`` on ``calibration``, lower it and compare the simulator with
    the fake-quant model on ``x``.

    Returns:
        (row, fake-quant model, integer graph); the row: model, policy, granularity, images,
        top1_agreement (and within one logit LSB), distinct_predictions, chained / isolated
        max LSB over layers (isolated: each layer fed the simulator's own input), the layer with
        the largest isolated difference, flash_bytes and peak_ram_bytes of the memory model.
    """
    from tinyopt.mixed import lower, memory, ptq, verify
    qmodel = ptq.quantize_mixed(model, policy, calibration, softmax=softmax)
    graph = lower.convert(qmodel, name=name)
    res = verify.compare(qmodel, graph, x)
    layers = res["layers"]
    worst = layers.loc[layers["isolated_max_lsb"].idxmax()]
    w, a = sorted(set(policy.weight_bits)), sorted(set(policy.act_bits))
    label = f"w{w[0]}a{a[0]}" if len(w) == len(a) == 1 else "mixed"
    row = {"model": name, "policy": label, "granularity": policy.granularity, "images": len(x),
           "top1_agreement": res["top1_agreement"],
           "top1_agreement_1lsb": res["top1_agreement_1lsb"],
           "distinct_predictions": int(len(np.unique(np.argmax(
               np.asarray(res["int_logits"]).reshape(len(x), -1), 1)))),
           "chained_max_lsb": float(layers["chained_max_lsb"].max()),
           "isolated_max_lsb": float(layers["isolated_max_lsb"].max()),
           "isolated_worst_layer": str(worst["layer"]),
           "isolated_frac_diff_max": float(layers["isolated_frac_diff"].max()),
           "flash_bytes": memory.flash_bytes(model, policy),
           "peak_ram_bytes": memory.peak_ram_bytes(model, policy, softmax)}
    return row, qmodel, graph


def memory_check(model, policy, graph, codes: np.ndarray, build_dir, run_mcu: bool = False,
                 softmax: str = "int8") -> dict:
    """The memory model's peak RAM against the deployed C (host build; QEMU with ``run_mcu``).

    Returns:
        One row: peak_ram_model, arena_live (``overlap=False`` plan, measured ``model_arena``
        symbol), arena_lower_bound (its largest live sum), arena_packed (the default plan with
        in-place, sliding and add-fused writes), host_images_exact of both builds, and
        ``model_equals_live_arena``.
    """
    from tinyopt.deploy import mcu
    from tinyopt.mixed import memory
    peak = memory.peak_ram_bytes(model, policy, softmax)
    live = mcu.deploy(graph, codes, build_dir, name=f"{graph.name}_live", run_mcu=run_mcu,
                      mcu_images=min(len(codes), 5), overlap=False, fuse_add=False)["summary"]
    packed = mcu.deploy(graph, codes, build_dir, name=f"{graph.name}_packed", run_mcu=run_mcu,
                        mcu_images=min(len(codes), 5))["summary"]
    return {"model": graph.name, "peak_ram_model": peak, "arena_live": live["arena_bytes"],
            "arena_lower_bound": live["arena_lower_bound"], "arena_packed": packed["arena_bytes"],
            "host_exact_live": f"{live['host_images_exact']}/{live['host_images']}",
            "host_exact_packed": f"{packed['host_images_exact']}/{packed['host_images']}",
            "mcu_exact_live": live.get("mcu_images_exact"),
            "model_equals_live_arena": peak == live["arena_bytes"]}

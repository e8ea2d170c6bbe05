"""Notebook 08 (``08_any_graph``) and ``benchmarks/bench_any_graph.py``: a float Keras network
from outside tinyopt through the sub-byte path: PTQ to a policy, integer lowering, the simulator
against the fake-quant model, and the memory model against the deployed C's arena.

The MLPerf Tiny Keras models (:mod:`tinyopt.front.zoo`) are the yardstick: ResNet-8 (residual
adds, a linear 1x1 skip convolution), DS-CNN (depthwise separable, dropout, average pooling),
the visual-wake-words MobileNet (softmax head) and the FC autoencoder (linear output).

- :func:`mlperf_inputs`: model-ready inputs for them without their datasets: Fashion-MNIST images
  brought to 32x32x3 (0..255, ResNet-8's input scale) and 96x96x3 ([0, 1], VWW); for the audio
  models, smooth random features spanning the input range of the reference int8 model;
- :func:`ptq_check`: policy -> PTQ -> :func:`tinyopt.to_integer_graph` ->
  :func:`tinyopt.compare_to_fake_quant`, one row (top-1 agreement, per-layer LSB differences,
  memory model);
- :func:`memory_check`: the memory model's peak RAM (the device's plan, kernel scratch
  included) against the arena of the deployed C with its default plan, which it must equal; the
  paper's accounting and the ``overlap=False`` plan (every tensor whole for its lifetime) beside
  them.
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
    """Grey [N, 28, 28] images in [0, 1] -> RGB [N, size, size, 3] (bilinear)."""
    from tinyopt.pipeline.subbyte import resize
    return resize(np.repeat(images[..., None], 3, axis=-1).astype(np.float32), size)


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
    rng = np.random.default_rng(seed + offset)
    if name == "kws_dscnn":
        # MFCC-like: coefficient 0 (log energy) large and negative, the others around 0 with
        # shrinking spread, smooth along time, a random loudness per clip. (Uniform noise over
        # the range makes the network answer "unknown" for 999 of 1,000 inputs; this gives 11
        # of the 12 classes.)
        import tensorflow as tf
        base = rng.normal(0.0, 1.0, (images, 49, 10, 1)).astype(np.float32)
        base = tf.nn.avg_pool2d(base, (7, 1), 1, "SAME").numpy() * 2.6
        loud = rng.uniform(0.2, 1.5, (images, 1, 1, 1))
        mean = np.concatenate([[-60.0], np.zeros(9)]).reshape(1, 1, 10, 1)
        spread = np.concatenate([[40.0], np.linspace(20.0, 5.0, 9)]).reshape(1, 1, 10, 1)
        return np.clip((mean + base * spread) * loud, lo, hi).astype(np.float32)
    noise = rng.normal(0.0, 1.0, (images, 640)).astype(np.float32)  # log-mel-like frames
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
                 softmax: str = "int8", arena_budget: int | None = None) -> dict:
    """The memory model's peak RAM against the deployed C (host build; QEMU with ``run_mcu``).

    Returns:
        One row: peak_ram_model (the device's plan, :func:`tinyopt.peak_ram_bytes`),
        peak_ram_paper (the paper's accounting), arena_packed (the default plan: in-place,
        sliding and add-fused writes, kernel scratch), arena_live (``overlap=False``: every
        tensor whole for its lifetime) and arena_lower_bound (its largest live sum),
        host_images_exact of both builds, and ``model_equals_deployed_arena``; with QEMU the
        instructions per inference of the live plan (``insns_per_inference``) and of the
        default plan (``insns_packed``). With ``arena_budget`` (bytes) a third build whose
        faster kernels may grow the arena up to it (:func:`tinyopt.export_c`):
        ``arena_budgeted``, ``host_exact_budgeted``, ``insns_budgeted``.
    """
    from tinyopt.deploy import mcu
    from tinyopt.mixed import memory
    from tinyopt.names import path_slug
    peak = memory.peak_ram_bytes(model, policy, softmax)
    folder = path_slug(graph.name, "graph name")  # the name comes from a user's file
    live = mcu.deploy(graph, codes, build_dir, name=f"{folder}_live", run_mcu=run_mcu,
                      mcu_images=min(len(codes), 5), overlap=False, fuse_add=False)["summary"]
    packed = mcu.deploy(graph, codes, build_dir, name=f"{folder}_packed", run_mcu=run_mcu,
                        mcu_images=min(len(codes), 5))["summary"]
    paper = memory.peak_ram_bytes(model, policy, softmax, accounting="paper")
    budgeted = {}
    if arena_budget is not None:
        b = mcu.deploy(graph, codes, build_dir, name=f"{folder}_budget", run_mcu=run_mcu,
                       mcu_images=min(len(codes), 5), arena_budget=arena_budget)["summary"]
        budgeted = {"arena_budget": arena_budget, "arena_budgeted": b["arena_bytes"],
                    "host_exact_budgeted": f"{b['host_images_exact']}/{b['host_images']}",
                    "mcu_exact_budgeted": b.get("mcu_images_exact"),
                    "insns_budgeted": b.get("insns_per_image_mean")}
    return {"model": graph.name, "peak_ram_model": peak, "peak_ram_paper": paper,
            "arena_live": live["arena_bytes"],
            "arena_lower_bound": live["arena_lower_bound"], "arena_packed": packed["arena_bytes"],
            "host_exact_live": f"{live['host_images_exact']}/{live['host_images']}",
            "host_exact_packed": f"{packed['host_images_exact']}/{packed['host_images']}",
            "mcu_exact_live": live.get("mcu_images_exact"),
            "model_equals_deployed_arena": peak == packed["arena_bytes"],
            "param_bytes_model": memory.deployed_param_bytes(model, policy, softmax),
            "param_bytes_c": live["param_bytes_c"], "flash_bytes_paper": memory.flash_bytes(
                model, policy), "insns_per_inference": live.get("insns_per_image_mean"),
            "insns_packed": packed.get("insns_per_image_mean"), **budgeted}


# ------------------------------------------------------------------ retraining the architectures

def mlperf_architecture(name: str, classes: int, seed: int = 0):
    """The architecture of an MLPerf Tiny Keras model, re-initialised (seeded), its softmax head
    replaced by ``classes`` logits (tinyopt trains on logits; the sub-byte flow then ends in int32
    logits, ``softmax="logits"``)."""
    import tf_keras as keras
    reference = load_keras(name)
    keras.utils.set_random_seed(seed)
    last = reference.layers[-1]

    def fresh(layer):
        config = layer.get_config()
        if layer is last:
            if not isinstance(layer, keras.layers.Dense):
                raise ValueError(f"{name}: the last layer {layer.name!r} is not a Dense")
            config.update(units=int(classes), activation="linear")
        return type(layer).from_config(config)

    model = keras.models.clone_model(reference, clone_function=fresh)
    model._name = name  # (clone_model names it "model")
    return model


def retrain_data(name: str, dataset: str, train_samples: int | None = None,
                 test_samples: int | None = None):
    """A local dataset brought to an MLPerf architecture's input: Fashion-MNIST / MNIST as
    32 x 32 x 3 for ResNet-8 (bilinear, grey replicated), 96 x 96 x 3 for the VWW MobileNet,
    49 x 10 x 1 for DS-CNN (the 28 x 28 image resized to the MFCC grid: an honest 2-D input,
    not speech). Values in [0, 1].

    Arguments:
        train_samples, test_samples: keep the first N images (None: all).

    Returns:
        A :class:`tinyopt.front.data.Dataset` with the resized images.
    """
    import tensorflow as tf
    from tinyopt.front import data as D
    ds = D.dataset(dataset, train_samples)
    if test_samples is not None:
        if int(test_samples) < 1:
            raise ValueError(f"test_samples must be >= 1 or None, got {test_samples}")
        ds = D.Dataset(ds.name, ds.x_train, ds.y_train, ds.x_test[:test_samples],
                       ds.y_test[:test_samples])

    def shape(x):
        if name in ("ic_resnet8", "vww_mobilenet"):
            return _resize(x[..., 0], 32 if name == "ic_resnet8" else 96)
        if name == "kws_dscnn":
            return tf.image.resize(x, (49, 10), method="bilinear").numpy()
        raise ValueError(f"no 2-D input mapping for {name!r}; use ic_resnet8, kws_dscnn or "
                         "vww_mobilenet")

    return D.Dataset(ds.name, shape(ds.x_train), ds.y_train, shape(ds.x_test), ds.y_test)


def qat_variant(model, policy, data, label: str, epochs: int, build_dir, learning_rate=1e-3,
                batch_size: int = 64, seed: int = 0, run_mcu: bool = False,
                mcu_images: int = 2, lr_schedule: str = "cosine") -> dict:
    """QAT ``model`` to ``policy`` (from its float weights, PTQ-initialised on 500 training
    images; Adam at ``learning_rate``, ``lr_schedule`` as in :func:`tinyopt.front.train.fit`),
    lower, measure integer-only accuracy on the whole test set, deploy.

    Returns:
        One row: variant, policy bits, fake-quant and integer accuracy, memory-model flash and
        peak RAM, the deployed arena (``model_arena`` of the built program), the deployed C's
        parameter bytes and bit-exactness, instructions per inference under QEMU when
        ``run_mcu``.
    """
    from tinyopt.deploy import mcu
    from tinyopt.front import train
    from tinyopt.mixed import lower, memory, ptq
    from tinyopt.pipeline.deployed import integer_accuracy
    from tinyopt.pipeline.subbyte import accuracy
    q = ptq.quantize_mixed(model, policy, data.x_train[:500], input_range=(0.0, 1.0),
                           softmax="logits", freeze_bn_after=1)
    train.fit(q, data, epochs=epochs, batch_size=batch_size, seed=seed,
              learning_rate=learning_rate, lr_schedule=lr_schedule, desc=f"QAT {label}")
    fake = accuracy((q, data.x_test), data.y_test)
    graph = lower.convert(q, name=f"{model.name}_{label}")
    acc = integer_accuracy(graph, graph.quantize_input(data.x_test), data.y_test)
    codes = graph.quantize_input(data.x_test[:max(20, mcu_images)])
    dep = mcu.deploy(graph, codes, build_dir, run_mcu=run_mcu, mcu_images=mcu_images)["summary"]
    row = {"variant": label, "weight_bits": "/".join(map(str, sorted(set(policy.weight_bits)))),
           "act_bits": "/".join(map(str, sorted(set(policy.act_bits)))),
           "fake_quant_accuracy": fake, "integer_accuracy": acc,
           "flash_bytes": memory.flash_bytes(model, policy),
           "peak_ram_bytes": memory.peak_ram_bytes(model, policy, "logits"),
           "arena_bytes": dep["arena_bytes"], "param_bytes_c": dep["param_bytes_c"],
           "host_exact": f"{dep['host_images_exact']}/{dep['host_images']}"}
    if run_mcu and "insns_per_image_mean" in dep:
        row["mcu_exact"] = f"{dep['mcu_images_exact']}/{dep['mcu_images']}"
        row["insns_per_inference"] = dep["insns_per_image_mean"]
    return row


def float_qat_mixed(model, data, qat_epochs: int, build_dir, memory_fraction: float = 0.5,
                    granularity: str = "PL", learning_rate: float = 1e-3,
                    lr_schedule: str = "cosine", searches=("memory",), more_fractions=(),
                    calibration_samples: int = 512, **options) -> list[dict]:
    """The rows of notebook 08 for a trained float ``model``: the float model as trained, the
    float reference (a copy trained ``qat_epochs`` more with the QAT learning rate and schedule:
    every variant then has the same training), w8a8 QAT and the mixed policies (QAT), all
    integer-only (:func:`qat_variant`, from ``model``'s weights; ``options`` go there).

    Mixed policies: for ``memory_fraction`` and each of ``more_fractions`` (budgets: that fraction
    of w8a8's flash and peak RAM, the deployed arena) and each of ``searches``: "memory" (the
    paper's rule, :func:`tinyopt.memory_driven`; variant "mixed" at ``memory_fraction``,
    "mixed@<f>" at the others) and "accuracy" (:func:`tinyopt.mixed.accuracy_search.
    accuracy_driven`, sensitivities measured on the first ``calibration_samples`` training
    images; variants "acc@<f>"). Every policy gets the same QAT recipe. A budget no policy can
    meet gives a row with its ``BudgetError`` in ``note`` and no accuracy.

    The default QAT recipe (Adam from 1e-3 decayed to 0 on a cosine) matters at sub-byte
    precision. DS-CNN on MNIST 49x10, PL mixed policy at half the w8a8 flash, 3 epochs each, the
    float reference trained the same way: cosine 1e-3 0.9828 vs float 0.9895 (-0.67 pt);
    constant 1e-3 0.9557 vs 0.9840 (-2.83 pt); constant 1e-4 (2 epochs) 0.9716 vs 0.9877
    (-1.61 pt).

    Returns:
        Rows "float32 (trained)", "float32", "w8a8", "mixed", then the other mixed variants.

    Raises:
        ValueError: an unknown search or a fraction outside (0, 1].
    """
    import tf_keras as keras
    from tinyopt.front import train
    from tinyopt.mixed import memory, search
    from tinyopt.mixed.accuracy_search import accuracy_driven
    from tinyopt.mixed.policy import Policy
    from tinyopt.pipeline.subbyte import accuracy
    unknown = sorted(set(searches) - {"memory", "accuracy"})
    if unknown or not searches:
        raise ValueError(f"searches must be a non-empty list of 'memory' / 'accuracy', got "
                         f"{list(searches)!r}")
    fractions = [memory_fraction] + [f for f in more_fractions if f != memory_fraction]
    bad = [f for f in fractions if not (isinstance(f, (int, float)) and 0 < f <= 1)]
    if bad:
        raise ValueError(f"memory fractions must be numbers in (0, 1], got {bad!r}")
    p8 = Policy.uniform(model, 8, 8, granularity)
    flash8, ram8 = memory.flash_bytes(model, p8), memory.peak_ram_bytes(model, p8, "logits")
    calibration = data.x_train[:calibration_samples]
    policies = []  # (variant, fraction, search, Policy or the BudgetError)
    for f in fractions:
        budgets = (int(flash8 * f), int(ram8 * f))
        for s in ("memory", "accuracy"):
            if s not in searches:
                continue
            label = ("mixed" if f == memory_fraction else f"mixed@{f:g}") if s == "memory" \
                else f"acc@{f:g}"
            try:
                if s == "memory":
                    p = search.memory_driven(model, *budgets, granularity, softmax="logits")
                else:
                    p = accuracy_driven(model, *budgets, calibration, granularity,
                                        softmax="logits")
            except search.BudgetError as e:
                p = e
            policies.append((label, f, s, budgets, p))

    ref = keras.models.clone_model(model)
    ref.set_weights(model.get_weights())
    train.fit(ref, data, epochs=qat_epochs, batch_size=options.get("batch_size", 64),
              seed=options.get("seed", 0), learning_rate=learning_rate, lr_schedule=lr_schedule,
              desc="float fine-tune")
    rows = [{"variant": name, "weight_bits": "32", "act_bits": "32",
             "fake_quant_accuracy": accuracy((m, data.x_test), data.y_test),
             "integer_accuracy": None,
             "flash_bytes": 4 * model.count_params(), "peak_ram_bytes": None}
            for name, m in (("float32 (trained)", model), ("float32", ref))]
    rows.append(qat_variant(model, p8, data, "w8a8", qat_epochs, build_dir,
                            learning_rate=learning_rate, lr_schedule=lr_schedule, **options))
    for label, f, s, (bf, br), p in policies:
        if isinstance(p, search.BudgetError):
            row = {"variant": label, "note": f"BudgetError: {p}"}
        else:
            row = qat_variant(model, p, data, label, qat_epochs, build_dir,
                              learning_rate=learning_rate, lr_schedule=lr_schedule, **options)
        row.update(search=s, memory_fraction=f, budget_flash=bf, budget_ram=br)
        rows.append(row)
    for r in rows:
        r["model"] = model.name
    return rows


def summary_table(table):
    """Per architecture: float32 accuracy, the mixed policy's integer accuracy (the rule at the
    first budget, variant "mixed"), its gap to float (points) and its flash and peak RAM as a
    fraction of w8a8's (notebook 08's acceptance: within 1 pt of float at about half the w8a8
    memory). NaN where the run has no "mixed" variant or it did not fit."""
    import pandas as pd
    nan = float("nan")
    out = []
    for arch, t in table.groupby("architecture", sort=False):
        by = {r["variant"]: r for _, r in t.iterrows()}
        f, w8 = by["float32"], by["w8a8"]
        mx = by.get("mixed")
        if mx is None or pd.isna(mx.get("integer_accuracy")):
            mx = pd.Series({"integer_accuracy": nan, "flash_bytes": nan, "peak_ram_bytes": nan,
                            "arena_bytes": nan})
        gap = 100 * (f["fake_quant_accuracy"] - mx["integer_accuracy"])
        out.append({"architecture": arch, "float32_accuracy": f["fake_quant_accuracy"],
                    "w8a8_integer_accuracy": w8["integer_accuracy"],
                    "mixed_integer_accuracy": mx["integer_accuracy"],
                    "mixed_gap_points": gap,
                    "mixed_flash_vs_w8a8": mx["flash_bytes"] / w8["flash_bytes"],
                    "mixed_ram_vs_w8a8": mx["peak_ram_bytes"] / w8["peak_ram_bytes"],
                    "w8a8_arena_bytes": w8["arena_bytes"], "mixed_arena_bytes": mx["arena_bytes"],
                    "within_1pt": bool(gap <= 1.0)})
    return pd.DataFrame(out)


def search_table(table):
    """The rule against the accuracy-aware search (issue 30), from notebook 08's rows of one or
    several runs (a sweep table: a ``seed`` or ``run`` column tells the runs apart): per
    architecture, budget fraction and search, the integer accuracy's mean, min, max and number
    of runs that fit, and the accuracy-aware minus the rule (mean over runs, points). Rows
    without a ``search`` (float, w8a8) are left out; a budget that did not fit counts as a run
    without accuracy."""
    import pandas as pd
    t = table[table.get("search").notna()] if "search" in table else table.iloc[0:0]
    rows = []
    for (arch, frac), g in t.groupby(["architecture", "memory_fraction"], sort=False):
        means = {}
        for s, h in g.groupby("search", sort=False):
            acc = pd.to_numeric(h["integer_accuracy"], errors="coerce")
            means[s] = acc.mean()
            rows.append({"architecture": arch, "memory_fraction": frac, "search": s,
                         "runs": len(h), "fit": int(acc.notna().sum()),
                         "accuracy_mean": acc.mean(), "accuracy_min": acc.min(),
                         "accuracy_max": acc.max(),
                         "flash_bytes_mean": pd.to_numeric(h.get("flash_bytes"),
                                                           errors="coerce").mean(),
                         "arena_bytes_mean": pd.to_numeric(h.get("arena_bytes"),
                                                           errors="coerce").mean()})
        if "memory" in means and "accuracy" in means:
            for r in rows[-len(means):]:
                r["accuracy_minus_rule_points"] = 100 * (means["accuracy"] - means["memory"])
    return pd.DataFrame(rows)

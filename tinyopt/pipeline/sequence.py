"""Multi-component optimization sequences: transforms chained in any valid order, ending in a
converter, every step measured.

A spec is ``"prune>qat>int8"`` or ``["prune", "qat", "int8"]``: zero or more transforms
(``prune``, ``qat``, ``decompose``, ``graph``) then exactly one converter mode of
:func:`tinyopt.convert.to_tflite`. :func:`validate` checks it before any training.

Every step's model is measured: the Keras model after each transform as its ``float32`` LiteRT
model (variant ``"<prefix>>float32"``; after ``qat`` that is the fake-quant graph with
QUANTIZE/DEQUANTIZE ops), and the final converted model (variant = the spec). The ``graph`` step
records its Keras rewrites (``graph_changes``) and whether the LiteRT operator list changed
(``tflite_change``): the converter already folds BN and fuses ReLU by itself. Steps shared by
several specs are computed once (``cache``), so ``run_many(["prune>int8", "prune>qat>int8"])``
prunes once. ``decompose`` adds two rows: the model right after the least-squares
initialisation (``decompose@init>float32``) and the same separable architecture trained from
scratch (``separable@scratch>float32``, as the seed did).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields

import pandas as pd

from tinyopt.litert import convert, measure

TRANSFORMS = ("prune", "qat", "decompose", "graph")
BASELINE = "float32"


def parse(spec) -> list[str]:
    if isinstance(spec, str):
        steps = [s.strip().lower() for s in spec.split(">")]
    elif isinstance(spec, (list, tuple)):
        steps = [str(s).strip().lower() for s in spec]
    else:
        raise ValueError(f"a sequence spec is a string like 'prune>qat>int8' or a list, got "
                         f"{type(spec).__name__}")
    return steps


def validate(spec) -> list[str]:
    """The steps of ``spec`` if it is valid.

    Raises:
        ValueError: with the reason (unknown or empty step, converter missing or not last, a
            transform repeated, a transform that cannot follow QAT, decompose after prune, or a
            converter that would not do what its name says after QAT).
    """
    steps = parse(spec)
    text = ">".join(steps)
    modes = list(convert.MODES)
    for s in steps:
        if s not in TRANSFORMS and s not in modes:
            raise ValueError(f"{text!r}: unknown step {s!r}; transforms are {list(TRANSFORMS)}, "
                             f"converters are {modes}")
    if not steps or steps[-1] not in modes:
        raise ValueError(f"{text!r}: a sequence must end with a converter, one of {modes} "
                         "(e.g. 'prune>int8')")
    if any(s in modes for s in steps[:-1]):
        raise ValueError(f"{text!r}: a converter must be the last step, and only one")
    transforms = steps[:-1]
    for s in TRANSFORMS:
        if transforms.count(s) > 1:
            raise ValueError(f"{text!r}: {s} appears {transforms.count(s)} times; each transform "
                             "may appear once")
    if "qat" in transforms:
        after = transforms[transforms.index("qat") + 1:]
        if after:
            raise ValueError(f"{text!r}: {after[0]} after qat is not possible: the QAT model's "
                             "layers are fake-quant wrappers; put qat last among the transforms")
        if steps[-1] in ("float16", "dynamic", "int16x8"):
            raise ValueError(f"{text!r}: after qat the converter quantizes to int8 from the "
                             f"fake-quant ranges whatever '{steps[-1]}' asks, so the label would "
                             "be false; use qat>int8, qat>int8_fallback or qat>float32")
    if "decompose" in transforms and "prune" in transforms and \
            transforms.index("prune") < transforms.index("decompose"):
        raise ValueError(f"{text!r}: decompose after prune replaces the pruned kernels and "
                         "discards their sparsity; put decompose before prune")
    return steps


@dataclass
class Options:
    """Settings of every step (``run(..., **options)`` overrides them by name)."""

    dataset: str = ""
    seed: int = 0
    epochs: int = 10                # from-scratch training (separable@scratch)
    batch_size: int = 64
    prune_epochs: int = 12
    prune_batch_size: int = 128
    initial_sparsity: float = 0.5
    final_sparsity: float = 0.8
    prune_schedule: str = "polynomial"
    qat_epochs: int = 2
    qat_learning_rate: float = 1e-4
    decompose_epochs: int = 3
    decompose_rank: int = 1
    decompose_scratch: bool = True
    calibration_samples: int = 500
    latency_runs: int = 200
    latency_warmup: int = 20
    threads: int = 1
    progress: bool = True

    @classmethod
    def make(cls, **options) -> "Options":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown sequence options {unknown}; known: {sorted(known)}")
        return cls(**options)


def _apply(step: str, model, data, o: Options):
    """One transform -> (new model, info columns, extra rows as (variant, model, info))."""
    from tinyopt.front import train
    from tinyopt.transforms import decompose, optimize, prune
    from tinyopt.transforms.keras_graph import clone
    t0 = time.perf_counter()
    extra = []
    if step == "prune":
        new = prune.prune(model, data, epochs=o.prune_epochs, batch_size=o.prune_batch_size,
                          initial_sparsity=o.initial_sparsity, final_sparsity=o.final_sparsity,
                          kind=o.prune_schedule, seed=o.seed, progress=o.progress).model
        info = {}
    elif step == "qat":
        from tinyopt.litert import qat
        result = qat.quantize_model(model)
        new = result.model
        train.fit(new, data, epochs=o.qat_epochs, batch_size=o.batch_size, seed=o.seed,
                  learning_rate=o.qat_learning_rate, progress=o.progress, desc="qat")
        info = {"qat_scheme": result.scheme}
    elif step == "decompose":
        result = decompose.decompose(model, rank=o.decompose_rank)
        new = result.model
        errors = "; ".join(f"{d['layer']}: rank {d['rank']}, rel. error {d['relative_error']:.3f}"
                           for d in result.decomposition)
        extra.append(("decompose@init", clone(new), {"decomposition": errors}))
        train.fit(new, data, epochs=o.decompose_epochs, batch_size=o.batch_size, seed=o.seed,
                  progress=o.progress, desc="decompose fine-tune")
        info = {"decomposition": errors, "train_seconds": time.perf_counter() - t0}
        if o.decompose_scratch:
            import tf_keras as keras
            scratch = keras.models.clone_model(new)  # same architecture, fresh initial weights
            t1 = time.perf_counter()
            train.fit(scratch, data, epochs=o.epochs, batch_size=o.batch_size, seed=o.seed,
                      progress=o.progress, desc="separable from scratch")
            extra.append(("separable@scratch", scratch,
                          {"train_seconds": time.perf_counter() - t1,
                           "train_epochs": o.epochs}))
    elif step == "graph":
        changes = optimize.plan(model) or ["no change"]
        new = optimize.optimize(model)
        # The LiteRT converter folds BN and fuses ReLU on its own, so a Keras-level rewrite may
        # leave the deployed operator list unchanged: say so rather than claim an effect.
        ops = [" ".join(measure.operators(convert.to_tflite(k))) for k in (model, new)]
        info = {"graph_changes": "; ".join(changes),
                "tflite_ops_before": ops[0],
                "tflite_change": "no change" if ops[0] == ops[1] else "changed"}
    else:  # validate() makes this unreachable
        raise ValueError(f"unknown transform {step!r}")
    info.setdefault("train_seconds", time.perf_counter() - t0)
    return new, info, extra


def _measure(variant: str, mode: str, model, data, o: Options, info: dict) -> dict:
    from tinyopt.transforms.prune import sparsity
    tfl = convert.to_tflite(model, mode, calibration=data.x_train,
                            calibration_samples=o.calibration_samples, seed=o.seed)
    return measure.evaluate(
        tfl, data.x_test, data.y_test, dataset=o.dataset or getattr(data, "name", ""),
        variant=variant, model=model, latency_runs=o.latency_runs,
        latency_warmup=o.latency_warmup, threads=o.threads,
        converter=mode, sparsity=sparsity(model)["total"],
        operators=" ".join(measure.operators(tfl)), **info)


def run(spec, model, data, cache: dict | None = None, **options) -> list[dict]:
    """Apply ``spec`` to the trained float ``model`` and measure every step.

    Arguments:
        spec: e.g. ``"prune>qat>int8"`` (validated before any training).
        model: the trained float tf_keras model (not modified).
        data: a :class:`tinyopt.data.Dataset` (train for fine-tuning and calibration, the full test
            set for accuracy).
        cache: a dict shared between calls so common prefixes are computed once.
        options: fields of :class:`Options`.

    Returns:
        One row (dict) per measured variant: each transform prefix as float32, the extra
        decompose rows, then the final converted model. Rows carry ``sequence`` and ``step``.

    Raises:
        ValueError: invalid spec or unknown option.
    """
    steps = validate(spec)
    o = Options.make(**options)
    cache = {} if cache is None else cache
    models_ = cache.setdefault("models", {(): (model, {})})
    rows_ = cache.setdefault("rows", {})
    text = ">".join(steps)
    out, prefix = [], ()

    def emit(variant, mode, m, info, step):
        key = f"{variant}>{mode}" if variant else mode
        if key not in rows_:
            rows_[key] = dict(_measure(key, mode, m, data, o, info), sequence=text, step=step)
        out.append(rows_[key])

    for step in steps[:-1]:
        parent, parent_info = models_[prefix]
        prefix = (*prefix, step)
        if prefix not in models_:
            new, info, extra = _apply(step, parent, data, o)
            models_[prefix] = (new, info)
            cache.setdefault("extra", {})[prefix] = extra
        new, info = models_[prefix]
        emit(">".join(prefix), BASELINE, new, info, step)
        for name, m, extra_info in cache["extra"][prefix]:
            emit(">".join((*prefix[:-1], name)), BASELINE, m, extra_info, step)
    emit(">".join(prefix), steps[-1], models_[prefix][0], models_[prefix][1], steps[-1])
    return out


def run_many(specs, model, data, cache: dict | None = None, **options) -> pd.DataFrame:
    """Validate every spec first, then :func:`run` them with a shared cache; the float32
    baseline comes first. Returns one row per distinct variant."""
    specs = [BASELINE] + [s for s in specs if ">".join(parse(s)) != BASELINE]
    for s in specs:
        validate(s)
    Options.make(**options)
    cache = {} if cache is None else cache
    rows = {}
    for s in specs:
        for row in run(s, model, data, cache, **options):
            rows.setdefault(row["variant"], row)
    return pd.DataFrame(list(rows.values()))


def recommend(results, tolerance_pt: float = 0.5) -> pd.DataFrame:
    """The smallest, the most accurate and the fastest variant whose accuracy is within
    ``tolerance_pt`` percentage points of the float32 baseline.

    A winner is often not distinguishable from the runner-up, so each pick lists its ``ties``:
    for "fastest", the eligible variants whose p10-p90 latency interval overlaps the winner's;
    for "most_accurate", those within two binomial standard errors of its accuracy on the test
    set (about 0.6 pt at 89 % on 10,000 images); sizes are exact, so "smallest" has none.

    Arguments:
        results: rows (DataFrame or list of dicts) with variant, accuracy, size_bytes,
            latency_ms_median (and latency_ms_p10/p90, test_images for the ties); one of them has
            variant "float32".

    Returns:
        A DataFrame indexed by criterion ("smallest", "most_accurate", "fastest").

    Raises:
        ValueError: no float32 baseline row.
    """
    df = pd.DataFrame(results)
    base = df[df["variant"] == BASELINE]
    if base.empty:
        raise ValueError("recommend needs the float32 baseline row (variant 'float32')")
    floor = float(base["accuracy"].iloc[0]) - tolerance_pt / 100.0
    ok = df[df["accuracy"] >= floor - 1e-12]
    picks = {
        "smallest": ok.loc[ok["size_bytes"].idxmin()],
        "most_accurate": ok.loc[ok["accuracy"].idxmax()],
        "fastest": ok.loc[ok["latency_ms_median"].idxmin()],
    }
    out = pd.DataFrame(picks).T
    out.index.name = "criterion"
    ties = {"smallest": ""}
    best = picks["most_accurate"]
    n = float(best.get("test_images", 10000) or 10000)
    se = (best["accuracy"] * (1 - best["accuracy"]) / n) ** 0.5
    near = ok[(ok["accuracy"] >= best["accuracy"] - 2 * se) & (ok["variant"] != best["variant"])]
    ties["most_accurate"] = " ".join(near["variant"])
    fast = picks["fastest"]
    if {"latency_ms_p10", "latency_ms_p90"} <= set(ok.columns):
        near = ok[(ok["latency_ms_p10"] <= fast["latency_ms_p90"])
                  & (ok["variant"] != fast["variant"])]
        ties["fastest"] = " ".join(near["variant"])
    out["ties"] = pd.Series(ties)
    out["tolerance_pt"] = tolerance_pt
    out["baseline_accuracy"] = float(base["accuracy"].iloc[0])
    return out

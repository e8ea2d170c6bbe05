"""Multi-component optimization sequences: Keras transforms, then a LiteRT converter or the
sub-byte path (bit policy, PTQ/QAT, integer graph), optionally deployed on the emulated Cortex-M7;
every step measured, every variant in one tidy row.

A spec is ``"prune>qat>int8"``, ``"int8>int>mcu"``, ``"ptq(w4a4,PC)>int>mcu"`` or
``"prune>mixed(flash=16k,ram=8k)>qat>int>mcu"`` (the grammar: :mod:`tinyopt.pipeline.grammar`);
:func:`validate` checks it before any training, and with the model also its memory budget.

Every step's model is measured: the Keras model after each transform as its ``float32`` LiteRT
model (variant ``"<prefix>>float32"``; after ``qat`` that is the fake-quant graph with
QUANTIZE/DEQUANTIZE ops), and the final converted model (variant = the spec). The ``graph`` step
records its Keras rewrites (``graph_changes``) and whether the LiteRT operator list changed
(``tflite_change``): the converter already folds BN and fuses ReLU by itself. Steps shared by
several specs are computed once (``cache``), so ``run_many(["prune>int8", "prune>qat>int8"])``
prunes once. ``decompose`` adds two rows: the model right after the least-squares
initialisation (``decompose@init>float32``) and the same separable architecture trained from
scratch (``separable@scratch>float32``, as the seed did).

The deployment steps (:mod:`tinyopt.pipeline.deployed`) add rows measured the same way for every
integer variant: ``accuracy`` of the integer graph in the bit-exact simulator on the full test set
(``accuracy_source`` says which engine: ``litert`` or ``integer_sim``), and after ``mcu`` the
built ELF's flash (``weights_params_bytes`` = packed weights + bias/requantization arrays,
``code_bytes``, ``elf_flash_bytes`` = the whole image) and RAM (``elf_ram_bytes``), and the
emulated Cortex-M7's instructions per inference (``mcu_instructions``). Host latency is measured
for LiteRT variants only.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, fields

import pandas as pd

from tinyopt.litert import convert, measure

from tinyopt.pipeline.grammar import (BASELINE, DEPLOY, LOWER, TRANSFORMS, parse,  # noqa: F401
                                     parse_steps, subbyte, validate)


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
    # the sub-byte path: PTQ calibration, then QAT of the fake-quant model (tinyopt.mixed)
    subbyte_calibration_samples: int = 512
    subbyte_qat_epochs: int = 3
    subbyte_qat_lr: float = 1e-3
    subbyte_qat_samples: int | None = None      # None: the whole training set
    sensitivity_samples: int | None = 256       # mixed(...,search=accuracy): images measured
    # the mcu step: C build, bit-exact checks, Cortex-M7 under QEMU
    build_dir: str = "build/sequence"
    run_mcu: bool = True
    deploy_host_images: int = 20
    deploy_mcu_images: int = 5

    @classmethod
    def make(cls, **options) -> "Options":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown sequence options {unknown}; known: {sorted(known)}")
        n = options.get("sensitivity_samples", 1)  # checked here: it is used after training
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"sensitivity_samples must be a positive int or None (every "
                             f"calibration image), got {n!r}")
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
    row = measure.evaluate(
        tfl, data.x_test, data.y_test, dataset=o.dataset or getattr(data, "name", ""),
        variant=variant, model=model, latency_runs=o.latency_runs,
        latency_warmup=o.latency_warmup, threads=o.threads, accuracy_source="litert",
        converter=mode, sparsity=sparsity(model)["total"],
        operators=" ".join(measure.operators(tfl)), **info)
    return row, tfl


def _chain(model, policy_step, quant: list[str], data, o: Options):
    """The sub-byte chain of one spec: policy -> PTQ (-> QAT) -> integer graph."""
    from tinyopt.pipeline import grammar, subbyte as sb
    cal = convert.calibration_subset(data.x_train, o.subbyte_calibration_samples, o.seed)
    # search=accuracy measures its sensitivity on the PTQ calibration images (the first
    # sensitivity_samples of them); the memory-driven rule ignores them
    measure = ({"samples": o.sensitivity_samples}
               if policy_step.policy.get("search") == "accuracy" else {})
    policy = grammar.make_policy(policy_step.policy, model, cal, **measure)
    qat_data = (sb.subset(data.x_train, data.y_train, o.subbyte_qat_samples, o.seed, 2)
                if "qat" in quant else None)
    return sb.quantize_chain(model, policy, cal, (data.x_test, data.y_test), qat_data,
                             qat_epochs=o.subbyte_qat_epochs, qat_lr=o.subbyte_qat_lr,
                             batch_size=o.batch_size, seed=o.seed, progress=o.progress)


def _int_row(variant: str, data, o: Options, graph, codes, info: dict) -> dict:
    from tinyopt.pipeline import deployed
    t0 = time.perf_counter()
    acc = deployed.integer_accuracy(graph, codes, data.y_test)
    return {"dataset": o.dataset or getattr(data, "name", ""), "variant": variant,
            "accuracy": acc, "accuracy_source": "integer_sim", "test_images": len(data.y_test),
            "converter": LOWER, "graph_weight_bytes": deployed.graph_bytes(graph),
            "sim_seconds": round(time.perf_counter() - t0, 1), **info}


def run(spec, model, data, cache: dict | None = None, **options) -> list[dict]:
    """Apply ``spec`` to the trained float ``model`` and measure every step.

    Arguments:
        spec: e.g. ``"prune>qat>int8"``, ``"int8>int>mcu"`` or
            ``"mixed(flash=6k,ram=8k,PC)>qat>int>mcu"`` (validated before any training, the
            budget against ``model``).
        model: the trained float tf_keras model (not modified).
        data: a :class:`tinyopt.data.Dataset` (train for fine-tuning and calibration, the full test
            set for accuracy).
        cache: a dict shared between calls so common prefixes are computed once.
        options: fields of :class:`Options`.

    Returns:
        One row (dict) per measured variant: each transform prefix as float32, the extra
        decompose rows, the converted model (LiteRT) or the integer graph (sub-byte), then the
        ``int`` and ``mcu`` rows. Rows carry ``sequence`` and ``step``.

    Raises:
        ValueError: invalid spec, unmeetable budget or unknown option.
        RuntimeError: a deployed build that is not bit-exact with the simulator.
    """
    from tinyopt.pipeline import deployed, grammar
    o = Options.make(**options)
    steps = validate(spec, model, decompose_rank=o.decompose_rank)
    objs = parse_steps(spec)
    names = [s.name for s in objs]
    cache = {} if cache is None else cache
    models_ = cache.setdefault("models", {(): (model, {})})
    rows_ = cache.setdefault("rows", {})
    text = ">".join(steps)
    out, prefix = [], ()

    def emit(key, step, make):
        if key not in rows_:
            rows_[key] = dict(make(), sequence=text, step=step)
        out.append(rows_[key])

    def emit_litert(variant, mode, m, info, step):
        key = f"{variant}>{mode}" if variant else mode
        if key not in rows_:
            row, tfl = _measure(key, mode, m, data, o, info)
            rows_[key] = dict(row, sequence=text, step=step)
            cache.setdefault("tflite", {})[key] = tfl
        out.append(rows_[key])
        return key

    if subbyte(objs):
        n_transforms = next(i for i, s in enumerate(objs) if s.name in ("mixed", "uniform", "ptq")
                            or (s.name == "qat" and s.policy))
    else:
        n_transforms = max(i for i, n in enumerate(names) if n not in (LOWER, DEPLOY))
    for step in steps[:n_transforms]:
        parent, parent_info = models_[prefix]
        prefix = (*prefix, step)
        if prefix not in models_:
            new, info, extra = _apply(step, parent, data, o)
            models_[prefix] = (new, info)
            cache.setdefault("extra", {})[prefix] = extra
        new, info = models_[prefix]
        emit_litert(">".join(prefix), BASELINE, new, info, step)
        for name, m, extra_info in cache["extra"][prefix]:
            emit_litert(">".join((*prefix[:-1], name)), BASELINE, m, extra_info, step)
    m, info = models_[prefix]
    graphs = cache.setdefault("graphs", {})
    if not subbyte(objs):
        key = emit_litert(">".join(prefix), steps[n_transforms], m, info, steps[n_transforms])
        if LOWER in names:
            int_key = f"{key}>{LOWER}"
            if int_key not in graphs:
                graphs[int_key] = deployed.litert_graph(cache["tflite"][key], data.x_test)
            graph, codes = graphs[int_key]
            emit(int_key, LOWER, lambda: _int_row(int_key, data, o, graph, codes,
                                                  {**info, "sparsity": rows_[key]["sparsity"],
                                                   "params": rows_[key]["params"],
                                                   "macs": rows_[key]["macs"]}))
    else:
        i_int = names.index(LOWER)
        quant = names[n_transforms:i_int]
        chain_key = ">".join(steps[:i_int])
        int_key = f"{chain_key}>{LOWER}"
        if int_key not in graphs:
            c = _chain(m, grammar.policy_step(objs), quant, data, o)
            graphs[int_key] = (c.graph, c.graph.quantize_input(data.x_test))
            cache.setdefault("chains", {})[int_key] = c
        c = cache["chains"][int_key]
        graph, codes = graphs[int_key]
        extra = {**info, **c.row(), "fakequant_accuracy": c.snapped_fakequant_acc,
                 "model_flash_bytes": c.flash_bytes, "model_ram_bytes": c.ram_bytes,
                 "train_seconds": round(info.get("train_seconds", 0.0) + c.seconds["total"], 1)}
        for k in ("fakequant_acc", "snapped_fakequant_acc", "snapped_integer_acc", "integer_acc",
                  "flash_bytes", "ram_bytes", "test_images", "ptq_acc"):
            extra.pop(k, None)
        emit(int_key, LOWER, lambda: _int_row(int_key, data, o, graph, codes, extra))
    if DEPLOY in names:
        mcu_key = f"{int_key}>{DEPLOY}"
        base = {k: v for k, v in rows_[int_key].items() if k not in ("sequence", "step")}
        label = deployed.safe_name(f"{o.dataset or getattr(data, 'name', '')}_{mcu_key}")
        emit(mcu_key, DEPLOY, lambda: {**base, "variant": mcu_key, **deployed.mcu_row(
            graph, codes, o.build_dir, label, host_images=o.deploy_host_images,
            mcu_images=o.deploy_mcu_images, run_mcu=o.run_mcu)})
    return out


def run_many(specs, model, data, cache: dict | None = None, **options) -> pd.DataFrame:
    """Validate every spec first (budgets against ``model``), then :func:`run` them with a
    shared cache; the float32 baseline comes first. Returns one row per distinct variant."""
    specs = [BASELINE] + [s for s in specs if ">".join(parse(s)) != BASELINE]
    o = Options.make(**options)
    for s in specs:
        validate(s, model, decompose_rank=o.decompose_rank)
    cache = {} if cache is None else cache
    rows = {}
    for s in specs:
        for row in run(s, model, data, cache, **options):
            rows.setdefault(row["variant"], row)
    return pd.DataFrame(list(rows.values()))


def _ties_accuracy(ok: pd.DataFrame, best) -> str:
    n = float(best.get("test_images", 10000) or 10000)
    se = (best["accuracy"] * (1 - best["accuracy"]) / n) ** 0.5
    near = ok[(ok["accuracy"] >= best["accuracy"] - 2 * se) & (ok["variant"] != best["variant"])]
    return " ".join(near["variant"])


def recommend(results, tolerance_pt: float = 0.5, flash_bytes=None,
              ram_bytes=None) -> pd.DataFrame:
    """The smallest, the most accurate and the fastest variant whose accuracy is within
    ``tolerance_pt`` percentage points of the float32 baseline; for a device (``flash_bytes``
    and/or ``ram_bytes`` given), among the deployed variants that fit it.

    A winner is often not distinguishable from the runner-up, so each pick lists its ``ties``:
    for "most_accurate", the eligible variants within two binomial standard errors of its accuracy
    on the test set (about 0.6 pt at 89 % on 10,000 images); for "fastest" on the host, those
    whose p10-p90 latency interval overlaps the winner's, and on the device those whose
    per-image instruction range (min-max over the emulated images) overlaps the winner's; sizes
    are exact, so "smallest" has none.

    Without a device, the candidates are the rows with a LiteRT size and host latency
    (``size_bytes``, ``latency_ms_median``), as before the deployment steps existed. With one,
    they are the ``mcu`` rows: "smallest" is the whole ELF flash (``elf_flash_bytes``), "fits"
    means ``elf_flash_bytes <= flash_bytes`` and ``elf_ram_bytes <= ram_bytes``, "fastest" is
    the fewest ``mcu_instructions`` per inference.

    Arguments:
        results: rows (DataFrame or list of dicts) with variant, accuracy and the columns above;
            one of them has variant "float32".
        tolerance_pt: accuracy tolerance in percentage points below the baseline.
        flash_bytes, ram_bytes: the device's flash and RAM (bytes or sizes such as "32k"); None
            for one of them: not limited.

    Returns:
        A DataFrame indexed by criterion ("smallest", "most_accurate", "fastest"); when nothing
        fits, the rows have no variant and ``note`` says what was closest.

    Raises:
        ValueError: no results, no variant / accuracy column, no float32 baseline row; a device
            given but no deployed (mcu) row.
    """
    df = pd.DataFrame(results)
    if df.empty:
        raise ValueError("no results to recommend from (results is empty); run "
                         "sequence.run_many(specs, model, data) first and pass its rows")
    missing = [c for c in ("variant", "accuracy") if c not in df.columns]
    if missing:
        raise ValueError(f"recommend needs the columns {missing} in results (it has "
                         f"{list(df.columns)}); pass the rows of sequence.run / run_many")
    base = df[df["variant"] == BASELINE]
    if base.empty:
        raise ValueError("recommend needs the float32 baseline row (variant 'float32')")
    base_acc = float(base["accuracy"].iloc[0])
    floor = base_acc - tolerance_pt / 100.0
    ok = df[df["accuracy"] >= floor - 1e-12]
    device = flash_bytes is not None or ram_bytes is not None
    if device:
        from tinyopt.mixed.policy import parse_bytes
        if "elf_flash_bytes" not in df or df["elf_flash_bytes"].isna().all():
            raise ValueError("recommend for a device needs deployed variants (rows of '...>mcu' "
                             "specs run with the ARM toolchain and QEMU installed)")
        flash = parse_bytes(flash_bytes, "flash_bytes") if flash_bytes is not None else None
        ram = parse_bytes(ram_bytes, "ram_bytes") if ram_bytes is not None else None
        ok = ok[ok["elf_flash_bytes"].notna()]
        fit = ok[(ok["elf_flash_bytes"] <= (flash or float("inf")))
                 & (ok["elf_ram_bytes"] <= (ram or float("inf")))]
        size_col, speed_col, lo, hi = ("elf_flash_bytes", "mcu_instructions",
                                       "mcu_instructions_min", "mcu_instructions_max")
    else:
        fit = ok[ok["size_bytes"].notna()] if "size_bytes" in ok else ok.iloc[:0]
        size_col, speed_col, lo, hi = ("size_bytes", "latency_ms_median", "latency_ms_p10",
                                       "latency_ms_p90")
    criteria = ("smallest", "most_accurate", "fastest")
    absent = [c for c in (size_col, speed_col) + (("elf_ram_bytes",) if device else ())
              if c not in df.columns]
    if absent and not fit.empty:
        raise ValueError(f"recommend needs the columns {absent} in results (it has "
                         f"{list(df.columns)}); pass the rows of sequence.run / run_many")
    if fit.empty:
        dep = df[df.get("elf_flash_bytes", pd.Series(dtype=float)).notna()] if device else df
        closest = (dep.loc[dep[size_col].idxmin()]
                   if size_col in dep and dep[size_col].notna().any() else None)
        note = ("no variant within the tolerance fits" + (
            f"; the smallest deployed is {closest['variant']} ({int(closest[size_col]):,} B flash"
            + (f", {int(closest['elf_ram_bytes']):,} B RAM" if device else "") + ")"
            if closest is not None else ""))
        out = pd.DataFrame({"variant": [None] * 3, "note": [note] * 3}, index=list(criteria))
    else:
        picks = {"smallest": fit.loc[fit[size_col].idxmin()],
                 "most_accurate": fit.loc[fit["accuracy"].idxmax()],
                 "fastest": fit.loc[fit[speed_col].idxmin()]}
        out = pd.DataFrame(picks).T
        fast = picks["fastest"]
        ties = {"smallest": "", "most_accurate": _ties_accuracy(fit, picks["most_accurate"]),
                "fastest": ""}
        if {lo, hi} <= set(fit.columns):
            near = fit[(fit[lo] <= fast[hi]) & (fit["variant"] != fast["variant"])]
            ties["fastest"] = " ".join(near["variant"])
        out["ties"] = pd.Series(ties)
    out.index.name = "criterion"
    out["tolerance_pt"] = tolerance_pt
    out["baseline_accuracy"] = base_acc
    if device:
        out["flash_budget"], out["ram_budget"] = flash, ram
    return out

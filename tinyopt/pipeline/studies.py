"""The per-model studies of notebooks 02, 04 and 06 (the notebooks call them through
:mod:`tinyopt.pipeline.experiments`, which slices the data and trains the float models).
Every quantized model goes through the one sub-byte chain,
:func:`tinyopt.pipeline.subbyte.quantize_chain`.

- :func:`policy_study` (notebook 02): float reference and its fine-tuned copy, then PTQ (and QAT)
  for named policies; fake-quant accuracies and packed weight bytes.
- :func:`integer_study` (notebook 04): uniform policies through PTQ -> QAT -> integer graph, with
  the per-layer integer-vs-fake-quant error trace.
- :func:`iso_memory_grid` and :func:`iso_memory_member` (notebook 06): which MobileNet members
  fit a flash / RAM budget at int8, and each member's int8 or memory-driven run.
"""

from __future__ import annotations

import time

from tinyopt.pipeline import subbyte


# ------------------------------------------------------------------------------ notebook 02
def policy_study(model_name: str, model, x_train, y_train, test, configs, qat_configs,
                 calibration_samples: int, qat_samples: int, qat_epochs: int, qat_lr: float,
                 dataset: str = "", on_row=None) -> list[dict]:
    """Float32, float32 fine-tuned like QAT, then PTQ for every config and QAT (from the PTQ
    model) for those in ``qat_configs``; fake-quant accuracies.

    Arguments:
        model_name: the ``model`` column.
        model: the trained float model (not modified).
        x_train, y_train: training images (calibration: the first ``calibration_samples``; QAT and
            the float fine-tune: the first ``qat_samples``).
        test: ``(x, y)`` for the accuracies.
        configs: ``(policy name, granularity, fold or None)`` triples for
            :func:`tinyopt.mixed.build.named_policy`.
        qat_configs: the configs that also get QAT.
        calibration_samples, qat_samples, qat_epochs, qat_lr: as the names say (QAT holds out no
            validation images).
        dataset: the ``dataset`` column.
        on_row: called with each new row (e.g. to print it or write a checkpoint).

    Returns:
        Rows: dataset, model, policy, granularity, fold, method (float32, float32+ft, PTQ, QAT),
        accuracy, weight_bytes, seconds.
    """
    from tinyopt.mixed.build import named_policy
    rows = []

    def record(policy, granularity, fold, method, acc, seconds, weight_bytes=None):
        rows.append({"dataset": dataset, "model": model_name, "policy": policy,
                     "granularity": granularity, "fold": fold, "method": method, "accuracy": acc,
                     "weight_bytes": weight_bytes, "seconds": round(seconds, 1)})
        if on_row is not None:
            on_row(rows[-1])

    x_eval, y_eval = test
    record("float32", None, None, "float32", subbyte.accuracy((model, x_eval), y_eval), 0.0)
    t = time.time()
    ft = subbyte.finetuned_copy(model, (x_train[:qat_samples], y_train[:qat_samples]), qat_epochs,
                                qat_lr, validation_split=0.0)
    record("float32", None, None, "float32+ft", subbyte.accuracy((ft, x_eval), y_eval),
           time.time() - t)
    for config in configs:
        policy = named_policy(model, *config)
        fold = config[2] or ("mixed" if len(set(policy.fold[:-1])) > 1 else policy.fold[0])
        with_qat = config in qat_configs
        r = subbyte.quantize_chain(
            model, policy, x_train[:calibration_samples], test,
            (x_train[:qat_samples], y_train[:qat_samples]) if with_qat else None,
            qat_epochs=qat_epochs, qat_lr=qat_lr, validation_split=0.0, ptq_accuracy=True,
            integer=False)
        record(config[0], config[1], fold, "PTQ", r.ptq_acc, r.seconds["ptq"], r.weight_bytes)
        if with_qat:
            record(config[0], config[1], fold, "QAT", r.fakequant_acc, r.seconds["qat"],
                   r.weight_bytes)
    return rows


# ------------------------------------------------------------------------------ notebook 04
FOLDS = {"PL+FB": ("PL", "FB"), "PL+ICN": ("PL", "ICN"), "PC+ICN": ("PC", None)}


def integer_study(name: str, model, train, test, configs, weight_bits: int, act_bits: int,
                  calibration_samples: int, qat_samples: int, qat_epochs: int,
                  error_samples: int, seed: int = 0, stream: int = 0, save_dir=None):
    """Uniform ``weight_bits``/``act_bits`` policies (``configs``: keys of :data:`FOLDS`) through
    PTQ -> QAT -> integer graph; fake-quant vs integer accuracies and the layer error trace.

    Arguments:
        name: the ``model`` column (and graph file prefix).
        model: the trained float model.
        train, test: ``(x, y)`` pairs (QAT draws ``qat_samples`` of train, keyed by ``seed`` and
            ``stream``).
        configs, weight_bits, act_bits: the policies.
        calibration_samples, qat_samples, qat_epochs: PTQ and QAT sizes.
        error_samples: test images for the per-layer trace.
        save_dir: where ``<name>_<config>.npz`` graphs go (None: not saved).

    Returns:
        ``(rows, traces)``: one summary row per config, and the per-layer error tables.

    Raises:
        KeyError: an unknown config.
    """
    x_tr, y_tr = train
    x_te, y_te = test
    float_acc = subbyte.accuracy((model, x_te), y_te)
    rows, traces = [], []
    for config in configs:
        from tinyopt.mixed.policy import Policy
        policy = Policy.uniform(model, weight_bits, act_bits, *FOLDS[config])
        r = subbyte.quantize_chain(model, policy, x_tr[:calibration_samples], test,
                                   subbyte.subset(x_tr, y_tr, qat_samples, seed, stream, 1),
                                   qat_epochs=qat_epochs, seed=seed,
                                   compare_samples=error_samples, check_snap=True)
        err = r.layer_errors
        traces.append(err.assign(model=name, config=config)[["model", "config", *err.columns]])
        if save_dir is not None:
            r.graph.save(f"{save_dir}/{name}_{config.replace('+', '_')}.npz")
        rows.append({
            "model": name, "config": config, "weight_bits": weight_bits, "act_bits": act_bits,
            "granularity": policy.granularity, "fold": "/".join(sorted(set(policy.fold[:-1]))),
            "float_acc": float_acc, "fakequant_acc": r.fakequant_acc,
            "integer_acc": r.integer_acc, "diff_pt": 100 * (r.integer_acc - r.fakequant_acc),
            "top1_agreement": r.top1_agreement, "snapped_fakequant_acc": r.snapped_fakequant_acc,
            "snapped_integer_acc": r.snapped_integer_acc,
            "snapped_top1_agreement": r.snapped_top1_agreement, "flash_bytes": r.flash_bytes,
            "graph_weight_bytes": int(sum(lay.weights.nbytes for lay in r.graph.layers
                                          if lay.weights is not None)),
            "test_images": r.test_images, "seconds": round(r.seconds["total"], 1)})
    return rows, traces


# ------------------------------------------------------------------------------ notebook 06
def _nodes(alpha, res):
    from tinyopt.mixed import memory
    return memory.mobilenet_v1_nodes(alpha, res, 10, 1)


def mobilenet_footprint(alpha: float, res: int, policy) -> tuple[int, int]:
    """(flash, peak RAM) bytes of the 10-class, 1-channel MobileNetV1 member under ``policy``."""
    from tinyopt.mixed import memory
    n = _nodes(alpha, res)
    return memory.flash_bytes(n, policy), memory.peak_ram_bytes(n, policy)


def w8a8(alpha: float, res: int, granularity: str = "PL"):
    """The uniform 8-bit policy of a member."""
    from tinyopt.mixed.policy import Policy
    return Policy.uniform([n.name for n in _nodes(alpha, res)], 8, 8, granularity)


def iso_memory_grid(alphas, resolutions, flash_budget: int, ram_budget: int,
                    int8_granularity: str = "PL"):
    """Every member (alpha, resolution): parameters, MACs, its w8a8 flash / RAM and whether it
    fits the budget at int8 (``int8_over`` names what it exceeds).

    Returns:
        A DataFrame, one row per member.

    Raises:
        ValueError: the budget lets every member fit at int8, or none (nothing to compare).
    """
    import pandas as pd
    grid = []
    for alpha in alphas:
        for res in resolutions:
            f8, r8 = mobilenet_footprint(alpha, res, w8a8(alpha, res, int8_granularity))
            n = _nodes(alpha, res)
            over = [k for k, o in (("flash", f8 > flash_budget), ("RAM", r8 > ram_budget)) if o]
            grid.append({"alpha": alpha, "resolution": res, "member": f"{alpha:g}@{res}",
                         "params": sum(x.weight_elements for x in n),
                         "macs": sum(x.macs for x in n), "int8_flash_bytes": f8,
                         "int8_ram_bytes": r8, "fits_int8": not over,
                         "int8_over": "/".join(over)})
    grid = pd.DataFrame(grid)
    if not grid.fits_int8.any() or grid.fits_int8.all():
        raise ValueError(f"the budget (flash {flash_budget} B, RAM {ram_budget} B) must let some "
                         "members fit at int8 and exclude others; choose another budget_member / "
                         "flash_bytes / ram_bytes")
    return grid


def _stream(member: dict, purpose: int) -> tuple:
    """Key of one random draw: purpose (1 BN re-estimation, 2 QAT) and the member, so a partial
    grid reproduces the full one."""
    return purpose, round(1000 * member["alpha"]), member["resolution"]


def iso_memory_member(member: dict, model, train, test, flash_budget: int, ram_budget: int,
                      granularities, int8_granularity: str, calibration_samples: int,
                      qat_samples: int, qat_epochs: int, qat_lr: float, seed: int = 0,
                      bn_recalibration_samples: int = 0, log=print) -> list[dict]:
    """One member of notebook 06: BN re-estimation of the trained float ``model``, then w8a8 if
    the member fits at int8, else the memory-driven policy for each granularity, each through
    PTQ -> QAT -> integer graph (:func:`tinyopt.pipeline.subbyte.quantize_chain`).

    Returns:
        One row per policy run (a member that does not fit even at the lowest bits gets a row
        with its ``BudgetError`` in ``note``).
    """
    from tinyopt.mixed.policy import Policy
    from tinyopt.mixed.search import BudgetError, memory_driven
    x_tr, y_tr = train
    x_te, y_te = test
    float_acc_raw = subbyte.accuracy((model, x_te), y_te)
    if bn_recalibration_samples:
        subbyte.recalibrate_bn(model, subbyte.subset(x_tr, y_tr, bn_recalibration_samples, seed,
                                                     *_stream(member, 1))[0])
    base = {**member, "float_acc": subbyte.accuracy((model, x_te), y_te),
            "float_acc_before_bn_recalibration": float_acc_raw}
    log(f"{member['member']}: float {base['float_acc']:.4f} (before BN re-estimation "
        f"{float_acc_raw:.4f}), " + ("fits" if member["fits_int8"]
                                     else f"does not fit ({member['int8_over']})") + " at int8")
    runs = [("int8", lambda g: Policy.uniform(model, 8, 8, g), int8_granularity)] \
        if member["fits_int8"] else \
        [(f"Mix-{g}", lambda g: memory_driven(model, flash_budget, ram_budget, g), g)
         for g in granularities]
    rows = []
    for tag, make, gran in runs:
        try:
            policy = make(gran)
        except BudgetError as e:
            log(f"  {tag}: does not fit even at the lowest bits: {e}")
            rows.append({**base, "policy": tag, "granularity": gran, "fits_budget": False,
                         "note": f"BudgetError: {e}"})
            continue
        r = subbyte.quantize_chain(model, policy, x_tr[:calibration_samples], test,
                                   subbyte.subset(x_tr, y_tr, qat_samples, seed,
                                                  *_stream(member, 2)),
                                   qat_epochs=qat_epochs, qat_lr=qat_lr, seed=seed)
        flash, ram = mobilenet_footprint(member["alpha"], member["resolution"], policy)
        rows.append({
            **base, "policy": tag, "granularity": policy.granularity,
            "weight_bits": "/".join(map(str, policy.weight_bits)),
            "act_bits": "/".join(map(str, policy.act_bits)), "flash_bytes": flash,
            "ram_bytes": ram, "fits_budget": flash <= flash_budget and ram <= ram_budget,
            "fakequant_acc": r.snapped_fakequant_acc, "integer_acc": r.integer_acc,
            "qmacs": r.macs, "subbyte_mac_share": subbyte.subbyte_mac_share(r.mac_mix),
            **r.mac_mix, "seconds": round(r.seconds["total"], 1),
            **{f"{k}_seconds": round(v, 1) for k, v in r.seconds.items() if k != "total"}})
        log(f"  {tag}: integer {r.integer_acc:.4f} (fake quant {r.snapped_fakequant_acc:.4f}), "
            f"flash {flash:,} B, RAM {ram:,} B, {r.seconds['total']:.0f} s")
    return rows


def iso_memory_table(results, flash_budget: int, ram_budget: int):
    """The paper-shaped table of notebook 06 and its verdict.

    Arguments:
        results: the rows of :func:`iso_memory_member` for every member.
        flash_budget, ram_budget: the budget (repeated on every row).

    Returns:
        ``(table, best, verdict)``: one row per member (float accuracy, integer-only accuracy under
        Mix-PC / Mix-PL / int8, the best int8 member that fits and the differences to it in
        points), the best int8 row, and one sentence: does mixed precision beat that int8 model?

    Raises:
        ValueError: no int8 member ran (nothing to compare with).
    """
    import numpy as np
    ints = results[(results.policy == "int8") & results.integer_acc.notna()] \
        if "integer_acc" in results else results.iloc[:0]
    if ints.empty:
        raise ValueError("no int8 member ran: the table compares with the best int8 that fits")
    best = ints.loc[ints.integer_acc.idxmax()]
    table = results.pivot_table(index=["member", "alpha", "resolution", "params", "macs",
                                       "float_acc"], columns="policy", values="integer_acc",
                                aggfunc="first").reset_index()
    for col in ["Mix-PC", "Mix-PL", "int8"]:
        if col not in table:
            table[col] = np.nan
    table = table.rename(columns={"int8": "int8_fits_acc"})
    table["int8_that_fits"] = f"{best.member}: {best.integer_acc:.4f}"
    for col in ["Mix-PC", "Mix-PL"]:
        table[f"{col}_minus_int8_pt"] = 100 * (table[col] - best.integer_acc)
    table["flash_budget"], table["ram_budget"] = flash_budget, ram_budget
    table = table.sort_values(["alpha", "resolution"])[
        ["member", "params", "macs", "float_acc", "Mix-PC", "Mix-PL", "int8_fits_acc",
         "int8_that_fits", "Mix-PC_minus_int8_pt", "Mix-PL_minus_int8_pt", "flash_budget",
         "ram_budget"]]
    mix = results[results.policy.str.startswith("Mix") & results.integer_acc.notna()]
    if mix.empty:
        verdict = "no mixed-precision member ran"
    else:
        top = mix.loc[mix.integer_acc.idxmax()]
        verdict = (f"best mixed: {top.member} {top.policy} {top.integer_acc:.4f} vs best int8 "
                   f"that fits {best.member} {best.integer_acc:.4f}: "
                   f"{100 * (top.integer_acc - best.integer_acc):+.2f} pt -> mixed precision "
                   f"{'BEATS' if top.integer_acc > best.integer_acc else 'does NOT beat'} the "
                   "int8 model that fits")
    return table, best, verdict

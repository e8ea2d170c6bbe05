"""Notebook 06 (``06_iso_memory``): memory-driven mixed precision against the best int8 model
that fits the same flash / RAM budget, on the MobileNetV1 family. Every quantized model goes
through the one sub-byte chain, :func:`tinyopt.pipeline.subbyte.quantize_chain`.

- :func:`iso_memory_budget` and :func:`iso_memory_grid`: the budget and which members fit it at
  int8 (:func:`mobilenet_footprint`, :func:`w8a8`);
- :func:`iso_memory_runs`: float training of every member, then :func:`iso_memory_member` (its
  int8 or memory-driven runs);
- :func:`iso_memory_table`: the paper-shaped table and its verdict; :func:`iso_memory_run_row`
  (with :func:`clock`): the run record.
"""

from __future__ import annotations

import os
import time

import pandas as pd

from tinyopt.pipeline import subbyte


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
                      bn_recalibration_samples: int = 0, log=print,
                      searches=("memory",)) -> list[dict]:
    """One member of notebook 06: BN re-estimation of the trained float ``model``, then w8a8 if
    the member fits at int8, else a mixed policy for each granularity and each of ``searches``
    ("memory": the paper's rule, :func:`tinyopt.memory_driven`, rows ``Mix-<g>``; "accuracy":
    least summed sensitivity under the same budgets, :func:`tinyopt.mixed.accuracy_search.
    accuracy_driven` measured on the calibration images, rows ``Acc-<g>``), both on the paper's
    accounting that sets the budget; each through PTQ -> QAT -> integer graph
    (:func:`tinyopt.pipeline.subbyte.quantize_chain`), the same recipe for every policy.

    Returns:
        One row per policy run (a member that does not fit even at the lowest bits gets a row
        with its ``BudgetError`` in ``note``).
    """
    from tinyopt.mixed.accuracy_search import accuracy_driven
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
        [(f"Mix-{g}", lambda g: memory_driven(model, flash_budget, ram_budget, g,
                                              accounting="paper"), g)
         for g in granularities if "memory" in searches] + \
        [(f"Acc-{g}", lambda g: accuracy_driven(model, flash_budget, ram_budget,
                                                x_tr[:calibration_samples], g,
                                                accounting="paper"), g)
         for g in granularities if "accuracy" in searches]
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
    # the rule's columns always; the accuracy-aware search's when it ran (searches=["accuracy"])
    mixed_cols = ["Mix-PC", "Mix-PL"] + [c for c in ("Acc-PC", "Acc-PL") if c in table]
    for col in mixed_cols:
        table[f"{col}_minus_int8_pt"] = 100 * (table[col] - best.integer_acc)
    table["flash_budget"], table["ram_budget"] = flash_budget, ram_budget
    table = table.sort_values(["alpha", "resolution"])[
        ["member", "params", "macs", "float_acc", *mixed_cols, "int8_fits_acc",
         "int8_that_fits", *(f"{c}_minus_int8_pt" for c in mixed_cols), "flash_budget",
         "ram_budget"]]
    mix = results[results.policy.str.startswith(("Mix", "Acc")) & results.integer_acc.notna()]
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


def searches_table(frame) -> pd.DataFrame:
    """The rule against the accuracy-aware search and the best int8 that fits (issue 30), from
    :func:`iso_memory_runs`' rows of one run or of a sweep (a ``seed`` or ``run`` column tells the
    runs apart): per flash budget, for each policy family (``int8``: the best int8 member that
    fits; ``Mix-<g>`` / ``Acc-<g>``: the rule / the accuracy-aware search, best member and each
    member) the integer accuracy's mean, min and max over the runs, and in points the difference
    of the means to the best int8 that fits and, for ``Acc-<g>``, to ``Mix-<g>`` of the same
    member(s). A policy that did not fit (a ``BudgetError`` row) has no accuracy and is counted
    in ``runs`` but not in ``fit``.

    Raises:
        ValueError: rows without ``flash_budget`` (a run of an older notebook 06).
    """
    import numpy as np
    if "flash_budget" not in frame:
        raise ValueError("rows without a flash_budget column: re-run notebook 06 (runs.csv of "
                         "this version)")
    key = "seed" if "seed" in frame else "run" if "run" in frame else None
    f = frame.assign(_run=frame[key] if key else 0,
                     integer_acc=pd.to_numeric(frame.get("integer_acc"), errors="coerce"))
    per_run = []  # one row per (budget, run, policy, member or "best")
    for (budget, run), g in f.groupby(["flash_budget", "_run"], sort=False):
        ints = g[g.policy == "int8"].drop_duplicates("member")
        per_run.append({"flash_budget": budget, "_run": run, "policy": "int8", "member": "best",
                        "acc": ints.integer_acc.max()})
        for pol, h in g[g.policy.str.startswith(("Mix", "Acc"))].groupby("policy", sort=False):
            per_run.append({"flash_budget": budget, "_run": run, "policy": pol,
                            "member": "best", "acc": h.integer_acc.max()})
            per_run += [{"flash_budget": budget, "_run": run, "policy": pol, "member": m,
                         "acc": a} for m, a in zip(h.member, h.integer_acc)]
    p = pd.DataFrame(per_run)
    rows = []
    for (budget, pol, member), g in p.groupby(["flash_budget", "policy", "member"], sort=False):
        rows.append({"flash_budget": budget, "policy": pol, "member": member,
                     "runs": len(g), "fit": int(g.acc.notna().sum()),
                     "accuracy_mean": g.acc.mean(), "accuracy_min": g.acc.min(),
                     "accuracy_max": g.acc.max()})
    out = pd.DataFrame(rows)
    mean = {(r.flash_budget, r.policy, r.member): r.accuracy_mean for r in out.itertuples()}
    out["minus_int8_pt"] = [100 * (r.accuracy_mean - mean[(r.flash_budget, "int8", "best")])
                            for r in out.itertuples()]
    out["minus_rule_pt"] = [
        100 * (r.accuracy_mean - mean.get((r.flash_budget, "Mix" + r.policy[3:], r.member),
                                          np.nan))
        if r.policy.startswith("Acc") else np.nan for r in out.itertuples()]
    return out


def iso_memory_budget(alphas, resolutions, budget_member, flash_bytes: int | None,
                      ram_bytes: int | None, int8_granularity: str = "PL"):
    """Notebook 06's budget and the grid of members it is tested on (prints the budget).

    Arguments:
        alphas, resolutions: the grid (:func:`iso_memory_grid`).
        budget_member: ``[alpha, resolution]`` whose w8a8 footprint is the default budget.
        flash_bytes, ram_bytes: the budget in bytes; None: that member's w8a8 flash / peak RAM.
        int8_granularity: weight granularity of the int8 policies.

    Returns:
        ``(flash_budget, ram_budget, grid)``.

    Raises:
        ValueError: a budget that every member fits at int8, or none (from
            :func:`iso_memory_grid`).
    """
    from tinyopt.mixed import memory
    ba, br = budget_member
    bf, bram = mobilenet_footprint(ba, br, w8a8(ba, br, int8_granularity))
    flash_budget = int(bf if flash_bytes is None else flash_bytes)
    ram_budget = int(bram if ram_bytes is None else ram_bytes)
    default = flash_bytes is None and ram_bytes is None
    print(f"budget: flash {flash_budget:,} B ({memory.to_mib(flash_budget):.3f} MiB), RAM "
          f"{ram_budget:,} B "
          f"({'w8a8 ' + int8_granularity + ' of α=%g @%d' % (ba, br) if default else 'given'})")
    grid = iso_memory_grid(alphas, resolutions, flash_budget, ram_budget, int8_granularity)
    return flash_budget, ram_budget, grid


def iso_memory_runs(ds, grid: pd.DataFrame, flash_budget: int, ram_budget: int, granularity,
                    int8_granularity: str, epochs: int, train_samples: int | None, lr: float,
                    batch_size: int, qat_epochs: int, qat_samples: int, qat_lr: float,
                    calibration_samples: int, test_samples: int | None, resize_mode: str,
                    bn_recalibration_samples: int, seed: int = 0, on_row=None,
                    searches=("memory",), more_flash=()):
    """Notebook 06's runs: every member of ``grid`` trained in float (keyed random subsets of the
    training and test images, resized to its input), then :func:`iso_memory_member`.

    Arguments:
        ds: a :class:`tinyopt.Dataset` (28x28).
        grid: :func:`iso_memory_grid`'s members.
        flash_budget, ram_budget: the budget in bytes.
        granularity: the mixed-precision granularities, one (``"PL"``) or a list.
        int8_granularity: weight granularity of the int8 policies.
        epochs, train_samples, lr, batch_size: float training (``train_samples`` None: all).
        qat_epochs, qat_samples, qat_lr, calibration_samples, bn_recalibration_samples: as
            :func:`iso_memory_member`.
        test_samples: test images (None: all).
        resize_mode: "bilinear" or "pad" (:func:`subbyte.resize`).
        seed: model initialisation, draws and training.
        searches: the mixed-policy searches to run per granularity, as
            :func:`iso_memory_member`.
        more_flash: further flash budgets (bytes; the same RAM budget) run on the same trained
            members (issue 30: tighter budgets where the rule cuts deeper, at the cost of the
            policies only); each must let some member fit at int8.
        on_row: called with each row as it comes (e.g. a
            :class:`tinyopt.workbench.report.Checkpoint` of ``runs.csv``: a cut run keeps its
            rows).

    Returns:
        The rows of every member and budget, a DataFrame (``runs.csv``; ``flash_budget`` and
        ``ram_budget`` name the budget of each row; an int8 row is run once per member and
        repeated under each budget it fits).

    Raises:
        ValueError: a budget of ``more_flash`` that no member fits at int8.
        RuntimeError: a mixed policy over its budget (a bug of the policy search).
    """
    from tinyopt.front import models, train
    granularities = [granularity] if isinstance(granularity, str) else list(granularity)
    budgets = [int(flash_budget), *(int(b) for b in more_flash if int(b) != int(flash_budget))]
    for b in budgets[1:]:
        if not (grid.int8_flash_bytes <= b).any():
            raise ValueError(f"more_flash {b:,} B: no member fits it at int8 (smallest int8 "
                             f"flash {int(grid.int8_flash_bytes.min()):,} B), so there is no int8 "
                             "model to compare with; give a larger budget")
    x_tr_all, y_tr_all = subbyte.subset(ds.x_train, ds.y_train, train_samples, seed, 0, 0)
    x_te28, y_te = subbyte.subset(ds.x_test, ds.y_test, test_samples, seed, 0, 1)
    rows = []
    for member in grid.to_dict("records"):
        x_tr, x_te = (subbyte.resize(x, member["resolution"], resize_mode)
                      for x in (x_tr_all, x_te28))
        t0 = time.time()
        model = models.mobilenet_v1(member["alpha"], member["resolution"], 10, input_channels=1,
                                    seed=seed)
        train.fit(model, (x_tr, y_tr_all), epochs=epochs, batch_size=batch_size,
                  learning_rate=lr, seed=seed, progress=False)
        seconds = round(time.time() - t0, 1)
        int8_rows = None  # the member's int8 rows do not depend on the budget: run them once
        raw_acc = None  # the float accuracy before BN re-estimation, measured at the first budget
        for budget in budgets:
            over = [k for k, o in (("flash", member["int8_flash_bytes"] > budget),
                                   ("RAM", member["int8_ram_bytes"] > ram_budget)) if o]
            this = {**member, "fits_int8": not over, "int8_over": "/".join(over),
                    "float_seconds": seconds}
            if not over and int8_rows is not None:
                member_rows = [dict(r) for r in int8_rows]
            else:
                member_rows = iso_memory_member(
                    this, model, (x_tr, y_tr_all), (x_te, y_te), budget, ram_budget,
                    granularities, int8_granularity, calibration_samples, qat_samples,
                    qat_epochs, qat_lr, seed=seed,
                    bn_recalibration_samples=bn_recalibration_samples, searches=tuple(searches))
                if not over:
                    int8_rows = member_rows
            for row in member_rows:
                # later budgets see the model already re-estimated (the same statistics again)
                raw_acc = row["float_acc_before_bn_recalibration"] if raw_acc is None else raw_acc
                row.update({"flash_budget": budget, "ram_budget": ram_budget,
                            "float_acc_before_bn_recalibration": raw_acc})
                rows.append(row)
                if on_row is not None:
                    on_row(row)
    results = pd.DataFrame(rows)
    if "integer_acc" in results:  # else no policy ran (every member a BudgetError row)
        mixed_ok = results[results.policy.str.startswith(("Mix", "Acc"))
                           & results.integer_acc.notna()]
        if ((mixed_ok.flash_bytes > mixed_ok.flash_budget)
                | (mixed_ok.ram_bytes > mixed_ok.ram_budget)).any():
            raise RuntimeError("a mixed policy exceeds its budget")
    return results


def clock() -> tuple:
    """``(time.time(), 1-min load average)`` now: the start of a run for
    :func:`iso_memory_run_row`."""
    return time.time(), os.getloadavg()[0]


def iso_memory_run_row(ds, test_samples: int | None, flash_budget: int, ram_budget: int,
                       verdict: str, started: tuple, budget_member, alphas, resolutions,
                       epochs: int, train_samples: int | None, qat_epochs: int, qat_samples: int,
                       resize_mode: str) -> dict:
    """Notebook 06's run record (``<dataset>_run.csv``): the budget, the sizes, wall time and the
    machine's load at start and end, and the verdict.

    Arguments:
        ds: the :class:`tinyopt.Dataset` of the run (its name).
        test_samples: the test images asked for (None: all; the record counts them).
        flash_budget, ram_budget: the budget in bytes.
        verdict: :func:`iso_memory_table`'s sentence.
        started: :func:`clock` at the start of the run.
        budget_member ... resize_mode: the run's parameters, recorded as given.

    Returns:
        One dict: dataset, flash_budget, ram_budget, budget_member, alphas, resolutions, epochs,
        train_samples, qat_epochs, qat_samples, test_images, resize_mode, seconds, load_start,
        load_end, verdict.
    """
    t_start, load_start = started
    test_images = len(ds.y_test) if test_samples is None else min(test_samples, len(ds.y_test))
    return {"dataset": ds.name, "flash_budget": flash_budget, "ram_budget": ram_budget,
            "budget_member": f"{budget_member[0]:g}@{budget_member[1]}", "alphas": str(alphas),
            "resolutions": str(resolutions), "epochs": epochs, "train_samples": train_samples,
            "qat_epochs": qat_epochs, "qat_samples": qat_samples, "test_images": test_images,
            "resize_mode": resize_mode, "seconds": round(time.time() - t_start, 1),
            "load_start": round(load_start, 2), "load_end": round(os.getloadavg()[0], 2),
            "verdict": verdict}

"""Notebooks 02, 04 and 06 end to end: data slices, float training, then the studies of
:mod:`tinyopt.pipeline.studies` (every quantized model through the one sub-byte chain,
:func:`tinyopt.pipeline.subbyte.quantize_chain`). Each function returns plain data (rows,
DataFrames); the notebooks show, write and plot them.

- Notebook 02: :func:`subbyte_qat_seed_cnn`, :func:`subbyte_qat_mobilenet` (each row printed with
  :func:`policy_row_text` and checkpointed by :class:`tinyopt.workbench.report.Checkpoint`),
  :func:`ptq_qat_tables`.
- Notebook 04: :func:`integer_only`, :func:`integer_acceptance`.
- Notebook 06: :func:`iso_memory_budget`, :func:`iso_memory_runs`, :func:`iso_memory_run_row`
  (with :func:`studies.iso_memory_grid` and :func:`studies.iso_memory_table`).
"""

from __future__ import annotations

import os
import time

import pandas as pd

from tinyopt.pipeline import studies, subbyte


# ------------------------------------------------------------------------------ notebook 02
def policy_row_text(row: dict) -> str:
    """One row of :func:`studies.policy_study` as a line of text (model, policy, granularity,
    fold, method, accuracy, seconds)."""
    return (f"{row['model']:22s} {row['policy']:6s} {row['granularity'] or '':3s} "
            f"{row['fold'] or '':5s} {row['method']:10s} acc={row['accuracy']:.4f}  "
            f"({row['seconds']:.0f} s)")


def subbyte_qat_seed_cnn(ds, epochs: int, policies, granularities, test_samples: int | None,
                         calibration_samples: int, qat_samples: int, qat_epochs: int,
                         qat_lr: float, on_row=None):
    """Notebook 02, seed CNN: train it in float32 (``models.seed_cnn()``, default seeds), then
    :func:`studies.policy_study` with PTQ and QAT for every policy x granularity.

    Arguments:
        ds: a :class:`tinyopt.data.Dataset` (its name fills the ``dataset`` column; all of its
            training images are used).
        epochs: float training epochs.
        policies, granularities: named policies (``w8a8``, ``w4a4``, ``w2a2``, ``mixed``) and
            ``PL`` / ``PC``.
        test_samples: the first N test images (None: all).
        calibration_samples, qat_samples, qat_epochs, qat_lr: as :func:`studies.policy_study`.
        on_row: called with each row as it comes (e.g. a
            :class:`tinyopt.workbench.report.Checkpoint`).

    Returns:
        ``(model, rows)``: the trained float model and :func:`studies.policy_study`'s rows.

    Raises:
        ValueError: an unknown policy name or granularity (from ``named_policy``).
    """
    from tinyopt.front import models, train
    t = time.time()
    model = models.seed_cnn()
    train.fit(model, ds, epochs=epochs, progress=False)
    print(f"seed CNN float training: {time.time() - t:.0f} s")
    configs = [(p, g, None) for p in policies for g in granularities]
    rows = studies.policy_study(
        "seed_cnn", model, ds.x_train, ds.y_train,
        (ds.x_test[:test_samples], ds.y_test[:test_samples]), configs, set(configs),
        calibration_samples=calibration_samples, qat_samples=qat_samples, qat_epochs=qat_epochs,
        qat_lr=qat_lr, dataset=ds.name, on_row=on_row)
    return model, rows


def parse_qat_configs(specs) -> set:
    """``["w4a4/PL/FB", "mixed/PC"]`` -> ``{("w4a4", "PL", "FB"), ("mixed", "PC", None)}``
    (policy/granularity[/fold], the fold None when left out)."""
    return {tuple(s.split("/")) + (None,) * (3 - len(s.split("/"))) for s in specs}


def subbyte_qat_mobilenet(ds, alpha: float, resolution: int, epochs: int, samples: int | None,
                          learning_rate: float, batch_size: int, policies, granularities,
                          qat_configs, test_samples: int | None, calibration_samples: int,
                          qat_samples: int, qat_epochs: int, qat_lr: float, on_row=None):
    """Notebook 02, MobileNetV1: the images zero-padded to ``resolution``, the float model trained
    on the first ``samples`` of them, then :func:`studies.policy_study`: PTQ for every policy x
    granularity plus ``w4a4/PL/FB``, QAT only for ``qat_configs``.

    Arguments:
        ds: a :class:`tinyopt.data.Dataset` (28x28).
        alpha, resolution: the member (10 classes, 1 input channel).
        epochs, samples, learning_rate, batch_size: float training (``samples`` None: all).
        policies, granularities: as :func:`subbyte_qat_seed_cnn`.
        qat_configs: ``"policy/granularity[/fold]"`` strings (:func:`parse_qat_configs`).
        test_samples, calibration_samples, qat_samples, qat_epochs, qat_lr, on_row: as
            :func:`subbyte_qat_seed_cnn`.

    Returns:
        ``(model, rows)``.

    Raises:
        ValueError: an unknown policy name or granularity, or a resolution below 28 (padding
            cannot shrink).
    """
    from tinyopt.front import models, train

    def pad(x):
        return subbyte.resize(x, resolution, "pad")
    x_train, y_train = pad(ds.x_train[:samples]), ds.y_train[:samples]
    t = time.time()
    model = models.mobilenet_v1(alpha, resolution, classes=10, input_channels=1)
    train.fit(model, (x_train, y_train), epochs=epochs, batch_size=batch_size,
              learning_rate=learning_rate, progress=False)
    print(f"MobileNet float training: {time.time() - t:.0f} s")
    configs = [(p, g, None) for p in policies for g in granularities] + [("w4a4", "PL", "FB")]
    rows = studies.policy_study(
        f"mobilenet_v1_{alpha:g}_{resolution}", model, x_train, y_train,
        (pad(ds.x_test[:test_samples]), ds.y_test[:test_samples]), configs,
        parse_qat_configs(qat_configs), calibration_samples=calibration_samples,
        qat_samples=qat_samples, qat_epochs=qat_epochs, qat_lr=qat_lr, dataset=ds.name,
        on_row=on_row)
    return model, rows


def ptq_qat_tables(df: pd.DataFrame):
    """The two tables of notebook 02.

    Arguments:
        df: :func:`studies.policy_study` rows.

    Returns:
        ``(refs, pivot)``: float32 and float32+ft accuracy per model; PTQ and QAT accuracy per
        model, policy, granularity and fold.
    """
    pivot = df[df.method.isin(["PTQ", "QAT"])].pivot_table(
        index=["model", "policy", "granularity", "fold"], columns="method", values="accuracy")
    refs = df[df.method.str.startswith("float32")].set_index(["model", "method"]).accuracy.unstack()
    return refs, pivot


# ------------------------------------------------------------------------------ notebook 04
def integer_only(ds, model_names, configs, weight_bits: int, act_bits: int, epochs: int,
                 train_samples: int | None, mobilenet_samples: int | None, mobilenet_lr: float,
                 mobilenet_batch: int, test_samples: int | None, qat_epochs: int,
                 qat_samples: int, calibration_samples: int, error_samples: int, seed: int = 0,
                 save_dir=None):
    """Notebook 04: for each model, train it in float (a keyed random subset of the training
    images, zero-padded to its input size), then :func:`studies.integer_study`.

    Arguments:
        ds: a :class:`tinyopt.data.Dataset` (28x28).
        model_names: ``seed_cnn`` (28x28) and/or ``mobilenet`` (MobileNetV1 0.25 at 32x32); the
            position in the list keys its random draws.
        configs, weight_bits, act_bits: the policies (keys of :data:`studies.FOLDS`).
        epochs: float training epochs (both models).
        train_samples, mobilenet_samples: float training images (None: all).
        mobilenet_lr, mobilenet_batch: the MobileNet's learning rate and batch size.
        test_samples: the first N test images (None: all).
        qat_epochs, qat_samples, calibration_samples, error_samples: as
            :func:`studies.integer_study`.
        seed: model initialisation, draws and training.
        save_dir: where the integer graphs go (None: not saved).

    Returns:
        ``(summary, errors)``: one row per model and config (with ``within_0p2``: integer within
        0.2 pt of fake quant), and the per-layer error traces.

    Raises:
        KeyError: an unknown model name or config.
    """
    from tinyopt.front import models, train
    x_te28, y_te = ds.x_test[:test_samples], ds.y_test[:test_samples]
    build = {  # model, input size, training images, fit arguments
        "seed_cnn": (lambda: models.seed_cnn(seed=seed), 28, train_samples, {}),
        "mobilenet": (lambda: models.mobilenet_v1(0.25, 32, 10, input_channels=1, seed=seed), 32,
                      mobilenet_samples,
                      {"learning_rate": mobilenet_lr, "batch_size": mobilenet_batch})}
    rows, traces = [], []
    for k, name in enumerate(model_names):
        make, size, n_train, fit_args = build[name]
        model, t0 = make(), time.time()
        x_tr, y_tr = subbyte.subset(ds.x_train, ds.y_train, n_train, seed, k, 0)
        x_tr, x_te = subbyte.resize(x_tr, size, "pad"), subbyte.resize(x_te28, size, "pad")
        train.fit(model, (x_tr, y_tr), epochs=epochs, seed=seed, progress=False, **fit_args)
        print(f"{name}: {len(x_tr)} images x {epochs} epochs, {time.time() - t0:.0f} s")
        r, t = studies.integer_study(name, model, (x_tr, y_tr), (x_te, y_te), configs,
                                     weight_bits, act_bits, calibration_samples, qat_samples,
                                     qat_epochs, error_samples, seed=seed, stream=k,
                                     save_dir=save_dir)
        rows, traces = rows + r, traces + t
        print(pd.DataFrame(r).to_string())
    summary = pd.DataFrame(rows)
    summary["within_0p2"] = summary["diff_pt"].abs() <= 0.2
    return summary, pd.concat(traces, ignore_index=True)


def integer_acceptance(summary: pd.DataFrame) -> pd.DataFrame:
    """Notebook 04's acceptance table: integer minus fake-quant accuracy in points, before and
    after the bias snap, and whether each is within 0.2 pt.

    Arguments:
        summary: :func:`integer_only`'s summary.

    Returns:
        model, config, fakequant_acc, integer_acc, diff_pt, top1_agreement, snapped_diff_pt,
        snapped_top1_agreement, within_0p2, snapped_within_0p2.
    """
    check = summary[["model", "config", "fakequant_acc", "integer_acc", "diff_pt",
                     "top1_agreement"]].copy()
    check["snapped_diff_pt"] = 100 * (summary.snapped_integer_acc - summary.snapped_fakequant_acc)
    check["snapped_top1_agreement"] = summary.snapped_top1_agreement
    check["within_0p2"] = check.diff_pt.abs() <= 0.2
    check["snapped_within_0p2"] = check.snapped_diff_pt.abs() <= 0.2
    return check


# ------------------------------------------------------------------------------ notebook 06
def iso_memory_budget(alphas, resolutions, budget_member, flash_bytes: int | None,
                      ram_bytes: int | None, int8_granularity: str = "PL"):
    """Notebook 06's budget and the grid of members it is tested on (prints the budget).

    Arguments:
        alphas, resolutions: the grid (:func:`studies.iso_memory_grid`).
        budget_member: ``[alpha, resolution]`` whose w8a8 footprint is the default budget.
        flash_bytes, ram_bytes: the budget in bytes; None: that member's w8a8 flash / peak RAM.
        int8_granularity: weight granularity of the int8 policies.

    Returns:
        ``(flash_budget, ram_budget, grid)``.

    Raises:
        ValueError: a budget that every member fits at int8, or none (from
            :func:`studies.iso_memory_grid`).
    """
    from tinyopt.mixed import memory
    ba, br = budget_member
    bf, bram = studies.mobilenet_footprint(ba, br, studies.w8a8(ba, br, int8_granularity))
    flash_budget = int(bf if flash_bytes is None else flash_bytes)
    ram_budget = int(bram if ram_bytes is None else ram_bytes)
    default = flash_bytes is None and ram_bytes is None
    print(f"budget: flash {flash_budget:,} B ({memory.to_mib(flash_budget):.3f} MiB), RAM "
          f"{ram_budget:,} B "
          f"({'w8a8 ' + int8_granularity + ' of α=%g @%d' % (ba, br) if default else 'given'})")
    grid = studies.iso_memory_grid(alphas, resolutions, flash_budget, ram_budget, int8_granularity)
    return flash_budget, ram_budget, grid


def iso_memory_runs(ds, grid: pd.DataFrame, flash_budget: int, ram_budget: int, granularity,
                    int8_granularity: str, epochs: int, train_samples: int | None, lr: float,
                    batch_size: int, qat_epochs: int, qat_samples: int, qat_lr: float,
                    calibration_samples: int, test_samples: int | None, resize_mode: str,
                    bn_recalibration_samples: int, seed: int = 0, on_row=None):
    """Notebook 06's runs: every member of ``grid`` trained in float (keyed random subsets of the
    training and test images, resized to its input), then :func:`studies.iso_memory_member`.

    Arguments:
        ds: a :class:`tinyopt.data.Dataset` (28x28).
        grid: :func:`studies.iso_memory_grid`'s members.
        flash_budget, ram_budget: the budget in bytes.
        granularity: the mixed-precision granularities, one (``"PL"``) or a list.
        int8_granularity: weight granularity of the int8 policies.
        epochs, train_samples, lr, batch_size: float training (``train_samples`` None: all).
        qat_epochs, qat_samples, qat_lr, calibration_samples, bn_recalibration_samples: as
            :func:`studies.iso_memory_member`.
        test_samples: test images (None: all).
        resize_mode: "bilinear" or "pad" (:func:`subbyte.resize`).
        seed: model initialisation, draws and training.
        on_row: called with each row as it comes (e.g. a
            :class:`tinyopt.workbench.report.Checkpoint` of ``runs.csv``: a cut run keeps its
            rows).

    Returns:
        The rows of every member, a DataFrame (``runs.csv``).

    Raises:
        RuntimeError: a memory-driven policy over the budget (a bug of the policy search).
    """
    from tinyopt.front import models, train
    granularities = [granularity] if isinstance(granularity, str) else list(granularity)
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
        member_rows = studies.iso_memory_member(
            {**member, "float_seconds": round(time.time() - t0, 1)}, model, (x_tr, y_tr_all),
            (x_te, y_te), flash_budget, ram_budget, granularities, int8_granularity,
            calibration_samples, qat_samples, qat_epochs, qat_lr, seed=seed,
            bn_recalibration_samples=bn_recalibration_samples)
        rows += member_rows
        if on_row is not None:
            for row in member_rows:
                on_row(row)
    results = pd.DataFrame(rows)
    if "integer_acc" in results:  # else no policy ran (every member a BudgetError row)
        mixed_ok = results[results.policy.str.startswith("Mix") & results.integer_acc.notna()]
        if ((mixed_ok.flash_bytes > flash_budget) | (mixed_ok.ram_bytes > ram_budget)).any():
            raise RuntimeError("a memory-driven policy exceeds the budget")
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
        ds: the :class:`tinyopt.data.Dataset` of the run (its name).
        test_samples: the test images asked for (None: all; the record counts them).
        flash_budget, ram_budget: the budget in bytes.
        verdict: :func:`studies.iso_memory_table`'s sentence.
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

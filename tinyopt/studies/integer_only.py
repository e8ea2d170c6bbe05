"""Notebook 04 (``04_integer_only``): ICN conversion to an integer graph and the bit-accurate
simulator against the fake-quant model. Every quantized model goes through the one sub-byte
chain, :func:`tinyopt.pipeline.subbyte.quantize_chain`.

- :func:`integer_only`: data slices and float training of each model, then :func:`integer_study`;
- :func:`integer_study`: uniform policies (:data:`FOLDS`) through PTQ -> QAT -> integer graph,
  with the per-layer integer-vs-fake-quant error trace;
- :func:`integer_acceptance`: the notebook's acceptance table.
"""

from __future__ import annotations

import time

import pandas as pd

from tinyopt.pipeline import subbyte


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


def integer_only(ds, model_names, configs, weight_bits: int, act_bits: int, epochs: int,
                 train_samples: int | None, mobilenet_samples: int | None, mobilenet_lr: float,
                 mobilenet_batch: int, test_samples: int | None, qat_epochs: int,
                 qat_samples: int, calibration_samples: int, error_samples: int, seed: int = 0,
                 save_dir=None):
    """Notebook 04: for each model, train it in float (a keyed random subset of the training
    images, zero-padded to its input size), then :func:`integer_study`.

    Arguments:
        ds: a :class:`tinyopt.Dataset` (28x28).
        model_names: ``seed_cnn`` (28x28) and/or ``mobilenet`` (MobileNetV1 0.25 at 32x32); the
            position in the list keys its random draws.
        configs, weight_bits, act_bits: the policies (keys of :data:`FOLDS`).
        epochs: float training epochs (both models).
        train_samples, mobilenet_samples: float training images (None: all).
        mobilenet_lr, mobilenet_batch: the MobileNet's learning rate and batch size.
        test_samples: the first N test images (None: all).
        qat_epochs, qat_samples, calibration_samples, error_samples: as
            :func:`integer_study`.
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
        r, t = integer_study(name, model, (x_tr, y_tr), (x_te, y_te), configs,
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

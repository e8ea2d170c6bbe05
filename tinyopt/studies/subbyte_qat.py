"""Notebook 02 (``02_subbyte_qat``): 2/4/8-bit mixed-precision PTQ and QAT, PL vs PC, FB vs
ICN. Every quantized model goes through the one sub-byte chain,
:func:`tinyopt.pipeline.subbyte.quantize_chain`; each function returns plain data (rows,
DataFrames) and the notebook shows, writes and plots them.

- :func:`subbyte_qat_seed_cnn`, :func:`subbyte_qat_mobilenet`: data slices and float training,
  then :func:`policy_study` (each row printed with :func:`policy_row_text` and checkpointed by
  :class:`tinyopt.workbench.report.Checkpoint`);
- :func:`policy_study`: float reference and its fine-tuned copy, then PTQ (and QAT) for named
  policies; fake-quant accuracies and packed weight bytes;
- :func:`ptq_qat_tables`: the notebook's two tables.
"""

from __future__ import annotations

import time

import pandas as pd

from tinyopt.pipeline import subbyte


def policy_study(model_name: str, model, x_train, y_train, test, configs, qat_configs,
                 calibration_samples: int, qat_samples: int, qat_epochs: int, qat_lr: float,
                 dataset: str = "", on_row=None) -> list[dict]:
    """Float32, float32 fine-tuned like QAT (when some config gets QAT: it is their reference),
    then PTQ for every config and QAT (from the PTQ model) for those in ``qat_configs``;
    fake-quant accuracies.

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
        Rows: dataset, model, policy, granularity, fold, method (float32, float32+ft, PTQ, QAT;
        no float32+ft row when no config gets QAT), accuracy, weight_bytes, seconds.
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
    if set(configs) & set(qat_configs):  # the fine-tuned copy is the reference of a QAT row only
        t = time.time()
        ft = subbyte.finetuned_copy(model, (x_train[:qat_samples], y_train[:qat_samples]),
                                    qat_epochs, qat_lr, validation_split=0.0)
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


def policy_row_text(row: dict) -> str:
    """One row of :func:`policy_study` as a line of text (model, policy, granularity,
    fold, method, accuracy, seconds)."""
    return (f"{row['model']:22s} {row['policy']:6s} {row['granularity'] or '':3s} "
            f"{row['fold'] or '':5s} {row['method']:10s} acc={row['accuracy']:.4f}  "
            f"({row['seconds']:.0f} s)")


def subbyte_qat_seed_cnn(ds, epochs: int, policies, granularities, test_samples: int | None,
                         calibration_samples: int, qat_samples: int, qat_epochs: int,
                         qat_lr: float, on_row=None):
    """Notebook 02, seed CNN: train it in float32 (``models.seed_cnn()``, default seeds), then
    :func:`policy_study` with PTQ and QAT for every policy x granularity.

    Arguments:
        ds: a :class:`tinyopt.Dataset` (its name fills the ``dataset`` column; all of its
            training images are used).
        epochs: float training epochs.
        policies, granularities: named policies (``w8a8``, ``w4a4``, ``w2a2``, ``mixed``) and
            ``PL`` / ``PC``.
        test_samples: the first N test images (None: all).
        calibration_samples, qat_samples, qat_epochs, qat_lr: as :func:`policy_study`.
        on_row: called with each row as it comes (e.g. a
            :class:`tinyopt.workbench.report.Checkpoint`).

    Returns:
        ``(model, rows)``: the trained float model and :func:`policy_study`'s rows.

    Raises:
        ValueError: an unknown policy name or granularity (from ``named_policy``).
    """
    from tinyopt.front import models, train
    t = time.time()
    model = models.seed_cnn()
    train.fit(model, ds, epochs=epochs, progress=False)
    print(f"seed CNN float training: {time.time() - t:.0f} s")
    configs = [(p, g, None) for p in policies for g in granularities]
    rows = policy_study(
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
    on the first ``samples`` of them, then :func:`policy_study`: PTQ for every policy x
    granularity plus ``w4a4/PL/FB``, QAT only for ``qat_configs``.

    Arguments:
        ds: a :class:`tinyopt.Dataset` (28x28).
        alpha, resolution: the member (10 classes, 1 input channel).
        epochs, samples, learning_rate, batch_size: float training (``samples`` None: all;
            ``epochs`` 0: none, the seeded initial model).
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
    if epochs:  # 0: the seeded initial model (Keras refuses epochs=0)
        train.fit(model, (x_train, y_train), epochs=epochs, batch_size=batch_size,
                  learning_rate=learning_rate, progress=False)
    print(f"MobileNet float training: {time.time() - t:.0f} s")
    configs = [(p, g, None) for p in policies for g in granularities] + [("w4a4", "PL", "FB")]
    rows = policy_study(
        f"mobilenet_v1_{alpha:g}_{resolution}", model, x_train, y_train,
        (pad(ds.x_test[:test_samples]), ds.y_test[:test_samples]), configs,
        parse_qat_configs(qat_configs), calibration_samples=calibration_samples,
        qat_samples=qat_samples, qat_epochs=qat_epochs, qat_lr=qat_lr, dataset=ds.name,
        on_row=on_row)
    return model, rows


def ptq_qat_tables(df: pd.DataFrame):
    """The two tables of notebook 02.

    Arguments:
        df: :func:`policy_study` rows.

    Returns:
        ``(refs, pivot)``: float32 and float32+ft accuracy per model; PTQ and QAT accuracy per
        model, policy, granularity and fold.
    """
    pivot = df[df.method.isin(["PTQ", "QAT"])].pivot_table(
        index=["model", "policy", "granularity", "fold"], columns="method", values="accuracy")
    refs = df[df.method.str.startswith("float32")].set_index(["model", "method"]).accuracy.unstack()
    return refs, pivot

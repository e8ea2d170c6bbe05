"""Training: deterministic, validated on a split of the TRAIN set (never the test set)."""

from __future__ import annotations

import numpy as np

import tinyopt  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow is imported)
import tensorflow as tf
import tf_keras as keras
from tqdm.auto import tqdm

from tinyopt.front.data import Dataset


class TqdmProgress(keras.callbacks.Callback):
    """One progress bar over all batches of all epochs, with loss/accuracy in the postfix."""

    def __init__(self, epochs: int, steps_per_epoch: int, desc: str = "train"):
        super().__init__()
        self.epochs, self.steps, self.desc = epochs, steps_per_epoch, desc
        self.bar = None

    def on_train_begin(self, logs=None):
        self.bar = tqdm(total=self.epochs * self.steps, desc=self.desc, unit="batch",
                        mininterval=5.0)  # executed notebooks keep every refresh

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.bar.set_postfix(epoch=epoch + 1, **{k: f"{v:.4f}" for k, v in logs.items()})

    def on_train_end(self, logs=None):
        self.bar.close()


class BuildBeforeTracing(keras.callbacks.Callback):
    """Create the optimizer's slots and the compiled loss and metrics before fit traces its
    train function, so that it is traced once instead of twice.

    A ``tf.function`` whose first trace creates variables is traced a second time (the variables
    lifted out, a trace that must not create any); Keras creates Adam's slots and the metrics'
    totals inside the first trace of ``train_function``. On a QAT model that second trace costs
    seconds per fit, as much as a short epoch. The variables are the same ones, created in the
    same order with the same initial values: the training is bit for bit the same
    (tests/test_train_tracing.py). Built at the first batch, after every other callback's
    ``on_train_begin`` and ``on_epoch_begin`` (which may change what is trainable), from
    ``model.trainable_variables`` as the train step then sees them.
    """

    def __init__(self, y_sample: np.ndarray):
        super().__init__()
        self.y_sample = y_sample
        self.done = False

    def on_train_batch_begin(self, batch, logs=None):
        if self.done:
            return
        self.done = True
        model = self.model
        opt = getattr(model, "optimizer", None)
        if isinstance(opt, keras.optimizers.Optimizer) and not getattr(opt, "_built", False):
            opt.build(model.trainable_variables)
        outputs = getattr(model, "outputs", None) or ()
        if len(outputs) != 1 or None in tuple(outputs[0].shape[1:]):
            return  # built in the trace, as Keras does (one more trace, the same training)
        out = outputs[0]
        y_pred = tf.zeros([1, *out.shape[1:]], out.dtype)
        y_true = tf.constant(self.y_sample)
        if model.compiled_loss is not None and not model.compiled_loss.built:
            model.compiled_loss.build(y_pred)
        if model.compiled_metrics is not None and not model.compiled_metrics.built:
            model.compiled_metrics.build(y_pred, y_true)


def train_arrays(data) -> tuple[np.ndarray, np.ndarray]:
    """The (x_train, y_train) of a Dataset, a ``((x, y), (x_test, y_test))`` pair or ``(x, y)``.

    Inputs must be model-ready floats (see :func:`tinyopt.preprocess_images`)."""
    if isinstance(data, Dataset):
        x, y = data.x_train, data.y_train
    elif (isinstance(data, (tuple, list)) and len(data) == 2
          and isinstance(data[0], (tuple, list))):
        x, y = data[0]
    elif isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = data
    else:
        raise TypeError("data must be a tinyopt.Dataset, (x_train, y_train) or "
                        "((x_train, y_train), (x_test, y_test))")
    if not np.issubdtype(np.asarray(x).dtype, np.floating):
        raise TypeError(f"training images are {np.asarray(x).dtype}; pass model-ready floats "
                        "from tinyopt.preprocess_images (or tinyopt.dataset)")
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} labels")
    return x, y


def split(x, y, validation_split: float, seed: int):
    """A seeded random split of the training arrays into (train, validation)."""
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {validation_split}")
    order = np.random.default_rng(seed).permutation(len(x))
    n_val = int(round(len(x) * validation_split))
    val, tr = order[:n_val], order[n_val:]
    return (x[tr], y[tr]), ((x[val], y[val]) if n_val else None)


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and make TF ops deterministic."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def compile_classifier(model: keras.Model, learning_rate: float = 1e-3) -> keras.Model:
    """Adam + sparse categorical cross-entropy on logits + accuracy (the seed's recipe)."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def fit(model: keras.Model, data, epochs: int = 10, batch_size: int = 64,
        validation_split: float = 0.1, seed: int = 0, learning_rate: float = 1e-3,
        callbacks=(), compile: bool = True, progress: bool = True, desc: str = "train",
        lr_schedule: str = "constant") -> dict:
    """Train ``model`` in place, deterministically for a given seed.

    Arguments:
        model: a ``tf_keras`` model producing logits.
        data: a :class:`tinyopt.Dataset`, ``(x_train, y_train)`` or the nested pair; only
            the training part is used.
        epochs, batch_size: as in Keras (seed defaults: 10, 64).
        validation_split: fraction of the TRAIN set held out (seeded random split).
        seed: seeds Python, NumPy, TF, the split and the shuffling.
        learning_rate: Adam learning rate when ``compile`` is true.
        lr_schedule: ``"constant"`` (``learning_rate`` throughout) or ``"cosine"`` (decayed
            from ``learning_rate`` to 0 over the ``epochs``, batch by batch: Keras'
            ``CosineDecay``). Only with ``compile``.
        callbacks: extra Keras callbacks (e.g. tfmot's ``UpdatePruningStep``).
        compile: compile with :func:`compile_classifier`; False keeps the model's own compile.
        progress: show a tqdm bar.

    Returns:
        The Keras history dict (loss, accuracy, val_loss, val_accuracy per epoch).

    Raises:
        TypeError: the images are not model-ready floats.
        ValueError: an unknown ``lr_schedule``, or a schedule without ``compile``.
    """
    if lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
    if lr_schedule != "constant" and not compile:
        raise ValueError("lr_schedule needs compile=True (with compile=False the model's own "
                         "optimizer sets the learning rate)")
    x, y = train_arrays(data)
    (x_tr, y_tr), val = split(np.asarray(x), np.asarray(y), validation_split, seed)
    set_seed(seed)
    steps = int(np.ceil(len(x_tr) / batch_size))
    if compile:
        lr = learning_rate
        if lr_schedule == "cosine":
            lr = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * steps)
        compile_classifier(model, lr)
    cbs = list(callbacks) + [BuildBeforeTracing(np.asarray(y_tr[:1]))]
    if progress:
        cbs.append(TqdmProgress(epochs, steps, desc))
    history = model.fit(x_tr, y_tr, batch_size=batch_size, epochs=epochs, validation_data=val,
                        shuffle=True, callbacks=cbs, verbose=0)
    return {k: [float(v) for v in vs] for k, vs in history.history.items()}

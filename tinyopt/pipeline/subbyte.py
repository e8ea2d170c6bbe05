"""The sub-byte chain, once: a trained float model + a bit policy + data -> a fake-quant model
(PTQ, then QAT), its integer graph, both accuracies and its memory; optionally deployed on the
emulated Cortex-M7.

Notebooks 02, 04, 05, 06 and the sequence grammar (``mixed``/``ptq``/``qat``/``int``/``mcu``
steps, :mod:`tinyopt.pipeline.sequence`) call :func:`quantize_chain` and :func:`deploy_graph`,
and the data helpers next to them (:func:`accuracy`, :func:`subset`, :func:`resize`,
:func:`recalibrate_bn`), so a number means the same thing wherever it is printed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

RESIZE_MODES = ("bilinear", "pad")


# ------------------------------------------------------------------------------ data helpers
def accuracy(pred, y, batch_size: int = 500) -> float:
    """Top-1 accuracy of ``pred`` on labels ``y``.

    Arguments:
        pred: logits or scores [N, classes] (any shape that reshapes to it), or a tuple
            ``(model, x)``: the Keras model's predictions on ``x``.
        y: integer labels [N].
        batch_size: batch size of ``model.predict`` when ``pred`` is ``(model, x)``.

    Returns:
        The share of rows whose largest value is at the label (a float in [0, 1]).

    Raises:
        ValueError: predictions and labels of different lengths.
    """
    if isinstance(pred, tuple):
        model, x = pred
        pred = model.predict(x, batch_size=batch_size, verbose=0)
    y = np.asarray(y).reshape(-1)
    pred = np.asarray(pred)
    if pred.size % max(len(y), 1) or len(pred) != len(y):
        raise ValueError(f"accuracy: {len(pred)} predictions for {len(y)} labels")
    return float(np.mean(np.argmax(pred.reshape(len(y), -1), 1) == y))


def subset(x, y, n: int | None, seed: int = 0, *stream: int):
    """A random subset of ``n`` images (sorted indices, so the order of ``x`` is kept).

    The generator is seeded by ``(seed, *stream)``: a draw does not depend on which draws came
    before it (a partial grid of runs reproduces the full one).

    Arguments:
        x, y: images and labels of the same length.
        n: how many; None (or n >= len(x)) returns ``x, y`` unchanged.
        seed, stream: non-negative integers keying the draw.

    Returns:
        ``(x_subset, y_subset)``.

    Raises:
        ValueError: ``n`` < 1, or ``x`` and ``y`` of different lengths.
    """
    if len(x) != len(y):
        raise ValueError(f"subset: {len(x)} images but {len(y)} labels")
    if n is None or n >= len(x):
        return x, y
    if n < 1:
        raise ValueError(f"subset: n must be >= 1 or None, got {n}")
    idx = np.sort(np.random.default_rng([seed, *stream]).choice(len(x), n, replace=False))
    return x[idx], y[idx]


def resize(x: np.ndarray, size: int, mode: str = "bilinear", chunk: int = 2000) -> np.ndarray:
    """Square float images [N, H, H, C] in [0, 1] -> [N, size, size, C].

    Arguments:
        x: the images.
        size: the new side in pixels.
        mode: "bilinear" (values stay in [0, 1]) or "pad" (centred zero padding; cannot shrink).
        chunk: images per TensorFlow call (bounds memory).

    Returns:
        float32 images (``x`` itself when the size is already right).

    Raises:
        ValueError: an unknown mode, or "pad" asked to shrink.
    """
    if mode not in RESIZE_MODES:
        raise ValueError(f"resize mode must be one of {RESIZE_MODES}, got {mode!r}")
    if size == x.shape[1]:
        return x
    if mode == "pad":
        if size < x.shape[1]:
            raise ValueError(f"resize mode 'pad' cannot shrink {x.shape[1]} px to {size} px; "
                             "use 'bilinear'")
        lo = (size - x.shape[1]) // 2
        hi = size - x.shape[1] - lo
        return np.pad(x, ((0, 0), (lo, hi), (lo, hi), (0, 0)))
    import tensorflow as tf
    return np.concatenate([tf.image.resize(x[i:i + chunk], (size, size), "bilinear").numpy()
                           for i in range(0, len(x), chunk)]).clip(0, 1).astype(np.float32)


def recalibrate_bn(model, x: np.ndarray):
    """Set every BatchNormalization's moving mean / variance to the batch statistics of ``x``
    (one forward pass in training mode with momentum 0), in place.

    Why: after a brief training, Keras' moving averages (momentum 0.99) lag behind the weights,
    and the inference-mode model can sit at chance while the training-mode one is far above it
    (notebooks 05 and 06). A standard BN re-estimation.

    Arguments:
        model: a tf_keras model (layers without BN are left alone).
        x: model-ready images, one batch (a few thousand at most).

    Returns:
        ``model`` (for chaining).
    """
    bns = [lay for lay in model.layers if type(lay).__name__ == "BatchNormalization"]
    saved = [lay.momentum for lay in bns]
    try:
        for lay in bns:
            lay.momentum = 0.0
        model(x, training=True)  # one batch: with momentum 0 the statistics are those of all of x
    finally:
        for lay, m in zip(bns, saved):
            lay.momentum = m
    return model


def finetuned_copy(model, data, epochs: int, learning_rate: float, validation_split: float = 0.1,
                   seed: int = 0):
    """A copy of the float ``model`` fine-tuned like QAT fine-tunes (same epochs, images and
    learning rate): the fair float reference for a QAT accuracy.

    Arguments:
        model: a trained tf_keras model (not modified).
        data: ``(x, y)`` training images and labels.
        epochs, learning_rate, validation_split, seed: as :func:`tinyopt.front.train.fit`.

    Returns:
        The fine-tuned copy.
    """
    import tf_keras as keras

    from tinyopt.front import train
    ft = keras.models.clone_model(model)
    ft.set_weights(model.get_weights())
    train.fit(ft, data, epochs=epochs, learning_rate=learning_rate,
              validation_split=validation_split, seed=seed, progress=False)
    return ft


# ------------------------------------------------------------------------------ the chain
@dataclass
class ChainResult:
    """What :func:`quantize_chain` produced.

    Attributes:
        policy: the bit policy.
        qmodel: the fake-quant model (after QAT when it ran; biases snapped to the int32 grid).
        graph: its IntegerGraph (None with ``integer=False``).
        ptq_acc: fake-quant accuracy right after PTQ (None unless asked).
        fakequant_acc: fake-quant accuracy after QAT, before the bias snap.
        snapped_fakequant_acc: the same after :func:`tinyopt.mixed.lower.snap_bias`.
        integer_acc: the integer graph's accuracy in the bit-exact simulator (None without graph).
        snapped_integer_acc: the same for the graph of the snapped model (the same graph unless
            ``check_snap`` converted it again and found otherwise).
        layer_errors: :func:`tinyopt.mixed.verify.compare`'s per-layer table (``compare_samples``).
        top1_agreement, snapped_top1_agreement: share of test images on which the fake-quant
            model (before / after the snap) and the integer graph pick the same class.
        flash_bytes, ram_bytes: the memory model's flash and peak RAM for this policy.
        weight_bytes, macs, mac_mix: packed weight bytes, MACs and MACs per (w, a) bits pair
            from :func:`tinyopt.mixed.build.summary`.
        seconds: wall time per phase (ptq, qat, sim, total).
        test_images: how many images the accuracies are on.
    """

    policy: object
    qmodel: object
    graph: object = None
    ptq_acc: float | None = None
    fakequant_acc: float | None = None
    snapped_fakequant_acc: float | None = None
    integer_acc: float | None = None
    snapped_integer_acc: float | None = None
    layer_errors: object = None
    top1_agreement: float | None = None
    snapped_top1_agreement: float | None = None
    flash_bytes: int | None = None
    ram_bytes: int | None = None
    weight_bytes: int | None = None
    macs: int | None = None
    mac_mix: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    test_images: int = 0

    def row(self) -> dict:
        """The scalar results as one flat dict (policy bits joined with '/')."""
        p = self.policy
        out = {"granularity": p.granularity, "weight_bits": "/".join(map(str, p.weight_bits)),
               "act_bits": "/".join(map(str, p.act_bits)), "fold": "/".join(p.fold)}
        for k in ("ptq_acc", "fakequant_acc", "snapped_fakequant_acc", "integer_acc",
                  "snapped_integer_acc", "top1_agreement", "snapped_top1_agreement",
                  "flash_bytes", "ram_bytes", "weight_bytes", "macs", "test_images"):
            out[k] = getattr(self, k)
        out.update(self.mac_mix)
        out.update({f"{k}_seconds": round(v, 1) for k, v in self.seconds.items()})
        return out


def quantize_chain(model, policy, calibration: np.ndarray, test, qat_data=None,
                   qat_epochs: int = 1, qat_lr: float = 1e-4, batch_size: int = 64,
                   validation_split: float = 0.1, seed: int = 0, ptq_accuracy: bool = False,
                   integer: bool = True,
                   compare_samples: int = 0, check_snap: bool = False,
                   progress: bool = False) -> ChainResult:
    """PTQ to ``policy`` -> QAT -> integer graph -> bit-exact simulator (and the bias snap).

    Arguments:
        model: the trained float tf_keras chain model (not modified).
        policy: a :class:`tinyopt.mixed.policy.Policy` for ``model``.
        calibration: float images for PTQ's ranges (a few hundred).
        test: ``(x_test, y_test)`` for every accuracy (float images, labels).
        qat_data: ``(x, y)`` for QAT; None or ``qat_epochs=0`` skips QAT (PTQ only).
        qat_epochs, qat_lr, batch_size, validation_split, seed: QAT training (Adam,
            :func:`tinyopt.front.train.fit`; ``validation_split`` of ``qat_data`` is held out).
        ptq_accuracy: also measure the fake-quant accuracy right after PTQ (before QAT).
        integer: lower to the integer graph and run it (False: fake quant only).
        compare_samples: > 0: trace every layer's integer-vs-fake-quant difference on that many
            test images (:func:`tinyopt.mixed.verify.compare`, before the bias snap) into
            ``layer_errors``.
        check_snap: convert the bias-snapped model again and measure that graph (it should be
            the same graph; ``snapped_integer_acc`` then says so independently).
        progress: show the QAT progress bar.

    Returns:
        A :class:`ChainResult`.

    Raises:
        ValueError: a policy that does not match the model (from quantize_mixed).
    """
    from tinyopt.front import train
    from tinyopt.mixed import build, lower, memory, ptq
    x_te, y_te = test
    t0 = time.perf_counter()
    q = ptq.quantize_mixed(model, policy, calibration)
    r = ChainResult(policy=policy, qmodel=q, test_images=len(y_te))
    if ptq_accuracy:
        r.ptq_acc = accuracy((q, x_te), y_te)
    t1 = time.perf_counter()
    if qat_data is not None and qat_epochs:
        train.fit(q, qat_data, epochs=qat_epochs, seed=seed, learning_rate=qat_lr,
                  batch_size=batch_size, validation_split=validation_split, progress=progress,
                  desc="qat")
    t2 = time.perf_counter()
    fake = np.argmax(q.predict(x_te, batch_size=500, verbose=0), 1)
    r.fakequant_acc = float(np.mean(fake == y_te))
    pred = None
    if integer:
        r.graph = lower.convert(q)
        pred = _integer_pred(r.graph, x_te, len(y_te))
        r.integer_acc = float(np.mean(pred == y_te))
        r.top1_agreement = float(np.mean(pred == fake))
        if compare_samples:
            from tinyopt.mixed import verify
            r.layer_errors = verify.compare(q, r.graph, x_te[:compare_samples])["layers"]
    t3 = time.perf_counter()
    lower.snap_bias(q)  # stored biases onto the int32 grid: what the integer graph computes
    snapped = np.argmax(q.predict(x_te, batch_size=500, verbose=0), 1)
    r.snapped_fakequant_acc = float(np.mean(snapped == y_te))
    if integer:
        if check_snap:  # convert the snapped model again: the graph must not change
            r.graph = lower.convert(q)
            pred = _integer_pred(r.graph, x_te, len(y_te))
        r.snapped_integer_acc = float(np.mean(pred == y_te))
        r.snapped_top1_agreement = float(np.mean(pred == snapped))
    t4 = time.perf_counter()
    r.seconds = {"ptq": t1 - t0, "qat": t2 - t1, "sim": t3 - t2, "total": t4 - t0}
    r.flash_bytes = int(memory.flash_bytes(model, policy))
    r.ram_bytes = int(memory.peak_ram_bytes(model, policy))
    total = build.summary(q).set_index("layer").loc["total"]
    r.weight_bytes, r.macs = int(total["weight_bytes"]), int(total["macs"])
    r.mac_mix = {c: int(total[c]) for c in total.index
                 if str(c).startswith("macs_w") and total[c] == total[c] and total[c] > 0}
    return r


def _integer_pred(graph, x, n):
    from tinyopt.integer import sim
    logits = np.asarray(sim.run(graph, graph.quantize_input(x)))
    return np.argmax(logits.reshape(n, -1), 1)


def subbyte_mac_share(mac_mix: dict) -> float:
    """Share of the MACs not at w8a8, from :attr:`ChainResult.mac_mix` (0 when there are none)."""
    total = sum(mac_mix.values())
    return 0.0 if not total else sum(v for k, v in mac_mix.items() if k != "macs_w8a8") / total


# ------------------------------------------------------------------------------ deployment
def deploy_graph(graph, x_codes: np.ndarray, build_dir, name: str | None = None,
                 host_images: int = 20, mcu_images: int = 5, run_mcu: bool = True,
                 strict: bool = True) -> dict:
    """Build ``graph`` as C, check it bit-exact on the host (and on the emulated Cortex-M7), and
    measure the deployed footprint.

    Arguments:
        graph: an IntegerGraph.
        x_codes: integer input codes (at least ``max(host_images, mcu_images)``).
        build_dir: folder for the sources and builds.
        name: sub-folder (default: the graph's name).
        host_images, mcu_images: images for the bit-exactness checks.
        run_mcu: False skips QEMU (no ELF flash/RAM/instruction figures then).
        strict: raise when the C output differs from the simulator's (a deployment bug, not a
            number to report); False leaves the mismatch counts in the summary.

    Returns:
        :func:`tinyopt.deploy.mcu.deploy`'s dict, its "summary" extended with
        ``params_flash_bytes`` (weights + bias/requantization arrays in the C build),
        ``code_bytes`` (.text + .ARM.exidx, with QEMU), ``deploy_exact`` and
        ``deploy_seconds``.

    Raises:
        RuntimeError: with ``strict``, an image whose C output is not the simulator's.
    """
    from tinyopt.deploy import mcu
    t0 = time.perf_counter()
    res = mcu.deploy(graph, x_codes, build_dir, name=name, host_images=host_images,
                     mcu_images=mcu_images, run_mcu=run_mcu)
    s = res["summary"]
    exact = s["host_images_exact"] == s["host_images"] and \
        s.get("mcu_images_exact", 0) == s.get("mcu_images", 0)
    if strict and not exact:
        raise RuntimeError(f"{s['model']}: the C build is not bit-exact with the simulator "
                           f"(host {s['host_images_exact']}/{s['host_images']}, MCU "
                           f"{s.get('mcu_images_exact')}/{s.get('mcu_images')})")
    s["deploy_exact"] = bool(exact)
    s["params_flash_bytes"] = int(s["param_bytes_c"])
    if "text" in s:
        s["code_bytes"] = int(s["text"] + s["exidx"])
    s["deploy_seconds"] = round(time.perf_counter() - t0, 1)
    return res

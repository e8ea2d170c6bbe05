"""The one home for checking what callers hand to the library: image arrays against the model
they are for, and a model's weights.

Every public entry point that takes images (``calibration=``, ``x``) runs :func:`check_images`
before any work, and every conversion runs :func:`check_weights`, so bad data fails at once with
an error that names the argument (or the layer), says what was expected and how to fix it,
instead of a chance-level model, NaN outputs, an error deep in the converter or a crashed
interpreter process.

What :func:`check_images` enforces, in this order:

1. an array of numbers (``TypeError`` otherwise);
2. shape ``[N, *model.input_shape[1:]]`` with N >= 1 (``ValueError``; a missing channel axis is
   named and ``tinyopt.preprocess_images`` is the fix);
3. a floating dtype (``TypeError``: raw ``uint8`` pixels from ``tinyopt.load_raw_dataset`` must go
   through ``tinyopt.preprocess_images``; integer arrays are not model inputs);
4. every value finite (``ValueError`` with the NaN / Inf counts and the first bad image);
5. values on the scale the model expects (:func:`input_range`): a fake-quant model refuses
   values beyond its input quantizer's range by more than half its span (e.g. ``0..255`` into
   ``[0, 1]``), and a model that scales pixels itself (a leading ``Rescaling(1/255)``) refuses
   ``[0, 1]`` data. Small excursions (noise, augmentation) pass. Any other model (tinyopt's
   own, and a user's network taking audio features, ``[-1, 1]`` images, ...) has no range we
   can know: there only what is unmistakably a mistake is refused, namely raw pixels (every
   value an integer in 0..255, some above 1: ``preprocess`` forgotten; a model that really
   takes 0..255 says so with a leading ``Rescaling``) and magnitudes beyond
   :data:`MAX_MAGNITUDE`, which no 8-bit quantization range survives.

No TensorFlow here: models are duck-typed (``input_shape``, ``layers``, ``weights``), so the
integer and mixed stages can use these checks too.
"""

from __future__ import annotations

import numpy as np

PREPROCESS_FIX = ("tinyopt.preprocess_images(x) (uint8 [N, 28, 28] -> float32 [N, 28, 28, 1] "
                  "in [0, 1])")
# A value range counts as "pixel scale" from this upper bound on.
PIXEL_HI = 128.0
# Beyond this no model input is plausible, and the converter's range arithmetic breaks down.
MAX_MAGNITUDE = 1e6


def _model_name(model) -> str:
    return repr(getattr(model, "name", type(model).__name__))


def model_input_shape(model) -> tuple:
    """The per-image input shape of a single-input model (``model.input_shape[1:]``; None for a
    free dimension).

    Raises:
        TypeError: the object has no ``input_shape`` (not a built Keras model).
        ValueError: the model has several inputs.
    """
    shape = getattr(model, "input_shape", None)
    if shape is None:
        raise TypeError(f"expected a built Keras model, got {type(model).__name__}")
    if isinstance(shape, list):
        raise ValueError(f"model {_model_name(model)} has {len(shape)} inputs; tinyopt handles "
                         "single-input models only")
    return tuple(None if d is None else int(d) for d in shape[1:])


def input_range(model) -> tuple[float, float] | None:
    """The real value range the model's input expects.

    - a fake-quant model (``tinyopt.quantize_qat`` / ``tinyopt.quantize_ptq``): its 8-bit input
      quantizer's ``(lo, hi)``;
    - a model whose first layer is ``Rescaling(1/255)`` (it scales pixels itself): ``(0, 255)``;
    - any other model: None (unknown; only raw pixels and absurd magnitudes are refused). A
      network's input range is not written in a plain Keras model: tinyopt's own models take
      ``tinyopt.preprocess_images`` output in ``[0, 1]``, a user's may take audio features.
    """
    for layer in getattr(model, "layers", []):
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if kind == "QuantInput":
            return float(layer.lo), float(layer.hi)
        if kind == "Rescaling":
            scale = np.asarray(getattr(layer, "scale", 1.0), np.float64).ravel()
            if scale.size and min(abs(float(scale[0]) * 255.0 - 1.0),
                          abs(float(scale[0]) * 127.5 - 1.0)) < 1e-3:
                return 0.0, 255.0
            return None
        break
    return None


def _shape_text(shape) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def check_images(x, model, argument: str = "x", where: str = "") -> np.ndarray:
    """Check ``x`` is a batch of model-ready images for ``model`` (see the module docstring).

    Arguments:
        x: the array passed by the caller.
        model: the Keras model it is meant for.
        argument: the caller's argument name, used in the messages (e.g. ``"calibration"``).
        where: the entry point, used in the messages (e.g. ``"to_tflite"``).

    Returns:
        ``x`` as a numpy array (same dtype; nothing is rescaled or cast).

    Raises:
        TypeError: not an array of numbers, or not a floating dtype (raw uint8 pixels).
        ValueError: wrong shape, empty, NaN / Inf values, or values on the wrong scale.
    """
    what = f"{where}: {argument}" if where else argument
    expected = model_input_shape(model)
    want = _shape_text(("N", *expected))
    if x is None:
        raise TypeError(f"{what} is None; pass model-ready images of shape {want} "
                        f"(e.g. {PREPROCESS_FIX})")
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise TypeError(f"{what} is not an array of images ({exc}); pass a numpy array of shape "
                        f"{want}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                   or arr.dtype == np.bool_):
        raise TypeError(f"{what} has dtype {arr.dtype}, not numbers; pass a float32 numpy array "
                        f"of shape {want}")
    # 2. shape
    got = tuple(arr.shape)
    fits = len(got) == len(expected) + 1 and all(
        e is None or g == e for g, e in zip(got[1:], expected))
    if not fits:
        hint = ""
        if len(got) == len(expected) and expected and expected[-1] == 1 and all(
                e is None or g == e for g, e in zip(got[1:], expected[:-1])):
            hint = (f"; the channel axis is missing: use {PREPROCESS_FIX}, or "
                    f"{argument}[..., None] if the values are already scaled")
        elif len(got) == len(expected):
            hint = f"; a single image? pass {argument}[None] (a batch of one)"
        else:
            hint = f"; pass images shaped like the model input (e.g. {PREPROCESS_FIX})"
        raise ValueError(f"{what} has shape {_shape_text(got)} but model {_model_name(model)} "
                         f"takes {want}{hint}")
    if got[0] == 0:
        raise ValueError(f"{what} is empty (shape {_shape_text(got)}); pass at least one image")
    # 3. dtype
    if not np.issubdtype(arr.dtype, np.floating):
        hint = (f"raw pixels (e.g. from tinyopt.load_raw_dataset)? Fix: {PREPROCESS_FIX}"
                if arr.dtype == np.uint8 else "cast to float32 and scale to the model's range")
        expect = input_range(model)
        scale = "" if expect is None else f" in [{expect[0]:g}, {expect[1]:g}]"
        raise TypeError(f"{what} has dtype {arr.dtype} but model {_model_name(model)} takes float "
                        f"images{scale}; {hint}")
    # 4. finite
    finite = np.isfinite(arr)
    if not finite.all():
        n_nan, n_inf = int(np.isnan(arr).sum()), int(np.isinf(arr).sum())
        bad = np.flatnonzero(~finite.reshape(len(arr), -1).all(axis=1))
        raise ValueError(f"{what} holds {n_nan} NaN and {n_inf} Inf values (in {len(bad)} of "
                         f"{len(arr)} images, the first is image {int(bad[0])}); every value must "
                         f"be finite. Fix: drop or repair those images (e.g. "
                         f"np.isfinite({argument}).all(axis={tuple(range(1, arr.ndim))})), "
                         "or rebuild them with "
                         f"{PREPROCESS_FIX}")
    # 5. scale
    expect = input_range(model)
    vmin, vmax = float(arr.min()), float(arr.max())
    if max(abs(vmin), abs(vmax)) > MAX_MAGNITUDE:
        raise ValueError(f"{what} spans [{vmin:g}, {vmax:g}]: beyond +-{MAX_MAGNITUDE:g} no "
                         "8-bit quantization range survives; rescale the data (e.g. "
                         f"{PREPROCESS_FIX})")
    if expect is None:
        if vmin >= 0 and 1 < vmax <= 255 and bool(np.all(arr == np.round(arr))):
            raise ValueError(f"{what} holds raw pixel values (integers 0..{vmax:g}) but model "
                             f"{_model_name(model)} does not scale pixels itself; Fix: "
                             f"{PREPROCESS_FIX}, or, if the model really takes 0..255, start it "
                             "with keras.layers.Rescaling(1/255) so the scale is part of it")
        return arr
    lo, hi = expect
    span = hi - lo
    if hi < PIXEL_HI and (vmax > hi + span / 2 or vmin < lo - span / 2):
        looks = ("pixel-scale values (0..255)? " if vmax > PIXEL_HI / 2 else "")
        raise ValueError(f"{what} spans [{vmin:g}, {vmax:g}] but model {_model_name(model)} "
                         f"expects inputs in [{lo:g}, {hi:g}]; {looks}Fix: scale once with "
                         f"{PREPROCESS_FIX}, and pass its output")
    if hi >= PIXEL_HI and (vmax <= 1.0 or vmax > hi + span / 2 or vmin < lo - span / 2):
        raise ValueError(f"{what} spans [{vmin:g}, {vmax:g}] but model {_model_name(model)} "
                         f"scales pixels itself and expects inputs in [{lo:g}, {hi:g}]; pass "
                         "raw pixel values (as tinyopt.load_raw_dataset returns them, cast to "
                         "float32), not tinyopt.preprocess_images output")
    return arr


def _layers(model):
    """Every layer of a model, nested models included."""
    for layer in getattr(model, "layers", []):
        yield layer
        if hasattr(layer, "layers"):
            yield from _layers(layer)


def check_weights(model, where: str = "") -> None:
    """Refuse a model holding a NaN or Inf weight (or any other variable: BN statistics, PACT
    clips, quantizer ranges), naming the layer and the variable.

    Raises:
        ValueError: the first layer with a non-finite variable, e.g. after diverged training.
    """
    seen = set()
    for layer in _layers(model):
        for var in getattr(layer, "weights", []):
            if id(var) in seen:
                continue
            seen.add(id(var))
            values = np.asarray(var.numpy() if hasattr(var, "numpy") else var)
            if not np.issubdtype(values.dtype, np.floating) or np.isfinite(values).all():
                continue
            n_nan, n_inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
            var_name = str(getattr(var, "name", "?")).split("/")[-1].split(":")[0]
            prefix = f"{where}: " if where else ""
            raise ValueError(f"{prefix}layer {layer.name!r} of model {_model_name(model)} has a "
                             f"non-finite weight: {var_name} holds {n_nan} NaN and {n_inf} Inf "
                             f"of {values.size} values. Every weight must be finite (training "
                             "diverged? lower the learning rate, or reload the last good "
                             "weights) before converting or quantizing")


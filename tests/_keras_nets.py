"""Small Keras nets the TF converter turns into each op of the LiteRT importer (residual ADD,
CONCATENATION, Conv1D's EXPAND_DIMS / SQUEEZE, ZeroPadding2D's PAD, a SOFTMAX head, MEAN,
strided / non-square / depth-multiplier convolutions, and a tfmot QAT model converted to int8).
Untrained (seeded initialisers, a random bias so that ReLUs do not saturate): bit-exactness does
not need accuracy."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def _keras():
    import tf_keras as keras
    keras.utils.set_random_seed(0)
    return keras


def residual():
    keras = _keras()
    L = keras.layers
    x = inp = keras.Input((12, 12, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    y = L.Conv2D(8, (3, 1), padding="same", activation="relu")(x)
    y = L.DepthwiseConv2D((1, 3), padding="same", depth_multiplier=1)(y)
    x = L.Activation("relu")(L.Add()([x, y]))
    x = L.DepthwiseConv2D(3, strides=2, depth_multiplier=2, activation="relu6")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.GlobalAveragePooling2D()(x)
    out = L.Dense(5)(x)
    return keras.Model(inp, out, name="residual")


def concat():
    keras = _keras()
    L = keras.layers
    x = inp = keras.Input((10, 10, 2))
    a = L.Conv2D(4, 1, activation="relu")(x)
    b = L.Conv2D(6, 3, padding="same", activation="relu")(x)
    x = L.Concatenate()([a, b])
    x = L.AveragePooling2D(2, padding="same")(x)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(4)(x), name="concat")


def conv1d():
    keras = _keras()
    L = keras.layers
    x = inp = keras.Input((32, 3))
    x = L.Conv1D(8, 5, strides=2, padding="same", activation="relu")(x)
    x = L.Conv1D(8, 3, activation="relu")(x)
    x = L.GlobalAveragePooling1D()(x)
    return keras.Model(inp, L.Dense(3)(x), name="conv1d")


def zero_padding():
    keras = _keras()
    L = keras.layers
    x = inp = keras.Input((9, 9, 2))
    x = L.ZeroPadding2D(((1, 2), (0, 1)))(x)
    x = L.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(3)(x), name="zero_padding")


def softmax_head():
    keras = _keras()
    L = keras.layers
    x = inp = keras.Input((8, 8, 1))
    x = L.Conv2D(4, 3, activation="relu")(x)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(6, activation="softmax")(x), name="softmax_head")


def input_concat():
    """Concatenates the input with a convolution of it: two tensors of different scales, so
    the converter requantizes one (QUANTIZE int8 -> int8) under QAT."""
    keras = _keras()
    L = keras.layers
    x = inp = keras.Input((8, 8, 2))
    a = L.Conv2D(3, 3, padding="same", activation="relu")(x)
    x = L.Concatenate()([x, a])
    x = L.Conv2D(4, 3, strides=2, activation="relu")(x)
    x = L.Flatten()(x)
    return keras.Model(inp, L.Dense(3)(x), name="input_concat")


NETS = {"input_concat": input_concat, "residual": residual, "concat": concat, "conv1d": conv1d,
        "zero_padding": zero_padding, "softmax_head": softmax_head}


def randomize_bias(model, seed: int = 0):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if getattr(layer, "use_bias", False) and hasattr(layer, "bias") and layer.bias is not None:
            b = layer.bias.numpy()
            layer.bias.assign(rng.normal(0.0, 0.1, b.shape).astype(b.dtype))
    return model


def calibration(model, n: int = 64, seed: int = 0) -> np.ndarray:
    shape = tuple(int(d) for d in model.input_shape[1:])
    return np.random.default_rng(seed).uniform(-1, 1, (n, *shape)).astype(np.float32)


def to_int8(model) -> bytes:
    from tinyopt.litert.convert import to_tflite
    return to_tflite(model, "int8", calibration=calibration(model))


QAT_STEPS = 3  # enough to vary; 20 would move the ranges so far that no QUANTIZE is needed


def build(name: str) -> bytes:
    """The int8 flatbuffer of net ``name`` ("qat_<name>": its QAT model converted), converted
    once per test run: kept in the run's cache folder ($TINYOPT_CACHE, a temporary folder
    tests/conftest.py makes per run and removes after it), which the xdist workers share, so
    the test files that import the same nets convert them once (written through a temporary
    file and a rename: a worker never reads half a file)."""
    return _cached(name, lambda: _build(name))


def unet_int8() -> bytes:
    """The small U-Net of the transposed-convolution tests (8 x 8 x 3; Conv2DTranspose 'same'
    K = 3 and 'valid' K = 2, strides 2, random biases) as int8, converted once per test run
    (:func:`build`'s cache). Not in :data:`NETS` (the tests looping over those do not take it)."""
    def make() -> bytes:
        from tinyopt.litert.convert import to_tflite
        keras = _keras()
        L = keras.layers
        x = inp = keras.Input((8, 8, 3))
        a = L.Conv2D(4, 3, padding="same", activation="relu")(x)
        b = L.MaxPooling2D(2)(a)
        b = L.Conv2D(8, 3, padding="same", activation="relu")(b)
        u = L.Conv2DTranspose(4, 3, strides=2, padding="same")(b)
        v = L.Conv2DTranspose(3, 2, strides=2, padding="valid")(b)
        y = L.Conv2D(1, 1, activation="sigmoid")(L.Concatenate()([a, u, v]))
        model = randomize_bias(keras.Model(inp, y))
        return to_tflite(model, "int8", calibration=calibration(model), batch_size=1)
    return _cached("unet", make)


def _cached(name: str, make) -> bytes:
    folder = os.environ.get("TINYOPT_CACHE")
    path = Path(folder) / "keras_nets" / f"{name}.tflite" if folder else None
    if path is not None and path.is_file():
        return path.read_bytes()
    data = make()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
    return data


def _build(name: str) -> bytes:
    if name.startswith("qat_"):  # tfmot 8-bit QAT (tinyopt.litert.qat.quantize), then int8
        from tinyopt.litert.qat import quantize
        q = quantize(randomize_bias(NETS[name[4:]]()))
        # untrained, the fake-quant ranges keep their initial values and the int8 model gives
        # one constant output: a few forward passes in training mode move the ranges onto the
        # data (no weight changes), so the outputs vary and the check has teeth
        for _ in range(QAT_STEPS):
            q(calibration(q), training=True)
        return to_int8(q)
    return to_int8(randomize_bias(NETS[name]()))

"""Shared fixtures. Tests that need the real datasets skip with a reason when `make data` has not
run (make test always runs it first)."""
from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

import tinyopt  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from tinyopt.front import data as tdata

REPO = Path(__file__).resolve().parents[1]


def write_idx(folder: Path, name: str, n_train: int = 20, n_test: int = 10, seed: int = 0) -> dict:
    """Write a tiny, valid IDX dataset; returns the {file: sha256} map for it."""
    rng = np.random.default_rng(seed)
    folder = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        with gzip.open(folder / f"{split}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
        with gzip.open(folder / f"{split}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 0x801, n) + labels.tobytes())
    return {f: tdata.sha256(folder / f) for f in tdata.FILES.values()}


@pytest.fixture
def tiny_data(tmp_path, monkeypatch):
    """A tiny 'mnist' under $TINYOPT_DATA with the package checksums patched to match it."""
    sums = write_idx(tmp_path, "mnist")
    monkeypatch.setenv("TINYOPT_DATA", str(tmp_path))
    monkeypatch.setitem(tdata.CHECKSUMS, "mnist", sums)
    return tmp_path / "mnist"


def have_real(name: str) -> bool:
    try:
        tdata.find_dir(name)
        return True
    except tdata.DatasetError:
        return False


@pytest.fixture(scope="session")
def fashion():
    if not have_real("fashion_mnist"):
        pytest.skip("Fashion-MNIST not fetched (run `make data`)")
    return tdata.dataset("fashion_mnist")


@pytest.fixture(autouse=True)
def _quiet_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    yield


def run_notebook(name: str, tmp_path: Path, needs=("fashion_mnist",), **params) -> Path:
    """Execute ``notebooks/<name>`` under papermill with ``params`` (run from the repo root, as
    ``make`` does) into ``tmp_path``; skip when a dataset in ``needs`` is not fetched.

    Returns:
        The path of the executed notebook.
    """
    import papermill as pm
    missing = [d for d in needs if not have_real(d)]
    if missing:
        pytest.skip(f"{', '.join(missing)} not fetched (run `make data`)")
    out = tmp_path / Path(name).name
    pm.execute_notebook(str(REPO / "notebooks" / name), str(out), parameters=params,
                        cwd=str(REPO), progress_bar=False, kernel_name="python3")
    return out


def small_mobilenet(size: int = 28, classes: int = 10, bn_momentum: float = 0.99,
                    maxpool: bool = True, name: str = "mobilenet_style"):
    """A 5-layer MobileNetV1-style net with the ops that matter: conv 3x3/2 SAME, dw 3x3/1, pw,
    dw 3x3/2 SAME, pw (BN + ReLU6 each, no biases), [max pool 3x3/2 SAME], average pool to 1x1,
    flatten, dense. Seeded; ``bn_momentum`` 0.5 lets a short fit set the BN statistics."""
    import tf_keras as keras
    L = keras.layers
    keras.utils.set_random_seed(0)

    def block(x, conv, name):
        x = L.BatchNormalization(momentum=bn_momentum, name=f"{name}_bn")(conv(x))
        return L.ReLU(6.0, name=f"{name}_relu")(x)

    inp = keras.Input((size, size, 1))
    x = block(inp, L.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="conv0"),
              "conv0")
    x = block(x, L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw1"), "dw1")
    x = block(x, L.Conv2D(16, 1, use_bias=False, name="pw1"), "pw1")
    x = block(x, L.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False, name="dw2"),
              "dw2")
    x = block(x, L.Conv2D(16, 1, use_bias=False, name="pw2"), "pw2")
    if maxpool:
        x = L.MaxPooling2D(3, strides=2, padding="same", name="maxpool")(x)
    x = L.AveragePooling2D(int(x.shape[1]), name="avgpool" if maxpool else "pool")(x)
    x = L.Dense(classes, name="fc")(L.Flatten(name="flatten")(x))
    return keras.Model(inp, x, name=name)

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
from tinyopt import data as tdata

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

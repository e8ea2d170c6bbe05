"""Trained third-party networks to measure tinyopt on: the four MLPerf Tiny reference models.

They are not in the repository (not ours to re-license in it, and several MB): tinyopt finds them
in ``$TINYOPT_MODELS/mlperf_tiny``, ``<checkout>/models/mlperf_tiny`` or, for a checkout with the
project's ``shared`` folder beside it, ``<checkout>/../shared/models/mlperf_tiny``. Each file is
checked against the SHA-256 the folder's ``SHA256SUMS`` publishes before it is used, so a changed
or truncated model cannot produce numbers silently.
"""

from __future__ import annotations

import os
from pathlib import Path

from tinyopt.front.data import REPO_ROOT, sha256

MLPERF_TINY = ("ic_resnet8", "kws_dscnn", "vww_mobilenet", "ad_fcae")
# What each network is, for tables (the folder's README has the details).
MLPERF_TINY_TASKS = {"ic_resnet8": "image classification (CIFAR-10 32x32x3)",
                     "kws_dscnn": "keyword spotting (49x10 MFCC)",
                     "vww_mobilenet": "visual wake words (96x96x3)",
                     "ad_fcae": "anomaly detection (640 log-mel features)"}


class ModelNotFound(FileNotFoundError):
    """A reference model is missing or is not the published file."""


def mlperf_tiny_dirs() -> list[Path]:
    """The folders searched for the MLPerf Tiny models, in order."""
    dirs = []
    if os.environ.get("TINYOPT_MODELS"):
        dirs.append(Path(os.environ["TINYOPT_MODELS"]) / "mlperf_tiny")
    dirs += [REPO_ROOT / "models" / "mlperf_tiny",
             REPO_ROOT.parent / "shared" / "models" / "mlperf_tiny"]
    return dirs


def mlperf_tiny_path(name: str, kind: str = "int8") -> Path:
    """The checked path of one MLPerf Tiny model file.

    Arguments:
        name: one of :data:`MLPERF_TINY`.
        kind: ``"int8"`` (the full-int8 ``.tflite``) or ``"keras"`` (the trained Keras model:
            ``.h5``, or the SavedModel folder for kws_dscnn).

    Returns:
        The path, after its SHA-256 matched the folder's ``SHA256SUMS`` (files only).

    Raises:
        ValueError: unknown name or kind.
        ModelNotFound: no folder holds the file, or it does not match its checksum.
    """
    if name not in MLPERF_TINY:
        raise ValueError(f"unknown MLPerf Tiny model {name!r}; choose one of {MLPERF_TINY}")
    if kind == "int8":
        fname = f"{name}_int8.tflite"
    elif kind == "keras":
        fname = "kws_dscnn_savedmodel" if name == "kws_dscnn" else f"{name}.h5"
    else:
        raise ValueError(f"kind must be 'int8' or 'keras', got {kind!r}")
    dirs = mlperf_tiny_dirs()
    folder = next((d for d in dirs if (d / fname).exists()), None)
    if folder is None:
        raise ModelNotFound(f"{fname} not found in {', '.join(str(d) for d in dirs)}; put the "
                            "MLPerf Tiny models (with their SHA256SUMS) in one of them, or set "
                            "TINYOPT_MODELS to a folder holding mlperf_tiny/")
    path = folder / fname
    if path.is_file():
        sums = folder / "SHA256SUMS"
        expected = _published_sums(sums).get(fname) if sums.is_file() else None
        if expected is None:
            raise ModelNotFound(f"{sums} does not list {fname}: cannot check it is the published "
                                "model")
        actual = sha256(path)
        if actual != expected:
            raise ModelNotFound(f"{path} is not the published model: sha256 {actual}, expected "
                                f"{expected}; restore the original file")
    return path


def _published_sums(path: Path) -> dict:
    sums = {}
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            sums[parts[1].removeprefix("./")] = parts[0]
    return sums


def mlperf_tiny_tflite(name: str) -> bytes:
    """The full-int8 flatbuffer of one MLPerf Tiny model (checked; see :func:`mlperf_tiny_path`)."""
    return mlperf_tiny_path(name, "int8").read_bytes()

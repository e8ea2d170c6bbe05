"""Offline, verified MNIST and Fashion-MNIST.

``load(name)`` returns ``(x_train, y_train), (x_test, y_test)`` exactly as ``keras.datasets`` does
(uint8 images [N, 28, 28], uint8 labels [N]). It reads the four standard IDX ``.gz`` files from the
first folder that has them:

1. ``$TINYOPT_DATA/<name>/``
2. ``<repo>/data/<name>/`` (filled by ``make data``)

The first of these folders that exists is used; if it lacks a file, that is an error.

Every file is checked against the SHA-256 sums kept below (the published originals) before it is
parsed, and parsing checks the IDX magic numbers and counts. A missing, truncated or corrupt file
raises :class:`DatasetError` naming the file, the checksum expected and the command that fixes it;
such a file is never used.

Pixel scaling happens in exactly one place: :func:`preprocess` (uint8 [N,28,28] -> float32
[N,28,28,1] in [0, 1]). Models take its output; they do not rescale themselves.

``python -m tinyopt.front.data fetch`` (what ``make data`` runs) fills ``data/<name>/`` from a
mirror folder (``--mirror``, default ``$DATA_MIRROR`` or ``../shared/data`` when it exists) or
else downloads the canonical files. A mirror that is named (``--mirror``, ``$DATA_MIRROR``) but does
not exist is an error, never a silent fall-back to the network; so is a destination that cannot be
written (``error: ...`` from the command line). Copies and downloads go to a temporary name and
are renamed only once verified; fetched files are readable by everyone (mode 0644).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]  # tinyopt/front/data.py -> the checkout
FIX_COMMAND = "make data"

FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

# SHA-256 of the published original files (their MD5s match the official lists).
CHECKSUMS: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz":
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz":
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz":
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz":
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion_mnist": {
        "train-images-idx3-ubyte.gz":
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        "train-labels-idx1-ubyte.gz":
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        "t10k-images-idx3-ubyte.gz":
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        "t10k-labels-idx1-ubyte.gz":
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    },
}

# Canonical download locations (used only when no mirror folder is available).
URLS = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion_mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}

# Folder names used by mirrors (../shared/data uses "fashion-mnist").
MIRROR_ALIASES = {"mnist": ("mnist",), "fashion_mnist": ("fashion_mnist", "fashion-mnist")}

CLASS_NAMES = {
    "mnist": [str(i) for i in range(10)],
    "fashion_mnist": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
}

_IMAGE_MAGIC, _LABEL_MAGIC = 0x00000803, 0x00000801


class DatasetError(RuntimeError):
    """A dataset file is missing, truncated, corrupt or not the published original."""


def _check_name(name: str) -> None:
    if name not in CHECKSUMS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(CHECKSUMS)}")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def candidate_dirs(name: str) -> list[Path]:
    """The folders ``load`` looks in, in order."""
    dirs = []
    if os.environ.get("TINYOPT_DATA"):
        dirs.append(Path(os.environ["TINYOPT_DATA"]) / name)
    dirs.append(REPO_ROOT / "data" / name)
    return dirs


def find_dir(name: str) -> Path:
    """The first candidate folder that exists; DatasetError if it lacks a file or none exists.

    A folder that exists but is incomplete is an error, not a reason to read another folder:
    silently mixing sources would change results without saying so."""
    _check_name(name)
    dirs = candidate_dirs(name)
    folder = next((d for d in dirs if d.is_dir()), dirs[-1])
    missing = [f for f in FILES.values() if not (folder / f).is_file()]
    if missing:
        raise DatasetError(
            f"dataset {name!r}: file {folder / missing[0]} is missing (looked in "
            f"{', '.join(str(d) for d in dirs)}); expected sha256 {CHECKSUMS[name][missing[0]]}. "
            f"Fix: run `{FIX_COMMAND}` in the repository, or point $TINYOPT_DATA at a folder "
            f"holding {name}/ with the four IDX .gz files."
        )
    return folder


def verify_file(path: Path, expected: str) -> None:
    """Raise DatasetError unless ``path`` has SHA-256 ``expected``."""
    actual = sha256(path)
    if actual != expected:
        raise DatasetError(
            f"dataset file {path} is corrupt or not the published original: sha256 {actual}, "
            f"expected {expected}. Fix: delete it and run `{FIX_COMMAND}`."
        )


def _parse_idx(path: Path, magic: int, item_shape: tuple[int, ...]) -> np.ndarray:
    try:
        raw = gzip.open(path, "rb").read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"dataset file {path} is not a readable gzip file ({exc}). "
                           f"Fix: delete it and run `{FIX_COMMAND}`.") from exc
    header = 4 * (2 + len(item_shape))
    if len(raw) < header:
        raise DatasetError(f"dataset file {path} is truncated (no IDX header). "
                           f"Fix: delete it and run `{FIX_COMMAND}`.")
    fields = np.frombuffer(raw, dtype=">u4", count=2 + len(item_shape))
    if int(fields[0]) != magic:
        raise DatasetError(f"dataset file {path} has IDX magic {int(fields[0]):#010x}, expected "
                           f"{magic:#010x}. Fix: delete it and run `{FIX_COMMAND}`.")
    count, dims = int(fields[1]), tuple(int(v) for v in fields[2:])
    if dims != item_shape:
        raise DatasetError(f"dataset file {path} holds items of shape {dims}, expected "
                           f"{item_shape}. Fix: delete it and run `{FIX_COMMAND}`.")
    size = count * int(np.prod(item_shape, dtype=np.int64))
    if len(raw) - header != size:
        raise DatasetError(f"dataset file {path} declares {count} items ({size} bytes) but holds "
                           f"{len(raw) - header} bytes. Fix: delete it and run `{FIX_COMMAND}`.")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape((count, *item_shape)).copy()


def load(name: str) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Load a verified dataset, shaped and typed exactly as ``keras.datasets.<name>.load_data()``.

    Arguments:
        name: ``"mnist"`` or ``"fashion_mnist"``.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: uint8 [N, 28, 28] images, uint8 [N] labels.

    Raises:
        ValueError: unknown dataset name.
        DatasetError: a file is missing, fails its checksum, or is not well-formed IDX.
    """
    folder = find_dir(name)
    arrays = {}
    for key, fname in FILES.items():
        path = folder / fname
        verify_file(path, CHECKSUMS[name][fname])
        if key.endswith("images"):
            arrays[key] = _parse_idx(path, _IMAGE_MAGIC, (28, 28))
        else:
            arrays[key] = _parse_idx(path, _LABEL_MAGIC, ())
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise DatasetError(f"dataset {name!r} in {folder}: {n_img} {split} images but "
                               f"{n_lab} labels. Fix: delete the folder and run `{FIX_COMMAND}`.")
    return ((arrays["train_images"], arrays["train_labels"]),
            (arrays["test_images"], arrays["test_labels"]))


def preprocess(x: np.ndarray) -> np.ndarray:
    """Raw uint8 pixels [N, 28, 28] -> float32 [N, 28, 28, 1] in [0, 1].

    The one place where pixels are scaled. It accepts only uint8, so it cannot be applied twice.
    """
    if x.dtype != np.uint8:
        raise TypeError(f"preprocess expects raw uint8 pixels, got {x.dtype}; it may already have "
                        "been applied (its output is float32 in [0, 1]).")
    x = x.astype(np.float32) / 255.0
    return x[..., None] if x.ndim == 3 else x


@dataclass
class Dataset:
    """A dataset ready for the models: float32 [N, 28, 28, 1] in [0, 1], uint8 labels."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def class_names(self) -> list[str]:
        return CLASS_NAMES.get(self.name, [str(i) for i in range(10)])


def dataset(name: str, train_samples: int | None = None) -> Dataset:
    """``load`` + ``preprocess``. ``train_samples`` keeps the first N training images (quick runs);
    the test set is always complete."""
    (x_train, y_train), (x_test, y_test) = load(name)
    if train_samples is not None:
        if train_samples < 1:
            raise ValueError(f"train_samples must be >= 1 or None, got {train_samples}")
        x_train, y_train = x_train[:train_samples], y_train[:train_samples]
    return Dataset(name, preprocess(x_train), y_train, preprocess(x_test), y_test)


# --------------------------------------------------------------------------- fetching (make data)

def default_mirror() -> Path | None:
    env = os.environ.get("DATA_MIRROR")
    if env:
        return Path(env)
    shared = REPO_ROOT.parent / "shared" / "data"
    return shared if shared.is_dir() else None


def _mirror_file(mirror: Path, name: str, fname: str) -> Path | None:
    for alias in MIRROR_ALIASES[name]:
        if (mirror / alias / fname).is_file():
            return mirror / alias / fname
    return None


FILE_MODE = 0o644  # fetched files: readable by everyone (the data are public and checksummed)


def _check_mirror(mirror: Path, where: str) -> Path:
    mirror = Path(mirror)
    if not mirror.is_dir():
        what = "does not exist" if not mirror.exists() else "is not a folder"
        raise DatasetError(f"mirror folder {mirror} ({where}) {what}. Fix: point {where} at a "
                           "folder holding mnist/ and fashion_mnist/ (or fashion-mnist/) with the "
                           "IDX .gz files, or leave it out to download from the canonical "
                           "locations.")
    return mirror


def _writable_dest(dest: Path) -> None:
    """Create ``dest`` and prove a file can be created in it, or raise DatasetError."""
    fix = (f"Fix: pass a writable folder (`python -m tinyopt.front.data fetch --dest DIR`, "
           f"then point $TINYOPT_DATA at DIR), or make {dest} writable.")
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(f"cannot create the destination folder {dest}: "
                           f"{exc.strerror or exc}. {fix}") from exc
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=dest)
    except OSError as exc:
        raise DatasetError(f"cannot write to the destination folder {dest}: "
                           f"{exc.strerror or exc}. {fix}") from exc
    os.close(fd)
    os.unlink(probe)


def fetch(name: str, dest: Path | None = None, mirror: Path | None = None,
          base_url: str | None = None, log=print) -> Path:
    """Fill ``dest`` (default ``<repo>/data/<name>``) with the verified files.

    Files already present and verified are kept. Others are copied from ``mirror`` (when it has
    them) or downloaded from ``base_url`` (default: the canonical location), into a temporary
    name in ``dest`` that is renamed only after its checksum matched. Fetched files get mode
    0644 (readable by everyone).

    Raises:
        ValueError: unknown dataset name.
        DatasetError: ``mirror`` is given but is not an existing folder (a missing mirror never
            silently falls back to the network); ``dest`` cannot be created or written; a file
            could not be fetched or fails its checksum.
    """
    _check_name(name)
    if mirror is not None:
        mirror = _check_mirror(mirror, "mirror")
    dest = Path(dest) if dest else REPO_ROOT / "data" / name
    _writable_dest(dest)
    for fname, expected in CHECKSUMS[name].items():
        target = dest / fname
        if target.is_file() and sha256(target) == expected:
            continue
        source = _mirror_file(mirror, name, fname) if mirror else None
        try:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{fname}.", suffix=".part", dir=dest)
        except OSError as exc:
            raise DatasetError(f"cannot write {fname} into {dest}: {exc.strerror or exc}. Fix: "
                               "pass a writable folder with --dest.") from exc
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                if source is not None:
                    log(f"copy {source} -> {target}")
                    with open(source, "rb") as src:
                        shutil.copyfileobj(src, out)
                else:
                    url = (base_url or URLS[name]) + fname
                    if mirror is not None:
                        log(f"{fname} is not in the mirror {mirror}; downloading it")
                    log(f"download {url} -> {target}")
                    with urllib.request.urlopen(url, timeout=60) as resp:
                        shutil.copyfileobj(resp, out)
            verify_file(tmp, expected)
            os.chmod(tmp, FILE_MODE)  # mkstemp creates 0600
            os.replace(tmp, target)
        except Exception as exc:
            tmp.unlink(missing_ok=True)
            if isinstance(exc, DatasetError):
                raise
            raise DatasetError(f"could not fetch {fname} for {name!r} into {dest}: {exc}. "
                               "Fix: set DATA_MIRROR to a folder holding the files, or check the "
                               "network.") from exc
    return dest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tinyopt.front.data",
                                     description="Fetch and verify the offline datasets.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fetch", help="fill data/<name>/ from a mirror folder or the network")
    f.add_argument("names", nargs="*", default=sorted(CHECKSUMS))
    f.add_argument("--mirror", type=Path, default=None,
                   help="folder with <name>/ subfolders (default: $DATA_MIRROR or ../shared/data)")
    f.add_argument("--dest", type=Path, default=None, help="default: <repo>/data")
    sub.add_parser("verify", help="check every dataset that load() would read")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "fetch":
            if args.mirror is not None:
                mirror = _check_mirror(args.mirror, "--mirror")
            elif os.environ.get("DATA_MIRROR"):
                mirror = _check_mirror(default_mirror(), "$DATA_MIRROR")
            else:
                mirror = default_mirror()
            for name in args.names:
                out = fetch(name, dest=(args.dest / name) if args.dest else None, mirror=mirror)
                print(f"{name}: verified in {out}")
        else:
            for name in sorted(CHECKSUMS):
                (x, _), (xt, _) = load(name)
                print(f"{name}: ok ({len(x)} train, {len(xt)} test) in {find_dir(name)}")
    except (DatasetError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

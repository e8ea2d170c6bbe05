import gzip
import shutil
import struct

import numpy as np
import pytest

from tinyopt.front import data as tdata
from tests.conftest import REPO, need_data, write_idx


def test_load_tiny_matches_keras_contract(tiny_data):
    (x, y), (xt, yt) = tdata.load("mnist")
    assert x.shape == (20, 28, 28) and x.dtype == np.uint8
    assert y.shape == (20,) and y.dtype == np.uint8
    assert xt.shape == (10, 28, 28) and yt.shape == (10,)


def test_unknown_name():
    with pytest.raises(ValueError, match="fashion_mnist"):
        tdata.load("cifar10")


def test_missing_file_names_it_and_the_fix(tiny_data):
    (tiny_data / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(tdata.DatasetError) as err:
        tdata.load("mnist")
    msg = str(err.value)
    assert "t10k-labels-idx1-ubyte.gz" in msg and "make data" in msg
    assert tdata.CHECKSUMS["mnist"]["t10k-labels-idx1-ubyte.gz"] in msg


def test_wrong_checksum(tiny_data, monkeypatch):
    monkeypatch.setitem(tdata.CHECKSUMS["mnist"], "train-images-idx3-ubyte.gz", "0" * 64)
    with pytest.raises(tdata.DatasetError, match="train-images-idx3-ubyte.gz.*expected 0{64}"):
        tdata.load("mnist")


def _rewrite(folder, fname, payload, monkeypatch):
    with gzip.open(folder / fname, "wb") as f:
        f.write(payload)
    monkeypatch.setitem(tdata.CHECKSUMS["mnist"], fname, tdata.sha256(folder / fname))


def test_truncated_payload(tiny_data, monkeypatch):
    raw = gzip.open(tiny_data / "train-images-idx3-ubyte.gz").read()
    _rewrite(tiny_data, "train-images-idx3-ubyte.gz", raw[:-100], monkeypatch)
    with pytest.raises(tdata.DatasetError, match="declares 20 items"):
        tdata.load("mnist")


def test_truncated_gzip(tiny_data, monkeypatch):
    path = tiny_data / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:50])
    monkeypatch.setitem(tdata.CHECKSUMS["mnist"], path.name, tdata.sha256(path))
    with pytest.raises(tdata.DatasetError, match="train-images-idx3-ubyte.gz"):
        tdata.load("mnist")


def test_bad_magic(tiny_data, monkeypatch):
    raw = gzip.open(tiny_data / "train-labels-idx1-ubyte.gz").read()
    _rewrite(tiny_data, "train-labels-idx1-ubyte.gz", struct.pack(">I", 0x803) + raw[4:],
             monkeypatch)
    with pytest.raises(tdata.DatasetError, match="magic 0x00000803, expected 0x00000801"):
        tdata.load("mnist")


def test_count_mismatch(tiny_data, monkeypatch):
    raw = gzip.open(tiny_data / "t10k-labels-idx1-ubyte.gz").read()
    _rewrite(tiny_data, "t10k-labels-idx1-ubyte.gz", struct.pack(">II", 0x801, 9) + raw[8:17],
             monkeypatch)
    with pytest.raises(tdata.DatasetError, match="10 test images but 9 labels"):
        tdata.load("mnist")


def test_flipped_byte_in_real_file_is_refused(tmp_path, monkeypatch):
    """Acceptance: flipping one byte of a real dataset file makes load raise, naming the file."""
    need_data("mnist")
    src = tdata.find_dir("mnist")
    dst = tmp_path / "mnist"
    shutil.copytree(src, dst)
    victim = dst / "t10k-labels-idx1-ubyte.gz"
    blob = bytearray(victim.read_bytes())
    blob[len(blob) // 2] ^= 0x01
    victim.write_bytes(bytes(blob))
    monkeypatch.setenv("TINYOPT_DATA", str(tmp_path))
    with pytest.raises(tdata.DatasetError) as err:
        tdata.load("mnist")
    assert str(victim) in str(err.value)
    assert tdata.CHECKSUMS["mnist"]["t10k-labels-idx1-ubyte.gz"] in str(err.value)


def test_env_folder_takes_precedence(tmp_path, monkeypatch):
    sums = write_idx(tmp_path, "fashion_mnist", n_train=7, n_test=3)
    monkeypatch.setenv("TINYOPT_DATA", str(tmp_path))
    monkeypatch.setitem(tdata.CHECKSUMS, "fashion_mnist", sums)
    (x, _), (xt, _) = tdata.load("fashion_mnist")
    assert len(x) == 7 and len(xt) == 3


def test_preprocess_scales_once():
    x = np.full((2, 28, 28), 255, np.uint8)
    p = tdata.preprocess(x)
    assert p.shape == (2, 28, 28, 1) and p.dtype == np.float32 and p.max() == 1.0
    with pytest.raises(TypeError, match="already"):
        tdata.preprocess(p)


def test_fetch_from_mirror_verifies_and_renames(tmp_path, monkeypatch):
    sums = write_idx(tmp_path / "mirror", "fashion-mnist")  # mirrors may spell it with a dash
    monkeypatch.setitem(tdata.CHECKSUMS, "fashion_mnist", sums)
    out = tdata.fetch("fashion_mnist", dest=tmp_path / "dest", mirror=tmp_path / "mirror",
                      log=lambda *_: None)
    assert sorted(p.name for p in out.iterdir()) == sorted(sums)


def test_fetch_corrupt_source_leaves_nothing(tmp_path, monkeypatch):
    sums = write_idx(tmp_path / "mirror", "mnist")
    bad = dict(sums, **{"t10k-images-idx3-ubyte.gz": "f" * 64})
    monkeypatch.setitem(tdata.CHECKSUMS, "mnist", bad)
    with pytest.raises(tdata.DatasetError, match="t10k-images"):
        tdata.fetch("mnist", dest=tmp_path / "dest", mirror=tmp_path / "mirror",
                    log=lambda *_: None)
    assert not (tmp_path / "dest" / "t10k-images-idx3-ubyte.gz").exists()
    assert not list((tmp_path / "dest").glob("*.part"))


def test_fetch_downloads_when_no_mirror(tmp_path, monkeypatch):
    sums = write_idx(tmp_path / "server", "mnist")
    monkeypatch.setitem(tdata.CHECKSUMS, "mnist", sums)
    url = (tmp_path / "server" / "mnist").as_uri() + "/"
    tdata.fetch("mnist", dest=tmp_path / "dest", mirror=None, base_url=url, log=lambda *_: None)
    assert len(list((tmp_path / "dest").iterdir())) == 4


def test_real_datasets_match_published_counts():
    need_data("mnist", "fashion_mnist")
    for name in ("mnist", "fashion_mnist"):
        (x, y), (xt, yt) = tdata.load(name)
        assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    (x, y), (xt, yt) = tdata.load("mnist")
    assert np.bincount(yt).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert abs(x.mean() - 33.318) < 1e-3


def test_default_folders_are_under_the_checkout(monkeypatch):
    """Without $TINYOPT_DATA the datasets live in <repo>/data/<name> (what `make data` fills and
    .gitignore lists), wherever the package module sits in the tree."""
    monkeypatch.delenv("TINYOPT_DATA", raising=False)
    assert tdata.candidate_dirs("mnist") == [REPO / "data" / "mnist"]
    monkeypatch.delenv("DATA_MIRROR", raising=False)
    shared = REPO.parent / "shared" / "data"  # the checkout's sibling folder, when it exists
    assert tdata.default_mirror() == (shared if shared.is_dir() else None)

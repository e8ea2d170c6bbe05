"""Shared fixtures and helpers.

Data: tests that need the real datasets skip with a reason when `make data` has not run; under
`make test` / `make test-fast` (which fetch the data first) ``TINYOPT_REQUIRE_DATA=1`` turns that
skip into a failure, so a library that looks for the data in the wrong place cannot pass silently.

QEMU: tests of the Cortex-M7 path take the ``qemu`` fixture, which skips them with the
toolchain's own reason when arm-none-eabi-gcc, newlib or qemu-system-arm is missing (`make mcu`
installs them) before any other fixture trains or builds anything; such a test never passes
without running QEMU.

Training and notebook runs are marked ``slow`` (``make test-fast`` leaves them out).
"""
from __future__ import annotations

import gzip
import os
import struct
import sys

# jsonschema (under nbformat / papermill) builds the IRI grammars of rfc3987_syntax when that
# optional package is installed: 2 s of every test process that touches a notebook, for a format
# no notebook schema uses (nbformat's schemas have no "format" keyword). The tests run without
# it; the library and its users are untouched.
sys.modules.setdefault("rfc3987_syntax", None)
from pathlib import Path

import numpy as np
import pytest

import tinyopt  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
from tinyopt.front import data as tdata
from tinyopt.integer.arith import m0_n0
from tinyopt.integer.graph import IntegerGraph, IntegerLayer

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ data
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


def need_data(*names: str) -> None:
    """Skip (or, with ``TINYOPT_REQUIRE_DATA`` set, fail) unless every dataset is fetched."""
    missing = [n for n in names if not have_real(n)]
    if not missing:
        return
    why = f"{', '.join(missing)} not fetched (run `make data`)"
    if os.environ.get("TINYOPT_REQUIRE_DATA"):
        pytest.fail(f"{why}, but TINYOPT_REQUIRE_DATA is set (make test fetched the data): the "
                    f"library looks for it in {tdata.candidate_dirs(missing[0])}")
    pytest.skip(why)


@pytest.fixture(scope="session")
def fashion():
    need_data("fashion_mnist")
    return tdata.dataset("fashion_mnist")


@pytest.fixture(scope="session")
def mnist():
    need_data("mnist")
    return tdata.dataset("mnist")


@pytest.fixture(scope="session")
def seed_cnn_fashion(fashion):
    """The seed CNN trained one epoch on 3,000 Fashion-MNIST images (seeded), once per session,
    for the tests that convert, simulate or export a real model. Do not modify it."""
    from tinyopt import models, train
    model = models.seed_cnn(seed=0)
    train.fit(model, (fashion.x_train[:3000], fashion.y_train[:3000]), epochs=1, seed=0,
              progress=False)
    return model


# ------------------------------------------------------------------------------ caches
def pytest_configure(config):
    """One compile cache per test run (the simulator's fast kernels, the C kernels' objects:
    ``tinyopt.files.cache_dir``), in a temporary folder, shared by the xdist workers (they
    inherit the variable) and removed at the end; never the user's ~/.cache."""
    if hasattr(config, "workerinput"):
        return
    import tempfile
    folder = tempfile.mkdtemp(prefix="tinyopt-test-cache-")
    config._tinyopt_cache = (folder, os.environ.get("TINYOPT_CACHE"))
    os.environ["TINYOPT_CACHE"] = folder


def pytest_unconfigure(config):
    saved = getattr(config, "_tinyopt_cache", None)
    if saved is None:
        return
    import shutil
    folder, before = saved
    shutil.rmtree(folder, ignore_errors=True)
    if before is None:
        os.environ.pop("TINYOPT_CACHE", None)
    else:
        os.environ["TINYOPT_CACHE"] = before


# ------------------------------------------------------------------------------ xdist
# ``make test`` runs ``pytest -n N --dist loadgroup``. Our own scheduler (below) gives the groups:
# the tests of one file share a worker, so a module or session fixture (a trained model, a built
# program) is built once, as in a serial run; the notebook runs, the longest tests, are a group
# each so that they spread over the workers (notebook 05's QEMU test shares its notebook's run).
# (pytest-xdist's own xdist_group marks are not used: with pytest 9 its loadgroup scheduler no
# longer sees them and splits every group.) Groups start longest first (HEAVY_FIRST, measured
# with --durations), so that no long group starts last while the other worker idles.
HEAVY_FIRST = ["notebook 06_iso_memory", "tests/test_kernels_m7_sub.py",
               "tests/test_build_levels.py", "notebook 05_deploy", "notebook 08_any_graph",
               "tests/test_firmware_cli.py", "tests/test_generate.py", "tests/test_dw_sub.py",
               "tests/test_pw_small.py", "tests/test_build_hard_float.py",
               "notebook 01_multicomponent", "tests/test_memory_device.py",
               "tests/test_model_zoo.py",
               "notebook 02_subbyte_qat", "notebook 04_integer_only",
               "tests/test_mobilenet_v3_int8.py", "tests/test_kernels_m7.py",
               "tests/test_icn_convert.py", "tests/test_kernels_m7_conv.py",
               "tests/test_deploy_dag.py", "tests/test_sim_fast.py", "tests/test_subfc_rows.py",
               "tests/test_dw_wide.py", "tests/test_subfc_forms.py", "tests/test_subconv_tiles.py",
               "tests/test_fc_heads.py", "tests/test_subfc_fast.py", "tests/test_subfc_fold.py",
               "tests/test_sweep.py", "tests/test_requant_fast1.py", "tests/test_determinism.py",
               "tests/test_experiments.py",
               "tests/test_tflite_fuzz.py", "tests/test_mlperf_import.py",
               "tests/test_accuracy_search.py", "tests/test_subbyte_activations.py"]


def worker_group(nodeid: str) -> str:
    """The worker group of a test: its file, or its notebook for the notebook runs."""
    path, _, name = nodeid.partition("::")
    if path.endswith("test_notebooks.py"):
        if name.startswith("test_notebook[") and name.endswith("]"):
            return f"notebook {name[len('test_notebook['):-1]}"
        if name == "test_05_deploy_under_qemu":
            return "notebook 05_deploy"
    return path


def pytest_xdist_make_scheduler(config, log):
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        """LoadScopeScheduling with :func:`worker_group` as the scope, in collection order."""

        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    config.option.loadscopereorder = False  # keep HEAVY_FIRST's order, not the largest first
    return GroupScheduling(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """The kernel sweep (marker ``sweep``, tests/test_kernel_sweep.py) deselected unless
    ``TINYOPT_SWEEP=1`` (``make test-sweep``): minutes of CPU that ``make test`` / ``make
    test-fast`` do not spend (deselected, not skipped: the same on every xdist worker). Then, on
    the xdist workers of ``--dist loadgroup``: the longest groups first (order only: every test
    still runs, a group's tests in their order)."""
    if os.environ.get("TINYOPT_SWEEP") != "1":
        sweep = [item for item in items if item.get_closest_marker("sweep")]
        if sweep:
            items[:] = [item for item in items if not item.get_closest_marker("sweep")]
            config.hook.pytest_deselected(items=sweep)
    if not getattr(config.option, "loadgroup", False):  # set on the workers of loadgroup
        return
    first = {g: i for i, g in enumerate(HEAVY_FIRST)}
    items.sort(key=lambda item: first.get(worker_group(item.nodeid), len(first)))


@pytest.fixture(autouse=True)
def _quiet_tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    yield


# ------------------------------------------------------------------------------ QEMU
@pytest.fixture(scope="session")
def qemu() -> None:
    """Skip, with the toolchain's reason, unless the Cortex-M7 toolchain and QEMU are installed
    (session scope: set up before the module fixtures that train or build)."""
    from tinyopt.deploy import mcu
    ok, why = mcu.toolchain()
    if not ok:
        pytest.skip(f"QEMU path not run: {why}")


# ------------------------------------------------------------------------------ notebooks
def run_notebook(name: str, tmp_path: Path, needs=("fashion_mnist",), **params) -> Path:
    """Execute ``notebooks/<name>`` under papermill with ``params`` (run from the repo root, as
    ``make`` does) into ``tmp_path``; skip when a dataset in ``needs`` is not fetched. The
    notebook runs in this process's shared kernel, reset first (tests/_notebook_kernel.py:
    TensorFlow imported once per worker, not once per notebook).

    Returns:
        The path of the executed notebook.
    """
    import papermill as pm

    from tests._notebook_kernel import shared_kernel
    need_data(*needs)
    out = tmp_path / Path(name).name
    with shared_kernel(REPO).notebook() as km:
        pm.execute_notebook(str(REPO / "notebooks" / name), str(out), parameters=params,
                            cwd=str(REPO), progress_bar=False, kernel_name="python3", km=km)
    return out


# ------------------------------------------------------------------------------ ties
def on_boundary(pre, rounding: str = "floor", eps: float = 1e-3, rel: float = 1e-6) -> np.ndarray:
    """Where the float value ``pre`` (in LSBs) sits on a rounding boundary (an integer for floor,
    a half-integer for round) up to ``eps + rel * |pre|``: the outputs that may go either way."""
    pre = np.asarray(pre, np.float64)
    boundary = np.round(pre) if rounding == "floor" else np.floor(pre) + 0.5
    return np.abs(pre - boundary) <= eps + rel * np.abs(pre)


def assert_equal_but_ties(got, want, pre, rounding: str = "floor", eps: float = 1e-3,
                          rel: float = 1e-6, what: str = "") -> int:
    """Integer outputs ``got`` equal ``want`` except on rounding ties.

    ``pre`` is the float value (in LSBs of the output grid) that ``want`` was rounded from. A
    value that lands on a floor boundary (an integer; for ``rounding="round"`` a half-integer)
    may go either way: the float model decides by float32 rounding, the integer kernel by its
    own Q1.31 multiplier. Every differing value must therefore differ by exactly 1 LSB AND have
    ``pre`` within ``eps + rel * |pre|`` LSB of a boundary (``rel``: a few float32 ulps, since
    ``pre`` carries float32 error relative to its size); any other difference fails.

    Returns:
        The number of tolerated (tie) differences.
    """
    got, want = np.asarray(got, np.int64), np.asarray(want, np.int64)
    pre = np.asarray(pre, np.float64)
    assert got.shape == want.shape == pre.shape, (what, got.shape, want.shape, pre.shape)
    differ = got != want
    bad = differ & ((np.abs(got - want) > 1) | ~on_boundary(pre, rounding, eps, rel))
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} of {int(differ.sum())} differing values are not 1-LSB "
        f"rounding ties: got {got[bad][:5]}, want {want[bad][:5]}, pre-rounding value "
        f"{pre[bad][:5]}")
    return int(differ.sum())


# ------------------------------------------------------------------------------ models
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


def synthetic_graph(seed: int = 0) -> IntegerGraph:
    """A small CMix-NN style ICN graph: 4-bit PC conv (stride 2, asymmetric SAME pad), 2-bit
    depthwise padding integer 0 with a non-zero input zero point, 8-bit PL pointwise, max pool,
    flatten, and raw int32 logits (docs/integer.md)."""
    rng = np.random.default_rng(seed)

    def compute(kind, name, in_shape, out_shape, in_bits, in_zp, out_bits, out_zp, wshape, wbits,
                per_channel, **kw):
        c = out_shape[-1]
        layer = IntegerLayer(kind=kind, name=name, in_shape=in_shape, out_shape=out_shape,
                             in_bits=in_bits, in_zero_point=in_zp, out_bits=out_bits,
                             out_zero_point=out_zp, **kw)
        layer.set_weights(rng.integers(0, 1 << wbits, wshape), wbits)
        n_zw = c if per_channel else 1
        layer.weight_zero_point = rng.integers(0, 1 << wbits, n_zw).astype(np.int32)
        layer.weight_scale = rng.uniform(0.01, 0.1, n_zw)
        layer.bias = rng.integers(-300, 300, c).astype(np.int32)
        layer.m0, layer.n0 = m0_n0(rng.uniform(0.002, 0.05, c if per_channel else 1))
        return layer

    layers = [
        compute("conv2d", "conv", (9, 9, 4), (5, 5, 8), 8, 0, 4, 2, (8, 3, 3, 4), 4, True,
                stride=(2, 2), padding=(1, 1, 1, 1)),
        compute("depthwise", "dw", (5, 5, 8), (5, 5, 8), 4, 2, 4, 0, (3, 3, 8), 2, True,
                padding=(1, 1, 1, 1), pad_mode="zero"),
        compute("pointwise", "pw", (5, 5, 8), (5, 5, 6), 4, 0, 8, 0, (6, 1, 1, 8), 8, False),
        IntegerLayer(kind="maxpool", name="pool", in_shape=(5, 5, 6), out_shape=(2, 2, 6),
                     pool_size=(2, 2), stride=(2, 2)),
        IntegerLayer(kind="flatten", name="flat", in_shape=(2, 2, 6), out_shape=(24,)),
        compute("dense", "fc", (24,), (3,), 8, 0, 32, 0, (3, 24), 4, False,
                requantize=False, out_signed=True),
    ]
    return IntegerGraph(layers=layers, input_shape=(9, 9, 4), rounding="floor", name="synthetic")

"""Bad inputs fail at the entry point with an error naming the argument or the layer (issue 19):
calibration arrays and weights for the LiteRT converter, non-finite weights on the sub-byte and
ICN paths, layers and budgets the memory model cannot account for, and `data fetch` into an
unwritable folder or from a missing mirror. Tiny models only; nothing trains, nothing is written
to results/."""
from __future__ import annotations

import gzip
import os
import stat
import struct
from pathlib import Path

import numpy as np
import pytest

import tinyopt  # noqa: F401  (TF_USE_LEGACY_KERAS before TensorFlow)
import tf_keras as keras

from tinyopt.front import checks
from tinyopt.front import data as tdata
from tinyopt.front.models import seed_cnn
from tinyopt.litert import convert
from tinyopt.mixed import build, lower, memory
from tinyopt.mixed.policy import Policy, parse_bytes
from tinyopt.mixed.search import memory_driven

REPO = Path(__file__).resolve().parents[1]
L = keras.layers


def _results_files() -> set[str]:
    folder = REPO / "results"
    return {str(p) for p in folder.rglob("*")} if folder.is_dir() else set()


@pytest.fixture(autouse=True)
def _no_results_written(tmp_path, monkeypatch):
    """Every test runs from a scratch folder and must leave results/ as it found it."""
    monkeypatch.chdir(tmp_path)
    before = _results_files()
    yield
    assert _results_files() == before, "a validation test wrote into results/"
    assert not (tmp_path / "results").exists()


@pytest.fixture(scope="module")
def tiny():
    """The seed CNN's shape of problem at a fraction of the cost: [8, 8, 1] in [0, 1]."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        L.InputLayer(input_shape=(8, 8, 1), name="input"),
        L.Conv2D(2, 3, activation="relu", name="conv"),
        L.Flatten(name="flatten"),
        L.Dense(3, name="fc"),
    ], name="tiny")
    x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    return model, x


def _with_bad_weight(model, layer: str, value: float):
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    kernel = copy.get_layer(layer).kernel
    w = kernel.numpy()
    w.flat[1] = value
    kernel.assign(w)
    return copy


# ------------------------------------------------------------------ LiteRT: calibration arrays

def test_raw_uint8_pixels_are_refused_with_the_preprocess_fix(tiny):
    model, x = tiny
    raw = (x[..., 0] * 255).astype(np.uint8)[..., None]  # right shape, raw pixels
    for mode in ("int8_fallback", "int8"):
        with pytest.raises(TypeError, match=r"calibration has dtype uint8.*preprocess"):
            convert.to_tflite(model, mode, calibration=raw)


def test_pixel_scale_floats_are_refused(tiny):
    model, x = tiny
    with pytest.raises(ValueError, match=r"calibration holds raw pixel values \(integers "
                                         r"0\.\.2\d\d\) but model 'tiny' does not scale.*"
                                         r"preprocess.*Rescaling\(1/255\)"):
        convert.to_tflite(model, "int8_fallback", calibration=np.floor(x * 255))


def test_a_plain_model_takes_any_finite_feature_range(tiny):
    """A user's network may take audio features or [-1, 1] images: a plain Keras model has no
    range we can know, so only raw pixels and absurd magnitudes are refused."""
    model, x = tiny
    assert checks.input_range(model) is None
    for feats in (x * 2 - 1, x * 40 - 25.5, np.round(x * 3) - 1):  # [-1, 1], MFCC-like, ints
        assert checks.check_images(feats.astype(np.float32), model, "calibration") is not None


def test_data_load_output_gets_the_channel_axis_hint():
    model = seed_cnn()
    raw = np.zeros((4, 28, 28), np.uint8)  # what tinyopt.data.load returns
    with pytest.raises(ValueError, match=r"calibration has shape \[4, 28, 28\] but model "
                                         r"'seed_cnn' takes \[N, 28, 28, 1\].*channel axis.*"
                                         r"preprocess"):
        convert.to_tflite(model, "int8", calibration=raw)


def test_wrong_image_size_is_refused_before_the_converter(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match=r"calibration has shape \[5, 28, 28, 1\].*"
                                         r"\[N, 8, 8, 1\]"):
        convert.to_tflite(model, "int8", calibration=np.zeros((5, 28, 28, 1), np.float32))


def test_all_nan_calibration_is_refused(tiny):
    model, x = tiny
    with pytest.raises(ValueError, match=r"calibration holds 1024 NaN and 0 Inf.*16 of 16 "
                                         r"images.*finite"):
        convert.to_tflite(model, "int8_fallback", calibration=np.full_like(x, np.nan))


def test_inf_calibration_is_refused_not_a_crash(tiny):
    """+Inf reached the interpreter and killed the process (segmentation fault); now the check
    stops it before the converter runs."""
    model, x = tiny
    bad = x.copy()
    bad[3, 2, 2, 0] = np.inf
    with pytest.raises(ValueError, match=r"calibration holds 0 NaN and 1 Inf.*first is image 3"):
        convert.to_tflite(model, "int8", calibration=bad)
    huge = x * 1e38  # finite in float32, but no quantization range survives it
    with pytest.raises(ValueError, match=r"calibration spans"):
        convert.to_tflite(model, "int8", calibration=huge)


def test_model_that_scales_pixels_itself_refuses_preprocessed_data(tiny):
    _, x = tiny
    inp = keras.Input((8, 8, 1))
    y = L.Rescaling(1 / 255, name="scale")(inp)
    y = L.Dense(3, name="fc")(L.Flatten()(L.Conv2D(2, 3, activation="relu", name="conv")(y)))
    model = keras.Model(inp, y, name="pixels_in")
    assert checks.input_range(model) == (0.0, 255.0)
    with pytest.raises(ValueError, match=r"calibration spans.*scales pixels itself.*"
                                         r"not tinyopt.preprocess_images output"):
        convert.to_tflite(model, "int8_fallback", calibration=x)


def test_good_calibration_still_converts(tiny):
    model, x = tiny
    flatbuffer = convert.to_tflite(model, "int8", calibration=x, calibration_samples=8)
    assert len(flatbuffer) > 0


def test_a_result_record_is_not_a_model(tiny):
    model, _ = tiny

    class Record:  # what prune / decompose / qat return since their results became records
        def __init__(self, model):
            self.model = model
    with pytest.raises(TypeError, match=r"to_tflite: model must be a tf_keras model, got "
                                        r"Record \(a result record\? pass its .model\)"):
        convert.to_tflite(Record(model))


def test_check_images_names_the_argument_and_entry_point(tiny):
    model, x = tiny
    with pytest.raises(TypeError, match=r"^measure\.accuracy: x is None"):
        checks.check_images(None, model, "x", "measure.accuracy")
    with pytest.raises(ValueError, match=r"x_test is empty"):
        checks.check_images(x[:0], model, "x_test")
    with pytest.raises(ValueError, match=r"x has shape \[8, 8, 1\].*x\[None\]"):
        checks.check_images(x[0], model)
    assert checks.check_images(x, model) is not None
    # a model that normalises its own input has no known range: only the scale check is skipped
    inp = keras.Input((8, 8, 1))
    scaled = keras.Model(inp, L.Flatten()(L.Rescaling(0.5, offset=-1.0)(inp)))
    assert checks.input_range(scaled) is None
    assert checks.check_images(x * 6 - 3, scaled) is not None
    with pytest.raises(ValueError, match="NaN"):
        checks.check_images(np.full_like(x, np.nan), scaled)


# ------------------------------------------------------------------ non-finite weights, every path

@pytest.mark.parametrize("mode", ["float32", "int8_fallback"])
def test_litert_refuses_nan_weights_naming_the_layer(tiny, mode):
    model, x = tiny
    bad = _with_bad_weight(model, "conv", np.nan)
    with pytest.raises(ValueError, match=rf"to_tflite\('{mode}'\): layer 'conv' .*kernel holds "
                                         r"1 NaN and 0 Inf"):
        convert.to_tflite(bad, mode, calibration=x)


def test_litert_refuses_inf_weights_naming_the_layer(tiny):
    model, x = tiny
    with pytest.raises(ValueError, match=r"layer 'fc' .*0 NaN and 1 Inf"):
        convert.to_tflite(_with_bad_weight(model, "fc", np.inf), "int8", calibration=x)


def test_subbyte_refuses_nan_weights_naming_the_layer(tiny):
    model, x = tiny
    bad = _with_bad_weight(model, "fc", np.nan)
    policy = Policy.uniform(model, 4, 4)
    with pytest.raises(ValueError, match=r"quantize_mixed: layer 'fc' .*kernel holds 1 NaN"):
        build.quantize_mixed(bad, policy)
    from tinyopt.mixed import ptq
    with pytest.raises(ValueError, match=r"layer 'fc' .*NaN"):
        ptq.quantize_mixed(bad, policy, x)


def test_icn_refuses_non_finite_weights_naming_the_layer(tiny):
    model, _ = tiny
    q = build.quantize_mixed(model, Policy.uniform(model, 4, 4, "PL", "ICN"))
    lower.convert(q)  # a good model lowers
    kernel = q.get_layer("conv").kernel
    w = kernel.numpy()
    w[0, 0, 0, 0] = np.nan
    kernel.assign(w)
    with pytest.raises(ValueError, match=r"icn.convert: layer 'conv' .*kernel holds 1 NaN"):
        lower.convert(q)
    kernel.assign(np.nan_to_num(w))
    q.get_layer("conv").alpha.assign(np.inf)
    with pytest.raises(ValueError, match=r"layer 'conv' .*alpha holds 0 NaN and 1 Inf"):
        lower.convert(q)


# ------------------------------------------------------------------ memory model: layers

def _chain(*middle, input_shape=(8, 8, 1)):
    inp = keras.Input(input_shape, name="input")
    x = inp
    for layer in middle:
        x = layer(x)
    return keras.Model(inp, x, name="chain")


def test_lstm_is_refused_by_name_in_memory_and_policy():
    model = keras.Sequential([L.InputLayer(input_shape=(10, 4)), L.LSTM(16, name="lstm"),
                              L.Dense(3, name="fc")])
    with pytest.raises(ValueError, match=r"layer 'lstm' \(LSTM\).*recurrent.*Supported: "
                                         r"Conv2D, Conv1D, DepthwiseConv2D, Dense"):
        memory.nodes(model)
    with pytest.raises(ValueError, match=r"layer 'lstm' \(LSTM\)"):
        memory.flash_bytes(model, Policy(["fc"], [8], [8]))
    with pytest.raises(ValueError, match=r"layer 'lstm' \(LSTM\)"):
        memory_driven(model, "2M", "512k")


@pytest.mark.parametrize("kind", ["SeparableConv2D"])
def test_conv_variants_are_refused_by_name(kind):
    """A convolution variant the handler table does not read is refused by name, never counted
    as a Conv2D (Conv2DTranspose, once counted so with wrong MACs, has its own handler now:
    tests/test_handlers_transpose_conv.py; Conv1D is counted: tests/test_any_graph.py)."""
    model = _chain(getattr(L, kind)(2, 3, name="bad"), L.Flatten(), L.Dense(3, name="fc"))
    with pytest.raises(ValueError, match=rf"layer 'bad' \({kind}\) is not supported by the "
                                         r"sub-byte flow.*Supported:"):
        memory.nodes(model)
    with pytest.raises(ValueError, match=rf"layer 'bad' \({kind}\)"):
        memory_driven(model, 10 ** 9, 10 ** 9)


def test_standalone_batchnorm_is_a_per_channel_node():
    model = _chain(L.Conv2D(2, 3, name="c"), L.MaxPooling2D(name="pool"),
                   L.BatchNormalization(name="late_bn"), L.Flatten(), L.Dense(3, name="fc"))
    late = [n for n in memory.nodes(model) if n.name == "late_bn"]
    # deployed as a 1 x 1 depthwise with one weight per channel, on the pooled 3 x 3 x 2 tensor
    assert [(n.kind, n.weight_elements, n.in_elements, n.out_elements) for n in late] == \
        [("depthwise", 2, 18, 18)]


def test_nested_models_and_unknown_layers_are_refused():
    inner = keras.Sequential([L.Conv2D(2, 3)], name="inner")
    with pytest.raises(ValueError, match=r"layer 'inner' \(Sequential\)"):
        memory.nodes(_chain(inner, L.Flatten(), L.Dense(3, name="fc")))
    with pytest.raises(ValueError, match=r"layer 'prelu' \(PReLU\)"):
        memory.nodes(_chain(L.Conv2D(2, 3, name="c"), L.PReLU(name="prelu"), L.Flatten(),
                            L.Dense(3, name="fc")))


def test_pass_through_layers_keep_working():
    model = _chain(L.ZeroPadding2D(1, name="pad"), L.Conv2D(4, 3, use_bias=False, name="c"),
                   L.BatchNormalization(name="c_bn"), L.ReLU(6.0, name="c_relu"),
                   L.MaxPooling2D(name="mp"), L.DepthwiseConv2D(3, padding="same", name="dw"),
                   L.Activation("relu", name="dw_act"), L.AveragePooling2D(name="ap"),
                   L.Dropout(0.1, name="drop"), L.Reshape((2, 2, 4), name="rs"),
                   L.GlobalAveragePooling2D(name="gap"), L.Dense(5, name="fc"),
                   L.Softmax(name="sm"))
    names = [(n.name, n.kind, n.in_elements, n.out_elements) for n in memory.nodes(model)]
    assert names == [("c", "conv", 100, 256), ("dw", "depthwise", 64, 64),
                     ("fc", "dense", 4, 5)]
    assert memory.flash_bytes(model, Policy.uniform(model, 8, 8)) > 0


def test_paper_mobilenet_numbers_unchanged():
    nodes = memory.mobilenet_v1_nodes(1.0, 224)
    w8 = memory.flash_bytes(nodes, Policy.uniform([n.name for n in nodes], 8, 8, "PL", "FB"))
    assert round(memory.to_mib(w8), 2) == 4.06


# ------------------------------------------------------------------ budgets

def _nodes():
    return memory.mobilenet_v1_nodes(0.25, 32, classes=10, input_channels=1)


@pytest.mark.parametrize("argument", ["flash_bytes", "ram_bytes"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, 0, 0.5, "-1k", "lots",
                                   "512x", "nan"])
def test_non_finite_or_non_positive_budgets_are_refused(argument, value):
    args = {"flash_bytes": "2M", "ram_bytes": "512k", argument: value}
    with pytest.raises(ValueError, match=rf"^{argument} must be"):
        memory_driven(_nodes(), **args)


@pytest.mark.parametrize("value", [None, [512], True])
def test_budgets_of_the_wrong_type_are_refused(value):
    with pytest.raises(TypeError, match=r"^ram_bytes must be a positive number of bytes"):
        memory_driven(_nodes(), 10 ** 9, value)


def test_size_strings_are_binary_and_match_plain_ints():
    assert parse_bytes("512k") == parse_bytes("512K") == parse_bytes("512KiB") == 512 * 1024
    assert parse_bytes("512kB") == parse_bytes(" 512 k ") == 524_288
    assert parse_bytes("2M") == 2 * 1024 ** 2 and parse_bytes("1G") == 1024 ** 3
    assert parse_bytes("2_048_000") == parse_bytes(2_048_000) == parse_bytes(2.048e6) == 2_048_000
    assert parse_bytes(np.int64(300)) == 300 and parse_bytes(1000.7) == 1000
    ns = _nodes()
    a = memory_driven(ns, "128k", "4k")
    b = memory_driven(ns, 128 * 1024, 4096)
    assert (a.weight_bits, a.act_bits) == (b.weight_bits, b.act_bits)


def test_nan_ram_budget_no_longer_ignored():
    """A NaN budget used to compare False everywhere and produce a policy that 'fits'."""
    with pytest.raises(ValueError, match=r"ram_bytes must be a finite, positive number.*nan"):
        memory_driven(_nodes(), 10 ** 9, float("nan"))


# ------------------------------------------------------------------ data fetch

def write_idx(folder: Path, name: str, n: int = 4) -> dict:
    """A tiny, valid IDX dataset in folder/name; returns its {file: sha256} map."""
    rng = np.random.default_rng(0)
    folder = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "t10k"):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        with gzip.open(folder / f"{split}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
        with gzip.open(folder / f"{split}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 0x801, n) + bytes(n))
    return {f: tdata.sha256(folder / f) for f in tdata.FILES.values()}


def _no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the network was used")
    monkeypatch.setattr(tdata.urllib.request, "urlopen", refuse)


def test_fetch_cli_missing_mirror_is_an_error_not_a_download(tmp_path, monkeypatch, capsys):
    _no_network(monkeypatch)
    code = tdata.main(["fetch", "mnist", "--mirror", str(tmp_path / "nowhere"),
                       "--dest", str(tmp_path / "dest")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: mirror folder ") and "(--mirror) does not exist" in err
    assert "Traceback" not in err
    monkeypatch.setenv("DATA_MIRROR", str(tmp_path / "gone"))
    assert tdata.main(["fetch", "mnist", "--dest", str(tmp_path / "dest")]) == 1
    assert "($DATA_MIRROR) does not exist" in capsys.readouterr().err
    with pytest.raises(tdata.DatasetError, match=r"mirror folder .*nowhere \(mirror\) does not"):
        tdata.fetch("mnist", dest=tmp_path / "dest", mirror=tmp_path / "nowhere")


def test_fetch_cli_unwritable_destination(tmp_path, monkeypatch, capsys):
    _no_network(monkeypatch)
    write_idx(tmp_path / "mirror", "mnist")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    code = tdata.main(["fetch", "mnist", "--mirror", str(tmp_path / "mirror"),
                       "--dest", str(blocker)])
    err = capsys.readouterr().err
    assert code == 1 and err.startswith("error: cannot create the destination folder ")
    assert "--dest" in err and "Traceback" not in err

    def read_only(*args, **kwargs):  # what a read-only folder does (root ignores chmod)
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(tdata.tempfile, "mkstemp", read_only)
    code = tdata.main(["fetch", "mnist", "--mirror", str(tmp_path / "mirror"),
                       "--dest", str(tmp_path / "dest")])
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: cannot write to the destination folder ")
    assert "Permission denied" in err and "--dest" in err


def test_fetched_files_are_readable_by_everyone(tmp_path, monkeypatch):
    _no_network(monkeypatch)
    sums = write_idx(tmp_path / "mirror", "mnist")
    monkeypatch.setitem(tdata.CHECKSUMS, "mnist", sums)
    old = os.umask(0o077)  # even under a strict umask: the data are public
    try:
        out = tdata.fetch("mnist", dest=tmp_path / "dest", mirror=tmp_path / "mirror",
                          log=lambda *_: None)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert modes == {name: 0o644 for name in sums}

"""``tinyopt analyze | validate | generate`` end to end (issue 31's acceptance): the four MLPerf
Tiny int8 models and two small Keras models (one w8a8, one mixed precision). analyze's totals
equal what :func:`tinyopt.mcu.deploy` measures (the arena of the built program, the flash
constants); validate finds 0 differences, and a corrupted C export or a broken engine makes it
exit 1 naming the first layer that differs; bad data and a missing toolchain are refused
clearly (exit 2). generate on the MLPerf models (KWS, AD, through the command line on AD):
tests/test_generate.py."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

from tinyopt.deploy import codegen, mcu
from tinyopt.front import zoo
from tinyopt.workbench import cli, firmware_cli

FAST = ["kws_dscnn", "ad_fcae"]
# make test-fast: KWS; make test: KWS and the autoencoder (a DAG of convolutions and a chain of
# dense layers). ResNet-8 and VWW go through the same commands' code; their import, simulator
# and C are checked bit-exact in tests/test_mlperf_import.py and tests/test_sim_fast.py, their
# analyze totals in tests/test_generate.py, their Cortex-M7 runs in benchmarks/bench_kernels.py.
MLPERF = FAST[:1] + [pytest.param(m, marks=pytest.mark.slow) for m in FAST[1:]]


def _model(name):
    try:
        return zoo.mlperf_tiny_path(name)
    except zoo.ModelNotFound as exc:
        pytest.skip(str(exc))


def _json(capsys, argv, code):
    """The JSON report of a command that must exit with ``code`` (None: 0 or 1)."""
    got = cli.main(argv)
    out, err = capsys.readouterr()
    assert got in ((0, 1) if code is None else (code,)), (got, out[-3000:], err[-3000:])
    return json.loads(out)


def _rows(report):
    return {r["engine"]: r for r in report["rows"]}


# ------------------------------------------------------------------------------ MLPerf Tiny int8

@pytest.mark.parametrize("name", MLPERF)
def test_analyze_totals_equal_deploy_measured(name, capsys, tmp_path):
    """analyze's totals are what deploy measures (the built program's arena, the flash
    constants, the MACs) and the export's (what mcu.check_fits counts, the weights, the steps:
    tests/test_generate.py::test_analyze_totals_equal_the_export checks those on ResNet-8 and
    VWW, this test on KWS and AD, so one analyze and one Cortex-M7 library compile per model)."""
    path = _model(name)
    big = str(1 << 30)  # budgets that fit: the verdict is True
    report = _json(capsys, ["analyze", str(path), "--flash", big, "--ram", big, "--json"], 0)
    graph, _ = firmware_cli.load_model(path, "tflm")
    x = firmware_cli_random(graph, 2)
    r = mcu.deploy(graph, x, tmp_path, name="m", run_mcu=False)
    summary, export = r["summary"], r["export"]
    assert summary["host_images_exact"] == 2
    t = report["totals"]
    assert t["arena_bytes"] == summary["arena_bytes"]  # the built program's model_arena symbol
    assert t["flash_constant_bytes"] == summary["param_bytes_c"] + summary["weight_pad_bytes"]
    assert t["macs"] == summary["macs"]
    # the export's figures (as test_generate.py's test_analyze_totals_equal_the_export)
    assert t["arena_bytes"] == export.arena_bytes
    assert t["flash_constant_bytes"] == mcu.check_fits(export)["flash_needed"]
    assert sum(row["weight_bytes"] for row in report["steps"]) == export.param_bytes["w"]
    assert len(report["steps"]) == len(export.steps) and report["fits"] is True
    assert max(row["live_bytes"] for row in report["steps"]) >= export.memory.lower_bound


def firmware_cli_random(graph, n):
    from tinyopt.workbench.validate import random_codes
    return random_codes(graph, n, seed=3)


@pytest.mark.parametrize("name", MLPERF)
def test_validate_zero_differences(name, capsys):
    path = _model(name)
    report = _json(capsys, ["validate", str(path), "--images", "3", "--json", "--no-progress"],
                   0)
    rows = _rows(report)
    assert not report["mismatch"] and report["images"] == 3
    for engine in ("simulator, fast engine", "LiteRT REF interpreter", "C on the host (gcc)"):
        assert rows[engine]["differing_values"] == 0 and rows[engine]["values"] > 0, engine
    micro = rows["TFLite Micro interpreter"]
    assert micro["differing_values"] == 0 or micro["note"].startswith("skipped")
    assert "RANDOM" in report["inputs"]


# generate: through the command line on AD (tests/test_generate.py::
# test_cli_generate_and_analyze: the host check's "4/4 random inputs bit-exact", the metadata's
# arena that of the plain export) and on the Keras models below; KWS's library is
# tests/test_generate.py's libs fixture (test_library_files_and_metadata: the same arena check)


@pytest.mark.slow  # C builds (make test runs it)
def test_validate_on_a_data_file_float_and_codes(capsys, tmp_path):
    """int8 codes and float values (quantized with the input's scale) give the same codes."""
    path = _model("ad_fcae")
    graph, _ = firmware_cli.load_model(path, "tflm")
    codes = firmware_cli_random(graph, 3).astype(np.int8)
    np.save(tmp_path / "codes.npy", codes)
    real = (codes.astype(np.float32) - graph.input_zero_point) * graph.input_scale
    np.savez(tmp_path / "real.npz", x=real, other=np.zeros(2))
    a = _json(capsys, ["validate", str(path), "--data", str(tmp_path / "codes.npy"), "--json",
                       "--no-progress"], 0)
    b = _json(capsys, ["validate", str(path), "--data", str(tmp_path / "real.npz"), "--json",
                       "--no-progress"], 0)
    assert a["images"] == b["images"] == 3 and "from" in a["inputs"]


@pytest.mark.parametrize("data, words", [
    (np.zeros((2, 641), np.int8), ["(2, 641)", "(N, 640)"]),
    (np.zeros((2, 640), np.uint8), ["uint8", "int8"]),
    (np.full((2, 640), 1e6, np.float32), ["spans", "scale"]),
    (np.zeros((2, 640), np.int16) + 300, ["int16", "int8"]),
])
def test_validate_refuses_bad_data(data, words, capsys, tmp_path):
    np.save(tmp_path / "d.npy", data)
    assert cli.main(["validate", str(_model("ad_fcae")), "--data", str(tmp_path / "d.npy"),
                     "--no-progress"]) == 2
    err = capsys.readouterr().err
    for w in words:
        assert w in err, (w, err)


@pytest.mark.slow  # C builds (make test runs it)
def test_validate_names_the_first_layer_of_a_corrupted_c_export(capsys, monkeypatch):
    """The C export gets a graph whose third compute layer has another bias: the host C row
    differs and names that layer; the simulator and interpreter rows stay exact."""
    path = _model("ad_fcae")
    graph, _ = firmware_cli.load_model(path, "tflm")
    victim = [lay for lay in graph.layers if lay.kind == "dense"][2].name
    real = codegen.export_c

    def corrupted(g, *args, **kwargs):
        g = copy.deepcopy(g)
        g[victim].bias = np.asarray(g[victim].bias) + 5000
        return real(g, *args, **kwargs)

    monkeypatch.setattr(codegen, "export_c", corrupted)
    report = _json(capsys, ["validate", str(path), "--images", "3", "--json", "--no-progress"],
                   1)
    rows = _rows(report)
    host = rows["C on the host (gcc)"]
    assert report["mismatch"] and host["differing_values"] > 0
    assert host["first_differing_layer"]["tensor"] == victim
    assert rows["simulator, fast engine"]["differing_values"] == 0
    assert rows["LiteRT REF interpreter"]["differing_values"] == 0


@pytest.mark.slow  # C builds (make test runs it)
def test_validate_names_the_first_layer_of_a_broken_engine(capsys, monkeypatch):
    """A fast engine that is off by one in one layer (and so in the output): exit 1, that
    layer named; the text report says MISMATCH."""
    from tinyopt.integer import sim
    path = _model("kws_dscnn")
    graph, _ = firmware_cli.load_model(path, "tflm")
    victim = graph.layers[3].name
    out = graph.output_names()[0]
    real = sim.run

    def broken(g, x, trace=False, *args, engine="fast", **kwargs):
        res = real(g, x, trace, *args, engine=engine, **kwargs)
        if engine == "fast" and trace:
            res[victim] = res[victim] ^ 1
            res[out] = res[out] ^ 1
        return res

    monkeypatch.setattr(sim, "run", broken)
    assert cli.main(["validate", str(path), "--images", "2", "--no-progress"]) == 1
    text = capsys.readouterr().out
    assert "MISMATCH: simulator, fast engine" in text and victim in text


def test_validate_m7_without_toolchain_says_how_to_install(capsys, monkeypatch):
    monkeypatch.setattr(mcu, "toolchain", lambda: (False, "qemu-system-arm not installed"))
    assert cli.main(["validate", str(_model("ad_fcae")), "--target", "m7",
                     "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "make mcu-tools" in err and "apt-get install" in err


@pytest.mark.slow
def test_validate_on_the_cortex_m7(capsys, qemu):
    report = _json(capsys, ["validate", str(_model("kws_dscnn")), "--target", "m7", "--images",
                            "2", "--json", "--no-progress"], 0)
    m7 = _rows(report)["Cortex-M7 under QEMU"]
    assert m7["differing_values"] == 0 and m7["values"] == 24
    mem = report["memory"]
    assert mem["m7_arena_bytes"] == mem["arena_bytes"]
    assert mem["m7_insns_per_inference_mean"] > 1e5 and mem["m7_flash_bytes"] > 0


def test_help_has_examples(capsys):
    for command in ("analyze", "validate", "generate", "supported-ops"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        assert "example:" in capsys.readouterr().out


# ------------------------------------------------------------------------------ Keras models

def _small_keras(path):
    import tf_keras as keras
    keras.utils.set_random_seed(0)
    L = keras.layers
    x = inp = keras.Input((12, 12, 3))
    x = L.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = L.MaxPooling2D(2)(x)
    x = L.DepthwiseConv2D(3, padding="same")(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    x = L.Conv2D(24, 1, activation="relu")(x)
    x = L.Flatten()(x)
    out = L.Dense(5)(x)
    model = keras.Model(inp, out, name="small")
    model.save(path)
    return path


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    return _small_keras(tmp_path_factory.mktemp("keras") / "small.h5")


@pytest.mark.slow  # PTQ and builds twice
@pytest.mark.parametrize("bits", [["--bits", "w8a8"], ["--flash", "4k", "--ram", "2k"]],
                         ids=["w8a8", "mixed"])
def test_keras_analyze_validate_generate(bits, keras_file, capsys, tmp_path, monkeypatch):
    import argparse

    from tinyopt.deploy import library
    # a flash budget for the policy's weights is below the compiled library (code): may not fit.
    # analyze without its Cortex-M7 compile of the library (library_sizes, ~2.3 s of CPU the
    # first time): nothing below reads the code size, and the generate at the end compiles
    # this graph's library (test_analyze_totals_equal_deploy_measured runs analyze with it)
    with monkeypatch.context() as m:
        m.setattr(library, "library_sizes", lambda export: None)
        report = _json(capsys, ["analyze", str(keras_file), *bits, "--json"], None)
    k = report["keras"]
    assert "RANDOM calibration" in k["calibration"] and "w8a8" in k["policies"]
    if "--flash" in bits:
        mixed = k["policies"]["mixed"]
        assert k["graph_bits"] == "mixed"
        assert any(r["weight_bits"] < 8 or r["output_bits"] < 8 for r in mixed["layers"])
        assert mixed["totals"]["flash_bytes"] <= 4096 and mixed["totals"]["peak_ram_bytes"] <= 2048
    # the same graph (seeded calibration) deployed: analyze's totals are the measured ones
    args = argparse.Namespace(model=str(keras_file), flavour="tflm", bits=None, calibration=None,
                              seed=0, flash=None, ram=None)
    for i in range(0, len(bits), 2):
        setattr(args, bits[i][2:], bits[i + 1])
    graph, _, _ = firmware_cli.load_any(args)
    from tinyopt.workbench.validate import random_codes
    summary = mcu.deploy(graph, random_codes(graph, 3), tmp_path, name="k",
                         run_mcu=False)["summary"]
    assert summary["host_images_exact"] == 3
    assert report["totals"]["arena_bytes"] == summary["arena_bytes"]
    assert report["totals"]["flash_constant_bytes"] == (summary["param_bytes_c"]
                                                        + summary["weight_pad_bytes"])
    val = _json(capsys, ["validate", str(keras_file), *bits, "--images", "4", "--json",
                         "--no-progress"], 0)
    assert not val["mismatch"] and val["keras"]["bits"] == k["graph_bits"]
    assert _rows(val)["C on the host (gcc)"]["differing_values"] == 0
    assert cli.main(["generate", str(keras_file), *bits, "--name", "small", "--out",
                     str(tmp_path / "lib"), "--check", "4", "--no-progress"]) == 0
    assert "4/4 random inputs bit-exact" in capsys.readouterr().out


def test_keras_every_unsupported_layer_listed(capsys, tmp_path):
    import tf_keras as keras
    L = keras.layers
    x = inp = keras.Input((8, 8, 2))
    x = L.Conv2D(4, 3, dilation_rate=256, padding="same")(x)  # the C holds rates <= 255
    x = L.LayerNormalization()(x)
    x = L.SeparableConv2D(4, 3)(x)
    out = L.Dense(3)(L.Flatten()(x))
    keras.Model(inp, out).save(tmp_path / "bad.h5")
    assert cli.main(["analyze", str(tmp_path / "bad.h5")]) == 2
    err = capsys.readouterr().err
    assert "3 layer(s)" in err
    for word in ("dilation_rate", "LayerNormalization", "SeparableConv2D"):
        assert word in err, (word, err)


def test_keras_file_that_is_not_a_model(capsys, tmp_path):
    (tmp_path / "junk.h5").write_bytes(b"not an hdf5 file at all")
    assert cli.main(["analyze", str(tmp_path / "junk.h5")]) == 2
    assert "not a Keras model" in capsys.readouterr().err
    (tmp_path / "folder").mkdir()
    assert cli.main(["analyze", str(tmp_path / "folder")]) == 2
    assert "saved_model.pb" in capsys.readouterr().err


# ------------------------------------------------------------------------------ progress bars

def test_progress_only_on_a_terminal_and_not_with_no_progress(monkeypatch):
    import sys
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert firmware_cli.show_progress(True) and not firmware_cli.show_progress(False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    assert not firmware_cli.show_progress(True)


# generate's progress stages: tests/test_generate.py::test_generate_reports_its_stages (on the
# libraries its fixture generates anyway)


@pytest.mark.slow  # C builds (make test runs it)
def test_keras_calibration_file(keras_file, capsys, tmp_path, monkeypatch):
    # analyze without its Cortex-M7 compile of the library (library_sizes, ~2.3 s of CPU the
    # first time): only the calibration is asserted here; the Keras graph's library compiles
    # in test_keras_analyze_validate_generate's generate
    from tinyopt.deploy import library
    monkeypatch.setattr(library, "library_sizes", lambda export: None)
    np.save(tmp_path / "bad.npy", np.zeros((4, 12, 12), np.float32))
    assert cli.main(["analyze", str(keras_file), "--calibration", str(tmp_path / "bad.npy")]) == 2
    assert "expects (N, 12, 12, 3)" in capsys.readouterr().err
    np.save(tmp_path / "calib.npy", np.random.default_rng(1).random((8, 12, 12, 3), np.float32))
    report = _json(capsys, ["analyze", str(keras_file), "--calibration",
                            str(tmp_path / "calib.npy"), "--json"], 0)
    assert report["keras"]["calibration"].startswith("calibrated on 8 inputs")
    assert cli.main(["analyze", str(_model("ad_fcae")), "--bits", "w8a8"]) == 2
    assert "for Keras models" in capsys.readouterr().err


@pytest.mark.slow  # C builds (make test runs it)
def test_validate_an_integer_graph_file(capsys, tmp_path):
    graph, _ = firmware_cli.load_model(_model("ad_fcae"), "tflm")
    graph.save(tmp_path / "ad.npz")
    report = _json(capsys, ["validate", str(tmp_path / "ad.npz"), "--images", "2", "--json",
                            "--no-progress"], 0)
    rows = _rows(report)
    assert rows["C on the host (gcc)"]["differing_values"] == 0
    assert rows["LiteRT REF interpreter"]["note"].startswith("skipped: no .tflite")

"""``tinyopt generate``: a prefixed, self-contained C library (tinyopt.deploy.library); two
libraries (KWS and the autoencoder) linked into one program with a hand-written main
(tests/firmware/two_models.c), built with CMake on the host and with the Makefile fragments for
the Cortex-M7 under QEMU, both bit-exact with ``tinyopt.sim.run_tflite(..., flavour="tflm")``."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tinyopt.deploy import library, mcu
from tinyopt.front import zoo
from tinyopt.integer.from_litert import graph_from_tflite
from tinyopt.integer.sim import run_tflite

FIRMWARE = Path(__file__).parent / "firmware"
MODELS = {"kws": "kws_dscnn", "ad": "ad_fcae"}


def _model(name):
    try:
        return zoo.mlperf_tiny_path(name)
    except zoo.ModelNotFound as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def libs(tmp_path_factory):
    """KWS and AD generated as libraries `kws` and `ad` (checked on 8 random inputs each)."""
    out = tmp_path_factory.mktemp("libs")
    made = {}
    for prefix, model in MODELS.items():
        path = _model(model)
        graph = graph_from_tflite(path.read_bytes(), flavour="tflm")
        stages = []  # test_generate_reports_its_stages
        # without generate's Cortex-M7 size compile (library_sizes, ~3 s of CPU for KWS
        # the first time): no test reads the sizes, and test_two_libraries_one_m7_program_qemu compiles
        # both libraries with the same flags through their Makefile fragments (and runs them)
        with pytest.MonkeyPatch.context() as m:
            m.setattr(library, "library_sizes", lambda export: None)
            meta = library.generate(graph, out / prefix, prefix, source=path, check_images=8,
                                    progress=stages.append)
        made[prefix] = {"dir": out / prefix, "meta": meta, "tflite": path.read_bytes(),
                        "graph": graph, "stages": stages}
    return made


def _inputs(lib, n, seed):
    return library.random_inputs(lib["graph"], n, seed).astype(np.int8)


def _expected(lib, x):
    return np.asarray(run_tflite(lib["tflite"], x, flavour="tflm")).reshape(len(x), -1)


def _write_inputs(folder: Path, libs, n):
    xs = {}
    for prefix, lib in libs.items():
        xs[prefix] = _inputs(lib, n, seed=len(prefix))
        (folder / f"{prefix}_in.bin").write_bytes(xs[prefix].tobytes())
    return xs


def _check_outputs(folder: Path, libs, xs):
    for prefix, lib in libs.items():
        raw = np.frombuffer((folder / f"{prefix}_out.bin").read_bytes(), np.int8)
        got = raw.reshape(len(xs[prefix]), -1)
        want = _expected(lib, xs[prefix])
        assert len(np.unique(want, axis=0)) > 1, "inputs too alike to tell outputs apart"
        np.testing.assert_array_equal(got, want, err_msg=f"{prefix} differs from the simulator")


@pytest.mark.slow  # builds libraries
def test_library_files_and_metadata(libs, tmp_path):
    lib = libs["kws"]
    files = sorted(p.name for p in lib["dir"].iterdir())
    for name in ("kws.h", "kws.c", "kws_params.h", "kws_tinyopt_nn.c", "CMakeLists.txt",
                 "kws.mk", "README.md", "metadata.json"):
        assert name in files
    assert not any(f.startswith(("model", "tinyopt_nn", "tn_")) for f in files), files
    meta = json.loads((lib["dir"] / "metadata.json").read_text())
    export = lib["meta"]["export"]
    assert meta["input"]["shape"] == [49, 10, 1] and meta["input"]["bits"] == 8
    assert meta["input"]["signed"] and meta["output"]["shape"] == [12]
    assert meta["arena_bytes"] == export.arena_bytes
    # the prefix changes no byte of the plan: the arena of the plain (model_) export
    from tinyopt.deploy import codegen
    assert meta["arena_bytes"] == codegen.export_c(lib["graph"], tmp_path / "plain").arena_bytes
    assert meta["flash_constant_bytes"] == mcu.check_fits(export)["flash_needed"]
    assert meta["source"]["sha256"] == zoo.sha256(zoo.mlperf_tiny_path("kws_dscnn"))
    assert meta["check"]["exact_images"] == 8 and meta["check"]["mismatching_values"] == 0
    import tinyopt
    assert meta["tinyopt_version"] == tinyopt.__version__
    readme = (lib["dir"] / "README.md").read_text()
    assert "kws_run" in readme and str(export.arena_bytes) in readme
    header = (lib["dir"] / "kws.h").read_text()
    assert "int kws_run(const uint8_t *in, uint8_t *out);" in header
    assert "KWS_ARENA_BYTES" in header and "model_" not in header


@pytest.mark.slow  # builds libraries
def test_generate_reports_its_stages(libs):
    """generate's progress callback gets its three stages in order (both libraries)."""
    for lib in libs.values():
        stages = lib["stages"]
        assert stages[0] == "C export" and stages[1].startswith("host build and check")
        assert len(stages) == 3


@pytest.mark.slow  # builds libraries
def test_every_external_symbol_is_prefixed(libs, tmp_path):
    """Both libraries compiled: every symbol with external linkage starts with the prefix."""
    if shutil.which("gcc") is None or shutil.which("nm") is None:
        pytest.skip("gcc / nm not installed")
    for prefix, lib in libs.items():
        export = lib["meta"]["export"]
        for src in export.sources:
            obj = tmp_path / f"{src.stem}.o"
            # -O0: linkage is the source's, not the optimiser's (-O2 drops no external symbol,
            # -O0 keeps every one), and the library's -O2 compile of KWS costs ~2 s of CPU
            subprocess.run(["gcc", "-std=c99", "-O0", "-c", str(src), "-o", str(obj)],
                           check=True)
            out = subprocess.run(["nm", "-g", "--defined-only", str(obj)], check=True,
                                 capture_output=True, text=True).stdout
            symbols = [line.split()[-1] for line in out.splitlines() if line.strip()]
            assert symbols and all(s.startswith(f"{prefix}_") for s in symbols), symbols


@pytest.mark.slow  # builds libraries
def test_sections_and_external_arena_macros(libs, tmp_path):
    """<P>_WEIGHTS_SECTION / <P>_ARENA_SECTION put the constants / arena in named sections."""
    if shutil.which("gcc") is None or shutil.which("objdump") is None:
        pytest.skip("gcc / objdump not installed")
    export = libs["kws"]["meta"]["export"]
    obj = tmp_path / "kws.o"
    # -O0 (as above): the section attributes are the source's; -O0 drops no constant
    subprocess.run(["gcc", "-std=c99", "-O0", "-DKWS_WEIGHTS_SECTION=\".kws_weights\"",
                    "-DKWS_ARENA_SECTION=\".kws_arena\"", "-c", str(export.sources[0]), "-o",
                    str(obj)], check=True)
    heads = subprocess.run(["objdump", "-h", str(obj)], check=True, capture_output=True,
                           text=True).stdout
    sizes = {p[1]: int(p[2], 16) for p in (line.split() for line in heads.splitlines())
             if len(p) > 2 and p[1].startswith(".kws_")}
    assert sizes[".kws_weights"] >= library.flash_constant_bytes(export)
    assert sizes[".kws_arena"] == export.arena_bytes


@pytest.mark.parametrize("name", ["", "1kws", "kws-net", "kws.net", "int", "k__w", "tn",
                                  "a" * 49, "kws;x"])
def test_bad_names_refused(name, tmp_path):
    graph = graph_from_tflite(_model("ad_fcae").read_bytes(), flavour="tflm")
    with pytest.raises(ValueError, match="C prefix"):
        library.generate(graph, tmp_path / "lib", name, check_images=0)
    assert not (tmp_path / "lib").exists()


def test_bad_target_refused(tmp_path):
    graph = graph_from_tflite(_model("ad_fcae").read_bytes(), flavour="tflm")
    with pytest.raises(ValueError, match="target must be one of"):
        library.generate(graph, tmp_path / "lib", "ad", target="m4", check_images=0)


@pytest.mark.slow  # builds libraries
def test_two_libraries_one_host_program_cmake(libs, tmp_path):
    """CMake builds both static libraries (ad with AD_ARENA_EXTERNAL: the caller's arena) and
    links them with two_models.c; both models bit-exact with run_tflite(flavour="tflm")."""
    if shutil.which("cmake") is None or shutil.which("gcc") is None:
        pytest.skip("cmake / gcc not installed (apt-get install cmake gcc; `make mcu`)")
    (tmp_path / "CMakeLists.txt").write_text(f"""cmake_minimum_required(VERSION 3.13)
project(two_models C)
add_subdirectory({libs['kws']['dir'].as_posix()} kws)
add_subdirectory({libs['ad']['dir'].as_posix()} ad)
add_executable(two_models {(FIRMWARE / 'two_models.c').as_posix()})
target_link_libraries(two_models PRIVATE kws ad)
""")
    build = tmp_path / "build"
    flags = "-Wall -Wextra -Werror -pedantic"
    for cmd in (["cmake", "-S", str(tmp_path), "-B", str(build), f"-DCMAKE_C_FLAGS={flags}",
                 "-DAD_ARENA_EXTERNAL=ON"],
                ["cmake", "--build", str(build)]):
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (build / "kws" / "libkws.a").is_file() and (build / "ad" / "libad.a").is_file()
    xs = _write_inputs(tmp_path, libs, 16)
    proc = subprocess.run([str(build / "two_models")], cwd=tmp_path, capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    _check_outputs(tmp_path, libs, xs)


@pytest.mark.slow  # builds libraries
def test_two_libraries_one_m7_program_qemu(libs, tmp_path, qemu):
    """The same two libraries through their Makefile fragments into one Cortex-M7 ELF (startup
    and linker script of tinyopt/deploy/c/mcu), run under QEMU: both bit-exact."""
    if shutil.which("make") is None:
        pytest.skip("make not installed")
    flags = " ".join(f for f in mcu.MCU_CFLAGS if not f.startswith("-D"))
    (tmp_path / "Makefile").write_text(f"""include {libs['kws']['dir'].as_posix()}/kws.mk
include {libs['ad']['dir'].as_posix()}/ad.mk
MCU := {mcu.MCU_DIR.as_posix()}
CC := arm-none-eabi-gcc
CFLAGS := {flags} $(KWS_CFLAGS) $(AD_CFLAGS) -I$(MCU)
SRCS := {(FIRMWARE / 'two_models.c').as_posix()} $(MCU)/startup.c $(KWS_SRCS) $(AD_SRCS)

two_models.elf: $(SRCS)
\t$(CC) $(CFLAGS) $(SRCS) -nostdlib -T $(MCU)/mps2_an500.ld -Wl,--defsym=STACK_SIZE=32768 \\
\t  -Wl,--gc-sections -o $@ -lgcc
""")
    proc = subprocess.run(["make", "-C", str(tmp_path)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    xs = _write_inputs(tmp_path, libs, 4)
    proc = subprocess.run(["qemu-system-arm", *mcu.QEMU_ARGS, "-kernel", "two_models.elf"],
                          cwd=tmp_path, capture_output=True, text=True, check=False, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    _check_outputs(tmp_path, libs, xs)


# ------------------------------------------------------------------------------ command line

# KWS and AD: tests/test_firmware_cli.py::test_analyze_totals_equal_deploy_measured makes the
# same assertions on its analyze (and checks it against deploy's measurements too)
@pytest.mark.slow
@pytest.mark.parametrize("model", ["ic_resnet8", "vww_mobilenet"])
def test_analyze_totals_equal_the_export(model, tmp_path):
    """analyze's totals are the export's: arena, flash constants (what mcu.check_fits counts),
    weights; its per-step weights add up to the export's."""
    from tinyopt.deploy import codegen
    from tinyopt.workbench import firmware_cli
    graph = graph_from_tflite(_model(model).read_bytes(), flavour="tflm")
    report = firmware_cli.analyze(graph, flash=1 << 30, ram=1 << 30)
    export = codegen.export_c(graph, tmp_path / "c")
    t = report["totals"]
    assert t["arena_bytes"] == export.arena_bytes
    assert t["flash_constant_bytes"] == mcu.check_fits(export)["flash_needed"]
    assert sum(r["weight_bytes"] for r in report["steps"]) == export.param_bytes["w"]
    assert len(report["steps"]) == len(export.steps) and report["fits"] is True
    assert max(r["live_bytes"] for r in report["steps"]) >= export.memory.lower_bound


def _cli(capsys, *argv):
    from tinyopt.workbench import cli
    code = cli.main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.slow  # builds libraries
def test_cli_generate_and_analyze(tmp_path, capsys, monkeypatch):
    # generate and analyze without their Cortex-M7 compile of the library (library_sizes,
    # ~1.8 s of CPU each the first time): nothing asserted here reads it (the weights alone exceed
    # 64 kB); the AD library "ad" compiles for the M7 in test_two_libraries_one_m7_program_qemu,
    # and test_analyze_totals_equal_the_export runs analyze with the compile
    monkeypatch.setattr(library, "library_sizes", lambda export: None)
    path = _model("ad_fcae")
    code, out, err = _cli(capsys, "generate", str(path), "--name", "ad", "--out",
                          str(tmp_path / "ad"), "--check", "4")
    assert code == 0, err
    assert "checked on the host: 4/4" in out and "4/4 random inputs bit-exact" in out
    meta = json.loads((tmp_path / "ad" / "metadata.json").read_text())
    assert meta["name"] == "ad" and meta["source"]["file"] == path.name
    # the arena of the plain export (as test_library_files_and_metadata's for KWS)
    from tinyopt.deploy import codegen
    graph = graph_from_tflite(path.read_bytes(), flavour="tflm")
    assert meta["arena_bytes"] == codegen.export_c(graph, tmp_path / "plain").arena_bytes
    code, out, err = _cli(capsys, "analyze", str(path), "--flash", "64k", "--json")
    assert code == 1, err  # 270 kB of weights do not fit 64 kB
    report = json.loads(out)
    assert report["fits"] is False and report["totals"]["arena_bytes"] == meta["arena_bytes"]
    code, out, err = _cli(capsys, "analyze", str(path), "--flash", "1M", "--ram", "4k")
    assert code == 0 and "FITS" in out and "DOES NOT" not in out


def test_cli_refusals(tmp_path, capsys):
    path = _model("ad_fcae")
    code, _, err = _cli(capsys, "generate", str(path), "--name", "ad-net", "--out",
                        str(tmp_path / "x"))
    assert code == 2 and "C prefix 'ad-net' is not a plain C identifier" in err
    assert not (tmp_path / "x").exists()
    text = tmp_path / "notes.tflite"
    text.write_text("not a model at all")
    code, _, err = _cli(capsys, "analyze", str(text))
    assert code == 2 and "is not a TFLite flatbuffer" in err
    code, _, err = _cli(capsys, "analyze", str(tmp_path / "missing.tflite"))
    assert code == 2 and "no such file" in err
    code, _, err = _cli(capsys, "analyze", str(path), "--ram", "lots")
    assert code == 2 and "--ram 'lots' is not a byte count" in err
    keras = tmp_path / "m.h5"
    keras.write_bytes(b"\x89HDF")
    code, _, err = _cli(capsys, "generate", str(keras), "--name", "m", "--out",
                        str(tmp_path / "y"))
    assert code == 2 and "is not a Keras model" in err  # a Keras suffix, but not a model
    trunc = tmp_path / "cut.tflite"
    trunc.write_bytes(path.read_bytes()[:4000])
    code, _, err = _cli(capsys, "analyze", str(trunc))
    assert code == 2 and "truncated" in err


def test_cli_lists_every_unsupported_op(tmp_path, capsys, monkeypatch):
    """Every op outside the supported set is named at once (not only the first)."""
    from tinyopt.integer import from_litert
    ops = from_litert.tflite_ops(_model("kws_dscnn").read_bytes())
    kept = tuple(op for op in from_litert.TFLITE_OPS if op not in ("DEPTHWISE_CONV_2D",
                                                                    "SOFTMAX"))
    monkeypatch.setattr(from_litert, "TFLITE_OPS", kept)
    code, _, err = _cli(capsys, "analyze", str(_model("kws_dscnn")))
    missing = [o for o in ops if o[0] not in kept]
    assert code == 2 and f"{len(missing)} unsupported op(s)" in err and len(missing) == 5
    for op, out in missing:
        assert f"{op} (writing {out!r})" in err


def test_cli_supported_ops_reads_the_code(capsys):
    from tinyopt.integer.steps import STEP_KINDS
    from tinyopt.integer.from_litert import HANDLERS
    code, out, _ = _cli(capsys, "supported-ops", "--json")
    table = json.loads(out)
    assert code == 0
    values = list(table.values())
    assert values[0] == list(HANDLERS) and set(STEP_KINDS) <= set(values[1])
    assert "DepthwiseConv2D" in values[2]

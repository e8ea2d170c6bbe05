"""The object cache of tinyopt.deploy.mcu (kernels, startup, and each export's model.c and
harness): a cached build is the build without the cache (same outputs, same sections), a second
build of the same export compiles nothing, and a change to any source, header (the model's
constants too) or flag is never served a stale object."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.test_codegen import _inputs, coverage_graph
from tinyopt.deploy import codegen, mcu


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYOPT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "objects"


@pytest.mark.slow  # (a few seconds: make test runs it, test-fast does not)
def test_cached_host_build_equals_uncached(tmp_path, cache, monkeypatch):
    g = coverage_graph(0, "tflite_double", True)
    x = _inputs(g, 12, 0)
    export = codegen.export_c(g, tmp_path / "src")
    first = mcu.run_host(mcu.build_host(export, build_dir=tmp_path / "a"), export, x)
    objects = sorted(cache.glob("*.o"))
    assert [o.name.split("-")[0] for o in objects] == ["harness_host", "model", "tinyopt_nn"]
    mtimes = [o.stat().st_mtime_ns for o in objects]
    second = mcu.run_host(mcu.build_host(export, build_dir=tmp_path / "b"), export, x)
    assert [o.stat().st_mtime_ns for o in objects] == mtimes, "a cached object was compiled again"
    assert sorted(cache.glob("*.o")) == objects
    monkeypatch.setenv(mcu.OBJ_CACHE_ENV, "off")
    plain = mcu.run_host(mcu.build_host(export, build_dir=tmp_path / "c"), export, x)
    np.testing.assert_array_equal(first, plain)
    np.testing.assert_array_equal(second, plain)


@pytest.mark.slow  # (a few seconds: make test runs it, test-fast does not)
def test_a_changed_kernel_source_is_compiled_again(tmp_path, cache):
    g = coverage_graph(1, "floor", False)
    export = codegen.export_c(g, tmp_path / "src")
    mcu.build_host(export, build_dir=tmp_path / "a")
    header = tmp_path / "src" / "tn_arith.h"  # included by tinyopt_nn.c through tinyopt_nn.h
    header.write_text(header.read_text() + "\n/* changed */\n")
    mcu.build_host(export, build_dir=tmp_path / "b")
    assert len(list(cache.glob("tinyopt_nn-*.o"))) == 2
    broken = tmp_path / "src" / "tinyopt_nn.c"  # a compile error is reported, not cached
    broken.write_text(broken.read_text() + "\nthis is not C;\n")
    with pytest.raises(mcu.BuildError, match="kernels"):
        mcu.build_host(export, build_dir=tmp_path / "c")
    assert len(list(cache.glob("tinyopt_nn-*.o"))) == 2 and not list(cache.glob(".*"))


@pytest.mark.slow  # (a few seconds: make test runs it, test-fast does not)
def test_another_model_is_compiled_again_and_computes_its_own_outputs(tmp_path, cache):
    """Two exports that differ only in their constants (model_params.h) share no model object,
    and each build computes what the simulator says for its own graph."""
    g = coverage_graph(0, "floor", False)
    h = coverage_graph(0, "floor", False)
    layer = next(la for la in h.layers if getattr(la, "bias", None) is not None)
    layer.bias = layer.bias + 1000  # same code, other constants
    x = _inputs(g, 6, 0)
    outs = []
    for graph, name in ((g, "g"), (h, "h")):
        export = codegen.export_c(graph, tmp_path / name)
        got = mcu.run_host(mcu.build_host(export, build_dir=tmp_path / f"{name}_b"), export, x)
        np.testing.assert_array_equal(got, codegen.reference_output(graph, x))
        outs.append(got)
    assert not np.array_equal(*outs), "the two models should compute different outputs"
    assert len(list(cache.glob("model-*.o"))) == 2
    # the harness includes only model.h (sizes, names): the same for both, so one object
    assert len(list(cache.glob("harness_host-*.o"))) == 1


@pytest.mark.slow  # a Cortex-M7 build twice; the host twin runs in make test-fast
def test_cached_mcu_build_equals_uncached(qemu, tmp_path, cache, monkeypatch):
    g = coverage_graph(2, "tflite_single", True)
    export = codegen.export_c(g, tmp_path / "src")
    cached = mcu.section_sizes(mcu.build_mcu(export, build_dir=tmp_path / "a"))
    assert {o.name.split("-")[0] for o in cache.glob("*.o")} == {
        "tinyopt_nn", "startup", "model", "harness_mcu"}
    monkeypatch.setenv(mcu.OBJ_CACHE_ENV, "off")
    plain = mcu.section_sizes(mcu.build_mcu(export, build_dir=tmp_path / "b"))
    assert cached == plain


@pytest.mark.slow  # (a few seconds: make test runs it, test-fast does not)
def test_traced_build_and_library_sizes_use_the_cache(tmp_path, cache, monkeypatch):
    """validate's traced host build and analyze / generate's Cortex-M7 size compile take their
    objects from the cache: the second run compiles nothing (only the link) and gives what the
    build without the cache gives."""
    from tinyopt.deploy import ctrace, library
    g = coverage_graph(0, "floor", False)
    x = _inputs(g, 6, 0)
    export = codegen.export_c(g, tmp_path / "src")
    runs = []
    for name in ("a", "b"):
        exe = ctrace.build_host_traced(export, tmp_path / name)
        runs.append(ctrace.run_host_traced(exe, export, g, x))
    objects = sorted(cache.glob("*.o"))
    assert {o.name.split("-")[0] for o in objects} == {"model", "tinyopt_nn", "trace_host"}
    arm = shutil.which("arm-none-eabi-gcc") and shutil.which("arm-none-eabi-size")
    sizes = library.library_sizes(export) if arm else None
    compiled = sorted(cache.glob("*.o"))
    mtimes = [o.stat().st_mtime_ns for o in compiled]
    assert (sizes is not None) == bool(arm) and len(compiled) == len(objects) + (2 if arm else 0)
    ctrace.build_host_traced(export, tmp_path / "c")
    assert library.library_sizes(export) == sizes
    assert [o.stat().st_mtime_ns for o in sorted(cache.glob("*.o"))] == mtimes, \
        "a cached object was compiled again"
    monkeypatch.setenv(mcu.OBJ_CACHE_ENV, "off")  # the objects as compiled without the cache
    plain = ctrace.run_host_traced(ctrace.build_host_traced(export, tmp_path / "d"), export, g, x)
    for run in runs:
        np.testing.assert_array_equal(run[0], plain[0])
        assert run[1].keys() == plain[1].keys()
        for k in plain[1]:
            np.testing.assert_array_equal(run[1][k], plain[1][k])

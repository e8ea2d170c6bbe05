"""Untrusted names (graph, layer, step names from model files) never reach generated C or a path
raw (issue 25): tinyopt.names and its use in tinyopt.deploy; the flash / RAM check before any
build; instruction counts as ints."""
from __future__ import annotations

import re
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import synthetic_graph
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyopt import names
from tinyopt.deploy import codegen, mcu
from tinyopt.integer.graph import IntegerGraph, IntegerLayer

INJECTION = ('m */ int system(const char *); __attribute__((constructor)) static void '
             'pwn(void){ system("touch PWNED"); } /*')
RAW_STEP = ["a\nb " + "a" * 300, 'tri??/ "q" */ x', "caf\u00e9 \\\nz", "\r\x00 /*"]
HOSTILE = ["a\nb", "back\\\nslash", "tri??/graph", 'quo"te', "caf\u00e9 \u2603", "x */ y /* z",
           "\r\x00nul", "???=??(??)", "*/", "/", "a" * 300]
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _inputs(g, n=6, seed=0):
    lo = -128 if g.input_signed else 0
    return np.random.default_rng(seed).integers(lo, lo + 256, (n, *g.input_shape))


def _code_outside_comments(text: str) -> str:
    """C text with its block comments removed as the compiler does (first ``*/`` closes)."""
    return re.sub(r"/\*.*?\*/", " ", text, flags=re.DOTALL)


def _assert_clean(src_dir: Path) -> None:
    """No generated file carries the injected code outside a comment, and no comment holds
    a nested delimiter, a trigraph or a backslash."""
    for path in Path(src_dir).glob("model*"):
        text = path.read_text()
        code = _code_outside_comments(text)
        for word in ("system", "pwn", "constructor", "PWNED"):
            assert word not in code, (path.name, word)
        for comment in re.findall(r"/\*(.*?)\*/", text, flags=re.DOTALL):
            assert "/*" not in comment and "??" not in comment and "\\" not in comment, comment
        assert "??" not in code, path.name  # no trigraph anywhere (strings escape '?')


def _files(root: Path) -> set:
    return {p.relative_to(root) for p in root.rglob("*")}


# ------------------------------------------------------------------------------ injection
def test_injected_graph_name_stays_a_comment(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    g = synthetic_graph()
    g.name = INJECTION
    x = _inputs(g)
    r = mcu.deploy(g, x, tmp_path / "out", run_mcu=False)  # builds and runs the host program
    s = r["summary"]
    assert s["host_images_exact"] == len(x) and s["host_mismatching_values"] == 0
    assert s["model"] == INJECTION
    _assert_clean(r["export"].out_dir)
    assert not any(p.name == "PWNED" for p in tmp_path.rglob("*"))
    assert not Path("PWNED").exists()


def test_injected_name_through_a_saved_graph(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    g = synthetic_graph()
    g.name = INJECTION
    g.save(tmp_path / "g.npz")
    loaded = IntegerGraph.load(tmp_path / "g.npz")
    assert loaded.name == INJECTION  # the name travels in the file
    e = codegen.export_c(loaded, tmp_path / "src")
    _assert_clean(tmp_path / "src")
    x = _inputs(loaded)
    got = mcu.run_host(mcu.build_host(e), e, x)
    np.testing.assert_array_equal(got, codegen.reference_output(g, x))
    assert not any(p.name == "PWNED" for p in tmp_path.rglob("*"))


def test_hostile_layer_names_export_and_build(tmp_path):
    g = synthetic_graph()
    for layer, name in zip(g.layers, HOSTILE):
        layer.name = name
    g.validate()
    x = _inputs(g)
    for kernels in ("m7", "portable"):
        e = codegen.export_c(g, tmp_path / kernels, kernels=kernels)
        _assert_clean(tmp_path / kernels)
        got = mcu.run_host(mcu.build_host(e), e, x)  # -Werror: also no -Wcomment, no trigraph
        np.testing.assert_array_equal(got, codegen.reference_output(g, x))


@pytest.fixture
def raw_step_names(monkeypatch):
    """Step names straight from RAW_STEP, past tinyopt.integer.steps' own labelling, so that the
    C boundary (codegen, kernels_m7) is tested alone."""
    real = codegen.memory_plan

    def plan(*args, **kw):
        steps, mem = real(*args, **kw)
        for k, s in enumerate(steps):
            s.name = f"{RAW_STEP[k % len(RAW_STEP)]} {k}"  # unique, with spaces
        return steps, mem
    monkeypatch.setattr(codegen, "memory_plan", plan)


def test_hostile_step_names_reach_c_only_escaped(tmp_path, raw_step_names):
    g = synthetic_graph()
    x = _inputs(g)
    for kernels in ("m7", "portable"):
        e = codegen.export_c(g, tmp_path / kernels, kernels=kernels)
        assert e.steps[0].name.startswith("a\nb")
        _assert_clean(tmp_path / kernels)
        text = (tmp_path / kernels / "model.c").read_text()
        line = next(ln for ln in text.splitlines() if "model_step_names[" in ln and "=" in ln)
        assert len(re.findall(r'"((?:[^"\\]|\\.)*)"', line)) == len(e.steps)
        got = mcu.run_host(mcu.build_host(e), e, x)
        np.testing.assert_array_equal(got, codegen.reference_output(g, x))


@pytest.mark.slow  # a Cortex-M7 build and a QEMU run
def test_hostile_step_names_under_qemu_give_int_counts(qemu, tmp_path, raw_step_names):
    g = synthetic_graph()
    r = mcu.deploy(g, _inputs(g, 3), tmp_path, name="hostile", mcu_images=3)
    s = r["summary"]
    assert s["mcu_images_exact"] == 3
    for key in ("insns_total", "insns_per_image_mean", "insns_per_image_min",
                "insns_per_image_max"):
        assert type(s[key]) is int, (key, type(s[key]))
    assert s["insns_per_image_min"] <= s["insns_per_image_mean"] <= s["insns_per_image_max"]
    assert 3 * s["insns_per_image_min"] <= s["insns_total"] <= 3 * s["insns_per_image_max"]
    col = r["steps"]["insns_per_image"]
    assert col.dtype == np.int64 and (col > 0).all()  # every step measured, by position
    assert set(r["mcu"].step_ticks) == {st_.name for st_ in r["export"].steps}
    assert r["mcu"].image_insns.dtype == np.int64


# ------------------------------------------------------------------------------ paths
@pytest.mark.parametrize("bad", ["../../escaped", "..", ".hidden", "a/b", "a\\b", "", "x" * 101,
                                 "a\x00b", "/abs", "a..b"])
def test_explicit_deploy_name_is_refused(tmp_path, bad):
    out = tmp_path / "a" / "b" / "out"
    out.mkdir(parents=True)
    before = _files(tmp_path)
    g = synthetic_graph()
    with pytest.raises(ValueError, match=r"mcu\.deploy name .*single folder name") as info:
        mcu.deploy(g, _inputs(g), out, name=bad, run_mcu=False)
    assert repr(bad)[:60] in str(info.value) or len(bad) > 100
    assert _files(tmp_path) == before  # nothing written, inside out_dir or outside


def test_graph_named_like_a_path_deploys_inside_out_dir(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    g = synthetic_graph()
    g.name = "../../escaped"
    r = mcu.deploy(g, _inputs(g), out, run_mcu=False)
    assert r["summary"]["host_images_exact"] == 6 and r["summary"]["model"] == "../../escaped"
    outside = [p for p in tmp_path.rglob("*") if out not in p.parents and p != out
               and p not in out.parents]
    assert outside == []
    (folder,) = [p for p in out.iterdir()]
    assert IDENT.fullmatch(folder.name) and "escaped" in folder.name
    assert Path(r["export"].out_dir).resolve().is_relative_to(out.resolve())


@pytest.mark.slow  # (a few seconds: make test runs it, test-fast does not)
def test_names_that_slug_alike_stay_apart(tmp_path):
    g = synthetic_graph()
    x = _inputs(g, 2)
    folders, guards = set(), set()
    for name in ("m/1", "m\\1", "m 1"):
        g.name = name
        r = mcu.deploy(g, x, tmp_path, run_mcu=False)
        folders.add(Path(r["export"].out_dir).parent.name)
        guards.add(re.search(r"#ifndef (\w+)", (Path(r["export"].out_dir) / "model.h")
                             .read_text()).group(1))
    assert len(folders) == 3 and len(guards) == 3
    assert len({names.c_identifier(n) for n in ("a-b", "a.b", "a b", "a_b")}) == 4


def test_plain_names_are_kept():
    assert names.c_identifier("conv0") == "conv0"
    assert names.path_slug("mobilenet_16_0.25_mixed") == "mobilenet_16_0.25_mixed"
    assert names.path_component("seed-cnn_1.v2") == "seed-cnn_1.v2"


# ------------------------------------------------------------------------------ the functions
def _decode_c_string(body: str) -> bytes:
    out, i = bytearray(), 0
    while i < len(body):
        if body[i] == "\\":
            if body[i + 1] in "01234567":
                out.append(int(body[i + 1:i + 4], 8))
                assert re.fullmatch(r"[0-7]{3}", body[i + 1:i + 4])
                i += 4
            else:
                assert body[i + 1] in '"\\?'
                out += body[i + 1].encode()
                i += 2
        else:
            out += body[i].encode()
            i += 1
    return bytes(out)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_c_comment_never_closes_or_splices(s):
    c = names.c_comment(s)
    assert "*/" not in c and "/*" not in c and "??" not in c and "\\" not in c
    assert "\n" not in c and "\r" not in c
    assert all(" " <= ch <= "~" for ch in c)
    assert len(c) <= names.COMMENT_MAX + 5
    for wrapped in (f"/*{c}*/", f"/* {c} */"):
        assert re.fullmatch(r"/\*(?:(?!\*/).)*\*/", wrapped, flags=re.DOTALL)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_c_identifier_is_a_safe_identifier(s):
    ident = names.c_identifier(s)
    assert IDENT.fullmatch(ident) and ident not in names.C_KEYWORDS
    assert not ident.startswith("_") and "__" not in ident
    assert len(ident) <= names.IDENTIFIER_MAX
    assert names.c_identifier(s) == ident  # deterministic


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text())
def test_c_identifier_keeps_different_names_apart(a, b):
    if a != b:
        assert names.c_identifier(a) != names.c_identifier(b)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_c_string_round_trips_and_has_no_trigraph(s):
    body = names.c_string(s)
    assert "??" not in body and "\n" not in body and all(" " <= ch <= "~" for ch in body)
    assert _decode_c_string(body) == s.encode("utf-8", "surrogatepass")


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_path_slug_is_one_component(s):
    p = names.path_slug(s)
    assert names.path_component(p) == p and Path(p).name == p


def test_c_string_and_comment_compile_to_the_same_bytes(tmp_path):
    texts = HOSTILE + [INJECTION, "0\x01" + "7", "\\x41"]
    body = "".join(f'    {{ /* {names.c_comment(t)} */ "{names.c_string(t)}", '
                   f'{len(t.encode("utf-8", "surrogatepass"))} }},\n' for t in texts)
    (tmp_path / "t.c").write_text(
        "#include <stdio.h>\nstruct s { const char *p; unsigned n; };\n"
        f"static const struct s all[] = {{\n{body}}};\n"
        "int main(void) { unsigned i; for (i = 0; i < sizeof all / sizeof all[0]; i++)"
        " fwrite(all[i].p, 1, all[i].n, stdout); return 0; }\n")
    exe = tmp_path / "t"
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Wextra", "-pedantic", "-Werror", "-Wcomment",
                    "-Wtrigraphs", str(tmp_path / "t.c"), "-o", str(exe)], check=True,
                   capture_output=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True).stdout
    assert out == b"".join(t.encode("utf-8", "surrogatepass") for t in texts)


@pytest.mark.parametrize("bad", ["../x", "a/b", "a\\b", "..", ".", ".git", "", "a\x00", "y" * 101,
                                 "a\nb"])
def test_path_component_refuses_with_the_value_and_fix(bad):
    with pytest.raises(ValueError, match="layer folder") as info:
        names.path_component(bad, "layer folder")
    assert "single folder name" in str(info.value) and "pass a plain name" in str(info.value)
    with pytest.raises(TypeError):
        names.path_component(None)


# ------------------------------------------------------------------------------ fits the target
def _no_compiler(monkeypatch):
    def fail(*args, **kw):
        pytest.fail(f"a tool ran before the size check: {args[:1]}")
    from tinyopt.deploy import objcache
    monkeypatch.setattr(objcache, "run", fail)  # the compiler, the object cache's runner
    monkeypatch.setattr(mcu.subprocess, "run", fail)


def test_target_memory_reads_the_linker_script():
    assert mcu.target_memory() == {"flash": 4 << 20, "ram": 4 << 20}


def test_arena_over_the_targets_ram_is_refused_before_any_build(tmp_path, monkeypatch):
    _no_compiler(monkeypatch)
    big = IntegerLayer(kind="maxpool", name="pool", in_shape=(1024, 1024, 4),
                       out_shape=(512, 512, 4), pool_size=(2, 2), stride=(2, 2))
    g = IntegerGraph(layers=[big], input_shape=(1024, 1024, 4), rounding="floor", name="big")
    x = np.zeros((1, 1024, 1024, 4), np.uint8)
    with pytest.raises(ValueError, match=r"'big' does not fit.*RAM, the target has 4194304"
                                         r".*smaller bit policy.*run_mcu=False") as info:
        mcu.deploy(g, x, tmp_path, mcu_images=1)
    needed = int(re.search(r"need (\d+) bytes of RAM", str(info.value)).group(1))
    assert needed > 4 << 20
    assert not (tmp_path / "big" / "host").exists()


def test_weights_over_the_targets_flash_are_refused_before_any_build(tmp_path, monkeypatch):
    _no_compiler(monkeypatch)
    monkeypatch.setattr(mcu, "target_memory", lambda: {"flash": 64, "ram": 4 << 20})
    g = synthetic_graph()
    with pytest.raises(ValueError, match=r"'synthetic' does not fit.*need \d+ bytes of flash, "
                                         r"the target .* has 64.*run_mcu=False"):
        mcu.deploy(g, _inputs(g), tmp_path, mcu_images=2)
    e = codegen.export_c(g, tmp_path / "src")
    with pytest.raises(ValueError, match="does not fit"):
        mcu.build_mcu(e)
    monkeypatch.setattr(mcu, "target_memory", lambda: {"flash": 4 << 20, "ram": 4 << 20})
    report = mcu.check_fits(e, "synthetic")
    assert report["flash_needed"] == sum(e.param_bytes.values()) + e.weight_pad_bytes
    assert report["ram_needed"] == e.arena_bytes + mcu.STACK_SIZE


def test_host_only_deploy_skips_the_target_check(tmp_path, monkeypatch):
    monkeypatch.setattr(mcu, "target_memory", lambda: {"flash": 64, "ram": 64})
    g = synthetic_graph()
    r = mcu.deploy(g, _inputs(g), tmp_path, run_mcu=False)
    assert r["summary"]["host_images_exact"] == 6


# ------------------------------------------------------------------------------ counts
def test_instruction_counts_are_ints_rounded_half_to_even():
    run = mcu.McuRun(outputs=np.zeros((2, 1)), image_ticks=np.array([1, 3]),
                     step_ticks={"a": 1, "b": 3}, insns_per_tick=2.5, stack_peak=0,
                     stack_at_call=0, calib_insns=5, calib_ticks=2)
    assert run.image_insns.dtype == np.int64
    assert run.image_insns.tolist() == [2, 8]  # 2.5 -> 2, 7.5 -> 8 (ties to even)
    per_step = run.step_insns(1)
    assert per_step == {"a": 2, "b": 8} and all(type(v) is int for v in per_step.values())
    assert run.step_insns(2) == {"a": 1, "b": 4}  # 1.25 -> 1, 3.75 -> 4
    exact = mcu.McuRun(outputs=np.zeros((1, 1)), image_ticks=np.array([752968]), step_ticks={},
                       insns_per_tick=2e6 / 50001, stack_peak=0, stack_at_call=0,
                       calib_insns=2_000_000, calib_ticks=50001)
    assert exact.image_insns[0] == round(Fraction(752968 * 2_000_000, 50001))

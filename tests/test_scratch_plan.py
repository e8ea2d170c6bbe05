"""The Cortex-M7 kernels' scratch planned in the arena (issues 27 and 29): one rule in the
integer stage (tinyopt.integer.steps.scratch_bytes) that kernels_m7.choose reports, a buffer
per step alive during that step only, never over a tensor live at it, and no stack arrays left in
the generated step functions."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

from tests.test_codegen import coverage_graph
from tests.test_kernels_m7 import _add_graph, _fused_graph, _mixed_graph, chain, host_check
from tinyopt.deploy import codegen, kernels_m7, mcu
from tinyopt.integer import memplan, steps as steps_mod


def _graphs():
    return {"mixed": _mixed_graph(), "coverage": coverage_graph(0, "floor", False),
            "coverage_tfl": coverage_graph(1, "tflite_double", True), "add": _add_graph(),
            "fused_add": _fused_graph("tflite_single", True)}


@pytest.fixture(scope="module")
def graphs():
    return _graphs()


def test_scratch_bytes_is_what_choose_reports(graphs):
    seen = set()
    for name, g in graphs.items():
        steps, _ = steps_mod.memory_plan(g)
        for k, s in enumerate(steps):
            choice = kernels_m7.choose(s, k, rounding=g.rounding)
            assert steps_mod.scratch_bytes(s) == choice.scratch == s.scratch_bytes, (name, k)
            assert steps_mod.scratch_bytes(s, "portable") == 0
            assert choice.scratch % steps_mod.SCRATCH_ALIGN == 0
            seen.add((choice.kind, choice.scratch > 0))
    # the graphs cover steps with scratch (gemm, pools) and steps without (depthwise, add)
    assert {("gemm", True), ("depthwise", False), ("add", False)} <= seen, seen
    with pytest.raises(ValueError, match="kernels must be one of"):
        steps_mod.scratch_bytes(steps[0], "fast")


def test_scratch_bytes_by_hand():
    """A 4-bit dense layer 288 -> 10 (tn_m7_sub reads the packed codes: no scratch, where the
    gemm kernel would take one im2col row of KP = 288 int16 and 10 int32 outputs) and a 3x3
    conv with a fused max pool (two rows, three output sets)."""
    g = _mixed_graph()
    steps, _ = steps_mod.memory_plan(g)
    dense = steps[-1]
    assert dense.layer.kind == "dense"
    assert steps_mod.m7_kernel(dense)[0] == "sub"
    assert steps_mod.scratch_parts(dense) == (0, 0)
    assert steps_mod.kind_scratch_parts(dense, "gemm") == (2 * 288, 4 * 10)
    g = chain(2, [dict(kind="conv2d", out_shape=(6, 6, 5), wshape=(5, 3, 3, 3), wbits=8,
                       out_bits=8, padding=(1, 1, 1, 1)),
                  dict(kind="maxpool", out_shape=(3, 3, 5), pool_size=(2, 2), stride=(2, 2)),
                  dict(kind="flatten"),
                  dict(kind="dense", out_shape=(4,), wshape=(4, 45), wbits=8, out_bits=8)],
              (6, 6, 3))
    steps, _ = steps_mod.memory_plan(g)
    assert steps[0].pool is not None
    kp = 28  # 3 * 3 * 3 = 27 taps, rounded up to a word of 8-bit weights
    assert steps_mod.scratch_parts(steps[0]) == (2 * 2 * kp, 3 * 4 * 5)
    assert steps_mod.scratch_bytes(steps[0]) == 2 * 2 * kp + 3 * 4 * 5


def _live(mem: memplan.MemoryPlan, k: int) -> list[tuple[str, int, int]]:
    table = mem.table()
    rows = table[(table["first_step"] <= k) & (table["last_step"] >= k)]
    return [(r.tensor, r.offset, r.bytes) for r in rows.itertuples()]


def test_scratch_never_overlaps_a_tensor_live_at_its_step(graphs):
    for name, g in graphs.items():
        for kw in ({}, {"overlap": False, "fuse_add": False}, {"fuse_pool": False}):
            steps, mem = steps_mod.memory_plan(g, **kw)
            mem.check()
            assert set(mem.scratch) == {k for k, s in enumerate(steps) if s.scratch_bytes}
            for k, s in enumerate(steps):
                if not s.scratch_bytes:
                    continue
                lo, hi = s.scratch_offset, s.scratch_offset + s.scratch_bytes
                assert lo % steps_mod.SCRATCH_ALIGN == 0 and hi <= mem.arena_bytes  # inside
                assert lo == mem.scratch_offset(k)
                own = mem.scratch[k]
                live = [t for t in _live(mem, k) if t[0] != own]
                assert {*s.inputs, s.output} <= {t[0] for t in live}, (name, k)
                for tensor, off, n in live:
                    assert hi <= off or off + n <= lo, (name, kw, k, tensor)


def test_arena_includes_scratch_and_reuses_dead_bytes(graphs):
    for name, g in graphs.items():
        steps, mem = steps_mod.memory_plan(g)
        _, portable = steps_mod.memory_plan(g, kernels="portable")
        assert not portable.scratch
        biggest = max(s.scratch_bytes for s in steps)
        assert portable.arena_bytes <= mem.arena_bytes <= portable.arena_bytes + biggest
        assert mem.arena_bytes >= max(s.scratch_offset + s.scratch_bytes for s in steps)
        # the scratch counts in the lower bound too (a step's output and scratch are disjoint)
        assert mem.lower_bound >= max(s.scratch_bytes + s.out_bytes for s in steps)
        assert mem.lower_bound <= mem.arena_bytes
    # a big input image dies after the first layer: the second conv's scratch (tn_m7_conv's
    # int16 lanes) lands in its bytes
    g = chain(4, [dict(kind="conv2d", out_shape=(4, 4, 8), wshape=(8, 3, 3, 16), wbits=8,
                       out_bits=8, stride=(4, 4), padding=(0, 0, 0, 0)),
                  dict(kind="conv2d", out_shape=(2, 2, 8), wshape=(8, 3, 3, 8), wbits=8,
                       out_bits=8, padding=(0, 0, 0, 0))],
              (16, 16, 16))
    steps, mem = steps_mod.memory_plan(g)
    image = (mem.offset(g.input_name), steps[0].in_bytes)
    lo = steps[1].scratch_offset
    assert steps[1].scratch_bytes and lo < image[0] + image[1]
    # ... so the arena is that of the first step (its output may slide over its input)
    assert mem.arena_bytes <= steps[0].in_bytes + steps[0].out_bytes + steps[0].scratch_bytes


def test_scratch_names_never_clash_with_tensor_names():
    steps = [memplan.StepIO(("x",), "<scratch 0>", scratch=8, scratch_align=4),
             memplan.StepIO(("<scratch 0>",), "y", scratch=6, scratch_align=4)]
    sizes = {"x": 5, "<scratch 0>": 3, "y": 2}
    p = memplan.plan_memory(steps, sizes, "x", ["y"])
    assert p.scratch[0] == "<scratch 0>'" and p.scratch[1] == "<scratch 1>"
    assert p.scratch_offset(0) % 4 == 0 and p.scratch_offset(1) % 4 == 0
    assert p.arena_bytes >= 5 + 3 + 8 - 3  # x, its output and the scratch at step 0, aligned
    with pytest.raises(KeyError, match="no scratch"):
        memplan.plan_memory(steps[:1], {"x": 5, "<scratch 0>": 3}, "x",
                            ["<scratch 0>"]).scratch_offset(1)


def test_generated_steps_take_their_scratch_from_the_arena(tmp_path):
    g = _mixed_graph()
    e = host_check(g, tmp_path)  # host build bit-exact with the simulator
    c = (tmp_path / "src" / "model.c").read_text()
    assert not re.search(r"int16_t buf\[|int32_t v\[", c)  # no stack arrays left
    for k, s in enumerate(e.steps):
        if s.scratch_bytes:
            assert f"model_arena + {s.scratch_offset}u" in c
    assert e.scratch_bytes == max(s.scratch_bytes for s in e.steps) > 0
    h = (tmp_path / "src" / "model.h").read_text()
    # a caller's arena of any alignment: 3 more bytes to align it
    assert f"#define MODEL_ARENA_BYTES {e.arena_bytes}u" in h
    assert f"#define MODEL_ARENA_BYTES {e.arena_bytes + 3}u" in h
    portable = codegen.export_c(g, tmp_path / "portable", kernels="portable")
    assert "#else" not in (tmp_path / "portable" / "model.h").read_text()
    assert portable.arena_bytes <= e.arena_bytes  # (the M7 scratch may fit in free bytes)


def test_a_plan_for_other_kernels_is_refused(tmp_path):
    g = _mixed_graph()
    steps, _ = steps_mod.memory_plan(g, kernels="portable")
    choice = kernels_m7.choose(steps[0], 0, rounding=g.rounding)
    with pytest.raises(ValueError, match="plan the steps with the same kernels"):
        kernels_m7.step_function(steps[0], 0, choice, g.rounding)


def _ad_fcae():
    from tinyopt.front import zoo
    from tinyopt.integer.from_litert import graph_from_tflite
    try:
        tfl = zoo.mlperf_tiny_tflite("ad_fcae")
    except zoo.ModelNotFound as exc:
        if os.environ.get("TINYOPT_REQUIRE_DATA"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    return graph_from_tflite(tfl, flavour="tflm")


@pytest.mark.slow  # a Cortex-M7 build and a QEMU run
def test_scratch_left_the_stack_under_qemu(qemu, tmp_path):
    """MLPerf AD: its dense layers' im2col rows and outputs (2,816 B for the 128 -> 640 layer)
    were stack arrays (5,476 B of model_run stack before); with the gemm kernel they are in the
    arena, and the measured stack of model_run is call frames only, below the largest scratch;
    with tn_m7_fc (steps.OWN_WEIGHT_ORDER) no step needs scratch and the RAM (data + bss + peak
    stack) is below CMSIS-NN's 1,368 B (issue 29)."""
    g = _ad_fcae()
    x = np.random.default_rng(1).integers(-128, 128, (4, *g.input_shape))
    r = mcu.deploy(g, x, tmp_path, name="ad", host_images=4, mcu_images=2)
    s, e = r["summary"], r["export"]
    assert s["host_mismatching_values"] == 0 and s["mcu_mismatching_values"] == 0
    assert s["ram_acceptance_ok"] and s["arena_in_bss"] == e.arena_bytes
    assert s["ram_measured"] == s["data"] + s["bss"] + s["stack_peak"]
    if steps_mod.OWN_WEIGHT_ORDER:
        assert e.kernels == ["fc"] * 10 and s["scratch_arena_bytes"] == e.scratch_bytes == 0
        assert e.arena_bytes == 768 and s["ram_measured"] < 1368, s["ram_measured"]
        return
    assert s["scratch_arena_bytes"] == e.scratch_bytes > 1000
    # before: a step's scratch was on its stack, so model_run's stack exceeded the largest one
    assert s["stack_model_run"] < e.scratch_bytes
    assert s["ram_measured"] == s["data"] + s["bss"] + s["stack_peak"]


def test_an_m7_export_without_scratch_still_aligns_its_arena(tmp_path):
    """The specialised kernels read tensors by words where the plan put them at a multiple of 4
    (LDM / LDRD fault on a Cortex-M7 otherwise: tn_m7_subfc16's XA, tn_m7_sub's lanes), which
    holds only in a word-aligned arena: an export with specialised steps and no scratch (a
    dense head: tn_m7_fc16) declares its static arena aligned and aligns a caller's (3 bytes
    more), as one with scratch does; the portable kernels (bytes) need neither."""
    from tests.test_kernels_m7_sub import _dense
    g = chain(7, [_dense(2, 124, 8, 8)], (124,), 8, True, 0, "floor")
    e = codegen.export_c(g, tmp_path / "m7")
    c, h = ((tmp_path / "m7" / f).read_text() for f in ("model.c", "model.h"))
    assert not any(s.scratch_bytes for s in e.steps) and "tn_m7_fc16(" in c
    assert "model_arena[MODEL_ARENA_BYTES] __attribute__((aligned(4)))" in c
    assert "& 3u);" in c  # model_set_arena aligns the caller's arena up
    assert f"#define MODEL_ARENA_BYTES {e.arena_bytes + 3}u" in h
    codegen.export_c(g, tmp_path / "portable", kernels="portable")
    c = (tmp_path / "portable" / "model.c").read_text()
    assert "aligned(4)" not in c and "& 3u);" not in c

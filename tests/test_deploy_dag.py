"""The C export of branching integer graphs (DAGs): the memory plan (tinyopt.integer.memplan) and
its invariants checked by brute force, host C bit-exact with tinyopt.sim on the four MLPerf Tiny
int8 models in both flavours and on small Keras nets (residual ADD, concatenation, Conv1D,
ZeroPadding2D, softmax head, QAT-then-int8), predicted_ram == the built arena, QEMU on a DAG, and
clear errors."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.test_intgraph_dag import dag
from tests.test_mlperf_import import MODELS, NETS, _model
from tinyopt.deploy import codegen, mcu
from tinyopt.integer import memplan
from tinyopt.integer import steps as steps_mod
from tinyopt.integer.from_litert import graph_from_tflite
from tinyopt.integer.graph import IntegerGraph, IntegerLayer

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")


def _inputs(g, n, seed=0):
    lo = -128 if g.input_signed else 0
    return np.random.default_rng(seed).integers(lo, lo + (1 << g.input_bits),
                                                (n, *g.input_shape))


def host_diff(g, tmp_path, n=30, seed=0, varied=True, **kw):
    """(differing output values of the host C build vs tinyopt.sim on n inputs, export);
    ``varied``: require outputs that differ between inputs (a constant output checks little)."""
    e = codegen.export_c(g, tmp_path / "src", **kw)
    exe = mcu.build_host(e, build_dir=tmp_path / "host")
    x = _inputs(g, n, seed)
    got = mcu.run_host(exe, e, x)
    want = codegen.reference_output(g, x)
    assert got.shape == want.shape
    assert not varied or len({r.tobytes() for r in want}) > 1, "a constant output checks little"
    return int((got != want).sum()), e


# ------------------------------------------------------------------------------ plan invariants
def brute_force_check(g: IntegerGraph, e: codegen.Export) -> int:
    """From the graph's own wiring (not memplan's buffers): a tensor is live from the step that
    writes it (0 for the graph input) to the last step that reads it or an alias of it (past the
    last step for the graph output). Two live tensors may share bytes only when one is a
    reshape of the other, or when a step that may work in place writes one over the other as
    the other's last reader, at the same offset. Returns how many pairs were compared."""
    alias = {outs[0]: ins[0] for lay, (ins, outs) in zip(g.layers, g.wiring())
             if lay.kind in ("flatten", "reshape")}

    def root(t):
        while t in alias:
            t = alias[t]
        return t

    steps = e.steps
    first, last = {root(g.input_name): 0}, {}
    for k, s in enumerate(steps):
        first.setdefault(s.output, k)
        for t in s.inputs:
            last[root(t)] = k
    for t in g.output_names():
        last[root(t)] = len(steps)
    where = {}
    for k, s in enumerate(steps):
        for t, off in zip(s.inputs, s.in_offsets):
            where.setdefault(root(t), off)
            assert where[root(t)] == off, f"tensor {t!r} read at two offsets"
        where.setdefault(s.output, s.out_offset)
    size = {r: codegen.tensor_bytes(g.tensor(r)) for r in first}
    assert max(where[r] + size[r] for r in first) <= e.arena_bytes
    compared = 0
    names = sorted(first)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            la, lb = last.get(a, first[a]), last.get(b, first[b])
            if not (first[a] <= lb and first[b] <= la):
                continue
            compared += 1
            if where[a] + size[a] <= where[b] or where[b] + size[b] <= where[a]:
                continue
            # overlapping bytes: only a step writing one over the other, which it reads last:
            # exactly in place (element-wise kernels, a fused add over its other addend) or
            # sliding (a windowed kernel's output at least write_delay bytes below its input)
            # y is written over x: born later, or at step 0 over the graph input
            x, y = (a, b) if (first[a], steps[first[a]].output == a) < (
                first[b], steps[first[b]].output == b) else (b, a)
            s = steps[first[y]]
            inplace = ((s.layer.kind in codegen.INPLACE_INPUTS
                        or (s.add is not None and root(s.inputs[1]) == x))
                       and where[x] == where[y])
            delay = steps_mod.write_delay(s)
            sliding = delay is not None and where[x] - where[y] >= delay
            assert ((inplace or sliding) and last.get(x, first[x]) == first[y]
                    and x in {root(t) for t in s.inputs}), (
                f"tensors {a!r} and {b!r} are live together and overlap")
    return compared


def test_the_plan_of_every_mlperf_model_passes_the_brute_force_check():
    for name in MODELS:
        g = graph_from_tflite(_model(name))
        steps, mem = codegen.memory_plan(g)
        e = codegen.Export(out_dir=None, files=[], steps=steps, arena_bytes=mem.arena_bytes,
                           in_bytes=0, out_bytes=0, in_bits=8, in_signed=True, out_bits=8,
                           out_signed=True, out_shape=(), memory=mem)
        assert brute_force_check(g, e) >= len(steps) - 1  # at least every step's in + out
        mem.check()
        assert mem.lower_bound <= mem.arena_bytes
        table = mem.table()
        assert {"tensor", "offset", "bytes", "first_step", "last_step"} <= set(table.columns)
        assert len(table) >= len(steps)


def test_the_brute_force_check_catches_an_overlap():
    g = graph_from_tflite(_model("ic_resnet8"))
    steps, mem = codegen.memory_plan(g)
    e = codegen.Export(out_dir=None, files=[], steps=steps, arena_bytes=mem.arena_bytes,
                       in_bytes=0, out_bytes=0, in_bits=8, in_signed=True, out_bits=8,
                       out_signed=True, out_shape=())
    s = steps[1]  # a 3x3 conv: move its output onto its input, consistently for its readers
    for r in steps[2:]:
        r.in_offsets = tuple(s.in_offsets[0] if t == s.output else o
                             for t, o in zip(r.inputs, r.in_offsets))
    s.out_offset = s.in_offsets[0]
    with pytest.raises(AssertionError, match="live together and overlap"):
        brute_force_check(g, e)
    b = mem.buffers
    b[1].offset = b[0].offset  # the input's buffer and the first conv's output: both at step 0
    assert b[0].first <= b[1].last and b[1].first <= b[0].last
    with pytest.raises(ValueError, match="live at the same step and overlap"):
        mem.check()


def test_planner_on_a_chain_is_the_ping_pong_arena():
    """Chains: at least as good as before DAGs, max over steps of input + output bytes."""
    sizes = {"x": 100, "a": 40, "b": 90, "c": 20, "d": 50}
    steps = [memplan.StepIO(("x",), "a"), memplan.StepIO(("a",), "b"),
             memplan.StepIO(("b",), "c"), memplan.StepIO(("c",), "d")]
    p = memplan.plan_memory(steps, sizes, "x", ["d"])
    assert p.arena_bytes == p.lower_bound == 140
    # the case where greedy first fit alone is worse than ping-pong (a gap too small to use)
    sizes = {"x": 40, "a": 20, "b": 40, "c": 50}
    steps = [memplan.StepIO(("x",), "a"), memplan.StepIO(("a",), "b"),
             memplan.StepIO(("b",), "c")]
    p = memplan.plan_memory(steps, sizes, "x", ["c"])
    assert p.arena_bytes == p.lower_bound == 90
    assert p.candidates["greedy_size"] > 90 and p.method == "ping_pong"


def test_planner_aliases_in_place_and_branches():
    sizes = {"x": 10, "a": 10, "b": 10, "r": 10, "s": 10}
    # x -> a; a -> b; add(a, b) -> s may overwrite a or b (both die there); r aliases s
    steps = [memplan.StepIO(("x",), "a"), memplan.StepIO(("a",), "b"),
             memplan.StepIO(("a", "b"), "s", inplace=(0, 1))]
    p = memplan.plan_memory(steps, sizes, "x", ["r"], aliases={"r": "s"})
    assert p.offset("s") == p.offset("r") == p.offset("a")  # written over its first addend
    assert p.arena_bytes == p.lower_bound == 20
    # without in-place the sum needs a third buffer
    steps[2] = memplan.StepIO(("a", "b"), "s")
    assert memplan.plan_memory(steps, sizes, "x", ["r"], aliases={"r": "s"}).arena_bytes == 30
    # a tensor read later cannot be overwritten in place
    steps = [memplan.StepIO(("x",), "a"), memplan.StepIO(("a",), "b", inplace=(0,)),
             memplan.StepIO(("a", "b"), "s")]
    p = memplan.plan_memory(steps, sizes, "x", ["s"])
    assert p.offset("a") != p.offset("b")
    # a fused conv + add reading a as conv input and as addend must not overwrite a
    steps = [memplan.StepIO(("x",), "a"), memplan.StepIO(("a", "a"), "s", inplace=(1,),
                                                         exclusive=True)]
    p = memplan.plan_memory(steps, sizes, "x", ["s"])
    assert p.offset("a") != p.offset("s")
    steps[1].exclusive = False  # element-wise kernels (add(a, a)) may
    assert memplan.plan_memory(steps, sizes, "x", ["s"]).offset("s") == p.offset("a")
    with pytest.raises(ValueError, match="no earlier step writes"):
        memplan.plan_memory([memplan.StepIO(("y",), "a")], {"y": 1, "a": 1, "x": 1}, "x", ["a"])


@pytest.mark.slow  # ~10 s of C builds: in make test, not in the edit-test loop
def test_sliding_writes_on_random_windowed_layers(tmp_path):
    """One windowed 8-bit layer per graph (conv, pointwise, depthwise with a depth multiplier,
    max / average pool; random kernel, stride, padding): the output slides over the input
    (arena about max(input, output) instead of their sum) and the C stays bit-exact, so no
    input byte is overwritten before its last read."""
    from tests.test_intgraph_dag import _conv
    from tinyopt.integer.arith import same_padding
    rng = np.random.default_rng(0)
    slid = 0
    for case in range(10):
        kind = ["conv2d", "pointwise", "depthwise", "maxpool", "avgpool"][case % 5]
        h, w, c = (int(v) for v in rng.integers(3, 9, 3))
        k = (1, 1) if kind == "pointwise" else tuple(int(v) for v in rng.integers(1, 4, 2))
        st = tuple(int(v) for v in rng.integers(1, 3, 2))
        oh, ow = -(-h // st[0]), -(-w // st[1])
        pad = same_padding(h, k[0], st[0], oh) + same_padding(w, k[1], st[1], ow)
        if kind in ("conv2d", "pointwise"):
            lay = _conv("L", ("x",), c, int(rng.integers(1, 9)), -5, 3, case, k=1)
            lay.kind = kind
            lay.set_weights(rng.integers(0, 256, (lay.out_channels, *k, c)), 8)
        elif kind == "depthwise":
            dm = int(rng.integers(1, 3))
            lay = _conv("L", ("x",), c, c * dm, -5, 3, case, k=1)
            lay.kind, lay.depth_multiplier = "depthwise", dm
            lay.set_weights(rng.integers(0, 256, (*k, c * dm)), 8)
        else:
            lay = IntegerLayer(kind=kind, name="L", in_shape=(h, w, c), out_shape=(oh, ow, c),
                               in_signed=True, out_signed=True, in_zero_point=-5,
                               out_zero_point=-5, pool_size=k, inputs=("x",), outputs=("L",))
        lay.in_shape, lay.stride, lay.padding = (h, w, c), st, pad
        lay.out_shape = (oh, ow, lay.out_shape[-1] if kind not in ("maxpool", "avgpool") else c)
        g = IntegerGraph([lay], input_shape=(h, w, c), input_signed=True, input_zero_point=-5,
                         rounding="tflite_double", input_name="x", outputs=["L"])
        diff, e = host_diff(g, tmp_path / str(case), n=25, seed=case)
        assert diff == 0, (case, kind, k, st, pad)
        s = e.steps[0]
        if e.arena_bytes < s.in_bytes + s.out_bytes:
            slid += 1
            assert e.arena_bytes >= max(s.in_bytes, s.out_bytes)
        brute_force_check(g, e)
    assert slid >= 8  # almost every case slides (a tiny input may not gain)


# ------------------------------------------------------------------------------ host bit-exact
@pytest.mark.slow  # 8 C builds (~16 s); make test-fast keeps the hand-built DAG and fusion tests
@pytest.mark.parametrize("flavour", ["litert", "tflm"])
@pytest.mark.parametrize("name", MODELS)
def test_mlperf_host_c_bitexact(tmp_path, name, flavour):
    g = graph_from_tflite(_model(name), flavour=flavour)
    diff, e = host_diff(g, tmp_path, n=30, seed=11)
    assert diff == 0
    assert brute_force_check(g, e) > 0


@pytest.mark.slow  # C builds of several graphs (make test runs it)
def test_residual_add_fusion_saves_a_buffer_and_stays_exact(tmp_path):
    g = graph_from_tflite(_model("ic_resnet8"), flavour="tflm")
    fused = codegen.export_c(g, tmp_path / "f")
    plain = codegen.export_c(g, tmp_path / "p", fuse_add=False)
    assert sum(s.add is not None for s in fused.steps) == 3
    assert len(plain.steps) == len(fused.steps) + 3
    assert fused.arena_bytes < plain.arena_bytes
    x = _inputs(g, 10, 5)
    want = codegen.reference_output(g, x)
    for e, d in ((fused, "fh"), (plain, "ph")):
        exe = mcu.build_host(e, build_dir=tmp_path / d)
        np.testing.assert_array_equal(mcu.run_host(exe, e, x), want)


def test_hand_built_dag_host_bitexact(tmp_path):
    """conv, 1x1 conv, ADD of both (in place), PAD, CONCAT of one tensor with itself, flatten
    and a softmax over 448 values (tests/test_intgraph_dag.dag)."""
    g = dag()
    diff, e = host_diff(g, tmp_path, n=40)
    assert diff == 0
    # b reads a and is fused with add(a, b): its output must not overwrite a while b reads it
    assert [s.layer.kind for s in e.steps] == ["conv2d", "pointwise", "pad", "concat", "softmax"]
    assert e.steps[1].add is not None and e.steps[1].out_offset != e.steps[1].in_offsets[0]
    assert brute_force_check(g, e) > 0


def quantize_graph() -> IntegerGraph:
    """x -> a (3x3 conv), x -> q (QUANTIZE, in place over x: its last reader), concat(q, a),
    softmax over the 7 channels of each pixel (in place)."""
    from tests.test_intgraph_dag import _conv
    from tinyopt.integer.arith import tflite_quantize_multiplier
    a = _conv("a", ("x",), 3, 4, -5, 7, 3, k=3)
    m0, n0 = tflite_quantize_multiplier(0.61)
    q = IntegerLayer(kind="quantize", name="q", in_shape=(6, 6, 3), out_shape=(6, 6, 3),
                     in_signed=True, in_zero_point=-5, out_signed=True, out_zero_point=7,
                     m0=m0, n0=n0, rounding="tflite_double", inputs=("x",), outputs=("q",))
    cat = IntegerLayer(kind="concat", name="cat", in_shape=(6, 6, 3), out_shape=(6, 6, 7),
                       in_signed=True, out_signed=True, in_zero_point=7, out_zero_point=7,
                       axis=-1, inputs=("q", "a"), outputs=("c",))
    sm, se = tflite_quantize_multiplier(0.05 * (1 << 26))
    soft = IntegerLayer(kind="softmax", name="soft", in_shape=(6, 6, 7), out_shape=(6, 6, 7),
                        in_signed=True, out_signed=True, in_zero_point=7, out_zero_point=-128,
                        m0=sm, n0=se, diff_min=-int(np.floor(31 * 2**26 / 2 ** int(se[0]))),
                        rounding="tflite_double", inputs=("c",), outputs=("y",))
    return IntegerGraph([a, q, cat, soft], input_shape=(6, 6, 3), input_signed=True,
                        input_zero_point=-5, rounding="tflite_double", input_name="x",
                        outputs=["y"], name="quantize_dag")


def test_quantize_concat_softmax_in_place_host_bitexact(tmp_path):
    g = quantize_graph()
    diff, e = host_diff(g, tmp_path, n=40, seed=2)
    assert diff == 0
    q, soft = e.steps[1], e.steps[3]
    assert q.layer.kind == "quantize" and q.out_offset == q.in_offsets[0]  # over the input
    assert soft.out_offset == soft.in_offsets[0]
    assert brute_force_check(g, e) > 0


@pytest.fixture(scope="module")
def nets():
    pytest.importorskip("tensorflow")
    from tests import _keras_nets
    return {name: _keras_nets.build(name) for name in NETS}


@pytest.mark.slow  # converting the Keras nets takes ~25 s
@pytest.mark.parametrize("name", NETS)
def test_keras_nets_host_c_bitexact(tmp_path, nets, name):
    # every net's outputs vary over the random inputs (the QAT net's ranges are moved onto the
    # data by a few training-mode passes, tests/_keras_nets.build), so the check has teeth
    varied = True
    for flavour in ("litert", "tflm"):
        g = graph_from_tflite(nets[name], flavour=flavour)
        diff, e = host_diff(g, tmp_path / flavour, n=40, seed=3, varied=varied)
        assert diff == 0, (name, flavour)
        brute_force_check(g, e)


def test_sub_byte_chains_keep_the_ping_pong_arena(tmp_path):
    from tests.test_codegen import coverage_graph
    g = coverage_graph(1, "floor", False)
    steps, arena = codegen.plan(g, fuse_pool=False, kernels="portable")  # no kernel scratch
    assert arena == max(s.in_bytes + s.out_bytes for s in steps)
    # with the M7 kernels' scratch: at most one step's input, output and scratch more
    steps, m7 = codegen.plan(g, fuse_pool=False)
    assert arena < m7 <= max(s.in_bytes + s.out_bytes + s.scratch_bytes for s in steps)
    assert host_diff(g, tmp_path, n=20)[0] == 0


# ------------------------------------------------------------------------------ deploy
@pytest.mark.slow  # (a few seconds: make test runs it, test-fast does not)
def test_deploy_predicted_ram_is_the_built_arena_for_a_dag_and_a_chain(tmp_path):
    g = graph_from_tflite(_model("kws_dscnn"))
    r = mcu.deploy(g, _inputs(g, 6), tmp_path, name="kws", run_mcu=False)
    s = r["summary"]
    assert s["host_images_exact"] == 6 and s["predicted_ram"] == s["arena_bytes"]
    kept = {"model", "layers", "steps", "weight_bits", "act_bits", "rounding", "macs",
            "host_images", "host_images_exact", "host_mismatching_values", "distinct_outputs",
            "predicted_flash", "predicted_weight_bytes", "predicted_extra_bytes",
            "predicted_ram", "arena_bytes", "param_bytes_c", "weight_bytes_c", "mcu_skipped"}
    assert kept <= set(s), f"summary lost keys {kept - set(s)}"
    dag_graph = dag()
    r = mcu.deploy(dag_graph, _inputs(dag_graph, 6), tmp_path, name="dag", run_mcu=False)
    s = r["summary"]
    assert s["host_images_exact"] == 6 and s["predicted_ram"] == s["arena_bytes"]
    assert s["memory_model_ram"] is None  # a DAG: the memory model does not describe it
    assert len(r["memory"]) >= s["steps"]
    # a chain with a fused max pool: the memory model's figure is larger, the plan's is exact
    from tests.test_codegen import coverage_graph
    chain = coverage_graph(2, "floor", False)
    r = mcu.deploy(chain, _inputs(chain, 6), tmp_path, name="chain", run_mcu=False)
    s = r["summary"]
    assert s["predicted_ram"] == s["arena_bytes"] and s["memory_model_ram"] is not None


@pytest.mark.slow  # a few seconds of emulated Cortex-M7 per image
@pytest.mark.parametrize("name", ["ic_resnet8", "kws_dscnn"])
def test_under_qemu_bitexact(qemu, tmp_path, name):
    """ResNet-8: a DAG with fused residual adds; the DS-CNN: sliding writes in every layer."""
    g = graph_from_tflite(_model(name), flavour="tflm")
    r = mcu.deploy(g, _inputs(g, 3, 9), tmp_path, name=name, mcu_images=3)
    s = r["summary"]
    assert s["host_images_exact"] == 3 and s["mcu_images_exact"] == 3
    assert s["predicted_ram"] == s["arena_bytes"] == s["arena_in_bss"]
    assert s["insns_per_image_mean"] > s["macs"] / 2  # SMLAD: at most two MACs an instruction
    if name == "kws_dscnn":
        assert "slide" in r["export"].memory.method


# ------------------------------------------------------------------------------ errors
def test_export_errors_name_the_node(tmp_path):
    g = dag()
    g.outputs = ["y", "s"]
    with pytest.raises(ValueError, match=r"2 outputs \['y', 's'\].*writes one"):
        codegen.export_c(g, tmp_path)
    g = dag()
    g["soft"].n0 = np.array([-3], np.int8)
    with pytest.raises(ValueError, match=r"layer 'soft' \(softmax\).*n0 must be in \[0, 31\]"):
        codegen.export_c(g, tmp_path)
    only = IntegerGraph([IntegerLayer(kind="flatten", name="f", in_shape=(2, 2, 1),
                                      out_shape=(4,))], input_shape=(2, 2, 1))
    with pytest.raises(ValueError, match="no compute, pool or DAG node"):
        codegen.export_c(only, tmp_path)


def test_unsupported_kind_names_the_node_and_the_supported_set():
    lay = IntegerLayer(kind="gelu", name="act7", in_shape=(4,), out_shape=(4,))
    with pytest.raises(ValueError, match=r"layer 'act7' \(gelu\).*reshape.*softmax"):
        codegen.check_layer(lay, "tflite_double")

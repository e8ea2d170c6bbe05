"""C export (tinyopt.codegen) and its host / QEMU builds (tinyopt.mcu): bit-exact with tinyopt.sim.

The host path always runs (gcc). The Cortex-M7 path runs when arm-none-eabi-gcc, newlib and
qemu-system-arm are installed (`make mcu` installs them) and is skipped with the reason otherwise
(the ``qemu`` fixture of tests/conftest.py).
"""
from __future__ import annotations

import itertools
import shutil
import subprocess

import numpy as np
import pytest

from tests.conftest import small_mobilenet
from tinyopt.deploy import codegen, mcu, synth
from tinyopt.icn import IntegerGraph, IntegerLayer
from tinyopt.integer import sim
from tinyopt.integer.arith import packed_bytes
from tinyopt.integer.from_litert import graph_from_tflite

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")


# ------------------------------------------------------------------------------ a coverage graph
def coverage_graph(seed: int, rounding: str, signed_input: bool) -> IntegerGraph:
    """Every kernel and format the exporter handles, with calibrated random parameters:
    conv 3x3/2 asymmetric SAME (4-bit PC weights, 4-bit output, zero point 2), depthwise with
    depth multiplier 2 padding integer 0 (2-bit weights and output), pointwise with a narrowed
    clamp, a fused overlapping max pool 3x3/2, a 1-bit-weight conv with a signed 16-bit output,
    SAME average pool (in-bounds count), a stand-alone max pool, flatten, and a dense layer
    (raw int32 logits for "floor", requantized int8 for the TFLite flavours)."""
    rng = np.random.default_rng(seed)
    tfl = rounding != "floor"
    zin = -3 if signed_input else 128
    g = IntegerGraph(layers=[], input_shape=(12, 12, 3), input_bits=8, input_signed=signed_input,
                     input_zero_point=zin, rounding=rounding, name=f"coverage_{rounding}")
    lo = -128 if signed_input else 0
    x = rng.integers(lo, lo + 256, (64, 12, 12, 3))
    state = {"shape": (12, 12, 3), "bits": 8, "signed": signed_input, "zp": zin}

    def compute(kind, name, out_shape, wshape, wbits, per_channel, **kw):
        layer = IntegerLayer(kind=kind, name=name, in_shape=state["shape"], out_shape=out_shape,
                             in_bits=state["bits"], in_signed=state["signed"],
                             in_zero_point=state["zp"], **kw)
        top = (1 << wbits) - 1
        layer.set_weights(rng.integers(0, top + 1, wshape), wbits)
        n = out_shape[-1] if per_channel else 1
        layer.weight_zero_point = rng.integers(top // 4, top - top // 4 + 1, n).astype(np.int32)
        g.layers.append(layer)
        synth.calibrate_layer(g, layer, x, rng, per_channel, 0.0 if tfl else 0.25)
        state.update(shape=tuple(out_shape), bits=layer.out_bits, signed=layer.out_signed,
                     zp=layer.out_zero_point)

    def pool(kind, name, out_shape, size, stride, padding):
        g.layers.append(IntegerLayer(kind=kind, name=name, in_shape=state["shape"],
                                     out_shape=out_shape, in_bits=state["bits"],
                                     out_bits=state["bits"], in_signed=state["signed"],
                                     out_signed=state["signed"], in_zero_point=state["zp"],
                                     out_zero_point=state["zp"], pool_size=size, stride=stride,
                                     padding=padding))
        state["shape"] = tuple(out_shape)

    compute("conv2d", "conv", (6, 6, 8), (8, 3, 3, 3), 4, True, out_bits=4, out_zero_point=2,
            stride=(2, 2), padding=(0, 1, 0, 1))
    compute("depthwise", "dw", (6, 6, 16), (3, 3, 16), 2, True, out_bits=2, out_zero_point=1,
            padding=(1, 1, 1, 1), pad_mode="zero", depth_multiplier=2)
    compute("pointwise", "pw", (6, 6, 12), (12, 1, 1, 16), 8, False, out_bits=8,
            act_min=3, act_max=200)
    pool("maxpool", "mp", (3, 3, 12), (3, 3), (2, 2), (0, 1, 0, 1))
    compute("conv2d", "conv1b", (3, 3, 6), (6, 3, 3, 12), 1, True, out_bits=16,
            out_signed=True, out_zero_point=-5, padding=(1, 1, 1, 1))
    pool("avgpool", "ap", (2, 2, 6), (2, 2), (2, 2), (0, 1, 0, 1))
    if signed_input:  # the non-default average-pool division of the flavour
        g.layers[-1].avg_rounding = "half_away" if rounding == "floor" else "floor"
    pool("maxpool", "mp2", (1, 2, 6), (2, 1), (2, 1), (0, 0, 0, 0))
    g.layers.append(IntegerLayer(kind="flatten", name="flat", in_shape=state["shape"],
                                 out_shape=(12,), in_bits=16, out_bits=16, in_signed=True,
                                 out_signed=True, in_zero_point=state["zp"],
                                 out_zero_point=state["zp"]))
    state["shape"] = (12,)
    if tfl:
        compute("dense", "fc", (5,), (5, 12), 8, True, out_bits=8, out_signed=True,
                out_zero_point=4, rounding="tflite_single")
    else:
        compute("dense", "fc", (5,), (5, 12), 4, False, out_bits=32, out_signed=True,
                requantize=False)
    g.validate()
    return g


def _inputs(g, n, seed):
    lo = -128 if g.input_signed else 0
    return np.random.default_rng(seed).integers(lo, lo + 256, (n, *g.input_shape))


# ------------------------------------------------------------------------------ tensors
@pytest.mark.parametrize("bits", [1, 2, 4, 8, 16, 32])
@pytest.mark.parametrize("signed", [False, True])
def test_pack_tensor_round_trip(bits, signed):
    if bits == 32 and not signed:
        lo, hi = 0, 2 ** 32 - 1
    else:
        lo, hi = ((-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1))
    v = np.random.default_rng(bits).integers(lo, hi, (5, 13), endpoint=True)
    packed = codegen.pack_tensor(v, bits, signed)
    assert packed.shape == (5, packed_bytes(13, bits))
    np.testing.assert_array_equal(codegen.unpack_tensor(packed, bits, signed, 13), v)
    with pytest.raises(ValueError, match="range"):
        codegen.pack_tensor(np.array([[hi + 1]]), bits, signed)


def test_pack_tensor_is_the_icn_lsb_first_packing():
    v = np.array([[1, 2, 3, 0, 3]])
    assert codegen.pack_tensor(v, 2, False).tolist() == [[0b00111001, 0b11]]
    assert codegen.pack_tensor(np.array([[-1, -128]]), 8, True).tolist() == [[255, 128]]


# ------------------------------------------------------------------------------ requantization
def test_c_requant_matches_the_simulator(tmp_path):
    """tn_requant over random and extreme (phi, m0, n0), every flavour, against tinyopt.sim's
    int64 reference with int32 wrap emulation (what the 32-bit C shifts do)."""
    rng = np.random.default_rng(0)
    n = 4000
    phi = np.concatenate([rng.integers(-2**31, 2**31, n // 2),
                          rng.integers(-5000, 5000, n // 2),
                          [-2**31, 2**31 - 1, 0, -1, 1]])
    m0 = rng.integers(-2**31, 2**31, len(phi))
    n0 = rng.integers(-40, 33, len(phi))
    n0[: len(phi) // 8] = rng.integers(-128, 128, len(phi) // 8)
    src = tmp_path / "rq.c"
    src.write_text('#include <stdio.h>\n#include "tinyopt_nn.h"\nint main(void){long long p,m;'
                   'int e,r;while(scanf("%lld %lld %d %d",&p,&m,&e,&r)==4)printf("%lld\\n",'
                   '(long long)tn_requant((int32_t)p,(int32_t)m,(int8_t)e,(uint8_t)r));'
                   'return 0;}\n')
    exe = tmp_path / "rq"
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Werror", "-I", str(codegen.C_DIR),
                    str(src), str(codegen.C_DIR / "tinyopt_nn.c"), "-o", str(exe)], check=True)
    for code, flavour in enumerate(["floor", "tflite_single", "tflite_double"]):
        mm, nn = m0.copy(), n0.copy()
        if flavour != "floor":
            mm = np.abs(mm) % (2**31)
            nn = np.clip(nn, -31, 30)
        lines = "\n".join(f"{a} {b} {c} {code}" for a, b, c in zip(phi, mm, nn))
        out = subprocess.run([str(exe)], input=lines, capture_output=True, text=True, check=True)
        got = np.array(out.stdout.split(), np.int64)
        want = sim.REQUANT[flavour](phi, mm, nn, wrap=True)
        assert np.array_equal(got, want), f"{flavour}: {np.sum(got != want)} mismatches"


# ------------------------------------------------------------------------------ host bit-exactness
@pytest.mark.parametrize("rounding,signed", [("floor", False), ("floor", True),
                                             ("tflite_double", True), ("tflite_single", False)])
def test_host_bitexact_on_every_kernel(tmp_path, rounding, signed):
    g = coverage_graph(1, rounding, signed)
    x = _inputs(g, 300, 2)
    want = codegen.reference_output(g, x)
    assert len({r.tobytes() for r in want}) > 250  # outputs vary: the check is not vacuous
    e = codegen.export_c(g, tmp_path / "src")
    got = mcu.run_host(mcu.build_host(e), e, x)
    assert got.shape == want.shape
    mismatches = int((got != want).sum())
    assert mismatches == 0, f"{mismatches} values differ from tinyopt.sim"
    # intermediate layers vary too (a dead layer would hide kernel bugs)
    trace = sim.run(g, x[:50], trace=True)
    for name in ("conv", "dw", "pw", "conv1b", "ap"):
        assert len(np.unique(trace[name])) > 2, name


def test_an_8_bit_model_leaves_out_the_sub_byte_kernels(tmp_path):
    """model.c of a model without a sub-byte step includes tn_m7.h without the sub-byte kernels
    (TN_M7_INT8_ONLY, less for GCC to parse), and undefines the switch after: one unit holding
    an 8-bit model first and a sub-byte one after it still builds, and both stay exact."""
    from tests._qemu_many import run_on_host
    from tests.test_pw_small import _graph
    g8, gs = _graph("s8"), coverage_graph(1, "tflite_double", True)
    e8 = codegen.export_c(g8, tmp_path / "int8")
    es = codegen.export_c(gs, tmp_path / "sub")
    assert {c for c in e8.kernels} <= {"conv", "pw", "fc", "gemm", "pool", "add"}, e8.kernels
    assert "sub" in es.kernels, es.kernels
    text8 = (tmp_path / "int8" / "model.c").read_text()
    assert "#define TN_M7_INT8_ONLY" in text8 and "#undef TN_M7_INT8_ONLY" in text8
    assert "TN_M7_INT8_ONLY" not in (tmp_path / "sub" / "model.c").read_text()
    xs = [_inputs(g8, 20, 3), _inputs(gs, 20, 4)]
    got = run_on_host([e8, es], xs, tmp_path / "unit")
    for g, x, y in zip((g8, gs), xs, got):
        np.testing.assert_array_equal(y, codegen.reference_output(g, x))


def test_fused_and_unfused_pools_agree_and_fusion_saves_ram(tmp_path):
    g = coverage_graph(3, "floor", False)
    x = _inputs(g, 100, 4)
    fused = codegen.export_c(g, tmp_path / "f", fuse_pool=True)
    plain = codegen.export_c(g, tmp_path / "p", fuse_pool=False)
    assert len(fused.steps) == len(plain.steps) - 1
    assert [s.name for s in fused.steps][2] == "pw+mp"
    a = mcu.run_host(mcu.build_host(fused), fused, x)
    b = mcu.run_host(mcu.build_host(plain), plain, x)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, codegen.reference_output(g, x))
    assert fused.arena_bytes <= plain.arena_bytes
    pair = lambda s: s.in_bytes + s.out_bytes
    assert pair(fused.steps[2]) < max(pair(plain.steps[2]), pair(plain.steps[3]))


def test_arena_is_the_largest_input_plus_output_and_steps_never_overlap():
    g = coverage_graph(0, "floor", False)
    # the portable kernels need no scratch: a chain's ping-pong arena
    steps, arena = codegen.plan(g, fuse_pool=False, kernels="portable")
    assert arena == max(s.in_bytes + s.out_bytes for s in steps)
    assert not any(s.scratch_bytes for s in steps)
    # the M7 kernels' scratch comes on top (tests/test_scratch_plan.py: where)
    assert codegen.plan(g, fuse_pool=False)[1] > arena
    for prev, s in itertools.pairwise(steps):
        assert s.in_offset == prev.out_offset  # reads where the previous step wrote
    for s in steps:
        lo_in, hi_in = s.in_offset, s.in_offset + s.in_bytes
        lo_out, hi_out = s.out_offset, s.out_offset + s.out_bytes
        assert hi_in <= lo_out or hi_out <= lo_in
        assert max(hi_in, hi_out) <= arena


def test_export_rejects_what_the_kernels_cannot_run(tmp_path):
    g = coverage_graph(0, "floor", False)
    g.layers.append(IntegerLayer(kind="softmax", name="sm", in_shape=(5,), out_shape=(5,),
                                 in_bits=32, in_signed=True, out_bits=32, out_signed=True))
    with pytest.raises(ValueError, match="softmax"):
        codegen.export_c(g, tmp_path)
    g = coverage_graph(0, "tflite_double", True)
    g["conv"].m0 = -np.abs(g["conv"].m0)
    with pytest.raises(ValueError, match="'conv'.*m0 >= 0"):
        codegen.export_c(g, tmp_path)
    g = coverage_graph(0, "floor", False)
    g["pw"].weight_zero_point = np.array([300], np.int32)
    with pytest.raises(ValueError, match="'pw'.*zero points"):
        codegen.export_c(g, tmp_path)


def test_generated_header_documents_the_io(tmp_path):
    g = coverage_graph(0, "floor", True)
    e = codegen.export_c(g, tmp_path)
    header = (tmp_path / "model.h").read_text()
    assert f"#define MODEL_ARENA_BYTES {e.arena_bytes}u" in header
    assert "int model_run(const uint8_t *in, uint8_t *out);" in header
    assert "two's complement" in header and "4 little-endian bytes" in header
    assert "malloc" not in (tmp_path / "tinyopt_nn.c").read_text().replace("no malloc", "")


# ------------------------------------------------------------------------------ mixed MobileNet
def _mixed_policy():
    from tinyopt.memory import mobilenet_v1_nodes
    from tinyopt.policy import Policy
    names = [n.name for n in mobilenet_v1_nodes(0.25, 16, 10, 1)]
    w = [(8, 4, 2)[i % 3] for i in range(len(names))]
    a = [(4, 2, 8, 8)[i % 4] for i in range(len(names))]
    return Policy(names, w, a, "PL")


@pytest.fixture(scope="module")
def mixed_mobilenet():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (300, 16, 16, 1))
    x[:, :3] = 0  # some structure: blank rows like MNIST borders
    return synth.mobilenet_graph(_mixed_policy(), x[:64], resolution=16), x


@pytest.mark.slow  # (a few seconds: make test runs it, test-fast does not)
def test_mixed_mobilenet_host_bitexact_and_arena_matches_memory_model(tmp_path, mixed_mobilenet):
    from tinyopt import memory
    g, x = mixed_mobilenet
    assert {lay.weight_bits for lay in g.layers if lay.weights is not None} == {2, 4, 8}
    assert {2, 4, 8} <= {lay.out_bits for lay in g.layers}
    want = codegen.reference_output(g, x)
    assert len({r.tobytes() for r in want}) > 250
    e = codegen.export_c(g, tmp_path)
    got = mcu.run_host(mcu.build_host(e), e, x)
    assert int((got != want).sum()) == 0
    nodes, policy = codegen.memory_view(g)
    assert policy.weight_bits == _mixed_policy().weight_bits
    predicted = memory.peak_ram_bytes(nodes, policy)
    # without sliding writes (nor the M7 kernels' scratch) the arena holds the same largest
    # input + output pair as the memory model (logits are int32 here, 8-bit there); every
    # tensor whole for its lifetime, with the scratch, bounds the memory model and the export
    pair = codegen.memory_plan(g, kernels="portable")[1].candidates["ping_pong"]
    whole = codegen.memory_plan(g, fuse_add=False, overlap=False)[1].arena_bytes
    assert pair <= 1.1 * predicted and predicted <= whole and e.arena_bytes <= whole
    assert e.param_bytes["w"] == int(memory.report(nodes, policy)["weight_bytes"].sum())


@pytest.mark.slow  # QEMU; make test-fast runs QEMU in test_names_safety.py
def test_mixed_mobilenet_under_qemu(qemu, tmp_path, mixed_mobilenet):
    g, x = mixed_mobilenet
    r = mcu.deploy(g, x[:40], tmp_path, name="mixed", host_images=40, mcu_images=20)
    s = r["summary"]
    assert s["host_images_exact"] == 40 and s["mcu_images_exact"] == 20
    assert s["arena_in_bss"] == r["export"].arena_bytes
    assert 0 < s["stack_model_run"] < s["stack_peak"] < s["stack_reserved"]
    assert s["ram_acceptance_ok"]
    assert s["insns_per_image_min"] > s["macs"] / 2  # SMLAD: at most two MACs an instruction
    # the per-step counts add up to the per-image count (up to the profiling hooks and ticks)
    total = r["steps"]["insns_per_image"].sum()
    assert abs(total - s["insns_per_image_mean"]) < 0.02 * s["insns_per_image_mean"]
    assert abs(r["mcu"].insns_per_tick - 40.0) < 0.01  # 25 MHz SysTick, 1 ns per instruction


# ------------------------------------------------------------------------------ int8 seed CNN
@pytest.fixture(scope="module")
def seed_cnn_int8(fashion, seed_cnn_fashion):
    from tinyopt import convert
    from tinyopt.litert.measure import quantize_input
    m = seed_cnn_fashion
    tfl = convert.to_tflite(m, "int8", calibration=fashion.x_train[:500])
    g = graph_from_tflite(tfl)
    detail = {"dtype": np.int8, "quantization": (g.input_scale, g.input_zero_point),
              "name": "input"}
    return m, g, quantize_input(fashion.x_test[:300], detail)


@pytest.mark.slow  # trains the seed CNN
def test_seed_cnn_int8_host_bitexact(tmp_path, seed_cnn_int8):
    from tinyopt import memory
    from tinyopt.policy import Policy
    model, g, x = seed_cnn_int8
    e = codegen.export_c(g, tmp_path)
    assert [s.layer.kind for s in e.steps] == ["conv2d", "dense"]  # conv+maxpool fused
    got = mcu.run_host(mcu.build_host(e), e, x)
    want = codegen.reference_output(g, x)
    assert int((got != want).sum()) == 0 and got.min() < 0  # signed int8 outputs
    nodes, policy = codegen.memory_view(g)
    keras_pred = memory.report(model, Policy.uniform(model, 8, 8, "PC"))
    assert [n.weight_elements for n in nodes] == keras_pred["weight_elements"].tolist()
    assert memory.peak_ram_bytes(nodes, policy) == int(keras_pred["ram_bytes"].max())


@pytest.mark.slow  # trains the seed CNN
def test_seed_cnn_int8_under_qemu(qemu, tmp_path, seed_cnn_int8):
    _, g, x = seed_cnn_int8
    r = mcu.deploy(g, x[:30], tmp_path, name="seed", host_images=30, mcu_images=30)
    s = r["summary"]
    assert s["mcu_images_exact"] == 30 and s["mcu_mismatching_values"] == 0
    assert s["rodata"] >= s["weight_bytes_c"]
    assert s["ram_acceptance_ok"]


def test_export_rejects_a_layer_reading_the_wrong_bit_width(tmp_path):
    g = coverage_graph(0, "floor", False)
    g["dw"].in_bits = 8
    with pytest.raises(ValueError, match="'dw'.*field in_bits is 8.*'conv' has bits 4"):
        codegen.export_c(g, tmp_path)


def test_missing_toolchain_is_reported_and_deploy_runs_host_only(tmp_path, monkeypatch):
    real_which = shutil.which
    monkeypatch.setattr(mcu.shutil, "which",
                        lambda tool: None if tool.startswith(("arm-none-eabi", "qemu"))
                        else real_which(tool))
    ok, why = mcu.toolchain()
    assert not ok and "qemu-system-arm" in why and "make mcu" in why
    g = coverage_graph(0, "floor", False)
    r = mcu.deploy(g, _inputs(g, 20, 0), tmp_path, mcu_images=5)
    assert r["summary"]["host_images_exact"] == 20 and r["mcu"] is None
    assert "make mcu" in r["summary"]["mcu_skipped"]
    with pytest.raises(mcu.BuildError, match="make mcu"):
        mcu.build_mcu(r["export"])
    with pytest.raises(KeyError, match="make mcu"):
        mcu.memory_table(r["summary"])


# ------------------------------------------------------------------------------ a converted graph
@pytest.mark.slow
def test_converted_mixed_model_host_bitexact(tmp_path):
    """A real fake-quant model (tinyopt.ptq, 2/4/8-bit weights and activations, FB and ICN)
    converted by tinyopt.icn.convert exports bit-exactly."""
    from tinyopt import icn, ptq, train
    from tinyopt.policy import Policy
    rng = np.random.default_rng(0)
    x_train = rng.random((256, 16, 16, 1)).astype(np.float32)
    y_train = (x_train[:, :8].mean(axis=(1, 2, 3)) * 20).astype(np.uint8) % 10
    model = small_mobilenet(16, bn_momentum=0.5, maxpool=False)
    train.fit(model, (x_train, y_train), epochs=2, batch_size=32, progress=False)
    policy = Policy(["conv0", "dw1", "pw1", "dw2", "pw2", "fc"], [8, 4, 2, 8, 4, 2],
                    [4, 2, 8, 4, 8, 8], "PL")
    qmodel = ptq.quantize_mixed(model, policy, x_train[:128])
    g = icn.convert(qmodel)
    x = g.quantize_input(rng.random((200, 16, 16, 1)).astype(np.float32))
    want = codegen.reference_output(g, x)
    assert len({r.tobytes() for r in want}) > 150
    e = codegen.export_c(g, tmp_path)
    got = mcu.run_host(mcu.build_host(e), e, x)
    assert int((got != want).sum()) == 0

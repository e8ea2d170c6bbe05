"""The Cortex-M7 kernels specialised per layer (tinyopt/deploy/kernels_m7/, c/tn_m7.h) agree
with tinyopt.sim, value for value.

The host build compiles the very same specialised kernels (the DSP intrinsics replaced by
portable C of identical results), so most checks run on the host, fast; one QEMU test checks the
intrinsics themselves on a graph with every specialised kernel and bit width, and that the
specialised build is faster than the portable one and links no unused kernel.
"""
from __future__ import annotations

import shutil
import subprocess
import types

import numpy as np
import pytest

from tinyopt.deploy import codegen, kernels_m7, mcu, synth
from tinyopt.icn import IntegerGraph, IntegerLayer
from tinyopt.integer import sim, steps as steps_mod
from tinyopt.integer.arith import tflite_quantize_multiplier

from tests._qemu_many import HostBatch, host_inputs

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")
needs_fc = pytest.mark.skipif(not steps_mod.OWN_WEIGHT_ORDER,
                              reason="tn_m7_fc / tn_m7_conv are off (steps.OWN_WEIGHT_ORDER: "
                              "their own weight order, kernels_m7.Choice.weights)")



def weighted_layer(g, kind: str, spec: dict, common: dict, x, rng, tfl: bool) -> IntegerLayer:
    """A layer of ``kind`` with random weights (``spec``: wshape, wbits, optionally per_channel /
    icn, the layer's other fields), zero points in the middle half of the codes, appended to
    ``g`` and calibrated on ``x`` (``tfl``: a TFLite rounding, no floor offset)."""
    spec = dict(spec)
    wshape, wbits = spec.pop("wshape"), spec.pop("wbits")
    per_channel, icn = spec.pop("per_channel", False), spec.pop("icn", False)
    layer = IntegerLayer(kind=kind, name=f"l{len(g.layers)}", **common, **spec)
    top = (1 << wbits) - 1
    layer.set_weights(rng.integers(0, top + 1, wshape), wbits)
    n = layer.out_channels if per_channel else 1
    layer.weight_zero_point = rng.integers(top // 4, top - top // 4 + 1, n).astype(np.int32)
    g.layers.append(layer)
    synth.calibrate_layer(g, layer, x, rng, icn, 0.0 if tfl else 0.25)
    return layer

def chain(seed, layers, in_shape, in_bits=8, signed=False, zin=0, rounding="floor"):
    """A chain of layers given as dicts (kind, out_shape, wshape, wbits, per_channel, out_bits,
    pool-only fields ...), with random weights and calibrated biases / multipliers."""
    rng = np.random.default_rng(seed)
    tfl = rounding != "floor"
    g = IntegerGraph(layers=[], input_shape=in_shape, input_bits=in_bits, input_signed=signed,
                     input_zero_point=zin, rounding=rounding, name=f"m7_{seed}")
    lo = -(1 << (in_bits - 1)) if signed else 0
    x = rng.integers(lo, lo + (1 << in_bits), (48, *in_shape))
    st = {"shape": in_shape, "bits": in_bits, "signed": signed, "zp": zin}
    for spec in layers:
        spec = dict(spec)
        kind = spec.pop("kind")
        common = dict(in_shape=st["shape"], in_bits=st["bits"], in_signed=st["signed"],
                      in_zero_point=st["zp"])
        if kind == "flatten":
            n = int(np.prod(st["shape"]))
            g.layers.append(IntegerLayer(kind=kind, name=f"l{len(g.layers)}", out_shape=(n,),
                                         out_bits=st["bits"], out_signed=st["signed"],
                                         out_zero_point=st["zp"], **common))
            st["shape"] = (n,)
            continue
        if kind == "maxpool":
            g.layers.append(IntegerLayer(kind=kind, name=f"l{len(g.layers)}",
                                         out_bits=st["bits"], out_signed=st["signed"],
                                         out_zero_point=st["zp"], **common, **spec))
            st["shape"] = tuple(spec["out_shape"])
            continue
        layer = weighted_layer(g, kind, spec, common, x, rng, tfl)
        st.update(shape=tuple(layer.out_shape), bits=layer.out_bits, signed=layer.out_signed,
                  zp=layer.out_zero_point)
    g.validate()
    return g


def _gemm_kind(step):
    """The kernel a compute step of the gemm family takes: tn_m7_fc for the dense layers of 8-bit
    inputs and weights it covers, tn_m7_conv for such pointwise ("pw") and conv2d ("conv")
    layers (with steps.OWN_WEIGHT_ORDER), else the gemm kernel; a step of sub-byte weights or
    inputs whose gemm scratch would exceed its 8-bit kernel's takes tn_m7_sub ("sub")."""
    kind = steps_mod.m7_kernel(step)[0]
    if kind in ("sub", "portable"):
        return kind
    return ("fc" if steps_mod.fc_fits(step) else "pw" if steps_mod.pw_fits(step)
            else "conv" if steps_mod.conv_fits(step) else "gemm")


def host_check(g, tmp_path, n=40, batch=None):
    """Export ``g``, run the host C on ``n`` random inputs and assert it equals the simulator;
    returns the export. ``batch``: a :class:`tests._qemu_many.HostBatch` that built this case
    (its outputs looked up) instead of a build of its own."""
    e = codegen.export_c(g, tmp_path / "src")
    x = host_inputs(g, n)
    want = codegen.reference_output(g, x)
    assert len({r.tobytes() for r in want}) > 1, "a constant output checks little"
    if batch is not None:
        got = batch.outputs(e, x)
    else:
        got = mcu.run_host(mcu.build_host(e, build_dir=tmp_path / "host"), e, x)
    assert int((got != want).sum()) == 0
    return e


def _conv(out_shape, wshape, wbits, out_bits, **kw):
    return dict(kind="conv2d" if wshape[1] * wshape[2] > 1 else "pointwise", out_shape=out_shape,
                wshape=wshape, wbits=wbits, out_bits=out_bits, **kw)


# Chains through every weight width (8/4/2/1) and input width (8/4/2): the first conv with 3
# input channels (stride 2, asymmetric SAME), a VALID conv, a pointwise layer with odd channel
# counts, a conv fused with an overlapping 3x3/2 max pool, a dense layer of odd length with raw
# int32 logits; PL and PC weight zero points, FB and ICN multipliers, the three roundings.
GEMM_CHAINS = {
    "floor_a": ("floor", False, 3, [
        _conv((5, 5, 7), (7, 3, 3, 3), 8, 4, stride=(2, 2), padding=(1, 1, 1, 1)),
        _conv((3, 3, 5), (5, 3, 3, 7), 4, 2, per_channel=True, icn=True, out_zero_point=1),
        _conv((3, 3, 9), (9, 1, 1, 5), 2, 8, per_channel=True, icn=True),
        _conv((3, 3, 6), (6, 3, 3, 9), 1, 4, padding=(1, 1, 1, 1)),
        dict(kind="maxpool", out_shape=(2, 2, 6), pool_size=(3, 3), stride=(2, 2),
             padding=(1, 1, 1, 1)),
        dict(kind="flatten"),
        dict(kind="dense", out_shape=(3,), wshape=(3, 24), wbits=4, per_channel=True,
             out_bits=32, out_signed=True, requantize=False)]),
    "floor_b": ("floor", False, 0, [
        _conv((5, 5, 16), (16, 3, 3, 3), 2, 2, stride=(2, 2), padding=(1, 1, 1, 1)),
        _conv((5, 5, 8), (8, 1, 1, 16), 4, 4, per_channel=True, icn=True),
        _conv((5, 5, 10), (10, 1, 1, 8), 8, 2, icn=True),
        _conv((5, 5, 8), (8, 3, 3, 10), 2, 8, per_channel=True, padding=(1, 1, 1, 1)),
        dict(kind="maxpool", out_shape=(2, 2, 8), pool_size=(2, 2), stride=(2, 2),
             padding=(0, 0, 0, 0)),
        dict(kind="flatten"),
        dict(kind="dense", out_shape=(5,), wshape=(5, 32), wbits=2, out_bits=8)]),
    "tflite": ("tflite_double", True, -7, [
        _conv((5, 5, 7), (7, 3, 3, 3), 8, 8, per_channel=True, icn=True, stride=(2, 2),
              padding=(1, 1, 1, 1), out_signed=True, out_zero_point=-3),
        _conv((5, 5, 9), (9, 1, 1, 7), 8, 8, per_channel=True, icn=True, out_signed=True),
        _conv((3, 3, 6), (6, 3, 3, 9), 8, 8, out_signed=True, out_zero_point=5),
        dict(kind="flatten"),
        dict(kind="dense", out_shape=(3,), wshape=(3, 54), wbits=8, out_bits=8,
             out_signed=True, rounding="tflite_single")]),
}


@pytest.fixture(scope="module")
def host_batch(request, tmp_path_factory):
    """This module's parametrized host checks in one host program (tests._qemu_many.HostBatch):
    each case's graph (and patches) as its test sets them up."""
    def fc_case(mp, name, form):
        _fc_form(mp, form)
        return _fc_graph(name), 120
    return HostBatch(request, {
        "test_gemm_kernels_host_bitexact": lambda mp, name: _gemm_graph(name),
        "test_depthwise_kernels_host_bitexact": lambda mp, name: _dw_graph(name),
        "test_fused_add_steps_host_bitexact": lambda mp, name: (_fused_chain(name), 30),
        "test_fc_kernel_host_bitexact": fc_case,
        "test_pw_kernel_host_bitexact": lambda mp, name: (_pw_graph(name), 120),
    }, tmp_path_factory.mktemp("host_batch"))


def _fast_first(names, fast):
    """The chains in ``fast`` run in make test-fast, the others only in make test (slow)."""
    return [n if n in fast else pytest.param(n, marks=pytest.mark.slow) for n in sorted(names)]


def _gemm_graph(name):
    rounding, signed, zin, layers = GEMM_CHAINS[name]
    return chain(len(name), layers, (9, 9, 3), 8, signed, zin, rounding)


@pytest.mark.parametrize("name", _fast_first(GEMM_CHAINS, ("floor_a",)))
def test_gemm_kernels_host_bitexact(tmp_path, host_batch, name):
    e = host_check(_gemm_graph(name), tmp_path, batch=host_batch)
    compute = [(k, s) for k, s in zip(e.kernels, e.steps) if s.layer.weights is not None]
    # dense, pointwise and conv layers of 8-bit inputs and weights take tn_m7_fc / tn_m7_conv
    assert [k for k, _ in compute] == [_gemm_kind(s) for _, s in compute], e.kernels
    if steps_mod.OWN_WEIGHT_ORDER and name == "tflite":
        assert [k for k, _ in compute] == ["conv", "pw", "conv", "fc"]


def _dw(c, h, b, out_bits, stride=1, pad_mode="zero", **kw):
    o = -(-h // stride)
    total = max((o - 1) * stride + 3 - h, 0)
    return dict(kind="depthwise", out_shape=(o, o, c), wshape=(3, 3, c), wbits=b,
                out_bits=out_bits, stride=(stride, stride),
                padding=(total // 2, total - total // 2, total // 2, total - total // 2),
                pad_mode=pad_mode, **kw)


# Depthwise at 8, 4 and 2 bits (inputs of the weights' width), SAME with stride 1 and 2,
# padding with the zero point or with integer 0 while z_x != 0, PL and PC.
DW_CHAINS = {
    "c32": (8, True, -5, (7, 7, 32), [
        _dw(32, 7, 8, 4, pad_mode="zero_point", per_channel=True, icn=True, out_zero_point=3),
        _dw(32, 7, 4, 2, stride=2, out_zero_point=1),
        _dw(32, 4, 2, 2, per_channel=True, icn=True),
        dict(kind="flatten"),
        dict(kind="dense", out_shape=(5,), wshape=(5, 512), wbits=8, out_bits=32,
             out_signed=True, requantize=False)]),
    "c12_c16": (8, False, 7, (6, 6, 12), [
        _dw(12, 6, 8, 8, stride=2, out_zero_point=2),
        _dw(12, 3, 8, 4, per_channel=True),
        dict(kind="flatten"),
        dict(kind="dense", out_shape=(5,), wshape=(5, 108), wbits=4, out_bits=32,
             out_signed=True, requantize=False)]),
    # input and weight widths differ (4-bit in, 8-bit weights; 8-bit in, 2-bit weights): the
    # SIMD kernel reading inputs element by element
    "mixed": (4, False, 2, (5, 5, 16), [
        _dw(16, 5, 8, 8, per_channel=True, icn=True, out_zero_point=1),
        _dw(16, 5, 2, 8, stride=2, pad_mode="zero_point"),
        dict(kind="flatten"),
        dict(kind="dense", out_shape=(5,), wshape=(5, 144), wbits=8, out_bits=32,
             out_signed=True, requantize=False)]),
    # the scalar kernel: 6 channels, depth multiplier 2, integer-0 padding with z_x != 0; a
    # depthwise layer fused with a max pool stays portable
    "scalar": (4, False, 2, (5, 5, 6), [
        _dw(6, 5, 8, 2, per_channel=True, icn=True, out_zero_point=1),
        dict(_dw(12, 5, 2, 8, stride=2), wshape=(3, 3, 12), depth_multiplier=2),
        dict(_dw(24, 3, 8, 8), wshape=(3, 3, 24), depth_multiplier=2),
        dict(kind="maxpool", out_shape=(2, 2, 24), pool_size=(2, 2), stride=(1, 1),
             padding=(0, 0, 0, 0)),
        dict(kind="flatten"),
        dict(kind="dense", out_shape=(5,), wshape=(5, 96), wbits=8, out_bits=32,
             out_signed=True, requantize=False)]),
}
DW_KERNELS = {"scalar": ["depthwise_scalar", "depthwise_scalar", "portable"]}


def _dw_graph(name):
    bits, signed, zin, shape, layers = DW_CHAINS[name]
    return chain(len(name) + 10, layers, shape, bits, signed, zin)


@pytest.mark.parametrize("name", _fast_first(DW_CHAINS, ("c32",)))
def test_depthwise_kernels_host_bitexact(tmp_path, host_batch, name):
    e = host_check(_dw_graph(name), tmp_path, batch=host_batch)
    dws = [k for k, s in zip(e.kernels, e.steps) if s.layer.kind == "depthwise"]
    assert dws == DW_KERNELS.get(name, ["depthwise"] * len(dws)), e.kernels


def test_choose_names_why_a_layer_leaves_the_simd_kernels():
    g = chain(3, [dict(kind="depthwise", out_shape=(5, 5, 6), wshape=(3, 3, 6), wbits=4,
                       out_bits=4, padding=(1, 1, 1, 1))], (5, 5, 6), 4)
    steps, _ = codegen.memory_plan(g)
    ch = kernels_m7.choose(steps[0], 0)
    assert ch.kind == "depthwise_scalar" and "not a multiple of 8" in ch.reason
    assert kernels_m7.choose(steps[0], 0, "portable").function == "tn_run_compute"
    with pytest.raises(ValueError, match="kernels must be one of"):
        kernels_m7.choose(steps[0], 0, "fast")


def _mixed_graph():
    """conv (1 input channel) and depthwise / pointwise pairs at 8, 4 and 2 bits, PL and PC."""
    layers = [
        _conv((6, 6, 16), (16, 3, 3, 1), 8, 8, stride=(2, 2), padding=(0, 1, 0, 1)),
        _dw(16, 6, 8, 8, per_channel=True, icn=True),
        _conv((6, 6, 16), (16, 1, 1, 16), 4, 4, per_channel=True, icn=True),
        _dw(16, 6, 4, 4),
        _conv((6, 6, 32), (32, 1, 1, 16), 2, 2, icn=True),
        _dw(32, 6, 2, 8, stride=2, per_channel=True),
        dict(kind="flatten"),
        dict(kind="dense", out_shape=(10,), wshape=(10, 288), wbits=4, out_bits=32,
             out_signed=True, requantize=False)]
    return chain(7, layers, (12, 12, 1))


@pytest.mark.slow  # a Cortex-M7 build and a QEMU run
def test_specialised_kernels_under_qemu(qemu, tmp_path):
    """8/4/2-bit gemm and depthwise kernels (the intrinsics themselves) bit-exact under QEMU,
    and only the kernels the model uses linked (the speed-up: benchmarks/bench_kernels.py)."""
    g = _mixed_graph()
    x = np.random.default_rng(1).integers(0, 256, (8, *g.input_shape))
    r = mcu.deploy(g, x, tmp_path, name="m7", mcu_images=4)
    s = r["summary"]
    assert s["host_mismatching_values"] == 0 and s["mcu_mismatching_values"] == 0
    assert s["ram_acceptance_ok"]
    kinds = r["export"].kernels
    # the 8-bit first conv on tn_m7_conv, the sub-byte pointwise and dense layers on tn_m7_sub
    # (their gemm scratch would exceed the 8-bit kernel's: steps.sub_kernel)
    assert kinds == [("conv" if steps_mod.OWN_WEIGHT_ORDER else "gemm"), "depthwise", "sub",
                     "depthwise", "sub", "depthwise", "sub"]
    assert s["insns_per_image_mean"] < 8 * s["macs"]  # the portable kernels take > 15 / MAC
    nm = subprocess.run(["arm-none-eabi-nm", tmp_path / "m7" / "mcu" / "model.elf"],
                        capture_output=True, text=True, check=True).stdout
    linked = {line.split()[-1] for line in nm.splitlines() if " tn_run" in line}
    assert linked == set(), linked  # no portable kernel: every step is specialised


# ------------------------------------------------------------------------------ ADD
def _add_case(flavour, signed, za, zb, zo, ls, m0, n0, out_signed=None, lo=None, hi=None):
    """A stand-alone ADD step (the fields kernels_m7.add_plan reads): a layer and the Tensor
    record of its second input."""
    out_signed = signed if out_signed is None else out_signed
    layer = IntegerLayer(kind="add", name=f"add_{flavour}", in_shape=(4,), out_shape=(4,),
                         in_bits=8, in_signed=signed, in_zero_point=za, out_bits=8,
                         out_signed=out_signed, out_zero_point=zo, left_shift=ls,
                         m0=np.asarray(m0, np.int32), n0=np.asarray(n0, np.int8),
                         act_min=lo, act_max=hi, rounding=flavour)
    return types.SimpleNamespace(name=layer.name, layer=layer, add=None, add_slot=0, in_specs=(
        None, types.SimpleNamespace(bits=8, signed=signed, zero_point=zb)))


def _tflite_add(rng, flavour, signed, out_signed=None, relu=False):
    """TFLite's ADD parameters (from_litert) for random scales and zero points."""
    out_signed = signed if out_signed is None else out_signed
    sa, sb, so = rng.uniform(0.01, 0.2, 3)
    twice = 2 * max(sa, sb)
    m0, n0 = tflite_quantize_multiplier([sa / twice, sb / twice, twice / ((1 << 20) * so)])
    base, obase = (-128 if signed else 0), (-128 if out_signed else 0)
    za, zb = (int(v) for v in rng.integers(base, base + 256, 2))
    zo = int(rng.integers(obase, obase + 256))
    return _add_case(flavour, signed, za, zb, zo, 20, m0, n0, out_signed,
                     lo=zo if relu else None)


TOP = (1 << 31) - 1
# hand-picked extremes: zero points at the ends of the codes (|x - z| = 255), the largest left
# shift that fits, multipliers 0, 1, 2^30 and 2^31 - 1, exponents -31 .. +3, narrow clamps, the
# three flavours, unsigned tensors (the mixed-precision graphs' uint8)
ADD_EXTREMES = [
    ("tflite_double", True, -128, 127, 0, 22, [TOP, 1 << 30, TOP], [-1, -31, -22], None, -128, 127),
    ("tflite_double", True, 127, -128, -128, 20, [1, TOP, TOP], [0, -1, -20], None, -128, 127),
    ("tflite_double", True, 5, -9, 17, 20, [0, TOP, TOP], [-1, -2, -19], None, 17, 60),
    ("tflite_double", True, -1, 3, -5, 0, [TOP, 1 << 30, TOP], [-1, -3, 3], None, -20, 127),
    ("tflite_double", False, 0, 255, 255, 20, [1518500250, 1 << 30, TOP], [-1, -1, -20], None,
     0, 255),
    ("tflite_double", True, -3, 7, 100, 20, [1 << 30, 1 << 30, 1 << 30], [-1, -1, -21], False,
     100, 200),
    ("tflite_single", True, -128, 127, 3, 20, [TOP, 1 << 30, TOP], [-1, -2, -19], None, -128, 127),
    ("tflite_single", True, 9, -2, -7, 22, [1 << 30, TOP, 1 << 30], [0, -30, -20], None, -7, 127),
    ("tflite_single", False, 200, 1, 5, 20, [TOP, 1234567890, TOP], [-1, -3, 1 - 20], None, 5, 250),
    ("floor", True, -128, 127, 0, 20, [TOP, 1 << 30, TOP], [-1, -2, -19], None, -128, 127),
    ("floor", False, 255, 0, 255, 21, [1 << 30, TOP, 1 << 30], [0, -31, -22], None, 0, 255),
    ("floor", True, 0, 0, -128, 20, [-TOP, 1 << 30, 1 << 30], [-1, -2, -18], None, -128, 90),
]


def _add_reference(case, a, b):
    """tinyopt.integer.sim's ADD (_run_add) on code arrays a, b."""
    lay, zb = case.layer, case.in_specs[1].zero_point
    rq = sim.REQUANT[lay.rounding]
    ra = rq((a - lay.in_zero_point) << lay.left_shift, lay.m0[0], lay.n0[0])
    rb = rq((b - zb) << lay.left_shift, lay.m0[1], lay.n0[1])
    y = rq(ra + rb, lay.m0[2], lay.n0[2]) + lay.out_zero_point
    return np.clip(y, *lay.out_range)


def _add_cases():
    """The extreme ADDs and 18 random TFLite-like ones (the three flavours, signed and unsigned
    inputs and outputs, with and without a ReLU clamp)."""
    rng = np.random.default_rng(29)
    cases = [_add_case(*c) for c in ADD_EXTREMES]
    for i in range(18):
        cases.append(_tflite_add(rng, ("tflite_double", "tflite_single", "floor")[i % 3],
                                 bool(i % 4), bool(i % 5), relu=bool(i % 2)))
    return cases


def _codes(n, signed):
    """Element i of n: every pair (a, b) of 8-bit codes once per 65,536 (a the low byte)."""
    codes = np.arange(n) % 65536
    a, b = (codes & 255).astype(np.int64), (codes >> 8).astype(np.int64)
    return ((a ^ 128) - 128, (b ^ 128) - 128) if signed else (a, b)


def _host_program_output(src, exe) -> np.ndarray:
    """Build ``src`` (a C file including the kernels) for the host and return its stdout bytes."""
    subprocess.run(["gcc", *mcu.HOST_CFLAGS, "-I", str(codegen.C_DIR), str(src), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    return np.frombuffer(subprocess.run([exe], check=True, capture_output=True).stdout, np.uint8)


def test_add_kernel_exhaustive_on_the_host(tmp_path):
    """tn_m7_add (the generated step functions, host build) equals the simulator's ADD on every
    pair of input codes (65,536, plus a tail of 3 that is not a whole word), written to a separate
    buffer and in place over either input, for extreme and random TFLite-like parameters."""
    cases = _add_cases()
    plans = [kernels_m7.add_plan(c, None) for c in cases]
    assert [p for p in plans if isinstance(p, str)] == []
    # n0 < 0 everywhere but in the input (F: fix-up needed) cases: both variants of the stage
    assert {p["A"]["F"] for p in plans} == {0, 1} and {p["Q"]["R"] for p in plans} == {0, 1}
    assert {p[k]["R"] for p in plans for k in "AB"} == {0, 1, 2}  # 2: a plain shift
    n = 65536 + 3
    codes = np.arange(n) % 65536
    fns, calls = [], []
    for k, c in enumerate(cases):
        c.layer.in_shape = c.layer.out_shape = (n,)
        fns.append(kernels_m7.step_function(c, k, kernels_m7.Choice("add", f"model_step{k}"),
                                            "floor"))
        calls.append(f"    run(model_step{k});")
    src = tmp_path / "add.c"
    src.write_text(
        '#include <stdio.h>\n#include "tn_m7_add.h"\n' + "".join(fns) + f"""
#define N {n}u
typedef void (*step_fn)(const tn_layer_t *, const uint8_t *const *, uint8_t *);
static uint8_t a[N], b[N], o[N];
static void run(step_fn f)
{{
    for (uint32_t i = 0; i < N; i++) {{
        a[i] = (uint8_t)((i % 65536u) & 255u); b[i] = (uint8_t)((i % 65536u) >> 8);
    }}
    const uint8_t *in[2] = {{a, b}};
    f(NULL, in, o);
    fwrite(o, 1, N, stdout);
    f(NULL, in, a); /* in place over the first input */
    fwrite(a, 1, N, stdout);
    for (uint32_t i = 0; i < N; i++) a[i] = (uint8_t)((i % 65536u) & 255u);
    f(NULL, in, b); /* in place over the second */
    fwrite(b, 1, N, stdout);
}}
int main(void)
{{
""" + "\n".join(calls) + "\n    return 0;\n}\n")
    got = _host_program_output(src, tmp_path / "add").reshape(len(cases), 3, n)
    for k, c in enumerate(cases):
        signed = c.layer.in_signed
        a = (codes & 255).astype(np.int64)
        b = (codes >> 8).astype(np.int64)
        if signed:
            a, b = (a ^ 128) - 128, (b ^ 128) - 128
        want = _add_reference(c, a, b)
        assert len(np.unique(want)) > 8, f"case {k}: a nearly constant ADD checks little"
        out = got[k].astype(np.int64)
        if c.layer.out_signed:
            out = (out ^ 128) - 128
        for j, where in enumerate(("to a buffer", "over input 0", "over input 1")):
            bad = np.flatnonzero(out[j] != want)
            assert bad.size == 0, (f"case {k} ({where}): {bad.size} differences, first at codes "
                                   f"{a[bad[0]]}, {b[bad[0]]}: {out[j][bad[0]]} != {want[bad[0]]}")


def test_add_plan_names_why_an_add_stays_portable():
    ok = _add_case("tflite_double", True, 0, 0, 0, 20, [1 << 30] * 3, [-1, -1, -20])
    assert isinstance(kernels_m7.add_plan(ok, None), dict)
    # 255 << (23 + 1) leaves int32 (the portable kernel wraps, as the reference does)
    wide = _add_case("tflite_double", True, -128, 0, 0, 23, [1518500250] * 3, [-1, -1, -20])
    why = kernels_m7.add_plan(wide, None)
    assert "input 0" in why and "int32" in why, why
    assert kernels_m7.choose(wide, 4).function == "tn_run_add"
    assert "int32" in kernels_m7.choose(wide, 4).reason
    unnamed = _add_case(None, True, 0, 0, 0, 20, [1 << 30] * 3, [-1, -1, -20])
    assert "rounding" in kernels_m7.add_plan(unnamed, None)
    assert kernels_m7.choose(unnamed, 4, rounding="tflite_double").kind == "add"
    four = _add_case("floor", False, 0, 0, 0, 20, [1 << 30] * 3, [-1, -1, -20])
    four.layer.in_bits = 4
    assert "8-bit" in kernels_m7.add_plan(four, None)
    assert kernels_m7.choose(ok, 4, "portable").function == "tn_run_add"


def test_fused_add_plan_names_why_it_keeps_the_portable_arithmetic():
    """The plan of an ADD fused into a compute step: the stand-alone ADD's (either slot), and
    the same refusals, naming the input."""
    ok = _add_case("tflite_double", True, 3, -7, 0, 20, [1 << 30] * 3, [-1, -1, -20])
    for slot in (0, 1):
        p = kernels_m7.add_plan(_fused_case(ok, slot), None)
        assert isinstance(p, dict) and p["SLOT"] == slot and (p["ZA"], p["ZB"]) == (3, -7)
    wide = _add_case("tflite_double", True, -128, 0, 0, 23, [1518500250] * 3, [-1, -1, -20])
    for slot in (0, 1):  # input 0 (z = -128) leaves int32, the layer's outputs or not
        why = kernels_m7.add_plan(_fused_case(wide, slot), None)
        assert "input 0" in why and "int32" in why, why
    unnamed = _add_case(None, True, 0, 0, 0, 20, [1 << 30] * 3, [-1, -1, -20])
    assert "rounding" in kernels_m7.add_plan(_fused_case(unnamed, 1), None)
    assert isinstance(kernels_m7.add_plan(_fused_case(unnamed, 1), "floor"), dict)
    four = _fused_case(ok, 0)
    four.layer.out_bits = 4  # a 4-bit layer output
    assert "inputs of 4 / 8 bits" in kernels_m7.add_plan(four, None)
    mixed = _fused_case(ok, 1)
    mixed.layer.out_signed = False  # an unsigned layer output, a signed other addend
    assert "one signedness" in kernels_m7.add_plan(mixed, None)


def _add_graph(seed=2):
    """x -> a (1x1 conv); relu(x + a) -> s; s + a -> y (the second ADD in place over s): 8-bit
    signed TFLite ADDs that stay stand-alone steps with fuse_add=False."""
    rng = np.random.default_rng(seed)
    a = IntegerLayer(kind="pointwise", name="a", in_shape=(6, 6, 8), out_shape=(6, 6, 8),
                     in_bits=8, in_signed=True, in_zero_point=-5, out_bits=8, out_signed=True,
                     out_zero_point=3, inputs=("x",), outputs=("a",), rounding="tflite_double")
    a.set_weights(rng.integers(0, 256, (8, 1, 1, 8)), 8)
    a.weight_zero_point = np.array([128], np.int32)
    a.bias = rng.integers(-500, 500, 8).astype(np.int32)
    a.m0, a.n0 = tflite_quantize_multiplier(rng.uniform(0.001, 0.004, 8))
    adds = []
    for name, ins, zin, zo, relu in (("s", ("x", "a"), -5, -20, True), ("y", ("s", "a"), -20, 7,
                                                                          False)):
        m0, n0 = tflite_quantize_multiplier([0.5, 0.31, 0.6 / (1 << 20)])
        adds.append(IntegerLayer(kind="add", name=name, in_shape=(6, 6, 8), out_shape=(6, 6, 8),
                                 in_bits=8, in_signed=True, in_zero_point=zin, out_signed=True,
                                 out_zero_point=zo, inputs=ins, outputs=(name,), left_shift=20,
                                 m0=m0, n0=n0, act_min=zo if relu else None,
                                 rounding="tflite_double"))
    g = IntegerGraph([a, *adds], input_shape=(6, 6, 8), input_signed=True, input_zero_point=-5,
                     rounding="tflite_double", input_name="x", outputs=["y"], name="adds")
    g.validate()
    return g


def test_add_steps_host_bitexact(tmp_path):
    g = _add_graph()
    e = codegen.export_c(g, tmp_path / "src", fuse_add=False)
    assert e.kernels == [_gemm_kind(e.steps[0]), "add", "add"], e.kernels
    exe = mcu.build_host(e, build_dir=tmp_path / "host")
    x = np.random.default_rng(5).integers(-128, 128, (30, *g.input_shape))
    want = codegen.reference_output(g, x)
    assert len(np.unique(want)) > 50
    np.testing.assert_array_equal(mcu.run_host(exe, e, x), want)


@pytest.mark.slow  # a Cortex-M7 build and a QEMU run
def test_add_kernel_under_qemu(qemu, tmp_path):
    """The ADD's intrinsics (SMMLAR, SXTAB, SSAT, SSUB8 / SEL) bit-exact under QEMU."""
    g = _add_graph()
    x = np.random.default_rng(1).integers(-128, 128, (6, *g.input_shape))
    r = mcu.deploy(g, x, tmp_path, name="adds", mcu_images=6, fuse_add=False)
    s = r["summary"]
    assert s["host_mismatching_values"] == 0 and s["mcu_mismatching_values"] == 0
    assert r["export"].kernels == [_gemm_kind(r["export"].steps[0]), "add", "add"]
    steps = r["steps"]
    for k in (1, 2):  # 288 elements each: at most 20 instructions per element
        assert steps["insns_per_image"].iloc[k] <= 20 * 288, steps["insns_per_image"].iloc[k]


@pytest.mark.slow  # Cortex-M7 builds and QEMU runs of MLPerf Tiny's ResNet-8
def test_resnet8_adds_under_qemu(qemu, tmp_path):
    """ResNet-8 with its three residual ADDs as stand-alone steps: bit-exact under QEMU, each
    ADD on the specialised kernel at most 20 instructions per element (the portable one takes
    about 240). The default build (each ADD fused into the convolution before it, tn_m7_conv
    applying the same arithmetic to each output as it is computed): bit-exact, a smaller arena
    (no tensor for the convolution's output: it is written over the other addend), and at most
    1 % more instructions than the unfused build. Fusing is not cheaper here: tn_m7_conv's
    epilogue is register-bound (the ADD's constants and six output pointers spill), while the
    stand-alone ADD runs four elements per word at about 12-13 instructions each; and the
    assembly epilogue of the convolution (tn_m7_cv_epi4) serves the unfused steps only
    (measured: fused 11,982,360, unfused 11,883,082 per image, +0.84 %; before that epilogue
    12,576,794 / 12,517,250, +0.48 %; arenas 33,472 / 33,888 B)."""
    from tests.test_mlperf_import import _model
    from tinyopt.integer.from_litert import graph_from_tflite
    g = graph_from_tflite(_model("ic_resnet8"), flavour="tflm")
    x = np.random.default_rng(3).integers(-128, 128, (2, *g.input_shape))
    r = mcu.deploy(g, x, tmp_path, name="r8", mcu_images=2, fuse_add=False)
    s = r["summary"]
    assert s["host_images_exact"] == 2 and s["mcu_images_exact"] == 2
    st = r["steps"]
    adds = [k for k, step in enumerate(r["export"].steps) if step.layer.kind == "add"]
    assert len(adds) == 3 and all(st["kernel"].iloc[k] == "add" for k in adds)
    for k in adds:
        n = int(np.prod(r["export"].steps[k].layer.out_shape))
        assert st["insns_per_image"].iloc[k] <= 20 * n, (k, st["insns_per_image"].iloc[k], n)
    f = mcu.deploy(g, x, tmp_path, name="r8f", mcu_images=2)
    fs = f["summary"]
    assert fs["host_images_exact"] == 2 and fs["mcu_images_exact"] == 2
    fused = [step for step in f["export"].steps if step.add is not None]
    assert len(fused) == 3
    assert all(isinstance(kernels_m7.add_plan(step, g.rounding), dict) for step in fused)
    assert fs["arena_bytes"] < s["arena_bytes"], (fs["arena_bytes"], s["arena_bytes"])
    assert fs["insns_per_image_mean"] <= 1.01 * s["insns_per_image_mean"], (
        fs["insns_per_image_mean"], s["insns_per_image_mean"])


# ------------------------------------------------------------------------------ fused ADD
def _fused_case(case, slot):
    """The ADD of ``case`` fused into a compute step whose outputs are its input ``slot`` (the
    fields add_plan reads of such a step: the layer's output record, the ADD, the other
    addend's Tensor record)."""
    lay = case.layer
    za, zb, signed = int(lay.in_zero_point), int(case.in_specs[1].zero_point), lay.in_signed
    own = types.SimpleNamespace(out_bits=8, out_signed=signed, out_zero_point=(za, zb)[slot])
    other = types.SimpleNamespace(bits=8, signed=signed, zero_point=(zb, za)[slot])
    return types.SimpleNamespace(name=f"{case.name}_fused{slot}", layer=own, add=lay,
                                 add_slot=slot, in_specs=(None, other))


def _c_int(v):
    return "INT32_MIN" if int(v) == -(1 << 31) else f"{int(v)}" + ("u" if int(v) >= 0 else "")


def _no_out(plan):
    return {k: ({c: x for c, x in v.items() if c != "out"} if isinstance(v, dict) else v)
            for k, v in plan.items()}


@pytest.mark.slow  # (a few seconds: make test runs it, test-fast does not)
def test_fused_add_epilogue_exhaustive_on_the_host(tmp_path):
    """tn_m7_add_fused (the gemm kernel's fused residual ADD) equals the simulator's ADD on every
    pair of input codes (65,536 and a tail of 3), the layer's outputs being either input of the
    ADD, written to a separate buffer and in place over the other addend, for the parameters of
    the ADD kernel's test; its plan is the stand-alone ADD's."""
    cases, n = _add_cases(), 65536 + 3
    fns, calls = [], []
    for k, c in enumerate(cases):
        for slot in (0, 1):
            p = kernels_m7.add_plan(_fused_case(c, slot), None)
            assert not isinstance(p, str), (k, slot, p)
            assert _no_out(p) == dict(_no_out(kernels_m7.add_plan(c, None)), SLOT=slot)
            args = [n, 1, p["SLOT"], *kernels_m7._add_args(p)]
            fns.append(f"static void fused{k}_{slot}(const int32_t *v, const uint8_t *o, "
                       f"uint8_t *out)\n{{\n    tn_m7_add_fused(v, o, out, "
                       + ", ".join(_c_int(a) for a in args) + ");\n}\n")
            calls.append(f"    run(fused{k}_{slot}, {slot}u, {int(bool(c.layer.in_signed))}u);")
    src = tmp_path / "fused.c"
    src.write_text(
        '#include <stdio.h>\n#include "tn_m7_add.h"\n' + "".join(fns) + f"""
#define N {n}u
typedef void (*fused_fn)(const int32_t *, const uint8_t *, uint8_t *);
static int32_t v[N];
static uint8_t o[N], r[N];
static void run(fused_fn f, uint32_t slot, uint32_t is_signed)
{{
    for (uint32_t i = 0; i < N; i++) {{
        const uint32_t a = (i % 65536u) & 255u, b = (i % 65536u) >> 8;
        const uint32_t mine = slot ? b : a; /* the layer's outputs: input `slot` of the ADD */
        v[i] = is_signed ? (int32_t)(int8_t)(uint8_t)mine : (int32_t)mine;
        o[i] = (uint8_t)(slot ? a : b);
    }}
    f(v, o, r);
    fwrite(r, 1, N, stdout);
    f(v, o, o); /* in place over the other addend */
    fwrite(o, 1, N, stdout);
}}
int main(void)
{{
""" + "\n".join(calls) + "\n    return 0;\n}\n")
    got = _host_program_output(src, tmp_path / "fused").reshape(len(cases), 2, 2, n)
    got = got.astype(np.int64)
    for k, c in enumerate(cases):
        want = _add_reference(c, *_codes(n, c.layer.in_signed))
        assert len(np.unique(want)) > 8, f"case {k}: a nearly constant ADD checks little"
        for slot in (0, 1):
            out = (got[k, slot] ^ 128) - 128 if c.layer.out_signed else got[k, slot]
            for j, where in enumerate(("to a buffer", "over the other addend")):
                bad = np.flatnonzero(out[j] != want)
                assert bad.size == 0, (f"case {k}, slot {slot} ({where}): {bad.size} "
                                       f"differences, first at element {bad[0]}")


def _fused_graph(flavour, signed, bits=8, ls=20, seed=4):
    """x -> a (1x1 conv), x -> b (3x3 conv); s = b + a (ReLU), b fused with it (its input 0)
    and written over a; c = 1x1 conv of s; y = s + c, c fused with it (its input 1; not over s,
    c's own input). 5 x 5 pixels (the single-pixel path too), 7 channels (a pixel pair's 14
    outputs: whole words and a tail). ``ls`` = 23 with z_b at the end of the codes makes
    (b - z_b) << 24 leave int32: add_plan refuses the first ADD."""
    rng = np.random.default_rng(seed)
    base = -(1 << (bits - 1)) if signed else 0
    mid, spread = base + (1 << (bits - 1)), 1 << (bits - 3)  # zero points near the middle
    zx, za, zb, zs, zc, zy = (int(z) for z in rng.integers(mid - spread, mid + spread, 6))
    if ls > 20:
        zb = base  # |b - z_b| up to 2^bits - 1
    shape = (5, 5, 7)
    t = dict(in_bits=bits, in_signed=signed, out_bits=bits, out_signed=signed,
             rounding=flavour)
    scale = 0.0025 if bits == 8 else 0.005  # outputs of about a quarter of the codes

    def conv(name, src, zin, zout, cin, k):
        lay = IntegerLayer(kind="conv2d" if k > 1 else "pointwise", name=name,
                           in_shape=shape[:2] + (cin,), out_shape=shape, in_zero_point=zin,
                           out_zero_point=zout, inputs=(src,), outputs=(name,),
                           padding=(k // 2,) * 4, **t)
        lay.set_weights(rng.integers(0, 256, (7, k, k, cin)), 8)
        lay.weight_zero_point = np.array([128], np.int32)
        lay.bias = rng.integers(-500, 500, 7).astype(np.int32)
        lay.m0, lay.n0 = tflite_quantize_multiplier(rng.uniform(scale / k, 2 * scale / k, 7))
        return lay

    def add(name, ins, zin, zout, relu):
        sa, sb = rng.uniform(0.01, 0.2, 2)
        so = (sa + sb) * rng.uniform(0.6, 1.0)  # the sum's range: few saturated outputs
        twice = 2 * max(sa, sb)
        m0, n0 = tflite_quantize_multiplier([sa / twice, sb / twice,
                                             twice / ((1 << ls) * so)])
        return IntegerLayer(kind="add", name=name, in_shape=shape, out_shape=shape,
                            in_zero_point=zin, out_zero_point=zout, inputs=ins,
                            outputs=(name,), left_shift=ls, m0=m0, n0=n0,
                            act_min=zout if relu else None, **t)

    layers = [conv("a", "x", zx, za, 5, 1), conv("b", "x", zx, zb, 5, 3),
              add("s", ("b", "a"), zb, zs, True), conv("c", "s", zs, zc, 7, 1),
              add("y", ("s", "c"), zs, zy, False)]
    g = IntegerGraph(layers, input_shape=(5, 5, 5), input_bits=bits, input_signed=signed,
                     input_zero_point=zx, rounding=flavour, input_name="x", outputs=["y"],
                     name=f"fused_{flavour}")
    g.validate()
    return g


FUSED_GRAPHS = {"double_s8": ("tflite_double", True, 8, 20),
                "single_s8": ("tflite_single", True, 8, 20),
                "floor_u8": ("floor", False, 8, 20),
                "double_u8": ("tflite_double", False, 8, 20),
                # refused by add_plan: the portable arithmetic in the epilogue
                "wide_shift": ("tflite_double", True, 8, 23),
                "u4": ("floor", False, 4, 20)}


@pytest.mark.parametrize("name", _fast_first(FUSED_GRAPHS, ("double_s8", "wide_shift")))
def test_fused_add_steps_host_bitexact(tmp_path, host_batch, name):
    """Convolutions fused with a residual ADD (as either of its inputs, in place over the other
    addend or not) bit-exact on the host: with tn_m7_add_fused where add_plan accepts the ADD,
    with the portable arithmetic (and the reason in the choice) where it refuses."""
    _, signed, bits, _ = FUSED_GRAPHS[name]
    g = _fused_chain(name)
    e = codegen.export_c(g, tmp_path / "src")
    assert e.kernels == [_gemm_kind(s) for s in e.steps], e.kernels
    fused = [s for s in e.steps if s.add is not None]
    assert [s.add_slot for s in fused] == [0, 1]
    assert fused[0].out_offset == fused[0].in_offsets[1]  # over a, its last reader
    plans = [kernels_m7.add_plan(s, g.rounding) for s in fused]
    reasons = [kernels_m7.choose(s, k, rounding=g.rounding).reason
               for k, s in enumerate(e.steps) if s.add is not None]
    if name == "wide_shift":
        assert "int32" in plans[0] and "input 0" in plans[0], plans[0]
        assert reasons[0].startswith("fused ADD on the portable arithmetic: input 0")
    elif name == "u4":
        assert all("8-bit" in p for p in plans) and all("8-bit" in r for r in reasons)
    else:
        assert all(isinstance(p, dict) for p in plans) and reasons == ["", ""], plans
    x = host_inputs(g, 30)  # the whole range of its input width
    assert (g.input_bits, g.input_signed) == (bits, signed)
    want = codegen.reference_output(g, x)
    assert len(np.unique(want)) > (8 if bits < 8 else 50)
    np.testing.assert_array_equal(host_batch.outputs(e, x), want)


def _fused_chain(name):
    flavour, signed, bits, ls = FUSED_GRAPHS[name]
    return _fused_graph(flavour, signed, bits, ls)


# ------------------------------------------------------------------------------ dense: tn_m7_fc
def _fc(n, out_bits=8, **kw):
    return dict(kind="dense", out_shape=(n,), wbits=8, out_bits=out_bits, **kw)


# Chains of dense layers of 8-bit inputs and weights (tn_m7_fc): K % 4 of 1, 2, 3 and 0, fewer
# than four inputs (no word), a single word; N % 4 of 1, 2, 3 and 0; PL and PC weight zero points
# (FB and ICN), the three roundings (and a layer naming its own), signed and unsigned inputs with
# extreme zero points (|x - z_x| up to 255 and 382), a 4-bit output, raw int32 logits.
FC_CHAINS = {  # name: (rounding, input signed, input zero point, K, layers)
    "floor_u8": ("floor", False, 255, 37, [
        _fc(14, per_channel=True, icn=True), _fc(19, out_zero_point=3), _fc(3, per_channel=True),
        _fc(4, per_channel=True, icn=True), _fc(5, out_bits=32, out_signed=True,
                                               requantize=False)]),
    "single_s8": ("tflite_single", True, -128, 66, [
        _fc(13, out_signed=True, out_zero_point=-5), _fc(8, per_channel=True, icn=True,
                                                          out_signed=True),
        _fc(11, out_signed=True, rounding="tflite_double"),
        _fc(6, out_bits=4)]),
    # z_x = 0: the offset register equals the accumulators' initial 0 (the asm operands must
    # not share a register); K % 4 == 0 (the LDRD loop) with uint8 inputs
    "u8_z0": ("floor", False, 0, 64, [
        _fc(8), _fc(6, per_channel=True, out_bits=32, out_signed=True, requantize=False)]),
    "double_s8": ("tflite_double", True, 127, 64, [
        _fc(17, per_channel=True, icn=True, out_signed=True, out_zero_point=-128),
        _fc(2, out_signed=True, out_zero_point=7), _fc(9, per_channel=True, out_signed=True),
        _fc(3, out_bits=32, out_signed=True, requantize=False)]),
    # K = 1500 with x' in [-128, 127]: the pair sums' bound exceeds 2^23 (kernels_m7.fc_acc32
    # refuses it): 64-bit SMLALD sums in blocks of four rows (N % 4 = 3); then ACC32 (N % 6 = 4)
    "wide_acc64": ("tflite_double", False, 128, 1500, [
        _fc(11, out_signed=True), _fc(10, per_channel=True, out_bits=32, out_signed=True,
                                      requantize=False)]),
}


def _fc_graph(name):
    rounding, signed, zin, k, layers = FC_CHAINS[name]
    layers = [dict(spec, wshape=(spec["out_shape"][0], n_in))
              for spec, n_in in zip(layers, [k] + [s["out_shape"][0] for s in layers[:-1]])]
    return chain(40 + len(name), layers, (k,), 8, signed, zin, rounding)


def _fc_form(monkeypatch, form):
    """Pin the dense kernel's form: "pairs" (tn_m7_fc's row pairs for every layer:
    kernels_m7.FC16_MAX_WEIGHTS = 0) or "fc16" (the default: tn_m7_fc16 for layers of at most
    FC16_MAX_WEIGHTS weights)."""
    if form == "pairs":
        monkeypatch.setattr(kernels_m7.fc, "FC16_MAX_WEIGHTS", 0)


@needs_fc
@pytest.mark.parametrize("form", ["fc16", "pairs"])
@pytest.mark.parametrize("name", _fast_first(FC_CHAINS, ("floor_u8", "double_s8", "u8_z0")))
def test_fc_kernel_host_bitexact(tmp_path, monkeypatch, host_batch, name, form):
    """tn_m7_fc (every dense layer of the chains; "fc16": its small layers on tn_m7_fc16,
    "pairs": all on the row pairs) equals the simulator on 120 inputs; no step needs scratch."""
    _fc_form(monkeypatch, form)
    g = _fc_graph(name)
    e = host_check(g, tmp_path, n=120, batch=host_batch)
    assert e.kernels == ["fc"] * len(g.layers), e.kernels
    assert [s.scratch_bytes for s in e.steps] == [0] * len(e.steps)
    acc32 = [kernels_m7.fc_acc32(lay) for lay in g.layers]
    assert acc32 == ([False, True] if name == "wide_acc64" else [True] * len(g.layers)), acc32
    small = [kernels_m7.fc16_fits(lay) for lay in g.layers]
    assert small == ([False] + [form == "fc16"] if name == "wide_acc64"
                     else [form == "fc16"] * len(g.layers)), small


def _fc_extreme_graph(k: int) -> IntegerGraph:
    """One dense layer K -> 6 of uint8 inputs (z_x = 0), every weight 255 (b - 128 = 127) and
    raw int32 outputs: its pair sums reach 127 * 255 * K, the most fc_acc32 can allow."""
    g = chain(9, [_fc(6, wshape=(6, k), out_bits=32, out_signed=True, requantize=False)], (k,),
              8, False, 0, "floor")
    lay = g.layers[0]
    lay.set_weights(np.full((6, k), 255), 8)
    lay.weight_zero_point = np.zeros(1, np.int32)
    lay.bias = np.zeros(6, np.int32)
    return g


def test_fc_acc32_bound_at_its_edge(tmp_path, monkeypatch):
    """kernels_m7.fc_acc32 allows 32-bit pair sums exactly while every B = sum (b - 128) x' stays
    in [-2^23, 2^23) (K = 259: 127 * 255 * 259 = 2^23 - 893; K = 260 is over), and tn_m7_fc is
    exact at that edge: inputs all 255 (the largest B and S_a), all 0 and random (the row pairs
    pinned: these layers are small enough for tn_m7_fc16)."""
    _fc_form(monkeypatch, "pairs")
    assert kernels_m7.fc_acc32(_fc_extreme_graph(259).layers[0])
    assert not kernels_m7.fc_acc32(_fc_extreme_graph(260).layers[0])
    for k in (259, 260):
        g = _fc_extreme_graph(k)
        e = codegen.export_c(g, tmp_path / f"src{k}")
        assert e.kernels == ["fc"]
        exe = mcu.build_host(e, build_dir=tmp_path / f"host{k}")
        x = np.random.default_rng(k).integers(0, 256, (6, k))
        x[0], x[1] = 255, 0
        want = codegen.reference_output(g, x)
        assert int(want[0].max()) == 255 * 255 * k and int(want[1].max()) == 0
        np.testing.assert_array_equal(mcu.run_host(exe, e, x), want)


def test_fc_weights_layout_by_hand():
    """fc_weights: rows in pairs, two rows' codes interleaved per word (b ^ 0x80), blocks of four
    rows, then a pair, then the odd row as it is; the K % 4 tail codes after each block's words;
    N * K bytes. A dense layer of sub-byte weights is refused with its name."""
    n, k = 7, 6
    w = (np.arange(n * k).reshape(n, k) * 7 + 3).astype(np.uint8)
    lay = IntegerLayer(kind="dense", name="fc", in_shape=(k,), out_shape=(n,), in_bits=8,
                       out_bits=8)
    lay.set_weights(w, 8)
    got = kernels_m7.fc_weights(lay)
    f = lambda r, i: int(w[r, i]) ^ 0x80  # noqa: E731  (a b-row code as stored in a word)
    block4 = ([w[0, 0], f(1, 0), w[0, 2], f(1, 2), w[0, 1], f(1, 1), w[0, 3], f(1, 3)]
              + [w[2, 0], f(3, 0), w[2, 2], f(3, 2), w[2, 1], f(3, 1), w[2, 3], f(3, 3)]
              + [*w[0, 4:], *w[1, 4:], *w[2, 4:], *w[3, 4:]])
    pair = ([w[4, 0], f(5, 0), w[4, 2], f(5, 2), w[4, 1], f(5, 1), w[4, 3], f(5, 3)]
            + [*w[4, 4:], *w[5, 4:]])
    np.testing.assert_array_equal(got, np.array(block4 + pair + list(w[6]), np.uint8))
    assert got.size == n * k
    lay4 = IntegerLayer(kind="dense", name="fc4", in_shape=(k,), out_shape=(n,), in_bits=8,
                        out_bits=8)
    lay4.set_weights(w & 15, 4)
    with pytest.raises(ValueError, match="'fc4'.*4-bit"):
        kernels_m7.fc_weights(lay4)


@needs_fc
def test_fc_rule_and_its_bound():
    """steps.fc_fits: 8-bit dense layers without a fused ADD whose 32-bit partial sums cannot
    overflow (K * 255 * max |x - z_x| < 2^31); the others keep the gemm kernel (or, this wide,
    the portable one)."""
    g = _fc_graph("floor_u8")
    steps, _ = steps_mod.memory_plan(g)
    assert all(steps_mod.fc_fits(s) for s in steps)
    assert [steps_mod.m7_kernel(s)[0] for s in steps] == ["fc"] * len(steps)
    wide = chain(3, [_fc(2, wshape=(2, 33_100))], (33_100,), 8, False, 255)  # 33100*255*255 > 2^31
    steps, _ = steps_mod.memory_plan(wide)
    kind, why = steps_mod.m7_kernel(steps[0])  # the gemm kernel's im2col row is too long here
    assert not steps_mod.fc_fits(steps[0]) and kind == "portable" and "im2col" in why, why
    small = chain(3, [_fc(2, wshape=(2, 8000))], (8000,), 8, False, 255)
    steps, _ = steps_mod.memory_plan(small)
    assert steps_mod.fc_fits(steps[0]) and steps_mod.scratch_bytes(steps[0]) == 0
    sub = _mixed_graph()  # its dense layer has 4-bit weights
    steps, _ = steps_mod.memory_plan(sub)
    assert steps[-1].layer.kind == "dense" and not steps_mod.fc_fits(steps[-1])


def test_fast_requant_smmulr_form_on_the_host(tmp_path):
    """tn_m7_out's FAST = 3 form (SMMULR of 2 acc, one add and one shift for the rounding divide)
    equals tn_requant_k (the portable kernels' TFLite double rounding) for |acc| < 2^30, every n0
    in [-30, -1], multipliers 0, 1, 2^30, 2^31 - 1 and random ones, accumulators at the bounds,
    at rounding ties and random; kernels_m7.requant_constants gives FAST = 3 only where the
    accumulator bound holds."""
    src = tmp_path / "fast3.c"
    src.write_text(r'''
#include <stdio.h>
#include "tn_m7_core.h"
static uint32_t s = 12345u;
static uint32_t rnd(void) { s = s * 1664525u + 1013904223u; return s; }
int main(void)
{
    static const int32_t m0s[] = {0, 1, 1 << 30, 2147483647, 1518500250, 1073741825};
    tn_layer_t l;
    unsigned long bad = 0, n = 0;
    memset(&l, 0, sizeof l);
    for (int32_t e = 1; e <= 30; e++)
        for (int i = 0; i < 20000; i++) {
            const int32_t m0 = i < 6 ? m0s[i] : (int32_t)(rnd() >> 1);
            int32_t acc;
            const uint32_t k = rnd() % 6u;
            if (k == 0) acc = (1 << 30) - 1 - (int32_t)(rnd() % 4u);
            else if (k == 1) acc = -(1 << 30) + 1 + (int32_t)(rnd() % 4u);
            else if (k == 2) acc = (int32_t)(rnd() % 2001u) - 1000;
            else if (k == 3) acc = (int32_t)((rnd() >> 2) << (rnd() % 8u)) >> (rnd() % 8u);
            else acc = (int32_t)(rnd() % (1u << 31)) - (1 << 30);
            if (acc >= (1 << 30) || acc <= -(1 << 30)) continue;
            {
                const int32_t want = (int32_t)tn_requant_k(acc, m0, (int8_t)-e, TN_TFL_DOUBLE);
                const int32_t got = tn_m7_out(&l, acc, 0u, 1u, 0u, TN_TFL_DOUBLE, 3u, m0, -e,
                                              INT32_MIN, INT32_MAX, 0);
                bad += got != want;
                n++;
            }
        }
    printf("%lu %lu\n", bad, n);
    return 0;
}
''')
    out = _host_program_output(src, tmp_path / "fast3")
    bad, n = (int(v) for v in bytes(out).decode().split())
    assert n > 500_000 and bad == 0, (bad, n)
    g = _fc_graph("double_s8")
    consts = [kernels_m7.requant_constants(lay, g.rounding)["FAST"] for lay in g.layers]
    assert consts[:3] == [3, 3, 3] and consts[3] == 0  # the raw logits have no requantization
    lay = g.layers[0]
    assert kernels_m7.acc_bound(lay) < (1 << 30)
    big = IntegerLayer(**{f: getattr(lay, f) for f in (
        "kind", "name", "in_shape", "out_shape", "in_bits", "in_signed", "in_zero_point",
        "out_bits", "out_signed", "out_zero_point", "m0", "n0", "rounding")})
    big.set_weights(lay.weights, 8)
    big.weight_zero_point, big.bias = lay.weight_zero_point, np.full(17, 1 << 30, np.int32)
    assert kernels_m7.requant_constants(big, g.rounding)["FAST"] == 2


@needs_fc
@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
@pytest.mark.parametrize("form", ["fc16", "pairs"])
def test_fc_kernel_under_qemu(qemu, tmp_path, monkeypatch, form):
    """tn_m7_fc's assembly loops (LDRD for word-aligned weights with K % 4 == 0, LDR otherwise;
    int8 and uint8 inputs, z_x = 0; "fc16": the small layers on tn_m7_fc16's, "pairs": all on
    the row pairs) bit-exact under QEMU; under 2 instructions per MAC on the small layer
    64 -> 17 of the chain (the old gemm kernel took about 2.2 on dense layers; MLPerf AD's layers
    now take 1.17-1.33, docs/integer.md)."""
    _fc_form(monkeypatch, form)
    for name in ("floor_u8", "double_s8", "u8_z0"):
        g = _fc_graph(name)
        lo = -128 if g.input_signed else 0
        x = np.random.default_rng(2).integers(lo, lo + 256, (6, *g.input_shape))
        r = mcu.deploy(g, x, tmp_path / name, name=name, host_images=6, mcu_images=3)
        s = r["summary"]
        assert s["host_mismatching_values"] == 0 and s["mcu_mismatching_values"] == 0, name
        assert r["export"].kernels == ["fc"] * len(g.layers)
        assert all(kernels_m7.fc16_fits(lay) == (form == "fc16") for lay in g.layers)
        if name == "double_s8":
            first = r["steps"].iloc[0]
            assert first["insns_per_image"] < 2 * first["macs"], first


# ------------------------------------------------------------------ pointwise: tn_m7_conv (pw)
def _pw(hw, c_in, c_out, out_bits=8, **kw):
    return _conv((*hw, c_out), (c_out, 1, 1, c_in), 8, out_bits, **kw)


# Chains of 8-bit pointwise layers (tn_m7_conv, kind "pw"): C % 4 of 2, 1, 3 and 0, fewer than
# four input channels, odd output channel counts, an odd number of pixels (a lone last pixel),
# stride 2;
# PL and PC, FB and ICN, the three roundings, int8 and uint8 inputs with extreme zero points, a
# 4-bit output, a dense head with raw int32 logits; outputs sliding over their inputs where the
# planner lets them (8-bit in and out).
PW_CHAINS = {  # name: (rounding, input signed, input zero point, input shape, layers)
    "floor_u8": ("floor", False, 255, (5, 5, 6), [
        _pw((5, 5), 6, 9, per_channel=True, icn=True), _pw((5, 5), 9, 7, out_zero_point=3),
        _pw((5, 5), 7, 3, per_channel=True), _pw((3, 3), 3, 16, stride=(2, 2)),
        _pw((3, 3), 16, 5, out_bits=4, per_channel=True, icn=True)]),
    "double_s8": ("tflite_double", True, -128, (4, 6, 16), [
        _pw((4, 6), 16, 32, per_channel=True, icn=True, out_signed=True, out_zero_point=-128),
        _pw((4, 6), 32, 32, out_signed=True, out_zero_point=5),
        _pw((4, 6), 32, 8, per_channel=True, out_signed=True),
        dict(kind="flatten"),
        dict(kind="dense", out_shape=(3,), wshape=(3, 192), wbits=8, out_bits=32,
             out_signed=True, requantize=False)]),
    "u8_z0": ("floor", False, 0, (2, 3, 16), [
        _pw((2, 3), 16, 8, per_channel=True), _pw((2, 3), 8, 5)]),
    "single_s8": ("tflite_single", True, 127, (3, 3, 8), [
        _pw((3, 3), 8, 12, out_signed=True, out_zero_point=-9),
        _pw((3, 3), 12, 4, out_signed=True, per_channel=True, icn=True,
            rounding="tflite_double")]),
}


def _pw_graph(name):
    rounding, signed, zin, shape, layers = PW_CHAINS[name]
    return chain(60 + len(name), layers, shape, 8, signed, zin, rounding)


@needs_fc
@pytest.mark.parametrize("name", _fast_first(PW_CHAINS, ("floor_u8", "double_s8", "u8_z0")))
def test_pw_kernel_host_bitexact(tmp_path, host_batch, name):
    """tn_m7_conv on the pointwise layers of the chains ("pw") equals the simulator on 120
    inputs; its scratch is two pixels' int16 lanes (4 KP bytes), no int32 outputs."""
    g = _pw_graph(name)
    e = host_check(g, tmp_path, n=120, batch=host_batch)
    pws = [(k, s) for k, s in zip(e.kernels, e.steps) if s.layer.kind == "pointwise"]
    assert [k for k, _ in pws] == ["pw"] * len(pws), e.kernels
    for _, s in pws:
        kp = -(-s.layer.in_shape[-1] // 4) * 4
        assert s.scratch_bytes == steps_mod.scratch_bytes(s) == 4 * kp
    if name == "double_s8":
        assert any(steps_mod.write_delay(s) is not None for _, s in pws)


@needs_fc
@pytest.mark.slow  # Cortex-M7 builds and QEMU runs
def test_pw_kernel_under_qemu(qemu, tmp_path):
    """tn_m7_conv's assembly loops on pointwise layers (C % 4 != 0: padded lanes; z_x = 0)
    bit-exact under QEMU;
    under 2 instructions per MAC on the small 32 -> 32 layer of the double_s8 chain (the
    per-output requantization weighs on 32 MACs per output; MLPerf KWS's 64 -> 64 layers take
    1.24, docs/integer.md)."""
    for name in ("floor_u8", "double_s8", "u8_z0"):
        g = _pw_graph(name)
        lo = -128 if g.input_signed else 0
        x = np.random.default_rng(3).integers(lo, lo + 256, (6, *g.input_shape))
        r = mcu.deploy(g, x, tmp_path / name, name=name, host_images=6, mcu_images=3)
        s = r["summary"]
        assert s["host_mismatching_values"] == 0 and s["mcu_mismatching_values"] == 0, name
        if name == "double_s8":
            mid = r["steps"].iloc[1]
            assert mid["kernel"] == "pw" and mid["insns_per_image"] < 2 * mid["macs"], mid

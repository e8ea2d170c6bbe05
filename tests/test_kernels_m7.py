"""The Cortex-M7 kernels specialised per layer (tinyopt/deploy/kernels_m7.py, c/tn_m7.h) agree
with tinyopt.sim, value for value.

The host build compiles the very same specialised kernels (the DSP intrinsics replaced by
portable C of identical results), so most checks run on the host, fast; one QEMU test checks the
intrinsics themselves on a graph with every specialised kernel and bit width, and that the
specialised build is faster than the portable one and links no unused kernel.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from tinyopt.deploy import codegen, kernels_m7, mcu, synth
from tinyopt.icn import IntegerGraph, IntegerLayer

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")


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
        wshape, wbits = spec.pop("wshape"), spec.pop("wbits")
        per_channel, icn = spec.pop("per_channel", False), spec.pop("icn", False)
        layer = IntegerLayer(kind=kind, name=f"l{len(g.layers)}", **common, **spec)
        top = (1 << wbits) - 1
        layer.set_weights(rng.integers(0, top + 1, wshape), wbits)
        n = layer.out_channels if per_channel else 1
        layer.weight_zero_point = rng.integers(top // 4, top - top // 4 + 1, n).astype(np.int32)
        g.layers.append(layer)
        synth.calibrate_layer(g, layer, x, rng, icn, 0.0 if tfl else 0.25)
        st.update(shape=tuple(layer.out_shape), bits=layer.out_bits, signed=layer.out_signed,
                  zp=layer.out_zero_point)
    g.validate()
    return g


def host_check(g, tmp_path, n=40):
    e = codegen.export_c(g, tmp_path / "src")
    exe = mcu.build_host(e, build_dir=tmp_path / "host")
    lo = -(1 << (g.input_bits - 1)) if g.input_signed else 0
    x = np.random.default_rng(5).integers(lo, lo + (1 << g.input_bits), (n, *g.input_shape))
    want = codegen.reference_output(g, x)
    assert len({r.tobytes() for r in want}) > 1, "a constant output checks little"
    got = mcu.run_host(exe, e, x)
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


def _fast_first(names, fast):
    """The chains in ``fast`` run in make test-fast, the others only in make test (slow)."""
    return [n if n in fast else pytest.param(n, marks=pytest.mark.slow) for n in sorted(names)]


@pytest.mark.parametrize("name", _fast_first(GEMM_CHAINS, ("floor_a",)))
def test_gemm_kernels_host_bitexact(tmp_path, name):
    rounding, signed, zin, layers = GEMM_CHAINS[name]
    g = chain(len(name), layers, (9, 9, 3), 8, signed, zin, rounding)
    e = host_check(g, tmp_path)
    compute = [k for k, s in zip(e.kernels, e.steps) if s.layer.weights is not None]
    assert compute == ["gemm"] * len(compute), e.kernels


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


@pytest.mark.parametrize("name", _fast_first(DW_CHAINS, ("c32",)))
def test_depthwise_kernels_host_bitexact(tmp_path, name):
    bits, signed, zin, shape, layers = DW_CHAINS[name]
    g = chain(len(name) + 10, layers, shape, bits, signed, zin)
    e = host_check(g, tmp_path)
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
    assert kinds == ["gemm", "depthwise", "gemm", "depthwise", "gemm", "depthwise", "gemm"]
    assert s["insns_per_image_mean"] < 8 * s["macs"]  # the portable kernels take > 15 / MAC
    nm = subprocess.run(["arm-none-eabi-nm", tmp_path / "m7" / "mcu" / "model.elf"],
                        capture_output=True, text=True, check=True).stdout
    linked = {line.split()[-1] for line in nm.splitlines() if " tn_run" in line}
    assert linked == set(), linked  # no portable kernel: every step is specialised

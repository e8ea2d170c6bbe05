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


# conv with few input channels (odd, SAME asymmetric / VALID, strides), pointwise with odd
# channel counts, fused overlapping max pool, dense with an odd length: every weight width
# against every input width
GEMM_CASES = [  # (w_bits, in_bits, per_channel, icn, rounding)
    (8, 8, False, False, "floor"), (4, 8, True, True, "floor"), (2, 4, False, True, "floor"),
    (1, 2, True, False, "floor"), (4, 4, True, True, "floor"), (2, 2, True, True, "floor"),
    (8, 8, True, True, "tflite_double"), (8, 8, False, False, "tflite_single"),
]


@pytest.mark.parametrize("wb,xb,pc,icn,rounding", GEMM_CASES)
def test_gemm_kernels_host_bitexact(tmp_path, wb, xb, pc, icn, rounding):
    tfl = rounding != "floor"
    signed = tfl
    zin = -7 if signed else (3 if xb == 8 else 0)
    ob = 8 if tfl else 4
    layers = [
        dict(kind="conv2d", out_shape=(5, 5, 7), wshape=(7, 3, 3, 3), wbits=8 if tfl else wb,
             per_channel=pc, icn=icn, out_bits=8 if tfl else xb, stride=(2, 2),
             padding=(1, 1, 1, 1)),
        dict(kind="conv2d", out_shape=(3, 3, 5), wshape=(5, 3, 3, 7), wbits=wb, per_channel=pc,
             icn=icn, out_bits=ob, stride=(1, 1), padding=(0, 0, 0, 0)),
        dict(kind="pointwise", out_shape=(3, 3, 9), wshape=(9, 1, 1, 5), wbits=wb,
             per_channel=pc, icn=icn, out_bits=8),
        dict(kind="conv2d", out_shape=(3, 3, 6), wshape=(6, 3, 3, 9), wbits=wb, per_channel=pc,
             icn=icn, out_bits=8, padding=(1, 1, 1, 1)),
        dict(kind="maxpool", out_shape=(2, 2, 6), pool_size=(3, 3), stride=(2, 2),
             padding=(1, 1, 1, 1)),
        dict(kind="flatten"),
        dict(kind="dense", out_shape=(3,), wshape=(3, 24), wbits=wb, per_channel=pc, icn=icn,
             out_bits=32, out_signed=True, requantize=False),
    ]
    g = chain(hash((wb, xb, pc, rounding)) % 1000, layers, (9, 9, 3), 8, signed, zin, rounding)
    e = host_check(g, tmp_path)
    kinds = e.kernels
    assert kinds[:4] == ["gemm"] * 4 and kinds[-1] == "gemm", kinds  # conv+pool fused: gemm


@pytest.mark.parametrize("b,c,pad_mode,zin,signed", [
    (8, 12, "zero_point", -5, True), (8, 8, "zero", 7, False), (4, 16, "zero", 0, False),
    (4, 8, "zero", 3, False), (2, 16, "zero", 0, False), (2, 32, "zero_point", 1, False)])
def test_depthwise_kernels_host_bitexact(tmp_path, b, c, pad_mode, zin, signed):
    layers = [
        dict(kind="depthwise", out_shape=(7, 7, c), wshape=(3, 3, c), wbits=b, per_channel=True,
             icn=True, out_bits=b, stride=(1, 1), padding=(1, 1, 1, 1), pad_mode=pad_mode),
        dict(kind="depthwise", out_shape=(4, 4, c), wshape=(3, 3, c), wbits=b, out_bits=b,
             stride=(2, 2), padding=(1, 1, 1, 1), pad_mode=pad_mode),
        dict(kind="flatten"),
        dict(kind="dense", out_shape=(5,), wshape=(5, 16 * c), wbits=8, out_bits=32,
             out_signed=True, requantize=False),
    ]
    g = chain(b * 100 + c, layers, (7, 7, c), b, signed, zin)
    e = host_check(g, tmp_path)
    assert e.kernels == ["depthwise", "depthwise", "gemm"]


def test_choose_names_why_a_layer_stays_portable():
    g = chain(3, [dict(kind="depthwise", out_shape=(5, 5, 6), wshape=(3, 3, 6), wbits=4,
                       out_bits=4, padding=(1, 1, 1, 1))], (5, 5, 6), 4)
    steps, _ = codegen.memory_plan(g)
    ch = kernels_m7.choose(steps[0], 0)
    assert ch.kind == "portable" and "not a multiple of 8" in ch.reason
    assert kernels_m7.choose(steps[0], 0, "portable").function == "tn_run_compute"
    with pytest.raises(ValueError, match="kernels must be one of"):
        kernels_m7.choose(steps[0], 0, "fast")


def _mixed_graph():
    names = ["conv0"] + [f"{k}{i}" for i in range(1, 14) for k in ("dw", "pw")] + ["fc"]
    from tinyopt.mixed.policy import Policy
    bits = [8, 8, 4, 4, 4, 2, 2, 2, 2, 4, 4, 8, 8, 4, 4, 2, 2, 4, 4, 8, 8, 4, 4, 2, 2, 8, 8, 8]
    pol = Policy(names, bits, bits, "PL", ["ICN" if i % 3 else "FB" for i in range(len(names))])
    x = np.random.default_rng(0).integers(0, 256, (32, 32, 32, 1))
    return synth.mobilenet_graph(pol, x, alpha=0.5, resolution=32)


@pytest.mark.slow  # two Cortex-M7 builds and QEMU runs
def test_specialised_kernels_under_qemu(qemu, tmp_path):
    """8/4/2-bit gemm and depthwise kernels (the intrinsics themselves) bit-exact under QEMU,
    faster than the portable kernels, and only the used kernels linked."""
    g = _mixed_graph()
    x = np.random.default_rng(1).integers(0, 256, (3, *g.input_shape))
    fast = mcu.deploy(g, x, tmp_path, name="m7", mcu_images=3)
    slow = mcu.deploy(g, x, tmp_path, name="portable", mcu_images=3, kernels="portable")
    for r in (fast, slow):
        s = r["summary"]
        assert s["host_mismatching_values"] == 0 and s["mcu_mismatching_values"] == 0
        assert s["ram_acceptance_ok"]
    kinds = set(fast["export"].kernels)
    assert {"gemm", "depthwise"} <= kinds
    assert fast["summary"]["insns_per_image_mean"] < 0.3 * slow["summary"]["insns_per_image_mean"]
    nm = subprocess.run(["arm-none-eabi-nm", tmp_path / "m7" / "mcu" / "model.elf"],
                        capture_output=True, text=True, check=True).stdout
    linked = {line.split()[-1] for line in nm.splitlines() if " tn_run" in line}
    used = {kernels_m7.PORTABLE_FN[s.layer.kind] for s, k in
            zip(fast["export"].steps, fast["export"].kernels) if k == "portable"}
    assert linked == used, (linked, used)

"""The Cortex-M7 twin of ``transpose_conv`` (tinyopt/deploy/c/ops/m7/tn_transpose_conv.c, the
hooks ``m7_check`` / ``m7_scratch_bytes`` / ``m7_weights`` of tinyopt/integer/ops/
transpose_conv.py): the host C of a ``kernels="m7"`` export (the step's kernel "op") gives the
simulator's outputs to the bit on hand-built nodes (strides 1 and 2, kernels 1 to 4, 'same' and
'valid', c_in not a multiple of 4, PL and PC, TFLite's double rounding on int8 codes and the
Keras path's floor on unsigned codes, every requantization and clamp branch of the twin), the
memory plan reserves its scratch and is the built arena; its weight order against an independent
construction; the refusals; a TFLite-imported U-Net and a Keras-path U-Net (slow); one QEMU run
(slow)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests._qemu_many import check_many
from tinyopt.deploy import codegen, kernels_m7, mcu
from tinyopt.integer import steps as steps_mod
from tinyopt.integer.arith import m0_n0, tflite_quantize_multiplier
from tinyopt.integer.graph import IntegerGraph, IntegerLayer
from tinyopt.integer.ops import transpose_conv as tc

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")


def tconv(in_hw=(4, 5), c_in=5, c_out=3, kernel=(3, 3), strides=(2, 2), padding="same",
          per_channel=True, flavour="tflite_double", seed=0, *, real=None, bias=3000,
          relu=False, signed_out=None) -> IntegerGraph:
    """One transpose_conv node with random 8-bit weights. ``flavour`` "tflite_double" /
    "tflite_single": TFLite's import (int8 codes, zero point -3, weights w + 128 with zero point
    128, multipliers by ``tflite_quantize_multiplier``); "floor": the Keras path's (unsigned
    codes, zero point 128, weight zero points random, ``m0_n0``). ``real``: the multiplier
    (default: spreads the outputs over most codes); ``bias``: its magnitude; ``relu``: the clamp
    from the zero point up."""
    rng = np.random.default_rng(seed)
    out_hw, pads = tc.keras_geometry(in_hw, kernel, strides, padding)
    signed = flavour != "floor" if signed_out is None else signed_out
    zp = -3 if signed else 128
    node = IntegerLayer(kind="transpose_conv", name="up", in_shape=(*in_hw, c_in),
                        out_shape=(*out_hw, c_out), inputs=("x",), outputs=("up",),
                        stride=tuple(strides), padding=pads, in_bits=8, in_signed=signed,
                        in_zero_point=zp, out_bits=8, out_signed=signed, out_zero_point=zp)
    node.set_weights(rng.integers(0, 256, (c_out, *kernel, c_in)), 8)
    n = c_out if per_channel else 1
    node.weight_zero_point = (np.full(n, 128) if flavour != "floor"
                              else rng.integers(0, 256, n)).astype(np.int32)
    node.bias = rng.integers(-bias, bias + 1, c_out).astype(np.int32)
    if real is None:  # about two standard deviations of the sum to half the output range
        fan = max(1, kernel[0] * kernel[1] // (strides[0] * strides[1])) * c_in
        real = 128 / (2 * fan ** 0.5 * 74 * 74)
    real = np.broadcast_to(np.asarray(real, np.float64) * (rng.uniform(0.7, 1.4, n)
                                                          if per_channel else 1.0), (n,)).copy()
    if flavour == "floor":
        node.m0, node.n0 = m0_n0(real)
    else:
        node.m0, node.n0 = tflite_quantize_multiplier(real)
        node.rounding = flavour
    if relu:
        node.act_min = zp
    graph = IntegerGraph([node], (*in_hw, c_in), input_bits=8, input_signed=signed,
                         input_zero_point=zp, rounding=flavour, input_name="x",
                         name="tconv")
    graph.validate()
    return graph


def codes(graph, n=24, seed=3):
    lo = -128 if graph.input_signed else 0
    return np.random.default_rng(seed).integers(lo, lo + 256, (n, *graph.input_shape))


def assert_twin_exact(graph, tmp_path, x=None, min_distinct=40):
    """Export with kernels="m7": the step runs the twin, its scratch is planned (the twin's
    bytes, word-aligned) and inside the built arena; the host C equals the simulator."""
    e = codegen.export_c(graph, tmp_path / "src", kernels="m7")
    assert e.kernels == ["op"], e.kernels
    assert "m7_tn_transpose_conv.c" in {p.name for p in e.sources}
    step = e.steps[0]
    assert step.scratch_bytes == -(-tc.m7_scratch_bytes(step) // 4) * 4 > 0
    # one weight array, in the twin's order (codegen: m7_fields' "w" replaces c_fields' own)
    params = (tmp_path / "src" / "model_params.h").read_text()
    size = tc.m7_weights(step.layer).size
    assert params.count("model_w0[") == 1 and f"model_w0[{size}]" in params
    # the layer's weights counted as packed; the twin's layout beyond them as pad bytes
    packed = int(np.asarray(graph.layers[0].weights).nbytes)
    assert e.param_bytes["w"] == packed
    assert e.weight_pad_bytes == size - packed
    exe = mcu.build_host(e, build_dir=tmp_path / "host")
    assert mcu.built_arena_bytes(exe, e) == e.memory.arena_bytes
    x = codes(graph) if x is None else x
    want = codegen.reference_output(graph, x)
    assert len(np.unique(want)) >= min_distinct, "the outputs hardly vary"
    np.testing.assert_array_equal(mcu.run_host(exe, e, x, work_dir=tmp_path / "run"), want)
    return e


@pytest.fixture
def anywhere(monkeypatch):
    """The twin wherever it fits (a one-node Keras-path graph: its scratch grows the arena, so
    steps.SCRATCH_ONLY_WHERE_FREE would keep the portable kernel, see test_keras_rule)."""
    monkeypatch.setattr(steps_mod, "SCRATCH_ONLY_WHERE_FREE", False)


# (in_hw, c_in, c_out, kernel, strides, padding, per_channel, flavour)
CASES = [
    ((4, 5), 5, 3, (3, 3), (2, 2), "same", True, "tflite_double"),
    ((4, 5), 8, 4, (2, 2), (2, 2), "valid", False, "tflite_double"),  # U-Net's K = s = 2
    ((5, 4), 3, 5, (4, 4), (2, 2), "same", True, "floor"),  # pad 1: phases start mid-base
    ((3, 4), 6, 2, (3, 3), (1, 1), "same", False, "floor"),  # one phase, nine taps
    ((3, 4), 7, 3, (4, 4), (1, 1), "valid", True, "tflite_double"),  # output past the input
    ((4, 3), 4, 3, (3, 2), (2, 1), "valid", True, "floor"),  # strides and kernels per axis
    ((4, 4), 9, 6, (3, 3), (2, 2), "valid", False, "tflite_double"),  # 'valid' K > s
    ((3, 5), 5, 3, (1, 1), (2, 2), "valid", True, "floor"),  # phases with no tap: bias only
    ((4, 5), 5, 1, (3, 3), (3, 2), "same", True, "tflite_single"),  # one channel; single rnd
]
IDS = [f"{f}-k{k[0]}x{k[1]}-s{s[0]}x{s[1]}-{p}-c{ci}-co{co}-{'PC' if pc else 'PL'}"
       for _, ci, co, k, s, p, pc, f in CASES]


@needs_gcc
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_host_twin_is_the_simulator(case, tmp_path, anywhere):
    in_hw, c_in, c_out, kernel, strides, padding, pc, flavour = case
    g = tconv(in_hw, c_in, c_out, kernel, strides, padding, pc, flavour)
    assert_twin_exact(g, tmp_path, min_distinct=20 if kernel == (1, 1) else 40)


@needs_gcc
@pytest.mark.parametrize("what", ["huge_bias", "gain", "relu", "unsigned_out_full"])
def test_host_twin_requantization_branches(what, tmp_path, anywhere):
    """The twin's other requantization paths: accumulators of 2^30 and more (TFLite double
    rounding falls back to tn_requant_k per output), a multiplier above 1 (n0 >= 0: no fast
    path), a ReLU clamp (no SSAT), unsigned codes over the whole uint8 range (USAT)."""
    if what == "huge_bias":
        # channels 0-2: |acc| on both sides of 2^30 (bias +-2^30, the products move it by
        # about +-10^5) at a multiplier of 2^-20 (n0 = -19: the twin's fast mode, which must
        # fall back to tn_requant_k above 2^30: the output clamps at the top, at the bottom for
        # a wrapped 2 acc); channels 3-4 ordinary
        g = tconv(c_out=5, bias=100)
        node = g.layers[0]
        node.bias[:3] = [2 ** 30, -(2 ** 30), 2 ** 30 + 2 ** 29]
        node.m0[:3], node.n0[:3] = 1 << 30, -19
        x = codes(g)
        from tinyopt.integer import sim
        acc = sim.run(g, x, trace=True, engine="reference")["up"]
        assert set(np.unique(acc[..., 0])) == {127} and set(np.unique(acc[..., 1])) == {-128}
        assert_twin_exact(g, tmp_path, x, min_distinct=20)
    elif what == "gain":
        for flavour in ("tflite_double", "floor"):
            g = tconv(c_in=3, real=1.5, flavour=flavour, bias=20)
            assert np.max(g.layers[0].n0) >= 0
            assert_twin_exact(g, tmp_path / flavour, min_distinct=20)
    elif what == "relu":
        for flavour in ("tflite_double", "floor"):
            g = tconv(flavour=flavour, relu=True)
            lo, hi = g.layers[0].out_range
            assert lo == g.layers[0].out_zero_point
            e = assert_twin_exact(g, tmp_path / flavour, min_distinct=20)
            assert e.kernels == ["op"]
    else:  # unsigned codes on TFLite's arithmetic: the USAT clamp of mode 1
        g = tconv(flavour="tflite_double", signed_out=False)
        assert g.layers[0].out_range == (0, 255)
        assert_twin_exact(g, tmp_path)


def _unpacked_order(layer) -> np.ndarray:
    """m7_weights written again, element by element: phase (py, px), channel pair, tap, group,
    channel of the pair, four codes."""
    w = layer.unpacked_weights()
    c_out, kh, kw, c_in = w.shape
    sh, sw = layer.stride
    g = -(-c_in // 4)
    out = []
    for py in range(sh):
        for px in range(sw):
            taps = [(ky, kx) for ky in range(py, kh, sh) for kx in range(px, kw, sw)]
            for c0 in range(0, c_out, 2):
                chans = [c for c in (c0, c0 + 1) if c < c_out]
                for ky, kx in taps:
                    for gi in range(g):
                        for c in chans:
                            for r in range(4):
                                k = 4 * gi + r
                                out.append(int(w[c, ky, kx, k]) if k < c_in else 0)
    return np.array(out, np.uint8)


@pytest.mark.parametrize("c_out,kernel,strides,c_in", [(3, (3, 3), (2, 2), 5),
                                                       (4, (2, 2), (2, 2), 8),
                                                       (1, (4, 3), (2, 1), 2),
                                                       (5, (1, 1), (2, 2), 4)])
def test_weight_order(c_out, kernel, strides, c_in):
    g = tconv(c_in=c_in, c_out=c_out, kernel=kernel, strides=strides, padding="valid")
    layer = g.layers[0]
    got = tc.m7_weights(layer)
    want = _unpacked_order(layer)
    assert got.dtype == np.uint8 and got.shape == want.shape
    np.testing.assert_array_equal(got, want)
    # every weight appears once, pads are zero: as many bytes as c_out kh kw ceil(c_in / 4) 4
    assert got.size == c_out * kernel[0] * kernel[1] * 4 * -(-c_in // 4)
    layer.weight_bits = 4
    with pytest.raises(ValueError, match="'up'.*8-bit weights, got 4-bit"):
        tc.m7_weights(layer)


def _step(graph):
    return steps_mod.memory_plan(graph)[0][0]


def test_refusals_keep_the_portable_kernel_with_the_reason(anywhere):
    """Sub-byte widths, an input zero point outside int16 lanes' reach, too much scratch: the
    step stays portable and the reason reaches kernels_m7.Choice; the plan then reserves no
    scratch for it."""
    g = tconv()
    assert tc.m7_check(_step(g)) == ""
    g.layers[0].out_bits = 4
    g.layers[0].out_signed, g.layers[0].out_zero_point = False, 8
    s = _step(g)
    why = tc.m7_check(s)
    assert why == "the twin takes 8-bit input, weights and output, got 4-bit output"
    c = kernels_m7.choose(s, 0, "m7", g.rounding)
    assert (c.kind, c.reason, s.scratch_bytes) == ("portable", why, 0)
    g = tconv()
    g.layers[0].set_weights(g.layers[0].unpacked_weights() % 16, 4)
    assert "4-bit weights" in tc.m7_check(_step(g))
    g = tconv(flavour="floor")
    g.layers[0].in_zero_point = 300
    g.input_zero_point = 300
    assert tc.m7_check(_step(g)) == "input zero point 300 outside [-255, 255]"
    # 5 x 5 taps of 100 lane groups (16 B for two pixels), their sums, 3 int32 per channel
    g = tconv(in_hw=(2, 2), c_in=400, c_out=2, kernel=(5, 5), strides=(1, 1))
    assert tc.m7_scratch_bytes(_step(g)) == 25 * 100 * 16 + 2 * 25 * 4 + 3 * 2 * 4
    assert tc.m7_check(_step(g)) == "scratch 40224 B > 16384 B"


def test_keras_rule():
    """On a Keras-path ("floor") graph the twin runs only where its scratch is free (Step.roomy,
    as tn_m7_subconv): alone in a graph it would grow the arena, so it stays portable with
    that reason; an imported graph (TFLite's rounding) takes it anyway."""
    g = tconv(flavour="floor")
    steps, mem = steps_mod.memory_plan(g)
    c = kernels_m7.choose(steps[0], 0, "m7", g.rounding)
    assert c.kind == "portable" and "grow the arena" in c.reason
    assert mem.arena_bytes == steps_mod.memory_plan(g, kernels="portable")[1].arena_bytes
    g = tconv(flavour="tflite_double")
    steps, mem = steps_mod.memory_plan(g)
    assert kernels_m7.choose(steps[0], 0, "m7", g.rounding).kind == "op"
    assert mem.arena_bytes > steps_mod.memory_plan(g, kernels="portable")[1].arena_bytes


# ------------------------------------------------------------------ whole networks, QEMU
@needs_gcc
@pytest.mark.slow  # converts a Keras model with the TFLite converter
def test_tflite_imported_unet_on_the_twin(tmp_path):
    """The U-Net of tests/test_op_transpose_conv.py (Conv2DTranspose 'same' K = 3 and 'valid'
    K = 2, strides 2, with bias) converted to int8, imported for TFLite Micro: both
    TRANSPOSE_CONV steps run the twin, the host C equals the simulator."""
    import tinyopt  # noqa: F401  (sets up tf_keras)
    from tests import _keras_nets as nets
    from tests import _ops
    unet = nets.unet_int8()
    e = _ops.assert_host_c_exact(unet, "tflm",
                                 ["tn_transpose_conv.c", "m7_tn_transpose_conv.c"], (8, 8, 3),
                                 tmp_path, images=30, kernels="m7")
    tconv_kernels = [k for s, k in zip(e.steps, e.kernels) if s.layer.kind == "transpose_conv"]
    assert tconv_kernels == ["op", "op"]


@needs_gcc
@pytest.mark.slow  # PTQ of a Keras model
@pytest.mark.parametrize("padding,kernel", [("same", 3), ("valid", 2)])
def test_keras_path_unet_on_the_twin(padding, kernel, tmp_path):
    """The Keras path's U-Net (tests/test_handlers_transpose_conv.py) at w8a8: its
    transpose_conv step takes the twin (its scratch is free there), the host C equals the
    simulator, and the memory model's peak RAM is the deployed arena."""
    from tests.test_handlers_transpose_conv import _model, _x
    from tinyopt.mixed import lower, memory, ptq
    from tinyopt.mixed.policy import Policy
    m = _model(padding, kernel)
    p = Policy.uniform(m, 8, 8)
    x = _x()
    g = lower.convert(ptq.quantize_mixed(m, p, x))
    d = mcu.deploy(g, g.quantize_input(x[:16]), tmp_path, name="unet", run_mcu=False)
    s, table = d["summary"], d["steps"]
    assert list(table.loc[table["kind"] == "transpose_conv", "kernel"]) == ["op"]
    assert s["host_images_exact"] == 16 and s["distinct_outputs"] > 1
    assert s["predicted_ram"] == s["arena_bytes"] == memory.peak_ram_bytes(m, p)


@pytest.mark.slow  # one QEMU program
def test_qemu_u_net_layer(tmp_path, anywhere):
    """A U-Net-sized layer (8 x 8 x 32 -> 16 x 16 x 16, strides 2, 'same'; K 3 x 3 TFLite
    double rounding and K 2 x 2 floor) on the emulated Cortex-M7 (the inline-assembly inner
    loop): bit-exact with the simulator (both in one program: tests/_qemu_many.py)."""
    ok, why = mcu.toolchain()
    if not ok:
        pytest.skip(why)
    graphs = {f"k{k[0]}_{flavour}": tconv((8, 8), 32, 16, k, (2, 2), "same", True, flavour)
              for k, flavour in [((3, 3), "tflite_double"), ((2, 2), "floor")]}
    xs = {name: codes(g, 4) for name, g in graphs.items()}
    for name, e in check_many(graphs, xs, tmp_path, host_images=4, mcu_images=2).items():
        assert e.kernels == ["op"], name
        want = codegen.reference_output(graphs[name], xs[name])
        assert len({row.tobytes() for row in want}) == 4, name  # a check with teeth


@needs_gcc
def test_prefixed_export_renames_the_twin(tmp_path):
    """An export under a prefix copies the twin as <prefix>_m7_tn_transpose_conv.c and every
    symbol it defines with external linkage carries the prefix (two exports link together)."""
    import subprocess
    if shutil.which("nm") is None:
        pytest.skip("nm not installed")
    e = codegen.export_c(tconv(), tmp_path / "src", kernels="m7", prefix="up")
    twin = [p for p in e.sources if p.name == "up_m7_tn_transpose_conv.c"]
    assert len(twin) == 1 and e.kernels == ["op"]
    obj = tmp_path / "twin.o"
    subprocess.run(["gcc", "-std=c99", "-O2", "-Wall", "-Wextra", "-pedantic", "-Werror", "-c",
                    str(twin[0]), "-o", str(obj)], check=True)
    out = subprocess.run(["nm", "-g", "--defined-only", str(obj)], check=True,
                         capture_output=True, text=True).stdout
    symbols = [line.split()[-1] for line in out.splitlines() if line.strip()]
    assert symbols == ["up_tn_m7_run_transpose_conv"], symbols

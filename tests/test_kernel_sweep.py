"""A differential sweep of the Cortex-M7 kernels of sub-byte layers: seeded random single layers
(and short chains) over the parameter space of tn_m7_sub / tn_m7_subconv / tn_m7_subfc /
tn_m7_subfc16 and the depthwise kernels, each checked value for value against the simulator
(``codegen.reference_output``) on the host (the kernels' C twins) AND under QEMU (the assembly
paths, which the host build does not compile).

Why: the hand-written kernel tests pick their shapes by hand, and a shape nobody picked can run a
form that is wrong without an error (tn_m7_subfc16 on signed 2 / 4-bit inputs whose last word
held at most half a word of codes: no test had that shape). A random draw over the dimensions
the kernels branch on finds such holes without anyone having to think of them first: layer
kinds, input / weight / output widths and signedness, zero points, PL / PC weights, FB / ICN,
roundings (a dense layer naming its own too), fused max pools, and K (input channels x window)
over every residue of K XB modulo 32 / 64 / 256 (the tail of the last word, the number of words
mod 4 and 8 that the unrolled loops split on), tiny K, output channels not a multiple of 4 / 8 /
16, odd pixel counts.

Two streams of cases, each from seeds of its own (a stream added later leaves the earlier one's
cases as they were):

- the first (``draw``, ``TINYOPT_SWEEP_CASES``, default 300): dense, pointwise, conv2d,
  depthwise and first layers, short chains, fused max pools; soft float (mcu.MCU_CFLAGS).
- the second (``draw_more``, ``TINYOPT_SWEEP_MORE``, default 20), what the first never drew:
  residual ADDs after a pointwise / 3x3 conv2d / 3x3 depthwise layer of sub-byte weights or
  inputs, the other addend the graph input or an earlier layer's output (fused: tn_m7_sub and
  tn_m7_subconv MODE 2, tn_m7_gemm MODE 2, the dw kernels' fused ADD; 10 % the layer's output
  added to itself, which stays a stand-alone 2-input ADD step), roomy or lean; tn_m7_sub_sl
  (``slide``: an 8-bit layer, then a 4-bit-weight layer of 8-bit codes and more output channels
  whose output slides over its input, kernels_m7.sub.sub_slide_lanes; pointwise or 3x3, K, CO
  and pixel counts drawn); tn_m7_sub's pixel pairs with lanes in the output's tail or the dead
  input's head (``lanes``: TLO / HP, tn_m7_sub_epi); and first-stream cases (seeds from
  FPU_SEEDS on) built hard float. Each case's ``abis``: the Cortex-M7 builds it runs in (the
  new kinds soft or hard, drawn; ``fpu-*`` hard).

Hard float: ``-mfloat-abi=hard -mfpu=fpv5-d16`` (what mcu.build_mcu(float_abi="hard") builds,
most Cortex-M7 firmware; QEMU's mps2-an500 Cortex-M7 has the FPU, startup.c enables it), and
each hard program's ELF is checked to carry the VFP ABI. The kernels' FPU-only forms (every
``__ARM_FP`` in c/; the rest of the difference is GCC's register allocation and scheduling,
which the whole hard draw exercises):

- c/tn_m7_subconv.h: TN_SC_C4_ONE defaults to 1 with __ARM_FP, so TN_SC_C4_BLOCKS is
  TN_SC_C4_ONE_BLOCKS (one asm statement per block; soft: TN_SC_C4_PARTS): tn_sc_block's
  4-bit-weight RAW 2 sums, in tn_m7_subconv, tn_m7_subconv_epi and tn_m7_sub's pixel pairs
  (TLO / HP, tn_m7_sub_epi, tn_m7_sub_sl).
- c/tn_m7_subfc.h: ``__ARM_FP || TN_S16_END_MEM``: tn_m7_subfc16's blocks of 1, 2, 3, 5 and 6
  rows (2 / 4-bit inputs) read their loop's end from memory (TN_S16_END_OP "m").
- c/mcu/startup.c: the reset handler enables the FPU (CPACR) only with __ARM_FP.

The coverage counts the hard builds' steps of each (FPU_FORMS).

Not part of ``make test`` / ``make test-fast``: marked ``sweep``, deselected unless
``TINYOPT_SWEEP=1`` (``make test-sweep``). ``TINYOPT_SWEEP_SEED`` (default 0) chooses the draw;
``TINYOPT_SWEEP_BATCH`` graphs share one host program and one Cortex-M7 program per float ABI
(tests/_qemu_many.py: a further graph in a unit costs ~0.2 s of GCC, a lone build ~2 s). A
layer the exporter refuses is counted, not a failure; only wrong outputs fail. Each batch prints
the kernel forms its steps took; the last test prints the coverage of the whole sweep (run with
``-s`` to see it): forms per kernel, the FPU-only forms the hard builds ran, kernels and MODEs
never drawn.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import tinyopt  # noqa: F401  (prepares TensorFlow before tf_keras)
from tinyopt.deploy import codegen, kernels_m7, mcu
from tinyopt.icn import IntegerLayer
from tinyopt.integer import steps as steps_mod
from tinyopt.integer.arith import tflite_quantize_multiplier

from tests._qemu_many import run_on_host, run_under_qemu
from tests.test_dw_sub import _dwr
from tests.test_kernels_m7 import _conv, chain, weighted_layer
from tests.test_kernels_m7_sub import _dense

pytestmark = [pytest.mark.sweep,
              pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")]

SEED = int(os.environ.get("TINYOPT_SWEEP_SEED", "0"))
CASES = int(os.environ.get("TINYOPT_SWEEP_CASES", "300"))
MORE = int(os.environ.get("TINYOPT_SWEEP_MORE", "20"))  # the second stream's cases
FPU_SEEDS = 1_000_000  # the first stream's seeds that the second stream builds hard float
# The Cortex-M7 flags of a hard-float build (mcu.build_mcu(float_abi="hard")): the FPU's forms
HARD_CFLAGS = tuple("-mfloat-abi=hard" if f == "-mfloat-abi=soft" else f
                    for f in mcu.MCU_CFLAGS) + (mcu.FPU_FLAG,)
BATCH = int(os.environ.get("TINYOPT_SWEEP_BATCH", "50"))
HOST_IMAGES, MCU_IMAGES = 4, 2  # image 1 (on both): every code at its lowest or highest

# The kernels' compile-time form switches (their parameters' names) that tell the forms apart,
# per kernel; the coverage report counts the distinct tuples each kernel ran.
FORM_KEYS = {
    "tn_m7_sub": ("XB", "XS", "WB", "MODE", "DIRECT", "FC", "RAW", "KC", "OCT", "TLO", "HP"),
    "tn_m7_subconv": ("XB", "XS", "WB", "MODE", "RAW", "GX", "INSIDE", "PADZERO"),
    "tn_m7_subfc": ("XB", "XS", "WB", "RAW", "KC", "OCT", "FOLD", "LEAN"),
    "tn_m7_subfc16": ("XB", "XS", "RB", "DBL", "PCS"),
    "tn_m7_dw3": ("XB", "XS", "B", "WIDE", "DWQ"),
    "tn_m7_depthwise": ("XB", "XS", "B"),
    "tn_m7_dw_scalar": ("XB", "XS", "WB"),
    "tn_m7_gemm": ("XB", "XS", "WB", "MODE"),
    "tn_m7_conv": ("XS", "QUAD", "TAB", "SGW"),
    "tn_m7_fc": ("XS", "ACC32", "SGW"),
    "tn_m7_fc16": ("XS", "DBL"),
}
FORM_KEYS["tn_m7_sub_epi"] = FORM_KEYS["tn_m7_sub_sl"] = FORM_KEYS["tn_m7_sub"]
FORM_KEYS["tn_m7_subconv_epi"] = FORM_KEYS["tn_m7_subconv"]

# Cases that gave wrong outputs (or faulted, or did not build), shrunk, a batch of their own run
# first: (name, case as draw() returns it). subfc16_s4_k3: tn_m7_subfc16 over signed 4-bit inputs
# whose last word holds at most half a word (K XB = 12: HALF's v | v << 8 ORed the flipped zeros
# of the high half over the high lane), 8 of 16 values wrong on the host, the same under QEMU
# (seed 0 found 7 such layers, signed 2 / 4-bit inputs, K XB % 32 in 10..16; K XB <= 8 exact).
# subfc16_ldm_unaligned (session 22, second stream seed 0 case m163, shrunk): a pointwise layer
# of 36 4-bit codes (18 bytes) puts its output, a dense layer's input, at arena offset 18; the
# dense layer (36 -> 2, 2-bit weights) takes tn_m7_subfc16's R = 2 rows, whose four words a
# pass are one LDM of the input (c/tn_m7_subfc.h TN_S16_X4PASS, "ldm %[x]!"): LDM of an address
# not a multiple of 4 is a UsageFault on a Cortex-M7, so the program stops on a hard fault (soft
# and hard float; the host twin is exact). K = 12 (one word: no LDM pass) runs. Fixed in
# session 22: the export's XA (the input's offset a multiple of 4) gates the LDM.
# fc16_hard_impossible (session 22, second stream seed 1 case m52, less its first layer): a 3x3 / 2
# w4a8 conv2d (10 x 10 x 10 -> 5 x 5 x 28, tn_m7_sub's FC form), then a dense layer 700 -> 2 of
# 2-bit weights over its 8-bit codes (tn_m7_subfc16 -> tn_m7_fc16, R = 2 on a word-aligned input:
# TN_F16_RUN_XSX(2), c/tn_m7_gemm.h:1002 -> TN_F16_ASMX, line 823): model.c does not compile hard
# float at -O2 ("'asm' operand has impossible constraints"); soft float builds and is exact, and
# the dense layer alone (the same constants) or after a stride-1 conv2d compiles hard. Fixed in
# session 22: with an FPU those rows take TN_F16_RUN_XS (tests/test_build_hard_float.py).
# subconv_add_hard_impossible (session 22, second stream seed 2 case m289 less its tail): a 3x3
# depthwise layer (8-bit weights, 2-bit signed codes to 8-bit ones), a 3x3 conv2d of 4-bit
# weights over them (47 -> 47 channels, 2 x 4 pixels, 2-bit signed outputs) fused with the ADD of
# the graph input (roomy: tn_m7_subconv MODE 2, RAW 1): model.c did not compile hard float at
# -O2, -O3, -Os (tn_m7_subconv.h TN_SC_BLOCKS(TN_SC_G4R1) -> TN_RUN4, tn_m7_core.h: impossible
# constraints); soft float built and was exact. Fixed in session 23: with an FPU RAW 1 takes
# TN_SC_LEAN_BLOCKS (TN_SC_LEAN13), thirteen registers in one statement per block
# (tests/test_build_hard_float.py).
KNOWN: list = [
    ("subfc16_s4_k3", dict(args=dict(seed=5, layers=[_dense(1, 3, 4, 8)], in_shape=(3,),
                                     in_bits=4, signed=True, zin=0, rounding="floor"),
                           plan=dict(roomy=False, no_subfc16=False))),
    ("subfc16_ldm_unaligned", dict(
        args=dict(seed=7, layers=[_conv((3, 1, 12), (12, 1, 1, 12), 2, 4, out_signed=True),
                                  dict(kind="flatten"), _dense(2, 36, 2, 8)],
                  in_shape=(3, 1, 12), in_bits=4, signed=True, zin=0, rounding="floor"),
        plan=dict(roomy=False, no_subfc16=False), abis=("soft", "hard"))),
    ("fc16_hard_impossible", dict(
        args=dict(seed=7, layers=[
            _conv((5, 5, 28), (28, 3, 3, 10), 4, 8, stride=(2, 2), padding=(0, 1, 0, 1),
                  per_channel=True), dict(kind="flatten"), _dense(2, 700, 2, 8, icn=True)],
            in_shape=(10, 10, 10), in_bits=8, signed=False, zin=0, rounding="floor"),
        plan=dict(roomy=False, no_subfc16=False), abis=("hard",))),
    ("subconv_add_hard_impossible", dict(
        build="residual",
        args=dict(seed=50289, layers=[
            _dwr(47, 2, 4, 8, 8, pad_mode="zero", per_channel=True),
            _conv((2, 4, 47), (47, 3, 3, 47), 4, 2, padding=(1, 1, 1, 1), out_signed=True,
                  out_zero_point=-2)],
            add=dict(other=-1, slot=1, same=False, left_shift=6, out_bits=2, out_signed=False,
                     out_zero_point=0, rounding="tflite_double",
                     reals=[0.33491335503790537, 0.1300154171515968, 0.05011329976275543]),
            tail=[], in_shape=(2, 4, 47), in_bits=2, signed=True, zin=-2, rounding="floor"),
        plan=dict(roomy=True, no_subfc16=False), abis=("hard",))),
]

# Known cases whose kernel is not fixed yet, each a strict xfail (test_open_case): `make
# test-sweep` passes while they fail as described, and fails once one passes (move it to KNOWN).
OPEN: list = []
OPEN_WHY: dict = {}

_STATS = {"cases": 0, "refused": Counter(), "host": 0, "qemu": Counter(), "forms": Counter(),
          "kinds": Counter(), "tails": Counter(), "mismatch": [], "constant": 0,
          "abi_forms": {"soft": Counter(), "hard": Counter()}}


# ------------------------------------------------------------------------------ the draw
def _k_codes(rng, xb: int, max_words: int = 17) -> int:
    """A number of codes of ``xb`` bits: whole words (0..max_words: every count mod 4 and mod 8,
    tiny counts) plus a tail drawn half the time at the kernels' boundaries (none, one code, at
    most half a word, exactly half, one past half, a word less one)."""
    per = 32 // xb
    words = int(rng.choice([0, 1, 2, 3]) if rng.random() < 0.35 else rng.integers(0, max_words + 1))
    if rng.random() < 0.5:
        tail = int(rng.choice(sorted({0, 1, max(per // 2 - 1, 0), per // 2, per // 2 + 1,
                                      per - 1})))
    else:
        tail = int(rng.integers(0, per))
    return max(words * per + tail, 1)


def _channels(rng) -> int:
    """Output channels: mostly not a multiple of 4 / 8 / 16 (the blocks' leftovers)."""
    if rng.random() < 0.25:
        return int(rng.choice([4, 8, 16, 24, 32]))
    return int(rng.choice([1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 15, 17, 19, 21, 23, 25, 31, 33]))


def _out(rng, last: bool, dense: bool) -> dict:
    """Output width, signedness and zero point (int32 logits now and then for a last dense)."""
    if last and dense and rng.random() < 0.12:
        return dict(out_bits=32, out_signed=True, requantize=False)
    ob = int(rng.choice([2, 4, 8]))
    signed = bool(rng.random() < 0.4)
    half = 1 << (ob - 1)
    zp = int(rng.integers(-half, half) if signed else rng.integers(0, 2 * half)) \
        if rng.random() < 0.4 else 0
    return dict(out_bits=ob, out_signed=signed, out_zero_point=zp)


def _weights(rng, wb=None) -> dict:
    return dict(wbits=int(wb or rng.choice([2, 4, 8])), per_channel=bool(rng.random() < 0.5),
                icn=bool(rng.random() < 0.5))


def _sub_byte(xb: int, spec: dict) -> bool:
    return xb < 8 or spec["wbits"] < 8


def _same(h: int, k: int, s: int) -> tuple[int, int, int]:
    """SAME padding (the lower / right side the larger): (out, before, after)."""
    o = -(-h // s)
    t = max((o - 1) * s + k - h, 0)
    return o, t // 2, t - t // 2


def _conv_spec(rng, h, w, c, xb, last, stride=None, first=False) -> tuple[dict, tuple]:
    stride = stride or int(rng.choice([1, 2]))
    spec = _weights(rng, None if not first else rng.choice([2, 4, 8]))
    if not first:
        while not _sub_byte(xb, spec):
            spec = _weights(rng)
    pad = rng.choice(["same", "valid", "full"]) if stride == 1 else rng.choice(["same", "full"])
    if pad == "valid" and min(h, w) < 3:
        pad = "same"
    if pad == "same":
        oh, pt, pb = _same(h, 3, stride)
        ow, pl, pr = _same(w, 3, stride)
    elif pad == "full":
        pt = pb = pl = pr = 1
        oh, ow = (h - 1) // stride + 1, (w - 1) // stride + 1
    else:
        pt = pb = pl = pr = 0
        oh, ow = (h - 3) // stride + 1, (w - 3) // stride + 1
    co = _channels(rng)
    o = _out(rng, last, False)
    layer = _conv((oh, ow, co), (co, 3, 3, c), spec.pop("wbits"), o.pop("out_bits"),
                  stride=(stride, stride), padding=(pt, pb, pl, pr), **spec, **o)
    if rng.random() < 0.4:
        layer["pad_mode"] = "zero"
    return layer, (oh, ow, co)


def _pw_spec(rng, h, w, c, xb, last) -> tuple[dict, tuple]:
    spec = _weights(rng)
    while not _sub_byte(xb, spec):
        spec = _weights(rng)
    co = _channels(rng)
    o = _out(rng, last, False)
    return _conv((h, w, co), (co, 1, 1, c), spec.pop("wbits"), o.pop("out_bits"), **spec,
                 **o), (h, w, co)


def _dw_spec(rng, h, w, c, xb, last) -> tuple[dict, tuple]:
    spec = _weights(rng)
    stride = int(rng.choice([1, 2]))
    o = _out(rng, last, False)
    layer = _dwr(c, h, w, spec.pop("wbits"), o.pop("out_bits"), stride=stride,
                 pad_mode=str(rng.choice(["zero", "zero_point"])), **spec, **o)
    return layer, tuple(layer["out_shape"])


def _dense_spec(rng, k, xb, last) -> tuple[dict, tuple]:
    spec = _weights(rng)
    while not _sub_byte(xb, spec):
        spec = _weights(rng)
    n = _channels(rng) if rng.random() < 0.7 else int(rng.integers(34, 70))
    o = _out(rng, last, True)
    return _dense(n, k, spec.pop("wbits"), o.pop("out_bits"), **spec, **o), (n,)


def _input(rng, xb: int) -> tuple[bool, int]:
    signed = bool(rng.random() < 0.5)
    half = 1 << (xb - 1)
    if rng.random() < 0.5:
        return signed, 0
    return signed, int(rng.integers(-half, half) if signed else rng.integers(0, 2 * half))


def draw(seed: int) -> tuple[str, dict]:
    """Case ``seed``: (its kind, the arguments of :func:`tests.test_kernels_m7.chain`)."""
    rng = np.random.default_rng([SEED, seed])
    kind = str(rng.choice(["dense", "pointwise", "conv", "depthwise", "first", "chain"],
                          p=[0.3, 0.17, 0.17, 0.13, 0.08, 0.15]))
    rounding = "floor" if rng.random() < 0.55 else "tflite_double"
    xb = 8 if kind == "first" else int(rng.choice([2, 4, 8], p=[0.4, 0.4, 0.2]))
    signed, zin = _input(rng, xb)
    if kind == "dense":
        k = _k_codes(rng, xb)
        layers = [_dense_spec(rng, k, xb, True)[0]]
        shape = (k,)
    elif kind == "pointwise":
        h, w = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        c = _k_codes(rng, xb, max_words=6)
        layers, shape = [_pw_spec(rng, h, w, c, xb, True)[0]], (h, w, c)
    elif kind == "conv":
        h, w = int(rng.integers(2, 9)), int(rng.integers(2, 9))
        c = int(rng.integers(1, 13)) if rng.random() < 0.7 else _k_codes(rng, xb, max_words=2)
        layers, shape = [_conv_spec(rng, h, w, c, xb, True)[0]], (h, w, c)
    elif kind == "depthwise":
        h, w = int(rng.integers(2, 9)), int(rng.integers(2, 9))
        c = int(rng.choice([16, 32, 48, 64])) if rng.random() < 0.6 else int(rng.integers(1, 40))
        layers, shape = [_dw_spec(rng, h, w, c, xb, True)[0]], (h, w, c)
    elif kind == "first":
        h, w, c = int(rng.integers(3, 12)), int(rng.integers(3, 12)), int(rng.integers(1, 4))
        layers, shape = [_conv_spec(rng, h, w, c, 8, True, first=True)[0]], (h, w, c)
    else:  # a short chain: conv or dw, then pw, then flatten + dense (each on the last's output)
        h, w = int(rng.integers(3, 8)), int(rng.integers(3, 8))
        c = int(rng.integers(1, 10))
        shape, layers, cur, bits = (h, w, c), [], (h, w, c), xb
        first, cur = (_conv_spec(rng, *cur, bits, False) if rng.random() < 0.6
                      else _dw_spec(rng, *cur, bits, False))
        layers.append(first)
        bits = first["out_bits"]
        if rng.random() < 0.7:
            pw, cur = _pw_spec(rng, *cur, bits, False)
            layers.append(pw)
            bits = pw["out_bits"]
        layers.append(dict(kind="flatten"))
        layers.append(_dense_spec(rng, int(np.prod(cur)), bits, True)[0])
    # Later dimensions from a stream of their own, so that adding one keeps the earlier draws:
    # a fused max pool after a lone conv (tn_m7_sub / tn_m7_subconv's MODE 1), a dense layer
    # naming its own rounding (tn_m7_subfc16 / tn_m7_fc16's doubled lanes, DBL)
    more = np.random.default_rng([SEED, seed, 11])
    if kind in ("conv", "first") and more.random() < 0.3 and min(layers[0]["out_shape"][:2]) >= 2:
        oh, ow, co = layers[0]["out_shape"]
        if more.random() < 0.5:
            layers.append(dict(kind="maxpool", out_shape=(oh // 2, ow // 2, co), pool_size=(2, 2),
                               stride=(2, 2), padding=(0, 0, 0, 0)))
        else:  # overlapping 3x3 / 2, padded
            layers.append(dict(kind="maxpool", out_shape=((oh - 1) // 2 + 1, (ow - 1) // 2 + 1, co),
                               pool_size=(3, 3), stride=(2, 2), padding=(1, 1, 1, 1)))
    if layers[-1]["kind"] == "dense" and rounding != "floor" and more.random() < 0.5:
        # (a floor graph's calibration makes some multipliers negative, which TFLite refuses)
        layers[-1]["rounding"] = str(more.choice(["tflite_single", "tflite_double"]))
    args = dict(seed=1000 + seed, layers=layers, in_shape=shape, in_bits=xb, signed=signed,
                zin=zin, rounding=rounding)
    plan = dict(roomy=bool(rng.random() < 0.5), no_subfc16=bool(rng.random() < 0.2))
    return kind, dict(args=args, plan=plan)


# ------------------------------------------------------------------------------ the second stream
def _add_spec(rng, other: int, xb: int) -> dict:
    """A residual ADD of ``other`` (-1: the graph input, else layer ``other``'s output) and the
    last layer's output (``slot``: the last layer's place among the ADD's inputs); ``same``
    (now and then): the last layer's output twice, which the exporter cannot fuse (a 2-input
    step reading one tensor twice). Multipliers as TFLite's ADD makes them (s_i / 2 max s, each
    at most 1/2), the sum's rescaled so that the output spans its codes."""
    ob = xb if rng.random() < 0.6 else int(rng.choice([2, 4, 8]))
    signed = bool(rng.random() < 0.4)
    half = 1 << (ob - 1)
    zp = int(rng.integers(-half, half) if signed else rng.integers(0, 2 * half)) \
        if rng.random() < 0.5 else 0
    shift = 20 if rng.random() < 0.7 else int(rng.integers(0, 25))
    # (x - z_x) << shift within int32 (the simulator refuses the ADD otherwise): clamped, not
    # redrawn, so that the other draws stay as they were
    shift = min(shift, 30 - xb)
    ra, rb = rng.uniform(0.1, 0.5, 2)
    rc = 2.0 ** (ob - xb) / (ra + rb) * rng.uniform(0.4, 1.5) / (1 << shift)
    return dict(other=other, slot=int(rng.integers(0, 2)), same=bool(rng.random() < 0.1),
                reals=[float(ra), float(rb), float(rc)], left_shift=shift, out_bits=ob,
                out_signed=signed, out_zero_point=zp,
                rounding=str(rng.choice(["floor", "tflite_double", "tflite_single"])))


def residual(seed, layers, add, tail, in_shape, in_bits, signed, zin, rounding):
    """:func:`tests.test_kernels_m7.chain` of ``layers``, then the ADD of :func:`_add_spec`
    (``add``), then ``tail`` (flatten and a dense layer, or nothing: the ADD's sum is the
    graph's output), each calibrated as ``chain`` does.

    Arguments:
        seed: the weights' and calibration's seed; layers: ``chain``'s layer dicts (the last one
            is the ADD's addend); add: :func:`_add_spec`'s dict; tail: layer dicts after the ADD;
        in_shape, in_bits, signed, zin, rounding: the graph input and rounding, as ``chain``.

    Returns:
        The validated IntegerGraph.

    Raises:
        ValueError: the graph does not validate (a draw that breaks the ADD's rules).
    """
    g = chain(seed, layers, in_shape, in_bits, signed, zin, rounding)
    rng = np.random.default_rng([seed, 3])
    last = g.layers[-1].name
    other = g.input_name if add["other"] < 0 else g.layers[add["other"]].name
    ins = (last, last) if add["same"] else (other, last) if add["slot"] else (last, other)
    t0 = g.tensor(ins[0])
    m0, n0 = tflite_quantize_multiplier(np.array(add["reals"]))
    name = f"l{len(g.layers)}"
    g.layers.append(IntegerLayer(
        kind="add", name=name, in_shape=t0.shape, in_bits=t0.bits, in_signed=t0.signed,
        in_zero_point=t0.zero_point, out_shape=t0.shape, out_bits=add["out_bits"],
        out_signed=add["out_signed"], out_zero_point=add["out_zero_point"], inputs=ins,
        outputs=(name,), left_shift=add["left_shift"], m0=m0, n0=n0, rounding=add["rounding"]))
    lo = -(1 << (in_bits - 1)) if signed else 0
    x = rng.integers(lo, lo + (1 << in_bits), (48, *in_shape))
    for spec in tail:
        spec = dict(spec)
        kind = spec.pop("kind")
        t = g.tensor(g.layers[-1].name)
        common = dict(in_shape=t.shape, in_bits=t.bits, in_signed=t.signed,
                      in_zero_point=t.zero_point)
        if kind == "flatten":
            g.layers.append(IntegerLayer(kind=kind, name=f"l{len(g.layers)}",
                                         out_shape=(int(np.prod(t.shape)),), out_bits=t.bits,
                                         out_signed=t.signed, out_zero_point=t.zero_point,
                                         **common))
            continue
        weighted_layer(g, kind, spec, common, x, rng, rounding != "floor")
    g.validate()
    return g


def _same_conv(rng, h, w, c, xb, ob, signed, zp, kind) -> dict:
    """A layer of ``kind`` (pointwise, 3x3 stride-1 SAME conv2d, 3x3 depthwise) from h x w x c
    codes of ``xb`` bits to h x w x c of ``ob`` bits of the given signedness and zero point
    (what a residual ADD adds to its other addend), sub-byte weights or inputs."""
    spec = _weights(rng)
    while kind != "depthwise" and not _sub_byte(xb, spec):
        spec = _weights(rng)
    o = dict(out_signed=signed, out_zero_point=zp)
    if kind == "depthwise":
        return _dwr(c, h, w, spec.pop("wbits"), ob, stride=1,
                    pad_mode=str(rng.choice(["zero", "zero_point"])), **spec, **o)
    if kind == "pointwise":
        return _conv((h, w, c), (c, 1, 1, c), spec.pop("wbits"), ob, **spec, **o)
    layer = _conv((h, w, c), (c, 3, 3, c), spec.pop("wbits"), ob, padding=(1, 1, 1, 1),
                  **spec, **o)
    if rng.random() < 0.4:
        layer["pad_mode"] = "zero"
    return layer


def _head_layers(rng, n: int, bits: int) -> list[dict]:
    """Flatten and a small dense layer over ``n`` codes of ``bits`` bits (the step before it no
    longer writes the graph's output: the planner may place it over its input)."""
    spec = _weights(rng)
    while not _sub_byte(bits, spec):
        spec = _weights(rng)
    o = _out(rng, True, True)
    return [dict(kind="flatten"),
            _dense(int(rng.integers(1, 12)), n, spec.pop("wbits"), o.pop("out_bits"), **spec,
                   **o)]


def _draw_residual(rng, rounding) -> tuple[str, dict]:
    """x -> [a ->] p -> ADD(p, a or x) [-> flatten -> dense] (the other addend p's own input, or
    x past a: another tensor than the step's input): the ADD fused into p's step
    (tn_m7_sub / tn_m7_subconv MODE 2, the dw kernels' fused ADD, or the portable arithmetic),
    or, for ``same``, a stand-alone ADD step."""
    xb = int(rng.choice([2, 4, 8], p=[0.4, 0.4, 0.2]))
    signed, zin = _input(rng, xb)
    h, w = int(rng.integers(1, 8)), int(rng.integers(1, 8))
    c = int(rng.integers(1, 13)) if rng.random() < 0.6 else _k_codes(rng, xb, max_words=4)
    layers, other = [], -1
    bits, sg, zp = xb, signed, zin  # the input of the layer the ADD follows
    obits, osg, ozp = xb, signed, zin  # its output: the other addend's bits, sign, zero point
    if rng.random() < 0.6:  # a layer first: the ADD's other addend is its input or its output
        bits = int(rng.choice([2, 4, 8]))
        sg, zp = _input(rng, bits)
        kind = str(rng.choice(["pointwise", "conv2d", "depthwise"]))
        layers.append(_same_conv(rng, h, w, c, xb, bits, sg, zp, kind))
        if rng.random() < 0.5:  # the step's own input (in[0] == other) or another tensor
            other, obits, osg, ozp = 0, bits, sg, zp
    kind = str(rng.choice(["pointwise", "conv2d", "depthwise"], p=[0.45, 0.35, 0.2]))
    layers.append(_same_conv(rng, h, w, c, bits, obits, osg, ozp, kind))
    add = _add_spec(rng, other, obits)
    tail = _head_layers(rng, h * w * c, add["out_bits"]) if rng.random() < 0.4 else []
    args = dict(layers=layers, add=add, tail=tail, in_shape=(h, w, c), in_bits=xb,
                signed=signed, zin=zin, rounding=rounding)
    return "residual", dict(build="residual", args=args)


def _draw_pairs(rng, rounding, slide: bool) -> tuple[str, dict]:
    """A layer, then a conv2d / pointwise layer of 2 / 4-bit weights and 4 | CO that tn_m7_sub's
    FC form takes in the lean plan (no scratch is free), then a small dense layer: where the
    layer's output slides over its 8-bit input (``slide``: 4-bit weights, 8-bit outputs, more
    output channels than input ones) tn_m7_sub_sl's pairs (kernels_m7.sub.sub_slide_lanes),
    else the pairs with lanes in the output's tail or the dead input's head (TLO / HP,
    tn_m7_sub_epi)."""
    xb = 8 if slide else int(rng.choice([2, 4, 8]))
    h, w = int(rng.integers(2, 11)), int(rng.integers(2, 11))
    signed, zin = _input(rng, 8)
    # C a multiple of the lane group (4 for 8-bit codes, a word of sub-byte ones) mostly: one
    # weight array for both forms (kernels_m7.sub.sub_lane_layout), which the pairs ask
    group = 4 if xb == 8 else 32 // xb
    c = (group * int(rng.integers(1, 9 if xb == 8 else 4)) if rng.random() < 0.75
         else int(rng.integers(1, 33)))
    # the pairs' step the arena's peak (its output larger than what came before: nothing is
    # free around it, so the lean plan): a narrow input, more output than input channels
    c0 = int(rng.integers(1, c // 2 + 2))
    co = 4 * max(1, -(-int(c * rng.uniform(1.5, 3.0)) // 4)) if slide else \
        4 * int(rng.integers(1, 13))
    sg, zp = _input(rng, xb)
    spec = _weights(rng, 8 if slide else rng.choice([2, 4, 8]))
    first = _conv((h, w, c), (c, 1, 1, c0), spec.pop("wbits"), xb, out_signed=sg,
                  out_zero_point=zp, **spec)
    spec = _weights(rng, 4 if slide else rng.choice([2, 4]))
    ob = 8 if slide else int(rng.choice([2, 4, 8]))
    o = dict(out_signed=bool(rng.random() < 0.4))
    if rng.random() < 0.3:
        half = 1 << (ob - 1)
        o["out_zero_point"] = int(rng.integers(-half, half) if o["out_signed"]
                                  else rng.integers(0, 2 * half))
    if rng.random() < 0.5:
        second, shape = _conv((h, w, co), (co, 1, 1, c), spec.pop("wbits"), ob, **spec,
                              **o), (h, w, co)
    else:
        stride = int(rng.choice([1, 2]))
        pad = str(rng.choice(["same", "valid"])) if min(h, w) >= 3 else "same"
        if pad == "same":
            oh, pt, pb = _same(h, 3, stride)
            ow, pl, pr = _same(w, 3, stride)
        else:
            pt = pb = pl = pr = 0
            oh, ow = (h - 3) // stride + 1, (w - 3) // stride + 1
        second, shape = _conv((oh, ow, co), (co, 3, 3, c), spec.pop("wbits"), ob,
                              stride=(stride, stride), padding=(pt, pb, pl, pr), **spec,
                              **o), (oh, ow, co)
    layers = [first, second, *_head_layers(rng, int(np.prod(shape)), ob)]
    args = dict(seed=0, layers=layers, in_shape=(h, w, c0), in_bits=8, signed=signed, zin=zin,
                rounding=rounding)
    return ("slide" if slide else "lanes"), dict(args=args)


def draw_more(seed: int) -> tuple[str, dict]:
    """Case ``seed`` of the second stream (its own seeds: the first stream's cases stay as they
    were): residual ADDs, tn_m7_sub's pixel pairs (sliding, tail / head lanes), and first-stream
    cases built with the FPU (hard float).

    Arguments:
        seed: the case's index in the stream (with ``TINYOPT_SWEEP_SEED``).

    Returns:
        (its kind, the case: ``args`` of its builder, ``build`` "residual" for
        :func:`residual` else ``chain``, ``plan`` patches, ``abis``: the Cortex-M7 builds it
        runs in, "soft" and / or "hard").
    """
    rng = np.random.default_rng([SEED, seed, 29])
    kind = str(rng.choice(["residual", "slide", "lanes", "fpu"], p=[0.35, 0.2, 0.15, 0.3]))
    if kind == "fpu":  # a first-stream draw (seeds past any first-stream run's), hard float
        name, case = draw(FPU_SEEDS + seed)
        return f"fpu-{name}", dict(case, abis=("hard",))
    rounding = "floor" if rng.random() < 0.55 else "tflite_double"
    if kind == "residual":
        name, case = _draw_residual(rng, rounding)
    else:
        name, case = _draw_pairs(rng, rounding, kind == "slide")
    case["args"]["seed"] = 50000 + seed
    roomy = kind == "residual" and rng.random() < 0.35  # MODE 2 of tn_m7_subconv too
    case["plan"] = dict(roomy=roomy, no_subfc16=False)
    # one float ABI each (half the Cortex-M7 builds of both): across seeds every form of these
    # kinds runs soft and hard
    case["abis"] = ("hard",) if rng.random() < 0.5 else ("soft",)
    return name, case


def images(g, n: int, seed: int) -> np.ndarray:
    """``n`` input images of ``g``: image 1 every code at its lowest or highest (the
    accumulators' extremes), the others uniform over the codes."""
    rng = np.random.default_rng([SEED, seed, 7])
    lo = -(1 << (g.input_bits - 1)) if g.input_signed else 0
    hi = lo + (1 << g.input_bits) - 1
    x = rng.integers(lo, hi + 1, (n, *g.input_shape))
    if n > 1:
        x[1] = np.where(rng.random(g.input_shape) < 0.5, lo, hi)
    return x


def export(case: dict, out_dir: Path):
    """The graph of ``case`` and its export under the case's plan patches."""
    g = (residual if case.get("build") == "residual" else chain)(**case["args"])
    with pytest.MonkeyPatch.context() as mp:
        if case["plan"]["roomy"]:  # tn_m7_subconv / the dw row kernel wherever they fit
            mp.setattr(steps_mod, "SCRATCH_ONLY_WHERE_FREE", False)
        if case["plan"]["no_subfc16"]:  # small dense layers on tn_m7_subfc, not subfc16
            mp.setattr(kernels_m7.subconv, "subfc16_scale", lambda layer: 0)
        e = codegen.export_c(g, out_dir)
    return g, e


# ------------------------------------------------------------------------------ coverage
def _prototypes(e) -> dict[str, list[str]]:
    """Each tn_m7_* kernel's parameter names, up to its TN_RQ_ARGS / TN_FADD_ARGS macro."""
    headers = "".join(p.read_text() for p in sorted(Path(e.out_dir).glob("*tn_m7*.h")))
    protos = {}
    for m in re.finditer(r"TN_INLINE void (tn_m7_\w+)\((.*?)\)\s*\{", headers, re.S):
        names = []
        for param in m.group(2).split(","):
            if "_ARGS" in param:
                break
            names.append(re.findall(r"\w+", param)[-1])
        protos[m.group(1)] = names
    return protos


def forms(e, protos) -> list[tuple]:
    """(step name, kernel, its form tuple) of every tn_m7_* kernel call of the export's
    model.c (what the C compiler specialised: the form that ran), or the portable function."""
    model = (Path(e.out_dir) / "model.c").read_text()
    out = []
    bodies = {int(re.match(r"(\d+)\(", b).group(1)): b
              for b in re.split(r"\nstatic void model_step", model)[1:]}
    for index, (step, choice) in enumerate(zip(e.steps, e.kernels)):
        body = bodies.get(index, "")
        calls = re.findall(r"\b(tn_m7_\w+)\((.*?)\);", body, re.S)
        if not calls:  # a portable step, or a kernel without a form switch
            out.append((step.name, choice, ()))
        for kernel, argtext in calls:
            if kernel not in FORM_KEYS:
                continue
            args = dict(zip(protos.get(kernel, []), (a.strip() for a in argtext.split(","))))
            out.append((step.name, kernel,
                        tuple(f"{k}={args.get(k, '?').rstrip('u')}" for k in FORM_KEYS[kernel])))
    return out


def _tail(layer) -> str:
    """K XB's tail class and words mod 8 of a dense / conv layer's rows."""
    if layer.kind not in ("dense", "pointwise", "conv2d") or layer.weights is None:
        return ""
    kx = int(np.prod(layer.weights.shape[1:])) * int(layer.in_bits)
    r = kx % 32
    tail = "full" if r == 0 else "half-or-less" if r <= 16 else "over-half"
    return f"{layer.kind} XB={layer.in_bits} tail={tail} words%8={-(-kx // 32) % 8}"


# ------------------------------------------------------------------------------ the runs
def _diff(got, want) -> str:
    bad = got != want
    return (f"{int(bad.sum())} of {bad.size} values differ; first at "
            f"{np.argwhere(bad)[0].tolist()}: got {got[bad][:6].tolist()} want "
            f"{want[bad][:6].tolist()}")


def _hard_float_elf(elf: Path) -> None:
    """Assert that ``elf`` was built for the FPU (hard-float ABI, FPv5 D16): a hard batch that
    silently built soft float would run no FPU form."""
    readelf = shutil.which("arm-none-eabi-readelf")
    if readelf is None:
        return
    attrs = subprocess.run([readelf, "-A", str(elf)], capture_output=True, text=True).stdout
    assert "Tag_ABI_VFP_args: VFP registers" in attrs and "FPv5" in attrs, attrs[-800:]


def run_mcu(built: list, tmp: Path, abi: str) -> list[np.ndarray]:
    """``built``'s exports in one Cortex-M7 program of float ABI ``abi`` (soft: mcu.MCU_CFLAGS;
    hard: :data:`HARD_CFLAGS`, the FPU's forms: c/tn_m7_subconv.h TN_SC_C4_ONE,
    c/tn_m7_subfc.h's end of tn_m7_subfc16's loops in memory), run under QEMU on their first
    :data:`MCU_IMAGES` images.

    Arguments:
        built: run_batch's tuples (name, case, graph, export, images, ...).
        tmp: the batch's folder; abi: "soft" or "hard".

    Returns:
        Each export's outputs.

    Raises:
        RuntimeError: the build (objcache.BuildError) or QEMU (a fault) failed.
        AssertionError: a hard program's ELF does not carry the VFP ABI.
    """
    work = tmp / f"many_{abi}"
    with pytest.MonkeyPatch.context() as mp:
        if abi == "hard":
            mp.setattr(mcu, "MCU_CFLAGS", HARD_CFLAGS)
        outs = run_under_qemu([b[3] for b in built], [b[4][:MCU_IMAGES] for b in built], work)
    if abi == "hard":
        _hard_float_elf(work / "many.elf")
    return outs


def run_batch(cases: list[tuple[str, dict]], tmp: Path, qemu_ok: bool) -> list[str]:
    """Export every case (refusals counted), run them all in one host program and one
    Cortex-M7 program per float ABI of the cases (``abis``, default soft), compare each with the
    simulator; returns the mismatches."""
    built, bad = [], []
    protos = None
    for name, case in cases:
        _STATS["cases"] += 1
        try:
            g, e = export(case, tmp / name / "src")
        except Exception as exc:  # noqa: BLE001 (a refusal is counted, never a finding)
            _STATS["refused"][f"{type(exc).__name__}: {str(exc)[:70]}"] += 1
            continue
        protos = protos or _prototypes(e)
        x = images(g, HOST_IMAGES, int(case["args"]["seed"]))
        try:
            want = codegen.reference_output(g, x)
        except OverflowError as exc:  # a draw the simulator refuses (int32): not a finding
            _STATS["refused"][f"reference {type(exc).__name__}: {str(exc)[:60]}"] += 1
            continue
        if len({r.tobytes() for r in want}) == 1:
            _STATS["constant"] += 1
        fs = forms(e, protos)
        for f in fs:
            _STATS["forms"][f[1:]] += 1
            for abi in case.get("abis", ("soft",)):
                _STATS["abi_forms"][abi][f[1:]] += 1
        for layer in g.layers:
            if _tail(layer):
                _STATS["tails"][_tail(layer)] += 1
        _STATS["kinds"][name.split("_")[0]] += 1
        built.append((name, case, g, e, x, want, fs))
    if not built:
        return bad
    exports, xs = [b[3] for b in built], [b[4] for b in built]
    for (name, case, g, e, x, want, fs), got in zip(built, run_on_host(exports, xs,
                                                                       tmp / "many_host")):
        _STATS["host"] += 1
        if not np.array_equal(got, want):
            bad.append(f"HOST {name} {case} forms {fs}: {_diff(got, want)}")
    for abi in ("soft", "hard") if qemu_ok else ():
        part = [b for b in built if abi in b[1].get("abis", ("soft",))]
        if not part:
            continue
        try:
            outs = run_mcu(part, tmp, abi)
        except RuntimeError as exc:  # a fault: each case alone, to name it and check the rest
            outs = []
            for k, b in enumerate(part):
                try:
                    outs.append(run_mcu([b], tmp / f"alone{k}", abi)[0])
                except RuntimeError as alone:
                    outs.append(None)
                    bad.append(f"QEMU {abi} float {b[0]} {b[1]} forms {b[6]}: {alone}")
            assert any(o is None for o in outs), f"the batch faulted, no case alone does: {exc}"
        for (name, case, g, e, x, want, fs), got in zip(part, outs):
            if got is None:
                continue
            _STATS["qemu"][abi] += 1
            if not np.array_equal(got, want[:MCU_IMAGES]):
                bad.append(f"QEMU {abi} float {name} {case} forms {fs}: "
                           f"{_diff(got, want[:MCU_IMAGES])}")
    _STATS["mismatch"].extend(bad)
    return bad


def _batches() -> list[list[tuple[str, dict]]]:
    """The known cases' batch (apart: one that faults QEMU or fails to build makes its batch's
    cases run alone, see run_batch), then the first stream's batches, the second stream's."""
    known = [(f"known_{n}", case) for n, case in KNOWN]
    cases = [(f"{kind}_{k}", case) for k in range(CASES) for kind, case in [draw(k)]]
    more = [(f"{kind}_m{k}", case) for k in range(MORE) for kind, case in [draw_more(k)]]
    return [known] + [part[i:i + BATCH] for part in (cases, more)
                      for i in range(0, len(part), BATCH)]


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.xfail(
    strict=True, reason=OPEN_WHY[n])) for n, _ in OPEN])
def test_open_case(tmp_path, name):
    """An OPEN case alone (its own build): fails as its kernel's open bug says."""
    from tinyopt.deploy import mcu
    ok, _ = mcu.toolchain()
    bad = run_batch([(f"open_{name}", dict(OPEN)[name])], tmp_path, ok)
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("batch", range(len(_batches())))
def test_sweep_batch(tmp_path, batch):
    """Batch ``batch`` of the draw: every case equals the simulator on the host and under QEMU
    (QEMU skipped, with the toolchain's reason printed, when it is not installed)."""
    from tinyopt.deploy import mcu
    ok, why = mcu.toolchain()
    if not ok:
        print(f"QEMU not run: {why}")
    bad = run_batch(_batches()[batch], tmp_path, ok)
    assert not bad, "\n".join(bad)


# Forms that only an FPU build compiles (every __ARM_FP in c/, see the module's docstring):
# what reaches each, as alternatives of (kernel, its form keys' values), counted among the
# hard-float builds' steps
FPU_FORMS = {
    "TN_SC_C4_ONE_BLOCKS in tn_m7_subconv (4-bit weights, RAW 2)": [
        ("tn_m7_subconv", "WB=4", "RAW=2")],
    "TN_SC_C4_ONE_BLOCKS in tn_m7_subconv_epi": [("tn_m7_subconv_epi", "WB=4", "RAW=2")],
    "TN_SC_C4_ONE_BLOCKS in tn_m7_sub's pixel pairs (TLO / HP, tn_m7_sub_epi)": [
        (k, "WB=4", lanes) for k in ("tn_m7_sub", "tn_m7_sub_epi")
        for lanes in ("TLO!=0", "HP!=0")],
    "TN_SC_C4_ONE_BLOCKS in tn_m7_sub_sl's pixel pairs": [("tn_m7_sub_sl", "WB=4")],
    "TN_S16_END_OP in memory (tn_m7_subfc16, 2 / 4-bit inputs)": [("tn_m7_subfc16", "XB!=8")],
    "TN_SC_LEAN13 blocks in tn_m7_subconv (4-bit weights, RAW 1 / 0)": [
        (k, "WB=4", raw) for k in ("tn_m7_subconv", "tn_m7_subconv_epi")
        for raw in ("RAW=1", "RAW=0")],
}


def _matches(form: tuple, alternatives: list) -> bool:
    """Does ``form`` (kernel, its key=value strings) match one of ``alternatives`` (kernel and
    key=value / key!=value conditions)?"""
    kernel, values = form
    got = dict(v.split("=", 1) for v in values)
    for want in alternatives:
        if want[0] == kernel and all(
                (got.get(c.split("!=")[0]) != c.split("!=")[1]) if "!=" in c
                else got.get(c.split("=")[0]) == c.split("=")[1] for c in want[1:]):
            return True
    return False


def test_sweep_coverage():
    """Print what the sweep covered (runs last: the batches fill the counts)."""
    s = _STATS
    print(f"\nsweep seed {SEED}: {s['cases']} cases, {sum(s['refused'].values())} refused, "
          f"{s['host']} checked on the host, {s['qemu']['soft']} under QEMU soft float and "
          f"{s['qemu']['hard']} hard float, {s['constant']} with a constant output, "
          f"{len(s['mismatch'])} mismatches")
    print("kinds:", dict(s["kinds"]))
    for why, n in s["refused"].most_common():
        print(f"  refused {n}x: {why}")
    by_kernel = Counter()
    for f, n in s["forms"].items():
        by_kernel[f[0]] += n
    for kernel, n in sorted(by_kernel.items()):
        distinct = [f for f in s["forms"] if f[0] == kernel]
        print(f"{kernel}: {n} steps, {len(distinct)} distinct forms")
        for f in sorted(distinct, key=str):
            print(f"    {s['forms'][f]:4d}  {' '.join(f[1])}")
    for t, n in sorted(s["tails"].items()):
        print(f"  {n:4d}  {t}")
    hard = s["abi_forms"]["hard"]
    print(f"hard float (FPU) builds: {sum(hard.values())} steps, {len(hard)} distinct forms")
    for what, want in FPU_FORMS.items():
        steps = sum(n for f, n in hard.items() if _matches(f, want))
        print(f"  {steps:4d}  {what}")
    never = sorted(k for k in FORM_KEYS if k not in by_kernel)
    print("kernels never drawn:", ", ".join(never) or "none")
    for kernel, modes in (("tn_m7_sub", "012"), ("tn_m7_subconv", "012")):
        seen = {v.split("=")[1] for f in s["forms"] if f[0] == kernel for v in f[1]
                if v.startswith("MODE=")}
        print(f"{kernel} MODE never drawn:", ", ".join(m for m in modes if m not in seen)
              or "none")
    assert s["cases"] == 0 or s["host"] > 0, "no case was built"

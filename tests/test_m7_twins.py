"""The Cortex-M7 twins of registry ops (OpKind.m7_*, tinyopt/deploy/c/ops/m7/): MUL
(m7/tn_mul.c) and hard-swish (m7/tn_hard_swish.c), each exported with kernels="m7", built for the
host and compared with the simulator (codegen.reference_output) on every output value, never
with the portable C: at multipliers and rounding flavours that reach every branch of the MUL
plan (tinyopt.integer.ops.mul.m7_plan), signed and unsigned 8-bit codes, clamps, element counts
that are not a multiple of 4, in-place runs, the per-channel broadcast (channels a multiple of 4
and not); hard-swish's int8 arithmetic (its table built by the twin in the arena scratch) at
input scales that take each branch of the relu-ish rescaling, and its table form at 8, 4 and 2
bits. Also: the memory plan's peak is the built arena, scratch included; prefixed exports;
the mechanism's refusals (registry records, m7_check's reasons in Choice.reason); one QEMU run
per twin (slow)."""
from __future__ import annotations

import shutil
import subprocess
import types

import numpy as np
import pytest

from tinyopt.deploy import codegen, kernels_m7, mcu
from tinyopt.integer import steps as steps_mod
from tinyopt.integer.arith import m0_n0, tflite_quantize_multiplier
from tinyopt.integer.graph import IntegerGraph, IntegerLayer, Tensor
from tinyopt.integer.ops import hard_swish, mul
from tinyopt.integer.ops.hard_swish import int16_multiplier
from tinyopt.integer.ops.registry import REGISTRY, OpKind, register

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc on this machine")


# ------------------------------------------------------------------------------ graphs

def _grid(bits: int, signed: bool, zp: int) -> dict:
    return {"bits": bits, "signed": signed, "zero_point": zp}


def _f(prefix: str, g: dict) -> dict:
    return {f"{prefix}_{k}": v for k, v in g.items()}


def _multiplier(real: float, rounding: str):
    return (m0_n0(np.array([real])) if rounding == "floor"
            else tflite_quantize_multiplier(np.float64(real)))


def _quantize(name: str, shape, gin: dict, gout: dict, real: float, rounding: str):
    m0, n0 = _multiplier(real, rounding)
    return IntegerLayer(kind="quantize", name=name, in_shape=shape, out_shape=shape,
                        inputs=("x",), outputs=(name,), m0=m0, n0=n0, **_f("in", gin),
                        **_f("out", gout))


def mul_graph(shape, grid: dict, rounding: str, real: float, broadcast: bool = False,
              out: dict | None = None, act_min=None, seed: int = 0) -> IntegerGraph:
    """x -> a (quantize), b (quantize; or a per-channel gate: a depthwise over all of H x W);
    m = a * b (the output, written over a by the planner). Codes of ``grid`` (8-bit)."""
    rng = np.random.default_rng(seed)
    out = grid if out is None else out
    h, w, c = shape
    a = _quantize("a", shape, grid, grid, 0.9, rounding)
    if broadcast:
        b = IntegerLayer(kind="depthwise", name="b", in_shape=shape, out_shape=(1, 1, c),
                         inputs=("x",), outputs=("b",), **_f("in", grid), **_f("out", grid))
        b.set_weights(rng.integers(0, 256, (h, w, c)), 8)
        b.weight_zero_point = rng.integers(100, 156, 1).astype(np.int32)
        b.bias = rng.integers(-50, 50, c).astype(np.int32)
        b.m0, b.n0 = _multiplier(2.0 / (h * w * 128), rounding)
    else:
        b = _quantize("b", shape, grid, grid, 0.6, rounding)
    m0, n0 = _multiplier(real, rounding)
    m = IntegerLayer(kind="mul", name="m", in_shape=shape, out_shape=shape, inputs=("a", "b"),
                     outputs=("m",), m0=m0, n0=n0, act_min=act_min, **_f("in", grid),
                     **_f("out", out))
    g = IntegerGraph([a, b, m], shape, input_bits=grid["bits"], input_signed=grid["signed"],
                     input_zero_point=grid["zero_point"], rounding=rounding, input_name="x",
                     outputs=["m"], name="mul_twin")
    g.validate()
    return g


def hs_graph(shape, s_in: float = 0.1, s_out: float = 0.08, z_in: int = 3,
             z_out: int = -5) -> IntegerGraph:
    """x (int8) -> hard_swish, TFLite's arithmetic at input scale ``s_in``."""
    hires = np.float32(1 / 128) * np.float32(s_in)
    rm, re = int16_multiplier(hires / np.float32(3 / 32768))
    om, oe = int16_multiplier(hires / np.float32(s_out))
    layer = IntegerLayer(kind="hard_swish", name="hs", in_shape=shape, out_shape=shape,
                         inputs=("x",), outputs=("hs",), **_f("in", _grid(8, True, z_in)),
                         **_f("out", _grid(8, True, z_out)), m0=np.array([rm, om], np.int32),
                         n0=np.array([re, oe], np.int8))
    g = IntegerGraph([layer], shape, input_bits=8, input_signed=True, input_zero_point=z_in,
                     rounding="tflite_double", input_name="x", outputs=["hs"], name="hs_twin")
    g.validate()
    return g


def hs_table_graph(shape, bits: int, out_bits: int | None = None, seed: int = 0):
    """x (``bits``-bit codes) -> q (quantize, same grid) -> hard_swish as a random table."""
    out_bits = bits if out_bits is None else out_bits
    rng = np.random.default_rng(seed)
    g_in = _grid(bits, False, 1 << (bits - 1))
    g_out = _grid(out_bits, False, 1 << (out_bits - 1))
    q = _quantize("q", shape, g_in, g_in, 1.0, "floor")
    hs = IntegerLayer(kind="hard_swish", name="hs", in_shape=shape, out_shape=shape,
                      inputs=("q",), outputs=("hs",), **_f("in", g_in), **_f("out", g_out),
                      m0=np.zeros(2, np.int32), n0=np.zeros(2, np.int8),
                      table=(rng.permutation(1 << bits) % (1 << out_bits)).astype(np.uint8))
    g = IntegerGraph([q, hs], shape, input_bits=bits, input_zero_point=g_in["zero_point"],
                     rounding="floor", input_name="x", outputs=["hs"], name="hs_table")
    g.validate()
    return g


def _inputs(g: IntegerGraph, n: int = 24, seed: int = 1) -> np.ndarray:
    lo = -(1 << (g.input_bits - 1)) if g.input_signed else 0
    return np.random.default_rng(seed).integers(lo, lo + (1 << g.input_bits),
                                                (n, *g.input_shape))


def host_exact(g: IntegerGraph, tmp_path, kind: str, prefix: str = "model", n: int = 24,
               min_distinct: int | None = None):
    """Export with kernels="m7" (the ``kind`` step must take its twin), build for the host,
    compare with the simulator on every value (outputs of at least ``min_distinct`` distinct
    values; None: 9, or every code of a narrower output); returns the export and the built
    program."""
    e = codegen.export_c(g, tmp_path / "src", kernels="m7", prefix=prefix)
    k = next(i for i, s in enumerate(e.steps) if s.layer.kind == kind)
    assert e.kernels[k] == "op", kernels_m7.choose(e.steps[k], k, "m7", g.rounding).reason
    twin = REGISTRY[kind].m7_source
    pre = "" if prefix == "model" else prefix + "_"
    assert f"{pre}{codegen.TWIN_PREFIX}{twin}" in {p.name for p in e.sources}
    exe = mcu.build_host(e, build_dir=tmp_path / "host")
    x = _inputs(g, n)
    want = codegen.reference_output(g, x)
    out_bits = g.tensor(g.output_names()[0]).bits
    need = min(9, 1 << out_bits) if min_distinct is None else min_distinct
    assert len(np.unique(want)) >= need, "few output values check little"
    np.testing.assert_array_equal(mcu.run_host(exe, e, x, work_dir=tmp_path / "run"), want)
    return e, exe


def _step(e, kind: str):
    return next(s for s in e.steps if s.layer.kind == kind)


# ------------------------------------------------------------------------------ MUL

# (rounding, real multiplier): every branch of m7_plan (S > 1 / K > 0 with the sign fix for the
# double rounding; SMMLAR / SMMLA for the single one; a left shift / right shift for floor)
MUL_REALS = [("tflite_double", 0.0021), ("tflite_double", 0.7), ("tflite_double", 3.0),
             ("tflite_single", 0.0021), ("tflite_single", 0.3), ("tflite_single", 2.0),
             ("floor", 0.0021), ("floor", 0.3), ("floor", 3.0)]


def _plan_of(g):
    steps, _ = steps_mod.memory_plan(g, kernels="m7")
    return mul.m7_plan(_step_steps(steps, "mul"))


def _step_steps(steps, kind):
    return next(s for s in steps if s.layer.kind == kind)


def test_mul_plan_takes_every_branch():
    """The plan's instruction (R), sign fix (F), shifts (S, K) by flavour and exponent."""
    seen = set()
    for rounding, real in MUL_REALS:
        plan = _plan_of(mul_graph((3, 3, 4), _grid(8, True, -3), rounding, real))
        assert isinstance(plan, dict), plan
        seen.add((rounding, plan["RND"], plan["FIX"], plan["S"] > 1, plan["K"] > 0))
    assert ("tflite_double", 1, 1, False, True) in seen  # n0 < 0: RoundingDivideByPOT
    assert ("tflite_double", 1, 0, True, False) in seen  # n0 > 0: left shift
    assert {("tflite_single", 1), ("tflite_single", 0)} <= {(r[0], r[1]) for r in seen}
    assert ("floor", 0, 0, True, False) in seen and ("floor", 0, 0, False, True) in seen


@needs_gcc
@pytest.mark.parametrize("rounding,real", MUL_REALS)
def test_mul_twin_int8_exact_in_place(rounding, real, tmp_path):
    """Element-wise int8, 315 elements (not a multiple of 4), written over input a."""
    g = mul_graph((9, 7, 5), _grid(8, True, -3), rounding, real, seed=len(rounding))
    e, _ = host_exact(g, tmp_path, "mul")
    s = _step(e, "mul")
    assert s.out_offset == s.in_offsets[0], "the mul should run in place over a"


@needs_gcc
@pytest.mark.parametrize("case", ["unsigned", "unsigned->signed", "relu"])
def test_mul_twin_signedness_and_clamp(case, tmp_path):
    """Unsigned 8-bit codes (the sub-byte path's grid, zero point 128 or 0), an unsigned input
    with a signed output, a ReLU clamp at the output zero point."""
    if case == "unsigned":
        g = mul_graph((5, 5, 7), _grid(8, False, 128), "floor", 0.004)
    elif case == "unsigned->signed":
        g = mul_graph((5, 5, 7), _grid(8, False, 0), "floor", 0.0021,
                      out=_grid(8, True, -100))
    else:
        g = mul_graph((5, 5, 7), _grid(8, True, 7), "tflite_double", 0.004, act_min=-20,
                      out=_grid(8, True, -20))
    host_exact(g, tmp_path, "mul")


@needs_gcc
@pytest.mark.parametrize("shape,rounding", [((4, 5, 12), "tflite_double"),
                                            ((3, 5, 7), "tflite_double"),
                                            ((6, 5, 8), "floor")])
def test_mul_twin_broadcast(shape, rounding, tmp_path):
    """The squeeze-and-excite gate, one value per channel: channels a multiple of 4 (word loads
    of the gate) and not (one element at a time)."""
    grid = _grid(8, True, 5) if rounding != "floor" else _grid(8, False, 128)
    g = mul_graph(shape, grid, rounding, 0.01, broadcast=True, seed=3)
    e, _ = host_exact(g, tmp_path, "mul")
    s = _step(e, "mul")
    assert s.in_specs[1].shape == (1, 1, shape[-1])
    assert s.out_offset == s.in_offsets[0]


# (rounding, real, signed inputs, z_a, z_b, signed output, z_out, act_min, act_max)
EXHAUSTIVE = [(r, real, True, -3, 11, True, -7, None, None) for r, real in MUL_REALS] + [
    ("tflite_double", 0.0037, True, -128, 127, True, 0, -128, 90),
    ("tflite_double", 0.0021, True, 5, -9, True, -20, -20, None),
    ("tflite_single", 0.0013, True, 0, 0, True, 3, -100, 100),
    ("floor", 0.004, False, 128, 128, False, 128, None, None),
    ("floor", 0.0021, False, 0, 255, True, -100, None, None),
    ("floor", 0.3, False, 17, 200, False, 0, 10, 240)]


def _mul_case(rounding, real, signed, za, zb, out_signed, zo, lo, hi, n):
    m0, n0 = _multiplier(real, rounding)
    layer = IntegerLayer(kind="mul", name="m", in_shape=(n,), out_shape=(n,), inputs=("a", "b"),
                         outputs=("m",), m0=m0, n0=n0, act_min=lo, act_max=hi,
                         **_f("in", _grid(8, signed, za)), **_f("out", _grid(8, out_signed, zo)))
    specs = (Tensor("a", (n,), 8, signed, za), Tensor("b", (n,), 8, signed, zb))
    return types.SimpleNamespace(layer=layer, in_specs=specs, graph_rounding=rounding)


@needs_gcc
def test_mul_twin_exhaustive_on_the_host(tmp_path):
    """tn_m7_run_mul (the library's twin file, host build) equals the simulator's mul on every
    pair of 8-bit codes (65,536, plus 5 more: 65,541 = 3 x 21,847 is not a whole number of
    words, and each dimension fits the descriptor's 16 bits), to a buffer and in
    place over either input, for every plan branch, both signednesses, extreme zero points and
    clamps; the twin file is compiled as it is shipped, with a descriptor written by hand."""
    n = 3 * 21847
    codes = np.arange(n) % 65536
    cases = [_mul_case(*c, n) for c in EXHAUSTIVE]
    plans = [mul.m7_plan(c) for c in cases]
    assert [p for p in plans if isinstance(p, str)] == []
    assert {(p["RND"], p["FIX"]) for p in plans} == {(1, 1), (1, 0), (0, 0)}
    descs, arrays = [], []
    for k, (c, plan) in enumerate(zip(cases, plans)):
        lay = c.layer
        vals = ", ".join(str(int(np.int64(plan[f]).astype(np.uint32).view(np.int32)))
                         for f in mul.M7_PLAN_FIELDS)
        arrays.append(f"static const int32_t plan{k}[] = {{{vals}}};\n"
                      f"static const int32_t m0_{k}[] = {{{int(lay.m0[0])}}};\n"
                      f"static const int8_t n0_{k}[] = {{{int(lay.n0[0])}}};\n")
        descs.append(f"    {{ .in = {{1, 3, 21847, 8, {int(lay.in_signed)}, "
                     f"{lay.in_zero_point}}}, .out = {{1, 3, 21847, 8, {int(lay.out_signed)}, "
                     f"{lay.out_zero_point}}}, "
                     f".rounding = {codegen.ROUNDING_C[c.graph_rounding]}, .m0 = m0_{k}, "
                     f".n0 = n0_{k}, .bias = plan{k}, .outer = N, "
                     f".in2_zero_point = {c.in_specs[1].zero_point}, .w_bits = 8, "
                     f".act_lo = {lay.out_range[0]}, .act_hi = {lay.out_range[1]} }},\n")
    src = tmp_path / "mul.c"
    src.write_text(f"""#include <stdio.h>
#include "tinyopt_nn.h"
#define N {n}u
void tn_m7_run_mul(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out, uint8_t *s);
{"".join(arrays)}static const tn_layer_t cases[] = {{
{"".join(descs)}}};
static uint8_t a[N], b[N], o[N];
static void fill(uint8_t *p, uint32_t shift)
{{
    for (uint32_t i = 0; i < N; i++) p[i] = (uint8_t)((i % 65536u) >> shift);
}}
int main(void)
{{
    const uint8_t *in[2] = {{a, b}};
    for (uint32_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {{
        fill(a, 0); fill(b, 8);
        tn_m7_run_mul(&cases[k], in, o, NULL);
        fwrite(o, 1, N, stdout);
        tn_m7_run_mul(&cases[k], in, a, NULL); /* in place over the first input */
        fwrite(a, 1, N, stdout);
        fill(a, 0);
        tn_m7_run_mul(&cases[k], in, b, NULL); /* in place over the second */
        fwrite(b, 1, N, stdout);
    }}
    return 0;
}}
""")
    exe = tmp_path / "mul"
    subprocess.run(["gcc", *mcu.HOST_CFLAGS, "-I", str(codegen.C_DIR), str(src),
                    str(codegen.OPS_DIR / "m7" / "tn_mul.c"), "-o", str(exe)], check=True)
    got = np.frombuffer(subprocess.run([exe], check=True, capture_output=True).stdout, np.uint8)
    got = got.reshape(len(cases), 3, n).astype(np.int64)
    for k, c in enumerate(cases):
        lay, (ta, tb) = c.layer, c.in_specs
        a, b = (codes & 255).astype(np.int64), (codes >> 8).astype(np.int64)
        if ta.signed:
            a, b = (a ^ 128) - 128, (b ^ 128) - 128
        want = mul.mul_codes(a, b, ta.zero_point, tb.zero_point, int(lay.m0[0]),
                             int(lay.n0[0]), c.graph_rounding, lay.out_zero_point,
                             *lay.out_range)
        assert len(np.unique(want)) > 8, f"case {k}: a nearly constant mul checks little"
        out = (got[k] ^ 128) - 128 if lay.out_signed else got[k]
        for j, where in enumerate(("to a buffer", "over input 0", "over input 1")):
            bad = np.flatnonzero(out[j] != want)
            assert bad.size == 0, (f"case {k} {EXHAUSTIVE[k]} ({where}): {bad.size} differ, "
                                   f"first at codes {a[bad[0]]}, {b[bad[0]]}: {out[j][bad[0]]}"
                                   f" != {want[bad[0]]}")


# packed codes: (bits, signed inputs, z_a, z_b, signed output, z_out, act_min, act_max, real)
PACKED = [(4, False, 8, 8, False, 8, None, None, 0.12), (4, False, 0, 0, False, 0, 2, 13, 0.07),
          (4, True, 8, 3, True, 8, None, None, 0.3), (4, False, 5, 15, True, 8, None, None, 0.9),
          (2, False, 2, 2, False, 2, None, None, 1.0), (2, False, 0, 1, False, 0, None, 2, 0.4),
          (2, True, 2, 0, False, 1, None, None, 0.7)]


def _pack(codes, bits: int) -> np.ndarray:
    """LSB-first packing of unsigned ``bits``-bit codes into bytes (tn_set's layout)."""
    per = 8 // bits
    c = np.asarray(codes, np.int64) & ((1 << bits) - 1)
    c = np.concatenate([c, np.zeros(-len(c) % per, np.int64)]).reshape(-1, per)
    return (c << (np.arange(per) * bits)).sum(1).astype(np.uint8)


def _unpack(raw, bits: int, n: int) -> np.ndarray:
    per = 8 // bits
    c = (np.asarray(raw, np.int64)[:, None] >> (np.arange(per) * bits)) & ((1 << bits) - 1)
    return c.ravel()[:n]


@needs_gcc
def test_mul_twin_packed_exhaustive_on_the_host(tmp_path):
    """Packed 4- and 2-bit codes (floor rounding): the twin file equals the simulator on every
    pair of codes, 1,027 elements (not a whole number of words), to a buffer and in place over
    either input, unsigned and signed codes (top bit flipped), clamps."""
    n = 1027
    descs, arrays, cases = [], [], []
    for k, (bits, signed, za, zb, out_signed, zo, lo, hi, real) in enumerate(PACKED):
        c = _mul_case("floor", real, signed, za, zb, out_signed, zo, lo, hi, n)
        for lay in (c.layer,):
            lay.in_bits = lay.out_bits = bits
        c.in_specs = tuple(Tensor(t.name, t.shape, bits, t.signed, t.zero_point)
                           for t in c.in_specs)
        plan = mul.m7_plan(c)
        assert isinstance(plan, dict), plan
        cases.append(c)
        lay = c.layer
        vals = ", ".join(str(int(np.int64(plan[f]).astype(np.uint32).view(np.int32)))
                         for f in mul.M7_PLAN_FIELDS)
        arrays.append(f"static const int32_t plan{k}[] = {{{vals}}};\n"
                      f"static const int32_t m0_{k}[] = {{{int(lay.m0[0])}}};\n"
                      f"static const int8_t n0_{k}[] = {{{int(lay.n0[0])}}};\n")
        descs.append(f"    {{ .in = {{1, 1, N, {bits}, {int(signed)}, {za}}}, "
                     f".out = {{1, 1, N, {bits}, {int(out_signed)}, {zo}}}, "
                     f".rounding = TN_FLOOR, .m0 = m0_{k}, .n0 = n0_{k}, .bias = plan{k}, "
                     f".outer = N, .in2_zero_point = {zb}, .w_bits = {bits}, "
                     f".act_lo = {lay.out_range[0]}, .act_hi = {lay.out_range[1]} }},\n")
    idx = np.arange(n)
    inputs = {}
    for bits in (4, 2):
        m = (1 << bits) - 1
        inputs[bits] = (_pack(idx & m, bits), _pack((idx >> bits) & m, bits))
    init = "".join(f"static const uint8_t a{b}[] = {{{', '.join(map(str, pa))}}};\n"
                   f"static const uint8_t b{b}[] = {{{', '.join(map(str, pb))}}};\n"
                   for b, (pa, pb) in inputs.items())
    src = tmp_path / "mulp.c"
    src.write_text(f"""#include <stdio.h>
#include <string.h>
#include "tinyopt_nn.h"
#define N {n}u
void tn_m7_run_mul(const tn_layer_t *l, const uint8_t *const *in, uint8_t *out, uint8_t *s);
{"".join(arrays)}{init}static const tn_layer_t cases[] = {{
{"".join(descs)}}};
static uint8_t a[N], b[N], o[N];
int main(void)
{{
    const uint8_t *in[2] = {{a, b}};
    for (uint32_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {{
        const uint32_t bits = cases[k].in.bits, bytes = (N * bits + 7u) / 8u;
        const uint8_t *a0 = bits == 4u ? a4 : a2, *b0 = bits == 4u ? b4 : b2;
        memcpy(a, a0, bytes); memcpy(b, b0, bytes);
        tn_m7_run_mul(&cases[k], in, o, NULL);
        fwrite(o, 1, bytes, stdout);
        tn_m7_run_mul(&cases[k], in, a, NULL); /* in place over the first input */
        fwrite(a, 1, bytes, stdout);
        memcpy(a, a0, bytes);
        tn_m7_run_mul(&cases[k], in, b, NULL); /* in place over the second */
        fwrite(b, 1, bytes, stdout);
    }}
    return 0;
}}
""")
    exe = tmp_path / "mulp"
    subprocess.run(["gcc", *mcu.HOST_CFLAGS, "-I", str(codegen.C_DIR), str(src),
                    str(codegen.OPS_DIR / "m7" / "tn_mul.c"), "-o", str(exe)], check=True)
    raw = np.frombuffer(subprocess.run([exe], check=True, capture_output=True).stdout, np.uint8)
    pos = 0
    for k, c in enumerate(cases):
        lay, (ta, tb) = c.layer, c.in_specs
        bits = lay.out_bits
        m, half = (1 << bits) - 1, 1 << (bits - 1)
        a, b = (idx & m).astype(np.int64), ((idx >> bits) & m).astype(np.int64)
        if ta.signed:
            a, b = (a ^ half) - half, (b ^ half) - half
        want = mul.mul_codes(a, b, ta.zero_point, tb.zero_point, int(lay.m0[0]),
                             int(lay.n0[0]), "floor", lay.out_zero_point, *lay.out_range)
        assert len(np.unique(want)) >= min(3, lay.out_range[1] - lay.out_range[0] + 1), k
        nbytes = (n * bits + 7) // 8
        for where in ("to a buffer", "over input 0", "over input 1"):
            out = _unpack(raw[pos:pos + nbytes], bits, n)
            pos += nbytes
            if lay.out_signed:
                out = (out ^ half) - half
            bad = np.flatnonzero(out != want)
            assert bad.size == 0, (f"case {k} {PACKED[k]} ({where}): {bad.size} differ, first "
                                   f"at codes {a[bad[0]]}, {b[bad[0]]}: {out[bad[0]]} != "
                                   f"{want[bad[0]]}")
    assert pos == len(raw)


@needs_gcc
@pytest.mark.parametrize("bits,shape,broadcast", [(4, (9, 7, 5), False), (2, (9, 7, 5), False),
                                                  (4, (3, 5, 16), True), (2, (3, 5, 16), True),
                                                  (4, (3, 5, 6), True)])
def test_mul_twin_packed_graphs(bits, shape, broadcast, tmp_path):
    """Packed graphs of the sub-byte path (unsigned grids, floor): element-wise at 315 elements,
    a gate broadcast per channel whose channels fill whole words (16) and do not (6); the
    step runs in place. (Both operands grow with the input: their product, hence the output,
    keeps one side of its zero point, half the codes.)"""
    g = mul_graph(shape, _grid(bits, False, 1 << (bits - 1)), "floor",
                  2.0 ** bits / 2 ** (2 * bits) * 3, broadcast=broadcast, seed=bits)
    e, _ = host_exact(g, tmp_path, "mul", min_distinct=max(2, (1 << (bits - 1)) - 2))
    s = _step(e, "mul")
    assert s.out_offset == s.in_offsets[0]


def test_mul_plan_refusals_reach_the_choice():
    """Inputs and output of different widths, packed codes with TFLite's rounding, an exponent
    the plan cannot shift: portable, with the reason."""
    g = mul_graph((3, 3, 4), _grid(4, False, 8), "floor", 0.02, out=_grid(8, False, 0))
    steps, _ = steps_mod.memory_plan(g, kernels="m7")
    k = next(i for i, s in enumerate(steps) if s.layer.kind == "mul")
    c = kernels_m7.choose(steps[k], k, "m7", g.rounding)
    assert c.kind == "portable" and "inputs and output of one width" in c.reason, c.reason
    g = mul_graph((3, 3, 4), _grid(4, False, 8), "tflite_double", 0.02)
    steps, _ = steps_mod.memory_plan(g, kernels="m7")
    c = kernels_m7.choose(steps[k], k, "m7", g.rounding)
    assert c.kind == "portable" and "floor rounding" in c.reason, c.reason
    g = mul_graph((3, 3, 4), _grid(8, True, 0), "tflite_double", 2.0 ** 20)
    steps, _ = steps_mod.memory_plan(g, kernels="m7")
    c = kernels_m7.choose(steps[k], k, "m7", g.rounding)
    assert c.kind == "portable" and "n0 = 21" in c.reason
    assert steps[k].scratch_bytes == 0


# ------------------------------------------------------------------------------ hard-swish

HS_SCALES = (0.0005, 0.003, 0.008, 0.05, 1.0, 40.0)  # relu-ish exponents -4, -1, 0, 3, 7, 12


@needs_gcc
@pytest.mark.parametrize("s_in", HS_SCALES)
def test_hard_swish_twin_int8_exact(s_in, tmp_path):
    """TFLite's arithmetic (the twin's own table, built in the arena scratch) at input scales
    whose relu-ish exponent is negative, zero and positive; 441 elements, in place."""
    g = hs_graph((9, 7, 7), s_in=s_in, s_out=s_in * 0.7)
    assert len(np.unique(_inputs(g, 16))) == 256, "every int8 code should meet the table"
    e, exe = host_exact(g, tmp_path, "hard_swish", n=16)
    s = _step(e, "hard_swish")
    assert s.scratch_bytes == 256 and s.scratch_offset % 4 == 0
    assert s.out_offset == s.in_offsets[0]


def test_hard_swish_relu_exponents_cover_every_branch():
    """The scales above take each of the twin's three table loops (the relu-ish exponent's
    sign)."""
    exps = set()
    for s_in in HS_SCALES:
        hires = np.float32(1 / 128) * np.float32(s_in)
        exps.add(int(np.sign(int16_multiplier(hires / np.float32(3 / 32768))[1])))
    assert exps == {-1, 0, 1}


@needs_gcc
def test_hard_swish_plan_peak_is_the_built_arena(tmp_path):
    """The twin's 256 bytes of scratch are planned in the arena: the plan's peak is the built
    program's arena, and the scratch overlaps neither the step's input nor its output."""
    g = hs_graph((4, 4, 24))
    e, exe = host_exact(g, tmp_path, "hard_swish", n=8)
    s = _step(e, "hard_swish")
    assert s.scratch_bytes == 256
    span = range(s.scratch_offset, s.scratch_offset + s.scratch_bytes)
    for off, size in ((s.in_offsets[0], 384), (s.out_offset, 384)):
        assert not set(span) & set(range(off, off + size))
    assert e.arena_bytes == e.memory.arena_bytes >= 384 + 256
    assert mcu.built_arena_bytes(exe, e) == e.arena_bytes
    portable = codegen.export_c(g, tmp_path / "portable", kernels="portable")
    assert e.arena_bytes == portable.arena_bytes + 256


def _subbyte_hs_graph(shape):
    """A sub-byte-path ("floor") graph with hard-swish's int8 form between two QUANTIZE moves
    (mixed precision lowers an 8-bit hard-swish so)."""
    u8, s8 = _grid(8, False, 128), _grid(8, True, 0)
    q_in = _quantize("q_in", shape, u8, s8, 1.0, "floor")
    hs = hs_graph(shape).layers[0]
    hs.in_zero_point, hs.out_zero_point = 0, 0
    hs.inputs = ("q_in",)
    q_out = IntegerLayer(kind="quantize", name="q_out", in_shape=shape, out_shape=shape,
                         inputs=("hs",), outputs=("q_out",), m0=q_in.m0, n0=q_in.n0,
                         **_f("in", s8), **_f("out", u8))
    g = IntegerGraph([q_in, hs, q_out], shape, input_bits=8, input_zero_point=128,
                     rounding="floor", input_name="x", outputs=["q_out"], name="hs_floor")
    g.validate()
    return g


def test_subbyte_graph_takes_the_table_scratch_only_where_free():
    """On a "floor" graph the twin's 256 bytes come only where the arena has room
    (Step.roomy): at the peak step they would grow it, so that step stays portable and says
    why; the arena equals the portable export's."""
    g = _subbyte_hs_graph((9, 7, 7))
    steps, mem = steps_mod.memory_plan(g, kernels="m7")
    k = next(i for i, s in enumerate(steps) if s.layer.kind == "hard_swish")
    c = kernels_m7.choose(steps[k], k, "m7", g.rounding)
    assert c.kind == "portable" and "grow the arena" in c.reason, c.reason
    _, portable = steps_mod.memory_plan(g, kernels="portable")
    assert mem.arena_bytes == portable.arena_bytes


@needs_gcc
@pytest.mark.parametrize("bits", [8, 4, 2])
def test_hard_swish_twin_table_exact(bits, tmp_path):
    """The table form at 8, 4 and 2 bits: 315 elements (not a whole number of words at any
    width), run in place over the quantize node's output."""
    g = hs_table_graph((9, 7, 5), bits, seed=bits)
    e, _ = host_exact(g, tmp_path, "hard_swish")
    s = _step(e, "hard_swish")
    assert s.scratch_bytes == 0 and s.out_offset == s.in_offsets[0]


def test_hard_swish_refusals_reach_the_choice():
    """A small int8 tensor, a table between two widths: portable, with the reason."""
    assert 45 < hard_swish.M7_MIN_ELEMENTS <= 9 * 7 * 7  # the sizes the tests use
    for g, why in ((hs_graph((3, 3, 5)), "45 elements"),
                   (hs_table_graph((3, 3, 5), 4, out_bits=2), "4-bit to 2-bit")):
        steps, _ = steps_mod.memory_plan(g, kernels="m7")
        k = next(i for i, s in enumerate(steps) if s.layer.kind == "hard_swish")
        c = kernels_m7.choose(steps[k], k, "m7", g.rounding)
        assert c.kind == "portable" and why in c.reason, c.reason
        assert steps[k].scratch_bytes == 0


# ------------------------------------------------------------------------------ mechanism

def test_registry_refuses_incomplete_twins():
    base = dict(name="twin_probe", summary="probe", simulate=lambda p, xs, wrap: xs[0],
                c_function="tn_run_probe", c_source="tn_probe.c")
    with pytest.raises(ValueError, match="needs both m7_source and m7_function"):
        register(OpKind(**base, m7_source="tn_probe.c"))
    with pytest.raises(ValueError, match="m7_source must be a .c file name"):
        register(OpKind(**base, m7_source="m7/tn_probe.c", m7_function="tn_m7_run_probe"))
    with pytest.raises(ValueError, match="needs the portable kernel"):
        register(OpKind(**{**base, "c_function": None, "c_source": None},
                        m7_source="tn_probe.c", m7_function="tn_m7_run_probe"))
    with pytest.raises(ValueError, match="must not start with 'm7_'"):
        register(OpKind(**{**base, "c_source": "m7_tn_probe.c"}))
    with pytest.raises(ValueError, match="compute layer or a pool"):
        register(OpKind(**base, compute=True, m7_source="tn_probe.c",
                        m7_function="tn_m7_run_probe"))
    assert "twin_probe" not in REGISTRY


def test_an_empty_output_clamp_is_refused():
    """act_min > act_max: the simulator (np.clip), the twin's word path and its scalar tail
    would each pick another end; the IR refuses it, naming the layer."""
    g = mul_graph((1, 1, 5), _grid(8, True, 0), "tflite_double", 0.3, act_min=100)
    g.layers[2].act_max = 50
    with pytest.raises(ValueError, match=r"layer 'm' \(mul\): the output clamp .* leaves no "
                                         r"8-bit code in \[100, 50\]"):
        g.validate()


@needs_gcc
def test_twin_constants_are_layout_not_parameters(tmp_path):
    """A mul has no bias: the twin's plan (in the descriptor's ``bias`` field) is kernel
    layout (``weight_pad_bytes``), not a parameter of the model."""
    g = mul_graph((9, 7, 5), _grid(8, True, -3), MUL_REALS[0][0], MUL_REALS[0][1], seed=1)
    m7 = codegen.export_c(g, tmp_path / "m7", kernels="m7")
    portable = codegen.export_c(g, tmp_path / "portable", kernels="portable")
    assert "op" in m7.kernels
    assert m7.param_bytes == portable.param_bytes
    assert m7.weight_pad_bytes > portable.weight_pad_bytes == 0


def test_portable_export_never_takes_a_twin(tmp_path):
    e = codegen.export_c(hs_graph((9, 7, 7)), tmp_path / "src", kernels="portable")
    assert e.kernels == ["portable"]
    assert not any(p.name.startswith(codegen.TWIN_PREFIX) for p in e.sources)
    assert all(s.scratch_bytes == 0 for s in e.steps)


@pytest.mark.slow  # two libraries generated and linked (~13 s)
@needs_gcc
def test_prefixed_libraries_link_into_one_program(tmp_path):
    """Two generated libraries with their own prefixes, each with a twin: each library's host
    check agrees with the simulator, and every external symbol of their objects carries its
    prefix, so one program links both (a shared object of all their objects)."""
    from tinyopt.deploy import library
    if shutil.which("nm") is None:
        pytest.skip("nm not installed")
    graphs = {"hsa": (hs_graph((9, 7, 7)), "hard_swish"),
              "mla": (mul_graph((6, 5, 8), _grid(8, True, 5), "tflite_double", 0.01,
                                broadcast=True), "mul")}
    objs = []
    for prefix, (g, kind) in graphs.items():
        meta = library.generate(g, tmp_path / prefix, prefix, target="m7", check_images=8)
        assert meta["check"]["exact_images"] == 8 and meta["check"]["mismatching_values"] == 0
        e = meta["export"]
        k = next(i for i, s in enumerate(e.steps) if s.layer.kind == kind)
        assert e.kernels[k] == "op"
        twin = f"{prefix}_{codegen.TWIN_PREFIX}{REGISTRY[kind].m7_source}"
        assert twin in {p.name for p in e.sources} and twin in meta["sources"]
        mk = (tmp_path / prefix / f"{prefix}.mk").read_text()
        assert twin in mk and twin in (tmp_path / prefix / "CMakeLists.txt").read_text()
        fn = REGISTRY[kind].m7_function
        header = (tmp_path / prefix / f"{prefix}_tinyopt_nn.h").read_text()
        assert f"#define {fn} {prefix}_{fn}" in header
        for src in e.sources:
            obj = tmp_path / f"{src.stem}.o"
            # -O0: which symbols are external is the source's linkage, not the optimiser's
            # (-O2 drops no external symbol; -O0 keeps every one) and saves ~1.5 s of CPU
            subprocess.run(["gcc", "-std=c99", "-O0", "-fPIC", "-c", str(src), "-o", str(obj)],
                           check=True)
            out = subprocess.run(["nm", "-g", "--defined-only", str(obj)], check=True,
                                 capture_output=True, text=True).stdout
            symbols = [line.split()[-1] for line in out.splitlines() if line.strip()]
            assert symbols and all(s.startswith(f"{prefix}_") for s in symbols), symbols
            objs.append(str(obj))
    subprocess.run(["gcc", "-shared", "-o", str(tmp_path / "both.so"), *objs], check=True)


# ------------------------------------------------------------------------------ QEMU

@pytest.mark.slow
@pytest.mark.parametrize("which", ["mul", "mul_broadcast", "mul_packed", "hard_swish",
                                   "hard_swish_table"])
def test_twins_under_qemu(qemu, which, tmp_path):
    """The twin's DSP instructions (SXTAB16, SMULBB / SMULTT, SMMLAR / SMMLA, SSAT, SSUB8 / SEL;
    the table lookups) under QEMU give the simulator's values, and take fewer instructions than
    the portable kernel."""
    g = {"mul": lambda: mul_graph((9, 7, 5), _grid(8, True, -3), "tflite_double", 0.0021),
         "mul_broadcast": lambda: mul_graph((4, 5, 12), _grid(8, True, 5), "tflite_double",
                                            0.01, broadcast=True),
         "mul_packed": lambda: mul_graph((3, 5, 16), _grid(4, False, 8), "floor", 0.2,
                                         broadcast=True),
         "hard_swish": lambda: hs_graph((9, 7, 7), s_in=0.05, s_out=0.04),
         "hard_swish_table": lambda: hs_table_graph((9, 7, 5), 4)}[which]()
    kind = "mul" if which.startswith("mul") else "hard_swish"
    x = _inputs(g, 4)
    insns = {}
    for kernels in ("m7", "portable"):
        r = mcu.deploy(g, x, tmp_path / kernels, name="twin", mcu_images=2, kernels=kernels)
        s = r["summary"]
        assert s["host_images_exact"] == s["host_images"] and s["mcu_images_exact"] == 2
        e = r["export"]
        k = next(i for i, st in enumerate(e.steps) if st.layer.kind == kind)
        assert e.kernels[k] == ("op" if kernels == "m7" else "portable")
        insns[kernels] = r["mcu"].step_insns(2)[e.steps[k].name]
    assert insns["m7"] < insns["portable"], insns

"""``mul``: the element-wise product of two tensors of packed codes: TFLite's int8 MUL
(EfficientNet's swish x * sigmoid(x), squeeze-and-excite's per-channel gate) and the same op on
the sub-byte path's 2/4/8-bit codes.

Integer form: both inputs minus their zero points, multiplied in int32 (|Phi| <= 255^2),
requantized by one multiplier s_1 s_2 / s_out (``m0[0]`` / ``n0[0]``) in the node's rounding
flavour (:data:`tinyopt.integer.fixedpoint.REQUANT`), plus the output zero point, clamped to the
output's code range narrowed by ``act_min`` / ``act_max``:

- TFLite (``"tflite_double"``, LiteRT BUILTIN_REF and TFLite Micro): the multiplier computed as
  both Prepares do (:func:`tinyopt.integer.ops.mul_const.product_multiplier`, then
  QuantizeMultiplier); MultiplyByQuantizedMultiplier rounds twice.
- The sub-byte path (``"floor"``, CMix-NN, :func:`tinyopt.integer.fixedpoint.requant_floor`):
  y = floor(Phi m0 / 2^(31 - n0)) + z_out, computed as t = Phi << max(n0 + 1, 0) in int32, the
  high word of the 64-bit t m0, then >> max(-(n0 + 1), 0) (every shift a floor: no rounding).
  Its multiplier is :func:`tinyopt.integer.arith.m0_n0` of s_1 s_2 / s_out, as the sub-byte
  path's other nodes.

Widths: each input and the output hold 2-, 4- or 8-bit codes (``_checks.PACKED_BITS``), packed
LSB-first in C, any zero points; the sub-byte path stores them unsigned (a signed grid with zero
point 2^(bits-1)), TFLite as int8. The two inputs may differ in bits and zero point but not in
signedness (the C descriptor carries input 1's bits, not its signedness).

Shapes: input 0 has the output's shape; input 1 has it too, or holds one value per channel
((1, 1, C), (1, C) or (C,)) broadcast over every other axis (TFLite's BroadcastMul4DSlow for the
squeeze-and-excite case); a constant operand makes a ``mul_const`` node instead. The importer
puts the full-size operand first (the product and the multiplier are symmetric, so the swap
changes no bit). The C descriptor gets the second input's zero point (``in2_zero_point``), bits
(``w_bits``: a mul has no weights) and element count (``outer``) from the deployed step's input
records (:func:`c_fields`). C: ``tn_run_mul`` (``tinyopt/deploy/c/ops/tn_mul.c``); it may run in
place over either input of the output's size in bytes: it walks the elements forward when the
output is no wider than that input and backward otherwise, so every packed element is read
before a write can reach its bits.

Cortex-M7 twin (``tinyopt/deploy/c/ops/m7/tn_mul.c``, ``tn_m7_run_mul``): 8-bit inputs and
output of any signedness and zero points, element-wise or broadcast per channel, four elements
per iteration (SXTAB16 takes out the zero points of two lanes, SMULBB / SMULTT the products);
packed 2- or 4-bit inputs and output of one width with the floor rounding (the sub-byte path),
a word of each input per iteration.
Each requantization is one SMMLAR or SMMLA and a shift, y = (SMMLA[R](Phi << S, m0, C - F [Phi
< 0])) >> K, with the output zero point folded into C; :func:`m7_plan` chooses (S, C, K, R, F)
for the node's rounding flavour and checks them against :data:`REQUANT` on every product two
8-bit codes can make (65,536 pairs), so a step whose plan fails stays on the portable kernel
(``m7_check`` gives the reason). The plan reaches the twin in the descriptor's ``bias`` (a mul
has none). Unsigned 8-bit codes enter as signed ones (the top bit flipped, the zero point minus
128), so the one signed loop serves both; packed codes the other way round (a signed code's top
bit flipped, its zero point plus 2^(bits-1)). Inputs and output of different widths, and packed
codes with TFLite's roundings, stay on the portable kernel.
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.arith import tflite_quantize_multiplier
from tinyopt.integer.fixedpoint import REQUANT
from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops import mul_const
from tinyopt.integer.ops._checks import byte_kernel, packed_bits, packed_same_shape
from tinyopt.integer.ops.registry import OpKind, TFLiteOp, register


def check(layer: IntegerLayer, where: str) -> None:
    """2/4/8-bit in and out, the output of input 0's shape, a non-negative multiplier."""
    packed_same_shape(layer, where, " (input 0 must be the full-size operand)")
    if int(layer.m0[0]) < 0:
        raise ValueError(f"{where}: m0 must be >= 0 (a product of scales), got {int(layer.m0[0])}")


def broadcast_ok(shape: tuple, out_shape: tuple) -> bool:
    """``shape`` equals ``out_shape`` or holds one value per channel of it ((1, .., 1, C))."""
    shape, out_shape = tuple(shape), tuple(out_shape)
    if shape == out_shape:
        return True
    return (len(shape) <= len(out_shape) and len(shape) >= 1 and shape[-1] == out_shape[-1]
            and all(d == 1 for d in shape[:-1]))


def check_inputs(layer: IntegerLayer, where: str, inputs: list) -> None:
    """Two inputs of 2/4/8-bit codes of one signedness: input 0 of the output's shape, input 1
    of it or one value per channel."""
    a, b = inputs
    for t in (a, b):
        packed_bits(where, f"input {t.name!r}", t.bits)
    if a.signed != b.signed:
        raise ValueError(f"{where}: input {a.name!r} is {'signed' if a.signed else 'unsigned'}"
                         f" but input {b.name!r} is {'signed' if b.signed else 'unsigned'}; mul "
                         "reads both with one signedness (store both unsigned with a zero point,"
                         " as the sub-byte path does, or both as int8)")
    if not broadcast_ok(b.shape, layer.out_shape):
        raise ValueError(f"{where}: input {b.name!r} has shape {b.shape}; mul takes the "
                         f"output's shape {tuple(layer.out_shape)} or one value per channel "
                         f"(1, .., 1, {layer.out_shape[-1]}), no other broadcasting")


def mul_codes(a, b, za: int, zb: int, multiplier: int, shift: int, rounding: str,
              out_zero_point: int, lo: int, hi: int, wrap: bool = False,
              name: str = "?") -> np.ndarray:
    """The product of two code arrays (module docstring) at any width; ``b`` broadcasts as numpy
    does.

    Arguments:
        a, b: integer codes; za, zb: their zero points.
        multiplier, shift: (m0, n0) of s_1 s_2 / s_out.
        rounding: a flavour of :data:`tinyopt.integer.fixedpoint.REQUANT`.
        out_zero_point, lo, hi: the output zero point and clamp.
        wrap, name: int32 wrap-around instead of OverflowError; the node, for messages.

    Returns:
        int32 codes in [lo, hi].

    Raises:
        OverflowError: Phi shifted left by the flavour leaves int32 and ``wrap`` is False.
    """
    prod = (np.asarray(a, np.int64) - za) * (np.asarray(b, np.int64) - zb)
    y = REQUANT[rounding](prod, multiplier, shift, wrap, name) + out_zero_point
    return np.clip(y, lo, hi).astype(np.int32)


mul_int8 = mul_codes  # the TFLite-era name (tests and callers); the arithmetic is width-free


def simulate(p, xs: list, wrap: bool) -> np.ndarray:
    layer = p.layer
    a, b = xs
    b = np.asarray(b).reshape((len(b),) + (1,) * (a.ndim - 2) + (a.shape[-1],)) \
        if b.shape[1:] != a.shape[1:] else b  # (N, C) -> (N, 1, .., C): broadcast per channel
    return mul_codes(a, b, layer.in_zero_point, p.zero_points[1], int(layer.m0[0]),
                    int(layer.n0[0]), p.rounding, layer.out_zero_point, *layer.out_range, wrap,
                    layer.name)


def macs(layer: IntegerLayer) -> int:
    """One multiplication per output element."""
    return int(np.prod(layer.out_shape))


def c_fields(step, arrays) -> dict:
    """The descriptor fields beyond the common ones, from the deployed step
    (:class:`tinyopt.integer.steps.Step`): input 1's zero point (``in2_zero_point``), bits
    (``w_bits``: a mul has no weights, so the field is free) and element count (``outer``: the
    output's size, or C when it is broadcast per channel)."""
    b = step.in_specs[1]
    return {"in2_zero_point": int(b.zero_point), "w_bits": int(b.bits),
            "outer": int(np.prod(b.shape))}


# the constants of the twin's plan, in the order tn_m7_run_mul reads them (its P_* indices)
M7_PLAN_FIELDS = ("S", "C", "K", "RND", "FIX", "LO", "HI", "ZA", "ZB", "FLIP_IN", "FLIP_OUT")


def _smmla(x, m, acc, rnd: bool) -> np.ndarray:
    """SMMLAR (``rnd``) / SMMLA on int64 arrays: acc + the high word of x m (rounded: 2^31
    added first), before the 32-bit wrap (checked by the caller)."""
    return np.asarray(acc, np.int64) + ((np.asarray(x, np.int64) * int(m)
                                         + ((1 << 31) if rnd else 0)) >> 32)


def m7_plan(step) -> dict | str:
    """The constants of the Cortex-M7 twin (module docstring) for one deployed mul step,
    checked on every product of two input codes.

    Arguments:
        step: a :class:`tinyopt.integer.steps.Step` of a mul node (its layer, its input
            records, the graph's rounding).

    Returns:
        dict of :data:`M7_PLAN_FIELDS` -> int, or a str: why the step keeps the portable kernel
        (inputs and output of different widths; a multiplier whose shifted product or rounding
        constant leaves int32; a plan that differs from the simulator on some product).
    """
    layer = step.layer
    a, b = step.in_specs
    bits = int(layer.out_bits)
    if (int(a.bits), int(b.bits)) != (bits, bits) or bits not in (2, 4, 8):
        return (f"the M7 mul takes inputs and output of one width (2, 4 or 8 bits), this one "
                f"has {a.bits}- and {b.bits}-bit inputs and a {bits}-bit output (the portable "
                "kernel)")
    rounding = layer.rounding or step.graph_rounding
    if rounding not in REQUANT:
        return f"unknown rounding flavour {rounding!r}"
    if bits < 8 and rounding != "floor":
        return (f"the M7 mul takes packed {bits}-bit codes with the floor rounding (the sub-byte "
                f"path's), not {rounding!r}")
    m0, n0 = int(layer.m0[0]), int(layer.n0[0])
    if not 0 <= m0 < (1 << 31):
        return f"m0 = {m0} is not a non-negative int32"
    if rounding == "tflite_double":  # SRDHM(x, m0) = SMMLAR(2x, m0); RoundingDivideByPOT by K
        s, k, rnd = max(n0, 0) + 1, max(-n0, 0), 1
        c, fix = ((1 << (k - 1)) if k else 0), int(k > 0)
    elif rounding == "tflite_single":  # (Phi m0 + 2^(30 - n0)) >> (31 - n0)
        s, k, rnd, fix = (n0 + 1, 0, 1, 0) if n0 >= -1 else (0, -n0 - 1, 0, 0)
        c = (1 << (k - 1)) if k else 0
    else:  # floor: the high word of (Phi << n1) m0, >> n2
        s, k, rnd, c, fix = max(n0 + 1, 0), max(-(n0 + 1), 0), 0, 0, 0
    if s > 16 or k > 30:
        return (f"multiplier exponent n0 = {n0}: the M7 mul's shift of the product (<= 16) or "
                "of the result (<= 30) cannot take it")
    # 8 bits: the signed domain, an unsigned code u enters as the int8 u - 128 (its top bit
    # flipped); 2 / 4 bits: the unsigned domain, a signed code c as c + 2^(bits - 1)
    half = 1 << (bits - 1)
    if bits == 8:
        in_off, out_off = (0 if a.signed else 128), (0 if layer.out_signed else 128)
        codes = np.arange(-128, 128, dtype=np.int64)
    else:
        in_off, out_off = (-half if a.signed else 0), (-half if layer.out_signed else 0)
        codes = np.arange(0, 1 << bits, dtype=np.int64)
    za, zb = int(a.zero_point) - in_off, int(b.zero_point) - in_off
    z_out = int(layer.out_zero_point) - out_off
    lo, hi = (int(v) - out_off for v in layer.out_range)
    da, db = codes - za, codes - zb
    if max(np.abs(da).max(), np.abs(db).max()) > (1 << 15) - 1:
        return (f"zero points {a.zero_point} / {b.zero_point} put a code minus its zero point "
                "outside int16 (the M7 mul's 16-bit lanes)")
    c += z_out << k
    if not -(1 << 31) < c < (1 << 31):  # C - F stays in int32 too
        return f"the output zero point {layer.out_zero_point} << {k} leaves int32"
    phi = np.unique(np.multiply.outer(da, db).ravel())
    try:
        want = np.clip(REQUANT[rounding](phi, m0, n0, False, layer.name) + z_out, lo, hi)
    except (OverflowError, ValueError) as exc:
        return f"the simulator's requantization refuses a product: {exc}"
    x = phi << s
    if x.min() < -(1 << 31) or x.max() >= (1 << 31):
        return f"a product shifted left by {s} leaves int32"
    t = _smmla(x, m0, c - fix * (x < 0), bool(rnd))
    if t.min() < -(1 << 31) or t.max() >= (1 << 31):
        return "the requantization's sum leaves int32"
    got = np.clip(np.clip(t >> k, -128, 127), lo, hi)  # SSAT #8 (2 / 4 bits: none), the clamp
    if not np.array_equal(got, want):
        bad = int(phi[np.argmax(got != want)])
        return (f"the M7 requantization differs from the simulator's ({rounding}) at product "
                f"{bad}")
    assert not fix or rnd, "the sign fix comes with SMMLAR only (the double rounding)"
    flip = 0x80808080 if bits == 8 else {4: 0x88888888, 2: 0xAAAAAAAA}[bits]  # each code's top bit
    flip_in = flip if bool(a.signed) == (bits < 8) else 0
    flip_out = flip if bool(layer.out_signed) == (bits < 8) else 0
    return dict(zip(M7_PLAN_FIELDS, (s, c, k, rnd, fix, lo, hi, za, zb, flip_in, flip_out)))


def m7_check(step) -> str:
    """"" when the twin runs ``step`` (:func:`m7_plan` finds exact constants), else why not."""
    plan = m7_plan(step)
    return plan if isinstance(plan, str) else ""


def m7_fields(step, emit) -> dict:
    """The twin's plan (:data:`M7_PLAN_FIELDS`, int32) in the descriptor's ``bias``."""
    plan = m7_plan(step)
    if isinstance(plan, str):  # m7_check refused: the export never asks then
        raise ValueError(f"mul {step.layer.name!r}: no M7 plan ({plan})")
    values = np.array([plan[f] for f in M7_PLAN_FIELDS], np.int64)
    return {"bias": emit("int32_t", values.astype(np.uint32).view(np.int32), "bias")}


def _import_mul(ctx, op, op_name: str) -> list[IntegerLayer]:
    """MUL of two int8 tensors: same shape, or one of them one value per channel; a MUL with a
    constant operand is a ``mul_const`` node (:mod:`tinyopt.integer.ops.mul_const`)."""
    a, b, out = int(op.inputs[0]), int(op.inputs[1]), int(op.outputs[0])
    const = mul_const.constant_operand(ctx, op, op_name, ctx.m.name(out))
    if const is not None:
        return mul_const.build(ctx, op, op_name, *const)
    sa, sb = ctx.spec(a, op_name), ctx.spec(b, op_name)
    dst = ctx.spec(out, op_name)
    if sa.shape != dst.shape and sb.shape == dst.shape:
        a, b, sa, sb = b, a, sb, sa  # the full-size operand first (the product is symmetric)
    if sa.shape != dst.shape or not broadcast_ok(sb.shape, dst.shape):
        raise ValueError(f"MUL writing {dst.name!r}: inputs {sa.name!r} {sa.shape} and "
                         f"{sb.name!r} {sb.shape} -> {dst.shape}; supported: equal shapes, or "
                         "one input with one value per channel (1, .., 1, C)")
    layer = ctx.node("mul", op_name, [a, b], out)
    real = mul_const.product_multiplier(ctx.flavour, sa.scale, sb.scale, dst.scale)
    layer.m0, layer.n0 = tflite_quantize_multiplier(real)
    layer.rounding = ctx.rounding(op_name)
    layer.act_min, layer.act_max = ctx.act_range(op.builtinOptions, out)
    return [layer]


register(OpKind("mul", "element-wise product, per-channel broadcast, 2/4/8-bit codes (TFLite "
                "int8 MUL)",
                n_inputs=2, n_multipliers=1, check=check, check_inputs=check_inputs,
                simulate=simulate,
                tflite={"MUL": TFLiteOp(_import_mul, {"litert": "tflite_double",
                                                      "tflm": "tflite_double"})},
                inplace_inputs=(0, 1), c_function="tn_run_mul", c_source="tn_mul.c",
                check_c=byte_kernel, c_fields=c_fields, macs=macs,
                m7_source="tn_mul.c", m7_function="tn_m7_run_mul", m7_check=m7_check,
                m7_fields=m7_fields))

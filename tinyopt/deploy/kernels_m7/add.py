"""The element-wise ADD of the Cortex-M7 (c/tn_m7_add.h), alone (``tn_m7_add``) or fused into
the compute step before it (``tn_m7_add_fused``: :func:`_fused_add_args`).

- ``add``: the element-wise ADD of two 8-bit tensors (TFLite's int8 ADD with its fused
  activation clamp, any rounding flavour), four elements per iteration, each requantization one
  SMMLAR / SMMLA and a shift (``c/tn_m7_add.h``); :func:`add_plan` chooses its constants and checks
  them against :mod:`tinyopt.integer.sim` on every value they can meet.
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.steps import Step
from tinyopt.names import c_comment
from tinyopt.deploy.kernels_m7.common import INT32


def _fused_add_args(step: Step, graph_rounding: str) -> list[int]:
    """tn_m7_gemm's TN_FADD constants: FADD (1: the fused ADD runs tn_m7_add_fused, exact by
    :func:`add_plan`), SLOT and tn_m7_add's constants; all 0 without a fused ADD or when its plan
    fails (then tn_m7_emit's portable arithmetic, as the ADD step's portable kernel)."""
    p = add_plan(step, graph_rounding) if step.add is not None else "no fused ADD"
    if isinstance(p, str):
        return [0] * 26
    return [1, p["SLOT"], *_add_args(p)]


def _stage(x: np.ndarray, m0: int, n0: int, flavour: str, zp: int = 0,
           pre: int = 0) -> dict | str:
    """The constants of one requantization of tn_m7_add.h (``zp`` added after it), checked.

    The stage computes ``t = SMMLAR(x << S, M, C - F * [x < 0]) >> K`` (SMMLA when R = 0) in
    int32 arithmetic (see tn_m7_add.h for why each flavour takes this form), or, when that is
    exact (R = 2: TFLite's ADD rescales the input of the larger scale by exactly 1/2), just
    ``x << S`` with S = -r >= -pre (``x`` holds ``pre`` zero low bits: x >> r). The constants
    are kept only if, on every value of ``x``, no intermediate leaves int32 and the result
    equals :data:`tinyopt.integer.sim.REQUANT` (plus ``zp``); the sign fix-up F is dropped when
    the stage is exact without it (no tie of the rounding divide among the values).

    Arguments:
        x: every value the stage can meet (int64).
        m0, n0: the multiplier and exponent; flavour: the rounding flavour; zp: the zero point.
        pre: how many low bits of every ``x`` are zero (the ADD's left shift).

    Returns:
        {"S", "M", "C", "K", "R", "F", "out"} (``out``: the results, int64), or a string saying
        why no constants are exact.
    """
    from tinyopt.integer.sim import REQUANT
    m0, n0 = int(m0), int(n0)
    try:
        want = REQUANT[flavour](x, m0, n0, False) + zp
    except (OverflowError, ValueError) as err:  # the reference itself leaves int32
        return f"the reference requantization: {err}"
    for r in range(pre + 1) if zp == 0 else ():
        if np.array_equal(x >> r, want) and np.array_equal((x >> r) << r, x):
            return {"S": -r, "M": 0, "C": 0, "K": 0, "R": 2, "F": 0, "out": want}
    if flavour == "tflite_double":
        shift, k, rnd = max(n0, 0) + 1, max(-n0, 0), 1
        c, fix = (1 << (k - 1)) if k else 0, int(k > 0)
    elif flavour == "tflite_single":
        shift, k, rnd, fix = (n0 + 1, 0, 1, 0) if n0 >= -1 else (0, -n0 - 1, 0, 0)
        c = (1 << (k - 1)) if k else 0
    else:  # floor: floor(x m0 / 2^(31 - n0))
        shift, k, rnd, c, fix = (n0 + 1, 0, 0, 0, 0) if n0 >= -1 else (0, -n0 - 1, 0, 0, 0)
    if not (0 <= shift <= 31 and 0 <= k <= 31 and INT32[0] <= m0 <= INT32[1]):
        return f"shifts of {shift} / {k} bits"
    c += zp << k
    xs = x << shift
    if xs.min() < INT32[0] or xs.max() > INT32[1] or not INT32[0] <= c <= INT32[1]:
        return f"x << {shift} or the constant {c} leaves int32"
    prod = (xs * m0 + (rnd << 31)) >> 32
    for f in ((0, 1) if fix else (0,)):
        t = c - f * (xs < 0) + prod
        if t.min() >= INT32[0] and t.max() <= INT32[1] and np.array_equal(t >> k, want):
            return {"S": shift, "M": m0, "C": c, "K": k, "R": rnd, "F": f, "out": t >> k}
    return "the SMMLAR form differs from the reference (a bug: please report it)"


def _addends(step: Step) -> tuple[tuple[int, bool, int], tuple[int, bool, int], int]:
    """(bits, signed, zero point) of the ADD's inputs 0 and 1, and which of them a fused
    compute layer writes (0 for a stand-alone ADD)."""
    other = step.in_specs[1]
    other = (int(other.bits), bool(other.signed), int(other.zero_point))
    if step.add is None:
        lay = step.layer
        return (int(lay.in_bits), bool(lay.in_signed), int(lay.in_zero_point)), other, 0
    lay = step.layer  # the compute layer: its output codes are one addend
    own = (int(lay.out_bits), bool(lay.out_signed), int(lay.out_zero_point))
    return ((own, other) if step.add_slot == 0 else (other, own)) + (int(step.add_slot),)


def add_plan(step: Step, rounding: str | None) -> dict | str:
    """The constants of the specialised ADD (tn_m7_add.h) of an ADD step, or of the residual ADD
    fused into a compute step (``step.add``: tn_m7_add_fused, the gemm kernel's epilogue), or
    why it has none.

    Both inputs take all 256 codes of an 8-bit tensor, so each input's requantization is checked
    on all of them and the output's on every sum they can form (:func:`_stage`): the plan is
    exact on any input, not only on the values of a test set. A fused compute layer's outputs
    are among those 256 codes too (tn_m7_out clamps them to its ``out_range``, inside its
    8-bit type).

    Arguments:
        step: an ADD step, or a compute step with a fused ADD; rounding: the graph's flavour
            (for a layer that names none).

    Returns:
        {"A", "B", "Q": stage constants, "XS", "OS", "ZA", "ZB", "LO", "HI", "N", "SLOT"}
        (SLOT: which input of the ADD the fused compute layer writes, 0 for an ADD step), or a
        string (the reason the step stays on the portable ADD arithmetic).
    """
    layer = step.add if step.add is not None else step.layer  # the ADD
    flavour = layer.rounding or rounding
    if flavour is None:
        return "rounding flavour unknown (the graph's was not given)"
    (bits0, signed, za), (bits1, signed1, zb), slot = _addends(step)
    if (bits0, bits1, layer.out_bits) != (8, 8, 8) or signed1 != signed:
        return (f"inputs of {bits0} / {bits1} bits ({'un' * (not signed)}signed "
                f"and {'un' * (not signed1)}signed), {layer.out_bits}-bit output: the "
                "specialised ADD takes 8-bit tensors of one signedness")
    tlo, thi = (-128, 127) if layer.out_signed else (0, 255)
    lo, hi = (int(v) for v in layer.out_range)
    if not tlo <= lo <= hi <= thi:
        return f"output range [{lo}, {hi}] outside the 8-bit [{tlo}, {thi}]"
    codes = np.arange(-128, 128, dtype=np.int64) if signed else np.arange(256, dtype=np.int64)
    ls = int(layer.left_shift)
    m0, n0 = np.atleast_1d(layer.m0), np.atleast_1d(layer.n0)
    plan = {"XS": int(signed), "OS": int(bool(layer.out_signed)), "ZA": za, "ZB": zb,
            "LO": lo, "HI": hi, "N": int(np.prod(layer.out_shape)), "SLOT": slot}
    for key, k, z in (("A", 0, plan["ZA"]), ("B", 1, plan["ZB"])):
        st = _stage((codes - z) << ls, m0[k], n0[k], flavour, pre=ls)
        if isinstance(st, str):
            return f"input {k}: {st}"
        st["S"] += ls  # the kernel shifts x - z once, by the left shift and the stage's
        plan[key] = st
    sums = np.unique(plan["A"]["out"][:, None] + plan["B"]["out"][None, :])
    st = _stage(sums, m0[2], n0[2], flavour, int(layer.out_zero_point))
    if isinstance(st, str):
        return f"output: {st}"
    plan["Q"] = st
    return plan


def _add_args(p: dict) -> list[int]:
    """tn_m7_add's / tn_m7_add_fused's constants after N: XS, OS, ZA, ZB, LO, HI, A, B, Q."""
    args = [p["XS"], p["OS"], p["ZA"], p["ZB"], p["LO"], p["HI"]]
    for key in ("A", "B", "Q"):
        args += [p[key][c] for c in ("S", "M", "C", "K", "R", "F")]
    return args


def _add_function(step: Step, index: int, graph_rounding: str, u) -> str:
    """The C of a specialised ADD step."""
    p = add_plan(step, graph_rounding)
    assert not isinstance(p, str), p  # choose() checked it
    args = [p["N"], *_add_args(p)]
    return (f"/* step {index}: {c_comment(step.name)} (add, 8-bit) */\n"
            f"static void model_step{index}(const tn_layer_t *l, const uint8_t *const *in, "
            f"uint8_t *out)\n{{\n    (void)l;\n"
            f"    tn_m7_add(in[0], in[1], out, " + ", ".join(u(a) for a in args) + ");\n}\n")

"""Per-layer kernel selection and code emission for the Cortex-M7 (``tinyopt/deploy/c/tn_m7.h``).

:func:`export_c <tinyopt.deploy.codegen.export_c>` asks :func:`choose` which kernel runs each
step and :func:`step_function` for the C of the specialised ones: a small function per step
that calls an always-inline kernel of ``tn_m7.h`` with the layer's shapes, bit widths and flags
as literal constants, so that the compiler specialises the loops to the layer (constant trip
counts, unrolled lane loops, no run-time dispatch). Steps no specialised kernel covers call the
portable kernel of their kind directly (``tn_run_pool``, ``tn_run_add``, ...), so a model links
only the kernels it uses.

Kernels:

- ``gemm``: convolution (any kernel size, stride, padding), pointwise and dense layers of any
  bit widths (those of 8-bit inputs and weights: ``conv``, ``pw`` and ``fc`` below, once
  :data:`tinyopt.integer.steps.OWN_WEIGHT_ORDER` is on), optionally fused with the max pool or
  the residual ADD after them (the ADD with the ``add`` kernel's arithmetic,
  ``tn_m7_add_fused``, where :func:`add_plan` proves it exact, else the portable one: the
  choice's ``reason`` says why);
  inputs of 1/2/4/8 bits, weights of 1/2/4/8 bits, PL or PC weight zero points, FB or ICN
  multipliers, the three rounding flavours. Two output channels x two output pixels
  per inner loop, im2col into int16 scratch (``4 * KP`` bytes, ``2 * KP`` for a single output
  pixel; KP the window length rounded up to a word of weights), two MACs per SMLAD.
- ``fc``: dense layers of 8-bit inputs and 8-bit weights (no fused ADD;
  :func:`tinyopt.integer.steps.fc_fits`), no scratch: the input read a word at a time and
  widened on the fly, each output stored as soon as it is computed, six rows per pass (32-bit
  pair sums where :func:`fc_acc32` bounds them, else four with 64-bit sums). The
  weights are exported in the order the inner loop reads them (:func:`fc_weights`, as many bytes
  as the row layout; ``Choice.weights``): rows in pairs, the two rows' codes interleaved byte by
  byte in each word, so that one SMLALD on the raw word and one SMLAD on its UXTB16 give four
  MACs (about one instruction per MAC). Where :func:`signed_weights` holds (SGW: TFLite's
  symmetric int8 weights), ``fc``, ``conv`` and ``pw`` store the weights minus their zero
  points (a pair's int16 lane 256 d_b + d_a, SXTB16): no sum of the inputs is needed.
  A small dense layer (a classifier head, :func:`fc16_fits`: at most :data:`FC16_MAX_WEIGHTS`
  weights) takes ``tn_m7_fc16`` instead: each row's w - z_w as int16 lanes
  (:func:`fc16_weights`, twice the weight bytes, the extra counted as layout bytes), seven rows
  per pass, 3 + 3 R instructions per group of four inputs (R rows; two groups per LDRD of a
  word-aligned input for R <= 5), the input zero point and the bias folded at export into each
  row's initial accumulator, and (:func:`fc16_doubled`) the lanes doubled where the SMMULR
  requantization takes 2 acc: about 5 instructions per output.
  Sub-byte dense layers take ``tn_m7_subfc`` (c/tn_m7_subfc.h: four rows per 16-bit lane,
  no scratch) or, when small (:func:`subfc16_scale`: at most :data:`FC16_MAX_WEIGHTS`
  weights and every sum bounded in 32 bits), ``tn_m7_subfc16``: int16 rows of w - z_w like
  ``tn_m7_fc16``, the sub-byte input unpacked by masks into lanes pre-scaled at export.
- ``conv`` and ``pw``: convolutions (any window, stride, padding; the first layer with 1-3 input
  channels too) and pointwise layers without padding, of 8-bit inputs and weights, no fused pool
  (:func:`tinyopt.integer.steps.conv_fits`, :func:`~tinyopt.integer.steps.pw_fits`): one kernel,
  ``tn_m7_conv``. Two pixels' windows widened into int16 lanes interleaved word by word
  (``4 * KP`` bytes of scratch, KP = KH x the window row's KW * C bytes rounded up to four),
  each row pair of weights (:func:`conv_weights`: window rows padded with the row's weight zero
  point, then :func:`fc_weights`' pair words) read once for both pixels: per group of four lanes
  one LDRD of weights, two LDRD of lanes, two UXTB16, four SMLALD and four SMLAD, i.e. 13
  instructions per 16 MACs in an assembly loop of four groups; where :func:`conv_plan` bounds
  every pair's sum in 32 bits (QUAD), two row pairs per loop instead (24 instructions per 32
  MACs; pointwise layers of at most 32 lanes with a table: int16 weights, four rows per loop,
  22); where the requantization allows (TAB), each block's weights are followed by its
  channels' constants (doubled bias, m0, a rounding constant holding the output zero point,
  the shift), about eight instructions per output; outputs written as computed (no int32
  output scratch). A fused residual ADD is applied to each output as it is computed
  (``tn_m7_add``'s arithmetic, :func:`add_plan`; the other addend's element read just before
  the sum is written over it); only when its plan fails are the pair's ``2 * CO`` int32 outputs
  kept in scratch for the portable arithmetic.
- ``depthwise``: depth multiplier 1, weights of b in (2, 4, 8) bits, channels a multiple of
  32 / b, no fused pool: 32 / b channels per word of weights, two per lane pair (SMLABB /
  SMLATT); inputs of the weights' width a word at a time (sub-byte: unsigned), other inputs
  element by element. A depthwise layer of all-ones weights (TFLite's MEAN) becomes a plain sum.
  3x3 layers of 2/4/8-bit inputs, weights and outputs, strides 1 / 2, of any rounding flavour
  (:func:`dw3_fits`: the MLPerf int8 graphs and the sub-byte Keras path alike) take the
  row kernel ``tn_m7_dw3`` instead when the plan gave the step its scratch
  (:func:`dw3_scratch_bytes`: three input rows widened to int16, channel planes; at stride 2
  with 8-bit inputs chunks of four columns of four channels): SMLAD on two taps of one
  channel, two output pixels per weight register, weights exported as [d0, d1, d1, d2] per
  kernel row, int8, or int16 pairs for asymmetric 8-bit weights (:func:`dw3_weights`,
  ``Choice.weights``). At stride 2 with 8-bit inputs and outputs, int8 weights, per-channel
  multipliers and the folded requantization (:func:`dw3_plan`'s DWQ 1 / 2) an output row
  runs in inline assembly (``tn_dw3_row2``).
- ``depthwise_scalar``: the other depthwise layers (channels not a multiple of the word, depth
  multiplier > 1, 1-bit weights): one channel at a time, shapes and widths constant.
- ``pool``: stand-alone max and average pools of 1-8-bit tensors (32-bit sums, a hardware
  divide).
- ``add``: the element-wise ADD of two 8-bit tensors (TFLite's int8 ADD with its fused
  activation clamp, any rounding flavour), four elements per iteration, each requantization one
  SMMLAR / SMMLA and a shift (``c/tn_m7_add.h``); :func:`add_plan` chooses its constants and checks
  them against :mod:`tinyopt.integer.sim` on every value they can meet.
- ``op``: an op of the registry with a Cortex-M7 twin (``OpKind.m7_function``, its C file in
  ``c/ops/m7/``) that takes the step (``OpKind.m7_check``): the step function calls the twin
  with the descriptor and the step's arena scratch (``OpKind.m7_scratch`` bytes).
- ``portable``: everything else (concat, pad, quantize, softmax; an ADD of other widths or
  whose plan fails; a depthwise layer fused with a max pool; 16/32-bit inputs).

Scratch. The gemm kernel's im2col rows and output values, the conv / pw kernel's two pixels'
int16 lanes (and, with a fused ADD, their outputs), and the output values of one pixel of the scalar
depthwise and pool kernels, live in the activation arena (fc needs none), not on the stack: the
planner gives each such step a buffer of :func:`tinyopt.integer.steps.scratch_bytes` (the one
rule, which :func:`choose` reports), alive during that step only, word-aligned
(:data:`tinyopt.integer.steps.SCRATCH_ALIGN`), at ``Step.scratch_offset``; the step function
passes ``<prefix>_arena + offset`` to its kernel.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, replace

import numpy as np

from tinyopt.integer.steps import (  # noqa: F401  (MAX_SCRATCH, KERNEL_MODES: re-exported)
    KERNEL_MODES, MAX_SCRATCH, SUB_BITS, Step, _hwc, conv_lanes, fc_fits, gemm_geometry,
    kernel_window, m7_kernel, scratch_bytes as step_scratch_bytes, scratch_parts, dw3_fits,
    dw3_weights_fit, dw3_width, dw3_scratch_bytes, kind_scratch_parts, sub_direct, sub_units,
    sub_conv_step, sub_fc_fits, sub_lane_group, sub_lanes)
from tinyopt.integer.arith import packed_bytes
from tinyopt.integer.ops.registry import REGISTRY
from tinyopt.names import c_comment

ROUNDING_ID = {"floor": 0, "tflite_single": 1, "tflite_double": 2}  # TN_FLOOR, ...


@dataclass
class Choice:
    """The kernel of one step: ``kind`` in ("gemm", "fc", "pw", "conv", "sub", "depthwise",
    "depthwise_scalar", "pool", "add", "op", "portable"), the C function model_run calls, the
    scratch bytes it needs in the arena (:func:`tinyopt.integer.steps.scratch_bytes`), the weight
    array's padding bytes (word loads of the last row), why a compute step stayed portable (or,
    for a gemm / conv / pw step, why its fused ADD kept the portable arithmetic; for a
    depthwise step, why it did not take the 3x3 row kernel), and ``weights``: the bytes the
    step's weight array must hold when its kernel reads another order than the row layout of
    :attr:`IntegerLayer.weights`. Three kernels own their weight order: ``fc`` (tn_m7_fc,
    :func:`fc_weights`), ``conv`` and ``pw`` (tn_m7_conv, :func:`conv_weights`) and the 3x3
    depthwise row kernel (``depthwise`` with ``weights`` set: tn_m7_dw3, :func:`dw3_weights`);
    None for every other kernel: the row layout."""

    kind: str
    function: str
    scratch: int = 0
    weight_pad: int = 0
    reason: str = ""
    weights: np.ndarray | None = None


def choose(step: Step, index: int, mode: str = "m7", rounding: str | None = None) -> Choice:
    """Which kernel runs ``step``.

    Arguments:
        step: a step of :func:`tinyopt.integer.steps.memory_plan`.
        index: its position (names the generated function ``model_step<index>``).
        mode: "m7" (specialised kernels where they apply) or "portable" (tinyopt_nn.c only).
        rounding: the graph's rounding flavour, for an ADD whose layer names none (without it
            such an ADD stays portable).

    Returns:
        A :class:`Choice`.

    Raises:
        ValueError: an unknown ``mode``.
    """
    kind, reason = m7_kernel(step, mode)  # the integer stage's rule (it sizes the scratch)
    layer = step.layer
    portable = Choice("portable", REGISTRY[layer.kind].c_function, reason=reason)
    if kind == "portable":
        return portable
    if kind == "op":  # the op's own Cortex-M7 twin (OpKind.m7_function, c/ops/m7/)
        return Choice("op", f"model_step{index}", scratch=step_scratch_bytes(step, mode))
    if kind == "add":
        plan = add_plan(step, rounding)
        if isinstance(plan, str):
            portable.reason = plan
            return portable
        return Choice("add", f"model_step{index}")
    scratch = step_scratch_bytes(step, mode)
    if kind == "fc":
        if fc16_fits(layer):  # tn_m7_fc16: a small layer (a head), int16 lanes
            return Choice("fc", f"model_step{index}",
                          weights=fc16_weights(layer, doubled=fc16_doubled(layer, rounding)))
        sw = signed_weights(layer)
        return Choice("fc", f"model_step{index}",
                      weights=fc_weights(layer, 6 if fc_acc32(layer, signed=sw) else 4,
                                         signed=sw))
    if kind in ("pw", "conv"):  # tn_m7_conv: row pairs over padded window rows, two pixels
        why = ""
        if step.add is not None:  # as for gemm: tn_m7_add's arithmetic where add_plan allows
            plan = add_plan(step, rounding)
            why = f"fused ADD on the portable arithmetic: {plan}" if isinstance(plan, str) else ""
        quad, tab = conv_plan(layer, rounding, fused=step.add is not None)
        return Choice(kind, f"model_step{index}", scratch=scratch,
                      weights=conv_weights(layer, quad=quad, tab=tab, rounding=rounding,
                                           signed=signed_weights(layer)),
                      reason=why)
    if kind == "sub":  # tn_m7_sub: sub-byte weights or inputs, its own weight order
        why = ""
        if step.add is not None and not (sub_conv_step(step)
                                         and subconv_add_table(step, rounding) is not None):
            plan = add_plan(step, rounding)
            why = f"fused ADD on the portable arithmetic: {plan}" if isinstance(plan, str) else ""
        weights = (subconv_weights(layer) if sub_conv_step(step)  # tn_m7_subconv
                   else subfc_weights(layer) if sub_fc_fits(step)  # tn_m7_subfc
                   else sub_weights(layer, sub_units(step)))
        return Choice("sub", f"model_step{index}", scratch=scratch, weights=weights, reason=why)
    if kind == "depthwise":  # the 3x3 row kernel where it applies (dw3_plan), else tn_m7_depthwise
        return _depthwise_choice(step, index, rounding, scratch)
    if kind != "gemm":
        return Choice(kind, f"model_step{index}", scratch=scratch, reason=reason)
    rb = int(layer.weights.shape[1])
    why = ""
    if step.add is not None:  # the fused residual ADD: tn_m7_add's arithmetic where exact
        plan = add_plan(step, rounding)
        why = f"fused ADD on the portable arithmetic: {plan}" if isinstance(plan, str) else ""
    return Choice("gemm", f"model_step{index}", scratch=scratch,
                  weight_pad=max(0, 4 * gemm_geometry(layer)["NW"] - rb), reason=why)


def _rounding(step: Step, graph_rounding: str) -> int:
    return ROUNDING_ID[step.layer.rounding or graph_rounding]


def _scratch(step: Step, arena: str, ctype: str, skip: int = 0) -> str:
    """C expression: a ``ctype`` pointer ``skip`` bytes into the step's scratch in the arena
    (through void *: the plan aligned it, SCRATCH_ALIGN)."""
    return f"({ctype} *)(void *)({arena} + {step.scratch_offset + skip}u)"


def step_function(step: Step, index: int, choice: Choice, graph_rounding: str,
                  arena: str = "model_arena") -> str:
    """The C of a specialised step (empty for a portable one).

    Arguments:
        step: the step (of a plan for the same kernels: its scratch is in the arena);
            index: its number; choice: :func:`choose`'s answer for it.
        graph_rounding: the graph's rounding flavour (for layers that name none).
        arena: the C name of the arena (``<prefix>_arena``, declared before the function).

    Returns:
        A C function definition ``static void model_step<index>(const tn_layer_t *l,
        const uint8_t *const *in, uint8_t *out)``.

    Raises:
        ValueError: the step's planned scratch is smaller than the kernel needs (a plan for
            other kernels).
    """
    if choice.kind == "portable":
        return ""
    if choice.scratch and step.scratch_bytes < choice.scratch:
        raise ValueError(f"step {index} ({step.name!r}): its kernel needs {choice.scratch} B of "
                         f"scratch, the plan gave it {step.scratch_bytes} B; plan the steps "
                         "with the same kernels (memory_plan(..., kernels=...))")
    layer = step.layer
    u = lambda v: (f"{int(v)}u" if int(v) >= 0  # noqa: E731
                   else "INT32_MIN" if int(v) == -(1 << 31) else str(int(v)))
    if choice.kind == "pool":
        return _pool_function(step, index, graph_rounding, u, arena)
    if choice.kind == "add":
        return _add_function(step, index, graph_rounding, u)
    if choice.kind == "op":  # the op's twin reads its descriptor; scratch from the plan
        scratch = _scratch(step, arena, "uint8_t") if choice.scratch else "(uint8_t *)0"
        return (f"/* step {index}: {c_comment(step.name)} ({layer.kind}, Cortex-M7 twin) */\n"
                f"static void model_step{index}(const tn_layer_t *l, const uint8_t *const *in, "
                f"uint8_t *out)\n{{\n    {REGISTRY[layer.kind].m7_function}(l, in, out, "
                f"{scratch});\n}}\n")
    zw = np.atleast_1d(np.asarray(layer.weight_zero_point, np.int64))
    top, _, left, _ = layer.padding
    rq = requant_constants(layer, graph_rounding)
    common = {"XS": int(bool(layer.in_signed)), "ZX": int(layer.in_zero_point),
              "PADZERO": int(layer.pad_mode == "zero"), "RB": int(layer.weights.shape[1]),
              # uniform zero points / multipliers: one value, a literal (no load per channel)
              "NWZP": 1 if np.all(zw == zw[0]) else len(zw), "REQ": int(bool(layer.requantize)),
              "NM": rq.pop("NM"), "ROUND": _rounding(step, graph_rounding),
              "OB": step.add.out_bits if step.add is not None else layer.out_bits}
    head = (f"/* step {index}: {c_comment(step.name)} ({layer.kind}, {layer.in_bits}-bit in, "
            f"{layer.weight_bits}-bit weights, {common['OB']}-bit out) */\n"
            f"static void model_step{index}(const tn_layer_t *l, const uint8_t *const *in, "
            f"uint8_t *out)\n{{\n")
    other = "in[1]" if step.add is not None else "in[0]"
    if choice.kind == "fc" and fc16_fits(layer):
        dbl = fc16_doubled(layer, graph_rounding)
        if choice.weights is None or not np.array_equal(choice.weights,
                                                        fc16_weights(layer, doubled=dbl)):
            raise ValueError(f"step {index} ({step.name!r}): its tn_m7_fc16 weights were not "
                             f"packed for rounding {graph_rounding!r} (doubled={dbl}); choose "
                             "the kernel with the graph's rounding (choose(..., rounding=...))")
        args = [int(np.prod(layer.in_shape)), layer.out_channels, common["XS"],
                int(dbl), common["REQ"], common["NM"],
                common["ROUND"], common["OB"], *rq.values()]
        return (head + "    tn_m7_fc16(l, in[0], out, " + ", ".join(u(a) for a in args)
                + ");\n}\n")
    if choice.kind == "fc":
        args = [int(np.prod(layer.in_shape)), layer.out_channels, common["XS"], common["ZX"],
                common["NWZP"], int(zw[0]), common["REQ"], common["NM"], common["ROUND"],
                common["OB"], int(fc_acc32(layer, signed=signed_weights(layer))),
                int(signed_weights(layer)), *rq.values()]
        return (head + "    tn_m7_fc(l, in[0], out, " + ", ".join(u(a) for a in args)
                + ");\n}\n")
    if choice.kind in ("pw", "conv"):
        h, w, c = _hwc(layer.in_shape)
        oh, ow, co = _hwc(layer.out_shape)
        kh, kw = kernel_window(layer)
        args = [2 if step.add is not None else 0, h, w, c, oh, ow, co, kh, kw, layer.stride[0],
                layer.stride[1], top, left, *layer.dilation, common["XS"], common["ZX"],
                common["PADZERO"],
                conv_lanes(layer)[0], int(_inside(layer, gemm_geometry(layer))),
                *conv_plan(layer, graph_rounding, fused=step.add is not None),
                w16_shift(layer, graph_rounding, fused=step.add is not None),
                int(signed_weights(layer)), common["NWZP"],
                int(zw[0]), common["REQ"],
                common["NM"], common["ROUND"], common["OB"], *rq.values(),
                *_fused_add_args(step, graph_rounding)]
        lanes, _ = scratch_parts(step)  # the int32 outputs of a fused ADD follow the lanes
        ftab, ft = w16_add_table(step, graph_rounding), "(const int32_t *)0, 0u"
        if ftab is not None:  # the fused ADD by its table (tn_m7_cv_addtab), code 0's entry
            head += ("    static const int32_t addtab[256] = {"
                     + ", ".join(u(t) for t in ftab[0]) + "};\n")
            ft = f"addtab + {128 if layer.out_signed else 0}, {ftab[1]}u"
        return (head + f"    tn_m7_conv(l, in[0], {other}, out, "
                f"{_scratch(step, arena, 'uint32_t')},\n               "
                f"{_scratch(step, arena, 'int32_t', lanes)}, "
                + ", ".join(u(a) for a in args) + f",\n               {ft});\n}}\n")
    if choice.kind == "sub" and sub_conv_step(step):
        return head + _subconv_call(step, common, zw, rq, graph_rounding, arena, u) + "}\n"
    if choice.kind == "sub" and sub_fc_fits(step):
        return head + _subfc_call(step, common, zw, rq, u) + "}\n"
    if choice.kind == "sub":
        return head + _sub_call(step, common, zw, rq, graph_rounding, arena, u) + "}\n"
    if choice.kind == "depthwise_scalar":
        h, w, c = _hwc(layer.in_shape)
        oh, ow, co = _hwc(layer.out_shape)
        kh, kw = kernel_window(layer)
        args = [h, w, c, oh, ow, kh, kw, layer.stride[0], layer.stride[1], top, left,
                layer.in_bits, common["XS"], common["ZX"], layer.weight_bits, common["PADZERO"],
                common["RB"], layer.depth_multiplier, common["NWZP"], int(zw[0]),
                common["REQ"], common["NM"], common["ROUND"], common["OB"],
                int(step.add is not None), *rq.values()]
        return (head + f"    tn_m7_dw_scalar(l, in[0], {other}, out, "
                f"{_scratch(step, arena, 'int32_t')}, "
                + ", ".join(u(a) for a in args) + ");\n}\n")
    if choice.kind == "depthwise" and choice.weights is not None:  # the row kernel
        return head + _dw3_call(step, graph_rounding, u, arena) + "}\n"
    if choice.kind == "depthwise":
        h, w, c = _hwc(layer.in_shape)
        oh, ow, _ = _hwc(layer.out_shape)
        kh, kw = kernel_window(layer)
        allones = int(bool(np.all(layer.weights == _ones_row(layer)) and not zw.any()))
        args = [h, w, c, oh, ow, kh, kw, layer.stride[0], layer.stride[1], top, left,
                layer.weight_bits, layer.in_bits, common["XS"], common["ZX"], common["PADZERO"],
                common["RB"],
                common["NWZP"], common["REQ"], common["NM"], common["ROUND"], common["OB"],
                int(step.add is not None), int(zw[0]), allones, *rq.values()]
        return (head + f"    tn_m7_depthwise(l, in[0], {other}, out, "
                + ", ".join(u(a) for a in args) + ");\n}\n")
    geo = gemm_geometry(layer)
    mode = 1 if step.pool is not None else 2 if step.add is not None else 0
    pool = [0] * 8
    if step.pool is not None:
        p = step.pool
        pt, _, pl, _ = p.padding
        poh, pow_, _ = _hwc(p.out_shape)
        pool = [p.pool_size[0], p.pool_size[1], p.stride[0], p.stride[1], pt, pl, poh, pow_]
    args = [geo["H"], geo["W"], geo["C"], geo["OH"], geo["OW"], layer.out_channels, geo["KH"],
            geo["KW"], layer.stride[0] if layer.kind != "dense" else 1,
            layer.stride[1] if layer.kind != "dense" else 1,
            top if layer.kind != "dense" else 0, left if layer.kind != "dense" else 0,
            layer.in_bits, common["XS"], common["ZX"], common["PADZERO"], layer.weight_bits,
            common["RB"], common["NWZP"], int(bool(zw.any())), int(zw[0]), common["REQ"],
            common["NM"],
            common["ROUND"], common["OB"], mode, *pool, int(_inside(layer, geo)), *rq.values(),
            *_fused_add_args(step, graph_rounding)]
    im2col, _ = scratch_parts(step)  # the int32 outputs follow the int16 rows
    return (head + f"    tn_m7_gemm(l, in[0], {other}, out, {_scratch(step, arena, 'int16_t')},\n"
            f"               {_scratch(step, arena, 'int32_t', im2col)},\n               "
            + ", ".join(u(a) for a in args) + ");\n}\n")


def _row_zero_points(layer, n: int) -> np.ndarray:
    """The weight zero point of each of the ``n`` rows, int64."""
    return np.broadcast_to(np.atleast_1d(np.asarray(layer.weight_zero_point, np.int64)),
                           (n,)).copy()


def fc_acc32(layer, signed: bool = False) -> bool:
    """Does tn_m7_fc keep each row pair's sum R in 32 bits (ACC32, c/tn_m7_gemm.h: blocks of
    three pairs)? Only when, for every pair (a, b) and every input the layer can receive,
    B = sum (b - 128) x' (``signed``, the weights stored minus their zero points,
    :func:`signed_weights`: sum (b - z_b) x') lies in [-2^23, 2^23) (then 256 B, recovered from
    R - S_a modulo 2^32, fits in int32): bounded exactly over the input codes' box from the
    weights themselves, sum_k max((b_k - 128) x'_lo, (b_k - 128) x'_hi) and the same minimum.
    A dense layer of 8-bit weights only; False for any other layer."""
    if layer.kind != "dense" or layer.weight_bits != 8 or layer.in_bits != 8:
        return False
    w = np.asarray(layer.weights, np.int64).reshape(len(layer.weights), -1)
    z = int(layer.in_zero_point)
    lo, hi = (-128, 127) if layer.in_signed else (0, 255)
    zb = _row_zero_points(layer, len(w))[:, None] if signed else 128
    b = (w - zb)[1:len(w) - len(w) % 2:2]  # the b rows of the pairs (the odd last row has none)
    if not len(b):
        return False
    top = np.maximum(b * (lo - z), b * (hi - z)).sum(axis=1)
    bottom = np.minimum(b * (lo - z), b * (hi - z)).sum(axis=1)
    return bool(top.max() < (1 << 23) and bottom.min() >= -(1 << 23))


def signed_weights(layer) -> bool:
    """Can tn_m7_fc / tn_m7_conv take ``layer``'s weights minus their zero points (SGW = 1,
    c/tn_m7_gemm.h)? Then no sum of the inputs is needed for the zero points (the window sums,
    tn_m7_fc's pass over the input and one multiply per output go). Each d = w - z_w must fit
    int8 and each pair's lane 256 d_b + d_a (rows 2i, 2i + 1, the padded window rows of a
    convolution) int16; true for the symmetric int8 weights of TFLite ([-127, 127]). An 8-bit
    dense, pointwise or conv2d layer; False for any other."""
    if (layer.kind not in ("dense", "pointwise", "conv2d") or layer.weight_bits != 8
            or layer.in_bits != 8):
        return False
    rows = (_padded_rows(layer) if layer.kind != "dense"
            else np.asarray(layer.weights, np.uint8).reshape(len(layer.weights), -1))
    d = rows.astype(np.int64) - _row_zero_points(layer, len(rows))[:, None]
    if d.min() < -128 or d.max() > 127:
        return False
    m = len(d) - len(d) % 2
    lane = 256 * d[1:m:2] + d[0:m:2]
    return bool(not lane.size or (lane.min() >= -(1 << 15) and lane.max() < (1 << 15)))


def _signed_rows(rows: np.ndarray, layer, kernel: str) -> np.ndarray:
    """tn_m7_fc / tn_m7_conv's SGW codes of ``rows`` (uint8 [N, K]), to be packed as codes are
    (the b codes of whole groups of four flipped by ^ 0x80 there): in the first K & ~3 columns a
    row pair's lane 256 d_b + d_a as int16 split into its bytes (a: the low byte, b: the high
    byte, with the borrow of a negative d_a, pre-flipped), elsewhere (tails, the last row of an
    odd N) int8 d = w - z_w (:func:`signed_weights`).

    Raises:
        ValueError: weights minus their zero points outside int8 (``kernel`` names the kernel
            in the message)."""
    if not signed_weights(layer):
        raise ValueError(f"layer {layer.name!r}: its weights minus their zero points do not "
                         f"fit {kernel}'s signed lanes (signed_weights); export with "
                         "signed=False")
    d = rows.astype(np.int64) - _row_zero_points(layer, len(rows))[:, None]
    out = (d & 0xFF).astype(np.uint8)
    m, k4 = len(d) - len(d) % 2, rows.shape[1] - rows.shape[1] % 4
    lane = 256 * d[1:m:2, :k4] + d[0:m:2, :k4]
    out[1:m:2, :k4] = ((lane >> 8) & 0xFF).astype(np.uint8) ^ np.uint8(0x80)
    return out


def fc_weights(layer, block: int = 4, signed: bool = False) -> np.ndarray:
    """The weight bytes of a dense (or pointwise) layer in tn_m7_fc's order (c/tn_m7_gemm.h;
    blocks of two: the pair words of tn_m7_conv, :func:`conv_weights`): blocks of ``block``
    rows (6: three pairs, tn_m7_fc with ACC32, :func:`fc_acc32`; 4: two pairs a, b; 2: one
    pair), per group of four inputs k..k+3 each pair's words
    [a_k, b_k ^ 0x80, a_{k+2}, b_{k+2} ^ 0x80], [a_{k+1}, b_{k+1} ^ 0x80, a_{k+3}, b_{k+3} ^ 0x80],
    then each pair's K % 4 tail codes (a's, then b's); the rows left over in smaller blocks of
    the same form (six: a block of two pairs if four or five are left; then one pair if two or
    three are); the last row of an odd N as it is. A permutation of the rows' bytes (the 0x80
    flips aside): N K bytes, as many as the row layout.

    Arguments:
        layer: a dense or pointwise layer of 8-bit weights (:func:`tinyopt.integer.steps.fc_fits`,
            :func:`~tinyopt.integer.steps.pw_fits`); block: 6 or 4 (tn_m7_fc) or 2 (the pairs
            of :func:`conv_weights`).

    Returns:
        uint8 array of N * K bytes.

    Raises:
        ValueError: not a dense or pointwise layer of 8-bit weights, or a block other than 2,
            4, 6; ``signed`` weights that :func:`signed_weights` refuses.
    """
    if layer.kind not in ("dense", "pointwise") or layer.weight_bits != 8:
        raise ValueError(f"layer {layer.name!r}: fc_weights packs dense and pointwise layers of "
                         f"8-bit weights, not a {layer.weight_bits}-bit {layer.kind} layer")
    if block not in (2, 4, 6):
        raise ValueError(f"fc_weights: block must be 2, 4 or 6 rows, got {block!r}")
    w = np.asarray(layer.weights, np.uint8).reshape(len(layer.weights), -1)
    if signed:
        w = _signed_rows(w, layer, "tn_m7_fc")
    n, k = w.shape
    k4 = k - k % 4
    parts = []

    def pack(rows: np.ndarray) -> None:  # rows [2P, K]: P pairs (a = even, b = odd)
        a, b = rows[0::2], rows[1::2]
        bf = b[:, :k4] ^ np.uint8(0x80)
        a4, b4 = a[:, :k4].reshape(len(a), -1, 4), bf.reshape(len(a), -1, 4)
        words = np.stack([a4[..., 0], b4[..., 0], a4[..., 2], b4[..., 2],
                          a4[..., 1], b4[..., 1], a4[..., 3], b4[..., 3]], axis=-1)
        parts.append(words.transpose(1, 0, 2).ravel())  # [group, pair, 8 bytes]
        for p in range(len(a)):
            parts.extend([a[p, k4:], b[p, k4:]])

    c = 0
    while c + block <= n:
        pack(w[c:c + block])
        c += block
    for rest in (4, 2):  # the rows left over, as tn_m7_fc takes them
        if rest < block and n - c >= rest:
            pack(w[c:c + rest])
            c += rest
    if c < n:
        parts.append(w[c])
    out = np.concatenate(parts).astype(np.uint8)
    assert out.size == n * k
    return out


# Dense layers of at most this many weights (N K) take tn_m7_fc16 (c/tn_m7_gemm.h): their rows
# as int16 lanes, twice the flash of the weights (the extra bytes counted as layout bytes,
# Export.weight_pad_bytes), for the classifier heads whose fixed costs tn_m7_fc's layout leaves.
FC16_MAX_WEIGHTS = 4096
FC16_ROWS = 7  # rows per block (seven accumulators: tn_m7_fc16's registers)


def fc16_fits(layer) -> bool:
    """Does a dense layer of tn_m7_fc (:func:`tinyopt.integer.steps.fc_fits`) take its small-layer
    form tn_m7_fc16 (c/tn_m7_gemm.h)? When it has at most :data:`FC16_MAX_WEIGHTS` weights (and
    8-bit inputs and weights and a bias, which its layout holds: False for any other layer)."""
    return bool(layer.kind == "dense" and layer.weight_bits == 8 and layer.in_bits == 8
                and layer.weights is not None and layer.bias is not None
                and int(np.prod(layer.in_shape)) * int(layer.out_channels) <= FC16_MAX_WEIGHTS)


def fc16_doubled(layer, graph_rounding: str | None) -> bool:
    """Does tn_m7_fc16 store 2 d and 2 C (DBL, c/tn_m7_gemm.h: the accumulator is then the SMMULR
    operand of tn_m7_out's FAST = 3 form)? Exactly where that form applies
    (:func:`requant_constants`: TFLite double rounding, |acc| < 2^30, so 2 acc fits int32)."""
    rounding = layer.rounding or graph_rounding
    return bool(layer.requantize and rounding == "tflite_double"
                and requant_constants(layer, rounding)["FAST"] == 3)


def fc16_weights(layer, doubled: bool = False) -> np.ndarray:
    """The weight bytes of a dense layer in tn_m7_fc16's layout (c/tn_m7_gemm.h): blocks of
    :data:`FC16_ROWS` rows, then one of the N % 7 rows left; per block each row's constant
    C = bias - z_x sum_k d_k (int32 modulo 2^32, d = w - z_w), then per group of four inputs
    k..k+3 each row's int16 lanes [d_k, d_k+2], [d_k+1, d_k+3], then each row's K % 4 tail lanes
    (int16) and zeros to a whole word; little-endian. ``doubled``: 2 d and 2 C
    (:func:`fc16_doubled`).

    Arguments:
        layer: a dense layer of 8-bit inputs and weights with a bias.
        doubled: store 2 d and 2 C (only exact where :func:`fc16_doubled` says so).

    Returns:
        uint8 array: per block 4 R + 4 R K // 4 * 2 + the tails' bytes rounded up to a word
        (about 2 N K + 4 N bytes).

    Raises:
        ValueError: not a dense layer of 8-bit inputs and weights, or no bias.
    """
    if layer.kind != "dense" or layer.weight_bits != 8 or layer.in_bits != 8:
        raise ValueError(f"layer {layer.name!r}: fc16_weights packs dense layers of 8-bit inputs "
                         f"and weights, not a {layer.weight_bits}-bit {layer.kind} layer of "
                         f"{layer.in_bits}-bit inputs")
    if layer.bias is None:
        raise ValueError(f"layer {layer.name!r}: fc16_weights needs the layer's bias (none set)")
    w = np.asarray(layer.weights, np.int64).reshape(len(layer.weights), -1)
    n, k = w.shape
    d = (w - _row_zero_points(layer, n)[:, None]) * (2 if doubled else 1)
    bias = np.broadcast_to(np.asarray(layer.bias, np.int64), (n,))
    const = (bias * (2 if doubled else 1) - int(layer.in_zero_point) * d.sum(axis=1)) % (1 << 32)
    k4 = k - k % 4
    parts = []
    for c in range(0, n, FC16_ROWS):
        rows = d[c:c + FC16_ROWS]
        parts.append(const[c:c + FC16_ROWS].astype("<u4").view(np.uint8))
        g = rows[:, :k4].reshape(len(rows), -1, 4)[..., [0, 2, 1, 3]]  # [row, group, lanes]
        parts.append(np.ascontiguousarray(g.transpose(1, 0, 2), "<i2").view(np.uint8).ravel())
        tail = np.ascontiguousarray(rows[:, k4:], "<i2").view(np.uint8).ravel()
        parts.append(np.concatenate([tail, np.zeros(-len(tail) % 4, np.uint8)]))
    return np.concatenate(parts).astype(np.uint8)


# ------------------------------------------------ tn_m7_sub (c/tn_m7_sub.h), issues 29 and 27
def _sub_pairs(bits: int, g: int) -> list[tuple[int, int]]:
    """The lane pairs (element indices inside a unit of ``g``) that unpacking the unit's words of
    ``bits``-bit codes gives, in order (tn_pair / tn_sub_xpair: (e_s, e_{s + 16/bits}) per word;
    8 bits: (0, 2), (1, 3))."""
    n = 32 // bits
    return [(j * n + s, j * n + s + n // 2) for j in range(g // n) for s in range(n // 2)]


def sub_weights(layer, units: int | None = None) -> np.ndarray:
    """The weight bytes of a step of tn_m7_sub (c/tn_m7_sub.h): every row's codes permuted inside
    each unit of G = 32 / min(input bits, weight bits) codes so that weight lane pair q (of the
    row's words, as tn_pair unpacks them) holds the weights of input lane pair q; the K % G tail
    as it is; each row packed as :func:`tinyopt.integer.graph.pack` packs it (as many bytes as
    the row layout), or, with ``units`` = KU > K (:func:`tinyopt.integer.steps.sub_units`: a
    gathered window completed to whole units), each row padded with code 0 to KU codes first
    (no tail; KU WB / 8 bytes per row, the extra bytes beyond the row layout count as pad bytes).

    Arguments:
        layer: a dense, pointwise or convolution layer of 1/2/4/8-bit weights and inputs
            (:func:`tinyopt.integer.steps.sub_fits`).
        units: KU, the codes per window the kernel reads (None or K: the row layout's size).

    Returns:
        uint8 array of the row layout's size (or N rows of KU WB / 8 bytes).

    Raises:
        ValueError: weights or inputs of other widths, or a layer without weights.
    """
    from tinyopt.integer.graph import pack, unpack
    wb, xb = int(layer.weight_bits), int(layer.in_bits)
    if layer.weights is None or wb not in SUB_BITS or xb not in SUB_BITS:
        raise ValueError(f"layer {layer.name!r}: sub_weights packs layers of 1/2/4/8-bit weights "
                         f"and inputs, not {wb}-bit weights and {xb}-bit inputs")
    rows = np.asarray(layer.weights, np.uint8)
    k = int(np.prod(layer.weight_shape)) // len(rows)
    codes = unpack(rows, wb, k)
    g = 32 // min(wb, xb)
    padded = units is not None and units != k
    if padded:
        if units < k or units % g:
            raise ValueError(f"layer {layer.name!r}: sub_weights pads rows of {k} codes to whole "
                             f"units of {g}, not to {units}")
        codes = np.concatenate([codes, np.zeros((len(rows), units - k), codes.dtype)], axis=1)
        k = units
    perm = np.zeros(g, np.int64)  # unit position -> input index inside the unit
    per_word, half = 32 // wb, 16 // wb
    for q, (i, j) in enumerate(_sub_pairs(xb, g)):
        t, s = divmod(q, half)
        perm[t * per_word + s], perm[t * per_word + s + half] = i, j
    full = k - k % g
    blocks = codes[:, :full].reshape(len(rows), -1, g)[:, :, perm].reshape(len(rows), full)
    out = pack(np.concatenate([blocks, codes[:, full:]], axis=1), wb)
    assert out.shape == ((len(rows), packed_bytes(k, wb)) if padded else rows.shape)
    return out.ravel()


def _sub_call(step: Step, common: dict, zw: np.ndarray, rq: dict, graph_rounding: str,
              arena: str, u) -> str:
    """The body of a tn_m7_sub step: its call with the layer's constants."""
    layer = step.layer
    geo = gemm_geometry(layer)
    dense = layer.kind == "dense"
    top, _, left, _ = (0, 0, 0, 0) if dense else layer.padding
    pool = [0] * 8
    if step.pool is not None:
        p = step.pool
        pt, _, pl, _ = p.padding
        poh, pow_, _ = _hwc(p.out_shape)
        pool = [p.pool_size[0], p.pool_size[1], p.stride[0], p.stride[1], pt, pl, poh, pow_]
    mode = 1 if step.pool is not None else 2 if step.add is not None else 0
    ku = sub_units(step)  # the row bytes: KU codes (padded rows) or the row layout's
    args = [geo["H"], geo["W"], geo["C"], geo["OH"], geo["OW"], layer.out_channels, geo["KH"],
            geo["KW"], 1 if dense else layer.stride[0], 1 if dense else layer.stride[1], top,
            left, layer.in_bits, common["XS"], common["ZX"], common["PADZERO"],
            layer.weight_bits, packed_bytes(ku, layer.weight_bits), common["NWZP"],
            int(bool(zw.any())), int(zw[0]), common["REQ"], common["NM"], common["ROUND"],
            common["OB"], mode, int(sub_direct(step)), ku, *pool, *rq.values(),
            *_fused_add_args(step, graph_rounding)]
    gather, best = scratch_parts(step)  # the gathered window, then a fused pool's maxima
    other = "in[1]" if step.add is not None else "in[0]"
    bp = _scratch(step, arena, "int32_t", gather) if best else "(int32_t *)0"
    gp = _scratch(step, arena, "uint8_t") if gather else "(uint8_t *)0"
    return (f"    tn_m7_sub(l, in[0], {other}, out, {bp}, {gp},\n              "
            + ", ".join(u(a) for a in args) + ");\n")


def _x_box(layer) -> int:
    """max |x'| over a window's lanes: x - z_x of every input code, a padded tap's 0 - z_x or
    0, a padding lane's 0."""
    xb, z = int(layer.in_bits), int(layer.in_zero_point)
    lo = -(1 << (xb - 1)) if layer.in_signed else 0
    return max(abs(lo - z), abs(lo + (1 << xb) - 1 - z), abs(z))


def _subconv_rows(layer) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The codes of tn_m7_subconv's rows as its lanes order them: [N4, KP] (each window row
    padded to KWCP lanes with the row's weight zero point, N rounded up to a block of four
    with rows of code 0), and the lane pairs (i_q, j_q) of a pixel's window in word order."""
    kh, kw = kernel_window(layer)
    kwcp, kp = sub_lanes(layer)
    g = sub_lane_group(layer)
    from tinyopt.integer.graph import unpack
    n = len(layer.weights)
    row = kw * _hwc(layer.in_shape)[2]
    codes = unpack(np.asarray(layer.weights, np.uint8), int(layer.weight_bits), kh * row)
    zw = np.broadcast_to(np.atleast_1d(np.asarray(layer.weight_zero_point, np.int64)), (n,))
    padded = np.zeros((-(-n // 4) * 4, kh, kwcp), np.int64)
    padded[:n, :, :row] = codes.reshape(n, kh, row)
    padded[:n, :, row:] = zw[:, None, None]
    pairs = [(base + j, base + j + g // 2) for base in range(0, kp, g) for j in range(g // 2)]
    return padded.reshape(len(padded), kp), pairs


def subconv_raw(layer) -> int:
    """RAW of tn_m7_subconv (c/tn_m7_subconv.h) for a layer of 4-bit weights: 2 when, for every
    block of four rows and every input, 16 |A_1|, 256 |A_2| and 4096 |A_3 - 8 sum x'| stay below
    2^31 (A_r = sum w_r x' of row r of the block: the sums the loop keeps scaled), 1 when the
    first two do, else 0 (each row masked after a shift, unscaled). Bounded from the weights
    themselves, sum_k |w_k| max |x'|; 0 for other widths (2-bit weights: scaled by
    steps.sub_conv_fits' bound, whatever the weights)."""
    if int(layer.weight_bits) != 4:
        return 0
    rows, _ = _subconv_rows(layer)
    dx = _x_box(layer)
    blocks = rows.reshape(-1, 4, rows.shape[1])
    top = (1 << 31)
    fit1 = bool((16 * np.abs(blocks[:, 1]).sum(axis=1) * dx < top).all()
                and (256 * np.abs(blocks[:, 2]).sum(axis=1) * dx < top).all())
    fit3 = bool((4096 * np.abs(blocks[:, 3] - 8).sum(axis=1) * dx < top).all())
    return 2 if fit1 and fit3 else 1 if fit1 else 0


def subconv_weights(layer) -> np.ndarray:
    """The weight bytes of a step of tn_m7_subconv (c/tn_m7_subconv.h, its comment): rows padded as
    :func:`_subconv_rows`, in blocks of four; per block and lane pair q (window order) one word
    of 4-bit weights (nibble r: row r at i_q, nibble 4 + r: row r at j_q; nibble 3 and 7 stored
    ^ 8 when :func:`subconv_raw` is 2), or per two lane pairs q, q + 1 one word of 2-bit weights
    (crumbs r, 4 + r, 8 + r, 12 + r: row r at i_q, i_{q+1}, j_q, j_{q+1}). ceil(N / 4) 4 KP WB / 8
    bytes.

    Arguments:
        layer: a conv2d or pointwise layer of 2 or 4-bit weights
            (:func:`tinyopt.integer.steps.sub_conv_fits`).

    Returns:
        uint8 array.

    Raises:
        ValueError: another kind of layer or weight width.
    """
    wb = int(layer.weight_bits)
    if layer.kind not in ("conv2d", "pointwise", "dense") or wb not in (2, 4) or (
            layer.kind == "dense" and len(layer.in_shape) != 1):
        raise ValueError(f"layer {layer.name!r}: subconv_weights packs conv2d, pointwise and "
                         f"dense (1-D input) layers of 2 or 4-bit weights, not a {wb}-bit "
                         f"{layer.kind} layer of input shape {tuple(layer.in_shape)}")
    rows, pairs = _subconv_rows(layer)
    raw = subfc_plan(layer)[0] if layer.kind == "dense" else subconv_raw(layer)
    if wb == 4 and raw == 2:
        rows = rows.copy()
        rows[3::4] ^= 8
    blocks = rows.reshape(-1, 4, rows.shape[1])  # [block, r, lane]
    i = np.array([a for a, _ in pairs])
    j = np.array([b for _, b in pairs])
    if wb == 4:  # [block, q, 8 nibbles]: rows at i_q, then rows at j_q
        fields = np.concatenate([blocks[:, :, i], blocks[:, :, j]], axis=1).transpose(0, 2, 1)
    else:  # [block, q / 2, 16 crumbs]: rows at i_q, i_{q+1}, j_q, j_{q+1}
        fi, fj = blocks[:, :, i], blocks[:, :, j]
        fields = np.concatenate([fi[:, :, 0::2], fi[:, :, 1::2], fj[:, :, 0::2], fj[:, :, 1::2]],
                                axis=1).transpose(0, 2, 1)
    shifts = np.arange(fields.shape[-1], dtype=np.uint64) * wb
    words = (fields.astype(np.uint64) << shifts).sum(axis=-1).astype("<u4")
    return words.reshape(-1).view(np.uint8).copy()


def subfc_plan(layer) -> tuple[int, int]:
    """(RAW, KC) of tn_m7_subfc (c/tn_m7_subfc.h) for a dense layer of
    :func:`tinyopt.integer.steps.sub_fc_fits`: 4-bit weights take RAW 2 (row 3 unmasked) over
    the whole input when :func:`subconv_raw` allows it (KC = all ceil(K XB / 32) input words), else
    in chunks of KC words short enough that the loop's scaled sums stay exact whatever the
    weights (16 * 15, 256 * 15 and 4096 * 8 times max |x'| per input: KC words of 32 / XB
    inputs below 2^31), each chunk's sums unscaled and added; :func:`subconv_raw`'s level over
    the whole input if such chunks would be shorter than four words. 2-bit weights: RAW 0 (their
    layout needs none), one chunk (the bound of sub_fc_fits)."""
    xb = int(layer.in_bits)
    words = -(-int(layer.in_shape[0]) * xb // 32)
    if int(layer.weight_bits) != 4:
        return 0, words
    raw = subconv_raw(layer)
    if raw == 2:
        return 2, words
    kc = ((1 << 31) - 1) // (4096 * 8 * _x_box(layer)) // (32 // xb)
    return (2, min(kc, words)) if kc >= 4 else (raw, words)


def subfc_oct(layer) -> int:
    """The chunk (input words) of tn_m7_subfc's blocks of eight rows (c/tn_m7_subfc.h) for a
    dense layer of :func:`tinyopt.integer.steps.sub_fc_fits`, or 0 where it keeps blocks of
    four. Blocks of eight take inputs whose lanes need no offset (x' = the code: z_x = 0 for
    8-bit and unsigned sub-byte inputs, z_x = -2^(b-1) for signed sub-byte ones; an offset
    would need a fifteenth register) and at least eight rows; 4-bit weights at RAW 2
    (:func:`subfc_plan`, its chunk); 2-bit weights: the whole input where every block of eight
    keeps 4^r |A_r| (r = 1 .. 6) and 16384 |A_7 - 2 sum x'| below 2^31 for every input (bounded
    from the weights, 4^r sum_k |w_r| max |x'|), else chunks short enough whatever the weights
    (32768 max |x'| per input).

    Arguments:
        layer: a dense layer of :func:`tinyopt.integer.steps.sub_fc_fits`.

    Returns:
        the chunk in input words (at least 1), or 0: blocks of four only.
    """
    xb, zx, wb = int(layer.in_bits), int(layer.in_zero_point), int(layer.weight_bits)
    dx = -zx if xb == 8 else ((1 << (xb - 1)) if layer.in_signed else 0) + zx
    if dx != 0 or int(layer.out_channels) < 8 or wb not in (2, 4):
        return 0
    raw, kc = subfc_plan(layer)
    if wb == 4:
        return kc if raw == 2 else 0
    rows, _ = _subconv_rows(layer)
    n8 = int(layer.out_channels) // 8 * 8
    blocks = rows[:n8].reshape(-1, 8, rows.shape[1])
    box, top = _x_box(layer), 1 << 31
    fit = all(bool(((4 ** r) * np.abs(blocks[:, r]).sum(axis=1) * box < top).all())
              for r in range(1, 7))
    fit = fit and bool((16384 * np.abs(blocks[:, 7] - 2).sum(axis=1) * box < top).all())
    words = -(-int(layer.in_shape[0]) * xb // 32)
    return words if fit else max(1, min(words, (top - 1) // (32768 * box) // (32 // xb)))


def _oct_words(layer, quads: np.ndarray) -> np.ndarray:
    """The first N // 8 blocks of eight rows of :func:`subfc_weights` (``quads``: its blocks of
    four, the same size): 4-bit weights, two blocks of four's words of each lane pair side by
    side; 2-bit, per lane pair q a word, lanes sum_r 4^r w_r at i_q and j_q (row 7 ^ 2).

    Arguments:
        layer: a dense layer where :func:`subfc_oct` is nonzero.
        quads: :func:`subconv_weights` of it.

    Returns:
        uint8 array of 2 (N // 8) blocks of four's bytes.
    """
    n = int(layer.out_channels)
    rows, pairs = _subconv_rows(layer)
    if int(layer.weight_bits) == 4:  # a block of four: 2 KP bytes
        octs = quads[:n // 8 * 2 * 2 * rows.shape[1]]
        words = octs.view("<u4").reshape(n // 8, 2, -1).transpose(0, 2, 1)
        return words.reshape(-1).view(np.uint8)
    blocks = rows[:n // 8 * 8].reshape(n // 8, 8, rows.shape[1]).copy()
    blocks[:, 7] ^= 2
    lanes = (blocks << (2 * np.arange(8)[None, :, None])).sum(axis=1)  # [block, lane]
    i = np.array([a for a, _ in pairs])
    j = np.array([b for _, b in pairs])
    words = (lanes[:, i] | (lanes[:, j] << 16)).astype("<u4")
    return words.reshape(-1).view(np.uint8)


def subfc_weights(layer) -> np.ndarray:
    """The weight bytes of a step of tn_m7_subfc (c/tn_m7_subfc.h): :func:`subconv_weights`'
    blocks of four rows (RAW of :func:`subfc_plan`), but when N % 4 is 1 or 2 the last rows
    (padded to two with code 0) as a pair block: per two lane pairs q, q + 1 a word of 4-bit
    weights, bytes (i_q, i_{q+1}, j_q, j_{q+1}) each row 0 | row 1 << 4; per four lane pairs a
    word of 2-bit weights, nibble t of the low half row 0 | row 1 << 2 at i_{q+t}, of the high
    half at j_{q+t} (the last word completed with zeros). Where :func:`subfc_oct`, the first
    N // 8 blocks of eight rows in its place, the same size: 4-bit weights, two blocks of four
    with their words of each lane pair side by side (block 2b's, then 2b + 1's: one LDRD);
    2-bit, per lane pair q a word of the eight rows, lanes sum_r 4^r w_r at i_q and j_q (row 7
    stored ^ 2).

    Arguments:
        layer: a dense layer of :func:`tinyopt.integer.steps.sub_fc_fits`.

    Returns:
        uint8 array.

    Raises:
        ValueError: as :func:`subconv_weights`.
    """
    if subfc16_scale(layer):  # a small layer: tn_m7_subfc16's int16 lanes
        return subfc16_weights(layer)
    quads = subconv_weights(layer)
    n, wb = int(layer.out_channels), int(layer.weight_bits)
    rows, pairs = _subconv_rows(layer)
    k = rows.shape[1]
    block = k * wb // 2  # bytes of a block of four rows
    if subfc_oct(layer):  # the first N // 8 blocks of eight (the same bytes' size)
        octs = _oct_words(layer, quads)
        assert len(octs) == n // 8 * 2 * block
        quads = np.concatenate([octs, quads[len(octs):]])
    if n % 4 not in (1, 2):
        return quads
    tail = rows[n - n % 4:n - n % 4 + 2]  # the last rows, then a padding row of code 0
    i = np.array([a for a, _ in pairs])
    j = np.array([b for _, b in pairs])
    fi = tail[0, i] | (tail[1, i] << wb)  # [pair]: both rows at i_q
    fj = tail[0, j] | (tail[1, j] << wb)
    if wb == 4:  # [q / 2, 4 bytes]
        fields, width = np.stack([fi[0::2], fi[1::2], fj[0::2], fj[1::2]], axis=1), 8
    else:  # [q / 4, 8 nibbles]: four at i, four at j
        pad = (-len(fi)) % 4
        fi = np.concatenate([fi, np.zeros(pad, fi.dtype)]).reshape(-1, 4)
        fj = np.concatenate([fj, np.zeros(pad, fj.dtype)]).reshape(-1, 4)
        fields, width = np.concatenate([fi, fj], axis=1), 4
    shifts = np.arange(fields.shape[-1], dtype=np.uint64) * width
    words = (fields.astype(np.uint64) << shifts).sum(axis=-1).astype("<u4")
    return np.concatenate([quads[:block * (n // 4)], words.view(np.uint8)])


SUBFC16_ROWS = 6  # tn_m7_subfc16's rows per block (4 with 2-bit outputs: a byte of them)


def _subfc16_rows(layer) -> tuple[np.ndarray, np.ndarray]:
    """(d, bias) of a dense layer of sub-byte weights: d = w - z_w, int64 [N, K]; bias int64 [N]."""
    from tinyopt.integer.graph import unpack
    n, k = int(layer.out_channels), int(layer.in_shape[0])
    codes = unpack(np.asarray(layer.weights, np.uint8).reshape(n, -1), int(layer.weight_bits), k)
    d = codes.astype(np.int64) - _row_zero_points(layer, n)[:, None]
    return d, np.broadcast_to(np.asarray(layer.bias, np.int64), (n,)).copy()


def subfc16_scale(layer) -> int:
    """S of tn_m7_subfc16 (c/tn_m7_subfc.h) for a dense layer of 2 / 4-bit weights, or 0 when
    that kernel does not take it: 8-bit inputs, 2 (tn_m7_fc16's doubled lanes) for a layer that
    names TFLite double rounding, else 1; 16 for 4-bit, 64 for 2-bit ones (the masked lanes'
    scales). It takes a layer of a 1-D input, a bias, at most :data:`FC16_MAX_WEIGHTS`
    weights (N K: the int16 lanes are four / eight times the packed weights' bytes, counted as
    layout bytes, Export.weight_pad_bytes) and, for every row and every input it can receive,
    S |acc| < 2^31 (acc = bias + sum (w - z_w)(x - z_x), bounded from the weights themselves,
    S (|bias| + sum_k |d_k| max |x - z_x|)): the kernel's T = S acc, acc = T >> log2 S, is then
    exact; else 0 (the layer takes tn_m7_subfc, exact for any weights)."""
    wb, xb = int(layer.weight_bits), int(layer.in_bits)
    if (layer.kind != "dense" or wb not in (2, 4) or xb not in (2, 4, 8) or layer.bias is None
            or layer.weights is None or len(layer.in_shape) != 1
            or int(layer.in_shape[0]) * int(layer.out_channels) > FC16_MAX_WEIGHTS):
        return 0
    # 8-bit inputs: doubled lanes (2 acc, tn_m7_out's FAST = 3 form) only where the layer names
    # TFLite double rounding, else plain ones (one shift less per output in the other forms)
    scale = {8: 2 if layer.rounding == "tflite_double" else 1, 4: 16, 2: 64}[xb]
    d, bias = _subfc16_rows(layer)
    top = np.abs(bias) + np.abs(d).sum(axis=1) * _x_box(layer)
    if scale * int(top.max()) >= (1 << 31) or scale * int(np.abs(d).max()) >= (1 << 15):
        return 0
    return scale


def subfc16_weights(layer) -> np.ndarray:
    """The weight bytes of a step of tn_m7_subfc16 (c/tn_m7_subfc.h, its comment; a layer of
    :func:`subfc16_scale`): 8-bit inputs, :func:`fc16_weights`' layout of the weight codes
    (doubled when S = 2); 2 / 4-bit inputs, per block of :data:`SUBFC16_ROWS` rows (4 with 2-bit
    outputs; then one of the N % R left) the rows' S C (int32 modulo 2^32, C = bias - o sum_k
    d_k, o = z_x (+ 2^(b-1) for signed inputs)), then per input word and pair of its lane pairs
    (2j, 2j + 1)
    each row's words [f_2j d_i, f_2j d_i'], [f_2j+1 d_i, f_2j+1 d_i'] (lane pair j = codes
    (j, j + 16 / b) of the word, f_j = S / 2^(b (j % (8 / b))); codes beyond K: d = 0); a last
    word of at most 16 / b codes, its lane pairs j < 8 / b alone, codes (j, j + 8 / b).

    Arguments:
        layer: a dense layer of 2 / 4-bit weights where :func:`subfc16_scale` is nonzero.

    Returns:
        uint8 array (little-endian int32 constants and int16 lanes).

    Raises:
        ValueError: a layer :func:`subfc16_scale` refuses.
    """
    scale = subfc16_scale(layer)
    if not scale:
        raise ValueError(f"layer {layer.name!r}: tn_m7_subfc16 does not take it (subfc16_scale: "
                         "a dense layer of 2 / 4-bit weights, a bias, at most "
                         f"{FC16_MAX_WEIGHTS} weights, S |acc| < 2^31); use subfc_weights")
    d, bias = _subfc16_rows(layer)
    n, k = d.shape
    xb = int(layer.in_bits)
    if xb == 8:  # tn_m7_fc16's own layout (its rows: the codes as 8-bit weights)
        return fc16_weights(types.SimpleNamespace(
            kind="dense", weight_bits=8, in_bits=8, name=layer.name, bias=layer.bias,
            weights=(d + _row_zero_points(layer, n)[:, None]).astype(np.uint8),
            weight_zero_point=layer.weight_zero_point, in_zero_point=layer.in_zero_point),
            doubled=scale == 2)
    off = int(layer.in_zero_point) + ((1 << (xb - 1)) if layer.in_signed else 0)
    const = ((scale * (bias - off * d.sum(axis=1))) % (1 << 32)).astype("<u4")
    g = 32 // xb  # codes per input word
    words = -(-k // g)
    half = 0 < k % g <= g // 2  # a last word of at most half its codes: v | v << 8 (HALF)
    dp = np.zeros((n, words * g), np.int64)
    dp[:, :k] = d
    npairs = 16 // xb
    j = np.arange(npairs)
    fac = scale >> (xb * (j % (8 // xb)))  # S / the lane pair's scale

    def pairs(codes, m):  # [n, words, 2m] -> [n, words, m / 2, 4]: lane pairs (x_j, x_{j+m})
        lanes = np.stack([codes[..., :m] * fac[:m], codes[..., m:2 * m] * fac[:m]], axis=-1)
        return lanes.reshape(n, codes.shape[1], m // 2, 4)  # per pair of lane pairs: 4 int16

    whole = pairs(dp.reshape(n, words, g)[:, :words - half], npairs)
    tail = pairs(dp.reshape(n, words, g)[:, words - 1:, :g // 2], npairs // 2) if half else None
    rows = 4 if int(layer.out_bits) == 2 else SUBFC16_ROWS
    parts = []
    for c in range(0, n, rows):
        parts.append(const[c:c + rows].view(np.uint8))
        for lanes in (whole, tail):
            if lanes is not None:
                blk = np.ascontiguousarray(lanes[c:c + rows].transpose(1, 2, 0, 3), "<i2")
                parts.append(blk.view(np.uint8).ravel())
    return np.concatenate(parts).astype(np.uint8)


def _subfc_call(step: Step, common: dict, zw: np.ndarray, rq: dict, u) -> str:
    """The body of a tn_m7_subfc step (a dense layer, :func:`tinyopt.integer.steps
    .sub_fc_fits`): its call with the layer's constants."""
    layer = step.layer
    if subfc16_scale(layer):  # tn_m7_subfc16 (subfc_weights packed its layout)
        args = [int(layer.in_shape[0]), layer.out_channels, layer.in_bits, common["XS"],
                int(subfc16_scale(layer) == 2), common["REQ"], common["NM"], common["ROUND"],
                common["OB"], *rq.values()]
        return "    tn_m7_subfc16(l, in[0], out, " + ", ".join(u(a) for a in args) + ");\n"
    args = [int(layer.in_shape[0]), layer.out_channels, layer.in_bits, common["XS"],
            common["ZX"], layer.weight_bits, *subfc_plan(layer), subfc_oct(layer),
            common["NWZP"],
            int(bool(zw.any())), int(zw[0]), common["REQ"], common["NM"], common["ROUND"],
            common["OB"], *rq.values()]
    return "    tn_m7_subfc(l, in[0], out, " + ", ".join(u(a) for a in args) + ");\n"


def subconv_add_table(step: Step, rounding: str | None) -> np.ndarray | None:
    """The fused residual ADD of a tn_m7_subconv step as a table (c/tn_m7_subconv.h: tn_sc_addtab),
    when both addends and the sum have the same width b <= 4 (then :func:`add_plan` refuses it):
    entry (own << b) | other is the ADD's output code (its low b bits) for the compute layer's
    output code ``own`` and the other addend's code ``other``, computed by the simulator's ADD
    (``tinyopt.integer.ops.add.simulate``) on every pair of codes, so exact on any input by
    construction; 2^(2b) bytes of flash. None otherwise (no fused ADD, other widths, or the
    flavour unknown)."""
    if step.add is None:
        return None
    (b0, sg0, _), (b1, sg1, z1), _ = _addends(step)
    add = step.add
    flavour = add.rounding or rounding
    b = int(add.out_bits)
    if flavour is None or not b0 == b1 == b <= 4:
        return None
    own_first = step.add_slot == 0
    codes = np.arange(1 << b, dtype=np.int64)
    def value(signed):  # code bits -> the number they stand for
        return codes - (1 << b) * (codes >= (1 << (b - 1))) if signed else codes
    v0, v1 = value(sg0), value(sg1)
    x0, x1 = np.meshgrid(v0, v1, indexing="ij")  # [input 0 code, input 1 code]
    p = types.SimpleNamespace(layer=add, rounding=flavour,
                              zero_points=[int(add.in_zero_point), z1])
    y = REGISTRY["add"].simulate(p, [x0, x1], False).astype(np.int64) & ((1 << b) - 1)
    table = y if own_first else y.T  # [own code, other code]
    return table.astype(np.uint8).ravel()


def _subconv_call(step: Step, common: dict, zw: np.ndarray, rq: dict, graph_rounding: str,
                  arena: str, u) -> str:
    """The body of a tn_m7_subconv step: its call with the layer's constants (and the table of
    a fused sub-byte ADD, :func:`subconv_add_table`, as a constant of the function)."""
    layer = step.layer
    fadd = _fused_add_args(step, graph_rounding)
    table = subconv_add_table(step, graph_rounding) if not fadd[0] else None
    head, tab = "", "(const uint8_t *)0"
    if table is not None:
        head = ("    static const uint8_t addtab[" + str(table.size) + "] = {"
                + ", ".join(str(int(t)) for t in table) + "};\n")
        tab = "addtab"
    h, w, c = _hwc(layer.in_shape)
    oh, ow, co = _hwc(layer.out_shape)
    kh, kw = kernel_window(layer)
    top, _, left, _ = layer.padding
    pool = [0] * 8
    if step.pool is not None:  # MODE 1: the max pool after it (tn_sc_pooled)
        p = step.pool
        pt, _, pl, _ = p.padding
        poh, pow_, _ = _hwc(p.out_shape)
        pool = [p.pool_size[0], p.pool_size[1], p.stride[0], p.stride[1], pt, pl, poh, pow_]
    mode = 1 if step.pool is not None else 2 if step.add is not None else 0
    args = [mode, h, w, c, oh, ow, co, kh, kw, layer.stride[0],
            layer.stride[1], top, left, layer.in_bits, common["XS"], common["ZX"],
            common["PADZERO"], sub_lane_group(layer), sub_lanes(layer)[0],
            int(_inside(layer, gemm_geometry(layer))), layer.weight_bits, subconv_raw(layer),
            common["NWZP"], int(zw[0]), common["REQ"], common["NM"], common["ROUND"],
            common["OB"]]
    rest = [*pool, *rq.values(), *fadd]
    lanes, _ = scratch_parts(step)  # the int32 outputs of a fused ADD follow the lanes
    obo = int(step.in_specs[1].bits) if step.add is not None else 0
    other = "in[1]" if step.add is not None else "in[0]"
    return head + (f"    tn_m7_subconv(l, in[0], {other}, out, "
            f"{_scratch(step, arena, 'uint32_t')},\n                  "
            f"{_scratch(step, arena, 'int32_t', lanes)}, "
            + ", ".join(u(a) for a in args) + f", {tab}, {obo}u,\n                  "
            + ", ".join(u(a) for a in rest) + ");\n")


def conv_plan(layer, rounding: str | None, fused: bool = False) -> tuple[int, int]:
    """(QUAD, TAB) of an 8-bit convolution or pointwise layer on tn_m7_conv (c/tn_m7_gemm.h).

    QUAD = 1: the rows go in blocks of two pairs with 32-bit sums (tn_m7_cv_quad, 24
    instructions per 32 MACs), when the layer has at least four rows and every pair's B =
    sum (b - 128) x' over the padded window rows stays in [-2^23, 2^23) on every input (bounded
    from the weights as :func:`fc_acc32` does for a dense layer), else 0 (one pair at a time,
    64-bit sums). QUAD = 2: a pointwise layer of at most :data:`W16_MAX_LANES` lanes, a multiple
    of four output channels and a table (TAB below, whose bound keeps every sum exact): int16
    weights 2 (w - z_w) in blocks of four rows (tn_m7_cv_w16, 22 instructions per 32 MACs; the
    small K where the a codes' UXTB16, the b rows' R - S_a and the block loop weigh most), two
    bytes per weight in flash. TAB = 1, 4 or 5: each block's weights are followed by its
    channels' requantization constants, TAB int32 words per channel (2 bias; with per-channel
    multipliers then m0, [sh > 0] 2^(sh - 1) + z_out 2^sh with sh = max(-n0, 0), sh; with
    TAB = 5, a channel's n0 >= 0, then its left shift max(n0, 0)), for tn_m7_cv_rq: TFLite's
    double rounding with every n0 in [-20, 7] (the zero point folds into the rounding constant
    without overflow), n0 >= 0 only with a clamp at or above the zero point (LOZ >= 0: the sign
    term of the rounding divide is dropped, and a channel without one needs it dropped) and
    acc_bound * 2^(max(n0, 0) + 1) < 2^31; else 0 (the constants read from the layer's tables
    per output, tn_m7_cv_chan). TAB = 3 (QUAD = 2 only, :func:`w16_shift`): the rows scaled so
    that one shift T serves the whole layer, three words per channel (the scaled 2 bias, m0 and
    C): a clamp at or above the zero point (LOZ >= 0) and every scaled weight, bias and sum in
    range. TAB = 2: the same with the rounding's sign term (LOZ < 0: a fourth word per
    channel, 2^d), only where tn_m7_cv_w16_run does not take the layer (``fused``: a residual
    ADD fused after it; or an output other than 8-bit codes clamped to the whole range), so
    its C epilogue runs. ``rounding``: the graph's flavour (None: a layer that names none gets
    TAB = 0).

    Arguments:
        layer: a conv2d or pointwise layer of 8-bit weights and inputs.
        rounding: the graph's rounding flavour.
        fused: the step fuses a residual ADD after the layer.

    Returns:
        (QUAD, TAB) as ints.
    """
    quad = 0
    tab = _conv_tab(layer, rounding)[0]
    if (tab and layer.kind == "pointwise" and conv_lanes(layer)[1] <= W16_MAX_LANES
            and layer.out_channels % 4 == 0):
        # int16 weights 2 (w - z_w): the small-K blocks (tn_m7_cv_w16); TAB 3 / 2 where one
        # shift serves every channel (_w16_scaled)
        scaled = _w16_scaled(layer, rounding)
        if scaled is not None and not scaled[5].any():
            return 2, 3
        lo, hi = (int(v) for v in layer.out_range)
        if scaled is not None and (fused or layer.out_bits != 8
                                   or (lo, hi) not in ((-128, 127), (0, 255))):
            return 2, 2  # the sign term, on the C epilogue (not tn_m7_cv_w16_run's)
        return 2, tab
    if layer.out_channels >= 4:
        rows = _padded_rows(layer)
        m = len(rows) - len(rows) % 4
        quad = int(fc_acc32(types.SimpleNamespace(
            kind="dense", weight_bits=8, in_bits=8, weights=rows[:m],
            weight_zero_point=_row_zero_points(layer, len(rows))[:m],
            in_zero_point=layer.in_zero_point, in_signed=layer.in_signed),
            signed=signed_weights(layer)))
    return quad, tab


def _conv_tab(layer, rounding: str | None) -> tuple[int, np.ndarray | None]:
    """(TAB, constant outputs) of :func:`conv_plan`: the constant output code of every channel
    whose weights all equal its zero point (its accumulator is its bias on every input: the
    table gives it m0 = 0 and the code as rounding constant, exact whatever its bias and n0;
    None for the other channels: an object array), or (0, None)."""
    flavour = layer.rounding or rounding
    if not layer.requantize or flavour != "tflite_double":
        return 0, None
    from tinyopt.integer.fixedpoint import requant_tflite_double
    rq = requant_constants(layer, flavour)
    n = int(layer.out_channels)
    n0 = np.broadcast_to(np.atleast_1d(np.asarray(layer.n0, np.int64)), (n,))
    m0 = np.broadcast_to(np.atleast_1d(np.asarray(layer.m0, np.int64)), (n,))
    zw = np.broadcast_to(np.atleast_1d(np.asarray(layer.weight_zero_point, np.int64)), (n,))
    w = np.asarray(layer.weights, np.int64).reshape(n, -1)
    bias = np.asarray(layer.bias, np.int64)
    dead = np.all(w == zw[:, None], axis=1) & (n0 <= 0)
    lo, hi = (int(v) for v in layer.out_range)
    const = np.full(n, None, object)
    if dead.any():
        y = requant_tflite_double(bias[dead], m0[dead], n0[dead], wrap=True, layer=layer.name)
        const[dead] = [int(v) for v in np.clip(y + int(layer.out_zero_point), lo, hi)]
    live = ~dead
    if rq["FAST"] < 1:
        return 0, None
    if live.any():
        z = int(layer.in_zero_point)
        xlo, xhi = (-128, 127) if layer.in_signed else (0, 255)
        dx = max(abs(xlo - z), abs(xhi - z))
        # |acc| of each live channel: |bias| + sum |w - z_w| max |x'|
        bound = (np.abs(bias[live]) + np.abs(w[live] - zw[live, None]).sum(axis=1) * dx).max()
        left = max(int(n0[live].max()), 0)
        if not (n0[live].min() >= -20 and n0[live].max() <= 7
                and (n0[live].max() < 0 or rq["LOZ"] >= 0)  # sh = 0 needs the sign term gone
                and int(bound) << (left + 1) < (1 << 31)):
            return 0, None
    else:
        left = 0
    if rq["NM"] == 1 and not dead.any():
        return 1, const
    return (5 if left else 4), const


def _padded_rows(layer) -> np.ndarray:
    """The weight rows of a convolution or pointwise layer with each window row padded to KWCP
    lanes with the row's weight zero point: uint8 [N, KP]."""
    kh, kw = kernel_window(layer)
    kwcp, kp = conv_lanes(layer)
    w = np.asarray(layer.weights, np.uint8).reshape(len(layer.weights), kh, -1)
    n, _, row = w.shape
    zw = np.broadcast_to(np.atleast_1d(np.asarray(layer.weight_zero_point, np.int64)), (n,))
    padded = np.empty((n, kh, kwcp), np.uint8)
    padded[:, :, :row] = w
    padded[:, :, row:] = zw.astype(np.uint8)[:, None, None]
    return padded.reshape(n, kp)


def _conv_tables(layer, rows: range, tab: int, const: np.ndarray | None) -> np.ndarray:
    """The TAB words of channels ``rows`` (:func:`conv_plan`; ``const``: :func:`_conv_tab`'s
    constant outputs) as little-endian bytes."""
    if not tab:
        return np.zeros(0, np.uint8)
    c = np.asarray(list(rows), np.int64)
    n = int(layer.out_channels)
    bias2 = (np.asarray(layer.bias, np.int64)[c] * 2) % (1 << 32)
    cols = [bias2]
    if tab >= 4:
        m0 = np.broadcast_to(np.atleast_1d(np.asarray(layer.m0, np.int64)), (n,))[c].copy()
        n0 = np.broadcast_to(np.atleast_1d(np.asarray(layer.n0, np.int64)), (n,))[c].copy()
        sh = np.maximum(-n0, 0)
        half = np.where(sh > 0, 1 << np.maximum(sh - 1, 0), 0)
        rnd = half + int(layer.out_zero_point) * (1 << sh)
        ls = np.maximum(n0, 0)
        k = np.array([v is not None for v in const[c]], bool)  # a constant channel: h = 0,
        if k.any():  # the code itself as rounding constant
            bias2[k], m0[k], sh[k], ls[k] = 0, 0, 0, 0
            rnd[k] = np.asarray(list(const[c][k]), np.int64)
        cols += [m0, rnd % (1 << 32), sh]
        if tab == 5:
            cols.append(ls)
    words = np.stack(cols, axis=1).astype(np.uint32).astype("<u4")
    return words.ravel().view(np.uint8)


def conv_weights(layer, quad: int = 0, tab: int = 0, rounding: str | None = None,
                 signed: bool = False) -> np.ndarray:
    """The weight bytes of an 8-bit convolution or pointwise layer in tn_m7_conv's order
    (c/tn_m7_gemm.h): each row's window rows of KW * C codes padded to KWCP lanes
    (:func:`tinyopt.integer.steps.conv_lanes`) with the row's weight zero point; then, with
    ``quad``, the rows in blocks of four (two pairs a, b: per group of four lanes the words
    [pair 0 A, pair 1 A, pair 0 B, pair 1 B], A = [a_k, b_k ^ 0x80, a_k+2, b_k+2 ^ 0x80], B the
    odd lanes'), then the rows left in pairs (per group [A, B], :func:`fc_weights`' pair words),
    then the last row of an odd count as it is (padded). With ``tab``, each block (quad, pair,
    last row) is followed by its channels' requantization words (:func:`conv_plan`). Without
    either: N * KP bytes (N K when KW * C is a multiple of four). With ``quad`` = 2
    (:func:`conv_plan`'s small pointwise layers): int16 lanes 2 (w - z_w) in blocks of four rows,
    per group the words [A r0 .. A r3, B r0 .. B r3], each block followed by its table (TAB 4:
    its 2 bias words before the weights, m0, rnd, sh after; ``signed`` is not used: 2 N KP
    bytes plus the tables). ``signed`` (SGW,
    :func:`signed_weights`): the codes minus their zero points, a pair's lanes 256 d_b + d_a.

    Arguments:
        layer: a conv2d or pointwise layer of 8-bit weights.
        quad, tab: :func:`conv_plan`'s answer for the layer (default: neither).
        rounding: the graph's rounding flavour (needed with ``tab``).

    Returns:
        uint8 array: N * KP bytes (2 N KP with quad = 2), plus 4 * tab bytes per channel.

    Raises:
        ValueError: not a conv2d or pointwise layer of 8-bit weights; quad / tab out of range,
            or a tab (or quad = 2) that is not conv_plan's for the layer and rounding; ``signed``
            weights that :func:`signed_weights` refuses.
    """
    if layer.kind not in ("conv2d", "pointwise") or layer.weight_bits != 8:
        raise ValueError(f"layer {layer.name!r}: conv_weights packs conv2d and pointwise layers "
                         f"of 8-bit weights, not a {layer.weight_bits}-bit {layer.kind} layer")
    if (quad not in (0, 1, 2) or tab not in (0, 1, 2, 3, 4, 5)
            or (tab in (2, 3) and quad != 2)):
        raise ValueError(f"layer {layer.name!r}: conv_weights takes quad in (0, 1, 2) and tab "
                         f"in (0, 1, 4, 5), or 2 and 2 / 3 (conv_plan), not {quad!r} and "
                         f"{tab!r}")
    const = _conv_tab(layer, rounding)[1] if tab else None
    if tab and (const is None or (_conv_tab(layer, rounding)[0] != tab and tab not in (2, 3))):
        raise ValueError(f"layer {layer.name!r}: conv_weights' tab={tab} is not conv_plan's "
                         f"for rounding {rounding!r}")
    rows = _padded_rows(layer)
    if quad == 2:
        return _w16_weights(layer, rows, tab, const, rounding)
    if signed:
        rows = _signed_rows(rows, layer, "tn_m7_conv")
    n, kp = rows.shape

    def words(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A pair's words per group: A = [a_k, b'_k, a_k+2, b'_k+2], B = the odd lanes."""
        a4, b4 = a.reshape(-1, 4), (b ^ np.uint8(0x80)).reshape(-1, 4)
        return (np.stack([a4[:, 0], b4[:, 0], a4[:, 2], b4[:, 2]], axis=-1),
                np.stack([a4[:, 1], b4[:, 1], a4[:, 3], b4[:, 3]], axis=-1))

    parts, c = [], 0
    while quad and c + 4 <= n:  # per group [pair 0 A, pair 1 A, pair 0 B, pair 1 B]
        a0, b0 = words(rows[c], rows[c + 1])
        a1, b1 = words(rows[c + 2], rows[c + 3])
        parts += [np.stack([a0, a1, b0, b1], axis=1).ravel(),
                  _conv_tables(layer, range(c, c + 4), tab, const)]
        c += 4
    while c + 2 <= n:  # per group [A, B]
        a0, b0 = words(rows[c], rows[c + 1])
        parts += [np.stack([a0, b0], axis=1).ravel(),
                  _conv_tables(layer, range(c, c + 2), tab, const)]
        c += 2
    if c < n:
        parts += [rows[c], _conv_tables(layer, range(c, n), tab, const)]
    return np.concatenate(parts).astype(np.uint8)


# QUAD = 2 (tn_m7_cv_w16): pointwise layers of at most this many lanes get int16 weights
W16_MAX_LANES = 32


def _w16_weights(layer, rows: np.ndarray, tab: int, const, rounding) -> np.ndarray:
    """:func:`conv_weights` with QUAD = 2: int16 lanes 2 (w - z_w) of the padded rows, in blocks
    of four rows, per group of four lanes the words [A r0 .. A r3, B r0 .. B r3] (A: lanes k,
    k + 2 as low and high half; B: k + 1, k + 3), each block followed by its TAB table; with
    TAB = 4 the block's four 2 bias words come before its weights instead (the seeds of its
    sums, tn_m7_cv_w16_run) and its channels' m0, rnd, sh after them.

    Raises:
        ValueError: not conv_plan's QUAD = 2 for the layer and rounding (a pointwise layer of at
            most W16_MAX_LANES lanes, a multiple of four output channels, a table)."""
    if (not tab or layer.kind != "pointwise" or layer.out_channels % 4
            or rows.shape[1] > W16_MAX_LANES
            or (2, tab) not in (conv_plan(layer, rounding), conv_plan(layer, rounding, True))):
        raise ValueError(f"layer {layer.name!r}: conv_weights' quad=2 is not conv_plan's for "
                         f"rounding {rounding!r}")
    n, kp = rows.shape
    d2 = 2 * (rows.astype(np.int64) - _row_zero_points(layer, n)[:, None])  # |.| <= 510
    scaled = _w16_scaled(layer, rounding) if tab in (2, 3) else None
    if scaled is not None:  # TAB 3 / 2: 2^E (w - z_w), |.| < 2^15 (_w16_scaled)
        d2 = (d2 // 2) << scaled[1][:, None]
    g = d2.reshape(n // 4, 4, kp // 4, 4)  # block, row, group, lane
    # per block and group: half A (lanes 0, 2) then B (1, 3), rows 0-3, (low, high) int16
    halves = np.stack([g[..., [0, 2]], g[..., [1, 3]]], axis=2)  # block, row, half, group, 2
    words = np.ascontiguousarray(halves.transpose(0, 3, 2, 1, 4).astype("<i2")).view(np.uint8)
    words = words.reshape(n // 4, -1)
    parts = []
    for b in range(n // 4):
        if scaled is not None:  # [2^E bias x 4][weights][m0, C (, K) x 4]
            seed, m0, cc, k = (np.asarray(v[4 * b:4 * b + 4], np.int64) % (1 << 32)
                               for v in scaled[2:])
            cols = [m0, cc] + ([k] if tab == 2 else [])
            parts += [seed.astype("<u4").view(np.uint8), words[b],
                      np.stack(cols, axis=1).astype("<u4").ravel().view(np.uint8)]
            continue
        table = _conv_tables(layer, range(4 * b, 4 * b + 4), tab, const)
        if tab == 4:  # the 2 bias first (the sums' seeds), then m0, rnd, sh per channel
            cols = table.view("<u4").reshape(4, 4)
            parts += [np.ascontiguousarray(cols[:, 0]).view(np.uint8), words[b],
                      np.ascontiguousarray(cols[:, 1:]).view(np.uint8).ravel()]
        else:
            parts += [words[b], table]
    return np.concatenate(parts).astype(np.uint8)


def w16_shift(layer, rounding: str | None, fused: bool = False) -> int:
    """tn_m7_conv's TSH: the layer's one shift T of QUAD = 2, TAB = 3 or 2
    (:func:`_w16_scaled`; ``fused`` as for :func:`conv_plan`), else 0."""
    if layer.kind != "pointwise" or conv_plan(layer, rounding, fused)[1] not in (2, 3):
        return 0
    return _w16_scaled(layer, rounding)[0]


def _w16_scaled(layer, rounding: str | None):
    """QUAD = 2's TAB 3 and 2 (c/tn_m7_gemm.h, tn_m7_cv_w16_run): (T, E, seed, m0, C, K),
    else None.

    TFLite's double rounding of a channel (h = SMMULR(2^(ls + 1) acc, m0), y = (h + rnd) >> sh
    with rnd = [sh > 0] 2^(sh - 1) + z_out 2^sh, the sign term dropped: LOZ >= 0, as
    tn_m7_cv_rq) is floor((2^(ls + 1) acc m0 + 2^31 + rnd 2^32) / 2^(32 + sh)) (floors of
    floors). With T = max sh + 1 over the layer and d = T - sh >= 1 per channel, multiplying
    numerator and denominator by 2^d: floor((acc' m0 + C 2^32) / 2^(32 + T)), acc' = 2^E acc
    (E = ls + 1 + d: the int16 weights 2^E (w - z_w), the sums seeded with 2^E bias) and C =
    2^(d - 1) + rnd 2^d, i.e. SMMLA(acc', m0, C) >> T: every channel one shift, a constant
    (SSAT's shifted operand). A constant channel (_conv_tab) gets E = 0, m0 = 0, C = code 2^T.
    With LOZ < 0 the sign term stays (every sh >= 1 then, _conv_tab): y = (h + rnd - [h < 0])
    >> sh, and [h < 0] may be [acc < 0] (m0 > 0: h <= 0 for acc < 0, and h = 0 gives
    (rnd - 1) >> sh = z_out = rnd >> sh for sh >= 1), i.e. C - K [acc' < 0] with K = 2^d (0 on
    a constant channel). None unless conv_plan's QUAD = 2 with a table applies, every n0 in
    [-20, 7], |2^E (w - z_w)| < 2^15 and |acc| 2^E < 2^30 (acc_bound per channel) on every live
    channel.

    Returns:
        (T, E, seed 2^E bias, m0, C, K): T an int, the others int64 arrays per channel (K all 0
        with LOZ >= 0).
    """
    tab, const = _conv_tab(layer, rounding)
    if (not tab or layer.kind != "pointwise" or conv_lanes(layer)[1] > W16_MAX_LANES
            or layer.out_channels % 4):
        return None
    rq = requant_constants(layer, layer.rounding or rounding)
    n = int(layer.out_channels)
    n0 = np.broadcast_to(np.atleast_1d(np.asarray(layer.n0, np.int64)), (n,))
    m0 = np.broadcast_to(np.atleast_1d(np.asarray(layer.m0, np.int64)), (n,)).copy()
    zw = np.broadcast_to(np.atleast_1d(np.asarray(layer.weight_zero_point, np.int64)), (n,))
    bias = np.asarray(layer.bias, np.int64)
    live = np.array([v is None for v in const], bool)
    if live.any() and not (n0[live].min() >= -20 and n0[live].max() <= 7):
        return None
    sh, ls = np.maximum(-n0, 0), np.maximum(n0, 0)
    t = int(sh[live].max()) + 1 if live.any() else 1
    d = np.maximum(t - sh, 1)  # >= 1 on every live channel (T above every live sh)
    e = np.where(live, ls + 1 + d, 0)
    w = np.asarray(layer.weights, np.int64).reshape(n, -1) - zw[:, None]
    z = int(layer.in_zero_point)
    xlo, xhi = (-128, 127) if layer.in_signed else (0, 255)
    dx = max(abs(xlo - z), abs(xhi - z))
    bound = np.abs(bias) + np.abs(w).sum(axis=1) * dx
    if np.any(live & ((np.abs(w).max(axis=1) << e >= 1 << 15) | (bound << e >= 1 << 30))):
        return None
    rnd = np.where(sh > 0, 1 << np.maximum(sh - 1, 0), 0) + int(rq["ZP"]) * (1 << sh)
    cc = (1 << (d - 1)) + rnd * (1 << d)
    seed = bias << e
    k = np.where(live, 1 << d, 0) if rq["LOZ"] < 0 else np.zeros(n, np.int64)
    if live.any() and rq["LOZ"] < 0 and (sh[live].min() < 1 or m0[live].min() < 1):
        return None  # (the table already refuses sh = 0 with LOZ < 0; m0 = 0 for safety)
    if not live.all():
        seed[~live], m0[~live] = 0, 0
        cc[~live] = np.asarray(list(const[~live]), np.int64) << t
    return t, e, seed, m0, cc, k


def _fused_add_args(step: Step, graph_rounding: str) -> list[int]:
    """tn_m7_gemm's TN_FADD constants: FADD (1: the fused ADD runs tn_m7_add_fused, exact by
    :func:`add_plan`), SLOT and tn_m7_add's constants; all 0 without a fused ADD or when its plan
    fails (then tn_m7_emit's portable arithmetic, as the ADD step's portable kernel)."""
    p = add_plan(step, graph_rounding) if step.add is not None else "no fused ADD"
    if isinstance(p, str):
        return [0] * 26
    return [1, p["SLOT"], *_add_args(p)]


def w16_add_table(step: Step, rounding: str | None) -> tuple[np.ndarray, int] | None:
    """The residual ADD fused into a QUAD = 2, TAB 3 / 2 pointwise step as a table
    (c/tn_m7_gemm.h, tn_m7_cv_addtab): (table, FSH), or None (the step keeps tn_m7_cv_out's
    per-output tn_m7_add arithmetic).

    tn_m7_add's ADD is Q(R_own(y - z_own) + ((o - z_o) << S_o)) with the other addend's stage a
    plain shift (R = 2: TFLite rescales the input of the larger scale by exactly 1/2). Entry y
    (the layer's output code, saturated to its 8-bit type; the layer's own clamp applied
    here) is (R_own(clamp(y) - z_own) - (z_o << S_o)) << S_Q modulo 2^32, so that the output
    stage's operand is table[y] + (o << FSH), FSH = S_o + S_Q: one load and one add per output
    in place of the own addend's stage. Checked on every pair of codes (256 x 256) against
    the simulator's ADD (``tinyopt.integer.ops.add.simulate``): exact on any input by
    construction. 256 int32 words of flash, in code order (-128 .. 127 or 0 .. 255).

    Arguments:
        step: a compute step; rounding: the graph's flavour (for layers that name none).

    Returns:
        (table as int32 [256], FSH), or None: no fused ADD, not QUAD = 2 with TAB 3 / 2,
        add_plan refuses the ADD, the other addend's stage is not a plain shift, FSH > 31, or
        the check fails.
    """
    layer = step.layer
    if (step.add is None or layer.kind != "pointwise"
            or conv_plan(layer, rounding, fused=True) not in ((2, 2), (2, 3))):
        return None
    p = add_plan(step, rounding)
    if isinstance(p, str):
        return None
    own, oth = ("B", "A") if p["SLOT"] else ("A", "B")
    so, sq = p[oth], p["Q"]
    fsh = int(so["S"]) + int(sq["S"])
    if so["R"] != 2 or so["K"] or fsh > 31:
        return None
    signed = bool(p["XS"])
    codes = np.arange(-128, 128, dtype=np.int64) if signed else np.arange(256, dtype=np.int64)
    rq = requant_constants(layer, layer.rounding or rounding)
    lo, hi = int(rq["LOZ"]) + int(rq["ZP"]), int(rq["HIZ"]) + int(rq["ZP"])
    zo = int(p["ZB"] if not p["SLOT"] else p["ZA"])
    own_out = np.asarray(p[own]["out"], np.int64)[np.clip(codes, lo, hi) - codes[0]]
    table = ((own_out - (zo << int(so["S"]))) << int(sq["S"])) & 0xFFFFFFFF
    table = np.where(table >= 1 << 31, table - (1 << 32), table)
    # the kernel's arithmetic on every pair (own code, other code) against the simulator
    y, o = np.meshgrid(codes, codes, indexing="ij")
    x = (table[y - codes[0]] + (o << fsh)) & 0xFFFFFFFF
    x = np.where(x >= 1 << 31, x - (1 << 32), x)
    if sq["R"] == 2:
        t = x
    else:
        c = int(sq["C"]) - int(sq["F"]) * (x < 0)
        t = c + ((x * int(sq["M"]) + (int(sq["R"] == 1) << 31)) >> 32)
    out = np.clip(np.clip(t >> int(sq["K"]), *((-128, 127) if p["OS"] else (0, 255))),
                  p["LO"], p["HI"])
    add = step.add
    ins = [np.clip(y, lo, hi), o] if not p["SLOT"] else [o, np.clip(y, lo, hi)]
    sim = types.SimpleNamespace(layer=add, rounding=add.rounding or rounding,
                                zero_points=[int(p["ZA"]), int(p["ZB"])])
    want = REGISTRY["add"].simulate(sim, ins, False).astype(np.int64)
    if not np.array_equal(out, want):
        return None
    return table.astype(np.int32), fsh


def _inside(layer, geo: dict) -> bool:
    """Does every window of a gemm layer lie inside its input (no padding reached)? A dilated
    window spans (k - 1) d + 1 inputs per axis."""
    if layer.kind == "dense":
        return True
    top, _, left, _ = layer.padding
    dh, dw = (int(d) for d in layer.dilation)
    return (top == 0 and left == 0
            and (geo["OH"] - 1) * layer.stride[0] + (geo["KH"] - 1) * dh + 1 <= geo["H"]
            and (geo["OW"] - 1) * layer.stride[1] + (geo["KW"] - 1) * dw + 1 <= geo["W"])


def requant_constants(layer, graph_rounding: str) -> dict:
    """The requantization constants of a step for tn_m7_out: NM (1 when m0 and n0 are uniform),
    FAST (tn_m7_requant is exact: TFLite flavours have m0 >= 0, checked at export; n0 in
    [-31, 30]; the clamp bounds minus the zero point fit in int32; 2: moreover every n0 < 0;
    3: moreover the flavour is tflite_double, every n0 >= -30 and :func:`acc_bound` < 2^30),
    M0 / N0 (the uniform multiplier, else 0), LOZ / HIZ (act_lo / act_hi minus the output zero
    point), ZP."""
    if not layer.requantize:
        return {"NM": 1, "FAST": 0, "M0": 0, "N0": 0, "LOZ": 0, "HIZ": 0, "ZP": 0}
    m0 = np.atleast_1d(np.asarray(layer.m0, np.int64))
    n0 = np.atleast_1d(np.asarray(layer.n0, np.int64))
    uniform = bool(np.all(m0 == m0[0]) and np.all(n0 == n0[0]))
    lo, hi = (int(v) for v in layer.out_range)
    zp = int(layer.out_zero_point)
    fits = lambda v: -(1 << 31) <= v < (1 << 31)  # noqa: E731
    flavour = layer.rounding or graph_rounding
    fast = (n0.min() >= -31 and n0.max() <= 30 and fits(lo - zp) and fits(hi - zp)
            and (flavour == "floor" or m0.min() >= 0))
    if fast and n0.max() < 0:
        fast = 2
        bound = acc_bound(layer)
        if (flavour == "tflite_double" and n0.min() >= -30 and bound is not None
                and bound < (1 << 30)):
            fast = 3  # tn_m7_out's SMMULR form (c/tn_m7_core.h)
    return {"NM": 1 if uniform else len(m0), "FAST": int(fast),
            "M0": int(m0[0]) if uniform else 0, "N0": int(n0[0]) if uniform else 0,
            "LOZ": lo - zp if fast else 0, "HIZ": hi - zp if fast else 0, "ZP": zp}


def acc_bound(layer) -> int | None:
    """An upper bound of |accumulator| of a compute layer on any input: |bias| + taps *
    max |w - z_w| * max |x - z_x| (taps: the window length of one output), or None for a layer
    without weights. tn_m7_out's FAST = 3 form needs it below 2^30."""
    if layer.weights is None or layer.bias is None:
        return None
    if layer.kind == "dense":
        taps = int(np.prod(layer.in_shape))
    elif layer.kind == "depthwise":
        taps = int(np.prod(layer.weight_shape[:2]))
    else:
        taps = int(np.prod(layer.weight_shape[1:]))
    zw = np.atleast_1d(np.asarray(0 if layer.weight_zero_point is None
                                  else layer.weight_zero_point, np.int64))
    top = (1 << int(layer.weight_bits)) - 1
    dw = int(max(zw.max(), top - zw.min()))
    z = int(layer.in_zero_point)
    lo = -(1 << (layer.in_bits - 1)) if layer.in_signed else 0
    hi = lo + (1 << int(layer.in_bits)) - 1
    dx = max(abs(lo - z), abs(hi - z))
    bias = int(np.abs(np.asarray(layer.bias, np.int64)).max(initial=0))
    return bias + taps * dw * dx


def _pool_function(step: Step, index: int, graph_rounding: str, u, arena: str) -> str:
    """The C of a specialised max / average pool step."""
    layer = step.layer
    h, w, c = _hwc(layer.in_shape)
    oh, ow, _ = _hwc(layer.out_shape)
    pt, _, pl, _ = layer.padding
    mode = getattr(layer, "avg_rounding", None) or (  # as codegen and tinyopt.sim
        "floor" if (layer.rounding or graph_rounding) == "floor" else "half_away")
    args = [h, w, c, oh, ow, layer.pool_size[0], layer.pool_size[1], layer.stride[0],
            layer.stride[1], pt, pl, layer.in_bits, int(bool(layer.in_signed)),
            int(layer.kind == "avgpool"), int(mode == "half_away")]
    return (f"/* step {index}: {c_comment(step.name)} ({layer.kind}, {layer.in_bits}-bit) */\n"
            f"static void model_step{index}(const tn_layer_t *l, const uint8_t *const *in, "
            f"uint8_t *out)\n{{\n"
            f"    tn_m7_pool(l, in[0], out, {_scratch(step, arena, 'int32_t')}, "
            + ", ".join(u(a) for a in args) + ");\n}\n")


INT32 = (-(1 << 31), (1 << 31) - 1)


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


def _ones_row(layer) -> np.ndarray:
    """The packed weights of an all-ones depthwise layer of ``layer``'s shape."""
    from tinyopt.integer.graph import pack
    kh, kw, c = (int(k) for k in layer.weight_shape)
    ones = np.ones((kh * kw, c), np.uint8)
    return pack(ones, layer.weight_bits)


def scratch_bytes(choices: list[Choice]) -> int:
    """The largest scratch of any step (bytes in the arena, alive during that step only)."""
    return max((c.scratch for c in choices), default=0)


# ------------------------------------------------------------------ the 3x3 depthwise row kernel

def dw3_plan(step: Step, graph_rounding: str | None) -> dict | str:
    """The row kernel's weight format and requantization for ``step`` (:func:`dw3_fits`).

    WIDE = 0 when every weight minus its zero point fits int8 (:func:`dw3_weights_fit`), else 1
    (int16 pairs, :func:`dw3_weights`). DWQ = 1 (the folded SMMLAR form of c/tn_m7_dw.h) with
    per-channel CC = 2^(K-1) + z_out 2^K (K = -n0) when tn_m7_out's FAST = 3 form applies
    (:func:`requant_constants`) and CC + h stays in int32 for every accumulator of the layer
    (|h| <= |2 acc| m0 / 2^32 + 1, :func:`acc_bound`); DWQ = 2 (floor: SMMLA(acc, m0, CC) >> K
    with CC = z_out 2^K, K = -(n0 + 1)) when every n0 <= -1, K <= 31 and CC + h stays in int32
    (|h| <= |acc m0| / 2^32 + 1); else DWQ = 0 (tn_m7_out).

    Returns:
        {"WIDE", "DWQ": 0, 1 or 2, "CC": int64 array [C] (zeros for DWQ = 0), "LO", "HI",
        "OS"}, or the reason the row kernel does not run the step.
    """
    if not dw3_fits(step):
        return "not a 2/4/8-bit 3x3 depthwise layer of stride 1 / 2 (dw3_fits)"
    layer = step.layer
    c = _hwc(layer.in_shape)[2]
    ob = int(layer.out_bits)
    lo, hi = (int(v) for v in layer.out_range)
    tlo, thi = ((-(1 << (ob - 1)), (1 << (ob - 1)) - 1) if layer.out_signed
                else (0, (1 << ob) - 1))
    if not tlo <= lo <= hi <= thi:
        return f"output range [{lo}, {hi}] outside the {ob}-bit [{tlo}, {thi}]"
    plan = {"WIDE": int(not dw3_weights_fit(layer)), "DWQ": 0, "CC": np.zeros(c, np.int64),
            "LO": lo, "HI": hi, "OS": int(bool(layer.out_signed))}
    flavour = layer.rounding or graph_rounding
    if flavour is None:
        return plan
    m0 = np.broadcast_to(np.atleast_1d(np.asarray(layer.m0, np.int64)), (c,))
    n0 = np.broadcast_to(np.atleast_1d(np.asarray(layer.n0, np.int64)), (c,))
    zp = np.int64(int(layer.out_zero_point))
    bound = acc_bound(layer)
    if flavour == "floor":
        if bound is None or bound >= (1 << 31) or n0.max() > -1 or n0.min() < -32:
            return plan
        k = -(n0 + 1)
        cc = zp << k
        hmax = ((int(bound) * np.abs(m0)) >> 32) + 1
        if np.all(np.abs(cc) + hmax <= INT32[1]):
            plan.update(DWQ=2, CC=cc)
        return plan
    if requant_constants(layer, flavour)["FAST"] != 3:
        return plan
    k = -n0
    cc = (np.int64(1) << (k - 1)) + (zp << k)
    hmax = ((2 * int(bound) * m0) >> 32) + 1
    if np.all(np.abs(cc) + hmax + 1 <= INT32[1]):
        plan.update(DWQ=1, CC=cc)
    return plan


def dw3_weights(layer, cc: np.ndarray, wide: bool = False) -> np.ndarray:
    """The row kernel's weight array (``Choice.weights``), per channel: three words
    [d_r0, d_r1, d_r1, d_r2] (d = w - z_w as int8, kernel row r) and CC (int32, little-endian;
    :func:`dw3_plan`), 16 bytes; ``wide`` (weights beyond int8: :func:`dw3_plan`'s WIDE): the six
    int16 pairs A_r = (d_r0, d_r1), B_r = (d_r1, d_r2) and CC, 28 bytes.

    Raises:
        ValueError: a weight minus its zero point outside int8 without ``wide``.
    """
    w = layer.unpacked_weights().astype(np.int64).reshape(3, 3, -1)
    c = w.shape[2]
    zw = np.broadcast_to(np.atleast_1d(np.asarray(layer.weight_zero_point, np.int64)), (c,))
    d = w - zw[None, None, :]  # [3, 3, C]
    ccb = np.asarray(cc, "<i4").view(np.uint8).reshape(c, 4)
    if wide:
        pairs = np.stack([d[:, 0], d[:, 1], d[:, 1], d[:, 2]], axis=1)  # [3 rows, 4 lanes, C]
        lanes = np.ascontiguousarray(pairs.transpose(2, 0, 1).reshape(c, 12).astype("<i2"))
        lanes = lanes.view(np.uint8)
        return np.concatenate([lanes, ccb], axis=1).ravel().astype(np.uint8)
    if d.min() < -128 or d.max() > 127:
        raise ValueError(f"layer {layer.name!r}: a depthwise weight minus its zero point is "
                         "outside int8; export it with wide=True (dw3_plan's WIDE)")
    d = d.astype(np.int8).view(np.uint8)
    words = np.stack([d[:, 0], d[:, 1], d[:, 1], d[:, 2]], axis=1)  # [3 rows, 4 bytes, C]
    blob = np.concatenate([words.transpose(2, 0, 1).reshape(c, 12), ccb], axis=1)
    return blob.ravel().astype(np.uint8)


def _depthwise_choice(step: Step, index: int, rounding: str | None, scratch: int) -> Choice:
    """The depthwise kernel of a step m7_kernel gives to "depthwise": the row kernel
    (``Choice.weights`` set: :func:`dw3_weights`) when :func:`dw3_plan` accepts it and the plan
    gave the step its scratch (:func:`dw3_scratch_bytes`), else tn_m7_depthwise, or the scalar
    kernel where tn_m7_depthwise cannot run (its scratch, one pixel of int32, is within the row
    kernel's); the reason says why."""
    need = dw3_scratch_bytes(step)
    plan = dw3_plan(step, rounding)
    why = plan if isinstance(plan, str) else (
        "" if step.scratch_bytes >= need else
        f"the 3x3 row kernel needs {need} B of scratch, the plan gave {step.scratch_bytes} B "
        "(integer.steps.scratch_parts)")
    if not why:
        return Choice("depthwise", f"model_step{index}", scratch=need,
                      weights=dw3_weights(step.layer, plan["CC"], bool(plan["WIDE"])))
    kind, reason = m7_kernel(replace(step, graph_rounding=None), bits_rule=False)
    if kind == "depthwise_scalar":  # tn_m7_depthwise cannot run it (channels, widths)
        return Choice(kind, f"model_step{index}", scratch=sum(kind_scratch_parts(step, kind)),
                      reason=f"{why}; {reason}")
    return Choice("depthwise", f"model_step{index}", scratch=scratch, reason=why)


def _dw3_call(step: Step, graph_rounding: str, u, arena: str) -> str:
    """The C statement calling tn_m7_dw3 for a step of the row kernel."""
    layer = step.layer
    h, w, c = _hwc(layer.in_shape)
    oh, ow, _ = _hwc(layer.out_shape)
    top, _, left, _ = layer.padding
    plan = dw3_plan(step, graph_rounding)
    assert not isinstance(plan, str), plan  # choose() checked it
    rq = requant_constants(layer, graph_rounding)
    nm = rq.pop("NM")
    args = [h, w, c, oh, ow, layer.stride[0], layer.stride[1], top, left, dw3_width(layer),
            layer.in_bits, int(bool(layer.in_signed)), int(layer.in_zero_point),
            int(layer.pad_mode == "zero"), plan["WIDE"], plan["DWQ"], layer.out_bits,
            plan["OS"], plan["LO"], plan["HI"], nm, _rounding(step, graph_rounding),
            *rq.values()]
    return (f"    tn_m7_dw3(l, in[0], out, {_scratch(step, arena, 'int16_t')}, "
            + ", ".join(u(a) for a in args) + ");\n")

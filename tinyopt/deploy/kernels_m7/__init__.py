"""Per-layer kernel selection and code emission for the Cortex-M7 (``tinyopt/deploy/c/tn_m7.h``).

:func:`export_c <tinyopt.deploy.codegen.export_c>` asks :func:`choose` which kernel runs each
step and :func:`step_function` for the C of the specialised ones: a small function per step
that calls an always-inline kernel of ``tn_m7.h`` with the layer's shapes, bit widths and flags
as literal constants, so that the compiler specialises the loops to the layer (constant trip
counts, unrolled lane loops, no run-time dispatch). Steps no specialised kernel covers call the
portable kernel of their kind directly (``tn_run_pool``, ``tn_run_add``, ...), so a model links
only the kernels it uses.

The package: this module is the dispatcher (:class:`Choice`, :func:`choose`,
:func:`step_function`, :func:`scratch_bytes`) and re-exports every name of the kernel modules,
one per C header: :mod:`~tinyopt.deploy.kernels_m7.common` (the helpers they share: rounding
ids, requantization constants, accumulator bounds), :mod:`~tinyopt.deploy.kernels_m7.fc`
(``tn_m7_fc`` / ``tn_m7_fc16``, c/tn_m7_gemm.h's dense part),
:mod:`~tinyopt.deploy.kernels_m7.add` (c/tn_m7_add.h), :mod:`~tinyopt.deploy.kernels_m7.sub`
(c/tn_m7_sub.h), :mod:`~tinyopt.deploy.kernels_m7.subfc16` and
:mod:`~tinyopt.deploy.kernels_m7.subconv` (c/tn_m7_subfc.h, c/tn_m7_subconv.h),
:mod:`~tinyopt.deploy.kernels_m7.conv` (``tn_m7_conv``, c/tn_m7_gemm.h) and
:mod:`~tinyopt.deploy.kernels_m7.dw3` (``tn_m7_dw3``, c/tn_m7_dw.h). A name re-exported here
is a copy of the binding: to replace a function for a test, patch it in the module that calls
it (e.g. ``kernels_m7.subconv.subfc_plan``).

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
- ``fc``: dense layers of 8-bit inputs and 8-bit weights, ``tn_m7_fc`` or, for a small layer,
  ``tn_m7_fc16`` (:mod:`~tinyopt.deploy.kernels_m7.fc`); sub-byte dense layers
  ``tn_m7_subfc`` / ``tn_m7_subfc16`` (:mod:`~tinyopt.deploy.kernels_m7.subconv`,
  :mod:`~tinyopt.deploy.kernels_m7.subfc16`).
- ``conv`` and ``pw``: convolutions and pointwise layers of 8-bit inputs and weights,
  ``tn_m7_conv`` (:mod:`~tinyopt.deploy.kernels_m7.conv`).
- ``sub``: sub-byte weights or inputs, ``tn_m7_sub``, ``tn_m7_subconv`` or ``tn_m7_subfc``
  (:mod:`~tinyopt.deploy.kernels_m7.sub`, :mod:`~tinyopt.deploy.kernels_m7.subconv`).
- ``depthwise``: depth multiplier 1, weights of b in (2, 4, 8) bits, channels a multiple of
  32 / b, no fused pool: 32 / b channels per word of weights, two per lane pair (SMLABB /
  SMLATT); inputs of the weights' width a word at a time (sub-byte: unsigned), other inputs
  element by element. A depthwise layer of all-ones weights (TFLite's MEAN) becomes a plain sum.
  3x3 layers take the row kernel ``tn_m7_dw3`` where it applies
  (:mod:`~tinyopt.deploy.kernels_m7.dw3`).
- ``depthwise_scalar``: the other depthwise layers (channels not a multiple of the word, depth
  multiplier > 1, 1-bit weights): one channel at a time, shapes and widths constant.
- ``pool``: stand-alone max and average pools of 1-8-bit tensors (32-bit sums, a hardware
  divide).
- ``add``: the element-wise ADD of two 8-bit tensors, ``tn_m7_add``
  (:mod:`~tinyopt.deploy.kernels_m7.add`).
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

from dataclasses import dataclass, replace

import numpy as np

from tinyopt.integer.steps import (  # noqa: F401  (MAX_SCRATCH, KERNEL_MODES: re-exported)
    KERNEL_MODES, MAX_SCRATCH, SUB_BITS, Step, _hwc, conv_lanes, fc_fits, gemm_geometry,
    kernel_window, m7_kernel, scratch_bytes as step_scratch_bytes, scratch_parts, dw3_fits,
    dw3_weights_fit, dw3_width, dw3_scratch_bytes, kind_scratch_parts, sub_direct, sub_units,
    sub_conv_step, sub_fc_fits, sub_lane_group, sub_lanes)
from tinyopt.integer.arith import packed_bytes  # noqa: F401  (re-exported)
from tinyopt.integer.ops.registry import REGISTRY
from tinyopt.names import c_comment
from tinyopt.deploy.kernels_m7.common import (  # noqa: F401  (re-exported)
    _pool_args,
    ROUNDING_ID, _rounding, _scratch, _row_zero_points, _padded_rows, signed_weights, _signed_rows,
    _inside, requant_constants, acc_bound, _x_box, INT32, _ones_row)
from tinyopt.deploy.kernels_m7.fc import (  # noqa: F401  (re-exported)
    fc_acc32, fc_weights, FC16_MAX_WEIGHTS, FC16_ROWS, fc16_fits, fc16_doubled, fc16_weights)
from tinyopt.deploy.kernels_m7.add import (  # noqa: F401  (re-exported)
    _stage, _addends, add_plan, _add_args, _add_function, _fused_add_args)
from tinyopt.deploy.kernels_m7.sub import (  # noqa: F401  (re-exported)
    _sub_pairs, sub_weights, _sub_call)
from tinyopt.deploy.kernels_m7.subfc16 import (  # noqa: F401  (re-exported)
    SUBFC16_ROWS, _subfc16_rows, subfc16_scale, subfc16_weights)
from tinyopt.deploy.kernels_m7.subconv import (  # noqa: F401  (re-exported)
    _subconv_rows, subconv_raw, subconv_weights, subfc_plan, subfc_oct, _oct_words, subfc_weights,
    _subfc_call, subconv_add_table, _subconv_call)
from tinyopt.deploy.kernels_m7.conv import (  # noqa: F401  (re-exported)
    conv_plan, _conv_tab, _conv_tables, conv_weights, W16_MAX_LANES, _w16_weights, w16_shift,
    _w16_scaled, w16_add_table)
from tinyopt.deploy.kernels_m7.dw3 import (  # noqa: F401  (re-exported)
    dw3_plan, dw3_weights, dw3_tail_offset, _dw3_call)
from tinyopt.deploy.kernels_m7.forms import (  # noqa: F401  (re-exported)
    FORM_PARAMS, forms_defines, kernel_params, union_forms, unit_forms)


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
        return head + _subfc_call(step, common, zw, rq, u, arena) + "}\n"
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
    pool = _pool_args(step)
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


def scratch_bytes(choices: list[Choice]) -> int:
    """The largest scratch of any step (bytes in the arena, alive during that step only)."""
    return max((c.scratch for c in choices), default=0)


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
                      weights=dw3_weights(step.layer, plan["CC"], bool(plan["WIDE"]),
                                          lean=dw3_tail_offset(step) >= 0))
    kind, reason = m7_kernel(replace(step, graph_rounding=None), bits_rule=False)
    if kind == "depthwise_scalar":  # tn_m7_depthwise cannot run it (channels, widths)
        return Choice(kind, f"model_step{index}", scratch=sum(kind_scratch_parts(step, kind)),
                      reason=f"{why}; {reason}")
    return Choice("depthwise", f"model_step{index}", scratch=scratch, reason=why)

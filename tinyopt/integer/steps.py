"""The steps an exported integer graph runs and where their tensors live: which nodes become
kernel calls (flatten / reshape alias their input; a compute layer fuses the max pool or the
residual ADD that reads it), the checks of what the C kernels can run, and the arena offsets
from :mod:`tinyopt.integer.memplan`. Used by :func:`tinyopt.deploy.codegen.export_c`, which
re-exports :func:`plan`, :func:`memory_plan` and :class:`Step`; ``docs/integer.md#the-c-export``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from tinyopt.integer import memplan, passes
from tinyopt.integer.arith import packed_bytes
from tinyopt.integer.fixedpoint import check_multipliers  # noqa: F401  (its home; used below)
from tinyopt.integer.graph import IntegerGraph, IntegerLayer, Tensor
from tinyopt.integer.ops.registry import REGISTRY

TENSOR_BITS = (1, 2, 4, 8, 16, 32)


def __getattr__(name: str):
    # Views of the op registry (tinyopt.integer.ops), computed when asked so that an op module
    # added there is planned and exported without an edit here: the kinds that run as a kernel
    # call, those that are no step (their output aliases their input's bytes), both, and the
    # inputs each kernel may overwrite (element i read before it is written).
    if name == "STEP_KINDS":
        return tuple(k for k, op in REGISTRY.items() if not op.alias)
    if name == "ALIAS_KINDS":
        return tuple(k for k, op in REGISTRY.items() if op.alias)
    if name == "SUPPORTED_KINDS":
        return tuple(REGISTRY)
    if name == "INPLACE_INPUTS":
        return {k: op.inplace_inputs for k, op in REGISTRY.items() if op.inplace_inputs}
    raise AttributeError(name)


# Kernel sets of the C export (tinyopt.deploy.kernels_m7): specialised Cortex-M7 kernels where
# they apply, or the portable kernels of tinyopt_nn.c only (which need no scratch).
KERNEL_MODES = ("m7", "portable")
# Bytes of im2col a gemm step may take; a larger window stays on the portable kernel (which
# needs none), so one wide layer does not grow the arena by its im2col.
MAX_SCRATCH = 16384
# The scratch of a step is int16 im2col rows read a word at a time and int32 outputs: its offset
# in the arena is a multiple of 4 (the C arena itself is 4-byte aligned).
SCRATCH_ALIGN = 4
# On a Keras-path ("floor") graph, the kernels with more scratch than their lean alternative
# (the 3x3 depthwise row kernel, tn_m7_subconv) run only where that scratch does not grow the
# arena (memory_plan); False: wherever they fit (the kernel tests force them so).
SCRATCH_ONLY_WHERE_FREE = True

# The dense and pointwise kernels of 8-bit layers (tn_m7_fc, tn_m7_conv) read their weights in an
# order of their own, which codegen.export_c writes for those steps (kernels_m7.Choice.weights);
# False runs those layers on the gemm kernel (bit-exact too) with the row layout.
OWN_WEIGHT_ORDER = True


@dataclass
class Step:
    """One call of ``tn_run``: a compute layer (with its fused max pool), a pool, or a DAG node.
    ``inputs`` / ``output`` name the tensors it reads and writes; ``in_offsets`` /
    ``out_offset`` place them in the arena (``in_offset`` is the first input's);
    ``scratch_offset`` / ``scratch_bytes`` the kernel's scratch (0 bytes: none)."""

    name: str
    layer: IntegerLayer
    pool: IntegerLayer | None
    in_shape: tuple
    in_bits: int
    out_shape: tuple
    out_bits: int
    in_offset: int = 0
    out_offset: int = 0
    inputs: tuple = ()
    output: str = ""
    in_specs: tuple = ()  # the Tensor records of ``inputs``
    in_offsets: tuple = ()
    add: IntegerLayer | None = None  # a fused residual ADD (inputs[1] is its other addend)
    add_slot: int = 0  # which input of the ADD the compute layer's output is
    scratch_bytes: int = 0  # the kernel's scratch (:func:`scratch_bytes`), alive in this step
    scratch_offset: int = 0  # ... its place in the arena (a multiple of SCRATCH_ALIGN)
    # may it take a kernel needing more scratch than its lean alternative (tn_m7_dw3,
    # tn_m7_subconv)? memory_plan: on a Keras-path graph only where that scratch is free
    roomy: bool = True
    graph_rounding: str | None = None  # the graph's requantization flavour (IntegerGraph.rounding)
    # per input: is this step its last reader (no later step reads it or an alias of it; not
    # the graph's input or output)? memory_plan. Then the kernel may write over the input's
    # bytes it has finished reading (kernels_m7.sub.sub_head_lanes)
    in_dead: tuple = ()

    @property
    def in_bytes(self) -> int:
        return packed_bytes(int(np.prod(self.in_shape)), self.in_bits)

    @property
    def out_bytes(self) -> int:
        return packed_bytes(int(np.prod(self.out_shape)), self.out_bits)


def _hwc(shape) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) == 3:
        return shape
    if len(shape) == 1:
        return (1, 1, shape[0])
    if len(shape) == 2:
        return (1, shape[0], shape[1])
    raise ValueError(f"tensor shape {shape} is not (C,), (W, C) or (H, W, C)")


def check_layer(layer: IntegerLayer, rounding: str) -> None:
    """Can the C kernels run ``layer``?

    Arguments:
        layer: a node of the graph.
        rounding: the graph's requantization flavour (used when the node names none).

    Raises:
        ValueError: naming the node: a kind no op module registers (the registered ones
            listed), bit widths, dimensions or multipliers the kernels or descriptors cannot
            hold (the common checks here, the op's own in its ``check_c``).
    """
    where = f"layer {layer.name!r} ({layer.kind})"
    op = REGISTRY.get(layer.kind)
    if op is None:
        raise ValueError(f"{where}: the C export does not support {layer.kind} nodes; it runs "
                         f"{', '.join(sorted(REGISTRY))}")
    for what, bits, signed in (("input", layer.in_bits, layer.in_signed),
                               ("output", layer.out_bits, layer.out_signed)):
        if bits not in TENSOR_BITS:
            raise ValueError(f"{where}: {what} bits {bits} not supported; use one of "
                             f"{TENSOR_BITS}")
        if bits == 32 and not signed:
            raise ValueError(f"{where}: unsigned 32-bit {what}s are not supported (int32 only)")
    dims = [*_hwc(layer.in_shape), *_hwc(layer.out_shape)]
    if max(dims) > 65535:
        raise ValueError(f"{where}: a tensor dimension exceeds 65535: {dims}")
    small = list(layer.stride) + list(layer.padding) + list(layer.pool_size)
    if layer.kind in ("conv2d", "pointwise", "depthwise"):
        small += list(layer.weight_shape[:-1] if layer.kind == "depthwise"
                      else layer.weight_shape[1:3]) + [layer.depth_multiplier] \
            + list(layer.dilation)
    if max(small) > 255 or min(small) < 0:
        raise ValueError(f"{where}: strides, paddings, kernel and pool sizes must be in "
                         f"[0, 255], got {small}")
    if op.check_c is not None:
        op.check_c(layer, layer.rounding or rounding, where)


def write_delay(step: Step) -> int | None:
    """How far below its input a windowed step may start its output: the smallest d >= 0 such
    that, with the output d bytes below the input, every output byte is written only after the
    kernel's last read of the input byte it lands on. None when the step is not of this form.

    The kernels (tn_compute without fusion, tn_pool) compute output element e = (oy, ox, c) in
    row-major order, reading their whole window first, then write byte e. Output byte e lands
    on input byte e - d, so d must exceed (last element reading input byte i) - i for every i
    read. A 3x3 convolution with stride 1 thus trails its input by about two rows, a pointwise
    layer by one pixel, a strided layer hardly at all: the step needs about max(input, output)
    bytes instead of their sum. Only 8-bit input and output (one element, one byte); not for
    steps with a fused pool or add, dense layers (every output reads every input) or DAG nodes.

    Arguments:
        step: a step of :func:`memory_plan`.

    Returns:
        d in bytes, or None.
    """
    lay = step.layer
    if (step.pool is not None or step.add is not None or len(step.inputs) != 1
            or lay.kind not in ("conv2d", "pointwise", "depthwise", "maxpool", "avgpool")
            or lay.in_bits != 8 or lay.out_bits != 8):
        return None
    h, w, c_in = _hwc(lay.in_shape)
    oh, ow, c_out = _hwc(lay.out_shape)
    if lay.kind in ("maxpool", "avgpool"):
        kh, kw = lay.pool_size
    elif lay.kind == "depthwise":
        kh, kw = lay.weight_shape[:2]
    else:
        kh, kw = lay.weight_shape[1:3]
    (sh, sw), (top, _, left, _) = lay.stride, lay.padding

    def last_out(size, k, stride, pad, out):  # per input index: last output index reading it
        i = np.arange(size)
        hi = np.minimum((i + pad) // stride, out - 1)
        lo = -((k - 1 - i - pad) // stride)  # ceil((i + pad - k + 1) / stride)
        return np.where(hi >= np.maximum(lo, 0), hi, -1)
    ly, lx = last_out(h, kh, sh, top, oh), last_out(w, kw, sw, left, ow)
    pix = np.where((ly[:, None] >= 0) & (lx[None, :] >= 0), ly[:, None] * ow + lx[None, :], -1)
    ci = np.arange(c_in)
    if lay.kind in ("conv2d", "pointwise"):
        chan = np.full(c_in, c_out - 1)  # every output channel reads every input channel
    elif lay.kind == "depthwise":
        chan = ci * lay.depth_multiplier + lay.depth_multiplier - 1
    else:
        chan = ci
    last = pix[..., None] * c_out + chan  # [h, w, c_in]: last output element reading it
    index = np.arange(h * w * c_in).reshape(h, w, c_in)
    read = (pix >= 0)[..., None] & np.ones(c_in, bool)
    if not read.any():
        return None
    return max(0, int((last - index)[read].max()) + 1)


# ------------------------------------------------------------------------------ kernel scratch

def kernel_window(layer: IntegerLayer) -> tuple[int, int]:
    """(KH, KW) of a compute layer's window (1 x 1 for a dense layer)."""
    if layer.kind == "depthwise":
        return tuple(int(k) for k in layer.weight_shape[:2])
    if layer.kind == "dense":
        return 1, 1
    return tuple(int(k) for k in layer.weight_shape[1:3])


def gemm_geometry(layer: IntegerLayer) -> dict:
    """The constants of a gemm kernel call (tn_m7_gemm.h): input H, W, C as the kernel sees it
    (a dense layer: 1 x 1 x all input elements), output OH, OW, window KH, KW, NW words of
    weights per window and KP = NW * (32 / weight bits) int16 lanes of an im2col row."""
    if layer.kind == "dense":
        h, w, c = 1, 1, int(np.prod(layer.in_shape))
        oh = ow = 1
    else:
        h, w, c = _hwc(layer.in_shape)
        oh, ow, _ = _hwc(layer.out_shape)
    kh, kw = kernel_window(layer)
    n = 32 // layer.weight_bits
    nw = -(-(kh * kw * c) // n)
    return {"H": h, "W": w, "C": c, "OH": oh, "OW": ow, "KH": kh, "KW": kw, "NW": nw,
            "KP": nw * n}


def im2col_rows(step: Step, geo: dict) -> int:
    """im2col rows of a gemm step: two (a pixel pair), one for a single output pixel."""
    return 1 if geo["OH"] * geo["OW"] == 1 and step.pool is None else 2


def fc_fits(step: Step) -> bool:
    """Does the scratch-free dense kernel (tn_m7_fc, c/tn_m7_gemm.h) run ``step``? A dense layer
    of 8-bit inputs and weights, no fused ADD, whose 32-bit sums of weight code x (x - z_x) over
    its K inputs cannot overflow (K * 255 * max |x - z_x| < 2^31: the kernel recovers one row of
    each pair from a 64-bit sum minus that 32-bit one)."""
    layer = step.layer
    if (not OWN_WEIGHT_ORDER or layer.kind != "dense" or layer.weight_bits != 8
            or layer.in_bits != 8 or step.add is not None or step.pool is not None):
        return False
    z = int(layer.in_zero_point)
    lo, hi = (-128, 127) if layer.in_signed else (0, 255)
    return int(np.prod(layer.in_shape)) * 255 * max(abs(lo - z), abs(hi - z)) < (1 << 31)


def conv_lanes(layer: IntegerLayer) -> tuple[int, int]:
    """(KWCP, KP) of tn_m7_conv (c/tn_m7_gemm.h): the lanes of one window row (KW * C input
    bytes rounded up to a group of four) and of a whole window (KH rows)."""
    kh, kw = kernel_window(layer)
    kwcp = -(-kw * _hwc(layer.in_shape)[2] // 4) * 4
    return kwcp, kh * kwcp


def _conv8(step: Step, kind: str) -> bool:
    """A ``kind`` layer of 8-bit inputs and weights without fused pool whose 32-bit sums of
    weight code x (x - z_x) over a window cannot overflow (KP * 255 * max |x - z_x| < 2^31:
    tn_m7_conv recovers one row of each pair from a 64-bit sum minus that 32-bit one) and whose
    two pixels' lanes fit :data:`MAX_SCRATCH`."""
    layer = step.layer
    if (not OWN_WEIGHT_ORDER or layer.kind != kind or layer.weight_bits != 8
            or layer.in_bits != 8 or step.pool is not None):
        return False
    z = int(layer.in_zero_point)
    lo, hi = (-128, 127) if layer.in_signed else (0, 255)
    kp = conv_lanes(layer)[1]
    return kp * 255 * max(abs(lo - z), abs(hi - z)) < (1 << 31) and 4 * kp <= MAX_SCRATCH


def pw_fits(step: Step) -> bool:
    """Does tn_m7_conv (c/tn_m7_gemm.h) run ``step`` as a pointwise layer ("pw")? A pointwise
    layer of 8-bit inputs and weights without padding or fused pool (a fused ADD is fine)
    within :func:`_conv8`'s bounds."""
    return _conv8(step, "pointwise") and not any(step.layer.padding)


def conv_fits(step: Step) -> bool:
    """Does tn_m7_conv (c/tn_m7_gemm.h) run ``step`` as a convolution ("conv")? A conv2d layer
    of 8-bit inputs and weights (any window, stride, padding, dilation; a fused ADD is fine, a
    fused max pool is not) within :func:`_conv8`'s bounds."""
    return _conv8(step, "conv2d")


def m7_kernel(step: Step, kernels: str = "m7", bits_rule: bool = True) -> tuple[str, str]:
    """Which kernel family runs ``step`` (:func:`tinyopt.deploy.kernels_m7.choose` builds on it).

    Arguments:
        step: a step of :func:`memory_plan`.
        kernels: one of :data:`KERNEL_MODES`.
        bits_rule: apply :func:`sub_kernel` to a compute step of sub-byte weights or inputs
            (its scratch never exceeds the 8-bit kernel's); False: the choice without it.

    Returns:
        (kind, reason): kind in "gemm", "fc" (:func:`fc_fits`: no scratch), "pw"
        (:func:`pw_fits`) and "conv" (:func:`conv_fits`: tn_m7_conv, two pixels' lanes; the
        one kernel of dilated layers, else they stay portable), "sub"
        (:func:`sub_kernel`: sub-byte weights or inputs), "op" (the op's Cortex-M7 twin,
        ``OpKind.m7_function``, where its ``m7_check`` takes the step), "depthwise",
        "depthwise_scalar",
        "pool", "add" (the specialised ADD if ``kernels_m7.add_plan`` finds exact constants,
        else the portable one: neither needs scratch) or "portable"; reason: why a compute step
        stays portable or takes the scalar depthwise kernel ("" otherwise).

    Raises:
        ValueError: an unknown ``kernels``.
    """
    if kernels not in KERNEL_MODES:
        raise ValueError(f"kernels must be one of {KERNEL_MODES}, got {kernels!r}")
    layer = step.layer
    if kernels == "portable":
        return "portable", ""
    op = REGISTRY[layer.kind]
    if op.m7_function is not None:  # the op's own Cortex-M7 twin (its module, c/ops/m7/)
        why = op.m7_check(step) if op.m7_check is not None else ""
        return ("op", "") if not why else ("portable", why)
    if tuple(layer.dilation) != (1, 1):  # of the specialised kernels only tn_m7_conv dilates
        return (("conv", "") if conv_fits(step) and abs(int(layer.in_zero_point)) <= 255
                else ("portable", _dilated_why(step)))
    if layer.kind in ("maxpool", "avgpool"):
        return ("pool", "") if layer.in_bits <= 8 else ("portable", "")
    if layer.kind == "add":
        return "add", ""
    if layer.kind not in ("conv2d", "pointwise", "depthwise", "dense"):
        return "portable", ""
    if bits_rule and min(layer.in_bits, layer.weight_bits) < 8 and layer.in_bits <= 8:
        return sub_kernel(step)  # issue 29: lower bits never grow the arena (below)
    if layer.in_bits > 8:
        return "portable", f"{layer.in_bits}-bit input"
    if abs(int(layer.in_zero_point)) > 255:
        return "portable", f"input zero point {layer.in_zero_point} outside [-255, 255]"
    if layer.kind == "depthwise":
        b, c = layer.weight_bits, _hwc(layer.in_shape)[2]
        if dw3_fits(step):  # the 3x3 row kernel, any 2/4/8-bit widths (kernels_m7.dw3_plan)
            return "depthwise", ""
        if step.pool is not None:  # neither depthwise kernel fuses a pool
            return "portable", "fused max pool"
        why = ("depth multiplier > 1" if layer.depth_multiplier != 1
               else f"{b}-bit weights" if b not in (2, 4, 8)
               else f"{c} channels, not a multiple of {32 // b}" if c % (32 // b) else "")
        return ("depthwise_scalar", why) if why else ("depthwise", "")
    if fc_fits(step):
        return "fc", ""
    if pw_fits(step):
        return "pw", ""
    if conv_fits(step):
        return "conv", ""
    geo = gemm_geometry(layer)
    im2col = im2col_rows(step, geo) * 2 * geo["KP"]
    if im2col > MAX_SCRATCH:
        return "portable", f"im2col scratch {im2col} B > {MAX_SCRATCH} B"
    return "gemm", ""


def _dilated_why(step: Step) -> str:
    """Why a dilated compute step stays portable: tn_m7_conv (:func:`conv_fits`: 8-bit conv2d
    inputs and weights, no fused pool, bounded sums and lanes) is the one specialised kernel
    whose window gather takes dilation."""
    layer = step.layer
    why = (f"a {layer.kind} layer" if layer.kind != "conv2d"
           else f"{layer.in_bits}-bit inputs" if layer.in_bits != 8
           else f"{layer.weight_bits}-bit weights" if layer.weight_bits != 8
           else "a fused max pool" if step.pool is not None
           else f"input zero point {layer.in_zero_point} outside [-255, 255]"
           if abs(int(layer.in_zero_point)) > 255
           else "sums or window lanes beyond tn_m7_conv's bounds")
    return f"dilated: {why} (only tn_m7_conv, 8-bit conv2d, takes dilated windows)"


def dw3_fits(step: Step) -> bool:
    """Does the 3x3 depthwise row kernel (tn_m7_dw3, c/tn_m7_dw.h) get ``step``, and its
    scratch (:func:`dw3_scratch_bytes`)? A depthwise layer of 2, 4 or 8-bit inputs, weights and
    outputs (any mix), 3x3 window, strides of 1 or 2, depth multiplier 1, channels a multiple
    of 4 (sub-byte inputs: a pixel's codes a whole number of halfwords, C XB % 16 == 0), no
    fused pool or ADD, requantized, in a graph of a known rounding flavour (an imported
    .tflite, or the sub-byte Keras path's "floor"). Any weights fit: the kernel takes
    w - z_w as int16 (symmetric 8-bit and sub-byte weights as int8 bytes, asymmetric 8-bit ones
    as int16 pairs, ``kernels_m7.dw3_weights``), so the choice is known before any weight is
    and the memory model (:mod:`tinyopt.mixed.skeleton`, planned before calibration) reserves
    the same scratch the export uses. Pure arithmetic on the layer's shape and widths and the
    graph's flavour. A step the plan gives no free bytes for that scratch (not
    :attr:`Step.roomy`) takes the row kernel's tail form where :func:`dw3_tail_fits` allows it
    (no scratch of its own: the planes of a few channels in the output's tail)."""
    return _dw3_shape_fits(step) and (step.roomy or dw3_tail_fits(step))


def _dw3_shape_fits(step: Step) -> bool:
    """:func:`dw3_fits` without the scratch: the layer's kind, widths and geometry."""
    layer = step.layer
    c = _hwc(layer.in_shape)[2]
    xb, wb, ob = int(layer.in_bits), int(layer.weight_bits), int(layer.out_bits)
    return not (step.graph_rounding not in ("floor", "tflite_single", "tflite_double")
                or layer.kind != "depthwise"
                or wb not in (2, 4, 8) or xb not in (2, 4, 8)
                or ob not in (2, 4, 8) or step.pool is not None or step.add is not None
                or not layer.requantize or layer.depth_multiplier != 1
                or tuple(int(k) for k in layer.weight_shape[:2]) != (3, 3)
                or tuple(layer.dilation) != (1, 1)
                or any(int(s) not in (1, 2) for s in layer.stride)
                or c % 4 or (c * xb) % 16 or abs(int(layer.in_zero_point)) > 255)


def dw3_weights_fit(layer) -> bool:
    """Do a depthwise layer's weights minus their zero point fit in int8 (the row kernel's
    compact weight bytes; TFLite's symmetric weights: w - 128 in [-127, 127]; every sub-byte
    width)? Else the row kernel reads them as int16 pairs (``kernels_m7.dw3_weights``)."""
    w = layer.unpacked_weights().astype(np.int64).reshape(9, -1)
    zw = np.broadcast_to(np.atleast_1d(np.asarray(layer.weight_zero_point, np.int64)),
                         (w.shape[1],))
    d = w - zw[None, :]
    return bool(d.min() >= -128 and d.max() <= 127)


def dw3_width(layer) -> int:
    """WP: int16 columns of one widened input row of the row kernel (padding included, even,
    covering every column its word loads reach; a multiple of 4 at stride 2 with 8-bit inputs
    and 4+ outputs per row, whose rows are stored in chunks of four columns, c/tn_m7_dw.h)."""
    _, w, _ = _hwc(layer.in_shape)
    _, ow, _ = _hwc(layer.out_shape)
    _, _, left, right = (int(p) for p in layer.padding)
    sw = int(layer.stride[1])
    reach = 2 * ow + 2 if sw == 2 else ow + 3  # one past the last halfword a load reads
    cols = max(w + left + right, reach)
    chunks = sw == 2 and int(layer.in_bits) == 8 and ow >= 4  # c/tn_m7_dw.h TN_DW3_CHUNKS
    return cols + (-cols) % (4 if chunks else 2)


def dw3_scratch_bytes(step: Step) -> int:
    """Scratch of the row kernel: three input rows of all channels as int16 (3 C WP 2 bytes),
    0 when :func:`dw3_fits` refuses the step (:func:`scratch_parts` plans it for the
    depthwise kernel kind) or gives it the tail form (not :attr:`Step.roomy`: its planes are
    in its own output, :func:`dw3_tail_fits`)."""
    if not dw3_fits(step) or not step.roomy:
        return 0
    return 3 * _hwc(step.layer.in_shape)[2] * dw3_width(step.layer) * 2


def dw3_block(layer) -> int:
    """CB: the channels of one block of the row kernel's tail form (:func:`dw3_tail_fits`): a
    halfword of input codes, at least 4 channels (16 / XB; C is a multiple of it, dw3_fits),
    the fewest the kernel widens, so that its planes (:func:`dw3_tail_bytes`) take the fewest
    output rows from the row kernel."""
    return max(4, 16 // int(layer.in_bits))


def dw3_tail_bytes(layer) -> int:
    """Bytes of the tail form's planes: three input rows of :func:`dw3_block` channels as
    int16 (3 CB WP 2)."""
    return 3 * dw3_block(layer) * dw3_width(layer) * 2


def dw3_tail_rows(layer, out_offset: int | None = None) -> int:
    """OYF: the output rows the tail form runs on the row kernel, those whose bytes end at or
    before its planes, which end with the output (:func:`dw3_tail_bytes`, their start a
    multiple of :data:`SCRATCH_ALIGN` in the arena); the rows after them take the lean
    kernel.

    Arguments:
        layer: a depthwise layer of :func:`dw3_fits`'s shape.
        out_offset: the output's offset in the arena (``Step.out_offset``), or None: the
            fewest rows any offset gives (before the plan).

    Returns:
        OYF, 0 when the planes do not fit in the output.
    """
    oh, ow, c = _hwc(layer.out_shape)
    row = packed_bytes(ow * c, int(layer.out_bits))
    end = oh * row - dw3_tail_bytes(layer)  # the planes' latest start, from the output's start
    if out_offset is None:
        start = end - (SCRATCH_ALIGN - 1)
    else:
        start = (int(out_offset) + end) // SCRATCH_ALIGN * SCRATCH_ALIGN - int(out_offset)
    return max(0, start // row) if start >= 0 else 0


def dw3_tail_fits(step: Step) -> bool:
    """Does the row kernel's tail form run ``step`` (tn_m7_dw3 with CB < C, c/tn_m7_dw.h),
    needing no scratch of its own? Its planes hold :func:`dw3_block` channels at a time and
    lie in the output's own tail, which the blocks' rows before it (:func:`dw3_tail_rows`, at
    least one) never write; the other rows run tn_m7_depthwise (channels a multiple of 32 /
    weight bits, its weights exported after the row kernel's). Only where the output never
    overlaps the input: no sliding write (:func:`write_delay` is None: not 8-bit inputs and
    outputs), since a block writes its outputs before later blocks read their inputs; not the
    stride-2 chunk layout (8-bit inputs, :func:`dw3_width`). Why: on a sub-byte Keras-path
    graph the full scratch would grow the arena at DS-CNN's depthwise steps (every byte is
    live there), and the lean kernel costs about twice the row kernel per MAC."""
    return (_dw3_shape_fits(step) and write_delay(step) is None
            and dw3_tail_layer(step.layer))


def dw3_tail_layer(layer) -> bool:
    """The layer's part of :func:`dw3_tail_fits`: inputs or outputs below 8 bits (with one
    input and no fused pool or ADD: no sliding write), not the chunk layout, channels a
    multiple of the lean kernel's word of weights and of :func:`dw3_block`, and at least one
    output row before the planes. ``kernels_m7.dw3_weights`` exports the lean kernel's weights
    after the row kernel's for such a layer."""
    _, ow, c = _hwc(layer.out_shape)
    wb, xb, ob = int(layer.weight_bits), int(layer.in_bits), int(layer.out_bits)
    return ((xb != 8 or ob != 8) and wb in (2, 4, 8)
            and not (int(layer.stride[1]) == 2 and xb == 8 and ow >= 4)
            and c % (32 // wb) == 0 and c % dw3_block(layer) == 0
            and dw3_tail_rows(layer) >= 1)


def scratch_parts(step: Step, kernels: str = "m7") -> tuple[int, int]:
    """(im2col bytes, output bytes) of the scratch of ``step``'s kernel (:func:`scratch_bytes`);
    the im2col rows come first, the int32 outputs right after them (a multiple of 8 bytes on)."""
    return kind_scratch_parts(step, m7_kernel(step, kernels)[0])


def kind_scratch_parts(step: Step, kind: str) -> tuple[int, int]:
    """:func:`scratch_parts` of ``step`` run by the kernel family ``kind`` (:func:`m7_kernel`)."""
    layer = step.layer
    if kind == "op":  # an op's M7 twin: what its module says, word-aligned
        need = REGISTRY[layer.kind].m7_scratch
        return -(-int(need(step) if need is not None else 0) // 4) * 4, 0
    if kind == "sub":  # tn_m7_sub: the gathered window's codes; a fused pool's maxima
        if sub_fc_fits(step) and not sub_conv_step(step):  # tn_m7_subfc: UNP's buffer
            return 0, sub_fc_unpack_bytes(step)
        return sub_scratch_parts(step)
    if kind in ("pw", "conv"):  # two pixels' int16 lanes (a lone pixel: twice); outputs
        # written as computed, or, with a fused ADD, the pair's int32 outputs first
        return 2 * 2 * conv_lanes(layer)[1], 8 * int(layer.out_channels) * (
            step.add is not None)
    if kind == "gemm":
        geo = gemm_geometry(layer)
        rows = im2col_rows(step, geo)
        # v: one int32 per output channel and pixel of a pair; with a fused pool the running
        # max and the pair (tn_m7_gemm's [best | pixel | pixel])
        return rows * 2 * geo["KP"], 4 * int(layer.out_channels) * (3 if step.pool else rows)
    if kind == "depthwise":  # the 3x3 row kernel: three input rows as int16 planes
        return 0, dw3_scratch_bytes(step)
    if kind == "depthwise_scalar":  # every output channel of a pixel before any is written
        return 0, 4 * _hwc(layer.out_shape)[2]
    if kind == "pool":  # every channel of a pooled pixel before any is written
        return 0, 4 * _hwc(layer.in_shape)[2]
    return 0, 0


# ------------------------------------------------------- sub-byte steps (issues 29 and 27)
# A compute step of sub-byte weights or inputs takes a kernel whose scratch is at most that of
# the kernel the same step takes at 8-bit weights and inputs, so that lowering bits never grows
# the arena (the memory-driven search assumes it): tn_m7_sub (c/tn_m7_sub.h) reads the packed
# codes themselves, a dense layer with no scratch at all.

SUB_BITS = (1, 2, 4, 8)  # the weight and input widths tn_m7_sub unpacks


def sub_fits(step: Step) -> bool:
    """Can tn_m7_sub (c/tn_m7_sub.h) run ``step``? A dense, pointwise or (undilated)
    convolution layer of weights and inputs of 1, 2, 4 or 8 bits, not both 8; with padding that
    holds z_x, z_x must be a code of the input's width (the gathered window stores codes)."""
    layer = step.layer
    wb, xb = int(layer.weight_bits), int(layer.in_bits)
    if (not OWN_WEIGHT_ORDER or layer.kind not in ("dense", "pointwise", "conv2d")
            or wb not in SUB_BITS or xb not in SUB_BITS or wb == xb == 8
            or tuple(layer.dilation) != (1, 1) or abs(int(layer.in_zero_point)) > 255):
        return False
    if layer.kind != "dense" and any(layer.padding) and layer.pad_mode != "zero":
        lo = -(1 << (xb - 1)) if layer.in_signed else 0
        return lo <= int(layer.in_zero_point) < lo + (1 << xb)
    return True


def sub_direct(step: Step) -> bool:
    """Does tn_m7_sub read ``step``'s windows in place (a dense layer; a pointwise layer without
    padding whose pixels start on a byte), with no gathered copy?"""
    layer = step.layer
    return layer.kind == "dense" or (
        layer.kind == "pointwise" and not any(layer.padding)
        and (_hwc(layer.in_shape)[2] * int(layer.in_bits)) % 8 == 0)


def sub_units(step: Step) -> int:
    """KU: the codes of a window as tn_m7_sub's dot products read them. A gathered window
    (not :func:`sub_direct`) of K = KH KW C codes is completed to a whole number of units of
    G = 32 / min(XB, WB) codes with the code of x' = 0 (so no scalar tail runs; the weight rows
    are padded alike, ``kernels_m7.sub_weights``) when the tail K % G is longer than its
    padding, z_x is a code of the input's width and the longer window keeps the scratch within
    :func:`eight_bit_scratch`; else K."""
    layer = step.layer
    kh, kw = kernel_window(layer)
    xb, wb = int(layer.in_bits), int(layer.weight_bits)
    k = kh * kw * _hwc(layer.in_shape)[2]
    g = 32 // min(xb, wb)
    ku = -(-k // g) * g
    lo = -(1 << (xb - 1)) if layer.in_signed else 0
    # padding lanes cost a vector lane each, tail codes a scalar multiply each: pad only a tail
    # longer than its padding (a 3x3 window of one channel: 9 codes, G = 16 yes, G = 8 no)
    if (sub_direct(step) or ku - k >= k % g
            or not lo <= int(layer.in_zero_point) < lo + (1 << xb)):
        return k
    pool = 4 * int(layer.out_channels) * (step.pool is not None)
    if -(-packed_bytes(ku, xb) // 4) * 4 + pool > eight_bit_scratch(step):
        return k
    return ku


SUB_LANE_WEIGHT_BITS = (2, 4)  # the weight widths tn_m7_subconv unpacks in registers


def sub_lane_group(layer: IntegerLayer) -> int:
    """GX, the lanes of one unpack group of tn_m7_subconv's windows: 4 for 8-bit inputs
    (tn_m7_conv's groups); 32 / in_bits (a word of codes, unpacked a lane pair per instruction)
    when a window row of KW C codes is a whole number of such words; else 4 (lane by lane, the
    8-bit kernel's window length). A dense layer (tn_m7_subfc): 4 or 32 / in_bits whatever K."""
    xb = int(layer.in_bits)
    kh, kw = kernel_window(layer)
    if layer.kind == "dense":  # tn_m7_subfc: a last partial word completed in a register
        return 4 if xb == 8 else 32 // xb
    if xb == 8 or (kw * _hwc(layer.in_shape)[2]) % (32 // xb):
        return 4
    return 32 // xb


def sub_lanes(layer: IntegerLayer) -> tuple[int, int]:
    """(KWCP, KP) of tn_m7_subconv (c/tn_m7_subconv.h): the lanes of one window row (KW C rounded
    up to :func:`sub_lane_group`) and of a whole window (KH rows)."""
    kh, kw = kernel_window(layer)
    g = sub_lane_group(layer)
    kwcp = -(-kw * _hwc(layer.in_shape)[2] // g) * g
    return kwcp, kh * kwcp


def sub_conv_fits(step: Step) -> bool:
    """Does tn_m7_subconv (c/tn_m7_subconv.h: tn_m7_conv's two pixels' windows of int16 lanes, the
    2 / 4-bit weights unpacked in registers, four rows by two pixels per loop) run ``step``? An
    undilated conv2d or pointwise layer of 2 or 4-bit weights and 2, 4 or 8-bit inputs (a fused
    max pool or ADD is fine), input zero point in [-255, 255], whose two pixels' lanes (and a
    fused ADD's 2 CO int32, a fused pool's CO int32 maxima) fit :data:`MAX_SCRATCH`; with
    2-bit weights, the rows' sums scaled by up to 64 in the loop (rows 0-2 masked in place,
    4^r w for row r; row 3 unmasked, w_0 + 4 w_1 + 16 w_2 + 64 w_3) stay in int32
    (64 * 3 * max |x - z_x| * KP < 2^31). Pure arithmetic on the shape, widths and zero point
    (:func:`sub_kernel` still compares its scratch with the 8-bit kernel's)."""
    layer = step.layer
    wb, xb = int(layer.weight_bits), int(layer.in_bits)
    if (not OWN_WEIGHT_ORDER or layer.kind not in ("conv2d", "pointwise")
            or wb not in SUB_LANE_WEIGHT_BITS or xb not in (2, 4, 8)
            or tuple(layer.dilation) != (1, 1) or abs(int(layer.in_zero_point)) > 255):
        return False
    kp = sub_lanes(layer)[1]
    z = int(layer.in_zero_point)
    lo = -(1 << (xb - 1)) if layer.in_signed else 0
    dx = max(abs(lo - z), abs(lo + (1 << xb) - 1 - z), abs(z))
    if wb == 2 and 64 * 3 * dx * kp >= (1 << 31):
        return False
    return 4 * kp + sub_conv_scratch(step)[1] <= MAX_SCRATCH



def _sub_fc_codes_fit(layer: IntegerLayer, k: int, wb: int, xb: int) -> bool:
    """tn_m7_subfc's conditions on an input of ``k`` codes of ``xb`` bits (:func:`sub_fc_fits`,
    :func:`sub_fc_window`): when k xb is not a whole number of words, z_x a code of the input's
    width (the last word completed with z_x); with 2-bit weights (``wb``) the rows' sums scaled by
    up to 64 in int32: 255 max |x - z_x| KP < 2^31 (KP: k rounded up to whole words)."""
    z = int(layer.in_zero_point)
    lo = -(1 << (xb - 1)) if layer.in_signed else 0
    dx = max(abs(lo - z), abs(lo + (1 << xb) - 1 - z), abs(z))
    kp = -(-k * xb // 32) * 32 // xb
    if kp != k and not lo <= z < lo + (1 << xb):
        return False
    return wb == 4 or 255 * dx * kp < (1 << 31)

def sub_fc_fits(step: Step) -> bool:
    """Does tn_m7_subfc (c/tn_m7_subfc.h: no scratch, tn_m7_subconv's weight blocks against the
    input unpacked a word at a time in registers) run ``step``? A dense layer of 2 or 4-bit
    weights and 2, 4 or 8-bit inputs, a 1-D input of K codes, no fused ADD, input zero point in
    [-255, 255]; when K XB is not a whole number of words, z_x a code of the input's width (the
    last word's missing codes are z_x: x' = 0); with 2-bit weights the rows' sums scaled by up
    to 64 in the loop (row 3 unmasked: w_0 + 4 w_1 + 16 w_2 + 64 w_3) stay in int32
    (255 * max |x - z_x| * KP < 2^31, KP: K rounded up to whole words). Pure arithmetic on the
    shape, widths and zero point."""
    layer = step.layer
    wb, xb = int(layer.weight_bits), int(layer.in_bits)
    if (not OWN_WEIGHT_ORDER or layer.kind != "dense" or wb not in SUB_LANE_WEIGHT_BITS
            or xb not in (2, 4, 8) or step.add is not None or step.pool is not None
            or len(layer.in_shape) != 1 or abs(int(layer.in_zero_point)) > 255):
        return False
    k = int(layer.in_shape[0])
    return _sub_fc_codes_fit(layer, k, wb, xb)


# tn_m7_subfc's UNP (LEAN 2, kernels_m7.subconv.subfc_unpack): a lean dense layer's 2 / 4-bit
# input unpacked once, a lane pair per word, into the step's arena scratch. Bytes of lane pairs
# it may take (0 turns the form off), and the blocks of eight rows from which it pays: per block
# it saves 6 instructions per word of 4-bit inputs and 12 per word of 2-bit ones, and costs about
# 10 / 20 once.
SUBFC_UNPACK_BYTES = 256
SUBFC_UNPACK_BLOCKS = 3


def sub_fc_unpack_size(layer: IntegerLayer) -> int:
    """Arena scratch bytes of tn_m7_subfc's UNP on a dense layer: the sums' start (8 words), the
    input's K / 2 lane pairs (a word each) and the loop's end mark (a word), 36 + 2 K, for 2 /
    4-bit inputs of whole words, 2 K <= :data:`SUBFC_UNPACK_BYTES` and at least
    :data:`SUBFC_UNPACK_BLOCKS` blocks of eight rows; else 0. The layer's shape and widths only
    (not its weights, which decide whether the kernel takes the form): the memory model plans a
    graph's structure (tinyopt.mixed.skeleton), so this is an upper bound (a step whose weights
    keep it off UNP leaves its buffer unused).

    Arguments:
        layer: a dense layer of :func:`sub_fc_fits`.

    Returns:
        Bytes (a multiple of 4), or 0.
    """
    k, xb = int(layer.in_shape[0]), int(layer.in_bits)
    if (xb not in (2, 4) or (k * xb) % 32 or 2 * k > SUBFC_UNPACK_BYTES
            or int(layer.out_channels) // 8 < SUBFC_UNPACK_BLOCKS):
        return 0
    return 4 * (9 + k // 2)


def sub_fc_unpack_bytes(step: Step) -> int:
    """Scratch bytes of a tn_m7_subfc step (:func:`sub_fc_fits`): UNP's buffer
    (:func:`sub_fc_unpack_size`) where the step may take more scratch than its lean alternative
    (:attr:`Step.roomy`: only where the arena keeps its size, :func:`memory_plan`) on a
    Keras-path ("floor") graph, else 0: the kernel (c/tn_m7_subfc.h) then reads the input in
    place (the lean loop), as it does wherever the weights keep the layer off UNP. Why floor
    only: elsewhere (an imported .tflite) every step takes its roomy kernel, and the shape-only
    size would grow the arena for buffers the weights may leave unused."""
    if not step.roomy or step.graph_rounding != "floor":
        return 0
    return sub_fc_unpack_size(step.layer)


def sub_fc_window(layer: IntegerLayer) -> bool:
    """Does tn_m7_sub (c/tn_m7_sub.h) take ``layer``'s windows with tn_m7_subfc's blocks (FC:
    four or eight rows per unpacked input word, the codes unpacked in registers, no scratch of
    their own) instead of its own dot products? A conv2d or pointwise layer of 2 or 4-bit
    weights and 2, 4 or 8-bit inputs, undilated, input zero point in [-255, 255]; each window
    (read in place or gathered, the scratch :func:`sub_scratch_parts` plans either way) is then
    a dense layer's input of K = KH KW C codes, so :func:`sub_fc_fits`' conditions on K hold:
    when K XB is not a whole number of words, z_x a code of the input's width (the last word
    completed with z_x in a register); with 2-bit weights 255 max |x'| KP < 2^31. Why: the lean
    plan (no tn_m7_subconv lanes) runs tn_m7_sub at the arena's peak, and its one-row-pair dot
    products cost about twice tn_m7_subfc's blocks per MAC (issue 29). Depends on the layer
    only (the weight order follows from it: ``kernels_m7.sub_weights``)."""
    wb, xb = int(layer.weight_bits), int(layer.in_bits)
    if (not OWN_WEIGHT_ORDER or layer.kind not in ("conv2d", "pointwise")
            or wb not in SUB_LANE_WEIGHT_BITS or xb not in (2, 4, 8)
            or tuple(layer.dilation) != (1, 1) or abs(int(layer.in_zero_point)) > 255):
        return False
    kh, kw = kernel_window(layer)
    k = kh * kw * _hwc(layer.in_shape)[2]
    return _sub_fc_codes_fit(layer, k, wb, xb)


def sub_scratch_parts(step: Step) -> tuple[int, int]:
    """(window bytes, output bytes) of the sub-byte kernel of ``step``: tn_m7_subconv
    (:func:`sub_conv_fits`, when its scratch is at most :func:`eight_bit_scratch`): two pixels'
    int16 lanes, 4 KP (:func:`sub_lanes`), and with a fused ADD the pair's 2 CO int32 outputs
    (tn_m7_conv's layout); else tn_m7_sub's: ceil(KU XB / 8) (:func:`sub_units`) rounded up to
    a word unless :func:`sub_direct`, and one int32 per output channel with a fused max pool."""
    layer = step.layer
    if sub_conv_step(step):
        return sub_conv_scratch(step)
    gather = 0 if sub_direct(step) else packed_bytes(sub_units(step), int(layer.in_bits))
    return -(-gather // 4) * 4, 4 * int(layer.out_channels) * (step.pool is not None)


def sub_conv_scratch(step: Step) -> tuple[int, int]:
    """tn_m7_subconv's scratch parts on ``step``: 4 KP bytes of lanes; 8 CO with a fused ADD
    (the pair's outputs), 4 CO with a fused max pool (the running maxima)."""
    co = int(step.layer.out_channels)
    return 4 * sub_lanes(step.layer)[1], 8 * co * (step.add is not None) + 4 * co * (
        step.pool is not None)


def sub_conv_step(step: Step) -> bool:
    """Does ``step`` (sub-byte weights or inputs) run tn_m7_subconv: :func:`sub_conv_fits` and
    its scratch at most :func:`eight_bit_scratch` (the rule of :func:`sub_kernel`)?"""
    return (step.roomy and sub_conv_fits(step)
            and sum(sub_conv_scratch(step)) <= eight_bit_scratch(step))


def eight_bit_scratch(step: Step) -> int:
    """Scratch bytes of the kernel ``step`` would take with 8-bit weights and inputs (all else
    equal): the bound :func:`sub_kernel` keeps."""
    twin = replace(step, layer=replace(step.layer, weight_bits=8, in_bits=8))
    return sum(kind_scratch_parts(twin, m7_kernel(twin, bits_rule=False)[0]))


def sub_kernel(step: Step) -> tuple[str, str]:
    """The kernel of a compute step of sub-byte weights or inputs (:func:`m7_kernel` applies
    it): tn_m7_subconv ("sub", :func:`sub_conv_step`: the 8-bit kernel's lanes, near tn_m7_conv
    per MAC) if it fits; else the one the step takes without this rule if it is not the
    portable kernel and its scratch is at most :func:`eight_bit_scratch`, else tn_m7_sub
    ("sub", :func:`sub_fits`; a dense step of :func:`sub_fc_fits` runs tn_m7_subfc, with the
    same zero scratch) if its scratch is, else the portable kernel (no scratch; the reason says
    why). So for every compute step, ``scratch_bytes`` at lower weight / input bits
    <= that at 8 bits, except tn_m7_subfc's optional UNP buffer (:func:`sub_fc_unpack_bytes`),
    which the plan gives only where it keeps the arena's size.

    Returns:
        (kind, reason) as :func:`m7_kernel`.
    """
    if sub_conv_step(step):  # tn_m7_subconv: the 8-bit kernel's lanes, sub-byte weights
        return "sub", ""
    kind, why = m7_kernel(step, bits_rule=False)
    bound = eight_bit_scratch(step)
    if kind != "portable" and sum(kind_scratch_parts(step, kind)) <= bound:
        return kind, why
    if sub_fits(step) and sum(sub_scratch_parts(step)) <= bound:
        return "sub", ""
    if kind == "portable":
        return kind, why
    return "portable", (f"the {kind} kernel's scratch {sum(kind_scratch_parts(step, kind))} B "
                        f"exceeds the {bound} B of the 8-bit kernel of this layer")


def scratch_bytes(step: Step, kernels: str = "m7") -> int:
    """Bytes of scratch the kernel running ``step`` needs: the gemm kernel's im2col rows (int16)
    and output values (int32), the scalar depthwise and pool kernels' output values of one
    pixel, the 8-bit convolution and pointwise kernel's (conv, pw) two pixels' windows of int16
    lanes (and, with a fused ADD, their int32 outputs), the 3x3 depthwise row kernel's three
    input rows as int16 (:func:`dw3_scratch_bytes`); 0 for the dense (fc), the other vector
    depthwise and the ADD kernels and for every
    portable kernel. The planner places it in the arena, alive during the step only
    (:func:`memory_plan`). Pure
    arithmetic on the layer's kind, widths, zero point and geometry: cheap enough for a policy
    search.

    Arguments:
        step: a step of :func:`memory_plan`.
        kernels: one of :data:`KERNEL_MODES` ("portable": 0).

    Returns:
        Bytes (a multiple of 4).

    Raises:
        ValueError: an unknown ``kernels``.
    """
    return sum(scratch_parts(step, kernels))


def tensor_bytes(t: Tensor) -> int:
    """Bytes of a tensor packed as the C code stores it."""
    return packed_bytes(int(np.prod(t.shape)), t.bits)


def memory_plan(graph: IntegerGraph, fuse_pool: bool = True, fuse_add: bool = True,
                overlap: bool = True, kernels: str = "m7", arena_budget: int | None = None
                ) -> tuple[list[Step], memplan.MemoryPlan]:
    """The steps of ``graph`` in execution order and where their tensors live.

    A step per node in :meth:`IntegerGraph.order`, except: flatten / reshape nodes are no step
    (their output aliases their input); a compute node whose only reader is a max pool, and
    whose output is not a graph output, is fused with it (``fuse_pool``: the un-pooled tensor
    is never stored); a compute node whose only reader is an ADD whose other addend is already
    computed is fused with it (``fuse_add``: the sum is formed element by element as the layer
    writes its output, which may overwrite the other addend, so a residual block needs no
    third buffer). Add, quantize and softmax may write in place over an input whose last
    reader they are (:data:`INPLACE_INPUTS`); 8-bit convolutions and pools may slide their
    output over such an input (:func:`write_delay`). Offsets:
    :func:`tinyopt.integer.memplan.plan_memory`. ``overlap=False`` keeps every tensor whole for
    its whole lifetime (no in-place, sliding or add-fused writes): the plan of the memory model's
    live tensors (:func:`tinyopt.mixed.memory.peak_ram_bytes` is its lower bound).

    Scratch: a step whose kernel (for ``kernels``, :func:`m7_kernel`) needs scratch
    (:func:`scratch_bytes`) gets a buffer of its own alive during that step only, planned like a
    tensor: it never overlaps the step's inputs or output, and may reuse the bytes of tensors
    dead at that step. ``arena_bytes`` includes it; ``Step.scratch_offset`` places it (a
    multiple of :data:`SCRATCH_ALIGN`). ``kernels="portable"`` plans no scratch. On a
    sub-byte Keras-path graph the kernels that need more scratch than their lean alternative run
    only where it does not grow the arena (:func:`_plan_roomy_kernels`, :attr:`Step.roomy`), or,
    with ``arena_budget``, where the arena stays within that budget (speed for RAM the device
    has to spare).

    Arguments:
        arena_budget: None (default): the arena planned with the lean kernels is the arena (RAM
            first; the memory model's figure). Bytes: the faster, scratch-hungry kernels of a
            Keras-path graph may grow the arena up to that many bytes (never above it; a budget
            below the lean arena changes nothing: the lean plan is the smallest there is). An
            imported .tflite ("tflite" rounding) runs its fast kernels everywhere regardless.

    Returns:
        (steps with their arena offsets, the :class:`~tinyopt.integer.memplan.MemoryPlan`).

    Raises:
        ValueError: an invalid graph, several graph outputs, a graph without a step, a node
            the C kernels do not support (named, with the supported set), an unknown
            ``kernels``, or an ``arena_budget`` that is not a non-negative int.
    """
    if kernels not in KERNEL_MODES:
        raise ValueError(f"kernels must be one of {KERNEL_MODES}, got {kernels!r}")
    check_arena_budget(arena_budget)
    graph.validate()
    outputs = graph.output_names()
    if len(outputs) != 1:
        raise ValueError(f"graph {graph.name!r} has {len(outputs)} outputs {outputs}; the C "
                         "export writes one (model_run(in, out))")
    wiring, consumers, layers = graph.wiring(), graph.consumers(), graph.layers
    pool_fusions = passes.max_pool_fusions(graph)
    steps: list[Step] = []
    aliases: dict[str, str] = {}
    fused: set[int] = set()
    produced = {graph.input_name}
    for i in graph.order():
        if i in fused:
            continue
        layer, (ins, outs) = layers[i], wiring[i]
        check_layer(layer, graph.rounding)
        if REGISTRY[layer.kind].alias:
            aliases[outs[0]] = ins[0]
            produced.add(outs[0])
            continue
        pool, add, slot, out, ins = None, None, 0, outs[0], tuple(ins)
        if fuse_pool and i in pool_fusions:  # the rewrites of tinyopt.integer.passes
            pool = layers[pool_fusions[i]]
            readers = [pool_fusions[i]]
        elif fuse_add and overlap:
            match = passes.add_fusion(graph, i, produced, consumers, set(outputs), wiring)
            if match is not None:
                readers, slot = [match[0]], match[1]
                add, ins = layers[match[0]], (ins[0], match[2])
        if pool is not None or add is not None:
            check_layer(pool or add, graph.rounding)
            fused.add(readers[0])
            out = wiring[readers[0]][1][0]
        last = pool or add or layer
        label = layer.name if last is layer else f"{layer.name}+{last.name}"
        # step names go into C strings and whitespace-separated stats: keep them plain
        label = re.sub(r"[^A-Za-z0-9_+.:-]", "_", label)
        if len(label) > 40 or label in {s.name for s in steps}:  # long TFLite tensor names
            label = f"step{len(steps)}_{layer.kind}" + ("" if last is layer else f"+{last.kind}")
        steps.append(Step(label, layer, pool, tuple(layer.in_shape), layer.in_bits,
                          tuple(last.out_shape), last.out_bits, inputs=ins, output=out,
                          in_specs=tuple(graph.tensor(t) for t in ins), add=add,
                          add_slot=slot, graph_rounding=graph.rounding))
        produced.add(out)
    if not steps:
        raise ValueError("the graph has no compute, pool or DAG node to export (only reshapes)")
    names = {graph.input_name, *(t for s in steps for t in (*s.inputs, s.output)), *aliases}
    sizes = {t: tensor_bytes(graph.tensor(t)) for t in names}
    mem, io = _plan_roomy_kernels(steps, graph, sizes, outputs, aliases, overlap, kernels,
                                  arena_budget)
    def root(t):  # the tensor an alias (flatten, reshape) stands for
        while t in aliases:
            t = aliases[t]
        return t
    kept = {root(graph.input_name), *(root(t) for t in outputs)}
    for k, s in enumerate(steps):
        later = {root(t) for j in steps[k + 1:] for t in j.inputs}
        s.in_dead = tuple(root(t) not in later and root(t) not in kept for t in s.inputs)
        s.in_offsets = tuple(mem.offset(t) for t in s.inputs)
        s.in_offset, s.out_offset = s.in_offsets[0], mem.offset(s.output)
        s.scratch_bytes = io[k].scratch
        s.scratch_offset = mem.scratch_offset(k) if io[k].scratch else 0
    return steps, mem


def check_arena_budget(arena_budget) -> None:
    """Raise ValueError unless ``arena_budget`` is None or a non-negative int (bytes)."""
    if arena_budget is None:
        return
    if isinstance(arena_budget, bool) or not isinstance(arena_budget, (int, np.integer)) \
            or arena_budget < 0:
        raise ValueError(f"arena_budget must be None or a non-negative number of bytes (an "
                         f"int, e.g. 65536), got {arena_budget!r}")


def _plan_roomy_kernels(steps, graph, sizes, outputs, aliases, overlap, kernels,
                        arena_budget=None):
    """The memory plan of ``steps`` and its step records, choosing where the kernels that need
    more scratch than their lean alternative run on a sub-byte Keras-path ("floor") graph: the
    3x3 depthwise row kernel (lean: the vector depthwise kernel, no scratch) and tn_m7_subconv
    (lean: tn_m7_sub's packed window), each only at the steps where its scratch keeps the arena
    within the arena planned with the lean kernels everywhere, or within ``arena_budget`` when
    that is larger (greedy in step order, every choice verified by the planner;
    :attr:`Step.roomy`). Why: on that path
    RAM is the budget the mixed-precision search spends bits on: the row kernel's three int16
    rows would set DS-CNN's peak (w8a8 9,796 -> 12,868 B) and tn_m7_subconv's lanes would lift
    a w4a4 VWW above its w8a8 arena; the speed is taken where it is free. An imported .tflite
    keeps the row kernel everywhere (its arena stays below CMSIS-NN's on the MLPerf models)."""
    def planned():
        io = _step_ios(steps, sizes, overlap, kernels)
        return memplan.plan_memory(io, sizes, graph.input_name, outputs, aliases), io

    candidates = []
    if SCRATCH_ONLY_WHERE_FREE and graph.rounding == "floor" and kernels == "m7":
        for s in steps:
            roomy = scratch_bytes(s, kernels)
            s.roomy = False
            if roomy > scratch_bytes(s, kernels):
                candidates.append(s)
            s.roomy = True
    if not candidates:
        return planned()
    for s in candidates:
        s.roomy = False
    lean_mem, lean_io = planned()
    limit = max(lean_mem.arena_bytes, arena_budget or 0)
    # first guess: the steps whose live bytes in that plan leave room for the scratch (one
    # more plan); when the planner cannot place them all so, one plan per candidate
    index = {id(s): k for k, s in enumerate(steps)}
    free = []
    for s in candidates:
        k = index[id(s)]
        s.roomy = True
        held = sum(b.span_at(k) for b in lean_mem.buffers)
        if held + scratch_bytes(s, kernels) + SCRATCH_ALIGN <= limit:
            free.append(s)
        s.roomy = s in free
    best = planned() if free else (lean_mem, lean_io)
    if best[0].arena_bytes <= limit:
        # the guess is conservative (the planner may place a scratch where another buffer's
        # bytes were, even at the lean arena itself): try the others too, one plan each
        tries = [s for s in candidates if s not in free]
    else:
        best = lean_mem, lean_io
        for s in free:
            s.roomy = False
        tries = free
    for s in tries:
        s.roomy = True
        trial = planned()
        if trial[0].arena_bytes <= limit:
            best = trial
        else:
            s.roomy = False
    return best


def _step_ios(steps, sizes, overlap, kernels) -> list:
    """The planner's record of each step (:class:`memplan.StepIO`): inputs, output, in-place
    and sliding writes, scratch."""
    ios = []
    for s in steps:
        # in place: the same bytes AND the same element width (a 2-bit input and a 4-bit
        # output of 2 elements are one byte each: an element-wise kernel would overwrite
        # unread codes)
        inplace = tuple(k for k in ((1,) if s.add is not None
                                    else REGISTRY[s.layer.kind].inplace_inputs)
                        if overlap and sizes[s.inputs[k]] == sizes[s.output]
                        and s.in_specs[k].bits == s.out_bits)
        ios.append(memplan.StepIO(
            s.inputs, s.output, inplace, exclusive=s.add is not None,
            slide=() if not overlap or write_delay(s) is None else ((0, write_delay(s)),),
            scratch=scratch_bytes(s, kernels), scratch_align=SCRATCH_ALIGN))
    return ios


def plan(graph: IntegerGraph, fuse_pool: bool = True, fuse_add: bool = True,
         overlap: bool = True, kernels: str = "m7") -> tuple[list[Step], int]:
    """The steps of ``graph`` and the arena bytes (:func:`memory_plan`, without the plan).

    Returns:
        (steps, arena_bytes); each step's input, output and scratch offsets inside the arena
        (the arena includes the kernels' scratch for ``kernels``).

    Raises:
        ValueError: as :func:`memory_plan`.
    """
    steps, mem = memory_plan(graph, fuse_pool, fuse_add, overlap, kernels)
    return steps, mem.arena_bytes

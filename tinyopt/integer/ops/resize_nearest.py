"""``resize_nearest``: nearest-neighbour resizing of (H, W, C) tensors of packed codes, TFLite's
RESIZE_NEAREST_NEIGHBOR (Keras ``UpSampling2D(interpolation="nearest")``) on int8 and the
sub-byte path's 2/4/8-bit codes.

TFLite's reference kernel (LiteRT and TFLite Micro) picks, for output row i, input row
min(floor((i + 0.5) s), H - 1) with s = H / H_out in float32 (``half_pixel_centers``, what the
converter emits for Keras; likewise for columns) and copies the codes: no arithmetic, the
node keeps its input's quantization, so any width and zero point move unchanged. The importer
evaluates that float32 rule once and stores the source indices in ``table``: out_h then out_w
entries, uint16 little-endian (the simulator and the C kernel only gather); :func:`table_for`
builds it for a Keras layer. The converter's other settings (``align_corners``, neither option)
are refused by name: no Keras layer emits them and no test checks them.

Keras: ``UpSampling2D(size, interpolation="nearest")`` is ``tf.image.resize(method=
NEAREST_NEIGHBOR)`` on the size times the factors, i.e. ResizeNearestNeighbor with
half_pixel_centers=True and align_corners=False, the rule above. For an integer factor f,
(i + 0.5) / f never reaches the next integer, so row i copies row floor(i / f): every row and
column repeated f times (``np.repeat``; tests/test_op_subbyte_resize.py checks both).

Widths: 2, 4 or 8 bits (``_checks.PACKED_BITS``), any signedness. C: ``tn_run_resize_nearest``
(``tinyopt/deploy/c/ops/tn_resize_nearest.c``: a byte copy per element at 8 bits, packed element
moves below), not in place.
"""

from __future__ import annotations

import numpy as np

from tinyopt.integer.graph import IntegerLayer
from tinyopt.integer.ops._checks import packed_bits
from tinyopt.integer.ops.registry import OpKind, TFLiteOp, register
from tinyopt.integer.tflite_ctx import same_quant

MAX_SIDES = 32767  # out_h + out_w: uint16 indices in a table of at most 65535 bytes (C)


def source_indices(in_size: int, out_size: int) -> np.ndarray:
    """TFLite's GetNearestNeighbor with half_pixel_centers (align_corners False), float32:
    for each output index, the input index it copies."""
    f32 = np.float32
    scale = f32(in_size) / f32(out_size)
    pos = (np.arange(out_size, dtype=np.int32).astype(f32) + f32(0.5)) * scale
    return np.clip(np.floor(pos).astype(np.int64), 0, in_size - 1)


def table_for(in_hw, out_hw) -> np.ndarray:
    """The ``table`` of a node resizing (H, W) to (H', W') (TFLite's rule, :func:`source_indices`).

    Arguments:
        in_hw: (H, W) of the input; out_hw: (H', W') of the output (Keras ``UpSampling2D``:
            (H f_h, W f_w)).

    Returns:
        uint8 array of 2 (H' + W') bytes: the source rows, then the source columns, uint16
        little-endian.

    Raises:
        ValueError: a size below 1, or H' + W' above the C kernel's limit.
    """
    (h, w), (oh, ow) = (int(d) for d in in_hw), (int(d) for d in out_hw)
    if min(h, w, oh, ow) < 1 or oh + ow > MAX_SIDES:
        raise ValueError(f"resize_nearest: sizes {(h, w)} -> {(oh, ow)} must be >= 1 with "
                         f"H' + W' <= {MAX_SIDES}")
    idx = np.concatenate([source_indices(h, oh), source_indices(w, ow)])
    return idx.astype("<u2").view(np.uint8)


def indices(layer: IntegerLayer) -> tuple[np.ndarray, np.ndarray]:
    """(source rows, source columns) stored in ``layer.table``."""
    oh, ow = int(layer.out_shape[0]), int(layer.out_shape[1])
    idx = np.asarray(layer.table, np.uint8).view("<u2").astype(np.int64)
    return idx[:oh], idx[oh:oh + ow]


def check(layer: IntegerLayer, where: str) -> None:
    """2/4/8-bit (H, W, C) -> (H', W', C), the same quantization; ``table`` holds H' + W'
    in-range uint16 source indices."""
    packed_bits(where, "the input", layer.in_bits)
    ins, outs = tuple(layer.in_shape), tuple(layer.out_shape)
    if len(ins) != 3 or len(outs) != 3 or ins[2] != outs[2] or outs[0] + outs[1] > MAX_SIDES:
        raise ValueError(f"{where}: resize_nearest maps (H, W, C) to (H', W', C) with H' + W' <= "
                         f"{MAX_SIDES}, got {ins} -> {outs}")
    table = None if layer.table is None else np.asarray(layer.table)
    if table is None or table.shape != (2 * (outs[0] + outs[1]),):
        raise ValueError(f"{where}: table must hold the {outs[0]} + {outs[1]} source row and "
                         f"column indices as uint16 ({2 * (outs[0] + outs[1])} bytes), got "
                         f"{None if table is None else table.shape}")
    rows, cols = indices(layer)
    if rows.max() >= ins[0] or cols.max() >= ins[1]:
        raise ValueError(f"{where}: table indexes row {rows.max()} / column {cols.max()} of a "
                         f"{ins[0]} x {ins[1]} input")


def simulate(p, xs: list, wrap: bool) -> np.ndarray:
    rows, cols = indices(p.layer)
    return np.asarray(xs[0])[:, rows][:, :, cols].astype(np.int32)


def _import_resize_nearest(ctx, op, op_name: str) -> list[IntegerLayer]:
    """RESIZE_NEAREST_NEIGHBOR with half_pixel_centers (Keras UpSampling2D)."""
    x, out = int(op.inputs[0]), int(op.outputs[0])
    same_quant(ctx, op_name, x, out)
    layer = ctx.node("resize_nearest", op_name, [x], out)
    opts = op.builtinOptions
    if opts is None or bool(opts.alignCorners) or not bool(opts.halfPixelCenters):
        setting = None if opts is None else (f"align_corners={bool(opts.alignCorners)}, "
                                             f"half_pixel_centers={bool(opts.halfPixelCenters)}")
        raise ValueError(f"RESIZE_NEAREST_NEIGHBOR writing {layer.name!r}: options {setting} "
                         "are not supported; only align_corners=False, half_pixel_centers=True "
                         "(Keras UpSampling2D, tf.image.resize 'nearest')")
    if len(layer.in_shape) != 3 or len(layer.out_shape) != 3:
        raise ValueError(f"RESIZE_NEAREST_NEIGHBOR writing {layer.name!r}: {layer.in_shape} -> "
                         f"{layer.out_shape} is not (H, W, C) -> (H', W', C)")
    size = ctx.m.data(int(op.inputs[1])).reshape(-1)
    if tuple(int(s) for s in size) != tuple(layer.out_shape[:2]):
        raise ValueError(f"RESIZE_NEAREST_NEIGHBOR writing {layer.name!r}: size tensor "
                         f"{size.tolist()} differs from the output's {layer.out_shape[:2]}")
    if layer.out_shape[0] + layer.out_shape[1] > MAX_SIDES:
        raise ValueError(f"RESIZE_NEAREST_NEIGHBOR writing {layer.name!r}: output height + width "
                         f"above {MAX_SIDES} is not supported")
    layer.table = table_for(layer.in_shape[:2], layer.out_shape[:2])
    return [layer]


register(OpKind("resize_nearest", "nearest-neighbour resize, 2/4/8-bit codes (TFLite "
                "RESIZE_NEAREST_NEIGHBOR)",
                same_quantization=True, check=check, simulate=simulate,
                tflite={"RESIZE_NEAREST_NEIGHBOR": TFLiteOp(_import_resize_nearest)},
                c_function="tn_run_resize_nearest", c_source="tn_resize_nearest.c"))

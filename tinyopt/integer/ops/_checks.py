"""What several ops' C kernels share in what they accept."""

from __future__ import annotations

from tinyopt.integer.fixedpoint import check_multipliers


def int8_same_shape(layer, where: str, hint: str = "") -> None:
    """An element-wise int8 op: 8-bit signed in and out, the output of the input's shape.

    Raises:
        ValueError: naming ``where``, the bits or the shapes (``hint`` appended to the latter).
    """
    if (layer.in_bits, layer.out_bits, layer.in_signed, layer.out_signed) != (8, 8, True, True):
        raise ValueError(f"{where}: {layer.kind} runs on int8 tensors (8-bit signed in and out), "
                         f"got {layer.in_bits}-bit in, {layer.out_bits}-bit out")
    if tuple(layer.in_shape) != tuple(layer.out_shape):
        raise ValueError(f"{where}: out_shape {tuple(layer.out_shape)} differs from in_shape "
                         f"{tuple(layer.in_shape)}{hint}")


def byte_kernel(layer, flavour: str, where: str) -> None:
    """An element-wise C kernel with requantization: tensors of at most 8 bits and TFLite
    multipliers in range (an op's ``check_c``).

    Raises:
        ValueError: naming ``where``, the bits or the multiplier range.
    """
    if max(layer.in_bits, layer.out_bits) > 8:
        raise ValueError(f"{where}: the C kernel takes tensors of at most 8 bits, got "
                         f"{layer.in_bits}-bit in, {layer.out_bits}-bit out")
    check_multipliers(layer, flavour, where)


# The widths of the packed tensors the sub-byte path writes (tinyopt/mixed: 2/4/8-bit codes,
# stored unsigned with a zero point) and TFLite's int8; tn_get / tn_set (tn_arith.h) read and
# write any of them.
PACKED_BITS = (2, 4, 8)


def packed_bits(where: str, what: str, bits: int) -> None:
    """``bits`` is a width an op on packed codes takes (:data:`PACKED_BITS`).

    Arguments:
        where: the node, for the message.
        what: the tensor ("input", "output", "weights", or an input's name).
        bits: its width.

    Raises:
        ValueError: naming ``where``, ``what`` and the widths taken.
    """
    if int(bits) not in PACKED_BITS:
        raise ValueError(f"{where}: {what} is {bits}-bit; this op takes packed codes of "
                         f"{', '.join(map(str, PACKED_BITS))} bits (requantize the tensor to "
                         "one of them first)")


def packed_same_shape(layer, where: str, hint: str = "") -> None:
    """An element-wise op on packed codes: input and output of :data:`PACKED_BITS` bits (any
    signedness, any zero point; int8 is 8-bit signed), the output of the input's shape.

    Raises:
        ValueError: naming ``where``, the bits or the shapes (``hint`` appended to the latter).
    """
    packed_bits(where, "the input", layer.in_bits)
    packed_bits(where, "the output", layer.out_bits)
    if tuple(layer.in_shape) != tuple(layer.out_shape):
        raise ValueError(f"{where}: out_shape {tuple(layer.out_shape)} differs from in_shape "
                         f"{tuple(layer.in_shape)}{hint}")


def table_op(layer, where: str) -> None:
    """An element-wise op run as a lookup table (swish, hard_sigmoid): input and output of one
    shape, unsigned stored codes of at most 8 bits (a signed grid is stored with zero point
    2^(bits-1)), a table of 2^in_bits entries (one output code per input code).

    Raises:
        ValueError: naming ``where``, the op, the shapes, the widths or the table.
    """
    import numpy as np
    if tuple(layer.in_shape) != tuple(layer.out_shape):
        raise ValueError(f"{where}: out_shape {tuple(layer.out_shape)} differs from in_shape "
                         f"{tuple(layer.in_shape)}")
    if layer.in_signed or layer.out_signed or max(layer.in_bits, layer.out_bits) > 8:
        raise ValueError(f"{where}: {layer.kind} maps unsigned stored codes of at most 8 bits "
                         f"(a signed grid is stored with zero point 2^(bits-1)), got "
                         f"{layer.in_bits}-bit {'signed' if layer.in_signed else 'unsigned'} in, "
                         f"{layer.out_bits}-bit {'signed' if layer.out_signed else 'unsigned'} "
                         "out")
    n = None if layer.table is None else np.asarray(layer.table).shape
    if n != (1 << layer.in_bits,):
        raise ValueError(f"{where}: {layer.kind} needs its lookup table, 2^in_bits = "
                         f"{1 << layer.in_bits} bytes (one output code per input code), got "
                         f"{'none' if n is None else f'shape {n}'}")

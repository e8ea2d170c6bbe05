"""What several ops' C kernels share in what they accept."""

from __future__ import annotations

from tinyopt.integer.fixedpoint import check_multipliers


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

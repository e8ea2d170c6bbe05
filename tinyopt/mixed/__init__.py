"""The mixed-precision path (Rusci et al., MLSys 2020): quantizers, fake-quant layers, building and
calibrating a sub-byte model, the :class:`~tinyopt.mixed.policy.Policy`, the memory model, the
memory-driven search, lowering to the integer graph and checking it.
"""

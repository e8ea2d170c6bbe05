"""The integer path: the integer graph (the IR), import from LiteRT, the bit-exact simulator.
No TensorFlow is imported here.
"""

# Every op kind registers itself (tinyopt.integer.ops, one module per kind) before any stage
# reads the registry.
from tinyopt.integer import ops  # noqa: E402,F401

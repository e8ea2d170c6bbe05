"""The integer path: the integer graph (the IR), import from LiteRT, the bit-exact simulator.
No TensorFlow is imported here.
"""

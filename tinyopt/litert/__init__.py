"""The LiteRT path: tfmot 8-bit QAT, conversion to a ``.tflite`` flatbuffer, measurement through the
LiteRT interpreter.
"""

"""Deployment: C code generation from the integer graph, the C kernels, host and Cortex-M7 (QEMU)
builds and runs. No TensorFlow is imported here.
"""

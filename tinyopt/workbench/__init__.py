"""The workbench: result files, notebook paths, sweeps and the ``tinyopt`` command line.
"""

"""The flow across the stages: ``sequence`` chains transforms and measures every variant,
``grammar`` says what a spec means (validated before training), ``subbyte`` is the one sub-byte
chain (PTQ -> QAT -> integer graph -> simulator) and ``deployed`` its integer and microcontroller
rows. Notebook-specific studies live in :mod:`tinyopt.studies`.
"""

"""The code of the notebooks' studies, one module per notebook (named after it): data slices,
training runs, rows and tables that only that notebook needs. A study uses the flow
(``tinyopt.pipeline`` and the stages below it); nothing in the flow uses a study.

- ``subbyte_qat``: notebook 02; ``integer_only``: 04; ``deploy_c``: 05 (``05_deploy``);
  ``iso_memory``: 06; ``real_models``: 07; ``any_graph``: 08 (and
  ``benchmarks/bench_any_graph.py``).
"""

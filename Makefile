# tinyopt: every target works on a fresh clone (it creates .venv and fetches the data itself).
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      ?= .venv
PY        := $(VENV)/bin/python
PYTHON    ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
DATA_MIRROR ?= $(if $(wildcard ../shared/data),../shared/data,)
export DATA_MIRROR
# Executed notebooks and their tables/figures.
RESULTS   ?= results
# `tinyopt run` = papermill, but OUT is written only when every cell ran (an interrupted or
# failed run goes to OUT.interrupted.ipynb / OUT.failed.ipynb, marked).
PAPERMILL := $(VENV)/bin/tinyopt run
DATASETS  ?= fashion_mnist mnist
PYTEST_ARGS ?=
# The tests' processes (two xdist workers, the notebook kernels, the CLI and sweep subprocesses)
# each import tinyopt and the test modules: with bytecode written (to one folder inside the venv,
# never beside the sources) only the first compiles them and rewrites the tests' asserts, the
# others and every later run read the cache (about 4 s of CPU per process; Python checks each
# file's mtime and size). An environment that sets PYTHONDONTWRITEBYTECODE to keep the tree clean
# keeps it clean: the cache is not in the tree.
TEST_ENV  := env -u PYTHONDONTWRITEBYTECODE PYTHONPYCACHEPREFIX=$(abspath $(VENV))/pycache \
             TINYOPT_REQUIRE_DATA=1
# Tests run on every core (pytest-xdist): a file's tests on one worker, each notebook run a group
# of its own (tests/conftest.py). TEST_WORKERS=0 runs them in this process, one after another.
# (nproc honours OMP_NUM_THREADS: a shell that sets it for its own reasons would get one worker)
TEST_WORKERS ?= $(shell env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc 2>/dev/null || echo 2)
PYTEST_PAR := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)

.PHONY: help setup data test test-fast test-levels test-sweep reproduce lab baseline multicomponent subbyte memory_policy integer_only deploy real_models iso_memory any_graph model_zoo latency mcu mcu-tools sweep bench clean-venv

help:
	@echo "make reproduce   run every notebook with default parameters -> $(RESULTS)/"
	@echo "make test        run the whole test suite, as CI does, on every core (under 10 minutes)"
	@echo "make test-fast   the suite without training or notebook runs (under 2 minutes)"
	@echo "make test-levels the C kernels' compile checks at every GCC level and float ABI"
	@echo "make test-sweep  random sub-byte layers, host and QEMU vs the simulator (SWEEP_SEED, SWEEP_CASES)"
	@echo "make setup       create $(VENV) and install tinyopt[dev] (quick when already done)"
	@echo "make data        fetch and verify MNIST and Fashion-MNIST into data/"
	@echo "make lab         start JupyterLab on notebooks/"
	@echo "make sweep GRID=notebooks/grids/X.yaml   a resumable papermill sweep"
	@echo "make bench       speed/memory benchmarks -> $(RESULTS)/bench/"
	@echo "make real_models notebook 07: the MLPerf Tiny int8 models, bit-exact, deployed, vs TFLM"
	@echo "make iso_memory  notebook 06 (long): mixed precision vs the best int8 that fits"
	@echo "make any_graph   notebook 08 (long): MLPerf ResNet-8 / DS-CNN retrained, sub-byte, deployed"
	@echo "make model_zoo   notebook 10: MobileNetV3, EfficientNet, U-Net, TCN, MLPerf through both paths"
	@echo "make latency     notebook 09 (long): MobileNetV1 family, instructions per inference under QEMU"
	@echo "make mcu         install the ARM toolchain + QEMU if missing, run the C export on a Cortex-M7"

# The stamp is rebuilt only when pyproject.toml changes, so `make setup` is quick when done.
$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: no python3 found; install Python 3.11" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)' \
	  || { echo "error: $(PYTHON) is not Python 3.11 or 3.12; set PYTHON=/path/to/python3.11" >&2; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

data: setup
	$(PY) -m tinyopt.front.data fetch

# Everything, as CI runs it (training and notebook runs included): under 10 minutes on 2 cores.
# TINYOPT_REQUIRE_DATA: the data were just fetched, so a test that cannot find them fails
# instead of skipping.
test: setup data
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_PAR) $(PYTEST_ARGS)

# No training and no notebook runs (those tests are marked slow): under 2 minutes on 2 cores.
test-fast: setup data
	$(TEST_ENV) $(PY) -m pytest $(PYTEST_PAR) -m "not slow" $(PYTEST_ARGS)

# The compile checks at every GCC level (-O0 .. -Og) and float ABI: `make test` keeps -O1 and
# -Og for each kernel form (where GCC's register allocation for the assembly failed before) and
# -O0 / -Og (+ -Os for the cheap models) for the MLPerf libraries; run this after touching a
# kernel's assembly or C twin.
test-levels: setup data
	$(TEST_ENV) TINYOPT_ALL_LEVELS=1 $(PY) -m pytest $(PYTEST_PAR) -k "level or compile or fpu" $(PYTEST_ARGS)

# The differential sweep of the sub-byte kernels (tests/test_kernel_sweep.py, marker sweep, left
# out of make test): seeded random layers and short chains, each on the host and under QEMU
# against the simulator; coverage of the kernel forms printed. Run it after touching a kernel.
SWEEP_SEED  ?= 0
SWEEP_CASES ?= 300
test-sweep: setup data
	$(TEST_ENV) TINYOPT_SWEEP=1 TINYOPT_SWEEP_SEED=$(SWEEP_SEED) TINYOPT_SWEEP_CASES=$(SWEEP_CASES) $(PY) -m pytest -s tests/test_kernel_sweep.py $(PYTEST_ARGS)

# $(call per_dataset,NOTEBOOK_STEM,RESULTS_SUBFOLDER): run a notebook once per dataset with its
# default parameters, the executed copy next to its tables; prints the wall time.
define per_dataset
	@mkdir -p $(RESULTS)/$(2)
	@for ds in $(DATASETS); do \
	  echo "== $(1): $$ds"; start=$$(date +%s); \
	  $(PAPERMILL) notebooks/$(1).ipynb $(RESULTS)/$(2)/$(1)_$$ds.ipynb \
	    -p dataset $$ds -p out_dir $(RESULTS)/$(2) || exit 1; \
	  echo "== $(1): $$ds took $$(( $$(date +%s) - start )) s"; \
	done
endef

baseline: setup data
	$(call per_dataset,00_baseline,baseline)

multicomponent: setup data
	$(call per_dataset,01_multicomponent,multicomponent)

memory_policy: setup
	@mkdir -p $(RESULTS)/memory_policy
	$(PAPERMILL) notebooks/03_memory_policy.ipynb $(RESULTS)/memory_policy/03_memory_policy.ipynb
	$(PAPERMILL) notebooks/03_memory_policy.ipynb $(RESULTS)/memory_policy/03_memory_policy_PC.ipynb -p granularity PC

subbyte: setup data
	@mkdir -p $(RESULTS)/subbyte_qat
	@start=$$(date +%s); \
	$(PAPERMILL) notebooks/02_subbyte_qat.ipynb $(RESULTS)/subbyte_qat/02_subbyte_qat_fashion_mnist.ipynb \
	  -p dataset fashion_mnist -p out_dir $(RESULTS)/subbyte_qat || exit 1; \
	echo "== 02_subbyte_qat took $$(( $$(date +%s) - start )) s"

integer_only: setup data
	@mkdir -p $(RESULTS)/integer_only
	@start=$$(date +%s); \
	$(PAPERMILL) notebooks/04_integer_only.ipynb $(RESULTS)/integer_only/04_integer_only.ipynb \
	  -p out_dir $(RESULTS)/integer_only || exit 1; \
	echo "== 04_integer_only took $$(( $$(date +%s) - start )) s"

# Long (an hour or more on 2 cores), so not part of `make reproduce`.
iso_memory: setup data
	@mkdir -p $(RESULTS)/iso_memory
	@start=$$(date +%s); \
	$(PAPERMILL) notebooks/06_iso_memory.ipynb $(RESULTS)/iso_memory/06_iso_memory.ipynb || exit 1; \
	echo "== 06_iso_memory took $$(( $$(date +%s) - start )) s"

# The seed paper's latency axis (issue 16): the MobileNetV1 family under the memory-driven
# policies for 2 MB / 512 kB, PL and PC, instructions per inference under QEMU. Long (16-24
# minutes on 2 cores), so not part of `make reproduce`.
latency: setup
	@mkdir -p $(RESULTS)/latency
	@start=$$(date +%s); \
	$(PAPERMILL) notebooks/09_latency.ipynb $(RESULTS)/latency/09_latency.ipynb -p out_dir $(RESULTS)/latency || exit 1; \
	echo "== 09_latency took $$(( $$(date +%s) - start )) s"

# Cortex-M7 under QEMU (issue 7): install the toolchain when missing, then run notebook 05.
# cmake builds the libraries of `tinyopt generate` (tests/test_generate.py).
MCU_PACKAGES := gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm cmake
mcu-tools:
	@missing=""; for p in $(MCU_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  command -v apt-get >/dev/null || { echo "error: no apt-get; install$$missing yourself" >&2; exit 1; }; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  echo "== installing$$missing"; \
	  $$sudo apt-get update && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y --no-install-recommends$$missing || exit 1; \
	else echo "== $(MCU_PACKAGES): installed"; fi

deploy: setup data
	@mkdir -p $(RESULTS)/deploy
	@start=$$(date +%s); \
	$(PAPERMILL) notebooks/05_deploy.ipynb $(RESULTS)/deploy/05_deploy.ipynb -p out_dir $(RESULTS)/deploy || exit 1; \
	echo "== 05_deploy took $$(( $$(date +%s) - start )) s"

# The four MLPerf Tiny int8 models (../shared/models/mlperf_tiny or $$TINYOPT_MODELS): import,
# bit-exactness against LiteRT and TFLite Micro, C on the host and under QEMU, RAM vs TFLM.
real_models: setup
	@mkdir -p $(RESULTS)/real_models
	@start=$$(date +%s); \
	$(PAPERMILL) notebooks/07_real_models.ipynb $(RESULTS)/real_models/07_real_models.ipynb -p out_dir $(RESULTS)/real_models || exit 1; \
	echo "== 07_real_models took $$(( $$(date +%s) - start )) s"

# Notebook 10: today's small networks (untrained) through both paths; QEMU on each that fits.
model_zoo: setup data
	@mkdir -p $(RESULTS)/model_zoo
	@start=$$(date +%s); \
	$(PAPERMILL) notebooks/10_model_zoo.ipynb $(RESULTS)/model_zoo/10_model_zoo.ipynb -p out_dir $(RESULTS)/model_zoo || exit 1; \
	echo "== 10_model_zoo took $$(( $$(date +%s) - start )) s"

# Notebook 08 (long: trains two MLPerf Tiny architectures on 2 cores), not part of `reproduce`.
any_graph: setup data
	@mkdir -p $(RESULTS)/any_graph
	@start=$$(date +%s); \
	$(PAPERMILL) notebooks/08_any_graph.ipynb $(RESULTS)/any_graph/08_any_graph.ipynb -p out_dir $(RESULTS)/any_graph || exit 1; \
	echo "== 08_any_graph took $$(( $$(date +%s) - start )) s"

mcu: mcu-tools deploy

# Notebooks 00 and 01 measure host latency, so they run alone, one after the other. The others
# report nothing that depends on the load (accuracies, bytes, QEMU instruction counts: -icount),
# so they run two at a time, in an order that balances the two lanes (02 | 07 then 04).
reproduce: setup data
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory baseline multicomponent || exit 1; \
	$(MAKE) --no-print-directory -j2 --output-sync=target subbyte real_models integer_only \
	  deploy memory_policy || exit 1; \
	echo "reproduce: done in $$(( $$(date +%s) - start )) s; tables and figures are in $(RESULTS)/"

lab: setup data
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

sweep: setup data
	@test -n "$(GRID)" || { echo "error: give a grid file: make sweep GRID=notebooks/grids/<name>.yaml" >&2; exit 1; }
	$(VENV)/bin/tinyopt sweep $(GRID) $(SWEEP_ARGS)

# Each benchmarks/bench_*.py writes its own results/bench/<name>.csv.
bench: setup data
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)

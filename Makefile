# One-command setup + run. `make demo` runs an offline search; `make test` checks the import
# layers (`make lint`, contracts in pyproject.toml) and runs the test suite.
# Both create/refresh the virtual environment in $(VENV) first.
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU wheel on machines without a GPU; on a GPU machine PyPI's default build carries CUDA.
TORCH_SPEC ?= torch==2.13.0
# Benchmark data: the project's shared data folder when it sits beside the checkout
# (tests and CI); otherwise the loaders download into the user cache.
SHARED_DATA := $(wildcard $(abspath ../shared/data))
ifneq ($(SHARED_DATA),)
export NIMM_DATA_DIR ?= $(SHARED_DATA)
endif
# The test suite also covers the optional Ray executor, so it installs that extra.
EXTRAS ?= test,ray
PYTEST_ARGS ?=

.PHONY: setup demo lint test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

demo: setup
	$(VENV)/bin/nimm search lung_cancer_chemo --budget 12 --n-patients 200 --proposer offline

lint: setup
	$(VENV)/bin/lint-imports

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/bench_harness.py --no-assert
	$(PY) benchmarks/bench_executor.py

clean:
	rm -rf $(VENV) runs .pytest_cache

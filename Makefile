# h5par — the two commands: `make demo` and `make test` (both set everything up first).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
RANKS ?= 2
DEMO_DIR ?= demo
# Open MPI refuses to run as root without these; set them only when we are root.
ifeq ($(shell id -u),0)
export OMPI_ALLOW_RUN_AS_ROOT := 1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM := 1
endif
# More ranks than cores: let idle ranks yield the CPU instead of spinning.
export OMPI_MCA_mpi_yield_when_idle := 1
export OMPI_MCA_rmaps_base_oversubscribe := 1
MPIRUN := mpirun --oversubscribe

.PHONY: setup demo test test-serial test-mpi lint bench bench-heat-setup clean

setup:
	@scripts/setup.sh

demo: setup
	$(MPIRUN) -n $(RANKS) $(VENV)/bin/h5par info
	$(MPIRUN) -n $(RANKS) $(PY) -m mpi4py -m h5par demo $(DEMO_DIR)

test: setup lint test-serial test-mpi
	@echo "[test] all passes green"

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

test-serial: setup
	$(PY) -m pytest

# Each rank count is one pytest run under mpirun; every test has a pytest-timeout and
# the whole pass a hard limit, so a hang fails the pass instead of blocking CI.
test-mpi: setup
	@for n in 1 2 3 4; do \
	  echo "[test] MPI pass, $$n ranks"; \
	  timeout -k 10 1200 $(MPIRUN) -n $$n $(PY) -m pytest --only-mpi -p no:cacheprovider -q --color=no -rfE tests/mpi || exit 1; \
	done

# Speed is measured here, never asserted in tests: methods run interleaved in one run.
# benchmarks/suite.py --help lists the options; e.g. make bench BENCH_ARGS="--size 256MiB".
# Its heat column needs HeAT and torch (~6 GB), kept out of $(VENV), setup, test and CI:
# make bench-heat-setup puts them in $(HEAT_VENV), which make bench then uses for the heat
# runs (--heat-python); make bench HEAT=1 does both.
BENCH_ARGS ?=
HEAT_VENV ?= .venv-heat
bench: setup $(if $(HEAT),bench-heat-setup)
	@$(PY) -c 'import dask.array, matplotlib' 2>/dev/null || \
	  $(PY) -m pip install -q --disable-pip-version-check -c constraints.txt --no-build-isolation -e '.[bench]'
	$(PY) benchmarks/suite.py $$([ -x $(HEAT_VENV)/bin/python ] && echo --heat-python $(HEAT_VENV)/bin/python) $(BENCH_ARGS)

bench-heat-setup:
	@H5PAR_HEAT_VENV=$(abspath $(HEAT_VENV)) scripts/setup-heat.sh

clean:
	rm -rf $(VENV) $(HEAT_VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info

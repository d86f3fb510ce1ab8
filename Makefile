# jobyard — `make up` runs the system, `make test` runs every check, `make bench` measures.
# The interpreter that creates .venv (3.11 or newer).
SYSTEM_PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export PYTHON := $(BIN)/python

.PHONY: up test lint typecheck pytest bench mutations services browser clients clients-generator clean

$(BIN)/python:
	$(SYSTEM_PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Re-install only when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

# The tests and benchmarks also install the example job type from outside the tree
# (examples/echo_job_type): the suite runs it end to end, the benchmarks' (e) uses it.
$(VENV)/.installed-dev: pyproject.toml examples/echo_job_type/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]" -e examples/echo_job_type
	touch $@ $(VENV)/.installed

up: $(VENV)/.installed
	deploy/scripts/run-local.sh

services: $(VENV)/.installed-dev
	deploy/scripts/ensure-redis.sh
	deploy/scripts/ensure-postgres.sh

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# The headless chromium of the /docs check (installed as root on Debian); without one
# that test is skipped with the reason, so the leading '-' lets make go on.
browser:
	-deploy/scripts/ensure-chromium.sh >/dev/null

# The official super.AI client (superai 0.2.1) in a virtualenv of its own, never in
# .venv: it pulls pandas, scikit-learn, boto3... tests/e2e/test_superai_client.py drives
# it unchanged against the API. Built once (about a minute, online); offline after that.
CLIENTS := .venv-clients
$(CLIENTS)/superai/.installed: tests/e2e/superai-client-constraints.txt
	$(SYSTEM_PYTHON) -m venv $(CLIENTS)/superai
	$(CLIENTS)/superai/bin/python -m pip install --quiet --upgrade pip
	$(CLIENTS)/superai/bin/python -m pip install --quiet superai==0.2.1 \
		--constraint tests/e2e/superai-client-constraints.txt
	touch $@

clients: $(CLIENTS)/superai/.installed

# openapi-python-client, which tests/e2e/test_generated_clients.py runs on every family's
# spec, in a virtualenv of its own: it wants httpx < 0.29, older than the project's. The
# test itself runs offline; it fails, saying to run this, when the generator is missing.
CLIENTS_GENERATOR := .venv-clients/generator
$(CLIENTS_GENERATOR)/.installed: tests/clients-generator.txt
	$(SYSTEM_PYTHON) -m venv $(CLIENTS_GENERATOR)
	$(CLIENTS_GENERATOR)/bin/python -m pip install --quiet -r tests/clients-generator.txt
	touch $@

clients-generator: $(CLIENTS_GENERATOR)/.installed

# Three processes (pytest-xdist), whole files to each: every process has a database and a
# Redis DB of its own (tests/conftest.py), and the e2e files mostly wait on workers, so a
# third process fills the two cores (measured: 6.3 minutes against 9.2 with two).
# Then the engine's race, fault and guard tests again on SQLite, the embedded default
# (the tests marked every_database): the README offers both, with the same guarantees.
PYTEST_PROCESSES ?= 3
pytest: services browser clients clients-generator
	$(BIN)/pytest -n $(PYTEST_PROCESSES) --dist loadfile
	JOBYARD_TEST_DATABASE=sqlite $(BIN)/pytest -n $(PYTEST_PROCESSES) --dist loadfile tests/engine tests/e2e

test: lint typecheck pytest

$(VENV)/.installed-bench: pyproject.toml examples/echo_job_type/pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev,bench]" -e examples/echo_job_type
	touch $@ $(VENV)/.installed-dev $(VENV)/.installed

bench: services $(VENV)/.installed-bench
	$(BIN)/python -m tests.bench.run
	$(BIN)/python -m tests.bench.concurrency

# Remove each guard of the engine in turn; the engine tests must catch every one, on each
# database where the guard holds the invariant (tests/mutations.py).
mutations: services
	$(BIN)/python -m tests.mutations

clean:
	rm -rf var/*.db var/*.db-* var/celerybeat-schedule* .pytest_cache .mypy_cache .ruff_cache

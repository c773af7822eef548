# warmstart — the two commands: `make demo`, `make test`. Everything installs into .venv on first use
# and again only when pyproject.toml changes (the stamp files), so a second `make test` starts at once.
# `make demo` installs what warmstart runs on; `make test` adds the test tools (the `dev` extra).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.stamp-install
DEV_STAMP := $(VENV)/.stamp-dev
PYTEST_ARGS ?=
# Test files run in parallel worker processes (each with its own local stack): most of a test's
# wall time here is waiting on the services, so 3 workers finish well ahead of 1 even on 2 cores.
# `make test TEST_WORKERS=0` runs everything in one process. Files go out heaviest first
# (tests/conftest.py HEAVIEST_FIRST; --no-loadscope-reorder keeps that order), and every run
# ends with its 25 slowest tests (--durations=25), to keep that list current.
TEST_WORKERS ?= 3

.PHONY: install demo test up down status lint format deploy e2e e2e-deps

# $(call pip_install,<what>,<stamps to touch>): the venv (made if missing), one pip run, the stamps.
define pip_install
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "warmstart needs Python >= 3.11: set PYTHON=/path/to/python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing warmstart ($(1)) into $(VENV) (torch from this machine's wheels; a few minutes the first time)"
	@start=$$(date +%s); \
	$(BIN)/python -m pip install --disable-pip-version-check -q -e '$(1)' && \
	echo "installed in $$(( $$(date +%s) - start )) s"
	@touch $(2)
endef

# What warmstart runs on (demo, up, down, status, deploy).
$(STAMP): pyproject.toml
	$(call pip_install,.,$(STAMP))

# Plus the test and lint tools; one pip run whichever stamp is missing.
$(DEV_STAMP): pyproject.toml
	$(call pip_install,.[dev],$(STAMP) $(DEV_STAMP))

install: $(DEV_STAMP)

demo: $(STAMP)
	$(BIN)/warmstart up
	$(BIN)/warmstart run

# The real-browser test needs Debian's chromium (installed once by infra/install-browser.sh;
# Playwright never downloads a browser here).
test: $(DEV_STAMP) e2e-deps
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25 $(PYTEST_ARGS)

e2e-deps:
	@bash infra/install-browser.sh || echo "warning: chromium could not be installed; the browser test will be skipped"

e2e: $(DEV_STAMP) e2e-deps
	$(BIN)/python -m pytest tests/e2e -m browser -s $(PYTEST_ARGS)

up: $(STAMP)
	$(BIN)/warmstart up

down: $(STAMP)
	$(BIN)/warmstart down

status: $(STAMP)
	$(BIN)/warmstart status

deploy: $(STAMP)
	$(BIN)/warmstart up
	$(BIN)/warmstart deploy

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(DEV_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

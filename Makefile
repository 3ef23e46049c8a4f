# Lanyard: `make run` (demo on the embedded defaults) and `make test` (the whole suite).
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)
PYTEST_ARGS ?=
export DJANGO_COLORS := nocolor

.PHONY: help venv run test test-services lint format browser-deps clean bench-sync bench-audit bench-portal bench-pdp bench-gateway smoke-production

help:
	@echo "make run    install everything and run Lanyard (web, worker + beat, simulated IdP) on http://127.0.0.1:8000 (LANYARD_WEB_PORT)"
	@echo "make test   install everything and run the whole test suite (ruff included)"

$(STAMP): pyproject.toml
	@set -e; \
	if [ ! -x $(PY) ] || ! $(PY) -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then \
	  python=$$(scripts/find-python); \
	  echo "Creating $(VENV) with $$python"; \
	  rm -rf $(VENV); "$$python" -m venv $(VENV); \
	fi; \
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip; \
	$(PY) -m pip install --quiet --disable-pip-version-check '.[dev]'; \
	rm -f $(VENV)/.installed-*; touch $(STAMP)

venv: $(STAMP)

# Debian's Chromium for the browser tests; the test tool never downloads a browser.
browser-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "Installing Debian's chromium for the browser tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || { echo "Could not install chromium with apt-get." >&2; exit 1; }; \
	  else \
	    echo "The browser tests need Debian's chromium: run 'sudo apt-get install chromium'." >&2; exit 1; \
	  fi; \
	fi

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The whole suite on the embedded defaults (SQLite, eager Celery, locmem mail). Tests that need
# PostgreSQL and Redis are marked `services` and run in .ci/run's second pass.
test: venv browser-deps lint
	DATABASE_URL= CELERY_BROKER_URL= $(VENV)/bin/pytest -m "not services" $(PYTEST_ARGS)

# The same suite against real PostgreSQL (DATABASE_URL) and Redis (CELERY_BROKER_URL), services tests included.
test-services: venv browser-deps
	@[ -n "$$DATABASE_URL" ] && [ -n "$$CELERY_BROKER_URL" ] || { echo "set DATABASE_URL and CELERY_BROKER_URL" >&2; exit 2; }
	LANYARD_REQUIRE_SERVICES=1 $(VENV)/bin/pytest --create-db $(PYTEST_ARGS)

run: venv
	DEBUG=true scripts/run-demo

# The production recipe (deploy/Procfile.production) on this machine's PostgreSQL and Redis, with the
# simulator, walked over HTTP (README, "Operations"). Fails, never skips, when a service is missing.
smoke-production: venv
	$(PY) scripts/smoke_production.py

bench-sync: venv
	$(PY) -m bench.sync

bench-audit: venv
	$(PY) -m bench.audit

bench-portal: venv
	$(PY) -m bench.portal

bench-pdp: venv
	$(PY) -m bench.pdp

bench-gateway: venv
	$(PY) -m bench.gateway

clean:
	rm -rf var .venv

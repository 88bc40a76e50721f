# Two commands for a fresh machine: `make demo` and `make test`. Each builds .venv by itself.
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.installed
CHROMIUM := /usr/bin/chromium
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: demo test lint bench clean install

# What the demo needs (botmeter and its dependencies), then what the tests need on top of it:
# `make demo` does not wait for the test-only packages.
$(RUNTIME): pyproject.toml setup.py src/botmeter/_fastpath.c
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The browser tests drive Debian's Chromium (never a downloaded browser).
$(CHROMIUM):
	$(SUDO) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null

demo: $(RUNTIME)
	$(VENV)/bin/botmeter demo
	$(VENV)/bin/botmeter dashboard --days 14 --json --output metrics/dashboard.html

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/lint-imports  # the layers in pyproject.toml: no upward import

test: $(STAMP) lint $(CHROMIUM)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) bench/track_call.py
	$(PY) bench/ingest.py
	$(PY) bench/analysis.py

clean:
	rm -rf $(VENV) build src/*.egg-info botmeter.duckdb botmeter.duckdb.*

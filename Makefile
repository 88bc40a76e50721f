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

# The previous major version of the openai SDK (2, on httpx) cannot share the venv with the current
# one (3, on httpx2): it is installed apart, without its dependencies (the venv has them), and put
# in front of the venv for the OpenAI integration's tests only.
OPENAI_PREVIOUS := $(VENV)/openai-previous
OPENAI_PREVIOUS_STAMP := $(OPENAI_PREVIOUS)/.installed

$(OPENAI_PREVIOUS_STAMP): $(STAMP)
	rm -rf $(OPENAI_PREVIOUS)
	$(PY) -m pip install --quiet --target $(OPENAI_PREVIOUS) --no-deps 'openai>=2,<3' distro
	touch $(OPENAI_PREVIOUS_STAMP)

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

test: $(STAMP) $(OPENAI_PREVIOUS_STAMP) lint $(CHROMIUM)
	$(PY) -m pytest -q
	PYTHONPATH=$(OPENAI_PREVIOUS) $(PY) -c 'import openai, sys; sys.exit(openai.__version__.split(".")[0] != "2")'
	PYTHONPATH=$(OPENAI_PREVIOUS) $(PY) -m pytest -q tests/test_instrument_openai.py

bench: $(STAMP)
	$(PY) bench/track_call.py
	$(PY) bench/ingest.py
	$(PY) bench/analysis.py

clean:
	rm -rf $(VENV) build src/*.egg-info botmeter.duckdb botmeter.duckdb.*

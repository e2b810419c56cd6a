# ai-ops developer entry points. `make test` does all of its own setup on a fresh Debian machine.
SHELL := /bin/bash
# operator/ (imported as ai_ops_operator) would shadow the standard library's `operator` for any
# `python -m ...` run from this folder, because Python puts the current folder first on sys.path.
# Python 3.11's safe-path mode leaves it out.
export PYTHONSAFEPATH := 1
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_GET := $(shell command -v apt-get 2>/dev/null)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: install test lint crds check-crds run chart kind-up deploy e2e clean system-deps

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Debian packages the tests use: a real redis-server and a real Chromium for the web page.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ -z "$(APT_GET)" ]; then echo "missing:$$missing and no apt-get to install them" >&2; exit 1; fi; \
	  echo "installing$$missing with apt-get"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

test: install system-deps
	$(BIN)/ai-ops crds --check crds
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy operator chat_service mcp_servers

# Also rewrites the field tables of docs/resources.md, generated from the same spec models.
crds: install
	$(BIN)/ai-ops crds crds
	$(BIN)/python docs/gen_resources.py

# Copy crds/*.yaml into the chart as templates (one source; tests/test_chart_crds.py checks they match)
# and regenerate the values table in docs/helm.md from values.schema.json.
chart: crds
	$(BIN)/python charts/ai-ops/hack/sync-crds.py
	$(BIN)/python charts/ai-ops/hack/values-table.py --write

# The local demo (scripts/run_demo.py): renders examples/local/ (Ollama at localhost:11434; OpenAI instead
# when OPENAI_API_KEY is set) into .run/ and starts `ai-ops chat` with the web page on RUN_HOST:RUN_PORT.
RUN_HOST ?= 127.0.0.1
RUN_PORT ?= 8080
run: install
	$(BIN)/python scripts/run_demo.py --host $(RUN_HOST) --port $(RUN_PORT)

clean:
	rm -rf $(VENV) build *.egg-info

# ai-ops developer entry points. `make test` does all of its own setup on a fresh Debian machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
APT_GET := $(shell command -v apt-get 2>/dev/null)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (0: one process). Most tests wait on real servers rather than compute,
# so two workers overlap well even on two cores; `--dist loadfile` keeps each file on one worker, so a
# file's module fixtures (a control plane, an operator, a helm release) start once and its steps run in order.
PYTEST_WORKERS ?= 2

.PHONY: install install-test test test-binaries lint crds check-crds run chart kind-up deploy e2e clean system-deps

# `make install` is what `make run` needs; the test toolchain (Helm SDK, Playwright, linters) comes with
# `make test` and `make lint` only.
install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

install-test: $(TEST_STAMP)

$(TEST_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP) $(TEST_STAMP)

# Debian packages the tests use: a real redis-server, a real Chromium for the web page, and a real
# Prometheus and Alertmanager for the prometheus MCP server and the incident flow.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v prometheus-alertmanager >/dev/null || missing="$$missing prometheus-alertmanager"; \
	if [ -n "$$missing" ]; then \
	  if [ -z "$(APT_GET)" ]; then echo "missing:$$missing and no apt-get to install them" >&2; exit 1; fi; \
	  echo "installing$$missing with apt-get"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

# The Go-built binaries of tests/cluster, built (or found in the cache) once before any pytest worker starts,
# so that the workers never race for them nor sit on the build lock. Exit status 2 is "no Go here": the
# suites that need them skip then, saying why.
test-binaries:
	@bash scripts/control-plane.sh >/dev/null || [ $$? = 2 ]
	@bash scripts/helm.sh >/dev/null || [ $$? = 2 ]

test: install-test system-deps test-binaries
	$(BIN)/ai-ops crds --check crds
	$(BIN)/python -m pytest -q $(if $(filter-out 0,$(PYTEST_WORKERS)),-n $(PYTEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy ai_ops_api ai_ops_cli ai_ops_common operator/ai_ops_operator chat_service mcp_servers

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

# --- kind: a local cluster, the image, the chart (docs/helm.md, docs/testing.md) -------------------
# Needs docker, kind, kubectl and helm. Every command names its kube context; your current one is left alone.
.PHONY: image kind-down
KIND_CLUSTER ?= ai-ops
KIND_CONTEXT = kind-$(KIND_CLUSTER)
IMAGE ?= ai-ops:dev
NAMESPACE ?= ai-ops
E2E_CLUSTER ?= ai-ops-e2e
E2E_IMAGE ?= ai-ops:e2e

image:
	docker build -t $(IMAGE) --build-arg VERSION=$$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml) \
	  --build-arg REVISION=$$(git rev-parse HEAD 2>/dev/null || echo unknown) \
	  --build-arg CREATED=$$(date -u +%Y-%m-%dT%H:%M:%SZ) .

kind-up:
	@command -v kind >/dev/null || { echo "kind is not installed: https://kind.sigs.k8s.io/docs/user/quick-start/" >&2; exit 1; }
	kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || kind create cluster --name $(KIND_CLUSTER) --wait 180s

kind-down:
	kind delete cluster --name $(KIND_CLUSTER)

# Build the image, load it into kind, install the chart and apply examples/ (placeholder Secrets: the
# resources that need a real key show why they are not Ready).
deploy: kind-up image
	kind load docker-image $(IMAGE) --name $(KIND_CLUSTER)
	helm upgrade --install ai-ops charts/ai-ops --kube-context $(KIND_CONTEXT) -n $(NAMESPACE) --create-namespace \
	  --set image.repository=$(firstword $(subst :, ,$(IMAGE))) --set image.tag=$(lastword $(subst :, ,$(IMAGE))) \
	  --set image.pullPolicy=Never --wait --timeout 6m
	kubectl --context $(KIND_CONTEXT) apply -n $(NAMESPACE) -R -f examples/
	kubectl --context $(KIND_CONTEXT) rollout status -n $(NAMESPACE) deployment/ai-ops-operator --timeout 6m
	kubectl --context $(KIND_CONTEXT) rollout status -n $(NAMESPACE) deployment/ai-ops-chat --timeout 6m
	kubectl --context $(KIND_CONTEXT) get ai-ops -n $(NAMESPACE)

# The kind end-to-end suite (pytest marker e2e) on its own cluster, $(E2E_CLUSTER). Without Docker or kind
# the suite still runs and skips, saying why.
e2e: install-test
	@if command -v kind >/dev/null && command -v docker >/dev/null && docker info >/dev/null 2>&1; then \
	  $(MAKE) kind-up KIND_CLUSTER=$(E2E_CLUSTER) && $(MAKE) image IMAGE=$(E2E_IMAGE) \
	  && kind load docker-image $(E2E_IMAGE) --name $(E2E_CLUSTER); \
	else echo "no Docker engine or no kind: the e2e suite will skip"; fi
	AI_OPS_E2E_CLUSTER=$(E2E_CLUSTER) AI_OPS_E2E_IMAGE=$(E2E_IMAGE) $(BIN)/python -m pytest -m e2e tests/e2e -v -rs $(PYTEST_ARGS)

# --- A real kube-apiserver and etcd for tests/cluster (docs/testing.md) -----------------------------
# Builds both from the Go modules pinned in tests/cluster/controlplane/ into
# ${XDG_CACHE_HOME:-~/.cache}/ai-ops/control-plane/<k8s version>/, once (reused after), and prints that
# folder as the last line. With KUBEBUILDER_ASSETS set it prints that folder and builds nothing.
.PHONY: control-plane
control-plane:
	@bash scripts/control-plane.sh

clean:
	rm -rf $(VENV) build *.egg-info

# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# One stamp per set of extras: the demo (and the benchmarks) need embedded Postgres, the Kubernetes
# API emulator and rich; the tests need those and pytest, looptime, ruff and import-linter.
DEMO_STAMP := $(VENV)/.installed-demo
TEST_STAMP := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench
# Checkers with large dependency sets of their own live in a virtualenv of their own, so that they
# never constrain the operator's dependencies: checkov (tests/manifests/test_checkov.py).
TOOLS_VENV ?= .venv-tools
CHECKOV_VERSION := 3.3.30
TOOLS_STAMP := $(TOOLS_VENV)/.installed-checkov-$(CHECKOV_VERSION)

.PHONY: install tools test lint demo bench clean
# Debian's packages the tests run: promtool and Prometheus for the alert rules (tests/prometheus/),
# lua5.4 for Argo CD's health script (tests/manifests/test_argocd_health.py).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(DEMO_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[demo]'
	touch $@

# The benchmarks' extras add py-spy (`bench.probe_round --profile`) to the demo's.
$(BENCH_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $@ $(DEMO_STAMP)

# The test extras include the benchmarks', so they satisfy the demo and the benchmarks too.
$(TEST_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(DEMO_STAMP) $(BENCH_STAMP)

$(TOOLS_STAMP):
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $@

install: $(TEST_STAMP)

# lint-imports checks the layering contracts in pyproject.toml ([tool.importlinter]); hadolint the
# Dockerfile.
lint: $(TEST_STAMP)
	$(BIN)/ruff check operator tests bench
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile

tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends prometheus; }
	@command -v lua5.4 >/dev/null || { \
	  $(SUDO) apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends lua5.4; }

test: lint tools $(TOOLS_STAMP)
	CHECKOV=$(abspath $(TOOLS_VENV))/bin/checkov $(BIN)/python -m pytest

demo: $(DEMO_STAMP)
	$(BIN)/whatsapp-operator demo

# Every benchmark, one JSON object each (docs/performance.md); about 12 minutes on 2 cores.
bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.probe_round --instances 10000 --restart-limit 120
	$(BIN)/python -m bench.probe_round --instances 1000 --restart-limit 120
	$(BIN)/python -m bench.detection
	$(BIN)/python -m bench.webhooks
	$(BIN)/python -m bench.status_api

clean:
	rm -rf $(VENV) $(TOOLS_VENV) .pytest_cache .ruff_cache .import_linter_cache

# The two commands a newcomer needs: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test lint demo bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check operator tests bench

test: lint
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/whatsapp-operator demo

# Every benchmark, one JSON object each (docs/performance.md); about 7.5 minutes on 2 cores.
bench: $(STAMP)
	$(BIN)/python -m bench.probe_round --instances 10000 --restart-limit 120
	$(BIN)/python -m bench.probe_round --instances 1000 --restart-limit 120
	$(BIN)/python -m bench.detection
	$(BIN)/python -m bench.webhooks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

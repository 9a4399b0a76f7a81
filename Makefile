# Every target creates .venv and installs the project (with its dev extra) when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)/dagster_home
# Dagster writes a run's "planned" events (one per bot partition) in one batch instead of one
# SQLite commit each: a 1,000-bot run starts in seconds rather than a minute.
export DAGSTER_EVENT_BATCH_SIZE ?= 1000

.PHONY: install test check demo ui bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## make test: ruff, mypy and pytest (what CI runs)
test: $(STAMP)
	PATH=$(CURDIR)/$(BIN):$$PATH scripts/check

check: test

## make demo: start a sandbox, sync it, replay the example CSV, print counts and a query
demo: $(STAMP)
	$(BIN)/iozen-etl demo

## make ui: the Dagster UI (assets, partitions, checks, schedules, sensors) on 127.0.0.1:3000
ui: $(STAMP)
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

## make bench: speed, memory and rate-budget figures against a baseline measured in the same run
bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache

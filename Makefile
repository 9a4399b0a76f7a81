# Every target creates .venv and installs the project (with its dev extra) when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)/dagster_home
# A run over N bot partitions announces itself with one "planned" event instead of N (each is
# its own SQLite write, which a workspace of a thousand bots feels); the price is that a failed
# run does not mark its partitions failed in the UI (the run and its metadata still name the
# bots that failed).
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS ?= true
# Event batches: Dagster batches the partition events it derives from an asset's output; the
# per-bot events iozen-etl logs itself are written one by one on either storage (measured in
# docs/figures.md, why in docs/decisions.md).
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
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'  # dlt and matplotlib, for compare
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache

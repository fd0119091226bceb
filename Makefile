# Squak Billing: the two set-up commands are `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test ui lint bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## Generate the demo operator and run the billing pipeline on the embedded default.
run: $(STAMP)
	$(BIN)/squak demo

## Run the whole test suite (DuckDB, and PostgreSQL when reachable; required under CI=true).
test: $(STAMP)
	$(BIN)/python -m pytest

## Dagster UI on http://127.0.0.1:3000 over the data `make run` produced.
ui: $(STAMP)
	$(BIN)/squak ui

lint: $(STAMP)
	$(BIN)/ruff check squak_pipelines tests bench

bench: $(STAMP)
	$(BIN)/python bench/bench_generate.py

clean:
	rm -rf .squak dbt_project/target dbt_project/logs

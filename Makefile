# Squak Billing: the two set-up commands are `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test ui lint bench clean fuzz doctor workers docs

# System packages: the PDF renderer's libraries (WeasyPrint: Pango, HarfBuzz's subsetter, a
# font) and the headless Chromium Kaleido renders dashboard figures to images with.
SYSTEM_LIBS := libpangoft2-1.0.so.0 libharfbuzz-subset.so.0
SYSTEM_PACKAGES := libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz-subset0 fonts-dejavu-core chromium

$(STAMP): pyproject.toml
	@for lib in $(SYSTEM_LIBS); do ldconfig -p | grep -q "$$lib" || missing=1; done; \
	command -v chromium >/dev/null || missing=1; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing system packages (PDF renderer, headless Chromium): $(SYSTEM_PACKAGES)"; \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null \
	      || (apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	          --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null); \
	  else echo "warning: install $(SYSTEM_PACKAGES) (PDF invoices and dashboard images need them)"; fi; \
	fi
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@# The dbt manifest, prepared at build time: loading the definitions never waits for `dbt parse`.
	$(BIN)/python -c "from squak_pipelines.analytics.project import ensure_manifest; ensure_manifest()"
	@touch $(STAMP)

## Generate the demo operator and run the billing pipeline on the embedded default.
run: $(STAMP)
	$(BIN)/squak demo

## Run the whole test suite (DuckDB, and PostgreSQL when reachable; required under CI=true), on
## SQUAK_TEST_WORKERS processes (default 2; 1 runs it in one process).
test: $(STAMP)
	$(BIN)/python -m pytest --durations=15 $$( [ "$${SQUAK_TEST_WORKERS:-2}" = 1 ] || echo "-n $${SQUAK_TEST_WORKERS:-2}" )

## Dagster UI on http://127.0.0.1:3000 over the data `make run` produced.
ui: $(STAMP)
	$(BIN)/squak ui

## Property-based fuzzing of every parser with many more examples than CI runs (random seeds).
fuzz: $(STAMP)
	SQUAK_FUZZ_EXAMPLES=$${SQUAK_FUZZ_EXAMPLES:-2000} SQUAK_FUZZ_RANDOM=1 $(BIN)/python -m pytest -q tests/test_fuzz_parsers.py

## Two dagster-celery workers over RabbitMQ (SQUAK_CELERY_BROKER) for runs launched with
## SQUAK_EXECUTOR=celery; PostgreSQL warehouse and dagster-postgres storage (deploy/README.md).
workers: $(STAMP)
	$(BIN)/squak workers --count $${WORKERS:-2}

## Check settings, warehouse, migrations and tools; prints what is wrong and the fix.
doctor: $(STAMP)
	$(BIN)/squak doctor

## The dbt docs of the warehouse models as one page that opens from disk (squak docs).
docs: $(STAMP)
	$(BIN)/squak docs

lint: $(STAMP)
	$(BIN)/ruff check squak_pipelines tests bench

## The whole month through the real pipeline (1M and 10M CDRs, DuckDB and PostgreSQL), measured;
## BENCH_ARGS passes options, e.g. make bench BENCH_ARGS="--sizes 1000000:3000 --record".
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf .squak dbt_project/target dbt_project/logs

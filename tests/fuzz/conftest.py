"""Fixtures of the fuzz tests: the real gunicorn with API keys enforced, and a key holding every scope."""

from __future__ import annotations

import pytest
from apiflask import APIFlask

from tests.fuzz import runner
from tests.support.server import GunicornServer

# On top of the tests' server environment: keys enforced, as in production, so 401/403 paths are real.
FUZZ_SERVER_ENV = {"AUTH_MODE": "apikey", "CHAOS_ENABLED": "true", "RATE_LIMIT_ENABLED": "false"}


@pytest.fixture
def server_env(server_env: dict[str, str]) -> dict[str, str]:
    """The shared gunicorn environment with AUTH_MODE=apikey (overrides the root fixture for tests/fuzz)."""
    return {**server_env, **FUZZ_SERVER_ENV}


@pytest.fixture
def fuzz_key(app: APIFlask, gunicorn: GunicornServer) -> str:
    """An API key with every scope, created after `gunicorn` emptied the database."""
    del gunicorn  # requested for its ordering only: its truncation would delete a key made before it
    return runner.create_fuzz_key(app)

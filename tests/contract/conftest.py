"""Apps with the contract's settings (REQUIRE_IF_MATCH, CORS, no Redis) on the session database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient

from backend import create_app
from backend.base.config import Settings
from backend.extensions import db
from tests.conftest import truncate_all

# The response headers of the API contract, as clients rely on them (the OpenAPI document and CORS are checked
# against this list; a header outside it is not checked).
CONTRACT_HEADERS = (
    "Location",
    "ETag",
    "X-Total-Count",
    "Link",
    "X-Trace-Id",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Retry-After",
    "Idempotency-Replayed",
)

MakeClient = Callable[..., FlaskClient]


@pytest.fixture
def client_with(settings: Settings, app: APIFlask) -> Iterator[MakeClient]:
    """`client_with(**overrides)`: a test client of an app built with these settings, on the emptied database."""
    truncate_all(app)
    built: list[APIFlask] = []

    def make(**overrides: Any) -> FlaskClient:
        fields = {"database_url": settings.database_url, "redis_url": settings.redis_url, "app_env": "test"}
        application = create_app(Settings.from_env({}, **{**fields, "rate_limit_enabled": False, **overrides}))
        built.append(application)
        return application.test_client()

    yield make
    for application in built:
        with application.app_context():
            db.engine.dispose()

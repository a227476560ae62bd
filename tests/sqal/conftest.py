"""SQAL fixtures: a fresh device, and a gunicorn shared by a WebSocket test module."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from apiflask import APIFlask

from scripts.services import TestServices
from tests.sqal.helpers import WS_PATH, make_device, start_server


@pytest.fixture
def device(app: APIFlask) -> tuple[str, str]:
    """A fresh enabled device: (device_id, token)."""
    return make_device(app)


@pytest.fixture(scope="module")
def sqal_server(app: APIFlask, services: TestServices, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """WebSocket URL of a gunicorn shared by a test module (tests use their own devices, so no truncation)."""
    server = start_server(services, tmp_path_factory.mktemp("gunicorn"))
    try:
        yield f"ws://127.0.0.1:{server.port}{WS_PATH}"
    finally:
        server.stop()

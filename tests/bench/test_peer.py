"""The benchmark's peer (bench/peer) under the real gunicorn: it serves the row, logs, traces and counts."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from apiflask import APIFlask

from backend.products import service
from bench.scenario_http import peer_env, peer_server
from scripts.devservices import REPO_ROOT
from scripts.services import TestServices
from tests.conftest import truncate_all
from tests.observability.receiver import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, OtlpReceiver

pytestmark = pytest.mark.gunicorn


@pytest.fixture
def product_id(app: APIFlask) -> int:
    truncate_all(app)
    with app.app_context():
        return service.create_product({"name": "Bloc de foie gras", "price": 19.9, "category": "Foie gras"}).id


@pytest.fixture
def receiver() -> Iterator[OtlpReceiver]:
    found = OtlpReceiver().start()
    yield found
    found.stop()


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects among the server's output lines (gunicorn's own lines are plain text)."""
    found = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            found.append(record)
    return found


def test_instrumented_peer_serves_logs_traces_and_counts(
    services: TestServices, product_id: int, receiver: OtlpReceiver, tmp_path: Path
) -> None:
    env = {**peer_env(receiver.endpoint), "OTEL_BSP_SCHEDULE_DELAY": "100"}  # export within 0.1 s, not 5 s
    with peer_server(services, env, workers=2, log_dir=tmp_path) as peer:
        for _ in range(6):
            response = requests.get(peer.url(f"/products/{product_id}"), timeout=5)
            assert response.status_code == 200
            body = response.json()
            assert (body["id"], body["name"], body["price"]) == (product_id, "Bloc de foie gras", 19.9)
        assert requests.get(peer.url(f"/products/{product_id + 1000}"), timeout=5).status_code == 404

        line = next(record for record in _json_lines(peer.log) if record.get("path") == f"/products/{product_id}")
        assert (line["method"], line["status"], line["name"]) == ("GET", 200, "peer.access")
        assert len(line["trace_id"]) == 32
        assert int(line["trace_id"], 16) != 0
        spans = receiver.wait_for(
            line["trace_id"], lambda found: {SPAN_KIND_SERVER, SPAN_KIND_CLIENT} <= {s.kind for s in found}
        )
        server_span = next(span for span in spans if span.kind == SPAN_KIND_SERVER)
        assert server_span.span_id == line["span_id"]
        assert server_span.resource["service.name"] == "peer"
        sql = next(span for span in spans if span.kind == SPAN_KIND_CLIENT)
        assert sql.parent_span_id == server_span.span_id
        assert "products" in sql.attributes.get("db.statement", sql.attributes.get("db.query.text", ""))
        assert line["duration_ms"] > 0

        # Aggregated over the workers (multiprocess mode), on the app's own port.
        assert peer.metric("flask_http_request_total", method="GET", status="200") >= 6
        assert peer.metric("flask_http_request_total", method="GET", status="404") >= 1


def test_uninstrumented_peer_serves_without_instrumentation(
    services: TestServices, product_id: int, tmp_path: Path
) -> None:
    with peer_server(services, peer_env(None), workers=1, log_dir=tmp_path) as peer:
        response = requests.get(peer.url(f"/products/{product_id}"), timeout=5)
        assert response.status_code == 200
        assert response.json()["category"] == "Foie gras"
        assert requests.get(peer.url("/metrics"), timeout=5).status_code == 404
    assert _json_lines(peer.log) == []  # no access line


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_peer_and_app_never_import_each_other() -> None:
    peer = {name for path in (REPO_ROOT / "bench" / "peer").glob("*.py") for name in _imported_modules(path)}
    assert not {name for name in peer if name.split(".")[0] in {"backend", "tests", "scripts"}}
    assert {"bench.peer.app"} <= peer  # the scan sees the peer's own imports
    app = {name for path in (REPO_ROOT / "backend").rglob("*.py") for name in _imported_modules(path)}
    assert not {name for name in app if name.split(".")[0] == "bench"}

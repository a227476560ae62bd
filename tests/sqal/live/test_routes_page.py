"""The /dashboard page in headless Chromium: a sample sent through /ws/sensors/ appears live; it reconnects alone."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from apiflask import APIFlask

from scripts.services import TestServices
from tests.sqal.conftest import start_reads_server
from tests.sqal.helpers import make_device, sample_frame
from tests.sqal.live.test_service import ingest
from tests.sqal.rows import insert_samples, sample_row
from tests.support.browser import Browser
from tests.support.server import GunicornServer

pytestmark = pytest.mark.gunicorn

STATE = "document.getElementById('connection')?.dataset.state"


def row_text(sample_id: str) -> str:
    selector = json.dumps(f'#samples tbody tr[data-sample-id="{sample_id}"]')
    return f"(document.querySelector({selector}) || {{}}).innerText"


def test_page_and_assets_are_served_same_origin_only(reads_server: GunicornServer) -> None:
    page = requests.get(reads_server.url("/dashboard"), timeout=5)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy
    assert f"ws://127.0.0.1:{reads_server.port}" in policy
    assert "http" not in page.text.replace("http://www.w3.org", "")  # nothing fetched from elsewhere
    for asset in ("dashboard.js", "dashboard.css"):
        response = requests.get(reads_server.url(f"/dashboard/static/{asset}"), timeout=5)
        assert response.status_code == 200, asset
        assert "http://" not in response.text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in response.text
    assert requests.get(reads_server.url("/dashboard/static/missing.js"), timeout=5).status_code == 404


def test_a_sample_appears_live_and_the_page_reconnects(
    reads_server: GunicornServer,
    reads_app: APIFlask,
    services: TestServices,
    browser: Browser,
    tmp_path: Path,
) -> None:
    device_id, token = make_device(reads_app)
    browser.navigate(reads_server.url("/dashboard"))
    assert browser.wait_for(f"{STATE} === 'live'")
    first = sample_frame(device_id, seq=1, fusion={**sample_frame(device_id, 1)["fusion"], "final_grade": "C"})
    assert ingest(reads_server, token, first)["status"] == "stored"
    text = browser.wait_for(row_text(first["sample_id"]), timeout=10)
    assert device_id in text
    assert "C" in text.split()
    # The device list and the figures follow (devices poll every 10 s, figures every few seconds).
    assert browser.wait_for("document.getElementById('kpi-today').textContent === '1'", timeout=20)
    assert browser.wait_for(f"document.getElementById('devices').innerText.includes({json.dumps(device_id)})", 20)
    screenshot = browser.screenshot(tmp_path / "dashboard.png")
    assert screenshot.startswith(b"\x89PNG")
    assert len(screenshot) > 20_000
    assert browser.errors == []  # no script error, no CSP violation, no failed request

    port = reads_server.port
    reads_server.stop()
    assert browser.wait_for(f"{STATE} === 'reconnecting'", timeout=20)
    # Stored while the page was cut off: it comes back through the REST refresh that follows a reconnection.
    missed = sample_row(device_id, datetime.now(UTC), "B", 0.8, sample_id="MISSED-WHILE-DOWN")
    insert_samples(reads_app, [missed])
    (tmp_path / "restarted").mkdir()
    restarted = start_reads_server(services, tmp_path / "restarted", port=port)
    try:
        assert browser.wait_for(f"{STATE} === 'live'", timeout=30)
        assert browser.wait_for(row_text("MISSED-WHILE-DOWN"), timeout=10)
        second = sample_frame(device_id, seq=2)
        assert ingest(restarted, token, second)["status"] == "stored"
        assert browser.wait_for(row_text(second["sample_id"]), timeout=10)
    finally:
        restarted.stop()

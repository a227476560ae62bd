"""The reference's run commands: `gunicorn … app:app` (with this repository's gunicorn.conf.py), `python app.py`
on PORT with FLASK_DEBUG, and `flask --app backend …` without DATABASE_URL (one line, no traceback)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from apiflask import APIFlask

from scripts.devservices import REPO_ROOT, free_port
from tests.support.server import GunicornServer

FLASK = Path(sys.executable).with_name("flask")
MISSING = "config error: Missing DATABASE_URL: set it to a postgresql:// URL (make run starts one for you)"


@pytest.mark.gunicorn
def test_reference_gunicorn_command_runs_this_service(
    app: APIFlask, server_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    # products-service-observability.md: `gunicorn --bind 0.0.0.0:5000 --workers 4 --timeout 120 app:app`
    args = ["--bind", f"127.0.0.1:{port}", "--workers", "2", "--timeout", "120", "app:app"]
    with GunicornServer(server_env, tmp_path, port=port, args=args) as server:
        health = requests.get(server.url("/health"), timeout=5)
        assert (health.status_code, health.json()["status"]) == (200, "UP")
        assert requests.get(server.url("/products"), timeout=5).status_code == 200
        metrics = requests.get(server.url("/metrics"), timeout=5).text
    assert 'http_requests_total{method="GET",path="/products",status="200"}' in metrics
    # ./gunicorn.conf.py was read: gunicorn's own lines are JSON (its default format is plain text).
    lines = [line for line in server.stdout().splitlines() if line.strip()]
    assert lines
    assert all(json.loads(line)["service"] == "backend" for line in lines)
    assert any(json.loads(line)["logger"] == "gunicorn.error" for line in lines)


def test_python_app_py_serves_on_port(server_env: dict[str, str], tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        **server_env,
        "APP_ENV": "test",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "FLASK_DEBUG": "False",
    }
    log = tmp_path / "app.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "app.py"], cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                response = requests.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        assert (response.status_code, response.json()["database"]) == (200, "connected")
    finally:
        process.terminate()
        process.wait(10)
    assert "Debugger is active" not in log.read_text()


@pytest.mark.parametrize(
    "command",
    [
        [str(FLASK), "--app", "backend", "db", "upgrade"],
        [str(FLASK), "--app", "backend", "keys", "list"],
        [str(FLASK), "--app", "backend", "sqal", "create-device", "ESP32_LL_01"],
        [str(FLASK), "--app", "app", "routes"],
        [sys.executable, "app.py"],
    ],
    ids=["db-upgrade", "keys-list", "create-device", "flask-app-app", "python-app-py"],
)
def test_commands_without_database_url_print_one_line(command: list[str]) -> None:
    result = subprocess.run(
        command,
        cwd=REPO_ROOT,
        # No .env, nor the services a `make run` of this checkout may be running: nothing gives a database.
        env={"PATH": "/usr/bin:/bin", "FLASK_SKIP_DOTENV": "1", "LOCAL_SERVICES": "false"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert [line for line in result.stderr.splitlines() if line.strip()] == [MISSING], result.stderr
    assert result.stdout == ""

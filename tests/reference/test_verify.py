"""`python -m scripts.verify URL`: the reference's validation scripts as steps, run against the real gunicorn."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from apiflask import APIFlask

from scripts import verify
from scripts.devservices import REPO_ROOT, free_port
from tests.conftest import make_key, truncate_all
from tests.support.server import GunicornServer

STEPS = ("test_health_checks", "test_bug_tracking", "test_fastapi_stack", "test_metrics")


def run_verify(url: str, *extra: str, api_key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != verify.API_KEY_VARIABLE}
    if api_key is not None:
        env[verify.API_KEY_VARIABLE] = api_key
    return subprocess.run(
        [sys.executable, "-m", "scripts.verify", url, *extra],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def verdicts(output: str) -> dict[str, str]:
    return {line.split()[1]: line.split()[0] for line in output.splitlines() if line.startswith(("PASS", "FAIL"))}


@pytest.mark.gunicorn
def test_every_reference_script_passes_against_gunicorn(gunicorn: GunicornServer) -> None:
    result = run_verify(gunicorn.base_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert verdicts(result.stdout) == dict.fromkeys(STEPS, "PASS")
    assert "WS /ws/sensors/ → ack stored" in result.stdout


@pytest.mark.gunicorn
def test_with_auth_on_the_steps_take_the_key_from_sqal_api_key(
    app: APIFlask, server_env: dict[str, str], tmp_path: Path
) -> None:
    truncate_all(app)
    _, key = make_key(app, "bugs:write", "devices:admin")
    with GunicornServer({**server_env, "AUTH_MODE": "apikey"}, tmp_path) as server:
        refused = run_verify(server.base_url, "--only", "test_bug_tracking", "--only", "test_fastapi_stack")
        accepted = run_verify(server.base_url, api_key=key)
    assert refused.returncode == 1
    assert verdicts(refused.stdout) == {"test_bug_tracking": "FAIL", "test_fastapi_stack": "FAIL"}
    assert "expected 201, got 401" in refused.stdout
    assert "set SQAL_API_KEY" in refused.stdout
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert verdicts(accepted.stdout) == dict.fromkeys(STEPS, "PASS")


def test_an_unreachable_deployment_fails_every_step() -> None:
    result = run_verify(f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert verdicts(result.stdout) == dict.fromkeys(STEPS, "FAIL")
    assert "Traceback" not in result.stdout + result.stderr


@pytest.fixture
def partial_metrics() -> Iterator[str]:
    """A server whose /metrics has only the reference's grepped names."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"http_requests_total 1\ncache_hits_total 1\nsample_quality_score_count 1\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_metrics_step_names_what_is_missing(partial_metrics: str) -> None:
    result = run_verify(partial_metrics, "--only", "test_metrics")
    assert result.returncode == 1
    assert verdicts(result.stdout) == {"test_metrics": "FAIL"}
    missing = result.stdout.split("metric(s): ", 1)[1].split("\n", 1)[0].split(", ")
    assert "http_requests_total" not in missing
    assert {"cache_misses_total", "db_connection_pool_size", "websocket_errors_total", "bug_metrics"} <= set(missing)


def test_the_metric_contract_holds_every_reference_name() -> None:
    contract_file = [
        line.split()[0] for line in verify.METRIC_NAMES_FILE.read_text().splitlines() if line[:1].isalpha()
    ]
    assert set(verify.REFERENCE_METRICS) <= set(contract_file)
    assert set(verify.EVENT_METRICS) <= set(contract_file) - set(verify.REFERENCE_METRICS)


@pytest.mark.gunicorn
def test_metrics_step_alone_passes_on_a_fresh_instance(gunicorn: GunicornServer) -> None:
    """The reference's metric script needs no workload first: every contract name is exported from the start, but
    the per-device gauge, which has no series before a device has sent a sample."""
    result = run_verify(gunicorn.base_url, "--only", "test_metrics")
    assert result.returncode == 0, result.stdout + result.stderr
    assert verdicts(result.stdout) == {"test_metrics": "PASS"}
    waiting = [line.split(":")[1].split()[0] for line in result.stdout.splitlines() if "not yet exported" in line]
    assert waiting == ["device_last_seen_timestamp_seconds"]

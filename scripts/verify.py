"""The reference's validation scripts as runnable checks against a running deployment (make run, compose, k8s).

    python -m scripts.verify [URL] [--only STEP ...]      # URL defaults to http://127.0.0.1:8000

One step per reference script, named after it: `test_health_checks` (test_health_checks.sh), `test_bug_tracking`
(test_bug_tracking.sh), `test_fastapi_stack` (test_fastapi_stack.sh: the whole stack, a sample from a WebSocket
device to the read API) and `test_metrics` (test_metrics.sh: every name of observability/metric-names.txt and of
the reference). They run in that order, so the metrics step sees the series the others produce. Each prints PASS
or FAIL with its checks; the exit status is 1 when a step fails. With AUTH_MODE=apikey, writes use the key in
SQAL_API_KEY (scopes bugs:write and devices:admin). Needs only the runtime requirements and `simulator/`.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from websockets.sync.client import connect

from simulator.generator import SampleGenerator
from simulator.profile import load_profile

API_KEY_VARIABLE = "SQAL_API_KEY"
METRIC_NAMES_FILE = Path(__file__).resolve().parent.parent / "observability" / "metric-names.txt"
# The metric names the reference documents list (sqal-backend-api-integration.md, products-service-observability.md).
REFERENCE_METRICS = (
    "http_requests_total",
    "http_request_duration_seconds",
    "http_request_size_bytes",
    "http_response_size_bytes",
    "cache_hits_total",
    "cache_misses_total",
    "cache_latency_seconds",
    "cache_size_bytes",
    "cache_evictions_total",
    "cache_expirations_total",
    "db_connection_pool_size",
    "db_connection_pool_available",
    "db_query_duration_seconds",
    "websocket_connections_active",
    "websocket_messages_sent_total",
    "websocket_messages_received_total",
    "websocket_errors_total",
    "sample_processing_duration_seconds",
    "sample_quality_score",
    "conformity_rate_percent",
    "reject_rate_percent",
    "samples_throughput_per_second",
    "average_quality_score",
    "bug_metrics",
    "database_queries_total",
    "database_connection_pool",
)
# test_metrics.sh greps for these three.
GREPPED_METRICS = ("http_requests_total", "cache_hits_total", "sample_quality_score")
# Contract names with no series until their event has happened on this deployment: reported, not failed.
EVENT_METRICS = {
    "device_last_seen_timestamp_seconds": "once an enabled device has sent a sample",
}


class StepFailed(Exception):
    """A check of a step failed; the message says which and what was seen."""


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Deployment:
    """The service under test: base URL, optional API key, and the lines a step reports."""

    base_url: str
    api_key: str = ""
    timeout: float = 10.0
    notes: list[str] = field(default_factory=list)

    def request(self, method: str, path: str, body: Any = None) -> Response:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key and method != "GET":
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                return Response(reply.status, reply.read(), dict(reply.headers))
        except urllib.error.HTTPError as error:
            return Response(error.code, error.read(), dict(error.headers))
        except (urllib.error.URLError, OSError) as error:
            raise StepFailed(f"{method} {path}: {getattr(error, 'reason', error)}") from None

    def expect(self, method: str, path: str, status: int, body: Any = None) -> Response:
        """`method path` must answer `status`; the check is noted, a mismatch fails the step."""
        response = self.request(method, path, body)
        if response.status != status:
            hint = ""
            if response.status in (401, 403):
                hint = f" (AUTH_MODE=apikey: set {API_KEY_VARIABLE} to a key with bugs:write and devices:admin)"
            raise StepFailed(
                f"{method} {path}: expected {status}, got {response.status}: {response.body[:300]!r}{hint}"
            )
        self.notes.append(f"{method} {path} → {status}")
        return response


def check(condition: bool, message: str) -> None:
    if not condition:
        raise StepFailed(message)


def test_health_checks(target: Deployment) -> None:
    """The three Kubernetes probes answer 200 (as `curl -f`), then /health says UP; readiness names what is down."""
    for probe in ("startup", "live", "ready"):
        response = target.expect("GET", f"/health/{probe}", 200)
        if probe == "ready":
            body = response.json()
            for name, result in body.get("checks", {}).items():
                if result.get("status") != "up":
                    where = f" at {result['target']}" if "target" in result else ""
                    target.notes.append(f"readiness {body['status']}: {name}{where} is {result.get('status')}")
    health = target.expect("GET", "/health", 200).json()
    check(health.get("status") == "UP", f"/health: expected status UP, got {health!r}")


def test_bug_tracking(target: Deployment) -> None:
    """Create a bug, read it, comment it, read the summary (the reference's flow); then resolve and close it."""
    report = {"title": "Test", "description": "Test description", "severity": "low", "priority": "medium"}
    created = target.expect("POST", "/api/bugs/", 201, report).json()
    bug_id = created.get("id")
    check(isinstance(bug_id, int), f"POST /api/bugs/: no integer id in {created!r}")
    target.notes.append(f"created bug {bug_id}")
    bug = target.expect("GET", f"/api/bugs/{bug_id}", 200).json()
    check(bug.get("title") == "Test" and bug.get("status") == "open", f"GET /api/bugs/{bug_id}: {bug!r}")
    comment = {"comment": "Test comment", "author": "Test User"}
    target.expect("POST", f"/api/bugs/{bug_id}/comments", 201, comment)
    comments = target.expect("GET", f"/api/bugs/{bug_id}", 200).json().get("comments", [])
    check(any(c.get("comment") == "Test comment" for c in comments), f"comment not listed: {comments!r}")
    summary = target.expect("GET", "/api/bugs/metrics/summary", 200).json()
    check(summary.get("total", 0) >= 1, f"/api/bugs/metrics/summary: total < 1 in {summary!r}")
    target.expect("GET", "/api/bugs/?status=open&severity=critical", 200)
    target.expect("PATCH", f"/api/bugs/{bug_id}", 200, {"status": "resolved"})
    target.expect("PATCH", f"/api/bugs/{bug_id}", 200, {"status": "closed"})


def _ws_url(base_url: str) -> str:
    return re.sub(r"^http", "ws", base_url) + "/ws/sensors/"


def _send_one_sample(target: Deployment, device_id: str, token: str) -> str:
    """A frame of an unknown type (must get an error reply), then one simulated sample (must be acked `stored`)."""
    sample = SampleGenerator(device_id, load_profile(), random.Random()).next_sample(1)
    headers = {"Authorization": f"Bearer {token}"}
    with connect(_ws_url(target.base_url), additional_headers=headers, open_timeout=target.timeout) as socket:
        socket.send(json.dumps({"type": "verify"}))
        error = json.loads(socket.recv(timeout=target.timeout))
        check(error.get("code") == "unknown_type", f"WS /ws/sensors/: expected an unknown_type error, got {error!r}")
        socket.send(sample.payload)
        reply = json.loads(socket.recv(timeout=target.timeout))
    check(
        reply.get("type") == "ack" and reply.get("status") == "stored" and reply.get("sample_id") == sample.sample_id,
        f"WS /ws/sensors/: expected an ack `stored` for {sample.sample_id}, got {reply!r}",
    )
    target.notes.append(f"WS /ws/sensors/ → ack stored ({sample.sample_id})")
    return sample.sample_id


def test_fastapi_stack(target: Deployment) -> None:
    """The whole stack: probes, docs, products, a device sample through WebSocket → PostgreSQL → the read API."""
    health = target.expect("GET", "/health", 200).json()
    check(health.get("database") == "connected", f"/health: database not connected: {health!r}")
    target.expect("GET", "/health/ready", 200)
    target.expect("GET", "/docs", 200)
    spec = target.expect("GET", "/openapi.json", 200).json()
    check("/api/bugs/" in spec.get("paths", {}), "/openapi.json: /api/bugs/ missing")
    target.expect("GET", "/products", 200)
    target.expect("GET", "/products", 200)  # the second read is a cache hit when Redis is there
    device_id = f"VERIFY_{uuid.uuid4().hex[:8].upper()}"
    token = target.expect("POST", "/api/sqal/devices", 201, {"device_id": device_id}).json()["token"]
    try:
        sample_id = _send_one_sample(target, device_id, token)
        path = f"/api/sqal/samples/{quote(sample_id)}?device_id={device_id}"
        stored = target.expect("GET", path, 200).json()
        check(stored.get("device_id") == device_id, f"GET {path}: {stored!r}")
        devices = target.expect("GET", "/api/sqal/devices", 200).json()
        check(device_id in json.dumps(devices), f"/api/sqal/devices does not list {device_id}")
        figures = target.expect("GET", "/api/dashboard/metrics/", 200).json()
        check(isinstance(figures, dict) and bool(figures), f"/api/dashboard/metrics/: {figures!r}")
    finally:
        # The verification device must not stay connectable (nor count as a line device).
        target.request("PATCH", f"/api/sqal/devices/{device_id}", {"enabled": False})


def metric_contract() -> list[str]:
    """Names from observability/metric-names.txt, then any reference name it lacks."""
    names = []
    for line in METRIC_NAMES_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            names.append(line.split()[0])
    return names + [name for name in REFERENCE_METRICS if name not in names]


def exported_names(exposition: str) -> set[str]:
    """Metric names with at least one sample in a Prometheus text exposition (histogram suffixes folded)."""
    names = set()
    for line in exposition.splitlines():
        if line and not line.startswith("#"):
            name = re.split(r"[{\s]", line, maxsplit=1)[0]
            names.add(name)
            names.add(re.sub(r"_(bucket|sum|count)$", "", name))
    return names


def test_metrics(target: Deployment) -> None:
    """/metrics exposes the reference's grepped names and every name of the metric contract."""
    exposition = target.expect("GET", "/metrics", 200).body.decode()
    exported = exported_names(exposition)
    expected = list(dict.fromkeys([*GREPPED_METRICS, *metric_contract()]))
    missing = [name for name in expected if name not in exported and name not in EVENT_METRICS]
    check(not missing, f"/metrics lacks {len(missing)} metric(s): {', '.join(missing)}")
    waiting = [name for name in EVENT_METRICS if name not in exported]
    target.notes.append(f"{len(expected) - len(waiting)} of {len(expected)} metric names exported")
    target.notes.extend(f"not yet exported: {name} (appears {EVENT_METRICS[name]})" for name in waiting)


STEPS: dict[str, Callable[[Deployment], None]] = {
    "test_health_checks": test_health_checks,
    "test_bug_tracking": test_bug_tracking,
    "test_fastapi_stack": test_fastapi_stack,
    "test_metrics": test_metrics,
}


def run(base_url: str, only: Sequence[str] = (), api_key: str = "", out: Any = None) -> int:
    """Run the steps (all, or `only`) against `base_url`; print PASS/FAIL per step; 0 when all pass, else 1."""
    out = out or sys.stdout
    failed = 0
    for name, step in STEPS.items():
        if only and name not in only:
            continue
        target = Deployment(base_url.rstrip("/"), api_key)
        started = time.monotonic()
        try:
            step(target)
            verdict, reason = "PASS", ""
        except StepFailed as exc:
            verdict, reason = "FAIL", f": {exc}"
            failed += 1
        except Exception as exc:  # a broken deployment must still give a verdict, not a traceback
            verdict, reason = "FAIL", f": {type(exc).__name__}: {exc}"
            failed += 1
        print(f"{verdict} {name} ({time.monotonic() - started:.2f} s){reason}", file=out)
        for note in target.notes:
            print(f"    {note}", file=out)
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.verify", description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8000", help="base URL of the deployment")
    parser.add_argument("--only", action="append", choices=list(STEPS), default=[], help="run only this step")
    args = parser.parse_args(argv)
    return run(args.url, args.only, os.environ.get(API_KEY_VARIABLE, ""))


if __name__ == "__main__":
    sys.exit(main())

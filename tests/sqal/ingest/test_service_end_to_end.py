"""The real simulator against the real gunicorn while connections drop on both sides: nothing lost, nothing twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from apiflask import APIFlask
from sqlalchemy import text

from backend.extensions import db
from backend.sqal.devices import provisioning
from scripts.devservices import REPO_ROOT
from scripts.services import TestServices
from tests.sqal.chaos_proxy import ChaosProxy
from tests.sqal.helpers import start_server
from tests.support.server import GunicornServer

pytestmark = [pytest.mark.gunicorn, pytest.mark.slow]

DEVICES = 5
PER_DEVICE = 200


def worker_pids(server: GunicornServer) -> list[int]:
    assert server.process is not None
    return [child.pid for child in psutil.Process(server.process.pid).children()]


def wait_for_new_worker(server: GunicornServer, gone: int, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = worker_pids(server)
        if gone not in pids and len(pids) == 2:
            return
        time.sleep(0.1)
    raise AssertionError(f"gunicorn did not replace worker {gone}")


def run_chaos(simulator: subprocess.Popen[bytes], server: GunicornServer, proxy: ChaosProxy) -> list[str]:
    """Until the simulator exits: cut a random connection every 0.2-0.5 s; TERM then KILL a worker."""
    rng = random.Random(5)
    events: list[str] = []
    started = time.monotonic()
    server_drops = [(1.0, signal.SIGTERM), (2.5, signal.SIGKILL)]
    while simulator.poll() is None and time.monotonic() - started < 90:
        time.sleep(rng.uniform(0.2, 0.5))
        if proxy.cut_random():
            events.append("cut")
        if server_drops and time.monotonic() - started >= server_drops[0][0]:
            _, signum = server_drops.pop(0)
            victim = rng.choice(worker_pids(server))
            os.kill(victim, signum)
            events.append(signal.Signals(signum).name)
            wait_for_new_worker(server, victim)
    return events


def test_every_sample_stored_exactly_once_despite_drops(app: APIFlask, services: TestServices, tmp_path: Path) -> None:
    prefix = f"E2E{uuid.uuid4().hex[:6]}_"
    device_ids = provisioning.dev_device_ids(DEVICES, prefix)
    token_file = tmp_path / "tokens.json"
    with app.app_context():
        provisioning.ensure_devices(device_ids, token_file)
        db.session.remove()
    server = start_server(services, tmp_path, SHUTDOWN_TIMEOUT="5")
    proxy = ChaosProxy(server.port, seed=11)
    summary_path = tmp_path / "summary.json"
    command = [
        sys.executable, "-m", "simulator",
        "--url", f"ws://127.0.0.1:{proxy.port}/ws/sensors/",
        "--devices", str(DEVICES), "--device-prefix", prefix,
        "--count", str(PER_DEVICE), "--interval", "0.02", "--seed", "7",
        "--token-file", str(token_file), "--outbox", str(tmp_path / "outbox.sqlite3"),
        "--backoff-max", "1", "--drain-timeout", "60", "--status-interval", "2",
        "--summary-json", str(summary_path),
    ]  # fmt: skip
    log = (tmp_path / "simulator.err").open("wb")
    simulator = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=log)
    try:
        events = run_chaos(simulator, server, proxy)
        assert simulator.wait(60) == 0, (tmp_path / "simulator.err").read_text()
    finally:
        if simulator.poll() is None:
            simulator.kill()
        log.close()
        proxy.close()
        server.stop()
    summary = json.loads(summary_path.read_text())
    assert {"SIGTERM", "SIGKILL"} <= set(events)
    assert events.count("cut") >= 5, events
    assert summary["generated"] == DEVICES * PER_DEVICE
    assert summary["acked"] == DEVICES * PER_DEVICE  # every sample's ack came back and matched its frame
    assert (summary["pending"], summary["rejected"], summary["failed_devices"]) == (0, 0, {})
    assert summary["resent"] > 0  # the drops really cut deliveries in flight
    with app.app_context():
        rows = db.session.execute(
            text(
                "SELECT count(*), count(DISTINCT (device_id, sample_id)), count(DISTINCT (device_id, seq)) "
                "FROM sensor_samples WHERE device_id LIKE :prefix"
            ),
            {"prefix": f"{prefix}%"},
        ).one()
        per_device = db.session.execute(
            text(
                "SELECT device_id, min(seq), max(seq), count(*) FROM sensor_samples "
                "WHERE device_id LIKE :prefix GROUP BY device_id ORDER BY device_id"
            ),
            {"prefix": f"{prefix}%"},
        ).all()
        db.session.remove()
    assert tuple(rows) == (1000, 1000, 1000)
    assert [tuple(row) for row in per_device] == [(device_id, 1, PER_DEVICE, PER_DEVICE) for device_id in device_ids]

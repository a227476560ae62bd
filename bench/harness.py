"""Benchmark plumbing: the real gunicorn (production config), wrk load from a separate process, an OTLP sink.

Every comparison is made inside one run: A and B are alternated (A B A B ...), each pair gives a ratio, and the
median and spread of the ratios are reported — never an absolute time compared across runs.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import requests

from scripts.devservices import REPO_ROOT, free_port

GUNICORN = Path(sys.executable).with_name("gunicorn")
BENCH_ROOT = REPO_ROOT / ".local" / "bench"


class Server:
    """gunicorn -c gunicorn.conf.py in production mode with environment overrides."""

    def __init__(
        self, database_url: str, redis_url: str, env: Mapping[str, str] | None = None, workers: int = 2
    ) -> None:
        self.port = free_port()
        self.log = BENCH_ROOT / f"gunicorn-{self.port}.log"
        self.env = {
            **os.environ,
            "APP_ENV": "production",
            "AUTH_MODE": "off",
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "WEB_CONCURRENCY": str(workers),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "RATE_LIMIT_ENABLED": "false",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self, ready_path: str = "/health/ready", timeout: float = 60) -> float:
        """Start and wait until `ready_path` is 200; return seconds from spawn to ready."""
        BENCH_ROOT.mkdir(parents=True, exist_ok=True)
        self.started_at = time.perf_counter()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(GUNICORN), "-c", str(REPO_ROOT / "gunicorn.conf.py")],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = self.started_at + timeout
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited early, see {self.log}")
            try:
                if requests.get(self.url(ready_path), timeout=0.5).status_code == 200:
                    return time.perf_counter() - self.started_at
            except requests.RequestException:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"gunicorn not ready in {timeout}s, see {self.log}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(40)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class LoadResult:
    """What one wrk run measured."""

    requests_per_second: float
    latency_ms: dict[str, float]
    requests: int
    errors: int


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unparsable latency {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def wrk(url: str, seconds: float = 10, connections: int = 16, threads: int = 2) -> LoadResult:
    """Drive `url` with wrk from a separate process; parse throughput, latency percentiles and errors."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is missing: apt-get install wrk")
    output = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    percentiles = {
        f"p{m.group(1)}": _to_ms(m.group(2))
        for m in re.finditer(r"^\s+(50|75|90|99)(?:\.0+)?%\s+(\S+)", output, re.MULTILINE)
    }
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", output))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors += int(non2xx.group(1)) if non2xx else 0
    return LoadResult(rps, percentiles, total, errors)


@dataclass
class Comparison:
    """Alternated A/B runs and the per-pair ratios B/A."""

    name: str
    a: list[dict[str, float]] = field(default_factory=list)
    b: list[dict[str, float]] = field(default_factory=list)

    def ratios(self, metric: str) -> list[float]:
        return [b[metric] / a[metric] for a, b in zip(self.a, self.b, strict=True) if a[metric]]

    def summary(self, metric: str) -> dict[str, float]:
        ratios = self.ratios(metric)
        return {
            "median": statistics.median(ratios),
            "min": min(ratios),
            "max": max(ratios),
            "a_median": statistics.median(run[metric] for run in self.a),
            "b_median": statistics.median(run[metric] for run in self.b),
        }


def alternate(
    name: str, runs: int, run_a: Callable[[], dict[str, float]], run_b: Callable[[], dict[str, float]]
) -> Comparison:
    """Run A then B `runs` times, alternating the order each round to cancel drift."""
    comparison = Comparison(name)
    for index in range(runs):
        order = ((run_a, comparison.a), (run_b, comparison.b))
        for runner, sink in order if index % 2 == 0 else reversed(order):
            sink.append(runner())
    return comparison


class OtlpSink:
    """A local OTLP/HTTP endpoint that accepts and counts trace exports (so 100 % sampling really exports)."""

    def __init__(self) -> None:
        self.requests = 0
        self.bytes = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                self.rfile.read(length)
                sink.requests += 1
                sink.bytes += length
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OtlpSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

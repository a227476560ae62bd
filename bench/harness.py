"""Benchmark plumbing: the real gunicorn (production config), wrk load from a separate process, an OTLP sink.

Every comparison is made inside one run: A and B are alternated (A B A B ...), each pair gives a ratio, and the
median and spread of the ratios are reported — never an absolute time compared across runs.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from scripts.devservices import REPO_ROOT, EmbeddedPostgres, free_port
from scripts.services import TestServices, session_services

METRICS_TOKEN = secrets.token_urlsafe(24)  # per run: the servers' METRICS_TOKEN, never stored
METRICS_HEADERS = {"Authorization": f"Bearer {METRICS_TOKEN}"}
GUNICORN = Path(sys.executable).with_name("gunicorn")
BENCH_ROOT = REPO_ROOT / ".local" / "bench"
# Kept between runs (unlike the tests' embedded server) so a loaded benchmark database can be reused.
BENCH_POSTGRES = BENCH_ROOT / "postgres"


@contextmanager
def bench_services() -> Iterator[TestServices]:
    """The tests' services (DATABASE_URL / REDIS_URL, else embedded) with a scratch database, except that an
    embedded PostgreSQL lives in .local/bench/postgres and survives the run (its data is a cache, see dashboard)."""
    embedded: EmbeddedPostgres | None = None
    saved = os.environ.get("DATABASE_URL")
    if not saved:
        embedded = EmbeddedPostgres(BENCH_POSTGRES, free_port())
        running = embedded.running_port()
        if running:
            embedded.port = running
        embedded.start()
        os.environ["DATABASE_URL"] = embedded.url("postgres")
    try:
        with session_services() as services:
            yield services
    finally:
        if embedded is not None:
            os.environ.pop("DATABASE_URL", None)
            embedded.stop()


def dsn(url: str) -> str:
    """A psycopg2 DSN from a service URL (SQLAlchemy driver suffix removed)."""
    return url.replace("postgresql+psycopg2://", "postgresql://", 1)


def migrate(database_url: str) -> None:
    """Migrate to head and seed (init_db.py, in its own process as a deployment does)."""
    env = {**os.environ, "DATABASE_URL": database_url, "APP_ENV": "test"}
    subprocess.run([sys.executable, "init_db.py"], cwd=REPO_ROOT, env=env, check=True, capture_output=True)


def spread(values: list[float]) -> dict[str, float]:
    """Median, min and max of a list of measurements."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def load_average() -> list[float]:
    """1, 5 and 15-minute load averages, rounded (the machine is shared: every figure is reported with it)."""
    return [round(value, 2) for value in os.getloadavg()]


APP_CONFIG = REPO_ROOT / "gunicorn.conf.py"
PEER_CONFIG = REPO_ROOT / "bench" / "peer" / "gunicorn_conf.py"


class Server:
    """gunicorn -c gunicorn.conf.py (or another `config`, e.g. the peer's) in production mode with environment
    overrides; its output goes to `log_dir`."""

    def __init__(
        self,
        database_url: str,
        redis_url: str,
        env: Mapping[str, str] | None = None,
        workers: int = 2,
        config: Path = APP_CONFIG,
        log_dir: Path = BENCH_ROOT,
        ready_path: str = "/health/ready",
    ) -> None:
        self.port = free_port()
        self.config = config
        self.ready_path = ready_path
        self.overrides = dict(env or {})
        self.log = log_dir / f"gunicorn-{self.port}.log"
        self.env = {
            **os.environ,
            "APP_ENV": "production",
            "AUTH_MODE": "off",
            "ALLOW_INSECURE_AUTH_OFF": "true",  # a benchmark on 127.0.0.1, not a deployment
            # Production serves /metrics only to the operations side: the bench scrapes with this bearer token.
            "METRICS_TOKEN": METRICS_TOKEN,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
            "WEB_CONCURRENCY": str(workers),
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "RATE_LIMIT_ENABLED": "false",
            "SHUTDOWN_DRAIN_DELAY": "0",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self, timeout: float = 60) -> float:
        """Start and wait until `ready_path` is 200; return seconds from spawn to ready."""
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.started_at = time.perf_counter()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(GUNICORN), "-c", str(self.config)],
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
                if requests.get(self.url(self.ready_path), timeout=0.5).status_code == 200:
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

    def worker_rss_mb(self) -> list[float]:
        """Resident memory of each worker (MB)."""
        assert self.process is not None
        return [round(w.memory_info().rss / 2**20, 1) for w in psutil.Process(self.process.pid).children()]

    def metric_samples(self, name: str) -> list[Sample]:
        """The samples named `name` on /metrics (all workers aggregated), with their labels."""
        text = requests.get(self.url("/metrics"), headers=METRICS_HEADERS, timeout=10).text
        return [
            sample
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == name
        ]

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples `name` (with these labels) on /metrics, all workers aggregated."""
        return sum(
            sample.value
            for sample in self.metric_samples(name)
            if all(sample.labels.get(k) == v for k, v in labels.items())
        )

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

    def as_run(self) -> dict[str, float]:
        """Flat figures of one run, as `alternate` compares them."""
        return {"rps": self.requests_per_second, **self.latency_ms, "requests": self.requests, "errors": self.errors}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _to_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unparsable latency {text!r}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def rotating_paths_script(paths: list[str]) -> Path:
    """A wrk Lua script sending GETs to `paths` in turn (each wrk thread starts at a random one)."""
    BENCH_ROOT.mkdir(parents=True, exist_ok=True)
    script = BENCH_ROOT / f"paths-{hashlib.blake2s(repr(paths).encode(), digest_size=6).hexdigest()}.lua"
    quoted = ", ".join('"' + path.replace('"', '\\"') + '"' for path in paths)
    script.write_text(
        f"local paths = {{{quoted}}}\n"
        "local n = 0\n"
        "function init(args) n = math.random(#paths) end\n"
        "function request() n = n % #paths + 1; return wrk.format('GET', paths[n]) end\n"
    )
    return script


def wrk(
    url: str, seconds: float = 10, connections: int = 16, threads: int = 2, script: Path | None = None
) -> LoadResult:
    """Drive `url` with wrk from a separate process (optionally with a Lua `script`); parse throughput, latency
    percentiles and errors."""
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is missing: apt-get install wrk")
    extra = ["-s", str(script)] if script else []
    output = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, url],
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
        return {
            **spread(self.ratios(metric)),
            "a_median": statistics.median(run[metric] for run in self.a),
            "b_median": statistics.median(run[metric] for run in self.b),
        }


Runs = list[dict[str, float]]


def alternate_arms(rounds: int, runners: Mapping[str, Callable[[], dict[str, float]]]) -> dict[str, Runs]:
    """Run every arm once per round, in the given order then reversed on the next round (A B C, C B A, …) to cancel
    drift; returns arm → its runs, round by round (compare two arms with `Comparison(name, runs[x], runs[y])`)."""
    runs: dict[str, Runs] = {name: [] for name in runners}
    order = list(runners)
    for index in range(rounds):
        for name in order if index % 2 == 0 else reversed(order):
            runs[name].append(runners[name]())
    return runs


def alternate(
    name: str, runs: int, run_a: Callable[[], dict[str, float]], run_b: Callable[[], dict[str, float]]
) -> Comparison:
    """Run A then B `runs` times, alternating the order each round to cancel drift."""
    arms = alternate_arms(runs, {"a": run_a, "b": run_b})
    return Comparison(name, arms["a"], arms["b"])


class OtlpSink:
    """A local OTLP/HTTP endpoint that accepts and counts trace exports (so 100 % sampling really exports).

    With `keep=True` it also keeps the bodies, so `spans()` can count the spans after the measurement (decoding
    them while the arms run would take CPU from the servers)."""

    def __init__(self, keep: bool = False) -> None:
        self.requests = 0
        self.bytes = 0
        self.bodies: list[tuple[str, bytes]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                sink.requests += 1
                sink.bytes += length
                if keep:
                    sink.bodies.append((self.headers.get("Content-Encoding", ""), body))
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def spans(self) -> int:
        """Spans received so far (needs `keep=True`)."""
        count = 0
        for encoding, body in self.bodies:
            decoded = ExportTraceServiceRequest.FromString(gzip.decompress(body) if encoding == "gzip" else body)
            count += sum(len(scope.spans) for resource in decoded.resource_spans for scope in resource.scope_spans)
        return count

    def __enter__(self) -> OtlpSink:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

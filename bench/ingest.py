"""Ingestion benchmark: the real simulator drives the real gunicorn; then N idle sockets are held with heartbeats.

    .venv/bin/python -m bench.ingest [--devices 50] [--seconds 30] [--batch 50] [--linger 1] [--sockets 1000]

Reports samples/s stored, samples per frame, ack latency (per frame, send -> ack) and delivery latency (per
sample, generation -> ack) p50/p99 from the simulator's summary, lost (acked but not stored, or generated but never
acked) and duplicated rows, then how many concurrent idle sockets stayed open with every ping answered, and the
workers' RSS. DATABASE_URL / REDIS_URL are used when set (a scratch database is created on that server),
otherwise embedded ones (as in the tests).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import psycopg2
import websockets

from bench.harness import Server, dsn, migrate
from scripts.devservices import REPO_ROOT
from scripts.services import session_services

FRAME_TIME_METRIC = "sample_processing_duration_seconds"

# 50 devices at 1,500 samples/s make 30 samples per device per second: a 1 s linger sends ~30 per frame. A frame
# costs ~2 ms of server CPU before its first sample (span, rate-limit check, 3 statements, commit), so small frames
# spend the cores on overhead; the ack latency target is per frame (send -> ack), so the linger does not count.
LINGER = 1.0


def _provision(database_url: str, device_ids: list[str], token_file: Path) -> None:
    """Create the devices, writing their tokens for the simulator."""
    env = {**os.environ, "DATABASE_URL": database_url, "APP_ENV": "test"}
    code = (
        "import json,sys\n"
        "from backend import create_app\n"
        "from backend.sqal.devices import service\n"
        "app = create_app()\n"
        "with app.app_context():\n"
        "    tokens = {d: service.create_device(d, profile='bench') for d in sys.argv[2:]}\n"
        "open(sys.argv[1], 'w').write(json.dumps(tokens))\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(token_file), *device_ids],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        capture_output=True,
    )


def _count_rows(database_url: str) -> tuple[int, int]:
    """(rows, distinct (device_id, sample_id)) in sensor_samples."""
    conn = psycopg2.connect(dsn(database_url))
    try:
        with conn.cursor() as cursor:
            cursor.execute("SELECT count(*), count(DISTINCT (device_id, sample_id)) FROM sensor_samples")
            rows, distinct = cursor.fetchone()
    finally:
        conn.close()
    return int(rows), int(distinct)


def _frame_time_buckets(server: Server) -> dict[float, float]:
    """Cumulative buckets of the server's per-frame receive → commit histogram, all workers summed."""
    buckets: dict[float, float] = {}
    for sample in server.metric_samples(f"{FRAME_TIME_METRIC}_bucket"):
        bound = float(sample.labels["le"])
        buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return buckets


def _server_frame_time_ms(before: dict[float, float], after: dict[float, float]) -> dict[str, float | None]:
    """Upper bucket bounds (ms) under which 50 % and 99 % of this run's frames were processed by the server."""
    counts = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    total = counts[-1][1] if counts else 0.0

    def bound_for(share: float) -> float | None:
        for bound, count in counts:
            if total and count >= share * total:
                return None if bound == float("inf") else round(bound * 1000, 1)
        return None

    return {"p50_at_most": bound_for(0.5), "p99_at_most": bound_for(0.99), "frames": total}


def run_ingestion(server: Server, database_url: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Drive `args.devices` simulated devices for `args.seconds`; return throughput, latency, lost, duplicated."""
    prefix = f"BENCH_{uuid.uuid4().hex[:4]}_"
    device_ids = [f"{prefix}{n:02d}" for n in range(1, args.devices + 1)]
    token_file = workdir / "tokens.json"
    _provision(database_url, device_ids, token_file)
    summary_file = workdir / "summary.json"
    frame_times_before = _frame_time_buckets(server)
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable, "-m", "simulator",
            "--url", server.url("/ws/sensors/").replace("http://", "ws://"),
            "--devices", str(args.devices), "--device-prefix", prefix,
            "--interval", str(args.devices / args.rate), "--batch", str(args.batch), "--linger", str(args.linger),
            "--pool", "20", "--duration", str(args.seconds), "--token-file", str(token_file),
            "--outbox", str(workdir / "outbox.sqlite3"), "--summary-json", str(summary_file),
            "--status-interval", "10",
        ],
        cwd=REPO_ROOT, check=False, timeout=args.seconds + 180,
    )  # fmt: skip
    elapsed = time.perf_counter() - started
    summary = json.loads(summary_file.read_text())
    rows, distinct = _count_rows(database_url)
    acked = int(summary.get("acked", 0))
    return {
        "devices": args.devices,
        "offered_samples_per_second": args.rate,
        "generated": summary.get("generated"),
        "acked": acked,
        "rows": rows,
        # Rows stored over the whole run, drain included: what the server sustained, not what was offered.
        "samples_per_second": round(rows / elapsed, 1),
        "wall_seconds": round(elapsed, 1),
        "samples_per_frame": round(int(summary.get("sent", 0)) / max(int(summary.get("frames", 0)), 1), 1),
        # Per sample frame, send -> ack: the server's answer time (the target), nothing client-side.
        "ack_latency_ms": summary.get("ack_latency_ms"),
        # Per sample, generation -> ack: adds the batching linger and any queue in the simulator.
        "delivery_latency_ms": summary.get("delivery_latency_ms"),
        # Per frame, the server's own receive -> commit time (histogram buckets): what the ack latency owes the server.
        "server_frame_ms": _server_frame_time_ms(frame_times_before, _frame_time_buckets(server)),
        "duplicate_acks": summary.get("duplicates"),
        "lost": max(int(summary.get("generated", 0)) - rows, 0) + max(acked - rows, 0),
        "duplicated": rows - distinct,
    }


async def _hold_sockets(url: str, tokens: list[str], seconds: float) -> dict[str, Any]:
    """Open one socket per token, ping each every 5 s for `seconds`; count pongs and failures."""
    pongs = failures = 0
    opened: list[Any] = []
    for token in tokens:
        try:
            opened.append(await websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}))
        except Exception:
            failures += 1
    deadline = time.monotonic() + seconds

    async def heartbeat(ws: Any) -> None:
        nonlocal pongs, failures
        while time.monotonic() < deadline:
            try:
                await ws.send(json.dumps({"type": "ping"}))
                reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
                pongs += reply.get("type") == "pong"
            except Exception:
                failures += 1
                return
            await asyncio.sleep(5)

    await asyncio.gather(*(heartbeat(ws) for ws in opened))
    for ws in opened:
        await ws.close()
    return {"requested": len(tokens), "opened": len(opened), "pongs": pongs, "failures": failures}


def run_sockets(server: Server, database_url: str, count: int, seconds: float, workdir: Path) -> dict[str, Any]:
    """Hold `count` concurrent device sockets (one device each: WS_DEVICE_MAX_SOCKETS is 1 by default) with
    heartbeats; record the workers' RSS."""
    token_file = workdir / "socket-tokens.json"
    run = uuid.uuid4().hex[:4]
    _provision(database_url, [f"BENCH_SOCK_{run}_{number:04d}" for number in range(count)], token_file)
    tokens = list(json.loads(token_file.read_text()).values())
    result = asyncio.run(_hold_sockets(server.url("/ws/sensors/").replace("http://", "ws://"), tokens, seconds))
    assert server.process is not None
    workers = psutil.Process(server.process.pid).children()
    result["worker_rss_mb"] = [round(w.memory_info().rss / 2**20, 1) for w in workers]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=50)
    parser.add_argument("--rate", type=float, default=1500, help="offered samples/s in total")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--linger", type=float, default=LINGER, help="longest wait for a full batch (s)")
    parser.add_argument("--sockets", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=600)
    args = parser.parse_args()
    # The same real services as the tests: a scratch database on DATABASE_URL's server (or an embedded one).
    with session_services() as services, tempfile.TemporaryDirectory() as tmp:
        database_url = services.database_url
        migrate(database_url)
        env = {"GUNICORN_THREADS": str(args.threads), "WS_DEVICE_RATE_LIMIT": "1000000/minute"}
        with Server(database_url, services.redis_url, env, workers=args.workers) as server:
            results = {
                "ingestion": run_ingestion(server, database_url, args, Path(tmp)),
                "sockets": run_sockets(server, database_url, args.sockets, 30, Path(tmp)),
            }
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

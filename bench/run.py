"""`make bench`: run the nine benchmark scenarios of docs/benchmarks.md and regenerate that page.

    .venv/bin/python -m bench.run                 # all nine, about 13-16 minutes on 2 cores (cached data)
    .venv/bin/python -m bench.run --only 7,8      # some of them; the others keep their previous results
    .venv/bin/python -m bench.run --quick         # shorter runs, for a smoke test of the harness

Services: DATABASE_URL / REDIS_URL when set, else embedded ones (PostgreSQL kept in .local/bench/postgres, where
the 1M-sample databases of scenarios 6-8 are cached between runs; scenario 7's TimescaleDB cluster is kept in
.local/bench/timescaledb-<version>). Results are merged per scenario into
`.local/bench/results.json`; `bench.report` then writes docs/benchmarks.md, docs/benchmarks/*.png and a copy of
the JSON (docs/benchmarks/results.json), which are committed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend.core.cli import progress
from bench import costly_reads, lifecycle, private_internals, report, scenario_http, scenario_sqal
from bench.harness import BENCH_ROOT, OtlpSink, bench_services, load_average, migrate
from scripts.devservices import REPO_ROOT
from scripts.services import TestServices

RESULTS = BENCH_ROOT / "results.json"
TITLES = report.SECTION_TITLES
# Seconds, rounds and sizes per mode: scenarios 1-6 take ~8 minutes on 2 cores, 7 and 8 ~4 more with their 1M-row
# databases cached (5.5 minutes with the first loads of TimescaleDB's and scenario 8's).
PLANS: dict[str, dict[str, Any]] = {
    "full": {
        "http_rounds": 4,
        "http_seconds": 8,
        "cold_runs": 5,
        "ingest_runs": 2,
        "ingest_seconds": 20,
        "socket_runs": 1,
        "sockets": 1000,
        "socket_seconds": 30,
        "dash_runs": 3,
        "dash_requests": 300,
        "lifecycle_rounds": 3,
        "lifecycle_repeat": 5,
        "export": True,
        "costly_rounds": 2,
        "costly_runs": 3,
        "stock_rounds": 6,
        "stock_requests": 500,
    },
    "quick": {
        "http_rounds": 2,
        "http_seconds": 4,
        "cold_runs": 3,
        "ingest_runs": 1,
        "ingest_seconds": 10,
        "socket_runs": 1,
        "sockets": 1000,
        "socket_seconds": 10,
        "dash_runs": 1,
        "dash_requests": 100,
        "lifecycle_rounds": 2,
        "lifecycle_repeat": 2,
        "export": False,
        "costly_rounds": 2,
        "costly_runs": 1,
        "stock_rounds": 2,
        "stock_requests": 200,
    },
}


def _scenarios(
    services: TestServices, sink: OtlpSink, workdir: Path, plan: dict[str, Any]
) -> dict[str, Callable[[], dict[str, Any]]]:
    return {
        "5": lambda: scenario_http.cold_start(services, sink, plan["cold_runs"]),
        "1": lambda: scenario_http.instrumentation_overhead(services, plan["http_rounds"], plan["http_seconds"]),
        "2": lambda: scenario_http.cache(services, sink, plan["http_rounds"], plan["http_seconds"]),
        "3": lambda: scenario_sqal.ingestion(services, workdir, plan["ingest_runs"], plan["ingest_seconds"]),
        "4": lambda: scenario_sqal.sockets(
            services, workdir, plan["socket_runs"], plan["sockets"], plan["socket_seconds"]
        ),
        "6": lambda: scenario_sqal.dashboard_query(services, plan["dash_runs"], plan["dash_requests"], 4),
        "7": lambda: lifecycle.scenario(services, plan["lifecycle_rounds"], plan["lifecycle_repeat"], plan["export"]),
        "8": lambda: costly_reads.scenario(services, plan["costly_runs"], plan["costly_rounds"]),
        "9": lambda: private_internals.scenario(services, plan["stock_rounds"], plan["stock_requests"]),
    }


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _previous(path: Path) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded
    except (OSError, ValueError):
        return {}


def _say(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(selected: list[str], mode: str, output: Path) -> dict[str, Any]:
    """Run the selected scenarios; merge them into the results at `output` (written after each scenario)."""
    # A fresh checkout has no local results yet: start from the committed ones, so --only keeps the others' figures.
    results = _previous(output) or (_previous(report.COMMITTED_RESULTS) if output == RESULTS else {})
    results.setdefault("scenarios", {})
    results["host"] = {
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "database_url_set": bool(os.environ.get("DATABASE_URL")),
    }
    plan = PLANS[mode]
    started = time.perf_counter()
    with bench_services() as services, OtlpSink() as sink, tempfile.TemporaryDirectory() as tmp:
        migrate(services.database_url)
        scenarios = _scenarios(services, sink, Path(tmp), plan)
        for number in progress([n for n in scenarios if n in selected], "scenarios"):
            _say(f"scenario {number} ({TITLES[number]}), load average {load_average()}")
            entry: dict[str, Any] = {
                "title": TITLES[number],
                "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "commit": _git_commit(),
                "mode": mode,
                "load_average_before": load_average(),
            }
            scenario_started = time.perf_counter()
            try:
                entry["result"] = scenarios[number]()
            except Exception as exc:  # one broken scenario must not lose the others' results
                traceback.print_exc()
                entry["error"] = f"{type(exc).__name__}: {exc}"
            entry["load_average_after"] = load_average()
            entry["seconds"] = round(time.perf_counter() - scenario_started, 1)
            results["scenarios"][number] = entry
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(json.dumps(results, indent=2, default=str) + "\n")
            _say(f"scenario {number} done in {entry['seconds']} s: {report.headline(number, entry)}")
    _say(f"all done in {time.perf_counter() - started:.0f} s")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(TITLES), help="comma-separated scenario numbers (default: all)")
    parser.add_argument("--quick", action="store_true", help="shorter runs (smoke test; figures are noisier)")
    parser.add_argument("--output", type=Path, default=RESULTS, help=f"results JSON (default: {RESULTS})")
    parser.add_argument("--no-report", action="store_true", help="do not regenerate docs/benchmarks.md")
    args = parser.parse_args(argv)
    selected = [part.strip() for part in args.only.split(",") if part.strip()]
    unknown = sorted(set(selected) - set(TITLES))
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose among {', '.join(TITLES)}")
    results = run(selected, "quick" if args.quick else "full", args.output)
    if not args.no_report:
        written = report.write(results)
        _say("wrote " + ", ".join(str(path.relative_to(REPO_ROOT)) for path in written))
    print(report.table(results))
    failed = [n for n in selected if "error" in results["scenarios"].get(n, {})]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

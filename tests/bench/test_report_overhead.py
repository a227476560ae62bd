"""Scenario 1's report: every ratio with its spread, each target met or not with its number."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import report, report_overhead
from bench.scenario_http import ARMS, RATIOS, arm_ratios

# Requests/s per arm in two rounds; latencies scale inversely, except where set below.
RPS = {
    "app_off": (1000, 1000),
    "app_on": (850, 950),  # on/off 0.85 and 0.95: median 0.90
    "app_sampled": (900, 900),
    "app_uncached": (500, 700),  # vs peer on: 1.25 and 1.75, median 1.50
    "peer_off": (800, 800),
    "peer_on": (400, 400),  # app on vs peer on: 2.125 and 2.375
}


def _run(rps: float, p99: float) -> dict[str, float]:
    return {"rps": rps, "p50": 10_000 / rps, "p99": p99, "requests": rps * 8, "errors": 0}


def _result(rps: dict[str, tuple[float, float]], p99_on: float = 12.0) -> dict[str, Any]:
    runs = {
        name: [_run(value, p99_on if name == "app_on" else 10.0) for value in values] for name, values in rps.items()
    }
    instrumented = {"app_on": 2.0, "app_sampled": 0.2, "app_uncached": 3.0, "peer_on": 2.0}
    checks = {
        name: {
            "metrics_status": 404 if name.endswith("_off") else 200,
            "log_bytes_per_request": 0.0 if name.endswith("_off") else 450.0,
            "spans_per_request": instrumented.get(name, 0.0),
            "otlp_exports": 10 if name in instrumented else 0,
            "otlp_megabytes": 1.0 if name in instrumented else 0.0,
            **({"spans_dropped": 0.0} if name.startswith("app") and name in instrumented else {}),
        }
        for name in ARMS
    }
    return {"arms": dict(ARMS), "runs": runs, "ratios": arm_ratios(runs), "checks": checks}


def test_every_target_shows_met_or_not_with_its_median() -> None:
    short, figures, met = report_overhead.evaluate(_result(RPS))
    assert met == (
        "throughput on/off yes (0.90); p99 on/off yes (1.20); throughput vs peer on yes (2.25); "
        "no cache vs peer on yes (1.50)"
    )
    assert "throughput on/off 0.90 (0.85–0.95)" in short
    assert "no cache/peer on 1.50 (1.25–1.75)" in short
    assert "spans exported per request app on 2.00, app 10 % 0.20, app no cache 3.00, peer on 2.00" in figures


@pytest.mark.parametrize(
    ("arm", "values", "p99_on", "expected"),
    [
        ("app_on", (840, 840), 12.0, "throughput on/off no (0.84)"),
        ("app_on", (850, 850), 13.1, "p99 on/off no (1.31)"),
        ("peer_on", (640, 640), 12.0, "throughput vs peer on no (1.41)"),
        ("app_uncached", (380, 380), 12.0, "no cache vs peer on no (0.95)"),
    ],
)
def test_a_ratio_past_its_bound_is_not_met(arm: str, values: tuple[float, float], p99_on: float, expected: str) -> None:
    _, _, met = report_overhead.evaluate(_result({**RPS, arm: values}, p99_on))
    assert expected in met.split("; ")


def test_the_section_lists_every_arm_and_every_ratio() -> None:
    details = report_overhead.details(_result(RPS))
    for label in report_overhead.ARM_LABELS.values():
        assert f"\n| {label} | " in details
    ratio_rows = [line for line in details.splitlines() if line.startswith("| ") and " / " in line.split("|")[1]]
    assert len(ratio_rows) == len(RATIOS)
    assert "| app on / app off | 0.90 (0.85–0.95) | " in details
    on_off = next(row for row in ratio_rows if row.startswith("| app on / app off |"))
    assert on_off.endswith("| throughput ≥ 0.85, p99 ≤ 1.3 | throughput yes, p99 yes |")
    sampled = next(row for row in ratio_rows if row.startswith("| app 10 % / app off |"))
    assert sampled.endswith("| — | — |")


def _entry(result: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": "Instrumentation overhead",
        "measured_at": "2026-12-04T12:00:00+00:00",
        "commit": "abc1234",
        "mode": "quick",
        "load_average_before": [1.0, 1.0, 1.0],
        "load_average_after": [2.0, 1.0, 1.0],
        "result": result,
    }


def test_the_page_and_chart_carry_the_four_arm_result(tmp_path: Path) -> None:
    results = {"scenarios": {"1": _entry(_result(RPS))}}
    page = report.render(results, report.charts(results, tmp_path))
    assert "| app on / peer on | 2.25 (2.12–2.38) |" in page
    assert "met: throughput on/off yes (0.90); p99 on/off yes (1.20);" in page.replace("\n", " ")
    assert "load 1.0 → 2.0" in page
    assert (tmp_path / "scenario-1.png").stat().st_size > 0


def test_a_two_arm_result_from_before_the_peer_still_renders(tmp_path: Path) -> None:
    summary = {"median": 0.5, "min": 0.4, "max": 0.6, "a_median": 1000, "b_median": 500}
    old = {
        "a": [_run(1000, 10)],
        "b": [_run(500, 20)],
        "ratios": {"rps": summary, "p50": summary, "p99": summary},
        "checks": {},
    }
    results = {"scenarios": {"1": _entry(old)}}
    page = report.render(results, report.charts(results, tmp_path))
    assert "| 1 | Instrumentation overhead | two-arm result from before issue 17: rerun |" in page

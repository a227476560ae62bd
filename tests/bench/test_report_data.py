"""Scenarios 7 and 8 in docs/benchmarks.md: their tables, ratios and verdicts from small fake results."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import costly_reads, lifecycle, report

DATA = {
    "action": "reused",
    "rows_added": 10,
    "prepare_seconds": 4.0,
    "rows": 1_000_000,
    "rows_today": 9,
    "rows_last_hour": 1,
}


def _queries(scale: float) -> dict[str, dict[str, float]]:
    return {name: {"median_ms": 100.0 * scale, "max_ms": 120.0 * scale} for name in lifecycle.QUERIES}


def _lifecycle_result(export: dict[str, Any]) -> dict[str, Any]:
    plain, ts = [_queries(1.0), _queries(1.0)], [_queries(0.1), _queries(0.3)]
    return {
        "load": {"rows": 1_000_000, "devices": 20, "days": 7.0, "rounds": 2, "repeat": 3},
        "plain": {"data": DATA, "rounds": plain},
        "timescaledb": {"version": "2.28.3", "data": {**DATA, "action": "loaded"}, "rounds": ts, "refresh_seconds": 7},
        "queries": lifecycle._compare(plain, ts),
        "export": export,
    }


EXPORT = {
    "rows": 1_000_000,
    "bytes": 1_740_000_000,
    "seconds": 194.0,
    "rows_per_second": 5150,
    "worker_rss_mb_before": 96.5,
    "worker_rss_mb_peak": 143.0,
    "worker_rss_mb_median_during": 141.0,
    "worker_rss_mb_first_quarter": 140.0,
    "worker_rss_mb_last_quarter": 141.0,
}


def _read(median_ms: float, status: int = 200) -> dict[str, Any]:
    return {"median_ms": median_ms, "max_ms": median_ms * 2, "runs": 3, "statuses": [status]}


def _costly_result() -> dict[str, Any]:
    rounds = [
        {
            "order": order,
            "with": {"samples min_score=1 (no sample)": _read(2.0), "timeseries 1d over 366 d": _read(900.0)},
            "without": {"samples min_score=1 (no sample)": _read(slow, status)},
        }
        for order, slow, status in ((["with", "without"], 2000.0, 200), (["without", "with"], 4000.0, 503))
    ]
    return {
        "data": DATA,
        "load": {"rows": 1_000_000, "runs": 3, "rounds": 2, "server": costly_reads.SERVER_ENV},
        "statement_timeout_ms": 10_000,
        "rounds": rounds,
        "reads": costly_reads._summary(rounds),
    }


def _entry(number: str, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "title": report.SECTION_TITLES[number],
        "measured_at": "2026-12-06T12:00:00+00:00",
        "commit": "abc1234",
        "mode": "full",
        "load_average_before": [3.0, 3.0, 3.0],
        "load_average_after": [4.0, 3.0, 3.0],
        "seconds": 321.4,
        "result": result,
    }


def test_the_ratios_are_timescaledb_over_plain_and_without_over_with() -> None:
    compared = _lifecycle_result(EXPORT)["queries"]["dashboard figures"]
    assert compared["ratio"] == {"median": 0.2, "min": 0.1, "max": 0.3}
    read = _costly_result()["reads"]["samples min_score=1 (no sample)"]
    assert read["ratio"] == {"median": 1500.0, "min": 1000.0, "max": 2000.0}
    assert read["without_statuses"] == [200, 503]
    assert "without_ms" not in _costly_result()["reads"]["timeseries 1d over 366 d"]


def test_the_page_renders_both_scenarios_as_tables(tmp_path: Path) -> None:
    results = {"scenarios": {"7": _entry("7", _lifecycle_result(EXPORT)), "8": _entry("8", _costly_result())}}
    page = report.render(results, report.charts(results, tmp_path))
    assert "## 7. Data lifecycle on 1M samples" in page
    assert "| dashboard figures | 100 (100–100) | 20.0 (10.0–30.0) | 0.20 (0.10–0.30) |" in page
    flat = page.replace("\n", " ")
    assert "TimescaleDB 2.28.3: 1,000,000 rows (loaded in 4 s), aggregates refreshed in 7 s." in flat
    assert "worker RSS +46 MB" in page
    assert "met: export flat yes" in flat
    assert "| samples min_score=1 (no sample) | 2.0 (2.0–2.0) | 4.0 | 3,000 (2,000–4,000) | 8,000 |" in page
    assert "| 1500.00 (1000.00–2000.00) | 200 / 200, 503 |" in page
    assert "| timeseries 1d over 366 d | 900 (900–900) | 1,800 | — | — | — | 200 / — |" in page
    assert (
        "| 8 | Costly public reads on 1M samples under the statement timeout | with the index: 2 reads, all 200: yes"
        in page
    )
    assert "took 321 s" in page
    assert (tmp_path / "scenario-7.png").stat().st_size > 0
    assert (tmp_path / "scenario-8.png").stat().st_size > 0


def test_a_growing_export_or_a_read_past_the_timeout_is_not_met() -> None:
    growing = {**EXPORT, "worker_rss_mb_peak": 900.0}
    assert report.evaluate("7", _entry("7", _lifecycle_result(growing)))[2] == "export flat no"
    costly = _costly_result()
    costly["rounds"][1]["with"]["timeseries 1d over 366 d"] = _read(900.0, 503)
    costly["reads"] = costly_reads._summary(costly["rounds"])
    assert report.evaluate("8", _entry("8", costly))[2] == "no"


def test_without_timescaledb_or_export_the_scenario_still_renders(tmp_path: Path) -> None:
    result = {
        "load": {"rows": 1_000_000, "devices": 20, "days": 7.0, "rounds": 1, "repeat": 2},
        "plain": {"data": DATA, "rounds": [_queries(1.0)]},
        "timescaledb": {"skipped": "TimescaleDB 2.28.3 is not built here"},
        "export": {"skipped": "quick mode"},
    }
    results = {"scenarios": {"7": _entry("7", result)}}
    page = report.render(results, report.charts(results, tmp_path))
    assert "TimescaleDB not measured (TimescaleDB 2.28.3 is not built here); export not measured (quick mode)" in page
    assert "| 7 | Data lifecycle on 1M samples: plain vs TimescaleDB aggregates, export memory |" in page

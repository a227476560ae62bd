"""Scenarios 7 and 8's figures, targets and tables: the data lifecycle at 1M samples (plain PostgreSQL vs
TimescaleDB's continuous aggregates, the export's memory) and the costly public reads with and without the score
index. Both compare two arms of the same run, alternated round by round: each round gives one ratio."""

from __future__ import annotations

import textwrap
from typing import Any

from bench.report_overhead import ratio, yes

TITLES = {
    "7": "Data lifecycle on 1M samples: plain vs TimescaleDB aggregates, export memory",
    "8": "Costly public reads on 1M samples under the statement timeout",
}
EXPORT_GROWTH_MB = 100  # a worker buffering a 1M-row export would grow by gigabytes (1.7 GB of CSV)
TARGETS = {
    "7": f"measured on both (issue 20); export worker RSS flat: peak − before < {EXPORT_GROWTH_MB} MB on 1M rows",
    "8": "with the index, every read 200 (none cancelled at the statement timeout)",
}
SECTIONS = {
    "7": """\
1,000,000 samples over the last 7 days from 20 devices (scenario 6's generator, `bench/lifecycle.py`) in two
databases: plain PostgreSQL (scenario 6's cached `sqal_bench_dashboard`), where the dashboard figures and
`/api/sqal/stats/timeseries` run today's SQL on the raw rows, and TimescaleDB 2.28.3 (a cluster of
`scripts/timescale.py`'s build, kept in `.local/bench/timescaledb-<version>` with its loaded database between runs,
topped up to now like the plain one), where they read the real-time continuous aggregates of migration 0010
(`sensor_samples_1m`, `sensor_samples_1h`), refreshed up to an hour ago as their policies keep them; the last hour
comes from the raw rows. The queries run in-process through the app's own functions, uncached, a few times after a
warm-up, in rounds alternating the databases (plain first, then TimescaleDB first, …); each round gives one
TimescaleDB/plain ratio of the medians (below 1: the aggregates are faster). Both run on the same machine's
PostgreSQL 15 binaries, the TimescaleDB one with the extension preloaded. Export: `GET
/api/sqal/samples/export?format=csv` of all rows from gunicorn (1 worker, plain PostgreSQL), streamed to nowhere
while the worker's RSS is sampled every 0.2 s: one keyset batch of 2,000 rows is in memory at a time, so the RSS
must stay flat instead of growing with the row count.""",
    "8": """\
The reads of issue 21 that no index used to serve, against a real gunicorn (2 workers, `CACHE_ENABLED=false`) on
1,000,000 samples (scenario 6's generator in a database of its own, `sqal_bench_costly_reads`, kept between runs,
`bench/costly_reads.py`): the `min_score` filters of `/api/sqal/samples` (a threshold few or no samples reach, alone
or with a grade or device that never reaches it), in rounds alternating the `(fusion_final_score, "timestamp")`
index of migration 0009 on and off (dropped and made again between arms), and the widest range of every
`/api/sqal/stats/timeseries` bucket (with and without `device_id`), which do not use that index, measured with it
only. Each read is requested a few times after a warm-up; the figures are the medians over the rounds. A query that
PostgreSQL cancels at `DB_STATEMENT_TIMEOUT_MS` answers 503 with `Retry-After`, so a status other than 200 is a
read past the timeout.""",
}


def _paragraph(text: str) -> str:
    return textwrap.fill(text, 116, break_long_words=False, break_on_hyphens=False) + "\n"


def _ms(value: float) -> str:
    return f"{value:,.1f}" if value < 100 else f"{value:,.0f}"


def _spread_ms(summary: dict[str, float]) -> str:
    return f"{_ms(summary['median'])} ({_ms(summary['min'])}–{_ms(summary['max'])})"


def _export(export: dict[str, Any]) -> tuple[str, str, bool | None]:
    """(short, long, flat?) of the export measurement; flat is None when it was skipped."""
    if "skipped" in export:
        return f"export not measured ({export['skipped']})", f"export not measured ({export['skipped']})", None
    growth = export["worker_rss_mb_peak"] - export["worker_rss_mb_before"]
    short = f"export {export['rows']:,} rows, worker RSS +{growth:.0f} MB"
    long = (
        f"export of {export['rows']:,} rows ({export['bytes'] / 1e9:.2f} GB of CSV) in {export['seconds']:,.0f} s "
        f"({export['rows_per_second']:,} rows/s); worker RSS {export['worker_rss_mb_before']:.0f} MB before, "
        f"{export['worker_rss_mb_first_quarter']:.0f} MB in the first quarter, "
        f"{export['worker_rss_mb_last_quarter']:.0f} MB in the last, {export['worker_rss_mb_peak']:.0f} MB peak"
    )
    return short, long, growth < EXPORT_GROWTH_MB


def evaluate_7(r: dict[str, Any]) -> tuple[str, str, str]:
    export_short, export_long, flat = _export(r["export"])
    ts = r["timescaledb"]
    if "skipped" in ts:
        aggregates = f"TimescaleDB not measured ({ts['skipped']})"
        short = long = aggregates
    else:
        queries = r["queries"]
        short = "TimescaleDB/plain " + ", ".join(f"{name} {q['ratio']['median']:.2f}" for name, q in queries.items())
        long = f"TimescaleDB {ts['version']}/plain: " + "; ".join(
            f"{name} {_ms(q['plain_ms']['median'])} → {_ms(q['timescaledb_ms']['median'])} ms ({ratio(q['ratio'])})"
            for name, q in queries.items()
        )
    met = "—" if flat is None else f"export flat {yes(flat)}"
    return f"{short}; {export_short}", f"{long}; {export_long}", met


def details_7(r: dict[str, Any]) -> str:
    ts = r["timescaledb"]
    load = r["load"]
    plain_data = r["plain"]["data"]
    data = (
        f"{load['rounds']} rounds × {load['repeat']} runs of each query per database; milliseconds: median over the "
        f"rounds of each round's median (spread min–max). Plain: {plain_data['rows']:,} rows ({plain_data['action']} "
        f"in {plain_data['prepare_seconds']:.0f} s)"
    )
    if "skipped" in ts:
        return _paragraph(f"{data}; TimescaleDB not measured: {ts['skipped']}.")
    lines = [
        _paragraph(
            f"{data}; TimescaleDB {ts['version']}: {ts['data']['rows']:,} rows ({ts['data']['action']} in "
            f"{ts['data']['prepare_seconds']:.0f} s), aggregates refreshed in {ts['refresh_seconds']:.0f} s."
        )
    ]
    lines.append("| query (1M samples, uncached) | plain PostgreSQL ms | TimescaleDB ms | TimescaleDB / plain |")
    lines.append("|---|---|---|---|")
    for name, q in r["queries"].items():
        plain, ts = _spread_ms(q["plain_ms"]), _spread_ms(q["timescaledb_ms"])
        lines.append(f"| {name} | {plain} | {ts} | {ratio(q['ratio'])} |")
    return "\n".join(lines)


def _with_index_ok(r: dict[str, Any]) -> tuple[bool, str, float]:
    """Every read with the index answered 200 under the timeout; the slowest read and its slowest request."""
    reads = r["reads"]
    slowest = max(reads, key=lambda label: reads[label]["with_max_ms"])
    ok = all(read["with_statuses"] == [200] for read in reads.values())
    worst = reads[slowest]["with_max_ms"]
    return ok and worst < r["statement_timeout_ms"], slowest, worst


def evaluate_8(r: dict[str, Any]) -> tuple[str, str, str]:
    ok, slowest, worst = _with_index_ok(r)
    reads = r["reads"]
    compared = {label: read for label, read in reads.items() if "ratio" in read}
    failed_without = [label for label, read in compared.items() if read["without_statuses"] != [200]]
    ratios = sorted(read["ratio"]["median"] for read in compared.values())
    short = (
        f"with the index: {len(reads)} reads, all 200: {yes(ok)}, slowest request {_ms(worst)} ms ({slowest}); "
        f"min_score without/with ×{ratios[0]:.1f} to ×{ratios[-1]:.1f}"
    )
    timeout = r["statement_timeout_ms"]
    long = (
        f"{short}; without the index {len(failed_without)} of {len(compared)} min_score reads answered other than "
        f"200 (statement timeout {timeout:,} ms)"
    )
    return short, long, yes(ok)


def details_8(r: dict[str, Any]) -> str:
    load = r["load"]
    lines = [
        _paragraph(
            f"{load['rounds']} rounds (index on then off, off then on, …) × {load['runs']} requests per read after "
            f"a warm-up; {r['data']['rows']:,} rows ({r['data']['action']} in {r['data']['prepare_seconds']:.0f} "
            f"s); statement timeout {r['statement_timeout_ms']:,} ms. Milliseconds: median over the rounds "
            "(spread), then the slowest single request."
        ),
        "| read (1M samples, uncached) | with index ms | slowest | without index ms | slowest | without / with | "
        "statuses with / without |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, read in r["reads"].items():
        without = "—", "—", "—", "—"
        if "ratio" in read:
            without = (
                _spread_ms(read["without_ms"]),
                _ms(read["without_max_ms"]),
                ratio(read["ratio"]),
                ", ".join(map(str, read["without_statuses"])),
            )
        lines.append(
            f"| {label} | {_spread_ms(read['with_ms'])} | {_ms(read['with_max_ms'])} | {without[0]} | {without[1]} "
            f"| {without[2]} | {', '.join(map(str, read['with_statuses']))} / {without[3]} |"
        )
    return "\n".join(lines)

"""Scenario 9's title, target, text, figures and "stock vs ours" table: each of our replacements of a library path
against the stock one, measured in the same run (`bench/private_internals.py`)."""

from __future__ import annotations

import textwrap
from typing import Any

from bench.private_internals import gains
from bench.report_overhead import ratio

THRESHOLD_PCT = 5.0  # docs/decisions/0009-fast-paths.md: a speed replacement must save ≥ 5 % of a request's CPU
# Replacements bought for something other than CPU: judged on that (the decision record says what).
NOT_FOR_CPU = {
    "breaker": "latency: calls not serialised behind a slow connect",
    "metrics_view": "function: domain collectors, app_info, the whole process group",
    "span_drops": "function: the only count of queue-full drops",
    "sql_spans": "no stock path: SQLAlchemyInstrumentor refuses SQLAlchemy 2.1",
}
TITLES = {"9": "Stock vs ours: each replacement of a library path"}
TARGETS = {"9": f"a speed replacement saves ≥ {THRESHOLD_PCT:.0f} % of a request's CPU, else the stock path"}
SECTIONS = {
    "9": """\
Each of our replacements of a library path (FAST_PATHS, docs/private-internals.md) against the library's own path,
in one process and one run (`bench/private_internals.py`, no sockets): apps that differ only by FAST_PATHS answer
a cached `GET /products/<id>` (WSGI callable in a loop, `time.process_time` of the whole process, tracing on and
100 % sampled, access line off in every arm) in alternated rounds, each round giving one stock/ours ratio; what
runs outside the request thread is measured per unit and multiplied by the units of one request (spans per
request counted, the statement of an uncached request). A request's CPU is the all-fast app's median. The rule
(docs/decisions/0009-fast-paths.md): a replacement bought for speed whose gain is under 5 % of a request's CPU
goes back to the stock path by default; one bought for something else is judged on that, named in the last
column. FAST_PATHS= (empty) runs every stock path; `make test` runs the observability suite that way too.""",
}


def _number(value: float) -> str:
    return f"{value:,.1f}" if abs(value) < 100 else f"{value:,.0f}"


def _verdict(row: dict[str, Any]) -> str:
    reason = NOT_FOR_CPU.get(row["replacement"])
    if reason:
        return f"kept ({reason})"
    return "kept" if row["gain_pct"] >= THRESHOLD_PCT else "back to stock"


def evaluate_9(r: dict[str, Any]) -> tuple[str, str, str]:
    rows = gains(r)
    short = ", ".join(f"{row['replacement']} {row['gain_pct']:+.1f} %" for row in rows if row["unit"] != "µs/scrape")
    long = (
        f"request CPU {_number(r['request_us'])} µs ({r['spans_per_request']:.0f} spans); gain per request: "
        + "; ".join(f"{row['replacement']} {_number(row['gain_us'])} µs ({row['gain_pct']:+.1f} %)" for row in rows)
    )
    speed = [row for row in rows if row["replacement"] not in NOT_FOR_CPU]
    met = "yes" if all(row["gain_pct"] >= THRESHOLD_PCT for row in speed) else "no: see the table"
    return short, long, met


def details_9(r: dict[str, Any]) -> str:
    lines = [
        "| Replacement | Unit | Stock | Ours | Gain per request | % of a request's CPU | Decision |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in gains(r):
        lines.append(
            f"| `{row['replacement']}` | {row['unit']} | {_number(row['stock'])} | {_number(row['ours'])} | "
            f"{_number(row['gain_us'])} µs | {row['gain_pct']:+.1f} % | {_verdict(row)} |"
        )
    server, breaker = r["server_spans"], r["breaker_request"]
    slow = r["breaker_8_slow_connects_ms"]
    notes = (
        f"Request-level ratios stock/ours over {r['rounds']} rounds of {r['requests_per_round']} requests: server "
        f"spans {ratio(server['ratio'])}, breaker {ratio(breaker['ratio'])}. The breaker's call costs the same both "
        f"ways ({r['breaker_call_us']['ours']:.1f} vs {r['breaker_call_us']['stock']:.1f} µs); its gain is 8 "
        f"concurrent 50 ms connects in {slow['ours']:.0f} ms instead of {slow['stock']:.0f} ms. SQL spans per "
        f"statement above a plain engine ({_number(r['sql_span_us_per_statement']['plain'])} µs for `SELECT 1`): "
        "EngineTracer attached as bench/peer does; the % is of the cached request, an uncached one costs more. "
        "`/metrics` costs more with ours because it serves more (the domain collectors and app_info)."
    )
    return "\n".join(lines) + "\n\n" + textwrap.fill(notes, 116, break_long_words=False, break_on_hyphens=False)

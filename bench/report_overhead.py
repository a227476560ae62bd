"""Scenario 1's figures, targets and tables (six arms: this project and the peer, instrumented or not).

Every target is a throughput or p99 ratio between two arms of the same run: its median over the rounds is what
meets the target or not, and its spread (min–max over the rounds) is shown next to it.
"""

from __future__ import annotations

import statistics
from typing import Any

ARM_LABELS = {
    "app_off": "app off",
    "app_on": "app on",
    "app_sampled": "app 10 %",
    "app_uncached": "app no cache",
    "peer_off": "peer off",
    "peer_on": "peer on",
}
# (ratio key, metric, "≥" or "≤", bound, short name)
TARGETS = (
    ("app_on/app_off", "rps", "≥", 0.85, "throughput on/off"),
    ("app_on/app_off", "p99", "≤", 1.3, "p99 on/off"),
    ("app_on/peer_on", "rps", "≥", 1.5, "throughput vs peer on"),
    ("app_uncached/peer_on", "rps", "≥", 1.0, "no cache vs peer on"),
)
TARGET_TEXT = (
    "this project instrumented (100 %, cached) ≥ 0.85 × uninstrumented throughput, p99 ≤ 1.3 ×; ≥ 1.5 × the "
    "instrumented peer's throughput; cache off ≥ 1.0 × the instrumented peer's"
)
_METRIC_NAMES = {"rps": "throughput", "p50": "p50", "p99": "p99"}


def ratio(summary: dict[str, float]) -> str:
    """Median ratio and its spread: 0.53 (0.51–1.40)."""
    return f"{summary['median']:.2f} ({summary['min']:.2f}–{summary['max']:.2f})"


def yes(ok: bool) -> str:
    return "yes" if ok else "no"


def _label(key: str) -> str:
    numerator, denominator = key.split("/")
    return f"{ARM_LABELS[numerator]} / {ARM_LABELS[denominator]}"


def _met(value: float, sign: str, bound: float) -> bool:
    return value >= bound if sign == "≥" else value <= bound


def verdicts(r: dict[str, Any]) -> list[tuple[str, str, float, bool]]:
    """(ratio key, short name, median, met?) of every target."""
    found = []
    for key, metric, sign, bound, name in TARGETS:
        median = r["ratios"][key][metric]["median"]
        found.append((key, name, median, _met(median, sign, bound)))
    return found


def evaluate(r: dict[str, Any]) -> tuple[str, str, str]:
    """(short figures, all figures, met?) as report.evaluate gives them."""
    if "runs" not in r:  # a two-arm result measured before the peer was added
        return "two-arm result from before issue 17: rerun", "two-arm result from before issue 17: rerun", "—"
    ratios, checks = r["ratios"], r["checks"]
    short = (
        f"throughput on/off {ratio(ratios['app_on/app_off']['rps'])}, on/peer on "
        f"{ratio(ratios['app_on/peer_on']['rps'])}, no cache/peer on {ratio(ratios['app_uncached/peer_on']['rps'])}, "
        f"10 %/off {ratio(ratios['app_sampled/app_off']['rps'])}; p99 on/off {ratio(ratios['app_on/app_off']['p99'])}"
    )
    medians = ", ".join(f"{ARM_LABELS[name]} {arm_median(r, name):,.0f}" for name in r["runs"])
    spans = ", ".join(
        f"{ARM_LABELS[name]} {check['spans_per_request']:.2f}"
        for name, check in checks.items()
        if check["otlp_exports"]
    )
    dropped = sum(check.get("spans_dropped", 0) for check in checks.values())
    figures = (
        f"{short}; req/s (median) {medians}; spans exported per request {spans}; {dropped:.0f} spans dropped by "
        f"this project; access log {checks['app_on']['log_bytes_per_request']:.0f} B/request (peer "
        f"{checks['peer_on']['log_bytes_per_request']:.0f})"
    )
    met = "; ".join(f"{name} {yes(ok)} ({median:.2f})" for _, name, median, ok in verdicts(r))
    return short, figures, met


def arm_median(r: dict[str, Any], arm: str, metric: str = "rps") -> float:
    """The median of one arm's runs."""
    return statistics.median(run[metric] for run in r["runs"][arm])


def details(r: dict[str, Any]) -> str:
    """Markdown: one row per arm, then every ratio with its spread, target and verdict."""
    if "runs" not in r:
        return ""
    lines = [
        "| Arm | Configuration | req/s | p50 ms | p99 ms | spans/request | access log B/request | /metrics |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in r["runs"]:
        check = r["checks"][name]
        lines.append(
            f"| {ARM_LABELS[name]} | {r['arms'][name]} | {arm_median(r, name):,.0f} | "
            f"{arm_median(r, name, 'p50'):.1f} | {arm_median(r, name, 'p99'):.1f} | "
            f"{check['spans_per_request']:.2f} | {check['log_bytes_per_request']:.0f} | {check['metrics_status']:.0f} |"
        )
    lines += ["", "| Ratio (medians over the rounds; spread) | Throughput | p50 | p99 | Target | Met? |"]
    lines.append("|---|---|---|---|---|---|")
    for key, summaries in r["ratios"].items():
        targets = [(metric, sign, bound) for k, metric, sign, bound, _ in TARGETS if k == key]
        target = ", ".join(f"{_METRIC_NAMES[metric]} {sign} {bound}" for metric, sign, bound in targets) or "—"
        met = ", ".join(
            f"{_METRIC_NAMES[metric]} {yes(_met(summaries[metric]['median'], sign, bound))}"
            for metric, sign, bound in targets
        )
        cells = " | ".join(ratio(summaries[metric]) for metric in ("rps", "p50", "p99"))
        lines.append(f"| {_label(key)} | {cells} | {target} | {met or '—'} |")
    return "\n".join(lines)

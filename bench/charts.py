"""The PNG charts of docs/benchmarks.md, one per measured scenario (drawn by `bench.report`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bench import report_overhead

A_COLOUR, B_COLOUR = "#9aa5b1", "#1f6feb"


def _runs_axis(ax: Axes, count: int, label: str = "run") -> None:
    ax.set_xticks(list(range(1, count + 1)))
    ax.set_xlim(0.4, count + 0.6)
    ax.set_xlabel(label)


def _grouped_bars(ax: Axes, series: dict[str, list[float]], colours: list[str] | None, title: str) -> None:
    """One bar per series in each round, side by side."""
    width = 0.8 / len(series)
    for index, (label, values) in enumerate(series.items()):
        offset = (index - (len(series) - 1) / 2) * width
        colour = colours[index] if colours else None
        ax.bar([x + offset for x in range(1, len(values) + 1)], values, width, label=label, color=colour)
    _runs_axis(ax, len(next(iter(series.values()))), "round")
    ax.set_title(title, fontsize=10)


def _chart_rounds(
    arms: dict[str, list[dict[str, float]]], panels: list[tuple[str, str]], colours: list[str] | None = None
) -> Figure:
    figure, axes = plt.subplots(1, len(panels), figsize=(max(4, len(arms) * 1.3) * len(panels), 3.2))
    for ax, (metric, title) in zip(axes, panels, strict=True):
        _grouped_bars(ax, {label: [run[metric] for run in runs] for label, runs in arms.items()}, colours, title)
    axes[0].legend(fontsize=8)
    return figure


def _chart_ab(r: dict[str, Any], panels: list[tuple[str, str]], labels: tuple[str, str]) -> Figure:
    return _chart_rounds({labels[0]: r["a"], labels[1]: r["b"]}, panels, [A_COLOUR, B_COLOUR])


def _chart_1(r: dict[str, Any]) -> Figure:
    panels = [("rps", "requests/s"), ("p99", "p99 latency (ms)")]
    if "runs" not in r:  # two-arm result from before issue 17
        return _chart_ab(r, panels, ("off", "on"))
    return _chart_rounds({report_overhead.ARM_LABELS[name]: runs for name, runs in r["runs"].items()}, panels)


def _chart_3(r: dict[str, Any]) -> Figure:
    figure, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    runs = range(1, len(r["runs"]) + 1)
    left.bar(runs, [run["samples_per_second"] for run in r["runs"]], 0.6, color=B_COLOUR)
    _runs_axis(left, len(runs))
    _runs_axis(right, len(runs))
    left.axhline(1500, color="red", linestyle="--", label="target 1,500/s")
    left.set_title("stored samples/s per run", fontsize=10)
    left.legend(fontsize=8)
    for key, offset, colour in (("p50", -0.2, A_COLOUR), ("p99", 0.2, B_COLOUR)):
        values = [float((run["ack_latency_ms"] or {}).get(key, 0)) for run in r["runs"]]
        right.bar([x + offset for x in runs], values, 0.4, label=f"ack {key}", color=colour)
    right.axhline(50, color="red", linestyle="--", label="p99 target 50 ms")
    right.set_yscale("log")
    right.set_title("ack latency (ms, log scale)", fontsize=10)
    right.legend(fontsize=8)
    return figure


def _chart_4(r: dict[str, Any]) -> Figure:
    figure, (left, right) = plt.subplots(1, 2, figsize=(8, 3.2))
    runs = range(1, len(r["runs"]) + 1)
    left.bar([x - 0.2 for x in runs], [run["opened"] for run in r["runs"]], 0.4, label="open", color=B_COLOUR)
    left.bar([x + 0.2 for x in runs], [run["failures"] for run in r["runs"]], 0.4, label="failures", color="red")
    left.axhline(1000, color="red", linestyle="--", linewidth=1)
    _runs_axis(left, len(runs))
    left.set_title("sockets per run", fontsize=10)
    left.legend(fontsize=8)
    rss = [value for run in r["runs"] for value in run["worker_rss_mb"]]
    right.bar(range(1, len(rss) + 1), rss, color=A_COLOUR)
    right.set_title("worker RSS (MB)", fontsize=10)
    _runs_axis(right, len(rss), "worker")
    return figure


def _chart_5(r: dict[str, Any]) -> Figure:
    figure, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(range(1, len(r["seconds"]) + 1), r["seconds"], 0.6, color=B_COLOUR)
    ax.axhline(3, color="red", linestyle="--", label="target 3 s")
    ax.set_title("spawn → /health/ready 200 (s)", fontsize=10)
    _runs_axis(ax, len(r["seconds"]), "start")
    ax.legend(fontsize=8)
    return figure


def _chart_6(r: dict[str, Any]) -> Figure:
    figure, axes = plt.subplots(1, 2, figsize=(8, 3.2), sharey=True)
    for ax, key, title in ((axes[0], "sequential", "1 client"), (axes[1], "concurrent", "concurrent clients")):
        runs = range(1, len(r[key]) + 1)
        for offset, percentile in ((-0.27, "p50"), (0, "p95"), (0.27, "p99")):
            ax.bar([x + offset for x in runs], [run[percentile] for run in r[key]], 0.27, label=percentile)
        ax.axhline(100, color="red", linestyle="--", label="p99 target")
        ax.set_title(f"{title}: latency (ms) per run", fontsize=10)
        _runs_axis(ax, len(runs))
    axes[0].legend(fontsize=8)
    return figure


def _paired_bars(rows: dict[str, tuple[float | None, float | None]], labels: tuple[str, str], title: str) -> Figure:
    """Two horizontal bars per row (log scale: the arms differ by orders of magnitude); a missing value is left out."""
    figure, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.4))
    positions = range(len(rows))
    for index, (label, colour) in enumerate(zip(labels, (A_COLOUR, B_COLOUR), strict=True)):
        values = [(y, value) for y, pair in zip(positions, rows.values(), strict=True) if (value := pair[index])]
        offset = 0.2 if index else -0.2
        ax.barh([y + offset for y, _ in values], [v for _, v in values], 0.4, label=label, color=colour)
    ax.set_yticks(list(positions), list(rows), fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    return figure


def _chart_7(r: dict[str, Any]) -> Figure:
    queries = r.get("queries") or {
        name: {"plain_ms": {"median": run["median_ms"]}} for name, run in r["plain"]["rounds"][0].items()
    }
    rows = {name: (q["plain_ms"]["median"], q.get("timescaledb_ms", {}).get("median")) for name, q in queries.items()}
    return _paired_bars(rows, ("plain PostgreSQL", "TimescaleDB aggregates"), "median ms per query (log scale)")


def _chart_8(r: dict[str, Any]) -> Figure:
    rows = {
        label: (read.get("without_ms", {}).get("median"), read["with_ms"]["median"])
        for label, read in r["reads"].items()
    }
    return _paired_bars(rows, ("without the score index", "with it"), "median ms per read (log scale)")


CHARTS: dict[str, Callable[[dict[str, Any]], Figure]] = {
    "1": _chart_1,
    "2": lambda r: _chart_ab(
        r, [("db_queries_per_request", "DB queries/request"), ("p50", "p50 (ms)"), ("p99", "p99 (ms)")], ("off", "on")
    ),
    "3": _chart_3,
    "4": _chart_4,
    "5": _chart_5,
    "6": _chart_6,
    "7": _chart_7,
    "8": _chart_8,
}


def draw(results: dict[str, Any], titles: Mapping[str, str], directory: Path) -> dict[str, Path]:
    """One PNG per measured scenario in `directory`; returns scenario → file."""
    directory.mkdir(parents=True, exist_ok=True)
    written = {}
    for number, entry in sorted(results.get("scenarios", {}).items()):
        if "result" not in entry or number not in CHARTS:  # scenario 9 is a table only
            continue
        figure = CHARTS[number](entry["result"])
        figure.suptitle(f"{number}. {titles[number]}", fontsize=11)
        figure.tight_layout()
        path = directory / f"scenario-{number}.png"
        figure.savefig(path, dpi=90)
        plt.close(figure)
        written[number] = path
    return written

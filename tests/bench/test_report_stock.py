"""Scenario 9 ("stock vs ours") renders its table from a result, and the 5 % rule decides each speed replacement."""

from __future__ import annotations

import copy
import json
from typing import Any

from bench import report
from bench.report import COMMITTED_RESULTS


def _committed() -> dict[str, Any]:
    entry: dict[str, Any] = json.loads(COMMITTED_RESULTS.read_text())["scenarios"]["9"]
    return entry


def test_the_committed_run_has_a_row_per_replacement() -> None:
    entry = _committed()
    page = report.render({"scenarios": {"9": entry}}, {})
    assert "## 9. Stock vs ours: each replacement of a library path" in page
    for name in ("otlp_encoder", "server_spans", "sql_spans", "breaker", "metrics_view", "span_drops"):
        assert f"| `{name}` |" in page
    assert report.evaluate("9", entry)[2] == "yes"


def test_a_speed_replacement_under_five_percent_goes_back_to_stock() -> None:
    entry = copy.deepcopy(_committed())
    result = entry["result"]
    result["otlp_encoder_us_per_span"]["stock"] = result["otlp_encoder_us_per_span"]["ours"]  # no gain left
    assert report.evaluate("9", entry)[2] == "no: see the table"
    assert "| `otlp_encoder` |" in (row := report.render({"scenarios": {"9": entry}}, {}))
    assert "+0.0 % | back to stock |" in row

"""The metric contract file: well-formed, and every metric in it is shown somewhere (dashboard or rule)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.stack.stackfiles import (
    dashboard_queries,
    expand_grafana_variables,
    load_contract,
    rule_queries,
    sample_index,
    selector_name,
    selectors,
)

# Names the brief fixes; a rename in the contract file must be a deliberate change here too.
CORE_NAMES = {
    "http_requests_total",
    "http_request_duration_seconds",
    "database_queries_total",
    "database_connection_pool",
    "cache_hits_total",
    "cache_misses_total",
    "circuit_breaker_state",
    "websocket_connections_active",
    "sample_quality_score",
    "samples_ingested_total",
    "average_quality_score",
    "reject_rate_percent",
    "bug_metrics",
    "process_resident_memory_bytes",
}


def test_contract_parses_and_holds_the_core_names() -> None:
    contract = load_contract()
    assert set(contract) >= CORE_NAMES
    assert contract["sample_quality_score"].type == "histogram"
    assert contract["http_requests_total"].labels == {"method", "path", "status"}
    assert sample_index(contract)["sample_quality_score_bucket"].name == "sample_quality_score"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("http_requests counter method", "counter http_requests must end in _total"),
        ("foo summary -", "expected"),
        ("Foo-Bar gauge -", "expected"),
        ("foo gauge", "expected"),
    ],
)
def test_malformed_contract_lines_are_rejected(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "metric-names.txt"
    path.write_text(f"# comment\nup_total counter -\n{line}\n")
    with pytest.raises(ValueError, match=problem):
        load_contract(path)


def test_duplicate_contract_lines_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "metric-names.txt"
    path.write_text("a_total counter -\na_total counter x\n")
    with pytest.raises(ValueError, match="listed twice"):
        load_contract(path)


def test_every_contract_metric_is_used_by_a_dashboard_or_a_rule() -> None:
    index = sample_index(load_contract())
    used = set()
    for query in dashboard_queries() + rule_queries():
        for selector in selectors(expand_grafana_variables(query.expr)):
            name = selector_name(selector)
            if name in index:
                used.add(index[name].name)
    assert set(load_contract()) - used == set()

"""Every PromQL expression of the dashboards, rules, datasource links and README parses, uses only contract metrics,
and aggregates replica-identical gauges without counting them once per replica.

A renamed metric would leave a panel silently empty; these tests make it a red build instead.
"""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml

from tests.stack.stackfiles import (
    PROMETHEUS_SERIES,
    Query,
    dashboard_queries,
    dashboards,
    expand_grafana_variables,
    load_contract,
    provisioning_queries,
    readme_queries,
    recorded_names,
    require_tool,
    rule_queries,
    sample_index,
    selector_name,
    selectors,
)

ALL_QUERIES = dashboard_queries() + rule_queries() + provisioning_queries() + readme_queries("promql")
# Computed at scrape time from the shared database or Redis: every replica reports the same whole-system value, so
# summing (or counting) over replicas multiplies it. Aggregate them with max/min/avg, or keep `instance`.
REPLICA_IDENTICAL = frozenset(
    {
        "bug_metrics",
        "bugs_resolved_today",
        "bug_resolution_seconds",
        "samples_throughput_per_second",
        "average_quality_score",
        "conformity_rate_percent",
        "reject_rate_percent",
        "devices_active",
        "device_last_seen_timestamp_seconds",
        "cache_size_bytes",
        "cache_evictions_total",
        "cache_expirations_total",
    }
)
REPLICA_SAFE_AGGREGATIONS = frozenset({"max", "min", "avg", "topk", "bottomk"})


@cache
def known_series() -> frozenset[str]:
    """Series a query may name: the app's (contract), recording rules' and Prometheus' own."""
    return frozenset(set(sample_index(load_contract())) | recorded_names() | PROMETHEUS_SERIES)


def unknown_metrics(expr: str) -> set[str]:
    """Names in `expr` that neither the app (contract), a recording rule nor Prometheus produce."""
    known = known_series()
    names = {selector_name(s) or "<selector without a metric name>" for s in selectors(expand_grafana_variables(expr))}
    return names - known


def unknown_labels(expr: str) -> set[str]:
    """`metric:label` pairs where a matcher names a label the contract metric does not have."""
    index = sample_index(load_contract())
    wrong: set[str] = set()
    for selector in selectors(expand_grafana_variables(expr)):
        name = selector_name(selector)
        if name in index:
            allowed = index[name].labels_of(name) | {"__name__"}
            wrong |= {f"{name}:{m.name}" for m in selector.matchers.matchers if m.name not in allowed}
    return wrong


def replica_unsafe(expr: str) -> list[str]:
    """Aggregations of a replica-identical metric that would count it once per replica."""
    found: list[str] = []

    def visit(node: Any, enclosing: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            name = selector_name(node)
            if name in REPLICA_IDENTICAL and enclosing is not None:
                modifier = enclosing.modifier
                by_instance = modifier is not None and "By" in str(modifier.type) and "instance" in modifier.labels
                if str(enclosing.op) not in REPLICA_SAFE_AGGREGATIONS and not by_instance:
                    found.append(f"{enclosing.op}(... {name} ...)")
            return
        if isinstance(node, promql_parser.AggregateExpr):
            visit(node.expr, node)
            return
        children = [getattr(node, attr, None) for attr in ("lhs", "rhs", "expr", "vector_selector")]
        for child in [*children, *getattr(node, "args", [])]:
            if child is not None:
                visit(child, enclosing)

    visit(promql_parser.parse(expand_grafana_variables(expr)), None)
    return found


def test_replica_identical_gauges_are_not_summed_over_replicas() -> None:
    problems = {q.source: replica_unsafe(q.expr) for q in ALL_QUERIES if replica_unsafe(q.expr)}
    assert problems == {}


def test_the_replica_check_rejects_what_it_should() -> None:
    assert replica_unsafe('sum(bug_metrics{severity="critical", status="open"})') == ["sum(... bug_metrics ...)"]
    assert replica_unsafe("sum by (cache) (rate(cache_evictions_total[5m]))")
    assert replica_unsafe("sum by (status) (max by (severity, status) (bug_metrics))") == []
    assert replica_unsafe("sum by (instance) (cache_size_bytes)") == []
    assert replica_unsafe("sum(rate(cache_hits_total[5m]))") == []


def test_every_dashboard_and_rule_file_contributes_queries() -> None:
    per_dashboard = {name: sum(q.source.startswith(name) for q in dashboard_queries()) for name in dashboards()}
    assert set(per_dashboard) == {"infrastructure.json", "business.json", "devices.json", "bugs.json", "slo.json"}
    assert min(per_dashboard.values()) >= 5, per_dashboard
    assert len(rule_queries()) >= 25
    assert provisioning_queries()


@pytest.mark.parametrize("query", ALL_QUERIES, ids=lambda q: q.source)
def test_query_parses(query: Query) -> None:
    try:
        selectors(expand_grafana_variables(query.expr))
    except ValueError as exc:
        pytest.fail(f"{query.source}: {exc}\n{query.expr}")


def test_queries_use_only_contract_metrics() -> None:
    problems = {q.source: sorted(unknown_metrics(q.expr)) for q in ALL_QUERIES if unknown_metrics(q.expr)}
    assert problems == {}, "metric names missing from observability/metric-names.txt"


def test_label_matchers_name_labels_the_metric_has() -> None:
    problems = {q.source: sorted(unknown_labels(q.expr)) for q in ALL_QUERIES if unknown_labels(q.expr)}
    assert problems == {}


def test_the_checker_rejects_what_it_should() -> None:
    # The reference's "average quality score" query averages a histogram's base name, which is never exported.
    assert unknown_metrics("avg(sample_quality_score)") == {"sample_quality_score"}
    assert unknown_metrics('sum(rate(http_request_total{path="/x"}[5m]))') == {"http_request_total"}
    assert unknown_metrics('count({__name__=~"cache_.*"})') == {"<selector without a metric name>"}
    assert unknown_labels('http_requests_total{endpoint="/products"}') == {"http_requests_total:endpoint"}
    assert unknown_metrics("sum(rate(http_requests_total[$__rate_interval])) / slo:error_budget:ratio") == set()
    with pytest.raises(ValueError, match="parenthesis"):
        selectors("sum(rate(http_requests_total[5m])")


def test_promtool_parses_every_query(tmp_path: Path) -> None:
    """Prometheus' own parser (promtool) agrees: each query becomes a recording rule of a throw-away file."""
    promtool = require_tool("promtool")
    rules = [
        {"record": f"check:query_{i}", "expr": expand_grafana_variables(q.expr)} for i, q in enumerate(ALL_QUERIES)
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "queries", "rules": rules}]}))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout

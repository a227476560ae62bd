"""Every PromQL expression of the dashboards, rules and datasource links parses, and uses only contract metrics.

A renamed metric would leave a panel silently empty; these tests make it a red build instead.
"""

from __future__ import annotations

import subprocess
from functools import cache
from pathlib import Path

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
    recorded_names,
    require_tool,
    rule_queries,
    sample_index,
    selector_name,
    selectors,
)

ALL_QUERIES = dashboard_queries() + rule_queries() + provisioning_queries()


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

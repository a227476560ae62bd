"""Grafana provisioning and dashboards: valid, loadable, cross-linked (metrics → traces → logs → traces)."""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.stack.stackfiles import DASHBOARD_DIR, DATASOURCES_FILE, GRAFANA_DIR, REPO, dashboards, panels

# File -> (uid, panel titles the reference's dashboard list asks for).
EXPECTED = {
    "infrastructure.json": (
        "sqal-infrastructure",
        ["Request rate", "p50 / p95 / p99", "Error rate", "Cache hit rate", "DB connection pool", "Circuit breakers"],
    ),
    "business.json": (
        "sqal-business",
        ["Samples / hour", "Average quality score", "Reject rate", "Conformity rate", "Grade mix"],
    ),
    "devices.json": ("sqal-devices", ["Active devices", "WebSocket connections", "Firmware versions", "Last seen"]),
    "bugs.json": (
        "sqal-bugs",
        ["Open bugs by severity", "Resolved today", "Average resolution time", "Critical bugs open"],
    ),
    "slo.json": ("sqal-slo", ["error budget left", "Burn rate: availability", "Burn rate: latency"]),
}


def datasources() -> dict[str, dict[str, Any]]:
    """Provisioned datasources by uid."""
    sources = yaml.safe_load(DATASOURCES_FILE.read_text())["datasources"]
    by_uid = {source["uid"]: source for source in sources}
    assert len(by_uid) == len(sources), "duplicate datasource uid"
    return by_uid


def test_committed_dashboards_match_the_generator() -> None:
    result = subprocess.run(
        [sys.executable, str(GRAFANA_DIR / "generate.py"), "--check"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_dashboard_is_valid_and_has_the_reference_panels(name: str) -> None:
    dashboard = dashboards()[name]
    uid, titles = EXPECTED[name]
    assert dashboard["uid"] == uid
    assert isinstance(dashboard["schemaVersion"], int)
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["title"]
    assert "sqal" in dashboard["tags"]
    all_panels = list(panels(dashboard))
    ids = [panel["id"] for panel in all_panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {name}"
    panel_titles = " | ".join(panel["title"] for panel in all_panels)
    for title in titles:
        assert title in panel_titles, f"{name}: no panel titled like {title!r}"
    for panel in all_panels:
        assert panel["type"], panel
        assert panel["title"], panel
        refs = [target["refId"] for target in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), f"{name} / {panel['title']}: duplicate refId"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_panels_fit_the_grid_without_overlapping(name: str) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in panels(dashboards()[name]):
        pos = panel["gridPos"]
        assert pos["x"] >= 0, panel["title"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        assert pos["h"] > 0, panel["title"]
        cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
        assert not cells & taken, f"{name} / {panel['title']} overlaps another panel"
        taken |= cells


def test_every_datasource_reference_matches_a_provisioned_uid_and_type() -> None:
    provisioned = {uid: source["type"] for uid, source in datasources().items()}
    references = 0
    for name, dashboard in dashboards().items():
        variables = dashboard.get("templating", {}).get("list", [])
        holders = [*panels(dashboard), *variables]
        holders += [t for p in panels(dashboard) for t in p.get("targets", [])]
        for holder in holders:
            ref = holder.get("datasource")
            if isinstance(ref, dict) and ref.get("type") != "grafana":
                references += 1
                assert provisioned.get(ref["uid"]) == ref["type"], f"{name}: {ref} is not provisioned"
    assert references > 100


def test_dashboard_uids_are_unique_and_linked_from_alerts() -> None:
    uids = [dashboard["uid"] for dashboard in dashboards().values()]
    assert len(uids) == len(set(uids))
    rules_text = "".join(path.read_text() for path in (REPO / "observability" / "prometheus" / "rules").glob("*.yml"))
    for link in re.findall(r'dashboard: "/d/([\w-]+)/', rules_text):
        assert link in uids, f"an alert links to unknown dashboard {link}"


def test_latency_panel_shows_exemplars() -> None:
    infrastructure = dashboards()["infrastructure.json"]
    exemplar_targets = [t for p in panels(infrastructure) for t in p.get("targets", []) if t.get("exemplar")]
    assert exemplar_targets
    assert all("http_request_duration_seconds_bucket" in t["expr"] for t in exemplar_targets)


def test_metrics_traces_and_logs_are_cross_linked() -> None:
    sources = datasources()
    prometheus, loki, jaeger = sources["prometheus"], sources["loki"], sources["jaeger"]
    assert prometheus["isDefault"] is True
    assert prometheus["jsonData"]["exemplarTraceIdDestinations"] == [
        {"name": "trace_id", "datasourceUid": "jaeger", "urlDisplayLabel": "Open trace in Jaeger"}
    ]
    derived = loki["jsonData"]["derivedFields"]
    assert {field["datasourceUid"] for field in derived} == {"jaeger"}
    assert any(field.get("matcherType") == "label" and field["matcherRegex"] == "trace_id" for field in derived)
    to_logs = jaeger["jsonData"]["tracesToLogsV2"]
    assert to_logs["datasourceUid"] == "loki"
    assert "trace_id" in to_logs["query"]
    assert '{service="backend"}' in to_logs["query"]
    assert jaeger["jsonData"]["tracesToMetrics"]["datasourceUid"] == "prometheus"


def test_derived_field_regex_finds_the_trace_id_in_a_backend_log_line() -> None:
    line_field = next(f for f in datasources()["loki"]["jsonData"]["derivedFields"] if f.get("matcherType") == "regex")
    line = '{"timestamp": "2025-01-01T00:00:00Z", "level": "ERROR", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}'
    match = re.search(line_field["matcherRegex"], line)
    assert match
    assert match.group(1) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert not re.search(line_field["matcherRegex"], '{"trace_id": ""}'), "an empty trace id must not become a link"


def test_grafana_template_variables_are_escaped_from_env_interpolation() -> None:
    """Grafana expands $VAR/${VAR} in provisioning files: template variables must be written $$ to survive."""
    raw = DATASOURCES_FILE.read_text()
    unescaped = re.findall(r"(?<!\$)\$(?!\$)\{?__\w+", raw)
    assert unescaped == []
    assert raw.count("$${__value.raw}") >= 2
    assert "$${__trace.traceId}" in raw
    assert "$$__tags" in raw


def test_dashboard_provider_points_at_the_mounted_directory() -> None:
    provider = yaml.safe_load((GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml").read_text())
    path = provider["providers"][0]["options"]["path"]
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert f"./{DASHBOARD_DIR.relative_to(REPO)}:{path}:ro" in mounts


def test_datasource_urls_point_at_compose_services() -> None:
    services = yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"]
    for source in datasources().values():
        match = re.fullmatch(r"http://([\w-]+):(\d+)", source["url"])
        assert match, source["url"]
        host, port = match.groups()
        assert host in services, source["url"]
        published = {str(p).split(":")[-1] for p in services[host].get("ports", [])}
        assert port in published, f"{source['url']}: {host} does not listen on {port}"

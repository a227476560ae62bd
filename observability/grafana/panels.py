"""Small builders for Grafana dashboard JSON (schema 39, Grafana 11): panels, targets, variables, layout.

Only what the SQAL dashboards use. Datasource uids are the ones provisioned in
provisioning/datasources/datasources.yml; tests/stack checks they match.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 39
RATE = "$__rate_interval"
PROMETHEUS = {"type": "prometheus", "uid": "prometheus"}
LOKI = {"type": "loki", "uid": "loki"}

Json = dict[str, Any]


def prom(
    expr: str,
    legend: str = "",
    *,
    instant: bool = False,
    exemplar: bool = False,
    fmt: str = "time_series",
) -> Json:
    """A Prometheus query target (refId is assigned by the panel)."""
    return {
        "datasource": PROMETHEUS,
        "editorMode": "code",
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
        "exemplar": exemplar,
        "format": fmt,
    }


def loki(expr: str) -> Json:
    """A Loki (LogQL) query target."""
    return {"datasource": LOKI, "editorMode": "code", "expr": expr, "queryType": "range"}


def quantile(q: float, metric: str, by: str = "", selector: str = 'job="backend"') -> str:
    """histogram_quantile over a histogram's buckets, optionally per label."""
    group = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{{{selector}}}[{RATE}])))"


def thresholds(*steps: tuple[float | None, str]) -> Json:
    """Absolute thresholds: (None, base colour) first, then (value, colour) in increasing order."""
    return {"mode": "absolute", "steps": [{"value": value, "color": color} for value, color in steps]}


GREEN = thresholds((None, "green"))


@dataclass
class Panel:
    """One panel; `width`/`height` are grid units (24 wide) and the dashboard lays them out left to right."""

    kind: str
    title: str
    targets: list[Json]
    description: str = ""
    unit: str = "short"
    width: int = 12
    height: int = 8
    decimals: int | None = None
    min: float | None = None
    max: float | None = None
    thresholds: Json = field(default_factory=lambda: GREEN)
    mappings: list[Json] = field(default_factory=list)
    options: Json = field(default_factory=dict)
    custom: Json = field(default_factory=dict)
    overrides: list[Json] = field(default_factory=list)
    links: list[Json] = field(default_factory=list)

    def to_json(self, panel_id: int, x: int, y: int) -> Json:
        """Render the panel at grid position (x, y)."""
        defaults: Json = {"unit": self.unit, "thresholds": self.thresholds, "mappings": self.mappings}
        for key in ("decimals", "min", "max"):
            if getattr(self, key) is not None:
                defaults[key] = getattr(self, key)
        if self.custom:
            defaults["custom"] = self.custom
        datasource = self.targets[0]["datasource"] if self.targets else PROMETHEUS
        body: Json = {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": datasource,
            "gridPos": {"x": x, "y": y, "w": self.width, "h": self.height},
            "fieldConfig": {"defaults": defaults, "overrides": self.overrides},
            "options": self.options,
            "targets": [dict(target, refId=chr(ord("A") + i)) for i, target in enumerate(self.targets)],
        }
        if self.links:
            body["links"] = self.links
        return body


def timeseries(title: str, targets: list[Json], **kwargs: Any) -> Panel:
    """Time series panel with a legend table (mean, last, max)."""
    options = {
        "legend": {
            "displayMode": "table",
            "placement": "bottom",
            "showLegend": True,
            "calcs": ["mean", "lastNotNull", "max"],
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never", "spanNulls": False}
    custom.update(kwargs.pop("custom", {}))
    return Panel("timeseries", title, targets, options=options, custom=custom, **kwargs)


def stat(title: str, target: Json, **kwargs: Any) -> Panel:
    """Single big number coloured by its thresholds."""
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "colorMode": "background",
        "graphMode": "area",
        "justifyMode": "center",
        "textMode": "value",
    }
    kwargs.setdefault("width", 6)
    kwargs.setdefault("height", 4)
    return Panel("stat", title, [target], options=options, **kwargs)


def bargauge(title: str, target: Json, **kwargs: Any) -> Panel:
    """Horizontal bars, one per series."""
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "orientation": "horizontal",
        "displayMode": "gradient",
        "showUnfilled": True,
    }
    return Panel("bargauge", title, [target], options=options, **kwargs)


def piechart(title: str, target: Json, **kwargs: Any) -> Panel:
    """Donut of the series' last values."""
    options = {
        "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
        "pieType": "donut",
        "legend": {"displayMode": "table", "placement": "right", "showLegend": True, "values": ["value", "percent"]},
    }
    return Panel("piechart", title, [target], options=options, **kwargs)


def table(title: str, target: Json, **kwargs: Any) -> Panel:
    """Table of an instant query (format=table), Time column hidden."""
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    overrides = kwargs.pop("overrides", [])
    hide_time = {"matcher": {"id": "byName", "options": "Time"}, "properties": [{"id": "custom.hidden", "value": True}]}
    return Panel("table", title, [target], options=options, overrides=[hide_time, *overrides], **kwargs)


def heatmap(title: str, target: Json, **kwargs: Any) -> Panel:
    """Heatmap of histogram buckets (target format=heatmap)."""
    options = {
        "calculate": False,
        "yAxis": {"axisPlacement": "left"},
        "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
        "cellGap": 1,
        "tooltip": {"mode": "single", "yHistogram": True},
    }
    return Panel("heatmap", title, [target], options=options, **kwargs)


def logs(title: str, target: Json, **kwargs: Any) -> Panel:
    """Log lines (Loki), newest first, with detected fields and links."""
    options = {"showTime": True, "wrapLogMessage": True, "sortOrder": "Descending", "enableLogDetails": True}
    return Panel("logs", title, [target], options=options, **kwargs)


def text(title: str, markdown: str, **kwargs: Any) -> Panel:
    """Markdown note."""
    return Panel("text", title, [], options={"mode": "markdown", "content": markdown}, **kwargs)


def instance_variable() -> Json:
    """`$instance`: one or all backend replicas."""
    query = 'label_values(up{job="backend"}, instance)'
    return {
        "name": "instance",
        "label": "Replica",
        "type": "query",
        "datasource": PROMETHEUS,
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1},
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "refresh": 2,
        "sort": 1,
    }


def layout(panels: list[Panel]) -> list[Json]:
    """Place panels left to right, wrapping at 24 columns; ids are 1..n in reading order."""
    rendered: list[Json] = []
    x = y = row_height = 0
    for panel_id, panel in enumerate(panels, start=1):
        if x + panel.width > 24:
            x, y, row_height = 0, y + row_height, 0
        rendered.append(panel.to_json(panel_id, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return rendered


def dashboard(
    uid: str, title: str, description: str, panels: list[Panel], *, variables: list[Json] | None = None
) -> Json:
    """A complete dashboard document, linked to the other SQAL dashboards by tag."""
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["sqal"],
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "weekStart": "",
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "links": [
            {
                "title": "SQAL dashboards",
                "type": "dashboards",
                "tags": ["sqal"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "templating": {"list": variables or []},
        "panels": layout(panels),
    }

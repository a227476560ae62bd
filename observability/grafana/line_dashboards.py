"""Production-line dashboards: Business (samples, quality, grades), Devices and Bugs.

Gauges the app computes from shared state (SQAL windows, bugs) are equal on every replica: combined with max().
"""

from __future__ import annotations

from panels import (
    RATE,
    Json,
    Panel,
    bargauge,
    dashboard,
    heatmap,
    piechart,
    prom,
    quantile,
    stat,
    table,
    thresholds,
    timeseries,
)


def business() -> Json:
    """Samples per hour, quality, reject and conformity rates, grade mix."""
    ingested = 'samples_ingested_total{job="backend"}'
    score = 'sample_quality_score_{}{{job="backend"}}'
    window_avg = f"sum(rate({score.format('sum')}[{RATE}])) / sum(rate({score.format('count')}[{RATE}]))"
    panels: list[Panel] = [
        stat("Samples / hour", prom(f"sum(increase({ingested}[1h]))"), decimals=0),
        stat(
            "Average quality score",
            prom('max(average_quality_score{job="backend"})'),
            decimals=3,
            min=0,
            max=1,
            thresholds=thresholds((None, "red"), (0.6, "orange"), (0.8, "green")),
            description="Sliding-window average reported by the backend (sample_quality_score is a histogram: "
            "avg() over it means nothing).",
        ),
        stat(
            "Reject rate",
            prom('max(reject_rate_percent{job="backend"})'),
            unit="percent",
            decimals=1,
            thresholds=thresholds((None, "green"), (5, "orange"), (10, "red")),
        ),
        stat(
            "Conformity rate",
            prom('max(conformity_rate_percent{job="backend"})'),
            unit="percent",
            decimals=1,
            thresholds=thresholds((None, "red"), (85, "orange"), (95, "green")),
        ),
        timeseries(
            "Samples per hour by grade",
            [prom(f"sum by (grade) (rate({ingested}[{RATE}])) * 3600", "{{grade}}")],
            custom={"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 40},
        ),
        piechart(
            "Grade mix (time range)",
            prom(f"sum by (grade) (increase({ingested}[$__range]))", "{{grade}}", instant=True),
        ),
        timeseries(
            "Reject and conformity rate",
            [
                prom('max(reject_rate_percent{job="backend"})', "reject"),
                prom('max(conformity_rate_percent{job="backend"})', "conformity"),
                prom("max(sqal:reject_rate_threshold:percent)", "reject threshold"),
            ],
            unit="percent",
            min=0,
            max=100,
            overrides=[
                {
                    "matcher": {"id": "byName", "options": "reject threshold"},
                    "properties": [
                        {"id": "custom.lineStyle", "value": {"fill": "dash", "dash": [10, 10]}},
                        {"id": "color", "value": {"mode": "fixed", "fixedColor": "red"}},
                    ],
                }
            ],
        ),
        timeseries(
            "Quality score",
            [
                prom('max(average_quality_score{job="backend"})', "sliding window (backend)"),
                prom(window_avg, "all samples in the interval"),
            ],
            min=0,
            max=1,
            decimals=3,
        ),
        heatmap(
            "Quality score distribution",
            prom(f"sum by (le) (increase({score.format('bucket')}[{RATE}]))", "{{le}}", fmt="heatmap"),
        ),
        timeseries(
            "Throughput and processing time",
            [
                prom(f"sum(rate({ingested}[{RATE}]))", "stored samples/s"),
                prom('max(samples_throughput_per_second{job="backend"})', "backend window samples/s"),
                prom(quantile(0.95, "sample_processing_duration_seconds"), "p95 processing"),
            ],
            overrides=[
                {
                    "matcher": {"id": "byName", "options": "p95 processing"},
                    "properties": [{"id": "unit", "value": "s"}, {"id": "custom.axisPlacement", "value": "right"}],
                }
            ],
        ),
    ]
    return dashboard("sqal-business", "SQAL / Business", "Quality-control line: volume, quality and grades.", panels)


def devices() -> Json:
    """Active devices, WebSocket connections and traffic, firmware versions, last seen."""
    seen = 'device_last_seen_timestamp_seconds{job="backend"}'
    panels: list[Panel] = [
        stat(
            "Active devices",
            prom('max(devices_active{job="backend"})'),
            thresholds=thresholds((None, "red"), (1, "green")),
        ),
        stat("WebSocket connections", prom('sum(websocket_connections_active{job="backend"})')),
        stat("Firmware versions in use", prom(f"count(max by (firmware_version) ({seen}))")),
        stat(
            "Devices silent > 1 min",
            prom(f"count((time() - max by (device_id) ({seen})) > 60) or vector(0)"),
            thresholds=thresholds((None, "green"), (1, "orange")),
        ),
        timeseries(
            "WebSocket connections by endpoint",
            [prom('sum by (endpoint) (websocket_connections_active{job="backend"})', "{{endpoint}}")],
        ),
        timeseries(
            "WebSocket messages",
            [
                prom(
                    f'sum by (type) (rate(websocket_messages_received_total{{job="backend"}}[{RATE}]))', "in {{type}}"
                ),
                prom(f'sum by (type) (rate(websocket_messages_sent_total{{job="backend"}}[{RATE}]))', "out {{type}}"),
            ],
            unit="ops",
        ),
        timeseries(
            "WebSocket errors by code",
            [prom(f'sum by (code) (rate(websocket_errors_total{{job="backend"}}[{RATE}]))', "{{code}}")],
            unit="ops",
        ),
        timeseries(
            "Rate-limited messages and requests",
            [prom(f'sum by (scope) (rate(rate_limit_exceeded_total{{job="backend"}}[{RATE}]))', "{{scope}}")],
            unit="ops",
        ),
        piechart(
            "Firmware versions",
            prom(
                f"count by (firmware_version) (max by (device_id, firmware_version) ({seen}))",
                "{{firmware_version}}",
                instant=True,
            ),
        ),
        table(
            "Last seen",
            prom(f"time() - max by (device_id, firmware_version) ({seen})", instant=True, fmt="table"),
            unit="s",
            thresholds=thresholds((None, "green"), (15, "orange"), (60, "red")),
            custom={"cellOptions": {"type": "color-text"}},
            overrides=[
                {
                    "matcher": {"id": "byName", "options": "Value"},
                    "properties": [{"id": "displayName", "value": "seconds ago"}],
                }
            ],
        ),
    ]
    return dashboard(
        "sqal-devices", "SQAL / Devices", "ESP32 devices: connections, traffic, firmware, last seen.", panels
    )


def bugs() -> Json:
    """Open bugs by severity, resolved today, average resolution time, critical count."""
    open_by_severity = 'max by (severity) (bug_metrics{job="backend",status="open"})'
    panels: list[Panel] = [
        stat(
            "Critical bugs open",
            prom('max(bug_metrics{job="backend",severity="critical",status="open"})'),
            thresholds=thresholds((None, "green"), (1, "red")),
            description='The reference query is sum(bug_metrics{severity="critical",status="open"}); max() because '
            "every replica reports the same database count.",
        ),
        stat("Open bugs", prom(f"sum({open_by_severity})"), thresholds=thresholds((None, "green"), (10, "orange"))),
        stat("Resolved today", prom('max(bugs_resolved_today{job="backend"})'), thresholds=thresholds((None, "blue"))),
        stat(
            "Average resolution time",
            prom('max(bug_resolution_seconds{job="backend"})'),
            unit="s",
            thresholds=thresholds((None, "blue")),
        ),
        bargauge(
            "Open bugs by severity",
            prom(open_by_severity, "{{severity}}"),
            thresholds=thresholds((None, "green"), (1, "orange"), (5, "red")),
        ),
        bargauge(
            "Bugs by status",
            prom('sum by (status) (max by (severity, status) (bug_metrics{job="backend"}))', "{{status}}"),
        ),
        timeseries("Open bugs by severity over time", [prom(open_by_severity, "{{severity}}")], width=24),
    ]
    return dashboard("sqal-bugs", "SQAL / Bugs", "Bug reports: open by severity, resolution, critical count.", panels)

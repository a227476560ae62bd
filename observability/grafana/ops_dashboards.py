"""Operations dashboards: Infrastructure (HTTP, cache, database, breakers, process) and SLO."""

from __future__ import annotations

from panels import (
    RATE,
    Json,
    Panel,
    dashboard,
    instance_variable,
    logs,
    loki,
    prom,
    quantile,
    stat,
    table,
    text,
    thresholds,
    timeseries,
)

SEL = 'job="backend",instance=~"$instance"'
# Latency of request/response routes only: a WebSocket "request" lasts as long as the device stays connected.
HTTP_SEL = SEL + ',path!~"/ws/.*"'
BREAKER_STATES = [
    {
        "type": "value",
        "options": {
            "0": {"text": "closed", "color": "green", "index": 0},
            "1": {"text": "OPEN", "color": "red", "index": 1},
            "2": {"text": "half-open", "color": "orange", "index": 2},
        },
    }
]
TOUR = (
    "**From a red panel to the cause.** Error rate red? Look at *Latency* for the diamonds (exemplars) and click one: "
    "*Open trace in Jaeger*. In the trace, *Logs for this span* opens the request's log lines in Loki. The *Errors "
    "and warnings* panel below goes the other way: expand a line, then *Open trace in Jaeger*."
)


def infrastructure() -> Json:
    """Request rate, latency percentiles, errors, cache, DB pool, breakers, process."""
    total = f"sum(rate(http_requests_total{{{SEL}}}[{RATE}]))"
    errors = f'sum(rate(http_requests_total{{{SEL},status=~"5.."}}[{RATE}]))'
    hits = f"sum by (cache) (rate(cache_hits_total{{{SEL}}}[{RATE}]))"
    misses = f"sum by (cache) (rate(cache_misses_total{{{SEL}}}[{RATE}]))"
    panels: list[Panel] = [
        stat(
            "Replicas up",
            prom('sum(up{job="backend"})'),
            thresholds=thresholds((None, "red"), (1, "orange"), (2, "green")),
        ),
        stat("Request rate", prom(total), unit="reqps", decimals=1),
        stat(
            "Error rate (5xx)",
            prom(f"{errors} / {total}"),
            unit="percentunit",
            decimals=2,
            thresholds=thresholds((None, "green"), (0.001, "orange"), (0.01, "red")),
            description="Share of requests answered 5xx. Red above 1 %: follow an exemplar or an error log line.",
        ),
        stat(
            "p95 latency",
            prom(quantile(0.95, "http_request_duration_seconds", selector=HTTP_SEL)),
            unit="s",
            thresholds=thresholds((None, "green"), (0.3, "orange"), (0.5, "red")),
        ),
        timeseries(
            "Request rate by route",
            [prom(f"sum by (path) (rate(http_requests_total{{{SEL}}}[{RATE}]))", "{{path}}")],
            unit="reqps",
        ),
        timeseries(
            "Latency p50 / p95 / p99",
            [
                prom(quantile(0.50, "http_request_duration_seconds", selector=HTTP_SEL), "p50", exemplar=True),
                prom(quantile(0.95, "http_request_duration_seconds", selector=HTTP_SEL), "p95", exemplar=True),
                prom(quantile(0.99, "http_request_duration_seconds", selector=HTTP_SEL), "p99", exemplar=True),
            ],
            unit="s",
            description="Exemplars (diamonds) carry the trace id of a request in that bucket: click one to open "
            "its trace in Jaeger.",
        ),
        timeseries(
            "Error rate by route and status",
            [
                prom(
                    f'sum by (path, status) (rate(http_requests_total{{{SEL},status=~"5.."}}[{RATE}]))'
                    f" / scalar({total})",
                    "{{status}} {{path}}",
                )
            ],
            unit="percentunit",
            thresholds=thresholds((None, "green"), (0.01, "red")),
            custom={"thresholdsStyle": {"mode": "line+area"}},
        ),
        timeseries(
            "Cache hit rate",
            [prom(f"{hits} / ({hits} + {misses})", "{{cache}}")],
            unit="percentunit",
            min=0,
            max=1,
        ),
        timeseries(
            "Cache latency p95 and size",
            [
                prom(quantile(0.95, "cache_latency_seconds", "cache", selector=SEL), "p95 {{cache}}"),
                prom(f"max by (cache) (cache_size_bytes{{{SEL}}})", "bytes {{cache}}"),
            ],
            unit="s",
            overrides=[
                {
                    "matcher": {"id": "byRegexp", "options": "bytes.*"},
                    "properties": [{"id": "unit", "value": "bytes"}, {"id": "custom.axisPlacement", "value": "right"}],
                }
            ],
        ),
        timeseries(
            "Cache evictions and expirations",
            [
                prom(f"max by (cache) (rate(cache_evictions_total{{{SEL}}}[{RATE}]))", "evicted {{cache}}"),
                prom(f"max by (cache) (rate(cache_expirations_total{{{SEL}}}[{RATE}]))", "expired {{cache}}"),
            ],
            unit="ops",
        ),
        timeseries(
            "DB connection pool",
            [
                prom(
                    f'sum by (instance) (database_connection_pool{{{SEL},status="checked_out"}})',
                    "checked out {{instance}}",
                ),
                prom(f'sum by (instance) (database_connection_pool{{{SEL},status="size"}})', "size {{instance}}"),
                prom(f"sum by (instance) (db_connection_pool_available{{{SEL}}})", "available {{instance}}"),
                prom(f"sum by (instance) (db_connection_pool_size{{{SEL}}})", "configured {{instance}}"),
            ],
        ),
        timeseries(
            "DB queries",
            [
                prom(
                    f"sum by (operation, table) (rate(database_queries_total{{{SEL}}}[{RATE}]))",
                    "{{operation}} {{table}}",
                ),
                prom(quantile(0.95, "db_query_duration_seconds", "operation", selector=SEL), "p95 {{operation}}"),
            ],
            unit="ops",
            overrides=[
                {
                    "matcher": {"id": "byRegexp", "options": "p95.*"},
                    "properties": [{"id": "unit", "value": "s"}, {"id": "custom.axisPlacement", "value": "right"}],
                }
            ],
        ),
        timeseries(
            "Circuit breakers",
            [prom(f"max by (name) (circuit_breaker_state{{{SEL}}})", "{{name}}")],
            mappings=BREAKER_STATES,
            min=0,
            max=2,
            custom={"drawStyle": "line", "lineInterpolation": "stepAfter"},
            description="0 closed, 1 open (calls short-circuited), 2 half-open (probing).",
        ),
        timeseries(
            "Trace spans dropped",
            [prom(f"sum by (reason) (rate(otel_spans_dropped_total{{{SEL}}}[{RATE}]))", "{{reason}}")],
            unit="cps",
            description="Spans that never reached Jaeger (queue full or export failed); requests are unaffected.",
        ),
        timeseries(
            "Rate-limited requests",
            [prom(f"sum by (scope) (rate(rate_limit_exceeded_total{{{SEL}}}[{RATE}]))", "{{scope}}")],
            unit="reqps",
        ),
        timeseries(
            "Request and response size p95",
            [
                prom(quantile(0.95, "http_request_size_bytes", selector=SEL), "request"),
                prom(quantile(0.95, "http_response_size_bytes", selector=SEL), "response"),
            ],
            unit="bytes",
            width=9,
        ),
        timeseries(
            "Process memory and CPU",
            [
                prom(f"sum by (instance) (process_resident_memory_bytes{{{SEL}}})", "RSS {{instance}}"),
                prom(f"sum by (instance) (rate(process_cpu_seconds_total{{{SEL}}}[{RATE}]))", "CPU {{instance}}"),
                prom(f"sum by (instance) (process_open_fds{{{SEL}}})", "fds {{instance}}"),
            ],
            unit="bytes",
            overrides=[
                {
                    "matcher": {"id": "byRegexp", "options": "CPU.*"},
                    "properties": [
                        {"id": "unit", "value": "percentunit"},
                        {"id": "custom.axisPlacement", "value": "right"},
                    ],
                },
                {"matcher": {"id": "byRegexp", "options": "fds.*"}, "properties": [{"id": "unit", "value": "short"}]},
            ],
            width=9,
        ),
        stat(
            "Youngest replica uptime",
            prom(f"time() - max(process_start_time_seconds{{{SEL}}})"),
            unit="s",
            height=8,
            thresholds=thresholds((None, "orange"), (300, "green")),
            description="Seconds since the most recent (re)start: a low value that keeps resetting is a crash loop.",
        ),
        table(
            "Running versions",
            prom(f"count by (service_name, version, environment) (app_info{{{SEL}}})", instant=True, fmt="table"),
            width=24,
            height=4,
            description="Replicas per release. service_name is the `service` of the logs and the Jaeger service.",
        ),
        text("Guided tour", TOUR, width=24, height=3),
        logs(
            "Errors and warnings (backend logs)",
            loki('{service="backend", level=~"error|warning|critical"}'),
            width=24,
            height=10,
        ),
    ]
    return dashboard(
        "sqal-infrastructure",
        "SQAL / Infrastructure",
        "HTTP traffic, latency, errors, cache, database pool, circuit breakers and process health of the backend.",
        panels,
        variables=[instance_variable()],
    )


def slo() -> Json:
    """Error budget remaining and burn rates of the availability and latency SLOs."""
    budget_steps = thresholds((None, "red"), (0, "orange"), (0.25, "green"))
    burn_steps = thresholds((None, "green"), (6, "orange"), (14.4, "red"))
    panels: list[Panel] = [
        stat(
            "Availability, 30 days (SLO 99.9 %)",
            prom('1 - slo:sli_error:ratio_rate30d{slo="availability"}'),
            unit="percentunit",
            decimals=3,
            thresholds=thresholds((None, "red"), (0.999, "green")),
        ),
        stat(
            "Availability error budget left",
            prom('slo:error_budget_remaining:ratio{slo="availability"}'),
            unit="percentunit",
            decimals=1,
            thresholds=budget_steps,
        ),
        stat(
            "Requests under 300 ms, 30 days (SLO 95 %)",
            prom('1 - slo:sli_error:ratio_rate30d{slo="latency"}'),
            unit="percentunit",
            decimals=2,
            thresholds=thresholds((None, "red"), (0.95, "green")),
        ),
        stat(
            "Latency error budget left",
            prom('slo:error_budget_remaining:ratio{slo="latency"}'),
            unit="percentunit",
            decimals=1,
            thresholds=budget_steps,
        ),
    ]
    for name in ("availability", "latency"):
        panels.append(
            timeseries(
                f"Burn rate: {name}",
                [prom(f'slo:burn_rate:ratio_rate{w}{{slo="{name}"}}', w) for w in ("5m", "30m", "1h", "6h")],
                thresholds=burn_steps,
                custom={"thresholdsStyle": {"mode": "line"}},
                description="1 = spending the budget exactly over 30 days. Page: 1 h and 5 m above 14.4. "
                "Ticket: 6 h and 30 m above 6.",
            )
        )
    panels += [
        timeseries(
            "Error budget remaining",
            [prom("slo:error_budget_remaining:ratio", "{{slo}}")],
            unit="percentunit",
            thresholds=budget_steps,
            custom={"thresholdsStyle": {"mode": "line"}},
        ),
        table("SLO alerts", prom('ALERTS{alertname=~"SLO.*"}', instant=True, fmt="table")),
    ]
    return dashboard("sqal-slo", "SQAL / SLO", "Availability 99.9 % and latency (95 % < 300 ms) over 30 days.", panels)

"""SQAL metrics. Names follow the reference documents (a contract).

Per-process counters, histograms and the live connection gauge work in prometheus multiprocess mode (gauges
declare their `multiprocess_mode`). Figures over a sliding window — throughput, average score, conformity and
reject rates, active devices, last-seen per device — would disagree between workers if each process counted
its own traffic, so `SqalCollector` computes them from the database at scrape time (cached briefly);
`backend.sqal.init_app` serves it on /metrics (`observability.register_scrape_collector`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator

from flask import Flask
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from sqlalchemy import text

from backend.core import ratelimit
from backend.observability.collectors import StoreCollector
from backend.observability.metrics import zero_series
from backend.sqal import protocol
from backend.sqal.vocabulary import (
    CONFORMING,
    GRADES,
    ONLINE_INTERVALS,
    THROUGHPUT_WINDOW_SECONDS,
    online_seconds,
    sql_list,
)

logger = logging.getLogger(__name__)

ENDPOINT = "/ws/sensors/"
WINDOW_SECONDS = THROUGHPUT_WINDOW_SECONDS
CACHE_SECONDS = 5.0

websocket_connections_active = Gauge(
    "websocket_connections_active", "Open WebSocket connections", ["endpoint"], multiprocess_mode="livesum"
)
websocket_messages_received = Counter(
    "websocket_messages_received_total", "WebSocket messages received, by frame type", ["endpoint", "type"]
)
websocket_messages_sent = Counter(
    "websocket_messages_sent_total", "WebSocket messages sent, by frame type", ["endpoint", "type"]
)
websocket_errors = Counter("websocket_errors_total", "WebSocket error frames and closes, by error code", ["code"])
sample_processing_duration = Histogram(
    "sample_processing_duration_seconds",
    "Time from receiving a sensor frame to its commit (validation, storage), per frame",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
samples_ingested = Counter("samples_ingested_total", "Samples stored (duplicates excluded), by final grade", ["grade"])
sample_quality_score = Histogram(
    "sample_quality_score",
    "Final quality score of stored samples, by final grade",
    ["grade"],
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0),
)
samples_publish_dropped = Counter(
    "sqal_sample_fanout_dropped_total", "Sample summaries not published to Redis (queue full or Redis down)"
)
sample_conflicts = Counter(
    "sqal_sample_conflicts_total",
    "Samples refused with `conflict`: their (device_id, sample_id) is stored with different content",
)
device_sockets_replaced = Counter(
    "sqal_device_sockets_replaced_total",
    "Device sockets closed because a newer socket of the same device took over (WS_DEVICE_MAX_SOCKETS)",
)
dashboard_clients_dropped = Counter(
    "sqal_dashboard_clients_dropped_total", "Dashboard WebSocket clients dropped because their queue was full"
)

_WINDOW_QUERY = text(
    f"""
    SELECT count(*) AS samples,
           avg(fusion_final_score) AS average_score,
           count(*) FILTER (WHERE fusion_final_grade IN ({sql_list(CONFORMING)})) AS conform,
           count(*) FILTER (WHERE fusion_final_grade = 'REJECT') AS rejected
    FROM sensor_samples
    WHERE "timestamp" > now() - make_interval(secs => :window)
    """
)
_DEVICES_QUERY = text(
    """
    SELECT device_id, coalesce(firmware_version, '') AS firmware_version,
           extract(epoch FROM last_seen_at) AS last_seen,
           last_seen_at > now() - make_interval(secs => :online) AS online
    FROM devices
    WHERE enabled AND last_seen_at IS NOT NULL
    """
)


class SqalCollector(StoreCollector):
    """Sliding-window SQAL gauges computed in SQL, identical whichever worker serves the scrape."""

    def __init__(self, app: Flask, window_seconds: int = WINDOW_SECONDS, cache_seconds: float = CACHE_SECONDS) -> None:
        super().__init__(ttl=cache_seconds)
        self.app = app
        self.window_seconds = window_seconds

    def families(self) -> Iterator[GaugeMetricFamily]:
        window = f"over the last {self.window_seconds} s"
        yield GaugeMetricFamily("samples_throughput_per_second", f"Samples per second {window} (sample time)")
        yield GaugeMetricFamily("average_quality_score", f"Mean final quality score {window}")
        yield GaugeMetricFamily("conformity_rate_percent", f"Share of samples graded A or B {window}, %")
        yield GaugeMetricFamily("reject_rate_percent", f"Share of samples graded REJECT {window}, %")
        yield GaugeMetricFamily(
            "devices_active", f"Enabled devices seen within {ONLINE_INTERVALS} generation intervals"
        )
        yield GaugeMetricFamily(
            "device_last_seen_timestamp_seconds",
            "Unix time a device was last seen",
            labels=["device_id", "firmware_version"],
        )

    def compute(self) -> list[Metric]:
        from backend.extensions import db

        online = online_seconds(self.app.config["SETTINGS"])
        with self.app.app_context(), db.engine.connect() as connection:
            window = connection.execute(_WINDOW_QUERY, {"window": self.window_seconds}).one()
            devices = connection.execute(_DEVICES_QUERY, {"online": online}).all()
        throughput, average, conformity, reject, active, last_seen = self.families()
        samples = int(window.samples)
        throughput.add_metric([], samples / self.window_seconds)
        average.add_metric([], float(window.average_score) if samples else math.nan)
        conformity.add_metric([], 100.0 * window.conform / samples if samples else math.nan)
        reject.add_metric([], 100.0 * window.rejected / samples if samples else math.nan)
        active.add_metric([], sum(1 for device in devices if device.online))
        for device in devices:
            last_seen.add_metric([device.device_id, device.firmware_version], float(device.last_seen))
        return [throughput, average, conformity, reject, active, last_seen]


def zero_known_series(endpoints: Iterable[str], rate_scope: str) -> None:
    """The SQAL series with known label sets, at 0 in this process (call at app start: every worker)."""
    zero_series(websocket_connections_active, endpoints)
    received = (*protocol.ClientFrame, *protocol.UnhandledFrame)
    zero_series(websocket_messages_received, ((ENDPOINT, kind) for kind in received))
    zero_series(websocket_messages_sent, ((ENDPOINT, kind) for kind in protocol.ServerFrame))
    zero_series(websocket_errors, protocol.ErrorCode)
    zero_series(samples_ingested, GRADES)
    zero_series(sample_quality_score, GRADES)
    zero_series(ratelimit.rate_limit_exceeded, (rate_scope,))


def record_stored(grades_and_scores: Iterable[tuple[str, float]]) -> None:
    """Count stored samples and observe their quality scores."""
    for grade, score in grades_and_scores:
        samples_ingested.labels(grade=grade).inc()
        sample_quality_score.labels(grade=grade).observe(score)

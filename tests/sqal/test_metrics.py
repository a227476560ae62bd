"""SQAL metrics: window figures computed from the database (same for every worker), per-sample counters."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

from apiflask import APIFlask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from sqlalchemy import text

from backend import create_app
from backend.extensions import db
from backend.sqal.ingest import service
from backend.sqal.ingest.frames import FrameHandler
from backend.sqal.ingest.schemas import SampleIn
from backend.sqal.metrics import SqalCollector
from tests.sqal.helpers import EXAMPLE, make_device, sample_frame


def graded(device_id: str, seq: int, grade: str, score: float, age: timedelta) -> SampleIn:
    frame = sample_frame(device_id, seq, timestamp=datetime.now(UTC) - age)
    frame["fusion"].update(final_grade=grade, final_score=score)
    return SampleIn.model_validate(frame)


def values(collector: SqalCollector) -> dict[str, float]:
    """Unlabelled gauges by name."""
    return {s.name: s.value for family in collector.collect() for s in family.samples if not s.labels}


def last_seen(collector: SqalCollector) -> dict[str, tuple[str, float]]:
    """device_id -> (firmware_version label, last seen time)."""
    return {
        s.labels["device_id"]: (s.labels["firmware_version"], s.value)
        for family in collector.collect()
        for s in family.samples
        if s.name == "device_last_seen_timestamp_seconds"
    }


def test_window_figures_come_from_the_database(app: APIFlask, client: FlaskClient) -> None:
    active, _ = make_device(app)
    idle, _ = make_device(app)
    recent = timedelta(seconds=30)
    with app.app_context():
        batch = [
            graded(active, 1, "A", 0.9, recent),
            graded(active, 2, "B", 0.7, recent),
            graded(active, 3, "C", 0.5, recent),
            graded(active, 4, "REJECT", 0.2, recent),
            graded(active, 5, "REJECT", 0.1, timedelta(hours=1)),  # outside the 5-minute window
        ]
        service.store_samples(active, batch, datetime.now(UTC))
        db.session.execute(
            text(
                "UPDATE devices SET last_seen_at = now() - interval '1 hour', firmware_version = '0.9'"
                " WHERE device_id = :d"
            ),
            {"d": idle},
        )
        db.session.commit()
        db.session.remove()
    collector = SqalCollector(app, cache_seconds=0)
    figures = values(collector)
    assert figures["samples_throughput_per_second"] == 4 / 300
    assert math.isclose(figures["average_quality_score"], (0.9 + 0.7 + 0.5 + 0.2) / 4)
    assert figures["conformity_rate_percent"] == 50.0
    assert figures["reject_rate_percent"] == 25.0
    assert figures["devices_active"] == 1
    seen = last_seen(collector)
    assert {device: label for device, (label, _) in seen.items()} == {
        active: EXAMPLE["meta"]["firmware_version"],
        idle: "0.9",
    }
    assert seen[active][1] - seen[idle][1] > 3500


def test_empty_window_and_cache(app: APIFlask, client: FlaskClient) -> None:
    collector = SqalCollector(app, cache_seconds=3600)
    figures = values(collector)
    assert figures["samples_throughput_per_second"] == 0
    assert math.isnan(figures["reject_rate_percent"])
    device_id, _ = make_device(app)
    with app.app_context():
        service.store_samples(device_id, [graded(device_id, 1, "A", 0.9, timedelta(0))], datetime.now(UTC))
        db.session.remove()
    assert values(collector)["samples_throughput_per_second"] == 0  # cached
    assert values(SqalCollector(app, cache_seconds=0))["samples_throughput_per_second"] == 1 / 300


def test_registering_does_not_query_and_a_dead_database_yields_nothing(services: Any) -> None:
    broken = create_app({"app_env": "test", "database_url": services.server_url.rsplit("/", 1)[0] + "/no_such_db"})
    registry = CollectorRegistry()
    collector = SqalCollector(broken)
    registry.register(collector)
    assert list(collector.collect()) == []
    assert b"samples_throughput_per_second" not in generate_latest(registry)
    assert [family.name for family in collector.describe()] == [
        "samples_throughput_per_second",
        "average_quality_score",
        "conformity_rate_percent",
        "reject_rate_percent",
        "devices_active",
        "device_last_seen_timestamp_seconds",
    ]


def test_stored_samples_are_counted_by_grade() -> None:
    def counted(name: str, grade: str) -> float:
        return REGISTRY.get_sample_value(name, {"grade": grade}) or 0.0

    before = counted("samples_ingested_total", "B"), counted("sample_quality_score_count", "B")
    handler = FrameHandler(
        "ESP32_M_1",
        max_message_bytes=1 << 20,
        store=lambda _device, samples, _at, **_credential: ["stored"] * len(samples),
        publish=lambda _summaries: None,
        retry_after=lambda _device: None,
    )
    frame = sample_frame("ESP32_M_1", 1)
    frame["fusion"].update(final_grade="B", final_score=0.75)
    assert handler.handle(json.dumps(frame)).reply["status"] == "stored"
    assert (counted("samples_ingested_total", "B"), counted("sample_quality_score_count", "B")) == (
        before[0] + 1,
        before[1] + 1,
    )

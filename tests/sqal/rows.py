"""Rows inserted straight into the SQAL tables (explicit timestamps), and a sample data set, for the read-side and
lifecycle tests."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from apiflask import APIFlask
from sqlalchemy import insert

from backend.extensions import db
from backend.sqal.models import Device, SampleKey, SensorSample

NOW = datetime(2026, 3, 12, 15, 42, 17, 250000, tzinfo=UTC)
DEVICES = ("LINE_A", "LINE_B", "LINE_C")
DEFECT_SETS = ([], [], ["blood_spot"], ["dark_spots", "oxidation"], ["low_volume"], ["blood_spot", "dark_spots"])
MATRIX = [[200.0 + row + column / 10 for column in range(8)] for row in range(8)]
CHANNELS = {
    "F1_415nm": 1205,
    "F2_445nm": 2551,
    "F3_480nm": 3987,
    "F4_515nm": 5032,
    "F5_555nm": 5102,
    "F6_590nm": 5806,
    "F7_630nm": 6115,
    "F8_680nm": 5320,
    "Clear": 11984,
    "NIR": 2977,
}


def device_row(device_id: str, last_seen_at: datetime | None = None, enabled: bool = True) -> dict[str, Any]:
    return {
        "device_id": device_id,
        "token_hash": uuid.uuid4().hex + uuid.uuid4().hex,
        "profile": "test",
        "firmware_version": "1.4.2",
        "last_seen_at": last_seen_at,
        "enabled": enabled,
    }


def sample_row(
    device_id: str,
    timestamp: datetime,
    grade: str = "A",
    score: float = 0.9,
    defects: list[str] | None = None,
    sample_id: str | None = None,
    seq: int = 0,
) -> dict[str, Any]:
    """A complete `sensor_samples` row; the sensor grades/scores follow the fused ones."""
    return {
        "id": uuid.uuid4(),
        "timestamp": timestamp,
        "device_id": device_id,
        "sample_id": sample_id or f"S-{uuid.uuid4().hex[:12]}",
        "seq": seq,
        "vl53l8ch_distance_matrix": MATRIX,
        "vl53l8ch_reflectance_matrix": MATRIX,
        "vl53l8ch_amplitude_matrix": MATRIX,
        "vl53l8ch_volume_mm3": 412350.0,
        "vl53l8ch_avg_height_mm": 29.4,
        "vl53l8ch_surface_uniformity": 0.91,
        "vl53l8ch_quality_score": score,
        "vl53l8ch_grade": grade,
        "as7341_channels": CHANNELS,
        "as7341_integration_time": 50,
        "as7341_gain": 64.0,
        "as7341_color_score": 0.95,
        "as7341_freshness_score": 0.92,
        "as7341_quality_score": score,
        "as7341_grade": grade,
        "fusion_final_score": score,
        "fusion_final_grade": grade,
        "fusion_confidence": 0.94,
        "fusion_defects": defects or [],
        "processing_time_ms": 3.8,
        "received_at": timestamp,
    }


def insert_devices(app: APIFlask, *devices: dict[str, Any]) -> None:
    with app.app_context():
        db.session.execute(insert(Device), list(devices))
        db.session.commit()
        db.session.remove()


def insert_samples(app: APIFlask, rows: list[dict[str, Any]]) -> None:
    """Insert the rows and their dedup-ledger keys in one transaction."""
    with app.app_context():
        keys = [{"device_id": row["device_id"], "sample_id": row["sample_id"]} for row in rows]
        db.session.execute(insert(SampleKey), keys)
        db.session.execute(insert(SensorSample), rows)
        db.session.commit()
        db.session.remove()


def sample_data(count: int = 3000, days: float = 3.0, seed: int = 20) -> list[dict[str, Any]]:
    """`count` samples before NOW (sub-second timestamps, a few after NOW), mixed grades: half over `days`, half
    over the last three hours (so that every minute near the ranges' edges holds samples)."""
    generator = random.Random(seed)
    rows = []
    for index in range(count):
        span = days * 86400 if index % 2 else min(days * 86400, 3 * 3600)
        moment = NOW - timedelta(seconds=generator.uniform(-600, span))
        grade = generator.choices(("A", "B", "C", "REJECT"), weights=(55, 25, 12, 8))[0]
        rows.append(
            sample_row(
                generator.choice(DEVICES),
                moment,
                grade=grade,
                score=round(generator.random(), 6),
                defects=list(generator.choice(DEFECT_SETS)),
                sample_id=f"S-{index}",
                seq=index,
            )
        )
    return rows


def devices() -> list[dict[str, Any]]:
    return [device_row(device, last_seen_at=NOW - timedelta(seconds=3)) for device in DEVICES]

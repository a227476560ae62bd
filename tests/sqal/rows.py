"""Rows inserted straight into the SQAL tables (explicit timestamps), for the read-side tests."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from apiflask import APIFlask
from sqlalchemy import insert

from backend.extensions import db
from backend.sqal.models import Device, SampleKey, SensorSample

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

"""SQAL tables: `devices`, the `sensor_samples` time series and its `sensor_sample_keys` dedup ledger.

The schema is made by migration 0002_sqal (which explains the ledger and the TimescaleDB path); these models
mirror it for queries and inserts.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from backend.core.security import DIGEST_LENGTH
from backend.extensions import db
from backend.sqal.vocabulary import GRADES, ID_MAX_LENGTH, sql_list

_GRADE_LIST = sql_list(GRADES)


class Device(db.Model):  # type: ignore[name-defined]
    """A sensor station (ESP32) allowed to send samples; only its token digest is stored."""

    __tablename__ = "devices"

    device_id: Mapped[str] = mapped_column(String(ID_MAX_LENGTH), primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(DIGEST_LENGTH), nullable=False, unique=True)
    profile: Mapped[str | None] = mapped_column(String(100))
    firmware_version: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    last_seen_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))


class SampleKey(db.Model):  # type: ignore[name-defined]
    """One row per stored (device_id, sample_id): the uniqueness a hypertable cannot enforce by itself.

    `stored_at` (migration 0010) is when the key was stored: the ledger is pruned on it (README "Data lifecycle").
    """

    __tablename__ = "sensor_sample_keys"
    __table_args__ = (Index("ix_sensor_sample_keys_stored_at", "stored_at"),)

    device_id: Mapped[str] = mapped_column(String(ID_MAX_LENGTH), ForeignKey("devices.device_id"), primary_key=True)
    sample_id: Mapped[str] = mapped_column(String(ID_MAX_LENGTH), primary_key=True)
    stored_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    # blake2b-128 of the stored content (0007): a resend with other content is a `conflict`; null before 0007.
    content_hash: Mapped[bytes | None] = mapped_column(LargeBinary(16))


class SensorSample(db.Model):  # type: ignore[name-defined]
    """One measurement: the reference table's columns plus `seq` and `received_at` (0006 made `seq` and
    `fusion_confidence` nullable for version-1 frames)."""

    __tablename__ = "sensor_samples"
    __table_args__ = (
        Index("ix_sensor_samples_timestamp", text('"timestamp" DESC')),
        Index("ix_sensor_samples_device_id_timestamp", "device_id", text('"timestamp" DESC')),
        Index("ix_sensor_samples_sample_id", "sample_id"),
        # Made by migration 0005_sqal_reads for the dashboard figures (reads/figures.py): index-only scans.
        Index(
            "ix_sensor_samples_grade_time", "fusion_final_grade", "timestamp", postgresql_include=["fusion_final_score"]
        ),
        Index(
            "ix_sensor_samples_defects",
            "timestamp",
            postgresql_include=["fusion_defects"],
            postgresql_where=text("fusion_defects <> '[]'::jsonb"),
        ),
        # Made by migration 0009_sqal_score_index: `?min_score=` reads only the samples at or above it.
        Index("ix_sensor_samples_score_time", "fusion_final_score", "timestamp"),
        CheckConstraint(f"vl53l8ch_grade IN ({_GRADE_LIST})", name="vl53l8ch_grade"),
        CheckConstraint(f"as7341_grade IN ({_GRADE_LIST})", name="as7341_grade"),
        CheckConstraint(f"fusion_final_grade IN ({_GRADE_LIST})", name="fusion_final_grade"),
    )

    # (id, timestamp): a TimescaleDB hypertable requires the partition column in every unique index.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, server_default=text("gen_random_uuid()"))
    timestamp: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(ID_MAX_LENGTH), nullable=False)
    sample_id: Mapped[str] = mapped_column(String(ID_MAX_LENGTH), nullable=False)
    seq: Mapped[int | None] = mapped_column(BigInteger)  # null: a version-1 (reference) frame has no seq

    vl53l8ch_distance_matrix: Mapped[Any] = mapped_column(JSONB, nullable=False)
    vl53l8ch_reflectance_matrix: Mapped[Any] = mapped_column(JSONB, nullable=False)
    vl53l8ch_amplitude_matrix: Mapped[Any] = mapped_column(JSONB, nullable=False)
    vl53l8ch_volume_mm3: Mapped[float] = mapped_column(Float, nullable=False)
    vl53l8ch_avg_height_mm: Mapped[float] = mapped_column(Float, nullable=False)
    vl53l8ch_surface_uniformity: Mapped[float] = mapped_column(Float, nullable=False)
    vl53l8ch_quality_score: Mapped[float] = mapped_column(Float, nullable=False)
    vl53l8ch_grade: Mapped[str] = mapped_column(String(50), nullable=False)

    as7341_channels: Mapped[Any] = mapped_column(JSONB, nullable=False)
    as7341_integration_time: Mapped[int] = mapped_column(Integer, nullable=False)
    as7341_gain: Mapped[float] = mapped_column(Float, nullable=False)  # reference INT cannot hold 0.5x
    as7341_color_score: Mapped[float] = mapped_column(Float, nullable=False)
    as7341_freshness_score: Mapped[float] = mapped_column(Float, nullable=False)
    as7341_quality_score: Mapped[float] = mapped_column(Float, nullable=False)
    as7341_grade: Mapped[str] = mapped_column(String(50), nullable=False)

    fusion_final_score: Mapped[float] = mapped_column(Float, nullable=False)
    fusion_final_grade: Mapped[str] = mapped_column(String(50), nullable=False)
    fusion_confidence: Mapped[float | None] = mapped_column(Float)  # null: not in a version-1 frame
    fusion_defects: Mapped[Any] = mapped_column(JSONB, nullable=False)

    processing_time_ms: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)

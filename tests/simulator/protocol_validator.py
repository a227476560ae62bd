"""An independent validator of `sensor_data` samples, written from docs/protocol.md (not from the simulator)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from typing import Any

GRADES = {"A", "B", "C", "REJECT"}
CHANNELS = [
    "F1_415nm",
    "F2_445nm",
    "F3_480nm",
    "F4_515nm",
    "F5_555nm",
    "F6_590nm",
    "F7_630nm",
    "F8_680nm",
    "Clear",
    "NIR",
]
GAINS = {0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512}
SAMPLE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
ISO_WITH_ZONE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
MIN_TIME = datetime(2000, 1, 1, tzinfo=UTC)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _in(value: Any, low: float, high: float) -> bool:
    return _number(value) and low <= value <= high


def _matrix(value: Any, low: float, high: float, integers: bool = False) -> bool:
    if not isinstance(value, list) or len(value) != 8:
        return False
    for row in value:
        if not isinstance(row, list) or len(row) != 8:
            return False
        for v in row:
            if not _in(v, low, high) or (integers and not isinstance(v, int)):
                return False
    return True


def _defects(value: Any) -> bool:
    return isinstance(value, list) and len(value) <= 32 and all(isinstance(d, str) and 1 <= len(d) <= 64 for d in value)


def _score(value: Any) -> bool:
    return _in(value, 0.0, 1.0)


def _string(value: Any, max_len: int) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= max_len


def validate_sample(sample: Any, device_id: str, now: datetime | None = None) -> list[str]:
    """Locations (dotted) of every rule of docs/protocol.md §3.1 that `sample` breaks; [] when valid."""
    now = now or datetime.now(UTC)
    errors: list[str] = []

    def check(ok: bool, where: str) -> None:
        if not ok:
            errors.append(where)

    if not isinstance(sample, dict):
        return ["<root>"]
    check(sample.get("type", "sensor_data") == "sensor_data", "type")
    timestamp = sample.get("timestamp")
    if isinstance(timestamp, str) and ISO_WITH_ZONE.match(timestamp):
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        check(MIN_TIME <= moment <= now + timedelta(minutes=5), "timestamp")
    else:
        errors.append("timestamp")
    check(_string(sample.get("device_id"), 100) and sample.get("device_id") == device_id, "device_id")
    sample_id = sample.get("sample_id")
    check(_string(sample_id, 100) and bool(SAMPLE_ID.match(str(sample_id))), "sample_id")
    seq = sample.get("seq")
    check(isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq <= 2**63 - 1, "seq")

    tof = sample.get("vl53l8ch")
    if isinstance(tof, dict):
        check(_matrix(tof.get("distance_matrix"), 0, 4000), "vl53l8ch.distance_matrix")
        check(_matrix(tof.get("reflectance_matrix"), 0, 100), "vl53l8ch.reflectance_matrix")
        check(_matrix(tof.get("amplitude_matrix"), 0, 100000), "vl53l8ch.amplitude_matrix")
        check(_matrix(tof.get("target_status_matrix"), 0, 255, integers=True), "vl53l8ch.target_status_matrix")
        check(_in(tof.get("sensor_height_mm"), 1, 4000), "vl53l8ch.sensor_height_mm")
        check(_in(tof.get("volume_mm3"), 0, 1e9), "vl53l8ch.volume_mm3")
        check(_in(tof.get("avg_height_mm"), 0, 4000), "vl53l8ch.avg_height_mm")
        check(_score(tof.get("surface_uniformity")), "vl53l8ch.surface_uniformity")
        check(_in(tof.get("height_variation_mm"), 0, 4000), "vl53l8ch.height_variation_mm")
        check(_score(tof.get("quality_score")), "vl53l8ch.quality_score")
        check(tof.get("grade") in GRADES, "vl53l8ch.grade")
        check(_defects(tof.get("defects")), "vl53l8ch.defects")
        check(isinstance(tof.get("bins_analysis"), dict), "vl53l8ch.bins_analysis")
        check(isinstance(tof.get("reflectance_analysis"), dict), "vl53l8ch.reflectance_analysis")
    else:
        errors.append("vl53l8ch")

    spec = sample.get("as7341")
    if isinstance(spec, dict):
        atime, astep = spec.get("atime"), spec.get("astep")
        steps: int | None = None
        if isinstance(atime, int) and isinstance(astep, int) and 0 <= atime <= 255 and 0 <= astep <= 65534:
            steps = (atime + 1) * (astep + 1)
        check(steps is not None, "as7341.atime/astep")
        full_scale = min(65535, steps) if steps is not None else 65535
        channels = spec.get("channels")
        check(
            isinstance(channels, dict)
            and sorted(channels) == sorted(CHANNELS)
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= full_scale for v in channels.values()),
            "as7341.channels",
        )
        expected_ms = round(steps * 2.78 / 1000) if steps is not None else None
        integration = spec.get("integration_time")
        check(
            isinstance(integration, int) and expected_ms is not None and abs(integration - expected_ms) <= 1,
            "as7341.integration_time",
        )
        check(_number(spec.get("gain")) and spec.get("gain") in GAINS, "as7341.gain")
        for name in ("freshness_index", "fat_quality_index", "oxidation_index", "color_uniformity", "quality_score"):
            check(_score(spec.get(name)), f"as7341.{name}")
        check(spec.get("grade") in GRADES, "as7341.grade")
        check(_defects(spec.get("defects")), "as7341.defects")
        check(isinstance(spec.get("spectral_analysis"), dict), "as7341.spectral_analysis")
        check(isinstance(spec.get("color_analysis"), dict), "as7341.color_analysis")
    else:
        errors.append("as7341")

    fusion = sample.get("fusion")
    if isinstance(fusion, dict):
        for name in ("final_score", "confidence", "vl53l8ch_score", "as7341_score"):
            check(_score(fusion.get(name)), f"fusion.{name}")
        check(fusion.get("final_grade") in GRADES, "fusion.final_grade")
        defects = fusion.get("defects")
        check(_defects(defects) and isinstance(defects, list) and defects == sorted(set(defects)), "fusion.defects")
    else:
        errors.append("fusion")

    meta = sample.get("meta")
    if isinstance(meta, dict):
        check(_string(meta.get("firmware_version"), 32), "meta.firmware_version")
        check(_in(meta.get("temperature_c"), -40, 125), "meta.temperature_c")
        check(_in(meta.get("humidity_percent"), 0, 100), "meta.humidity_percent")
        check(_string(meta.get("config_profile"), 100), "meta.config_profile")
        processing = meta.get("processing_time_ms")
        check(processing is None or _in(processing, 0, 60000), "meta.processing_time_ms")
    else:
        errors.append("meta")
    return errors

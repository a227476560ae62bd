"""The largest valid sample and batch (docs/protocol.md §2), from which WS_MAX_MESSAGE_BYTES's default is sized.

"Largest" under the canonical encoding (the simulator's: compact JSON, numbers in their shortest round-trip form, no
unknown keys, text in ASCII): every bounded field at its longest value, the free-form analysis objects as in the
protocol's complete example. JSON allows longer spellings of the same sample (spaces, `1.000…0`, fractional seconds
of any length, `\\u` escapes), so no cap can admit every valid text; a device sending those splits its batches by size.
"""

from __future__ import annotations

import copy
import json
from datetime import datetime, timedelta, timezone
from typing import Any

from backend.sqal.ingest.schemas import ATIME_STEP_US, MAX_BATCH_SAMPLES
from backend.sqal.vocabulary import ID_MAX_LENGTH
from tests.sqal.helpers import EXAMPLE

# The longest shortest-round-trip form of a double, positive and negative (23 and 24 characters).
LONGEST_POSITIVE = 2.2250738585072014e-308
LONGEST_NEGATIVE = -LONGEST_POSITIVE
MAX_DEFECTS, MAX_DEFECT_CODE = 32, 64
MAX_FIRMWARE, MAX_TEXT = 32, 100
LONGEST_GRADE = "REJECT"
ATIME, ASTEP = 255, 65534  # registers of the 5-digit full scale, so every channel may be 65535
BATCH_ID = "B" * MAX_TEXT


def _matrix(value: float) -> list[list[float]]:
    return [[value] * 8 for _ in range(8)]


def _defects() -> list[str]:
    return ["d" * MAX_DEFECT_CODE] * MAX_DEFECTS


def largest_sample(device_id: str, index: int, moment: datetime) -> dict[str, Any]:
    """A valid version-2 sample of the device with every bounded field at its longest (device_id: 100 chars)."""
    assert len(device_id) == ID_MAX_LENGTH
    sample = copy.deepcopy(EXAMPLE)
    suffix = f"-{index:04d}"
    offset = timezone(timedelta(hours=-9, minutes=-30))  # `-09:30`: six characters like any offset
    stamp = moment.astimezone(offset).replace(microsecond=moment.microsecond or 1)  # microseconds always written
    sample.update(
        device_id=device_id,
        sample_id="S" * (ID_MAX_LENGTH - len(suffix)) + suffix,
        seq=2**63 - 1,
        timestamp=stamp.isoformat(),
    )
    tof = sample["vl53l8ch"]
    for name in ("distance_matrix", "reflectance_matrix", "amplitude_matrix"):
        tof[name] = _matrix(LONGEST_POSITIVE)
    tof["target_status_matrix"] = [[255] * 8 for _ in range(8)]
    tof["sensor_height_mm"] = 1234.5678901234567  # within 1-4000: no exponent form, 18 characters at most
    for name in ("volume_mm3", "avg_height_mm", "surface_uniformity", "height_variation_mm", "quality_score"):
        tof[name] = LONGEST_POSITIVE
    tof.update(grade=LONGEST_GRADE, defects=_defects())
    spectral = sample["as7341"]
    spectral["channels"] = dict.fromkeys(spectral["channels"], 65535)
    integration = round((ATIME + 1) * (ASTEP + 1) * ATIME_STEP_US / 1000)
    spectral.update(atime=ATIME, astep=ASTEP, integration_time=integration, gain=0.5)
    for name in ("freshness_index", "fat_quality_index", "oxidation_index", "color_uniformity", "quality_score"):
        spectral[name] = LONGEST_POSITIVE
    spectral.update(grade=LONGEST_GRADE, defects=_defects())
    fusion = sample["fusion"]
    for name in ("final_score", "confidence", "vl53l8ch_score", "as7341_score"):
        fusion[name] = LONGEST_POSITIVE
    fusion.update(final_grade=LONGEST_GRADE, defects=_defects())
    sample["meta"].update(
        firmware_version="f" * MAX_FIRMWARE,
        temperature_c=LONGEST_NEGATIVE,
        humidity_percent=LONGEST_POSITIVE,
        config_profile="p" * MAX_TEXT,
        processing_time_ms=LONGEST_POSITIVE,
    )
    return sample


def encode(obj: Any) -> str:
    """The canonical encoding."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def largest_batch(device_id: str, moment: datetime) -> str:
    """The largest valid `sensor_batch` of the device, as sent: MAX_BATCH_SAMPLES largest samples."""
    samples = ",".join(encode(largest_sample(device_id, index, moment)) for index in range(MAX_BATCH_SAMPLES))
    return f'{{"type":"sensor_batch","batch_id":"{BATCH_ID}","samples":[{samples}]}}'

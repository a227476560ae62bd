"""AS7341 analyser: pure function from raw channel counts to freshness, fat quality, oxidation and colour."""

from __future__ import annotations

import colorsys
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from simulator.grading import cap_score, clamp01, grade_for_score, worst_grade
from simulator.spectral_model import (
    CHANNELS,
    COUNTS_PER_GAIN_MS,
    REFLECTANCE_FAT,
    REFLECTANCE_LEAN,
    SENSITIVITY,
    full_scale,
    integration_time_ms,
)

_BAND_CHANNELS = (*CHANNELS[:8], "NIR")


def _blue_green(r: list[float]) -> float:
    return (r[0] + r[1] + r[2]) / max(r[3] + r[4] + r[5], 1e-9)


def _red_level(r: list[float]) -> float:
    return (r[6] + r[7] + r[8]) / 3.0


REFERENCE = list(REFLECTANCE_FAT)
REFERENCE_BLUE_GREEN = _blue_green(REFERENCE)
RED_FAT, RED_LEAN = _red_level(REFERENCE), _red_level(list(REFLECTANCE_LEAN))


@dataclass(frozen=True)
class SpectralLimits:
    """Decision thresholds of the spectral analysis."""

    blood_ratio_630_555: float = 1.8
    blood_ratio_680_555: float = 1.6
    severe_blood_ratio_630_555: float = 2.6
    yellowing_blue_green: float = 0.42
    severe_oxidation_index: float = 0.6
    low_signal_fraction: float = 0.02


@dataclass(frozen=True)
class SpectralAnalysis:
    """Result of `analyse_spectrum`; `frame_fields()` gives the protocol's analysis keys."""

    freshness_index: float
    fat_quality_index: float
    oxidation_index: float
    color_uniformity: float
    quality_score: float
    grade: str
    defects: list[str]
    saturated_channels: list[str]
    spectral_analysis: dict[str, Any] = field(default_factory=dict)
    color_analysis: dict[str, Any] = field(default_factory=dict)

    def frame_fields(self) -> dict[str, Any]:
        """The analysed fields of the `as7341` frame section."""
        return {
            "freshness_index": round(self.freshness_index, 4),
            "fat_quality_index": round(self.fat_quality_index, 4),
            "oxidation_index": round(self.oxidation_index, 4),
            "color_uniformity": round(self.color_uniformity, 4),
            "quality_score": round(self.quality_score, 4),
            "grade": self.grade,
            "defects": self.defects,
            "spectral_analysis": self.spectral_analysis,
            "color_analysis": self.color_analysis,
        }


def estimate_reflectance(channels: Mapping[str, int], atime: int, astep: int, gain: float) -> list[float]:
    """Reflectance per band (F1..F8, NIR) from counts, using the white-reference sensitivity."""
    per_unit = COUNTS_PER_GAIN_MS * gain * integration_time_ms(atime, astep)
    return [channels[name] / (SENSITIVITY[b] * per_unit) for b, name in enumerate(_BAND_CHANNELS)]


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def _srgb(linear: float) -> int:
    linear = clamp01(linear)
    encoded = 12.92 * linear if linear <= 0.0031308 else 1.055 * linear ** (1 / 2.4) - 0.055
    return round(255 * encoded)


def _color(r: list[float]) -> dict[str, Any]:
    red = _srgb((r[5] + r[6] + r[7]) / 3)
    green, blue = _srgb((r[3] + r[4]) / 2), _srgb((r[1] + r[2]) / 2)
    hue, lightness, saturation = colorsys.rgb_to_hls(red / 255, green / 255, blue / 255)
    return {
        "rgb": [red, green, blue],
        "hex": f"#{red:02x}{green:02x}{blue:02x}",
        "hue_deg": round(hue * 360, 1),
        "lightness": round(lightness, 3),
        "saturation": round(saturation, 3),
    }


def analyse_spectrum(
    channels: Mapping[str, int],
    atime: int,
    astep: int,
    gain: float,
    limits: SpectralLimits = SpectralLimits(),
) -> SpectralAnalysis:
    """Indices, quality score, grade and defects of one AS7341 reading."""
    ceiling = full_scale(atime, astep)
    saturated = [name for name in CHANNELS if channels[name] >= ceiling]
    r = estimate_reflectance(channels, atime, astep, gain)
    green = max(channels["F5_555nm"], 1)
    ratio_630 = channels["F7_630nm"] / green
    ratio_680 = channels["F8_680nm"] / green
    blue_green = _blue_green(r)

    oxidation = clamp01((REFERENCE_BLUE_GREEN - blue_green) / REFERENCE_BLUE_GREEN * 1.1)
    blood = clamp01((ratio_630 - 1.2) / 1.6)
    freshness = clamp01(1.0 - 0.8 * oxidation - 0.35 * blood)
    fat_quality = clamp01((_red_level(r) - RED_LEAN) / (RED_FAT - RED_LEAN))
    uniformity = clamp01(1.0 - (1.0 - _cosine(r[:8], REFERENCE[:8])) * 8.0)
    score = 0.35 * freshness + 0.35 * fat_quality + 0.15 * (1.0 - oxidation) + 0.15 * uniformity

    defects: list[str] = []
    caps: list[str] = []
    if ratio_630 > limits.blood_ratio_630_555 and ratio_680 > limits.blood_ratio_680_555:
        defects.append("blood_spot")
        caps.append("REJECT" if ratio_630 > limits.severe_blood_ratio_630_555 else "C")
    if blue_green < limits.yellowing_blue_green:
        defects.append("yellowing")
        caps.append("C")
    if oxidation >= limits.severe_oxidation_index:
        defects.append("oxidation")
        caps.append("REJECT")
    if saturated:
        defects.append("saturated_channel")
        caps.append("B")
    if channels["Clear"] < limits.low_signal_fraction * ceiling:
        defects.append("low_signal")
        caps.append("C")
    grade = worst_grade([grade_for_score(score), *caps])
    return SpectralAnalysis(
        freshness_index=freshness,
        fat_quality_index=fat_quality,
        oxidation_index=oxidation,
        color_uniformity=uniformity,
        quality_score=cap_score(score, grade),
        grade=grade,
        defects=sorted(defects),
        saturated_channels=saturated,
        spectral_analysis={
            "full_scale": ceiling,
            "saturated_channels": saturated,
            "ratio_630_555": round(ratio_630, 4),
            "ratio_680_555": round(ratio_680, 4),
            "blue_green_ratio": round(blue_green, 4),
            "nir_clear_ratio": round(channels["NIR"] / max(channels["Clear"], 1), 4),
            "reflectance_estimate": [round(v, 4) for v in r],
        },
        color_analysis=_color(r),
    )

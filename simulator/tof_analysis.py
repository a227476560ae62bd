"""VL53L8CH analyser: pure function from an 8x8 frame to volume, shape and surface quality."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from simulator.grading import cap_score, clamp01, grade_for_score, worst_grade

GRID = 8
VALID_STATUSES = frozenset({5, 9})
HEIGHT_BIN_EDGES_MM = (0, 10, 20, 30, 40, 50)


@dataclass(frozen=True)
class TofLimits:
    """Thresholds of the analysis; defaults suit a lobe in a tray under a sensor at ~250 mm."""

    fov_deg: float = 45.0
    product_threshold_mm: float = 5.0
    target_volume_mm3: tuple[float, float] = (250_000.0, 600_000.0)
    min_uniformity: float = 0.6
    roughness_scale_mm: float = 2.45
    spike_mm: float = 15.0
    dark_drop_percent: float = 10.0
    max_invalid_zones: int = 4


@dataclass(frozen=True)
class TofAnalysis:
    """Result of `analyse_tof`; `frame_fields()` gives the protocol's analysis keys."""

    volume_mm3: float
    avg_height_mm: float
    surface_uniformity: float
    height_variation_mm: float
    quality_score: float
    grade: str
    defects: list[str]
    invalid_zones: int
    bins_analysis: dict[str, Any] = field(default_factory=dict)
    reflectance_analysis: dict[str, Any] = field(default_factory=dict)

    def frame_fields(self) -> dict[str, Any]:
        """The analysed fields of the `vl53l8ch` frame section."""
        return {
            "volume_mm3": round(self.volume_mm3, 1),
            "avg_height_mm": round(self.avg_height_mm, 2),
            "surface_uniformity": round(self.surface_uniformity, 4),
            "height_variation_mm": round(self.height_variation_mm, 2),
            "quality_score": round(self.quality_score, 4),
            "grade": self.grade,
            "defects": self.defects,
            "bins_analysis": self.bins_analysis,
            "reflectance_analysis": self.reflectance_analysis,
        }


def flatten(matrix: Sequence[Sequence[float]] | Sequence[float]) -> list[float]:
    """Row-major flat list of the 64 values of an 8x8 matrix (a flat list of 64 is returned as a list)."""
    if len(matrix) == GRID * GRID:
        return list(matrix)  # type: ignore[arg-type]
    values = [v for row in matrix for v in row]  # type: ignore[union-attr]
    if len(values) != GRID * GRID or len(matrix) != GRID:
        raise ValueError("expected an 8x8 matrix or 64 values")
    return values


def _neighbours(index: int) -> list[int]:
    row, col = divmod(index, GRID)
    return [
        r * GRID + c
        for r, c in ((row - 1, col), (row + 1, col), (row, col - 1), (row, col + 1))
        if 0 <= r < GRID and 0 <= c < GRID
    ]


NEIGHBOURS = tuple(_neighbours(i) for i in range(GRID * GRID))


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return 0.0, 0.0
    count = len(values)
    mean = sum(values) / count
    variance = sum(map(operator.mul, values, values)) / count - mean * mean
    return mean, math.sqrt(variance) if variance > 0.0 else 0.0


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _triples() -> tuple[tuple[int, int, int], ...]:
    """(a, middle, b) zone triples along rows, columns and diagonals."""
    result = []
    for row in range(GRID):
        for col in range(GRID):
            zone = row * GRID + col
            inner_col, inner_row = 0 < col < GRID - 1, 0 < row < GRID - 1
            if inner_col:
                result.append((zone - 1, zone, zone + 1))
            if inner_row:
                result.append((zone - GRID, zone, zone + GRID))
            if inner_col and inner_row:
                result.append((zone - GRID - 1, zone, zone + GRID + 1))
                result.append((zone - GRID + 1, zone, zone + GRID - 1))
    return tuple(result)


TRIPLES = _triples()


def _roughness(heights: list[float], valid: list[bool], product: list[bool]) -> float:
    """RMS of concavity violations between product zones.

    A lobe is a concave dome, so a zone between two product zones is never lower than their mean; dents and
    tears break that, ranging noise only slightly.
    """
    total, count = 0.0, 0
    for a, middle, b in TRIPLES:
        if product[a] and product[b] and valid[middle]:
            count += 1
            deficit = (heights[a] + heights[b]) / 2.0 - heights[middle]
            if deficit > 0.0:
                total += deficit * deficit
    return math.sqrt(total / count) if count else 0.0


def _spikes(heights: list[float], valid: list[bool], spike_mm: float) -> int:
    """Zones standing above every valid neighbour by more than `spike_mm` (liver has no such edge)."""
    count = 0
    for zone, height in enumerate(heights):
        if height <= spike_mm:
            continue
        around = [heights[n] for n in NEIGHBOURS[zone] if valid[n]]
        if around and height - max(around) > spike_mm:
            count += 1
    return count


def _volume_score(volume: float, target: tuple[float, float]) -> float:
    low, high = target
    if volume < low:
        return clamp01(volume / low) ** 2
    if volume > high:
        return clamp01(1.0 - (volume - high) / high)
    return 1.0


def _defects(
    has_product: bool, volume: float, uniformity: float, spikes: int, dark: int, invalid: int, limits: TofLimits
) -> tuple[list[str], list[str]]:
    """The frame's defects, and the grade each one caps the frame at."""
    defects: list[str] = []
    caps = []
    if not has_product:
        defects.append("no_product")
        caps.append("REJECT")
    elif volume < limits.target_volume_mm3[0]:
        defects.append("low_volume")
        caps.append("REJECT" if volume < 0.6 * limits.target_volume_mm3[0] else "C")
    elif volume > limits.target_volume_mm3[1]:
        defects.append("excess_volume")
        caps.append("B")
    if has_product and uniformity < limits.min_uniformity:
        defects.append("surface_irregular")
        caps.append("C")
    if spikes:
        defects.append("foreign_object")
        caps.append("REJECT")
    if dark:
        defects.append("dark_spots")
        caps.append("C")
    if invalid > limits.max_invalid_zones:
        defects.append("missing_zones")
        caps.append("B")
    return defects, caps


def analyse_tof(
    distance_mm: Sequence[Sequence[float]] | Sequence[float],
    reflectance_percent: Sequence[Sequence[float]] | Sequence[float],
    amplitude: Sequence[Sequence[float]] | Sequence[float],
    target_status: Sequence[Sequence[float]] | Sequence[float],
    sensor_height_mm: float,
    limits: TofLimits = TofLimits(),
) -> TofAnalysis:
    """Volume, heights, surface uniformity, quality score, grade and defects of one 8x8 frame."""
    distances = flatten(distance_mm)
    reflectances = flatten(reflectance_percent)
    amplitudes = flatten(amplitude)
    statuses = flatten(target_status)
    pitch = 2.0 * sensor_height_mm * math.tan(math.radians(limits.fov_deg) / 2.0) / GRID
    zone_area = pitch * pitch

    valid = [int(status) in VALID_STATUSES for status in statuses]
    heights = [
        (sensor_height_mm - d if d < sensor_height_mm else 0.0) if ok else 0.0
        for d, ok in zip(distances, valid, strict=True)
    ]
    threshold = limits.product_threshold_mm
    product = [ok and h >= threshold for h, ok in zip(heights, valid, strict=True)]
    product_heights = [h for h, is_product in zip(heights, product, strict=True) if is_product]
    volume = sum(product_heights) * zone_area
    avg_height, height_std = _mean_std(product_heights)
    roughness = _roughness(heights, valid, product)
    uniformity = 1.0 / (1.0 + (roughness / limits.roughness_scale_mm) ** 2) if product_heights else 0.0

    product_refl = [r for r, is_product in zip(reflectances, product, strict=True) if is_product]
    tray_refl = [r for r, ok, p in zip(reflectances, valid, product, strict=True) if ok and not p]
    refl_mean, refl_std = _mean_std(product_refl)
    median_refl = sorted(product_refl)[len(product_refl) // 2] if product_refl else 0.0
    dark = sum(1 for r in product_refl if r < median_refl - limits.dark_drop_percent)
    spikes = _spikes(heights, valid, limits.spike_mm)
    valid_count = sum(valid)
    invalid = GRID * GRID - valid_count

    defects, caps = _defects(bool(product_heights), volume, uniformity, spikes, dark, invalid, limits)
    score = 0.55 * _volume_score(volume, limits.target_volume_mm3) + 0.45 * uniformity if product_heights else 0.0
    grade = worst_grade([grade_for_score(score), *caps])
    score = cap_score(score, grade)

    counts = [0] * len(HEIGHT_BIN_EDGES_MM)
    for h in product_heights:
        counts[min(int(h // 10), len(counts) - 1)] += 1
    valid_amplitudes = [a for a, ok in zip(amplitudes, valid, strict=True) if ok]
    return TofAnalysis(
        volume_mm3=volume,
        avg_height_mm=avg_height,
        surface_uniformity=uniformity,
        height_variation_mm=height_std,
        quality_score=score,
        grade=grade,
        defects=sorted(defects),
        invalid_zones=invalid,
        bins_analysis={
            "bin_edges_mm": list(HEIGHT_BIN_EDGES_MM),
            "counts": counts,
            "product_zones": len(product_heights),
            "valid_zones": valid_count,
            "coverage_ratio": round(len(product_heights) / (GRID * GRID), 4),
            "max_height_mm": round(max(product_heights, default=0.0), 1),
            "roughness_mm": round(roughness, 2),
        },
        reflectance_analysis={
            "product_mean": round(refl_mean, 2),
            "product_std": round(refl_std, 2),
            "tray_mean": round(_mean(tray_refl), 2),
            "low_reflectance_zones": dark,
            "amplitude_mean": round(_mean(valid_amplitudes), 1),
        },
    )
